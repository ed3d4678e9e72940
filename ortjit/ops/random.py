"""Random generators: RandomUniform(Like), RandomNormal(Like), Bernoulli, Multinomial.
A `seed` attribute seeds numpy's generator once per plan, so that a session's draws are
reproducible run after run; without one, every plan draws fresh entropy. Never folded."""
from __future__ import annotations

import numpy as np

from ..dtypes import to_numpy
from .base import Info, Op
from .registry import register


class _Random(Op):
    nondeterministic = True

    def _rng(self, ctx):
        seed = ctx.attr("seed")
        return np.random.RandomState(None if seed is None else int(np.float32(seed).view(np.uint32)))

    def _dtype(self, ctx, default):
        dt = ctx.attr("dtype")
        return to_numpy(dt) if dt is not None else np.dtype(default)


class _RandomShaped(_Random):
    """Shape from the `shape` attribute, or from the input (the *Like variants)."""
    like = False

    def infer(self, ctx):
        if self.like:
            x = ctx.inputs[0]
            return [Info(tuple(x.shape), self._dtype(ctx, x.dtype))]
        return [Info(tuple(int(d) for d in ctx.attr("shape")), self._dtype(ctx, np.float32))]

    def kernel(self, ctx):
        rng, draw = self._rng(ctx), self.draw

        def run(*args):
            y = args[-1]
            y[...] = draw(ctx, rng, y.shape)
        return run


class _Uniform(_RandomShaped):
    @staticmethod
    def draw(ctx, rng, shape):
        return rng.uniform(float(ctx.attr("low", 0.0)), float(ctx.attr("high", 1.0)), shape)


class _Normal(_RandomShaped):
    @staticmethod
    def draw(ctx, rng, shape):
        return rng.normal(float(ctx.attr("mean", 0.0)), float(ctx.attr("scale", 1.0)), shape)


register("RandomUniform")(type("RandomUniform", (_Uniform,), {}))
register("RandomUniformLike")(type("RandomUniformLike", (_Uniform,), {"like": True}))
register("RandomNormal")(type("RandomNormal", (_Normal,), {}))
register("RandomNormalLike")(type("RandomNormalLike", (_Normal,), {"like": True}))


@register("Bernoulli")
class Bernoulli(_Random):
    def infer(self, ctx):
        x = ctx.inputs[0]
        return [Info(tuple(x.shape), self._dtype(ctx, x.dtype))]

    def kernel(self, ctx):
        rng = self._rng(ctx)

        def run(p, y):
            if np.any((p < 0) | (p > 1)):
                raise ctx.fail("probabilities must be within [0, 1]")
            y[...] = rng.uniform(0.0, 1.0, p.shape) < p
        return run


@register("Multinomial")
class Multinomial(_Random):
    """sample_size draws per batch row from its unnormalized log-probabilities."""

    def infer(self, ctx):
        x = ctx.inputs[0]
        return [Info((x.shape[0], int(ctx.attr("sample_size", 1))), self._dtype(ctx, np.int32))]

    def kernel(self, ctx):
        rng = self._rng(ctx)
        n = int(ctx.attr("sample_size", 1))

        def run(logits, y):
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
            u = rng.uniform(0.0, 1.0, (logits.shape[0], n))
            y[...] = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(axis=2), logits.shape[1] - 1)
        return run
