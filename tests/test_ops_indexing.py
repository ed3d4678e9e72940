"""Property tests for the gather/scatter, sorting, cumulative and resize families against
onnx.reference.ReferenceEvaluator: hypothesis draws shapes, axes (negative too), indices
(negative too) and attributes. Out-of-range indices must raise InvalidArgument, never
read or write out of bounds."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper

import onnxruntime as ort
from ortjit.errors import InvalidArgument, RuntimeException
from tests.util import make_model, reference

PROPS = settings(max_examples=25, deadline=None, derandomize=True)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def run(model, feed):
    return ort.InferenceSession(model.SerializeToString()).run(None, feed)


def same(model, feed, rtol=1e-5):
    got, want = run(model, feed), reference(model, feed)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6)


@PROPS
@given(shapes, st.data())
def test_scatter_elements(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    n = shape[axis]
    idx_shape = tuple(data.draw(st.integers(1, d), label=f"idx dim {k}") for k, d in enumerate(shape))
    reduction = data.draw(st.sampled_from(["none", "add", "mul", "max", "min"]), label="reduction")
    rng = np.random.default_rng(data.draw(st.integers(0, 99), label="seed"))
    if reduction == "none":  # distinct targets per line, or the result depends on write order
        idx = np.stack([rng.permutation(n)[:idx_shape[axis % len(shape)]] for _ in
                        range(int(np.prod(idx_shape)) // idx_shape[axis % len(shape)])])
        idx = np.moveaxis(idx.reshape(tuple(d for k, d in enumerate(idx_shape) if k != axis % len(shape))
                                      + (idx_shape[axis % len(shape)],)), -1, axis % len(shape))
    else:
        idx = rng.integers(-n, n, idx_shape)
    x = rng.standard_normal(shape).astype(np.float32)
    upd = rng.standard_normal(idx.shape).astype(np.float32)
    model = make_model(helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=axis, reduction=reduction),
                       {"x": x, "i": idx.astype(np.int64), "u": upd}, ["y"], opset=18)
    same(model, {"x": x, "i": idx.astype(np.int64), "u": upd})


@pytest.mark.parametrize("op", ["ScatterElements", "GatherElements"])
def test_out_of_range_index_raises_and_session_survives(op):
    x = np.zeros((3, 4), np.float32)
    inputs = {"x": x, "i": np.zeros((1, 4), np.int64)}
    names = ["x", "i"]
    if op == "ScatterElements":
        inputs["u"] = np.ones((1, 4), np.float32)
        names.append("u")
    model = make_model(helper.make_node(op, names, ["y"], axis=0), inputs, ["y"], opset=18)
    sess = ort.InferenceSession(model.SerializeToString())
    bad = dict(inputs, i=np.array([[0, 3, 1, -4]], np.int64))
    with pytest.raises((InvalidArgument, RuntimeException), match="out of|bounds"):
        sess.run(None, bad)
    assert sess.run(None, inputs)[0].shape == ((3, 4) if op == "ScatterElements" else (1, 4))


@PROPS
@given(st.integers(1, 3), st.integers(0, 1), st.data())
def test_gather_nd(k, batch_dims, data):
    shape = tuple(data.draw(st.integers(1, 3), label=f"dim {j}") for j in range(batch_dims + k + 1))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    n = data.draw(st.integers(1, 3), label="rows")
    idx = np.stack([rng.integers(-shape[batch_dims + j], shape[batch_dims + j], shape[:batch_dims] + (n,))
                    for j in range(k)], axis=-1).astype(np.int64)
    model = make_model(helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims),
                       {"x": x, "i": idx}, ["y"], opset=13)
    same(model, {"x": x, "i": idx})


@PROPS
@given(shapes, st.data())
def test_topk(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    k = data.draw(st.integers(0, shape[axis]), label="k")
    largest = data.draw(st.integers(0, 1), label="largest")
    x = np.random.default_rng(1).integers(-3, 4, shape).astype(np.float32)  # ties on purpose
    model = make_model(helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest),
                       {"x": x}, ["v", "i"], {"k": np.array([k], np.int64)}, opset=11)
    same(model, {"x": x})


@PROPS
@given(shapes, st.data())
def test_cumsum(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    attrs = {"exclusive": data.draw(st.integers(0, 1), label="exclusive"),
             "reverse": data.draw(st.integers(0, 1), label="reverse")}
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    a = np.array(axis, np.int64)
    model = make_model(helper.make_node("CumSum", ["x", "a"], ["y"], **attrs), {"x": x, "a": a}, ["y"], opset=14)
    same(model, {"x": x, "a": a})


@PROPS
@given(st.integers(2, 5), st.integers(2, 5), st.integers(-4, 4), st.integers(0, 1))
def test_trilu(rows, cols, k, upper):
    x = np.random.default_rng(3).standard_normal((2, rows, cols)).astype(np.float32)
    kk = np.array(k, np.int64)
    model = make_model(helper.make_node("Trilu", ["x", "k"], ["y"], upper=upper), {"x": x, "k": kk}, ["y"], opset=14)
    same(model, {"x": x, "k": kk})


@PROPS
@given(st.sampled_from(["nearest", "linear", "cubic"]),
       st.sampled_from(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]),
       st.tuples(st.integers(1, 5), st.integers(1, 5)), st.tuples(st.integers(1, 7), st.integers(1, 7)))
def test_resize_sizes(mode, ctm, in_hw, out_hw):
    x = np.random.default_rng(4).standard_normal((1, 2) + in_hw).astype(np.float32)
    sizes = np.array((1, 2) + out_hw, np.int64)
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, coordinate_transformation_mode=ctm)
    model = make_model(node, {"x": x}, ["y"], {"sizes": sizes}, opset=19)
    same(model, {"x": x}, rtol=1e-4)


@pytest.mark.parametrize("equation,shapes_", [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]), ("ii->i", [(3, 3)]),
    ("i,i", [(4,), (4,)]), ("...ij->...ji", [(2, 3, 4)]), ("ij", [(2, 3)]), ("ijk->", [(2, 3, 4)]),
])
def test_einsum(equation, shapes_):
    rng = np.random.default_rng(5)
    feed = {f"x{k}": rng.standard_normal(s).astype(np.float32) for k, s in enumerate(shapes_)}
    model = make_model(helper.make_node("Einsum", list(feed), ["y"], equation=equation), feed, ["y"], opset=12)
    same(model, feed, rtol=1e-4)


def test_seeded_random_ops_repeat_within_a_session_and_respect_bounds():
    node = helper.make_node("RandomUniformLike", ["x"], ["y"], low=-2.0, high=3.0, seed=7.0)
    model = make_model(node, {"x": np.zeros((50,), np.float32)}, ["y"], opset=17)
    a = run(model, {"x": np.zeros((50,), np.float32)})[0]
    b = run(model, {"x": np.zeros((50,), np.float32)})[0]
    np.testing.assert_array_equal(a, b)  # the same seed, a fresh session: the same draws
    assert a.dtype == np.float32 and a.min() >= -2 and a.max() < 3 and len(np.unique(a)) > 40
