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


# ---------------------------------------------------------------- more gather/scatter

def _rng(data):
    return np.random.default_rng(data.draw(st.integers(0, 999), label="seed"))


@PROPS
@given(shapes, st.integers(1, 3), st.data())
def test_scatter_nd(shape, rows, data):
    k = data.draw(st.integers(1, len(shape)), label="k")
    reduction = data.draw(st.sampled_from(["none", "add", "mul", "max", "min"]), label="reduction")
    rng = _rng(data)
    if reduction == "none":  # distinct targets, or the result depends on write order
        flat = rng.permutation(int(np.prod(shape[:k])))[:rows]
        idx = np.stack(np.unravel_index(flat, shape[:k]), axis=-1)
        idx = np.where(rng.integers(0, 2, idx.shape) == 1, idx - np.array(shape[:k]), idx)  # negative too
    else:
        idx = np.stack([rng.integers(-shape[j], shape[j], rows) for j in range(k)], axis=-1)
    idx = idx.astype(np.int64)
    x = rng.standard_normal(shape).astype(np.float32)
    upd = rng.standard_normal((len(idx),) + shape[k:]).astype(np.float32)
    feed = {"x": x, "i": idx, "u": upd}
    model = make_model(helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=reduction), feed, ["y"],
                       opset=18)
    if reduction == "none" or not (idx < 0).any():
        same(model, feed)
    else:  # the reference evaluator does not wrap negative indices when it reduces: numpy is the oracle
        want = x.copy()
        where = tuple(np.where(idx[:, j] < 0, idx[:, j] + shape[j], idx[:, j]) for j in range(k))
        {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[reduction].at(want, where, upd)
        np.testing.assert_allclose(run(model, feed)[0], want, rtol=1e-5)


@PROPS
@given(shapes, st.data())
def test_gather_elements(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    idx_shape = tuple(data.draw(st.integers(0, 4), label="along axis") if k == axis % len(shape)
                      else d for k, d in enumerate(shape))
    rng = _rng(data)
    idx = rng.integers(-shape[axis], shape[axis], idx_shape).astype(np.int64)
    x = rng.standard_normal(shape).astype(np.float32)
    model = make_model(helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis), {"x": x, "i": idx}, ["y"],
                       opset=13)
    # the reference evaluator mishandles a negative axis (it slices shapes with it): numpy is the oracle
    np.testing.assert_array_equal(run(model, {"x": x, "i": idx})[0], np.take_along_axis(x, idx, axis))


OUT_OF_RANGE = {  # op: (inputs, attributes, opset, bad indices): every one must raise, none may read or write
    "Gather": ({"x": np.zeros((3, 4), np.float32), "i": np.array([1, 2], np.int64)}, {"axis": 1}, 13,
               np.array([1, 4], np.int64)),
    "GatherND": ({"x": np.zeros((3, 4), np.float32), "i": np.array([[0, 1]], np.int64)}, {}, 13,
                 np.array([[0, -5]], np.int64)),
    "ScatterND": ({"x": np.zeros((3, 4), np.float32), "i": np.array([[2]], np.int64),
                   "u": np.ones((1, 4), np.float32)}, {"reduction": "add"}, 18, np.array([[3]], np.int64)),
    "Scatter": ({"x": np.zeros((3, 4), np.float32), "i": np.array([[0, 1]], np.int32),
                 "u": np.ones((1, 2), np.float32)}, {"axis": 1}, 10, np.array([[0, -9]], np.int32)),
    "ScatterElements": ({"x": np.zeros((3, 4), np.float32), "i": np.array([[0], [1]], np.int64),
                         "u": np.ones((2, 1), np.float32)}, {"axis": 0, "reduction": "max"}, 18,
                        np.array([[0], [2**40]], np.int64)),
    "TensorScatter": ({"x": np.zeros((2, 5, 3), np.float32), "u": np.ones((2, 2, 3), np.float32),
                       "i": np.array([0, 3], np.int64)}, {}, 24, np.array([0, 4], np.int64)),
}


@pytest.mark.parametrize("op", sorted(OUT_OF_RANGE))
def test_more_out_of_range_indices_raise(op):
    inputs, attrs, opset, bad = OUT_OF_RANGE[op]
    model = make_model(helper.make_node(op, list(inputs), ["y"], **attrs), inputs, ["y"], opset=opset)
    sess = ort.InferenceSession(model.SerializeToString())
    with pytest.raises(InvalidArgument):
        sess.run(None, dict(inputs, i=bad))
    good = sess.run(None, inputs)[0]  # the session still works
    if op != "Scatter":  # the reference evaluator has no Scatter
        np.testing.assert_array_equal(good, reference(model, inputs)[0])


# ---------------------------------------------------------------- sorting, selection

def test_topk_orders_nan_as_the_largest():
    x = np.array([[1, np.nan, 3, np.nan, np.inf, 3, -np.inf]], np.float32)
    for largest in (0, 1):
        model = make_model(helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest),
                           {"x": x}, ["v", "i"], {"k": np.array([5], np.int64)}, opset=11)
        v, i = run(model, {"x": x})
        want = [1, 3, 4, 2, 5] if largest else [6, 0, 2, 5, 4]
        np.testing.assert_array_equal(i[0], want)
        np.testing.assert_array_equal(v[0], x[0, want])


