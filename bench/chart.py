"""The bar chart of steady-state ratios (ortjit / ONNX Runtime), one bar per case.

    python bench/chart.py RESULTS.json OUT.png

compare.py runs it with the ORT venv's python, where matplotlib is installed, so the
project's environment does not need it.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from report import GOALS, passed, speed_ratio  # noqa: E402

COLORS = {"cnn": "#4C72B0", "elementwise": "#DD8452", "sklearn": "#55A868", "overhead": "#8172B3"}


def main(src, dst):
    with open(src) as f:
        results = json.load(f)
    cases = results["cases"][::-1]            # first case on top
    fig, ax = plt.subplots(figsize=(9.5, 0.3 * len(cases) + 1.6))
    for i, c in enumerate(cases):
        if passed(c):
            r = speed_ratio(c)
            ax.barh(i, r, color=COLORS.get(c["group"], "gray"))
            ax.text(r, i, f" {r:.2f}", va="center", fontsize=8)
        else:
            ax.text(0.02, i, "failed or outputs disagree", va="center", fontsize=8, color="firebrick",
                    transform=ax.get_yaxis_transform())
    ax.set_yticks(range(len(cases)), [c["case"] for c in cases], fontsize=8)
    ax.set_ylim(-0.6, len(cases) - 0.4)       # keep rows of failed cases, which have no bar
    ax.set_xscale("log")
    ratios = [speed_ratio(c) for c in cases if passed(c)] or [1.0]
    ax.set_xlim(min(0.5, min(ratios) / 1.5), max(2.0, max(ratios) * 1.6))
    handles = [ax.axvline(x, color="black", linestyle=style, linewidth=0.8, label=label)
               for x, style, label in ((1.0, "-", "parity"),
                                       (GOALS["geomean"], "--", f"goal for the geomean, {GOALS['geomean']}"),
                                       (GOALS["max"], ":", f"no case above {GOALS['max']}"))]
    handles += [Patch(color=color, label=group) for group, color in COLORS.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_xlabel(f"steady-state latency, ortjit / {results['reference']['short']} (lower is better, log scale)")
    ax.set_title(f"{results['machine']['cpu']}, {results['settings']['threads']} threads, {results['finished']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
