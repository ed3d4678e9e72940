"""The NN ops (MatMul, Gemm, Conv, pooling, normalization, softmax, reductions) against
onnx.reference.ReferenceEvaluator, through the onnxruntime facade.

Where the reference evaluator is known to be wrong, the expected values are computed
here with plain numpy instead, and the test says why:
- Softmax/LogSoftmax/Hardmax before opset 13: it ignores the coerce-to-2-D semantics;
- BatchNormalization opsets 7-13: it mixes in batch statistics (momentum) or fails;
- LRN: it loops over the batch dim instead of the channels (right only when N == C);
- AveragePool ceil_mode: it shifts the windows by part of the extra padding;
- MaxPool SAME_LOWER with strides: it pads like SAME_UPPER;
- LpPool with padding: it scales an average over the valid values by the kernel size;
- GlobalMaxPool over 3 spatial dims: it reduces the wrong axes.
"""
from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import onnxruntime as ort
from ortjit.errors import InvalidArgument, NotImplemented
from tests.util import assert_matches_reference, make_model, run_ours

RNG = np.random.default_rng(1234)
FAST = settings(max_examples=15, deadline=None, derandomize=True)


def rand(*shape, dtype=np.float32):
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(-5, 6, size=shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def node_model(op, inputs: dict, attrs=None, opset=17, outputs=("y",), inits=None, input_names=None):
    """One node; `inputs` are graph inputs, `inits` initializers; input_names orders them
    (an empty name: omitted optional input)."""
    names = input_names if input_names is not None else list(inputs) + list(inits or {})
    node = helper.make_node(op, names, list(outputs), **(attrs or {}))
    return make_model(node, inputs, list(outputs), inits, opset=opset)


def check(op, inputs: dict, attrs=None, opset=17, outputs=("y",), inits=None, input_names=None, rtol=1e-5, atol=1e-5):
    model = node_model(op, inputs, attrs, opset, outputs, inits, input_names)
    return assert_matches_reference(model, inputs, rtol=rtol, atol=atol)


def check_numpy(op, inputs: dict, expected, attrs=None, opset=17, inits=None, rtol=1e-5, atol=1e-6):
    got = run_ours(node_model(op, inputs, attrs, opset, inits=inits), inputs)[0]
    assert got.shape == np.shape(expected) and got.dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def symbolic(model):
    """Graph inputs with unknown dims, so that onnx's shape inference cannot reject bad shapes
    first: the op's own `infer` must."""
    for vi in model.graph.input:
        for k, d in enumerate(vi.type.tensor_type.shape.dim):
            d.dim_param = f"{vi.name}_{k}"
    return model


def raises_invalid(op, inputs, attrs=None, opset=17, inits=None, match=None):
    model = symbolic(node_model(op, inputs, attrs, opset, inits=inits))
    with pytest.raises(InvalidArgument, match=match):
        run_ours(model, inputs)


# ---------------------------------------------------------------- MatMul, Gemm

@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                                   ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 6)), ((3, 4), (2, 4, 5)),
                                   ((2, 3, 4), (4,)), ((4,), (2, 4, 3)), ((0, 4), (4, 2))])
def test_matmul_shapes(sa, sb):
    check("MatMul", {"a": rand(*sa), "b": rand(*sb)}, rtol=1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int64])
def test_matmul_dtypes(dtype):
    check("MatMul", {"a": rand(2, 3, 4, dtype=dtype), "b": rand(2, 4, 2, dtype=dtype)}, opset=9)


def test_matmul_bad_shapes():
    raises_invalid("MatMul", {"a": rand(3, 4), "b": rand(5, 2)}, match="incompatible dimensions")
    raises_invalid("MatMul", {"a": rand(2, 3, 4), "b": rand(3, 4, 2)}, match="cannot be broadcast")


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (3, 1), (3, 5), ()])
def test_gemm(ta, tb, c_shape):
    a, b = rand(*((4, 3) if ta else (3, 4))), rand(*((5, 4) if tb else (4, 5)))
    inits = {} if c_shape is None else {"c": rand(*c_shape)}
    check("Gemm", {"a": a, "b": b}, dict(transA=ta, transB=tb, alpha=0.5, beta=2.0), inits=inits, opset=13, rtol=1e-4)


