"""Reductions (ReduceSum, ReduceMean, ... over several axes) and ArgMax/ArgMin, on numpy.

`axes` is an attribute until opset 13 for ReduceSum and until 18 for the others, then an
optional input which must be known when the plan is built. Omitted or empty axes reduce
everything, unless noop_with_empty_axes=1: then no axis is reduced and only the op's
elementwise part applies (ReduceSumSquare squares, ReduceL1 takes |x|...), as the
reference evaluator does.
"""
from __future__ import annotations

import numpy as np

from .base import Info, Op, is_narrow_float, normalize_axis, widen_kernel
from .registry import register


def _fill_value(name, dtype):
    """What a reduction over zero elements gives."""
    if name == "ReduceMax":
        return False if dtype.kind == "b" else np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf
    if name == "ReduceMin":
        return True if dtype.kind == "b" else np.iinfo(dtype).max if dtype.kind in "iu" else np.inf
    return {"ReduceProd": 1, "ReduceMean": np.nan, "ReduceLogSum": -np.inf, "ReduceLogSumExp": -np.inf}.get(name, 0)


def _full_buffer(shape, kept, dtype):
    return np.empty(shape, dtype)


class _Reduce(Op):
    axes_input_since = 18
    kinds = "fiu"

    @staticmethod
    def buffers(shape, kept, dtype):
        """Scratch that compute needs besides its output."""
        return None

    def _axes(self, ctx):
        x = ctx.inputs[0]
        if np.dtype(x.dtype).kind not in self.kinds and not is_narrow_float(x.dtype):
            raise ctx.fail(f"unsupported element type {x.dtype}")
        rank = len(x.shape)
        if ctx.opset >= self.axes_input_since:
            axes = ctx.value(1, "axes") if ctx.input(1) is not None else None
            noop = bool(ctx.attr("noop_with_empty_axes", 0))
        else:
            axes, noop = ctx.attr("axes"), False
        axes = [] if axes is None else [int(a) for a in np.asarray(axes).ravel()]
        if not axes:
            return () if noop else tuple(range(rank))
        axes = [normalize_axis(ctx, a, rank, "axes value") for a in axes]
        if len(set(axes)) != len(axes):
            raise ctx.fail(f"axes {axes} has duplicates")
        return tuple(sorted(axes))

    def infer(self, ctx):
        axes = self._axes(ctx)
        x = ctx.inputs[0]
        keep = bool(ctx.attr("keepdims", 1))
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        return [Info(shape, np.dtype(x.dtype))]

    def kernel(self, ctx):
        if is_narrow_float(ctx.inputs[0].dtype):  # bfloat16 and the like: computed in float32
            return widen_kernel(self, ctx)
        axes = self._axes(ctx)
        x = ctx.inputs[0]
        kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))  # the keepdims shape
        dtype = np.dtype(x.dtype)
        if not all(kept):  # nothing to compute: an empty output
            return lambda x, *rest: None
        if any(x.shape[a] == 0 for a in axes):
            value = _fill_value(self.op_type, dtype)
            return lambda x, *rest: rest[-1].fill(value)
        scratch = self.buffers(x.shape, kept, dtype)  # made once per plan, reused by every run
        compute = self.compute

        def run(x, *rest):  # (x, y), or (x, axes, y)
            compute(x, axes, rest[-1].reshape(kept), scratch)
        return run


def _register(name, since=18):
    def deco(cls):
        cls.axes_input_since = since
        return register(name)(cls)
    return deco


@_register("ReduceSum", since=13)
class ReduceSum(_Reduce):
    @staticmethod
    def compute(x, axes, y, scratch):
        np.sum(x, axis=axes, dtype=y.dtype, keepdims=True, out=y)


@_register("ReduceMean")
class ReduceMean(_Reduce):
    @staticmethod
    def compute(x, axes, y, scratch):
        if y.dtype.kind == "f":
            np.mean(x, axis=axes, dtype=y.dtype, keepdims=True, out=y)
        else:  # integer mean: the float mean truncated, as numpy's mean(dtype=int) gives
            y[...] = np.mean(x, axis=axes, keepdims=True)


@_register("ReduceMax")
class ReduceMax(_Reduce):
    kinds = "fiub"

    @staticmethod
    def compute(x, axes, y, scratch):
        np.max(x, axis=axes, keepdims=True, out=y)


