"""docs/benchmarks.md from compare.py's results: every number, target and verdict is computed
here from the measurements; nothing in the page is typed by hand but the causes of unmet
targets (CAUSES: the findings docs/performance.md records, which the page links to).

    python bench/report.py RESULTS.json OUT.md      # re-render without measuring again
"""
from __future__ import annotations

import json
import math
import sys

GOALS = {"geomean": 0.9, "max": 1.5, "elementwise": 0.8, "overhead": 2.0, "rss": 1.5,
         # start-up (issue 5): ratios to ORT's warm session + first run, seconds, fresh-process ratio
         "warm": 2.0, "aot": 1.5, "cold_resnet50_s": 10.0, "fresh": 3.0}


# Why a target can be missed: the causes found by per-node profiles and A/B runs recorded
# in docs/performance.md. Text only; every number on the page is computed from the run.
CAUSES = {
    "geomean": "convolutions are about 90% of a CNN's run. ONNX Runtime runs CNNs in NCHWc (16 "
               "channels in the vector lanes) from end to end on kernels near the cores' peak; ortjit "
               "keeps NCHW and runs the convolutions on its own micro-kernel (direct and channel-vector "
               "convolutions), OpenBLAS GEMM pieces and Winograd, each slower per node than MLAS's on "
               "the small CNNs' shapes, and its pools and depthwise convolutions walk planes with short "
               "rows. The per-node comparisons are under \"Where the time goes\" and \"Next levers\"; "
               "closing the gap takes an NCHWc layout through the plan.",
    "max": "the same per-node convolution and pooling gaps, largest on the small CNNs at batch 1 "
           "(SqueezeNet, Inception v2, ShuffleNet), where a layer's work is too small to hide them.",
    "elementwise": "MatMul is most of these runs and ortjit's products run at about ONNX Runtime's "
                   "(MLAS) speed, while the fused elementwise loops (GELU, LayerNormalization, Softmax) "
                   "already cost less than ONNX Runtime's separate kernels: the goal would need GEMMs "
                   "faster than MLAS's.",
    "overhead": "the Python call path of a run (feed checks, plan lookup, the kernel's dispatch).",
    "rss": "the imports ortjit's required dependencies make (Numba, llvmlite, onnx-ir, onnx) take "
           "more memory than ONNX Runtime's whole process for the small models; the large models "
           "come within the goal.",
    "agree": "see Failures below.",
    "warm": "each compiled kernel is loaded into LLVM's JIT in every process (1.5-1.9 ms: linking, "
            "relocation, Numba's dispatcher), on top of reading the (cached, optimized) graph and "
            "building the plan in Python; for a model of one to three kernels (one node, scaler + "
            "logistic regression) these alone come to several times ONNX Runtime's whole start-up "
            "(0.5-0.9 ms), and the mid-size CNNs (ShuffleNet, SqueezeNet) pay them per node "
            "(docs/startup.md).",
    "aot": "an artifact skips the compiles but still loads every kernel into LLVM's JIT and builds "
           "the plan in Python (see the warm-cache row).",
    "cold_resnet50_s": "Numba's compile time per distinct kernel (docs/startup.md).",
    "fresh": "importing Numba and llvmlite, and the first kernel's load (docs/startup.md).",
}


