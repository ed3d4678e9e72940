"""The attention family and the other transformer ops of opsets 23-28 (Attention,
RotaryEmbedding, LinearAttention, CausalConvWithState, SwiGLU, FlexAttention) against
onnx.reference.ReferenceEvaluator, through the onnxruntime facade, mostly as property
tests over shapes, head counts, masks and caches.

Where the reference evaluator is wrong the expected values come from numpy instead:
- Attention qk_matmul_output mode 0 with a softcap: the reference gives the softcapped
  product; the spec (and the op's function body) say the raw QK product;
- Attention with is_causal and a mask broadcast over the query dim (or 1-D): the
  reference builds the causal frontier from the mask's shape (fails on 1-D masks), so
  those draws give the mask its full query dim;
- FlexAttention with a modifier that reads an outer-scope value: the reference runs the
  subgraph without the outer scope.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

from ortjit.errors import InvalidArgument
from tests.util import make_model, reference, run_ours

FAST = settings(max_examples=20, deadline=None, derandomize=True)
BF16 = np.dtype(ml_dtypes.bfloat16)
PREVIEW = "ai.onnx.preview"


def node_model(op, feeds: dict, attrs=None, opset=23, input_names=None, outputs=("y",), domain="",
               inits=None):
    """One node; feeds are graph inputs; an empty name in input_names/outputs is an
    omitted optional input/output."""
    names = input_names if input_names is not None else list(feeds) + list(inits or {})
    node = helper.make_node(op, names, list(outputs), domain=domain, **(attrs or {}))
    extra = {PREVIEW: 1} if domain == PREVIEW else None
    return make_model(node, feeds, [o for o in outputs if o], inits, opset=opset, extra_opsets=extra)


def compare(got, expected, dtype, rtol=None, atol=None):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        e = np.asarray(e)
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, e.shape, g.dtype, e.dtype)
        if e.dtype == BF16:  # the conformance suite compares bfloat16 exactly
            np.testing.assert_array_equal(g.astype(np.float32), e.astype(np.float32))
            continue
        narrow = np.dtype(dtype).itemsize < 4
        np.testing.assert_allclose(g, e, rtol=rtol or (1e-3 if narrow else 1e-5),
                                   atol=atol or (1e-3 if narrow else 1e-6), equal_nan=True)


def check(op, feeds, attrs=None, opset=23, input_names=None, outputs=("y",), domain="", inits=None, **tol):
    model = node_model(op, feeds, attrs, opset, input_names, outputs, domain, inits)
    got = run_ours(model, feeds)
    compare(got, reference(model, feeds), next(iter(feeds.values())).dtype, **tol)
    return got


def symbolic(model):
    """Unknown input dims, so that onnx's shape inference leaves the checks to the op."""
    for vi in model.graph.input:
        for k, d in enumerate(vi.type.tensor_type.shape.dim):
            d.dim_param = f"{vi.name}_{k}"
    return model


def raises_invalid(op, feeds, attrs=None, opset=23, input_names=None, outputs=("y",), match=None, domain=""):
    model = symbolic(node_model(op, feeds, attrs, opset, input_names, outputs, domain))
    with pytest.raises(InvalidArgument, match=match):
        run_ours(model, feeds)


def trim(names):
    while names and not names[-1]:
        names = names[:-1]
    return names


# ---------------------------------------------------------------- Attention

