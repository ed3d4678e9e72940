"""ai.onnx.ml ops (LinearClassifier, LinearRegressor, Normalizer, ZipMap) against
onnx.reference, and against ONNX Runtime's own expectations where the two differ."""
import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.aionnxml._op_run_aionnxml import OpRunAiOnnxMl

import onnxruntime as ort
from tests.util import make_model

ML = {"ai.onnx.ml": 1}
rng = np.random.default_rng(0)


class ZipMap(OpRunAiOnnxMl):
    """onnx.reference has no ZipMap: this is the spec's, for the oracle."""

    def _run(self, x, classlabels_int64s=None, classlabels_strings=None):
        labels = classlabels_int64s if classlabels_int64s is not None else classlabels_strings
        return ([dict(zip(labels, row)) for row in np.asarray(x).reshape(-1, len(labels)).tolist()],)


def reference(model, feed):
    return ReferenceEvaluator(model, new_ops=[ZipMap]).run(None, feed)


def ours(model, feed):
    return ort.InferenceSession(model.SerializeToString()).run(None, feed)


def assert_same(got, expected, rtol=1e-5, atol=1e-6):
    """Tensors: same shape and values (strings compared as Python lists); maps: same keys and values."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if isinstance(e, list):
            assert isinstance(g, list) and len(g) == len(e)
            for gd, ed in zip(g, e):
                assert list(gd) == list(ed)
                assert all(type(k) is type(j) for k, j in zip(gd, ed))
                np.testing.assert_allclose(list(gd.values()), list(ed.values()), rtol=rtol, atol=atol)
            continue
        e = np.asarray(e)
        assert g.shape == e.shape, (g.shape, e.shape)
        if e.dtype.kind in "OU":
            assert g.dtype == object
            assert g.tolist() == e.tolist()
        elif e.dtype.kind == "f":
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
        else:
            assert g.dtype == e.dtype
            np.testing.assert_array_equal(g, e)


def classifier(x, n_out=2, **attrs):
    node = helper.make_node("LinearClassifier", ["x"], ["label", "scores"][:n_out], domain="ai.onnx.ml", **attrs)
    return make_model(node, {"x": x}, ["label", "scores"][:n_out], extra_opsets=ML)


# 3 classes, 4 features; with inputs in [0, 1) every score stays in (0, 1), where PROBIT is defined
COEF3 = [0.1, 0.2, 0.05, 0.15, 0.02, 0.1, 0.07, 0.05, 0.15, 0.12, 0.05, 0.02]


@pytest.mark.parametrize("post_transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"])
@pytest.mark.parametrize("labels", [{"classlabels_ints": [3, 1, 7]}, {"classlabels_strings": ["a", "b", "c"]}])
def test_linear_classifier_multiclass(post_transform, labels):
    x = rng.uniform(0, 1, size=(6, 4)).astype(np.float32)
    model = classifier(x, coefficients=COEF3, intercepts=[0.1, 0.2, 0.3], post_transform=post_transform, **labels)
    assert_same(ours(model, {"x": x}), reference(model, {"x": x}))


def test_linear_classifier_softmax_zero_keeps_zero_scores():
    x = rng.uniform(0, 1, size=(4, 2)).astype(np.float32)
    coef = [0.0, 0.0, 1.0, -1.0, 0.5, 0.5]   # class 0 always scores exactly 0
    model = classifier(x, coefficients=coef, intercepts=[0.0, 0.1, 0.2], classlabels_ints=[0, 1, 2],
                       post_transform="SOFTMAX_ZERO")
    got = ours(model, {"x": x})
    assert_same(got, reference(model, {"x": x}))
    assert np.all(got[1][:, 0] == 0)


def test_linear_classifier_without_labels_and_batch_of_one():
    x = rng.uniform(0, 1, size=(1, 4)).astype(np.float32)
    model = classifier(x, coefficients=COEF3, intercepts=[0.1, 0.2, 0.3], post_transform="SOFTMAX")
    assert_same(ours(model, {"x": x}), reference(model, {"x": x}))


def test_linear_classifier_int_and_double_inputs_give_float_scores():
    xi = rng.integers(0, 5, size=(5, 4)).astype(np.int64)
    model = classifier(xi, coefficients=COEF3, intercepts=[0.1, 0.2, 0.3], classlabels_ints=[0, 1, 2])
    assert_same(ours(model, {"x": xi}), reference(model, {"x": xi}))
    xd = rng.uniform(0, 1, size=(5, 4))
    model = classifier(xd, coefficients=COEF3, intercepts=[0.1, 0.2, 0.3], classlabels_ints=[0, 1, 2])
    label, scores = ours(model, {"x": xd})
    assert scores.dtype == np.float32   # tensor(float) per the spec, as in ONNX Runtime
    ref = reference(model, {"x": xd})
    np.testing.assert_array_equal(label, ref[0])
    np.testing.assert_allclose(scores, ref[1], rtol=1e-5)


def test_linear_classifier_1d_input_is_one_row():
    x = rng.uniform(0, 1, size=4).astype(np.float32)
    model = classifier(x, coefficients=COEF3, intercepts=[0.1, 0.2, 0.3], classlabels_ints=[0, 1, 2])
    label, scores = ours(model, {"x": x})
    expected = reference(classifier(x[None], coefficients=COEF3, intercepts=[0.1, 0.2, 0.3],
                                    classlabels_ints=[0, 1, 2]), {"x": x[None]})
    assert_same([label, scores], expected)


# Binary models (one row of coefficients): ONNX Runtime's own unit tests
# (MLOpTest.LinearClassifierBinary / LinearClassifierBinaryWithLabels) give these values.
BIN_X = np.array([[1, 0], [3, 44], [23, 11.3]], np.float32)
BIN = dict(coefficients=[0.00085401, -0.00314063], intercepts=[0.03930598])
BIN_RAW = np.array([[0.0401599929], [-0.0963197052], [0.0234590918]], np.float32)


def test_linear_classifier_binary_no_labels():
    got = ours(classifier(BIN_X, **BIN), {"x": BIN_X})
    np.testing.assert_array_equal(got[0], [1, 0, 1])
    np.testing.assert_allclose(got[1], BIN_RAW, rtol=1e-5)
    assert_same(got, reference(classifier(BIN_X, **BIN), {"x": BIN_X}))   # onnx.reference agrees here


def test_linear_classifier_binary_with_labels_follows_onnxruntime():
    got = ours(classifier(BIN_X, classlabels_strings=["not_so_good", "pretty_good"], **BIN), {"x": BIN_X})
    assert got[0].tolist() == ["pretty_good", "not_so_good", "pretty_good"]
    np.testing.assert_allclose(got[1], np.hstack([1 - BIN_RAW, BIN_RAW]), rtol=1e-5)
    got = ours(classifier(BIN_X, classlabels_ints=[5, 9], post_transform="LOGISTIC", **BIN), {"x": BIN_X})
    np.testing.assert_array_equal(got[0], [9, 5, 9])
    np.testing.assert_allclose(got[1], np.hstack([1 - BIN_RAW, BIN_RAW]), rtol=1e-5)


@pytest.mark.parametrize("targets", [1, 2])
def test_linear_regressor(targets):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    node = helper.make_node("LinearRegressor", ["x"], ["y"], domain="ai.onnx.ml", targets=targets,
                            coefficients=rng.standard_normal(3 * targets).tolist(),
                            intercepts=rng.standard_normal(targets).tolist())
    model = make_model(node, {"x": x}, ["y"], extra_opsets=ML)
    assert_same(ours(model, {"x": x}), reference(model, {"x": x}))


def normalizer(x, norm):
    node = helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm=norm)
    return make_model(node, {"x": x}, ["y"], extra_opsets=ML)


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
def test_normalizer(norm):
    x = rng.uniform(0.1, 2, size=(4, 5)).astype(np.float32)
    x[1] = 0   # a row of zeros stays zero
    if norm != "MAX":   # onnx.reference's MAX uses magnitudes: compare on positive data only
        x[2] *= -1
    assert_same(ours(normalizer(x, norm), {"x": x}), reference(normalizer(x, norm), {"x": x}))


def test_normalizer_int_and_1d_inputs():
    # onnx.reference cannot take int64 here (it writes sqrt into an int array)
    x = rng.integers(-5, 5, size=(3, 4)).astype(np.int64)
    got, = ours(normalizer(x, "L2"), {"x": x})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x / np.sqrt((x.astype(np.float64) ** 2).sum(axis=1, keepdims=True)), rtol=1e-6)
    v = rng.uniform(0.1, 1, size=5).astype(np.float32)
    got, = ours(normalizer(v, "L1"), {"x": v})
    np.testing.assert_allclose(got, v / v.sum(), rtol=1e-6)


def test_normalizer_max_divides_by_the_largest_value():
    # ONNX Runtime (and the spec's formula): the row's max, not its largest magnitude
    x = np.array([[-4.0, 1.0, 2.0], [-1.0, -2.0, -4.0]], np.float32)
    got, = ours(normalizer(x, "MAX"), {"x": x})
    np.testing.assert_allclose(got, x / np.array([[2.0], [-1.0]], np.float32))


@pytest.mark.parametrize("labels", [{"classlabels_int64s": [10, 20, 30]}, {"classlabels_strings": ["x", "y", "z"]}])
def test_zipmap(labels):
    x = rng.uniform(0, 1, size=(4, 3)).astype(np.float32)
    node = helper.make_node("ZipMap", ["x"], ["y"], domain="ai.onnx.ml", **labels)
    model = make_model(node, {"x": x}, ["y"], extra_opsets=ML)
    got = ours(model, {"x": x})
    assert_same(got, reference(model, {"x": x}))
    assert all(type(v) is float for d in got[0] for v in d.values())


def test_classifier_pipeline():
    """LinearClassifier -> Normalizer -> ZipMap, as skl2onnx writes a logistic regression."""
    x = rng.uniform(0, 1, size=(5, 4)).astype(np.float32)
    nodes = [helper.make_node("LinearClassifier", ["x"], ["label", "raw"], domain="ai.onnx.ml",
                              coefficients=COEF3, intercepts=[0.1, 0.2, 0.3], classlabels_ints=[0, 1, 2],
                              post_transform="LOGISTIC"),
             helper.make_node("Normalizer", ["raw"], ["p"], domain="ai.onnx.ml", norm="L1"),
             helper.make_node("ZipMap", ["p"], ["probs"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2])]
    model = make_model(nodes, {"x": x}, ["label", "probs"], extra_opsets=ML)
    assert_same(ours(model, {"x": x}), reference(model, {"x": x}))