def test_gemm_versions():
    a, b, c = rand(3, 4), rand(4, 5), rand(3, 5)
    check("Gemm", {"a": a, "b": b, "c": c}, dict(alpha=1.5), opset=6)  # broadcast=0: C of the full shape
    check("Gemm", {"a": a, "b": b}, dict(beta=0.5, broadcast=1), inits={"c": rand(5)}, opset=6)
    check("Gemm", {"a": a, "b": b, "c": rand(1, 5)}, dict(beta=0.0), opset=7)  # beta=0 ignores C
    check("Gemm", {"a": a, "b": b}, dict(alpha=2.0), inits={"c": rand(5)}, opset=9)
    check("Gemm", {"a": a, "b": b}, opset=11, input_names=["a", "b", ""])  # omitted C
    check("Gemm", {"a": a.astype(np.float64), "b": b.astype(np.float64)}, opset=11)


def test_gemm_bad_shapes():
    raises_invalid("Gemm", {"a": rand(3, 4), "b": rand(5, 4)}, match="inner dimensions")
    raises_invalid("Gemm", {"a": rand(3, 4), "b": rand(4, 5), "c": rand(2, 5)}, match="cannot be broadcast")
    raises_invalid("Gemm", {"a": rand(2, 3, 4), "b": rand(4, 5)}, match="2-D")


# ---------------------------------------------------------------- Conv

def conv(x_shape, w_shape, bias=True, opset=17, rtol=1e-4, **attrs):
    inits = {"w": rand(*w_shape)}
    if bias:
        inits["b"] = rand(w_shape[0])
    return check("Conv", {"x": rand(*x_shape)}, attrs, opset=opset, inits=inits, rtol=rtol, atol=1e-4)


@pytest.mark.parametrize("case", [
    dict(x=(1, 3, 8, 8), w=(4, 3, 3, 3)),
    dict(x=(2, 3, 9, 7), w=(4, 3, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2]),
    dict(x=(2, 4, 9, 7), w=(6, 2, 3, 2), pads=[1, 0, 2, 1], strides=[2, 1], dilations=[2, 1], group=2),
    dict(x=(2, 4, 9, 7), w=(8, 1, 3, 3), group=4, auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(x=(2, 4, 9, 7), w=(4, 1, 3, 3), group=4, auto_pad="SAME_LOWER", strides=[2, 3]),
    dict(x=(2, 4, 9, 7), w=(4, 1, 3, 3), group=4, auto_pad="SAME_LOWER", dilations=[2, 2], bias=False),
    dict(x=(1, 4, 9, 7), w=(4, 1, 3, 3), group=4, auto_pad="VALID", bias=False),
    dict(x=(2, 6, 9, 7), w=(4, 6, 1, 1)),                       # 1x1: a plain GEMM
    dict(x=(2, 6, 9, 7), w=(4, 3, 1, 1), group=2, bias=False),
    dict(x=(1, 6, 9, 7), w=(4, 6, 1, 1), strides=[2, 2]),       # 1x1 strided: im2col
    dict(x=(2, 6, 9), w=(4, 6, 3), pads=[1, 2]),                 # 1-D
    dict(x=(2, 6, 9), w=(4, 3, 2), group=2, dilations=[3], strides=[2]),
    dict(x=(2, 3, 5, 6, 7), w=(4, 3, 3, 2, 3), pads=[1, 0, 1, 1, 1, 0], strides=[1, 2, 1]),  # 3-D
    dict(x=(1, 3, 5, 6, 7), w=(3, 1, 1, 3, 3), group=3, kernel_shape=[1, 3, 3], auto_pad="SAME_UPPER"),
], ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()).replace(" ", ""))
def test_conv(case):
    case = dict(case)
    conv(case.pop("x"), case.pop("w"), **case)