@st.composite
def attention_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    opset = draw(st.sampled_from([23, 24, 25]))
    b, hkv, g = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    hq, sq, skv = hkv * g, draw(st.integers(1, 4)), draw(st.integers(1, 5))
    d, dv = draw(st.sampled_from([1, 4, 8])), draw(st.integers(1, 5))
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float32, np.float16, np.float64])))
    rank3 = draw(st.booleans())
    cache = draw(st.sampled_from(["none", "past"] + (["nonpad"] if opset >= 24 else [])))
    p = draw(st.integers(0, 3)) if cache == "past" else 0
    t = p + skv
    attrs = {}
    if draw(st.booleans()):
        attrs["is_causal"] = 1
    softcap = draw(st.sampled_from([0.0, 0.0, 2.0]))
    if softcap:
        attrs["softcap"] = softcap
    if draw(st.booleans()):
        attrs["scale"] = draw(st.sampled_from([0.1, 1.0, 3.0]))
    mode = draw(st.sampled_from([None, 0, 1, 2, 3]))
    if mode == 0 and softcap:  # onnx.reference is wrong there (see the module doc)
        mode = None
    if mode:
        attrs["qk_matmul_output_mode"] = mode
    if dtype != np.float64 and draw(st.booleans()):
        attrs["softmax_precision"] = draw(st.sampled_from([TensorProto.FLOAT, TensorProto.DOUBLE]))
    if opset >= 25:
        for side, values in (("left_window_size", [-1, 0, 2]), ("right_window_size", [-1, 0, 1])):
            w = draw(st.sampled_from(values))
            if w != -1 or draw(st.booleans()):
                attrs[side] = w
    if rank3:
        attrs.update(q_num_heads=hq, kv_num_heads=hkv)
        shapes = [(b, sq, hq * d), (b, skv, hkv * d), (b, skv, hkv * dv)]
    else:
        shapes = [(b, hq, sq, d), (b, hkv, skv, d), (b, hkv, skv, dv)]
    feeds = {n: rng.standard_normal(s).astype(dtype) for n, s in zip("QKV", shapes)}
    names = ["Q", "K", "V", "", "", "", ""]

    kind = draw(st.sampled_from([None, "bool", "float"]))
    if kind:
        rank = draw(st.integers(1 if "is_causal" not in attrs else 2, 4))  # the reference fails on 1-D + causal
        shape = [b, hq, sq, t][4 - rank:]
        shape = [s if draw(st.booleans()) else 1 for s in shape[:-1]] + [draw(st.integers(max(1, t - 2), t))]
        if "is_causal" in attrs:  # the reference aligns the causal mask to the mask's own query dim
            shape[-2] = sq
        if kind == "bool":
            mask = rng.random(shape) < 0.7
            if rank > 1 and draw(st.booleans()):
                mask[..., 0, :] = False  # a fully masked row
        else:
            mask = rng.standard_normal(shape).astype(dtype)
            mask[rng.random(shape) < 0.2] = -np.inf
            if rank > 1 and draw(st.booleans()):
                mask[..., 0, :] = -np.inf
        feeds["attn_mask"], names[3] = mask, "attn_mask"
    if cache == "past":
        feeds["past_key"] = rng.standard_normal((b, hkv, p, d)).astype(dtype)
        feeds["past_value"] = rng.standard_normal((b, hkv, p, dv)).astype(dtype)
        names[4:6] = ["past_key", "past_value"]
    if cache == "nonpad":
        feeds["nonpad_kv_seqlen"] = rng.integers(0, t + 1, size=b).astype(np.int64)
        names[6] = "nonpad_kv_seqlen"
    presents = cache == "past" or draw(st.booleans())
    outputs = trim(["Y", "present_key" if presents else "", "present_value" if presents else "",
                    "qk" if mode is not None else ""])
    return dict(feeds=feeds, attrs=attrs, opset=opset, input_names=trim(names), outputs=outputs)


