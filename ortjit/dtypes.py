"""ONNX element types <-> numpy dtypes, and ONNX Runtime's type strings."""
import numpy as np
from onnx import TensorProto, helper

ONNX_TO_NUMPY = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.UINT64: np.dtype(np.uint64),
    TensorProto.BOOL: np.dtype(np.bool_),
    TensorProto.STRING: np.dtype(object),
}
# bfloat16, float8, float6, float4, int4 and int2 through ml_dtypes (onnx's own mapping).
for _name in ("BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0",
              "FLOAT6E2M3", "FLOAT6E3M2", "FLOAT4E2M1", "INT4", "UINT4", "INT2", "UINT2", "COMPLEX64", "COMPLEX128"):
    _code = getattr(TensorProto, _name, None)
    if _code is not None:
        try:
            ONNX_TO_NUMPY[_code] = np.dtype(helper.tensor_dtype_to_np_dtype(_code))
        except (KeyError, TypeError, ValueError):  # an older onnx without this type
            pass
NUMPY_TO_ONNX = {v: k for k, v in ONNX_TO_NUMPY.items()}

# ONNX Runtime's names, as in NodeArg.type: 'tensor(float)'.
ONNX_TYPE_NAMES = {
    TensorProto.FLOAT: "float", TensorProto.DOUBLE: "double", TensorProto.FLOAT16: "float16",
    TensorProto.BFLOAT16: "bfloat16", TensorProto.INT8: "int8", TensorProto.INT16: "int16",
    TensorProto.INT32: "int32", TensorProto.INT64: "int64", TensorProto.UINT8: "uint8",
    TensorProto.UINT16: "uint16", TensorProto.UINT32: "uint32", TensorProto.UINT64: "uint64",
    TensorProto.BOOL: "bool", TensorProto.STRING: "string",
    TensorProto.COMPLEX64: "complex64", TensorProto.COMPLEX128: "complex128",
    TensorProto.FLOAT8E4M3FN: "float8e4m3fn", TensorProto.FLOAT8E4M3FNUZ: "float8e4m3fnuz",
    TensorProto.FLOAT8E5M2: "float8e5m2", TensorProto.FLOAT8E5M2FNUZ: "float8e5m2fnuz",
    TensorProto.UINT4: "uint4", TensorProto.INT4: "int4",
}
for _name, _text in (("FLOAT4E2M1", "float4e2m1"), ("FLOAT8E8M0", "float8e8m0"), ("INT2", "int2"), ("UINT2", "uint2"),
                     ("FLOAT6E2M3", "float6e2m3"), ("FLOAT6E3M2", "float6e3m2")):
    if hasattr(TensorProto, _name):
        ONNX_TYPE_NAMES[getattr(TensorProto, _name)] = _text


def to_numpy(elem_type: int) -> np.dtype:
    try:
        return ONNX_TO_NUMPY[int(elem_type)]
    except KeyError:
        from .errors import NotImplemented
        raise NotImplemented(f"element type {TensorProto.DataType.Name(int(elem_type))} is not supported") from None


def to_onnx(dtype) -> int:
    dtype = np.dtype(dtype)
    if dtype.kind in "US":
        return TensorProto.STRING
    return NUMPY_TO_ONNX[dtype]


def type_string(type_proto) -> str:
    """'tensor(float)', 'seq(map(int64,tensor(float)))' from an onnx TypeProto."""
    which = type_proto.WhichOneof("value")
    if which == "tensor_type":
        return f"tensor({ONNX_TYPE_NAMES.get(type_proto.tensor_type.elem_type, 'undefined')})"
    if which == "sequence_type":
        return f"seq({type_string(type_proto.sequence_type.elem_type)})"
    if which == "map_type":
        key = ONNX_TYPE_NAMES.get(type_proto.map_type.key_type, "undefined")
        return f"map({key},{type_string(type_proto.map_type.value_type)})"
    if which == "optional_type":
        return f"optional({type_string(type_proto.optional_type.elem_type)})"
    if which == "sparse_tensor_type":
        return f"sparse_tensor({ONNX_TYPE_NAMES.get(type_proto.sparse_tensor_type.elem_type, 'undefined')})"
    return "undefined"


def is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def is_int(dtype) -> bool:
    return np.dtype(dtype).kind in "iu"
