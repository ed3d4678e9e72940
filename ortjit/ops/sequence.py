"""Sequence ops. A sequence is a Python list of arrays; ops never change a list in place
(SequenceInsert returns a new list), and tensors are copied into a sequence, since the
tensor may live in a plan buffer that a later step reuses."""
from __future__ import annotations

import numpy as np

from .base import Info, Op, normalize_axis
from .registry import register


class _SequenceOp(Op):
    mode = "return"
    dynamic = True

    def infer(self, ctx):
        return [Info(None, "sequence", dynamic=True) for _ in range(ctx.num_outputs)]


def _position(ctx, seq, pos, allow_end=False) -> int:
    """A position in [-n, n - 1] (SequenceInsert: [-n, n]); negative counts from the back,
    so that inserting at -1 goes before the last tensor, as Python's list.insert does."""
    n = len(seq)
    p = int(np.asarray(pos).reshape(-1)[0])
    if not -n <= p < n + (1 if allow_end else 0):
        raise ctx.fail(f"position {p} is out of bounds for a sequence of {n} tensors")
    return p + n if p < 0 else p


def _check_same_dtype(ctx, seq, x):
    if seq and np.asarray(seq[0]).dtype != np.asarray(x).dtype:
        raise ctx.fail(f"a sequence of {seq[0].dtype} cannot take a tensor of {np.asarray(x).dtype}")


@register("SequenceEmpty")
class SequenceEmpty(_SequenceOp):
    def kernel(self, ctx):
        return lambda: []


@register("SequenceConstruct")
class SequenceConstruct(_SequenceOp):
    def kernel(self, ctx):
        def run(*tensors):
            dtypes = {np.asarray(t).dtype for t in tensors}
            if len(dtypes) > 1:
                raise ctx.fail("all inputs must have the same element type, got " + ", ".join(map(str, dtypes)))
            return [np.array(t, copy=True) for t in tensors]
        return run


@register("SequenceInsert")
class SequenceInsert(_SequenceOp):
    def kernel(self, ctx):
        def run(seq, x, pos=None):
            _check_same_dtype(ctx, seq, x)
            at = len(seq) if pos is None else _position(ctx, seq, pos, allow_end=True)
            return seq[:at] + [np.array(x, copy=True)] + seq[at:]
        return run


@register("SequenceErase")
class SequenceErase(_SequenceOp):
    def kernel(self, ctx):
        def run(seq, pos=None):
            if not seq:
                raise ctx.fail("cannot erase from an empty sequence")
            at = len(seq) - 1 if pos is None else _position(ctx, seq, pos)
            return seq[:at] + seq[at + 1:]
        return run


@register("SequenceAt")
class SequenceAt(_SequenceOp):
    def kernel(self, ctx):
        return lambda seq, pos: seq[_position(ctx, seq, pos)]


@register("SequenceLength")
class SequenceLength(_SequenceOp):
    def kernel(self, ctx):
        return lambda seq: np.array(len(seq), np.int64)


@register("ConcatFromSequence")
class ConcatFromSequence(_SequenceOp):
    def kernel(self, ctx):
        new_axis = int(ctx.attr("new_axis", 0))

        def run(seq):
            if not seq:
                raise ctx.fail("cannot concatenate an empty sequence")
            rank = np.ndim(seq[0]) + new_axis
            axis = normalize_axis(ctx, int(ctx.attr("axis")), rank)
            try:
                return np.stack(seq, axis=axis) if new_axis else np.concatenate(seq, axis=axis)
            except ValueError as e:
                raise ctx.fail(f"cannot concatenate the sequence's tensors: {e}") from None
        return run


@register("SplitToSequence")
class SplitToSequence(_SequenceOp):
    def kernel(self, ctx):
        keepdims = bool(ctx.attr("keepdims", 1))

        def run(x, split=None):
            axis = normalize_axis(ctx, int(ctx.attr("axis", 0)), x.ndim)
            n = x.shape[axis]
            if split is None:  # one tensor per index along axis
                parts = np.split(x, n, axis=axis) if n else []
                return [np.array(p if keepdims else np.squeeze(p, axis)) for p in parts]
            split = np.asarray(split, np.int64)
            if split.ndim == 0:  # chunks of this size, the last one smaller
                size = int(split)
                if size <= 0:
                    raise ctx.fail(f"split must be positive, got {size}")
                bounds = list(range(size, n, size))
            else:
                if np.any(split < 0) or int(split.sum()) != n:
                    raise ctx.fail(f"split {split.tolist()} must be non-negative and sum to the axis length {n}")
                bounds = np.cumsum(split)[:-1].tolist()
            return [np.array(p) for p in np.split(x, bounds, axis=axis)]
        return run
