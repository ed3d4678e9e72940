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
from ..codegen.cpu.direct_conv import render_direct_conv, render_pad
from . import blas, winograd
from .scratch import scratch

KC = 256      # rows of K per block: A's block (M x KC) stays in L2, a panel's input rows in L1
KC_BY_CHANNELS = 128   # with the weights in the vectors, a block of them (KC x NR) stays in L1
GROUP = 4     # panels computed together into a thread's block of C
ENABLED = os.environ.get("ORTJIT_DIRECT_CONV", "1") != "0"


def applicable(dtype, group: int, kernel: list, strides: list, n_spatial: int) -> bool:
    """Whether this convolution can run here: float32, one group, strides up to 4 (s x s
    phases), 1-D or 2-D, and a CPU with a micro-kernel."""
    return ENABLED and np.dtype(dtype) == np.float32 and group == 1 and n_spatial <= 2 and \
        all(1 <= s <= 4 for s in strides) and blas.threaded() and microkernel.host_tile() is not None


def worthwhile(dtype, group, kernel, strides, dilations, n, c, m, out) -> bool:
    """Direct unless Winograd applies with 128 input channels or more and 64 outputs or
    more: its GEMMs then dominate and it does 2.25x fewer multiplications. Below, or with
    few output channels (a skinny GEMM per tile plane: DenseNet's 128 -> 32), direct wins."""
    if not applicable(dtype, group, kernel, strides, len(out)):
        return False
    if int(np.prod(kernel)) == 1:
        # 1x1: one GEMM either way. Alone, direct (reading the input in place) measured
        # 0.76-0.98x of OpenBLAS's from 27x27 images at batch 1, but 1.05-1.43x on 14x14
        # and 7x7 with 256-2048 channels and 1.17x at batch 8; inside ResNet-50 even its
        # 56x56 ones ran 1.2-1.4x slower (docs/performance.md). Kept on OpenBLAS.
        return False
    winograd_case = list(kernel) == [3, 3] and list(strides) == list(dilations) == [1, 1] and \
        winograd.worthwhile(n, c, m, out)
    if winograd_case and c >= 128 and m >= 64:
        return False
    if LAYOUT is not None:   # a forced layout (tests, experiments) takes all the others
        return True
    if c * int(np.prod(kernel)) < 48:
        # a short sum per output (SqueezeNet's first layer: 3 channels of 3x3, 27 terms)
        # leaves each block's stores and copy-out to dominate: 1.09x of im2col there
        return False
    # the width the output is computed at: its own plus the window's reach in the phase
    oh, ow = ([1] + list(out))[-2:]
    reach = (list(kernel)[-1] - 1) * list(dilations)[-1]
    wq = ow + -(-reach // list(strides)[-1])
    # where most of the last panel of each image is wasted (13x13: 195 columns of 240,
    # measured 1.04-1.14x of im2col's time inside SqueezeNet), im2col's GEMM does better
    return _layout(oh, ow, wq, m)[1] >= 0.72


def _layout(oh: int, ow: int, wq: int, m: int) -> tuple[bool, float]:
    """(by_channels, the share of its multiply-adds that make output) for an output of oh x ow
    computed at width wq (see DirectConv)."""
    by_pixels, by_channels = microkernel.host_tile(), microkernel.host_tile(by_channels=True)
    pixels = _efficiency(oh * ow, oh * wq, by_pixels.cols, m, by_pixels.rows)
    channels = _efficiency(oh * ow, oh * wq, by_channels.rows, m, by_channels.cols)
    return (True, channels) if channels > 1.3 * pixels else (False, pixels)


def _pack(w2: np.ndarray, rows: int, kc_max: int) -> np.ndarray:
    """W as (M, K) -> (K blocks, M panels, kc_max, rows): each panel's `rows` weights per k
    contiguous, zero rows past M and zero k past K."""
    m, k = w2.shape
    m_panels, k_blocks = -(-m // rows), -(-k // kc_max)
    padded = np.zeros((m_panels * rows, k_blocks * kc_max), np.float32)
    padded[:m, :k] = w2
    return np.ascontiguousarray(padded.reshape(m_panels, rows, k_blocks, kc_max).transpose(2, 0, 3, 1))


def _efficiency(used_pixels, pixels, pixel_step, m, m_step) -> float:
    """The share of a layout's multiply-adds that make output: pixels and channels are
    computed in whole steps (panels), and the padded width's extra columns are dropped."""
    return used_pixels / (-(-pixels // pixel_step) * pixel_step) * m / (-(-m // m_step) * m_step)


LAYOUT = None   # "pixels" or "channels" to force one (experiments, tests); None: by efficiency


class DirectConv:
    """run(x, w, bias, y, extras) for one Conv's shapes; `weights` given (a static W) packs
    it now. With an `epilogue` (ops/fused_conv.py: one whose inputs all fit its GEMM form),
    y gets the epilogue of the convolution and `extras`, applied as each block is copied
    out; the bias is then part of the epilogue, not an argument.

    Two layouts of the micro-kernel's block: NR pixels in the vectors and MR output
    channels broadcast, or (by_channels) MR pixels broadcast and NR channels in the
    vectors. Both compute whole panels; on small images the first wastes much of its last
    panel per image (6x6 at a padded width of 10: 60 columns in 96), so the second is taken
    where it wastes markedly less. Where the two are close (13x13: 195 columns in 240
    against 198), the first measured faster."""

    def __init__(self, n, c, in_hw, m, kernel, out, begin, end, strides, dilations, has_bias, weights=None,
                 epilogue=None):
        (h, w), (kh, kw), (oh, ow) = in_hw, kernel, out
        (ph, pw), (sh, sw), (dh, dw) = begin, strides, dilations
        # the padded input's stride phases, each hq x wq (one with stride 1); the output is
        # computed at their width
        hq, wq = -(-(h + begin[0] + end[0]) // sh), -(-(w + begin[1] + end[1]) // sw)
        wp = wq
        k = c * kh * kw
        self.by_channels = LAYOUT == "channels" or LAYOUT is None and _layout(oh, ow, wq, m)[0]
        self.tile = tile = microkernel.host_tile(by_channels=self.by_channels)
        self.m, self.k, self.kc = m, k, min(k, KC_BY_CHANNELS if self.by_channels else KC)
        pixel_step = tile.rows if self.by_channels else tile.cols
        # each image's padded planes, then room for the dropped columns' reads past them
        stride = -(-(c * sh * sw * hq * wq + (kw - 1) * dw + pixel_step) // 16) * 16
        self.pad_dims = (n, c, h, w, hq, wq, ph, pw, sh, sw, stride)
        self.xpad_size = n * stride
        # tap (c, a, b) of output (i, j) reads padded (i sh + a dh, j sw + b dw): phase
        # (a dh % sh, b dw % sw) at (i + a dh // sh, j + b dw // sw)
        cc, a, b = np.meshgrid(np.arange(c), np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
        phase = (a % sh) * sw + b % sw
        self.offs = ((cc * sh * sw + phase) * hq * wq + (a // sh) * wq + b // sw).reshape(-1).astype(np.int64)
        parts = jit.max_threads()
        pixel_panels = -(-oh * wp // pixel_step)
        if self.by_channels:
            c_panels = -(-m // tile.cols)
            # a group of pixel panels shares each weight panel while it is in L1; the
            # group's block of C (group x MR x NR floats) stays within 48 KiB
            groups = -(-pixel_panels // max(1, 12288 // (tile.rows * tile.cols)))
            while groups < pixel_panels and n * groups * c_panels < 4 * parts:   # work for every thread
                groups += 1
            group = -(-pixel_panels // groups)   # groups of (nearly) equal size
            self.dims = (n, m, k, self.kc, pixel_panels, stride, -(-pixel_panels // group), group, oh, ow, wp)
            self.block_shape = (group * tile.rows * tile.cols,)
            packed_rows = tile.cols
        else:
            m_panels = -(-m // tile.rows)
            # share out the output channels too when there are fewer than 4 panels per thread
            m_split = 1
            while n * pixel_panels * m_split < 4 * parts and m_panels >= 2 * m_split:
                m_split *= 2
            m_step = -(-m_panels // m_split) * tile.rows
            self.dims = (n, m, k, self.kc, pixel_panels, stride, m_split, m_step, GROUP, oh, ow, wp)
            self.block_shape = (m_panels * tile.rows, GROUP * tile.cols)
            packed_rows = tile.rows
        self.packed_rows = packed_rows
        self.packed = None if weights is None else \
            _pack(np.asarray(weights, np.float32).reshape(m, k), packed_rows, self.kc)
        self.zero_bias = np.zeros(m, np.float32)
        self.epilogue = epilogue
        if epilogue is None:
            self.source = render_direct_conv(tile, blas.threaded(), has_bias, by_channels=self.by_channels)
        else:
            self.source = render_direct_conv(tile, blas.threaded(), False, epilogue.program,
                                             epilogue.product_at, epilogue.patterns, by_channels=self.by_channels)
        self._kernels = None

    def __call__(self, x, w, bias, y, extras=()):
        if self._kernels is None:
            self._kernels = (codecache.load("direct_conv_pad", render_pad(blas.threaded()), attr="pad"),
                             codecache.load("direct_conv", self.source))
        pad, kernel = self._kernels
        packed = self.packed if self.packed is not None else \
            _pack(np.asarray(w, np.float32).reshape(self.m, self.k), self.packed_rows, self.kc)
        parts = numba.get_num_threads()
        blocks = scratch("direct_conv_blocks", parts * int(np.prod(self.block_shape)),
                         np.float32).reshape(parts, *self.block_shape)
        xpad = scratch("direct_conv_input", self.xpad_size, np.float32)
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
