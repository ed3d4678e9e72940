"""BitCast: the same bits read as another type of the same width (or, to a narrower type,
one more trailing dimension; to a wider one, one less), as numpy's view does."""
from __future__ import annotations

import numpy as np

from ..dtypes import to_numpy
from .base import Info, Op
from .registry import register


@register("BitCast")
class BitCast(Op):
    mode = "return"

    def infer(self, ctx):
        x = ctx.inputs[0]
        to = to_numpy(ctx.attr("to"))
        src, dst = np.dtype(x.dtype).itemsize, to.itemsize
        if np.dtype(x.dtype) == object or to == object:
            raise ctx.fail("strings cannot be bit-cast")
        shape = tuple(x.shape)
        if dst < src:
            shape = shape + (src // dst,)
        elif dst > src:
            if not shape or shape[-1] * src != dst:
                raise ctx.fail(f"the last dimension of {list(shape)} does not hold one {to} ({dst} bytes)")
            shape = shape[:-1]
        return [Info(shape, to)]

    def kernel(self, ctx):
        out = self.infer(ctx)[0]

        def run(x):
            return np.ascontiguousarray(x).view(out.dtype).reshape(out.shape)
        return run