@FAST
@given(attention_cases())
def test_attention_property(case):
    check("Attention", case["feeds"], case["attrs"], case["opset"], case["input_names"], case["outputs"])


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_bfloat16_exact(causal):
    """bfloat16 is rounded after every step as the reference's ml_dtypes loops: equal bits."""
    rng = np.random.default_rng(3)
    feeds = {"Q": rng.random((2, 4, 3, 8)), "K": rng.random((2, 2, 6, 8)), "V": rng.random((2, 2, 6, 5)),
             "attn_mask": rng.standard_normal((2, 1, 3, 5)), "nonpad_kv_seqlen": np.array([6, 4], np.int64)}
    feeds = {k: v if v.dtype == np.int64 else v.astype(BF16) for k, v in feeds.items()}
    check("Attention", feeds, dict(is_causal=causal, softcap=1.5, qk_matmul_output_mode=3), opset=24,
          input_names=["Q", "K", "V", "attn_mask", "", "", "nonpad_kv_seqlen"], outputs=["Y", "", "", "qk"])


def test_attention_bfloat16_softmax_precision_float16():
    rng = np.random.default_rng(4)
    feeds = {n: rng.random(s).astype(BF16) for n, s in (("Q", (1, 2, 3, 4)), ("K", (1, 2, 5, 4)), ("V", (1, 2, 5, 4)))}
    check("Attention", feeds, dict(softmax_precision=TensorProto.FLOAT16, qk_matmul_output_mode=3),
          outputs=["Y", "", "", "qk"])


def test_attention_qk_mode0_is_raw_product_with_softcap():
    rng = np.random.default_rng(5)
    q, k, v = (rng.random((1, 2, 3, 4)).astype(np.float32) * 4 for _ in range(3))
    feeds = {"Q": q, "K": k, "V": v}
    model = node_model("Attention", feeds, dict(softcap=2.0, qk_matmul_output_mode=0), outputs=["Y", "", "", "qk"])
    y, qk = run_ours(model, feeds)
    s = np.float32(math.sqrt(0.5))  # sqrt(1/sqrt(4))
    np.testing.assert_allclose(qk, (q * s) @ (k * s).swapaxes(2, 3), rtol=1e-6)
    np.testing.assert_allclose(y, reference(model, feeds)[0], rtol=1e-5)  # Y is right in the reference


def test_attention_causal_with_mask_broadcast_over_queries():
    """A (1, T) mask applies to every query row. The reference builds the causal frontier
    from the mask's own shape (one row) there, so it is given the mask repeated per row."""
    rng = np.random.default_rng(13)
    feeds = {n: rng.standard_normal((1, 2, 4, 3)).astype(np.float32) for n in "QKV"}
    feeds["attn_mask"] = np.array([[False, True, True, True]])
    model = node_model("Attention", feeds, dict(is_causal=1))
    full = dict(feeds, attn_mask=np.repeat(feeds["attn_mask"], 4, axis=0))
    compare(run_ours(model, feeds), reference(node_model("Attention", full, dict(is_causal=1)), full), np.float32)


def test_attention_fully_masked_rows_are_zero():
    rng = np.random.default_rng(6)
    feeds = {n: rng.standard_normal((1, 1, 3, 4)).astype(np.float32) for n in "QKV"}
    feeds["attn_mask"] = np.array([[True, False, True], [False, False, False], [True, True, True]])
    model = node_model("Attention", feeds, dict(qk_matmul_output_mode=3), outputs=["Y", "", "", "qk"])
    y, probs = run_ours(model, feeds)
    assert not np.isnan(y).any() and (y[0, 0, 1] == 0).all() and (probs[0, 0, 1] == 0).all()
    np.testing.assert_allclose(probs.sum(-1)[0, 0], [1, 0, 1], rtol=1e-6)


def test_attention_repeated_calls_and_int_mask():
    """Buffers made once per plan are reused: a second call with other values is right too.
    An integer mask is additive, like a float one."""
    rng = np.random.default_rng(7)
    model = None
    for _ in range(2):
        feeds = {n: rng.standard_normal((2, 3, 6 if n == "Q" else 2)).astype(np.float32) for n in "QKV"}
        feeds["attn_mask"] = rng.integers(-2, 3, size=(3, 3)).astype(np.int32)
        model = model or node_model("Attention", feeds, dict(q_num_heads=3, kv_num_heads=1))
        compare(run_ours(model, feeds), reference(model, feeds), np.float32)


