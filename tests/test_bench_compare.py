"""bench/compare.py runs end to end (the one-node model, one round): CI checks the harness,
not the numbers, which come from full runs on a quiet machine.

With PyPI reachable the quick run makes bench/.venv-ort and measures the real ONNX Runtime;
without it, it falls back to ortjit against itself, which the second test forces.
"""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")
COMPARE = os.path.join(ROOT, "bench", "compare.py")


def run_quick(tmp_path, *extra):
    res = subprocess.run([sys.executable, COMPARE, "--quick", "--out", str(tmp_path / "out"),
                          "--scratch", str(tmp_path / "scratch"), "--models-dir", str(tmp_path / "models"),
                          *extra], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    with open(tmp_path / "out" / "benchmarks.md") as f:
        return res.stdout, f.read()


def test_quick_compare(tmp_path):
    stdout, page = run_quick(tmp_path)
    assert "| one_node | 1 |" in page
    assert "## Targets" in page and "one-node per-call overhead" in page
    assert "## A fresh process" in page and "## Failures" in page
    assert "one_node" in stdout and "ratio" in stdout
    # start-up: the warm and ahead-of-time rows, and the one-node artifact compiled and loaded
    assert "`ortjit compile` artifact: largest ratio" in page and "fresh process, import to first result" in page
    row = next(line for line in page.splitlines() if line.startswith("| one_node | ") and " ms |" in line
               and line.count("|") > 10)
    assert row.split("|")[9].strip() not in ("", "-")      # ahead of time: session + first run
    assert "ahead of time" not in page.split("## Failures")[1]


def test_quick_compare_without_ort(tmp_path):
    stdout, page = run_quick(tmp_path, "--no-ort")
    assert "ortjit runs against itself" in stdout
    assert "**No ONNX Runtime here**" in page and "| one_node | 1 |" in page


def test_unmet_targets_get_their_causes(tmp_path):
    """The page names the cause of each target it marks unmet, and of no other."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import report
    finally:
        sys.path.pop(0)
    side = lambda steady, rss: {"steady_s": steady, "peak_rss_mb": rss}  # noqa: E731
    case = lambda name, group, ours, theirs, rss: {  # noqa: E731
        "case": name, "group": group, "batch": 1, "agreement": {"ok": True, "worst": 0.0},
        "ortjit": side(ours, rss), "ort": side(theirs, 100.0)}
    results = {"cases": [case("cnn-b1", "cnn", 2e-3, 1e-3, 120.0), case("one_node", "overhead", 1e-6, 1e-6, 110.0)]}
    rows = {key: ok for key, _, _, _, ok in report.targets(results)}
    assert rows["geomean"] is False and rows["max"] is False and rows["rss"] is True and rows["overhead"] is True
    results.update(machine=dict(cpu="x", cores=2, memory_gib=1, os="y", avx512=True, load_before=0, load_after=0,
                                python="3"),
                   settings=dict(threads=2, rounds=1, burst_s=0.1, rtol=1e-3, atol_scale=1e-5),
                   reference=dict(name="ORT", short="ORT", stand_in=False, numpy="2"),
                   ortjit=dict(version="0", commit="c", numba="n", numpy="2"), command="c", finished="f", notes=[])
    page = report.render(results)
    causes = page.split("Where the unmet targets fall short")[1].split("## ")[0]
    assert "**largest steady-state ratio**" in causes and "NCHWc" in causes
    assert "peak RSS" not in causes and "per-call overhead" not in causes
