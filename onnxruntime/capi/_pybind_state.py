"""Alias of onnxruntime_pybind11_state, as ONNX Runtime also exposes it."""
from .onnxruntime_pybind11_state import *  # noqa: F401,F403
from .onnxruntime_pybind11_state import NotImplemented  # noqa: F401
