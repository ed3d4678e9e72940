"""TopK and Unique. Ties keep the lower index first, as the ONNX spec orders them; NaN is
greater than every number (first when largest, last when smallest), as in ONNX Runtime
and the reference evaluator."""
from __future__ import annotations

import numpy as np

from .base import Info, Op, is_narrow_float, normalize_axis
from .registry import register


def _descending_key(x: np.ndarray) -> np.ndarray:
    """A key whose ascending stable order is x's descending order, without overflow."""
    if x.dtype.kind == "u":
        return np.iinfo(x.dtype).max - x
    if x.dtype.kind in "ib":
        return ~x.astype(np.int64)
    return -x.astype(np.float64)


@register("TopK")
class TopK(Op):
    def _k_axis(self, ctx):
        x = ctx.inputs[0]
        axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), len(x.shape))
        k = int(ctx.attr("k")) if ctx.opset < 10 else int(np.asarray(ctx.value(1, "K")).reshape(-1)[0])
        if not 0 <= k <= x.shape[axis]:
            raise ctx.fail(f"k {k} is out of range for axis {axis} of length {x.shape[axis]}")
        return k, axis

    def infer(self, ctx):
        x = ctx.inputs[0]
        k, axis = self._k_axis(ctx)
        shape = tuple(k if i == axis else d for i, d in enumerate(x.shape))
        return [Info(shape, x.dtype), Info(shape, np.dtype(np.int64))]

    def kernel(self, ctx):
        k, axis = self._k_axis(ctx)
        largest = bool(ctx.attr("largest", 1))

        def run(x, *rest):
            values, indices = rest[-2], rest[-1]
            if largest and (x.dtype.kind == "f" or is_narrow_float(x.dtype)) and np.isnan(x).any():
                # -x would sort NaN last: put it first by a primary key, stable within NaNs
                order = np.lexsort((_descending_key(x), ~np.isnan(x)), axis=axis)
            else:
                key = _descending_key(x) if largest else x  # ascending argsort sorts NaN last
                order = np.argsort(key, axis=axis, kind="stable")
            top = np.take(order, np.arange(k), axis=axis)
            indices[...] = top
            values[...] = np.take_along_axis(x, top, axis=axis)
        return run


@register("Unique")
class Unique(Op):
    mode = "return"
    dynamic = True  # the number of unique values is in the data

    def infer(self, ctx):
        return [Info(None, ctx.inputs[0].dtype, dynamic=True)] + \
            [Info(None, np.dtype(np.int64), dynamic=True)] * (ctx.num_outputs - 1)

    def kernel(self, ctx):
        axis = ctx.attr("axis")
        keep_sorted = bool(ctx.attr("sorted", 1))

        def run(x):
            a = None if axis is None else normalize_axis(ctx, int(axis), x.ndim)
            data = x.reshape(-1) if a is None else x
            values, first, inverse, counts = np.unique(data, return_index=True, return_inverse=True,
                                                       return_counts=True, axis=a)
            inverse = inverse.reshape(-1)
            if not keep_sorted:  # in order of first occurrence
                order = np.argsort(first, kind="stable")
                rank = np.empty_like(order)
                rank[order] = np.arange(order.size)
                values = values[order] if a is None else np.take(values, order, axis=a)
                first, counts, inverse = first[order], counts[order], rank[inverse]
            outs = (values, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64))
            return outs[:ctx.num_outputs] if ctx.num_outputs > 1 else outs[0]
        return run