def test_attention_errors():
    r = np.random.default_rng(8).standard_normal
    f = np.float32
    q4, k4 = r((1, 2, 3, 4)).astype(f), r((1, 2, 5, 4)).astype(f)
    raises_invalid("Attention", {"Q": q4, "K": r((1, 3, 5, 4)).astype(f), "V": r((1, 3, 5, 4)).astype(f)},
                   match="not a multiple")
    raises_invalid("Attention", {"Q": q4, "K": r((1, 2, 5, 3)).astype(f), "V": k4}, match="head sizes")
    raises_invalid("Attention", {"Q": q4, "K": k4, "V": r((1, 2, 4, 4)).astype(f)}, match="sequence lengths")
    raises_invalid("Attention", {"Q": r((1, 3, 8)).astype(f), "K": r((1, 5, 8)).astype(f),
                                 "V": r((1, 5, 8)).astype(f)}, match="q_num_heads")
    raises_invalid("Attention", {"Q": r((1, 3, 8)).astype(f), "K": r((1, 5, 8)).astype(f),
                                 "V": r((1, 5, 8)).astype(f)}, dict(q_num_heads=3, kv_num_heads=1), match="multiple")
    raises_invalid("Attention", {"Q": q4, "K": k4, "V": k4, "attn_mask": r((3, 6)).astype(f)}, match="attn_mask")
    raises_invalid("Attention", {"Q": q4, "K": k4, "V": k4, "attn_mask": r((2, 5)).astype(f)}, match="broadcast")
    raises_invalid("Attention", {"Q": q4, "K": k4, "V": k4, "past_key": r((1, 2, 2, 4)).astype(f)},
                   input_names=["Q", "K", "V", "", "past_key"], match="together")
    raises_invalid("Attention", {"Q": q4, "K": k4, "V": k4}, dict(q_num_heads=2, kv_num_heads=2), opset=25,
                   match="4-D")
    raises_invalid("Attention", {"Q": q4, "K": k4, "V": k4}, dict(qk_matmul_output_mode=4), match="mode")
    raises_invalid("Attention", {"Q": q4.astype(np.int32), "K": k4.astype(np.int32), "V": k4.astype(np.int32)},
                   match="float")
    pk, pv, n = r((1, 2, 1, 4)).astype(f), r((1, 2, 1, 4)).astype(f), np.array([5], np.int64)
    raises_invalid("Attention", {"Q": q4, "K": k4, "V": k4, "past_key": pk, "past_value": pv, "nonpad_kv_seqlen": n},
                   opset=24, input_names=["Q", "K", "V", "", "past_key", "past_value", "nonpad_kv_seqlen"],
                   match="nonpad_kv_seqlen")


# ---------------------------------------------------------------- RotaryEmbedding

@st.composite
def rotary_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    b, s, h = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    head = draw(st.sampled_from([2, 4, 8]))
    rd = draw(st.sampled_from([0] + list(range(2, head + 1, 2))))
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float16, BF16])))
    attrs = {"interleaved": int(draw(st.booleans()))}
    if rd:
        attrs["rotary_embedding_dim"] = rd
    half = (rd or head) // 2
    if draw(st.booleans()):
        x = rng.standard_normal((b, s, h * head))
        attrs["num_heads"] = h
    else:
        x = rng.standard_normal((b, h, s, head))
    feeds = {"x": x.astype(dtype)}
    if draw(st.booleans()):
        n_pos = draw(st.integers(1, 6))
        angles = rng.random((n_pos, half)) * 6
        feeds.update(cos=np.cos(angles).astype(dtype), sin=np.sin(angles).astype(dtype),
                     pos=rng.integers(0, n_pos, size=(b, s)).astype(np.int64))
    else:
        angles = rng.random((b, s, half)) * 6
        feeds.update(cos=np.cos(angles).astype(dtype), sin=np.sin(angles).astype(dtype))
    return feeds, attrs


