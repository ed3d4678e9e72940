"""Control flow: If, Loop, Scan, SequenceMap. Each runs its subgraphs through a
GraphRunner (ortjit/subgraph.py), which keeps a plan per input signature. The plan gives
these nodes their inputs followed by the outer values their subgraphs read
(ctx.extra["captured"])."""
from __future__ import annotations

import numpy as np

from ..subgraph import GraphRunner
from .base import Info, Op, normalize_axis
from .registry import register


class _ControlOp(Op):
    mode = "return"
    dynamic = True

    def infer(self, ctx):
        return [Info(None, None, dynamic=True) for _ in range(ctx.num_outputs)]

    def runner(self, ctx, attr: str) -> GraphRunner:
        """One runner per subgraph, kept on the op, which lives as long as the node's step."""
        runners = self.__dict__.setdefault("_runners", {})
        if attr not in runners:
            runners[attr] = GraphRunner(ctx.node.attributes[attr].value, ctx.extra["opsets"])
        return runners[attr]

    @staticmethod
    def split_args(ctx, args):
        n = len(ctx.node.inputs)
        return list(args[:n]), dict(zip(ctx.extra["captured"], args[n:]))


def _scalar_bool(ctx, x, what) -> bool:
    a = np.asarray(x)
    if a.size != 1:
        raise ctx.fail(f"{what} must hold one element, got shape {list(a.shape)}")
    return bool(a.reshape(-1)[0])


@register("If")
class If(_ControlOp):
    def kernel(self, ctx):
        then_run, else_run = self.runner(ctx, "then_branch"), self.runner(ctx, "else_branch")

        def run(*args):
            (cond,), outer = self.split_args(ctx, args)
            branch = then_run if _scalar_bool(ctx, cond, "the condition") else else_run
            outs = branch.run([], outer)
            if len(outs) != ctx.num_outputs:
                raise ctx.fail(f"the branch gives {len(outs)} outputs, the node has {ctx.num_outputs}")
            return tuple(outs)
        return run


def _stack(parts: list, dtype, axis: int = 0, reverse: bool = False):
    if reverse:
        parts = parts[::-1]
    return np.stack(parts, axis=axis) if parts else np.zeros((0,), dtype)


@register("Loop")
class Loop(_ControlOp):
    """Inputs: max trip count M, condition, loop-carried values. The body takes (iteration
    number, condition, carried...) and gives (condition, carried..., scan outputs...); the
    scan outputs of all iterations are stacked along a new first axis."""

    def kernel(self, ctx):
        body = self.runner(ctx, "body")
        n_carried = len(ctx.node.inputs) - 2
        scan_dtypes = [v.dtype.numpy() if v.dtype is not None else np.float32
                       for v in body.graph.outputs[1 + n_carried:]]

        def run(*args):
            (m, cond, *carried), outer = self.split_args(ctx, args)
            trips = None if m is None else int(np.asarray(m).reshape(-1)[0])
            go = True if cond is None else _scalar_bool(ctx, cond, "the condition")
            scans = [[] for _ in scan_dtypes]
            i = 0
            while go and (trips is None or i < trips):
                outs = body.run([np.array(i, np.int64), np.array(go), *carried], outer)
                go = _scalar_bool(ctx, outs[0], "the body's condition output")
                carried = outs[1:1 + n_carried]
                for acc, v in zip(scans, outs[1 + n_carried:]):
                    acc.append(v)
                i += 1
            return tuple(carried) + tuple(_stack(acc, dt) for acc, dt in zip(scans, scan_dtypes))
        return run


