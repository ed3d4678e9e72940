"""Elementwise fusion: a tree of elementwise nodes becomes one ortjit.FusedElementwise node.

The fused node keeps the original nodes as its `body` subgraph, so the optimized model
stays a loadable .onnx and the codegen renders the body as one loop. A producer joins a
group only when every use of its result is inside the group (so the group has a single
output, the root's) and its result has the root's shape (so nothing is recomputed per
broadcast element).
"""
from __future__ import annotations

import onnx_ir as ir

from .. import irutil
from ..codegen.elementwise import SCALAR_TYPE
from ..errors import OrtjitError
from ..ops.base import Elementwise

FUSED_DOMAIN = "ortjit"
MAX_GROUP_INPUTS = 16


def _fusable(node: ir.Node, opsets: dict) -> bool:
    if node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
        return False
    try:
        op, _ = irutil.op_for(node, opsets)
    except OrtjitError:
        return False
    if not isinstance(op, Elementwise):
        return False
    values = [v for v in node.inputs if v is not None] + list(node.outputs)
    for v in values:
        dt = irutil.numpy_dtype(v)
        if dt is None or dt not in SCALAR_TYPE:  # float16 included: see ortjit/codegen/elementwise.py
            return False
    if node.op_type == "CastLike" and len(node.inputs) > 1:
        # target_type gives only a type, yet it becomes an input of the fused loop, which
        # broadcasts every input to the output's shape: it must fit into that shape
        return _broadcasts_into(node.inputs[1], node.outputs[0])
    return True


def _broadcasts_into(a: ir.Value, b: ir.Value) -> bool:
    if a is None or a.shape is None or b.shape is None or len(a.shape) > len(b.shape):
        return False
    return all(da == 1 or (da == db and isinstance(da, int)) for da, db in zip(reversed(list(a.shape)), reversed(list(b.shape))))


def _same_shape(a: ir.Value, b: ir.Value) -> bool:
    return a.shape is not None and b.shape is not None and list(a.shape) == list(b.shape) and \
        all(d is not None and not (isinstance(d, ir.SymbolicDim) and d.value is None) for d in a.shape)


def has_constant_weights(matmul: ir.Node) -> bool:
    """Whether a MatMul's B is a constant 2-D tensor (not a graph input): what
    ops/packed_gemm.py packs once and ortjit.FusedMatMul takes (passes/conv_epilogue.py)."""
    if matmul.op_type != "MatMul" or matmul.domain not in ("", "ai.onnx") or len(matmul.inputs) < 2:
        return False
    b = matmul.inputs[1]
    return b is not None and b.const_value is not None and not b.is_graph_input() and \
        b.shape is not None and len(b.shape) == 2


def _reads_weighted_product(node: ir.Node) -> bool:
    """Whether the node is the only reader of a MatMul's product by constant 2-D weights.
    Alone it still becomes a fused loop, which passes/conv_epilogue.py then runs inside
    the MatMul (ortjit.FusedMatMul): a transformer's QKV projection's bias Add."""
    for v in node.inputs:
        mm = v.producer() if v is not None else None
        if mm is not None and not v.is_graph_output() and len(v.uses()) == 1 and has_constant_weights(mm):
            return True
    return False


class ElementwiseFusionPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph, opsets = model.graph, model.opset_imports
        grouped: set = set()
        modified = False
        counter = 0
        nodes = list(graph)
        # where each node stood: a group's members in this order are in topological order
        # (fusing keeps the others' order), without a walk over the graph per group
        position = {node: k for k, node in enumerate(nodes)}
        for root in reversed(nodes):
            if root in grouped or not _fusable(root, opsets):
                continue
            group = self._grow(root, opsets, grouped)
            if len(group) < 2 and not _reads_weighted_product(root):
                continue
            grouped.update(group)
            self._replace(graph, root, group, counter, position)
            counter += 1
            modified = True
        if modified:
            model.opset_imports.setdefault(FUSED_DOMAIN, 1)
        return ir.passes.PassResult(model, modified)

    def _grow(self, root: ir.Node, opsets: dict, grouped: set) -> list:
        group = [root]
        members = {root}
        changed = True
        while changed:
            changed = False
            for node in list(group):
                for v in node.inputs:
                    p = v.producer() if v is not None else None
                    if p is None or p in members or p in grouped or v.is_graph_output():
                        continue
                    if not all(use.node in members for use in v.uses()):
                        continue
                    if not _fusable(p, opsets) or not _same_shape(v, root.outputs[0]):
                        continue
                    if len(self._externals(group + [p])) > MAX_GROUP_INPUTS:
                        continue
                    group.append(p)
                    members.add(p)
                    changed = True
        return group

    @staticmethod
    def _externals(group: list) -> list:
        members = set(group)
        seen, out = set(), []
        for node in reversed(group):  # producers were appended after consumers
            for v in node.inputs:
                if v is None or v in seen:
                    continue
                if v.producer() in members:
                    continue
                seen.add(v)
                out.append(v)
        return out

    def _replace(self, graph: ir.Graph, root: ir.Node, group: list, counter: int, position: dict) -> None:
        order = sorted(group, key=position.__getitem__)  # topological order of the members
        externals = self._externals(group)
        body_inputs = []
        for k, v in enumerate(externals):
            b = ir.Value(name=f"in{k}", shape=v.shape, type=v.type)
            body_inputs.append(b)
            for node in order:
                for idx, x in enumerate(node.inputs):
                    if x is v:
                        node.replace_input_with(idx, b)
        out = root.outputs[0]
        name = "fused_" + "_".join(dict.fromkeys(n.op_type.lower() for n in order)) + f"_{counter}"
        fused = ir.Node(FUSED_DOMAIN, "FusedElementwise", externals, num_outputs=1, name=name)
        irutil.put_in_place(graph, root, fused, out, order)
        body = ir.Graph(body_inputs, [out], nodes=order, name=name)
        out.name = "out0"
        fused.attributes["body"] = ir.AttrGraph("body", body)
