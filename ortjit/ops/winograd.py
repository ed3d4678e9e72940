"""Winograd F(2x2, 3x3) for Conv: 3x3 kernels, stride 1, no dilation, one group.

im2col + GEMM spends 9 multiply-adds per output and input channel pair; Winograd's minimal
filtering (Lavin and Gray, 2015) gets each 2x2 output tile from a 4x4 input tile with 16,
a 2.25x cut in the arithmetic that dominates CNNs such as VGG, ResNet and DenseNet.

    U = G g G^T      per (output, input channel) pair: 3x3 weights -> 4x4, once per plan
    V = B^T d B      per input tile and channel: 4x4 -> 4x4 (only adds)
    M[k] = U[k] @ V[k]   16 GEMMs (M x C) @ (C x tiles), through numpy's BLAS, all images at once
    Y = A^T m A      per output tile: 4x4 -> 2x2 (only adds), plus the bias

Tiles run over the zero-padded input (shared scratch, zeroed on each call);
the last row and column of tiles may stick out past the output and are cropped. The
transforms' coefficients are 0, +-1 and +-1/2, so float32 results stay within a few ulp
of the direct sum's (the tests compare with onnx.reference at rtol 1e-4).
"""
from __future__ import annotations

import os

import numpy as np

from ..codegen.cpu.threads import run_parts
from ..kernel_cache import njit
from . import blas
from .scratch import scratch

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def transform_weights(w: np.ndarray, dtype) -> np.ndarray:
    """(M, C, 3, 3) -> U (16, M, C), in dtype (the coefficients are halves: exact but for the
    sums' rounding): U[ab] = sum over ij of G[a, i] G[b, j] g[ij], one product of the 16 x 9
    coefficient matrix with all (M, C) kernels at once: 4 ms for 512 x 512 kernels, where an
    einsum per output channel took 64 ms (0.2 s of ResNet-50's first run)."""
    m, c = w.shape[:2]
    g = _G.astype(dtype)
    coefficients = np.einsum("ai,bj->abij", g, g).reshape(16, 9)
    return (coefficients @ w.astype(dtype, copy=False).reshape(m * c, 9).T).reshape(16, m, c)


@njit(nogil=True, error_model="numpy")
def _input_tiles_of(nc, x, xp, v, dims):
    """Image-channel nc's tiles (see _input_tiles)."""
    N, C, H, W, Hp, Wp, ph, pw, th, tw, plane = dims
    T = N * th * tw
    plane = np.uint64(plane)
    zero = xp.dtype.type(0)
    n, c = nc // C, nc % C
    for r in range(Hp):
        row = np.uint64((nc * Hp + r) * Wp)
        if ph <= r < ph + H:
            src = np.uint64((nc * H + r - ph) * W)
            for k in range(pw):
                xp[row + np.uint64(k)] = zero
            for k in range(W):
                xp[row + np.uint64(pw + k)] = x[src + np.uint64(k)]
            for k in range(pw + W, Wp):
                xp[row + np.uint64(k)] = zero
        else:
            for k in range(Wp):
                xp[row + np.uint64(k)] = zero
    base = (n * C + c) * Hp * Wp
    out = np.uint64(c * T + n * th * tw)
    for i in range(th):
        r0 = base + 2 * i * Wp
        for j in range(tw):
            p = np.uint64(r0 + 2 * j)
            w_ = np.uint64(Wp)
            d00, d01, d02, d03 = xp[p], xp[p + 1], xp[p + 2], xp[p + 3]
            p += w_
            d10, d11, d12, d13 = xp[p], xp[p + 1], xp[p + 2], xp[p + 3]
            p += w_
            d20, d21, d22, d23 = xp[p], xp[p + 1], xp[p + 2], xp[p + 3]
            p += w_
            d30, d31, d32, d33 = xp[p], xp[p + 1], xp[p + 2], xp[p + 3]
            # rows: B^T d
            a0, a1, a2, a3 = d00 - d20, d01 - d21, d02 - d22, d03 - d23
            b0, b1, b2, b3 = d10 + d20, d11 + d21, d12 + d22, d13 + d23
            c0, c1, c2, c3 = d20 - d10, d21 - d11, d22 - d12, d23 - d13
            e0, e1, e2, e3 = d10 - d30, d11 - d31, d12 - d32, d13 - d33
            # columns: (B^T d) B
            q = out + np.uint64(i * tw + j)
            v[q] = a0 - a2
            v[q + plane] = a1 + a2
            v[q + 2 * plane] = a2 - a1
            v[q + 3 * plane] = a1 - a3
            v[q + 4 * plane] = b0 - b2
            v[q + 5 * plane] = b1 + b2
            v[q + 6 * plane] = b2 - b1
            v[q + 7 * plane] = b1 - b3
            v[q + 8 * plane] = c0 - c2
            v[q + 9 * plane] = c1 + c2
            v[q + 10 * plane] = c2 - c1
            v[q + 11 * plane] = c1 - c3
            v[q + 12 * plane] = e0 - e2
            v[q + 13 * plane] = e1 + e2
            v[q + 14 * plane] = e2 - e1
            v[q + 15 * plane] = e1 - e3