def test_conv_opsets_and_dtypes():
    conv((1, 2, 5, 5), (3, 2, 3, 3), opset=1, pads=[1, 1, 1, 1])
    conv((1, 2, 5, 5), (3, 2, 3, 3), opset=11, auto_pad="SAME_UPPER")
    model = node_model("Conv", {"x": rand(1, 2, 6, 6, dtype=np.float64)}, {"pads": [1, 1, 1, 1]},
                       inits={"w": rand(3, 2, 3, 3, dtype=np.float64)})
    assert_matches_reference(model, {"x": rand(1, 2, 6, 6, dtype=np.float64)}, rtol=1e-10)
    x16, w16 = rand(1, 2, 6, 6).astype(np.float16), rand(3, 2, 3, 3).astype(np.float16)
    got = run_ours(node_model("Conv", {"x": x16}, inits={"w": w16}), {"x": x16})[0]
    want = run_ours(node_model("Conv", {"x": x16.astype(np.float32)}, inits={"w": w16.astype(np.float32)}),
                    {"x": x16.astype(np.float32)})[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)


def test_conv_bad_shapes():
    raises_invalid("Conv", {"x": rand(1, 4, 5, 5)}, inits={"w": rand(2, 3, 3, 3)}, match="channels")
    raises_invalid("Conv", {"x": rand(1, 4, 5, 5)}, {"group": 2}, inits={"w": rand(3, 2, 3, 3)}, match="divide")
    raises_invalid("Conv", {"x": rand(1, 3, 2, 2)}, inits={"w": rand(2, 3, 3, 3)}, match="empty")
    raises_invalid("Conv", {"x": rand(1, 3, 5, 5)}, {"pads": [1, 1]}, inits={"w": rand(2, 3, 3, 3)},
                   match="must have 4 values")
    raises_invalid("Conv", {"x": rand(1, 3, 5, 5)}, inits={"w": rand(2, 3, 3, 3), "b": rand(3)}, match="B must")


def test_conv_second_run_allocates_only_outputs():
    """The im2col scratch is made when the plan is built: a second run allocates the output
    (plus numpy/Python small change), not another scratch (which would be 36x the input)."""
    x = rand(1, 16, 32, 32)
    model = node_model("Conv", {"x": x}, {"pads": [1, 1, 1, 1]}, inits={"w": rand(16, 16, 3, 3), "b": rand(16)})
    sess = ort.InferenceSession(model.SerializeToString())
    sess.run(None, {"x": x})
    tracemalloc.start()
    try:
        sess.run(None, {"x": x})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes + 64 * 1024, peak


@FAST
@given(st.data())
def test_conv_hypothesis(data):
    rank = data.draw(st.integers(1, 3), "spatial rank")
    group = data.draw(st.sampled_from([1, 2, 3]), "group")
    cg, mg = data.draw(st.integers(1, 3), "C/group"), data.draw(st.integers(1, 3), "M/group")
    kernel = data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank), "kernel")
    dil = data.draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank), "dilations")
    strides = data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank), "strides")
    auto_pad = data.draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]), "auto_pad")
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dil)]
    size = [data.draw(st.integers(s, s + 5)) for s in spans]
    attrs = dict(group=group, dilations=dil, strides=strides, auto_pad=auto_pad)
    if auto_pad == "NOTSET":
        attrs["pads"] = data.draw(st.lists(st.integers(0, 2), min_size=2 * rank, max_size=2 * rank), "pads")
    conv((data.draw(st.integers(1, 2)), cg * group, *size), (mg * group, cg, *kernel),
         bias=data.draw(st.booleans()), **attrs)


# ---------------------------------------------------------------- pooling

