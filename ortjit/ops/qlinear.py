"""Integer and quantized matmul / convolution: MatMulInteger, ConvInteger, QLinearMatMul,
QLinearConv. Accumulation is exact: integers shifted by their zero points are multiplied
in float64 (exact below 2**53, far beyond int8 * int8 sums), then requantized."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .base import Info, Op, broadcast_shapes
from .conv import Conv
from .registry import register

F64 = np.dtype(np.float64)


def _shifted(x, zp, axis_for_vector: int | None = None):
    """x - zero point, as float64; a 1-D zero point applies along the given axis."""
    x = x.astype(np.float64)
    if zp is None:
        return x
    zp = np.asarray(zp, np.float64)
    if zp.size > 1 and axis_for_vector is not None:
        shape = [1] * x.ndim
        shape[axis_for_vector] = -1
        zp = zp.reshape(shape)
    return x - (zp.reshape(()) if zp.size == 1 else zp)


def _requantize(real, y_scale, y_zp, out):
    info = np.iinfo(out.dtype)
    q = np.rint(real / np.asarray(y_scale, np.float64).reshape(())) + np.asarray(y_zp, np.float64).reshape(())
    out[...] = np.clip(q, info.min, info.max).astype(out.dtype)


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


@register("MatMulInteger")
class MatMulInteger(Op):
    def infer(self, ctx):
        return [Info(_matmul_shape(ctx, ctx.inputs[0].shape, ctx.inputs[1].shape), np.dtype(np.int32))]

    def kernel(self, ctx):
        def run(a, b, *rest):
            out = rest[-1]
            azp = rest[0] if len(rest) > 1 else None
            bzp = rest[1] if len(rest) > 2 else None
            acc = np.matmul(_shifted(a, azp, a.ndim - 2), _shifted(b, bzp, b.ndim - 1))
            out[...] = acc.astype(np.int32)
        return run


@register("QLinearMatMul")
class QLinearMatMul(Op):
    def infer(self, ctx):
        return [Info(_matmul_shape(ctx, ctx.inputs[0].shape, ctx.inputs[3].shape), np.dtype(ctx.inputs[7].dtype))]

    def kernel(self, ctx):
        def run(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp, out):
            acc = np.matmul(_shifted(a, a_zp, a.ndim - 2), _shifted(b, b_zp, b.ndim - 1))
            sa = np.asarray(a_scale, np.float64)
            sb = np.asarray(b_scale, np.float64)
            sa = sa.reshape(()) if sa.size == 1 else sa.reshape(-1, 1)  # per row of a
            sb = sb.reshape(()) if sb.size == 1 else sb.reshape(1, -1)  # per column of b
            _requantize(acc * sa * sb, y_scale, y_zp, out)
        return run


def _float_conv(ctx, x_info, w_info, has_bias=False):
    """Conv's float64 kernel for this node's geometry."""
    inputs = [Info(tuple(x_info.shape), F64), Info(tuple(w_info.shape), F64)]
    if has_bias:
        inputs.append(Info((w_info.shape[0],), F64))
    cctx = replace(ctx, op_type="Conv", inputs=inputs)
    conv = Conv()
    return conv.kernel(cctx), conv.infer(cctx)[0].shape


@register("ConvInteger")
class ConvInteger(Op):
    def infer(self, ctx):
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
            out[...] = np.rint(acc).astype(np.int32)
        return run


@register("QLinearConv")
class QLinearConv(Op):
    def infer(self, ctx):
        _, shape = _float_conv(ctx, ctx.inputs[0], ctx.inputs[3])
        return [Info(shape, np.dtype(ctx.inputs[7].dtype))]

    def kernel(self, ctx):
        conv, shape = _float_conv(ctx, ctx.inputs[0], ctx.inputs[3])

        def run(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, *rest):
            out, bias = rest[-1], (rest[0] if len(rest) > 1 else None)
            acc = np.empty(shape, F64)
            conv(_shifted(x, x_zp), _shifted(w, w_zp, 0), acc)
            if bias is not None:
                acc += bias.astype(np.float64).reshape([-1] + [1] * (acc.ndim - 2))
            ws = np.asarray(w_scale, np.float64)
            ws = ws.reshape(()) if ws.size == 1 else ws.reshape([-1] + [1] * (acc.ndim - 2))  # per output channel
            _requantize(acc * float(np.asarray(x_scale).reshape(())) * ws, y_scale, y_zp, out)
        return run
