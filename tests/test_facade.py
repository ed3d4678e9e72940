"""The onnxruntime facade: the API ONNX Runtime's users call, checked as they would use it."""
import json
import os
import threading
import time
import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, NoSuchFile


def _model(opset=17):
    """Z = relu(X * W + B) and the intermediate S = X * W as a second output."""
    nodes = [helper.make_node("Mul", ["X", "W"], ["S"], name="mul"),
             helper.make_node("Add", ["S", "B"], ["T"], name="add"),
             helper.make_node("Relu", ["T"], ["Z"], name="relu")]
    g = helper.make_graph(nodes, "facade_graph",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 4]),
                           helper.make_tensor_value_info("B", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["batch", 4]),
                           helper.make_tensor_value_info("S", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([1, -2, 3, -4], np.float32), "W")])
    g.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [4]))  # W is overridable
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests",
                          doc_string="a test model")
    m.model_version = 3
    helper.set_model_props(m, {"author": "ortjit"})
    return m


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.onnx"
    onnx.save(_model(), str(path))
    return str(path)


def _ref(x, b, w=np.array([1, -2, 3, -4], np.float32)):
    return np.maximum(x * w + b, 0), x * w


def test_module_functions():
    assert ort.get_device() == "CPU"
    assert "CPUExecutionProvider" in ort.get_available_providers()
    assert isinstance(ort.__version__, str) and ort.__version__.count(".") == 2
    with pytest.raises(NoSuchFile):
        ort.datasets.get_example("no_such_example.onnx")


def test_session_from_path_and_bytes(model_path):
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    b = np.ones(4, np.float32)
    for source in (model_path, open(model_path, "rb").read()):
        sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        z, s = sess.run(None, {"X": x, "B": b})
        np.testing.assert_allclose(z, _ref(x, b)[0], rtol=1e-6)
        np.testing.assert_allclose(s, _ref(x, b)[1], rtol=1e-6)
        (s_only,) = sess.run(["S"], {"X": x, "B": b})
        np.testing.assert_allclose(s_only, s)
        assert sess.get_providers() == ["CPUExecutionProvider"]


def test_inputs_outputs_metadata(model_path):
    sess = ort.InferenceSession(model_path)
    ins = sess.get_inputs()
    assert [(i.name, i.type, i.shape) for i in ins] == [("X", "tensor(float)", ["batch", 4]),
                                                         ("B", "tensor(float)", [4])]
    outs = sess.get_outputs()
    assert outs[0].name == "Z" and outs[0].shape == ["batch", 4] and outs[0].type == "tensor(float)"
    assert [i.name for i in sess.get_overridable_initializers()] == ["W"]
    meta = sess.get_modelmeta()
    assert meta.producer_name == "tests" and meta.graph_name == "facade_graph"
    assert meta.description == "a test model" and meta.version == 3
    assert meta.custom_metadata_map == {"author": "ortjit"}


def test_unknown_dims_are_none():
    g = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])])
    sess = ort.InferenceSession(helper.make_model(g).SerializeToString())
    assert sess.get_inputs()[0].shape == [None, 2]


def test_overriding_an_initializer(model_path):
    sess = ort.InferenceSession(model_path)
    x, b = np.ones((2, 4), np.float32), np.zeros(4, np.float32)
    w = np.full(4, 2.0, np.float32)
    np.testing.assert_allclose(sess.run(["Z"], {"X": x, "B": b, "W": w})[0], _ref(x, b, w)[0])
    np.testing.assert_allclose(sess.run(["Z"], {"X": x, "B": b})[0], _ref(x, b)[0])


def test_session_options_names_old_and_new(tmp_path, model_path):
    so = ort.SessionOptions()
    so.session_logid = "abc"
    assert so.logid == "abc"
    so.session_thread_pool_size = 2
    assert so.intra_op_num_threads == 2
    so.session_log_severity_level = 3
    assert so.log_severity_level == 3
    so.enable_sequential_execution = False
    assert so.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.max_num_graph_transformation_steps = 3
    so.enable_mem_pattern = False
    so.enable_cpu_mem_arena = False
    so.add_session_config_entry("session.ortjit.plan_cache_size", "2")
    assert so.get_session_config_entry("session.ortjit.plan_cache_size") == "2"
    with pytest.raises(InvalidArgument):
        so.get_session_config_entry("no.such.key")
    with pytest.raises(AttributeError):
        so.no_such_option = 1
    sess = ort.InferenceSession(model_path, sess_options=so)
    assert sess.get_session_options() is so
    for n in (1, 2, 3, 4):
        sess.run(None, {"X": np.ones((n, 4), np.float32), "B": np.zeros(4, np.float32)})
    assert len(sess._sess.plans) == 2  # bounded by the config entry


