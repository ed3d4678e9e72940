"""Values known only at run time: shapes computed from input values, sequences and
optionals, subgraphs (If, Loop, Scan), and function ops expanded from their ONNX bodies."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import onnxruntime as ort
from ortjit.errors import InvalidArgument, RuntimeException
from tests.util import make_model, reference

FAST = settings(max_examples=20, deadline=None, derandomize=True)


def session(model):
    return ort.InferenceSession(model.SerializeToString())


def dynamic_steps(sess):
    return [s.fn for plan in sess._sess.plans.values() for s in plan.steps if type(s.fn).__name__ == "DynamicStep"]


# ---------------------------------------------------------------- shapes from run-time values

def reshape_model():
    return make_model(helper.make_node("Reshape", ["x", "shape"], ["y"]),
                      {"x": np.zeros((2, 6), np.float32), "shape": np.zeros(2, np.int64)}, ["y"])


@FAST
@given(st.sampled_from([(3, 4), (4, 3), (12, 1), (-1, 2), (2, -1), (0, 6)]))
def test_reshape_by_a_fed_shape(target):
    sess = session(reshape_model())
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    shape = np.array(target, np.int64)
    got = sess.run(None, {"x": x, "shape": shape})[0]
    np.testing.assert_array_equal(got, reference(reshape_model(), {"x": x, "shape": shape})[0])


def test_run_time_kernel_is_kept_for_the_same_values_only():
    sess = session(reshape_model())
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    for shape in [(3, 4), (3, 4), (4, 3), (3, 4)]:
        assert sess.run(None, {"x": x, "shape": np.array(shape, np.int64)})[0].shape == shape
    (step,) = dynamic_steps(sess)
    (entries,) = step.kernels.values()  # one signature (same shapes and dtypes)...
    assert sorted(tuple(values[0]) for _, values, _, _ in entries) == [(3, 4), (4, 3)]  # ...two kernels


def test_bad_run_time_shape_raises_and_session_survives():
    sess = session(reshape_model())
    x = np.zeros((2, 6), np.float32)
    with pytest.raises((InvalidArgument, RuntimeException), match="Reshape"):
        sess.run(None, {"x": x, "shape": np.array([5, 5], np.int64)})
    assert sess.run(None, {"x": x, "shape": np.array([6, 2], np.int64)})[0].shape == (6, 2)


def test_reduce_axes_fed_at_run_time():
    model = make_model(helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0),
                       {"x": np.zeros((2, 3, 4), np.float32), "axes": np.zeros(1, np.int64)}, ["y"], opset=13)
    model.graph.input[1].type.tensor_type.shape.dim[0].dim_param = "k"
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    sess = session(model)
    for axes in ([0], [1], [-1], [0, 2]):
        feed = {"x": x, "axes": np.array(axes, np.int64)}
        np.testing.assert_allclose(sess.run(None, feed)[0], reference(model, feed)[0], rtol=1e-5)


# ---------------------------------------------------------------- sequences and optionals

def test_sequence_roundtrip_and_position_checks():
    nodes = [helper.make_node("SequenceConstruct", ["a", "b"], ["s"]),
             helper.make_node("SequenceInsert", ["s", "a", "pos"], ["s2"]),
             helper.make_node("SequenceLength", ["s2"], ["n"]),
             helper.make_node("SequenceAt", ["s2", "pos"], ["y"]),
             helper.make_node("ConcatFromSequence", ["s2"], ["c"], axis=0)]
    a, b = np.ones((1, 2), np.float32), np.full((1, 2), 2, np.float32)
    model = make_model(nodes, {"a": a, "b": b, "pos": np.array(0, np.int64)}, ["n", "y", "c"])
    sess = session(model)
    n, y, c = sess.run(None, {"a": a, "b": b, "pos": np.array(-1, np.int64)})
    assert n == 3
    np.testing.assert_array_equal(c, [[1, 1], [1, 1], [2, 2]])  # inserted before the last, as list.insert
    np.testing.assert_array_equal(y, b)
    with pytest.raises(InvalidArgument, match="out of bounds"):
        sess.run(None, {"a": a, "b": b, "pos": np.array(7, np.int64)})
    assert sess.run(None, {"a": a, "b": b, "pos": np.array(0, np.int64)})[0] == 3


def test_sequence_output_does_not_alias_plan_buffers():
    """Tensors put into a returned sequence must not change when the session runs again."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("SequenceConstruct", ["r"], ["s"])]
    model = make_model(nodes, {"x": np.zeros(3, np.float32)}, ["s"])
    model.graph.output[0].CopyFrom(helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None))
    sess = session(model)
    first = sess.run(None, {"x": np.array([1, 2, 3], np.float32)})[0]
    sess.run(None, {"x": np.array([7, 8, 9], np.float32)})
    np.testing.assert_array_equal(first[0], [1, 2, 3])


def test_optional_has_element():
    nodes = [helper.make_node("Optional", ["x"], ["o"]), helper.make_node("OptionalHasElement", ["o"], ["y"])]
    model = make_model(nodes, {"x": np.zeros(2, np.float32)}, ["y"], opset=18)
    assert session(model).run(None, {"x": np.ones(2, np.float32)})[0] == np.array(True)


