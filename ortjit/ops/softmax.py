"""Softmax, LogSoftmax, Hardmax.

Before opset 13 the input is coerced to 2-D at `axis` (default 1) and the op runs over all
of the trailing dims at once; from 13 it runs along the one dim `axis` (default -1). Either
way the input is viewed as (outer, n, inner) and the op runs over the middle dim.
"""
from __future__ import annotations

import numpy as np

from .. import codecache
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


# Softmax over contiguous rows (the last axis) as one generated kernel: the row max as
# vector IR for float32 (a plain running max is a dependency chain LLVM will not vectorize,
# for NaN's sake: 73 us over 131072 floats, 37-43 with 16 lanes in an array, 14.5 as IR),
# then exp and its sum in one pass, then one scaling pass. numpy's five passes
# reduce a (outer, n, 1) view slowly: measured on (1024, 128) float32, 283 us against 143.
# float32 uses the vectorizable exp (ortjit/codegen/cpu/vmath.py). A NaN anywhere in a row
# makes its sum NaN, so the whole row is NaN, as with numpy.
_ROWS_SOURCE = """
@njit(nogil=True, error_model="numpy", fastmath={{"reassoc", "contract"}})
def work(r, x, y):
    n = x.shape[1]
    xr = x[r]
    yr = y[r]
{row_max}
    s = {zero}
    for j in range(n):
        e = {exp}(xr[j] - m)
        yr[j] = e
        s += e
    inv = {one} / s
    for j in range(n):
        yr[j] *= inv


@njit(cache=True, nogil=True)
def kernel(x, y):
    {launch}
"""

# float32: vector IR (codegen/cpu/vreduce.py); float64: 16 independent lanes in an array
_ROW_MAX_F32 = "    m = row_max(xr.ctypes.data, n)"
_ROW_MAX_LANES = """    acc = np.empty(16, x.dtype)
    acc[:] = xr[0]
    n16 = n - n % 16
    for j in range(0, n16, 16):
        for lane in range(16):
            v = xr[j + lane]
            acc[lane] = v if v > acc[lane] else acc[lane]
    m = acc[0]
    for lane in range(1, 16):
        m = acc[lane] if acc[lane] > m else m
    for j in range(n16, n):
        m = xr[j] if xr[j] > m else m"""


def _rows_kernel(dtype, size):
    """The rows kernel for `size` elements: on Numba's threads (rows split among them)
    from the size at which generated elementwise loops go parallel."""
    from ..codegen.cpu import HEADER, parallel_loop, threads, vmath, vreduce
    f32 = dtype == np.float32
    parallel = parallel_loop(size)
    body = _ROWS_SOURCE.format(exp="_vexp" if f32 else "np.exp", zero="np.float32(0.0)" if f32 else "0.0",
                               one="np.float32(1.0)" if f32 else "1.0", row_max=_ROW_MAX_F32 if f32 else _ROW_MAX_LANES,
                               launch=threads.launch(parallel, "x.shape[0]", "x, y"))
    return codecache.load(f"softmax_rows_{dtype.name}", HEADER + threads.header(parallel)
                          + (vmath.SOURCE + vreduce.source() if f32 else "") + body)


@register("Softmax")
class Softmax(_AlongAxis):
    needs_scratch = False

    def kernel(self, ctx):
        outer, n, inner = self._view(ctx)
        dtype = np.dtype(ctx.inputs[0].dtype)
        if inner != 1 or n == 0 or dtype not in (np.float32, np.float64):
            return super().kernel(ctx)
        rows = _rows_kernel(dtype, outer * n)

        def run(x, y):
            if y.size:
                rows(np.ascontiguousarray(x).reshape(outer, n), y.reshape(outer, n))
        return run

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