@FAST
@given(rotary_cases())
def test_rotary_embedding_property(case):
    feeds, attrs = case
    check("RotaryEmbedding", feeds, attrs)


def test_rotary_embedding_errors():
    r = np.random.default_rng(9).standard_normal
    x, c = r((1, 2, 3, 8)).astype(np.float32), r((5, 4)).astype(np.float32)
    model = node_model("RotaryEmbedding", {"x": x, "c": c, "s": c, "p": np.array([[0, 1, 5]], np.int64)})
    with pytest.raises(InvalidArgument, match="position_ids"):
        run_ours(model, {"x": x, "c": c, "s": c, "p": np.array([[0, 1, 5]], np.int64)})
    with pytest.raises(InvalidArgument, match="position_ids"):
        run_ours(model, {"x": x, "c": c, "s": c, "p": np.array([[0, -1, 2]], np.int64)})
    raises_invalid("RotaryEmbedding", {"x": x, "c": c, "s": c, "p": np.zeros((1, 3), np.int64)},
                   dict(rotary_embedding_dim=3), match="rotary_embedding_dim")
    raises_invalid("RotaryEmbedding", {"x": r((1, 3, 8)).astype(np.float32), "c": c, "s": c,
                                       "p": np.zeros((1, 3), np.int64)}, match="num_heads")
    raises_invalid("RotaryEmbedding", {"x": x, "c": r((5, 3)).astype(np.float32), "s": r((5, 3)).astype(np.float32),
                                       "p": np.zeros((1, 3), np.int64)}, match="last dim")


# ---------------------------------------------------------------- LinearAttention

@st.composite
def linear_attention_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    rule = draw(st.sampled_from(["linear", "gated", "delta", "gated_delta"]))
    b, t, hkv, g = draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    dk, dv = draw(st.sampled_from([1, 4])), draw(st.sampled_from([1, 3]))
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float32, np.float16])))
    attrs = dict(update_rule=rule, q_num_heads=hkv * g, kv_num_heads=hkv)
    if draw(st.booleans()):
        attrs["scale"] = 0.5
    keys = rng.standard_normal((b, t, hkv, dk))
    keys /= np.linalg.norm(keys, axis=-1, keepdims=True)
    feeds = {"q": rng.standard_normal((b, t, hkv * g * dk)).astype(dtype), "k": keys.reshape(b, t, -1).astype(dtype),
             "v": rng.standard_normal((b, t, hkv * dv)).astype(dtype)}
    names = ["q", "k", "v", "", "", ""]
    if draw(st.booleans()):
        feeds["past"] = rng.standard_normal((b, hkv, dk, dv)).astype(dtype)
        names[3] = "past"
    if rule in ("gated", "gated_delta"):
        per_key = draw(st.booleans())
        feeds["decay"] = (-rng.random((b, t, hkv * dk if per_key else hkv))).astype(dtype)
        names[4] = "decay"
    if rule in ("delta", "gated_delta"):
        feeds["beta"] = rng.random((b, t, hkv if draw(st.booleans()) else 1)).astype(dtype)
        names[5] = "beta"
    return feeds, attrs, trim(names)


@FAST
@given(linear_attention_cases())
def test_linear_attention_property(case):
    feeds, attrs, names = case
    check("LinearAttention", feeds, attrs, opset=27, input_names=names, outputs=["y", "state"], atol=1e-5)


