"""float32 convolutions as an implicit GEMM on our own micro-kernel: no im2col.

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
of K (in blocks of KC rows, A's block staying in L2), then
copies the group's valid columns into the output with the bias added while they are in
cache. Weights are packed once per plan (or per call when W is an input).

Outputs of at most CHANNEL_PIXELS pixels an image (32x32 and smaller) take ChannelConv
instead: the output channels in the vectors, each of MR output pixels broadcast from its own
input address (codegen/cpu/channel_conv.py), so no column past an output row is computed
(at 13x13 the scheme above computes 208 columns for 169 outputs). One Conv at a time, both
kernels in one process taking turns: 0.82-0.94x on 3x3 layers at 7x7 to 14x14 of 16 to 512
channels, 0.83-0.92x on 3x3 and 5x5 ones at 27x27 and 28x28; 0.96-1.04x at 55x55 and 56x56
(so not there).

Strides up to 4 work the same way on the input split into stride phases (pad() writes
padded element (r, q) into phase (r % sh, q % sw) at (r // sh, q // sw)): for a tap, the
outputs of a row still read consecutive floats of one phase.

When (worthwhile): 3x3 and wider kernels, not where Winograd does fewer multiplications on
128 channels or more, nor where a sum has under 48 terms or most of a panel per image would
be wasted; 1x1 convolutions only where the batch's output is 32x32 or less (ChannelConv),
else they stay one GEMM on the BLAS. Measured one Conv+ReLU at a time against the
path before on the 2-core AMD EPYC, and in whole models (docs/performance.md): 0.6-0.9x
alone, 0.85-1.0x of the summed kernel times of the CNNs.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import codecache, jit
from ..jit import numba   # imported when the first kernel is (jit.py)
from ..codegen.cpu import microkernel
from ..codegen.cpu.channel_conv import render_channel_conv
from ..codegen.cpu.direct_conv import render_direct_conv, render_pad
from . import blas, winograd
from .scratch import scratch

KC = 256      # rows of K per block: A's block (M x KC) stays in L2 (512: no clear difference)
GROUP = 4     # panels computed together into a thread's block of C
ENABLED = os.environ.get("ORTJIT_DIRECT_CONV", "1") != "0"
FORCED = False   # tests: take every convolution `applicable` allows
CHANNELS = os.environ.get("ORTJIT_CHANNEL_CONV", "1") != "0"
CHANNEL_PIXELS = 1024   # outputs of 32x32 and smaller: ChannelConv
FORCED_CHANNELS = None   # tests: True or False picks the kernel everywhere
WINOGRAD_SMALL_BELOW = 256   # channels: see worthwhile()
ONE_BY_ONE = os.environ.get("ORTJIT_CHANNEL_CONV_1X1", "1") != "0"   # 1x1 convs on ChannelConv where small


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
    if FORCED:
        return True
    if int(np.prod(kernel)) == 1:
        # 1x1: one GEMM (OpenBLAS pieces with the fused loop), except where the batch's output
        # is small and the sum long enough: ChannelConv then reads the input in place (no
        # padding, no packing of B). Whole models, both paths in one process taking turns,
        # medians of paired rounds (docs/performance.md): ResNet-50 b1 0.97x, b8 0.98x,
        # Inception v1 b1 0.95x, b8 0.98x, v2 b1 0.96x, SqueezeNet b1 0.98x, DenseNet-121
        # b1 0.94x, b8 1.00x. With every image of 32x32 or less on ChannelConv whatever the
        # batch, ResNet-50 b8 took 1.03x: one GEMM for all eight images does better there.
        # Direct (pixels in the lanes) lost at 14x14 and 7x7 (1.05-1.43x), as it did with B
        # packed per thread on ResNet-50's larger 1x1 layers (1.14-1.60x).
        return ONE_BY_ONE and CHANNELS and n * int(np.prod(out)) <= CHANNEL_PIXELS and c >= 48
    winograd_case = list(kernel) == [3, 3] and list(strides) == list(dilations) == [1, 1] and \
        winograd.worthwhile(n, c, m, out)
    # Winograd's transformed weights are 16/9 of the weights: where few output pixels share
    # them (7x7 at batch 1), streaming them from memory is the cost. Chains of 3x3 convs at
    # 7x7 (weights far past the caches), against Winograd: 192 channels 12.7-15.6 ms
    # against 21.1-23.4, 512 channels 18.0-20.3 against 29.6-30.0 (ONNX Runtime 17.3-18.6);
    # at 14x14 (128 channels) no clear winner, Winograd kept
    # At batch 1 and 32x32 or less, below 256 channels, ChannelConv beat Winograd layer by
    # layer (both in one process taking turns): Inception v2's 128-192 channels at 14x14
    # 0.72-0.93x, ResNet-50's 128 at 28x28 0.95x; 256 at 14x14 0.96-1.04x (kept on Winograd)
    small = c < WINOGRAD_SMALL_BELOW and n * int(np.prod(out)) <= CHANNEL_PIXELS
    if winograd_case and c >= 128 and m >= 64 and n * int(np.prod(out)) > 128 and not small:
        return False
    if c * int(np.prod(kernel)) < 48:
        # a short sum per output (SqueezeNet's first layer: 3 channels of 3x3, 27 terms)
        # leaves each block's stores and copy-out to dominate: 1.09x of im2col there
        return False
    # the width the output is computed at: its own plus the window's reach in the phase
    oh, ow = ([1] + list(out))[-2:]
    reach = (list(kernel)[-1] - 1) * list(dilations)[-1]
    wq = ow + -(-reach // list(strides)[-1])
    # where most of the last panel of each image would be wasted, im2col's GEMM does better
    # (13x13 at full panels: 195 columns of 240, 1.04-1.14x of im2col inside SqueezeNet; the
    # last panel now runs only the vectors it needs, 208 columns, about even with im2col)
    return _efficiency(oh, ow, wq, m) >= 0.72


def kernel_for(out: list) -> type:
    """ChannelConv for outputs of CHANNEL_PIXELS pixels an image at most, DirectConv
    otherwise (FORCED_CHANNELS: tests, ChannelConv always)."""
    if FORCED_CHANNELS is not None:
        return ChannelConv if FORCED_CHANNELS else DirectConv
    return ChannelConv if CHANNELS and int(np.prod(out)) <= CHANNEL_PIXELS else DirectConv


def _efficiency(oh: int, ow: int, wq: int, m: int) -> float:
    """The share of the multiply-adds that make output: pixels are computed in whole panels
    of NR at the padded width wq (its extra columns dropped), channels in panels of MR."""
    tile = microkernel.host_tile()
    span = (oh - 1) * wq + ow   # the last panel runs only the vectors that reach its last pixel
    used, computed = oh * ow, span // tile.cols * tile.cols + -(-(span % tile.cols) // tile.lanes) * tile.lanes
    return used / computed * m / (-(-m // tile.rows) * tile.rows)


def flat_images(y: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """(a 1-D float32 array, the elements from one image's start to the next's, whether the
    array is y's memory) for a kernel writing y[img] at img * stride: y's own memory where
    each image is contiguous, though the images may lie apart (the plan gives a Concat's
    part, at batch > 1, the view of its channels in the Concat's output: see
    plan._concat_views); else a new array, which the caller copies into y."""
    per_image = math.prod(y.shape[1:])   # not np.prod: a call of its own costs 2-3 us
    if y.flags.c_contiguous:
        return y.reshape(-1), per_image, True
    if y.dtype == np.float32 and len(y) and y[0].flags.c_contiguous and y.strides[0] > 0 and \
            y.strides[0] % y.itemsize == 0:
        stride = y.strides[0] // y.itemsize
        span = (len(y) - 1) * stride + per_image
        return np.lib.stride_tricks.as_strided(y, (span,), (y.itemsize,)), stride, True
    return np.empty(y.size, np.float32), per_image, False


def _pack(w2: np.ndarray, rows: int, kc_max: int) -> np.ndarray:
    """W as (M, K) -> (K blocks, M panels, kc_max, rows): each panel's `rows` weights per k
    contiguous, zero rows past M and zero k past K."""
    m, k = w2.shape
    m_panels, k_blocks = -(-m // rows), -(-k // kc_max)
    packed = np.zeros((k_blocks, m_panels, kc_max, rows), np.float32)
    full = m // rows
    # a 3-D transposed copy per block of K: 1.5-7x the speed of one 4-D one (its innermost
    # dim read `rows` apart), which took 13 ms of Inception v1's session start
    for kb in range(k_blocks):
        k0, k1 = kb * kc_max, min(k, (kb + 1) * kc_max)
        packed[kb, :full, :k1 - k0] = w2[:full * rows, k0:k1].reshape(full, rows, k1 - k0).transpose(0, 2, 1)
        if full < m_panels:
            packed[kb, full, :k1 - k0, :m - full * rows] = w2[full * rows:, k0:k1].T
    return packed


class DirectConv:
    """run(x, w, bias, y, extras) for one Conv's shapes; `weights` given (a static W) packs
    it now. With an `epilogue` (ops/fused_conv.py: one whose inputs all fit its GEMM form),
    y gets the epilogue of the convolution and `extras`, applied as each block is copied
    out; the bias is then part of the epilogue, not an argument."""

    def __init__(self, n, c, in_hw, m, kernel, out, begin, end, strides, dilations, has_bias, weights=None,
                 epilogue=None):
        oh, ow = out
        tile, wq = self._geometry(n, c, in_hw, m, kernel, begin, end, strides, dilations)
        panels = -(-oh * wq // tile.cols)
        m_panels = -(-m // tile.rows)
        # share out the output channels too when there are fewer than 4 panels per thread
        m_split, parts = 1, jit.max_threads()
        while n * panels * m_split < 4 * parts and m_panels >= 2 * m_split:
            m_split *= 2
        m_step = -(-m_panels // m_split) * tile.rows
        self.dims = (n, m, self.k, self.kc, panels, self.pad_dims[-1], m_split, m_step, GROUP, oh, ow, wq)
        self.block_shape = (m_panels * tile.rows, GROUP * tile.cols)
        self._finish(render_direct_conv, weights, has_bias, epilogue)

    def _finish(self, render, weights, has_bias, epilogue) -> None:
        """What both kernels set last: the packed weights (a static W), the source (`render`
        with the bias or the epilogue's program), the kernel loaded at the first call."""
        self.packed = None if weights is None else self._pack(weights)
        self.zero_bias = np.zeros(self.m, np.float32)
        self.epilogue = epilogue
        if epilogue is None:
            self.source = render(self.tile, blas.threaded(), has_bias)
        else:
            self.source = render(self.tile, blas.threaded(), False, epilogue.program, epilogue.product_at,
                                 epilogue.patterns)
        self._kernel = self._pad = None

    def _geometry(self, n, c, in_hw, m, kernel, begin, end, strides, dilations):
        """Sets what both kernels share (the padded input, the taps' offsets); returns the
        host's tile and the phase planes' width wq, at which output (i, j) sits at i wq + j."""
        (h, w), (kh, kw) = in_hw, kernel
        (ph, pw), (sh, sw), (dh, dw) = begin, strides, dilations
        self.tile = tile = microkernel.host_tile()
        # the padded input's stride phases, each hq x wq (one with stride 1)
        hq, wq = -(-(h + begin[0] + end[0]) // sh), -(-(w + begin[1] + end[1]) // sw)
        k = c * kh * kw
        self.m, self.k, self.kc = m, k, min(k, KC)
        # each image's padded planes, then room for the dropped columns' reads past them
        stride = -(-(c * sh * sw * hq * wq + (kw - 1) * dw + tile.cols) // 16) * 16
        self.pad_dims = (n, c, h, w, hq, wq, ph, pw, sh, sw, stride)
        # tap (c, a, b) of output (i, j) reads padded (i sh + a dh, j sw + b dw): phase
        # (a dh % sh, b dw % sw) at (i + a dh // sh, j + b dw // sw)
        cc, a, b = np.meshgrid(np.arange(c), np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
        phase = (a % sh) * sw + b % sw
        self.offs = ((cc * sh * sw + phase) * hq * wq + (a // sh) * wq + b // sw).reshape(-1).astype(np.int64)
        return tile, wq

    def _pack(self, w):
        return _pack(np.asarray(w, np.float32).reshape(self.m, self.k), self.tile.rows, self.kc)

    def _load(self, name: str):
        if self._kernel is None:
            self._kernel = codecache.load(name, self.source)

    def _padded(self, x, w):
        """(the packed weights, the padded input)."""
        if self._pad is None:
            self._pad = codecache.load("direct_conv_pad", render_pad(blas.threaded()), attr="pad")
        packed = self.packed if self.packed is not None else self._pack(w)
        xpad = scratch("direct_conv_input", self.pad_dims[0] * self.pad_dims[-1], np.float32)
        self._pad(np.ascontiguousarray(x).reshape(-1), xpad, self.pad_dims)
        return packed, xpad

    def _epilogue_inputs(self, extras):
        if self.epilogue is None:
            return []
        self.epilogue.direct_calls += 1
        return [e.reshape(-1) for e in self.epilogue.gemm_inputs(extras)]

    def __call__(self, x, w, bias, y, extras=()):
        self._load("direct_conv")
        packed, xpad = self._padded(x, w)
        parts = numba.get_num_threads()
        blocks = scratch("direct_conv_blocks", parts * math.prod(self.block_shape),
                         np.float32).reshape(parts, *self.block_shape)
        out, y_image, into_y = flat_images(y)
        ins = self._epilogue_inputs(extras)
        self._kernel(xpad, packed, self.offs, blocks,
                     self.zero_bias if bias is None else bias.astype(np.float32, copy=False),
                     out, self.dims + (y_image,), *ins)
        if not into_y:
            y[...] = out.reshape(y.shape)


class ChannelConv(DirectConv):
    """A direct convolution with the output channels in the vectors (codegen/cpu/
    channel_conv.py): for small outputs, where DirectConv's pixel vectors at the padded
    width compute columns that are dropped (208 for 169 outputs at 13x13). Same arguments,
    same padded input and taps."""

    def __init__(self, n, c, in_hw, m, kernel, out, begin, end, strides, dilations, has_bias, weights=None,
                 epilogue=None):
        oh, ow = out
        tile, wq = self._geometry(n, c, in_hw, m, kernel, begin, end, strides, dilations)
        p, stride = oh * ow, self.pad_dims[-1]
        pixel_blocks = -(-n * p // tile.rows)
        q = np.minimum(np.arange(pixel_blocks * tile.rows), n * p - 1)   # the last block's spare rows: any pixel
        img, at = q // p, q % p
        self.where = np.ascontiguousarray(np.stack([img, at], axis=1).astype(np.int64))
        self.rows = (img * stride + (at // ow) * wq + at % ow).astype(np.int64)
        # unpadded: the taps read the input where it lies, with no padded copy (which
        # would be the whole input once more): each pixel's address is in `rows` and each
        # tap's offset in `offs`, any stride, and the reads go nowhere else
        self.in_place = not any(begin) and not any(end)
        if self.in_place:
            (h, w), (sh, sw), (dh, dw) = in_hw, strides, dilations
            self.rows = (img * c * h * w + (at // ow) * sh * w + (at % ow) * sw).astype(np.int64)
            cc, a, b = np.meshgrid(np.arange(c), np.arange(kernel[0]) * dh, np.arange(kernel[1]) * dw, indexing="ij")
            self.offs = (cc * h * w + a * w + b).reshape(-1).astype(np.int64)
        self.dims = (n, m, self.k, self.kc, p, pixel_blocks, -(-m // tile.cols))
        self._finish(render_channel_conv, weights, has_bias, epilogue)

    def _pack(self, w):
        return _pack(np.asarray(w, np.float32).reshape(self.m, self.k), self.tile.cols, self.kc)

    def __call__(self, x, w, bias, y, extras=()):
        self._load("channel_conv")
        if self.in_place:
            packed = self.packed if self.packed is not None else self._pack(w)
            xpad = np.ascontiguousarray(x, np.float32).reshape(-1)
        else:
            packed, xpad = self._padded(x, w)
        parts = numba.get_num_threads()
        blocks = scratch("direct_conv_blocks", parts * self.tile.rows * self.tile.cols,
                         np.float32).reshape(parts, self.tile.rows, self.tile.cols)
        out, y_image, into_y = flat_images(y)
        ins = self._epilogue_inputs(extras)
        self._kernel(xpad, packed, self.offs, self.rows, self.where, blocks,
                     self.zero_bias if bias is None else bias.astype(np.float32, copy=False),
                     out, self.dims + (y_image,), *ins)
        if not into_y:
            y[...] = out.reshape(y.shape)