def test_run_options_names_old_and_new():
    ro = ort.RunOptions()
    ro.run_tag = "t1"
    assert ro.logid == "t1"
    ro.run_log_severity_level = 1
    assert ro.log_severity_level == 1
    ro.run_log_verbosity_level = 2
    assert ro.log_verbosity_level == 2
    assert ro.terminate is False


def test_free_dimension_override(model_path):
    so = ort.SessionOptions()
    so.add_free_dimension_override_by_name("batch", 7)
    sess = ort.InferenceSession(model_path, so)
    assert sess.get_inputs()[0].shape == [7, 4]
    with pytest.raises(InvalidArgument):
        sess.run(None, {"X": np.ones((2, 4), np.float32), "B": np.zeros(4, np.float32)})


def test_optimized_model_filepath(tmp_path, model_path):
    so = ort.SessionOptions()
    out = str(tmp_path / "optimized.onnx")
    so.optimized_model_filepath = out
    sess = ort.InferenceSession(model_path, so)
    again = ort.InferenceSession(out)
    feed = {"X": np.ones((3, 4), np.float32), "B": np.full(4, 0.5, np.float32)}
    for a, b in zip(sess.run(None, feed), again.run(None, feed)):
        np.testing.assert_allclose(a, b)


def test_profiling_writes_ort_style_trace(tmp_path, model_path):
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "prof")
    sess = ort.InferenceSession(model_path, so)
    for _ in range(3):
        sess.run(None, {"X": np.ones((3, 4), np.float32), "B": np.zeros(4, np.float32)})
    path = sess.end_profiling()
    assert os.path.exists(path) and path.endswith(".json")
    events = json.load(open(path))
    runs = [e for e in events if e["name"] == "model_run"]
    nodes = [e for e in events if e["cat"] == "Node"]
    assert len(runs) == 3 and nodes
    assert all(e["ph"] == "X" and e["dur"] >= 0 and "op_name" in e["args"] for e in nodes)
    # ONNX Runtime's type and shape records, by which tools tell the nodes apart
    assert all(e["args"]["input_type_shape"] and e["args"]["output_type_shape"] for e in nodes)
    assert {"float": [3, 4]} in nodes[0]["args"]["input_type_shape"]


def test_ort_values_and_io_binding(model_path):
    sess = ort.InferenceSession(model_path)
    x, b = np.arange(8, dtype=np.float32).reshape(2, 4), np.zeros(4, np.float32)
    xv = ort.OrtValue.ortvalue_from_numpy(x)
    assert xv.shape() == [2, 4] and xv.data_type() == "tensor(float)" and xv.device_name() == "cpu"
    res = sess.run_with_ort_values(["Z"], {"X": xv, "B": ort.OrtValue.ortvalue_from_numpy(b)})
    np.testing.assert_allclose(res[0].numpy(), _ref(x, b)[0])
    binding = sess.io_binding()
    binding.bind_cpu_input("X", x)
    binding.bind_ortvalue_input("B", ort.OrtValue.ortvalue_from_numpy(b))
    binding.bind_output("Z")
    target = ort.OrtValue.ortvalue_from_shape_and_type([2, 4], np.float32)
    binding.bind_ortvalue_output("S", target)
    sess.run_with_iobinding(binding)
    z, s = binding.copy_outputs_to_cpu()
    np.testing.assert_allclose(z, _ref(x, b)[0])
    np.testing.assert_allclose(target.numpy(), _ref(x, b)[1])
    assert [o.shape() for o in binding.get_outputs()] == [[2, 4], [2, 4]]


def test_terminate_from_another_thread():
    # a long chain of kernels, unfused, so the run checks the flag many times
    n = 400
    nodes = [helper.make_node("Sin" if k % 2 else "Cos", [f"t{k}"], [f"t{k + 1}"]) for k in range(n)]
    g = helper.make_graph(nodes, "long", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [512, 512])],
                          [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, [512, 512])])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(helper.make_model(g).SerializeToString(), so)
    x = np.ones((512, 512), np.float32)
    sess.run(None, {"t0": x})  # compile first
    ro = ort.RunOptions()
    errors = []

    def target():
        try:
            sess.run(None, {"t0": x}, ro)
        except Fail as e:
            errors.append(e)
    t = threading.Thread(target=target)
    t.start()
    time.sleep(0.002)
    ro.terminate = True
    t.join()
    assert errors, "the run was not cancelled"
    assert sess.run(None, {"t0": x})[0].shape == (512, 512)


