"""ortjit.FusedElementwise: a body subgraph of elementwise nodes run as one generated loop."""
from __future__ import annotations

import numpy as np

from .. import irutil
from .base import Info, NodeContext, Op
from .registry import register


def producer_and_body(ctx: NodeContext, product: Info):
    """For a node of a producer (Conv, MatMul) and the fused loop that reads its result
    (ortjit.FusedConv, ortjit.FusedMatMul: inputs are the producer's two, then the loop's
    others; `product_at` says which body input is the product): (product_at, the loop's
    other inputs, its ScalarProgram, the Info of its result)."""
    product_at = int(ctx.attr("product_at", 0))
    extras = list(ctx.inputs[2:])
    body_inputs = list(extras)
    body_inputs.insert(product_at, product)
    program, result = body_program(ctx, body_inputs)
    return product_at, extras, program, result


def check_same_as_product(ctx: NodeContext, result: Info, product: Info, what: str) -> None:
    """The fused loop must give the producer's shape and type: it runs in place of it."""
    if tuple(result.shape) != tuple(product.shape) or np.dtype(result.dtype) != np.dtype(product.dtype):
        raise ctx.fail(f"the fused epilogue gives {result.dtype}{list(result.shape)}, "
                       f"not the {what}'s {product.dtype}{list(product.shape)}")


def body_program(ctx: NodeContext, in_infos: list):
    """The ScalarProgram of the node's `body` subgraph, whose inputs are described by
    in_infos, and the Info of its result. Kept in ctx for the same in_infos: a plan asks
    for it twice per node (infer, then kernel)."""
    made = ctx.extra.get("body_program")
    if made is not None and len(made[0]) == len(in_infos) and all(map(_same_info, made[0], in_infos)):
        return made[1]
    made = _body_program(ctx, in_infos)
    ctx.extra["body_program"] = (list(in_infos), made)
    return made


def _same_info(a, b) -> bool:
    return a is b or (a is not None and b is not None and a.value is b.value and a.shape == b.shape
                      and a.dtype == b.dtype and a.dynamic == b.dynamic)


def _body_program(ctx: NodeContext, in_infos: list):
    from ..codegen.elementwise import ScalarProgram, Step
    body = ctx.attr("body")
    opsets = ctx.extra.get("opsets", {"": ctx.opset})
    names = {v: f"x{k}" for k, v in enumerate(body.inputs)}
    infos = dict(zip(body.inputs, in_infos))
    program = ScalarProgram(list(names.values()), list(in_infos))
    for t, node in enumerate(body):
        op, opset = irutil.op_for(node, opsets)
        ins = [infos[v] if v is not None else None for v in node.inputs]
        nctx = irutil.context(node, opset, ins)
        out = op.infer(nctx)[0]
        v = node.outputs[0]
        infos[v] = Info(out.shape, out.dtype)
        names[v] = f"t{t}"
        program.steps.append(Step(op, nctx, [names[x] if x is not None else None for x in node.inputs],
                                  names[v], out.dtype))
    root = body.outputs[0]
    program.outputs = [names[root]]
    program.out_dtypes = [infos[root].dtype]
    return program, infos[root]


@register("FusedElementwise", domain="ortjit")
class FusedElementwise(Op):
    def infer(self, ctx):
        return [body_program(ctx, ctx.inputs)[1]]

    def kernel(self, ctx):
        from ..codegen.cpu import elementwise_kernel
        program, out = body_program(ctx, ctx.inputs)
        return elementwise_kernel(program, out.shape, [i.shape for i in ctx.inputs])
