"""Gather/scatter by data indices: ScatterElements, Scatter, ScatterND, GatherND,
TensorScatter, plus Compress, NonZero, OneHot and ReverseSequence. Every index comes from
data and is range-checked (check_index_range) before numpy uses it."""
from __future__ import annotations

import numpy as np

from .base import Info, Op, check_index_range, normalize_axis
from .registry import register

_REDUCE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _reduction(ctx):
    r = ctx.attr("reduction", "none")
    r = r.decode() if isinstance(r, bytes) else r
    if r != "none" and r not in _REDUCE:
        raise ctx.fail(f"reduction must be none, add, mul, max or min, not {r!r}")
    return r


def _same_shape_out(ctx):
    return [Info(tuple(ctx.inputs[0].shape), ctx.inputs[0].dtype)]


@register("ScatterElements")
class ScatterElements(Op):
    def infer(self, ctx):
        data, idx, upd = ctx.inputs[:3]
        if len(idx.shape) != len(data.shape) or tuple(idx.shape) != tuple(upd.shape):
            raise ctx.fail(f"indices {list(idx.shape)} and updates {list(upd.shape)} must have the same shape "
                           f"and the rank of data {list(data.shape)}")
        axis = normalize_axis(ctx, int(ctx.attr("axis", 0)), len(data.shape))
        if any(i > d for k, (i, d) in enumerate(zip(idx.shape, data.shape)) if k != axis):
            raise ctx.fail(f"indices shape {list(idx.shape)} exceeds data shape {list(data.shape)} off the axis")
        return _same_shape_out(ctx)

    def kernel(self, ctx):
        axis = normalize_axis(ctx, int(ctx.attr("axis", 0)), len(ctx.inputs[0].shape))
        reduction = _reduction(ctx)
        grid = list(np.indices(ctx.inputs[1].shape, sparse=True))  # the positions off the axis

        def run(data, indices, updates, out):
            check_index_range(ctx, indices, data.shape[axis])
            out[...] = data
            where = list(grid)
            where[axis] = np.where(indices < 0, indices + data.shape[axis], indices)
            where = tuple(where)
            if reduction == "none":
                out[where] = updates
            else:
                _REDUCE[reduction].at(out, where, updates)
        return run


@register("Scatter")
class Scatter(ScatterElements):
    """Scatter (opsets 9-10) is ScatterElements without reduction."""


@register("ScatterND")
class ScatterND(Op):
    def infer(self, ctx):
        return _same_shape_out(ctx)

    def kernel(self, ctx):
        reduction = _reduction(ctx)

        def run(data, indices, updates, out):
            k = indices.shape[-1]
            if k > data.ndim or updates.shape != indices.shape[:-1] + data.shape[k:]:
                raise ctx.fail(f"updates {list(updates.shape)} do not fit indices {list(indices.shape)} "
                               f"into data {list(data.shape)}")
            out[...] = data
            where = []
            for j in range(k):
                check_index_range(ctx, indices[..., j], data.shape[j])
                where.append(np.where(indices[..., j] < 0, indices[..., j] + data.shape[j], indices[..., j]))
            if reduction == "none":
                out[tuple(where)] = updates
            else:
                _REDUCE[reduction].at(out, tuple(where), updates)
        return run


