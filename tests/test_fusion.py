"""Elementwise fusion: a chain of elementwise ops becomes one generated kernel, visible in
the plan, with the same results as the unoptimized graph; its source can be printed."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from onnx import helper

import onnxruntime as ort
from tests.util import make_model, reference

RNG = np.random.default_rng(7)


def chain_model():
    """y = Sigmoid(x * w + b) * x - 1: five elementwise nodes, w and b broadcast along rows."""
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["t0"]),
        helper.make_node("Add", ["t0", "b"], ["t1"]),
        helper.make_node("Sigmoid", ["t1"], ["t2"]),
        helper.make_node("Mul", ["t2", "x"], ["t3"]),
        helper.make_node("Sub", ["t3", "one"], ["y"]),
    ]
    inits = {"w": RNG.standard_normal((1, 16)).astype(np.float32), "b": RNG.standard_normal(16).astype(np.float32),
             "one": np.array(1.0, np.float32)}
    return make_model(nodes, {"x": np.zeros((4, 16), np.float32)}, ["y"], inits)


def session(model, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, **config):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), so)


def steps(sess):
    """The kernel calls of the session's (single) plan: (op_type, kernel name)."""
    (plan,) = sess._sess.plans.values()
    return [(s.op_type, getattr(s.fn, "name", "")) for s in plan.steps]


def test_chain_is_one_kernel_with_unoptimized_results():
    model = chain_model()
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    fused = session(model)
    plain = session(model, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    got, unfused = fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0]

    assert steps(fused) == [("FusedElementwise", "fused_mul_add_sigmoid_sub")]
    assert [op for op, _ in steps(plain)] == ["Mul", "Add", "Sigmoid", "Mul", "Sub"]
    np.testing.assert_allclose(got, unfused, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got, reference(model, {"x": x})[0], rtol=1e-5, atol=1e-6)
    assert fused._sess.fused_groups()[0][1] == ["Mul", "Add", "Sigmoid", "Mul", "Sub"]


def test_fused_kernel_serves_a_second_shape():
    """Same broadcast pattern, other sizes: the same kernel source, one plan per shape."""
    model = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Exp", ["r"], ["y"])],
                       {"x": np.zeros((2, 3), np.float32)}, ["y"])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    sess = session(model)
    for batch in (2, 5):
        x = RNG.standard_normal((batch, 3)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], np.exp(np.maximum(x, 0)), rtol=1e-6)
    assert len(sess._sess.plans) == 2
    assert len(set(sess._sess.kernel_sources().values())) == 1


def test_value_used_outside_the_chain_stays_correct():
    """An intermediate that is also a graph output, and one read by a non-elementwise node."""
    nodes = [
        helper.make_node("Exp", ["x"], ["e"]),
        helper.make_node("Neg", ["e"], ["n"]),
        helper.make_node("Abs", ["n"], ["y"]),
        helper.make_node("ReduceSum", ["n"], ["s"], keepdims=0),
    ]
    model = make_model(nodes, {"x": np.zeros((3, 5), np.float32)}, ["y", "e", "s"], opset=11)
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    got = session(model).run(None, {"x": x})
    for g, e in zip(got, reference(model, {"x": x})):
        np.testing.assert_allclose(g, e, rtol=1e-5)


def test_show_code_prints_the_fused_kernel_and_plan(capsys):
    import ortjit
    ortjit.show_code()
    try:
        session(chain_model()).run(None, {"x": np.ones((4, 16), np.float32)})
    finally:
        ortjit.show_code(None)
    err = capsys.readouterr().err
    assert "# ---- ortjit kernel fused_mul_add_sigmoid_sub" in err
    assert "@numba.njit" in err and "def kernel(in0" in err
    assert "plan: 1 kernel calls" in err


def test_show_code_environment_variable(tmp_path):
    path = tmp_path / "chain.onnx"
    path.write_bytes(chain_model().SerializeToString())
    script = ("import numpy as np, onnxruntime as ort\n"
              f"s = ort.InferenceSession({str(path)!r})\n"
              "s.run(None, {'x': np.ones((4, 16), np.float32)})\n")
    env = dict(os.environ, ORTJIT_SHOW_CODE="1")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "def kernel(" in res.stderr and "FusedElementwise" in res.stderr


def test_transformation_steps_limit_the_passes():
    """max_num_graph_transformation_steps = 0 leaves the graph as it is."""
    so = ort.SessionOptions()
    so.max_num_graph_transformation_steps = 0
    sess = ort.InferenceSession(chain_model().SerializeToString(), so)
    sess.run(None, {"x": np.ones((4, 16), np.float32)})
    assert [op for op, _ in steps(sess)] == ["Mul", "Add", "Sigmoid", "Mul", "Sub"]
