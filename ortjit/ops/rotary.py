"""RotaryEmbedding (opset 23): rotates pairs of each head's first rotary_embedding_dim
features by the angle of the token's position. The pairs are the two halves of that
span, or neighbouring features (interleaved=1); the other features pass through.

cos/sin are (max_position + 1, rd/2) tables read at position_ids (B, S), or given per
token as (B, S, rd/2) when position_ids is omitted. float16/bfloat16 are computed in
float32, rounded after every product and sum as the reference's numpy steps are.
"""
from __future__ import annotations

import numpy as np

from .attention import compute_type, is_float, rounder
from .base import Info, Op, broadcast_shapes
from .registry import register


@register("RotaryEmbedding", since=23)
class RotaryEmbedding(Op):
    def _dims(self, ctx):
        x, cos, sin, pos = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2], ctx.input(3)
        if len(x.shape) == 4:
            b, _, s, head = x.shape
        elif len(x.shape) == 3:
            heads = ctx.attr("num_heads", 0)
            if heads <= 0 or x.shape[2] % heads:
                raise ctx.fail(f"a 3-D input needs num_heads dividing its hidden size {x.shape[2]}, got {heads}")
            b, s, head = x.shape[0], x.shape[1], x.shape[2] // heads
        else:
            raise ctx.fail(f"input must be 3-D or 4-D, got shape {list(x.shape)}")
        rd = ctx.attr("rotary_embedding_dim", 0) or head
        if rd % 2 or rd > head or rd < 0:
            raise ctx.fail(f"rotary_embedding_dim {rd} must be even and at most the head size {head}")
        if tuple(cos.shape) != tuple(sin.shape):
            raise ctx.fail(f"cos_cache {list(cos.shape)} and sin_cache {list(sin.shape)} differ")
        if pos is not None:
            if len(cos.shape) != 2 or pos.dtype != np.int64:
                raise ctx.fail(f"with position_ids (int64) the caches must be 2-D, got {list(cos.shape)}")
            table = (b, s)
            if broadcast_shapes(ctx, pos.shape, table) != table:
                raise ctx.fail(f"position_ids of shape {list(pos.shape)} does not fit [{b}, {s}]")
        elif len(cos.shape) != 3 or broadcast_shapes(ctx, cos.shape[:2], (b, s)) != (b, s):
            raise ctx.fail(f"without position_ids the caches must be [{b}, {s}, {rd // 2}], got {list(cos.shape)}")
        if cos.shape[-1] != rd // 2:
            raise ctx.fail(f"the caches' last dim {cos.shape[-1]} must be rotary_embedding_dim / 2 = {rd // 2}")
        return b, s, head, rd

    def infer(self, ctx):
        x, cos, sin = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]
        if not is_float(x.dtype) or x.dtype == np.float64 or cos.dtype != x.dtype or sin.dtype != x.dtype:
            raise ctx.fail(f"input and caches must share a float16/bfloat16/float32 type, got "
                           f"{x.dtype}, {cos.dtype}, {sin.dtype}")
        self._dims(ctx)
        return [Info(tuple(x.shape), x.dtype)]

    def kernel(self, ctx):
        b, s, head, rd = self._dims(ctx)
        x_info = ctx.inputs[0]
        dt = np.dtype(x_info.dtype)
        ct, rnd = compute_type(dt), rounder(dt)
        four = len(x_info.shape) == 4
        shape = tuple(x_info.shape) if four else (b, s, x_info.shape[2] // head, head)
        half = rd // 2
        # the caches as (B, 1, S, rd/2) against (B, H, S, D), or (B, S, 1, rd/2) against (B, S, H, D)
        cache_shape = (b, 1, s, half) if four else (b, s, 1, half)
        n_max = ctx.inputs[1].shape[0]
        first = np.s_[..., 0:rd:2] if ctx.attr("interleaved", 0) else np.s_[..., :half]
        second = np.s_[..., 1:rd:2] if ctx.attr("interleaved", 0) else np.s_[..., half:rd]
        c = np.empty(cache_shape, ct)
        sn = np.empty(cache_shape, ct)
        x1, x2, t, u = (np.empty(shape[:-1] + (half,), ct) for _ in range(4))

        def rotate(out, a, b_, combine):
            """out = combine(a * x1, b_ * x2), the products and the result each rounded."""
            np.multiply(a, x1, out=t)
            rnd(t)
            np.multiply(b_, x2, out=u)
            rnd(u)
            combine(t, u, out=t)
            rnd(t)
            out[...] = t

        def run(x, cos, sin, *rest):
            pos, y = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])
            if pos is not None:
                if pos.size and (pos.min() < 0 or pos.max() >= n_max):
                    raise ctx.fail(f"position_ids must be within [0, {n_max - 1}], got values in "
                                   f"[{pos.min()}, {pos.max()}]")
                pos = np.broadcast_to(pos, (b, s))
                cos, sin = cos[pos], sin[pos]
            cos, sin = np.broadcast_to(cos, (b, s, half)), np.broadcast_to(sin, (b, s, half))
            c[...] = cos[:, None] if four else cos[:, :, None]
            sn[...] = sin[:, None] if four else sin[:, :, None]
            xv, yv = x.reshape(shape), y.reshape(shape)
            x1[...] = xv[first]
            x2[...] = xv[second]
            rotate(yv[first], c, sn, np.subtract)   # cos*x1 - sin*x2
            rotate(yv[second], sn, c, np.add)       # sin*x1 + cos*x2
            if rd < head:
                yv[..., rd:] = xv[..., rd:]
        return run
