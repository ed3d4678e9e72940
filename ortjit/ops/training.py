"""The optimizer steps of ai.onnx.preview.training: Adagrad, Momentum (standard and
Nesterov) and Adam, each updating any number of tensors in one node:
inputs (R, T, X..., G..., state...), outputs (X_new..., state_new...)."""
from __future__ import annotations

import numpy as np

from .base import Info, Op
from .registry import register

TRAINING = "ai.onnx.preview.training"


class _Optimizer(Op):
    mode = "return"
    states = 1  # optimizer state tensors per updated tensor

    def _count(self, ctx):
        n, rem = divmod(len(ctx.inputs) - 2, 2 + self.states)
        if rem or n == 0:
            raise ctx.fail(f"expects R, T, then X, G and {self.states} state tensor(s) per updated tensor")
        return n

    def infer(self, ctx):
        n = self._count(ctx)
        xs = ctx.inputs[2:2 + n]
        return [Info(tuple(x.shape), x.dtype) for x in xs] * (1 + self.states)

    def kernel(self, ctx):
        n = self._count(ctx)
        attrs = {k: v for k, v in ctx.attrs.items()}

        def run(r, t, *tensors):
            r, t = float(np.asarray(r).reshape(-1)[0]), int(np.asarray(t).reshape(-1)[0])
            groups = [tensors[k * n:(k + 1) * n] for k in range(2 + self.states)]
            new_x, new_states = [], [[] for _ in range(self.states)]
            for j in range(n):
                x, *states = self.step(r, t, groups[0][j], groups[1][j], [g[j] for g in groups[2:]], attrs)
                new_x.append(x.astype(groups[0][j].dtype))
                for k, s in enumerate(states):
                    new_states[k].append(s.astype(groups[2 + k][j].dtype))
            return tuple(new_x) + tuple(s for group in new_states for s in group)
        return run


@register("Adagrad", domain=TRAINING)
class Adagrad(_Optimizer):
    def step(self, r, t, x, g, states, a):
        (h,) = states
        rate = r / (1 + t * float(a.get("decay_factor", 0.0)))
        g = float(a.get("norm_coefficient", 0.0)) * x + g
        h = h + g * g
        return x - rate * g / (np.sqrt(h) + float(a.get("epsilon", 0.0))), h


@register("Momentum", domain=TRAINING)
class Momentum(_Optimizer):
    def step(self, r, t, x, g, states, a):
        (v,) = states
        alpha, beta = float(a.get("alpha")), float(a.get("beta"))
        g = float(a.get("norm_coefficient")) * x + g
        v = alpha * v + (beta if t > 0 else 1.0) * g
        mode = a.get("mode", "standard")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode == "nesterov":
            return x - r * (g + alpha * v), v
        return x - r * v, v


@register("Adam", domain=TRAINING)
class Adam(_Optimizer):
    states = 2

    def step(self, r, t, x, g, states, a):
        v, h = states
        alpha, beta = float(a.get("alpha", 0.9)), float(a.get("beta", 0.999))
        g = float(a.get("norm_coefficient", 0.0)) * x + g
        v = alpha * v + (1 - alpha) * g
        h = beta * h + (1 - beta) * g * g
        rate = r * np.sqrt(1 - beta ** t) / (1 - alpha ** t) if t > 0 else r
        x = x - rate * (v / (np.sqrt(h) + float(a.get("epsilon", 1e-6))))
        return (1 - float(a.get("norm_coefficient_post", 0.0))) * x, v, h
