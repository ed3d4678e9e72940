"""CumSum and CumProd along one axis (an input), exclusive and reverse variants."""
from __future__ import annotations

import numpy as np

from .base import Info, Op, normalize_axis
from .registry import register


class _Cumulative(Op):
    scan = None
    identity = 0

    def infer(self, ctx):
        return [Info(tuple(ctx.inputs[0].shape), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        exclusive, reverse = bool(ctx.attr("exclusive", 0)), bool(ctx.attr("reverse", 0))
        scan, identity = type(self).scan, self.identity

        def run(x, axis, out):
            axis = np.asarray(axis)
            if axis.size != 1 or axis.ndim > 1:
                raise ctx.fail(f"axis must be a scalar, got shape {list(axis.shape)}")
            a = normalize_axis(ctx, int(axis.reshape(())), x.ndim)
            v = np.flip(x, a) if reverse else x
            res = scan(v, axis=a, dtype=x.dtype)
            if exclusive and x.shape[a]:  # shift by one: the first element becomes the identity
                res = np.roll(res, 1, axis=a)
                first = [slice(None)] * x.ndim
                first[a] = 0
                res[tuple(first)] = identity
            out[...] = np.flip(res, a) if reverse else res
        return run


@register("CumSum")
class CumSum(_Cumulative):
    scan = staticmethod(np.cumsum)
    identity = 0


@register("CumProd")
class CumProd(_Cumulative):
    scan = staticmethod(np.cumprod)
    identity = 1
