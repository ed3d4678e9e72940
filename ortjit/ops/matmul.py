"""MatMul and Gemm: the work goes to BLAS through ops/blas.py (on Numba's threads), writing
in place; float32 products with constant weights to ops/packed_gemm.py."""
import numpy as np

from . import blas, packed_gemm
from .base import Info, Op, broadcast_shapes
from .registry import register


def _same_dtype(ctx, *infos):
    dtypes = {np.dtype(i.dtype) for i in infos if i is not None}
    if len(dtypes) > 1:
        raise ctx.fail("inputs must have the same element type, got " + ", ".join(sorted(map(str, dtypes))))


@register("MatMul")
class MatMul(Op):
    """numpy.matmul semantics: 1-D operands are promoted then squeezed, batch dims broadcast."""

    def infer(self, ctx):
        a, b = ctx.inputs[0], ctx.inputs[1]
        _same_dtype(ctx, a, b)
        sa, sb = tuple(a.shape), tuple(b.shape)
        if not sa or not sb:
            raise ctx.fail(f"inputs must have rank >= 1, got shapes {list(sa)} and {list(sb)}")
        ka = sa[-1]
        kb = sb[0] if len(sb) == 1 else sb[-2]
        if ka != kb:
            raise ctx.fail(f"incompatible dimensions for matrix multiplication: A {list(sa)}, B {list(sb)} "
                           f"(A's last dim {ka} != B's {'only' if len(sb) == 1 else 'second to last'} dim {kb})")
        batch = broadcast_shapes(ctx, sa[:-2], sb[:-2])
        shape = batch + (sa[-2:-1] if len(sa) > 1 else ()) + (sb[-1:] if len(sb) > 1 else ())
        return [Info(shape, np.dtype(a.dtype))]

    def kernel(self, ctx):
        sa, sb = ctx.inputs[0].shape, ctx.inputs[1].shape
        if len(sa) >= 2 and len(sb) == 2 and ctx.inputs[1].static and \
                packed_gemm.usable(ctx.inputs[0].dtype, int(np.prod(sa[:-1])), *sb):
            gemm = packed_gemm.PackedGemm(ctx.inputs[1].value, int(np.prod(sa[:-1])))

            def packed(a, b, y):
                gemm(a, y)
            packed.source = gemm.source
            return packed
        if len(sa) > 2 and len(sb) == 2:
            # [..., M, K] x [K, N]: one GEMM over the stacked rows instead of one per batch entry
            k, n = sb

            def run(a, b, y):
                blas.matmul(a.reshape(-1, k), b, y.reshape(-1, n))
            return run
        if len(sa) >= 2 and len(sb) >= 2 and (len(sa) <= 3 and len(sb) <= 3 or tuple(sa[:-2]) == tuple(sb[:-2])):
            # one stack of matrices on each side (or a single matrix broadcast over the other's)
            m, n = sa[-2], sb[-1]
            flat_a = sa if len(sa) <= 3 else (-1,) + tuple(sa[-2:])
            flat_b = sb if len(sb) <= 3 else (-1,) + tuple(sb[-2:])

            def run(a, b, y):
                blas.matmul(a.reshape(flat_a), b.reshape(flat_b), y.reshape((-1, m, n) if y.ndim > 2 else (m, n)))
            return run

        def run(a, b, y):
            np.matmul(a, b, out=y)
        return run


@register("Gemm")
class Gemm(Op):
    """Y = alpha * op(A) @ op(B) + beta * C. C is required before opset 11; its broadcast
    to (M, N) is unidirectional from opset 7 (before, `broadcast=1` allowed it)."""

    def _dims(self, ctx):
        a, b = ctx.inputs[0], ctx.inputs[1]
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise ctx.fail(f"A and B must be 2-D, got shapes {list(a.shape)} and {list(b.shape)}")
        m, ka = a.shape[::-1] if ctx.attr("transA", 0) else a.shape
        kb, n = b.shape[::-1] if ctx.attr("transB", 0) else b.shape
        if ka != kb:
            raise ctx.fail(f"inner dimensions differ: op(A) is [{m}, {ka}] and op(B) is [{kb}, {n}]")
        return m, n

    def infer(self, ctx):
        m, n = self._dims(ctx)
        c = ctx.input(2)
        _same_dtype(ctx, ctx.inputs[0], ctx.inputs[1], c)
        if c is None and ctx.opset < 11:
            raise ctx.fail("input C is required before opset 11")
        if c is not None:
            exact = ctx.opset < 7 and not ctx.attr("broadcast", 0)
            if (exact and tuple(c.shape) != (m, n)) or broadcast_shapes(ctx, c.shape, (m, n)) != (m, n):
                raise ctx.fail(f"C of shape {list(c.shape)} cannot be broadcast to the result shape [{m}, {n}]")
        return [Info((m, n), np.dtype(ctx.inputs[0].dtype))]

    def kernel(self, ctx):
        out = self.infer(ctx)[0]
        ta, tb = ctx.attr("transA", 0), ctx.attr("transB", 0)
        alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
        c_info = ctx.input(2)
        use_c = c_info is not None and beta != 0.0  # beta == 0 ignores C entirely, as ORT does
        scaled_c = None
        if use_c and beta != 1.0:
            # beta * C: computed once here when C is a constant, else into a buffer made once here
            fixed_c = c_info.static
            scaled_c = (np.multiply(c_info.value, beta, casting="unsafe", dtype=out.dtype) if fixed_c
                        else np.empty(c_info.shape, out.dtype))

        b_info = ctx.inputs[1]
        gemm = None
        if not ta and alpha == 1.0 and b_info.static and packed_gemm.usable(b_info.dtype, *out.shape[:1],
                                                                             *b_info.shape[::-1 if tb else 1]):
            gemm = packed_gemm.PackedGemm(b_info.value.T if tb else b_info.value, out.shape[0])

        def run(a, b, *rest):  # (a, b, y), or (a, b, c, y) where c may be None (omitted)
            y = rest[-1]
            if gemm is not None:
                gemm(a, y)
            else:
                blas.matmul(a.T if ta else a, b.T if tb else b, y, alpha=alpha)
            if use_c:
                if scaled_c is None:
                    y += rest[0]
                else:
                    if not fixed_c:
                        np.multiply(rest[0], beta, out=scaled_c, casting="unsafe")
                    y += scaled_c
        if gemm is not None:
            run.source = gemm.source
        return run
