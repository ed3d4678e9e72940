"""The optimized-graph cache (ortjit/graph_cache.py): a session on a model seen before takes
the graph the passes made from the cache folder, and a damaged one is made again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ortjit import config, graph_cache, kernel_cache, passes
from tests.util import COUNT_COMPILES

W = (np.arange(128 * 256, dtype=np.float32).reshape(128, 256) % 7 - 3) / 10   # 128 KiB: mapped from its file
SCALE = np.linspace(0.5, 1.5, 256, dtype=np.float32)


def _model(path=None):
    """x[N, 128] @ W -> BatchNormalization-like Mul/Add -> Relu: folded and fused by the passes."""
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Mul", ["m", "s"], ["a"]),
         helper.make_node("Add", ["a", "s"], ["b"]), helper.make_node("Relu", ["b"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 256])],
        [onnx.numpy_helper.from_array(W, "w"), onnx.numpy_helper.from_array(SCALE, "s")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    if path is None:
        return m.SerializeToString()
    onnx.save(m, path)
    return str(path)


def _expected(x):
    return np.maximum((x @ W) * SCALE + SCALE, 0)


@pytest.fixture
def cache(tmp_path):
    config.set_cache_dir(str(tmp_path / "cache"))
    yield tmp_path / "cache"
    config.set_cache_dir(None)


def _folders(cache):
    parent = cache / graph_cache.FOLDER
    return sorted(p for p in parent.iterdir() if not p.name.startswith(".")) if parent.exists() else []


def test_a_second_session_takes_the_optimized_graph_from_the_cache(cache, tmp_path, monkeypatch):
    import ortjit
    path = _model(tmp_path / "m.onnx")
    x = np.linspace(-1, 1, 3 * 128, dtype=np.float32).reshape(3, 128)
    first = ortjit.compile(path)
    (folder,) = _folders(cache)
    assert sorted(os.listdir(folder)) == ["model.onnx", "model.weights", "ortjit-artifact.json"]
    real = passes.optimize

    def no_passes():
        monkeypatch.setattr(passes, "optimize", lambda model, level, steps: real(model, level, steps) if level == 0
                            else pytest.fail("the passes ran again"))
    no_passes()
    second = ortjit.compile(path)
    assert second.passes_applied == first.passes_applied and first.passes_applied
    assert [(s.name, s.shape) for s in second.outputs] == [("y", ("N", 256))]
    assert second.metadata["producer_name"] == "tests"
    np.testing.assert_allclose(second.run({"x": x})[0], _expected(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(second.run({"x": x})[0], first.run({"x": x})[0])
    # a model given as bytes is known by its bytes; another level makes another graph
    monkeypatch.undo()
    ortjit.compile(_model())
    ortjit.compile(path, optimization_level=passes.BASIC)
    assert len(_folders(cache)) == 3
    no_passes()
    np.testing.assert_allclose(ortjit.compile(_model()).run({"x": x})[0], _expected(x), rtol=1e-5, atol=1e-5)
    monkeypatch.undo()
    # the file rewritten (same size, other weights): another key, the new graph's answers
    m = onnx.load(path)
    m.graph.initializer[1].CopyFrom(onnx.numpy_helper.from_array(SCALE[::-1].copy(), "s"))
    onnx.save(m, path)
    changed = ortjit.compile(path).run({"x": x})[0]
    np.testing.assert_allclose(changed, np.maximum((x @ W) * SCALE[::-1] + SCALE[::-1], 0), rtol=1e-5, atol=1e-5)
    assert len(_folders(cache)) == 4


def test_another_process_loads_the_cached_graph_and_compiles_nothing(tmp_path):
    """The process that stored the graph compiled its kernels for the graph as read back
    (read-only mapped weights): the next finds every kernel on disk."""
    path = _model(tmp_path / "m.onnx")
    script = COUNT_COMPILES + r"""
import json, sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1])
x = np.linspace(-1, 1, 2 * 128, dtype=np.float32).reshape(2, 128)
print(json.dumps({"compiles": compiles, "y": s.run(None, {"x": x})[0].tolist(),
                  "applied": s._sess.passes_applied}))
