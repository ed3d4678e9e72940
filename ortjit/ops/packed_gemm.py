"""float32 GEMMs with a constant B (MatMul and Gemm weights) on our own micro-kernel, B packed
once per plan.

OpenBLAS packs B again on every call and splits a product among threads only as its own
pool decides; ONNX Runtime (MLAS) packs constant weights when the session is made. Here B
is packed into panels of NR columns when the plan is built (codegen/cpu/packed_gemm.py),
and each call only packs its rows of A. Measured on the 2-core AMD EPYC (AVX-512), one
product at a time with both threads taking part: 170-215 GFLOP/s on the transformer and
MLP shapes (64-256 rows, K and N 256-4096), where OpenBLAS's pieces got 95-165.

A fused elementwise epilogue (ops/fused_matmul.py) is applied as each block is copied out.

When (usable): float32, a micro-kernel for this CPU, at least one full panel of rows (M >=
MR: fewer rows waste most of each block; a vector-matrix product stays on the BLAS's
gemv), and a product big enough for threads (blas.SMALL).
"""
from __future__ import annotations

import numpy as np

from .. import codecache
from ..jit import numba   # imported when the first kernel is (jit.py)
from ..codegen.cpu import microkernel
from ..codegen.cpu.packed_gemm import KC, render_packed_gemm
from . import blas
from .scratch import scratch


def usable(dtype, m: int, k: int, n: int) -> bool:
    if np.dtype(dtype) != np.float32 or m * k * n < blas.SMALL or not blas.ready(np.float32):
        return False
    tile = microkernel.host_tile()
    return tile is not None and m >= tile.rows


def pack_b(b: np.ndarray, cols: int) -> np.ndarray:
    """B (K, N) -> (N panels, K, cols), zero columns past N."""
    k, n = b.shape
    panels = -(-n // cols)
    padded = np.zeros((k, panels * cols), np.float32)
    padded[:, :n] = b
    return np.ascontiguousarray(padded.reshape(k, panels, cols).transpose(1, 0, 2))


class PackedGemm:
    """run(a, c, extras): c = a @ B for a's rows (a and c seen as flat (M, K) and (M, N)), B
    packed now. With an `epilogue` (ops/fused_matmul.py), c = its program of the product
    and `extras`, applied as each block is copied out."""

    def __init__(self, b: np.ndarray, m: int, epilogue=None):
        self.tile = tile = microkernel.host_tile()
        k, n = b.shape
        self.m, self.k, self.n = m, k, n
        self.packed = pack_b(np.asarray(b, np.float32), tile.cols)
        self.offs = np.arange(min(k, KC), dtype=np.int64) * tile.cols
        self.epilogue = epilogue
        if epilogue is None:
            self.source = render_packed_gemm(tile, blas.threaded())
        else:
            self.source = render_packed_gemm(tile, blas.threaded(), epilogue.program, epilogue.product_at,
                                             epilogue.patterns)
        self._kernel = None

    def __call__(self, a, c, extras=()):
        if self._kernel is None:
            self._kernel = codecache.load("packed_gemm", self.source)
        tile = self.tile
        parts = numba.get_num_threads() if blas.threaded() else 1
        m_panels = -(-self.m // tile.rows)
        split_m = m_panels >= 2 * parts
        per_thread = -(-m_panels // parts) if split_m else m_panels
        a_packs = scratch("packed_gemm_a", parts * per_thread * self.k * tile.rows,
                          np.float32).reshape(parts, -1)
        blocks = scratch("packed_gemm_blocks", parts * tile.rows * tile.cols,
                         np.float32).reshape(parts, tile.rows, tile.cols)
        ins = [] if self.epilogue is None else self.epilogue.flat_inputs(extras)
        out = c if c.flags.c_contiguous else np.empty(c.shape, np.float32)
        self._kernel(np.ascontiguousarray(a).reshape(-1), self.packed, self.offs, a_packs, blocks,
                     out.reshape(-1), (self.m, self.k, self.n, parts, int(split_m)), *ins)
        if out is not c:
            c[...] = out