def pool_reference(x, kind, kernel_shape, strides=None, pads=None, dilations=None, ceil_mode=0, count_include_pad=0,
                   auto_pad="NOTSET", p=2):
    """Brute-force pooling straight from the ONNX spec (as ONNX Runtime computes it)."""
    kernel = kernel_shape
    k = len(kernel)
    strides, dilations = strides or [1] * k, dilations or [1] * k
    pads = list(pads or [0] * 2 * k)
    spans = [d * (kk - 1) + 1 for kk, d in zip(kernel, dilations)]
    out = []
    for i, n in enumerate(x.shape[2:]):
        if auto_pad.startswith("SAME"):
            o = math.ceil(n / strides[i])
            total = max(0, (o - 1) * strides[i] + spans[i] - n)
            pads[i] = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            pads[k + i] = total - pads[i]
        else:
            o = (n + pads[i] + pads[k + i] - spans[i]) / strides[i] + 1
            o = math.ceil(o) if ceil_mode else math.floor(o)
            if ceil_mode and (o - 1) * strides[i] >= n + pads[i]:
                o -= 1
        out.append(o)
    y = np.zeros(x.shape[:2] + tuple(out), x.dtype)
    for pos in itertools.product(*[range(o) for o in out]):
        coords = [[pos[i] * strides[i] - pads[i] + t * dilations[i] for t in range(kernel[i])] for i in range(k)]
        # positions inside the input, and inside input + pads (what count_include_pad counts)
        inside = [[c for c in cs if 0 <= c < x.shape[2 + i]] for i, cs in enumerate(coords)]
        padded = [[c for c in cs if -pads[i] <= c < x.shape[2 + i] + pads[k + i]] for i, cs in enumerate(coords)]
        win = x[(slice(None), slice(None)) + np.ix_(*inside)].reshape(x.shape[0], x.shape[1], -1)
        if kind == "max":
            v = win.max(axis=2)
        elif kind == "lp":
            v = (np.abs(win.astype(np.float64)) ** p).sum(axis=2) ** (1.0 / p)
        else:
            count = math.prod(len(c) for c in (padded if count_include_pad else inside))
            v = win.astype(np.float64).sum(axis=2) / count
        y[(slice(None), slice(None)) + pos] = v
    return y


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3]),
    dict(kernel_shape=[3, 2], pads=[1, 1, 1, 0], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 1], dilations=[2, 1], ceil_mode=1, pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[3, 3], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="VALID"),
])
def test_maxpool(attrs):
    check("MaxPool", {"x": rand(2, 3, 10, 9)}, attrs)


@pytest.mark.parametrize("shape,attrs", [
    ((2, 3, 9, 8), dict(kernel_shape=[3, 2], pads=[1, 1, 1, 0], strides=[2, 2])),
    ((2, 3, 9, 8), dict(kernel_shape=[3, 2], pads=[1, 1, 1, 0], strides=[2, 2], storage_order=1)),
    ((2, 3, 9, 8, 5), dict(kernel_shape=[3, 2, 2], strides=[2, 2, 1], storage_order=1)),
    ((2, 3, 9, 8, 5), dict(kernel_shape=[3, 2, 2], strides=[2, 2, 1])),
    ((2, 3, 10), dict(kernel_shape=[3], strides=[2], dilations=[2])),
])
def test_maxpool_indices(shape, attrs):
    check("MaxPool", {"x": rand(*shape)}, attrs, outputs=("y", "indices"))


def test_maxpool_versions_and_dtypes():
    x = rand(1, 2, 7, 7)
    check("MaxPool", {"x": x}, dict(kernel_shape=[2, 2], strides=[2, 2]), opset=1)
    check("MaxPool", {"x": x}, dict(kernel_shape=[2, 2], strides=[2, 2]), opset=8, outputs=("y", "i"))
    # before opset 10 there is no ceil_mode: the attribute, if present, is ignored
    check_numpy("MaxPool", {"x": x}, pool_reference(x, "max", [2, 2], [2, 2]),
                dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), opset=8)
    check("MaxPool", {"x": rand(1, 2, 7, 7, dtype=np.float64)}, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    for dtype in (np.int8, np.uint8):  # the reference evaluator pads integers with NaN: numpy here
        xi = rand(1, 2, 7, 7, dtype=dtype)
        attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        check_numpy("MaxPool", {"x": xi}, pool_reference(xi, "max", **attrs), attrs, opset=12)
    x16 = rand(1, 2, 7, 7).astype(np.float16)
    check_numpy("MaxPool", {"x": x16}, pool_reference(x16, "max", [3, 3]), dict(kernel_shape=[3, 3]))


def test_pools_where_the_reference_is_wrong():
    x = rand(2, 3, 7, 8)
    for attrs in (dict(kernel_shape=[3, 3], strides=[3, 3], ceil_mode=1),
                  dict(kernel_shape=[3, 2], strides=[3, 2], ceil_mode=1, count_include_pad=1, pads=[1, 0, 1, 1])):
        check_numpy("AveragePool", {"x": x}, pool_reference(x, "avg", **attrs), attrs)
    # opset 1 has no count_include_pad and excludes the padding; the reference includes it
    attrs = dict(kernel_shape=[2, 2], pads=[1, 1, 1, 1])
    check_numpy("AveragePool", {"x": x}, pool_reference(x, "avg", **attrs), attrs, opset=1)
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER")
    check_numpy("MaxPool", {"x": x}, pool_reference(x, "max", **attrs), attrs)
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], p=3)
    check_numpy("LpPool", {"x": x}, pool_reference(x, "lp", **attrs), attrs, rtol=1e-4)
    x5 = rand(2, 3, 4, 3, 5)
    check_numpy("GlobalMaxPool", {"x": x5}, x5.max(axis=(2, 3, 4), keepdims=True))


