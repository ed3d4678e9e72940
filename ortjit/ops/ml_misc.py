"""Small ai.onnx.ml ops: Binarizer, ArrayFeatureExtractor, LabelEncoder."""
from __future__ import annotations

import numpy as np

from .base import Info, Op, check_index_range
from .registry import register

ML = "ai.onnx.ml"


@register("Binarizer", domain=ML)
class Binarizer(Op):
    def infer(self, ctx):
        return [Info(tuple(ctx.inputs[0].shape), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        threshold = float(ctx.attr("threshold", 0.0))

        def run(x, y):
            y[...] = (x > threshold).astype(y.dtype)
        return run


@register("ArrayFeatureExtractor", domain=ML)
class ArrayFeatureExtractor(Op):
    """The columns Y of X's last axis."""

    def infer(self, ctx):
        x, idx = ctx.inputs[0], ctx.inputs[1]
        n = int(np.prod(idx.shape, dtype=np.int64))
        shape = (1, n) if len(x.shape) == 1 else tuple(x.shape[:-1]) + (n,)
        return [Info(shape, x.dtype)]

    def kernel(self, ctx):
        def run(x, idx, y):
            flat = idx.reshape(-1).astype(np.int64)
            check_index_range(ctx, flat, x.shape[-1])
            y[...] = np.take(x, flat, axis=-1).reshape(y.shape)
        return run


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _attr_values(ctx, kind):
    """keys_* / values_* as a list, from whichever attribute is set."""
    for suffix in ("tensor", "strings", "int64s", "floats"):
        v = ctx.attr(f"{kind}_{suffix}")
        if v is not None:
            if suffix == "tensor":
                return [(_text(e) if isinstance(e, (bytes, str)) else e) for e in np.asarray(v).reshape(-1).tolist()], \
                    np.asarray(v).dtype
            dtype = {"strings": np.dtype(object), "int64s": np.dtype(np.int64), "floats": np.dtype(np.float32)}[suffix]
            return [_text(e) for e in v] if suffix == "strings" else list(v), dtype
    return None, None


@register("LabelEncoder", domain=ML)
class LabelEncoder(Op):
    """A dictionary lookup from keys to values, with a default for unknown keys. Opset 1
    maps strings to int64 and back (classes_strings); from 2, keys_* / values_*."""

    def _table(self, ctx):
        if ctx.opset < 2:
            classes = [_text(c) for c in ctx.attr("classes_strings", [])]
            if np.dtype(ctx.inputs[0].dtype) == object:
                return dict(zip(classes, range(len(classes)))), np.dtype(np.int64), ctx.attr("default_int64", -1)
            return dict(zip(range(len(classes)), classes)), np.dtype(object), _text(ctx.attr("default_string", "_Unused"))
        keys, _ = _attr_values(ctx, "keys")
        values, vtype = _attr_values(ctx, "values")
        if keys is None or values is None or len(keys) != len(values):
            raise ctx.fail("keys and values must be given, of the same length")
        default = ctx.attr("default_tensor")
        if default is not None:
            default = np.asarray(default).reshape(-1)[0]
            default = _text(default) if isinstance(default, (bytes, str)) else default
        elif vtype == object:
            default = _text(ctx.attr("default_string", "_Unused"))
        elif vtype.kind == "f":
            default = ctx.attr("default_float", -0.0)
        else:
            default = ctx.attr("default_int64", -1)
        if np.dtype(ctx.inputs[0].dtype).kind == "f":
            keys = [float(np.float32(k)) for k in keys]
        return dict(zip(keys, values)), vtype, default

    def infer(self, ctx):
        _, vtype, _ = self._table(ctx)
        return [Info(tuple(ctx.inputs[0].shape), vtype)]

    def kernel(self, ctx):
        table, vtype, default = self._table(ctx)

        def run(x, y):
            keys = [_text(k) if isinstance(k, (bytes, str)) else k for k in x.reshape(-1).tolist()]
            y.reshape(-1)[...] = np.array([table.get(k, default) for k in keys], dtype=vtype)
        return run
