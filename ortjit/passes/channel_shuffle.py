"""A channel shuffle read by a depthwise Conv becomes one ortjit.ChannelShuffleConv node
(ops/conv.py): the convolution reads each input channel from where the shuffle would have
taken it, and the shuffled tensor is never written.

ShuffleNet writes the shuffle as Reshape (N, C, H, W) -> (N, g, C/g, H, W), Transpose
(0, 2, 1, 3, 4), Reshape back to (N, C, H, W), and feeds it to a depthwise convolution,
whose output channel j reads input channel j alone: so channel j of the shuffled tensor,
which is channel (j % g) * (C/g) + j // g of the tensor before it, can be read there. One
Transpose a unit fewer (16 in ShuffleNet), each a pass over the unit's whole tensor.
ONNX Runtime runs the three nodes.

Only where the shuffle's tensors have no other reader, the shapes are known (the batch
may be symbolic), and the Conv is depthwise (group = C, one input channel a group) with a
window wider than one tap.
"""
from __future__ import annotations

import onnx_ir as ir

from .. import irutil
from .conv_folding import _is_op, _sole_use
from .elementwise_fusion import FUSED_DOMAIN

_SHUFFLE_PERM = [0, 2, 1, 3, 4]
ENABLED = True   # off: the shuffle runs as its three nodes (for A/B runs)


def _dims(v: ir.Value) -> list | None:
    return None if v is None or v.shape is None else list(v.shape)


def _attr(node: ir.Node, name: str, default=None):
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _shuffled_channels(x: ir.Value, conv: ir.Node) -> tuple[ir.Value, list[int], list[ir.Node]] | None:
    """(the tensor before the shuffle, the channel of it that each channel of x is, the
    shuffle's three nodes) when x is a channel shuffle that only `conv` reads."""
    second = x.producer()
    if not _is_op(second, "Reshape") or not _sole_use(x, conv):
        return None
    moved = second.inputs[0]
    transpose = moved.producer()
    if not _is_op(transpose, "Transpose") or not _sole_use(moved, second) or \
            list(_attr(transpose, "perm", [])) != _SHUFFLE_PERM:
        return None
    grouped = transpose.inputs[0]
    first = grouped.producer()
    if not _is_op(first, "Reshape") or not _sole_use(grouped, transpose):
        return None
    source = first.inputs[0]
    s, g5, out = _dims(source), _dims(grouped), _dims(x)
    if s is None or g5 is None or out is None or len(s) != 4 or len(g5) != 5 or len(out) != 4:
        return None
    if not all(isinstance(d, int) for d in s[1:] + g5[1:] + out[1:]):
        return None
    c, groups, per_group = s[1], g5[1], g5[2]
    if groups * per_group != c or g5[3:] != s[2:] or out[1:] != s[1:] or not (s[0] == g5[0] == out[0]):
        return None
    return source, [(j % groups) * per_group + j // groups for j in range(c)], [first, transpose, second]


def _depthwise(conv: ir.Node) -> bool:
    """A 2-D Conv with one input channel a group and a window of more than one tap."""
    x, w = conv.inputs[0], conv.inputs[1] if len(conv.inputs) > 1 else None
    xd, wd = _dims(x), _dims(w)
    if xd is None or wd is None or len(xd) != 4 or len(wd) != 4 or not all(isinstance(d, int) for d in wd):
        return False
    return wd[1] == 1 and _attr(conv, "group", 1) == xd[1] and wd[2] * wd[3] > 1


class ChannelShuffleConvPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for conv in list(graph) if ENABLED else ():
            if not _is_op(conv, "Conv") or not _depthwise(conv):
                continue
            found = _shuffled_channels(conv.inputs[0], conv)
            if found is None:
                continue
            source, order, shuffle = found
            node = ir.Node(FUSED_DOMAIN, "ChannelShuffleConv", [source, *conv.inputs[1:]], num_outputs=1,
                           name=f"{conv.name or 'conv'}_shuffled")
            for name, attr in conv.attributes.items():
                node.attributes[name] = attr
            node.attributes["input_channels"] = ir.AttrInt64s("input_channels", order)
            irutil.put_in_place(graph, conv, node, conv.outputs[0], [conv, *reversed(shuffle)])
            modified = True
        return ir.passes.PassResult(model, modified)
