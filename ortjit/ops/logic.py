"""Comparisons, boolean logic, bitwise ops and Where."""
import numpy as np

from .base import Elementwise
from .registry import register


class Compare(Elementwise):
    symbol = ""

    def out_dtype(self, ctx):
        return np.bool_

    def expr(self, ctx, a):
        return f"{a[0]} {self.symbol} {a[1]}"


for _name, _sym in {"Equal": "==", "Less": "<", "Greater": ">", "LessOrEqual": "<=",
                    "GreaterOrEqual": ">="}.items():
    register(_name)(type(_name, (Compare,), {"symbol": _sym}))


class Binary(Elementwise):
    symbol = ""

    def expr(self, ctx, a):
        return f"{a[0]} {self.symbol} {a[1]}"


for _name, _sym in {"And": "&", "Or": "|", "Xor": "^", "BitwiseAnd": "&", "BitwiseOr": "|",
                    "BitwiseXor": "^"}.items():
    register(_name)(type(_name, (Binary,), {"symbol": _sym}))


@register("Not")
class Not(Elementwise):
    def expr(self, ctx, a):
        return f"not {a[0]}"


@register("BitwiseNot")
class BitwiseNot(Elementwise):
    def expr(self, ctx, a):
        return f"~{a[0]}"


@register("BitShift")
class BitShift(Elementwise):
    def expr(self, ctx, a):
        op = "<<" if ctx.attr("direction") in ("LEFT", b"LEFT") else ">>"
        return f"{a[0]} {op} {a[1]}"


@register("Where")
class Where(Elementwise):
    def out_dtype(self, ctx):
        return ctx.inputs[1].dtype

    def expr(self, ctx, a):
        return f"({a[1]} if {a[0]} else {a[2]})"
