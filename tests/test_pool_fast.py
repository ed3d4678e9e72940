"""The fast MaxPool / AveragePool path (phase planes, ortjit/ops/pooling.py) against the
generic pooling loop and against a plain numpy reference.

The generic loop runs the same pool with a leading unit spatial dim (N, C, 1, H, W), kernel 1
stride 1 along it: 3-D pools never take the fast path. MaxPool must give the generic loop's
bits (NaN, inf and signed zeros included), AveragePool its values up to the last bit.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper

import ortjit.ops.pooling as pooling
from tests.util import make_model, run_ours

FAST = settings(max_examples=80, deadline=None, derandomize=True)
RNG = np.random.default_rng(11)


def pool(op, x, attrs, opset=19, outputs=("y",)):
    node = helper.make_node(op, ["x"], list(outputs), **attrs)
    return run_ours(make_model(node, {"x": x}, list(outputs), opset=opset), {"x": x})


def generic(op, x, attrs):
    """The same pool through the generic loop: one more spatial dim, of size 1, in front."""
    attrs = dict(attrs)
    r = len(attrs["kernel_shape"])
    attrs["kernel_shape"] = [1, *attrs["kernel_shape"]]
    for name in ("strides", "dilations"):
        if name in attrs:
            attrs[name] = [1, *attrs[name]]
    if "pads" in attrs:
        p = attrs["pads"]
        attrs["pads"] = [0, *p[:r], 0, *p[r:]]
    return pool(op, x[:, :, None], attrs)[0][:, :, 0]


def same_pads(n, k, s, d, auto_pad):
    """ONNX Runtime's SAME padding: the extra pad at the end (SAME_UPPER) or start."""
    total = max(0, (-(-n // s) - 1) * s + d * (k - 1) + 1 - n)
    return (total // 2, total - total // 2) if auto_pad == "SAME_UPPER" else (total - total // 2, total // 2)


def reference(x, kind, attrs, out_shape):
    """Plain numpy in float64, window by window, from the ONNX definitions: MaxPool ignores
    NaN (as the generic loop does: `v if v > best`), AveragePool counts the taps inside the
    input, or (count_include_pad) inside input + pads, never those past the end pad."""
    r = x.ndim - 2
    k, s = attrs["kernel_shape"], attrs.get("strides", [1] * r)
    d = attrs.get("dilations", [1] * r)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad.startswith("SAME"):
        begin, end = zip(*[same_pads(n, *g, auto_pad) for n, g in zip(x.shape[2:], zip(k, s, d))])
    else:
        pads = attrs.get("pads", [0] * 2 * r) if auto_pad == "NOTSET" else [0] * 2 * r
        begin, end = pads[:r], pads[r:]
    xf = x.astype(np.float64)
    y = np.empty((*x.shape[:2], *out_shape))
    for o in itertools.product(*[range(n) for n in out_shape]):
        vals, counted = [], 0
        for t in itertools.product(*[range(n) for n in k]):
            pos = [oi * si - bi + ti * di for oi, si, bi, ti, di in zip(o, s, begin, t, d)]
            inside = all(0 <= p < n for p, n in zip(pos, x.shape[2:]))
            in_pads = all(-b <= p < n + e for p, n, b, e in zip(pos, x.shape[2:], begin, end))
            if inside:
                vals.append(xf[(slice(None), slice(None), *pos)])
            counted += inside if kind != "avg_include" else in_pads
        if kind == "max":
            best = np.full(x.shape[:2], -np.inf)
            for v in vals:
                best = np.where(v > best, v, best)
            y[(slice(None), slice(None), *o)] = best
        else:
            y[(slice(None), slice(None), *o)] = sum(vals) / counted
    return y


@st.composite
def pools(draw):
    rank = draw(st.integers(1, 2), "spatial rank")
    kind = draw(st.sampled_from(["max", "avg", "avg_include"]), "kind")
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64, np.float16]), "dtype")
    kernel = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank), "kernel")
    strides = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank), "strides")
    dil = draw(st.lists(st.sampled_from([1, 1, 2]), min_size=rank, max_size=rank), "dilations")
    attrs = dict(kernel_shape=kernel, strides=strides, dilations=dil)
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]), "auto_pad")
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, kk - 1)) for kk in kernel * 2]
        attrs["ceil_mode"] = draw(st.integers(0, 1), "ceil_mode")
    else:
        attrs["auto_pad"] = auto_pad
    if kind != "max":
        attrs["count_include_pad"] = int(kind == "avg_include")
    spans = [di * (kk - 1) + 1 for kk, di in zip(kernel, dil)]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *[draw(st.integers(sp, sp + 9)) for sp in spans])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), "seed"))
    x = rng.standard_normal(shape).astype(dtype)
    values = draw(st.sampled_from(["normal", "normal", "special", "ties"]), "values")
    if values == "special":  # NaN, infinities and signed zeros here and there
        hit = rng.random(x.shape) < 0.3
        x[hit] = rng.choice(np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype), int(hit.sum()))
    elif values == "ties":  # windows whose maximum is both 0.0 and -0.0: which one comes out
        x = rng.choice(np.array([0.0, -0.0, -0.0, -1.0, np.nan], dtype), shape)
    return "MaxPool" if kind == "max" else "AveragePool", kind, x, attrs


