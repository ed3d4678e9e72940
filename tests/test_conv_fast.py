"""The fast Conv paths and the Conv graph rewrites: depthwise convolution's direct kernel,
BatchNormalization folded into Conv (or turned into Mul/Add), Conv biases moved into the
fused epilogue. Each against onnx.reference.ReferenceEvaluator on the unrewritten model."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

import onnxruntime as ort
from ortjit.model import CompiledModel
from tests.util import assert_matches_reference

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def model(nodes, x_shape, out_shape, inits, opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.data())
def test_depthwise_conv_matches_reference(data):
    rank = data.draw(st.integers(1, 2), "spatial rank")
    c, mult, n = data.draw(st.integers(2, 9), "channels"), data.draw(st.integers(1, 3), "multiplier"), \
        data.draw(st.integers(1, 2), "batch")
    kernel = data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank), "kernel")
    dil = data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank), "dilations")
    strides = data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank), "strides")
    pads = data.draw(st.lists(st.integers(0, 3), min_size=2 * rank, max_size=2 * rank), "pads")
    size = [data.draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 12)) for k, d in zip(kernel, dil)]
    x = rand(n, c, *size)
    with_bias = data.draw(st.booleans(), "bias")
    inits = {"w": rand(c * mult, 1, *kernel), **({"b": rand(c * mult)} if with_bias else {})}
    node = helper.make_node("Conv", ["x", "w", "b"] if with_bias else ["x", "w"], ["y"], group=c, dilations=dil,
                            strides=strides, pads=pads)
    assert_matches_reference(model([node], list(x.shape), None, inits), {"x": x}, rtol=1e-4, atol=1e-5)


def resnet_block(bn_first=False):
    """Conv -> BN -> Relu -> Conv(bias) -> BN -> Add(residual) -> Relu, or (bn_first) the
    pre-activation order BN -> Relu -> Conv, where the BN has no Conv before it."""
    c = 8
    bn = {f"{p}{k}": (RNG.uniform(0.5, 1.5, c) if k in ("s", "v") else RNG.uniform(-0.5, 0.5, c)).astype(np.float32)
          for p in ("a", "b") for k in ("s", "o", "m", "v")}
    inits = {"w1": rand(c, c, 3, 3) * 0.3, "w2": rand(c, c, 3, 3) * 0.3, "b2": rand(c), **bn}
    if bn_first:
        nodes = [helper.make_node("BatchNormalization", ["x", "as", "ao", "am", "av"], ["t0"], epsilon=1e-3),
                 helper.make_node("Relu", ["t0"], ["t1"]),
                 helper.make_node("Conv", ["t1", "w2", "b2"], ["y"], pads=[1, 1, 1, 1])]
    else:
        nodes = [helper.make_node("Conv", ["x", "w1"], ["t0"], pads=[1, 1, 1, 1]),
                 helper.make_node("BatchNormalization", ["t0", "as", "ao", "am", "av"], ["t1"]),
                 helper.make_node("Relu", ["t1"], ["t2"]),
                 helper.make_node("Conv", ["t2", "w2", "b2"], ["t3"], pads=[1, 1, 1, 1]),
                 helper.make_node("BatchNormalization", ["t3", "bs", "bo", "bm", "bv"], ["t4"]),
                 helper.make_node("Add", ["t4", "x"], ["t5"]),
                 helper.make_node("Relu", ["t5"], ["y"])]
    return model(nodes, ["N", c, 10, 10], None, inits)


@pytest.mark.parametrize("bn_first", [False, True])
def test_batchnorm_folding_keeps_results(bn_first):
    m = resnet_block(bn_first)
    x = rand(2, 8, 10, 10)
    assert_matches_reference(m, {"x": x}, rtol=1e-4, atol=1e-5)
    compiled = CompiledModel(m.SerializeToString())
    ops = [n.op_type for n in compiled.ir.graph]
    assert "BatchNormalization" not in ops, ops
    if not bn_first:  # both BNs folded into the Convs; bias + residual + Relu one loop run with each
        assert ops == ["FusedConv", "FusedConv"], ops
        assert [ops for _, ops in compiled.fused_groups()] == [["Conv", "Add", "Relu"], ["Conv", "Add", "Add", "Relu"]]


@pytest.mark.parametrize("scale_shape, shift_shape, folds", [
    ((8, 1, 1), (8, 1, 1), True),          # Inception v2's BN -> Mul -> Add
    ((1, 8, 1, 1), (1,), True),            # leading 1s, a scalar
    ((), (8, 1, 1), True),
    ((8,), (8, 1, 1), False),              # (8,) lines up with the width (8): not per channel
    ((1, 1, 10, 1), (8, 1, 1), False),     # per row
    ((1, 1, 8, 1, 1), (8, 1, 1), False),   # would raise the rank
])
def test_per_channel_mul_and_add_fold_into_conv(scale_shape, shift_shape, folds):
    """Conv -> BN -> Mul(constant) -> Add(constant) -> Relu, constants first or second:
    per-channel ones go into the Conv's weights and bias (ONNX Runtime's ConvMulFusion and
    ConvAddFusion), anything else stays a node, with the same results either way."""
    c = 8
    bn = {k: (RNG.uniform(0.5, 1.5, c) if k in ("s", "v") else RNG.uniform(-0.5, 0.5, c)).astype(np.float32)
          for k in ("s", "o", "m", "v")}
    inits = {"w": rand(c, 4, 3, 3), "scale": rand(*scale_shape), "shift": rand(*shift_shape), **bn}
    nodes = [helper.make_node("Conv", ["x", "w"], ["t0"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["t0", "s", "o", "m", "v"], ["t1"]),
             helper.make_node("Mul", ["scale", "t1"], ["t2"]),
             helper.make_node("Add", ["t2", "shift"], ["t3"]),
             helper.make_node("Relu", ["t3"], ["y"])]
    m = model(nodes, ["N", 4, 10, 8], None, inits)
    x = rand(2, 4, 10, 8)
    assert_matches_reference(m, {"x": x}, rtol=1e-4, atol=1e-5)
    groups = [ops for _, ops in CompiledModel(m.SerializeToString()).fused_groups()]
    if folds:
        assert groups == [["Conv", "Add", "Relu"]], groups
    else:
        assert "Mul" in groups[0], groups


def test_batchnorm_is_kept_at_level_zero_and_in_training_mode():
    m = resnet_block()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = rand(1, 8, 10, 10)
    plain = ort.InferenceSession(m.SerializeToString(), opts).run(None, {"x": x})[0]
    optimized = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(optimized, plain, rtol=1e-4, atol=1e-5)
    # BN parameters fed as graph inputs (overridable initializers) must not be folded
    m.graph.input.extend([helper.make_tensor_value_info("as", TensorProto.FLOAT, [8])])
    compiled = CompiledModel(m.SerializeToString())
    assert "BatchNormalization" in [n.op_type for n in compiled.ir.graph]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.data())
def test_winograd_conv_matches_reference(data):
    """3x3 stride-1 convolutions big enough for the Winograd path (ortjit/ops/winograd.py):
    odd and even output sizes (cropped edge tiles), any pads, with and without bias, the
    weight a constant or fed at run time, float32 and float64."""
    from ortjit.ops import winograd
    n, c, m = data.draw(st.integers(1, 2), "batch"), data.draw(st.integers(128, 130), "C"), \
        data.draw(st.integers(32, 34), "M")
    pads = data.draw(st.lists(st.integers(0, 2), min_size=4, max_size=4), "pads")
    h, w = data.draw(st.integers(10, 15), "H"), data.draw(st.integers(10, 15), "W")
    out = [h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2]
    assert winograd.worthwhile(n, c, m, out)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), "dtype")
    bias, fed_weight = data.draw(st.booleans(), "bias"), data.draw(st.booleans(), "weight fed at run time")
    x = rand(n, c, h, w).astype(dtype)
    inits = {"w": (rand(m, c, 3, 3) / np.sqrt(9 * c)).astype(dtype)}
    if bias:
        inits["b"] = rand(m).astype(dtype)
    tt = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], pads=pads)
    inputs = [helper.make_tensor_value_info("x", tt, list(x.shape))]
    feed = {"x": x}
    if fed_weight:
        inputs.append(helper.make_tensor_value_info("w", tt, list(inits["w"].shape)))
        feed["w"] = inits.pop("w")
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", tt, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m_ = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert_matches_reference(m_, feed, rtol=1e-4, atol=1e-5)


def test_winograd_weight_fed_at_run_time_is_used_on_every_call():
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128, 8, 8]),
                                            helper.make_tensor_value_info("w", TensorProto.FLOAT, [32, 128, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    x, w = rand(1, 128, 8, 8), rand(32, 128, 3, 3)
    y1 = sess.run(None, {"x": x, "w": w})[0]
    w *= 2   # the same buffer, new values
    y2 = sess.run(None, {"x": x, "w": w})[0]
    np.testing.assert_allclose(y2, 2 * y1, rtol=1e-5, atol=1e-5)


def test_scratch_reuse_leaves_room_for_alignment():
    # a buffer made for n bytes (plus 63 for the 64-byte alignment) must not serve a later
    # request of up to n + 63 bytes, whose aligned start may leave too little behind it
    from ortjit.ops.scratch import scratch
    for k in range(32):   # several buffers: where malloc puts each one decides the shift
        for count in (1000, 1015, 1000, 1016, 3, 1016):
            a = scratch(f"test_alignment_room{k}", count, np.float32)
            assert a.shape == (count,) and a.ctypes.data % 64 == 0


def test_depthwise_kernel_source_is_shown_by_explain():
    inits = {"w": rand(6, 1, 3, 3), "b": rand(6)}
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], group=6, pads=[1, 1, 1, 1])], [1, 6, 8, 8], None, inits)
    compiled = CompiledModel(m.SerializeToString())
    compiled.run({"x": rand(1, 6, 8, 8)})
    sources = compiled.kernel_sources()
    assert any("bk = b[oc]" in src and "run_parts(work, runs" in src for src in sources.values()), list(sources)
