"""The on-disk kernel cache: a second process loads the compiled kernels a first one left
in ORTJIT_CACHE_DIR instead of compiling them again."""
from __future__ import annotations

import json
import os
import subprocess
import sys

# Runs a two-op chain (one fused kernel) and reports where its source lives and how
# Numba got its machine code: a cache hit means it was loaded, a miss that it compiled.
SCRIPT = r"""
import json, numpy as np, onnx
from onnx import helper, TensorProto
import onnxruntime as ort
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])
g = helper.make_graph([helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("Softplus", ["t"], ["y"])],
                      "g", [x], [y])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
s = ort.InferenceSession(m.SerializeToString())
out = s.run(None, {"x": np.ones((3, 4), np.float32)})[0]
(plan,) = s._sess.plans.values()
(step,) = plan.steps
st = step.fn.fn.stats
print(json.dumps({"file": step.fn.fn.py_func.__code__.co_filename, "hits": sum(st.cache_hits.values()),
                  "misses": sum(st.cache_misses.values()), "y": float(out[0, 0])}))
"""


def run_in_fresh_process(cache):
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(cache))
    env.pop("ORTJIT_SHOW_CODE", None)
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_second_process_reuses_the_kernel_cache(tmp_path):
    first = run_in_fresh_process(tmp_path)
    second = run_in_fresh_process(tmp_path)
    assert first["file"].startswith(str(tmp_path)) and first["file"] == second["file"]
    assert first["misses"] == 1 and first["hits"] == 0      # compiled, and written to the cache
    assert second["misses"] == 0 and second["hits"] == 1    # loaded: nothing compiled
    assert first["y"] == second["y"]
    assert os.listdir(tmp_path / "kernels")


def _entries(cache):
    return sorted((cache / "numba").rglob("*.ortjitk"))


def test_entries_live_under_the_cache_folder_named_by_what_they_depend_on(tmp_path):
    run_in_fresh_process(tmp_path)
    (entry,) = _entries(tmp_path)
    data = entry.read_bytes()
    assert data.startswith(b"ORTJITK1")
    import hashlib
    assert hashlib.sha256(data[40:]).digest() == data[8:40]  # the header checks the payload


def _damage(entry, how):
    data = entry.read_bytes()
    if how == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif how == "altered":  # one byte of the compiled code changed
        k = len(data) - 100
        entry.write_bytes(data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:])
    else:
        entry.write_bytes(b"")


def test_a_damaged_entry_is_detected_rebuilt_and_never_loaded(tmp_path):
    first = run_in_fresh_process(tmp_path)
    for how in ("truncated", "altered", "empty"):
        (entry,) = _entries(tmp_path)
        _damage(entry, how)
        again = run_in_fresh_process(tmp_path)
        assert again["misses"] == 1 and again["hits"] == 0, how   # compiled, not loaded
        assert again["y"] == first["y"]
        (rebuilt,) = _entries(tmp_path)
        assert run_in_fresh_process(tmp_path)["hits"] == 1, how    # the rebuilt entry is whole


def test_an_entry_linking_to_a_symbol_the_process_lacks_is_compiled_not_loaded(tmp_path, monkeypatch):
    # LLVM ends the process on a symbol it cannot resolve: such an entry must never reach it
    import importlib.util
    import pickle
    from ortjit import kernel_cache
    first = run_in_fresh_process(tmp_path)
    (entry,) = _entries(tmp_path)
    for source in (tmp_path / "kernels").glob("*.py"):  # the entry names its kernel's module
        spec = importlib.util.spec_from_file_location(f"ortjit_kernel_{source.stem}", source)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
    reduced, defined, external = pickle.loads(entry.read_bytes()[40:])
    kernel_cache.write_entry(str(entry), pickle.dumps((reduced, defined, external | {"ortjit_no_such_symbol"})))
    again = run_in_fresh_process(tmp_path)
    assert again["misses"] == 1 and again["hits"] == 0 and again["y"] == first["y"]
    assert run_in_fresh_process(tmp_path)["hits"] == 1   # the entry written again loads


