"""Elementwise arithmetic and unary math: one scalar expression per op."""
import numpy as np

from .base import Elementwise, NodeContext
from .registry import register


def _unary(op_type, template, since=1):
    cls = type(op_type, (Elementwise,), {"expr": lambda self, ctx, a: template.format(x=a[0])})
    return register(op_type, since=since)(cls)


for _name, _tpl in {
    "Neg": "-{x}", "Abs": "np.abs({x})", "Exp": "np.exp({x})", "Log": "np.log({x})",
    "Sqrt": "np.sqrt({x})", "Reciprocal": "1.0 / {x}", "Floor": "np.floor({x})", "Ceil": "np.ceil({x})",
    "Round": "np.rint({x})", "Sin": "np.sin({x})", "Cos": "np.cos({x})", "Tan": "np.tan({x})",
    "Asin": "np.arcsin({x})", "Acos": "np.arccos({x})", "Atan": "np.arctan({x})",
    "Sinh": "np.sinh({x})", "Cosh": "np.cosh({x})", "Asinh": "np.arcsinh({x})",
    "Acosh": "np.arccosh({x})", "Atanh": "np.arctanh({x})", "Erf": "math.erf({x})",
    # not np.sign: Numba's gives -1 for uint8 above 127 and -0.0 for -0.0 (numpy: 1 and 0.0)
    "Sign": "(1 if {x} > 0 else (-1 if {x} < 0 else {x} - {x}))",
}.items():
    _unary(_name, _tpl)


@register("Add")
class Add(Elementwise):
    def expr(self, ctx, a):
        return f"{a[0]} + {a[1]}"


@register("Sub")
class Sub(Elementwise):
    def expr(self, ctx, a):
        return f"{a[0]} - {a[1]}"


@register("Mul")
class Mul(Elementwise):
    def expr(self, ctx, a):
        return f"{a[0]} * {a[1]}"


@register("Div")
class Div(Elementwise):
    def expr(self, ctx, a):
        x, y = a
        kind = np.dtype(self.out_dtype(ctx)).kind
        if kind == "u":
            return f"{x} // {y}"  # no mixing with signed literals: Numba would go through float64
        if kind == "i":
            # integer division truncates toward zero, as in C (ONNX Runtime), not floor like Python
            return f"({x} // {y} if ({x} % {y} == 0 or ({x} < 0) == ({y} < 0)) else {x} // {y} + 1)"
        return f"{x} / {y}"


@register("Pow")
class Pow(Elementwise):
    # numpy's scalar pow gives NaN for (-inf) ** 0.5 and -0.0 for (-0.0) ** 0.5; the compiled
    # kernel calls C's pow (+inf, +0.0, as ONNX Runtime): fold with the kernel to agree with it
    fold_with_kernel = True

    def expr(self, ctx, a):
        if all(np.dtype(i.dtype).kind in "iu" for i in ctx.inputs[:2]):
            return f"{a[0]} ** {a[1]}"
        e = ctx.inputs[1]
        if e.static and e.size == 1 and np.dtype(ctx.inputs[0].dtype).kind == "f" and float(e.value.flat[0]) in (2.0, 3.0):
            # a constant square or cube (GELU's x ** 3) as products: pow is a scalar libm
            # call that keeps the loop from vectorizing
            return " * ".join([a[0]] * int(e.value.flat[0]))
        # np.power, not **: Numba's float ** negative int raises ZeroDivisionError for 0.0
        return f"np.power({a[0]}, {a[1]})"


@register("Mod")
class Mod(Elementwise):
    def check(self, ctx):
        fmod = ctx.attr("fmod", 0)
        if fmod not in (0, 1):
            raise ctx.fail("fmod must have value either 0 or 1")
        if not fmod and np.dtype(self.out_dtype(ctx)).kind == "f" and ctx.opset < 28:
            from ..errors import Fail  # as ONNX Runtime: before opset 28 floats require fmod=1
            raise ctx.fail("fmod attribute must be true for float, float16 and double.", Fail)

    def expr(self, ctx, a):
        x, y = a
        kind = np.dtype(self.out_dtype(ctx)).kind
        if kind == "f" and ctx.attr("fmod", 0):
            return f"np.fmod({x}, {y})"
        if kind == "f":
            # floor modulo (opset 28), as numpy's: the C remainder moved to the sign of y,
            # and a zero takes y's sign; NaN for y = 0, x = inf or a NaN operand
            m = f"np.fmod({x}, {y})"
            return (f"({m} + {y} if ({m} != 0 and (({y} < 0) != ({m} < 0))) "
                    f"else ({m} if {m} != 0 else math.copysign(0.0, {y})))")
        if kind == "u":
            return f"{x} % {y}"  # both remainders agree; no signed literals (see Div)
        if ctx.attr("fmod", 0):
            # C's remainder (the sign of the dividend) from Python's (the sign of the divisor);
            # Numba's np.fmod on integer scalars is wrong
            return f"({x} % {y} if ({x} % {y} == 0 or ({x} < 0) == ({y} < 0)) else {x} % {y} - {y})"
        return f"{x} % {y}"  # the sign of the divisor, as Python and numpy do


class Variadic(Elementwise):
    combine = ""

    def expr(self, ctx, a):
        out = a[0]
        for x in a[1:]:
            out = self.combine.format(out, x)
        return out


@register("Sum")
class Sum(Variadic):
    combine = "({} + {})"


@register("Mean")
class Mean(Variadic):
    def expr(self, ctx, a):
        return "(" + " + ".join(a) + f") / {len(a)}"


@register("Max")
class Max(Variadic):
    combine = "np.maximum({}, {})"


@register("Min")
class Min(Variadic):
    combine = "np.minimum({}, {})"


@register("Clip")
class Clip(Elementwise):
    """Before opset 11 min and max are attributes; from 11 they are optional inputs."""

    def expr(self, ctx, a):
        x = a[0]
        if ctx.opset < 11:
            lo, hi = ctx.attr("min", -3.4028234663852886e38), ctx.attr("max", 3.4028234663852886e38)
            return f"np.minimum(np.maximum({x}, {float(lo)!r}), {float(hi)!r})"
        lo = a[1] if len(a) > 1 else None
        hi = a[2] if len(a) > 2 else None
        if lo is not None:
            x = f"np.maximum({x}, {lo})"
        if hi is not None:
            x = f"np.minimum({x}, {hi})"
        return x


@register("IsNaN")
class IsNaN(Elementwise):
    def out_dtype(self, ctx):
        return np.bool_

    def expr(self, ctx, a):
        return f"np.isnan({a[0]})"


@register("IsInf")
class IsInf(Elementwise):
    def out_dtype(self, ctx):
        return np.bool_

    def expr(self, ctx, a):
        neg, pos = ctx.attr("detect_negative", 1), ctx.attr("detect_positive", 1)
        x = a[0]
        terms = ([f"{x} == np.inf"] if pos else []) + ([f"{x} == -np.inf"] if neg else [])
        return " or ".join(terms) if terms else "False"
