"""Conv + BatchNormalization (and per-channel Mul, Add) folding, and moving Conv/Gemm biases
into elementwise epilogues.

Inference-mode BatchNormalization is y = x * s + t per channel, with s = scale / sqrt(var + eps)
and t = B - mean * s. Right after a Conv whose weights are constants and whose result
nothing else reads, s and t go into the Conv's weights and bias: the BatchNormalization
costs nothing at run time. Anywhere else it becomes Mul and Add by per-channel constants,
which elementwise fusion then merges with the ReLU (or whatever follows) into one loop.
A Mul or Add by a per-channel (or scalar) constant right after such a Conv folds the same
way, as ONNX Runtime's ConvMulFusion and ConvAddFusion do: Inception v2 follows every
BatchNormalization with one of each.

A Conv's bias is a separate pass over its output (numpy adds it after the GEMM). When an
elementwise node reads the Conv's result and nothing else does, the bias becomes an Add in
front of that node, so elementwise fusion folds bias, BatchNormalization, residual Add and
activation into the one loop that runs after the GEMM. Gemm with a constant 1-D C and
MatMul followed by Add are left as they are: numpy adds those in one pass already.

Only float32/float64 are rewritten (float16 would round differently from the unfused graph).
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .. import irutil
from .elementwise_fusion import _fusable

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _const(v: ir.Value | None, inputs: set) -> np.ndarray | None:
    """The constant value of v, unless it is missing or a graph input (overridable)."""
    if v is None or v.const_value is None or v in inputs:
        return None
    return irutil.initializer_value(v)


def _sole_use(v: ir.Value, node: ir.Node) -> bool:
    return not v.is_graph_output() and all(u.node is node for u in v.uses()) and len(list(v.uses())) == 1


def _is_op(node: ir.Node | None, op_type: str) -> bool:
    return node is not None and node.domain in ("", "ai.onnx") and node.op_type == op_type


class _Rewriter:
    def __init__(self, graph: ir.Graph):
        self.graph = graph
        self.names = {v.name for v in graph.initializers.values()} | {v.name for n in graph for v in n.outputs}

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def constant(self, array: np.ndarray, base: str) -> ir.Value:
        name = self.fresh(base)
        t = irutil.tensor(np.ascontiguousarray(array), name)
        v = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(t.dtype), const_value=t)
        self.graph.register_initializer(v)
        return v

    def insert_after(self, anchor: ir.Node, op_type: str, inputs: list, name: str) -> ir.Node:
        node = ir.Node("", op_type, inputs, num_outputs=1, name=self.fresh(name))
        self.graph.insert_after(anchor, node)
        return node


def _bn_affine(node: ir.Node, inputs: set):
    """(x, s, t, dtype) of an inference-mode BatchNormalization with constant parameters, else None."""
    if not _is_op(node, "BatchNormalization") or len(node.inputs) != 5:
        return None
    attrs = {k: a.value for k, a in node.attributes.items()}
    # training (opset 14's training_mode, opset 1-6's is_test=0), per-activation statistics
    # (spatial=0 before opset 9), or running statistics read: not a per-channel affine map
    if attrs.get("training_mode", 0) or not attrs.get("is_test", 1) or not attrs.get("spatial", 1) or \
            any(v is not None and (v.uses() or v.is_graph_output()) for v in node.outputs[1:]):
        return None
    params = [_const(v, inputs) for v in node.inputs[1:]]
    x = node.inputs[0]
    dtype = irutil.numpy_dtype(x)
    if any(p is None for p in params) or dtype not in _FLOATS or x.shape is None or len(x.shape) < 2:
        return None
    scale, b, mean, var = (p.astype(np.float64) for p in params)
    channels = x.shape[1]
    # a mismatch is left to the node, whose error names it and its parameters
    if any(p.shape != (channels,) for p in (scale, b, mean, var)):
        return None
    eps = node.attributes.get("epsilon")
    s = scale / np.sqrt(var + (eps.value if eps is not None else 1e-5))
    return x, s, b - mean * s, dtype


def _channel_affine(node: ir.Node, inputs: set):
    """(x, s, t, dtype) of Mul(X, c) or Add(X, c), either order, where c is a constant that
    broadcasts per channel of X without changing X's shape: (C, 1, ..., 1) with at most X's
    rank - 1 dims, a scalar, or either with a leading 1 for the batch axis."""
    if not (_is_op(node, "Mul") or _is_op(node, "Add")) or len(node.inputs) != 2:
        return None
    for x, c in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        c = _const(c, inputs)
        if c is not None and x is not None and x.shape is not None and len(x.shape) >= 3 and \
                isinstance(x.shape[1], int):
            break
    else:
        return None
    dtype, channels, rank = irutil.numpy_dtype(x), x.shape[1], len(x.shape)
    dims = list(c.shape)
    if len(dims) == rank and dims[0] == 1:   # the batch axis, broadcast
        dims.pop(0)
    if c.dtype != dtype or dtype not in _FLOATS or len(dims) > rank - 1 or any(d != 1 for d in dims[1:]):
        return None
    if dims and dims[0] != 1 and (len(dims) < rank - 1 or dims[0] != channels):   # not the channel axis
        return None
    vec = np.broadcast_to(c.reshape(-1).astype(np.float64), (channels,))
    if _is_op(node, "Mul"):
        return x, vec, np.zeros(channels), dtype
    return x, np.ones(channels), vec, dtype


def _per_channel(vec: np.ndarray, rank: int, dtype) -> np.ndarray:
    return vec.astype(dtype).reshape((-1,) + (1,) * (rank - 2))


class ConvBatchNormPass(ir.passes.InPlacePass):
    """Folds inference BatchNormalization into the Conv before it, else into Mul + Add; folds
    a per-channel constant Mul or Add into the Conv before it."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        inputs = set(graph.inputs)
        rw = _Rewriter(graph)
        modified = False
        for node in list(graph):
            if node.graph is not graph:   # removed with a chain folded before it
                continue
            affine = _bn_affine(node, inputs) or _channel_affine(node, inputs)
            if affine is None:
                continue
            x, s, t, dtype = affine
            y = node.outputs[0]
            conv = x.producer()
            if _is_op(conv, "Conv") and _sole_use(x, node):
                # the affine nodes that follow (BN -> Mul -> Add) composed first: the
                # weights are scaled once (Inception v2's 44 MB twice cost 30 ms a session)
                chain = [node]
                while not y.is_graph_output() and len(y.uses()) == 1:
                    follower = next(iter(y.uses())).node
                    more = _bn_affine(follower, inputs) or _channel_affine(follower, inputs)
                    if more is None or more[0] is not y or more[3] != dtype:
                        break
                    s, t = s * more[1], t * more[1] + more[2]
                    chain.append(follower)
                    y = follower.outputs[0]
                if not self._fold_into_conv(rw, conv, s, t, inputs):
                    continue
                conv.outputs[0].shape, conv.outputs[0].type = y.shape, y.type
                y.replace_all_uses_with(conv.outputs[0], replace_graph_outputs=True)
                name = y.name
                for folded in reversed(chain):
                    graph.remove(folded, safe=True)
                conv.outputs[0].name = name
            elif _is_op(node, "BatchNormalization"):
                rank = len(x.shape)
                mul = rw.insert_after(node, "Mul", [x, rw.constant(_per_channel(s, rank, dtype), f"{node.name}_scale")],
                                      f"{node.name}_mul")
                add = rw.insert_after(mul, "Add", [mul.outputs[0], rw.constant(_per_channel(t, rank, dtype),
                                                                               f"{node.name}_shift")], f"{node.name}_add")
                mul.outputs[0].shape, mul.outputs[0].type = y.shape, y.type
                add.outputs[0].shape, add.outputs[0].type = y.shape, y.type
                y.replace_all_uses_with(add.outputs[0], replace_graph_outputs=True)
                name = y.name
                graph.remove(node, safe=True)
                add.outputs[0].name = name
            else:   # a Mul or Add that stays as it is
                continue
            modified = True
        return ir.passes.PassResult(model, modified)

    @staticmethod
    def _fold_into_conv(rw: _Rewriter, conv: ir.Node, s, t, inputs: set) -> bool:
        w = _const(conv.inputs[1], inputs)
        b = _const(conv.inputs[2], inputs) if len(conv.inputs) > 2 and conv.inputs[2] is not None else None
        if w is None or w.dtype not in _FLOATS or w.shape[0] != s.shape[0] or \
                (len(conv.inputs) > 2 and conv.inputs[2] is not None and b is None):
            return False
        # in the weights' own type, as ONNX Runtime folds: the scale rounded once, then each
        # product (a float64 detour cost 0.2 s of ResNet-50's session for half an ulp)
        new_b = ((b.astype(np.float64) if b is not None else 0.0) * s + t).astype(w.dtype)
        if np.any(s != 1):   # an Add leaves the weights as they are
            new_w = w * s.astype(w.dtype).reshape((-1,) + (1,) * (w.ndim - 1))
            conv.replace_input_with(1, rw.constant(new_w, f"{conv.name}_W_bn"))
        if len(conv.inputs) < 3:
            conv.resize_inputs(3)
        conv.replace_input_with(2, rw.constant(new_b, f"{conv.name}_B_bn"))
        return True


