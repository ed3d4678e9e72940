"""Linear quantization: QuantizeLinear, DequantizeLinear (per tensor, per axis, blocked;
integer, float8, float4, int4 and int2 targets), DynamicQuantizeLinear."""
from __future__ import annotations

import numpy as np

from ..dtypes import to_numpy
from .base import Info, Op, normalize_axis
from .cast import cast_array
from .registry import register

INTEGER_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
                  "uint4": (0, 15), "int4": (-8, 7), "uint2": (0, 3), "int2": (-2, 1)}


def expand_param(ctx, p: np.ndarray, shape: tuple, axis: int, block: int) -> np.ndarray:
    """A scale or zero point broadcast to the input: per tensor (one value), per axis
    (one value per index of `axis`) or blocked (`block` consecutive indices share one)."""
    p = np.asarray(p)
    if p.size == 1 and p.ndim <= 1:
        return p.reshape(())
    a = normalize_axis(ctx, axis, len(shape))
    if not block:
        if p.ndim != 1 or p.shape[0] != shape[a]:
            raise ctx.fail(f"a per-axis scale must be 1-D of length {shape[a]} (axis {a}), got {list(p.shape)}")
        return p.reshape([-1 if i == a else 1 for i in range(len(shape))])
    if block < 0:
        raise ctx.fail(f"block_size must be positive, got {block}")
    full = np.repeat(p, block, axis=a).take(np.arange(shape[a]), axis=a) if p.ndim == len(shape) else None
    if full is None or full.shape != tuple(shape) or -(-shape[a] // block) != p.shape[a]:
        raise ctx.fail(f"a blocked scale of shape {list(p.shape)} does not fit input {list(shape)} "
                       f"with block_size {block} on axis {a}")
    return full


def _target(ctx):
    zp = ctx.input(2)
    if zp is not None:
        return np.dtype(zp.dtype)
    out = ctx.attr("output_dtype", 0)
    return to_numpy(out) if out else np.dtype(np.uint8)


def quantize(x, scale, zero_point, to: np.dtype, saturate=True, precision=None):
    with np.errstate(divide="ignore", invalid="ignore"):
        q = x.astype(precision) / scale.astype(precision) if precision is not None else x / scale
    if to.name in INTEGER_RANGES:
        lo, hi = INTEGER_RANGES[to.name]
        qi = np.rint(q).astype(np.int64)
        if zero_point is not None:
            qi = qi + zero_point.astype(np.int64)
        return np.clip(qi, lo, hi).astype(to)
    if to.name.startswith("float4"):  # no infinities: ml_dtypes saturates by itself
        if zero_point is not None:
            q = q + zero_point.astype(np.float32)
        return np.asarray(q).astype(to)
    return cast_array(np.asarray(q, np.float32), to, saturate)


@register("QuantizeLinear")
class QuantizeLinear(Op):
    def infer(self, ctx):
        to = _target(ctx)
        if to.name not in INTEGER_RANGES and not to.name.startswith(("float8", "float4")):
            raise ctx.fail(f"{to} is not a quantized type")
        return [Info(tuple(ctx.inputs[0].shape), to)]

    def kernel(self, ctx):
        to = _target(ctx)
        axis, block = int(ctx.attr("axis", 1)), int(ctx.attr("block_size", 0))
        saturate = bool(ctx.attr("saturate", 1))
        precision = to_numpy(ctx.attr("precision")) if ctx.attr("precision") else None
        if to.name.startswith("float8"):
            zp_used = False  # float 8: the zero point only gives the type
        else:
            zp_used = True

        def run(x, scale, *rest):
            out, zp = rest[-1], (rest[0] if len(rest) > 1 else None)
            s = expand_param(ctx, scale, x.shape, axis, block)
            z = expand_param(ctx, zp, x.shape, axis, block) if zp is not None and zp_used else None
            out[...] = quantize(x, s, z, to, saturate, precision)
        return run


@register("DequantizeLinear")
class DequantizeLinear(Op):
    def _out(self, ctx):
        out = ctx.attr("output_dtype", 0)
        return to_numpy(out) if out else np.dtype(ctx.inputs[1].dtype)

    def infer(self, ctx):
        x, zp = ctx.inputs[0], ctx.input(2)
        if zp is not None and np.dtype(zp.dtype) != np.dtype(x.dtype):
            raise ctx.fail(f"x ({x.dtype}) and x_zero_point ({zp.dtype}) must have the same type")
        return [Info(tuple(x.shape), self._out(ctx))]

    def kernel(self, ctx):
        axis, block = int(ctx.attr("axis", 1)), int(ctx.attr("block_size", 0))
        name = np.dtype(ctx.inputs[0].dtype).name
        zp_used = not name.startswith(("float8", "float4"))

        def run(x, scale, *rest):
            out, zp = rest[-1], (rest[0] if len(rest) > 1 else None)
            dx = x.astype(np.float32)
            if zp is not None and zp_used:
                dx = dx - expand_param(ctx, zp, x.shape, axis, block).astype(np.float32)
            y = dx * expand_param(ctx, scale, x.shape, axis, block)
            out[...] = y.astype(out.dtype)
        return run


@register("DynamicQuantizeLinear")
class DynamicQuantizeLinear(Op):
    """uint8 quantization with the scale and zero point computed from the data's range
    (which always includes 0)."""

    def infer(self, ctx):
        shape = tuple(ctx.inputs[0].shape)
        return [Info(shape, np.dtype(np.uint8)), Info((), np.dtype(np.float32)), Info((), np.dtype(np.uint8))]

    def kernel(self, ctx):
        def run(x, y, y_scale, y_zero_point):
            lo = min(float(x.min()), 0.0) if x.size else 0.0
            hi = max(float(x.max()), 0.0) if x.size else 0.0
            scale = np.float32((hi - lo) / 255.0)
            zp = np.clip(np.rint(np.float32(0 - lo) / scale), 0, 255) if scale else np.float32(0)
            y_scale[...] = scale
            y_zero_point[...] = np.uint8(zp)
            if scale:
                y[...] = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
            else:
                y[...] = np.uint8(zp)
        return run
