"""A channel shuffle (Reshape, Transpose, Reshape) read by a depthwise Conv runs as one
ortjit.ChannelShuffleConv (passes/channel_shuffle.py): the convolution reads each channel
from where the shuffle takes it. Same results as the unoptimized graph and the oracle."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxruntime as ort
from tests.util import make_model, reference

RNG = np.random.default_rng(5)


def shuffle_model(n, c, groups, hw, kernel=3, stride=1, conv_group=None, bias=True, symbolic_batch=False,
                  extra_reader=None):
    """x (n, c, hw, hw) -> channel shuffle in `groups` -> Conv (depthwise unless conv_group)."""
    conv_group = c if conv_group is None else conv_group
    inits = {"grouped": np.array([0, groups, c // groups, hw, hw], np.int64),
             "flat": np.array([0, c, hw, hw], np.int64),
             "w": (RNG.standard_normal((c, c // conv_group, kernel, kernel)) * 0.3).astype(np.float32)}
    names = ["shuffled", "w"]
    if bias:
        inits["b"] = RNG.standard_normal(c).astype(np.float32)
        names.append("b")
    nodes = [helper.make_node("Reshape", ["x", "grouped"], ["g5"]),
             helper.make_node("Transpose", ["g5"], ["t5"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t5", "flat"], ["shuffled"]),
             helper.make_node("Conv", names, ["y"], kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4,
                              strides=[stride, stride], group=conv_group)]
    outputs = ["y"]
    if extra_reader:   # a second reader of one of the shuffle's tensors
        nodes.append(helper.make_node("Neg", [extra_reader], ["other"]))
        outputs.append("other")
    inputs = {"x": RNG.standard_normal((n, c, hw, hw)).astype(np.float32)}
    model = make_model(nodes, inputs, outputs, inits, opset=17)
    if symbolic_batch:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return model, inputs


def session(model, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), so)


def op_types(sess):
    return [n.op_type for n in sess._sess.ir.graph]


def check(model, feed):
    sess = session(model)
    got = sess.run(None, feed)
    plain = session(model, ort.GraphOptimizationLevel.ORT_DISABLE_ALL).run(None, feed)
    for g, p, r in zip(got, plain, reference(model, feed)):
        np.testing.assert_array_equal(g, p)
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
    return sess


@pytest.mark.parametrize("n, c, groups, hw, kernel, stride", [
    (1, 12, 3, 7, 3, 1), (2, 24, 4, 9, 3, 2), (3, 8, 2, 5, 5, 1), (1, 6, 6, 4, 3, 1)])
def test_shuffle_into_depthwise_conv_is_one_node(n, c, groups, hw, kernel, stride):
    model, feed = shuffle_model(n, c, groups, hw, kernel, stride)
    sess = check(model, feed)
    assert op_types(sess) == ["ChannelShuffleConv"]


def test_symbolic_batch_and_other_batch_sizes():
    model, feed = shuffle_model(2, 12, 3, 6, symbolic_batch=True, bias=False)
    sess = check(model, feed)
    assert op_types(sess) == ["ChannelShuffleConv"]
    x = RNG.standard_normal((5, 12, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], reference(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reader", ["g5", "t5", "shuffled"])
def test_a_shuffle_read_elsewhere_stays(reader):
    model, feed = shuffle_model(1, 12, 3, 6, extra_reader=reader)
    sess = check(model, feed)
    assert "ChannelShuffleConv" not in op_types(sess) and "Transpose" in op_types(sess)


def test_a_grouped_conv_that_is_not_depthwise_keeps_the_shuffle():
    model, feed = shuffle_model(1, 12, 3, 6, conv_group=3)
    sess = check(model, feed)
    assert "ChannelShuffleConv" not in op_types(sess)


def test_an_order_that_is_not_a_permutation_is_refused():
    node = helper.make_node("ChannelShuffleConv", ["x", "w"], ["y"], domain="ortjit", group=4,
                            kernel_shape=[3, 3], pads=[1, 1, 1, 1], input_channels=[0, 0, 1, 2])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5]),
                                            helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 1, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ortjit", 1)])
    feed = {"x": np.ones((1, 4, 5, 5), np.float32), "w": np.ones((4, 1, 3, 3), np.float32)}
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="input_channels"):
        ort.InferenceSession(model.SerializeToString()).run(None, feed)
