"""Concat without a copy: where the parts lie one after the other in the output (a batch-1
channel Concat) and each is made by a kernel for the Concat alone, the plan has those
kernels write into views of the output and drops the Concat step. Results must not change."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxruntime as ort
from ortjit import plan as plan_module
from ortjit.ops import direct_conv
from tests.util import make_model, reference

RNG = np.random.default_rng(5)


def branches_model(batch, extra_reader=False, with_input=False):
    """Two conv branches (1x1 and 3x3, each with ReLU) and a max pool, concatenated along
    channels, then a Sigmoid; extra_reader: the pool's result is also a graph output;
    with_input: the graph input itself is a part."""
    inits = {"w1": RNG.standard_normal((6, 4, 1, 1)).astype(np.float32),
             "w3": RNG.standard_normal((5, 4, 3, 3)).astype(np.float32),
             "b3": RNG.standard_normal(5).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["x", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c3"], ["r3"]),
             helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["r1", "r3", "p"] + (["x"] if with_input else []), ["cat"], axis=1),
             helper.make_node("Sigmoid", ["cat"], ["y"])]
    outputs = ["y", "p"] if extra_reader else ["y"]
    model = make_model(nodes, {"x": np.zeros((batch, 4, 9, 9), np.float32)}, outputs, inits, opset=17)
    if extra_reader:
        model.graph.output[1].CopyFrom(helper.make_tensor_value_info("p", TensorProto.FLOAT, None))
    return model, {"x": RNG.standard_normal((batch, 4, 9, 9)).astype(np.float32)}


def run(model, feed):
    sess = ort.InferenceSession(model.SerializeToString())
    got = sess.run(None, feed)
    for _ in range(2):   # the buffers are reused run after run
        again = sess.run(None, feed)
        for a, b in zip(got, again):
            np.testing.assert_array_equal(a, b)
    for g, e in zip(got, reference(model, feed)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    (plan,) = sess._sess.plans.values()
    return plan


def test_batch_one_channel_concat_is_written_in_place():
    plan = run(*branches_model(1))
    assert plan.stats["concats_in_place"] == 1
    assert "Concat" not in [s.op_type for s in plan.steps]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("case", ["part_also_an_output", "graph_input_as_part"])
def test_concat_copies_where_views_would_not_do(case, batch):
    model, feed = branches_model(batch, extra_reader=case == "part_also_an_output",
                                 with_input=case == "graph_input_as_part")
    plan = run(model, feed)
    assert plan.stats["concats_in_place"] == 0
    assert "Concat" in [s.op_type for s in plan.steps]


def test_batch_two_channel_concat_is_written_in_place():
    # each image's part lies apart from the next's: the convolutions write there, the
    # pool (a kernel that needs its output contiguous) through scratch
    plan = run(*branches_model(2))
    assert plan.stats["concats_in_place"] == 1
    assert "Concat" not in [s.op_type for s in plan.steps]


def wide_branches_model(batch, nested=False, read_elsewhere=False):
    """A 1x1, a 3x3 and a 5x5 conv branch (bias, ReLU) from 16 channels at 10x10, big enough
    for the fast conv paths; nested: the first two concatenated first, then the third;
    read_elsewhere: the 3x3 branch's result is also read by a Sigmoid added to the output."""
    inits = {f"w{k}": (RNG.standard_normal((8 + k, 16, k, k)) * 0.2).astype(np.float32) for k in (1, 3, 5)}
    inits.update({f"b{k}": RNG.standard_normal(8 + k).astype(np.float32) for k in (1, 3, 5)})
    nodes = []
    for k in (1, 3, 5):   # with their biases, each Conv and its ReLU become one FusedConv
        nodes += [helper.make_node("Conv", ["x", f"w{k}", f"b{k}"], [f"c{k}"], pads=[k // 2] * 4),
                  helper.make_node("Relu", [f"c{k}"], [f"r{k}"])]
    if nested:
        nodes += [helper.make_node("Concat", ["r1", "r3"], ["inner"], axis=1),
                  helper.make_node("Concat", ["inner", "r5"], ["cat"], axis=1)]
    else:
        nodes.append(helper.make_node("Concat", ["r1", "r3", "r5"], ["cat"], axis=1))
    outputs = ["cat"]
    if read_elsewhere:
        nodes += [helper.make_node("Sigmoid", ["r3"], ["s3"]), helper.make_node("ReduceSum", ["s3"], ["t3"])]
        outputs.append("t3")
    nodes.append(helper.make_node("Relu", [outputs[0]], ["y"]))
    model = make_model(nodes, {"x": np.zeros((batch, 16, 10, 10), np.float32)}, ["y"] + outputs[1:], inits,
                       opset=17)
    return model, {"x": RNG.standard_normal((batch, 16, 10, 10)).astype(np.float32)}


@pytest.mark.parametrize("kernel", ["ChannelConv", "DirectConv", "im2col"])
@pytest.mark.parametrize("nested", [False, True])
def test_conv_paths_write_their_part_where_each_image_has_it(monkeypatch, kernel, nested):
    monkeypatch.setattr(direct_conv, "ENABLED", kernel != "im2col")
    monkeypatch.setattr(direct_conv, "FORCED", kernel != "im2col")
    monkeypatch.setattr(direct_conv, "FORCED_CHANNELS", kernel == "ChannelConv")
    plan = run(*wide_branches_model(3, nested))
    assert plan.stats["concats_in_place"] == (2 if nested else 1)
    convs = [s for s in plan.steps if s.op_type == "FusedConv"]
    assert len(convs) == 3 and all(s.fn.__name__ == "fused_conv" for s in convs)   # none through scratch
    assert not any(plan.template[s.outs[0]].flags.c_contiguous for s in convs)   # views of the Concat's output


def test_a_part_read_elsewhere_at_batch_two_is_copied():
    plan = run(*wide_branches_model(2, read_elsewhere=True))
    assert plan.stats["concats_in_place"] == 0


def test_concat_apart_off_gives_the_same_results(monkeypatch):
    model, feed = wide_branches_model(2, nested=True)
    on = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    monkeypatch.setattr(plan_module, "CONCAT_APART", False)
    sess = ort.InferenceSession(model.SerializeToString())
    off = sess.run(None, feed)
    assert next(iter(sess._sess.plans.values())).stats["concats_in_place"] == 0
    for a, b in zip(on, off):
        np.testing.assert_array_equal(a, b)


def test_in_place_concat_under_the_profiler():
    model, feed = branches_model(1)
    so = ort.SessionOptions()
    so.enable_profiling = True
    sess = ort.InferenceSession(model.SerializeToString(), so)
    want = reference(model, feed)[0]
    for _ in range(2):
        np.testing.assert_allclose(sess.run(None, feed)[0], want, rtol=1e-5, atol=1e-5)


def dense_block_model():
    """DenseNet's pattern: each layer reads the Concat so far and the next Concat appends
    its result to it, so parts have other readers and Concats nest."""
    inits = {f"w{k}": (RNG.standard_normal((4, 4 * (k or 1), 3, 3)) * 0.3).astype(np.float32) for k in range(3)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c0"], ["stem"]),
             helper.make_node("Conv", ["stem", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["l1"]),
             helper.make_node("Concat", ["stem", "l1"], ["cat1"], axis=1),
             helper.make_node("Sigmoid", ["cat1"], ["s1"]),
             helper.make_node("Conv", ["s1", "w2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["l2"]),
             helper.make_node("Concat", ["cat1", "l2"], ["cat2"], axis=1),
             helper.make_node("ReduceMean", ["cat2"], ["m2"], axes=[1]),
             # made after cat2's last reader, in a buffer that must not be cat2's: stem is read after it
             helper.make_node("Conv", ["x", "w3"], ["c3"], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c3"], ["p3"], kernel_shape=[1, 1]),
             helper.make_node("Add", ["p3", "stem"], ["a3"]), helper.make_node("Add", ["a3", "m2"], ["y"])]
    inits["w3"] = (RNG.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32)
    inits["w1"] = (RNG.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32)
    inits["w2"] = (RNG.standard_normal((4, 8, 3, 3)) * 0.3).astype(np.float32)
    model = make_model(nodes, {"x": np.zeros((1, 4, 8, 8), np.float32)}, ["y"], inits, opset=17)
    return model, {"x": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)}


def test_nested_concats_and_parts_read_elsewhere_share_one_buffer():
    # "stem" is read by a Conv and the last Add too, "cat1" by the Sigmoid: the buffer of
    # cat2 must hold them until then
    plan = run(*dense_block_model())
    assert plan.stats["concats_in_place"] == 2
    assert "Concat" not in [s.op_type for s in plan.steps]
