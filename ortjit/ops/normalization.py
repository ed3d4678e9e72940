"""BatchNormalization, LRN, InstanceNormalization, LayerNormalization, LpNormalization,
GroupNormalization, RMSNormalization, MeanVarianceNormalization."""
from __future__ import annotations

import numpy as np

from ..kernel_cache import njit
from ..errors import NotImplemented
from ..codegen.cpu.threads import run_parts
from . import blas
from .base import Info, Op, broadcast_shapes, is_narrow_float, normalize_axis
from .conv import compute_dtype
from .registry import register


def _float_input(ctx, i=0):
    x = ctx.inputs[i]
    if np.dtype(x.dtype).kind != "f":
        raise ctx.fail(f"input {i} must be a float tensor, got {x.dtype}")
    return x


@njit(inline="always", nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _row_stats(x, base, n, eps):
    """(mean, 1 / sqrt(var + eps)) of x[base:base + n]: two passes with float64 sums, so a
    large offset does not eat the variance."""
    s = 0.0
    for j in range(np.uint64(n)):
        s += x[base + j]
    m = s / n
    v = 0.0
    for j in range(np.uint64(n)):
        d = x[base + j] - m
        v += d * d
    return m, 1.0 / np.sqrt(v / n + eps)


# reassoc lets LLVM vectorize the sums (no NaN/inf assumptions, unlike full fastmath)
@njit(nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _normalize_row(r, x, y, mean, inv_std, n, eps):
    """Row r of _normalize_rows."""
    base = np.uint64(r * n)
    m, inv = _row_stats(x, base, n, eps)
    for j in range(np.uint64(n)):
        y[base + j] = (x[base + j] - m) * inv
    mean[r] = m
    inv_std[r] = inv


@blas.threaded_njit(error_model="numpy", fastmath={"reassoc", "contract"})
def _normalize_rows(x, y, mean, inv_std, n, eps):
    """x, y: (rows, n) flattened; y[r] = (x[r] - mean(x[r])) / sqrt(var(x[r]) + eps).
    Unsigned indices: Numba skips its negative-index wraparound. Rows go to the threads."""
    run_parts(_normalize_row, mean.size, (x, y, mean, inv_std, n, eps))


@njit(nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _layer_norm_row(r, x, y, scale, bias, mean, inv_std, n, eps):
    """Row r of _layer_norm_rows."""
    base = np.uint64(r * n)
    m, inv = _row_stats(x, base, n, eps)
    mf, invf = x.dtype.type(m), x.dtype.type(inv)
    for j in range(np.uint64(n)):
        y[base + j] = (x[base + j] - mf) * invf * scale[j] + bias[j]
    mean[r] = m
    inv_std[r] = inv


@blas.threaded_njit(error_model="numpy", fastmath={"reassoc", "contract"})
def _layer_norm_rows(x, y, scale, bias, mean, inv_std, n, eps):
    """_normalize_rows with LayerNormalization's scale and bias (n values each) applied in
    the same pass, instead of two more numpy passes over y."""
    run_parts(_layer_norm_row, mean.size, (x, y, scale, bias, mean, inv_std, n, eps))


def _rows_normalizer(rows, n, dtype, eps):
    """A function normalizing x viewed as (rows, n) into y; returns (mean, inv_std) buffers,
    which are allocated once here and overwritten by every call."""
    dtype = compute_dtype(dtype)
    mean, inv_std = np.empty(rows), np.empty(rows)

    def run(x, y):
        xv = np.ascontiguousarray(x, dtype).reshape(-1)
        if y.dtype == dtype:
            _normalize_rows(xv, y.reshape(-1), mean, inv_std, n, eps)
        else:  # float16: normalized in float32
            tmp = np.empty(y.size, dtype)
            _normalize_rows(xv, tmp, mean, inv_std, n, eps)
            y.reshape(-1)[...] = tmp
        return mean, inv_std
    return run


@register("BatchNormalization")
class BatchNormalization(Op):
    """Inference: y = (x - mean) / sqrt(var + epsilon) * scale + B, per channel (axis 1).

    Before opset 9 `spatial=0` gives per-activation statistics of shape X.shape[1:]; before
    opset 7 `is_test` is an attribute. From opset 14, training_mode=1 normalizes with the
    batch statistics and outputs the updated running mean and variance; the training
    outputs of earlier opsets (saved mean and variance) are not implemented."""

    def _param_shape(self, ctx):
        x = _float_input(ctx)
        if len(x.shape) < 2:
            raise ctx.fail(f"X must have rank >= 2 (N, C, ...), got shape {list(x.shape)}")
        if (ctx.attr("training_mode", 0) or ctx.num_outputs > 1) and not self._training(ctx):
            raise ctx.fail("training mode before opset 14 (saved statistics outputs) is not implemented",
                           NotImplemented)
        per_activation = ctx.opset < 9 and ctx.attr("spatial", 1) == 0
        shape = tuple(x.shape[1:]) if per_activation else (x.shape[1],)
        for i, name in enumerate(("scale", "B", "mean", "var"), 1):
            p = ctx.inputs[i]
            if p.size != int(np.prod(shape)) or len(p.shape) > len(shape):
                raise ctx.fail(f"{name} must have shape {list(shape)}, got {list(p.shape)}")
        return shape + (1,) * (len(x.shape) - 1 - len(shape))

    @staticmethod
    def _training(ctx) -> bool:
        """Opset 14+: batch statistics normalize, and the running ones are updated."""
        return ctx.opset >= 14 and bool(ctx.attr("training_mode", 0))

    def infer(self, ctx):
        self._param_shape(ctx)
        x = Info(tuple(ctx.inputs[0].shape), np.dtype(ctx.inputs[0].dtype))
        stats = [Info(tuple(ctx.inputs[i].shape), np.dtype(ctx.inputs[i].dtype)) for i in (3, 4)]
        return [x] + stats[:ctx.num_outputs - 1]

    def kernel(self, ctx):
        shape = self._param_shape(ctx)
        eps, dtype = float(ctx.attr("epsilon", 1e-5)), np.dtype(ctx.inputs[0].dtype)
        if self._training(ctx):
            return self._training_kernel(ctx, shape, eps)

        def affine(scale, bias, mean, var):
            """y = x * a + b, with a and b computed in float64 then rounded once."""
            a = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
            b = bias - mean.astype(np.float64) * a
            return a.astype(dtype).reshape(shape), b.astype(dtype).reshape(shape)

        params = ctx.inputs[1:5]
        if all(p.static for p in params):  # the usual case: folded once per plan
            fixed = affine(*[p.value for p in params])
        else:
            fixed = None

        def run(x, scale, bias, mean, var, y):
            a, b = fixed or affine(scale, bias, mean, var)
            np.multiply(x, a, out=y)
            y += b
        return run


    @staticmethod
    def _training_kernel(ctx, shape, eps):
        momentum = float(ctx.attr("momentum", 0.9))
        n_out = ctx.num_outputs

        def run(x, scale, bias, mean, var, *outs):
            axes = (0,) + tuple(range(2, x.ndim))
            batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)
            y = (x - batch_mean.reshape(shape)) / np.sqrt(batch_var.reshape(shape) + eps)
            outs[0][...] = y * scale.reshape(shape) + bias.reshape(shape)
            running = [mean * momentum + batch_mean * (1 - momentum), var * momentum + batch_var * (1 - momentum)]
            for o, r in zip(outs[1:n_out], running):
                o[...] = r
        return run


@register("LRN")
class LRN(Op):
    """y = x / (bias + alpha / size * sum of x^2 over the `size` channels around)^beta."""

    def infer(self, ctx):
        x = _float_input(ctx)
        if len(x.shape) < 3:
            raise ctx.fail(f"X must be (N, C, spatial...), got shape {list(x.shape)}")
        if ctx.attr("size") is None or int(ctx.attr("size")) < 1:
            raise ctx.fail("attribute size must be a positive integer")
        return [Info(tuple(x.shape), np.dtype(x.dtype))]

    def kernel(self, ctx):
        out = self.infer(ctx)[0]
        size = int(ctx.attr("size"))
        alpha, beta, bias = float(ctx.attr("alpha", 1e-4)), float(ctx.attr("beta", 0.75)), float(ctx.attr("bias", 1.0))
        c = out.shape[1]
        before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
        # scratch: squares and window sums, allocated once per plan
        sq, acc = np.empty(out.shape, out.dtype), np.empty(out.shape, out.dtype)

        def run(x, y):
            np.multiply(x, x, out=sq)
            acc.fill(0)
            for off in range(-before, after + 1):  # acc[:, k] += sq[:, k + off], where in range
                lo, hi = max(0, -off), min(c, c - off)
                if lo < hi:
                    window = acc[:, lo:hi]
                    np.add(window, sq[:, lo + off:hi + off], out=window)
            np.multiply(acc, alpha / size, out=acc)
            np.add(acc, bias, out=acc)
            np.power(acc, -beta, out=acc)
            np.multiply(x, acc, out=y)
        return run


@register("InstanceNormalization")
class InstanceNormalization(Op):
    """Per (n, c) normalization over the spatial dims, then scale[c] and B[c]."""

    def infer(self, ctx):
        x = _float_input(ctx)
        if len(x.shape) < 3:
            raise ctx.fail(f"X must be (N, C, spatial...), got shape {list(x.shape)}")
        for i, name in ((1, "scale"), (2, "B")):
            if tuple(ctx.inputs[i].shape) != (x.shape[1],):
                raise ctx.fail(f"{name} must have shape [{x.shape[1]}], got {list(ctx.inputs[i].shape)}")
        return [Info(tuple(x.shape), np.dtype(x.dtype))]

    def kernel(self, ctx):
        out = self.infer(ctx)[0]
        n, c = out.shape[:2]
        p = int(np.prod(out.shape[2:]))
        normalize = _rows_normalizer(n * c, p, out.dtype, float(ctx.attr("epsilon", 1e-5)))

        def run(x, scale, bias, y):
            normalize(x, y)
            yv = y.reshape(n, c, p)
            yv *= scale.reshape(c, 1)
            yv += bias.reshape(c, 1)
        return run


@register("LayerNormalization", since=17)
class LayerNormalization(Op):
    """Normalizes over the dims from `axis` on; optional outputs Mean and InvStdDev have
    X's shape with those dims set to 1."""

    def _split(self, ctx):
        x = _float_input(ctx)
        axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), len(x.shape))
        inner = tuple(x.shape[axis:])
        for i, name in ((1, "Scale"), (2, "B")):
            p = ctx.input(i)
            if p is not None and (len(p.shape) > len(inner) or broadcast_shapes(ctx, p.shape, inner) != inner):
                raise ctx.fail(f"{name} of shape {list(p.shape)} does not broadcast to the normalized "
                               f"shape {list(inner)}")
        return x, axis

    def infer(self, ctx):
        x, axis = self._split(ctx)
        stats = Info(tuple(x.shape[:axis]) + (1,) * (len(x.shape) - axis),
                     np.dtype(np.float32) if x.dtype == np.float16 else np.dtype(x.dtype))
        return [Info(tuple(x.shape), np.dtype(x.dtype))] + [stats] * (ctx.num_outputs - 1)

    def kernel(self, ctx):
        x, axis = self._split(ctx)
        rows, n = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))
        eps = float(ctx.attr("epsilon", 1e-5))
        normalize = _rows_normalizer(rows, n, x.dtype, eps)
        bias_info = ctx.input(2)
        if np.dtype(x.dtype) in (np.float32, np.float64) and ctx.inputs[1].size == n and \
                all(i is None or (i.size == n and i.dtype == x.dtype) for i in (ctx.inputs[1], bias_info)):
            # scale and bias with one value per normalized element: all in one kernel
            mean, inv_std = np.empty(rows), np.empty(rows)
            no_bias = np.zeros(n, x.dtype)

            def fused(x, scale, *rest):
                bias, outs = (rest[0], rest[1:]) if len(ctx.inputs) > 2 else (None, rest)
                _layer_norm_rows(np.ascontiguousarray(x).reshape(-1), outs[0].reshape(-1),
                                 np.ascontiguousarray(scale).reshape(-1),
                                 no_bias if bias is None else np.ascontiguousarray(bias).reshape(-1),
                                 mean, inv_std, n, eps)
                for o, v in zip(outs[1:], (mean, inv_std)):
                    if o is not None:
                        o.reshape(-1)[...] = v
            return fused

        def run(x, scale, *rest):
            # (x, scale, y...), or (x, scale, bias, y...) where bias may be None
            bias, outs = (rest[0], rest[1:]) if len(ctx.inputs) > 2 else (None, rest)
            y = outs[0]
            mean, inv_std = normalize(x, y)
            y *= scale
            if bias is not None:
                y += bias
            for o, v in zip(outs[1:], (mean, inv_std)):
                if o is not None:
                    o.reshape(-1)[...] = v
        return run


