"""OrtValue: a tensor (or sequence/map) handed to and from a session, kept as a numpy array on the CPU."""
from __future__ import annotations

import numpy as np

from ortjit.dtypes import ONNX_TYPE_NAMES, to_numpy, to_onnx
from ortjit.errors import InvalidArgument


class OrtValue:
    def __init__(self, value, device_type: str = "cpu", device_id: int = 0):
        self._value = value
        self._device = (device_type, device_id)

    @classmethod
    def ortvalue_from_numpy(cls, numpy_obj, device_type: str = "cpu", device_id: int = 0) -> "OrtValue":
        _check_device(device_type)
        return cls(np.ascontiguousarray(numpy_obj), device_type, device_id)

    @classmethod
    def ortvalue_from_shape_and_type(cls, shape, element_type, device_type: str = "cpu", device_id: int = 0):
        _check_device(device_type)
        return cls(np.empty(tuple(shape), dtype=element_type), device_type, device_id)

    @classmethod
    def ortvalue_from_numpy_with_onnx_type(cls, data, onnx_element_type: int):
        """data's bytes seen as the ONNX element type (no copy), as ONNX Runtime does: for
        types numpy lacks, e.g. bfloat16 held in a uint16 array. The sizes must match."""
        data = np.ascontiguousarray(data)
        try:
            dtype = to_numpy(int(onnx_element_type))
        except Exception:
            raise InvalidArgument(f"Unsupported ONNX element type {onnx_element_type}") from None
        if dtype.itemsize != data.dtype.itemsize:
            raise InvalidArgument(f"The numpy array's element size ({data.dtype.itemsize} bytes, {data.dtype}) "
                                  f"differs from ONNX element type {onnx_element_type}'s ({dtype.itemsize} bytes)")
        return cls(data.view(dtype))

    def numpy(self):
        return self._value

    def data_ptr(self) -> int:
        return self._value.ctypes.data

    def device_name(self) -> str:
        return self._device[0]

    def shape(self) -> list:
        return list(self._value.shape)

    def data_type(self) -> str:
        return f"tensor({ONNX_TYPE_NAMES.get(to_onnx(self._value.dtype), str(self._value.dtype))})"

    def element_type(self) -> int:
        return to_onnx(self._value.dtype)

    def has_value(self) -> bool:
        return self._value is not None

    def is_tensor(self) -> bool:
        return isinstance(self._value, np.ndarray)

    def is_tensor_sequence(self) -> bool:
        return isinstance(self._value, list)

    def is_sparse_tensor(self) -> bool:
        return False

    def update_inplace(self, np_arr) -> None:
        np.copyto(self._value, np_arr)

    def __repr__(self):
        return f"OrtValue({self.data_type()}, shape={self.shape()})"


def _check_device(device_type: str) -> None:
    if str(device_type).lower() != "cpu":
        from .capi.onnxruntime_pybind11_state import InvalidArgument
        raise InvalidArgument(f"Device type '{device_type}' is not available: ortjit runs on the CPU")


class IOBinding:
    """Inputs and outputs bound ahead of a run, as session.io_binding() gives in ONNX Runtime."""

    def __init__(self, session):
        self._session = session
        self._inputs: dict = {}
        self._outputs: list = []          # (name, OrtValue or None)
        self._results: list | None = None

    def bind_cpu_input(self, name: str, arr_on_cpu) -> None:
        self._inputs[name] = np.asarray(arr_on_cpu)

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr) -> None:
        from .capi.onnxruntime_pybind11_state import NotImplemented
        raise NotImplemented("bind_input with a raw buffer pointer is not supported; use bind_cpu_input "
                             "or bind_ortvalue_input")

    def bind_ortvalue_input(self, name: str, ortvalue: OrtValue) -> None:
        self._inputs[name] = ortvalue.numpy()

    def bind_output(self, name: str, device_type: str = "cpu", device_id: int = 0, element_type=None,
                    shape=None, buffer_ptr=None) -> None:
        _check_device(device_type)
        self._session._sess.output_index(name)
        self._outputs.append((name, None))

    def bind_ortvalue_output(self, name: str, ortvalue: OrtValue) -> None:
        self._session._sess.output_index(name)
        self._outputs.append((name, ortvalue))

    def synchronize_inputs(self) -> None:
        pass

    def synchronize_outputs(self) -> None:
        pass

    def clear_binding_inputs(self) -> None:
        self._inputs.clear()

    def clear_binding_outputs(self) -> None:
        self._outputs.clear()
        self._results = None

    def get_outputs(self) -> list:
        return [OrtValue(r) for r in (self._results or [])]

    def copy_outputs_to_cpu(self) -> list:
        return [r.copy() if isinstance(r, np.ndarray) else r for r in (self._results or [])]

    def _run(self, run_options) -> None:
        names = [n for n, _ in self._outputs] or None
        results = self._session.run(names, self._inputs, run_options)
        for (name, target), value in zip(self._outputs, results):
            if target is not None:
                if target.shape() != list(value.shape):
                    from .capi.onnxruntime_pybind11_state import InvalidArgument
                    raise InvalidArgument(f"Bound output '{name}' has shape {target.shape()}, "
                                          f"the model produced {list(value.shape)}")
                target.update_inplace(value)
        self._results = results