def test_linear_attention_errors():
    r = np.random.default_rng(10).standard_normal
    q = r((1, 2, 8)).astype(np.float32)
    raises_invalid("LinearAttention", {"q": q, "k": q, "v": q}, dict(q_num_heads=2, kv_num_heads=2),
                   opset=27, outputs=["y", "s"], match="needs decay")
    raises_invalid("LinearAttention", {"q": q, "k": q, "v": q}, dict(q_num_heads=3, kv_num_heads=2,
                                                                     update_rule="linear"),
                   opset=27, outputs=["y", "s"], match="multiple")
    raises_invalid("LinearAttention", {"q": q, "k": q, "v": q}, dict(q_num_heads=2, kv_num_heads=2, update_rule="x"),
                   opset=27, outputs=["y", "s"], match="update_rule")
    raises_invalid("LinearAttention", {"q": q, "k": q, "v": q, "d": r((1, 2, 3)).astype(np.float32)},
                   dict(q_num_heads=2, kv_num_heads=2, update_rule="gated"), opset=27,
                   input_names=["q", "k", "v", "", "d"], outputs=["y", "s"], match="decay")


# ---------------------------------------------------------------- CausalConvWithState

@st.composite
def causal_conv_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    b, c, n, k = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float16])))
    feeds = {"x": rng.standard_normal((b, c, n)).astype(dtype), "w": rng.standard_normal((c, 1, k)).astype(dtype)}
    names = ["x", "w", "", ""]
    if draw(st.booleans()):
        feeds["bias"], names[2] = rng.standard_normal(c).astype(dtype), "bias"
    if draw(st.booleans()):
        feeds["past"], names[3] = rng.standard_normal((b, c, k - 1)).astype(dtype), "past"
    return feeds, {"activation": draw(st.sampled_from(["none", "silu", "swish"]))}, trim(names)


@FAST
@given(causal_conv_cases())
def test_causal_conv_with_state_property(case):
    feeds, attrs, names = case
    check("CausalConvWithState", feeds, attrs, opset=27, input_names=names, outputs=["y", "state"])


def test_causal_conv_with_state_empty_input_and_errors():
    past = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    feeds = {"x": np.zeros((1, 2, 0), np.float32), "w": np.ones((2, 1, 4), np.float32), "past": past}
    y, state = run_ours(node_model("CausalConvWithState", feeds, opset=27, input_names=["x", "w", "", "past"],
                                   outputs=["y", "state"]), feeds)
    assert y.shape == (1, 2, 0) and np.array_equal(state, past)
    feeds = {"x": np.zeros((1, 2, 4), np.float32), "w": np.ones((3, 1, 4), np.float32)}
    raises_invalid("CausalConvWithState", feeds, opset=27, outputs=["y", "s"], match="weight")
    feeds = {"x": np.zeros((1, 2, 4), np.float32), "w": np.ones((2, 1, 4), np.float32)}
    raises_invalid("CausalConvWithState", feeds, dict(activation="relu"), opset=27, outputs=["y", "s"],
                   match="activation")


# ---------------------------------------------------------------- SwiGLU

@FAST
@given(st.lists(st.sampled_from([0.0, -0.0, 1.5, -3.0, 40.0, -100.0, np.inf, -np.inf, np.nan]), min_size=6, max_size=6),
       st.sampled_from([np.float32, np.float64, np.float16]), st.sampled_from([None, 0.5, 1.702]))
def test_swiglu_property(values, dtype, alpha):
    a = np.array(values, dtype).reshape(2, 3)
    b = np.random.default_rng(len(values)).standard_normal((2, 3)).astype(dtype)
    check("SwiGLU", {"a": a, "b": b}, {} if alpha is None else {"alpha": alpha}, opset=28)


def test_swiglu_fuses_and_rejects_broadcast():
    a, b = np.ones((2, 3), np.float32), np.ones((1, 3), np.float32)
    raises_invalid("SwiGLU", {"a": a, "b": b}, opset=28, match="same shape")


# ---------------------------------------------------------------- FlexAttention

