"""ai.onnx.ml Normalizer: scale each row by its max, L1 or L2 norm (float32 output).

As in ONNX Runtime (and the spec's formula), MAX divides by the largest value, not the
largest magnitude (onnx.reference uses the magnitude), and a row whose norm is 0 is
copied unchanged. One Numba loop does a batch: the values are taken as float32, norms
are summed in float64 and divided in float32.
"""
import numpy as np

from ..kernel_cache import njit
from .base import Info, Op
from .registry import register

KINDS = {"MAX": 0, "L1": 1, "L2": 2}


@njit(cache=True, nogil=True)
def _normalize(x, kind, out):
    for r in range(x.shape[0]):
        if kind == 0:
            norm = np.float32(x[r, 0])
            for c in range(1, x.shape[1]):
                v = np.float32(x[r, c])
                if norm == norm and not v <= norm:  # a NaN wins, as in numpy's max
                    norm = v
        else:
            acc = 0.0
            for c in range(x.shape[1]):
                v = np.float64(np.float32(x[r, c]))
                acc += abs(v) if kind == 1 else v * v
            norm = np.float32(acc if kind == 1 else np.sqrt(acc))
        if norm == 0:
            norm = np.float32(1)
        for c in range(x.shape[1]):
            out[r, c] = np.float32(x[r, c]) / norm


@register("Normalizer", domain="ai.onnx.ml")
class Normalizer(Op):
    def infer(self, ctx):
        shape = ctx.inputs[0].shape
        if len(shape) not in (1, 2):
            raise ctx.fail(f"the input must be 1-D or 2-D, got shape {list(shape)}")
        if ctx.attr("norm", "MAX") not in KINDS:
            raise ctx.fail(f"unknown norm '{ctx.attr('norm')}'")
        return [Info(tuple(shape), np.dtype(np.float32))]

    def kernel(self, ctx):
        kind = KINDS[ctx.attr("norm", "MAX")]
        shape = ctx.inputs[0].shape
        rows = (1, shape[0]) if len(shape) == 1 else tuple(shape)
        if rows[1] == 0:
            return lambda x, out: None
        if np.dtype(ctx.inputs[0].dtype) == np.float16:   # Numba has no float16: as float32, exactly
            return lambda x, out: _normalize(x.reshape(rows).astype(np.float32), kind, out.reshape(rows))
        if len(shape) == 1:
            return lambda x, out: _normalize(x.reshape(rows), kind, out.reshape(rows))

        def normalizer(x, out):
            _normalize(x, kind, out)
        return normalizer
