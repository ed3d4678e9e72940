"""Small ai.onnx.ml ops: Binarizer, ArrayFeatureExtractor, LabelEncoder, Scaler,
OneHotEncoder, Imputer, CategoryMapper, FeatureVectorizer, DictVectorizer.

Where onnx.reference and ONNX Runtime differ, ONNX Runtime wins: OneHotEncoder looks
numbers up by their integer part, and FeatureVectorizer reads a 1-D input as one row."""
from __future__ import annotations

import numpy as np

from ..dtypes import to_numpy
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


def _features(ctx):
    """Features per row: the last dimension (a 1-D input is one row)."""
    shape = ctx.inputs[0].shape
    if len(shape) == 0:
        raise ctx.fail("the input must have at least one dimension")
    return shape[-1]


def _per_feature(ctx, name, values, n_features):
    """An attribute of length 1 (broadcast) or one value per feature."""
    values = np.asarray(values).reshape(-1)
    if values.size not in (1, n_features):
        raise ctx.fail(f"{name} has {values.size} values for {n_features} features: give 1 or {n_features}")
    return values


@register("Scaler", domain=ML)
class Scaler(Op):
    """(X - offset) * scale, per feature or broadcast, as float32."""

    def infer(self, ctx):
        if np.dtype(ctx.inputs[0].dtype).kind not in "fiu":
            raise ctx.fail(f"the input must be numeric, got {ctx.inputs[0].dtype}")
        _features(ctx)
        return [Info(tuple(ctx.inputs[0].shape), np.dtype(np.float32))]

    def kernel(self, ctx):
        f = _features(ctx)
        offset = _per_feature(ctx, "offset", ctx.attr("offset", [0.0]), f).astype(np.float32)
        scale = _per_feature(ctx, "scale", ctx.attr("scale", [1.0]), f).astype(np.float32)

        def scaler(x, y):
            np.multiply(x.astype(np.float32, copy=False) - offset, scale, out=y)
        return scaler


def _is_text(dtype) -> bool:
    return np.dtype(dtype) == object


@register("OneHotEncoder", domain=ML)
class OneHotEncoder(Op):
    """One float32 column per category, appended as a last dimension. zeros=0 makes an
    unknown value an error."""

    def _categories(self, ctx):
        text = _is_text(ctx.inputs[0].dtype)
        cats = ctx.attr("cats_strings") if text else ctx.attr("cats_int64s")
        if not cats:
            raise ctx.fail(f"{'cats_strings' if text else 'cats_int64s'} is required for {ctx.inputs[0].dtype} input")
        return {(_text(c) if text else int(c)): i for i, c in enumerate(cats)}

    def infer(self, ctx):
        return [Info(tuple(ctx.inputs[0].shape) + (len(self._categories(ctx)),), np.dtype(np.float32))]

    def kernel(self, ctx):
        table = self._categories(ctx)
        text = _is_text(ctx.inputs[0].dtype)
        zeros = bool(ctx.attr("zeros", 1))
        n = len(table)

        def key(v):
            if text:
                return _text(v)
            return int(v) if v == v and abs(v) != float("inf") else None  # ONNX Runtime: the integer part

        def one_hot_encoder(x, y):
            cols = np.array([table.get(key(v), -1) for v in x.reshape(-1).tolist()], np.int64)
            if not zeros and np.any(cols < 0):
                raise ctx.fail("a value is none of the categories and zeros is 0")
            flat = y.reshape(-1, n)
            flat[...] = 0
            hit = np.flatnonzero(cols >= 0)
            flat[hit, cols[hit]] = 1
        return one_hot_encoder


@register("Imputer", domain=ML)
class Imputer(Op):
    """Replaces replaced_value_* (NaN when that is NaN) by imputed_value_*, per feature."""

    def infer(self, ctx):
        x = ctx.inputs[0]
        if np.dtype(x.dtype).kind not in "fi":
            raise ctx.fail(f"the input must be float or integer, got {x.dtype}")
        _features(ctx)
        return [Info(tuple(x.shape), x.dtype)]

    def kernel(self, ctx):
        x = ctx.inputs[0]
        floats = np.dtype(x.dtype).kind == "f"
        values = ctx.attr("imputed_value_floats") if floats else ctx.attr("imputed_value_int64s")
        if not values:
            raise ctx.fail(f"{'imputed_value_floats' if floats else 'imputed_value_int64s'} is required "
                           f"for {x.dtype} input")
        values = _per_feature(ctx, "the imputed values", values, _features(ctx)).astype(x.dtype)
        replaced = np.float32(ctx.attr("replaced_value_float", 0.0)) if floats else \
            int(ctx.attr("replaced_value_int64", 0))

        def imputer(x, y):
            missing = np.isnan(x) if floats and np.isnan(replaced) else x == replaced
            np.copyto(y, np.where(missing, values, x))
        return imputer


