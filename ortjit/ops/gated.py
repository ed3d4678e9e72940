"""SwiGLU (opset 28): Swish_alpha(A) * B, the gated activation of Llama-style MLPs.
Elementwise, so it fuses with its neighbours; A and B must have the same shape (no
broadcasting) and type. Swish itself is in activations.py."""
from __future__ import annotations

from .activations import _f
from .attention import is_float
from .base import Elementwise
from .registry import register


@register("SwiGLU", since=28)
class SwiGLU(Elementwise):
    def check(self, ctx):
        a, b = ctx.inputs[0], ctx.inputs[1]
        if not is_float(a.dtype):
            raise ctx.fail(f"A must be a float tensor, got {a.dtype}")
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            raise ctx.fail(f"A and B must have the same shape and type (no broadcasting), got "
                           f"{a.dtype}{list(a.shape)} and {b.dtype}{list(b.shape)}")

    def expr(self, ctx, a):
        alpha = _f(ctx, "alpha", 1.0)
        return f"({a[0]} / (1.0 + np.exp(-{alpha} * {a[0]}))) * {a[1]}"
