"""The example models shipped in onnxruntime/datasets, run as onnxruntime users run them."""
import numpy as np
import onnx
import pytest

import onnxruntime as ort
from onnxruntime.datasets import get_example
from tests.test_ops_ml import assert_same, reference

# Three flowers of each iris species, rows of the iris data set (classes 0, 1, 2).
IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [4.7, 3.2, 1.3, 0.2],
                 [7.0, 3.2, 4.7, 1.4], [6.4, 3.2, 4.5, 1.5], [6.9, 3.1, 4.9, 1.5],
                 [6.3, 3.3, 6.0, 2.5], [5.8, 2.7, 5.1, 1.9], [7.1, 3.0, 5.9, 2.1]], np.float32)
IRIS_CLASSES = np.repeat([0, 1, 2], 3)


def run_both(name, feed):
    path = get_example(name)
    got = ort.InferenceSession(path).run(None, feed)
    expected = reference(onnx.load(path), feed)
    assert_same(got, expected)
    return got


def test_examples_are_listed():
    assert {"sigmoid.onnx", "mul_1.onnx", "logreg_iris.onnx"} <= set(ort.datasets.list_examples())


def test_sigmoid():
    sess = ort.InferenceSession(get_example("sigmoid.onnx"))
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [("x", "tensor(float)", [3, 4, 5])]
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    y, = run_both("sigmoid.onnx", {"x": x})
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x)), rtol=1e-6)


def test_mul_1():
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    y, = run_both("mul_1.onnx", {"X": x})
    np.testing.assert_array_equal(y, x * x)   # the constant is this very matrix


def test_logreg_iris_signature():
    sess = ort.InferenceSession(get_example("logreg_iris.onnx"))
    inp, = sess.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("float_input", "tensor(float)", [None, 4])
    assert [(o.name, o.type) for o in sess.get_outputs()] == [
        ("output_label", "tensor(int64)"), ("output_probability", "seq(map(int64,tensor(float)))")]


@pytest.mark.parametrize("rows", [slice(0, 1), slice(0, 9)])
def test_logreg_iris_matches_reference(rows):
    run_both("logreg_iris.onnx", {"float_input": IRIS[rows]})


def test_logreg_iris_predicts_iris():
    sess = ort.InferenceSession(get_example("logreg_iris.onnx"))
    labels, probs = sess.run(None, {"float_input": IRIS})
    np.testing.assert_array_equal(labels, IRIS_CLASSES)
    assert labels.dtype == np.int64
    assert isinstance(probs, list) and len(probs) == len(IRIS)
    for label, p in zip(labels, probs):
        assert sorted(p) == [0, 1, 2]
        assert abs(sum(p.values()) - 1) < 1e-5
        assert max(p, key=p.get) == label
    # the label output alone
    only, = sess.run(["output_label"], {"float_input": IRIS[:3]})
    np.testing.assert_array_equal(only, [0, 0, 0])
