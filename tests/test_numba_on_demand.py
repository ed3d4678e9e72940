"""Numba imported when the first kernel is needed (ortjit/jit.py), and first calls in numpy
where numpy gives the kernel's result bit for bit (codegen/elementwise.numpy_twin)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

import onnxruntime as ort
from ortjit.codegen.elementwise import numpy_twin

FRESH = r"""
import json, sys, numpy as np
from onnx import helper, TensorProto
import onnxruntime as ort
op, threads = sys.argv[1], int(sys.argv[2])
x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [3, 2])
z = helper.make_tensor_value_info("Z", TensorProto.FLOAT, [3, 2])
if op == "MulAdd":   # one fused loop of two exact ops
    nodes = [helper.make_node("Mul", ["X", "X"], ["T"]), helper.make_node("Add", ["T", "X"], ["Z"])]
else:
    nodes = [helper.make_node(op, ["X", "X"] if op == "Mul" else ["X"], ["Z"])]
m = helper.make_model(helper.make_graph(nodes, "g", [x], [z]), opset_imports=[helper.make_opsetid("", 17)])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
s = ort.InferenceSession(m.SerializeToString(), so)
report = {"after_session": "numba" in sys.modules}
feed = {"X": np.array([[1.5, -2.0], [0.0, 3.0], [-0.5, 4.0]], np.float32)}
report["first"] = s.run(None, feed)[0].tolist()
report["after_first"] = "numba" in sys.modules
report["second"] = s.run(None, feed)[0].tolist()
report["after_second"] = "numba" in sys.modules
if "numba" in sys.modules:
    import numba
    report["threads"] = numba.get_num_threads()
print(json.dumps(report))
"""


def fresh(op, threads=0, **env):
    environ = dict(os.environ, **env)
    res = subprocess.run([sys.executable, "-c", FRESH, op, str(threads)], capture_output=True, text=True,
                         env=environ, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_one_exact_op_runs_as_its_numpy_ufunc_and_never_imports_numba():
    r = fresh("Mul", threads=1)
    assert r["first"] == r["second"] == [[2.25, 4.0], [0.0, 9.0], [0.25, 16.0]]
    assert not r["after_session"] and not r["after_first"] and not r["after_second"]


def test_a_fused_loop_of_exact_ops_computes_its_first_call_in_numpy_then_compiles():
    r = fresh("MulAdd", threads=1)
    assert r["first"] == r["second"] == [[3.75, 2.0], [0.0, 12.0], [-0.25, 20.0]]
    assert not r["after_session"] and not r["after_first"]
    assert r["after_second"]     # the second run is the compiled kernel's
    assert r["threads"] == 1     # the session's thread count, set when Numba came


def test_a_first_run_that_needs_a_kernel_imports_numba_then():
    r = fresh("Relu", threads=1)
    assert not r["after_session"] and r["after_first"]
    assert r["first"] == r["second"] == [[1.5, 0.0], [0.0, 3.0], [0.0, 4.0]]
    assert r["threads"] == 1


def test_numpy_first_runs_can_be_turned_off():
    r = fresh("MulAdd", ORTJIT_NUMPY_FIRST_RUN="0")
    assert not r["after_session"] and r["after_first"]


def test_once_numba_is_ready_modules_hold_the_real_objects():
    from numba.core.dispatcher import Dispatcher

    from ortjit import jit
    from ortjit.ops import blas, pooling
    real = jit.ready()
    assert pooling.numba is real and blas.numba is real
    assert isinstance(blas._gemm, Dispatcher) and isinstance(blas.split, Dispatcher)
    assert jit.max_threads() == real.config.NUMBA_NUM_THREADS
    # kernel_cache.njit after that gives dispatchers at once
    from ortjit.kernel_cache import njit
    assert isinstance(njit(lambda v: v + 1), Dispatcher)


# ------------------------------------------------------------- the numpy first call

def _model(ops, dtype, shapes):
    """A chain: t0 = ops[0](x0, x1), t1 = ops[1](t0, x2) ... (unary ops take one input);
    ElementwiseFusion makes it one fused loop."""
    onnx_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info(f"x{k}", onnx_type, list(s)) for k, s in enumerate(shapes)]
    nodes, prev, k = [], "x0", 1
    for j, op in enumerate(ops):
        out = f"t{j}"
        if op in ("Neg", "Abs"):
            nodes.append(helper.make_node(op, [prev], [out]))
        else:
            nodes.append(helper.make_node(op, [prev, f"x{k}"], [out]))
            k += 1
        prev = out
    y = helper.make_tensor_value_info(prev, onnx_type, None)
    return helper.make_model(helper.make_graph(nodes, "chain", inputs[:k], [y]),
                             opset_imports=[helper.make_opsetid("", 17)]), k


def _same(a, b):
    """Equal bit for bit, NaNs in the same places (their payloads aside)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    if a.dtype.kind == "f":
        nan = np.isnan(a)
        np.testing.assert_array_equal(nan, np.isnan(b))
        a, b = np.where(nan, 0, a), np.where(nan, 0, b)
        bits = np.dtype(f"u{a.dtype.itemsize}")
        np.testing.assert_array_equal(a.view(bits), b.view(bits))
    else:
        np.testing.assert_array_equal(a, b)


