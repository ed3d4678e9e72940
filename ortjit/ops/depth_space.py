"""DepthToSpace and SpaceToDepth: a reshape, a transpose and a reshape of a 4-D tensor,
done as one copy into the output viewed in the transposed layout."""
from __future__ import annotations

import numpy as np

from .base import Info, Op
from .registry import register


def _mode(ctx, since):
    """DCR or CRD; before `since` the attribute does not exist and the order is DCR."""
    mode = ctx.attr("mode", "DCR") if ctx.opset >= since else "DCR"
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("DCR", "CRD"):
        raise ctx.fail(f"mode must be DCR or CRD, got {mode!r}")
    return mode


def _blocksize(ctx):
    x = ctx.inputs[0]
    if x.shape is None or len(x.shape) != 4:
        raise ctx.fail(f"input must be 4-D (N, C, H, W), got shape {None if x.shape is None else list(x.shape)}")
    b = ctx.attr("blocksize")
    if b is None or int(b) < 1:
        raise ctx.fail(f"attribute blocksize must be a positive integer, got {b}")
    return int(b)


class _Rearrange(Op):
    def layout(self, ctx):
        """(input viewed as, permutation, output shape)."""
        raise NotImplementedError

    def infer(self, ctx):
        return [Info(self.layout(ctx)[2], ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        view, perm, out = self.layout(ctx)
        moved = tuple(view[p] for p in perm)

        def run(x, y):
            np.copyto(y.reshape(moved), x.reshape(view).transpose(perm))
        return run


@register("DepthToSpace")
class DepthToSpace(_Rearrange):
    """Opset 11 adds mode (CRD)."""

    def layout(self, ctx):
        b = _blocksize(ctx)
        n, c, h, w = ctx.inputs[0].shape
        if c % (b * b):
            raise ctx.fail(f"the {c} channels must divide by blocksize^2 = {b * b}")
        d = c // (b * b)
        if _mode(ctx, 11) == "DCR":
            view, perm = (n, b, b, d, h, w), (0, 3, 4, 1, 5, 2)
        else:
            view, perm = (n, d, b, b, h, w), (0, 1, 4, 2, 5, 3)
        return view, perm, (n, d, h * b, w * b)


@register("SpaceToDepth")
class SpaceToDepth(_Rearrange):
    """Opset 28 adds mode (CRD)."""

    def layout(self, ctx):
        b = _blocksize(ctx)
        n, c, h, w = ctx.inputs[0].shape
        if h % b or w % b:
            raise ctx.fail(f"height {h} and width {w} must divide by blocksize {b}")
        view = (n, c, h // b, b, w // b, b)
        perm = (0, 3, 5, 1, 2, 4) if _mode(ctx, 28) == "DCR" else (0, 1, 3, 5, 2, 4)
        return view, perm, (n, c * b * b, h // b, w // b)
