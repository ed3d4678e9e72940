"""Vision and NN ops (ConvTranspose, DeformConv, Resize/Upsample, GridSample, AffineGrid,
Col2Im, MaxUnpool, RoiAlign, NonMaxSuppression, DepthToSpace/SpaceToDepth, Group/RMS/
MeanVariance normalization, the losses) against onnx.reference.ReferenceEvaluator through
the onnxruntime facade, with hypothesis drawing shapes and attributes.

Where the reference evaluator is wrong or undefined, the expected values come from numpy
here and the test says why.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper

from ortjit.errors import InvalidArgument
from tests.util import assert_matches_reference, make_model, reference, run_ours

PROPS = settings(max_examples=int(__import__("os").environ.get("VISION_EXAMPLES", 20)), deadline=None, derandomize=True)
RNG = np.random.default_rng(77)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def model_of(op, feed, attrs=None, opset=20, inits=None, names=None, outputs=("y",)):
    """One node; `feed` are graph inputs, `inits` initializers; `names` orders them (an
    empty name: an omitted optional input)."""
    names = names if names is not None else list(feed) + list(inits or {})
    node = helper.make_node(op, names, list(outputs), **(attrs or {}))
    return make_model(node, feed, list(outputs), inits, opset=opset)


def check(op, feed, attrs=None, opset=20, inits=None, names=None, outputs=("y",), rtol=1e-4, atol=1e-5):
    return assert_matches_reference(model_of(op, feed, attrs, opset, inits, names, outputs), feed, rtol, atol)


def invalid(op, feed, attrs=None, opset=20, inits=None, names=None, match=None):
    with pytest.raises(InvalidArgument, match=match):
        run_ours(model_of(op, feed, attrs, opset, inits, names), feed)


def ints(draw, lo, hi, n, label):
    return draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n), label)


# ---------------------------------------------------------------- ConvTranspose

def conv_transpose_numpy(x, w, b=None, group=1, strides=None, dilations=None, pads=None, output_padding=None,
                         output_shape=None, auto_pad="NOTSET"):
    """Brute force from the spec. The reference evaluator is wrong with group > 1 (it
    slices W by output channels) and with an output_shape larger than the transposed
    extent (negative total padding), which ONNX Runtime clips to 0: the values start at
    the output's beginning, zeros follow."""
    n, c = x.shape[:2]
    r = x.ndim - 2
    mg, kernel = w.shape[1], w.shape[2:]
    strides, dilations = strides or [1] * r, dilations or [1] * r
    output_padding = output_padding or [0] * r
    full = [s * (i - 1) + op + (k - 1) * d + 1
            for i, s, op, k, d in zip(x.shape[2:], strides, output_padding, kernel, dilations)]
    y_full = np.zeros((n, mg * group, *full))
    cg = c // group
    for pos in itertools.product(*[range(v) for v in x.shape[2:]]):
        for tap in itertools.product(*[range(v) for v in kernel]):
            at = tuple(p * s + t * d for p, s, t, d in zip(pos, strides, tap, dilations))
            for g in range(group):
                xs = x[(slice(None), slice(g * cg, (g + 1) * cg)) + pos]             # (n, cg)
                ws = w[(slice(g * cg, (g + 1) * cg), slice(None)) + tap]            # (cg, mg)
                y_full[(slice(None), slice(g * mg, (g + 1) * mg)) + at] += xs @ ws
    if output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = [i * s for i, s in zip(x.shape[2:], strides)]
    if output_shape is not None:
        total = [f - o for f, o in zip(full, output_shape)]
        begin = [max(0, t // 2 if auto_pad == "SAME_UPPER" else t - t // 2) for t in total]
        out = list(output_shape)
    else:
        pads = [0] * 2 * r if pads is None or auto_pad == "VALID" else pads
        begin = pads[:r]
        out = [f - pads[i] - pads[r + i] for i, f in enumerate(full)]
    y = np.zeros((n, mg * group, *out))
    for pos in itertools.product(*[range(v) for v in out]):
        src = tuple(p + bg for p, bg in zip(pos, begin))
        if all(s_ < f for s_, f in zip(src, full)):
            y[(slice(None), slice(None)) + pos] = y_full[(slice(None), slice(None)) + src]
    if b is not None:
        y += b.reshape((1, -1) + (1,) * r)
    return y.astype(x.dtype)


@PROPS
@given(st.data())
def test_conv_transpose(data):
    d = data.draw
    rank = d(st.integers(1, 3), "rank")
    group = d(st.sampled_from([1, 2]), "group")
    kernel, strides = ints(d, 1, 3, rank, "kernel"), ints(d, 1, 3, rank, "strides")
    dil = ints(d, 1, 2, rank, "dilations")
    size = ints(d, 1, 4, rank, "size")
    attrs = dict(group=group, strides=strides, dilations=dil)
    how = d(st.sampled_from(["pads", "output_shape", "SAME_UPPER", "SAME_LOWER", "VALID"]), "padding")
    full = [s * (i - 1) + (k - 1) * dl + 1 for i, s, k, dl in zip(size, strides, kernel, dil)]
    if how == "pads":
        pads = [d(st.integers(0, max(0, (f - 1) // 2))) for f in full] * 2
        attrs["pads"] = pads
        attrs["output_padding"] = [d(st.integers(0, s - 1)) for s in strides]
    elif how == "output_shape":
        attrs["output_shape"] = [d(st.integers(max(1, f - 2), f + s - 1)) for f, s in zip(full, strides)]
    else:
        attrs["auto_pad"] = how
    x = rand(d(st.integers(1, 2)), 2 * group, *size)
    w = rand(2 * group, d(st.integers(1, 2)), *kernel)
    feed = {"x": x, "w": w}
    if d(st.booleans(), "bias"):
        feed["b"] = rand(w.shape[1] * group)
    got = run_ours(model_of("ConvTranspose", feed, attrs, opset=11), feed)[0]
    expected = conv_transpose_numpy(x, w, feed.get("b"), **attrs)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    if group == 1 and how in ("pads", "VALID"):
        check("ConvTranspose", feed, attrs, opset=11)


def test_conv_transpose_kernel_shape_and_errors():
    x, w = rand(1, 2, 3, 3), rand(2, 3, 2, 2)
    check("ConvTranspose", {"x": x, "w": w}, dict(kernel_shape=[2, 2], strides=[2, 2]), opset=1)
    invalid("ConvTranspose", {"x": x, "w": rand(3, 3, 2, 2)}, match="channels")
    invalid("ConvTranspose", {"x": x.astype(np.float64), "w": w}, match="float type")


# ---------------------------------------------------------------- DeformConv

def deform_numpy(x, w, offset, b=None, mask=None, group=1, offset_group=1, pads=None, strides=None, dilations=None):
    """Brute force from the definition, any spatial rank: each tap samples X at its position
    plus its offset, N-linearly, with zeros outside X; the reference evaluator only does 2-D."""
    n, c = x.shape[:2]
    m, r = w.shape[0], x.ndim - 2
    kernel = w.shape[2:]
    pads, strides, dilations = pads or [0] * 2 * r, strides or [1] * r, dilations or [1] * r
    out = offset.shape[2:]
    k = int(np.prod(kernel))
    off = offset.reshape(n, offset_group, k, r, *out)
    mask = np.ones((n, offset_group, k, *out)) if mask is None else mask.reshape(n, offset_group, k, *out)
    y = np.zeros((n, m, *out))
    cg, mg, cog = c // group, m // group, c // offset_group
    for b_, o, ci in itertools.product(range(n), range(m), range(c)):
        if ci // cg != o // mg:
            continue
        g = ci // cog
        for pos in itertools.product(*[range(v) for v in out]):
            for t, tap in enumerate(itertools.product(*[range(v) for v in kernel])):
                p = [pos[i] * strides[i] - pads[i] + tap[i] * dilations[i] + off[(b_, g, t, i) + pos] for i in range(r)]
                value = 0.0
                for corner in itertools.product((0, 1), repeat=r):
                    idx, wt = [], 1.0
                    for i in range(r):
                        lo = int(np.floor(p[i]))
                        idx.append(lo + corner[i])
                        wt *= (p[i] - lo) if corner[i] else (1 - (p[i] - lo))
                    if all(0 <= v < s for v, s in zip(idx, x.shape[2:])):
                        value += wt * x[(b_, ci) + tuple(idx)]
                y[(b_, o) + pos] += value * w[(o, ci % cg) + tap] * mask[(b_, g, t) + pos]
    if b is not None:
        y += b.reshape((1, m) + (1,) * r)
    return y.astype(x.dtype)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.data())
def test_deform_conv(data):
    d = data.draw
    rank = d(st.integers(1, 3), "rank")
    group, og = d(st.sampled_from([1, 2]), "group"), d(st.sampled_from([1, 2]), "offset_group")
    kernel = ints(d, 1, 2, rank, "kernel")
    strides, dil = ints(d, 1, 2, rank, "strides"), ints(d, 1, 2, rank, "dilations")
    pads = ints(d, 0, 1, 2 * rank, "pads")
    size = [dl * (k - 1) + 1 + d(st.integers(0, 2)) for k, dl in zip(kernel, dil)]
    out = [(s + pads[i] + pads[rank + i] - dl * (k - 1) - 1) // st_ + 1
           for i, (s, k, dl, st_) in enumerate(zip(size, kernel, dil, strides))]
    n, c, m, kk = 1, 2 * max(group, og), 2 * group, int(np.prod(kernel))
    x, w = rand(n, c, *size), rand(m, c // group, *kernel)
    offset = (rand(n, og * kk * rank, *out) * 1.5).astype(np.float32)
    feed = {"x": x, "w": w, "offset": offset}
    names = ["x", "w", "offset"]
    b = mask = None
    if d(st.booleans(), "bias"):
        b = feed["b"] = rand(m)
        names.append("b")
    if d(st.booleans(), "mask"):
        mask = feed["mask"] = RNG.uniform(0, 1, (n, og * kk, *out)).astype(np.float32)
        names += [""] * (4 - len(names)) + ["mask"]
    attrs = dict(group=group, offset_group=og, strides=strides, dilations=dil, pads=pads)
    got = run_ours(model_of("DeformConv", feed, attrs, opset=22, names=names), feed)[0]
    expected = deform_numpy(x, w, offset, b, mask, group, og, pads, strides, dil)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_deform_conv_2d_against_reference_and_as_conv():
    x, w = rand(2, 4, 5, 6), rand(4, 2, 3, 2)
    offset = rand(2, 2 * 6 * 2, 4, 3)
    attrs = dict(group=2, offset_group=2, pads=[1, 0, 0, 1], strides=[1, 2])
    check("DeformConv", {"x": x, "w": w, "offset": offset}, attrs, opset=19)
    # zero offsets: an ordinary convolution
    zero = np.zeros_like(offset)
    got = run_ours(model_of("DeformConv", {"x": x, "w": w, "offset": zero}, attrs, opset=19),
                   {"x": x, "w": w, "offset": zero})[0]
    conv = dict(group=2, pads=[1, 0, 0, 1], strides=[1, 2])
    expected = run_ours(model_of("Conv", {"x": x, "w": w}, conv), {"x": x, "w": w})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    invalid("DeformConv", {"x": x, "w": w, "offset": offset[:, :4]}, attrs, opset=19, match="offset")
    invalid("DeformConv", {"x": x, "w": w, "offset": offset}, dict(attrs, offset_group=3), opset=19,
            match="offset_group")


def test_deform_conv_nonfinite_offsets_do_not_crash():
    x, w = rand(1, 1, 4, 4), rand(1, 1, 2, 2)
    offset = np.full((1, 8, 3, 3), np.nan, np.float32)
    offset[0, 1] = np.inf
    offset[0, 2] = -1e30
    got = run_ours(model_of("DeformConv", {"x": x, "w": w, "offset": offset}, opset=22),
                   {"x": x, "w": w, "offset": offset})[0]
    assert got.shape == (1, 1, 3, 3) and np.isfinite(got).all()


# ---------------------------------------------------------------- Resize, Upsample

CTMS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
        "tf_crop_and_resize"]


@PROPS
@given(st.data())
def test_resize(data):
    d = data.draw
    rank = d(st.integers(1, 4), "rank")
    shape = ints(d, 1, 5, rank, "shape")
    mode = d(st.sampled_from(["nearest", "linear", "cubic"]), "mode")
    attrs = dict(mode=mode, coordinate_transformation_mode=d(st.sampled_from(CTMS), "ctm"))
    if mode == "nearest":
        attrs["nearest_mode"] = d(st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]))
    else:
        attrs["antialias"] = d(st.integers(0, 1), "antialias")
    if mode == "cubic":
        attrs["exclude_outside"] = d(st.integers(0, 1), "exclude_outside")
        attrs["cubic_coeff_a"] = d(st.sampled_from([-0.75, -0.5]))
    by_scales = d(st.booleans(), "by scales")
    if not by_scales:
        attrs["keep_aspect_ratio_policy"] = d(st.sampled_from(["stretch", "not_larger", "not_smaller"]))
    # the policies apply over the listed axes only: a subset of axes is checked with stretch
    axes = list(range(rank)) if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch" else \
        sorted(d(st.sets(st.integers(0, rank - 1), min_size=1), "axes"))
    # exact binary fractions: a position computed exactly on the roi's edge is inside in
    # float64 (and in ONNX Runtime's float32) but can round outside in the reference's mix
    lo = [d(st.sampled_from([0.0, 0.25, -0.375])) for _ in axes]
    hi = [d(st.sampled_from([1.0, 0.75, 1.5])) for _ in axes]
    crop = attrs["coordinate_transformation_mode"] == "tf_crop_and_resize"
    if crop:
        attrs["extrapolation_value"] = d(st.sampled_from([0.0, -1.0]))
    if by_scales:
        values = [d(st.sampled_from([0.5, 0.6, 1.0, 1.5, 2.0, 3.0])) for _ in axes]
        if any(int(shape[a] * v) == 0 for a, v in zip(axes, values)):
            return  # an empty output: the reference evaluator fails on it
    else:
        values = [d(st.integers(1, 7)) for _ in axes]

    def model(axes_attr: bool):
        """Resize over `axes`, or the same with every axis listed (1 / unchanged elsewhere):
        the reference evaluator fails on the axes attribute."""
        full = dict(zip(axes, range(len(axes))))
        if axes_attr:
            a, v, roi = axes, values, lo + hi
            extra = dict(axes=[x - rank if d(st.booleans()) else x for x in axes])
        else:
            a, extra = list(range(rank)), {}
            v = [values[full[i]] if i in full else (1.0 if by_scales else shape[i]) for i in a]
            roi = [lo[full[i]] if i in full else 0.0 for i in a] + [hi[full[i]] if i in full else 1.0 for i in a]
        inits = {"roi": np.array(roi if crop else [], np.float32)}
        if by_scales:
            inits["scales"], names = np.array(v, np.float32), ["x", "roi", "scales"]
        else:
            inits["sizes"], names = np.array(v, np.int64), ["x", "roi", "", "sizes"]
        return model_of("Resize", {"x": x}, dict(attrs, **extra), opset=19, inits=inits, names=names)

    x = rand(*shape)
    expected = assert_matches_reference(model(False), {"x": x}, rtol=1e-4, atol=1e-5)[0]
    if len(axes) < rank:
        np.testing.assert_allclose(run_ours(model(True), {"x": x})[0], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset,attrs", [
    (10, dict(mode="nearest")), (10, dict(mode="linear")),
    (11, dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")),
    (11, dict(mode="cubic", coordinate_transformation_mode="align_corners")),
    (13, dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")),
    (18, dict(mode="cubic", antialias=1)),
])
def test_resize_opsets(opset, attrs):
    x = rand(1, 2, 4, 5)
    scales = np.array([1, 1, 0.75, 1.6], np.float32)
    inits = {"roi": np.zeros(0, np.float32), "scales": scales}
    if opset > 10:
        check("Resize", {"x": x}, attrs, opset=opset, inits=inits, names=["x", "roi", "scales"])
        return
    # opset 10 (X, scales) samples as opset 11's asymmetric / floor; the reference evaluator
    # reads its scales from the wrong input
    got = run_ours(model_of("Resize", {"x": x}, attrs, opset=10, inits={"scales": scales}), {"x": x})[0]
    as11 = dict(attrs, coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    expected = reference(model_of("Resize", {"x": x}, as11, opset=11, inits=inits, names=["x", "roi", "scales"]),
                         {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_resize_integer_and_float16_data():
    x = RNG.integers(0, 255, (1, 1, 3, 4)).astype(np.uint8)
    inits = {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2.0, 1.5], np.float32)}
    check("Resize", {"x": x}, dict(mode="nearest"), opset=13, inits=inits, names=["x", "roi", "scales"])
    x16 = rand(1, 1, 3, 4).astype(np.float16)
    check("Resize", {"x": x16}, dict(mode="linear"), opset=13, inits=inits, names=["x", "roi", "scales"],
          rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample(mode):
    """Upsample is Resize-10: asymmetric coordinates, nearest rounds down. The reference
    evaluator's Upsample takes integer scales and nearest only; compared with its Resize-11."""
    x = rand(1, 2, 3, 4)
    scales = np.array([1, 1, 2.0, 1.5], np.float32)
    as11 = dict(mode=mode, coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    expected = reference(model_of("Resize", {"x": x}, as11, opset=11, names=["x", "roi", "scales"],
                                  inits={"roi": np.zeros(0, np.float32), "scales": scales}), {"x": x})[0]
    for opset, attrs, inits in ((7, dict(mode=mode, scales=scales.tolist()), None),
                                (9, dict(mode=mode), {"s": scales})):
        got = run_ours(model_of("Upsample", {"x": x}, attrs, opset=opset, inits=inits), {"x": x})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_resize_bad_arguments():
    x = rand(1, 1, 2, 2)
    roi = np.zeros(0, np.float32)
    invalid("Resize", {"x": x}, dict(mode="nearest"), opset=13, names=["x", "roi", "scales"],
            inits={"roi": roi, "scales": np.array([1, 1, 2], np.float32)}, match="scales")
    invalid("Resize", {"x": x}, dict(mode="nearest"), opset=13, names=["x", "roi", "scales"],
            inits={"roi": roi, "scales": np.array([1, 1, -2, 1], np.float32)}, match="positive")
    invalid("Resize", {"x": x}, dict(mode="area"), opset=13, names=["x", "roi", "scales"],
            inits={"roi": roi, "scales": np.array([1, 1, 2, 1], np.float32)}, match="mode")


# ---------------------------------------------------------------- GridSample, AffineGrid

@PROPS
@given(st.data())
def test_grid_sample(data):
    d = data.draw
    rank = d(st.integers(2, 3), "rank")
    mode = d(st.sampled_from(["nearest", "linear", "cubic"] if rank == 2 else ["nearest", "linear"]), "mode")
    attrs = dict(mode=mode, padding_mode=d(st.sampled_from(["zeros", "border", "reflection"]), "padding"),
                 align_corners=d(st.integers(0, 1), "align_corners"))
    x = rand(d(st.integers(1, 2)), d(st.integers(1, 3)), *ints(d, 1, 5, rank, "in"))
    if attrs["padding_mode"] == "reflection" and attrs["align_corners"] and 1 in x.shape[2:]:
        attrs["padding_mode"] = "border"  # the reference evaluator divides by zero there
    out = ints(d, 1, 4, rank, "out")
    # mostly inside, some far outside, some exactly on the corners
    grid = RNG.uniform(-1.6, 1.6, (x.shape[0], *out, rank)).astype(np.float32)
    grid.reshape(-1)[::5] = RNG.choice([-1.0, 1.0, 0.0], grid.reshape(-1)[::5].shape)
    check("GridSample", {"x": x, "grid": grid}, attrs, opset=20)


def test_grid_sample_opset16_names_and_float64():
    """Opset 16 names the modes bilinear and bicubic; the reference evaluator knows only
    opset 20's names."""
    x, grid = rand(1, 2, 4, 4, dtype=np.float64), RNG.uniform(-1.2, 1.2, (1, 3, 2, 2))
    for old, new in (("bilinear", "linear"), ("nearest", "nearest"), ("bicubic", "cubic")):
        expected = check("GridSample", {"x": x, "grid": grid}, dict(mode=new), opset=20)[0]
        got = run_ours(model_of("GridSample", {"x": x, "grid": grid}, dict(mode=old), opset=16), {"x": x, "grid": grid})
        np.testing.assert_allclose(got[0], expected, rtol=1e-12)


def test_grid_sample_reflection_on_a_single_pixel():
    x, grid = rand(1, 1, 1, 3), RNG.uniform(-3, 3, (1, 2, 5, 2)).astype(np.float32)
    got = run_ours(model_of("GridSample", {"x": x, "grid": grid}, dict(padding_mode="reflection", align_corners=1)),
                   {"x": x, "grid": grid})[0]
    assert np.isfinite(got).all()


def test_grid_sample_nonfinite_grid_does_not_crash():
    x = rand(1, 1, 3, 3)
    grid = np.array([[[[np.nan, 0.0], [np.inf, -np.inf], [1e30, -1e30]]]], np.float32)
    for mode, padding in itertools.product(["nearest", "linear", "cubic"], ["zeros", "border", "reflection"]):
        got = run_ours(model_of("GridSample", {"x": x, "grid": grid}, dict(mode=mode, padding_mode=padding)),
                       {"x": x, "grid": grid})[0]
        assert got.shape == (1, 1, 1, 3)


@pytest.mark.parametrize("size", [(2, 3, 4, 5), (1, 1, 1, 1), (2, 1, 3, 2, 4), (1, 2, 1, 3, 1)])
@pytest.mark.parametrize("align", [0, 1])
def test_affine_grid(size, align):
    r = len(size) - 2
    theta = rand(size[0], r, r + 1)
    feed = {"theta": theta}
    inits = {"size": np.array(size, np.int64)}
    if 1 in size[2:] and align:
        # the reference evaluator steps by 2 / (n - 1) there; PyTorch and the function body give -1
        got = run_ours(model_of("AffineGrid", feed, dict(align_corners=align), inits=inits), feed)[0]
        assert got.shape == (size[0], *size[2:], r) and np.isfinite(got).all()
        return
    check("AffineGrid", feed, dict(align_corners=align), inits=inits)


def test_affine_grid_float64_and_errors():
    theta = rand(2, 2, 3, dtype=np.float64)
    got = run_ours(model_of("AffineGrid", {"theta": theta}, inits={"size": np.array([2, 1, 3, 4], np.int64)}),
                   {"theta": theta})[0]
    # the reference evaluator always returns float32; the spec keeps theta's type
    ys, xs = np.meshgrid((2 * np.arange(3) + 1) / 3 - 1, (2 * np.arange(4) + 1) / 4 - 1, indexing="ij")
    base = np.stack([xs, ys, np.ones_like(xs)], -1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np.einsum("hwj,nij->nhwi", base, theta), rtol=1e-12)
    invalid("AffineGrid", {"theta": theta}, inits={"size": np.array([3, 1, 3, 4], np.int64)}, match="size")
    invalid("AffineGrid", {"theta": theta}, inits={"size": np.array([2, 1, 2, 3, 4], np.int64)}, match="size")


# ---------------------------------------------------------------- Col2Im, MaxUnpool

@PROPS
@given(st.data())
def test_col2im(data):
    d = data.draw
    rank = d(st.integers(1, 3), "rank")
    block, strides = ints(d, 1, 3, rank, "block"), ints(d, 1, 2, rank, "strides")
    dil, pads = ints(d, 1, 2, rank, "dilations"), ints(d, 0, 1, 2 * rank, "pads")
    image = [dl * (b - 1) + 1 + d(st.integers(0, 3)) for b, dl in zip(block, dil)]
    counts = [(i + pads[k] + pads[k + rank] - dl * (b - 1) - 1) // s + 1
              for k, (i, b, s, dl) in enumerate(zip(image, block, strides, dil))]
    c = d(st.integers(1, 2))
    x = rand(d(st.integers(1, 2)), c * int(np.prod(block)), int(np.prod(counts)))
    inits = {"image": np.array(image, np.int64), "block": np.array(block, np.int64)}
    attrs = dict(strides=strides, dilations=dil, pads=pads)
    if rank == 2:
        check("Col2Im", {"x": x}, attrs, opset=18, inits=inits)
        return
    # the reference evaluator does 2-D only: fold by hand
    got = run_ours(model_of("Col2Im", {"x": x}, attrs, opset=18, inits=inits), {"x": x})[0]
    padded = np.zeros((x.shape[0], c, *[i + pads[k] + pads[k + rank] for k, i in enumerate(image)]))
    cols = x.reshape(x.shape[0], c, *block, *counts)
    for tap in itertools.product(*[range(b) for b in block]):
        for pos in itertools.product(*[range(v) for v in counts]):
            at = tuple(p * s + t * dl for p, s, t, dl in zip(pos, strides, tap, dil))
            padded[(slice(None), slice(None)) + at] += cols[(slice(None), slice(None)) + tap + pos]
    crop = tuple(slice(pads[k], pads[k] + i) for k, i in enumerate(image))
    np.testing.assert_allclose(got, padded[(slice(None), slice(None)) + crop], rtol=1e-5, atol=1e-6)


def test_maxunpool_roundtrip_and_errors():
    x = rand(2, 3, 6, 4)
    pool = dict(kernel_shape=[2, 2], strides=[2, 2])
    v, idx = run_ours(model_of("MaxPool", {"x": x}, pool, opset=12, outputs=("v", "i")), {"x": x})
    np.testing.assert_array_equal(check("MaxUnpool", {"v": v, "i": idx}, pool, opset=11)[0],
                                  np.where(x == np.repeat(np.repeat(v, 2, 2), 2, 3), x, 0))
    # a larger output_shape: the unpooled values at its start (the reference evaluator fails)
    got = run_ours(model_of("MaxUnpool", {"v": v, "i": idx}, pool, opset=11,
                            inits={"shape": np.array([2, 3, 7, 6], np.int64)}), {"v": v, "i": idx})[0]
    expected = np.zeros((2, 3, 7, 6), np.float32)
    expected[:, :, :6, :4] = np.where(x == np.repeat(np.repeat(v, 2, 2), 2, 3), x, 0)
    np.testing.assert_array_equal(got, expected)
    invalid("MaxUnpool", {"v": v, "i": idx + x.size}, pool, opset=11, match="out of data bounds")
    invalid("MaxUnpool", {"v": v, "i": idx}, pool, opset=11, inits={"shape": np.array([2, 3, 5, 4], np.int64)},
            match="smaller")


# ---------------------------------------------------------------- RoiAlign, NonMaxSuppression

@PROPS
@given(st.data())
def test_roi_align(data):
    d = data.draw
    x = rand(d(st.integers(1, 2)), d(st.integers(1, 3)), d(st.integers(1, 6)), d(st.integers(1, 6)))
    r = d(st.integers(1, 4))
    corners = RNG.uniform(-2, 8, (r, 2, 2))
    rois = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(np.float32)
    batch = RNG.integers(0, x.shape[0], r).astype(np.int64)
    attrs = dict(mode=d(st.sampled_from(["avg", "max"])), output_height=d(st.integers(1, 3)),
                 output_width=d(st.integers(1, 3)), sampling_ratio=d(st.integers(0, 2)),
                 spatial_scale=d(st.sampled_from([1.0, 0.5])),
                 coordinate_transformation_mode=d(st.sampled_from(["half_pixel", "output_half_pixel"])))
    check("RoiAlign", {"x": x, "rois": rois, "batch": batch}, attrs, opset=16)


def test_roi_align_opset10_default_and_bad_batch_index():
    """Opset 10 has no coordinate_transformation_mode and samples as output_half_pixel
    does; the reference evaluator applies opset 16's default (half_pixel) to it."""
    x, rois = rand(1, 2, 5, 5), np.array([[0.5, 0.5, 3.5, 4.0]], np.float32)
    feed = {"x": x, "rois": rois, "batch": np.zeros(1, np.int64)}
    got = run_ours(model_of("RoiAlign", feed, dict(output_height=2), opset=10), feed)[0]
    expected = check("RoiAlign", feed, dict(output_height=2, coordinate_transformation_mode="output_half_pixel"),
                     opset=16)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    invalid("RoiAlign", {"x": x, "rois": rois, "batch": np.array([1], np.int64)}, opset=16, match="batch_indices")
    invalid("RoiAlign", {"x": x, "rois": rois, "batch": np.array([-1], np.int64)}, opset=16, match="batch_indices")


@PROPS
@given(st.data())
def test_non_max_suppression(data):
    d = data.draw
    b, c, n = d(st.integers(1, 2)), d(st.integers(1, 3)), d(st.integers(0, 8))
    center = d(st.integers(0, 1), "center_point_box")
    boxes = RNG.uniform(0, 4, (b, n, 4)).astype(np.float32)
    if center:
        boxes[..., 2:] = np.abs(boxes[..., 2:]) + 0.1
    scores = RNG.choice([0.1, 0.3, 0.5, 0.9], (b, c, n)).astype(np.float32)  # with ties
    inits = {"max": np.array([d(st.integers(0, 5))], np.int64),
             "iou": np.array([d(st.sampled_from([0.0, 0.3, 0.7]))], np.float32),
             "score": np.array([d(st.sampled_from([0.0, 0.2, 0.6]))], np.float32)}
    # the reference evaluator fails on omitted inputs: all five are given
    check("NonMaxSuppression", {"boxes": boxes, "scores": scores}, dict(center_point_box=center), opset=11,
          inits=inits)


def test_non_max_suppression_defaults_and_inverted_corners():
    boxes = np.array([[[0, 0, 1, 1], [1.1, 1.1, 0.1, 0.1], [0, 0, 0.5, 0.5]]], np.float32)
    scores = np.array([[[0.9, 0.8, 0.7]]], np.float32)
    # max_output_boxes_per_class omitted: 0, nothing selected
    got = run_ours(model_of("NonMaxSuppression", {"b": boxes, "s": scores}, opset=11), {"b": boxes, "s": scores})[0]
    assert got.shape == (0, 3) and got.dtype == np.int64
    inits = {"m": np.array([3], np.int64), "iou": np.array([0.5], np.float32)}
    got = run_ours(model_of("NonMaxSuppression", {"b": boxes, "s": scores}, opset=11, inits=inits),
                   {"b": boxes, "s": scores})[0]
    # box 1 is box 0 shifted by 0.1 with its corners swapped: IoU 0.68 suppresses it
    np.testing.assert_array_equal(got, [[0, 0, 0], [0, 0, 2]])


# ---------------------------------------------------------------- DepthToSpace, SpaceToDepth

@PROPS
@given(st.data())
def test_depth_space_roundtrip(data):
    d = data.draw
    b = d(st.integers(1, 3), "blocksize")
    mode = d(st.sampled_from(["DCR", "CRD"]), "mode")
    dtype = d(st.sampled_from([np.float32, np.int64, np.uint8, np.bool_, np.float16]), "dtype")
    shape = (d(st.integers(0, 2)), d(st.integers(1, 3)) * b * b, d(st.integers(1, 3)), d(st.integers(1, 3)))
    x = (RNG.standard_normal(shape) * 10).astype(dtype)
    y = check("DepthToSpace", {"x": x}, dict(blocksize=b, mode=mode), opset=13)[0]
    # SpaceToDepth inverts it in the same mode (the reference evaluator has CRD too, opset 28)
    back = run_ours(model_of("SpaceToDepth", {"d": y}, dict(blocksize=b, mode=mode), opset=28), {"d": y})[0]
    np.testing.assert_array_equal(back, x)
    check("SpaceToDepth", {"d": y}, dict(blocksize=b), opset=13)


def test_depth_space_versions_and_errors():
    x = rand(1, 8, 2, 3)
    check("DepthToSpace", {"x": x}, dict(blocksize=2), opset=1)
    strings = np.array(["a", "b", "c", "d"] * 6, dtype=object).reshape(1, 4, 2, 3)
    check("DepthToSpace", {"s": strings}, dict(blocksize=2, mode="CRD"), opset=11)
    check("SpaceToDepth", {"x": rand(2, 3, 4, 6)}, dict(blocksize=2), opset=1)
    invalid("DepthToSpace", {"x": x}, dict(blocksize=3), match="divide")
    invalid("SpaceToDepth", {"x": x}, dict(blocksize=2), opset=13, match="divide")
    invalid("DepthToSpace", {"x": x}, dict(blocksize=2, mode="XYZ"), opset=13, match="mode")
    invalid("DepthToSpace", {"x": rand(8, 2, 2)}, dict(blocksize=2), match="4-D")


# ---------------------------------------------------------------- GroupNormalization, RMSNormalization, MVN

def group_norm_numpy(x, scale, bias, groups, eps, per_group):
    n, c = x.shape[:2]
    v = x.astype(np.float64).reshape(n, groups, -1)
    v = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + eps)
    if per_group:
        scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return (v.reshape(x.shape) * scale.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


@PROPS
@given(st.data())
def test_group_normalization(data):
    d = data.draw
    groups = d(st.integers(1, 3), "groups")
    shape = (d(st.integers(1, 2)), groups * d(st.integers(1, 3)), *ints(d, 1, 4, d(st.integers(0, 2)), "spatial"))
    dtype = d(st.sampled_from([np.float32, np.float64, np.float16]), "dtype")
    opset = d(st.sampled_from([18, 21]), "opset")
    eps = d(st.sampled_from([1e-5, 1e-2]), "epsilon")
    x = (rand(*shape) * 3 + 5).astype(dtype)
    size = shape[1] if opset >= 21 else groups
    scale, bias = rand(size).astype(dtype), rand(size).astype(dtype)
    got = run_ours(model_of("GroupNormalization", {"x": x}, dict(num_groups=groups, epsilon=eps), opset=opset,
                            inits={"s": scale, "b": bias}), {"x": x})[0]
    # the reference evaluator runs the opset-21 function body for opset 18 too (per-channel scale)
    expected = group_norm_numpy(x, scale, bias, groups, eps, opset < 21)
    tol = 5e-3 if dtype == np.float16 else 1e-4
    assert got.dtype == dtype
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=tol, atol=tol)
    if opset == 21 and dtype == np.float32:
        # the reference evaluator runs the function body: E[x^2] - E[x]^2 in float32, which
        # cancels badly for data far from 0; compared on centred data only
        check("GroupNormalization", {"x": rand(*shape)}, dict(num_groups=groups, epsilon=eps), opset=21,
              inits={"s": scale, "b": bias}, rtol=1e-3, atol=1e-4)


def test_group_normalization_errors():
    x = rand(2, 6, 3)
    one = {"s": np.ones(6, np.float32), "b": np.zeros(6, np.float32)}
    invalid("GroupNormalization", {"x": x}, dict(num_groups=4), opset=21, inits=one, match="num_groups")
    invalid("GroupNormalization", {"x": x}, dict(num_groups=3), opset=18, inits=one, match="scale")


@PROPS
@given(st.data())
def test_rms_normalization(data):
    d = data.draw
    shape = ints(d, 1, 4, d(st.integers(1, 4)), "shape")
    axis = d(st.integers(-len(shape), len(shape) - 1), "axis")
    inner = shape[axis:] if axis >= 0 else shape[len(shape) + axis:]
    scale_shape = inner[d(st.integers(0, len(inner))):]  # broadcast from the right
    x = rand(*shape)
    x.reshape(-1)[::7] = 0.0
    check("RMSNormalization", {"x": x}, dict(axis=axis, epsilon=d(st.sampled_from([1e-5, 0.1]))), opset=23,
          inits={"scale": rand(*scale_shape)})


def test_rms_normalization_types_and_errors():
    x = rand(2, 3, 4, dtype=np.float16)
    # Y has scale's type (V); the reference evaluator fails on mixed types
    got = run_ours(model_of("RMSNormalization", {"x": x}, opset=23, inits={"scale": np.ones(4)}), {"x": x})[0]
    assert got.dtype == np.float64
    v = x.astype(np.float32)
    np.testing.assert_allclose(got, v / np.sqrt((v * v).mean(-1, keepdims=True) + 1e-5), rtol=2e-3)
    # stash_type 11 computes in float64 (the reference evaluator does only 1)
    x64, s64 = rand(3, 5, dtype=np.float64) * 1e-3 + 1, rand(5, dtype=np.float64)
    got = run_ours(model_of("RMSNormalization", {"x": x64}, dict(stash_type=11), opset=23, inits={"scale": s64}),
                   {"x": x64})[0]
    np.testing.assert_allclose(got, x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + 1e-5) * s64, rtol=1e-12)
    invalid("RMSNormalization", {"x": rand(3, 5)}, dict(axis=2), opset=23, inits={"scale": rand(5)}, match="axis")
    invalid("RMSNormalization", {"x": rand(3, 5)}, opset=23, inits={"scale": rand(4)}, match="broadcast")


@pytest.mark.parametrize("shape,axes", [((2, 3, 4, 5), None), ((2, 3, 4, 5), [0, 2, 3]), ((3, 4), [1]),
                                        ((2, 3, 4), [-1, 0]), ((2, 1, 3, 2), [0, 1, 2, 3])])
@pytest.mark.parametrize("opset", [9, 13, 18])
def test_mean_variance_normalization(shape, axes, opset):
    x = rand(*shape) * 4 + 1
    check("MeanVarianceNormalization", {"x": x}, None if axes is None else dict(axes=axes), opset=opset)


def test_mean_variance_normalization_constant_input_is_zero():
    """E[x^2] - E[x]^2 (the function body) can round below 0 and give NaN; the variance
    around the mean cannot."""
    x = np.full((2, 3, 4, 4), 0.1, np.float32)
    got = run_ours(model_of("MeanVarianceNormalization", {"x": x}, opset=13), {"x": x})[0]
    np.testing.assert_array_equal(got, 0)


# ---------------------------------------------------------------- losses

@PROPS
@given(st.data())
def test_losses(data):
    d = data.draw
    op = d(st.sampled_from(["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"]), "op")
    n, c = d(st.integers(1, 3)), d(st.integers(1, 4))
    extra = ints(d, 1, 3, d(st.integers(0, 3)), "extra dims")
    x = rand(n, c, *extra)
    target = RNG.integers(0, c, (n, *extra)).astype(d(st.sampled_from([np.int64, np.int32])))
    attrs = dict(reduction=d(st.sampled_from(["none", "sum", "mean"]), "reduction"))
    if d(st.booleans(), "ignore_index"):
        attrs["ignore_index"] = ii = d(st.sampled_from([-1, 0, 1, 10, -100]))
        target.reshape(-1)[::3] = ii
        if attrs["reduction"] == "mean" and (target == ii).all():
            target.reshape(-1)[-1] = (ii + 1) % c if c > 1 else 0  # keep the mean defined
            if (target == ii).all():
                return
    feed = {"x": x, "t": target}
    inits = {"w": RNG.uniform(0.5, 2, c).astype(np.float32)} if d(st.booleans(), "weight") else {}
    outputs = ("y", "logp") if op.startswith("Softmax") and d(st.booleans(), "log_prob") else ("y",)
    check(op, feed, attrs, opset=d(st.sampled_from([13, 22]) if op.startswith("Neg") else st.just(13)),
          inits=inits, outputs=outputs)


def test_losses_float64_opset12_and_errors():
    x, t = rand(3, 4, dtype=np.float64), np.array([0, 3, 1], np.int64)
    check("SoftmaxCrossEntropyLoss", {"x": x, "t": t}, opset=12, outputs=("y", "logp"), rtol=1e-9)
    check("NegativeLogLikelihoodLoss", {"x": x, "t": t}, dict(reduction="sum"), opset=12, rtol=1e-9)
    for op in ("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"):
        invalid(op, {"x": x, "t": np.array([0, 4, 1], np.int64)}, opset=13, match="class index")
        invalid(op, {"x": x, "t": np.array([0, -1, 1], np.int64)}, dict(ignore_index=-100), opset=13,
                match="class index")
        invalid(op, {"x": x, "t": np.array([0, 1], np.int64)}, opset=13, match="target")


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
def test_losses_every_target_ignored(op):
    """mean over no targets: 0 / 0, NaN, as the function bodies compute it (the reference
    evaluator agrees, except for ignore_index=-1 where it skips the weights and gives 0)."""
    x = rand(2, 3)
    for ii in (-100, -1):
        t = np.full(2, ii, np.int64)
        got = run_ours(model_of(op, {"x": x, "t": t}, dict(ignore_index=ii), opset=13), {"x": x, "t": t})[0]
        assert got.shape == () and np.isnan(got)
    check(op, {"x": x, "t": t}, dict(ignore_index=-1, reduction="sum"), opset=13)


# ---------------------------------------------------------------- bad arguments

X4, W4 = rand(1, 2, 3, 3), rand(2, 2, 2, 2)
NO_ROI = np.zeros(0, np.float32)


@pytest.mark.parametrize("op,feed,attrs,opset,inits,match", [
    ("ConvTranspose", {"x": X4, "w": W4}, dict(strides=[0, 1]), 11, None, "positive"),
    ("ConvTranspose", {"x": X4, "w": W4}, dict(pads=[-1, 0, 0, 0]), 11, None, "negative"),
    ("ConvTranspose", {"x": X4, "w": W4}, dict(kernel_shape=[3, 3]), 11, None, "kernel_shape"),
    ("ConvTranspose", {"x": X4, "w": W4}, dict(group=3), 11, None, "group"),
    ("ConvTranspose", {"x": X4, "w": W4}, None, 11, {"b": rand(3)}, "B must"),
    ("Col2Im", {"x": rand(1, 4, 4)}, None, 18, {"i": np.array([3, 3]), "b": np.array([0, 2])}, "positive"),
    ("Col2Im", {"x": rand(1, 4, 4)}, dict(strides=[0, 1]), 18, {"i": np.array([3, 3]), "b": np.array([2, 2])},
     "positive"),
    ("Col2Im", {"x": rand(1, 4, 5)}, None, 18, {"i": np.array([3, 3]), "b": np.array([2, 2])}, "blocks"),
    ("MaxUnpool", {"v": rand(1, 1, 2, 2), "i": np.array([-1, 0, 1, 2]).reshape(1, 1, 2, 2)},
     dict(kernel_shape=[2, 2], strides=[2, 2]), 11, None, "negative"),
    ("RoiAlign", {"x": rand(1, 1, 4, 4), "r": np.array([[np.nan, 0, 1, 1]], np.float32),
                  "b": np.zeros(1, np.int64)}, None, 16, None, "finite"),
    ("GridSample", {"x": rand(1, 1, 3, 3), "g": rand(1, 2, 2, 3)}, None, 20, None, "grid"),
    ("GridSample", {"x": rand(1, 1, 3, 3), "g": rand(1, 2, 2, 2)}, dict(mode="area"), 20, None, "mode"),
    ("NonMaxSuppression", {"b": rand(1, 3, 4), "s": rand(1, 1, 2)}, None, 11, None, "boxes"),
    ("Resize", {"x": rand(1, 1, 2, 2)}, dict(mode="nearest"), 13,
     {"r": NO_ROI, "s": np.array([1, 1, np.nan, 1], np.float32)}, "finite"),
    ("Resize", {"x": rand(1, 1, 2, 2)}, dict(mode="nearest"), 13,
     {"r": NO_ROI, "s": NO_ROI, "z": np.array([1, 1, -2, 2])}, "negative"),
    ("AffineGrid", {"t": rand(1, 2, 3)}, None, 20, {"s": np.array([1, 1, -2, 3])}, "size"),
])
def test_bad_arguments(op, feed, attrs, opset, inits, match):
    invalid(op, feed, attrs, opset=opset, inits=inits, match=match)


def test_empty_outputs():
    x = rand(1, 1, 3, 3)
    inits = {"r": NO_ROI, "s": NO_ROI, "z": np.array([1, 1, 0, 2], np.int64)}
    got = run_ours(model_of("Resize", {"x": x}, dict(mode="linear"), opset=13, inits=inits), {"x": x})[0]
    assert got.shape == (1, 1, 0, 2)
    e = np.zeros((1, 0, 3), np.float32)
    inits["z"] = np.array([1, 0, 6], np.int64)
    assert run_ours(model_of("Resize", {"e": e}, dict(mode="cubic"), opset=13, inits=inits), {"e": e})[0].shape == \
        (1, 0, 6)
    inits["z"] = np.array([1, 2, 6], np.int64)
    invalid("Resize", {"e": e}, dict(mode="cubic"), opset=13, inits=inits, match="empty")
    e = np.zeros((0, 8, 2, 2), np.float32)
    assert run_ours(model_of("DepthToSpace", {"e": e}, dict(blocksize=2), opset=13), {"e": e})[0].shape == (0, 2, 4, 4)
