"""Softmax, LogSoftmax, Hardmax.

Before opset 13 the input is coerced to 2-D at `axis` (default 1) and the op runs over all
of the trailing dims at once; from 13 it runs along the one dim `axis` (default -1). Either
way the input is viewed as (outer, n, inner) and the op runs over the middle dim.
"""
from __future__ import annotations

import numpy as np

from .base import Info, Op, is_narrow_float, normalize_axis
from .registry import register


class _AlongAxis(Op):
    kinds = "f"

    def infer(self, ctx):
        x = ctx.inputs[0]
        if np.dtype(x.dtype).kind not in self.kinds and not is_narrow_float(x.dtype):
            raise ctx.fail(f"unsupported element type {x.dtype}")
        self._view(ctx)
        return [Info(tuple(x.shape), np.dtype(x.dtype))]

    def _view(self, ctx):
        shape = tuple(ctx.inputs[0].shape)
        rank = len(shape)
        if ctx.opset < 13:
            axis = normalize_axis(ctx, int(ctx.attr("axis", 1)), max(rank, 1))
            return int(np.prod(shape[:axis])), int(np.prod(shape[axis:])), 1
        axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), rank)
        return int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))

    def kernel(self, ctx):
        view = self._view(ctx)
        dtype = np.dtype(ctx.inputs[0].dtype)
        # per-(outer, inner) statistics and, for LogSoftmax, a full-size scratch: made once per plan
        stat = np.empty((view[0], 1, view[2]), dtype)
        scratch = np.empty(view, dtype) if self.needs_scratch else None
        compute = self.compute

        def run(x, y):
            if y.size:
                compute(x.reshape(view), y.reshape(view), stat, scratch)
        return run


@register("Softmax")
class Softmax(_AlongAxis):
    needs_scratch = False

    @staticmethod
    def compute(x, y, stat, scratch):
        np.max(x, axis=1, keepdims=True, out=stat)  # shifting by the max keeps exp from overflowing
        np.subtract(x, stat, out=y)
        np.exp(y, out=y)
        np.sum(y, axis=1, keepdims=True, out=stat)
        y /= stat


@register("LogSoftmax")
class LogSoftmax(_AlongAxis):
    needs_scratch = True

    @staticmethod
    def compute(x, y, stat, scratch):
        np.max(x, axis=1, keepdims=True, out=stat)
        np.subtract(x, stat, out=y)
        np.exp(y, out=scratch)
        np.sum(scratch, axis=1, keepdims=True, out=stat)
        np.log(stat, out=stat)
        y -= stat


@register("Hardmax")
class Hardmax(_AlongAxis):
    """1 at the first maximum along the axis, 0 elsewhere."""
    needs_scratch = False

    def kernel(self, ctx):
        outer, n, inner = self._view(ctx)
        arg = np.empty((outer, 1, inner), np.intp)

        def run(x, y):
            if y.size:
                xv, yv = x.reshape(outer, n, inner), y.reshape(outer, n, inner)
                np.argmax(xv, axis=1, keepdims=True, out=arg)
                yv.fill(0)
                np.put_along_axis(yv, arg, 1, axis=1)
        return run
