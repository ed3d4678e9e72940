"""Comparisons, boolean logic, bitwise ops and Where."""
import numpy as np

from .base import Elementwise, Info, Op, broadcast_shapes
from .registry import register


class Compare(Elementwise):
    symbol = ""

    def out_dtype(self, ctx):
        return np.bool_

    def expr(self, ctx, a):
        return f"{a[0]} {self.symbol} {a[1]}"

    @staticmethod
    def _strings(ctx) -> bool:
        return any(i is not None and np.dtype(i.dtype) == object for i in ctx.inputs)

    # string tensors (Equal, opset 19) cannot enter generated kernels: numpy compares them
    def infer(self, ctx):
        if self._strings(ctx):
            return [Info(broadcast_shapes(ctx, ctx.inputs[0].shape, ctx.inputs[1].shape), np.dtype(np.bool_))]
        return super().infer(ctx)

    def kernel(self, ctx):
        if not self._strings(ctx):
            return super().kernel(ctx)
        compare = {"==": np.equal, "<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal}[self.symbol]

        def run(a, b, out):
            out[...] = compare(a, b).astype(bool)
        return run

    def evaluate(self, ctx, inputs):
        return Op.evaluate(self, ctx, inputs) if self._strings(ctx) else super().evaluate(ctx, inputs)


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
    @staticmethod
    def _direction(ctx):
        d = ctx.attr("direction")
        return d.decode() if isinstance(d, bytes) else d

    def check(self, ctx):
        if self._direction(ctx) not in ("LEFT", "RIGHT"):
            raise ctx.fail(f"direction must be LEFT or RIGHT, not {self._direction(ctx)!r}")

    def expr(self, ctx, a):
        x, y = a
        left = self._direction(ctx) == "LEFT"
        dtype = np.dtype(self.out_dtype(ctx))
        bits = dtype.itemsize * 8
        in_range = f"{y} < {bits}" if dtype.kind == "u" else f"(0 <= {y} and {y} < {bits})"
        # out of range (negative, or the bit width or more) gives what the sign fill alone
        # gives (the spec, opset 28): -1 for a right shift of a negative value, else 0; not
        # what the CPU does. x ^ x: a zero of x's type (a literal 0 would make Numba unify
        # uint64 with int64 as float64)
        fill = f"{x} >> {bits - 1}" if not left and dtype.kind == "i" else f"{x} ^ {x}"
        return f"({x} {'<<' if left else '>>'} {y} if {in_range} else {fill})"


@register("Where")
class Where(Elementwise):
    def out_dtype(self, ctx):
        return ctx.inputs[1].dtype

    def expr(self, ctx, a):
        return f"({a[1]} if {a[0]} else {a[2]})"