def test_second_run_compiles_nothing_and_allocates_only_outputs(monkeypatch):
    n = 256
    nodes = [helper.make_node("Sigmoid", ["X"], ["a"]), helper.make_node("Tanh", ["a"], ["b"]),
             helper.make_node("Neg", ["b"], ["c"]), helper.make_node("Abs", ["c"], ["Y"])]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [n, n])])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the intermediates
    sess = ort.InferenceSession(helper.make_model(g).SerializeToString(), so)
    x = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    first = sess.run(None, {"X": x})[0]
    plan = sess._sess.plans.values()[0]
    assert plan.arena_bytes <= 2 * n * n * 4  # three intermediates share two buffers

    import ortjit.plan
    monkeypatch.setattr(ortjit.plan, "build_plan", lambda *a, **k: pytest.fail("a plan was rebuilt"))
    import ortjit.codecache
    monkeypatch.setattr(ortjit.codecache, "load", lambda *a, **k: pytest.fail("a kernel was compiled"))
    tracemalloc.start()
    second = sess.run(None, {"X": x})[0]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * n * 4 + 64 * 1024, peak  # the output, and nothing the size of an intermediate
    np.testing.assert_array_equal(first, second)
    assert second is not first and not np.shares_memory(first, second)
    np.testing.assert_allclose(second, np.abs(-np.tanh(1 / (1 + np.exp(-x)))), rtol=1e-5)


def test_backend_api():
    import onnxruntime.backend as backend
    m = _model()
    assert backend.is_compatible(m) and backend.supports_device("CPU") and not backend.supports_device("CUDA")
    rep = backend.prepare(m)
    x, b = np.ones((2, 4), np.float32), np.zeros(4, np.float32)
    z, s = rep.run([x, b])
    np.testing.assert_allclose(z, _ref(x, b)[0])
    np.testing.assert_allclose(backend.run(m, [x, b])[0], z)


def test_ortvalue_from_numpy_with_onnx_type_reinterprets_the_bytes():
    """As in ONNX Runtime: the array's bytes seen as the given element type, no copy; for
    types numpy lacks (bfloat16 held as uint16) and only when the element sizes agree."""
    import ml_dtypes
    bits = np.array([0x3F80, 0x4000, 0xC040], np.uint16)   # 1, 2, -3 in bfloat16
    value = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, onnx.TensorProto.BFLOAT16)
    assert value.data_type() == "tensor(bfloat16)"
    np.testing.assert_array_equal(value.numpy().astype(np.float32), [1, 2, -3])
    assert value.numpy().dtype == ml_dtypes.bfloat16
    with pytest.raises(InvalidArgument, match="element size"):
        ort.OrtValue.ortvalue_from_numpy_with_onnx_type(np.zeros(2, np.float32), onnx.TensorProto.BFLOAT16)


def test_concurrent_runs_of_one_session_give_each_caller_its_answer():
    """ONNX Runtime's run() may be called from several threads at once. A plan's
    intermediate buffers serve one run at a time; a concurrent run gets a plan of its own."""
    c = 128   # enough channels for the Winograd convolution and its shared scratch
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Softmax", ["t"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    sess = ort.InferenceSession(model)
    inputs = [rng.standard_normal((1, c, 12, 12)).astype(np.float32) for _ in range(4)]
    expected = [sess.run(None, {"x": x})[0] for x in inputs]
    wrong = []

    def work(k):
        for _ in range(40):
            if not np.array_equal(sess.run(None, {"x": inputs[k]})[0], expected[k]):
                wrong.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_session_runs_in_a_process_forked_after_a_run():
    """Servers fork workers from a parent that has loaded (and often run) the model. The
    kernels' threads must survive that: GNU OpenMP kills such a child at its first parallel
    kernel, which is why ops/blas.py prefers Numba's TBB layer."""
    rng = np.random.default_rng(5)
    c = 64
    w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                .SerializeToString())
    x = rng.standard_normal((1, c, 64, 64)).astype(np.float32)
    expected = sess.run(None, {"x": x})[0]
    pid = os.fork()
    if pid == 0:   # the child: exit status 0 only for the right answer
        ok = False
        try:
            ok = np.allclose(sess.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child ended with status {status}"
