"""Conv: im2col (a Numba loop into a scratch buffer made once per plan) then one batched
GEMM per image through numpy's BLAS; a 1x1 stride-1 unpadded conv is a GEMM on the input as is.
Depthwise convolutions (one input channel per group, 1-D or 2-D) skip the GEMM, whose
1-row matrices would waste it: a generated loop (its taps unrolled) over a zero-padded copy
of the input. 3x3 stride-1 convolutions with enough channels and tiles use Winograd's
F(2x2, 3x3) (winograd.py). Before either, float32 convolutions of one group with kernels
of 3x3 and wider (strides up to 4) run as direct convolutions on our own micro-kernel
where direct_conv.worthwhile says so.

Every spatial rank (1-D, 2-D, 3-D) runs through the same 3-D loop, lower ranks padded with
unit dims, so there is one Numba compilation per dtype. The window geometry helpers here
are shared with pooling.py. DeformConv (any spatial rank) gathers its bilinear samples with
numpy, then multiplies as Conv does.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..jit import numba   # imported when the first kernel is (jit.py)
from ..errors import NotImplemented
from .base import Info, Op, is_narrow_float, widen_kernel, widened_context
from ..codegen.cpu import threads
from ..codegen.cpu.threads import run_parts
from ..kernel_cache import njit
from . import blas, direct_conv, winograd
from .registry import register
from .scratch import scratch

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _ints(ctx, name, default, n):
    v = ctx.attr(name)
    v = list(default) if v is None else [int(x) for x in v]
    if len(v) != n:
        raise ctx.fail(f"attribute {name}={v} must have {n} values, one per spatial dim")
    return v


def window_geometry(ctx, in_shape, kernel, ceil_mode=False, has_dilations=True):
    """(out_shape, pads_begin, pads_end, strides, dilations) of a sliding window over the
    spatial dims `in_shape`, from the node's auto_pad/pads/strides/dilations attributes."""
    k = len(in_shape)
    strides = _ints(ctx, "strides", [1] * k, k)
    dilations = _ints(ctx, "dilations", [1] * k, k) if has_dilations else [1] * k
    pads = _ints(ctx, "pads", [0] * 2 * k, 2 * k)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in _AUTO_PADS:
        raise ctx.fail(f"unknown auto_pad '{auto_pad}'")
    if min(strides) < 1 or min(dilations) < 1 or min(pads) < 0 or min(kernel) < 1:
        raise ctx.fail(f"strides {strides}, dilations {dilations} and kernel {list(kernel)} must be positive, "
                       f"pads {pads} non-negative")
    out, begin, end = [], [], []
    for i in range(k):
        n, s, span = in_shape[i], strides[i], dilations[i] * (kernel[i] - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-n // s)
            total = max(0, (o - 1) * s + span - n)
            b = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            e = total - b
        else:
            b, e = (0, 0) if auto_pad == "VALID" else (pads[i], pads[k + i])
            room = n + b + e - span
            o = (-(-room // s) if ceil_mode else room // s) + 1
            # in ceil mode the last window must still start inside the input or its begin pad
            if ceil_mode and room >= 0 and (o - 1) * s >= n + b:
                o -= 1
        if o < 1:
            raise ctx.fail(f"the output would be empty along spatial dim {i}: input size {n}, pads {b}+{e}, "
                           f"kernel {kernel[i]} (dilation {dilations[i]}) does not fit")
        out.append(o)
        begin.append(b)
        end.append(e)
    return out, begin, end, strides, dilations


def to_3d(values, fill):
    """Spatial parameters of a 1-D/2-D window as 3-D ones (leading unit dims)."""
    return [fill] * (3 - len(values)) + list(values)


@njit(nogil=True, error_model="numpy")
def _im2col_channel(c, x, cols, dims, geo):
    """Channel c's rows of cols (see _im2col)."""
    C, D, H, W, od, oh, ow = dims
    kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw = geo
    zero = cols.dtype.type(0)
    q = c * kd * kh * kw * od * oh * ow
    for a in range(kd):
        for b in range(kh):
            for e in range(kw):
                # output columns k whose input column k*sw + off falls inside [0, W)
                off = e * dw - pw
                k_lo = min(max(0, (-off + sw - 1) // sw), ow)
                k_hi = max(min(ow, (W - 1 - off) // sw + 1), k_lo) if W - 1 - off >= 0 else k_lo
                for i in range(od):
                    z = i * sd - pd + a * dd
                    for j in range(oh):
                        y = j * sh - ph + b * dh
                        inside = 0 <= z < D and 0 <= y < H
                        lo, hi = (k_lo, k_hi) if inside else (ow, ow)
                        base = ((c * D + z) * H + y) * W + off
                        # indices cast to unsigned: Numba then skips its negative-index
                        # wraparound, which costs ~10x in these copy loops
                        for k in range(lo):
                            cols[np.uint64(q + k)] = zero
                        for k in range(lo, hi):
                            cols[np.uint64(q + k)] = x[np.uint64(base + k * sw)]
                        for k in range(hi, ow):
                            cols[np.uint64(q + k)] = zero
                        q += ow


@blas.threaded_njit
def _im2col(x, cols, dims, geo):
    """x: one image (C, D, H, W) flattened; cols: (C, kd, kh, kw, od, oh, ow) flattened, zero
    where the window lies in the padding. Flat indices: no per-row views in the inner loops.
    Channels are spread over the threads."""
    run_parts(_im2col_channel, dims[0], (x, cols, dims, geo))


@njit(nogil=True, error_model="numpy")
def _im2col_stride2_rows(u, x, cols, dims, geo):
    """Unit u's rows of cols (see _im2col_stride2): channel u // (kd kh), kernel row
    (a, b) = divmod(u % (kd kh), kh), its kw taps. Each input row is split once into its
    even and odd columns (both in one loop, which LLVM turns into vector loads and
    shuffles), then every tap's row is a contiguous copy from one half."""
    C, D, H, W, od, oh, ow = dims
    kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw = geo
    c, ab = u // (kd * kh), u % (kd * kh)
    a, b = ab // kh, ab % kh
    q0 = u * kw * od * oh * ow
    zero = cols.dtype.type(0)
    plane = od * oh * ow
    evens = (W + 1) // 2
    halves = np.empty(W + 1, x.dtype)   # the even columns, then the odd ones
    for i in range(od):
        z = i * sd - pd + a * dd
        for j in range(oh):
            y = j * sh - ph + b * dh
            inside = 0 <= z < D and 0 <= y < H
            if inside:
                src = ((c * D + z) * H + y) * W
                for k in range(W // 2):
                    halves[np.uint64(k)] = x[np.uint64(src + 2 * k)]
                    halves[np.uint64(evens + k)] = x[np.uint64(src + 2 * k + 1)]
                if W % 2:
                    halves[np.uint64(W // 2)] = x[np.uint64(src + W - 1)]
            for e in range(kw):
                off = e - pw   # tap e of output column k reads input column 2 k + off
                k_lo = min(max(0, (-off + 1) // 2), ow)
                k_hi = max(min(ow, (W - 1 - off) // 2 + 1), k_lo) if W - 1 - off >= 0 else k_lo
                lo, hi = (k_lo, k_hi) if inside else (ow, ow)
                q = q0 + e * plane + (i * oh + j) * ow
                at = (evens if off % 2 else 0) + off // 2   # column 2 k + off in its half
                for k in range(lo):
                    cols[np.uint64(q + k)] = zero
                for k in range(lo, hi):
                    cols[np.uint64(q + k)] = halves[np.uint64(at + k)]
                for k in range(hi, ow):
                    cols[np.uint64(q + k)] = zero


@blas.threaded_njit
def _im2col_stride2(x, cols, dims, geo):
    """_im2col for column stride 2, dilation 1 and windows wider than one column (the
    first layers' 3x3 stride 2): reading every other column straight from the input, as
    _im2col does, ran at a fifth of a copy's speed (gathers): SqueezeNet's first layer
    (3 channels of 224x224) 152 -> 56 us. Its own kernel, as it compiles in about a
    second: ResNet-50's stride-2 1x1 layers keep _im2col. The threads take (channel,
    kernel row) units: a first layer's 3 channels alone would leave one of two threads a
    third of the work."""
    run_parts(_im2col_stride2_rows, dims[0] * geo[0] * geo[1], (x, cols, dims, geo))


def _depthwise_source(taps: int, strides: tuple, parallel: bool, bias: bool) -> str:
    """A depthwise 2-D conv without im2col, its `taps` kernel taps unrolled into one sum per
    output (4x the speed of a pass over an accumulator row per tap, 272 channels of 14x14).
    x: (N*C, H, W) flattened; planes: which plane of x each of the N*C input channels
    reads (itself, or its source before a channel shuffle: ChannelShuffleConv); w: (C*mult,
    taps); y: (N*C*mult, oh, ow) flattened; xq: scratch (runs, Hp, Wp) flattened, one
    padded plane per run, zeroed at the run's start and then each channel's interior
    written over it (a plane per input channel, made once per plan, was ShuffleNet's
    largest memory: 100 MB at batch 8, and a fifth of its first run in page faults);
    offs: each tap's offset in a padded image; b: the bias (with `bias`), added to each
    sum. The strides are constants of the source.

    Stride 1: the output is computed over whole padded rows (width Wp), as one long loop of
    sums in tap order (as the reference adds them), which LLVM vectorizes; an output row
    alone would be too short. Then the ow valid columns of each row are copied out.
    Larger strides: per output row, every column at stride 1, then every sw-th copied out
    (splitting the input into stride phases instead took 80% of the time in a scalar copy).
    The threads take `runs` runs of whole channels, so a channel's padded copy is written
    and read by the same thread while it is in its cache. Indices are cast to unsigned:
    Numba then skips negative-index wraparound, which costs about 10x in these loops."""
    t = range(taps)
    sh, sw = strides
    read = " + ".join(f"w{k} * xq[np.uint64(s + o{k})]" for k in t)
    bias_line = "\n            bk = b[oc]" if bias else ""
    acc_size = "oh * Wp" if (sh, sw) == (1, 1) else "Wp"
    if bias:
        read = f"({read}) + bk"
    head = f"""import numpy as np
import numba
from ortjit.kernel_cache import njit
{threads.header(parallel)}

@njit(cache=True, nogil=True, error_model='numpy')
def work(run, x, planes, xq, w, b, y, dims, geo, offs, runs):
    NC, C, H, W, Hp, Wp, oh, ow, mult = dims
    ph, pw = geo
    plane = Hp * Wp
    {", ".join(f"o{k}" for k in t)}, = {", ".join(f"offs[{k}]" for k in t)},
    acc = np.empty({acc_size}, y.dtype)
    base = run * plane
    for i in range(plane):
        xq[np.uint64(base + i)] = 0
    for nc in range(run * NC // runs, (run + 1) * NC // runs):
        source = planes[nc]
        for r in range(H):
            dst, src = base + (r + ph) * Wp + pw, (source * H + r) * W
            for q in range(W):
                xq[np.uint64(dst + q)] = x[np.uint64(src + q)]
        for m in range(mult):
            oc = (nc % C) * mult + m
            {", ".join(f"w{k}" for k in t)}, = {", ".join(f"w[oc, {k}]" for k in t)},{bias_line}
            out = (nc * mult + m) * oh * ow
"""
    if (sh, sw) == (1, 1):
        body = f"""            for j in range(oh * Wp):
                s = base + j
                acc[np.uint64(j)] = {read}
            for i in range(oh):
                for k in range(ow):
                    y[np.uint64(out + i * ow + k)] = acc[np.uint64(i * Wp + k)]
"""
    else:
        body = f"""            for i in range(oh):
                row = base + i * {sh} * Wp
                for j in range((ow - 1) * {sw} + 1):
                    s = row + j
                    acc[np.uint64(j)] = {read}
                for k in range(ow):
                    y[np.uint64(out + i * ow + k)] = acc[np.uint64(k * {sw})]
"""
    kernel = f"""

@njit(cache=True, nogil=True)
def kernel(x, planes, xq, w, b, y, dims, geo, offs, runs):
    {threads.launch(parallel, "runs", "x, planes, xq, w, b, y, dims, geo, offs, runs")}
"""
    return head + body + kernel


def _input_planes(ctx, order, n: int, c: int) -> np.ndarray:
    """The plane of X that each of the n * c input channels reads: its own, or with
    ChannelShuffleConv's input_channels (`order`), channel order[j] of the same image."""
    if order is None:
        return np.arange(n * c, dtype=np.int64)
    order = np.asarray(order, np.int64)
    if order.shape != (c,) or not np.array_equal(np.sort(order), np.arange(c)):
        raise ctx.fail(f"input_channels must be an order of X's {c} channels, got {order.tolist()}")
    return (np.arange(n, dtype=np.int64)[:, None] * c + order).reshape(-1)


def depthwise_kernel(taps: int, strides: tuple, bias: bool):
    """(compiled kernel, its source)."""
    from .. import codecache
    source = _depthwise_source(taps, tuple(strides), blas.threaded(), bias)
    return codecache.load(f"depthwise_{taps}taps", source), source


def _images_view(y: np.ndarray, shape: tuple) -> np.ndarray:
    """y seen as `shape` without a copy (y's images may lie apart: a Concat's part); a
    reshape that needed one would leave the results in the copy."""
    view = y.view()
    view.shape = shape   # raises where numpy would copy
    return view


def _then_epilogue(conv, epilogue, source=None):
    """run(x, w, bias, y, extras) for a convolution `conv(x, w, bias, y)` that takes no
    epilogue itself: into scratch, then the epilogue's loop into y."""
    if epilogue is None:
        def run(x, w, bias, y, extras=()):
            conv(x, w, bias, y)
    else:
        def run(x, w, bias, y, extras=()):
            product = scratch("conv_product", y.size, y.dtype).reshape(y.shape)
            conv(x, w, bias, product)
            epilogue.after(product, extras, y)
    run.source = source
    return run


# How much im2col scratch several images may share: unrolled together, they take one
# parallel region for the unrolling and one GEMM call (the threads taking whole images)
# instead of one each per image.
IM2COL_BYTES = 16 << 20


def compute_dtype(dtype):
    """Numba kernels run on float32/float64; float16 data is converted around them."""
    return np.dtype(np.float32) if np.dtype(dtype) == np.float16 else np.dtype(dtype)


@register("Conv")
class Conv(Op):
    reorders_input = False   # ChannelShuffleConv: input channel j is X's input_channels[j]

    def _geometry(self, ctx):
        x, w, b = ctx.inputs[0], ctx.inputs[1], ctx.input(2)
        if np.dtype(x.dtype).kind != "f" or x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
            raise ctx.fail(f"X, W and B must share one float type, got {x.dtype}, {w.dtype}"
                           + (f", {b.dtype}" if b is not None else ""))
        if len(x.shape) < 3 or len(w.shape) != len(x.shape):
            raise ctx.fail(f"X {list(x.shape)} must be (N, C, spatial...) and W {list(w.shape)} "
                           "(M, C/group, kernel...) of the same rank")
        group = int(ctx.attr("group", 1))
        n, c = x.shape[:2]
        m, cg = w.shape[:2]
        if group < 1 or c != cg * group or m % group:
            raise ctx.fail(f"X has {c} channels and W {list(w.shape)}: with group={group} X needs "
                           f"W.shape[1] * group = {cg * group} channels and M={m} must divide by the group")
        if b is not None and tuple(b.shape) != (m,):
            raise ctx.fail(f"B must have shape [{m}], got {list(b.shape)}")
        kernel = list(w.shape[2:])
        if ctx.attr("kernel_shape") is not None and [int(k) for k in ctx.attr("kernel_shape")] != kernel:
            raise ctx.fail(f"kernel_shape {list(ctx.attr('kernel_shape'))} does not match W's shape {list(w.shape)}")
        return (n, c, m, group, kernel) + tuple(window_geometry(ctx, x.shape[2:], kernel))

    def infer(self, ctx):
        n, c, m, group, kernel, out, *_ = self._geometry(ctx)
        return [Info((n, m, *out), np.dtype(ctx.inputs[0].dtype))]

    def kernel(self, ctx):
        run = self.runner(ctx)

        def conv(x, w, *rest):
            run(x, w, rest[0] if len(rest) == 2 else None, rest[-1])
        conv.source = getattr(run, "source", None)   # a generated kernel's, for `ortjit explain`
        conv.strided_out = getattr(run, "strided_out", False)   # writes y whose images lie apart (plan._concat_views)
        return conv

    def runner(self, ctx, epilogue=None):
        """run(x, w, bias, y, extras=()): the convolution into y. With an `epilogue`
        (ops/fused_conv.py), y then holds the epilogue of the convolution and `extras`
        (its other inputs): applied inside the GEMM's pieces where the convolution is one
        GEMM per image (or one for all images), else as a loop after the convolution."""
        n, c, m, group, kernel, out, begin, end, strides, dilations = self._geometry(ctx)
        if len(kernel) > 3:
            raise ctx.fail("only 1-D, 2-D and 3-D convolutions are implemented", NotImplemented)
        x_shape, dtype = ctx.inputs[0].shape, compute_dtype(ctx.inputs[0].dtype)
        half = dtype != ctx.inputs[0].dtype
        cg, mg, ksize, p = c // group, m // group, int(np.prod(kernel)), int(np.prod(out))
        pointwise = ksize == 1 and all(s == 1 for s in strides) and not any(begin) and not any(end)
        depthwise = cg == 1 and group > 1 and len(kernel) <= 2 and not pointwise
        order = ctx.attr("input_channels") if self.reorders_input else None
        if order is not None and not depthwise:
            raise ctx.fail("input_channels is only implemented for depthwise convolutions of 1-D and 2-D "
                           "windows wider than one tap", NotImplemented)
        w_static = ctx.inputs[1].value if ctx.inputs[1].static else None
        if not half and direct_conv.worthwhile(dtype, group, kernel, strides, dilations, n, c, m, out):
            hw, k2, out2, b2, e2, s2, d2 = (to_3d(v, f)[1:] for v, f in (
                (x_shape[2:], 1), (kernel, 1), (out, 1), (begin, 0), (end, 0), (strides, 1), (dilations, 1)))
            fused = epilogue is not None and epilogue.fits_direct()
            direct = direct_conv.kernel_for(out2)(n, c, hw, m, k2, out2, b2, e2, s2, d2, ctx.input(2) is not None,
                                                  weights=w_static, epilogue=epilogue if fused else None)
            run = direct if fused else _then_epilogue(direct, epilogue, direct.source)
            run.strided_out = fused or epilogue is None   # see ops/direct_conv.flat_images
            return run
        if kernel == [3, 3] and strides == [1, 1] and dilations == [1, 1] and group == 1 and not half and \
                winograd.worthwhile(n, c, m, out):
            return _then_epilogue(winograd.make(n, c, *x_shape[2:], m, out, begin, dtype, w_static), epilogue)
        # the epilogue rides on the GEMM's pieces where the convolution is plain GEMMs
        in_gemm = epilogue is not None and group == 1 and not depthwise and not half and \
            epilogue.fits_gemm(n if pointwise else 1, m, cg * ksize, p)
        if depthwise:
            k2, s2, b2, d2 = (to_3d(v, f)[1:] for v, f in ((kernel, 1), (strides, 1), (begin, 0), (dilations, 1)))
            in2, out2 = to_3d(x_shape[2:], 1)[1:], to_3d(out, 1)[1:]
            # the padded copy (see _depthwise_source) holds the input at (ph, pw) and every
            # tap's read; at stride 1 the last tap's reads run one row past the last output row
            k_h, k_w = ((o - 1) * s_ + (k - 1) * d + 1 for o, s_, k, d in zip(out2, s2, k2, d2))
            rows = max(b2[0] + in2[0], k_h + (1 if s2 == [1, 1] else 0))
            cols = max(b2[1] + in2[1], k_w)
            dw_dims = (n * c, c, *in2, rows, cols, *out2, mg)
            dw_geo = tuple(b2)
            dw_offs = np.array([a * d2[0] * cols + b * d2[1] for a in range(k2[0]) for b in range(k2[1])], np.int64)
            dw_kernel, dw_source = depthwise_kernel(len(dw_offs), s2, ctx.input(2) is not None)
            dw_planes = _input_planes(ctx, order, n, c)
        elif not pointwise:
            # the windows are unrolled into a scratch buffer, as many images at a time as
            # fit in IM2COL_BYTES (at least one)
            batch = max(1, min(n, IM2COL_BYTES // (c * ksize * p * np.dtype(dtype).itemsize)))
            dims = (c, *to_3d(x_shape[2:], 1), *to_3d(out, 1))
            geo = (*to_3d(kernel, 1), *to_3d(strides, 1), *to_3d(begin, 0), *to_3d(dilations, 1))
            unroll = _im2col_stride2 if geo[5] == 2 and geo[11] == 1 and geo[2] > 1 else _im2col

        def run(x, w, bias, y, extras=()):
            final = y
            if epilogue is not None and not in_gemm:   # the product first, the epilogue after
                y = scratch("conv_product", y.size, y.dtype).reshape(y.shape)
            if half:
                x, w = x.astype(dtype), w.astype(dtype)
                target, y = y, np.empty(y.shape, dtype)
            wg = w.reshape(group, mg, cg * ksize)
            yv = y.reshape(n, group, mg, p)
            if in_gemm:
                w2, y3 = np.ascontiguousarray(wg[0]), _images_view(y, (n, m, p))
                ex3 = epilogue.gemm_inputs(extras)
            if depthwise:
                runs = min(n * c, 8 * numba.get_num_threads())
                xp = scratch("depthwise_padded", runs * dw_dims[4] * dw_dims[5], dtype)
                dw_kernel(np.ascontiguousarray(x).reshape(-1), dw_planes, xp, np.ascontiguousarray(w).reshape(m, ksize),
                          w.reshape(-1)[:0] if bias is None else bias.astype(dtype, copy=False), y.reshape(-1),
                          dw_dims, dw_geo, dw_offs, runs)
                bias = None   # added in the kernel
            elif pointwise and in_gemm:
                epilogue.gemm(w2, np.ascontiguousarray(x).reshape(n, cg, p), y3, 0, ex3)
            elif pointwise and group == 1:   # all images in one call: (mg, cg) @ (n, cg, p)
                blas.matmul(wg[0], x.reshape(n, cg, p), yv.reshape(n, mg, p))
            elif pointwise:                    # an image's groups in one call
                xv = x.reshape(n, group, cg, p)
                for i in range(n):
                    blas.matmul(wg, xv[i], yv[i])
            else:
                x = np.ascontiguousarray(x)
                cols = scratch("im2col", batch * c * ksize * p, dtype)
                for i0 in range(0, n, batch):   # `batch` images unrolled in one parallel region
                    count = min(batch, n - i0)
                    # the images' channels one after the other: im2col's loop over channels
                    # covers them all
                    unroll(x[i0:i0 + count].reshape(-1), cols, (count * c, *dims[1:]), geo)
                    images = cols[:count * c * ksize * p].reshape(count, group, cg * ksize, p)
                    if in_gemm:   # one GEMM call for them all, the threads taking whole images
                        epilogue.gemm(w2, images.reshape(count, c * ksize, p), y3, i0, ex3)
                    elif group == 1:
                        blas.matmul(wg[0], images.reshape(count, c * ksize, p), yv[i0:i0 + count, 0])
                    else:
                        for i in range(count):
                            blas.matmul(wg, images[i], yv[i0 + i])
            if bias is not None:
                y.reshape(n, m, p)[...] += bias.reshape(m, 1)
            if half:
                target[...] = y
                y = target
            if epilogue is not None and not in_gemm:
                epilogue.after(y, extras, final)
        if depthwise:
            run.source = dw_source
        # the GEMM's pieces write each image where y has it, though y's images lie apart
        # (plan._concat_views); the other paths need y contiguous
        run.strided_out = in_gemm
        return run


@register("ChannelShuffleConv", domain="ortjit")
class ChannelShuffleConv(Conv):
    """A depthwise Conv (attributes as Conv's) whose input channel j is X's channel
    input_channels[j]: a channel shuffle (Reshape to groups, Transpose, Reshape back, as
    ShuffleNet writes it) read by the convolution, with no copy of the shuffled tensor
    (passes/channel_shuffle.py). Same results as the shuffle, then the Conv."""
    reorders_input = True

    def infer(self, ctx):
        if ctx.attr("input_channels") is None:
            raise ctx.fail("input_channels is required")
        return super().infer(ctx)


@register("DeformConv", since=19)
class DeformConv(Op):
    """Conv whose kernel taps sample X at positions moved by `offset` (bilinear, zero
    outside the image), each sample weighed by `mask`: the samples are gathered into an
    im2col-like buffer, then one batched GEMM per group as in Conv.

    offset is (N, offset_group * K * r, out...), K taps of r coordinates each, first spatial
    dim first; mask is (N, offset_group * K, out...). A NaN offset samples nothing."""

    def _geometry(self, ctx):
        x, w, off, b, mask = (ctx.input(i) for i in range(5))
        if (np.dtype(x.dtype).kind != "f" and not is_narrow_float(x.dtype)) or \
                any(i is not None and i.dtype != x.dtype for i in (w, off, b, mask)):
            raise ctx.fail("X, W, offset, B and mask must share one float type, got "
                           + ", ".join(str(i.dtype) for i in (x, w, off, b, mask) if i is not None))
        if len(x.shape) < 3 or len(w.shape) != len(x.shape):
            raise ctx.fail(f"X {list(x.shape)} must be (N, C, spatial...) and W {list(w.shape)} "
                           "(M, C/group, kernel...) of the same rank")
        r = len(x.shape) - 2
        n, c = x.shape[:2]
        m, cg = w.shape[:2]
        group, og = int(ctx.attr("group", 1)), int(ctx.attr("offset_group", 1))
        if group < 1 or c != cg * group or m % group:
            raise ctx.fail(f"X has {c} channels and W {list(w.shape)}: with group={group} X needs "
                           f"W.shape[1] * group = {cg * group} channels and M={m} must divide by the group")
        if og < 1 or c % og:
            raise ctx.fail(f"offset_group {og} must divide the {c} channels")
        kernel = list(w.shape[2:])
        if ctx.attr("kernel_shape") is not None and [int(k) for k in ctx.attr("kernel_shape")] != kernel:
            raise ctx.fail(f"kernel_shape {list(ctx.attr('kernel_shape'))} does not match W's shape {list(w.shape)}")
        out, begin, _, strides, dilations = window_geometry(ctx, x.shape[2:], kernel)
        k = int(np.prod(kernel))
        if tuple(off.shape) != (n, og * k * r, *out):
            raise ctx.fail(f"offset must have shape {[n, og * k * r, *out]}, got {list(off.shape)}")
        if mask is not None and tuple(mask.shape) != (n, og * k, *out):
            raise ctx.fail(f"mask must have shape {[n, og * k, *out]}, got {list(mask.shape)}")
        if b is not None and tuple(b.shape) != (m,):
            raise ctx.fail(f"B must have shape [{m}], got {list(b.shape)}")
        return n, c, m, group, og, kernel, out, begin, strides, dilations

    def infer(self, ctx):
        n, c, m, *_, out, _, _, _ = self._geometry(ctx)
        return [Info((n, m, *out), np.dtype(ctx.inputs[0].dtype))]

    def kernel(self, ctx):
        if widened_context(ctx) is not None:  # bfloat16: computed in float32
            return widen_kernel(self, ctx)
        n, c, m, group, og, kernel, out, begin, strides, dilations = self._geometry(ctx)
        in_dims = list(ctx.inputs[0].shape[2:])
        r, k, p = len(kernel), int(np.prod(kernel)), int(np.prod(out))
        dtype = compute_dtype(ctx.inputs[0].dtype)
        cog, cg, mg = c // og, c // group, m // group
        # undeformed sampling positions (r, K, P): tap offset plus window start, once per plan
        taps = np.stack(np.meshgrid(*[np.arange(kk) * d for kk, d in zip(kernel, dilations)], indexing="ij"))
        starts = np.stack(np.meshgrid(*[np.arange(o) * s - b for o, s, b in zip(out, strides, begin)], indexing="ij"))
        base = taps.reshape(r, k, 1) + starts.reshape(r, 1, p)
        in_strides = [int(np.prod(in_dims[d + 1:])) for d in range(r)]
        cols = np.empty((n, og, cog, k * p), dtype)

        n_in = len(ctx.inputs)

        def run(x, w, offset, *rest):
            bias, mask = (list(rest[:n_in - 3]) + [None, None])[:2]
            y = rest[n_in - 3]
            pos = offset.astype(np.float64).reshape(n, og, k, r, p).transpose(3, 0, 1, 2, 4) + base[:, None, None]
            corners = []
            for d in range(r):
                v = np.where(np.isnan(pos[d]), -2.0, np.clip(pos[d], -2.0, in_dims[d] + 1.0))
                lo = np.floor(v)
                frac = v - lo
                lo = lo.astype(np.int64)
                corners.append([(lo, 1.0 - frac), (lo + 1, frac)])
            xg = np.ascontiguousarray(x, dtype).reshape(n, og, cog, -1)
            cols.fill(0)
            for combo in itertools.product(*corners):
                flat, weight = 0, 1.0
                for d, (i, wt) in enumerate(combo):
                    inside = (i >= 0) & (i < in_dims[d])
                    flat = flat + np.clip(i, 0, in_dims[d] - 1) * in_strides[d]
                    weight = weight * np.where(inside, wt, 0.0)
                if mask is not None:
                    weight = weight * mask.reshape(n, og, k, p)
                values = np.take_along_axis(xg, flat.reshape(n, og, 1, k * p), axis=3)
                np.add(cols, values * weight.reshape(n, og, 1, k * p).astype(dtype), out=cols)
            yv = np.matmul(w.astype(dtype).reshape(group, mg, cg * k), cols.reshape(n, group, cg * k, p))
            if bias is not None:
                yv += bias.astype(dtype).reshape(group, mg, 1)
            y[...] = yv.reshape(y.shape)
        return run
