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
