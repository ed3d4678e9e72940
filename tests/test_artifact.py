"""Ahead-of-time artifacts (`ortjit compile`): written once, loaded by a session in another
process whose kernel cache is empty, with no Numba compilation for the compiled shapes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ortjit import cli
from tests.util import COUNT_COMPILES

# Reports the outputs, the Numba compilations and the warnings of a first run.
RUN = COUNT_COMPILES + r"""
import json, sys, warnings
import numpy as np
import onnxruntime as ort
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        sess = ort.InferenceSession(sys.argv[1])
        x = np.linspace(-2, 2, int(sys.argv[2]) * 4, dtype=np.float32).reshape(-1, 4)
        y = sess.run(None, {"x": x})[0].tolist()
        error = None
    except Exception as e:
        y, error = None, f"{type(e).__name__}: {e}"
print(json.dumps({"y": y, "compiles": compiles, "error": error,
                  "warnings": [str(w.message) for w in caught]}))
"""


def _model(path):
    """x[N, 4] @ W + b -> Relu -> * 2: a GEMM and a fused elementwise kernel."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.arange(12, dtype=np.float32) / 10)
    b = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.5, -0.5, 0.0])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
                           helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Mul", ["r", "two"], ["y"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w, b, two])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _expected(rows):
    x = np.linspace(-2, 2, rows * 4, dtype=np.float32).reshape(-1, 4)
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    return (np.maximum(x @ w + np.array([0.5, -0.5, 0.0], np.float32), 0) * 2)