def assert_close_means(got, want, x):
    """AveragePool's fast paths against the generic loop's float64 sums: the phase planes sum
    in float64 too, times 1/count; the stride-1 same-size pools and whole-plane means sum in
    the input's precision (as ONNX Runtime does), so a mean may differ by a few roundings of
    the window's largest magnitude."""
    assert got.shape == want.shape and got.dtype == want.dtype
    finite = np.abs(x[np.isfinite(x)])
    scale = float(finite.max()) if finite.size else 1.0
    eps = np.finfo(np.float64 if x.dtype == np.float64 else np.float32).eps
    np.testing.assert_allclose(got, want, rtol=16 * eps, atol=16 * eps * scale)


def assert_same_bits(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), np.argwhere(a.view(np.uint8) != b.view(np.uint8))[:5]


@FAST
@given(pools())
def test_fast_path_matches_generic_loop(case):
    op, kind, x, attrs = case
    got, = pool(op, x, attrs)
    want = generic(op, x, attrs)
    if op == "MaxPool":
        assert_same_bits(got, want)
    else:
        assert_close_means(got, want, x)


@FAST
@given(pools())
def test_fast_path_matches_numpy_reference(case):
    op, kind, x, attrs = case
    x = np.nan_to_num(x, nan=0.5, posinf=3.0, neginf=-3.0)  # plain values: the tolerances mean something
    got, = pool(op, x, attrs)
    want = reference(x, kind, attrs, got.shape[2:])
    tol = {np.dtype(np.float16): 1e-3, np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}[x.dtype]
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


@st.composite
def same_size_pools(draw):
    """Stride-1 pools whose output is the input's size (pool_same.py): pads of k - 1 in all
    per dim, split any way, planes from 1 x 1 (every column and row an edge) up."""
    rank = draw(st.integers(1, 2), "spatial rank")
    kind = draw(st.sampled_from(["max", "avg", "avg_include"]), "kind")
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64, np.float16]), "dtype")
    kernel = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank), "kernel")
    begin = [draw(st.integers(0, k - 1)) for k in kernel]
    attrs = dict(kernel_shape=kernel, pads=begin + [k - 1 - b for k, b in zip(kernel, begin)])
    if kind != "max":
        attrs["count_include_pad"] = int(kind == "avg_include")
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), *[draw(st.integers(1, 12)) for _ in kernel])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), "seed"))
    x = rng.standard_normal(shape).astype(dtype)
    values = draw(st.sampled_from(["normal", "normal", "special", "ties"]), "values")
    if values == "special":
        hit = rng.random(x.shape) < 0.3
        x[hit] = rng.choice(np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype), int(hit.sum()))
    elif values == "ties":
        x = rng.choice(np.array([0.0, -0.0, -0.0, -1.0, np.nan], dtype), shape)
    return "MaxPool" if kind == "max" else "AveragePool", kind, x, attrs


