"""Einsum and Det, through numpy (BLAS where numpy's einsum can use it). bfloat16 and the
other narrow floats are computed in float32."""
from __future__ import annotations

import numpy as np

from .base import Info, Op, is_narrow_float
from .registry import register


def einsum_shape(ctx, equation: str, shapes: list) -> tuple:
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if any(t.count("...") > 1 for t in terms):
        raise ctx.fail(f"equation '{equation}' is not valid")
    if len(terms) != len(shapes):
        raise ctx.fail(f"the equation has {len(terms)} operands, the node {len(shapes)} inputs")
    sizes: dict = {}
    ellipsis: tuple = ()
    counts: dict = {}
    for term, shape in zip(terms, shapes):
        if "..." in term:
            pre, post = term.split("...")
            n = len(shape) - len(pre) - len(post)
            if n < 0:
                raise ctx.fail(f"operand '{term}' does not fit shape {list(shape)}")
            ellipsis = tuple(np.broadcast_shapes(ellipsis, tuple(shape[len(pre):len(pre) + n])))
            letters, dims = pre + post, tuple(shape[:len(pre)]) + tuple(shape[len(shape) - len(post):])
        else:
            letters, dims = term, tuple(shape)
        if len(letters) != len(dims):
            raise ctx.fail(f"operand '{term}' does not fit shape {list(shape)}")
        for c, d in zip(letters, dims):
            counts[c] = counts.get(c, 0) + 1
            if sizes.get(c, 1) == 1:
                sizes[c] = d
            elif d not in (1, sizes[c]):
                raise ctx.fail(f"label '{c}' has sizes {sizes[c]} and {d}")
    if not arrow:  # implicit output: the ellipsis, then the labels seen once, sorted
        rhs = ("..." if "..." in lhs else "") + "".join(sorted(c for c, n in counts.items() if n == 1))
    labels = rhs.replace("...", "")
    bad = [c for c in lhs.replace("...", "").replace(",", "") + labels if not c.isascii() or not c.isalpha()]
    if bad or rhs.count("...") > 1 or ("..." in rhs and "..." not in lhs):
        raise ctx.fail(f"equation '{equation}' is not valid")
    for c in labels:
        if c not in sizes or labels.count(c) > 1:
            raise ctx.fail(f"output label '{c}' must appear in the inputs and once in the output")
    out: list = []
    pre, _, post = rhs.partition("...")
    out += [sizes[c] for c in pre]
    if "..." in rhs:
        out += list(ellipsis)
    out += [sizes[c] for c in post]
    return tuple(int(d) for d in out)


@register("Einsum")
class Einsum(Op):
    def infer(self, ctx):
        eq = ctx.attr("equation")
        eq = eq.decode() if isinstance(eq, bytes) else eq
        return [Info(einsum_shape(ctx, eq, [i.shape for i in ctx.inputs]), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        eq = ctx.attr("equation")
        eq = eq.decode() if isinstance(eq, bytes) else eq
        n = len(ctx.inputs)

        def run(*arrays):
            ins, out = arrays[:n], arrays[n]
            ins = [a.astype(np.float32) if is_narrow_float(a.dtype) else a for a in ins]
            res = np.einsum(eq, *ins, optimize=len(ins) > 2)
            out[...] = res.astype(out.dtype) if res.dtype != out.dtype else res
        return run


@register("Det")
class Det(Op):
    def infer(self, ctx):
        x = ctx.inputs[0]
        if len(x.shape) < 2 or x.shape[-1] != x.shape[-2]:
            raise ctx.fail(f"the input must be square matrices [..., M, M], got shape {list(x.shape)}")
        return [Info(tuple(x.shape[:-2]), x.dtype)]

    def kernel(self, ctx):
        def run(x, out):
            wide = x.astype(np.float32) if is_narrow_float(x.dtype) else x
            out[...] = np.linalg.det(wide).astype(out.dtype)
        return run
