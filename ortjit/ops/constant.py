"""Constant and ConstantOfShape: values known when the plan is built (or folded before)."""
import numpy as np

from ..errors import NotImplemented
from .base import Info, Op
from .registry import register


@register("Constant")
class Constant(Op):
    mode = "return"

    # attribute name -> how its value becomes an array
    KINDS = {
        "value": lambda v: np.asarray(v),
        "value_float": lambda v: np.array(v, dtype=np.float32),
        "value_floats": lambda v: np.array(v, dtype=np.float32).reshape(-1),
        "value_int": lambda v: np.array(v, dtype=np.int64),
        "value_ints": lambda v: np.array(v, dtype=np.int64).reshape(-1),
        "value_string": lambda v: np.array(_text(v), dtype=object),
        "value_strings": lambda v: np.array([_text(s) for s in v], dtype=object).reshape(-1),
    }

    def value(self, ctx) -> np.ndarray:
        given = [k for k in ctx.attrs if k in self.KINDS or k == "sparse_value"]
        if len(given) != 1:
            raise ctx.fail(f"exactly one value attribute must be given, got {given or 'none'}")
        if given[0] == "sparse_value":
            raise ctx.fail("sparse_value is not supported", NotImplemented)
        return self.KINDS[given[0]](ctx.attrs[given[0]])

    def infer(self, ctx):
        v = self.value(ctx)
        return [Info(v.shape, v.dtype, v)]

    def kernel(self, ctx):
        v = self.value(ctx)
        return lambda: v

    def evaluate(self, ctx, inputs):
        return [self.value(ctx)]


def _text(s):
    return s.decode() if isinstance(s, bytes) else s


@register("ConstantOfShape")
class ConstantOfShape(Op):
    def fill(self, ctx):
        """The fill value as a 0-d array of its type (float32 0 by default)."""
        value = ctx.attr("value")
        if value is None:
            return np.zeros((), np.float32)
        value = np.asarray(value)
        if value.size != 1:
            raise ctx.fail(f"value must hold one element, got shape {list(value.shape)}")
        return value.reshape(())

    def infer(self, ctx):
        shape = tuple(int(d) for d in np.asarray(ctx.value(0, "shape")).ravel())
        if min(shape, default=0) < 0:
            raise ctx.fail(f"shape {list(shape)} has a negative dimension")
        return [Info(shape, self.fill(ctx).dtype)]

    def kernel(self, ctx):
        value = self.fill(ctx)

        def constant_of_shape(shape, out):
            out.fill(value)
        return constant_of_shape