class ConvBiasEpiloguePass(ir.passes.InPlacePass):
    """Conv(X, W, B) -> elementwise op  becomes  Conv(X, W) -> Add(B) -> elementwise op."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph, opsets = model.graph, model.opset_imports
        inputs = set(graph.inputs)
        rw = _Rewriter(graph)
        modified = False
        for conv in list(graph):
            if not _is_op(conv, "Conv") or len(conv.inputs) < 3 or conv.inputs[2] is None:
                continue
            y, b = conv.outputs[0], _const(conv.inputs[2], inputs)
            uses = list(y.uses())
            if b is None or b.ndim != 1 or y.is_graph_output() or len(uses) != 1 or y.shape is None:
                continue
            consumer = uses[0].node
            if irutil.numpy_dtype(y) not in _FLOATS or not _fusable(consumer, opsets) or \
                    consumer.outputs[0].shape is None or list(consumer.outputs[0].shape) != list(y.shape):
                continue
            bias = rw.constant(_per_channel(b, len(y.shape), b.dtype), f"{conv.name}_bias")
            conv.resize_inputs(2)
            add = rw.insert_after(conv, "Add", [y, bias], f"{conv.name}_bias_add")
            add.outputs[0].shape, add.outputs[0].type = y.shape, y.type
            consumer.replace_input_with(uses[0].idx, add.outputs[0])
            modified = True
        return ir.passes.PassResult(model, modified)
