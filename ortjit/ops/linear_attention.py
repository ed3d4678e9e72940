"""The recurrent-state ops of opset 27: LinearAttention and CausalConvWithState.

LinearAttention runs the recurrence token by token, as its definition does, in float32
whatever the input type (as the reference does), in one Numba loop per (batch, KV head)
holding that head's (d_k, d_v) state; its query heads read it (GQA) at every step.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernel_cache import njit
from .attention import compute_type, heads_4d, is_float, rounder
from .base import Info, Op
from .registry import register

F32 = np.dtype(np.float32)
RULES = ("linear", "gated", "delta", "gated_delta")


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@njit(cache=True, nogil=True)
def _recurrence(q, k, v, decay, beta, state, out, scale, gating, delta):
    """q (B, Hq, T, dk), k (B, Hkv, T, dk), v (B, Hkv, T, dv), decay (B, Hkv, T, 1 or dk),
    beta (B, 1 or Hkv, T), all float32; state (B, Hkv, dk, dv) is updated in place and
    out (B, Hq, T, dv) written."""
    n_b, n_kv, n_t, dk = k.shape
    dv = v.shape[3]
    group = q.shape[1] // n_kv
    vt = np.empty(dv, np.float32)
    for b in range(n_b):
        for h in range(n_kv):
            s = state[b, h]
            hb = h if beta.shape[1] > 1 else 0
            for t in range(n_t):
                if gating:
                    for d in range(dk):
                        g = np.exp(decay[b, h, t, d if decay.shape[3] > 1 else 0])
                        for m in range(dv):
                            s[d, m] *= g
                for m in range(dv):
                    vt[m] = v[b, h, t, m]
                if delta:  # v <- beta * (v - S^T k): only the part of v the state does not yet hold
                    bt = beta[b, hb, t]
                    for m in range(dv):
                        r = np.float32(0.0)
                        for d in range(dk):
                            r += s[d, m] * k[b, h, t, d]
                        vt[m] = bt * (vt[m] - r)
                for d in range(dk):
                    kd = k[b, h, t, d]
                    for m in range(dv):
                        s[d, m] += kd * vt[m]
                for hq in range(h * group, (h + 1) * group):
                    for m in range(dv):
                        acc = np.float32(0.0)
                        for d in range(dk):
                            acc += q[b, hq, t, d] * s[d, m]
                        out[b, hq, t, m] = scale * acc


@register("LinearAttention", since=27)
class LinearAttention(Op):
    def _dims(self, ctx):
        q, k, v = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]
        hq, hkv = ctx.attr("q_num_heads", 0), ctx.attr("kv_num_heads", 0)
        if hq <= 0 or hkv <= 0 or hq % hkv:
            raise ctx.fail(f"q_num_heads ({hq}) must be a positive multiple of kv_num_heads ({hkv})")
        for name, x in (("query", q), ("key", k), ("value", v)):
            if len(x.shape) != 3 or x.shape[:2] != q.shape[:2]:
                raise ctx.fail(f"query, key and value must be (B, T, H*D) with the same B and T, got "
                               f"{list(q.shape)}, {list(k.shape)}, {list(v.shape)}")
        if q.shape[2] % hq or v.shape[2] % hkv or k.shape[2] != hkv * (q.shape[2] // hq):
            raise ctx.fail(f"hidden sizes {q.shape[2]}, {k.shape[2]}, {v.shape[2]} do not fit {hq} query "
                           f"and {hkv} key/value heads of one head size")
        b, t = q.shape[:2]
        dk, dv = q.shape[2] // hq, v.shape[2] // hkv
        rule = _text(ctx.attr("update_rule", "gated_delta"))
        if rule not in RULES:
            raise ctx.fail(f"update_rule must be one of {', '.join(RULES)}, got '{rule}'")
        gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
        past, decay, beta = ctx.input(3), ctx.input(4), ctx.input(5)
        if gating != (decay is not None) or delta != (beta is not None):
            raise ctx.fail(f"update_rule '{rule}' {'needs' if gating else 'takes no'} decay and "
                           f"{'needs' if delta else 'takes no'} beta")
        if past is not None and tuple(past.shape) != (b, hkv, dk, dv):
            raise ctx.fail(f"past_state of shape {list(past.shape)} must be {[b, hkv, dk, dv]}")
        if decay is not None and (len(decay.shape) != 3 or tuple(decay.shape[:2]) != (b, t)
                                  or decay.shape[2] not in (hkv, hkv * dk)):
            raise ctx.fail(f"decay of shape {list(decay.shape)} must be [{b}, {t}, {hkv}] or [{b}, {t}, {hkv * dk}]")
        if beta is not None and (len(beta.shape) != 3 or tuple(beta.shape[:2]) != (b, t)
                                 or beta.shape[2] not in (hkv, 1)):
            raise ctx.fail(f"beta of shape {list(beta.shape)} must be [{b}, {t}, {hkv}] or [{b}, {t}, 1]")
        return b, t, hq, hkv, dk, dv, gating, delta

    def infer(self, ctx):
        for i, x in enumerate(ctx.inputs):
            if x is not None and (not is_float(x.dtype) or x.dtype == np.float64):
                raise ctx.fail(f"input {i} must be float16, bfloat16 or float32, got {x.dtype}")
        q, past = ctx.inputs[0], ctx.input(3)
        if any(x is not None and x.dtype != q.dtype for i, x in enumerate(ctx.inputs) if i != 3):
            raise ctx.fail("query, key, value, decay and beta must have the same type")
        b, t, hq, hkv, dk, dv, _, _ = self._dims(ctx)
        return [Info((b, t, hq * dv), q.dtype), Info((b, hkv, dk, dv), (q if past is None else past).dtype)]

    def kernel(self, ctx):
        b, t, hq, hkv, dk, dv, gating, delta = self._dims(ctx)
        scale = ctx.attr("scale", 0.0) or 1.0 / math.sqrt(dk)
        scale = np.float32(scale)
        n_in = len(ctx.inputs)
        dummy = np.zeros((1, 1, 1, 1), F32)
        work = np.empty((b, hq, t, dv), F32)

        def f32(x, heads):
            return np.ascontiguousarray(heads_4d(x, heads), dtype=F32)

        def run(*args):
            query, key, value, past, decay, beta = list(args[:n_in]) + [None] * (6 - n_in)
            out, present = args[n_in], args[n_in + 1]
            state = np.zeros((b, hkv, dk, dv), F32) if past is None else past.astype(F32)
            g = dummy if decay is None else \
                np.ascontiguousarray(decay.reshape(b, t, hkv, -1).transpose(0, 2, 1, 3), dtype=F32)
            be = dummy[0] if beta is None else np.ascontiguousarray(beta.transpose(0, 2, 1), dtype=F32)
            _recurrence(f32(query, hq), f32(key, hkv), f32(value, hkv), g, be, state, work, scale, gating, delta)
            out.reshape(b, t, hq, dv)[...] = work.transpose(0, 2, 1, 3)
            present[...] = state
        return run


@register("CausalConvWithState", since=27)
class CausalConvWithState(Op):
    """A depthwise 1-D convolution over [past_state | input] (zeros without a past state),
    optionally followed by SiLU; present_state is the last k - 1 positions of that."""

    def infer(self, ctx):
        x, w, bias, past = ctx.inputs[0], ctx.inputs[1], ctx.input(2), ctx.input(3)
        if not is_float(x.dtype) or x.dtype == np.float64:
            raise ctx.fail(f"input must be float16, bfloat16 or float32, got {x.dtype}")
        if any(i is not None and i.dtype != x.dtype for i in (w, bias, past)):
            raise ctx.fail("input, weight, bias and past_state must have the same type")
        if len(x.shape) != 3 or len(w.shape) != 3 or w.shape[0] != x.shape[1] or w.shape[1] != 1 or w.shape[2] < 1:
            raise ctx.fail(f"input must be (B, C, L) and weight (C, 1, k), got {list(x.shape)} and {list(w.shape)}")
        b, c, _ = x.shape
        k = w.shape[2]
        if bias is not None and tuple(bias.shape) != (c,):
            raise ctx.fail(f"bias of shape {list(bias.shape)} must be [{c}]")
        if past is not None and tuple(past.shape) != (b, c, k - 1):
            raise ctx.fail(f"past_state of shape {list(past.shape)} must be {[b, c, k - 1]}")
        act = _text(ctx.attr("activation", "none"))
        if act not in ("none", "silu", "swish"):
            raise ctx.fail(f"activation must be 'none', 'silu' or 'swish', got '{act}'")
        return [Info(tuple(x.shape), x.dtype), Info((b, c, k - 1), x.dtype)]

    def kernel(self, ctx):
        x_info, k = ctx.inputs[0], ctx.inputs[1].shape[2]
        b, c, n = x_info.shape
        dt = np.dtype(x_info.dtype)
        ct, rnd = compute_type(dt), rounder(dt)
        silu = _text(ctx.attr("activation", "none")) != "none"
        n_in = len(ctx.inputs)
        padded = np.zeros((b, c, k - 1 + n), ct)
        acc, term = np.empty((b, c, n), ct), np.empty((b, c, n), ct)

        def run(*args):
            x, w, bias, past = list(args[:n_in]) + [None] * (4 - n_in)
            y, present = args[n_in], args[n_in + 1]
            padded[:, :, :k - 1] = 0 if past is None else past
            padded[:, :, k - 1:] = x
            wf = w[:, 0, :].astype(ct)[None, :, :, None]  # (1, C, k, 1)
            np.multiply(wf[:, :, 0], padded[:, :, :n], out=acc)
            for j in range(1, k):
                np.multiply(wf[:, :, j], padded[:, :, j:j + n], out=term)
                np.add(acc, term, out=acc)
            rnd(acc)
            if bias is not None:
                np.add(acc, bias.astype(ct)[:, None], out=acc)
                rnd(acc)
            if silu:  # in float32 whatever the type, as the reference
                a32 = acc.astype(F32)
                y[...] = a32 * (np.float32(1) / (np.float32(1) + np.exp(-a32)))
            else:
                y[...] = acc
            present[...] = padded[:, :, n:]
        return run
