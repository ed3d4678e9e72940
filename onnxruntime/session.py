"""InferenceSession and what it hands back (NodeArg, ModelMetadata): ONNX Runtime's API over ortjit."""
from __future__ import annotations

import json
import os
import time

import ortjit

from .options import RunOptions, SessionOptions
from .values import IOBinding, OrtValue

_PROVIDER = "CPUExecutionProvider"


class NodeArg:
    def __init__(self, spec):
        self.name = spec.name
        self.type = spec.type
        self.shape = list(spec.shape) if spec.has_shape or not spec.is_tensor else None
        if spec.is_tensor and not spec.has_shape:
            self.shape = None

    def __repr__(self):
        return f"NodeArg(name='{self.name}', type='{self.type}', shape={self.shape})"


class ModelMetadata:
    def __init__(self, meta: dict):
        self.producer_name = meta["producer_name"]
        self.graph_name = meta["graph_name"]
        self.domain = meta["domain"]
        self.description = meta["description"]
        self.graph_description = meta["graph_description"]
        self.version = meta["version"]
        self.custom_metadata_map = dict(meta["custom_metadata_map"])


class Session:
    """Base of InferenceSession, as in ONNX Runtime."""


class InferenceSession(Session):
    def __init__(self, path_or_bytes, sess_options: SessionOptions | None = None, providers=None,
                 provider_options=None, **kwargs):
        self._model_path = path_or_bytes if isinstance(path_or_bytes, (str, os.PathLike)) else None
        self._sess_options = sess_options if sess_options is not None else SessionOptions()
        self._providers = _check_providers(providers)
        opts = self._sess_options
        cache_size = int(opts._config.get("session.ortjit.plan_cache_size", 8))
        level = int(opts.graph_optimization_level)
        self._sess = ortjit.compile(path_or_bytes, optimization_level=level,
                                    max_steps=int(opts.max_num_graph_transformation_steps),
                                    plan_cache_size=cache_size,
                                    free_dimension_overrides=dict(opts._free_dims),
                                    num_threads=int(opts.intra_op_num_threads),
                                    cache_dir=opts._config.get("session.ortjit.cache_dir"))
        if opts.optimized_model_filepath:
            self._sess.save_optimized(opts.optimized_model_filepath)
        self._inputs = [NodeArg(s) for s in self._sess.inputs]
        self._outputs = [NodeArg(s) for s in self._sess.outputs]
        self._overridable = [NodeArg(s) for s in self._sess.overridable]
        self._profile = [] if opts.enable_profiling else None
        self._profile_start = time.perf_counter()
        self._profile_start_wall = time.time()

    # ---- what the model looks like
    def get_inputs(self) -> list:
        return list(self._inputs)

    def get_outputs(self) -> list:
        return list(self._outputs)

    def get_overridable_initializers(self) -> list:
        return list(self._overridable)

    def get_modelmeta(self) -> ModelMetadata:
        return ModelMetadata(self._sess.metadata)

    def get_providers(self) -> list:
        return list(self._providers)

    def get_provider_options(self) -> dict:
        return {p: {} for p in self._providers}

    def get_session_options(self) -> SessionOptions:
        return self._sess_options

    def set_providers(self, providers=None, provider_options=None) -> None:
        self._providers = _check_providers(providers)

    def disable_fallback(self) -> None:
        pass

    def enable_fallback(self) -> None:
        pass

    # ---- running
    def run(self, output_names, input_feed, run_options: RunOptions | None = None) -> list:
        if output_names is not None:
            output_names = list(output_names)
            for n in output_names:
                self._sess.output_index(n)
        stop = None
        if run_options is not None:
            stop = run_options._terminate.is_set
            if stop():
                from ortjit.errors import Fail
                raise Fail("Exiting due to terminate flag being set to true.")
        feed = input_feed
        if isinstance(input_feed, dict):
            for v in input_feed.values():
                if isinstance(v, OrtValue):  # copy the feed only when it holds OrtValues
                    feed = {k: (v.numpy() if isinstance(v, OrtValue) else v) for k, v in input_feed.items()}
                    break
        if self._profile is None:
            return self._sess.run(feed, output_names, stop=stop)
        t0 = time.perf_counter()
        steps: list = []
        out = self._sess.run(feed, output_names, stop=stop, profile=steps)
        self._profile.append((t0, time.perf_counter(), steps))
        return out

    def run_with_ort_values(self, output_names, input_dict_ort_values, run_options=None) -> list:
        results = self.run(output_names, {k: v.numpy() for k, v in input_dict_ort_values.items()}, run_options)
        return [OrtValue(r) for r in results]

    def io_binding(self) -> IOBinding:
        return IOBinding(self)

    def run_with_iobinding(self, iobinding: IOBinding, run_options: RunOptions | None = None) -> None:
        iobinding._run(run_options)

    # ---- profiling
    def end_profiling(self) -> str:
        """Write the ORT-style JSON trace of the runs since the session started; returns its path."""
        if self._profile is None:
            return ""
        events = []
        base = self._profile_start

        def us(t):
            return int((t - base) * 1e6)
        for t0, t1, steps in self._profile:
            events.append({"cat": "Session", "pid": os.getpid(), "tid": 0, "dur": us(t1) - us(t0), "ts": us(t0),
                           "ph": "X", "name": "model_run", "args": {}})
            for step, s0, s1 in steps:
                events.append({"cat": "Node", "pid": os.getpid(), "tid": 0, "dur": us(s1) - us(s0), "ts": us(s0),
                               "ph": "X", "name": f"{step.name}_kernel_time",
                               "args": {"op_name": step.op_type, "provider": _PROVIDER,
                                        "input_type_shape": _type_shapes(step.in_infos),
                                        "output_type_shape": _type_shapes(step.out_infos)}})
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(self._profile_start_wall))
        path = f"{self._sess_options.profile_file_prefix}_{stamp}.json"
        with open(path, "w") as f:
            json.dump(events, f)
        self._profile = []
        return path

    def get_profiling_start_time_ns(self) -> int:
        return int(self._profile_start_wall * 1e9)


_TRACE_TYPE_NAMES = {"float32": "float", "float64": "double", "object": "string"}


def _type_shapes(infos) -> list:
    """ONNX Runtime's trace form of tensor types and shapes, [{"float": [1, 3, 224, 224]}, ...]
    (its names: float, double, string, else numpy's); a shape known only when the step
    runs is []."""
    return [{_TRACE_TYPE_NAMES.get(str(i.dtype), str(i.dtype)): list(i.shape or ())} for i in infos]


def _check_providers(providers) -> list:
    if providers is None:
        return [_PROVIDER]
    names = [p[0] if isinstance(p, (tuple, list)) else p for p in providers]
    unknown = [p for p in names if p != _PROVIDER]
    if unknown and _PROVIDER not in names:
        raise ValueError(f"{unknown} is not a valid provider; available providers: ['{_PROVIDER}']")
    return [_PROVIDER]