def _values(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        edge = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -3.4e38, 3.4e38, 1.0, -1.0], dtype)
        v = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        edge = np.array([info.min, info.max, 0, 1, info.max // 2 + 1], dtype)
        v = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    flat = v.reshape(-1)
    picks = rng.random(flat.size) < 0.3
    flat[picks] = rng.choice(edge, int(picks.sum()))
    return v


CHAINS = [["Add"], ["Sub"], ["Mul"], ["Div"], ["Neg"], ["Abs"], ["Mul", "Add"], ["Sub", "Mul", "Neg", "Div"],
          ["Mul", "Mul", "Add", "Abs"]]
SHAPES = [[(5,)], [(3, 4), (4,)], [(2, 1, 3), (1, 4, 3)], [(6, 1), ()], [(0, 3), (3,)]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=st.sampled_from(CHAINS), dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint8]),
       shapes=st.sampled_from(SHAPES), seed=st.integers(0, 2 ** 31 - 1))
def test_numpy_computes_what_the_compiled_kernel_does_bit_for_bit(chain, dtype, shapes, seed):
    """A single exact op runs as its numpy ufunc (small) or as a compiled loop (large,
    parallel); a fused chain's first call may be numpy's: both must give the loop's bits."""
    from ortjit.codegen import cpu
    if np.dtype(dtype).kind != "f" and any(op in ("Div", "Neg", "Abs") for op in chain):
        chain = [op for op in chain if op in ("Add", "Sub", "Mul")] or ["Add"]
    model, n = _model(chain, dtype, [shapes[k % len(shapes)] for k in range(len(chain) + 1)])
    rng = np.random.default_rng(seed)
    feed = {f"x{k}": _values(rng, dtype, shapes[k % len(shapes)]) for k in range(n)}
    numpy_call = cpu.numpy_call
    cpu.numpy_call = lambda program: None      # every program a compiled loop
    try:
        compiled_sess = ort.InferenceSession(model.SerializeToString())
        compiled = compiled_sess.run(None, feed)[0]
        (kernel,) = _steps(compiled_sess, feed)
    finally:
        cpu.numpy_call = numpy_call
    assert isinstance(kernel, cpu.ElementwiseKernel) and kernel.twin is not None
    by_twin = np.empty_like(compiled)
    kernel.twin(*feed.values(), by_twin)
    _same(by_twin, compiled)
    if len(chain) == 1:
        sess = ort.InferenceSession(model.SerializeToString())
        _same(sess.run(None, feed)[0], compiled)
        (direct,) = _steps(sess, feed)
        assert direct.name.startswith("numpy.")


def _steps(sess, feed):
    """The plan's elementwise kernels for this feed."""
    model = sess._sess
    plan = model.plan_for(model.validate_feed(feed))
    return [getattr(s.fn, "kernel", s.fn) for s in plan.steps]


def test_steps_numpy_would_not_match_have_no_numpy_first_call():
    for ops, dtype in [(["Relu"], np.float32), (["Div"], np.int32), (["Neg"], np.int32), (["Add"], np.float16),
                       (["Exp"], np.float32), (["Mul", "Tanh"], np.float32)]:
        onnx_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        x = [helper.make_tensor_value_info(f"x{k}", onnx_type, [4]) for k in range(2)]
        nodes, prev = [], "x0"
        for j, op in enumerate(ops):
            args = [prev] if op in ("Relu", "Neg", "Exp", "Tanh") else [prev, "x1"]
            nodes.append(helper.make_node(op, args, [f"t{j}"]))
            prev = f"t{j}"
        used = x if any(op not in ("Relu", "Neg", "Exp", "Tanh") for op in ops) else x[:1]
        m = helper.make_model(helper.make_graph(nodes, "g", used, [helper.make_tensor_value_info(prev, onnx_type, None)]),
                              opset_imports=[helper.make_opsetid("", 17)])
        sess = ort.InferenceSession(m.SerializeToString())
        feed = {v.name: np.ones(4, dtype) for v in used}
        (kernel,) = _steps(sess, feed)
        assert getattr(kernel, "twin", None) is None, ops


def test_numpy_twin_needs_every_step_exact():
    from ortjit.codegen.elementwise import ScalarProgram, Step
    from ortjit.ops.arithmetic import Add
    from ortjit.ops.base import Info
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    add = Add()
    program = ScalarProgram(["a", "b"], [Info((2,), f32), Info((2,), f32)], [Step(add, None, ["a", "b"], "t", f32)],
                            ["t"], [f32])
    twin = numpy_twin(program)
    out = np.empty(2, f32)
    twin(np.array([1, 2], f32), np.array([3, 4], f32), out)
    assert out.tolist() == [4, 6]
    mixed = ScalarProgram(["a", "b"], [Info((2,), f32), Info((2,), f64)], [Step(add, None, ["a", "b"], "t", f64)],
                          ["t"], [f64])
    assert numpy_twin(mixed) is None   # numpy and Numba promote mixed operands differently


def test_ortjit_compile_ships_the_kernel_a_numpy_first_call_would_skip(tmp_path):
    model, _ = _model(["Mul", "Add"], np.float32, [(2, 3), (2, 3), (2, 3)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, "-m", "ortjit", "compile", str(path), "-o", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "out" / "ortjit-artifact.json").read_text())
    assert manifest["entries"]   # the fused loop's compiled kernel
