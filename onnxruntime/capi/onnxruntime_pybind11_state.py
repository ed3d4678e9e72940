"""ONNX Runtime's exception classes, where its users import them from.

They are ortjit's own error classes: the compiler raises them and the facade lets them
through unchanged, so `except onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument`
catches what it catches with ONNX Runtime.
"""
from ortjit.errors import (  # noqa: F401
    EngineError,
    EPFail,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    ModelLoaded,
    NoModel,
    NoSuchFile,
    NotImplemented,
    RuntimeException,
)
from ..options import ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions, SessionOptions  # noqa: F401,E402
from ..values import OrtValue  # noqa: F401,E402