@pytest.mark.parametrize("attrs,opset", [
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 2, 1]), 17),
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 2, 1], count_include_pad=1), 17),
    (dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 2, 1], count_include_pad=1, ceil_mode=1), 17),
    (dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), 17),
    (dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER", count_include_pad=1), 17),
    (dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER", count_include_pad=1), 17),
    (dict(kernel_shape=[3, 3], strides=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1]), 19),
    (dict(kernel_shape=[2, 2], strides=[2, 1]), 1),
    (dict(kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1), 7),
])
def test_averagepool(attrs, opset):
    check("AveragePool", {"x": rand(2, 3, 10, 9)}, attrs, opset=opset)


def test_lppool_and_global_pools():
    x = rand(2, 3, 10, 9)
    check("LpPool", {"x": x}, dict(kernel_shape=[3, 3], strides=[2, 2], p=3), opset=11)
    check("LpPool", {"x": x}, dict(kernel_shape=[3, 2], dilations=[2, 1]), opset=18)
    check("GlobalAveragePool", {"x": x})
    check("GlobalAveragePool", {"x": rand(2, 3, 4, 3, 5)})
    check("GlobalAveragePool", {"x": rand(2, 3, 7)})
    check("GlobalMaxPool", {"x": x})
    # the mean as a matrix-vector product: float64 too, and NaN / inf as np.mean has them
    check("GlobalAveragePool", {"x": rand(2, 5, 13, 13).astype(np.float64)})
    special = rand(1, 4, 3, 3)
    special[0, 0, 1, 1], special[0, 1, 0, 0], special[0, 2, 0, 0], special[0, 2, 2, 2] = np.nan, np.inf, np.inf, -np.inf
    check_numpy("GlobalAveragePool", {"x": special}, special.mean(axis=(2, 3), keepdims=True))
    check_numpy("GlobalLpPool", {"x": x}, np.sqrt((x.astype(np.float64) ** 2).sum(axis=(2, 3), keepdims=True))
                .astype(np.float32), rtol=1e-5)


def test_pool_bad_arguments():
    raises_invalid("MaxPool", {"x": rand(1, 2, 5, 5)}, dict(kernel_shape=[3]), match="kernel_shape")
    raises_invalid("MaxPool", {"x": rand(1, 2, 5, 5)}, dict(kernel_shape=[2, 2], pads=[2, 0, 0, 0]),
                   match="smaller than the kernel")
    raises_invalid("AveragePool", {"x": rand(1, 2, 2, 2)}, dict(kernel_shape=[3, 3]), match="empty")
    raises_invalid("AveragePool", {"x": rand(4, 5)}, dict(kernel_shape=[3]), match="spatial")


