"""String ops on object arrays of Python str: StringNormalizer, StringSplit, StringConcat,
RegexFullMatch. RE2 syntax is close to Python's `re` for the patterns models use."""
from __future__ import annotations

import re

import numpy as np

from .base import Info, Op, broadcast_shapes
from .registry import register


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _strings(ctx, i=0):
    if np.dtype(ctx.inputs[i].dtype) != object:
        raise ctx.fail(f"input {i} must be a string tensor, got {ctx.inputs[i].dtype}")


@register("StringNormalizer")
class StringNormalizer(Op):
    mode = "return"
    dynamic = True  # stop words removed: the output's length is in the data

    def infer(self, ctx):
        _strings(ctx)
        shape = tuple(ctx.inputs[0].shape)
        if len(shape) > 2 or (len(shape) == 2 and shape[0] != 1):
            raise ctx.fail(f"the input must be [C] or [1, C], got {list(shape)}")
        return [Info(None, np.dtype(object), dynamic=True)]

    def kernel(self, ctx):
        action = _text(ctx.attr("case_change_action", "NONE"))
        if action not in ("NONE", "LOWER", "UPPER"):
            raise ctx.fail(f"case_change_action must be NONE, LOWER or UPPER, not {action!r}")
        sensitive = bool(ctx.attr("is_case_sensitive", 0))
        stop = [_text(s) for s in (ctx.attr("stopwords") or [])]
        stop_set = set(stop) if sensitive else {s.lower() for s in stop}

        def run(x):
            words = [_text(v) for v in x.reshape(-1)]
            kept = [w for w in words if (w if sensitive else w.lower()) not in stop_set]
            if action == "LOWER":
                kept = [w.lower() for w in kept]
            elif action == "UPPER":
                kept = [w.upper() for w in kept]
            if not kept:
                kept = [""]  # everything dropped: one empty string, as the spec says
            out = np.array(kept, dtype=object)
            return out.reshape(1, -1) if x.ndim == 2 else out
        return run


@register("StringSplit")
class StringSplit(Op):
    mode = "return"
    dynamic = True

    def infer(self, ctx):
        _strings(ctx)
        shape = tuple(ctx.inputs[0].shape)
        return [Info(None, np.dtype(object), dynamic=True), Info(shape, np.dtype(np.int64))]

    def kernel(self, ctx):
        delim = ctx.attr("delimiter")
        delim = _text(delim) if delim is not None else ""
        maxsplit = ctx.attr("maxsplit")
        maxsplit = -1 if maxsplit is None else int(maxsplit)

        def run(x):
            parts = [(_text(v).split(delim or None, maxsplit)) for v in x.reshape(-1)]
            width = max((len(p) for p in parts), default=0)
            out = np.full((len(parts), width), "", dtype=object)
            for k, p in enumerate(parts):
                out[k, :len(p)] = p
            counts = np.array([len(p) for p in parts], np.int64).reshape(x.shape)
            return out.reshape(x.shape + (width,)), counts
        return run


@register("StringConcat")
class StringConcat(Op):
    def infer(self, ctx):
        _strings(ctx, 0)
        _strings(ctx, 1)
        return [Info(broadcast_shapes(ctx, ctx.inputs[0].shape, ctx.inputs[1].shape), np.dtype(object))]

    def kernel(self, ctx):
        def run(a, b, out):
            out[...] = np.frompyfunc(lambda p, q: _text(p) + _text(q), 2, 1)(a, b)
        return run


@register("RegexFullMatch")
class RegexFullMatch(Op):
    def infer(self, ctx):
        _strings(ctx)
        return [Info(tuple(ctx.inputs[0].shape), np.dtype(np.bool_))]

    def kernel(self, ctx):
        pattern = _text(ctx.attr("pattern", ""))
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ctx.fail(f"invalid pattern {pattern!r}: {e}") from None

        def run(x, out):
            out[...] = np.frompyfunc(lambda s: regex.fullmatch(_text(s)) is not None, 1, 1)(x).astype(bool)
        return run