@register("LpNormalization")
class LpNormalization(Op):
    """x / ||x||_p along one axis (p is 1 or 2); a zero norm gives 0, not NaN."""

    def infer(self, ctx):
        x = ctx.inputs[0]
        normalize_axis(ctx, int(ctx.attr("axis", -1)), len(x.shape))
        if int(ctx.attr("p", 2)) not in (1, 2):
            raise ctx.fail(f"p must be 1 or 2, got {ctx.attr('p')}")
        return [Info(tuple(x.shape), x.dtype)]

    def kernel(self, ctx):
        axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), len(ctx.inputs[0].shape))
        p = int(ctx.attr("p", 2))

        def run(x, y):
            a = np.abs(x)
            norm = a.sum(axis=axis, keepdims=True) if p == 1 else np.sqrt((a * a).sum(axis=axis, keepdims=True))
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(x, norm, out=y)
            y[np.broadcast_to(norm == 0, y.shape)] = 0
        return run


def _stash_dtype(ctx):
    """The type the statistics are computed in: stash_type 1 is float32 (the default), 11
    float64."""
    stash = int(ctx.attr("stash_type", 1))
    if stash not in (1, 11):
        raise ctx.fail(f"stash_type {stash} is not supported (1: float32, 11: float64)", NotImplemented)
    return np.dtype(np.float32 if stash == 1 else np.float64)


