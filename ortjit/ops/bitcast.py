"""BitCast: the same bits read as another type of the same bit width, the shape unchanged.
ml_dtypes keeps a 4- or 2-bit value in the low bits of its byte, so numpy's view reads
them right between types of one width (int4 -1, 0b1111, is uint4 15)."""
from __future__ import annotations

import numpy as np

from ..dtypes import to_numpy
from .base import Info, Op
from .registry import register

_SUB_BYTE_BITS = {"int4": 4, "uint4": 4, "float4_e2m1fn": 4, "int2": 2, "uint2": 2,
                  "float6_e2m3fn": 6, "float6_e3m2fn": 6}


def bit_width(dtype: np.dtype) -> int:
    return _SUB_BYTE_BITS.get(dtype.name, dtype.itemsize * 8)


@register("BitCast")
class BitCast(Op):
    mode = "return"

    def infer(self, ctx):
        src, to = np.dtype(ctx.inputs[0].dtype), to_numpy(ctx.attr("to"))
        if src == object or to == object:
            raise ctx.fail("strings cannot be bit-cast")
        if bit_width(src) != bit_width(to):
            raise ctx.fail(f"{src} ({bit_width(src)} bits) and {to} ({bit_width(to)} bits) differ in bit width")
        return [Info(tuple(ctx.inputs[0].shape), to)]

    def kernel(self, ctx):
        to = to_numpy(ctx.attr("to"))

        def run(x):
            return (x if x.flags.c_contiguous else x.copy()).view(to)  # (ascontiguousarray makes 0-d 1-d)
        return run
