"""Activation functions: elementwise, attributes as in the ONNX spec with its defaults."""
import numpy as np

from .base import Elementwise, Info, Op, broadcast_shapes
from .registry import register


def _f(ctx, name, default):
    """A float attribute as source text. ONNX float attributes are float32: a default is
    rounded as a given value would be (ONNX Runtime computes with those for double too)."""
    return _f32(ctx.attr(name, default))


def _f32(value):
    return repr(float(np.float32(value)))


@register("Relu")
class Relu(Elementwise):
    def expr(self, ctx, a):
        # not np.maximum: Numba's returns -0.0 for -0.0 (numpy and ONNX Runtime give +0.0); NaN stays NaN
        return f"({a[0]} if not {a[0]} <= 0 else 0)"


@register("LeakyRelu")
class LeakyRelu(Elementwise):
    def expr(self, ctx, a):
        return f"({a[0]} if {a[0]} >= 0 else {_f(ctx, 'alpha', 0.01)} * {a[0]})"


@register("PRelu", since=1)
class PReluLegacy(Op):
    """Before opset 7 a 1-D slope of C values applies along the channel axis 1 (as in the
    pytorch-converted models), not by numpy broadcasting from the last axis."""

    def _slope_shape(self, ctx):
        x, slope = ctx.inputs[0].shape, ctx.inputs[1].shape
        if len(slope) == 1 and len(x) >= 2 and slope[0] == x[1] and slope[0] != 1:
            return (slope[0],) + (1,) * (len(x) - 2)
        return slope

    def infer(self, ctx):
        shape = broadcast_shapes(ctx, ctx.inputs[0].shape, self._slope_shape(ctx))
        if shape != tuple(ctx.inputs[0].shape):
            raise ctx.fail(f"slope of shape {list(ctx.inputs[1].shape)} does not fit X {list(ctx.inputs[0].shape)}")
        return [Info(shape, np.dtype(ctx.inputs[0].dtype))]

    def kernel(self, ctx):
        shape = self._slope_shape(ctx)

        def run(x, slope, y):
            np.multiply(x, slope.reshape(shape), out=y)
            np.copyto(y, x, where=x > 0)
        return run


@register("PRelu", since=7)
class PRelu(Elementwise):
    def expr(self, ctx, a):
        return f"({a[0]} if {a[0]} > 0 else {a[1]} * {a[0]})"  # as ONNX Runtime: -0.0 * slope


@register("ThresholdedRelu")
class ThresholdedRelu(Elementwise):
    def expr(self, ctx, a):
        return f"({a[0]} if {a[0]} > {_f(ctx, 'alpha', 1.0)} else 0)"


@register("Sigmoid")
class Sigmoid(Elementwise):
    def expr(self, ctx, a):
        return f"1.0 / (1.0 + np.exp(-{a[0]}))"


@register("HardSigmoid")
class HardSigmoid(Elementwise):
    def expr(self, ctx, a):
        return f"np.maximum(0, np.minimum(1, {_f(ctx, 'alpha', 0.2)} * {a[0]} + {_f(ctx, 'beta', 0.5)}))"


@register("HardSwish")
class HardSwish(Elementwise):
    def expr(self, ctx, a):
        # the spec's function body: X * HardSigmoid<alpha=1/6 (a float32), beta=0.5>(X)
        return f"{a[0]} * np.maximum(0, np.minimum(1, {_f32(1 / 6)} * {a[0]} + 0.5))"


@register("Tanh")
class Tanh(Elementwise):
    def expr(self, ctx, a):
        return f"np.tanh({a[0]})"


@register("Softplus")
class Softplus(Elementwise):
    def expr(self, ctx, a):
        x = a[0]
        return f"(np.log1p(np.exp(-np.abs({x}))) + np.maximum({x}, 0))"  # no overflow for large x


@register("Softsign")
class Softsign(Elementwise):
    def expr(self, ctx, a):
        return f"{a[0]} / (1.0 + np.abs({a[0]}))"


@register("Elu")
class Elu(Elementwise):
    def expr(self, ctx, a):
        return f"({a[0]} if {a[0]} >= 0 else {_f(ctx, 'alpha', 1.0)} * np.expm1({a[0]}))"


@register("Selu")
class Selu(Elementwise):
    def expr(self, ctx, a):
        alpha = _f(ctx, "alpha", 1.67326319217681884765625)
        gamma = _f(ctx, "gamma", 1.05070102214813232421875)
        return f"{gamma} * ({a[0]} if {a[0]} > 0 else {alpha} * np.expm1({a[0]}))"


@register("Celu")
class Celu(Elementwise):
    def expr(self, ctx, a):
        alpha = _f(ctx, "alpha", 1.0)
        return f"(np.maximum({a[0]}, 0) + np.minimum(0, {alpha} * np.expm1({a[0]} / {alpha})))"


@register("Mish")
class Mish(Elementwise):
    def expr(self, ctx, a):
        x = a[0]
        return f"{x} * np.tanh(np.log1p(np.exp(-np.abs({x}))) + np.maximum({x}, 0))"


@register("Gelu", since=20)
class Gelu(Elementwise):
    def expr(self, ctx, a):
        x = a[0]
        if ctx.attr("approximate", "none") == "tanh":
            # the constants of the spec's function body, which are float32 (2/pi and 0.044715)
            c = repr(float(np.sqrt(np.float64(np.float32(2 / np.pi)))))
            return f"0.5 * {x} * (1.0 + np.tanh({c} * ({x} + {_f32(0.044715)} * {x} * {x} * {x})))"
        return f"0.5 * {x} * (1.0 + math.erf({x} * 0.7071067811865476))"


@register("Shrink")
class Shrink(Elementwise):
    def expr(self, ctx, a):
        x, lambd, bias = a[0], _f(ctx, "lambd", 0.5), _f(ctx, "bias", 0.0)
        return f"({x} + {bias} if {x} < -{lambd} else ({x} - {bias} if {x} > {lambd} else 0))"


@register("Swish")
class Swish(Elementwise):
    """x * sigmoid(alpha * x) (opset 24)."""

    def expr(self, ctx, a):
        alpha = _f(ctx, "alpha", 1.0)
        return f"{a[0]} / (1.0 + np.exp(-{alpha} * {a[0]}))"