@_register("ReduceMin")
class ReduceMin(_Reduce):
    kinds = "fiub"

    @staticmethod
    def compute(x, axes, y, scratch):
        np.min(x, axis=axes, keepdims=True, out=y)


@_register("ReduceProd")
class ReduceProd(_Reduce):
    @staticmethod
    def compute(x, axes, y, scratch):
        np.prod(x, axis=axes, dtype=y.dtype, keepdims=True, out=y)


@_register("ReduceL1")
class ReduceL1(_Reduce):
    buffers = staticmethod(_full_buffer)

    @staticmethod
    def compute(x, axes, y, scratch):
        np.abs(x, out=scratch)
        np.sum(scratch, axis=axes, keepdims=True, out=y)


@_register("ReduceL2")
class ReduceL2(_Reduce):
    buffers = staticmethod(_full_buffer)

    @staticmethod
    def compute(x, axes, y, scratch):
        np.multiply(x, x, out=scratch)
        if y.dtype.kind == "f":
            np.sum(scratch, axis=axes, keepdims=True, out=y)
            np.sqrt(y, out=y)
        else:
            y[...] = np.sqrt(np.sum(scratch, axis=axes, keepdims=True))


@_register("ReduceSumSquare")
class ReduceSumSquare(_Reduce):
    buffers = staticmethod(_full_buffer)

    @staticmethod
    def compute(x, axes, y, scratch):
        np.multiply(x, x, out=scratch)
        np.sum(scratch, axis=axes, keepdims=True, out=y)


@_register("ReduceLogSum")
class ReduceLogSum(_Reduce):
    kinds = "f"

    @staticmethod
    def compute(x, axes, y, scratch):
        np.sum(x, axis=axes, keepdims=True, out=y)
        with np.errstate(divide="ignore"):  # log(0) = -inf, as it should
            np.log(y, out=y)


@_register("ReduceLogSumExp")
class ReduceLogSumExp(_Reduce):
    """log(sum(exp(x - m))) + m with m the max: exp cannot overflow."""
    kinds = "f"

    @staticmethod
    def buffers(shape, kept, dtype):
        return np.empty(shape, dtype), np.empty(kept, dtype)

    @staticmethod
    def compute(x, axes, y, scratch):
        full, m = scratch
        np.max(x, axis=axes, keepdims=True, out=m)
        m[~np.isfinite(m)] = 0  # all -inf (or an inf) along the axes: no shift
        np.subtract(x, m, out=full)
        np.exp(full, out=full)
        np.sum(full, axis=axes, keepdims=True, out=y)
        with np.errstate(divide="ignore"):  # all -inf: log(0) = -inf, as it should
            np.log(y, out=y)
        y += m


class _ArgReduce(Op):
    """ArgMax/ArgMin along one axis (default 0); select_last_index (opset 12) picks the
    last of equal extremes instead of the first."""
    find = None

    def _axis(self, ctx):
        x = ctx.inputs[0]
        if not x.shape:
            raise ctx.fail("the input must have rank 1 or more")
        axis = normalize_axis(ctx, int(ctx.attr("axis", 0)), len(x.shape))
        if x.shape[axis] == 0:
            raise ctx.fail(f"cannot take {self.op_type} over the empty axis {axis} of shape {list(x.shape)}")
        return axis

    def infer(self, ctx):
        x = ctx.inputs[0]
        axis = self._axis(ctx)
        keep = bool(ctx.attr("keepdims", 1))
        shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape) if keep or i != axis)
        return [Info(shape, np.dtype(np.int64))]

    def kernel(self, ctx):
        x = ctx.inputs[0]
        axis = self._axis(ctx)
        kept = tuple(1 if i == axis else d for i, d in enumerate(x.shape))
        last = bool(ctx.attr("select_last_index", 0)) and ctx.opset >= 12
        n, find = x.shape[axis], type(self).find

        def run(x, y):
            yv = y.reshape(kept)
            if last:  # the first extreme of the reversed axis is the last one
                find(np.flip(x, axis), axis=axis, keepdims=True, out=yv)
                np.subtract(n - 1, yv, out=yv)
            else:
                find(x, axis=axis, keepdims=True, out=yv)
        return run


@register("ArgMax")
class ArgMax(_ArgReduce):
    find = staticmethod(np.argmax)


@register("ArgMin")
class ArgMin(_ArgReduce):
    find = staticmethod(np.argmin)