@register("CategoryMapper", domain=ML)
class CategoryMapper(Op):
    """strings -> int64 (default_int64) or int64 -> strings (default_string) through the
    pairs cats_strings[i] <-> cats_int64s[i]."""

    def infer(self, ctx):
        x = ctx.inputs[0]
        if not _is_text(x.dtype) and np.dtype(x.dtype) != np.int64:
            raise ctx.fail(f"the input must be string or int64, got {x.dtype}")
        return [Info(tuple(x.shape), np.dtype(np.int64) if _is_text(x.dtype) else np.dtype(object))]

    def kernel(self, ctx):
        strings = [_text(s) for s in ctx.attr("cats_strings") or []]
        ints = [int(i) for i in ctx.attr("cats_int64s") or []]
        if len(strings) != len(ints):
            raise ctx.fail(f"cats_strings ({len(strings)}) and cats_int64s ({len(ints)}) differ in length")
        if _is_text(ctx.inputs[0].dtype):
            table, default = dict(zip(strings, ints)), int(ctx.attr("default_int64", -1))
            keys = _text
        else:
            table, default = dict(zip(ints, strings)), _text(ctx.attr("default_string", "_Unused"))
            keys = int

        def category_mapper(x, y):
            y.reshape(-1)[...] = [table.get(keys(v), default) for v in x.reshape(-1).tolist()]
        return category_mapper


@register("FeatureVectorizer", domain=ML)
class FeatureVectorizer(Op):
    """The inputs side by side as float32 columns, each cut or zero-padded to its
    inputdimensions entry; a 1-D input is one row (ONNX Runtime)."""

    def _layout(self, ctx):
        dims = [int(d) for d in ctx.attr("inputdimensions") or []]
        if len(dims) != len(ctx.inputs) or any(d < 0 for d in dims):
            raise ctx.fail(f"inputdimensions ({dims}) must give one size per input ({len(ctx.inputs)})")
        rows = set()
        for x in ctx.inputs:
            if np.dtype(x.dtype).kind not in "fiu" or len(x.shape) == 0:
                raise ctx.fail(f"inputs must be numeric tensors of rank >= 1, got {x.dtype} {list(x.shape)}")
            rows.add(1 if len(x.shape) == 1 else x.shape[0])
        if len(rows) > 1:
            raise ctx.fail(f"the inputs disagree on the number of rows: {sorted(rows)}")
        return rows.pop(), dims

    def infer(self, ctx):
        n, dims = self._layout(ctx)
        return [Info((n, sum(dims)), np.dtype(np.float32))]

    def kernel(self, ctx):
        n, dims = self._layout(ctx)
        starts = np.concatenate([[0], np.cumsum(dims)]).tolist()

        def feature_vectorizer(*args):
            y = args[-1]
            y[...] = 0
            for x, d, start in zip(args[:-1], dims, starts):
                cols = x.reshape(n, -1)[:, :d]
                y[:, start:start + cols.shape[1]] = cols
        return feature_vectorizer


@register("DictVectorizer", domain=ML)
class DictVectorizer(Op):
    """A map becomes a [1, V] row over the vocabulary (a list of maps, [N, V]); keys not in
    the vocabulary are dropped, absent ones are 0 (or "")."""
    mode = "return"
    dynamic = True  # the input is a map

    def infer(self, ctx):
        return [Info(None, "tensor", dynamic=True)]

    def kernel(self, ctx):
        strings, ints = ctx.attr("string_vocabulary"), ctx.attr("int64_vocabulary")
        if bool(strings) == bool(ints):
            raise ctx.fail("exactly one of string_vocabulary and int64_vocabulary must be given")
        vocab = [_text(s) for s in strings] if strings else [int(i) for i in ints]
        index = {k: i for i, k in enumerate(vocab)}
        declared = getattr(ctx.node.outputs[0], "dtype", None) if ctx.node is not None else None
        declared = None if declared is None else to_numpy(declared.value)

        def out_dtype(values):
            """The declared output type; else the values' (Python floats as float32)."""
            if declared is not None:
                return declared
            if any(isinstance(v, (str, bytes)) for v in values):
                return np.dtype(object)
            return np.dtype(np.int64) if all(isinstance(v, (int, np.integer)) for v in values) else \
                np.dtype(np.float32)

        def dict_vectorizer(x):
            maps = x if isinstance(x, list) else [x]
            if not all(isinstance(m, dict) for m in maps):
                raise ctx.fail(f"the input must be a map, got {type(x).__name__}")
            dtype = out_dtype([v for m in maps for v in m.values()])
            y = np.full((len(maps), len(vocab)), "" if dtype == object else 0, dtype=dtype)
            for r, m in enumerate(maps):
                for k, v in m.items():
                    col = index.get(_text(k) if isinstance(k, (str, bytes)) else int(k))
                    if col is not None:
                        y[r, col] = v
            return y
        return dict_vectorizer
