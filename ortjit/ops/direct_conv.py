"""Stride-1 float32 convolutions as an implicit GEMM on our own micro-kernel: no im2col.

The input is copied once into a zero-padded buffer (C, Hp, Wp) per image. The output is
then computed at the padded width: output pixel (i, j) sits at column p = i * Wp + j, and
tap (c, a, b) of it reads the padded input at p + c Hp Wp + a dh Wp + b dw. For any tap,
consecutive columns read consecutive floats, so NR columns of the GEMM's B operand are one
vector load at one offset per tap (codegen/cpu/microkernel.py): the unrolled columns of
im2col are never written. The Wp - ow columns past each output row are computed and
dropped (3% of the work at 56x56, 22% at 7x7).

The work is cut into units of one panel of NR columns (and, where there are too few
panels for the threads, a share of the output channels); each thread takes a run of
units, computes them in groups of `GROUP` panels into its own small block of C over all
of K (in blocks of KC rows, A's block staying in L2, a panel's input rows in L1), then
copies the group's valid columns into the output with the bias added while they are in
cache. Weights are packed once per plan (or per call when W is an input).

Measured against im2col + OpenBLAS (or Winograd where conv.py chose it), one Conv at a
time on the 2-core AMD EPYC (docs/performance.md): 0.58-0.82x on 64 channels of 56x56,
16-32 channels of 27-55, 5x5 and DenseNet's 128 -> 32; about even at 128 of 28x28 and
512 of 7x7; Winograd stays ahead from 256 channels on small images (1.14-1.3x there).
"""
from __future__ import annotations

import os

import numpy as np

from .. import codecache, jit
from ..jit import numba   # imported when the first kernel is (jit.py)
from ..codegen.cpu import microkernel
from ..codegen.cpu.direct_conv import render_direct_conv
from . import blas, winograd
from .scratch import scratch

KC = 256      # rows of K per block: A's block (M x KC) stays in L2, a panel's input rows in L1
GROUP = 4     # panels computed together into a thread's block of C
ENABLED = os.environ.get("ORTJIT_DIRECT_CONV", "1") != "0"


def applicable(dtype, group: int, kernel: list, strides: list, n_spatial: int) -> bool:
    """Whether this convolution can run here: float32, one group, stride 1, 1-D or 2-D, a
    kernel wider than one tap, and a CPU with a micro-kernel."""
    return ENABLED and np.dtype(dtype) == np.float32 and group == 1 and n_spatial <= 2 and \
        all(s == 1 for s in strides) and int(np.prod(kernel)) > 1 and blas.threaded() and \
        microkernel.host_tile() is not None


def worthwhile(dtype, group, kernel, strides, n, c, m, out) -> bool:
    """Direct unless Winograd applies and the channels are many (Winograd's GEMMs then
    dominate and it does 2.25x fewer multiplications)."""
    if not applicable(dtype, group, kernel, strides, len(out)):
        return False
    winograd_case = list(kernel) == [3, 3] and winograd.worthwhile(n, c, m, out)
    return not (winograd_case and c >= 256)


def _pack(w2: np.ndarray, tile, kc_max: int) -> np.ndarray:
    """W as (M, K) -> (K blocks, M panels, kc_max, MR): each panel's MR weights per k
    contiguous, zero rows past M and zero k past K."""
    m, k = w2.shape
    mr = tile.rows
    m_panels, k_blocks = -(-m // mr), -(-k // kc_max)
    padded = np.zeros((m_panels * mr, k_blocks * kc_max), np.float32)
    padded[:m, :k] = w2
    return np.ascontiguousarray(padded.reshape(m_panels, mr, k_blocks, kc_max).transpose(2, 0, 3, 1))


class DirectConv:
    """run(x, w, bias, y, extras) for one Conv's shapes; `weights` given (a static W) packs
    it now. With an `epilogue` (ops/fused_conv.py: one whose inputs all fit its GEMM form),
    y gets the epilogue of the convolution and `extras`, applied as each block is copied
    out; the bias is then part of the epilogue, not an argument."""

    def __init__(self, n, c, in_hw, m, kernel, out, begin, end, dilations, has_bias, weights=None, epilogue=None):
        self.tile = tile = microkernel.host_tile()
        (h, w), (kh, kw), (oh, ow) = in_hw, kernel, out
        (ph, pw), (dh, dw) = begin, dilations
        hp, wp = h + begin[0] + end[0], w + begin[1] + end[1]
        k = c * kh * kw
        self.m, self.k, self.kc = m, k, min(k, KC)
        nr = tile.cols
        panels_per_image = -(-oh * wp // nr)
        # each image's padded planes, then room for the dropped columns' reads past them
        stride = -(-(c * hp * wp + (kw - 1) * dw + nr) // 16) * 16
        self.pad_dims = (n, c, h, w, hp, wp, ph, pw, stride)
        self.xpad_size = n * stride
        cc, a, b = np.meshgrid(np.arange(c), np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
        self.offs = (cc * hp * wp + a * wp + b).reshape(-1).astype(np.int64)
        m_panels = -(-m // tile.rows)
        self.m_panels = m_panels
        # share out the output channels too when there are fewer than 4 panels per thread
        parts = jit.max_threads()
        m_split = 1
        while n * panels_per_image * m_split < 4 * parts and m_panels >= 2 * m_split:
            m_split *= 2
        m_step = -(-m_panels // m_split) * tile.rows
        self.dims = (n, m, k, self.kc, panels_per_image, stride, m_split, m_step, GROUP, oh, ow, wp)
        self.packed = None if weights is None else _pack(np.asarray(weights, np.float32).reshape(m, k), tile, self.kc)
        self.zero_bias = np.zeros(m, np.float32)
        self.has_bias = has_bias
        self.epilogue = epilogue
        if epilogue is None:
            self.source = render_direct_conv(tile, blas.threaded(), has_bias)
        else:
            self.source = render_direct_conv(tile, blas.threaded(), False, epilogue.program,
                                             epilogue.product_at, epilogue.patterns)
        self._kernels = None

    def __call__(self, x, w, bias, y, extras=()):
        if self._kernels is None:
            self._kernels = (codecache.load("direct_conv", self.source, attr="pad"),
                             codecache.load("direct_conv", self.source, attr="kernel"))
        pad, kernel = self._kernels
        packed = self.packed if self.packed is not None else \
            _pack(np.asarray(w, np.float32).reshape(self.m, self.k), self.tile, self.kc)
        parts = numba.get_num_threads()
        xpad = scratch("direct_conv_input", self.xpad_size, np.float32)
        blocks = scratch("direct_conv_blocks", parts * self.m_panels * self.tile.rows * GROUP * self.tile.cols,
                         np.float32).reshape(parts, self.m_panels * self.tile.rows, GROUP * self.tile.cols)
        pad(np.ascontiguousarray(x).reshape(-1), xpad, self.pad_dims)
        out = y if y.flags.c_contiguous else np.empty(y.shape, np.float32)
        ins = []
        if self.epilogue is not None:
            ins = [e.reshape(-1) for e in self.epilogue.gemm_inputs(extras)]
            self.epilogue.direct_calls += 1
        kernel(xpad, packed, self.offs, blocks, self.zero_bias if bias is None else bias.astype(np.float32, copy=False),
               out.reshape(-1), self.dims, *ins)
        if out is not y:
            y[...] = out
