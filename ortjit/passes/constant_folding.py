"""Constant folding: a node whose inputs are all constants becomes an initializer."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .. import irutil
from ..errors import OrtjitError

# Folding must not blow up the model (ConstantOfShape of a huge shape, Tile...).
MAX_FOLDED_ELEMENTS = 1 << 22


class ConstantFoldingPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        inputs = set(graph.inputs)
        modified = False
        for node in list(graph):
            if any(isinstance(a.value, (ir.Graph, list)) and a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
                   for a in node.attributes.values()):
                continue
            if node.domain == "ortjit":
                continue
            if not all(v is None or (v.const_value is not None and v not in inputs) for v in node.inputs):
                continue
            try:
                op, opset = irutil.op_for(node, model.opset_imports)
                if op.nondeterministic or op.dynamic:  # random ops must not be frozen; no sequences
                    continue
                ins = [None if v is None else irutil.const_info(irutil.initializer_value(v)) for v in node.inputs]
                outs = op.evaluate(irutil.context(node, opset, ins), [None if i is None else i.value for i in ins])
            except OrtjitError:
                continue  # leave it to run time, where its error (if any) names the node
            if not all(isinstance(o, np.ndarray) and o.size <= MAX_FOLDED_ELEMENTS for o in outs):
                continue
            for v, arr in zip(node.outputs, outs):
                name = v.name
                v.name = f"{name}__unfolded"  # free the name for the initializer that replaces it
                t = irutil.tensor(arr, name)
                new = ir.Value(name=name, shape=ir.Shape(arr.shape), type=ir.TensorType(t.dtype), const_value=t)
                graph.register_initializer(new)
                v.replace_all_uses_with(new, replace_graph_outputs=True)
            graph.remove(node, safe=False)
            modified = True
        return ir.passes.PassResult(model, modified)
