"""ConvTranspose: each input pixel scatters W-weighted copies into the output. Computed as
one GEMM per group (W^T times the input's pixels gives every kernel tap's contribution),
then one strided add per kernel tap into the uncropped output, cropped by the pads."""
from __future__ import annotations

import numpy as np

from .base import Info, Op
from .registry import register


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _ints(ctx, name, default, n):
    v = ctx.attr(name)
    v = [default] * n if v is None else [int(x) for x in v]
    if len(v) != n:
        raise ctx.fail(f"attribute {name}={v} must have {n} values")
    return v


class _Geometry:
    def __init__(self, ctx):
        x, w = ctx.inputs[0], ctx.inputs[1]
        if np.dtype(x.dtype).kind != "f" or x.dtype != w.dtype:
            raise ctx.fail(f"X and W must share one float type, got {x.dtype} and {w.dtype}")
        if len(x.shape) < 3 or len(w.shape) != len(x.shape):
            raise ctx.fail(f"X {list(x.shape)} must be (N, C, spatial...) and W {list(w.shape)} "
                           "(C, M/group, kernel...)")
        nd = len(x.shape) - 2
        self.group = g = int(ctx.attr("group", 1))
        n, c = x.shape[:2]
        if w.shape[0] != c or c % g:
            raise ctx.fail(f"W {list(w.shape)} must have X's {c} channels first, divisible by group {g}")
        self.n, self.c, self.m = n, c, w.shape[1] * g
        self.kernel = [int(k) for k in w.shape[2:]]
        if ctx.attr("kernel_shape") is not None and [int(k) for k in ctx.attr("kernel_shape")] != self.kernel:
            raise ctx.fail(f"kernel_shape {list(ctx.attr('kernel_shape'))} does not match W's shape {list(w.shape)}")
        self.strides = _ints(ctx, "strides", 1, nd)
        self.dilations = _ints(ctx, "dilations", 1, nd)
        out_pad = _ints(ctx, "output_padding", 0, nd)
        if min(self.strides) < 1 or min(self.dilations) < 1 or min(out_pad, default=0) < 0:
            raise ctx.fail(f"strides {self.strides} and dilations {self.dilations} must be positive, "
                           f"output_padding {out_pad} non-negative")
        b = ctx.input(2)
        if b is not None and tuple(b.shape) != (w.shape[1] * g,):
            raise ctx.fail(f"B must have shape [{w.shape[1] * g}], got {list(b.shape)}")
        self.inp = list(x.shape[2:])
        full = [s * (i - 1) + op + (k - 1) * d + 1
                for i, s, op, k, d in zip(self.inp, self.strides, out_pad, self.kernel, self.dilations)]
        auto = _text(ctx.attr("auto_pad", "NOTSET"))
        out_shape = ctx.attr("output_shape")
        if out_shape is not None:
            out_shape = [int(o) for o in out_shape][-nd:]
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            out_shape = [i * s for i, s in zip(self.inp, self.strides)]
        if out_shape is not None:
            # the spec's pads for a given output shape; an output larger than the
            # transposed convolution's extent is padded with zeros at the end (as output_padding)
            total = [f - o for f, o in zip(full, out_shape)]
            half = [t // 2 for t in total]
            begin = half if auto == "SAME_UPPER" else [t - h for t, h in zip(total, half)]
            begin = [max(b, 0) for b in begin]
            self.out = out_shape
        else:
            pads = [0] * (2 * nd) if auto == "VALID" else _ints(ctx, "pads", 0, 2 * nd)
            if min(pads) < 0:
                raise ctx.fail(f"pads {pads} must not be negative")
            begin = pads[:nd]
            self.out = [f - b - e for f, b, e in zip(full, pads[:nd], pads[nd:])]
        if any(o <= 0 for o in self.out):
            raise ctx.fail(f"the output would have shape {self.out}")
        self.begin, self.full = begin, full

    @property
    def shape(self):
        return (self.n, self.m, *self.out)


@register("ConvTranspose")
class ConvTranspose(Op):
    def infer(self, ctx):
        return [Info(_Geometry(ctx).shape, np.dtype(ctx.inputs[0].dtype))]

    def kernel(self, ctx):
        geo = _Geometry(ctx)
        g, c, m, n = geo.group, geo.c, geo.m, geo.n
        cg, mg = c // g, m // g
        k = int(np.prod(geo.kernel))
        p = int(np.prod(geo.inp))
        taps = list(np.ndindex(*geo.kernel))
        dtype = np.dtype(ctx.inputs[0].dtype)
        # the uncropped output, with room for outputs that reach past it on either side
        shift = [max(0, -b) for b in geo.begin]
        full = np.empty((n, m, *[sh + max(f, b + o) for sh, f, b, o in zip(shift, geo.full, geo.begin, geo.out)]), dtype)
        crop = (slice(None), slice(None)) + tuple(slice(sh + b, sh + b + o) for sh, b, o in zip(shift, geo.begin, geo.out))

        def run(x, w, *rest):
            y, bias = rest[-1], (rest[0] if len(rest) == 2 else None)
            # (g, Mg*K, Cg) @ (N, g, Cg, P) -> (N, g, Mg*K, P): every tap's contribution
            wt = w.reshape(g, cg, mg * k).transpose(0, 2, 1)
            cols = np.matmul(wt, x.reshape(n, g, cg, p)).reshape(n, m, k, *geo.inp)
            full.fill(0)
            for t, tap in enumerate(taps):
                where = tuple(slice(sh + kk * d, sh + kk * d + (i - 1) * s + 1, s)
                              for sh, kk, d, i, s in zip(shift, tap, geo.dilations, geo.inp, geo.strides))
                full[(slice(None), slice(None)) + where] += cols[:, :, t]
            y[...] = full[crop]
            if bias is not None:
                y += bias.reshape([1, m] + [1] * len(geo.out))
        return run
