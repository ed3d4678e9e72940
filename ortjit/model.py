"""CompiledModel: ortjit's own entry point. Load, optimize, then build one plan per shape signature."""
from __future__ import annotations

import os
import threading

import numpy as np
import onnx
import onnx_ir as ir

from . import artifact, config, frontend, graph_cache, irutil, jit, passes, subgraph
from .dtypes import to_onnx, ONNX_TYPE_NAMES
from .errors import InvalidArgument, OrtjitError
from .ops import blas
from .plan import PlanCache, build_plan


class CompiledModel:
    def __init__(self, model, optimization_level: int = passes.ALL, max_steps: int = 10,
                 plan_cache_size: int = 8, free_dimension_overrides: dict | None = None,
                 num_threads: int = 0, cache_dir: str | None = None, mapped_weights: bool = False,
                 cached_graph: bool = True):
        """mapped_weights: external data memory-mapped, not read (an artifact's, see
        artifact.py: our own files, which nothing rewrites under a session).
        cached_graph: take the optimized graph from the cache folder (graph_cache.py)."""
        if cache_dir:
            config.set_cache_dir(cache_dir)
        if artifact.is_artifact(model):  # compiled ahead of time: its graph is optimized already
            path, applied = artifact.open_artifact(model)
            self._load(path, passes.DISABLE_ALL, max_steps, free_dimension_overrides, True, applied)
            self.passes_applied = [f"{name} (ahead of time)" for name in applied]
        elif not (cached_graph and self._load_cached(model, optimization_level, max_steps, free_dimension_overrides)):
            self._load(model, optimization_level, max_steps, free_dimension_overrides, mapped_weights)
        self.plans = PlanCache(plan_cache_size)
        self._input_by_name = {s.name: s for s in self.inputs}
        self._overridable_names = {s.name for s in self.overridable}
        self._output_index = {s.name: k for k, s in enumerate(self.outputs)}
        self._lock = threading.Lock()
        self._per_thread = threading.local()
        self._fed: dict = {}  # plan key of a validated feed -> (plan, graph-order input names or None: as fed)
        # the entry of _fed last run: its plan is the cache's most recent, as only plan_for
        # (which clears this) can evict or touch another plan outside run's fast path
        self._recent = None
        self.num_threads = _thread_count(num_threads)

    def _load(self, model, optimization_level: int, max_steps: int, free_dimension_overrides, mapped_weights: bool,
              applied: list | None = None) -> None:
        """Read, check and optimize the model. applied: the passes that made the graph given
        (an artifact's, a cached one's), saved after shape inference: not inferred again."""
        mapped = mapped_weights and isinstance(model, (str, os.PathLike))   # a file's external data
        proto, self._external_data = frontend.read_proto(model, mapped)
        if free_dimension_overrides:
            proto = _override_free_dims(proto, free_dimension_overrides)
        declared = onnx.ModelProto()
        declared.graph.input.extend(proto.graph.input)    # what graph_specs reads of the model as given
        declared.graph.output.extend(proto.graph.output)
        declared.graph.initializer.extend(onnx.TensorProto(name=t.name) for t in proto.graph.initializer)
        if applied is None:   # a graph ortjit saved holds what inference gave it; again, it adds nothing
            proto = frontend.infer_shapes(proto)
        self.inputs, self.overridable, self.outputs = frontend.graph_specs(declared, proto)
        self._declared = declared
        self.metadata = {"producer_name": proto.producer_name, "graph_name": proto.graph.name,
                         "domain": proto.domain, "description": proto.doc_string,
                         "graph_description": proto.graph.doc_string, "version": proto.model_version,
                         "custom_metadata_map": {p.key: p.value for p in proto.metadata_props}}
        self.ir = frontend.to_ir(proto, os.path.dirname(os.path.abspath(model)) if mapped else None)
        for node in self.ir.graph.all_nodes():
            irutil.op_for(node, self.ir.opset_imports)  # unknown ops fail here, at load, as in ORT
        self.passes_applied = passes.optimize(self.ir, optimization_level, max_steps)

    def _load_cached(self, model, level: int, steps: int, overrides) -> bool:
        """Load the optimized graph from the cache folder, storing it there first if it is
        not; False where the cache does not apply, or the folder went while it was read."""
        if level <= passes.DISABLE_ALL or not graph_cache.enabled():
            return False
        key = graph_cache.key(model, level, steps, overrides)
        if key is None:
            return False
        found = graph_cache.find(key)
        if found is None:
            made = CompiledModel(model, level, steps, free_dimension_overrides=overrides, cached_graph=False)
            # weights in other files are not under the key; an unwritable folder: what was made serves
            found = None if made._external_data else graph_cache.store(key, made)
            if found is None:
                self.__dict__.update(made.__dict__)
                return True
        path, applied = found
        try:
            self._load(path, passes.DISABLE_ALL, steps, overrides, True, applied)
        except OrtjitError:   # removed under us (evicted by another process)
            return False
        self.passes_applied = applied
        return True

    # ---- running
    def run(self, feed: dict, output_names=None, stop=None, profile=None) -> list:
        # Fast path: a feed whose names, array types, shapes, dtypes and layout are those
        # of a feed validated before needs no validation (it would pass unchanged) and
        # finds its plan by the same key (see _feed_key).
        entry = None
        if type(feed) is dict:
            try:
                key = tuple([(k, v.__class__, v.shape, v.dtype, v.flags.c_contiguous) for k, v in feed.items()])
            except AttributeError:  # a value that is not an array
                pass
            else:
                entry = self._fed.get(key)
                if entry is not None and entry is not self._recent:
                    if self.plans.get(key) is entry[0]:   # also marks the plan recently used
                        self._recent = entry
                    else:
                        entry = None  # the plan was evicted: build it again through the slow path
        if entry is None:
            arrays = self.validate_feed(feed)
            plan = self.plan_for(arrays)
            ordered = [arrays[v.name] for v in self.ir.graph.inputs if v.name in arrays]
        else:
            plan, order = entry
            ordered = list(feed.values()) if order is None else [feed[n] for n in order]
        if self.num_threads and getattr(_threads, "n", 0) != self.num_threads:
            _set_threads(self.num_threads)
        blas_threads = blas.pin_one_thread()
        try:
            if plan.busy.acquire(blocking=False):
                try:
                    results = plan.run(ordered, stop=stop, profile=profile)
                finally:
                    plan.busy.release()
            else:
                # another thread is running this plan, whose buffers hold its intermediates:
                # this thread runs a plan of its own for the same shapes
                arrays = self.validate_feed(feed)
                ordered = [arrays[v.name] for v in self.ir.graph.inputs if v.name in arrays]
                results = self._own_plan(arrays).run(ordered, stop=stop, profile=profile)
        finally:
            blas.unpin(blas_threads)
        if output_names is None:
            return results
        return [results[self.output_index(n)] for n in output_names]

    def output_index(self, name: str) -> int:
        try:
            return self._output_index[name]
        except (KeyError, TypeError):
            raise InvalidArgument(f"Invalid output name: {name}") from None

    def plan_for(self, arrays: dict):
        self._recent = None
        key = _feed_key(arrays)
        plan = self.plans.get(key)
        if plan is None:
            with self._lock:
                plan = self.plans.get(key)
                if plan is None:
                    infos = {n: subgraph.value_info(a) for n, a in arrays.items()}
                    overridden = frozenset(n for n in arrays if n in self._overridable_names)
                    plan = build_plan(self.ir.graph, self.ir.opset_imports, infos, overridden)
                    self.plans.put(key, plan)
        known = self._fed.get(key)
        if (known is None or known[0] is not plan) and all(isinstance(a, np.ndarray) for a in arrays.values()):
            if len(self._fed) >= 4 * self.plans.capacity:
                self._fed.clear()
            order = tuple(v.name for v in self.ir.graph.inputs if v.name in arrays)
            self._fed[key] = (plan, None if order == tuple(arrays) else order)
        return plan

    def _own_plan(self, arrays: dict):
        """This thread's plan for these shapes, for runs concurrent with another thread's."""
        plans = getattr(self._per_thread, "plans", None)
        if plans is None:
            plans = self._per_thread.plans = PlanCache(self.plans.capacity)
        key = _feed_key(arrays)
        plan = plans.get(key)
        if plan is None:
            infos = {n: subgraph.value_info(a) for n, a in arrays.items()}
            overridden = frozenset(n for n in arrays if n in self._overridable_names)
            plan = build_plan(self.ir.graph, self.ir.opset_imports, infos, overridden)
            plans.put(key, plan)
        return plan

    def validate_feed(self, feed: dict) -> dict:
        """Check names, dtypes, ranks and fixed dims as ONNX Runtime does; returns name -> array."""
        if not isinstance(feed, dict):
            raise InvalidArgument(f"The input feed must be a dict of name -> array, not {type(feed).__name__}")
        missing = [s.name for s in self.inputs if s.name not in feed]
        if missing:
            raise InvalidArgument(f"Required inputs ({missing}) are missing from input feed ({list(feed)}).")
        arrays = {}
        for name, value in feed.items():
            spec = self._input_by_name.get(name)
            if spec is None and name not in self._overridable_names:
                raise InvalidArgument(f"Invalid input name: {name}")
            if spec is None:
                spec = next(s for s in self.overridable if s.name == name)
            if not spec.is_tensor:
                arrays[name] = value
                continue
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            if arr.dtype.kind in "US":
                arr = arr.astype(object)
            if spec.dtype is not None and arr.dtype != spec.dtype:
                raise InvalidArgument(f"Unexpected input data type. Actual: (tensor({_type_name(arr.dtype)})) , "
                                      f"expected: ({spec.type}) for input '{name}'")
            if spec.has_shape:
                if arr.ndim != len(spec.shape):
                    raise InvalidArgument(f"Invalid rank for input: {name} Got: {arr.ndim} Expected: {len(spec.shape)} "
                                          "Please fix either the inputs/outputs or the model.")
                bad = [(i, arr.shape[i], d) for i, d in enumerate(spec.shape) if isinstance(d, int) and d != arr.shape[i]]
                if bad:
                    detail = "".join(f" index: {i} Got: {g} Expected: {e}\n" for i, g, e in bad)
                    raise InvalidArgument(f"Got invalid dimensions for input: {name} for the following indices\n"
                                          f"{detail} Please fix either the inputs/outputs or the model.")
            arrays[name] = np.asarray(arr, order="C")  # ascontiguousarray would make 0-d 1-d
        return arrays

    # ---- looking inside
    def fused_groups(self) -> list[tuple[str, list[str]]]:
        producer = {"FusedConv": ["Conv"], "FusedMatMul": ["MatMul"]}
        return [(n.name, producer.get(n.op_type, []) + [b.op_type for b in n.attributes["body"].value])
                for n in self.ir.graph if n.domain == "ortjit"]

    def kernel_sources(self) -> dict[str, str]:
        out = {}
        for plan in self.plans.values():
            for step in plan.steps:
                if step.source:
                    out[getattr(step.fn, "name", step.op_type) + f" ({step.name})"] = step.source
        return out

    def explain(self) -> str:
        lines = [f"passes applied: {', '.join(self.passes_applied) or 'none'}",
                 f"nodes after optimization: {len(self.ir.graph)}"]
        for name, ops in self.fused_groups():
            lines.append(f"fused group {name}: {' -> '.join(ops)}")
        for plan in self.plans.values():
            lines.append(plan.describe())
        for name, src in self.kernel_sources().items():
            lines.append(f"# ---- kernel {name}\n{src}")
        return "\n".join(lines)

    def save_optimized(self, path: str, weights: str | None = None) -> None:
        """The optimized model as an .onnx file; weights: the file name, next to it, that
        initializers of 64 KiB and more go to (external data, each 64-byte aligned, so that
        frontend.map_weights can view them in place)."""
        proto = ir.serde.serialize_model(self.ir)
        # the graph's inputs and outputs as declared: onnx-ir holds no map types (a
        # classifier's seq(map(int64,tensor(float))) probabilities), the saved graph none either
        declared = {v.name: v for v in (*self._declared.graph.input, *self._declared.graph.output)}
        for v in (*proto.graph.input, *proto.graph.output):
            if not v.HasField("type") and v.name in declared:
                v.type.CopyFrom(declared[v.name].type)
        _untyped_bodies(proto.graph)
        if weights is not None:
            _to_external_data(proto, os.path.join(os.path.dirname(path), weights), weights)
        with open(path, "wb") as f:
            f.write(proto.SerializeToString())