@FAST
@given(st.data())
def test_pool_hypothesis(data):
    rank = data.draw(st.integers(1, 3), "spatial rank")
    kind = data.draw(st.sampled_from(["max", "avg", "lp"]), "kind")
    kernel = data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank), "kernel")
    dil = data.draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank), "dilations")
    strides = data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank), "strides")
    auto_pad = data.draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER"]), "auto_pad")
    attrs = dict(kernel_shape=kernel, strides=strides, dilations=dil)
    if auto_pad == "NOTSET":
        attrs["pads"] = [data.draw(st.integers(0, k - 1)) for k in kernel * 2]
        attrs["ceil_mode"] = data.draw(st.integers(0, 1), "ceil_mode")
    else:
        attrs["auto_pad"] = auto_pad
    if kind == "avg":
        attrs["count_include_pad"] = data.draw(st.integers(0, 1), "count_include_pad")
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dil)]
    x = rand(data.draw(st.integers(1, 2)), 2, *[data.draw(st.integers(s, s + 6)) for s in spans])
    op = {"max": "MaxPool", "avg": "AveragePool", "lp": "LpPool"}[kind]
    check_numpy(op, {"x": x}, pool_reference(x, kind, **attrs), attrs, opset=19, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- normalization

def bn_params(c, shape=None):
    shape = shape or (c,)
    return {"scale": rand(*shape), "bias": rand(*shape), "mean": rand(*shape),
            "var": np.abs(rand(*shape)) + 0.5}


def bn_expected(x, p, eps=1e-5, per_activation=False):
    shape = p["scale"].shape if per_activation else (-1,) + (1,) * (x.ndim - 2)
    r = {k: v.reshape(shape) for k, v in p.items()}
    return ((x - r["mean"]) / np.sqrt(r["var"] + eps) * r["scale"] + r["bias"]).astype(x.dtype)


@pytest.mark.parametrize("opset", [14, 15])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (2, 3, 4, 5), (1, 3, 2, 3, 2)])
def test_batchnorm(shape, opset):
    check("BatchNormalization", {"x": rand(*shape)}, dict(epsilon=1e-3), inits=bn_params(3), opset=opset)


def test_batchnorm_versions():
    x, p = rand(2, 3, 4, 5), bn_params(3)
    check("BatchNormalization", {"x": x}, dict(is_test=1), inits=p, opset=6)
    # opsets 7-13: the reference evaluator fails (7) or blends in batch statistics (9)
    for opset in (7, 9):
        check_numpy("BatchNormalization", {"x": x}, bn_expected(x, p), inits=p, opset=opset, rtol=1e-5)
    pa = bn_params(3, (3, 4, 5))  # spatial=0: statistics per activation
    check_numpy("BatchNormalization", {"x": x}, bn_expected(x, pa, per_activation=True), dict(spatial=0),
                inits=pa, opset=7)
    # statistics that are graph inputs rather than constants
    feed = {"x": x, **p}
    assert_matches_reference(node_model("BatchNormalization", feed, opset=15), feed)
    # training mode: normalized by the batch's statistics, which update the running ones
    y, mean, var = run_ours(node_model("BatchNormalization", {"x": x}, dict(training_mode=1, momentum=0.8),
                                       inits=p, opset=15, outputs=("y", "m", "v")), {"x": x})
    axes = (0, 2, 3)
    bm, bv = x.mean(axis=axes), x.var(axis=axes)
    c = (1, 3, 1, 1)
    np.testing.assert_allclose(y, (x - bm.reshape(c)) / np.sqrt(bv.reshape(c) + 1e-5) * p["scale"].reshape(c)
                               + p["bias"].reshape(c), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mean, p["mean"] * 0.8 + bm * 0.2, rtol=1e-5)
    np.testing.assert_allclose(var, p["var"] * 0.8 + bv * 0.2, rtol=1e-5)
    with pytest.raises(NotImplemented, match="training"):  # before 14 it gave saved statistics too
        run_ours(node_model("BatchNormalization", {"x": x}, dict(is_test=0), inits=p, opset=6,
                            outputs=("y", "m", "v", "sm", "sv")), {"x": x})


def test_lrn():
    # the reference evaluator is right only when N == C (it loops over the wrong dim)
    for size in (1, 3, 4, 5):
        check("LRN", {"x": rand(3, 3, 4, 5)}, dict(size=size, alpha=0.5, beta=0.6, bias=2.0))
    x = rand(1, 6, 4, 5)
    sq = np.zeros_like(x)
    for c in range(6):  # size 4: two channels before, one after
        sq[:, c] = (x[:, max(0, c - 1):min(6, c + 3)] ** 2).sum(axis=1)
    check_numpy("LRN", {"x": x}, (x / (1.5 + 0.3 / 4 * sq) ** 0.8).astype(np.float32),
                dict(size=4, alpha=0.3, beta=0.8, bias=1.5), rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 2)])
