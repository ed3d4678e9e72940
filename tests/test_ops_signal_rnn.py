"""Signal ops (DFT, STFT, windows, MelWeightMatrix), recurrent ops (RNN, GRU, LSTM), the
training optimizers and the random generators, against onnx.reference.ReferenceEvaluator
with hypothesis drawing shapes and attributes. Where the reference has no answer
(sequence_lens, clip, activations, random draws), the test checks a property instead and
says which."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import onnxruntime as ort
from ortjit.errors import InvalidArgument
from tests.util import assert_matches_reference as same, make_model, reference, run_ours as run

PROPS = settings(max_examples=20, deadline=None, derandomize=True)


def seeded(data):
    return np.random.default_rng(data.draw(st.integers(0, 9999), label="seed"))


# ---------------------------------------------------------------- signal

@PROPS
@given(st.sampled_from([17, 20]), st.booleans(), st.booleans(), st.booleans(), st.sampled_from([None, 2, 5, 9]),
       st.sampled_from([-3, -2, 1, 2]), st.sampled_from([np.float32, np.float64]), st.data())
def test_dft(opset, complex_in, onesided, inverse, length, axis, dtype, data):
    if opset == 17:
        axis = abs(axis) % 3 or 1  # an attribute, non-negative there
    x = seeded(data).standard_normal((2, 4, 5, 2 if complex_in else 1)).astype(dtype)
    inputs, inits = ["x", ""], {}
    if length is not None:
        inputs[1], inits["n"] = "n", np.array(length, np.int64)
    attrs = dict(onesided=int(onesided), inverse=int(inverse))
    if opset == 17:
        attrs["axis"] = axis
    else:
        inputs.append("a")
        inits["a"] = np.array(axis, np.int64)
    model = make_model(helper.make_node("DFT", inputs, ["y"], **attrs), {"x": x}, ["y"], inits, opset=opset)
    same(model, {"x": x}, rtol=1e-4, atol=1e-4)


def test_dft_rejects_the_last_axis():
    x = np.zeros((2, 4, 1), np.float32)
    model = make_model(helper.make_node("DFT", ["x", "", "a"], ["y"]), {"x": x}, ["y"], {"a": np.array(2, np.int64)},
                       opset=20)
    with pytest.raises(InvalidArgument, match="axis"):
        run(model, {"x": x})


@PROPS
@given(st.integers(1, 2), st.integers(8, 20), st.integers(1, 5), st.integers(2, 8), st.booleans(), st.booleans(),
       st.data())
def test_stft(batch, n, step, length, with_window, onesided, data):
    rng = seeded(data)
    signal = rng.standard_normal((batch, n, 1)).astype(np.float32)
    inits = {"step": np.array(step, np.int64)}
    inputs = ["signal", "step", "", ""]
    if with_window:
        inits["window"] = rng.random(length).astype(np.float32)
        inputs[2] = "window"
    else:
        inits["length"] = np.array(length, np.int64)
        inputs[3] = "length"
    model = make_model(helper.make_node("STFT", inputs, ["y"], onesided=int(onesided)), {"signal": signal}, ["y"],
                       inits, opset=17)
    same(model, {"signal": signal}, atol=1e-4)


@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("size,dtype", [(2, TensorProto.FLOAT), (8, TensorProto.FLOAT), (11, TensorProto.DOUBLE)])
def test_windows(op, periodic, size, dtype):
    model = make_model(helper.make_node(op, ["n"], ["y"], periodic=periodic, output_datatype=dtype), {}, ["y"],
                       {"n": np.array(size, np.int32)}, opset=17)
    same(model, {}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bins,length,rate,low,high", [(8, 16, 8192, 0.0, 4096.0), (4, 64, 16000, 300.0, 8000.0),
                                                       (10, 33, 22050, 0.0, 5000.0), (1, 8, 100, 10.0, 20.0)])
def test_mel_weight_matrix(bins, length, rate, low, high):
    inits = {"b": np.array(bins, np.int32), "n": np.array(length, np.int32), "r": np.array(rate, np.int32),
             "lo": np.array(low, np.float32), "hi": np.array(high, np.float32)}
    for dtype in (TensorProto.FLOAT, TensorProto.DOUBLE):
        model = make_model(helper.make_node("MelWeightMatrix", list(inits), ["y"], output_datatype=dtype), {}, ["y"],
                           inits, opset=17)
        same(model, {}, rtol=1e-6, atol=1e-7)


def test_mel_weight_matrix_rejects_edges_past_the_spectrum():
    inits = {"b": np.array(4, np.int32), "n": np.array(16, np.int32), "r": np.array(1000, np.int32),
             "lo": np.array(0.0, np.float32), "hi": np.array(3000.0, np.float32)}
    model = make_model(helper.make_node("MelWeightMatrix", list(inits), ["y"]), {}, ["y"], inits, opset=17)
    with pytest.raises(InvalidArgument, match="spectrum"):
        run(model, {})


# ---------------------------------------------------------------- recurrent

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def recurrent(op, rng, seq, batch, inputs, hidden, direction="forward", layout=0, bias=True, initial=True,
              peepholes=True, lens=None, **attrs):
    """A one-node model and its feed; optional inputs given or left out as asked."""
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    f32 = np.float32
    feed = {"x": rng.standard_normal((seq, batch, inputs) if layout == 0 else (batch, seq, inputs)).astype(f32),
            "W": rng.standard_normal((dirs, g * hidden, inputs)).astype(f32),
            "R": rng.standard_normal((dirs, g * hidden, hidden)).astype(f32)}
    names = ["x", "W", "R", "", "", "", "", ""]
    state = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    optional = {3: ("B", bias, (dirs, 2 * g * hidden)), 5: ("h0", initial, state),
                6: ("c0", initial and op == "LSTM", state), 7: ("P", peepholes and op == "LSTM", (dirs, 3 * hidden))}
    for slot, (name, wanted, shape) in optional.items():
        if wanted:
            feed[name] = rng.standard_normal(shape).astype(f32)
            names[slot] = name
    if lens is not None:
        feed["lens"] = np.asarray(lens, np.int32)
        names[4] = "lens"
    while names[-1] == "":
        names.pop()
    outputs = ["Y", "Y_h", "Y_c"][:2 if op != "LSTM" else 3]
    node = helper.make_node(op, names, outputs, hidden_size=hidden, direction=direction, layout=layout, **attrs)
    return make_model(node, feed, outputs, opset=14), feed


@PROPS
@given(st.sampled_from(list(GATES)), st.sampled_from(["forward", "reverse", "bidirectional"]), st.integers(0, 1),
       st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.booleans(), st.booleans(),
       st.booleans(), st.integers(0, 1), st.data())
def test_recurrent_matches_reference(op, direction, layout, seq, batch, inputs, hidden, bias, initial, peepholes,
                                     linear_before_reset, data):
    extra = {"linear_before_reset": linear_before_reset} if op == "GRU" else {}
    model, feed = recurrent(op, seeded(data), seq, batch, inputs, hidden, direction, layout, bias, initial,
                            peepholes, **extra)
    same(model, feed, rtol=1e-4, atol=1e-5)


@PROPS
@given(st.sampled_from(list(GATES)), st.sampled_from(["forward", "reverse", "bidirectional"]), st.integers(0, 1),
       st.integers(0, 4), st.data())
def test_sequence_lens_stop_each_sequence_at_its_length(op, direction, layout, short, data):
    """The reference ignores sequence_lens; property: a sequence of length L in a padded batch
    gives the outputs of running its first L steps alone, and zeros after them."""
    rng = seeded(data)
    seq, batch = 4, 2
    model, feed = recurrent(op, rng, seq, batch, 2, 3, direction, layout, lens=[seq, short])
    got = run(model, feed)
    y = got[0] if layout == 0 else got[0].transpose(1, 2, 0, 3)        # (seq, dirs, batch, hidden)
    states = [s if layout == 0 else s.transpose(1, 0, 2) for s in got[1:]]  # (dirs, batch, hidden)
    np.testing.assert_array_equal(y[short:, :, 1], 0)
    if short == 0:
        return
    alone = dict(feed)
    del alone["lens"]
    sl = (slice(None, short), slice(1, 2)) if layout == 0 else (slice(1, 2), slice(None, short))
    alone["x"] = feed["x"][sl]
    for name in ("h0", "c0"):
        if name in alone:
            alone[name] = feed[name][:, 1:2] if layout == 0 else feed[name][1:2]
    single = make_model(helper.make_node(op, [n if n != "lens" else "" for n in model.graph.node[0].input],
                                         list(model.graph.node[0].output), hidden_size=3, direction=direction,
                                         layout=layout), alone, list(model.graph.node[0].output), opset=14)
    want = run(single, alone)
    y_alone = want[0] if layout == 0 else want[0].transpose(1, 2, 0, 3)
    np.testing.assert_allclose(y[:short, :, 1], y_alone[:, :, 0], rtol=1e-5, atol=1e-6)
    for s, w in zip(states, want[1:]):
        w = w if layout == 0 else w.transpose(1, 0, 2)
        np.testing.assert_allclose(s[:, 1], w[:, 0], rtol=1e-5, atol=1e-6)


def _numpy_rnn(feed, activation, clip):
    """The reference ignores activations and clip: numpy's Ht = f(clip(Xt W' + Ht-1 R' + Wb + Rb))."""
    x, w, r, b = feed["x"], feed["W"][0], feed["R"][0], feed["B"][0]
    h = np.zeros((x.shape[1], r.shape[1]), np.float32)
    ys = []
    for t in range(x.shape[0]):
        h = activation(np.clip(x[t] @ w.T + h @ r.T + b[:len(b) // 2] + b[len(b) // 2:], -clip, clip))
        ys.append(h)
    return np.stack(ys)[:, None], h[None]


@pytest.mark.parametrize("name,alpha,beta,fn", [
    ("Relu", None, None, lambda v: np.maximum(v, 0)),
    ("LeakyRelu", 0.1, None, lambda v: np.where(v >= 0, v, 0.1 * v)),
    ("ScaledTanh", 2.0, 0.5, lambda v: 2.0 * np.tanh(0.5 * v)),
    ("HardSigmoid", 0.3, 0.4, lambda v: np.clip(0.3 * v + 0.4, 0, 1)),
])
def test_rnn_activations_and_clip(name, alpha, beta, fn):
    attrs = {"activations": [name], "clip": 0.7}
    if alpha is not None:
        attrs["activation_alpha"] = [alpha]
    if beta is not None:
        attrs["activation_beta"] = [beta]
    model, feed = recurrent("RNN", np.random.default_rng(4), 3, 2, 2, 3, initial=False, **attrs)
    y, h = run(model, feed)
    want_y, want_h = _numpy_rnn(feed, fn, 0.7)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, want_h, rtol=1e-5, atol=1e-6)


def test_recurrent_rejects_mismatched_inputs():
    model, feed = recurrent("LSTM", np.random.default_rng(0), 3, 2, 2, 3)
    feed["P"] = np.zeros((1, 5), np.float32)
    model, _ = recurrent("LSTM", np.random.default_rng(0), 3, 2, 2, 3)
    with pytest.raises(InvalidArgument, match="input 7"):
        run(make_model(model.graph.node[0], feed, ["Y"], opset=14), feed)
    model, feed = recurrent("GRU", np.random.default_rng(0), 3, 2, 2, 3, lens=[3, 5])
    with pytest.raises(InvalidArgument, match="sequence_lens"):
        run(model, feed)


# ---------------------------------------------------------------- training

TRAINING = {"ai.onnx.preview.training": 1}


@PROPS
@given(st.sampled_from(["Adagrad", "Momentum", "Adam"]), st.integers(1, 2), st.integers(0, 3), st.booleans(),
       st.data())
def test_optimizers(op, n_tensors, step, nesterov, data):
    rng = seeded(data)
    shapes = [tuple(rng.integers(1, 4, size=rng.integers(1, 3))) for _ in range(n_tensors)]
    states = {"Adagrad": 1, "Momentum": 1, "Adam": 2}[op]
    groups = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(2 + states)]
    if op != "Momentum":
        groups[-1] = [np.abs(a) for a in groups[-1]]  # accumulated squares are non-negative
    feed = {"r": np.array(0.1, np.float32), "t": np.array(step, np.int64)}
    names = [[f"g{k}_{j}" for j in range(n_tensors)] for k in range(2 + states)]
    for group, group_names in zip(groups, names):
        feed.update(zip(group_names, group))
    outputs = [f"out{k}_{j}" for k in [0] + list(range(2, 2 + states)) for j in range(n_tensors)]
    attrs = {"Adagrad": dict(decay_factor=0.1, epsilon=1e-6, norm_coefficient=0.01),
             "Momentum": dict(alpha=0.9, beta=0.5, norm_coefficient=0.01, mode="nesterov" if nesterov else "standard"),
             "Adam": dict(alpha=0.85, beta=0.95, epsilon=1e-5, norm_coefficient=0.02, norm_coefficient_post=0.01)}[op]
    node = helper.make_node(op, ["r", "t"] + [n for group in names for n in group], outputs,
                            domain="ai.onnx.preview.training", **attrs)
    model = make_model(node, feed, outputs, extra_opsets=TRAINING)
    got, want = run(model, feed), reference(model, feed)
    for g, w in zip(got, want):  # the reference's Adam answers float64; the spec keeps the inputs' type
        assert g.dtype == np.float32 and g.shape == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- random

def test_random_generators_shapes_types_and_moments():
    node = helper.make_node("RandomNormal", [], ["y"], shape=[100, 50], mean=2.0, scale=3.0,
                            dtype=TensorProto.DOUBLE, seed=1.0)
    y = run(make_model(node, {}, ["y"], opset=17), {})[0]
    assert y.shape == (100, 50) and y.dtype == np.float64
    assert abs(y.mean() - 2.0) < 0.2 and abs(y.std() - 3.0) < 0.2
    like = helper.make_node("RandomNormalLike", ["x"], ["y"], seed=2.0)
    x = np.zeros((40, 50), np.float16)
    y = run(make_model(like, {"x": x}, ["y"], opset=17), {"x": x})[0]
    assert y.shape == x.shape and y.dtype == np.float16 and abs(float(y.astype(np.float32).std()) - 1) < 0.1
    uniform = helper.make_node("RandomUniform", [], ["y"], shape=[4000], low=-1.0, high=0.0)
    y = run(make_model(uniform, {}, ["y"], opset=17), {})[0]
    assert y.dtype == np.float32 and y.min() >= -1 and y.max() < 0


def test_random_generators_are_never_folded():
    """A seeded generator draws afresh on every run of a session (the same sequence in a new
    session): the node must stay in the plan, not become a constant."""
    node = helper.make_node("RandomUniform", [], ["y"], shape=[8], seed=3.0)
    model = make_model(node, {}, ["y"], opset=17)
    sess = ort.InferenceSession(model.SerializeToString())
    first, second = sess.run(None, {})[0], sess.run(None, {})[0]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(run(model, {})[0], first)


@pytest.mark.parametrize("dtype", [None, TensorProto.INT32, TensorProto.DOUBLE])
def test_bernoulli(dtype):
    """Expected outputs of the Bernoulli conformance cases are unseeded draws; property: values
    in {0, 1}, ones about as often as p."""
    p = np.array([0.0, 1.0, 0.25, 0.75] * 2000, np.float32)
    attrs = {"seed": 5.0} if dtype is None else {"seed": 5.0, "dtype": dtype}
    y = run(make_model(helper.make_node("Bernoulli", ["p"], ["y"], **attrs), {"p": p}, ["y"], opset=15), {"p": p})[0]
    assert y.dtype == {None: np.float32, TensorProto.INT32: np.int32, TensorProto.DOUBLE: np.float64}[dtype]
    assert set(np.unique(y).tolist()) <= {0, 1}
    for prob in (0.0, 1.0, 0.25, 0.75):
        assert abs(y[p == prob].mean() - prob) < 0.03
    with pytest.raises(InvalidArgument, match="probabilities"):
        bad = np.array([1.5], np.float32)
        run(make_model(helper.make_node("Bernoulli", ["p"], ["y"]), {"p": bad}, ["y"], opset=15), {"p": bad})


def test_multinomial_follows_the_softmax_of_its_logits():
    probs = np.array([[0.1, 0.6, 0.3], [0.98, 0.01, 0.01]])
    logits = np.log(probs).astype(np.float32) + 4.0  # unnormalized
    node = helper.make_node("Multinomial", ["x"], ["y"], sample_size=6000, seed=9.0)
    y = run(make_model(node, {"x": logits}, ["y"], opset=15), {"x": logits})[0]
    assert y.shape == (2, 6000) and y.dtype == np.int32 and y.min() >= 0 and y.max() <= 2
    for row in range(2):
        np.testing.assert_allclose(np.bincount(y[row], minlength=3) / 6000, probs[row], atol=0.03)