def _untyped_bodies(graph: onnx.GraphProto) -> None:
    """Drop the value types inside ortjit's fused nodes' bodies: a plan types a body from
    the node's inputs (ops/fused.body_program), and reading them back was an eighth of
    DenseNet-121's cached-graph session (onnx-ir parses every dim of 122 bodies)."""
    for node in graph.node:
        if node.domain != "ortjit":
            continue
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH and a.name == "body":
                del a.g.value_info[:]
                for v in (*a.g.input, *a.g.output):
                    v.ClearField("type")


def _to_external_data(proto: onnx.ModelProto, path: str, location: str, threshold: int = 1 << 16) -> None:
    """Move the main graph's initializers of `threshold` bytes and more (raw data: numbers,
    not strings) into the file `path`, each at an offset that is a multiple of 64."""
    offset = 0
    with open(path, "wb") as f:
        for t in proto.graph.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL or len(t.raw_data) < threshold:
                continue
            offset = -(-offset // 64) * 64
            f.seek(offset)
            f.write(t.raw_data)
            del t.external_data[:]
            for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(t.raw_data)))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            t.data_location = onnx.TensorProto.EXTERNAL
            offset += len(t.raw_data)
            t.ClearField("raw_data")
    if offset == 0:
        os.remove(path)   # none so large: no weights file, as before