def fmt(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio(a, b):
    return a / b if a is not None and b else None


def fr(r):
    return "-" if r is None else f"{r:.2f}"


def passed(case):
    """The case ran on both sides and the outputs agree: its ratio counts."""
    return (case["ortjit"].get("steady_s") and case["ort"].get("steady_s")
            and case.get("agreement", {}).get("ok"))


def speed_ratio(case):
    return ratio(case["ortjit"].get("steady_s"), case["ort"].get("steady_s"))


def worst(group, key):
    """(largest key(case), that case's name) over the cases whose key is not None."""
    scored = [(key(c), c["case"]) for c in group if key(c) is not None]
    return max(scored) if scored else (None, None)


def targets(results):
    """Rows (goal key, target, goal, measured, met) for the issue's goals."""
    cases = results["cases"]
    good = [c for c in cases if passed(c)]
    bad = [c["case"] for c in cases if not passed(c)]
    rows = []

    if good:
        gm = math.exp(sum(math.log(speed_ratio(c)) for c in good) / len(good))
        rows.append(("geomean", f"geometric mean of steady-state ratio (cases: {len(good)})", f"≤ {GOALS['geomean']}",
                     f"{gm:.2f}", gm <= GOALS["geomean"]))
    r, name = worst(good, speed_ratio)
    if r is not None:
        above = [c["case"] for c in good if speed_ratio(c) > GOALS["max"]]
        rows.append(("max", "largest steady-state ratio", f"≤ {GOALS['max']}",
                     f"{r:.2f} ({name}); above: {', '.join(above) or 'none'}", not above and not bad))
    ew = [c for c in cases if c["group"] == "elementwise"]
    if ew:
        r, name = worst([c for c in ew if passed(c)], speed_ratio)
        failed = [c["case"] for c in ew if not passed(c)]
        rows.append(("elementwise", "elementwise-heavy (MLP, transformer blocks), largest ratio", f"≤ {GOALS['elementwise']}",
                     f"{fr(r)} ({name})" + (f"; failed: {', '.join(failed)}" if failed else ""),
                     r is not None and r <= GOALS["elementwise"] and not failed))
    for c in cases:
        if c["group"] == "overhead":
            r = speed_ratio(c) if passed(c) else None
            detail = f"{fr(r)} ({fmt(c['ortjit'].get('steady_s'))} vs {fmt(c['ort'].get('steady_s'))})"
            rows.append(("overhead", "one-node per-call overhead, ratio", f"≤ {GOALS['overhead']}", detail,
                         r is not None and r <= GOALS["overhead"]))
    for key, what in (("peak_rss_mb", "steady-state process"), ("warm_peak_rss_mb", "warm process")):
        r, name = worst(cases, lambda c: ratio(c["ortjit"].get(key), c["ort"].get(key)))
        if r is not None:
            rows.append(("rss", f"peak RSS ratio, largest ({what})", f"≤ {GOALS['rss']}", f"{r:.2f} ({name})",
                         r <= GOALS["rss"]))
    rows.append(("agree", "cases that run on both and agree", f"all {len(cases)}",
                 f"{len(good)}" + (f"; not: {', '.join(bad)}" if bad else ""), not bad))
    return rows


def startup_targets(results):
    """Rows (goal key, target, goal, measured, met) for the start-up goals."""
    cases, rows = results["cases"], []
    for total, what, goal in ((warm_total, "warm cache", "warm"), (aot_total, "`ortjit compile` artifact", "aot")):
        def to_ort(c, total=total):   # against ORT's warm session + first run
            return ratio(total(c["ortjit"]), warm_total(c["ort"]))
        r, name = worst(cases, to_ort)
        if r is not None:
            above = [c["case"] for c in cases if (to_ort(c) or 0) > GOALS[goal]]
            rows.append((goal, f"session + first run after another model, {what}: largest ratio to ORT's",
                         f"≤ {GOALS[goal]}", f"{r:.2f} ({name}); above: {len(above)} of {len(cases)} cases",
                         not above))
    for c in cases:
        if c["case"] == "resnet50-b1" and c["ortjit"].get("first_s") is not None:
            cold = c["ortjit"]["create_s"] + c["ortjit"]["first_s"]
            rows.append(("cold_resnet50_s", "cold compile of ResNet-50 (session + first run, empty caches)",
                         f"< {GOALS['cold_resnet50_s']:.0f} s", fmt(cold), cold < GOALS["cold_resnet50_s"]))
    st = results.get("startup")
    if st and "error" not in st["ortjit"] and "error" not in st["ort"]:
        r = st["ortjit"]["total_s"] / st["ort"]["total_s"]
        rows.append(("fresh", "fresh process, import to first result of the one-node model: ratio", f"≤ {GOALS['fresh']}",
                     f"{r:.2f} ({fmt(st['ortjit']['total_s'])} vs {fmt(st['ort']['total_s'])})",
                     r <= GOALS["fresh"]))
    return rows


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def agreement(case):
    a = case.get("agreement")
    if a is None:
        return "-"
    if a["ok"]:
        return f"yes ({a['worst']:.2g})"
    return "**no**: " + a["detail"]


def render(results) -> str:
    m, s, ref = results["machine"], results["settings"], results["reference"]
    ref_name = ref["name"]
    out = [
        "# Benchmarks: ortjit against ONNX Runtime",
        "",
        f"Generated by `{results['command']}` on {results['finished']}; do not edit by hand, "
        "run it again. Made by `bench/compare.py`; the models by `bench/make_models.py`.",
        "",
        f"* Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']:.0f} GiB, {m['os']}, "
        f"AVX-512 {'yes' if m['avx512'] else 'no'}; load average {m['load_before']:.2f} before, "
        f"{m['load_after']:.2f} after (other work on the machine shows up as noise).",
        f"* ortjit {results['ortjit']['version']} (commit {results['ortjit']['commit']}), numba "
        f"{results['ortjit']['numba']}, numpy {results['ortjit']['numpy']}, Python {m['python']}; "
        f"against {ref_name}" + (f" (numpy {ref['numpy']}) in its own venv" if not ref["stand_in"] else "") + ".",
        f"* Both with intra_op_num_threads={s['threads']}, each in its own process; rounds: {s['rounds']}, "
        f"each a burst of about {s['burst_s']} s per runtime, the two runtimes taking turns; steady state "
        f"is the median over rounds of a burst's mean time per call. Outputs must agree within rtol {s['rtol']:g} "
        f"(atol {s['atol_scale']:g} x the output's largest magnitude; labels exactly); the number in "
        "brackets is the worst element's error as a fraction of that tolerance.",
    ]
    if ref["stand_in"]:
        out += ["", f"**No ONNX Runtime here** ({esc(ref['why'])}): ortjit ran against itself, so the "
                "ratios only show that the harness works."]
    steady_rows, rows = targets(results), startup_targets(results)
    out += ["", "## Targets", "", table(["target", "goal", "measured", "met"],
                                        [(t, g, v, verdict(ok, ref)) for _, t, g, v, ok in steady_rows])]
    if rows:
        out += ["", "Start-up:", "", table(["target", "goal", "measured", "met"],
                                          [(t, g, v, verdict(ok, ref)) for _, t, g, v, ok in rows])]
    missed = {}   # goal key -> the unmet targets it names (peak RSS has two rows, one cause)
    for key, t, _, _, ok in steady_rows + rows:
        if not ok and key in CAUSES:
            missed.setdefault(key, []).append(t)
    missed = [(" / ".join(names), CAUSES[key]) for key, names in missed.items()]
    if missed and not ref["stand_in"]:
        out += ["", "Where the unmet targets fall short, and why (the measurements behind each cause: "
                "[docs/performance.md](performance.md)):", ""]
        out += [f"* **{t}**: {cause}" for t, cause in missed]
    cases = results["cases"]
    out += ["", "## Steady-state latency and memory", "",
            "Peak RSS: of the process that made the steady-state runs (cold: for ortjit it includes "
            "compiling the kernels); warm: of a process that found them on disk.", "",
            table(["case", "batch", "ortjit", ref["short"], "ratio", "peak RSS ortjit", f"peak RSS {ref['short']}",
                   "RSS ratio", "warm peak RSS ortjit", f"warm {ref['short']}", "outputs agree"],
                  [(c["case"], c["batch"], fmt(c["ortjit"].get("steady_s")), fmt(c["ort"].get("steady_s")),
                    fr(speed_ratio(c)), mb(c["ortjit"].get("peak_rss_mb")), mb(c["ort"].get("peak_rss_mb")),
                    fr(ratio(c["ortjit"].get("peak_rss_mb"), c["ort"].get("peak_rss_mb"))),
                    mb(c["ortjit"].get("warm_peak_rss_mb")), mb(c["ort"].get("warm_peak_rss_mb")), agreement(c))
                   for c in cases])]
    out += ["", "## Start-up per model", "",
            "Cold: a new process with empty kernel caches (ortjit compiles every kernel, and pays "
            "Numba's start-up, in its first run). Warm: a process that has already run another "
            "model, with this model's kernels (and its optimized graph) on disk from the cold run. "
            "Ahead of time: `ortjit compile` wrote the model compiled for the case's input shapes "
            "into a folder (its wall time in the last column); a process with an empty kernel cache "
            "ran another model, then made a session on that folder and ran it once. "
            f"{_repeats_note(results)}Both ratios are to ONNX Runtime's warm session + first run.", "",
            table(["case", "session ortjit", f"session {ref['short']}", "first run ortjit",
                   f"first run {ref['short']}", "warm: session + first run, ortjit",
                   f"warm: {ref['short']}", "warm ratio", "ahead of time: session + first run",
                   "ahead-of-time ratio", "ortjit compile"],
                  [(c["case"], fmt(c["ortjit"].get("create_s")), fmt(c["ort"].get("create_s")),
                    fmt(c["ortjit"].get("first_s")), fmt(c["ort"].get("first_s")),
                    fmt(warm_total(c["ortjit"])), fmt(warm_total(c["ort"])),
                    fr(ratio(warm_total(c["ortjit"]), warm_total(c["ort"]))),
                    fmt(aot_total(c["ortjit"])), fr(ratio(aot_total(c["ortjit"]), warm_total(c["ort"]))),
                    fmt(c["ortjit"].get("aot_compile_s"))) for c in cases])]
    st = results.get("startup")
    if st:
        rows = []
        for label, name in (("ortjit", "ortjit"), ("ort", ref["short"])):
            r = st[label]
            rows.append((name, "failed: " + r["error"]) if "error" in r else
                        (name, fmt(r["import_s"]), fmt(r["create_s"]), fmt(r["first_s"]), fmt(r["total_s"]),
                         fmt(r["process_s"])))
        out += ["", "## A fresh process", "",
                f"Median over new processes (per runtime: {st['ortjit'].get('repeats', 0)}): from `import onnxruntime` "
                "to the first result of the one-node model (kernel cache warm); the last column also "
                "counts the interpreter's start and the worker protocol.", "",
                table(["runtime", "import onnxruntime", "session", "first run", "import to first result",
                       "process start to first result"], rows)]
    failures = [(c["case"], side, c[label].get("stage", "warm run"), c[label].get("error") or c[label]["warm_error"])
                for c in cases for label, side in (("ortjit", "ortjit"), ("ort", ref["short"]))
                if "error" in c[label] or "warm_error" in c[label]]
    failures += [(c["case"], "ortjit", "ahead of time", c["ortjit"]["aot_error"])
                 for c in cases if "aot_error" in c["ortjit"]]
    failures += [(c["case"], "both", "outputs", c["agreement"]["detail"])
                 for c in cases if c.get("agreement") and not c["agreement"]["ok"]]
    out += ["", "## Failures", ""]
    out += [table(["case", "runtime", "stage", "error"], [(a, b, st_, esc(e)) for a, b, st_, e in failures])
            if failures else "None."]
    out += ["", "## The models", ""] + [f"* {line}" for line in results["notes"]]
    return "\n".join(out) + "\n"


def verdict(ok, ref):
    if ref["stand_in"]:
        return "n/a (no ONNX Runtime)"
    return "yes" if ok else "**no**"


def _repeats_note(results: dict) -> str:
    n = results.get("settings", {}).get("warm_repeats", 1)
    return (f"Warm and ahead of time: {n} processes per runtime, taking turns; the one with the median "
            "session + first run is shown. " if n > 1 else "")


def warm_total(side):
    if side.get("warm_create_s") is None:
        return None
    return side["warm_create_s"] + side["warm_first_s"]


def aot_total(side):
    if side.get("aot_create_s") is None:
        return None
    return side["aot_create_s"] + side["aot_first_s"]


def mb(x):
    return "-" if x is None else f"{x:.0f} MB"


def esc(text):
    return text.replace("|", "\\|").replace("\n", " ")[:400]


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        text = render(json.load(f))
    with open(sys.argv[2], "w") as f:
        f.write(text)
