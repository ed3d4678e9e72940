"""Resize (opsets 10-19) and Upsample. Interpolation is separable: per resized axis, each
output index reads n input indices with n weights (nearest: 1 of 2, linear: 2, cubic: 4,
antialias: a filter widened by 1/scale). Those tables depend only on shapes, scales and
attributes, so they are made once per plan; a call gathers and weighs along each axis."""
from __future__ import annotations

import math

import numpy as np

from .base import Info, Op, normalize_axis
from .registry import register


def _text(v, default):
    v = default if v is None else v
    return v.decode() if isinstance(v, bytes) else v


def _nearest(mode):
    def coeffs(r, scale):
        if r == 1:  # on an input index: take it
            return [0.0, 1.0]
        if mode == "round_prefer_floor":
            return [float(r <= 0.5), float(r > 0.5)]
        if mode == "round_prefer_ceil":
            return [float(r < 0.5), float(r >= 0.5)]
        if mode == "floor":
            return [1.0, 0.0]
        if mode == "ceil":
            return [0.0, 1.0]
        raise ValueError(f"nearest_mode {mode!r}")
    return coeffs


def _linear(antialias):
    def coeffs(r, scale):
        if not antialias or scale >= 1:
            return [1 - r, r]
        start = int(math.floor(-1 / scale) + 1)
        args = (np.arange(start, 2 - start) - r) * scale
        c = np.clip(1 - np.abs(args), 0, 1)
        return c / c.sum()
    return coeffs