# The thread count last given to Numba on each Python thread: asking Numba for it costs
# about 0.6 microseconds a run (numba.get_num_threads), a sixth of a one-node run. A count
# set on Numba directly, outside ortjit, between two runs is not seen.
_threads = threading.local()


def _set_threads(n: int) -> None:
    """Numba's thread count for this thread's runs. Before Numba is imported (jit.py) it
    is recorded, and set when a run makes Numba ready, before that run's first kernel
    (other threads set theirs at their next run)."""
    if jit.is_ready():
        blas.threaded()   # the threading layer is chosen before Numba's threads start
        jit.ready().set_num_threads(n)
        _threads.n = n
    else:
        _threads.wanted = _threads.n = n


def _threads_when_ready(numba) -> None:
    global _threads
    n = getattr(_threads, "wanted", 0)
    _threads = threading.local()   # every thread gives its count again, now to Numba
    if n:
        blas.threaded()
        numba.set_num_threads(n)
        _threads.n = n


jit.on_ready(_threads_when_ready)


def _feed_key(arrays: dict) -> tuple:
    """The plan key of a validated feed. For arrays it is what the fast path of run() builds
    from a raw feed: a raw feed with the same key passes validation unchanged."""
    return tuple((n, a.__class__, a.shape, a.dtype, a.flags.c_contiguous) if isinstance(a, np.ndarray)
                 else (n, type(a).__name__) for n, a in arrays.items())


def _thread_count(requested: int) -> int:
    """Threads for parallel kernels: 0 means all that Numba was started with."""
    if not requested or requested <= 0:
        return 0
    return min(int(requested), jit.max_threads())


def _type_name(dtype) -> str:
    try:
        return ONNX_TYPE_NAMES[to_onnx(dtype)]
    except KeyError:
        return str(dtype)


def _override_free_dims(proto: onnx.ModelProto, overrides: dict) -> onnx.ModelProto:
    proto2 = onnx.ModelProto()
    proto2.CopyFrom(proto)
    for vi in proto2.graph.input:
        if vi.type.HasField("tensor_type"):
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param in overrides:
                    d.dim_value = int(overrides[d.dim_param])
    return proto2
