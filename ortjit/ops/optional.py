"""Optional values: None for an empty optional, else the tensor or sequence itself."""
from __future__ import annotations

import numpy as np

from .base import Info, Op
from .registry import register


class _OptionalOp(Op):
    mode = "return"
    dynamic = True

    def infer(self, ctx):
        return [Info(None, "optional", dynamic=True)]


@register("Optional")
class Optional(_OptionalOp):
    def kernel(self, ctx):
        def run(x=None):
            return np.array(x, copy=True) if isinstance(x, np.ndarray) else x
        return run


@register("OptionalHasElement")
class OptionalHasElement(_OptionalOp):
    def kernel(self, ctx):
        return lambda x=None: np.array(x is not None)


@register("OptionalGetElement")
class OptionalGetElement(_OptionalOp):
    def kernel(self, ctx):
        def run(x=None):
            if x is None:
                raise ctx.fail("the optional input has no value")
            return x
        return run
