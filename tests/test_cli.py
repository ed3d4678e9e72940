"""The ortjit command line, run as a user would: a subprocess."""
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper


def _ortjit(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ortjit", *args], capture_output=True, text=True, timeout=300, **kw)


def test_run_default_example_prints_outputs_and_timings():
    res = _ortjit("run", "--repeat", "3")
    assert res.returncode == 0, res.stderr
    assert "output output_label" in res.stdout and "output output_probability" in res.stdout
    assert "load + optimize" in res.stdout and "first run" in res.stdout and "steady run" in res.stdout


def test_explain_shows_fused_kernel(tmp_path):
    nodes = [helper.make_node("Mul", ["X", "X"], ["a"]), helper.make_node("Sigmoid", ["a"], ["Y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 8])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g), str(path))
    np.save(tmp_path / "x.npy", np.ones((2, 8), np.float32))
    res = _ortjit("explain", str(path), "--input", f"X={tmp_path / 'x.npy'}")
    assert res.returncode == 0, res.stderr
    assert "fused group" in res.stdout and "Mul -> Sigmoid" in res.stdout
    assert "def kernel(" in res.stdout and "[2, 8]" in res.stdout


def test_bad_model_path_is_a_clear_error(tmp_path):
    res = _ortjit("run", str(tmp_path / "missing.onnx"))
    assert res.returncode == 1 and "NoSuchFile" in res.stderr and "missing.onnx" in res.stderr
