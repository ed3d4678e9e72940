"""Conv + its fused elementwise loop as one node (ortjit.FusedConv): the loop runs on each
GEMM piece where the Conv is GEMMs, after the Conv elsewhere; either way the results are
the unoptimized graph's and the oracle's."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import onnxruntime as ort
from tests.util import make_model, reference

RNG = np.random.default_rng(11)


def session(model, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), so)


def conv_model(n, c, m, hw, kernel, stride, group, tail, bias=True, symbolic_batch=False):
    """Conv (+ bias) followed by an elementwise tail: 'relu', 'residual' (Add of a second
    input of the output's shape, then Relu), 'sigmoid_mul' (x * Sigmoid(x), exp inside),
    'per_image' (Mul by an (N, 1, 1, 1) input), 'per_row' (Add of a (1, 1, H, 1) constant:
    not a GEMM-piece pattern, so the loop runs after the Conv)."""
    pad = kernel // 2
    oh = (hw + 2 * pad - kernel) // stride + 1
    out_shape = (n, m, oh, oh)
    inits = {"w": (RNG.standard_normal((m, c // group, kernel, kernel)) * 0.2).astype(np.float32)}
    if bias:
        inits["b"] = RNG.standard_normal(m).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["y"], kernel_shape=[kernel, kernel],
                            pads=[pad] * 4, strides=[stride, stride], group=group)
    inputs = {"x": np.zeros((n, c, hw, hw), np.float32)}
    nodes = [conv]
    if tail == "relu":
        nodes.append(helper.make_node("Relu", ["y"], ["out"]))
    elif tail == "residual":
        inputs["r"] = np.zeros(out_shape, np.float32)
        nodes += [helper.make_node("Add", ["y", "r"], ["s"]), helper.make_node("Relu", ["s"], ["out"])]
    elif tail == "sigmoid_mul":
        nodes += [helper.make_node("Sigmoid", ["y"], ["g"]), helper.make_node("Mul", ["y", "g"], ["out"])]
    elif tail == "per_image":
        inputs["k"] = np.zeros((n, 1, 1, 1), np.float32)
        nodes += [helper.make_node("Mul", ["y", "k"], ["s"]), helper.make_node("Relu", ["s"], ["out"])]
    elif tail == "per_row":
        inits["rows"] = RNG.standard_normal((1, 1, oh, 1)).astype(np.float32)
        nodes += [helper.make_node("Add", ["y", "rows"], ["s"]), helper.make_node("Relu", ["s"], ["out"])]
    model = make_model(nodes, inputs, ["out"], inits, opset=17)
    if symbolic_batch:
        for vi in model.graph.input:
            if vi.type.tensor_type.shape.dim[0].dim_value == n:
                vi.type.tensor_type.shape.dim[0].dim_param = "N"
    feed = {k: RNG.standard_normal(v.shape).astype(np.float32) for k, v in inputs.items()}
    return model, feed


def op_types(sess):
    return [n.op_type for n in sess._sess.ir.graph]


def check(model, feed):
    fused = session(model)
    got = fused.run(None, feed)[0]
    plain = session(model, ort.GraphOptimizationLevel.ORT_DISABLE_ALL).run(None, feed)[0]
    np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, reference(model, feed)[0], rtol=1e-4, atol=1e-4)
    return fused


def epilogues(sess):
    (plan,) = sess._sess.plans.values()
    return [s.fn.epilogue for s in plan.steps if hasattr(s.fn, "epilogue")]


def direct_conv_here() -> bool:
    from ortjit.ops import direct_conv
    return direct_conv.applicable(np.float32, 1, [3, 3], [1, 1], 2)


def test_conv_bias_relu_becomes_one_node_whose_loop_runs_as_the_direct_conv_copies_out():
    # 32 channels of 20x20, 3x3, stride 1: a direct convolution (ops/direct_conv.py)
    model, feed = conv_model(2, 32, 48, 20, 3, 1, 1, "relu", symbolic_batch=True)
    sess = check(model, feed)
    assert op_types(sess) == ["FusedConv"]
    assert sess._sess.fused_groups()[0][1] == ["Conv", "Add", "Relu"]
    if direct_conv_here():   # the epilogue ran inside the direct kernel, not as a loop of its own
        (epilogue,) = epilogues(sess)
        assert (epilogue.direct_calls, epilogue.gemm_calls) == (1, 0)


def test_conv_bias_relu_loop_runs_on_the_gemm_pieces(monkeypatch):
    # 32 channels of 20x20, 3x3: 3.7M multiply-adds per image, a threaded GEMM per image
    from ortjit.ops import blas, direct_conv
    monkeypatch.setattr(direct_conv, "ENABLED", False)   # im2col + GEMM
    model, feed = conv_model(2, 32, 48, 20, 3, 1, 1, "relu", symbolic_batch=True)
    sess = check(model, feed)
    if blas.threaded():   # the epilogue ran inside the GEMM kernel, not as a loop of its own
        assert epilogues(sess)[0].gemm_calls == 1   # both images unrolled, then one GEMM call


def test_residual_add_and_relu_ride_on_a_pointwise_conv(monkeypatch):
    from ortjit.ops import direct_conv
    monkeypatch.setattr(direct_conv, "ONE_BY_ONE", False)   # small 1x1 layers: ChannelConv
    model, feed = conv_model(3, 64, 64, 14, 1, 1, 1, "residual")
    sess = check(model, feed)
    assert op_types(sess) == ["FusedConv"]
    from ortjit.ops import blas
    if blas.threaded():   # all three images in one call
        assert epilogues(sess)[0].gemm_calls == 1


def test_images_beyond_the_im2col_budget_are_unrolled_in_turns(monkeypatch):
    from ortjit.ops import blas, conv, direct_conv
    monkeypatch.setattr(direct_conv, "ENABLED", False)
    model, feed = conv_model(3, 32, 48, 20, 3, 1, 1, "residual")
    monkeypatch.setattr(conv, "IM2COL_BYTES", 2 * 32 * 9 * 400 * 4)   # two images' columns
    sess = check(model, feed)
    if blas.threaded():
        assert epilogues(sess)[0].gemm_calls == 2   # images 0-1, then image 2


def test_a_loop_the_gemm_pieces_cannot_take_runs_after_the_conv():
    model, feed = conv_model(1, 32, 32, 24, 3, 1, 1, "per_row")
    sess = check(model, feed)
    assert op_types(sess) == ["FusedConv"] and epilogues(sess)[0].gemm_calls == 0


def test_conv_read_by_two_nodes_stays_apart():
    model, feed = conv_model(1, 8, 8, 10, 3, 1, 1, "relu")
    model.graph.node.append(helper.make_node("Neg", ["y"], ["neg"]))
    model.graph.output.append(helper.make_tensor_value_info("neg", TensorProto.FLOAT, None))
    sess = session(model)
    assert "FusedConv" not in op_types(sess)
    got = sess.run(None, feed)
    for g, e in zip(got, reference(model, feed)):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), c=st.sampled_from([4, 16, 64, 128]), m=st.sampled_from([1, 8, 64, 128]),
       hw=st.sampled_from([5, 12, 20]), kernel=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]),
       grouped=st.booleans(), bias=st.booleans(),
       tail=st.sampled_from(["relu", "residual", "sigmoid_mul", "per_image", "per_row"]))
def test_property_fused_conv_matches_the_unfused_graph(n, c, m, hw, kernel, stride, grouped, bias, tail):
    # grouped: depthwise when the channel counts agree, else 4 groups (no GEMM pieces)
    group = (c if c == m else 4 if c % 4 == 0 and m % 4 == 0 else 1) if grouped else 1
    model, feed = conv_model(n, c, m, hw, kernel, stride, group, tail, bias=bias)
    check(model, feed)