@register("Scan", since=9)
class Scan(_ControlOp):
    """Inputs: N initial states, then M scan inputs sliced along their scan axes; the body
    maps (states, slices) to (new states, output slices), stacked along the output axes."""

    def kernel(self, ctx):
        body = self.runner(ctx, "body")
        m = int(ctx.attr("num_scan_inputs"))
        n_states = len(ctx.node.inputs) - m
        n_outputs = ctx.num_outputs - n_states
        in_axes = list(ctx.attr("scan_input_axes", [0] * m))
        in_dirs = list(ctx.attr("scan_input_directions", [0] * m))
        out_axes = list(ctx.attr("scan_output_axes", [0] * n_outputs))
        out_dirs = list(ctx.attr("scan_output_directions", [0] * n_outputs))

        def run(*args):
            inputs, outer = self.split_args(ctx, args)
            return scan(ctx, body, outer, inputs[:n_states], inputs[n_states:], in_axes, in_dirs, out_axes, out_dirs)
        return run


def scan(ctx, body, outer, states, xs, in_axes, in_dirs, out_axes, out_dirs):
    axes = [normalize_axis(ctx, a, np.ndim(x)) for a, x in zip(in_axes, xs)]
    lengths = {x.shape[a] for x, a in zip(xs, axes)}
    if len(lengths) > 1:
        raise ctx.fail(f"the scan inputs have different lengths along their scan axes: {sorted(lengths)}")
    steps = lengths.pop() if lengths else 0
    outs_acc: list = []
    for t in range(steps):
        slices = [np.take(x, steps - 1 - t if d else t, axis=a) for x, a, d in zip(xs, axes, in_dirs)]
        outs = body.run(list(states) + slices, outer)
        states = outs[:len(states)]
        if not outs_acc:
            outs_acc = [[] for _ in outs[len(states):]]
        for acc, v in zip(outs_acc, outs[len(states):]):
            acc.append(v)
    if not outs_acc:
        raise ctx.fail("Scan over zero iterations: the scan outputs' shapes are unknown")
    results = []
    for acc, axis, d in zip(outs_acc, out_axes or [0] * len(outs_acc), out_dirs or [0] * len(outs_acc)):
        axis = normalize_axis(ctx, axis, np.ndim(acc[0]) + 1)
        results.append(_stack(acc, acc[0].dtype, axis, reverse=bool(d)))
    return tuple(states) + tuple(results)


@register("Scan", since=8)
class Scan8(_ControlOp):
    """Opset 8: a batch axis 0 before the scan axis 1, and an optional sequence_lens input."""

    def kernel(self, ctx):
        body = self.runner(ctx, "body")
        m = int(ctx.attr("num_scan_inputs"))
        n_states = len(ctx.node.inputs) - 1 - m
        dirs = list(ctx.attr("directions", [0] * m))

        def run(*args):
            (lens, *inputs), outer = self.split_args(ctx, args)
            states, xs = inputs[:n_states], inputs[n_states:]
            batch = (states[0] if states else xs[0]).shape[0]
            full = xs[0].shape[1] if xs else 0
            if lens is not None and np.any(np.asarray(lens) != full):
                from ..errors import NotImplemented
                raise ctx.fail("sequence_lens shorter than the scan inputs is not supported", NotImplemented)
            per_batch = [scan(ctx, body, outer, [s[b] for s in states], [x[b] for x in xs], [0] * m, dirs, [], [])
                         for b in range(batch)]
            return tuple(np.stack([r[k] for r in per_batch]) for k in range(ctx.num_outputs))
        return run


@register("SequenceMap")
class SequenceMap(_ControlOp):
    """The body runs once per element of the first input sequence; other inputs are
    sequences of the same length (their element is given) or tensors (given whole)."""

    def kernel(self, ctx):
        body = self.runner(ctx, "body")

        def run(*args):
            (seq, *extra), outer = self.split_args(ctx, args)
            for e in extra:
                if isinstance(e, list) and len(e) != len(seq):
                    raise ctx.fail(f"the input sequences have different lengths: {len(seq)} and {len(e)}")
            results = [[] for _ in range(ctx.num_outputs)]
            for k, item in enumerate(seq):
                outs = body.run([item] + [e[k] if isinstance(e, list) else e for e in extra], outer)
                for acc, v in zip(results, outs):
                    acc.append(v)
            return tuple(results)
        return run
