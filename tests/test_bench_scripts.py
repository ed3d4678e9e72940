"""The benchmark scripts run (one quick round: the numbers come from full runs, not tests)."""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_startup_and_latency_quick():
    res = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "startup_and_latency.py"), "--quick"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "logreg_iris.onnx" in res.stdout and "mul_1.onnx" in res.stdout
