"""MaxPool, AveragePool, LpPool (one Numba loop over 3-D windows), and the global pools (numpy).

Pooling follows ONNX Runtime where the reference evaluator differs: SAME_LOWER puts the
extra pad first, LpPool sums |x|^p over the window (padding adds nothing).

1-D and 2-D float MaxPool (without Indices) and AveragePool take a vectorized fast path
(phase planes, below _pool), 5-8x faster: MaxPool gives the generic loop's bits,
AveragePool its sums, multiplied by 1/count where the loop divides by the count.
"""
from __future__ import annotations

import numpy as np

from ..jit import numba   # imported when the first kernel is (jit.py)
from ..kernel_cache import njit
from ..errors import NotImplemented
from ..codegen.cpu.threads import run_parts
from . import blas, pool_same
from .base import Info, Op, check_index_range
from .conv import compute_dtype, to_3d, window_geometry
from .registry import register

MAX, AVG_EXCLUDE_PAD, AVG_INCLUDE_PAD, LP = 0, 1, 2, 3
SAME_SIZE = True   # stride-1 pools of the input's size: pool_same.py's separable passes


def _taps(out, s, pad, n, pad_end, k, d):
    """Per output position along one dim: (first input coordinate, first and last+1 kernel
    taps inside the input, taps inside input + pads). Made once per plan, so that the
    kernel does no integer division per window."""
    t = np.empty((out, 4), np.int64)
    for o in range(out):
        start = o * s - pad
        lo = 0 if start >= 0 else min(k, -(start // d))
        hi = max(lo, min(k, (n - 1 - start) // d + 1)) if n - 1 - start >= 0 else lo
        t[o] = start, lo, hi, max(0, min(k, (n + pad_end - 1 - start) // d + 1))
    return t


@njit(cache=True, nogil=True, error_model="numpy")  # 0/0 -> nan, not an exception
def _pool(x, y, idx, kind, p, lowest, column_major, dims, dils, tz, ty, tx):
    """x: (NC, D, H, W) flattened -> y: (NC, od, oh, ow) flattened; tz, ty, tx: the _taps
    tables of the three dims; lowest: the lowest value of x's dtype. idx (y's size, or
    empty) receives MaxPool's argmax as a flat index into x. Indices are cast to unsigned
    so that Numba skips its negative-index wraparound in the inner loops."""
    NC, D, H, W = dims
    dd, dh, dw = dils
    od, oh, ow = tz.shape[0], ty.shape[0], tx.shape[0]
    want_idx = idx.size == y.size
    q = 0
    for nc in range(NC):
        xb = nc * D * H * W
        for i in range(od):
            z0, a_lo, a_hi, na = tz[i, 0], tz[i, 1], tz[i, 2], tz[i, 3]
            for j in range(oh):
                y0, b_lo, b_hi, nb = ty[j, 0], ty[j, 1], ty[j, 2], ty[j, 3]
                for k in range(ow):
                    x0, c_lo, c_hi, nc_ = tx[k, 0], tx[k, 1], tx[k, 2], tx[k, 3]
                    if kind == MAX and not want_idx:
                        best = lowest
                        for a in range(a_lo, a_hi):
                            for b in range(b_lo, b_hi):
                                row = xb + ((z0 + a * dd) * H + y0 + b * dh) * W + x0
                                for c in range(c_lo, c_hi):
                                    v = x[np.uint64(row + c * dw)]
                                    best = v if v > best else best  # a select, no branch
                        y[np.uint64(q)] = best
                    elif kind == MAX:
                        best = lowest
                        arg = -1
                        for a in range(a_lo, a_hi):
                            z = z0 + a * dd
                            for b in range(b_lo, b_hi):
                                yy = y0 + b * dh
                                row = xb + (z * H + yy) * W
                                for c in range(c_lo, c_hi):
                                    v = x[np.uint64(row + x0 + c * dw)]
                                    if v > best or arg < 0:
                                        best = v
                                        arg = (z * H + yy) * W + x0 + c * dw
                        y[np.uint64(q)] = best
                        if column_major and arg >= 0:  # (z, yy, xx) again, column-major
                            xx, zy = arg % W, arg // W
                            arg = zy // H + (zy % H + xx * H) * D
                        idx[np.uint64(q)] = xb + arg
                    else:
                        acc = 0.0
                        for a in range(a_lo, a_hi):
                            z = z0 + a * dd
                            for b in range(b_lo, b_hi):
                                row = xb + (z * H + y0 + b * dh) * W + x0
                                for c in range(c_lo, c_hi):
                                    v = x[np.uint64(row + c * dw)]
                                    acc += np.abs(v) ** p if kind == LP else v
                        if kind == LP:
                            y[np.uint64(q)] = acc ** (1.0 / p)
                        else:
                            count = na * nb * nc_ if kind == AVG_INCLUDE_PAD else \
                                (a_hi - a_lo) * (b_hi - b_lo) * (c_hi - c_lo)
                            y[np.uint64(q)] = acc / count if count else np.nan
                    q += 1


# ---------------------------------------------------------------- fast path (1-D/2-D, float)
#
# _pool's per-window tap ranges keep LLVM from vectorizing it. Here each (n, c) plane is
# first copied into a scratch buffer holding the padded plane split into sh * sw "phase
# planes": phase (p, q) holds padded element (r, c), r % sh == p and c % sw == q, at
# (r // sh, c // sw). Output (i, j)'s tap (a, b) is then element (i + a*dh // sh,
# j + b*dw // sw) of phase ((a*dh) % sh, (b*dw) % sw): every tap reads one phase plane at
# unit stride, whatever the strides. The outputs are accumulated with the phase planes' row
# pitch pw (columns j >= ow hold garbage and are not copied out), so that each tap is one
# long flat loop over the whole output plane, which LLVM vectorizes; loops over rows of 56
# outputs would leave half of the work to the scalar remainder loop.
#
# The padding is filled once per plan with a value that cannot change the result (-inf for
# max, 0 for average) and is never written again: the copies only write input elements.
# The windows may run past the end pad (ceil_mode): the planes cover that too. Behind the
# phase planes sits one block of the fill value, the tap that rounds the tap list up to
# whole groups of three (one pass over the accumulators per three taps). The scratch
# buffers belong to the plan, as all its buffers do: one plan runs one call at a time.


@njit(cache=True, nogil=True)
def _to_phase_planes(x, xb, xp, rows, cols, H, W, sw):
    """Copy plane x[xb : xb + H*W] into the phase planes xp. rows[r]: where input row r's
    row of phase q = 0 starts; cols[j]: the offset from there of input column j (j < sw),
    columns j + sw, j + 2*sw, ... following it at unit stride. Indices are cast to unsigned
    so that Numba skips its negative-index wraparound in the loops."""
    for r in range(H):
        src, dst = xb + r * W, rows[r]
        if sw == 1:
            d = dst + cols[0]
            for k in range(W):
                xp[np.uint64(d + k)] = x[np.uint64(src + k)]
        elif sw == 2:  # both phases in one loop: vector loads and shuffles rather than gathers
            da, db = dst + cols[0], dst + cols[1]
            for k in range(W // 2):
                xp[np.uint64(da + k)] = x[np.uint64(src + 2 * k)]
                xp[np.uint64(db + k)] = x[np.uint64(src + 2 * k + 1)]
            if W % 2:
                xp[np.uint64(da + W // 2)] = x[np.uint64(src + W - 1)]
        else:
            for j in range(min(sw, W)):
                d = dst + cols[j]
                for k in range((W - 1 - j) // sw + 1):
                    xp[np.uint64(d + k)] = x[np.uint64(src + j + k * sw)]


@njit(nogil=True, error_model="numpy")
def _max_pool_run(run, x, y, xp, acc, rows, cols, offsets, dims):
    """MaxPool of run `run`'s share of NC planes (H, W) -> (oh, ow). xp: (runs, phase
    planes) and acc: (runs, oh * pw accumulators), one row per run of planes (the threads
    take runs); offsets: each kernel tap's offset into xp, in row-major tap order, in
    groups of three.

    The same bits as _pool: each output visits its taps in the same order with the same
    `v if v > best else best` from -inf, so that of equal values (0.0 and -0.0) the first
    wins, and a NaN is never picked (a window of NaNs only gives -inf)."""
    NC, H, W, sw, oh, ow, pw = dims
    flat = oh * pw
    lowest = acc.dtype.type(-np.inf)
    runs = xp.shape[0]
    planes, best_of = xp[run], acc[run]
    for nc in range(run * NC // runs, (run + 1) * NC // runs):
        _to_phase_planes(x, nc * H * W, planes, rows, cols, H, W, sw)
        for g in range(0, offsets.size, 3):
            t0, t1, t2 = offsets[g], offsets[g + 1], offsets[g + 2]
            for t in range(flat):
                best = lowest if g == 0 else best_of[np.uint64(t)]  # no separate pass to reset
                v = planes[np.uint64(t0 + t)]
                best = v if v > best else best  # a select (maxps), no branch
                v = planes[np.uint64(t1 + t)]
                best = v if v > best else best
                v = planes[np.uint64(t2 + t)]
                best = v if v > best else best
                best_of[np.uint64(t)] = best
        for i in range(oh):
            o, a = (nc * oh + i) * ow, i * pw
            for j in range(ow):
                y[np.uint64(o + j)] = best_of[np.uint64(a + j)]


@blas.threaded_njit
def _max_pool_planes(x, y, xp, acc, rows, cols, offsets, dims):
    run_parts(_max_pool_run, xp.shape[0], (x, y, xp, acc, rows, cols, offsets, dims))


@njit(nogil=True, error_model="numpy")
def _avg_pool_run(run, x, y, xp, acc, rows, cols, offsets, inv_count, dims):
    """AveragePool, as _max_pool_run; xp and acc are float64, inv_count: 1 / (taps
    counted) per output (oh, ow).

    _pool's sums bit for bit: float64 from 0.0 in the same tap order, the padding's zeros
    adding nothing (the copy converts each input element to float64 once, rather than once
    per tap). Multiplying by 1/count (a division costs as much as all the sums) can round
    the last float64 bit differently from _pool's division. A window that counts no taps
    gives 0 * inf = NaN, as _pool's 0 / 0 does."""
    NC, H, W, sw, oh, ow, pw = dims
    flat = oh * pw
    runs = xp.shape[0]
    planes, sums = xp[run], acc[run]
    for nc in range(run * NC // runs, (run + 1) * NC // runs):
        _to_phase_planes(x, nc * H * W, planes, rows, cols, H, W, sw)
        for g in range(0, offsets.size, 3):
            t0, t1, t2 = offsets[g], offsets[g + 1], offsets[g + 2]
            for t in range(flat):
                total = 0.0 if g == 0 else sums[np.uint64(t)]
                total += planes[np.uint64(t0 + t)]
                total += planes[np.uint64(t1 + t)]
                total += planes[np.uint64(t2 + t)]
                sums[np.uint64(t)] = total
        for i in range(oh):
            o, a = (nc * oh + i) * ow, i * pw
            for j in range(ow):
                y[np.uint64(o + j)] = sums[np.uint64(a + j)] * inv_count[np.uint64(i * ow + j)]


@blas.threaded_njit
def _avg_pool_planes(x, y, xp, acc, rows, cols, offsets, inv_count, dims):
    run_parts(_avg_pool_run, xp.shape[0], (x, y, xp, acc, rows, cols, offsets, inv_count, dims))


def _phase_plan(kind, dtype, nc, in_2d, kernel, strides, begin, dilations, out, ty, tx):
    """The fast path's kernel f(x_flat, y_flat) for one plan, with its scratch buffers and
    tables. Geometry per dim as (rows, columns) (1-D: one row); ty, tx: the _taps tables."""
    (H, W), (kh, kw), (sh, sw), (pt, pl), (dh, dw), (oh, ow) = in_2d, kernel, strides, begin, dilations, out
    # phase-plane size: every input element and every tap's read of the valid outputs (pw);
    # one more row for the garbage columns' reads past the last output row
    pw = max(-(-(pl + W) // sw), ow + (kw - 1) * dw // sw)
    ph = max(-(-(pt + H) // sh), oh + (kh - 1) * dh // sh) + 1
    plane, flat = ph * pw, oh * pw
    fill_block = sh * sw * plane
    work = dtype if kind == MAX else np.dtype(np.float64)  # averages sum in float64, as _pool
    # one set of planes and accumulators per run of channels; runs are what the threads take
    runs = min(nc, 8 * numba.get_num_threads()) if blas.threaded() else 1
    xp = np.full((runs, fill_block + flat), -np.inf if kind == MAX else 0.0, work)
    acc = np.empty((runs, flat), work)
    rows = np.array([(r + pt) % sh * sw * plane + (r + pt) // sh * pw for r in range(H)], np.int64)
    cols = np.array([(j + pl) % sw * plane + (j + pl) // sw for j in range(sw)], np.int64)
    offsets = [((a * dh) % sh * sw + (b * dw) % sw) * plane + (a * dh) // sh * pw + (b * dw) // sw
               for a in range(kh) for b in range(kw)]
    offsets = np.array(offsets + [fill_block] * (-len(offsets) % 3), np.int64)
    dims = (nc, H, W, sw, oh, ow, pw)
    if kind == MAX:
        return lambda x, y: _max_pool_planes(x, y, xp, acc, rows, cols, offsets, dims)
    inv_count = _inv_count(kind, ty, tx)
    return lambda x, y: _avg_pool_planes(x, y, xp, acc, rows, cols, offsets, inv_count, dims)


def _inv_count(kind, ty, tx):
    """1 / (taps counted) per output (oh * ow), float64: per dim (see _taps) those inside the
    input, or (count_include_pad) inside input + pads, never ceil_mode's taps past the end pad."""
    if kind == AVG_EXCLUDE_PAD:
        cy, cx = ty[:, 2] - ty[:, 1], tx[:, 2] - tx[:, 1]
    else:
        cy, cx = ty[:, 3], tx[:, 3]
    with np.errstate(divide="ignore"):
        return 1.0 / np.outer(cy, cx).reshape(-1).astype(np.float64)


class _Pool(Op):
    def _geometry(self, ctx):
        x = ctx.inputs[0]
        if len(x.shape) < 3:
            raise ctx.fail(f"X must be (N, C, spatial...), got shape {list(x.shape)}")
        kernel = ctx.attr("kernel_shape")
        if kernel is None or len(kernel) != len(x.shape) - 2:
            raise ctx.fail(f"kernel_shape {kernel} must give one size per spatial dim of X {list(x.shape)}")
        kernel = [int(k) for k in kernel]
        # attributes that an op's version does not have yet are ignored, as ONNX Runtime does
        ceil = bool(ctx.attr("ceil_mode", 0)) and ctx.opset >= self.ceil_since
        out, begin, end, strides, dilations = window_geometry(ctx, x.shape[2:], kernel, ceil,
                                                              ctx.opset >= self.dilations_since)
        if ctx.attr("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET") and \
                any(b >= k or e >= k for b, e, k in zip(begin, end, kernel)):
            raise ctx.fail(f"pads {begin + end} must be smaller than the kernel {kernel}")
        return kernel, out, begin, end, strides, dilations

    def infer(self, ctx):
        x = ctx.inputs[0]
        if np.dtype(x.dtype).kind not in self.kinds:
            raise ctx.fail(f"unsupported element type {x.dtype}")
        out = self._geometry(ctx)[1]
        shape = (*x.shape[:2], *out)
        return [Info(shape, np.dtype(x.dtype))] + [Info(shape, np.dtype(np.int64))] * (ctx.num_outputs - 1)

    def kernel(self, ctx):
        kernel, out, begin, end, strides, dilations = self._geometry(ctx)
        if len(kernel) > 3:
            raise ctx.fail("only 1-D, 2-D and 3-D pooling is implemented", NotImplemented)
        x_shape = ctx.inputs[0].shape
        kind, p = self.kind(ctx), float(ctx.attr("p", 2))
        dtype = compute_dtype(ctx.inputs[0].dtype)
        half = dtype != ctx.inputs[0].dtype
        nc = x_shape[0] * x_shape[1]
        dims = (nc, *to_3d(x_shape[2:], 1))
        dils = tuple(to_3d(dilations, 1))
        tables = [_taps(*g) for g in zip(to_3d(out, 1), to_3d(strides, 1), to_3d(begin, 0), to_3d(x_shape[2:], 1),
                                         to_3d(end, 0), to_3d(kernel, 1), dils)]
        if kind in (AVG_INCLUDE_PAD, AVG_EXCLUDE_PAD) and list(kernel) == list(x_shape[2:]) and all(o == 1 for o in out) and \
                not any(begin) and not any(end) and all(d == 1 for d in dilations):
            return plane_means(nc, int(np.prod(x_shape[2:])), np.dtype(ctx.inputs[0].dtype))
        column_major = bool(ctx.attr("storage_order", 0)) and ctx.opset >= 8
        no_idx = np.zeros(0, np.int64)
        lowest = dtype.type(-np.inf if dtype.kind == "f" else np.iinfo(dtype).min)
        fast = None
        if len(kernel) <= 2 and dtype.kind == "f" and kind != LP and ctx.num_outputs == 1:
            # 1-D/2-D float MaxPool without Indices, AveragePool: the phase-plane kernels
            geometry_2d = [v[1:] for v in (dims[1:], to_3d(kernel, 1), to_3d(strides, 1), to_3d(begin, 0), dils,
                                           to_3d(out, 1))]
            in_2d, kernel_2d, strides_2d, begin_2d, dils_2d, out_2d = geometry_2d
            if SAME_SIZE and pool_same.applicable(*geometry_2d):
                fast = pool_same.plan(kind != MAX, dtype, nc, in_2d, kernel_2d, begin_2d,
                                      _inv_count(kind, *tables[1:]) if kind != MAX else None)
            else:
                fast = _phase_plan(kind, dtype, nc, *geometry_2d, *tables[1:])

        def run(x, y, idx=None):
            xv = np.ascontiguousarray(x, dtype).reshape(-1)
            yv = y.reshape(-1) if not half else np.empty(y.size, dtype)
            if fast is not None:
                fast(xv, yv)
            else:
                _pool(xv, yv, no_idx if idx is None else idx.reshape(-1), kind, p, lowest, column_major, dims, dils,
                      *tables)
            if half:
                y[...] = yv.reshape(y.shape)
        return run


def plane_means(planes: int, size: int, dtype):
    """run(x, y): the mean of each of x's planes (GlobalAveragePool, and an AveragePool whose
    one window is the whole unpadded plane: ResNet's and Inception's last 7x7 pool), with no
    pooling kernel to compile or load. float32/float64: the sums as one matrix-vector
    product with ones (BLAS), then / count as np.mean does; numpy's mean over short rows
    pays per row (1000 planes of 13x13, SqueezeNet's last pool: 68 us against 16 for the
    product; 1024 of 7x7 in Inception v2 150 us). Other types: np.mean in float64."""
    if dtype not in (np.float32, np.float64):
        def mean_in_float64(x, y):
            y.reshape(-1)[...] = np.mean(x.reshape(planes, size), axis=1, dtype=np.float64)
        return mean_in_float64
    ones, count = np.ones(size, dtype), dtype.type(size)

    def mean_by_product(x, y):
        out = y.reshape(-1)
        np.matmul(x.reshape(planes, size), ones, out=out)
        np.divide(out, count, out=out)
    return mean_by_product


@register("MaxPool")
class MaxPool(_Pool):
    """Opset 8 adds the Indices output and storage_order, 10 ceil_mode and dilations,
    12 int8/uint8 data."""
    kinds, dilations_since, ceil_since = "fiu", 10, 10

    def kind(self, ctx):
        return MAX

    def infer(self, ctx):
        if ctx.num_outputs > 1 and ctx.opset < 8:
            raise ctx.fail("the Indices output needs opset 8 or later")
        return super().infer(ctx)


@register("AveragePool")
class AveragePool(_Pool):
    """Opset 7 adds count_include_pad, 10 ceil_mode, 19 dilations."""
    kinds, dilations_since, ceil_since = "f", 19, 10

    def kind(self, ctx):
        return AVG_INCLUDE_PAD if ctx.attr("count_include_pad", 0) and ctx.opset >= 7 else AVG_EXCLUDE_PAD


@register("LpPool")
class LpPool(_Pool):
    """p is a float attribute in opset 1 and an int from 2; 18 adds ceil_mode and dilations."""
    kinds, dilations_since, ceil_since = "f", 18, 18

    def kind(self, ctx):
        return LP


class _GlobalPool(Op):
    def infer(self, ctx):
        x = ctx.inputs[0]
        if len(x.shape) < 3:
            raise ctx.fail(f"X must be (N, C, spatial...), got shape {list(x.shape)}")
        if any(d == 0 for d in x.shape[2:]):
            raise ctx.fail(f"cannot pool over empty spatial dims, X has shape {list(x.shape)}")
        return [Info((*x.shape[:2], *[1] * (len(x.shape) - 2)), np.dtype(x.dtype))]

    def kernel(self, ctx):
        x_shape = ctx.inputs[0].shape
        rows = (x_shape[0] * x_shape[1], -1)
        reduce = self.reduce

        def run(x, y):
            reduce(x.reshape(rows), axis=1, out=y.reshape(-1))
        return run


@register("GlobalAveragePool")
class GlobalAveragePool(_GlobalPool):
    def kernel(self, ctx):
        x_shape = ctx.inputs[0].shape
        return plane_means(x_shape[0] * x_shape[1], int(np.prod(x_shape[2:])), np.dtype(ctx.inputs[0].dtype))


@register("GlobalMaxPool")
class GlobalMaxPool(_GlobalPool):
    reduce = staticmethod(np.max)


@register("GlobalLpPool")
class GlobalLpPool(_GlobalPool):
    def kernel(self, ctx):
        x_shape = ctx.inputs[0].shape
        rows = (x_shape[0] * x_shape[1], -1)
        p = float(ctx.attr("p", 2))

        def run(x, y):
            y.reshape(-1)[...] = np.sum(np.abs(x.reshape(rows)) ** p, axis=1) ** (1.0 / p)
        return run


@register("MaxUnpool")
class MaxUnpool(Op):
    """Scatters each value of X to its position I (flat indices into the whole output, as
    MaxPool's Indices give them); every other output element is 0."""

    def _shape(self, ctx):
        if ctx.input(2) is not None:
            return tuple(int(v) for v in np.asarray(ctx.value(2, "output_shape")).reshape(-1))
        return self._unpooled_shape(ctx)

    def _unpooled_shape(self, ctx):
        """The shape the indices refer to: MaxPool's input shape for these attributes."""
        x = ctx.inputs[0]
        kernel = [int(k) for k in ctx.attr("kernel_shape")]
        r = len(kernel)
        strides = [int(s) for s in (ctx.attr("strides") or [1] * r)]
        pads = [int(p) for p in (ctx.attr("pads") or [0] * (2 * r))]
        spatial = [(i - 1) * s + k - pads[j] - pads[j + r]
                   for j, (i, s, k) in enumerate(zip(x.shape[2:], strides, kernel))]
        return tuple(x.shape[:2]) + tuple(spatial)

    def infer(self, ctx):
        if tuple(ctx.inputs[0].shape) != tuple(ctx.inputs[1].shape):
            raise ctx.fail(f"X {list(ctx.inputs[0].shape)} and I {list(ctx.inputs[1].shape)} must have one shape")
        return [Info(self._shape(ctx), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        unpooled = self._unpooled_shape(ctx)
        out = self._shape(ctx)
        if len(out) != len(unpooled) or any(o < u for o, u in zip(out, unpooled)):
            raise ctx.fail(f"output_shape {list(out)} is smaller than the unpooled shape {list(unpooled)}")
        # a larger output_shape keeps the unpooled values at its start, zeros after them
        region = tuple(slice(0, u) for u in unpooled)
        size = int(np.prod(unpooled))

        def run(x, indices, *rest):
            y = rest[-1]
            flat = indices.reshape(-1).astype(np.int64)
            check_index_range(ctx, flat, size)
            if flat.size and flat.min() < 0:  # flat positions: a negative one means nothing
                raise ctx.fail(f"index {int(flat.min())} is negative; indices are flat positions "
                               f"in [0, {size - 1}]")
            values = np.zeros(size, y.dtype)
            values[flat] = x.reshape(-1)
            y.fill(0)
            y[region] = values.reshape(unpooled)
        return run
