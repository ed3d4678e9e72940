"""Attention (opsets 23, 24, 25): scaled dot-product attention with MHA/GQA/MQA heads,
3-D or 4-D inputs, a boolean or additive mask, causal and sliding-window masks, an
internal (past/present) or external (nonpad_kv_seqlen) KV cache, softcap and a
softmax precision.

The steps are those of the ONNX reference, in its order: Q and K each scaled by
sqrt(scale), QK^T, softcap, + bias, softmax, a fully masked row set to 0, @ V. float16
and bfloat16 are computed in float32 and rounded to their type after every step, as
numpy's float16 and ml_dtypes' loops do, so that results match the reference bit for
bit (the bfloat16 backend cases are compared exactly).

The bias (mask, causal frontier, window, padding) holds only 0, -inf and the mask's
values, so it is summed exactly whatever the order. GQA needs no repeated K/V: query
heads h*G..h*G+G-1 share KV head h, so Q is viewed as (B, Hkv, G*Sq, D).

qk_matmul_output mode 0 is the raw QK product (before softcap), as the spec and the
op's function body say; onnx.reference returns the softcapped product there.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper

from .base import Info, Op, broadcast_shapes, is_narrow_float
from .registry import register

FLOATS = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}
SOFTMAX_PRECISIONS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)


def is_float(dtype) -> bool:
    return isinstance(dtype, np.dtype) and (dtype in FLOATS or (is_narrow_float(dtype) and dtype.name == "bfloat16"))


def compute_type(dtype) -> np.dtype:
    """float16 and bfloat16 are computed in float32; float32 and float64 natively."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def rounder(dtype):
    """In-place rounding of a compute-type buffer to `dtype`'s precision (a no-op for
    float32/float64): what a float16/bfloat16 numpy step does to its float32 result."""
    dtype = np.dtype(dtype)
    if compute_type(dtype) == dtype:
        return _keep

    def rnd(a):
        a[...] = a.astype(dtype)
    return rnd


def _keep(a):
    pass


def _row_sum(dtype):
    """Sum over the last axis as numpy sums `dtype`: float16 adds in float32 and rounds
    once; ml_dtypes' bfloat16 adds one element at a time, rounding every partial sum."""
    dtype = np.dtype(dtype)
    rnd = rounder(dtype)
    if dtype.name != "bfloat16":
        def total(w, out):
            np.sum(w, axis=-1, keepdims=True, out=out)
            rnd(out)
        return total

    def sequential(w, out):
        out[...] = w[..., :1]
        for j in range(1, w.shape[-1]):
            out += w[..., j:j + 1]
            rnd(out)
    return sequential


def scaled_scores(q, k, qs, ks, scores, scale, rnd, grouped_shape) -> None:
    """scores <- (q * scale) @ (k * scale)^T, the query heads of a group of shape
    grouped_shape (B, Hkv, G * Sq, D) against their shared key head; q and k go through
    the buffers qs and ks, each step rounded to the op's type by rnd (as ONNX computes)."""
    qs[...] = q
    np.multiply(qs, scale, out=qs)
    rnd(qs)
    ks[...] = k
    np.multiply(ks, scale, out=ks)
    rnd(ks)
    np.matmul(qs.reshape(grouped_shape), ks.swapaxes(2, 3), out=scores)
    rnd(scores)


