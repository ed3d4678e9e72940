"""Error categories of the compiler and runtime.

The names follow ONNX Runtime's status codes so that the facade can expose these very
classes under `onnxruntime.capi.onnxruntime_pybind11_state` without translation.
"""


class OrtjitError(Exception):
    """Base of every error ortjit raises on purpose."""


class Fail(OrtjitError):
    """The model or a run failed for a reason that is not the caller's argument."""


class InvalidArgument(OrtjitError):
    """An argument given by the caller (input name, dtype, shape, option) is wrong."""


class NoSuchFile(OrtjitError):
    """A path given by the caller does not exist."""


class InvalidProtobuf(OrtjitError):
    """The bytes given are not a parseable ONNX model."""


class InvalidGraph(OrtjitError):
    """The model parses but its graph is not valid (unknown op, bad types, ...)."""


class NotImplemented(OrtjitError):  # noqa: A001 - the ONNX Runtime name
    """The model uses something ortjit does not implement yet."""


class RuntimeException(OrtjitError):
    """A kernel failed while running (index out of range, impossible reshape...)."""


class EPFail(OrtjitError):
    """Execution provider failure (kept for API parity)."""


class ModelLoaded(OrtjitError):
    """Kept for API parity with ONNX Runtime."""


class NoModel(OrtjitError):
    """Kept for API parity with ONNX Runtime."""


class EngineError(OrtjitError):
    """Kept for API parity with ONNX Runtime."""