@FAST
@given(same_size_pools())
def test_same_size_pools(case):
    """pool_same.py's separable passes: MaxPool bit for bit the generic loop's (NaN, inf and
    signed zeros included), AveragePool close to it and to the numpy reference."""
    op, kind, x, attrs = case
    got, = pool(op, x, attrs)
    assert got.shape == x.shape
    want = generic(op, x, attrs)
    if op == "MaxPool":
        assert_same_bits(got, want)
    else:
        assert_close_means(got, want, x)
    plain = np.nan_to_num(x, nan=0.5, posinf=3.0, neginf=-3.0)
    got, = pool(op, plain, attrs)
    tol = {np.dtype(np.float16): 1e-3, np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}[x.dtype]
    np.testing.assert_allclose(got.astype(np.float64), reference(plain, kind, attrs, got.shape[2:]), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(1, 2, 5, 6), (1, 1, 1, 1), (1, 2, 1, 7), (2, 3, 8, 1), (1, 4, 14, 14)])
@pytest.mark.parametrize("attrs", [dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                                   dict(kernel_shape=[2, 3], pads=[1, 0, 0, 2]),
                                   dict(kernel_shape=[5, 5], pads=[2, 2, 2, 2])])
@pytest.mark.parametrize("values", ["ties", "special"])
def test_same_size_max_pool_tie_and_nan_rules(shape, attrs, values):
    """Inception's 3x3 pools and others, on windows full of 0.0, -0.0 and NaN: the edge
    columns and rows computed apart from the flat passes keep the row-major tie rule too."""
    rng = np.random.default_rng(sum(shape))
    if values == "ties":
        x = rng.choice(np.array([0.0, -0.0, -0.0, -1.0, np.nan], np.float32), shape)
    else:
        x = rng.standard_normal(shape).astype(np.float32)
        hit = rng.random(shape) < 0.4
        x[hit] = rng.choice(np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32), int(hit.sum()))
    got, = pool("MaxPool", x, attrs)
    assert_same_bits(got, generic("MaxPool", x, attrs))


def test_same_size_pools_take_the_separable_passes(monkeypatch):
    taken = []
    real = pooling.pool_same.plan
    monkeypatch.setattr(pooling.pool_same, "plan", lambda *a: taken.append(a[0]) or real(*a))
    x = RNG.standard_normal((1, 3, 9, 8)).astype(np.float32)
    for op, attrs, same in [
            ("MaxPool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), True),
            ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), True),
            ("AveragePool", dict(kernel_shape=[2, 3], pads=[0, 2, 1, 0]), True),
            ("MaxPool", dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER"), True),
            ("MaxPool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]), False),
            ("MaxPool", dict(kernel_shape=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2]), False),
            ("MaxPool", dict(kernel_shape=[3, 3]), False)]:
        taken.clear()
        pool(op, x, attrs)
        assert bool(taken) == same, (op, attrs)


