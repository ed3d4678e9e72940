"""Small helpers over onnx-ir objects shared by the passes and the plan builder."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from . import dtypes
from .errors import InvalidGraph, NotImplemented
from .ops import lookup
from .ops.base import Info, NodeContext
from .ops.registry import normalize_domain


# The attribute's declared type picks the conversion: isinstance against onnx-ir's runtime
# protocols (ir.TensorProtocol) walks the protocol's members on every call, 40 ms of a
# ShuffleNet session's first run.
_TENSOR, _TENSORS = ir.AttributeType.TENSOR, ir.AttributeType.TENSORS


def attr_value(attr: ir.Attr):
    v = attr.value
    kind = attr.type
    if kind == _TENSOR:
        return tensor_to_numpy(v)
    if kind == _TENSORS:
        return [tensor_to_numpy(t) for t in v]
    if isinstance(v, (list, tuple)):
        return list(v)
    return v


def attributes(node: ir.Node) -> dict:
    return {name: attr_value(a) for name, a in node.attributes.items()}


def tensor(array: np.ndarray, name: str) -> ir.Tensor:
    """An IR tensor holding array: what ir.tensor makes of an ndarray, without its runtime
    protocol checks (40 us each; 15 ms of ShuffleNet's session). Strings (an object array)
    become a StringTensor of bytes, the only string tensor onnx-ir can serialize."""
    if array.dtype == object:
        flat = [s.encode() if isinstance(s, str) else s for s in array.ravel()]
        return ir.StringTensor(np.array(flat, dtype=object).reshape(array.shape), name=name)
    return ir.Tensor(array, name=name)


def tensor_to_numpy(t) -> np.ndarray:
    arr = t.numpy()
    if t.dtype == ir.DataType.STRING:
        return np.array([s.decode() if isinstance(s, bytes) else s for s in np.asarray(arr).ravel()],
                        dtype=object).reshape(tuple(t.shape))
    return np.asarray(arr)


def opset_of(node: ir.Node, opsets: dict) -> int:
    dom = normalize_domain(node.domain)
    for k, v in opsets.items():
        if normalize_domain(k) == dom:
            return v
    return 1


def op_for(node: ir.Node, opsets: dict):
    """The op implementing this node, or the exception ONNX Runtime raises when there is none."""
    opset = opset_of(node, opsets)
    op = lookup(node.domain, node.op_type, opset)
    if op is None:
        import onnx
        where = f"node '{node.name}'" if node.name else f"a {node.op_type} node"
        try:
            onnx.defs.get_schema(node.op_type, opset, node.domain)
        except Exception:
            raise InvalidGraph(f"This is an invalid model. In {where}: No Op registered for {node.op_type} "
                               f"with domain_version of {opset} (domain '{node.domain}')") from None
        raise NotImplemented(f"Could not find an implementation for {node.op_type}({opset}) {where}")
    return op, opset


def context(node: ir.Node, opset: int, inputs: list, opsets: dict | None = None) -> NodeContext:
    ctx = NodeContext(node.op_type, node.name or node.op_type, opset, attributes(node), inputs,
                      len(node.outputs), node)
    if opsets is not None:
        ctx.extra["opsets"] = opsets
    return ctx


def const_info(arr) -> Info:
    arr = np.asarray(arr) if not isinstance(arr, (list, dict)) else arr
    if isinstance(arr, np.ndarray):
        return Info(tuple(arr.shape), arr.dtype, arr)
    return Info(None, "non-tensor", arr)


def initializer_value(v: ir.Value) -> np.ndarray:
    return tensor_to_numpy(v.const_value)


def numpy_dtype(v: ir.Value):
    if v.dtype is None:
        return None
    try:
        return dtypes.to_numpy(v.dtype.value)
    except Exception:
        return None


def put_in_place(graph: ir.Graph, anchor: ir.Node, node: ir.Node, out: ir.Value, removed: list) -> None:
    """Insert `node` (one output) before `anchor`, its output taking `out`'s type, shape, name
    and every use (graph outputs included), then drop the `removed` nodes (out's producer
    among them) from the graph: how the passes swap a group of nodes for one."""
    graph.insert_before(anchor, node)
    new_out = node.outputs[0]
    new_out.type, new_out.shape = out.type, out.shape
    name = out.name
    out.replace_all_uses_with(new_out, replace_graph_outputs=True)
    graph.remove(removed, safe=False)
    new_out.name = name
