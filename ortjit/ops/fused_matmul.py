"""ortjit.FusedMatMul: a MatMul with constant 2-D weights and the fused elementwise loop that
reads its result (bias, GELU, residual Add...), as one node (made by passes/conv_epilogue.py).

Inputs: A, B, then the loop's other inputs; attributes: the loop's `body` and `product_at`
(which body input is the product). Where the product runs on ops/packed_gemm.py, the loop
is applied to each block as it is copied into the output, while it is in cache: no
separate pass over the output, no parallel region of its own. Elsewhere the product runs
into scratch and the loop after it, as before fusion.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import packed_gemm
from .base import Op
from .fused import check_same_as_product, producer_and_body
from .matmul import MatMul
from .registry import register
from .scratch import scratch


class MatMulEpilogue:
    """The body program over a product's (..., M, N) output, seen as (rows, N)."""

    def __init__(self, program, product_at: int, out_shape: tuple, extra_shapes: list):
        from ..codegen.cpu import ElementwiseKernel
        self.program, self.product_at = program, product_at
        self.out_shape = tuple(out_shape)
        shapes = list(extra_shapes)
        shapes.insert(product_at, out_shape)
        self.loop = ElementwiseKernel(program, out_shape, shapes)
        self.patterns = [self._pattern(s) for s in extra_shapes]
        self.source = self.loop.source

    def _pattern(self, shape):
        """(varies along rows, along columns) of an input broadcast to the output; None
        where it varies along some of the rows' dims but not all."""
        rank = len(self.out_shape)
        s = (1,) * (rank - len(shape)) + tuple(shape)
        if all(d == 1 for d in s[:-1]):
            rows = False
        elif s[:-1] == self.out_shape[:-1]:
            rows = True
        else:
            return None
        return rows, s[-1] != 1

    def fits(self) -> bool:
        """Whether packed_gemm can apply it as it copies its blocks out."""
        return all(pt is not None for pt in self.patterns) and \
            all(np.dtype(t) == np.float32 for t in self.program.out_dtypes)

    def flat_inputs(self, extras) -> list:
        """The other inputs as flat arrays over (rows if they vary along them) x (columns
        if they do)."""
        return [np.ascontiguousarray(e).reshape(-1) for e in extras]


@register("FusedMatMul", domain="ortjit")
class FusedMatMul(Op):
    def _parts(self, ctx):
        mm_ctx = replace(ctx, op_type="MatMul", inputs=ctx.inputs[:2], attrs={})
        out = MatMul().infer(mm_ctx)[0]
        return (mm_ctx, out, *producer_and_body(ctx, out))

    def infer(self, ctx):
        return [self._parts(ctx)[-1]]

    def kernel(self, ctx):
        mm_ctx, out, product_at, extras, program, result = self._parts(ctx)
        check_same_as_product(ctx, result, out, "product")
        epilogue = MatMulEpilogue(program, product_at, out.shape, [e.shape for e in extras])
        a, b = ctx.inputs[0], ctx.inputs[1]
        rows = int(np.prod(a.shape[:-1]))
        if b.static and len(b.shape) == 2 and len(a.shape) >= 2 and epilogue.fits() and \
                packed_gemm.usable(a.dtype, rows, *b.shape):
            gemm = packed_gemm.PackedGemm(b.value, rows, epilogue)

            def fused(x, w, *rest):
                gemm(x, rest[-1], rest[:-1])
            fused.source = gemm.source
            return fused
        product = MatMul().kernel(mm_ctx)

        def after(x, w, *rest):   # the product into scratch, the loop after it
            y = rest[-1]
            tmp = scratch("matmul_product", y.size, y.dtype).reshape(y.shape)
            product(x, w, tmp)
            ins = list(rest[:-1])
            ins.insert(product_at, tmp)
            epilogue.loop(*ins, y)
        after.source = epilogue.source
        return after
