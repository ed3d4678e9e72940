"""The vectorizable float32 exp/tanh/erf of generated loops (ortjit/codegen/cpu/vmath.py),
on a dense grid through a real session, against float64 libm rounded to float32."""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxruntime as ort

GRID = np.concatenate([np.linspace(-100, 100, 400_001), np.linspace(-3, 3, 300_001),
                       np.geomspace(1e-30, 10, 20_000), -np.geomspace(1e-30, 10, 20_000)]).astype(np.float32)
SPECIAL = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 88.72, 88.73, -87.3, -104.0], np.float32)


def run(op, x):
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


@pytest.mark.parametrize("op, exact, rtol", [("Exp", np.exp, 2e-7), ("Tanh", np.tanh, 3e-7),
                                             ("Erf", np.vectorize(math.erf), 5e-7)])
def test_accuracy_on_a_dense_grid(op, exact, rtol):
    got = run(op, GRID).astype(np.float64)
    want = exact(GRID.astype(np.float64))
    with np.errstate(over="ignore"):
        normal = np.isfinite(want.astype(np.float32)) & (np.abs(want) >= np.finfo(np.float32).tiny)
    np.testing.assert_allclose(got[normal], want[normal], rtol=rtol, atol=0)
    # below float32's smallest normal, exp flushes to zero (no subnormal results)
    assert np.all(np.abs(got[~normal & np.isfinite(want) & (np.abs(want) < 1)]) < np.finfo(np.float32).tiny)


@pytest.mark.parametrize("op, exact", [("Exp", np.exp), ("Tanh", np.tanh), ("Erf", np.vectorize(math.erf))])
def test_special_values(op, exact):
    got = run(op, SPECIAL)
    with np.errstate(over="ignore"):
        want = exact(SPECIAL.astype(np.float64)).astype(np.float32)
    tiny = np.abs(want) < np.finfo(np.float32).tiny
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~tiny], want[~tiny], rtol=3e-7)
    zero = want == 0
    np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]))  # tanh(-0) = -0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 128, 131])
def test_softmax_rows_kernel_matches_numpy_with_nonfinite_rows(dtype, n):
    """Softmax over the last axis runs as one generated kernel (ortjit/ops/softmax.py), its
    row max in 16 lanes: rows of every length around the lane count, and rows holding NaN
    or infinities, give what numpy's formula gives."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((6, n)) * 20).astype(dtype)
    x[1, n // 2] = np.nan
    x[2, :] = -np.inf
    x[3, n - 1] = np.inf
    x[4, 0] = 1e4
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                                             list(x.shape))],
                              [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                                             None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
        want = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    # float32: x - max rounds to float32 before the exp, so tiny results (exp(-80)) carry
    # a relative error of about 80 * 6e-8, as numpy's own float32 softmax does
    np.testing.assert_allclose(got, want.astype(dtype), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-30)


def test_softmax_rows_with_the_vector_row_max():
    """Softmax's float32 rows take their max from codegen/cpu/vreduce.py's row_max: every
    length around the 16-lane vectors, the max anywhere in the row, and a NaN or +inf in a
    row turning that row (only) NaN, as numpy's formula does."""
    rng = np.random.default_rng(3)
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])])
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                .SerializeToString())
    for n in [1, 2, 15, 16, 17, 31, 32, 33, 100, 1000]:
        x = (rng.standard_normal((600, n)) * 20).astype(np.float32)
        x[np.arange(600), rng.integers(0, n, 600)] += 60   # the max at a random place per row
        x[5, n // 2] = np.nan
        x[7, n - 1] = np.inf
        with np.errstate(invalid="ignore"):
            e = np.exp(x.astype(np.float64) - x.astype(np.float64).max(axis=1, keepdims=True))
            want = e / e.sum(axis=1, keepdims=True)
        want[5] = np.nan   # numpy's max is NaN there; ours skips it, then exp(NaN) poisons the sum
        got = sess.run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
        assert np.isnan(got[5]).all() and np.isnan(got[7]).all() and not np.isnan(np.delete(got, [5, 7], 0)).any()
