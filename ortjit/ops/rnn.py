"""RNN, GRU and LSTM (forward, reverse, bidirectional; layout 0 and 1; sequence_lens;
clip; peepholes; linear_before_reset; input_forget). One GEMM for the inputs of all time
steps, then a loop over time with one small GEMM per step and direction."""
from __future__ import annotations

import numpy as np

from .base import Info, Op
from .registry import register


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _activation(name: str, alpha, beta):
    name = _text(name).lower()
    table = {
        "relu": lambda x: np.maximum(x, 0),
        "tanh": np.tanh,
        "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
        "affine": lambda x: alpha * x + beta,
        "leakyrelu": lambda x: np.where(x >= 0, x, alpha * x),
        "thresholdedrelu": lambda x: np.where(x > alpha, x, 0),
        "scaledtanh": lambda x: alpha * np.tanh(beta * x),
        "hardsigmoid": lambda x: np.clip(alpha * x + beta, 0, 1),
        "elu": lambda x: np.where(x >= 0, x, alpha * (np.exp(x) - 1)),
        "softsign": lambda x: x / (1 + np.abs(x)),
        "softplus": lambda x: np.log1p(np.exp(x)),
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}")
    return table[name]


_DEFAULT_ALPHA = {"leakyrelu": 0.01, "thresholdedrelu": 1.0, "hardsigmoid": 0.2, "elu": 1.0, "affine": 1.0,
                  "scaledtanh": 1.0}
_DEFAULT_BETA = {"hardsigmoid": 0.5, "affine": 0.0, "scaledtanh": 1.0}


