"""Data movement: Transpose, Concat, Split, Slice, Gather, GatherElements, Tile, Pad, Range.

All are "write" kernels filling the plan's preallocated outputs with one numpy copy
each (numpy's strided copies are as fast as a Numba loop here, and compile nothing).
What decides output shapes (perm, split sizes, slice bounds, pads, repeats) is resolved
once when the plan is built; only data-dependent indices are looked at per run, and
those are range-checked before numpy sees them.
"""
import numpy as np

from .base import Info, Op, check_index_range, normalize_axis
from .registry import register


def _ints(v) -> list:
    return [int(a) for a in np.asarray(v).ravel()]


def _axis_list(ctx, axes, rank: int) -> list:
    axes = [normalize_axis(ctx, a, rank) for a in axes]
    if len(set(axes)) != len(axes):
        raise ctx.fail(f"axes {axes} contain duplicates")
    return axes


@register("Transpose")
class Transpose(Op):
    def perm(self, ctx) -> list:
        rank = len(ctx.inputs[0].shape)
        perm = ctx.attr("perm")
        perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
        if sorted(perm) != list(range(rank)):
            raise ctx.fail(f"perm {perm} is not a permutation of the {rank} axes of the input")
        return perm

    def infer(self, ctx):
        shape = ctx.inputs[0].shape
        return [Info(tuple(shape[p] for p in self.perm(ctx)), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        perm = tuple(self.perm(ctx))

        def transpose(x, out):
            np.copyto(out, x.transpose(perm))
        return transpose


@register("Concat")
class Concat(Op):
    def axis(self, ctx) -> int:
        axis = ctx.attr("axis", 1 if ctx.opset < 4 else None)  # optional (default 1) only in opset 1
        if axis is None:
            raise ctx.fail("the axis attribute is required")
        return normalize_axis(ctx, axis, len(ctx.inputs[0].shape))

    def infer(self, ctx):
        shapes = [i.shape for i in ctx.inputs]
        rank, axis = len(shapes[0]), self.axis(ctx)
        for s in shapes[1:]:
            if len(s) != rank or any(a != b for k, (a, b) in enumerate(zip(s, shapes[0])) if k != axis):
                raise ctx.fail("all inputs must have the same shape except on the concatenation axis; got "
                               + ", ".join(str(list(x)) for x in shapes))
        dtypes = {np.dtype(i.dtype) for i in ctx.inputs}
        if len(dtypes) > 1:
            raise ctx.fail(f"all inputs must have the same type, got {sorted(map(str, dtypes))}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return [Info(tuple(out), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        axis, n = self.axis(ctx), len(ctx.inputs)

        def concat(*args):
            np.concatenate(args[:n], axis=axis, out=args[n])
        # the plan may give the inputs' producers views of the output instead (plan.py)
        concat.concat_axis = axis
        concat.strided_out = True   # numpy writes any view of the output
        return concat


@register("Split")
class Split(Op):
    def sizes(self, ctx) -> tuple[int, list]:
        shape = ctx.inputs[0].shape
        axis = normalize_axis(ctx, ctx.attr("axis", 0), len(shape))
        dim, n = shape[axis], ctx.num_outputs
        # an attribute in opsets 2-12, an input in 1 and from 13
        split = ctx.value(1, "split") if ctx.input(1) is not None else ctx.attr("split")
        if split is not None and len(_ints(split)) > 0:
            split = _ints(split)
        elif ctx.opset >= 18 and ctx.attr("num_outputs") is not None:
            # num_outputs: equal chunks of ceil(dim / n), the last one smaller
            n = int(ctx.attr("num_outputs"))
            chunk = -(-dim // n)
            split = [min(chunk, max(dim - k * chunk, 0)) for k in range(n)]
        else:
            if dim % n:
                raise ctx.fail(f"dimension {dim} of axis {axis} cannot be split evenly into {n} outputs")
            split = [dim // n] * n
        if len(split) != ctx.num_outputs or sum(split) != dim or min(split, default=0) < 0:
            raise ctx.fail(f"cannot split dimension {dim} of axis {axis} into {split} "
                           f"for {ctx.num_outputs} outputs")
        return axis, split

    def infer(self, ctx):
        x = ctx.inputs[0]
        axis, split = self.sizes(ctx)
        return [Info(x.shape[:axis] + (s,) + x.shape[axis + 1:], x.dtype) for s in split]

    def kernel(self, ctx):
        axis, split = self.sizes(ctx)
        n_in = len(ctx.inputs)
        bounds = np.cumsum([0] + split)
        pieces = [(slice(None),) * axis + (slice(int(a), int(b)),) for a, b in zip(bounds[:-1], bounds[1:])]

        def split_(*args):
            x = args[0]
            for piece, out in zip(pieces, args[n_in:]):
                np.copyto(out, x[piece])
        return split_


INT_MAXES = (2**31 - 1, 2**63 - 1)


def _slice_bounds(start: int, end: int, step: int, dim: int) -> slice:
    """One axis of an ONNX Slice as a Python slice: negative bounds count from the end, then
    clamp to [0, dim] (positive step) or [-1, dim-1] (negative step, -1 meaning 'before 0').

    This is the spec's (and ONNX Runtime's) rule, which differs from numpy's in one place:
    with a negative step a start below -dim clamps to 0 (numpy: empty). As in ONNX Runtime,
    an end of INT_MAX means 'to the end in the step's direction'.
    """
    if end in INT_MAXES:
        end = dim if step > 0 else -1
    elif end < 0:
        end += dim
    if start < 0:
        start += dim
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    start = min(max(start, 0), dim - 1)
    end = min(max(end, -1), dim - 1)
    if start < 0:  # empty axis
        return slice(0, 0)
    return slice(start, None if end < 0 else end, step)


@register("Slice")
class Slice(Op):
    def slices(self, ctx) -> tuple:
        shape = ctx.inputs[0].shape
        if ctx.opset < 10:
            starts, ends = _ints(ctx.attr("starts", [])), _ints(ctx.attr("ends", []))
            axes, steps = ctx.attr("axes"), None
        else:
            starts, ends = _ints(ctx.value(1, "starts")), _ints(ctx.value(2, "ends"))
            axes, steps = ctx.value(3, "axes"), ctx.value(4, "steps")
        axes = list(range(len(starts))) if axes is None else _ints(axes)
        steps = [1] * len(starts) if steps is None else _ints(steps)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise ctx.fail(f"starts ({len(starts)}), ends ({len(ends)}), axes ({len(axes)}) and "
                           f"steps ({len(steps)}) must have the same length")
        if 0 in steps:
            raise ctx.fail("steps cannot be 0")
        result = [slice(None)] * len(shape)
        for a, s, e, t in zip(_axis_list(ctx, axes, len(shape)), starts, ends, steps):
            result[a] = _slice_bounds(s, e, t, shape[a])
        return tuple(result)

    def infer(self, ctx):
        x = ctx.inputs[0]
        shape = tuple(len(range(*s.indices(d))) for s, d in zip(self.slices(ctx), x.shape))
        return [Info(shape, x.dtype)]

    def kernel(self, ctx):
        index = self.slices(ctx)

        def slice_(x, *args):
            np.copyto(args[-1], x[index])
        return slice_


@register("Gather")
class Gather(Op):
    def infer(self, ctx):
        data, idx = ctx.inputs
        axis = normalize_axis(ctx, ctx.attr("axis", 0), len(data.shape))
        return [Info(data.shape[:axis] + tuple(idx.shape) + data.shape[axis + 1:], data.dtype)]

    def kernel(self, ctx):
        data, idx = ctx.inputs
        axis = normalize_axis(ctx, ctx.attr("axis", 0), len(data.shape))
        bound = data.shape[axis]
        if idx.static:
            check_index_range(ctx, idx.value, bound)  # constant indices: checked once, here

        def gather(data, indices, out):
            if not idx.static:
                check_index_range(ctx, indices, bound)
            # indices are in [-bound, bound) now, where 'wrap' is exact and skips numpy's own check
            np.take(data, indices, axis=axis, out=out, mode="wrap")
        return gather


@register("GatherElements")
class GatherElements(Op):
    def infer(self, ctx):
        data, idx = ctx.inputs
        if len(idx.shape) != len(data.shape):
            raise ctx.fail(f"indices (shape {list(idx.shape)}) must have the rank of data (shape {list(data.shape)})")
        axis = normalize_axis(ctx, ctx.attr("axis", 0), len(data.shape))
        if any(i > d for k, (i, d) in enumerate(zip(idx.shape, data.shape)) if k != axis):
            raise ctx.fail(f"indices shape {list(idx.shape)} exceeds data shape {list(data.shape)} off the axis")
        return [Info(tuple(idx.shape), data.dtype)]

    def kernel(self, ctx):
        data, idx = ctx.inputs
        axis = normalize_axis(ctx, ctx.attr("axis", 0), len(data.shape))
        bound = data.shape[axis]
        # indices may be smaller than data off the axis: gather from the matching corner of data
        corner = tuple(slice(None) if k == axis else slice(0, d) for k, d in enumerate(idx.shape))

        def gather_elements(data, indices, out):
            check_index_range(ctx, indices, bound)
            out[...] = np.take_along_axis(data[corner], indices.astype(np.intp, copy=False), axis)
        return gather_elements


@register("Tile")
class Tile(Op):
    def repeats(self, ctx) -> list:
        reps = _ints(ctx.value(1, "repeats"))
        rank = len(ctx.inputs[0].shape)
        if len(reps) != rank or min(reps, default=0) < 0:
            raise ctx.fail(f"repeats {reps} must be {rank} non-negative values, one per input axis")
        return reps

    def infer(self, ctx):
        x = ctx.inputs[0]
        return [Info(tuple(d * r for d, r in zip(x.shape, self.repeats(ctx))), x.dtype)]

    def kernel(self, ctx):
        shape, reps = ctx.inputs[0].shape, self.repeats(ctx)
        # out viewed as (r0, d0, r1, d1, ...): one broadcast copy of x, shaped (1, d0, 1, d1, ...)
        out_view = tuple(v for r, d in zip(reps, shape) for v in (r, d))
        in_view = tuple(v for d in shape for v in (1, d))

        def tile(x, repeats, out):
            np.copyto(out.reshape(out_view), x.reshape(in_view))
        return tile


@register("Pad")
class Pad(Op):
    MODES = ("constant", "reflect", "edge", "wrap")

    def widths(self, ctx) -> list:
        """(begin, end) per axis; negative values crop."""
        rank = len(ctx.inputs[0].shape)
        if ctx.opset < 11:
            pads = _ints(ctx.attr("pads", ctx.attr("paddings", [])))
            axes = list(range(rank))
        else:
            pads = _ints(ctx.value(1, "pads"))
            axes = ctx.value(3, "axes") if ctx.opset >= 18 else None
            axes = list(range(rank)) if axes is None else _axis_list(ctx, _ints(axes), rank)
        if len(pads) != 2 * len(axes):
            raise ctx.fail(f"pads has {len(pads)} values; {2 * len(axes)} were expected")
        widths = [(0, 0)] * rank
        for k, a in enumerate(axes):
            widths[a] = (pads[k], pads[k + len(axes)])
        return widths

    def infer(self, ctx):
        x = ctx.inputs[0]
        mode = ctx.attr("mode", "constant")
        if mode not in self.MODES:
            raise ctx.fail(f"mode '{mode}' is not supported")
        shape = tuple(d + b + e for d, (b, e) in zip(x.shape, self.widths(ctx)))
        if min(shape, default=0) < 0:
            raise ctx.fail(f"pads {self.widths(ctx)} crop more than the input shape {list(x.shape)}")
        if mode != "constant" and any(d == 0 and (b > 0 or e > 0) for d, (b, e) in zip(x.shape, self.widths(ctx))):
            raise ctx.fail(f"cannot pad an empty axis in '{mode}' mode")
        return [Info(shape, x.dtype)]

    def kernel(self, ctx):
        mode = ctx.attr("mode", "constant")
        widths = self.widths(ctx)
        shape = ctx.inputs[0].shape
        crop = tuple(slice(max(-b, 0), d - max(-e, 0)) for d, (b, e) in zip(shape, widths))
        grow = [(max(b, 0), max(e, 0)) for b, e in widths]
        inner = tuple(slice(b, b + (s.stop - s.start)) for (b, _), s in zip(grow, crop))
        # constant mode writes the value only into the borders: one slab before and after per axis
        borders = [(slice(None),) * k + (side,) for k, (b, e) in enumerate(grow)
                   for side in (slice(0, b), slice(inner[k].stop, None)) if side.stop != 0]
        attr_value = float(ctx.attr("value", 0.0))
        old = ctx.opset < 11

        def pad(x, *args):
            out = args[-1]
            src = x[crop]
            if mode == "constant":
                value = attr_value if old else _scalar(args[1] if len(args) > 2 else None)
                for border in borders:
                    out[border] = value
                out[inner] = src
            else:
                np.copyto(out, np.pad(src, grow, mode=mode))
        return pad


def _scalar(v):
    if v is None:
        return 0
    v = np.asarray(v)
    return v.reshape(-1)[0] if v.size else 0


@register("Range")
class Range(Op):
    """The output length depends on the values, so they must be known when planning."""

    def values(self, ctx) -> np.ndarray:
        start, limit, delta = (np.asarray(ctx.value(i, name)) for i, name in enumerate(("start", "limit", "delta")))
        if any(v.size != 1 for v in (start, limit, delta)):
            raise ctx.fail("start, limit and delta must be scalars")
        start, limit, delta = (v.reshape(()) for v in (start, limit, delta))  # one-element tensors too, as ORT
        if delta == 0:
            raise ctx.fail("delta cannot be 0")
        return np.arange(start, limit, delta).astype(start.dtype)

    def infer(self, ctx):
        return [Info(self.values(ctx).shape, ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        values = self.values(ctx)

        def range_(start, limit, delta, out):
            np.copyto(out, values)
        return range_
