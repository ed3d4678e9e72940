"""Trilu and EyeLike: matrices with a diagonal offset k."""
from __future__ import annotations

import numpy as np

from .base import Info, Op
from .registry import register


@register("Trilu")
class Trilu(Op):
    def infer(self, ctx):
        x = ctx.inputs[0]
        if len(x.shape) < 2:
            raise ctx.fail(f"the input must have rank 2 or more, got shape {list(x.shape)}")
        return [Info(tuple(x.shape), x.dtype)]

    def kernel(self, ctx):
        upper = bool(ctx.attr("upper", 1))

        def run(x, k=None, out=None):
            if out is None:  # no k: the output came second
                out, k = k, None
            kk = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
            out[...] = np.triu(x, kk) if upper else np.tril(x, kk)
        return run


@register("EyeLike")
class EyeLike(Op):
    def _dtype(self, ctx):
        from ..dtypes import to_numpy
        dt = ctx.attr("dtype")
        return ctx.inputs[0].dtype if dt is None else to_numpy(dt)

    def infer(self, ctx):
        x = ctx.inputs[0]
        if len(x.shape) != 2:
            raise ctx.fail(f"the input must be 2-D, got shape {list(x.shape)}")
        return [Info(tuple(x.shape), np.dtype(self._dtype(ctx)))]

    def kernel(self, ctx):
        k = int(ctx.attr("k", 0))

        def run(x, out):
            out[...] = np.eye(x.shape[0], x.shape[1], k, dtype=out.dtype)
        return run
