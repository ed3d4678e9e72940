"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (log-softmax over the class axis,
then the same loss). Input (N, C, d...), target (N, d...) of class indices, optional
per-class weight (C,). A target equal to ignore_index contributes nothing, to the sum or
to the weights that 'mean' divides by."""
from __future__ import annotations

import numpy as np

from .base import Info, Op, is_narrow_float
from .registry import register


def _reduction(ctx):
    r = ctx.attr("reduction", "mean")
    r = r.decode() if isinstance(r, bytes) else r
    if r not in ("none", "sum", "mean"):
        raise ctx.fail(f"reduction must be none, sum or mean, got {r!r}")
    return r


class _Loss(Op):
    def _check(self, ctx):
        x, t, w = ctx.inputs[0], ctx.inputs[1], ctx.input(2)
        if np.dtype(x.dtype).kind != "f" and not is_narrow_float(x.dtype):
            raise ctx.fail(f"input must be a float tensor, got {x.dtype}")
        if np.dtype(t.dtype) not in (np.int32, np.int64):
            raise ctx.fail(f"target must be int32 or int64, got {t.dtype}")
        if len(x.shape) < 2 or tuple(t.shape) != (x.shape[0], *x.shape[2:]):
            raise ctx.fail(f"input {list(x.shape)} must be (N, C, d...) and target {list(t.shape)} (N, d...)")
        if w is not None and (tuple(w.shape) != (x.shape[1],) or w.dtype != x.dtype):
            raise ctx.fail(f"weight must be a {x.dtype} tensor of shape [{x.shape[1]}], got {w.dtype} {list(w.shape)}")
        return _reduction(ctx)

    def infer(self, ctx):
        reduction = self._check(ctx)
        x, t = ctx.inputs[0], ctx.inputs[1]
        loss = Info(tuple(t.shape) if reduction == "none" else (), np.dtype(x.dtype))
        return [loss, Info(tuple(x.shape), np.dtype(x.dtype))][:ctx.num_outputs]

    def kernel(self, ctx):
        reduction = self._check(ctx)
        x = ctx.inputs[0]
        n, c = x.shape[:2]
        d = int(np.prod(x.shape[2:]))
        ignore = ctx.attr("ignore_index")
        softmax = self.softmax

        def run(scores, target, *rest):
            weight = rest[0] if len(ctx.inputs) > 2 else None
            outs = rest[1:] if len(ctx.inputs) > 2 else rest
            logp = scores.astype(np.float64).reshape(n, c, d)
            if softmax:
                shifted = logp - logp.max(axis=1, keepdims=True)
                logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
                if len(outs) > 1 and outs[1] is not None:
                    outs[1][...] = logp.reshape(outs[1].shape)
            t = target.reshape(n, d).astype(np.int64)
            used = np.ones(t.shape, bool) if ignore is None else t != int(ignore)
            cls = t[used]
            if cls.size and (cls.min() < 0 or cls.max() >= c):
                bad = cls[(cls < 0) | (cls >= c)][0]
                raise ctx.fail(f"target value {int(bad)} is not a class index in [0, {c - 1}] nor ignore_index")
            t = np.where(used, t, 0)
            picked = np.take_along_axis(logp, t[:, None, :], axis=1)[:, 0, :]
            w = used.astype(np.float64) if weight is None else np.where(used, weight.astype(np.float64)[t], 0.0)
            loss = np.where(used, -picked * w, 0.0)
            if reduction == "sum":
                loss = loss.sum()
            elif reduction == "mean":
                with np.errstate(divide="ignore", invalid="ignore"):
                    loss = loss.sum() / w.sum()  # every target ignored: 0/0, NaN
            outs[0][...] = np.reshape(loss, outs[0].shape)
        return run


@register("NegativeLogLikelihoodLoss", since=12)
class NegativeLogLikelihoodLoss(_Loss):
    softmax = False


@register("SoftmaxCrossEntropyLoss", since=12)
class SoftmaxCrossEntropyLoss(_Loss):
    softmax = True