def test_instance_norm(shape):
    c = shape[1]
    check("InstanceNormalization", {"x": rand(*shape) * 3 + 5}, dict(epsilon=1e-3),
          inits={"s": rand(c), "b": rand(c)}, rtol=1e-4, atol=1e-4)
    check("InstanceNormalization", {"x": rand(*shape)}, inits={"s": rand(c), "b": rand(c)}, opset=6, atol=1e-4)


@pytest.mark.parametrize("axis", [-1, -2, 1, 0])
def test_layer_norm(axis):
    x = rand(2, 3, 4) * 2 + 1
    inner = x.shape[axis:]
    check("LayerNormalization", {"x": x}, dict(axis=axis, epsilon=1e-3), outputs=("y", "mean", "inv_std"),
          inits={"s": rand(*inner), "b": rand(*inner)}, rtol=1e-4, atol=1e-5)
    check("LayerNormalization", {"x": x}, dict(axis=axis), inits={"s": rand(*inner)}, rtol=1e-4, atol=1e-5)


def test_layer_norm_broadcast_scale_and_float64():
    x = rand(2, 3, 4, dtype=np.float64)
    check("LayerNormalization", {"x": x}, dict(axis=1), inits={"s": rand(1, 4, dtype=np.float64),
                                                            "b": rand(4, dtype=np.float64)})
    raises_invalid("LayerNormalization", {"x": rand(2, 3, 4)}, dict(axis=1), inits={"s": rand(3)},
                   match="broadcast")


def test_normalization_bad_shapes():
    raises_invalid("InstanceNormalization", {"x": rand(2, 3, 4)}, inits={"s": rand(4), "b": rand(3)},
                   match="scale must have shape")
    raises_invalid("BatchNormalization", {"x": rand(2, 3, 4)}, inits=bn_params(4), opset=15, match="scale must")


# ---------------------------------------------------------------- softmax

def coerced(fn, x, axis):
    """The opset < 13 semantics: the op over all dims from `axis` on, as one."""
    rows = int(np.prod(x.shape[:axis]))
    return fn(x.reshape(rows, -1)).reshape(x.shape)


def np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_hardmax(x):
    return np.eye(x.shape[1], dtype=x.dtype)[np.argmax(x, axis=1)]


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -3])
def test_softmax_family(op, axis):
    x = rand(2, 3, 4) * 10
    x[0, 0, :2] = x[0, 0, 2]  # ties: Hardmax picks the first
    attrs = {} if axis is None else {"axis": axis}
    check(op, {"x": x}, attrs, opset=13, rtol=1e-5, atol=1e-5)
    fn = {"Softmax": np_softmax, "LogSoftmax": lambda v: np.log(np_softmax(v)), "Hardmax": np_hardmax}[op]
    a = 1 if axis is None else axis % 3
    check_numpy(op, {"x": x}, coerced(fn, x, a).astype(np.float32), attrs, opset=11, rtol=1e-5, atol=1e-5)


def test_softmax_stability_and_dtypes():
    x = np.array([[1000.0, 1001.0, -1000.0], [-np.inf, 0.0, 1.0]], np.float32)
    check("Softmax", {"x": x})
    # the reference takes log(softmax) and gives -inf where the exact value is -2001.3
    check_numpy("LogSoftmax", {"x": x[:1]}, np.array([[-1.3132616, -0.3132616, -2001.3132]], np.float32))
    check("Softmax", {"x": rand(3, 5, dtype=np.float64)}, dict(axis=0), opset=13, rtol=1e-12)
    check("LogSoftmax", {"x": rand(3, 5, dtype=np.float64)}, opset=13, rtol=1e-12)
    raises_invalid("Softmax", {"x": rand(3, 5)}, dict(axis=2), match="out of range")


# ---------------------------------------------------------------- reductions

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


def reduce_input(op, shape, dtype=np.float32):
    x = rand(*shape, dtype=dtype)
    if op == "ReduceLogSum":
        x = np.abs(x) + 0.1  # a log of a positive sum
    if op == "ReduceProd" and dtype == np.float32:
        x = x.clip(-2, 2)
    return x