def test_several_processes_compiling_at_once_leave_whole_entries(tmp_path):
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({r["y"] for r in results}) == 1
    assert sum(r["misses"] for r in results) == 1   # one compiled it, the others waited and loaded
    assert len(_entries(tmp_path)) == 1
    assert not list(tmp_path.rglob("*.claim"))
    assert not list(tmp_path.rglob("*.tmp"))
    assert run_in_fresh_process(tmp_path)["hits"] == 1


def test_an_unwritable_cache_folder_costs_the_cache_not_the_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(blocker / "cache"))
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["misses"] == 1
    assert "cannot write compiled kernels" in res.stderr


def test_session_config_entry_sets_the_cache_folder(tmp_path):
    code = SCRIPT.replace("ort.InferenceSession(m.SerializeToString())",
                          f"ort.InferenceSession(m.SerializeToString(), so)").replace(
        "import onnxruntime as ort\n",
        f"import onnxruntime as ort\nso = ort.SessionOptions()\n"
        f"so.add_session_config_entry('session.ortjit.cache_dir', {str(tmp_path / 'chosen')!r})\n")
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(tmp_path / "default"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["file"].startswith(str(tmp_path / "chosen"))
    assert _entries(tmp_path / "chosen") and not (tmp_path / "default").exists()


def test_eviction_removes_the_least_recently_used_kernels_past_the_limit(tmp_path):
    from ortjit import kernel_cache
    files = []
    for k in range(10):
        f = tmp_path / ("numba" if k % 2 else "kernels") / f"entry{k}"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x" * 1000)
        os.utime(f, (1000 + k, 1000 + k))   # entry0 is the least recently used
        files.append(f)
    stale = tmp_path / "numba" / "entry.ortjitk.123.tmp"   # a write whose process was killed
    stale.write_bytes(b"z")
    os.utime(stale, (1000, 1000))
    other = tmp_path / "backend-test-data"
    other.mkdir()
    (other / "big").write_bytes(b"y" * 50_000)   # not a kernel: never evicted
    assert kernel_cache.evict(str(tmp_path), 20_000) == 0
    assert not stale.exists()
    removed = kernel_cache.evict(str(tmp_path), 5_000)
    assert removed == 6000                      # down to 4000 <= 80% of 5000
    assert [f.exists() for f in files] == [False] * 6 + [True] * 4
    assert (other / "big").exists()


def test_a_claim_left_by_a_dead_process_is_taken_over(tmp_path):
    first = run_in_fresh_process(tmp_path)
    (entry,) = _entries(tmp_path)
    entry.unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim = entry.parent / (entry.name + ".claim")
    claim.write_text(f"{os.uname().nodename} {dead.stdout.strip()}")   # its process has exited
    again = run_in_fresh_process(tmp_path)
    assert again["misses"] == 1 and again["y"] == first["y"]
    assert entry.exists() and not claim.exists()


def test_a_compile_that_fails_gives_up_its_claim(tmp_path, monkeypatch):
    import numpy as np
    import pytest
    from numba.core.errors import TypingError

    from ortjit import config, kernel_cache
    monkeypatch.setattr(config, "_cache_dir", str(tmp_path))

    @kernel_cache.njit(cache=True)
    def broken(x):
        return x.no_such_attribute

    with pytest.raises(TypingError):
        broken(np.ones(3))
    assert not list(tmp_path.rglob("*.claim"))   # another process would wait on it


# A kernel loaded from the cache, then called from a function compiled afterwards: the
# later compile links the loaded library's bitcode in, which a load leaves unparsed until then.
HELPER_MODULE = """
from ortjit.kernel_cache import njit

@njit(cache=True)
def helper(x):
    return x * 2.0 + 1.0
"""
CALLER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numba
import helpermod
direct = helpermod.helper(3.0)

@numba.njit
def caller(x):
    return helpermod.helper(x) + 1.0

print(json.dumps({"direct": direct, "linked": caller(3.0), "hits": sum(helpermod.helper.stats.cache_hits.values())}))
"""


def test_a_loaded_kernel_links_into_a_later_compile(tmp_path):
    (tmp_path / "helpermod.py").write_text(HELPER_MODULE)
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(tmp_path / "cache"))
    results = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", CALLER, str(tmp_path)], capture_output=True, text=True,
                             env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert [r["hits"] for r in results] == [0, 1]   # compiled, then loaded
    assert all(r["direct"] == 7.0 and r["linked"] == 8.0 for r in results)


# A tree ensemble's kernels inline helpers from numba.np.arrayobj; loaded from the cache,
# their environments must not import it (kernel_loader._rebuild_env_lazily), and the
# kernels must still run right.
FOREST = r"""
import json, sys
import numpy as np
from tests.test_ops_strings_ml import ml_model, random_forest
import onnxruntime as ort
rng = np.random.default_rng(5)
x = rng.standard_normal((9, 4)).astype(np.float32)
model = ml_model("TreeEnsembleRegressor", {"x": x}, ["y"], n_targets=2, **random_forest(rng, 6, 4, 2, depth=4))
y = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
from onnx.reference import ReferenceEvaluator
ok = bool(np.allclose(y, ReferenceEvaluator(model).run(None, {"x": x})[0], rtol=1e-5, atol=1e-6))
print(json.dumps({"ok": ok, "arrayobj": "numba.np.arrayobj" in sys.modules}))
"""


def test_loaded_kernels_do_not_import_the_modules_of_what_they_inline(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, ORTJIT_CACHE_DIR=str(tmp_path), PYTHONPATH=root)
    runs = []
    for _ in range(2):   # compiled, then loaded
        res = subprocess.run([sys.executable, "-c", FOREST], capture_output=True, text=True, env=env, timeout=300,
                             cwd=root)
        assert res.returncode == 0, res.stderr
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert runs[0]["ok"] and runs[1]["ok"]
    assert runs[0]["arrayobj"]          # compiling imports it, as it must
    assert not runs[1]["arrayobj"]      # loading does not


def test_a_kernel_module_imports_from_its_bytecode_checked_by_the_source_hash(tmp_path, monkeypatch):
    """Generated modules get hash-checked bytecode (PEP 552) even where Python writes none
    (PYTHONDONTWRITEBYTECODE): a later process skips compiling their source, and a source
    changed on disk is never run from stale bytecode."""
    import importlib.util
    import marshal

    from ortjit import codecache
    monkeypatch.setenv("ORTJIT_CACHE_DIR", str(tmp_path))
    source = "def kernel():\n    return 41\n"
    assert codecache.load("bytecode_probe", source)() == 41
    path = codecache.kernel_path("bytecode_probe", source)
    cfile = importlib.util.cache_from_source(path)
    with open(cfile, "rb") as f:
        data = f.read()
    assert int.from_bytes(data[4:8], "little") & 0b11 == 0b11     # checked hash-based pyc
    assert marshal.loads(data[16:]).co_filename == path
    with open(path, "w") as f:     # altered behind the cache's back: the hash no longer matches
        f.write("def kernel():\n    return 42\n")
    spec = importlib.util.spec_from_file_location("bytecode_probe_again", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.kernel() == 42


def test_a_plans_runner_is_compiled_once_and_a_damaged_copy_never_loaded(tmp_path, monkeypatch):
    """kernel_cache.compiled keeps compiled code by its source's hash: the next process
    (here, the next call) loads it; an entry altered on disk fails its hash and is compiled
    again."""
    import builtins

    from ortjit import kernel_cache
    monkeypatch.setenv("ORTJIT_CACHE_DIR", str(tmp_path))
    source = "def run(inputs):\n    return [x * 2 for x in inputs]\n"
    compiles = []
    real_compile = builtins.compile
    monkeypatch.setattr(builtins, "compile", lambda *a, **k: compiles.append(a[1]) or real_compile(*a, **k))

    def run_of(code):
        namespace = {}
        exec(code, namespace)
        return namespace["run"]([1, 2])

    assert run_of(kernel_cache.compiled(source, "<test runner>")) == [2, 4] and len(compiles) == 1
    assert run_of(kernel_cache.compiled(source, "<test runner>")) == [2, 4] and len(compiles) == 1
    (entry,) = (tmp_path / "kernels" / "code").iterdir()
    data = bytearray(entry.read_bytes())
    data[-3] ^= 0xFF
    entry.write_bytes(bytes(data))
    assert run_of(kernel_cache.compiled(source, "<test runner>")) == [2, 4] and len(compiles) == 2
    entry.write_bytes(entry.read_bytes()[:20])    # truncated
    assert run_of(kernel_cache.compiled(source, "<test runner>")) == [2, 4] and len(compiles) == 3
