"""Linear quantization: QuantizeLinear, DequantizeLinear (per tensor, per axis, blocked;
integer, float8, float6, float4, int4 and int2 targets), DynamicQuantizeLinear. Float 8 zero
points only give the type (never added); float 4 and float 6 ones are added when quantizing
and, as onnx's reference does, float 4 ones are ignored when dequantizing."""
from __future__ import annotations

import numpy as np

from ..dtypes import to_numpy
from .base import Info, Op, normalize_axis
from .cast import cast_array
from .registry import register

INTEGER_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
                  "uint4": (0, 15), "int4": (-8, 7), "uint2": (0, 3), "int2": (-2, 1)}


def param_expander(ctx, what: str, pshape: tuple, xshape: tuple, axis: int, block: int):
    """Checks a scale or zero point against the input and returns the function that lays it
    out to broadcast there: per tensor (one value), per axis (one value per index of
    `axis`) or blocked (`block` consecutive indices along `axis` share one)."""
    pshape, xshape = tuple(pshape), tuple(xshape)
    if block < 0:
        raise ctx.fail(f"block_size must be positive, got {block}")
    if int(np.prod(pshape, dtype=np.int64)) == 1 and len(pshape) <= 1:
        return lambda p: np.asarray(p).reshape(())
    a = normalize_axis(ctx, axis, len(xshape))
    if not block:
        if pshape != (xshape[a],):
            raise ctx.fail(f"a per-axis {what} must be 1-D of length {xshape[a]} (axis {a}), got {list(pshape)}")
        laid = tuple(-1 if i == a else 1 for i in range(len(xshape)))
        return lambda p: np.asarray(p).reshape(laid)
    want = tuple(-(-d // block) if i == a else d for i, d in enumerate(xshape))
    if pshape != want:
        raise ctx.fail(f"a blocked {what} of shape {list(pshape)} does not fit input {list(xshape)} with "
                       f"block_size {block} on axis {a}: its shape must be {list(want)}")
    index = np.arange(xshape[a]) // block
    return lambda p: np.asarray(p).take(index, axis=a)


def _one_value(shape) -> tuple:
    """A per-tensor parameter may be a scalar or hold its one value in a 1-D tensor."""
    shape = tuple(shape)
    return () if len(shape) <= 1 and int(np.prod(shape, dtype=np.int64)) == 1 else shape


def _expanders(ctx):
    """The layouts of input 1 (scale) and input 2 (zero point, if any), checked."""
    axis, block = int(ctx.attr("axis", 1)), int(ctx.attr("block_size", 0))
    x, scale, zp = ctx.inputs[0], ctx.inputs[1], ctx.input(2)
    if zp is not None and _one_value(zp.shape) != _one_value(scale.shape):
        raise ctx.fail(f"the scale {list(scale.shape)} and zero point {list(zp.shape)} must have one shape")
    return param_expander(ctx, "scale", scale.shape, x.shape, axis, block)


def _target(ctx):
    zp = ctx.input(2)
    if zp is not None:
        return np.dtype(zp.dtype)
    out = ctx.attr("output_dtype", 0)
    return to_numpy(out) if out else np.dtype(np.uint8)


def quantize(x, scale, zero_point, to: np.dtype, saturate=True, precision=None):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = x.astype(precision) / scale.astype(precision) if precision is not None else x / scale
    if to.name in INTEGER_RANGES:  # saturated in float64, so that huge values and infinities do too
        lo, hi = INTEGER_RANGES[to.name]
        qf = np.rint(q).astype(np.float64)
        if zero_point is not None:
            qf = qf + zero_point.astype(np.float64)
        with np.errstate(invalid="ignore"):  # NaN: undefined by the spec
            return np.clip(qf, lo, hi).astype(to)
    if to.name.startswith(("float4", "float6")):  # no infinities: ml_dtypes saturates by itself
        if zero_point is not None:
            q = q + zero_point.astype(np.float32)
        return np.asarray(q).astype(to)
    return cast_array(np.asarray(q, np.float32), to, saturate)


@register("QuantizeLinear")
class QuantizeLinear(Op):
    def infer(self, ctx):
        to = _target(ctx)
        if to.name not in INTEGER_RANGES and (not to.name.startswith(("float8", "float6", "float4"))
                                              or to.name == "float8_e8m0fnu"):
            raise ctx.fail(f"{to} is not a quantized type")
        out = ctx.attr("output_dtype", 0)
        if out and ctx.input(2) is not None and to_numpy(out) != to:
            raise ctx.fail(f"output_dtype {to_numpy(out)} differs from the zero point's type {to}")
        _expanders(ctx)
        return [Info(tuple(ctx.inputs[0].shape), to)]

    def kernel(self, ctx):
        to = _target(ctx)
        expand = _expanders(ctx)
        saturate = bool(ctx.attr("saturate", 1))
        precision = to_numpy(ctx.attr("precision")) if ctx.attr("precision") else None
        zp_used = not to.name.startswith("float8")  # float 8: the zero point only gives the type

        def run(x, scale, *rest):
            out, zp = rest[-1], (rest[0] if len(rest) > 1 else None)
            s = expand(scale)
            z = expand(zp) if zp is not None and zp_used else None
            out[...] = quantize(x, s, z, to, saturate, precision)
        return run


@register("DequantizeLinear")
class DequantizeLinear(Op):
    def _out(self, ctx):
        out = ctx.attr("output_dtype", 0)
        out = to_numpy(out) if out else np.dtype(ctx.inputs[1].dtype)
        if out.name not in ("float32", "float16", "bfloat16"):
            raise ctx.fail(f"the output type must be float, float16 or bfloat16, not {out} "
                           "(set output_dtype when x_scale is float8e8m0)")
        return out

    def infer(self, ctx):
        x, zp = ctx.inputs[0], ctx.input(2)
        if zp is not None and np.dtype(zp.dtype) != np.dtype(x.dtype):
            raise ctx.fail(f"x ({x.dtype}) and x_zero_point ({zp.dtype}) must have the same type")
        _expanders(ctx)
        return [Info(tuple(x.shape), self._out(ctx))]

    def kernel(self, ctx):
        expand = _expanders(ctx)
        name = np.dtype(ctx.inputs[0].dtype).name
        zp_used = not name.startswith(("float8", "float4"))

        def run(x, scale, *rest):
            out, zp = rest[-1], (rest[0] if len(rest) > 1 else None)
            dx = x.astype(np.float32)
            if zp is not None and zp_used:
                dx = dx - expand(zp).astype(np.float32)
            y = dx * expand(scale)
            with np.errstate(over="ignore"):  # float16 output: inf past its range
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
        f32 = np.float32

        def run(x, y, y_scale, y_zero_point):
            # float32 arithmetic throughout, as the reference and ONNX Runtime
            lo = min(f32(x.min()), f32(0)) if x.size else f32(0)
            hi = max(f32(x.max()), f32(0)) if x.size else f32(0)
            # all zeros: the spec's scale would be 0; ONNX Runtime uses 1
            scale = f32(1) if hi == lo else f32(hi - lo) / f32(255)
            with np.errstate(invalid="ignore", divide="ignore"):  # NaN inputs: undefined, but no crash
                # clamped as max(0, min(255, v)), which keeps a NaN's bound (a range that
                # underflows to a zero scale gives 0 / 0): ONNX Runtime's std::min / std::max
                zp = np.rint(max(f32(0), min(f32(255), f32(0) - lo / scale)))
                y_scale[...] = scale
                y_zero_point[...] = zp.astype(np.uint8)
                y[...] = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
        return run
