"""GridSample: X sampled at the normalized positions of a grid (nearest, N-linear or
N-cubic; zeros, border or reflection padding), as PyTorch's grid_sample does. Vectorized
over all output positions: one gather per interpolation tap. AffineGrid makes such grids;
Col2Im folds columns back into an image."""
from __future__ import annotations

import itertools

import numpy as np

from .base import Info, Op, is_narrow_float
from .registry import register


def _text(v, default):
    v = default if v is None else v
    return v.decode() if isinstance(v, bytes) else v


def _reflect(x, lo, hi):
    """Reflect by the nearer border until inside [lo, hi]."""
    rng = hi - lo
    if rng <= 0:
        return np.full_like(x, lo)
    below, above = x < lo, x > hi
    d = np.where(below, lo - x, np.where(above, x - hi, 0.0))
    n = np.floor(d / rng)
    r = d - n * rng
    even = n % 2 == 0
    fx = np.where(below, np.where(even, lo + r, hi - r), x)
    return np.where(above, np.where(even, hi - r, lo + r), fx)


def _cubic(t, a=-0.75):
    t = np.abs(t)
    return [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a]


@register("GridSample")
class GridSample(Op):
    def infer(self, ctx):
        x, grid = ctx.inputs[0], ctx.inputs[1]
        r = len(x.shape) - 2
        if r < 1 or len(grid.shape) != r + 2 or grid.shape[-1] != r or grid.shape[0] != x.shape[0]:
            raise ctx.fail(f"grid {list(grid.shape)} must be (N, out..., {r}) for X {list(x.shape)}")
        return [Info((x.shape[0], x.shape[1], *grid.shape[1:-1]), x.dtype)]

    def kernel(self, ctx):
        mode = _text(ctx.attr("mode"), "linear")
        mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
        padding = _text(ctx.attr("padding_mode"), "zeros")
        align = bool(ctx.attr("align_corners", 0))
        if mode not in ("nearest", "linear", "cubic") or padding not in ("zeros", "border", "reflection"):
            raise ctx.fail(f"mode {mode!r} / padding_mode {padding!r} is not supported")
        dims = ctx.inputs[0].shape[2:]
        r = len(dims)
        lows = [0.0 if align else -0.5] * r
        highs = [d - 1.0 if align else d - 0.5 for d in dims]

        def pixel_index(i, k):
            """An integer tap index on dim k -> (index to gather, weight mask for 'zeros')."""
            if padding == "zeros":
                inside = (i >= 0) & (i < dims[k])
                return np.clip(i, 0, dims[k] - 1), inside
            if padding == "border":
                return np.clip(i, 0, dims[k] - 1), None
            return np.clip(_reflect(i.astype(np.float64), lows[k], highs[k]).astype(np.int64), 0, dims[k] - 1), None

        def run(x, grid, y):
            n = x.shape[0]
            g = grid.astype(np.float64)[..., ::-1]  # the grid lists the last dim first
            coords = []
            for k in range(r):
                v = (g[..., k] + 1) / 2 * (dims[k] - 1) if align else ((g[..., k] + 1) * dims[k] - 1) / 2
                if mode == "nearest":
                    v = np.rint(v)
                outside = (v < lows[k]) | (v > highs[k])
                if padding == "border":
                    v = np.where(outside, np.clip(v, 0, dims[k] - 1), v)
                elif padding == "reflection":
                    v = np.where(outside, _reflect(v, lows[k], highs[k]), v)
                coords.append(v)
            batch = np.arange(n).reshape((n,) + (1,) * (g.ndim - 2))
            if mode == "nearest":
                taps = [[(coords[k].astype(np.int64), 1.0)] for k in range(r)]
            elif mode == "linear":
                taps = []
                for v in coords:
                    base = np.floor(v)
                    t = v - base
                    base = base.astype(np.int64)
                    taps.append([(base, 1 - t), (base + 1, t)])
            else:
                taps = []
                for v in coords:
                    base = np.floor(v)
                    w = _cubic(v - base)
                    base = base.astype(np.int64)
                    taps.append([(base + j - 1, w[j]) for j in range(4)])
            acc = np.zeros((n, *grid.shape[1:-1], x.shape[1]), np.float64)
            for combo in itertools.product(*taps):
                weight = 1.0
                index = []
                for k, (i, w) in enumerate(combo):
                    gi, inside = pixel_index(i, k)
                    index.append(gi)
                    weight = weight * w if inside is None else weight * w * inside
                values = x[(batch, slice(None), *index)]  # (N, out..., C)
                acc += values * np.asarray(weight)[..., None]
            y[...] = np.moveaxis(acc, -1, 1)
        return run


