"""MatMul with constant weights on the packed-B micro-kernel GEMM (ops/packed_gemm.py), and
MatMul + its fused elementwise loop as one node (ortjit.FusedMatMul): every row and column
computed, ragged edges and K past one block included, the loop's inputs broadcast along
rows, columns, both or neither; against onnx.reference.ReferenceEvaluator and the
unoptimized graph."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import onnxruntime as ort
from ortjit.codegen.cpu import microkernel
from ortjit.codegen.cpu.packed_gemm import KC
from ortjit.ops import packed_gemm
from tests.util import make_model, reference

RNG = np.random.default_rng(23)

packed_here = pytest.mark.skipif(microkernel.host_tile() is None or not packed_gemm.usable(np.float32, 64, 256, 256),
                                 reason="no micro-kernel for this CPU: MatMul stays on the BLAS")


def session(model, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), so)


def steps(sess):
    (plan,) = sess._sess.plans.values()
    return plan.steps


@packed_here
@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.data())
def test_matmul_with_constant_weights_matches_reference(data):
    lead = data.draw(st.sampled_from([(), (2,), (2, 3)]), "leading dims")
    m = data.draw(st.integers(8, 70), "M")
    k = data.draw(st.sampled_from([1, 7, 64, 200, KC + 37]), "K")
    n = data.draw(st.integers(1, 130), "N")
    a = RNG.standard_normal((*lead, m, k)).astype(np.float32)
    w = (RNG.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    model = make_model(helper.make_node("MatMul", ["a", "w"], ["y"]), {"a": a}, ["y"], {"w": w})
    sess = session(model)
    got = sess.run(None, {"a": a})[0]
    np.testing.assert_allclose(got, reference(model, {"a": a})[0], rtol=1e-4, atol=1e-5)
    big_enough = packed_gemm.usable(np.float32, int(np.prod(lead, dtype=int)) * m, k, n)
    assert ("packed_gemm" in (steps(sess)[0].source or "")) == big_enough
    # a second call with other values: nothing of the first kept
    a2 = RNG.standard_normal(a.shape).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"a": a2})[0], reference(model, {"a": a2})[0], rtol=1e-4, atol=1e-5)


def mlp_block(rows, k, n, tail, lead=()):
    """MatMul(x, W) + bias followed by a tail: 'bias' (none), 'gelu' (erf form), 'residual' (Add of an
    input of the output's shape), 'per_row' (Mul by an (..., M, 1) input), 'scalar' (Mul by
    a 0-d constant) or 'per_batch' (Add of a (B, 1, N) input: not a block pattern, so the
    loop runs after the product)."""
    out_shape = (*lead, rows, n)
    inits = {"w": (RNG.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32),
             "b": RNG.standard_normal(n).astype(np.float32)}
    inputs = {"x": np.zeros((*lead, rows, k), np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p"]), helper.make_node("Add", ["p", "b"], ["h"])]
    if tail == "bias":   # the Add alone (a transformer's QKV projection)
        nodes[-1] = helper.make_node("Add", ["p", "b"], ["out"])
    elif tail == "gelu":
        inits.update(c=np.float32(2 ** -0.5), half=np.float32(0.5), one=np.float32(1.0))
        nodes += [helper.make_node("Mul", ["h", "c"], ["s"]), helper.make_node("Erf", ["s"], ["e"]),
                  helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["h", "e1"], ["g"]),
                  helper.make_node("Mul", ["g", "half"], ["out"])]
    elif tail == "residual":
        inputs["r"] = np.zeros(out_shape, np.float32)
        nodes.append(helper.make_node("Add", ["h", "r"], ["out"]))
    elif tail == "per_row":
        inputs["s"] = np.zeros((*lead, rows, 1), np.float32)
        nodes += [helper.make_node("Mul", ["h", "s"], ["t"]), helper.make_node("Relu", ["t"], ["out"])]
    elif tail == "scalar":
        inits["two"] = np.float32(2.0)
        nodes += [helper.make_node("Mul", ["h", "two"], ["t"]), helper.make_node("Tanh", ["t"], ["out"])]
    elif tail == "per_batch":
        inputs["q"] = np.zeros((lead[0], 1, n), np.float32)
        nodes += [helper.make_node("Add", ["h", "q"], ["t"]), helper.make_node("Relu", ["t"], ["out"])]
    model = make_model(nodes, inputs, ["out"], inits)
    feed = {name: RNG.standard_normal(v.shape).astype(np.float32) for name, v in inputs.items()}
    return model, feed


@packed_here
@pytest.mark.parametrize("tail, lead", [("bias", (2,)), ("gelu", ()), ("gelu", (3,)), ("residual", (2,)), ("per_row", (2,)),
                                        ("scalar", ()), ("per_batch", (2,))])
def test_fused_matmul_applies_the_loop_as_blocks_are_copied_out(tail, lead):
    model, feed = mlp_block(37, 200, 75, tail, lead)
    fused = session(model)
    got = fused.run(None, feed)[0]
    np.testing.assert_allclose(got, reference(model, feed)[0], rtol=1e-4, atol=1e-5)
    plain = session(model, ort.GraphOptimizationLevel.ORT_DISABLE_ALL).run(None, feed)[0]
    np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-6)
    groups = fused._sess.fused_groups()
    assert len(groups) == 1 and groups[0][1][:2] == ["MatMul", "Add"], groups
    (step,) = steps(fused)
    in_blocks = "through the fused program" in (step.source or "")
    assert in_blocks == (tail != "per_batch"), step.source


def test_matmul_whose_weights_are_fed_is_not_fused():
    """Weights that come as a graph input are not packed at plan time: the loop stays a
    separate node and the answers are right call after call."""
    model, feed = mlp_block(16, 32, 24, "residual")
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [32, 24]))
    w = feed["w"] = RNG.standard_normal((32, 24)).astype(np.float32)
    sess = session(model)
    assert "FusedMatMul" not in [n.op_type for n in sess._sess.ir.graph]
    for scale in (1.0, -2.0):
        feed["w"] = w * scale
        np.testing.assert_allclose(sess.run(None, feed)[0], reference(model, feed)[0], rtol=1e-4, atol=1e-5)


@packed_here
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("rows", [1, 40])
def test_gemm_with_constant_weights(trans_b, rows):
    """Gemm as exporters write a Linear layer (transB=1) or not, C added after with beta;
    one row stays on the BLAS's gemv."""
    a = RNG.standard_normal((rows, 300)).astype(np.float32)
    w = (RNG.standard_normal((200, 300) if trans_b else (300, 200)) / 17).astype(np.float32)
    c = RNG.standard_normal(200).astype(np.float32)
    model = make_model(helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=trans_b, beta=0.5), {"a": a}, ["y"],
                       {"w": w, "c": c})
    sess = session(model)
    np.testing.assert_allclose(sess.run(None, {"a": a})[0], reference(model, {"a": a})[0], rtol=1e-4, atol=1e-5)
    assert ("packed" in (steps(sess)[0].source or "")) == (rows > 1)