class _Recurrent(Op):
    gates = 1
    default_activations: tuple = ()

    def _dims(self, ctx):
        x, w = ctx.inputs[0], ctx.inputs[1]
        layout = int(ctx.attr("layout", 0))
        seq, batch = (x.shape[0], x.shape[1]) if layout == 0 else (x.shape[1], x.shape[0])
        hidden = int(ctx.attr("hidden_size", w.shape[1] // self.gates))
        dirs = 2 if _text(ctx.attr("direction", "forward")) == "bidirectional" else 1
        if len(x.shape) != 3 or w.shape[0] != dirs or w.shape[1] != self.gates * hidden or w.shape[2] != x.shape[2]:
            raise ctx.fail(f"X {list(x.shape)} and W {list(w.shape)} do not fit hidden_size {hidden} "
                           f"and {dirs} direction(s)")
        state = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
        expected = {2: (dirs, self.gates * hidden, hidden), 3: (dirs, 2 * self.gates * hidden), 4: (batch,),
                    5: state, 6: state, 7: (dirs, 3 * hidden)}
        for i, shape in expected.items():
            given = ctx.input(i)
            if given is not None and tuple(given.shape) != shape:
                raise ctx.fail(f"input {i} has shape {list(given.shape)}, expected {list(shape)}")
        return layout, seq, batch, hidden, dirs

    def infer(self, ctx):
        layout, seq, batch, hidden, dirs = self._dims(ctx)
        dt = ctx.inputs[0].dtype
        y = (seq, dirs, batch, hidden) if layout == 0 else (batch, seq, dirs, hidden)
        h = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
        return [Info(y, dt), Info(h, dt), Info(h, dt)][:ctx.num_outputs]

    def _activations(self, ctx, dirs):
        names = [_text(a) for a in (ctx.attr("activations") or [])] or list(self.default_activations) * dirs
        alphas = list(ctx.attr("activation_alpha") or [])
        betas = list(ctx.attr("activation_beta") or [])
        fns, ai, bi = [], 0, 0
        for name in names:
            key = name.lower()
            alpha = beta = None
            if key in _DEFAULT_ALPHA:
                alpha = alphas[ai] if ai < len(alphas) else _DEFAULT_ALPHA[key]
                ai += ai < len(alphas)
            if key in _DEFAULT_BETA:
                beta = betas[bi] if bi < len(betas) else _DEFAULT_BETA[key]
                bi += bi < len(betas)
            fns.append(_activation(name, alpha, beta))
        per = len(self.default_activations)
        if len(fns) != per * dirs:
            raise ctx.fail(f"expected {per * dirs} activations, got {len(fns)}")
        return [fns[d * per:(d + 1) * per] for d in range(dirs)]

    def kernel(self, ctx):
        layout, seq, batch, hidden, dirs = self._dims(ctx)
        acts = self._activations(ctx, dirs)
        clip = ctx.attr("clip")
        direction = _text(ctx.attr("direction", "forward"))
        n_out = ctx.num_outputs
        names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
        n_in = len(ctx.inputs)

        def run(*args):
            # one argument per input slot (None where an optional input is omitted), then the outputs
            given = {names[i]: a for i, a in enumerate(args[:n_in]) if a is not None}
            outs = args[len(args) - n_out:]
            x = given["X"] if layout == 0 else given["X"].transpose(1, 0, 2)
            lens = given.get("sequence_lens")
            lens = np.full(batch, seq, np.int64) if lens is None else lens.astype(np.int64)
            if np.any(lens < 0) or np.any(lens > seq):
                raise ctx.fail(f"sequence_lens must be within [0, {seq}], got {lens.tolist()}")
            init = {k: given.get(k) for k in ("initial_h", "initial_c")}
            for k, v in init.items():
                if v is not None and layout == 1:
                    init[k] = v.transpose(1, 0, 2)
            y = np.zeros((seq, dirs, batch, hidden), x.dtype)
            hs, cs = [], []
            for d in range(dirs):
                reverse = direction == "reverse" or d == 1
                h0 = np.zeros((batch, hidden), x.dtype) if init["initial_h"] is None else init["initial_h"][d]
                c0 = np.zeros((batch, hidden), x.dtype) if init["initial_c"] is None else init["initial_c"][d]
                b = given.get("B")
                b = np.zeros(2 * self.gates * hidden, x.dtype) if b is None else b[d]
                p = given.get("P")
                h, c = self.direction(ctx, x, given["W"][d], given["R"][d], b, h0, c0,
                                      None if p is None else p[d], acts[d], clip, lens, reverse, y[:, d])
                hs.append(h)
                cs.append(c)
            h_all, c_all = np.stack(hs), np.stack(cs)
            results = [y if layout == 0 else y.transpose(2, 0, 1, 3),
                       h_all if layout == 0 else h_all.transpose(1, 0, 2),
                       c_all if layout == 0 else c_all.transpose(1, 0, 2)]
            for o, r in zip(outs, results):
                if o is not None:
                    o[...] = r
        return run

    def direction(self, ctx, x, w, r, b, h, c, p, acts, clip, lens, reverse, y):
        """One direction over time; steps at or past a sequence's length leave its state
        alone and its output 0 (a reversed sequence starts at its own last step)."""
        seq = x.shape[0]
        xw = x @ w.T + b[:w.shape[0]]  # every time step's input projection at once
        rb = b[w.shape[0]:]
        for t in range(seq):
            step = seq - 1 - t if reverse else t
            active = (lens > step)[:, None]
            h_new, c_new = self.cell(xw[step], h, c, r, rb, p, acts, clip)
            h = np.where(active, h_new, h)
            if c_new is not None:
                c = np.where(active, c_new, c)
            y[step] = np.where(active, h, 0)
        return h, c


def _clip(v, clip):
    return v if clip is None else np.clip(v, -clip, clip)


@register("RNN")
class RNN(_Recurrent):
    gates = 1
    default_activations = ("Tanh",)

    def cell(self, xt, h, c, r, rb, p, acts, clip):
        return acts[0](_clip(xt + h @ r.T + rb, clip)), None


@register("GRU")
class GRU(_Recurrent):
    gates = 3
    default_activations = ("Sigmoid", "Tanh")

    def kernel(self, ctx):
        self.linear_before_reset = bool(ctx.attr("linear_before_reset", 0))
        return super().kernel(ctx)

    def cell(self, xt, h, c, r, rb, p, acts, clip):
        f, g = acts
        n = h.shape[1]
        xz, xr, xh = xt[:, :n], xt[:, n:2 * n], xt[:, 2 * n:]
        rz, rr, rh = r[:n], r[n:2 * n], r[2 * n:]
        bz, br, bh = rb[:n], rb[n:2 * n], rb[2 * n:]
        z = f(_clip(xz + h @ rz.T + bz, clip))
        rt = f(_clip(xr + h @ rr.T + br, clip))
        if self.linear_before_reset:
            ht = g(_clip(xh + rt * (h @ rh.T + bh), clip))
        else:
            ht = g(_clip(xh + (rt * h) @ rh.T + bh, clip))
        return (1 - z) * ht + z * h, None


@register("LSTM")
class LSTM(_Recurrent):
    gates = 4
    default_activations = ("Sigmoid", "Tanh", "Tanh")

    def kernel(self, ctx):
        self.input_forget = bool(ctx.attr("input_forget", 0))
        return super().kernel(ctx)

    def cell(self, xt, h, c, r, rb, p, acts, clip):
        f, g, hf = acts
        n = h.shape[1]
        pre = xt + h @ r.T + rb  # gates in the order i, o, f, c
        pi, po, pf = (p[:n], p[n:2 * n], p[2 * n:]) if p is not None else (0, 0, 0)
        i = f(_clip(pre[:, :n] + pi * c, clip))
        ft = 1 - i if self.input_forget else f(_clip(pre[:, 2 * n:3 * n] + pf * c, clip))
        ct = g(_clip(pre[:, 3 * n:], clip))
        c_new = ft * c + i * ct
        o = f(_clip(pre[:, n:2 * n] + po * c_new, clip))
        return o * hf(c_new), c_new