def _unique_oracle(x, axis, keep_sorted):
    """numpy's unique, reordered by first occurrence when unsorted (the reference evaluator
    fails on unsorted flattened input)."""
    data = x.reshape(-1) if axis is None else x
    y, first, inv, counts = np.unique(data, return_index=True, return_inverse=True, return_counts=True, axis=axis)
    inv = inv.reshape(-1)
    if not keep_sorted:
        order = np.argsort(first, kind="stable")
        rank = np.argsort(order)
        y, first, counts, inv = np.take(y, order, axis=0 if axis is None else axis), first[order], counts[order], \
            rank[inv]
    return y, first, inv, counts


@PROPS
@given(shapes, st.data())
def test_unique(shape, data):
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))), label="axis")
    keep_sorted = data.draw(st.integers(0, 1), label="sorted")
    x = _rng(data).integers(0, 3, shape).astype(data.draw(st.sampled_from([np.float32, np.int64]), label="dtype"))
    attrs = {"sorted": keep_sorted} if axis is None else {"sorted": keep_sorted, "axis": axis}
    model = make_model(helper.make_node("Unique", ["x"], ["y", "i", "inv", "c"], **attrs), {"x": x},
                       ["y", "i", "inv", "c"], opset=11)
    got = run(model, {"x": x})
    for g, w in zip(got, _unique_oracle(x, None if axis is None else axis % len(shape), keep_sorted)):
        assert g.dtype == (x.dtype if g is got[0] else np.int64)
        np.testing.assert_array_equal(g, w)


@PROPS
@given(st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple), st.data())
def test_nonzero_compress_onehot(shape, data):
    rng = _rng(data)
    x = (rng.integers(0, 3, shape) * rng.integers(0, 2, shape)).astype(np.float32)
    same(make_model(helper.make_node("NonZero", ["x"], ["y"]), {"x": x}, ["y"], opset=13), {"x": x})
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))), label="axis")
    n = x.size if axis is None else shape[axis]
    cond = rng.integers(0, 2, data.draw(st.integers(0, n), label="cond length")).astype(bool)
    attrs = {} if axis is None else {"axis": axis}
    feed = {"x": x, "c": cond}
    same(make_model(helper.make_node("Compress", ["x", "c"], ["y"], **attrs), feed, ["y"], opset=11), feed)
    depth = data.draw(st.integers(1, 4), label="depth")
    idx = rng.integers(-depth - 2, depth + 2, shape).astype(np.int64)  # out of range: all off values
    oh_axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="onehot axis")
    model = make_model(helper.make_node("OneHot", ["i", "d", "v"], ["y"], axis=oh_axis), {"i": idx}, ["y"],
                       {"d": np.array(depth, np.int64), "v": np.array([-1, 5], np.float32)}, opset=11)
    same(model, {"i": idx})


