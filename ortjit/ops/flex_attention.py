"""FlexAttention (ai.onnx.preview 1): attention over 4-D inputs whose scores and
probabilities may be rewritten by subgraphs, score_mod and prob_mod (masks, biases, soft
caps written as ONNX graphs). Each runs through a GraphRunner, planned once per shape.

Scores are computed in the input type (Q and K each scaled by sqrt(scale), as the
reference does), then the softmax, the modifiers and P @ V run in the softmax precision:
float32 for float16/bfloat16 inputs unless softmax_precision says otherwise. Unlike
Attention there is no fully-masked-row guard: a row of -inf gives NaN, as the reference.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import helper

from ..subgraph import GraphRunner
from .attention import SOFTMAX_PRECISIONS, _row_sum, compute_type, is_float, rounder, scaled_scores
from .base import Info, Op
from .registry import register


@register("FlexAttention", domain="ai.onnx.preview", since=1)
class FlexAttention(Op):
    def _dims(self, ctx):
        q, k, v = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]
        if len(q.shape) != 4 or len(k.shape) != 4 or len(v.shape) != 4:
            raise ctx.fail(f"Q, K and V must be 4-D, got {list(q.shape)}, {list(k.shape)}, {list(v.shape)}")
        b, hq, sq, e = q.shape
        if k.shape[0] != b or v.shape[0] != b or k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2] \
                or k.shape[3] != e:
            raise ctx.fail(f"K {list(k.shape)} and V {list(v.shape)} do not fit Q {list(q.shape)}")
        hkv = k.shape[1]
        if hkv <= 0 or hq % hkv:
            raise ctx.fail(f"the {hq} query heads are not a multiple of the {hkv} key/value heads")
        return b, hq, hkv, sq, k.shape[2], e, v.shape[3]

    def _softmax_type(self, ctx):
        sp = ctx.attr("softmax_precision")
        if sp is None:
            dt = np.dtype(ctx.inputs[0].dtype)
            return np.dtype(np.float32) if dt.itemsize < 4 else dt
        if sp not in SOFTMAX_PRECISIONS:
            raise ctx.fail(f"softmax_precision must be FLOAT, FLOAT16, DOUBLE or BFLOAT16, got {sp}")
        return np.dtype(helper.tensor_dtype_to_np_dtype(sp))

    def infer(self, ctx):
        q = ctx.inputs[0]
        if any(not is_float(x.dtype) or x.dtype != q.dtype for x in ctx.inputs[:3]):
            raise ctx.fail(f"Q, K and V must share a float type, got {[str(x.dtype) for x in ctx.inputs[:3]]}")
        b, hq, _, sq, _, _, dv = self._dims(ctx)
        self._softmax_type(ctx)
        return [Info((b, hq, sq, dv), q.dtype)]

    def _modifier(self, ctx, name):
        attr = ctx.node.attributes.get(name) if ctx.node is not None else None
        return None if attr is None else GraphRunner(attr.value, ctx.extra["opsets"])

    def kernel(self, ctx):
        b, hq, hkv, sq, skv, e, dv = self._dims(ctx)
        g = hq // hkv
        dt = np.dtype(ctx.inputs[0].dtype)
        ct, rnd = compute_type(dt), rounder(dt)
        sd = self._softmax_type(ctx)
        st, srnd, row_sum = compute_type(sd), rounder(sd), _row_sum(sd)
        scale = ctx.attr("scale")
        # sqrt(scale) in float32, then in the input type, as the reference
        s = ct.type(dt.type(np.sqrt(np.float32(1.0 / math.sqrt(e) if scale is None else scale))))
        score_mod, prob_mod = self._modifier(ctx, "score_mod"), self._modifier(ctx, "prob_mod")
        captured = ctx.extra.get("captured", [])
        n_in = len(ctx.inputs)
        qs, ks = np.empty((b, hq, sq, e), ct), np.empty((b, hkv, skv, e), ct)
        scores = np.empty((b, hkv, g * sq, skv), ct)
        w = np.empty((b, hq, sq, skv), st)
        stat = np.empty((b, hq, sq, 1), st)
        vf = np.empty((b, hkv, skv, dv), st)
        yc = np.empty((b, hkv, g * sq, dv), st)

        def modify(runner, outer):
            """w <- runner(w), given and taken in the softmax type."""
            out = runner.run([w.astype(sd)], outer)
            if len(out) != 1 or np.shape(out[0]) != w.shape:
                raise ctx.fail(f"a modifier subgraph must give one tensor of shape {list(w.shape)}, got "
                               f"{[list(np.shape(o)) for o in out]}")
            w[...] = np.asarray(out[0]).astype(sd)

        def run(*args):
            q, k, v = args[:3]
            outer = dict(zip(captured, args[n_in:n_in + len(captured)]))
            y = args[-1]
            scaled_scores(q, k, qs, ks, scores, s, rnd, (b, hkv, g * sq, e))
            w[...] = scores.reshape(w.shape)
            srnd(w)
            if score_mod is not None:
                modify(score_mod, outer)
            if w.size:
                np.max(w, axis=-1, keepdims=True, out=stat)
                np.subtract(w, stat, out=w)
                srnd(w)
                np.exp(w, out=w)
                srnd(w)
                row_sum(w, stat)
                np.divide(w, stat, out=w)
                srnd(w)
            if prob_mod is not None:
                modify(prob_mod, outer)
            vf[...] = v
            srnd(vf)
            np.matmul(w.reshape(b, hkv, g * sq, skv), vf, out=yc)
            srnd(yc)
            y[...] = yc.reshape(y.shape)
        return run