def _run(target, rows, cache):
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(cache))
    res = subprocess.run([sys.executable, "-c", RUN, str(target), str(rows)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("aot")
    model = _model(str(root / "model.onnx"))
    out = root / "model.ortjit"
    assert cli.main(["compile", model, "-o", str(out), "--shape", "x=5,4", "--shape", "x=64,4"]) == 0
    return out


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_an_artifact_runs_its_shapes_without_compiling_in_a_fresh_process(artifact, tmp_path):
    manifest = json.loads((artifact / "ortjit-artifact.json").read_text())
    assert [s["x"]["shape"] for s in manifest["signatures"]] == [[5, 4], [64, 4]]
    assert manifest["entries"] and all((artifact / "cache" / e).is_file() for e in manifest["entries"])
    for rows in (5, 64):
        got = _run(artifact, rows, tmp_path / f"empty{rows}")
        assert got["compiles"] == [] and got["error"] is None, got
        np.testing.assert_allclose(got["y"], _expected(rows), rtol=1e-5)
        assert not (tmp_path / f"empty{rows}" / "numba").exists()  # nothing compiled, nothing saved
        # the kernel sources came from the artifact too: none written (which would also have
        # started the compile helper, a fork for nothing)
        assert not (tmp_path / f"empty{rows}" / "kernels").exists()
    assert list((artifact / "cache" / "kernels").glob("*.py"))


def test_other_shapes_run_too(artifact, tmp_path):
    # kernels are typed by dtype and rank, not by dims, so these may well load, not compile
    got = _run(artifact, 3, tmp_path / "empty")
    assert got["error"] is None
    np.testing.assert_allclose(got["y"], _expected(3), rtol=1e-5)


def _other_cpu(folder):
    manifest = json.loads((folder / "ortjit-artifact.json").read_text())
    manifest["machine"]["cpu"] = "some-other-cpu"
    (folder / "ortjit-artifact.json").write_text(json.dumps(manifest))


def _older_cache_format(folder):  # entries another ortjit wrote, under keys this one does not look up
    manifest = json.loads((folder / "ortjit-artifact.json").read_text())
    del manifest["machine"]["kernel_cache_format"]
    (folder / "ortjit-artifact.json").write_text(json.dumps(manifest))


def _truncated_entries(folder):
    for entry in (folder / "cache").rglob("*.ortjitk"):
        entry.write_bytes(entry.read_bytes()[:100])


def _truncated_manifest(folder):
    text = (folder / "ortjit-artifact.json").read_text()
    (folder / "ortjit-artifact.json").write_text(text[: len(text) // 2])


@pytest.mark.parametrize("damage, warning", [(_other_cpu, "compiled for another cpu"),
                                             (_older_cache_format, "compiled for another kernel_cache_format"),
                                             (_truncated_entries, "damaged"),
                                             (_truncated_manifest, "unreadable manifest")])
def test_an_artifact_that_cannot_serve_warns_and_compiles(artifact, tmp_path, damage, warning):
    folder = _copy(artifact, tmp_path / "copy.ortjit")
    damage(folder)
    got = _run(folder, 5, tmp_path / "empty")
    assert got["compiles"] and got["error"] is None
    assert any(warning in w for w in got["warnings"]), got["warnings"]
    np.testing.assert_allclose(got["y"], _expected(5), rtol=1e-5)


def test_a_truncated_model_is_invalid_protobuf_naming_the_artifact(artifact, tmp_path):
    cut = _copy(artifact, tmp_path / "cut.ortjit")
    data = (cut / "model.onnx").read_bytes()
    (cut / "model.onnx").write_bytes(data[: len(data) - 10])
    got = _run(cut, 5, tmp_path / "empty")
    assert got["error"].startswith("InvalidProtobuf") and str(cut) in got["error"], got["error"]


def test_a_folder_that_is_not_an_artifact_is_refused(tmp_path):
    got = _run(tmp_path, 5, tmp_path / "cache")
    assert got["error"].startswith("InvalidArgument") and "directory" in got["error"]


def test_compile_asks_for_the_shape_of_symbolic_dims(tmp_path, capsys):
    model = _model(str(tmp_path / "model.onnx"))
    assert cli.main(["compile", model, "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "symbolic dims" in err and "--shape x=1,4" in err


def test_run_and_explain_take_an_artifact(artifact, capsys):
    assert cli.main(["run", str(artifact), "--shape", "x=5,4", "--repeat", "1"]) == 0
    assert "output y: float32[5, 3]" in capsys.readouterr().out
    assert cli.main(["explain", str(artifact), "--shape", "x=5,4"]) == 0
    assert "(ahead of time)" in capsys.readouterr().out


def test_compile_ships_kernels_even_when_the_cache_folder_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(blocker / "cache"))
    out = tmp_path / "model.ortjit"
    done = subprocess.run([sys.executable, "-m", "ortjit", "compile", _model(str(tmp_path / "m.onnx")), "-o", str(out),
                           "--shape", "x=5,4"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "cannot write compiled kernels" in done.stderr
    got = _run(out, 5, tmp_path / "empty")
    assert got["compiles"] == [] and got["error"] is None, got
    np.testing.assert_allclose(got["y"], _expected(5), rtol=1e-5)


# ------------------------------------------------------------- weights mapped, not read

def _weighty_model(path):
    """x[N, 128] @ W[128, 256]: W (128 KiB) goes to the artifact's weights file."""
    w = np.random.default_rng(0).standard_normal((128, 256)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 128])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 256])],
                          [onnx.numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return w


@pytest.fixture(scope="module")
def weighty(tmp_path_factory):
    root = tmp_path_factory.mktemp("weighty")
    w = _weighty_model(str(root / "model.onnx"))
    out = root / "model.ortjit"
    assert cli.main(["compile", str(root / "model.onnx"), "-o", str(out), "--shape", "x=2,128"]) == 0
    return out, w


def _base(array):
    while isinstance(array, np.ndarray):
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


def test_an_artifact_maps_its_large_weights_instead_of_reading_them(weighty):
    import mmap

    import ortjit
    folder, w = weighty
    manifest = json.loads((folder / "ortjit-artifact.json").read_text())
    assert manifest["weights_bytes"] == (folder / "model.weights").stat().st_size >= w.nbytes
    model = ortjit.compile(str(folder))
    (weight,) = [v.const_value.numpy() for v in model.ir.graph.initializers.values() if v.const_value.size >= w.size]
    assert isinstance(_base(weight), mmap.mmap) and not weight.flags.writeable
    x = np.linspace(-1, 1, 256, dtype=np.float32).reshape(2, 128)
    np.testing.assert_allclose(model.run({"x": x})[0], x @ w, rtol=1e-5, atol=1e-5)


def _without_sizes(folder):
    manifest = json.loads((folder / "ortjit-artifact.json").read_text())
    del manifest["model_bytes"], manifest["weights_bytes"]   # as if the manifest could not tell
    (folder / "ortjit-artifact.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("sizes_known", [True, False])
def test_truncated_weights_are_invalid_protobuf(weighty, tmp_path, sizes_known):
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidProtobuf
    folder = _copy(weighty[0], tmp_path / "cut.ortjit")
    data = (folder / "model.weights").read_bytes()
    (folder / "model.weights").write_bytes(data[: len(data) // 2])
    if not sizes_known:
        _without_sizes(folder)
    with pytest.raises(InvalidProtobuf, match="model.weights.*truncated|truncated.*model.weights"):
        ort.InferenceSession(str(folder))


def test_weights_outside_the_artifact_are_refused(weighty, tmp_path):
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidProtobuf
    folder = _copy(weighty[0], tmp_path / "moved.ortjit")
    proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for t in proto.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.bin"
    onnx.save(proto, str(folder / "model.onnx"))
    (tmp_path / "elsewhere.bin").write_bytes((folder / "model.weights").read_bytes())
    _without_sizes(folder)
    with pytest.raises(InvalidProtobuf, match="outside"):
        ort.InferenceSession(str(folder))


def test_an_artifact_session_does_not_infer_shapes_again(weighty, monkeypatch):
    import ortjit
    from ortjit import frontend
    folder, w = weighty
    monkeypatch.setattr(frontend, "infer_shapes", lambda proto: pytest.fail("shape inference ran again"))
    model = ortjit.compile(str(folder))
    assert [(s.name, s.shape) for s in model.outputs] == [("y", ("N", 256))]
    x = np.ones((2, 128), np.float32)
    np.testing.assert_allclose(model.run({"x": x})[0], x @ w, rtol=1e-5, atol=1e-5)


def test_long_attribute_lists_go_through_an_artifact(tmp_path):
    """A forest's node lists (over 1024 numbers: frontend._ReadyAttr keeps protobuf's own
    list) are read by the session, written into the artifact's model and read back."""
    import onnxruntime as ort
    from tests.test_ops_strings_ml import ml_model, random_forest
    rng = np.random.default_rng(11)
    attrs = random_forest(rng, 30, 5, 2, depth=6)
    assert len(attrs["nodes_nodeids"]) > 1024
    x = rng.standard_normal((7, 5)).astype(np.float32)
    model = ml_model("TreeEnsembleRegressor", {"x": x}, ["y"], n_targets=2, **attrs)
    onnx.save(model, str(tmp_path / "forest.onnx"))
    direct = ort.InferenceSession(str(tmp_path / "forest.onnx")).run(None, {"x": x})[0]
    assert cli.main(["compile", str(tmp_path / "forest.onnx"), "-o", str(tmp_path / "forest.ortjit"),
                     "--shape", "x=7,5"]) == 0
    np.testing.assert_array_equal(ort.InferenceSession(str(tmp_path / "forest.ortjit")).run(None, {"x": x})[0],
                                  direct)
    from onnx.reference import ReferenceEvaluator
    np.testing.assert_allclose(direct, ReferenceEvaluator(model).run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