def _float_or_narrow(ctx, i=0):
    x = ctx.inputs[i]
    if np.dtype(x.dtype).kind != "f" and not is_narrow_float(x.dtype):
        raise ctx.fail(f"input {i} must be a float tensor, got {x.dtype}")
    return x


@register("GroupNormalization", since=18)
class GroupNormalization(Op):
    """Normalizes each group of num_groups consecutive channels of each instance, then
    applies scale and bias: one per group in opset 18, one per channel from 21."""

    def _check(self, ctx):
        x = _float_or_narrow(ctx)
        if len(x.shape) < 2:
            raise ctx.fail(f"X must be (N, C, ...), got shape {list(x.shape)}")
        groups = ctx.attr("num_groups")
        c = x.shape[1]
        if groups is None or int(groups) < 1 or c % int(groups):
            raise ctx.fail(f"num_groups {groups} must be a positive divisor of the {c} channels")
        groups = int(groups)
        size = c if ctx.opset >= 21 else groups
        for i, name in ((1, "scale"), (2, "bias")):
            p = ctx.inputs[i]
            if tuple(p.shape) != (size,):
                raise ctx.fail(f"{name} must have shape [{size}] (one per {'channel' if ctx.opset >= 21 else 'group'}"
                               f" in opset {ctx.opset}), got {list(p.shape)}")
        return x, groups

    def infer(self, ctx):
        x, _ = self._check(ctx)
        return [Info(tuple(x.shape), np.dtype(x.dtype))]

    def kernel(self, ctx):
        x, groups = self._check(ctx)
        n, c = x.shape[:2]
        p = int(np.prod(x.shape[2:]))
        stash, dtype = _stash_dtype(ctx), np.dtype(x.dtype)
        normalize = _rows_normalizer(n * groups, c // groups * p, stash, float(ctx.attr("epsilon", 1e-5)))
        per_group = ctx.opset < 21
        normed = np.empty(x.shape, stash)

        def run(x, scale, bias, y):
            normalize(x, normed)
            if per_group:
                scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
            # the normalized values are rounded to X's type before the scale and bias
            v = normed.astype(dtype, copy=False).reshape(n, c, p)
            yv = y.reshape(n, c, p)
            np.multiply(v, scale.reshape(c, 1), out=yv)
            yv += bias.reshape(c, 1)
        return run


@register("RMSNormalization", since=23)
class RMSNormalization(Op):
    """x / sqrt(mean(x^2 over the dims from axis on) + epsilon) * scale; Y has scale's type."""

    def _check(self, ctx):
        x, scale = _float_or_narrow(ctx), _float_or_narrow(ctx, 1)
        axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), len(x.shape))
        if len(scale.shape) > len(x.shape) or broadcast_shapes(ctx, x.shape, scale.shape) != tuple(x.shape):
            raise ctx.fail(f"scale of shape {list(scale.shape)} does not broadcast to X's shape {list(x.shape)}")
        return x, scale, axis

    def infer(self, ctx):
        x, scale, _ = self._check(ctx)
        return [Info(tuple(x.shape), np.dtype(scale.dtype))]

    def kernel(self, ctx):
        x, scale, axis = self._check(ctx)
        rows, n = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))
        stash, dtype = _stash_dtype(ctx), np.dtype(x.dtype)
        eps = stash.type(ctx.attr("epsilon", 1e-5))
        square = np.empty((rows, n), stash)
        ms = np.empty((rows, 1), stash)

        def run(x, scale, y):
            xv = x.reshape(rows, n).astype(stash)
            np.multiply(xv, xv, out=square)
            np.mean(square, axis=1, keepdims=True, out=ms)
            np.add(ms, eps, out=ms)
            np.sqrt(ms, out=ms)
            normed = (xv / ms).astype(dtype).reshape(x.shape)
            y[...] = normed.astype(y.dtype) * scale
        return run


@register("MeanVarianceNormalization", since=9)
class MeanVarianceNormalization(Op):
    """(x - mean) / (std + 1e-9) over `axes` (default [0, 2, 3]). The variance is taken
    around the mean in float64: never negative, unlike E[x^2] - E[x]^2 in the schema's
    function body, whose rounding can give NaN for near-constant data."""

    def _axes(self, ctx):
        x = _float_or_narrow(ctx)
        axes = [normalize_axis(ctx, int(a), len(x.shape), "axes") for a in ctx.attr("axes", [0, 2, 3])]
        if len(set(axes)) != len(axes):
            raise ctx.fail(f"axes {list(ctx.attr('axes'))} repeat a dim")
        return tuple(axes)

    def infer(self, ctx):
        self._axes(ctx)
        return [Info(tuple(ctx.inputs[0].shape), np.dtype(ctx.inputs[0].dtype))]

    def kernel(self, ctx):
        axes = self._axes(ctx)

        def run(x, y):
            v = x.astype(np.float64)
            d = v - v.mean(axis=axes, keepdims=True)
            std = np.sqrt((d * d).mean(axis=axes, keepdims=True))
            y[...] = d / (std + 1e-9)
        return run
