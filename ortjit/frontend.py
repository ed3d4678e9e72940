"""Frontend: a path, bytes or ModelProto becomes a checked, shape-inferred onnx-ir Model."""
from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from . import dtypes
from .errors import InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile


@dataclass(frozen=True)
class ValueSpec:
    """What a graph input or output looks like from outside: name, type, shape."""
    name: str
    type: str                      # 'tensor(float)', 'seq(map(int64,tensor(float)))'
    shape: tuple                   # ints, strings for symbolic dims, None for unknown
    dtype: np.dtype | None         # numpy dtype for tensors, None for other types
    has_shape: bool = True         # False when the model gives no shape (unknown rank)

    @property
    def is_tensor(self) -> bool:
        return self.type.startswith("tensor(")


def read_proto(model, mapped_weights: bool = False) -> tuple[onnx.ModelProto, bool]:
    """Parse whatever the caller gave us into a ModelProto, with ORT's error classes; and
    whether its weights lie in other files (external data, read in unless mapped_weights:
    to_ir then maps them, see map_weights)."""
    if isinstance(model, onnx.ModelProto):
        return model, _has_external_data(model)
    if isinstance(model, (bytes, bytearray, memoryview)):
        proto = _parse(bytes(model), "the given bytes")
        return proto, _has_external_data(proto)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise NoSuchFile(f"Load model from {path} failed: File doesn't exist")
        if os.path.isdir(path):
            raise InvalidArgument(f"Load model from {path} failed: it is a directory, not an .onnx file")
        proto = _parse_file(path)
        external = _has_external_data(proto)
        if external and not mapped_weights:
            try:
                onnx.external_data_helper.load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))
            except (OSError, ValueError) as e:
                raise NoSuchFile(f"Load model from {path} failed: external data: {e}") from None
        return proto, external
    raise InvalidArgument(f"Cannot load a model from an object of type {type(model).__name__}: "
                          "give a path, bytes or an onnx.ModelProto")


def _parse_file(path: str) -> onnx.ModelProto:
    """Parsed from a memory map of the file: protobuf copies what it keeps, so the map is
    closed after, and the file is never read into a bytes object first (14 ms of 25 for a
    17 MB GPT-2, 100-260 ms of 150-330 for ResNet-50's 102 MB: fresh pages, then a copy)."""
    with open(path, "rb") as f:
        if not os.fstat(f.fileno()).st_size:
            return _parse(b"", path)
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        with memoryview(mapped) as view:
            return _parse(view, path)
    finally:
        mapped.close()


