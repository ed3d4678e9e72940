"""The per-call path of InferenceSession.run: a feed seen before skips validation and finds
its plan by one key, and the plan runs as one generated function. These check that the
shortcuts answer exactly as the full path does."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxruntime as ort
from ortjit.errors import InvalidArgument, RuntimeException
from tests.util import make_model


def _session(model, **options):
    so = ort.SessionOptions()
    for k, v in options.items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(model.SerializeToString(), sess_options=so)


def _sub_model():
    # Y = A - B; Z = Y * A (write-mode fused kernels), W = Identity(Y) (a return step)
    nodes = [helper.make_node("Sub", ["A", "B"], ["Y"], name="sub"),
             helper.make_node("Mul", ["Y", "A"], ["Z"], name="mul"),
             helper.make_node("Identity", ["Y"], ["W"], name="id")]
    x = np.zeros((2, 3), np.float32)
    return make_model(nodes, {"A": x, "B": x}, ["Z", "W", "Y"])


def test_repeated_runs_give_fresh_independent_outputs():
    sess = _session(_sub_model())
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 3), np.float32)
    first = sess.run(None, {"A": a, "B": b})
    for out in first:
        out[...] = -7   # the caller owns what it got
    second = sess.run(None, {"A": a, "B": b})
    np.testing.assert_array_equal(second[0], (a - b) * a)
    np.testing.assert_array_equal(second[1], a - b)
    np.testing.assert_array_equal(second[2], a - b)
    assert second[1] is not second[2] and not np.shares_memory(second[1], second[2])
    assert not any(np.shares_memory(o, x) for o in second for x in (a, b))


def test_feed_order_and_layout_do_not_matter():
    sess = _session(_sub_model())
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.full((2, 3), 2, np.float32)
    want = sess.run(["Y"], {"A": a, "B": b})[0]
    np.testing.assert_array_equal(sess.run(["Y"], {"B": b, "A": a})[0], want)
    at = np.asfortranarray(a)   # same shape and dtype, other layout
    np.testing.assert_array_equal(sess.run(["Y"], {"A": at, "B": b})[0], want)
    np.testing.assert_array_equal(sess.run(["Y"], {"A": a, "B": b})[0], want)


def test_checks_still_fail_after_a_valid_run():
    sess = _session(_sub_model())
    x = np.ones((2, 3), np.float32)
    sess.run(None, {"A": x, "B": x})
    with pytest.raises(InvalidArgument, match="Unexpected input data type"):
        sess.run(None, {"A": x.astype(np.float64), "B": x})
    with pytest.raises(InvalidArgument, match="Got invalid dimensions for input: A"):
        sess.run(None, {"A": np.ones((3, 3), np.float32), "B": x})
    with pytest.raises(InvalidArgument, match="Required inputs"):
        sess.run(None, {"A": x})
    with pytest.raises(InvalidArgument, match="Invalid input name"):
        sess.run(None, {"A": x, "B": x, "C": x})
    with pytest.raises(InvalidArgument, match="Invalid output name"):
        sess.run(["nope"], {"A": x, "B": x})
    with pytest.raises(InvalidArgument):
        sess.run(None, [x, x])
    with pytest.raises(InvalidArgument, match="Unexpected input data type"):   # a list is float64
        sess.run(None, {"A": x.tolist(), "B": x})
    np.testing.assert_array_equal(sess.run(["Y"], {"A": ort.OrtValue.ortvalue_from_numpy(2 * x), "B": x})[0], x)


def test_evicted_plans_are_rebuilt():
    x = np.zeros((1, 4), np.float32)
    model = make_model(helper.make_node("Add", ["X", "X"], ["Y"]), {"X": x}, ["Y"])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    sess = _session(model, **{"session.ortjit.plan_cache_size": "1"})
    for n in (1, 2, 1, 2, 1):
        x = np.full((n, 4), n, np.float32)
        np.testing.assert_array_equal(sess.run(None, {"X": x})[0], 2 * x)
        assert len(sess._sess.plans) == 1


def test_kernel_failures_name_the_node_and_the_session_survives():
    m = make_model(helper.make_node("Reshape", ["X", "S"], ["Y"], name="bad\nname'\"\\"),
                   {"X": np.zeros((2, 3), np.float32), "S": np.zeros(1, np.int64)}, ["Y"])
    sess = _session(m)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for _ in range(2):
        with pytest.raises((RuntimeException, InvalidArgument), match="Reshape"):
            sess.run(None, {"X": x, "S": np.array([4], np.int64)})
    np.testing.assert_array_equal(sess.run(None, {"X": x, "S": np.array([6], np.int64)})[0], x.reshape(6))


def test_runner_source_is_kept_and_names_stay_in_comments():
    m = make_model(helper.make_node("Relu", ["X"], ["Y"], name="x\nimport os  # '"), {"X": np.zeros(3, np.float32)},
                   ["Y"])
    sess = _session(m)
    np.testing.assert_array_equal(sess.run(None, {"X": np.array([-1, 0, 2], np.float32)})[0], [0, 0, 2])
    (plan,) = sess._sess.plans.values()
    assert plan.runner_source.startswith("def run(inputs):")
    assert "\nimport os" not in plan.runner_source


def test_profiling_and_terminate_take_the_checked_path():
    sess_options = ort.SessionOptions()
    sess_options.enable_profiling = True
    sess = ort.InferenceSession(_sub_model().SerializeToString(), sess_options=sess_options)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(sess.run(["Y"], {"A": 3 * x, "B": x})[0], 2 * x)
    assert sess._profile and sess._profile[0][2]   # per-step timings were taken
    ro = ort.RunOptions()
    np.testing.assert_array_equal(sess.run(["Y"], {"A": 3 * x, "B": x}, ro)[0], 2 * x)