def mod_graph(kind, dtype):
    t = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    x = helper.make_tensor_value_info("x", t, None)
    y = helper.make_tensor_value_info("y", t, None)
    if kind == "bias":
        nodes = [helper.make_node("Add", ["x", "c"], ["y"])]
        inits = [helper.make_tensor("c", t, [], [0.25])]
    elif kind == "scale":
        nodes = [helper.make_node("Mul", ["x", "c"], ["y"])]
        inits = [helper.make_tensor("c", t, [], [0.5])]
    else:  # causal: Where(row >= col, x, -inf), from Trilu of ones
        nodes = [helper.make_node("Shape", ["x"], ["shp"]),
                 helper.make_node("ConstantOfShape", ["shp"], ["ones"],
                                  value=helper.make_tensor("one", TensorProto.BOOL, [1], [True])),
                 helper.make_node("Trilu", ["ones"], ["keep"], upper=0),
                 helper.make_node("Where", ["keep", "x", "ninf"], ["y"])]
        inits = [helper.make_tensor("ninf", t, [], [-np.inf])]
    return helper.make_graph(nodes, kind, [x], [y], inits)


@st.composite
def flex_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    b, hkv, g = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    sq, skv, dv = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    e = draw(st.sampled_from([2, 8]))
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64, np.float16])))
    attrs = {}
    if draw(st.booleans()):
        attrs["scale"] = 0.3
    if dtype != np.float64 and draw(st.booleans()):
        attrs["softmax_precision"] = draw(st.sampled_from([TensorProto.FLOAT, TensorProto.DOUBLE]))
    sdt = helper.tensor_dtype_to_np_dtype(attrs["softmax_precision"]) if "softmax_precision" in attrs else \
        (np.float64 if dtype == np.float64 else np.float32)
    score = draw(st.sampled_from([None, "bias", "causal"]))
    if score:
        attrs["score_mod"] = mod_graph(score, sdt)
    if draw(st.booleans()):
        attrs["prob_mod"] = mod_graph("scale", sdt)
    feeds = {"Q": rng.standard_normal((b, hkv * g, sq, e)).astype(dtype),
             "K": rng.standard_normal((b, hkv, skv, e)).astype(dtype),
             "V": rng.standard_normal((b, hkv, skv, dv)).astype(dtype)}
    return feeds, attrs


@FAST
@given(flex_cases())
def test_flex_attention_property(case):
    feeds, attrs = case
    check("FlexAttention", feeds, attrs, opset=26, domain=PREVIEW)


def test_flex_attention_modifier_reads_outer_value():
    """The modifier subgraph reads a graph input of the outer graph: the node is planned at
    run time and gets that value after its own inputs."""
    rng = np.random.default_rng(11)
    feeds = {n: rng.standard_normal((1, 2, 3, 4)).astype(np.float32) for n in "QKV"}
    feeds["bias"] = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xy")
    sub = helper.make_graph([helper.make_node("Add", ["x", "bias"], ["y"])], "outer_bias", [x], [y])
    node = helper.make_node("FlexAttention", ["Q", "K", "V"], ["out"], domain=PREVIEW, score_mod=sub)
    model = make_model(node, feeds, ["out"], opset=26, extra_opsets={PREVIEW: 1})
    got = run_ours(model, feeds)[0]
    s = np.float32(np.sqrt(np.float32(0.5)))
    scores = (feeds["Q"] * s) @ (feeds["K"] * s).swapaxes(2, 3) + feeds["bias"]
    p = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(got, (p / p.sum(-1, keepdims=True)) @ feeds["V"], rtol=1e-5, atol=1e-6)


def test_flex_attention_errors():
    r = np.random.default_rng(12).standard_normal
    q = r((1, 2, 3, 4)).astype(np.float32)
    raises_invalid("FlexAttention", {"Q": q, "K": r((1, 3, 3, 4)).astype(np.float32), "V": q}, opset=26,
                   domain=PREVIEW, match="multiple|do not fit")
    raises_invalid("FlexAttention", {"Q": q[0], "K": q[0], "V": q[0]}, opset=26, domain=PREVIEW, match="4-D")
