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
