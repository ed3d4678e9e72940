"""ai.onnx.ml ZipMap: each row of scores becomes a dict label -> score.

The output is what onnxruntime hands back for seq(map(...)): a Python list of dicts
with Python int or str keys and Python float values.
"""
import numpy as np

from .base import Info, Op
from .registry import register


@register("ZipMap", domain="ai.onnx.ml")
class ZipMap(Op):
    mode = "return"

    def labels(self, ctx) -> list:
        ints, strings = ctx.attr("classlabels_int64s"), ctx.attr("classlabels_strings")
        if bool(ints) == bool(strings):
            raise ctx.fail("exactly one of classlabels_int64s and classlabels_strings must be given")
        return [int(v) for v in ints] if ints else [str(v) for v in strings]

    def infer(self, ctx):
        shape, labels = ctx.inputs[0].shape, self.labels(ctx)
        if len(shape) not in (1, 2) or shape[-1] != len(labels):
            raise ctx.fail(f"the input (shape {list(shape)}) must have one column per class label "
                           f"({len(labels)})")
        return [Info(None, "seq(map)")]

    def kernel(self, ctx):
        labels = self.labels(ctx)
        width = len(labels)

        def zipmap(x):
            # tolist() gives Python floats, as onnxruntime's maps hold
            rows = np.asarray(x, dtype=np.float32).reshape(-1, width).tolist()
            return [dict(zip(labels, row)) for row in rows]
        return zipmap
