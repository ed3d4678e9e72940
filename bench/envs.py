"""The virtual environments the benchmark needs beside the project's own.

The real ONNX Runtime's package is named `onnxruntime`, as our facade is, so it can only
live in an environment of its own (bench/.venv-ort, with matplotlib for the chart). torch,
onnxscript, scikit-learn and skl2onnx make models only, and go in a second one
(bench/.venv-models), so neither the project's environment nor ORT's gets them. Both are
made with this python's `venv` and filled by pip; what was installed is noted in the venv,
so a later run installs only what is new.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ORT_VENV = os.path.join(HERE, ".venv-ort")
MODELS_VENV = os.path.join(HERE, ".venv-models")
ORT_VERSION = "1.32.0"        # the version design.md's yardsticks were measured with
ORT_PACKAGES = [f"onnxruntime=={ORT_VERSION}"]
CHART_PACKAGES = ["matplotlib"]
# torch 2.13.0 is the CPU build this machine keeps on disk (a bare "torch" pulls a CUDA one).
MODEL_PACKAGES = {"torch": ["torch==2.13.0", "onnx", "onnxscript"],
                  "sklearn": ["scikit-learn", "skl2onnx", "onnx"]}


def python_in(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def ensure(venv: str, packages: list[str], timeout: float = 1800) -> str:
    """Create venv if needed and pip-install what it lacks of packages; return its python.

    Raises RuntimeError (with pip's last words) when either step fails. A lock file keeps
    two runs (say, two test processes) from filling the same venv at once.
    """
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python, marker = python_in(venv), os.path.join(venv, "bench-installed.json")
        if not os.path.exists(python):
            _check([sys.executable, "-m", "venv", "--clear", venv], timeout, "creating " + venv)
        done = json.load(open(marker)) if os.path.exists(marker) else []
        missing = [p for p in packages if p not in done]
        if missing:
            _check([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--retries", "1", "--timeout", "30", *missing], timeout, "pip install " + " ".join(missing))
            with open(marker, "w") as f:
                json.dump(done + missing, f)
        return python


def _check(cmd, timeout, what):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: timed out after {timeout:.0f} s") from None
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr + res.stdout).splitlines() if "is ignored" not in ln]
        raise RuntimeError(f"{what} failed: " + "\n".join(lines[-5:]))