def heads_4d(x, heads: int):
    """A 3-D (B, S, H*D) input as a (B, H, S, D) view; a 4-D one as it is."""
    if x.ndim == 4:
        return x
    b, s, hidden = x.shape
    return x.reshape(b, s, heads, hidden // heads).transpose(0, 2, 1, 3)


def frontier(sq: int, t: int, offset, causal: bool, left: int, right: int):
    """Where query i (absolute position offset + i) may attend key j: the causal bound
    j <= p and the window p - left <= j <= p + right (a negative bound is unbounded).
    offset: an int, or a (B,) array for a per-batch external cache, giving (B, 1, Sq, T)."""
    offset = np.asarray(offset, np.int64)
    p = np.arange(sq, dtype=np.int64)[:, None] + offset.reshape(offset.shape + (1, 1))
    diff = p - np.arange(t, dtype=np.int64)  # (.., Sq, T)
    allowed = np.ones(diff.shape, bool)
    if causal:
        allowed &= diff >= 0
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    return allowed if offset.ndim == 0 else allowed[:, None]


class _Dims:
    def __init__(self, ctx):
        q, k, v = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]
        rank = len(q.shape)
        if rank not in (3, 4) or len(k.shape) != rank or len(v.shape) != rank:
            raise ctx.fail(f"Q, K and V must all be 3-D or all 4-D, got shapes {list(q.shape)}, "
                           f"{list(k.shape)}, {list(v.shape)}")
        self.rank3 = rank == 3
        qh, kvh = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
        if self.rank3:
            if not qh or not kvh or qh < 0 or kvh < 0:
                raise ctx.fail("3-D inputs need positive q_num_heads and kv_num_heads attributes")
            for name, x, h in (("Q", q, qh), ("K", k, kvh), ("V", v, kvh)):
                if x.shape[2] % h:
                    raise ctx.fail(f"{name}'s hidden size {x.shape[2]} is not a multiple of its {h} heads")
            self.B, self.Sq, self.Skv = q.shape[0], q.shape[1], k.shape[1]
            self.Hq, self.Hkv = int(qh), int(kvh)
            self.D, self.Dk, self.Dv = q.shape[2] // qh, k.shape[2] // kvh, v.shape[2] // kvh
            vs = v.shape[1]
        else:
            if ctx.opset >= 25 and (qh is not None or kvh is not None):
                raise ctx.fail("q_num_heads and kv_num_heads must not be given for 4-D inputs")
            self.B, self.Hq, self.Sq, self.D = q.shape
            _, self.Hkv, self.Skv, self.Dk = k.shape
            self.Dv, vs = v.shape[3], v.shape[2]
            if v.shape[1] != self.Hkv:
                raise ctx.fail(f"K has {self.Hkv} heads, V {v.shape[1]}")
        if k.shape[0] != self.B or v.shape[0] != self.B:
            raise ctx.fail(f"Q, K and V have different batch sizes: {q.shape[0]}, {k.shape[0]}, {v.shape[0]}")
        if vs != self.Skv:
            raise ctx.fail(f"K and V have different sequence lengths: {self.Skv} and {vs}")
        if self.Dk != self.D:
            raise ctx.fail(f"Q and K have different head sizes: {self.D} and {self.Dk}")
        if self.Hkv <= 0 or self.Hq % self.Hkv:
            raise ctx.fail(f"the {self.Hq} query heads are not a multiple of the {self.Hkv} key/value heads")
        self.G = self.Hq // self.Hkv
        self.P = self._past(ctx)
        self.T = self.P + self.Skv

    def _past(self, ctx):
        pk, pv = ctx.input(4), ctx.input(5)
        if (pk is None) != (pv is None):
            raise ctx.fail("past_key and past_value must be given together")
        if pk is None:
            return 0
        if ctx.input(6) is not None:
            raise ctx.fail("nonpad_kv_seqlen cannot be used with past_key and past_value")
        p = pk.shape[2] if len(pk.shape) == 4 else -1
        if tuple(pk.shape) != (self.B, self.Hkv, p, self.D) or tuple(pv.shape) != (self.B, self.Hkv, p, self.Dv):
            raise ctx.fail(f"past_key {list(pk.shape)} and past_value {list(pv.shape)} must be "
                           f"[{self.B}, {self.Hkv}, past_sequence_length, {self.D}] and [.., {self.Dv}]")
        return p


