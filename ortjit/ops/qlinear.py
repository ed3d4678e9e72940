"""Integer and quantized matmul / convolution: MatMulInteger, ConvInteger, QLinearMatMul,
QLinearConv. Accumulation is exact: integers shifted by their zero points are multiplied
in float64 (exact below 2**53, far beyond int8 * int8 sums), then requantized with the
multiplier x_scale * w_scale / y_scale computed in float32, as onnx's reference and ONNX
Runtime do (it decides which way values next to a rounding tie go)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .base import Info, Op, broadcast_shapes
from .cast import cast_array
from .conv import Conv
from .registry import register

F64 = np.dtype(np.float64)
F32 = np.float32


def _param_shape(shape: tuple, rank: int, axis: int | None) -> tuple:
    """How a scale or zero point lies against an operand of the given rank: one value per
    tensor, a 1-D vector along `axis` (rows of a, columns of b, output channels of w), or
    an N-D tensor already shaped to broadcast ([.., M, 1] per row, [.., 1, N] per column)."""
    shape = tuple(shape)
    if int(np.prod(shape, dtype=np.int64)) == 1:
        return ()
    if len(shape) == 1 and axis is not None and 0 <= axis < rank:
        return tuple(-1 if i == axis else 1 for i in range(rank))
    return shape


def _check_param(ctx, i: int, what: str, operand: int, axis: int | None):
    """A scale or zero point must broadcast to its operand without growing it."""
    p, x = ctx.input(i), ctx.inputs[operand]
    if p is None:
        return
    shape = tuple(x.shape)
    laid = tuple(p.shape[0] if d == -1 else d for d in _param_shape(p.shape, len(shape), axis))
    if len(laid) > len(shape) or any(d not in (1, s) for d, s in zip(laid[::-1], shape[::-1])):
        raise ctx.fail(f"{what} of shape {list(p.shape)} does not fit its input of shape {list(shape)}")


def _laid(p, rank: int, axis: int | None) -> np.ndarray:
    p = np.asarray(p)
    return p.reshape(_param_shape(p.shape, rank, axis))


def _shifted(x, zp, axis: int | None = None):
    """x - zero point, as float64."""
    x = x.astype(np.float64)
    if zp is None:
        return x
    return x - _laid(zp, x.ndim, axis).astype(np.float64)


def _requantize(acc, multiplier, y_zp, out):
    """out = saturate(round(acc * multiplier) + y_zp), rounding half to even."""
    real = acc * multiplier.astype(np.float64)
    if out.dtype.kind in "iu":
        info = np.iinfo(out.dtype)
        q = np.rint(real) + np.asarray(y_zp, np.float64).reshape(())
        out[...] = np.clip(q, info.min, info.max).astype(out.dtype)
    else:  # float 8: the zero point only gives the type, as in QuantizeLinear
        out[...] = cast_array(real, out.dtype, saturate=True)


def _multiplier(x_scale, w_scale, y_scale):
    return (x_scale.astype(F32) * w_scale.astype(F32)) / np.asarray(y_scale, F32).reshape(())


def _matmul_shape(ctx, a, b) -> tuple:
    """numpy.matmul's result shape (1-D operands promoted, then their dim dropped)."""
    a, b = tuple(a), tuple(b)
    if not a or not b:
        raise ctx.fail("matmul operands must have rank 1 or more")
    a2, b2 = (a if len(a) > 1 else (1,) + a), (b if len(b) > 1 else b + (1,))
    if a2[-1] != b2[-2]:
        raise ctx.fail(f"incompatible dimensions for matrix multiplication: {list(a)} and {list(b)}")
    shape = broadcast_shapes(ctx, a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return shape


def _row_axis(rank: int):
    return rank - 2 if rank >= 2 else None


def _int32_wrapped(acc: np.ndarray) -> np.ndarray:
    """The spec lets accumulation overflow in 32 bits only: wrap as int32 arithmetic would."""
    return acc.astype(np.int64).astype(np.int32)


@register("MatMulInteger")
class MatMulInteger(Op):
    def infer(self, ctx):
        a, b = ctx.inputs[0], ctx.inputs[1]
        _check_param(ctx, 2, "a_zero_point", 0, _row_axis(len(a.shape)))
        _check_param(ctx, 3, "b_zero_point", 1, len(b.shape) - 1)
        return [Info(_matmul_shape(ctx, a.shape, b.shape), np.dtype(np.int32))]

    def kernel(self, ctx):
        def run(a, b, *rest):
            out = rest[-1]
            azp = rest[0] if len(rest) > 1 else None
            bzp = rest[1] if len(rest) > 2 else None
            acc = np.matmul(_shifted(a, azp, _row_axis(a.ndim)), _shifted(b, bzp, b.ndim - 1))
            out[...] = _int32_wrapped(acc)
        return run


@register("QLinearMatMul")
class QLinearMatMul(Op):
    def infer(self, ctx):
        a, b = ctx.inputs[0], ctx.inputs[3]
        for i, what in ((1, "a_scale"), (2, "a_zero_point")):
            _check_param(ctx, i, what, 0, _row_axis(len(a.shape)))
        for i, what in ((4, "b_scale"), (5, "b_zero_point")):
            _check_param(ctx, i, what, 3, len(b.shape) - 1)
        if ctx.inputs[6].size != 1 or ctx.inputs[7].size != 1:
            raise ctx.fail("y_scale and y_zero_point must be scalars")
        return [Info(_matmul_shape(ctx, a.shape, b.shape), np.dtype(ctx.inputs[7].dtype))]

    def kernel(self, ctx):
        def run(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp, out):
            ra, rb = _row_axis(a.ndim), b.ndim - 1
            acc = np.matmul(_shifted(a, a_zp, ra), _shifted(b, b_zp, rb))
            _requantize(acc, _multiplier(_laid(a_scale, a.ndim, ra), _laid(b_scale, b.ndim, rb), y_scale),
                        y_zp, out)
        return run


def _float_conv(ctx, x_info, w_info, has_bias=False):
    """Conv's float64 kernel for this node's geometry."""
    inputs = [Info(tuple(x_info.shape), F64), Info(tuple(w_info.shape), F64)]
    if has_bias:
        inputs.append(Info((w_info.shape[0],), F64))
    cctx = replace(ctx, op_type="Conv", inputs=inputs)
    conv = Conv()
    return conv.kernel(cctx), conv.infer(cctx)[0].shape


def _check_conv_params(ctx, x: int, x_params, w: int, w_params):
    for i, what in x_params:
        p = ctx.input(i)
        if p is not None and p.size != 1:
            raise ctx.fail(f"{what} must be a scalar, got shape {list(p.shape)}")
    for i, what in w_params:
        p = ctx.input(i)
        if p is not None and p.size != 1 and tuple(p.shape) != (ctx.inputs[w].shape[0],):
            raise ctx.fail(f"{what} must be a scalar or one value per output channel "
                           f"({ctx.inputs[w].shape[0]}), got shape {list(p.shape)}")


@register("ConvInteger")
class ConvInteger(Op):
    def infer(self, ctx):
        _check_conv_params(ctx, 0, [(2, "x_zero_point")], 1, [(3, "w_zero_point")])
        _, shape = _float_conv(ctx, ctx.inputs[0], ctx.inputs[1])
        return [Info(shape, np.dtype(np.int32))]

    def kernel(self, ctx):
        conv, shape = _float_conv(ctx, ctx.inputs[0], ctx.inputs[1])

        def run(x, w, *rest):
            out = rest[-1]
            xzp = rest[0] if len(rest) > 1 else None
            wzp = rest[1] if len(rest) > 2 else None
            acc = np.empty(shape, F64)
            conv(_shifted(x, xzp), _shifted(w, wzp, 0), acc)
            out[...] = _int32_wrapped(np.rint(acc))
        return run


@register("QLinearConv")
class QLinearConv(Op):
    def infer(self, ctx):
        _check_conv_params(ctx, 0, [(1, "x_scale"), (2, "x_zero_point"), (6, "y_scale"), (7, "y_zero_point")],
                           3, [(4, "w_scale"), (5, "w_zero_point")])
        bias = ctx.input(8)
        if bias is not None and tuple(bias.shape) != (ctx.inputs[3].shape[0],):
            raise ctx.fail(f"B must have one value per output channel, got shape {list(bias.shape)}")
        _, shape = _float_conv(ctx, ctx.inputs[0], ctx.inputs[3])
        return [Info(shape, np.dtype(ctx.inputs[7].dtype))]

    def kernel(self, ctx):
        conv, shape = _float_conv(ctx, ctx.inputs[0], ctx.inputs[3])
        channels = [-1] + [1] * (len(shape) - 2)

        def run(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, *rest):
            out, bias = rest[-1], (rest[0] if len(rest) > 1 else None)
            acc = np.empty(shape, F64)
            conv(_shifted(x, x_zp), _shifted(w, w_zp, 0), acc)
            if bias is not None:
                acc += bias.astype(np.float64).reshape(channels)
            ws = np.asarray(w_scale).reshape(channels if w_scale.size > 1 else ())  # per output channel
            _requantize(acc, _multiplier(np.asarray(x_scale).reshape(()), ws, y_scale), y_zp, out)
        return run