def reduce_check(op, x, axes, opset, keepdims=None, noop=None):
    attrs = {} if keepdims is None else {"keepdims": keepdims}
    if noop is not None:
        attrs["noop_with_empty_axes"] = noop
    axes_as_input = opset >= (13 if op == "ReduceSum" else 18)
    inits = None
    names = None
    if axes is not None:
        if axes_as_input:
            inits = {"axes": np.array(axes, np.int64)}
        else:
            attrs["axes"] = axes
    elif axes_as_input:
        names = ["x"]
    check(op, {"x": x}, attrs, opset=opset, inits=inits, input_names=names, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("opset", [11, 18])
def test_reduce(op, opset):
    x = reduce_input(op, (2, 3, 4))
    reduce_check(op, x, [1], opset)
    reduce_check(op, x, [0, -1], opset, keepdims=0)
    reduce_check(op, x, None, opset)
    reduce_check(op, x, None, opset, keepdims=0)
    if opset >= 18:
        reduce_check(op, x, [], opset)               # empty axes: everything
        reduce_check(op, x, [], opset, noop=1)       # ... unless noop_with_empty_axes
        reduce_check(op, x, None, opset, noop=1)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                "ReduceSumSquare"])
def test_reduce_integers(op):
    reduce_check(op, reduce_input(op, (3, 4), np.int64), [1], 18)
    x = reduce_input(op, (3, 4), np.int32)
    if op == "ReduceSumSquare":  # the reference evaluator returns int64 here
        check_numpy(op, {"x": x}, (x * x).sum(axis=0, dtype=np.int32), dict(axes=[0], keepdims=0), opset=13)
    else:
        reduce_check(op, x, [0], 13, keepdims=0)


def test_reduce_sum_opsets():
    x = rand(2, 3, 4)
    reduce_check("ReduceSum", x, [2, 0], 1)
    reduce_check("ReduceSum", x, [-2], 11)
    reduce_check("ReduceSum", x, [-2], 13)
    reduce_check("ReduceSum", x, None, 13, noop=1)
    reduce_check("ReduceMax", rand(3, 4, dtype=np.float64), [1], 20)


def test_reduce_empty_and_extremes():
    x = np.zeros((2, 0, 3), np.float32)
    for op in ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceLogSumExp", "ReduceL2"):
        reduce_check(op, x, [1], 18)
    big = np.array([[1000.0, 1000.0], [-np.inf, -np.inf]], np.float32)
    check_numpy("ReduceLogSumExp", {"x": big}, np.array([[1000.0 + np.log(2)], [-np.inf]], np.float32),
                dict(axes=[1]), opset=13)
    raises_invalid("ReduceSum", {"x": rand(2, 3)}, dict(axes=[2]), opset=11, match="out of range")
    raises_invalid("ReduceMean", {"x": rand(2, 3)}, dict(axes=[1, -1]), opset=13, match="duplicates")


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_arg_reduce(op):
    x = rand(3, 4, 5, dtype=np.int32)  # small integers: many ties
    for attrs, opset in [({}, 1), (dict(axis=1), 11), (dict(axis=-1, keepdims=0), 11),
                         (dict(axis=1, select_last_index=1), 12), (dict(axis=-3, select_last_index=1, keepdims=0), 13),
                         (dict(axis=2, select_last_index=0), 13)]:
        check(op, {"x": x}, attrs, opset=opset)
    check(op, {"x": rand(4, 6)}, dict(axis=1), opset=13)
    raises_invalid(op, {"x": rand(4, 6)}, dict(axis=2), match="out of range")


@FAST
@given(st.data())
def test_reduce_hypothesis(data):
    op = data.draw(st.sampled_from(REDUCE_OPS), "op")
    rank = data.draw(st.integers(1, 4), "rank")
    shape = data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank), "shape")
    axes = data.draw(st.lists(st.integers(-rank, rank - 1), unique_by=lambda a: a % rank, max_size=rank), "axes")
    opset = data.draw(st.sampled_from([13, 18]), "opset")
    keepdims = data.draw(st.integers(0, 1), "keepdims")
    reduce_check(op, reduce_input(op, tuple(shape)), axes or None, opset, keepdims=keepdims)
