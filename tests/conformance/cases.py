"""ONNX's backend test cases on disk, and running one through onnxruntime.backend.

The onnx wheel ships the node case definitions (onnx.backend.test.case.node) but not
their data folders: `materialize` writes them, as onnx's own data folder lays them out
(model.onnx, test_data_set_N/input_K.pb and output_K.pb, with sequences, maps and
optionals as SequenceProto / MapProto / OptionalProto), into a cache folder keyed by the
onnx version. The data the wheel still ships (simple, pytorch-converted,
pytorch-operator) is read where it lies.
"""
from __future__ import annotations

import glob
import os
import shutil
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

ONNX_DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
SHIPPED_KINDS = ("simple", "pytorch-converted", "pytorch-operator")
RTOL, ATOL = 1e-3, 1e-7


@dataclass(frozen=True)
class Case:
    kind: str      # 'node', 'simple', 'pytorch-converted', 'pytorch-operator'
    name: str      # test_abs ...
    path: str      # its folder

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"


def cache_root() -> str:
    import ml_dtypes

    from ortjit import config
    # the node cases' expected data are computed here, some by ml_dtypes' casts
    versions = f"onnx-{onnx.__version__}-ml_dtypes-{ml_dtypes.__version__}"
    return os.path.join(config.cache_dir(), "backend-test-data", versions)


def _serialize(value, value_info: onnx.ValueInfoProto) -> bytes:
    t = value_info.type
    if isinstance(value, (onnx.TensorProto, onnx.SequenceProto, onnx.MapProto, onnx.OptionalProto)):
        proto = value
    elif t.HasField("map_type"):
        proto = numpy_helper.from_dict(value, value_info.name)
    elif t.HasField("sequence_type"):
        proto = numpy_helper.from_list(value, value_info.name)
    elif t.HasField("optional_type"):
        proto = numpy_helper.from_optional(value, value_info.name)
    else:
        proto = numpy_helper.from_array(np.asarray(value), value_info.name)
    return proto.SerializeToString()


