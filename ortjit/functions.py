"""Functions: a model's local functions are inlined, and a node of an op that ortjit does
not implement but that ONNX defines as a function of other ops (its schema has a function
body, possibly depending on the node's input types) is replaced by that body, as ONNX
Runtime does for function ops."""
from __future__ import annotations

import onnx
import onnx.inliner

from .ops import lookup
from .ops.registry import normalize_domain

EXPANDED_DOMAIN = "ortjit.expanded"


def _opset(proto: onnx.ModelProto, domain: str) -> int:
    for o in proto.opset_import:
        if normalize_domain(o.domain) == normalize_domain(domain):
            return o.version
    return 1


def _types(proto: onnx.ModelProto) -> dict:
    known = {}
    for vi in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        known[vi.name] = vi.type
    for t in proto.graph.initializer:
        tp = onnx.TypeProto()
        tp.tensor_type.elem_type = t.data_type
        for d in t.dims:
            tp.tensor_type.shape.dim.add().dim_value = d
        known[t.name] = tp
    return known


def _body(node: onnx.NodeProto, opset: int, types: dict) -> onnx.FunctionProto | None:
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except Exception:
        return None
    data = None
    if schema.has_function:
        versions = [v for v in schema.function_opset_versions if v <= opset]
        if versions:
            data = schema.get_function_with_opset_version(max(versions))
    elif schema.has_context_dependent_function:
        versions = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
        input_types = [types.get(name) for name in node.input]
        if versions and all(t is not None for t in input_types if t is not None) and \
                all(name == "" or name in types for name in node.input):
            try:
                data = schema.get_context_dependent_function_with_opset_version(
                    max(versions), node.SerializeToString(),
                    [(types[n] if n else onnx.TypeProto()).SerializeToString() for n in node.input])
            except Exception:
                data = None
    if not data:
        return None
    fn = onnx.FunctionProto()
    fn.ParseFromString(data)
    return fn if fn.node else None


def _body_nodes(nodes):
    for n in nodes:
        yield n
        for attr in n.attribute:
            for g in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                yield from _body_nodes(g.node)


def _fits_model_opsets(fn: onnx.FunctionProto, proto: onnx.ModelProto) -> bool:
    """Whether the body means the same under the model's opsets: inlined nodes run with
    the model's versions, so every op of the body must have the same definition in both.
    When it does, the body's imports are set to the model's (onnx's inliner wants that)."""
    body_opsets = {normalize_domain(o.domain): o.version for o in fn.opset_import}
    model_opsets = {normalize_domain(o.domain): o.version for o in proto.opset_import}
    for n in _body_nodes(fn.node):
        d = normalize_domain(n.domain)
        fv, mv = body_opsets.get(d), model_opsets.get(d)
        if fv is None or mv is None or fv == mv:
            continue
        try:
            if onnx.defs.get_schema(n.op_type, fv, n.domain).since_version != \
                    onnx.defs.get_schema(n.op_type, mv, n.domain).since_version:
                return False
        except Exception:
            return False
    for o in fn.opset_import:
        if normalize_domain(o.domain) in model_opsets:
            o.version = model_opsets[normalize_domain(o.domain)]
    return True


def _add_defaults(node: onnx.NodeProto, fn: onnx.FunctionProto, opset: int) -> None:
    """Attributes the node leaves out take the schema's (or the body's) defaults, which the
    inliner does not fill in for references like `axes = @axes`."""
    given = {a.name for a in node.attribute}
    schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    for name, attr in schema.attributes.items():
        default = attr.default_value
        if name not in given and default is not None and default.type != onnx.AttributeProto.UNDEFINED:
            a = node.attribute.add()
            a.CopyFrom(default)
            a.name = name
            given.add(name)
    node.attribute.extend(a for a in fn.attribute_proto if a.name not in given)


def _unimplemented(node: onnx.NodeProto, proto: onnx.ModelProto) -> bool:
    return node.domain != EXPANDED_DOMAIN and lookup(node.domain, node.op_type, _opset(proto, node.domain)) is None


def _expand_graph(graph: onnx.GraphProto, proto: onnx.ModelProto, types: dict, added: list) -> None:
    for node in graph.node:
        for attr in node.attribute:
            for g in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                _expand_graph(g, proto, types, added)
        if not _unimplemented(node, proto):
            continue
        opset = _opset(proto, node.domain)
        fn = _body(node, opset, types)
        if fn is None or not _fits_model_opsets(fn, proto):
            continue
        _add_defaults(node, fn, opset)
        fn.name = f"{node.op_type}_{len(proto.functions) + len(added)}"
        fn.domain = EXPANDED_DOMAIN
        node.op_type, node.domain = fn.name, EXPANDED_DOMAIN
        added.append(fn)


def expand(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Local functions inlined, function ops without an implementation expanded."""
    if not proto.functions and not any(_unimplemented(n, proto) for n in _body_nodes(proto.graph.node)):
        return proto  # nothing to do, and no copy of the model (76 ms for ResNet-50's weights)
    for _ in range(4):  # a body may itself hold function ops
        added: list = []
        copy = onnx.ModelProto()
        copy.CopyFrom(proto)
        _expand_graph(copy.graph, copy, _types(copy), added)
        if not added and not copy.functions:
            return proto
        copy.functions.extend(added)
        if added and not any(o.domain == EXPANDED_DOMAIN for o in copy.opset_import):
            copy.opset_import.add(domain=EXPANDED_DOMAIN, version=1)
        for fn in added:  # the body's own opset imports, where the model lacks them
            for o in fn.opset_import:
                if not any(normalize_domain(m.domain) == normalize_domain(o.domain) for m in copy.opset_import):
                    copy.opset_import.add(domain=o.domain, version=o.version)
        proto = onnx.inliner.inline_local_functions(copy)
        del proto.functions[:]
        proto = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False) \
            if added else proto
    return proto