"""
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(tmp_path / "cache"))
    runs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True, env=env,
                             timeout=300)
        assert res.returncode == 0, res.stderr
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert runs[0]["compiles"] and runs[1]["compiles"] == []
    assert runs[0]["y"] == runs[1]["y"] and runs[0]["applied"] == runs[1]["applied"]
    x = np.linspace(-1, 1, 2 * 128, dtype=np.float32).reshape(2, 128)
    np.testing.assert_allclose(np.array(runs[1]["y"], np.float32), _expected(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("damage", ["truncate weights", "alter model", "drop manifest", "bad manifest"])
def test_a_damaged_graph_is_detected_and_made_again_never_loaded(cache, tmp_path, damage):
    import ortjit
    path = _model(tmp_path / "m.onnx")
    ortjit.compile(path)
    (folder,) = _folders(cache)
    if damage == "truncate weights":
        data = (folder / "model.weights").read_bytes()
        (folder / "model.weights").write_bytes(data[: len(data) // 2])
    elif damage == "alter model":
        data = bytearray((folder / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "model.onnx").write_bytes(bytes(data))
    elif damage == "drop manifest":
        (folder / "ortjit-artifact.json").unlink()
    else:
        (folder / "ortjit-artifact.json").write_text("{not json")
    x = np.ones((2, 128), np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = ortjit.compile(path)
    assert any("damaged" in str(w.message) for w in caught)
    np.testing.assert_allclose(again.run({"x": x})[0], _expected(x), rtol=1e-5, atol=1e-5)
    (remade,) = _folders(cache)     # made whole again
    assert graph_cache.find(remade.name) is not None


def test_an_unwritable_cache_folder_costs_the_cache_not_the_session(tmp_path):
    import ortjit
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config.set_cache_dir(str(blocker / "cache"))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = ortjit.compile(_model(tmp_path / "m.onnx"))
    finally:
        config.set_cache_dir(None)
    assert any("cannot write optimized graphs" in str(w.message) for w in caught)
    assert model.passes_applied
    x = np.ones((2, 128), np.float32)
    np.testing.assert_allclose(model.run({"x": x})[0], _expected(x), rtol=1e-5, atol=1e-5)


def test_what_the_cache_leaves_alone(cache, tmp_path, monkeypatch):
    import ortjit
    ortjit.compile(_model(tmp_path / "m.onnx"), optimization_level=passes.DISABLE_ALL)   # nothing to keep
    monkeypatch.setenv("ORTJIT_GRAPH_CACHE", "0")
    ortjit.compile(_model(tmp_path / "m.onnx"))
    monkeypatch.delenv("ORTJIT_GRAPH_CACHE")
    m = onnx.load(_model(tmp_path / "m.onnx"))   # weights in another file: not part of the key
    onnx.save(m, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.data")
    model = ortjit.compile(str(tmp_path / "ext.onnx"))
    assert _folders(cache) == []
    x = np.ones((1, 128), np.float32)
    np.testing.assert_allclose(model.run({"x": x})[0], _expected(x), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(graph_cache, "MAX_MODEL_BYTES", 1000)   # too large to hash
    assert graph_cache.key(_model(tmp_path / "m.onnx"), passes.ALL, 10, None) is None


def test_eviction_removes_whole_graph_folders_least_recently_used_first(tmp_path):
    parent = tmp_path / graph_cache.FOLDER
    for k in range(4):
        folder = parent / f"key{k}"
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"x" * 1000)
        (folder / "model.weights").write_bytes(b"w" * 2000)
        (folder / "ortjit-artifact.json").write_bytes(b"{}")
        os.utime(folder / "ortjit-artifact.json", (1000 + k, 1000 + k))   # key0: least recently used
    making = parent / ".tmp-abc"        # another process is writing this one now
    making.mkdir()
    (making / "model.onnx").write_bytes(b"y" * 500)
    removed = kernel_cache.evict(str(tmp_path), 8_000)
    assert removed == 2 * 3002
    assert sorted(p.name for p in parent.iterdir()) == [".tmp-abc", "key2", "key3"]
    assert sorted(os.listdir(parent / "key2")) == ["model.onnx", "model.weights", "ortjit-artifact.json"]


def test_free_dimension_overrides_are_part_of_the_key(cache, tmp_path):
    import onnxruntime as ort
    path = _model(tmp_path / "m.onnx")
    so = ort.SessionOptions()
    so.add_free_dimension_override_by_name("N", 2)
    for _ in range(2):   # made, then read back
        fixed = ort.InferenceSession(path, so)
        free = ort.InferenceSession(path)
        assert fixed.get_inputs()[0].shape == [2, 128] and free.get_inputs()[0].shape == ["N", 128]
    assert len(_folders(cache)) == 2
    x = np.ones((3, 128), np.float32)
    np.testing.assert_allclose(free.run(None, {"x": x})[0], _expected(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="dimensions"):
        fixed.run(None, {"x": x})