def materialize(root: str | None = None) -> str:
    """Write every node case under root/node/<name>/ once; returns the root."""
    root = root or cache_root()
    stamp = os.path.join(root, "node", ".complete")
    if os.path.exists(stamp):
        return root
    from onnx.backend.test.case import node as node_cases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the definitions overflow and divide by zero on purpose
        with np.errstate(all="ignore"):
            cases = node_cases.collect_testcases()
    tmp = os.path.join(root, f"node.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for case in cases:
        folder = os.path.join(tmp, case.name)
        os.makedirs(folder)
        model = case.model
        with open(os.path.join(folder, "model.onnx"), "wb") as f:
            f.write(model.SerializeToString())
        for k, (inputs, outputs) in enumerate(case.data_sets):
            data = os.path.join(folder, f"test_data_set_{k}")
            os.makedirs(data)
            for j, value in enumerate(inputs):
                with open(os.path.join(data, f"input_{j}.pb"), "wb") as f:
                    f.write(_serialize(value, model.graph.input[j]))
            for j, value in enumerate(outputs):
                with open(os.path.join(data, f"output_{j}.pb"), "wb") as f:
                    f.write(_serialize(value, model.graph.output[j]))
    open(os.path.join(tmp, ".complete"), "w").close()
    final = os.path.join(root, "node")
    shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(tmp, final)
    except OSError:  # another process got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def all_cases(root: str | None = None) -> list[Case]:
    root = materialize(root)
    cases = [Case("node", n, os.path.join(root, "node", n)) for n in sorted(os.listdir(os.path.join(root, "node")))
             if not n.startswith(".")]
    for kind in SHIPPED_KINDS:
        folder = os.path.join(ONNX_DATA, kind)
        cases += [Case(kind, n, os.path.join(folder, n)) for n in sorted(os.listdir(folder))]
    return cases


# ---------------------------------------------------------------- reading values

def _read_value(path: str, type_proto: onnx.TypeProto):
    with open(path, "rb") as f:
        data = f.read()
    which = type_proto.WhichOneof("value")
    if which == "sequence_type":
        return _parse(data, onnx.SequenceProto, numpy_helper.to_list)
    if which == "map_type":
        return _parse(data, onnx.MapProto, numpy_helper.to_dict)
    if which == "optional_type":
        return _parse(data, onnx.OptionalProto, numpy_helper.to_optional)
    return _parse(data, onnx.TensorProto, numpy_helper.to_array)


def _parse(data: bytes, cls, convert):
    proto = cls()
    proto.ParseFromString(data)
    return convert(proto)


def load_data_sets(case: Case, model: onnx.ModelProto) -> list[tuple[list, list]]:
    inits = {t.name for t in model.graph.initializer}
    inputs_vi = [vi for vi in model.graph.input if vi.name not in inits]
    sets = []
    for folder in sorted(glob.glob(os.path.join(case.path, "test_data_set_*"))):
        n_in = len(glob.glob(os.path.join(folder, "input_*.pb")))
        n_out = len(glob.glob(os.path.join(folder, "output_*.pb")))
        # an input file may also feed an initializer (overridable), as onnx's runner allows
        vis = inputs_vi if n_in <= len(inputs_vi) else list(model.graph.input)
        ins = [_read_value(os.path.join(folder, f"input_{j}.pb"), vis[j].type) for j in range(n_in)]
        outs = [_read_value(os.path.join(folder, f"output_{j}.pb"), model.graph.output[j].type) for j in range(n_out)]
        sets.append((ins, outs))
    return sets


# ---------------------------------------------------------------- comparing

class Mismatch(AssertionError):
    pass


def _exact_kind(dtype: np.dtype) -> bool:
    """Integers, bool, strings and the ml_dtypes types (bfloat16, float8, int4...) compare exactly."""
    return dtype.kind not in "fc" or dtype.type.__module__.startswith("ml_dtypes")


def compare(expected, got, where: str = "output") -> None:
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(expected) != set(got):
            raise Mismatch(f"{where}: expected a map with keys {sorted(expected)}, got {type(got).__name__}")
        for k in expected:
            compare(expected[k], got[k], f"{where}[{k!r}]")
        return
    if isinstance(expected, list):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            raise Mismatch(f"{where}: expected a sequence of {len(expected)}, got {type(got).__name__} "
                           f"of {len(got) if isinstance(got, (list, tuple)) else '?'}")
        for k, (e, g) in enumerate(zip(expected, got)):
            compare(e, g, f"{where}[{k}]")
        return
    if expected is None:
        if got is not None:
            raise Mismatch(f"{where}: expected None (an empty optional), got {type(got).__name__}")
        return
    expected = np.asarray(expected)
    if not isinstance(got, np.ndarray):
        got = np.asarray(got)
    if got.dtype != expected.dtype:
        raise Mismatch(f"{where}: dtype {got.dtype}, expected {expected.dtype}")
    if got.shape != expected.shape:
        raise Mismatch(f"{where}: shape {got.shape}, expected {expected.shape}")
    if expected.dtype == object or expected.dtype.kind in "SU":
        if not all(a == b for a, b in zip(got.ravel().tolist(), expected.ravel().tolist())):
            raise Mismatch(f"{where}: strings differ: {got.ravel()[:8]} vs {expected.ravel()[:8]}")
        return
    if _exact_kind(expected.dtype):
        if expected.dtype.type.__module__.startswith("ml_dtypes"):  # every one of them casts to float32 exactly
            ok = np.array_equal(expected.astype(np.float32), got.astype(np.float32), equal_nan=True)
        else:
            ok = np.array_equal(expected, got)
        if not ok:
            raise Mismatch(f"{where}: values differ (exact comparison for {expected.dtype})")
        return
    try:
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
    except AssertionError as e:
        raise Mismatch(f"{where}: {str(e).strip()[:600]}") from None


# ---------------------------------------------------------------- running

def run_case(case: Case) -> None:
    """Raises on failure (Mismatch for wrong answers, anything else for errors)."""
    import onnxruntime.backend as backend
    model = onnx.load(os.path.join(case.path, "model.onnx"))
    rep = backend.prepare(model, "CPU")
    for k, (inputs, expected) in enumerate(load_data_sets(case, model)):
        got = rep.run(inputs)
        if len(got) != len(expected):
            raise Mismatch(f"data set {k}: {len(got)} outputs, expected {len(expected)}")
        for j, (e, g) in enumerate(zip(expected, got)):
            compare(e, g, f"data set {k}, output {j} ({model.graph.output[j].name})")
