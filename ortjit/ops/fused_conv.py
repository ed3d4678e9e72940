"""ortjit.FusedConv: a Conv and the fused elementwise loop that reads its result, as one node
(made by passes/conv_epilogue.py).

Inputs: X, W, then the loop's other inputs; attributes: the Conv's, the loop's `body` and
`product_at` (which body input is the convolution). Where the convolution runs as GEMMs
(1x1 convolutions, im2col), each thread applies the loop to its own piece of the GEMM's
output right after computing it (codegen/cpu/gemm_epilogue.py): no separate pass over the
output and one parallel region fewer per Conv. Elsewhere (Winograd, depthwise, grouped,
small products) the convolution runs into scratch and the loop after it, as before fusion.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..jit import numba   # imported when the first kernel is (jit.py)
from .. import codecache
from . import blas
from .base import Op
from .conv import Conv
from .fused import check_same_as_product, producer_and_body
from .registry import register

_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


class Epilogue:
    """The body program over a convolution's (N, M, spatial...) output."""

    def __init__(self, program, product_at: int, out_shape: tuple, extra_shapes: list):
        from ..codegen.cpu import ElementwiseKernel
        self.product_at = product_at
        self.out_shape = tuple(out_shape)
        self.image_shape = (out_shape[0], out_shape[1], int(np.prod(out_shape[2:], dtype=np.int64)))
        shapes = list(extra_shapes)
        shapes.insert(product_at, out_shape)
        self.loop = ElementwiseKernel(program, out_shape, shapes)
        self.program = program
        self.patterns = [self._pattern(s) for s in extra_shapes]
        self.source = self.loop.source
        self._gemm_kernel = None
        self.gemm_calls = 0       # how often the GEMM pieces took the epilogue (for tests)
        self.direct_calls = 0     # how often a direct convolution did (ops/direct_conv.py)
        if all(pt is not None for pt in self.patterns):
            from ..codegen.cpu.gemm_epilogue import render_gemm_epilogue
            self.gemm_source = render_gemm_epilogue(program, product_at, self.patterns)
            self.source = self.gemm_source + "\n# when the convolution is no GEMM:\n" + self.loop.source

    def _pattern(self, shape):
        """(varies along images, channels, pixels) of an input broadcast to the output;
        None if its spatial dims are neither all full nor all 1."""
        rank = len(self.out_shape)
        s = (1,) * (rank - len(shape)) + tuple(shape)
        spatial = s[2:]
        if all(d == 1 for d in spatial):
            pixels = False
        elif tuple(spatial) == self.out_shape[2:]:
            pixels = True
        else:
            return None
        return (s[0] != 1, s[1] != 1, pixels)

    def fits_gemm(self, batch, m, k, p) -> bool:
        """Whether the GEMM-with-epilogue kernel can take this product."""
        return all(pt is not None for pt in self.patterns) and m > 1 and p > 1 and \
            batch * m * k * p >= blas.SMALL and blas.ready(self.program.out_dtypes[0])

    def fits_direct(self) -> bool:
        """Whether ops/direct_conv.py can apply it as it copies its blocks out: every other
        input full or broadcast along whole dims of (images, channels, pixels), float32."""
        return all(pt is not None for pt in self.patterns) and \
            all(np.dtype(t) == np.float32 for t in self.program.out_dtypes)

    def gemm_inputs(self, extras) -> list:
        """The extra inputs as 3-D (images, channels, pixels) arrays, 1 where they broadcast."""
        dims = self.image_shape
        return [np.ascontiguousarray(e).reshape(tuple(d if v else 1 for d, v in zip(dims, pt)))
                for e, pt in zip(extras, self.patterns)]

    def gemm(self, a, b, c, image0, extras3) -> None:
        """c[image0 + i] = epilogue(a @ b[i], extras) for each i < len(b), on all threads."""
        if self._gemm_kernel is None:
            self._gemm_kernel = codecache.load("gemm_" + self.program.name(), self.gemm_source)
        self.gemm_calls += 1
        previous = blas.pin_one_thread() if blas.BACKEND == "openblas" else 0
        try:
            self._gemm_kernel(numba.get_num_threads(), image0, a, b, c, *extras3)
        finally:
            blas.unpin(previous)

    def after(self, product, extras, out) -> None:
        """out = epilogue(product, extras) as its own loop."""
        ins = list(extras)
        ins.insert(self.product_at, product)
        self.loop(*ins, out)


@register("FusedConv", domain="ortjit")
class FusedConv(Op):
    _parts_of = None   # (ctx, its parts): a plan asks infer, then kernel, of the same ctx

    def _parts(self, ctx):
        if self._parts_of is not None and self._parts_of[0] is ctx:
            return self._parts_of[1]
        conv_ctx = replace(ctx, op_type="Conv", inputs=ctx.inputs[:2],
                           attrs={k: v for k, v in ctx.attrs.items() if k in _CONV_ATTRS})
        out = Conv().infer(conv_ctx)[0]
        parts = (conv_ctx, out, *producer_and_body(ctx, out))
        self._parts_of = (ctx, parts)
        return parts

    def infer(self, ctx):
        return [self._parts(ctx)[-1]]

    def kernel(self, ctx):
        conv_ctx, out, product_at, extras, program, result = self._parts(ctx)
        check_same_as_product(ctx, result, out, "convolution")
        epilogue = Epilogue(program, product_at, out.shape, [e.shape for e in extras])
        run = Conv().runner(conv_ctx, epilogue)

        def fused_conv(x, w, *rest):
            run(x, w, None, rest[-1], rest[:-1])
        fused_conv.epilogue = epilogue
        fused_conv.strided_out = getattr(run, "strided_out", False)   # see Conv.runner
        fused_conv.source = (getattr(run, "source", None) or "") + epilogue.source
        return fused_conv