# ---------------------------------------------------------------- subgraphs

def branch(name, node):
    return helper.make_graph([node], name, [], [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)])


def if_model():
    """y = cond ? x + c : x * c, both branches reading outer values x and c."""
    then = branch("then", helper.make_node("Add", ["x", "c"], ["t"]))
    other = branch("else", helper.make_node("Mul", ["x", "c"], ["e"]))
    nodes = [helper.make_node("Relu", ["x0"], ["x"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)]
    return make_model(nodes, {"x0": np.zeros(3, np.float32), "cond": np.array(True)}, ["y"],
                      {"c": np.array([1, 2, 3], np.float32)})


@pytest.mark.parametrize("cond", [True, False])
def test_if_reads_outer_values(cond):
    x = np.array([-1, 2, 5], np.float32)
    feed = {"x0": x, "cond": np.array(cond)}
    np.testing.assert_array_equal(session(if_model()).run(None, feed)[0], reference(if_model(), feed)[0])


def loop_model():
    """Sums i * x over M iterations, stopping early once the sum passes `limit`; scan output:
    the running sum of every iteration."""
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["fi", "x"], ["ix"]),
         helper.make_node("Add", ["acc_in", "ix"], ["acc_out"]),
         helper.make_node("ReduceSum", ["acc_out"], ["total"], keepdims=0),
         helper.make_node("Less", ["total", "limit"], ["cond_out"]),
         helper.make_node("Identity", ["acc_out"], ["scan"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("scan", TensorProto.FLOAT, [2])])
    node = helper.make_node("Loop", ["m", "cond", "acc0"], ["acc", "scans"], body=body)
    return make_model(node, {"m": np.array(0, np.int64), "cond": np.array(True), "acc0": np.zeros(2, np.float32),
                             "x": np.zeros(2, np.float32), "limit": np.array(0, np.float32)}, ["acc", "scans"], opset=13)


@FAST
@given(st.integers(0, 6), st.floats(0, 40))
def test_loop_matches_reference(trips, limit):
    feed = {"m": np.array(trips, np.int64), "cond": np.array(True), "acc0": np.zeros(2, np.float32),
            "x": np.array([1, 2], np.float32), "limit": np.array(limit, np.float32)}
    got = session(loop_model()).run(None, feed)
    if not trips:  # the reference cannot stack zero scan outputs
        np.testing.assert_array_equal(got[0], feed["acc0"])
        assert got[1].shape[0] == 0
        return
    for g, w in zip(got, reference(loop_model(), feed)):
        np.testing.assert_array_equal(g, w)


def test_scan_running_sum():
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y"])],
        "body", [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [2]),
                 helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    node = helper.make_node("Scan", ["init", "xs"], ["final", "ys"], body=body, num_scan_inputs=1,
                            scan_input_directions=[1])
    xs = np.arange(8, dtype=np.float32).reshape(4, 2)
    model = make_model(node, {"init": np.zeros(2, np.float32), "xs": xs}, ["final", "ys"], opset=16)
    final, ys = session(model).run(None, {"init": np.zeros(2, np.float32), "xs": xs})
    # scanned from the last row up (the reference evaluator has no reverse direction)
    np.testing.assert_array_equal(ys, np.cumsum(xs[::-1], axis=0))
    np.testing.assert_array_equal(final, xs.sum(axis=0))


# ---------------------------------------------------------------- functions

def test_model_local_function_is_inlined():
    fn = helper.make_function("custom", "Square", ["a"], ["b"], [helper.make_node("Mul", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    model = make_model(helper.make_node("Square", ["x"], ["y"], domain="custom"), {"x": np.zeros(3, np.float32)},
                       ["y"], extra_opsets={"custom": 1})
    model.functions.append(fn)
    x = np.array([1, -2, 3], np.float32)
    np.testing.assert_array_equal(session(model).run(None, {"x": x})[0], x * x)


def test_function_op_without_implementation_runs_its_schema_body():
    """MeanVarianceNormalization is defined by ONNX as a function of ReduceMean, Sub, ...:
    its default axes come from the schema."""
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 1)).astype(np.float32)
    model = make_model(helper.make_node("MeanVarianceNormalization", ["x"], ["y"]), {"x": x}, ["y"], opset=13)
    np.testing.assert_allclose(session(model).run(None, {"x": x})[0], reference(model, {"x": x})[0],
                               rtol=1e-4, atol=1e-5)


def test_narrow_float_elementwise_is_computed_in_float32():
    import ml_dtypes
    bf16 = np.dtype(ml_dtypes.bfloat16)
    a = np.array([1.5, -2.25, 3.0e8, np.nan], bf16)
    b = np.array([0.25, 4.0, 1.0e8, 1.0], bf16)
    model = make_model(helper.make_node("Add", ["a", "b"], ["y"]), {"a": a, "b": b}, ["y"],
                       output_types={"y": TensorProto.BFLOAT16})
    got = session(model).run(None, {"a": a, "b": b})[0]
    assert got.dtype == bf16
    np.testing.assert_array_equal(got.astype(np.float32), (a.astype(np.float32) + b.astype(np.float32)).astype(bf16)
                                  .astype(np.float32))