def _cubic(a, antialias):
    def kernel(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
        if x < 2:
            return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
        return 0.0

    def coeffs(r, scale):
        if not antialias or scale >= 1:
            return [kernel(r + 1), kernel(r), kernel(1 - r), kernel(2 - r)]
        start = int(math.floor(-2 / scale) + 1)
        c = np.array([kernel(scale * (i - r)) for i in range(start, 2 - start)])
        return c / c.sum()
    return coeffs


def _source_coords(ctm, out_len, in_len, scale, roi):
    """Where each output index samples the input; and which fall outside (crop and resize)."""
    y = np.arange(out_len, dtype=np.float64)
    width = scale * in_len
    outside = None
    if ctm == "align_corners":
        x = np.zeros(out_len) if width == 1 else y * (in_len - 1) / (width - 1)
    elif ctm == "asymmetric":
        x = y / scale
    elif ctm == "tf_crop_and_resize":
        lo, hi = roi
        x = np.full(out_len, (hi - lo) * (in_len - 1) / 2) if width == 1 else y * (hi - lo) * (in_len - 1) / (width - 1)
        x = x + lo * (in_len - 1)
        outside = (x < 0) | (x > in_len - 1)
    elif ctm == "pytorch_half_pixel":
        x = np.full(out_len, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    elif ctm == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif ctm == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / width)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise ValueError(f"coordinate_transformation_mode {ctm!r}")
    return x, outside


def axis_table(in_len, out_len, scale, ctm, roi, coeff_fn, exclude_outside):
    """(indices [out, n], weights [out, n], outside mask or None) for one axis."""
    x, outside = _source_coords(ctm, out_len, in_len, scale, roi)
    base = np.floor(x)
    ratios = np.where(x == base, 1.0, x - base)
    weights = np.array([coeff_fn(float(r), scale) for r in ratios], np.float64).reshape(out_len, -1)
    n = weights.shape[1]
    pad = math.ceil(n / 2)
    xp = x + pad
    p = np.floor(xp)
    frac = xp - p
    if n % 2 == 0:  # window centers between indices; a tie goes to the lower one
        offset = np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        first = -((n - 1) // 2)
        offset = np.where(frac <= 0.5, first, first + 1)
    idx = (p.astype(np.int64) + offset)[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        weights = np.where((idx < 0) | (idx >= in_len), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, in_len - 1), weights, outside


class _Resize(Op):
    def _inputs(self, ctx):
        """(scales, sizes, roi) as numpy values or None."""
        raise NotImplementedError

    def _attrs(self, ctx):
        mode = _text(ctx.attr("mode"), "nearest")
        if mode not in ("nearest", "linear", "cubic"):
            raise ctx.fail(f"mode must be nearest, linear or cubic, not {mode!r}")
        return mode

    def _plan(self, ctx):
        x = ctx.inputs[0]
        shape = tuple(x.shape)
        r = len(shape)
        scales, sizes, roi = self._inputs(ctx)
        axes = ctx.attr("axes")
        axes = list(range(r)) if axes is None else [normalize_axis(ctx, int(a), r) for a in axes]
        if (scales is None) == (sizes is None):
            raise ctx.fail("exactly one of scales and sizes must be given")
        full_scales = [1.0] * r
        out = list(shape)
        if scales is not None:
            if len(scales) != len(axes):
                raise ctx.fail(f"scales has {len(scales)} values for {len(axes)} axes")
            for a, s in zip(axes, scales):
                if not 0 < s < math.inf:
                    raise ctx.fail(f"scales must be positive and finite, got {list(scales)}")
                full_scales[a] = float(s)
                out[a] = int(s * shape[a])
        else:
            if len(sizes) != len(axes):
                raise ctx.fail(f"sizes has {len(sizes)} values for {len(axes)} axes")
            if min(sizes, default=0) < 0:
                raise ctx.fail(f"sizes must not be negative, got {list(sizes)}")
            for a, n in zip(axes, sizes):
                if shape[a] == 0 and n > 0:
                    raise ctx.fail(f"axis {a} is empty and cannot be resized to {n}")
                out[a] = int(n)
                full_scales[a] = int(n) / shape[a] if shape[a] else 1.0
            policy = _text(ctx.attr("keep_aspect_ratio_policy"), "stretch")
            if policy != "stretch":
                pick = {"not_larger": min, "not_smaller": max}.get(policy)
                if pick is None:
                    raise ctx.fail(f"keep_aspect_ratio_policy {policy!r}")
                s = pick(full_scales[a] for a in axes)
                for a in axes:
                    full_scales[a] = s
                    out[a] = int(s * shape[a] + 0.5)
        full_roi = None
        if roi is not None and np.asarray(roi).size:
            roi = [float(v) for v in np.asarray(roi).reshape(-1)]
            if len(roi) == 2 * len(axes) and len(axes) != r:
                full_roi = [0.0] * r + [1.0] * r
                for i, a in enumerate(axes):
                    full_roi[a], full_roi[r + a] = roi[i], roi[len(axes) + i]
            elif len(roi) == 2 * r:
                full_roi = roi
            else:
                raise ctx.fail(f"roi has {len(roi)} values for a rank-{r} input")
        return shape, out, full_scales, axes, full_roi

    def infer(self, ctx):
        _, out, *_ = self._plan(ctx)
        return [Info(tuple(out), ctx.inputs[0].dtype)]

    def _coefficients(self, ctx, mode):
        if mode == "nearest":
            return _nearest(_text(ctx.attr("nearest_mode"), self.default_nearest))
        antialias = bool(ctx.attr("antialias", 0))
        if mode == "linear":
            return _linear(antialias)
        return _cubic(float(ctx.attr("cubic_coeff_a", -0.75)), antialias)

    default_ctm = "half_pixel"
    default_nearest = "round_prefer_floor"

    def kernel(self, ctx):
        shape, out, scales, axes, roi = self._plan(ctx)
        mode = self._attrs(ctx)
        coeff_fn = self._coefficients(ctx, mode)
        ctm = _text(ctx.attr("coordinate_transformation_mode"), self.default_ctm)
        exclude = bool(ctx.attr("exclude_outside", 0))
        extrapolation = float(ctx.attr("extrapolation_value", 0.0))
        r = len(shape)
        tables = []
        if 0 in out:
            return lambda *arrays: None  # nothing to compute
        for a in axes:
            axis_roi = None if roi is None else (roi[a], roi[a + r])
            if math.isclose(scales[a], 1.0) and out[a] == shape[a] and \
                    (axis_roi is None or (math.isclose(axis_roi[0], 0) and math.isclose(axis_roi[1], 1))):
                continue  # this axis is not resized
            if ctm == "tf_crop_and_resize" and axis_roi is None:
                raise ctx.fail("tf_crop_and_resize needs a roi")
            idx, w, outside = axis_table(shape[a], out[a], scales[a], ctm, axis_roi, coeff_fn, exclude)
            tables.append((a, idx, w.reshape((1,) * a + w.shape + (1,) * (r - a - 1)), outside))

        def run(x, *rest):
            y = rest[-1]
            v = x.astype(np.float64)
            for a, idx, w, outside in tables:
                v = (np.take(v, idx, axis=a) * w).sum(axis=a + 1)
                if outside is not None and outside.any():
                    v = np.where(outside.reshape((1,) * a + (-1,) + (1,) * (r - a - 1)), extrapolation, v)
            if y.dtype.kind in "iu":
                info = np.iinfo(y.dtype)
                v = np.clip(np.rint(v), info.min, info.max)
            y[...] = v
        return run


def _given(ctx, i, name):
    """An optional input's value; an empty tensor counts as not given."""
    if ctx.input(i) is None or ctx.inputs[i].shape == (0,):
        return None
    v = np.asarray(ctx.value(i, name)).reshape(-1)
    return v if v.size else None


@register("Resize", since=11)
class Resize(_Resize):
    def _inputs(self, ctx):
        scales = _given(ctx, 2, "scales")
        sizes = _given(ctx, 3, "sizes")
        roi = _given(ctx, 1, "roi") if _text(ctx.attr("coordinate_transformation_mode"), "") == \
            "tf_crop_and_resize" else None
        return scales, (None if sizes is None else [int(s) for s in sizes]), roi


@register("Resize", since=10)
class Resize10(_Resize):
    """Opset 10: X and scales only; samples as Upsample does."""
    default_ctm = "asymmetric"
    default_nearest = "floor"

    def _inputs(self, ctx):
        return _given(ctx, 1, "scales"), None, None


@register("Upsample")
class Upsample(Resize10):
    """Scales as an attribute before opset 9, an input from 9."""

    def _inputs(self, ctx):
        if ctx.opset < 9:
            return [float(s) for s in ctx.attr("scales")], None, None
        return _given(ctx, 1, "scales"), None, None

    def _attrs(self, ctx):
        mode = _text(ctx.attr("mode"), "nearest")
        return "linear" if mode == "bilinear" else super()._attrs(ctx)
