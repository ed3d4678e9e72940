"""Stride-1 MaxPool and AveragePool whose output is the input's size (the pads add up to the
kernel less one in each dim: Inception's 3x3 pools with pads of 1), as two separable passes
over flat runs of whole planes.

The phase-plane path (pooling.py) copies every plane into a padded scratch plane and then
reads it once per tap; at stride 1 neither the copy nor most of the reads are needed. Here
each plane is taken as one flat array: the row pass combines each element with its row
neighbours (h[t] = x[t - pl] ... x[t - pl + kw - 1]), the column pass each row-pass value
with those above and below (y[t] = h[t - pt*W] ... h[t + pb*W]), each one loop over the
plane at unit stride that LLVM vectorizes. The row pass writes into a scratch plane with
the pads' rows above and below, filled once with a value that changes nothing (-inf, 0),
so the column pass needs no special rows; where a window runs off its row, the flat row
pass has read the row before or after: those columns (the pads' reach, 2 a row for 3x3)
are computed again from their own row.

MaxPool keeps the generic loop's bits: every value goes through `v if v > best else best`
from -inf, the taps of a row in order, then the rows in order, which picks the same element
as the row-major order of all taps (the first maximum; NaN never; of 0.0 and -0.0 the
first). AveragePool sums in the input's precision, as ONNX Runtime does, row then column,
times 1/count: its last bits can differ from the generic loop's float64 sums.
"""
from __future__ import annotations

import numpy as np

from ..codegen.cpu.threads import run_parts
from ..jit import numba   # imported when the first kernel is (jit.py)
from ..kernel_cache import njit
from . import blas

RUNS_PER_THREAD = 4   # the planes are cut into this many runs a thread; each run has its scratch plane


def applicable(dims_2d, kernel, strides, begin, dilations, out) -> bool:
    """Stride 1, no dilation, and the output the input's size."""
    return all(s == 1 for s in strides) and all(d == 1 for d in dilations) and list(out) == list(dims_2d) \
        and all(0 <= b < k for b, k in zip(begin, kernel))


def plan(avg: bool, dtype, nc: int, dims_2d, kernel, begin, inv_count):
    """run(x_flat, y_flat) for one plan; inv_count: 1/count per output pixel (AveragePool)."""
    (H, W), (kh, kw), (pt, pl) = dims_2d, kernel, begin
    runs = max(1, min(nc, RUNS_PER_THREAD * numba.get_num_threads())) if blas.threaded() else 1
    # one padded scratch plane per run, one after the other: the pad rows keep the fill
    h = np.full(runs * (H + kh - 1) * W, 0.0 if avg else -np.inf, dtype)
    inv = np.asarray(inv_count if avg else np.ones(1), dtype)
    dims = (nc, H, W, kh, kw, pt, pl, runs, int(avg))
    return lambda x, y: _same_planes(x, y, h, inv, dims)


# The kernels index flat arrays at offsets, cast to unsigned so that Numba drops its
# negative-index wraparound, rather than taking slices: each slice is a new array whose
# reference count is bumped and dropped atomically, on the same counters from both threads.

@njit(nogil=True, error_model="numpy")
def _row_pass(x, xb, h, hb, n, W, kw, pl, avg):
    """h[hb + t] = the row window of the plane x[xb:xb + n] around t, t < n: a flat loop,
    then the columns whose window leaves the row again, from the row alone."""
    lowest = h.dtype.type(-np.inf)
    init = h.dtype.type(0.0) if avg else lowest
    lo, hi = pl, n - (kw - 1 - pl)   # flat positions whose taps all lie inside the plane
    if kw == 3 and hi > lo:
        s, d = xb + lo - pl, hb + lo
        for t in range(hi - lo):
            a, b, c = x[np.uint64(s + t)], x[np.uint64(s + t + 1)], x[np.uint64(s + t + 2)]
            if avg:
                h[np.uint64(d + t)] = a + b + c
            else:
                best = a if a > lowest else lowest   # selects (maxps), no branches
                best = b if b > best else best
                h[np.uint64(d + t)] = c if c > best else best
    elif hi > lo:
        for t in range(hi - lo):
            h[np.uint64(hb + lo + t)] = init
        for b_ in range(kw):
            s, d = xb + lo + b_ - pl, hb + lo
            for t in range(hi - lo):
                v, best = x[np.uint64(s + t)], h[np.uint64(d + t)]
                h[np.uint64(d + t)] = best + v if avg else (v if v > best else best)
    if kw == 3 and pl == 1 and W >= 2:   # the first and last columns: two taps each
        for r in range(n // W):
            s, d = xb + r * W, hb + r * W
            a, b = x[np.uint64(s)], x[np.uint64(s + 1)]
            c, e = x[np.uint64(s + W - 2)], x[np.uint64(s + W - 1)]
            if avg:
                h[np.uint64(d)], h[np.uint64(d + W - 1)] = a + b, c + e
            else:
                best = a if a > lowest else lowest
                h[np.uint64(d)] = b if b > best else best
                best = c if c > lowest else lowest
                h[np.uint64(d + W - 1)] = e if e > best else best
        return
    left, right = min(pl, W), max(min(pl, W), W - (kw - 1 - pl))
    for j in range(W):
        if left <= j < right:
            continue
        first, end = max(0, pl - j), min(kw, W + pl - j)
        for r in range(n // W):
            best = init
            for b_ in range(first, end):
                v = x[np.uint64(xb + r * W + j + b_ - pl)]
                best = best + v if avg else (v if v > best else best)
            h[np.uint64(hb + r * W + j)] = best


@njit(nogil=True, error_model="numpy")
def _column_pass(h, hb, y, yb, inv, n, W, kh, avg):
    """y[yb + t] = the column window of the padded row-pass plane at h[hb] around t, t < n
    (times 1/count)."""
    lowest = y.dtype.type(-np.inf)
    if kh == 3:
        for t in range(n):
            a, b, c = h[np.uint64(hb + t)], h[np.uint64(hb + W + t)], h[np.uint64(hb + 2 * W + t)]
            if avg:
                y[np.uint64(yb + t)] = (a + b + c) * inv[np.uint64(t)]
            else:
                best = a if a > lowest else lowest
                best = b if b > best else best
                y[np.uint64(yb + t)] = c if c > best else best
        return
    for t in range(n):
        y[np.uint64(yb + t)] = 0.0 if avg else lowest
    for a_ in range(kh):
        s = hb + a_ * W
        for t in range(n):
            v, best = h[np.uint64(s + t)], y[np.uint64(yb + t)]
            y[np.uint64(yb + t)] = best + v if avg else (v if v > best else best)
    if avg:
        for t in range(n):
            y[np.uint64(yb + t)] *= inv[np.uint64(t)]


@njit(nogil=True, error_model="numpy")
def _same_run(part, x, y, h, inv, dims):
    """Run `part`'s share of the NC planes, a plane at a time."""
    NC, H, W, kh, kw, pt, pl, parts, avg = dims
    plane = H * W
    hb = part * (H + kh - 1) * W   # this run's padded scratch plane
    for p in range(part * NC // parts, (part + 1) * NC // parts):
        _row_pass(x, p * plane, h, hb + pt * W, plane, W, kw, pl, avg)
        _column_pass(h, hb, y, p * plane, inv, plane, W, kh, avg)


@blas.threaded_njit
def _same_planes(x, y, h, inv, dims):
    run_parts(_same_run, dims[7], (x, y, h, inv, dims))