@blas.threaded_njit
def _input_tiles(x, xp, v, dims):
    """x: (N, C, H, W) flattened; xp: (N, C, Hp, Wp) scratch, filled here: x's plane inside
    zeros (the pads); v: 16 planes of (C, N * th * tw), `plane` elements apart. Each thread
    pads a channel and transforms it while it is in its cache. Unsigned indices: no
    negative-index wraparound."""
    run_parts(_input_tiles_of, dims[0] * dims[1], (x, xp, v, dims))


@njit(nogil=True, error_model="numpy")
def _output_tiles_of(no, m, bias, y, dims):
    """Image-channel no's outputs (see _output_tiles)."""
    N, M, oh, ow, th, tw, plane = dims
    T = N * th * tw
    plane = np.uint64(plane)
    n, o = no // M, no % M
    b = bias[o]
    src = np.uint64(o * T + n * th * tw)
    dst = (n * M + o) * oh * ow
    for i in range(th):
        for j in range(tw):
            q = src + np.uint64(i * tw + j)
            m00, m01, m02, m03 = m[q], m[q + plane], m[q + 2 * plane], m[q + 3 * plane]
            m10, m11, m12, m13 = m[q + 4 * plane], m[q + 5 * plane], m[q + 6 * plane], m[q + 7 * plane]
            m20, m21, m22, m23 = m[q + 8 * plane], m[q + 9 * plane], m[q + 10 * plane], m[q + 11 * plane]
            m30, m31, m32, m33 = m[q + 12 * plane], m[q + 13 * plane], m[q + 14 * plane], m[q + 15 * plane]
            # rows: A^T m
            s0, s1, s2, s3 = m00 + m10 + m20, m01 + m11 + m21, m02 + m12 + m22, m03 + m13 + m23
            t0, t1, t2, t3 = m10 - m20 - m30, m11 - m21 - m31, m12 - m22 - m32, m13 - m23 - m33
            r, c = 2 * i, 2 * j
            p = np.uint64(dst + r * ow + c)
            y[p] = s0 + s1 + s2 + b
            if c + 1 < ow:
                y[p + 1] = s1 - s2 - s3 + b
            if r + 1 < oh:
                y[p + np.uint64(ow)] = t0 + t1 + t2 + b
                if c + 1 < ow:
                    y[p + np.uint64(ow + 1)] = t1 - t2 - t3 + b


@blas.threaded_njit
def _output_tiles(m, bias, y, dims):
    """m: the GEMM results, 16 planes of (M, N * th * tw), `plane` elements apart; bias:
    (M,) (zeros when the node has none); y: (N, M, oh, ow) flattened."""
    run_parts(_output_tiles_of, dims[0] * dims[1], (m, bias, y, dims))


