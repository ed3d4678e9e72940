"""A drop-in `onnxruntime`: ONNX Runtime's Python API served by the ortjit compiler.

This package only adapts names and arguments; all compiling and running is ortjit's.
"""
from ortjit import __version__ as _ortjit_version

from .capi.onnxruntime_pybind11_state import (  # noqa: F401
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    NotImplemented,
    RuntimeException,
)
from .options import ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions, SessionOptions  # noqa: F401
from .session import InferenceSession, ModelMetadata, NodeArg, Session  # noqa: F401
from .values import IOBinding, OrtValue  # noqa: F401
from . import datasets  # noqa: F401

__version__ = "1.32.0"  # the ONNX Runtime API this facade follows
__ortjit_version__ = _ortjit_version


def get_device() -> str:
    return "CPU"


def get_available_providers() -> list:
    return ["CPUExecutionProvider"]


def get_all_providers() -> list:
    return ["CPUExecutionProvider"]


def get_build_info() -> str:
    return f"ortjit {_ortjit_version} (Numba CPU backend)"


def set_default_logger_severity(severity: int) -> None:
    global _default_logger_severity
    _default_logger_severity = int(severity)


def set_default_logger_verbosity(verbosity: int) -> None:
    global _default_logger_verbosity
    _default_logger_verbosity = int(verbosity)


_default_logger_severity = 2
_default_logger_verbosity = 0