def _parse(data, where: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError, sometimes others
        raise InvalidProtobuf(f"Load model from {where} failed: Protobuf parsing failed ({e})") from None
    if not proto.HasField("graph") or not proto.opset_import:
        raise InvalidProtobuf(f"Load model from {where} failed: Protobuf parsing failed (no graph or opset)")
    return proto


def _has_external_data(proto: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


# Initializers above this many bytes go to shape inference as type-only stubs: onnx's
# inference serializes the model and parses it back, which held three copies of VGG-19's
# 548 MB of weights at once (peak RSS 2.9 GB for a session). Shapes and constant inputs
# that inference reads (Reshape targets, Slice bounds) are far smaller.
_INFER_WITHOUT_DATA_BYTES = 1 << 16


def _data_bytes(t: onnx.TensorProto) -> int:
    """Its size from dims and type: reading t.raw_data copies the data out and t.ByteSize()
    encodes it (30-50 ms for ResNet-50's weights). Strings and unknown types count 8 bytes
    an element."""
    n = 1
    for d in t.dims:
        n *= d
    dtype = dtypes.ONNX_TO_NUMPY.get(t.data_type)
    return n * (dtype.itemsize if dtype is not None and dtype != object else 8)


def _copy_fields(src, dst, skip: str | tuple) -> None:
    """Copy every set field of message src into dst but those named in skip (protobuf has
    no such call)."""
    skip = (skip,) if isinstance(skip, str) else skip
    for field, value in src.ListFields():
        if field.name in skip:
            continue
        if field.is_repeated:
            getattr(dst, field.name).extend(value)
        elif field.message_type is not None:
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


def _stubbed(t: onnx.TensorProto) -> bool:
    """Large, or left in an external file (see map_weights): inference gets no data."""
    return _data_bytes(t) > _INFER_WITHOUT_DATA_BYTES or t.data_location == onnx.TensorProto.EXTERNAL


# The trees of these ai.onnx.ml nodes, which their inference never reads (it reads the
# class labels, n_targets and the tensor attributes, all kept): a 100-tree forest holds
# 38,634-long lists in each, which inference would serialize and parse back.
_TREE_OPS = {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"}
_TREE_LIST_PREFIXES = ("nodes_", "class_", "target_", "leaf_")


def _tree_list(node: onnx.NodeProto, a: onnx.AttributeProto) -> bool:
    return node.op_type in _TREE_OPS and node.domain == "ai.onnx.ml" and a.name.startswith(_TREE_LIST_PREFIXES) \
        and a.type in (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS, onnx.AttributeProto.STRINGS)


def _without_big_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of proto whose large initializers keep name, type and dims but no data, and
    whose tree ensembles keep no trees (proto itself if it has neither)."""
    graph = proto.graph
    trees = [k for k, node in enumerate(graph.node) if node.op_type in _TREE_OPS]
    if not trees and not any(_stubbed(t) for t in graph.initializer):
        return proto
    light = onnx.ModelProto()
    _copy_fields(proto, light, skip="graph")
    _copy_fields(graph, light.graph, skip=("initializer", "node") if trees else "initializer")
    for t in graph.initializer:
        if _stubbed(t):
            light.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims)
        else:
            light.graph.initializer.add().CopyFrom(t)
    if trees:
        for node in graph.node:
            if node.op_type not in _TREE_OPS:
                light.graph.node.add().CopyFrom(node)
                continue
            copy = light.graph.node.add()
            _copy_fields(node, copy, skip="attribute")
            copy.attribute.extend(a for a in node.attribute if not _tree_list(node, a))
    return light


def _with_subgraphs(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def infer_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """onnx's shape inference is the first source of shapes; a failure there is an invalid
    graph. Returns proto itself, with the inferred value types added (its outputs and
    subgraphs too); the model as declared must be read before (graph_specs)."""
    light = _without_big_weights(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True)
    except onnx.shape_inference.InferenceError as e:
        raise InvalidGraph(f"This is an invalid model. Shape inference failed: {e}") from None
    except Exception:  # shape inference can trip on custom domains; keep the model as given
        return proto
    if light is proto:
        return inferred
    graph, done = proto.graph, inferred.graph
    del graph.value_info[:]
    graph.value_info.extend(done.value_info)
    for out, new in zip(graph.output, done.output):
        out.CopyFrom(new)
    for node, inferred_node in zip(graph.node, done.node):
        if _with_subgraphs(node):   # their subgraphs' inferred types
            node.CopyFrom(inferred_node)
    return proto


def value_spec(vi: onnx.ValueInfoProto) -> ValueSpec:
    t = vi.type
    type_str = dtypes.type_string(t)
    dtype, shape, has_shape = None, (), False
    if t.WhichOneof("value") == "tensor_type":
        elem = t.tensor_type.elem_type
        dtype = dtypes.ONNX_TO_NUMPY.get(elem)
        if t.tensor_type.HasField("shape"):
            has_shape = True
            shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
                          for d in t.tensor_type.shape.dim)
    return ValueSpec(vi.name, type_str, shape, dtype, has_shape)


def graph_specs(declared: onnx.ModelProto, inferred: onnx.ModelProto):
    """(inputs the caller must feed, overridable initializers, outputs).

    What the model declares wins; shape inference fills outputs declared without a type,
    with dims it could not name left unknown (None).
    """
    init_names = {t.name for t in declared.graph.initializer}
    required = [value_spec(vi) for vi in declared.graph.input if vi.name not in init_names]
    overridable = [value_spec(vi) for vi in declared.graph.input if vi.name in init_names]
    outputs = []
    for vi, inf in zip(declared.graph.output, inferred.graph.output):
        spec = value_spec(vi if vi.type.WhichOneof("value") else inf)
        shape = tuple(None if isinstance(d, str) and d.startswith("unk__") else d for d in spec.shape)
        outputs.append(ValueSpec(spec.name, spec.type, shape, spec.dtype, spec.has_shape))
    return required, overridable, outputs


def _has_map(t: onnx.TypeProto) -> bool:
    which = t.WhichOneof("value")
    return which == "map_type" or (which == "sequence_type" and _has_map(t.sequence_type.elem_type)) \
        or (which == "optional_type" and _has_map(t.optional_type.elem_type))


def _without_map_types(proto: onnx.ModelProto) -> onnx.ModelProto:
    """onnx-ir cannot represent map types; the specs were read before, so drop those types."""
    g = proto.graph
    if not any(_has_map(v.type) for v in [*g.input, *g.output, *g.value_info]):
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for v in [*copy.graph.input, *copy.graph.output, *copy.graph.value_info]:
        if _has_map(v.type):
            v.ClearField("type")
    return copy


def to_ir(proto: onnx.ModelProto, weights_dir: str | None = None) -> ir.Model:
    """weights_dir: where the external data of a proto read with mapped_weights lies."""
    from .functions import expand
    try:
        proto = expand(proto)
    except Exception as e:  # noqa: BLE001 - onnx's inliner rejects malformed functions
        raise InvalidGraph(f"This is an invalid model. Inlining its functions failed: {e}") from None
    proto = _without_map_types(proto)
    light, held = _without_long_attributes(proto)
    try:
        model = ir.serde.deserialize_model(light)
    except Exception as e:
        raise InvalidGraph(f"This is an invalid model: {e}") from None
    nodes = list(model.graph) if held else ()
    for k, attributes in held.items():
        for a in attributes:
            nodes[k].attributes[a.name] = _ReadyAttr(a)
    if weights_dir is not None:
        map_weights(model, weights_dir)
    _own_weights(model)
    return model


def map_weights(model: ir.Model, folder: str) -> None:
    """Initializers held as external data in `folder` become read-only numpy views of one
    memory map of their file, not copies: an artifact's weights (artifact.py), never read
    nor parsed, only their pages touched when used. The file must lie in the folder and
    hold every tensor whole."""
    ir.external_data.set_base_dir(model.graph, folder)   # those left as onnx-ir's own (narrow types)
    maps: dict = {}
    root = os.path.realpath(folder)
    for graph in model.graphs():   # the main graph first
        for v in graph.initializers.values():
            t = v.const_value
            if not isinstance(t, ir.ExternalTensor) or t.dtype not in _PLAIN:
                continue
            path = os.path.realpath(os.path.join(folder, t.location))
            if os.path.dirname(path) != root:
                raise InvalidProtobuf(f"Load model from {folder} failed: the weights of '{v.name}' lie outside "
                                      f"its folder ({t.location})")
            if path not in maps:
                maps[path] = _map_file(path, folder)
            dtype = np.dtype(t.dtype.numpy()).newbyteorder("<")
            try:
                array = np.frombuffer(maps[path], dtype, count=t.size, offset=t.offset or 0)
            except ValueError:
                raise InvalidProtobuf(f"Load model from {folder} failed: {t.location} is truncated "
                                      f"(it lacks the weights of '{v.name}')") from None
            v.const_value = ir.Tensor(array.reshape(tuple(t.shape.numpy())), name=t.name)


def _map_file(path: str, folder: str):
    try:
        with open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""
    except OSError as e:
        raise NoSuchFile(f"Load model from {folder} failed: its weights: {e}") from None


# List attributes longer than this skip onnx-ir's constructor (see _ReadyAttr): a tree
# ensemble's node lists (a 100-tree forest: 540,000 numbers and 38,634 modes)
_LONG_ATTRIBUTE = 1024
_LIST_FIELDS = {onnx.AttributeProto.INTS: "ints", onnx.AttributeProto.FLOATS: "floats",
                onnx.AttributeProto.STRINGS: "strings"}


class EncodedStrings(Sequence):
    """A long STRINGS attribute's value: protobuf's list of bytes, each decoded when read.
    onnx-ir's constructor decodes them all (9 ms of a 100-tree forest's session, for
    nodes_modes), which the kernel that reads them as an array of bytes (`encoded`,
    ops/ml_trees.py) never needs."""

    __slots__ = ("encoded",)

    def __init__(self, encoded):
        self.encoded = encoded

    def __len__(self):
        return len(self.encoded)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [s.decode() for s in self.encoded[i]]
        return self.encoded[i].decode()


class _ReadyAttr(ir.Attr):
    """An INTS or FLOATS attribute whose value is protobuf's own list: a sequence of Python
    ints or floats, which onnx-ir's constructor would convert one by one again (60 ms of a
    100-tree forest's 80 ms of deserializing), and which numpy reads as an array at once
    (np.asarray: 0.03 ms for 38,622 ints, against 2.2 ms through a tuple); a STRINGS one
    whose value is an EncodedStrings. The attribute is copied out of the model first, so
    that its list does not keep the whole model's protobuf memory alive."""

    __slots__ = ("_values",)

    def __init__(self, proto: onnx.AttributeProto):
        super().__init__(proto.name, ir.AttributeType(proto.type), None, doc_string=proto.doc_string or None)
        alone = onnx.AttributeProto()
        alone.CopyFrom(proto)
        self._values = getattr(alone, _LIST_FIELDS[proto.type])
        if proto.type == onnx.AttributeProto.STRINGS:
            self._values = EncodedStrings(self._values)

    @property
    def value(self):
        return self._values


def _long(a: onnx.AttributeProto) -> bool:
    field = _LIST_FIELDS.get(a.type)
    return field is not None and not a.ref_attr_name and len(getattr(a, field)) > _LONG_ATTRIBUTE


def _without_long_attributes(proto: onnx.ModelProto):
    """(a copy of proto whose top-level nodes lack their long list attributes, or proto
    itself if none has one; node index -> the attributes left out)."""
    graph = proto.graph
    held = {k: [a for a in node.attribute if _long(a)] for k, node in enumerate(graph.node)}
    held = {k: attributes for k, attributes in held.items() if attributes}
    if not held:
        return proto, held
    light = onnx.ModelProto()
    _copy_fields(proto, light, skip="graph")
    _copy_fields(graph, light.graph, skip="node")
    for k, node in enumerate(graph.node):
        if k not in held:
            light.graph.node.add().CopyFrom(node)
            continue
        copy = light.graph.node.add()
        _copy_fields(node, copy, skip="attribute")
        copy.attribute.extend(a for a in node.attribute if not _long(a))
    return light, held


# numpy types whose protobuf bytes numpy reads as they are (narrow floats and strings stay
# proto-backed: they are small or rare)
_PLAIN = {ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.INT8, ir.DataType.UINT8,
          ir.DataType.INT16, ir.DataType.UINT16, ir.DataType.INT32, ir.DataType.UINT32, ir.DataType.INT64,
          ir.DataType.UINT64, ir.DataType.BOOL}


def _own_weights(model: ir.Model) -> None:
    """Every tensor of the model detached from the ModelProto, so that it can be freed: a
    tensor read through the proto keeps the whole proto's memory alive (protobuf frees a
    message's arena as one block), and a plan's weights were a second copy of the proto's
    bytes (VGG-19: 548 MB twice). Large plain-typed initializers become numpy-backed
    tensors (the one copy), other tensors standalone copies of their TensorProto."""
    def detach(t, large_ok):
        if not isinstance(t, ir.serde.TensorProtoTensor):
            return t
        if large_ok and t.dtype in _PLAIN and t.nbytes > (1 << 16) and t._proto.HasField("raw_data"):
            return ir.Tensor(t.numpy(), name=t.name)
        alone = onnx.TensorProto()
        alone.CopyFrom(t._proto)
        return ir.serde.TensorProtoTensor(alone)

    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for v in graph.initializers.values():
            v.const_value = detach(v.const_value, True)
        for node in graph:
            for attr in node.attributes.values():
                if attr.type == ir.AttributeType.TENSOR:
                    node.attributes[attr.name] = ir.AttrTensor(attr.name, detach(attr.value, False))
                elif attr.type == ir.AttributeType.TENSORS:
                    node.attributes[attr.name] = ir.AttrTensors(attr.name, [detach(t, False) for t in attr.value])
                elif attr.type == ir.AttributeType.GRAPH:
                    graphs.append(attr.value)
                elif attr.type == ir.AttributeType.GRAPHS:
                    graphs.extend(attr.value)