@register("Attention", since=23)
class Attention(Op):
    def infer(self, ctx):
        q, k, v = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]
        for name, x in (("Q", q), ("K", k), ("V", v), ("past_key", ctx.input(4)), ("past_value", ctx.input(5))):
            if x is not None and not is_float(x.dtype):
                raise ctx.fail(f"{name} must be a float tensor, got {x.dtype}")
        if k.dtype != q.dtype or (ctx.input(4) is not None and ctx.input(4).dtype != q.dtype):
            raise ctx.fail(f"Q, K and past_key must have the same type, got {q.dtype} and {k.dtype}")
        if ctx.input(5) is not None and ctx.input(5).dtype != v.dtype:
            raise ctx.fail(f"V and past_value must have the same type, got {v.dtype} and {ctx.input(5).dtype}")
        d = _Dims(ctx)
        self._check_attrs(ctx)
        self._mask_shape(ctx, d)
        nonpad = ctx.input(6)
        if nonpad is not None and (nonpad.dtype != np.int64 or tuple(nonpad.shape) != (d.B,)):
            raise ctx.fail(f"nonpad_kv_seqlen must be int64 of shape [{d.B}], got {nonpad.dtype} {list(nonpad.shape)}")
        y = (d.B, d.Sq, d.Hq * d.Dv) if d.rank3 else (d.B, d.Hq, d.Sq, d.Dv)
        outs = [Info(y, q.dtype), Info((d.B, d.Hkv, d.T, d.D), q.dtype), Info((d.B, d.Hkv, d.T, d.Dv), v.dtype),
                Info((d.B, d.Hq, d.Sq, d.T), q.dtype)]
        return outs[:ctx.num_outputs]

    def _check_attrs(self, ctx):
        mode = ctx.attr("qk_matmul_output_mode", 0)
        if mode not in (0, 1, 2, 3):
            raise ctx.fail(f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {mode}")
        sp = ctx.attr("softmax_precision")
        if sp is not None and sp not in SOFTMAX_PRECISIONS:
            raise ctx.fail(f"softmax_precision must be FLOAT, FLOAT16, DOUBLE or BFLOAT16, got {sp}")
        for name in ("left_window_size", "right_window_size"):
            if ctx.attr(name, -1) < -1:
                raise ctx.fail(f"{name} must be -1 or nonnegative, got {ctx.attr(name)}")

    def _mask_shape(self, ctx, d):
        """The mask's shape with its last dim padded to the total length (with -inf)."""
        m = ctx.input(3)
        if m is None:
            return None
        full = (d.B, d.Hq, d.Sq, d.T)
        shape = tuple(m.shape)
        if not 1 <= len(shape) <= 4 or shape[-1] > d.T:
            raise ctx.fail(f"attn_mask of shape {list(shape)} does not fit the attention shape {list(full)}")
        padded = shape[:-1] + (d.T,)
        if broadcast_shapes(ctx, padded, full) != full:
            raise ctx.fail(f"attn_mask of shape {list(shape)} cannot be broadcast to {list(full)}")
        return padded

    def kernel(self, ctx):
        d = _Dims(ctx)
        B, Hq, Hkv, G, Sq, T, P, D, Dv = d.B, d.Hq, d.Hkv, d.G, d.Sq, d.T, d.P, d.D, d.Dv
        dt, vdt = np.dtype(ctx.inputs[0].dtype), np.dtype(ctx.inputs[2].dtype)
        ct, rnd = compute_type(dt), rounder(dt)
        softcap = float(ctx.attr("softcap", 0.0))
        # ml_dtypes' bfloat16 divided by a Python float is float32: in the reference, bfloat16
        # scores stay float32 from the softcap on, until the probabilities are cast back
        capped32 = softcap > 0 and dt.name == "bfloat16"
        crnd = _keep if capped32 else rnd
        cap = np.float32(softcap) if capped32 else ct.type(dt.type(softcap))
        sp = ctx.attr("softmax_precision")
        sd = np.dtype(helper.tensor_dtype_to_np_dtype(sp)) if sp is not None else ct if capped32 else dt
        st, srnd, row_sum = compute_type(sd), rounder(sd), _row_sum(sd)
        scale = ctx.attr("scale")
        # sqrt(scale) rounded to the input type, as the reference's Q.dtype.type(sqrt(scale))
        s = ct.type(dt.type(math.sqrt(1.0 / math.sqrt(D) if scale is None else float(scale))))
        mode = ctx.attr("qk_matmul_output_mode", 0)
        causal = bool(ctx.attr("is_causal", 0))
        left, right = (ctx.attr("left_window_size", -1), ctx.attr("right_window_size", -1)) if ctx.opset >= 25 \
            else (-1, -1)
        shaped = causal or left >= 0 or right >= 0
        names = [o.name for o in ctx.node.outputs] if ctx.node is not None else ["y"] * ctx.num_outputs
        want = [i < ctx.num_outputs and bool(names[i]) for i in range(4)]
        n_in = len(ctx.inputs)
        external = ctx.input(6) is not None
        mask_shape = self._mask_shape(ctx, d)
        neg_inf = ct.type(-np.inf)

        static = None
        if shaped and not external:
            static = np.where(frontier(Sq, T, P, causal, left, right), ct.type(0), neg_inf)

        def bias(mask, nonpad):
            b = static
            if mask is not None:
                mb = np.full(mask_shape, neg_inf, ct)
                view = mb[..., :mask.shape[-1]]
                if mask.dtype == np.bool_:
                    np.copyto(view, 0, where=mask)
                else:
                    view[...] = mask.astype(dt) if mask.dtype != dt else mask
                b = mb if b is None else mb + b
            if nonpad is not None:
                keep = np.arange(T) < nonpad[:, None]
                nb = np.where(keep, ct.type(0), neg_inf).reshape(B, 1, 1, T)
                if shaped:
                    nb = nb + np.where(frontier(Sq, T, nonpad - Sq, causal, left, right), ct.type(0), neg_inf)
                b = nb if b is None else nb + b
            return b

        qs = np.empty((B, Hq, Sq, D), ct)
        ks = np.empty((B, Hkv, T, D), ct)
        scores = np.empty((B, Hkv, G * Sq, T), ct)
        probs = np.empty((B, Hq, Sq, T), st) if st != ct else None
        stat = np.empty((B, Hq, Sq, 1), st)
        vf = np.empty((B, Hkv, T, Dv), ct) if vdt != ct else None
        yc = np.empty((B, Hkv, G * Sq, Dv), ct) if (ct != dt or d.rank3) else None
        k_cat = np.empty((B, Hkv, T, D), dt) if P and not want[1] else None
        v_cat = np.empty((B, Hkv, T, Dv), vdt) if P and not want[2] else None

        def cache(x, past, out, cat):
            """The full K (or V) in 4-D: past then x, in the present output when it is wanted."""
            if past is None:
                if out is not None:
                    out[...] = x
                return x
            full = out if out is not None else cat
            full[:, :, :P] = past
            full[:, :, P:] = x
            return full

        def run(*args):
            ins, outs = args[:n_in], list(args[n_in:]) + [None] * (4 - ctx.num_outputs)
            y, pk_out, pv_out, qk_out = (o if w else None for o, w in zip(outs, want))
            ins = list(ins) + [None] * (7 - n_in)
            q, k, v, mask, past_k, past_v, nonpad = ins
            kf = cache(heads_4d(k, Hkv), past_k, pk_out, k_cat)
            vv = cache(heads_4d(v, Hkv), past_v, pv_out, v_cat)
            if T == 0 or B * Hq * Sq == 0:  # no key to attend: a zero row, as a fully masked one
                y.fill(0)
                if qk_out is not None:
                    qk_out.fill(0)
                return
            scaled_scores(heads_4d(q, Hq), kf, qs, ks, scores, s, rnd, (B, Hkv, G * Sq, D))
            sc = scores.reshape(B, Hq, Sq, T)
            if mode == 0 and qk_out is not None:
                qk_out[...] = sc
            if softcap > 0:
                sc /= cap
                crnd(sc)
                np.tanh(sc, out=sc)
                crnd(sc)
                sc *= cap
                crnd(sc)
            if mode == 1 and qk_out is not None:
                qk_out[...] = sc
            b = bias(mask, nonpad)
            if b is not None:
                sc += b
                crnd(sc)
            if mode == 2 and qk_out is not None:
                qk_out[...] = sc
            w = sc
            if probs is not None:
                probs[...] = sc
                w = probs
            if sd != dt:
                srnd(w)
            # softmax; a row of -inf keeps 0 as its max so that it gives 0, not NaN
            np.max(w, axis=-1, keepdims=True, out=stat)
            stat[np.isneginf(stat)] = 0
            w -= stat
            srnd(w)
            np.exp(w, out=w)
            srnd(w)
            row_sum(w, stat)
            stat[stat == 0] = 1
            w /= stat
            srnd(w)
            if b is not None:  # a row the bias masks entirely attends nothing: 0, not a uniform row
                empty = np.isneginf(np.max(b, axis=-1, keepdims=True))
                if empty.any():
                    np.copyto(w, 0, where=empty)
            if mode == 3 and qk_out is not None:
                qk_out[...] = w
            if probs is not None:
                sc[...] = w
                w = sc
            if sd != dt:
                rnd(w)
            values = vv
            if vf is not None:
                vf[...] = vv
                values = vf
            pw = w.reshape(B, Hkv, G * Sq, T)
            if yc is None:
                np.matmul(pw, values, out=y.reshape(B, Hkv, G * Sq, Dv))
                return
            np.matmul(pw, values, out=yc)
            rnd(yc)
            y4 = yc.reshape(B, Hq, Sq, Dv)
            if d.rank3:
                y.reshape(B, Sq, Hq, Dv)[...] = y4.transpose(0, 2, 1, 3)
            else:
                y[...] = y4
        return run
