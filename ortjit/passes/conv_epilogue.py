"""Conv -> FusedElementwise becomes one ortjit.FusedConv node (ops/fused_conv.py), and
MatMul with constant 2-D weights -> FusedElementwise one ortjit.FusedMatMul (ops/fused_matmul.py).

After ConvBiasEpiloguePass and ElementwiseFusionPass, a Conv is typically followed by one
fused loop holding its bias, a folded BatchNormalization, a residual Add and the
activation. When that loop is the only reader of the Conv's result, and each of the loop's
other inputs varies along the output's images, channels and pixels either fully or not at
all (per-channel constants, same-shape residuals; checked when a plan is made, with real
sizes), the two become one node, so that the loop can run on each GEMM piece while it is
in cache. This is what ONNX Runtime's FusedConv does for an activation and a residual
Add; here any fused loop qualifies. A MatMul's loop (bias, GELU, residual Add in
transformers and MLPs) is applied the same way, as each block of the product is copied out.
"""
from __future__ import annotations

import onnx_ir as ir

from .. import irutil
from .conv_folding import _FLOATS, _is_op, _sole_use
from .elementwise_fusion import FUSED_DOMAIN, _same_shape, has_constant_weights


def _fusable_producer(v: ir.Value, fused: ir.Node) -> ir.Node | None:
    """The Conv (its bias already moved into the loop) or MatMul (constant 2-D weights)
    that makes v, when the loop is v's only reader."""
    node = v.producer() if v is not None else None
    if node is None or len(node.outputs) != 1 or not _sole_use(v, fused):
        return None
    if _is_op(node, "Conv"):
        return node if len(node.inputs) < 3 or node.inputs[2] is None else None
    if has_constant_weights(node) and v.shape is not None and len(v.shape) >= 2:
        return node
    return None


def _product_input(fused: ir.Node) -> tuple[int, ir.Node] | None:
    """(index, Conv or MatMul) of the fused loop's input that a fusable producer makes, if any."""
    out = fused.outputs[0]
    for idx, v in enumerate(fused.inputs):
        producer = _fusable_producer(v, fused)
        if producer is None:
            continue
        if irutil.numpy_dtype(v) not in _FLOATS or irutil.numpy_dtype(out) != irutil.numpy_dtype(v):
            continue
        # the loop's result has the product's shape (the plan checks it again with real
        # sizes); whether the other inputs broadcast in a way the GEMM pieces can take is
        # decided per plan too (ops/fused_conv.py, ops/fused_matmul.py), the loop running
        # after the product where they do not
        if not _same_shape(v, out) or len(v.shape) < (3 if producer.op_type == "Conv" else 2):
            continue
        if all(e is not None and e.shape is not None and len(e.shape) <= len(v.shape)
               for k, e in enumerate(fused.inputs) if k != idx):
            return idx, producer
    return None


class ConvEpiloguePass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for fused in list(graph):
            if fused.domain != FUSED_DOMAIN or fused.op_type != "FusedElementwise":
                continue
            found = _product_input(fused)
            if found is None:
                continue
            idx, producer = found
            extras = [v for k, v in enumerate(fused.inputs) if k != idx]
            kind = "FusedConv" if producer.op_type == "Conv" else "FusedMatMul"
            node = ir.Node(FUSED_DOMAIN, kind, [producer.inputs[0], producer.inputs[1], *extras], num_outputs=1,
                           name=f"{producer.name or producer.op_type.lower()}_{fused.name}")
            for name, attr in producer.attributes.items():
                node.attributes[name] = attr
            node.attributes["body"] = fused.attributes["body"]
            node.attributes["product_at"] = ir.AttrInt64("product_at", idx)
            irutil.put_in_place(graph, fused, node, fused.outputs[0], [producer, fused])
            modified = True
        return ir.passes.PassResult(model, modified)