@register("GatherND")
class GatherND(Op):
    def _dims(self, ctx):
        data, idx = ctx.inputs[0].shape, ctx.inputs[1].shape
        b = int(ctx.attr("batch_dims", 0))
        k = idx[-1] if idx else 0
        if len(idx) <= b or not 1 <= k <= len(data) - b or tuple(idx[:b]) != tuple(data[:b]):
            raise ctx.fail(f"indices {list(idx)} do not fit data {list(data)} with batch_dims {b}")
        return b, k

    def infer(self, ctx):
        b, k = self._dims(ctx)
        data, idx = ctx.inputs[0].shape, ctx.inputs[1].shape
        return [Info(tuple(idx[:-1]) + tuple(data[b + k:]), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        b, k = self._dims(ctx)
        data_shape = ctx.inputs[0].shape
        batch = int(np.prod(data_shape[:b], dtype=np.int64))

        def run(data, indices, out):
            d = data.reshape((batch,) + data.shape[b:])
            ind = indices.reshape((batch, -1, k))
            where = [np.arange(batch)[:, None]]
            for j in range(k):
                check_index_range(ctx, ind[..., j], data.shape[b + j])
                where.append(np.where(ind[..., j] < 0, ind[..., j] + data.shape[b + j], ind[..., j]))
            out[...] = d[tuple(where)].reshape(out.shape)
        return run


@register("TensorScatter")
class TensorScatter(Op):
    """Writes `update` into `past_cache` along `axis` (the sequence axis) at each batch's
    write_indices (default 0); mode 'circular' wraps around the axis."""

    def _axis(self, ctx):
        cache, update, where = ctx.inputs[0], ctx.inputs[1], ctx.input(2)
        rank = len(cache.shape)
        axis = normalize_axis(ctx, int(ctx.attr("axis", -2)), rank)
        if axis == 0:
            raise ctx.fail("axis cannot be the batch axis 0")
        if len(update.shape) != rank or any(u != c for k, (u, c) in enumerate(zip(update.shape, cache.shape))
                                            if k != axis) or update.shape[axis] > cache.shape[axis]:
            raise ctx.fail(f"update {list(update.shape)} does not fit past_cache {list(cache.shape)} on axis {axis}")
        if where is not None and tuple(where.shape) != (cache.shape[0],):
            raise ctx.fail(f"write_indices {list(where.shape)} must hold one index per batch entry "
                           f"({cache.shape[0]})")
        return axis

    def infer(self, ctx):
        self._axis(ctx)
        return _same_shape_out(ctx)

    def kernel(self, ctx):
        axis = self._axis(ctx)
        mode = ctx.attr("mode", "linear")
        mode = mode.decode() if isinstance(mode, bytes) else mode

        def run(cache, update, write_indices=None, out=None):
            if out is None:  # called without write_indices: the output came third
                out, write_indices = write_indices, None
            out[...] = cache
            n, length = cache.shape[axis], update.shape[axis]
            starts = np.zeros(cache.shape[0], np.int64) if write_indices is None else write_indices.astype(np.int64)
            for b in range(cache.shape[0]):
                pos = starts[b] + np.arange(length)
                if mode == "circular":
                    pos %= n
                elif pos.size and (pos.min() < 0 or pos.max() >= n):
                    raise ctx.fail(f"write index {int(starts[b])} + {length} updates overflow the axis of {n}")
                dst = np.moveaxis(out[b], axis - 1, 0)
                dst[pos] = np.moveaxis(update[b], axis - 1, 0)
        return run


@register("Compress")
class Compress(Op):
    mode = "return"
    dynamic = True  # the output's length is the number of true conditions

    def infer(self, ctx):
        return [Info(None, ctx.inputs[0].dtype, dynamic=True)]

    def kernel(self, ctx):
        axis = ctx.attr("axis")

        def run(x, condition):
            cond = np.asarray(condition, bool).reshape(-1)
            if axis is None:
                flat = x.reshape(-1)
                if cond.size > flat.size:
                    raise ctx.fail(f"condition has {cond.size} values, the input {flat.size}")
                return flat[:cond.size][cond]
            a = normalize_axis(ctx, int(axis), x.ndim)
            if cond.size > x.shape[a]:
                raise ctx.fail(f"condition has {cond.size} values, axis {a} has {x.shape[a]}")
            return np.compress(cond, x, axis=a)
        return run


@register("NonZero")
class NonZero(Op):
    mode = "return"
    dynamic = True

    def infer(self, ctx):
        return [Info(None, np.dtype(np.int64), dynamic=True)]

    def kernel(self, ctx):
        def run(x):
            return np.array(np.nonzero(np.atleast_1d(x) if x.ndim == 0 else x), np.int64).reshape(max(x.ndim, 1), -1)
        return run


@register("OneHot")
class OneHot(Op):
    def infer(self, ctx):
        idx, values = ctx.inputs[0], ctx.inputs[2]
        depth = int(np.asarray(ctx.value(1, "depth")).reshape(-1)[0])
        if depth <= 0:
            raise ctx.fail(f"depth must be positive, got {depth}")
        rank = len(idx.shape) + 1
        axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), rank)
        shape = list(idx.shape)
        shape.insert(axis, depth)
        return [Info(tuple(shape), values.dtype)]

    def kernel(self, ctx):
        out_shape = self.infer(ctx)[0].shape
        axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), len(out_shape))
        depth = out_shape[axis]

        def run(indices, _depth, values, out):
            ind = indices.astype(np.int64) if indices.dtype.kind == "f" else indices.astype(np.int64)
            ind = np.where(ind < 0, ind + depth, ind)  # out of range: no hot value at all
            hot = np.expand_dims(ind, axis) == np.arange(depth).reshape([-1 if i == axis else 1
                                                                         for i in range(len(out_shape))])
            off, on = values.reshape(-1)[0], values.reshape(-1)[1]
            out[...] = np.where(hot, on, off)
        return run


@register("ReverseSequence")
class ReverseSequence(Op):
    def infer(self, ctx):
        return _same_shape_out(ctx)

    def kernel(self, ctx):
        batch_axis = int(ctx.attr("batch_axis", 1))
        time_axis = int(ctx.attr("time_axis", 0))
        if {batch_axis, time_axis} != {0, 1}:
            raise ctx.fail("batch_axis and time_axis must be 0 and 1, one each")

        def run(x, lens, out):
            out[...] = x
            xt, ot = np.moveaxis(x, (batch_axis, time_axis), (0, 1)), np.moveaxis(out, (batch_axis, time_axis), (0, 1))
            if lens.shape != (xt.shape[0],):
                raise ctx.fail(f"sequence_lens must hold one length per batch entry ({xt.shape[0]})")
            for b, n in enumerate(lens.astype(np.int64)):
                if not 0 <= n <= xt.shape[1]:
                    raise ctx.fail(f"sequence length {int(n)} is out of range [0, {xt.shape[1]}]")
                ot[b, :n] = xt[b, :n][::-1]
        return run
