"""ai.onnx.ml Normalizer: scale each row by its max, L1 or L2 norm (float32 output).

As in ONNX Runtime (and the spec's formula), MAX divides by the largest value, not the
largest magnitude (onnx.reference uses the magnitude), and a row whose norm is 0 is
copied unchanged.
"""
import numpy as np

from .base import Info, Op
from .registry import register


def _norm(x, kind):
    if kind == "MAX":
        return x.max(axis=1, keepdims=True)
    if kind == "L1":
        return np.abs(x).sum(axis=1, keepdims=True)
    return np.sqrt(np.square(x).sum(axis=1, keepdims=True))


@register("Normalizer", domain="ai.onnx.ml")
class Normalizer(Op):
    def infer(self, ctx):
        shape = ctx.inputs[0].shape
        if len(shape) not in (1, 2):
            raise ctx.fail(f"the input must be 1-D or 2-D, got shape {list(shape)}")
        if ctx.attr("norm", "MAX") not in ("MAX", "L1", "L2"):
            raise ctx.fail(f"unknown norm '{ctx.attr('norm')}'")
        return [Info(tuple(shape), np.dtype(np.float32))]

    def kernel(self, ctx):
        kind = ctx.attr("norm", "MAX")
        shape = ctx.inputs[0].shape
        rows = (1, shape[0]) if len(shape) == 1 else shape

        def normalizer(x, out):
            x2 = x.reshape(rows).astype(np.float32, copy=False)
            if x2.shape[1] == 0:
                return
            norm = _norm(x2, kind)
            np.divide(x2, np.where(norm == 0, np.float32(1), norm), out=out.reshape(rows))
        return normalizer
