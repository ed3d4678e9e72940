from __future__ import annotations

import onnx
from onnx.backend.base import Backend, BackendRep

from ..options import SessionOptions
from ..session import InferenceSession


class OnnxRuntimeBackendRep(BackendRep):
    def __init__(self, session: InferenceSession):
        self._session = session

    def run(self, inputs, **kwargs):
        names = [i.name for i in self._session.get_inputs()]
        if isinstance(inputs, dict):
            feed = inputs
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) != len(names):
                # ONNX Runtime's backend also accepts overridable initializers given positionally
                names = names + [i.name for i in self._session.get_overridable_initializers()]
            feed = dict(zip(names, inputs))
        else:
            feed = {names[0]: inputs}
        return self._session.run(None, feed)


class OnnxRuntimeBackend(Backend):
    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().startswith("CPU")

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> OnnxRuntimeBackendRep:
        if isinstance(model, InferenceSession):
            return OnnxRuntimeBackendRep(model)
        if not cls.supports_device(device):
            raise RuntimeError(f"Incompatible device '{device}': ortjit runs on the CPU")
        options = SessionOptions()
        for k, v in kwargs.items():
            if hasattr(options, k):
                setattr(options, k, v)
        if isinstance(model, onnx.ModelProto):
            model = model.SerializeToString()
        return OnnxRuntimeBackendRep(InferenceSession(model, options))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        raise NotImplementedError("run_node is not supported; build a model around the node instead")