@PROPS
@given(st.integers(1, 4), st.integers(1, 5), st.integers(0, 1), st.data())
def test_reverse_sequence(batch, steps, batch_axis, data):
    shape = (batch, steps, 2) if batch_axis == 0 else (steps, batch, 2)
    lens = np.array([data.draw(st.integers(0, steps), label=f"len {b}") for b in range(batch)], np.int64)
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    model = make_model(helper.make_node("ReverseSequence", ["x", "l"], ["y"], batch_axis=batch_axis,
                                        time_axis=1 - batch_axis), {"x": x, "l": lens}, ["y"], opset=10)
    same(model, {"x": x, "l": lens})
    with pytest.raises(InvalidArgument):
        run(model, {"x": x, "l": np.full_like(lens, steps + 1)})


@pytest.mark.parametrize("op", ["CumSum", "CumProd"])
def test_cumulative_over_an_empty_axis(op):
    x = np.zeros((0, 3), np.float32)
    for exclusive, reverse in [(0, 0), (1, 0), (1, 1)]:
        model = make_model(helper.make_node(op, ["x", "a"], ["y"], exclusive=exclusive, reverse=reverse),
                           {"x": x}, ["y"], {"a": np.array(0, np.int64)}, opset=26 if op == "CumProd" else 14)
        assert run(model, {"x": x})[0].shape == (0, 3)


# ---------------------------------------------------------------- reductions and shape ops

REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.sampled_from(REDUCE), st.lists(st.integers(0, 3), min_size=1, max_size=3).map(tuple), st.data())
def test_reduce_with_empty_dims_and_axes_input(op, shape, data):
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(-rank, rank - 1), unique_by=lambda a: a % rank, max_size=rank), label="axes")
    keepdims = data.draw(st.integers(0, 1), label="keepdims")
    noop = data.draw(st.integers(0, 1), label="noop_with_empty_axes")
    x = _rng(data).uniform(0.1, 2.0, shape).astype(np.float32)
    if op in ("ReduceMax", "ReduceMin") and data.draw(st.booleans(), label="bool"):
        x = x > 1.0  # bool input: opset 20
    opset = 20 if x.dtype == bool else 18
    model = make_model(helper.make_node(op, ["x", "a"], ["y"], keepdims=keepdims, noop_with_empty_axes=noop),
                       {"x": x}, ["y"], {"a": np.array(axes, np.int64)}, opset=opset)
    with np.errstate(all="ignore"):
        same(model, {"x": x}, rtol=1e-4)


@PROPS
@given(st.lists(st.integers(0, 3), min_size=1, max_size=4).map(tuple), st.data())
def test_shape_ops(shape, data):
    rng = _rng(data)
    x = rng.standard_normal(shape).astype(np.float32)
    rank = len(shape)
    # Reshape: shuffle the dims, one of them as -1 (unless that is ambiguous) or 0 (copied)
    target = list(rng.permutation(shape)) if 0 not in shape else list(shape)
    j = data.draw(st.integers(0, rank - 1), label="special dim")
    if 0 not in shape:
        target[j] = -1
    elif target[j] == shape[j]:
        target[j] = 0
    cases = [
        ("Reshape", {"s": np.array(target, np.int64)}, {}),
        ("Unsqueeze", {"a": np.array(sorted({data.draw(st.integers(-rank - 1, rank), label="unsq")}), np.int64)}, {}),
        ("Squeeze", {"a": np.array([k for k, d in enumerate(shape) if d == 1], np.int64)}, {}),
        ("Tile", {"r": rng.integers(0, 3, rank).astype(np.int64)}, {}),
        ("Expand", {"s": np.array([2] + [1 if rng.integers(0, 2) else d for d in shape], np.int64)}, {}),
        ("Shape", {}, {"start": data.draw(st.integers(-5, 5), label="start"),
                       "end": data.draw(st.integers(-5, 5), label="end")}),
        ("Size", {}, {}),
    ]
    for op, consts, attrs in cases:
        model = make_model(helper.make_node(op, ["x"] + list(consts), ["y"], **attrs), {"x": x}, ["y"], consts,
                           opset=18)
        same(model, {"x": x})
    # the reference evaluator's Flatten fails on empty dims (it reshapes with -1): numpy is the oracle
    axis = data.draw(st.integers(-rank, rank), label="flatten axis")
    model = make_model(helper.make_node("Flatten", ["x"], ["y"], axis=axis), {"x": x}, ["y"], opset=13)
    a = axis + rank if axis < 0 else axis
    want = x.reshape(int(np.prod(shape[:a])), int(np.prod(shape[a:])))
    np.testing.assert_array_equal(run(model, {"x": x})[0], want)


