"""onnx.backend API (is_compatible, prepare, run, supports_device) over InferenceSession,
usable by onnx's BackendTest like ONNX Runtime's own backend module."""
from .backend import OnnxRuntimeBackend, OnnxRuntimeBackendRep  # noqa: F401

is_compatible = OnnxRuntimeBackend.is_compatible
prepare = OnnxRuntimeBackend.prepare
run = OnnxRuntimeBackend.run_model
run_model = OnnxRuntimeBackend.run_model
supports_device = OnnxRuntimeBackend.supports_device
