"""The compile helper: a first run with cold caches forks a process that compiles the
plan's later kernels, backwards, on zeros; the run then loads them from the disk cache."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

import onnx
from onnx import TensorProto, helper

from tests.util import COUNT_COMPILES

W1 = np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 8)
W2 = np.linspace(1, -1, 64, dtype=np.float32).reshape(8, 8)
W3 = np.linspace(-1, 2, 24, dtype=np.float32).reshape(8, 3)


def _model(path):
    """x[N, 4] -> MatMul -> Relu -> MatMul -> Softmax -> MatMul -> Tanh: six kernel calls."""
    inits = [helper.make_tensor(n, TensorProto.FLOAT, w.shape, w.ravel()) for n, w in (("w1", W1), ("w2", W2), ("w3", W3))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("MatMul", ["b", "w2"], ["c"]), helper.make_node("Softmax", ["c"], ["d"], axis=-1),
             helper.make_node("MatMul", ["d", "w3"], ["e"]), helper.make_node("Tanh", ["e"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _expected(rows):
    x = np.linspace(-2, 2, rows * 4, dtype=np.float32).reshape(rows, 4)
    c = np.maximum(x @ W1, 0) @ W2
    d = np.exp(c - c.max(-1, keepdims=True))
    return np.tanh(d / d.sum(-1, keepdims=True) @ W3)

SCRIPT = COUNT_COMPILES + r"""
import json, os, sys
import numpy as np
import ortjit
from ortjit import compile_helper
model = ortjit.compile(sys.argv[1])
x = np.linspace(-2, 2, 20, dtype=np.float32).reshape(5, 4)
if sys.argv[2] == "backwards":   # what the helper does, here in this process
    plan = model.plan_for(model.validate_feed({"x": x}))
    compile_helper._compile_backwards(plan, [x], 0)
    before = len(compiles)
    y = model.run({"x": x})[0]
    print(json.dumps({"helper_compiles": before, "run_compiles": len(compiles) - before, "y": y.tolist()}))
else:
    forked = []
    real = compile_helper._fork_helper
    compile_helper._fork_helper = lambda *a: forked.append(1) or real(*a)
    y = model.run({"x": x})[0]
    try:
        left = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        left = None
    print(json.dumps({"forked": len(forked), "children_left": left, "y": y.tolist()}))
"""


def _run(tmp_path, mode, **env):
    full = dict(os.environ, ORTJIT_CACHE_DIR=str(tmp_path / "cache"), **env)
    res = subprocess.run([sys.executable, "-c", SCRIPT, _model(str(tmp_path / "m.onnx")), mode],
                         capture_output=True, text=True, env=full, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_compiling_backwards_on_zeros_leaves_nothing_for_the_run_to_compile(tmp_path):
    got = _run(tmp_path, "backwards")
    assert got["helper_compiles"] > 0 and got["run_compiles"] == 0
    np.testing.assert_allclose(got["y"], _expected(5), rtol=1e-5)


def test_a_cold_first_run_forks_the_helper_and_reaps_it(tmp_path):
    got = _run(tmp_path, "run", ORTJIT_COMPILE_HELPER="1")
    assert got["forked"] == 1 and got["children_left"] is None
    np.testing.assert_allclose(got["y"], _expected(5), rtol=1e-5)
    warm = _run(tmp_path, "run", ORTJIT_COMPILE_HELPER="1")    # nothing to compile: no helper
    assert warm["forked"] == 0
    (tmp_path / "off").mkdir()
    off = _run(tmp_path / "off", "run", ORTJIT_COMPILE_HELPER="0")
    assert off["forked"] == 0
    np.testing.assert_allclose(off["y"], _expected(5), rtol=1e-5)
