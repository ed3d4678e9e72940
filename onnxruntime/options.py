"""SessionOptions, RunOptions and their enums, under both the seed document's names and today's."""
from __future__ import annotations

import enum
import os
import threading


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


class _Aliased:
    """Attributes that ONNX Runtime renamed across versions: old names read and write the new ones."""
    _aliases: dict = {}

    def __getattr__(self, name):
        alias = type(self)._aliases.get(name)
        if alias is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        return getattr(self, alias)

    def __setattr__(self, name, value):
        name = type(self)._aliases.get(name, name)
        if not name.startswith("_") and not hasattr(type(self), name) and name not in self.__dict__:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


class SessionOptions(_Aliased):
    enable_cpu_mem_arena = True
    enable_mem_pattern = True
    enable_mem_reuse = True
    enable_profiling = False
    profile_file_prefix = "onnxruntime_profile_"
    execution_mode = ExecutionMode.ORT_SEQUENTIAL
    execution_order = ExecutionOrder.DEFAULT
    graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
    max_num_graph_transformation_steps = 10
    inter_op_num_threads = 0
    intra_op_num_threads = 0
    log_severity_level = 2
    log_verbosity_level = 0
    logid = ""
    optimized_model_filepath = ""
    use_deterministic_compute = False

    # the seed document's names for the same settings
    _aliases = {
        "session_logid": "logid",
        "session_log_severity_level": "log_severity_level",
        "session_log_verbosity_level": "log_verbosity_level",
        "session_thread_pool_size": "intra_op_num_threads",
    }

    def __init__(self):
        self._config: dict = {}
        self._free_dims: dict = {}
        self._free_dims_by_denotation: dict = {}
        self._initializers: dict = {}

    # the seed document's switch between sequential and parallel execution
    @property
    def enable_sequential_execution(self) -> bool:
        return self.execution_mode == ExecutionMode.ORT_SEQUENTIAL

    @enable_sequential_execution.setter
    def enable_sequential_execution(self, value: bool):
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL if value else ExecutionMode.ORT_PARALLEL

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._config[str(key)] = str(value)

    def get_session_config_entry(self, key: str) -> str:
        from .capi.onnxruntime_pybind11_state import InvalidArgument
        if key not in self._config:
            raise InvalidArgument(f"SessionOptions does not have configuration with key: {key}")
        return self._config[key]

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        self._free_dims[str(dim_name)] = int(dim_value)

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        self._free_dims_by_denotation[str(dim_denotation)] = int(dim_value)

    def add_initializer(self, name: str, value) -> None:
        self._initializers[name] = value

    def register_custom_ops_library(self, library_path: str) -> None:
        from .capi.onnxruntime_pybind11_state import NotImplemented
        raise NotImplemented(f"Custom op libraries are native code; ortjit cannot load {library_path}")


class RunOptions(_Aliased):
    log_severity_level = 2
    log_verbosity_level = 0
    logid = ""
    only_execute_path_to_fetches = False

    _aliases = {
        "run_log_severity_level": "log_severity_level",
        "run_log_verbosity_level": "log_verbosity_level",
        "run_tag": "logid",
    }

    def __init__(self):
        self._terminate = threading.Event()
        self._config: dict = {}

    @property
    def terminate(self) -> bool:
        """Set to True (from any thread) to cancel the runs using these options."""
        return self._terminate.is_set()

    @terminate.setter
    def terminate(self, value: bool):
        if value:
            self._terminate.set()
        else:
            self._terminate.clear()

    def add_run_config_entry(self, key: str, value: str) -> None:
        self._config[str(key)] = str(value)

    def get_run_config_entry(self, key: str) -> str:
        return self._config[key]


def default_thread_count() -> int:
    return os.cpu_count() or 1