# ORTJIT_WINOGRAD=0 turns it off (every 3x3 convolution then runs as im2col + GEMM)
ENABLED = os.environ.get("ORTJIT_WINOGRAD", "1") != "0"


def worthwhile(n: int, c: int, m: int, out: list) -> bool:
    """Whether Winograd beats im2col + GEMM, from measurements on this 2-core AVX-512 machine
    (one-Conv models timed both ways): its 16 GEMMs have only C as their inner dimension and
    its transforms cost per channel. With the transforms and GEMMs on all threads
    (blas.threaded(), MKL) it took 0.52-0.82x im2col's time from 128 channels (ResNet, VGG
    shapes, 7x7 to 112x112), 0.70x at 64 channels of 56x56 and 0.90x at 96 of 28x28, but
    1.13x at 64 channels of 13x13 and 1.18x at 32 of 56x56. Serial, it won only from 128
    channels, and on large images where im2col's buffer (9 C H W floats) outgrows the caches
    by far (0.77x for 64 channels at 224x224)."""
    tiles = n * -(-out[0] // 2) * -(-out[1] // 2)
    im2col_bytes = 9 * c * out[0] * out[1] * 4
    if blas.threaded():   # threaded transforms: from 64 channels on images of 100+ tiles
        wide_enough = c >= 128 or (c >= 64 and tiles >= 100)
    else:
        wide_enough = c >= 128
    return ENABLED and ((wide_enough and m >= 32 and tiles >= 16) or (c >= 32 and im2col_bytes > 32 << 20))


def _planes(name: str, rows: int, cols: int, dtype):
    """16 (rows, cols) matrices in one scratch buffer (ortjit/ops/scratch.py), returned as
    (flat buffer, (16, rows, cols) view, plane stride). The planes start 256 bytes apart
    modulo 4 KiB: the transforms touch all 16 at once, and 16 streams a multiple of 4 KiB
    apart collide in the same L1 sets (measured: the input transform of a 64-channel 56x56
    image took 2.7 ms, 0.6 ms with this spacing)."""
    itemsize = np.dtype(dtype).itemsize
    plane = -(-rows * cols * itemsize // 4096) * 4096 // itemsize + 256 // itemsize
    flat = scratch(name, 16 * plane, dtype)
    view = np.lib.stride_tricks.as_strided(flat, (16, rows, cols), (plane * itemsize, cols * itemsize, itemsize))
    return flat, view, plane


def make(n, c, h, w_in, m, out, begin, dtype, static_w=None):
    """A run(x, w, bias, y) doing the whole Conv. A constant weight (static_w, the usual
    case) is transformed here, once; a weight fed at run time, at every call."""
    oh, ow = out
    th, tw = -(-oh // 2), -(-ow // 2)
    tiles = n * th * tw
    hp, wp = max(2 * th + 2, begin[0] + h), max(2 * tw + 2, begin[1] + w_in)
    zeros = np.zeros(m, dtype)
    fixed_u = None if static_w is None else transform_weights(static_w, dtype)

    def run(x, w, bias, y):
        u = fixed_u if fixed_u is not None else transform_weights(w, dtype)
        xp = scratch("winograd_padded", n * c * hp * wp, dtype)   # padded by _input_tiles
        v, v_mats, v_plane = _planes("winograd_tiles", c, tiles, dtype)
        mm, mm_mats, mm_plane = _planes("winograd_products", m, tiles, dtype)
        _input_tiles(np.ascontiguousarray(x, dtype).reshape(-1), xp, v,
                     (n, c, h, w_in, hp, wp, begin[0], begin[1], th, tw, v_plane))
        blas.matmul(u, v_mats, mm_mats)
        _output_tiles(mm, zeros if bias is None else bias.astype(dtype, copy=False), y.reshape(-1),
                      (n, m, oh, ow, th, tw, mm_plane))
    return run