@register("AffineGrid", since=20)
class AffineGrid(Op):
    """theta (N, 2, 3) or (N, 3, 4) applied to the normalized coordinates of every position
    of a (H, W) or (D, H, W) image; grid[..., 0] is x (the width), as GridSample reads it."""

    def _size(self, ctx):
        theta = ctx.inputs[0]
        if np.dtype(theta.dtype).kind != "f" and not is_narrow_float(theta.dtype):
            raise ctx.fail(f"theta must be a float tensor, got {theta.dtype}")
        size = [int(v) for v in np.asarray(ctx.value(1, "size")).reshape(-1)]
        r = len(size) - 2
        if r not in (2, 3) or tuple(theta.shape) != (size[0], r, r + 1) or min(size) < 0:
            raise ctx.fail(f"size {size} must be (N, C, H, W) or (N, C, D, H, W) with theta {list(theta.shape)} "
                           "of shape (N, 2, 3) or (N, 3, 4)")
        return size[2:]

    def infer(self, ctx):
        dims = self._size(ctx)
        return [Info((ctx.inputs[0].shape[0], *dims, len(dims)), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        dims = self._size(ctx)
        align = bool(ctx.attr("align_corners", 0))

        def axis(n):
            if align:
                return np.linspace(-1.0, 1.0, n) if n > 1 else np.full(n, -1.0)
            return (2 * np.arange(n) + 1) / n - 1

        # homogeneous base coordinates (x, y[, z], 1) of every output position, once per plan
        mesh = np.meshgrid(*[axis(n) for n in dims], indexing="ij")
        base = np.stack([m.ravel() for m in reversed(mesh)] + [np.ones(int(np.prod(dims)))], axis=1)

        def run(theta, _size, grid):
            grid.reshape(theta.shape[0], base.shape[0], len(dims))[...] = \
                np.matmul(base, theta.astype(np.float64).transpose(0, 2, 1))
        return run


@register("Col2Im")
class Col2Im(Op):
    """Sums column blocks back into an image (PyTorch's fold): the inverse layout of im2col."""

    def _geometry(self, ctx):
        x = ctx.inputs[0]
        image = [int(v) for v in np.asarray(ctx.value(1, "image_shape")).reshape(-1)]
        block = [int(v) for v in np.asarray(ctx.value(2, "block_shape")).reshape(-1)]
        r = len(image)
        strides = [int(s) for s in (ctx.attr("strides") or [1] * r)]
        dilations = [int(d) for d in (ctx.attr("dilations") or [1] * r)]
        pads = [int(p) for p in (ctx.attr("pads") or [0] * (2 * r))]
        if len(block) != r or len(strides) != r or len(dilations) != r or len(pads) != 2 * r:
            raise ctx.fail(f"image_shape {image}, block_shape {block}, strides, dilations and pads "
                           "must give one value per spatial dim (pads two)")
        if min(image + block + strides + dilations, default=1) < 1 or min(pads, default=0) < 0:
            raise ctx.fail(f"image_shape {image}, block_shape {block}, strides {strides} and dilations "
                           f"{dilations} must be positive, pads {pads} non-negative")
        counts = [(i + pads[k] + pads[k + r] - d * (b - 1) - 1) // s + 1
                  for k, (i, b, s, d) in enumerate(zip(image, block, strides, dilations))]
        k = int(np.prod(block))
        if len(x.shape) != 3 or min(counts) < 1 or x.shape[1] % k or x.shape[2] != int(np.prod(counts)):
            raise ctx.fail(f"input {list(x.shape)} does not hold blocks {block} of image {image}")
        return image, block, strides, dilations, pads, counts, x.shape[1] // k

    def infer(self, ctx):
        image, *_, c = self._geometry(ctx)
        return [Info((ctx.inputs[0].shape[0], c, *image), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        image, block, strides, dilations, pads, counts, c = self._geometry(ctx)
        r = len(image)
        n = ctx.inputs[0].shape[0]
        padded = np.empty((n, c, *[i + pads[k] + pads[k + r] for k, i in enumerate(image)]), ctx.inputs[0].dtype)
        crop = (slice(None), slice(None)) + tuple(slice(pads[k], pads[k] + i) for k, i in enumerate(image))

        def run(x, _image, _block, y):
            cols = x.reshape(n, c, *block, *counts)
            padded.fill(0)
            for tap in np.ndindex(*block):
                where = tuple(slice(t * d, t * d + (m - 1) * s + 1, s)
                              for t, d, m, s in zip(tap, dilations, counts, strides))
                padded[(slice(None), slice(None)) + where] += cols[(slice(None), slice(None)) + tap]
            y[...] = padded[crop]
        return run