@PROPS
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), st.data())
def test_pad_modes_with_axes(shape, data):
    rank = len(shape)
    mode = data.draw(st.sampled_from(["constant", "reflect", "edge", "wrap"]), label="mode")
    axes = data.draw(st.lists(st.integers(0, rank - 1), unique=True, min_size=1, max_size=rank), label="axes")
    # reflect needs pads below the dim (crops, negative pads, are in test_ops_tensor.py: the
    # reference evaluator does not take them)
    top = {"reflect": lambda d: d - 1, "wrap": lambda d: 2 * d}.get(mode, lambda d: 3)
    pads = [data.draw(st.integers(0, top(shape[a])), label="pad") for a in axes for _ in range(2)]
    pads = pads[0::2] + pads[1::2]
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    consts = {"p": np.array(pads, np.int64), "v": np.array(-1.5, np.float32), "a": np.array(axes, np.int64)}
    model = make_model(helper.make_node("Pad", ["x", "p", "v", "a"], ["y"], mode=mode), {"x": x}, ["y"], consts,
                       opset=19)
    same(model, {"x": x})


BAD_NODES = {  # a node whose inputs do not fit its spec: InvalidArgument naming the node, not a numpy error
    "einsum output label": ("Einsum", {"a": np.zeros((2, 3), np.float32)}, {"equation": "ij->k"}, 12),
    "einsum repeated output": ("Einsum", {"a": np.zeros((2, 3), np.float32)}, {"equation": "ij->ii"}, 12),
    "einsum symbol": ("Einsum", {"a": np.zeros((2, 3), np.float32)}, {"equation": "i1->i"}, 12),
    "gathernd empty index tuple": ("GatherND", {"x": np.zeros((2, 3), np.float32), "i": np.zeros((2, 0), np.int64)},
                                   {}, 13),
    "scatterelements indices wider than data": (
        "ScatterElements", {"x": np.zeros((2, 3), np.float32), "i": np.zeros((3, 1), np.int64),
                            "u": np.zeros((3, 1), np.float32)}, {"axis": 1}, 18),
    "tensorscatter update shape": ("TensorScatter", {"c": np.zeros((2, 5, 3), np.float32),
                                                     "u": np.zeros((2, 2, 4), np.float32)}, {}, 24),
    "tensorscatter write_indices": ("TensorScatter", {"c": np.zeros((2, 5, 3), np.float32),
                                                      "u": np.zeros((2, 2, 3), np.float32),
                                                      "w": np.zeros((3,), np.int64)}, {}, 24),
    "argmax of a scalar": ("ArgMax", {"x": np.array(1.0, np.float32)}, {}, 13),
    "cumsum axis not a scalar": ("CumSum", {"x": np.zeros((2, 3), np.float32), "a": np.array([0, 1], np.int64)},
                                 {}, 14),
}


@pytest.mark.parametrize("case", sorted(BAD_NODES))
def test_inputs_that_do_not_fit_raise_invalid_argument(case):
    op, inputs, attrs, opset = BAD_NODES[case]
    node = helper.make_node(op, list(inputs), ["y"], name="bad", **attrs)
    with pytest.raises(InvalidArgument, match="bad"):
        run(make_model(node, inputs, ["y"], opset=opset), inputs)