@pytest.mark.parametrize("op, shape, attrs", [
    ("MaxPool", (1, 8, 112, 112), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", (2, 4, 111, 111), dict(kernel_shape=[3, 3], strides=[2, 2])),
    ("MaxPool", (1, 6, 109, 54), dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", (1, 5, 56, 56), dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("MaxPool", (1, 3, 35, 35), dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])),
    ("MaxPool", (2, 3, 300), dict(kernel_shape=[5], strides=[3], pads=[2, 1])),
    ("AveragePool", (1, 16, 28, 28), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ("AveragePool", (1, 16, 28, 28), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", (1, 8, 17, 17), dict(kernel_shape=[5, 5], strides=[3, 3], pads=[2, 2, 2, 2], ceil_mode=1)),
    ("AveragePool", (1, 8, 13, 13), dict(kernel_shape=[13, 13])),
])
def test_network_shapes(op, shape, attrs):
    """The pools of squeezenet / shufflenet / inception-like networks, bit for bit (MaxPool)."""
    x = RNG.standard_normal(shape).astype(np.float32)
    got, = pool(op, x, attrs)
    want = generic(op, x, attrs)
    if op == "MaxPool":
        assert_same_bits(got, want)
    else:
        assert_close_means(got, want, x)


def test_max_pool_nan_and_signed_zero_rules():
    """A NaN is never picked (a window of NaNs gives -inf); of 0.0 and -0.0 the first in the
    window, in row-major tap order, wins."""
    x = np.array([[[[np.nan, np.nan, 1.0, np.nan],
                    [np.nan, np.nan, -0.0, 0.0],
                    [0.0, -0.0, -0.0, np.nan],
                    [-0.0, -0.0, 0.0, -np.inf]]]], np.float32)
    y, = pool("MaxPool", x, dict(kernel_shape=[2, 2], strides=[2, 2]))
    assert_same_bits(y, np.array([[[[-np.inf, 1.0], [0.0, -0.0]]]], np.float32))
    y, = pool("MaxPool", x[:, :, 2:, :2], dict(kernel_shape=[2, 2], pads=[1, 1, 1, 1]))
    assert_same_bits(y, np.array([[[[0.0, 0.0, -0.0], [0.0, 0.0, -0.0], [-0.0, -0.0, -0.0]]]], np.float32))


def test_which_pools_take_the_fast_path(monkeypatch):
    """1-D/2-D float MaxPool without Indices and AveragePool do; 3-D pools, Indices, int8
    data and LpPool keep the generic loop (and still work)."""
    taken = []
    real = pooling._phase_plan
    monkeypatch.setattr(pooling, "_phase_plan", lambda *a: taken.append(a[0]) or real(*a))
    x2, x3 = RNG.standard_normal((1, 2, 6, 7)).astype(np.float32), RNG.standard_normal((1, 2, 3, 6, 7)).astype(np.float32)
    k2 = dict(kernel_shape=[2, 2])
    for op, x, attrs, outputs, fast in [
            ("MaxPool", x2, k2, ("y",), True),
            ("MaxPool", x2[:, :, 0], dict(kernel_shape=[3]), ("y",), True),
            ("MaxPool", x2.astype(np.float16), k2, ("y",), True),
            ("AveragePool", x2.astype(np.float64), k2, ("y",), True),
            ("MaxPool", x2, k2, ("y", "i"), False),
            ("MaxPool", (x2 * 10).astype(np.int8), k2, ("y",), False),
            ("MaxPool", x3, dict(kernel_shape=[2, 2, 2]), ("y",), False),
            ("LpPool", x2, k2, ("y",), False)]:
        taken.clear()
        y = pool(op, x, attrs, outputs=outputs)[0]
        assert bool(taken) == fast, (op, x.dtype, x.shape, outputs)
        assert y.shape == (*x.shape[:2], *[n - k + 1 for n, k in zip(x.shape[2:], attrs["kernel_shape"])])


@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 4, 9), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("include_pad", [0, 1])
def test_average_pool_over_the_whole_plane_is_the_plane_mean(shape, dtype, include_pad):
    # ResNet's last pool: one window, the whole plane (taken as a mean, no pooling kernel):
    # float32 and float64 summed in their own precision by one matrix-vector product, float16
    # by numpy in float64
    x = RNG.standard_normal(shape).astype(dtype)
    attrs = {"kernel_shape": list(shape[2:]), "count_include_pad": include_pad}
    (y,) = pool("AveragePool", x, attrs)
    want = x.astype(np.float64).reshape(*shape[:2], -1).mean(axis=2).astype(dtype)
    assert y.dtype == dtype and y.shape == (*shape[:2], *[1] * (len(shape) - 2))
    if dtype == np.float16:
        np.testing.assert_array_equal(y.reshape(shape[:2]), want)
    else:
        assert_close_means(y.reshape(shape[:2]), want, x)
