"""Conv -> FusedElementwise becomes one ortjit.FusedConv node (ops/fused_conv.py).

After ConvBiasEpiloguePass and ElementwiseFusionPass, a Conv is typically followed by one
fused loop holding its bias, a folded BatchNormalization, a residual Add and the
activation. When that loop is the only reader of the Conv's result, and each of the loop's
other inputs varies along the output's images, channels and pixels either fully or not at
all (per-channel constants, same-shape residuals; checked when a plan is made, with real
sizes), the two become one node, so that the loop can run on each GEMM piece while it is
in cache. This is what ONNX Runtime's FusedConv does for an activation and a residual
Add; here any fused loop qualifies.
"""
from __future__ import annotations

import onnx_ir as ir

from .. import irutil
from .conv_folding import _FLOATS, _is_op, _sole_use
from .elementwise_fusion import FUSED_DOMAIN, _same_shape


def _product_input(fused: ir.Node) -> tuple[int, ir.Node] | None:
    """(index, Conv) of the fused loop's input that a fusable Conv produces, if any."""
    out = fused.outputs[0]
    for idx, v in enumerate(fused.inputs):
        conv = v.producer() if v is not None else None
        if not _is_op(conv, "Conv") or len(conv.outputs) != 1 or not _sole_use(v, fused):
            continue
        if len(conv.inputs) > 2 and conv.inputs[2] is not None:   # its bias stayed: not moved into the loop
            continue
        if irutil.numpy_dtype(v) not in _FLOATS or irutil.numpy_dtype(out) != irutil.numpy_dtype(v):
            continue
        # the loop's result has the Conv's shape (the plan checks it again with real sizes);
        # whether the other inputs broadcast in a way the GEMM pieces can take is decided
        # per plan too (ops/fused_conv.py), the loop running after the Conv where they do not
        if not _same_shape(v, out) or len(v.shape) < 3:
            continue
        if all(e is not None and e.shape is not None and len(e.shape) <= len(v.shape)
               for k, e in enumerate(fused.inputs) if k != idx):
            return idx, conv
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
            idx, conv = found
            extras = [v for k, v in enumerate(fused.inputs) if k != idx]
            node = ir.Node(FUSED_DOMAIN, "FusedConv", [conv.inputs[0], conv.inputs[1], *extras], num_outputs=1,
                           name=f"{conv.name or 'conv'}_{fused.name}")
            for name, attr in conv.attributes.items():
                node.attributes[name] = attr
            node.attributes["body"] = fused.attributes["body"]
            node.attributes["product_at"] = ir.AttrInt64("product_at", idx)
            graph.insert_before(fused, node)
            out, new_out = fused.outputs[0], node.outputs[0]
            new_out.type, new_out.shape = out.type, out.shape
            name = out.name
            out.replace_all_uses_with(new_out, replace_graph_outputs=True)
            graph.remove([conv, fused], safe=False)
            new_out.name = name
            modified = True
        return ir.passes.PassResult(model, modified)

