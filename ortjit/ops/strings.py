"""String ops on object arrays of Python str: StringNormalizer, StringSplit, StringConcat,
RegexFullMatch. RegexFullMatch patterns are RE2 syntax (ONNX Runtime's engine), rewritten
for Python's `re` where the two differ (see _python_regex)."""
from __future__ import annotations

import re

import numpy as np

from ..errors import NotImplemented
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
            regex = re.compile(_python_regex(pattern))
        except re.error as e:
            raise ctx.fail(f"invalid pattern {pattern!r}: {e}") from None
        except ValueError as e:
            raise ctx.fail(f"pattern {pattern!r}: {e}", NotImplemented) from None

        def run(x, out):
            out[...] = np.frompyfunc(lambda s: regex.fullmatch(_text(s)) is not None, 1, 1)(x).astype(bool)
        return run


# RE2's ASCII classes; Python's \d \w \s match all of Unicode's digits, letters, spaces
_PERL = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_POSIX = {"alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
          "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
          "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_",
          "xdigit": "0-9A-Fa-f"}


def _python_regex(pattern: str) -> str:
    """An RE2 pattern as a Python `re` pattern of the same meaning. Raises re.error for what
    RE2 rejects (lookaround, backreferences, \\Z) and ValueError for RE2 features not
    rewritten here (\\p{...} classes, (?U), \\C)."""
    out, i, n, in_class = [], 0, len(pattern), False
    multiline = re.search(r"\(\?[a-zA-Z]*m", pattern) is not None
    while i < n:
        c = pattern[i]
        nxt = pattern[i + 1] if i + 1 < n else ""
        if c == "\\" and nxt:
            if nxt == "Q":  # \Q...\E quotes literal text
                end = pattern.find("\\E", i + 2)
                end = n if end < 0 else end
                out.append(re.escape(pattern[i + 2:end]))
                i = end + 2
                continue
            if nxt in "dws":
                out.append(_PERL[nxt] if in_class else f"[{_PERL[nxt]}]")
            elif nxt in "DWS" and not in_class:
                out.append(f"[^{_PERL[nxt.lower()]}]")
            elif nxt == "z":
                out.append("\\Z")
            elif nxt == "Z" or (nxt in "123456789" and not in_class):
                raise re.error(f"RE2 has no \\{nxt}")
            elif nxt in "pPC":
                raise ValueError(f"\\{nxt} is not supported")
            else:
                out.append(c + nxt)
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):
                end = pattern.find(":]", i)
                name = pattern[i + 2:end] if end > 0 else ""
                if name not in _POSIX:
                    raise ValueError(f"character class [:{name}:] is not supported")
                out.append(_POSIX[name])
                i = end + 2
                continue
            in_class = c != "]"
            out.append("\\[" if c == "[" else c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            for lead in "^]":  # a leading ^ negates, a ] right after it is a literal
                if i < n and pattern[i] == lead:
                    out.append("\\]" if lead == "]" else lead)
                    i += 1
            continue
        if pattern.startswith(("(?=", "(?!", "(?<=", "(?<!", "(?>"), i):
            raise re.error("RE2 has no lookaround or atomic groups")
        if pattern.startswith("(?<", i):  # RE2's other spelling of a named group
            out.append("(?P<")
            i += 3
            continue
        if c == "(" and re.match(r"\(\?[a-zA-Z]*U", pattern[i:]):
            raise ValueError("the ungreedy flag (?U) is not supported")
        out.append("\\Z" if c == "$" and not multiline else c)  # RE2's $ is the end of the text only
        i += 1
    return "".join(out)
