"""Whole CNNs: the 'light' models that the onnx wheel ships for its backend test
(onnx/backend/test/data/light: the classic model zoo architectures with their weights
replaced by ConstantOfShape), run through onnxruntime.InferenceSession.

Inputs are made as onnx's backend test runner makes them (Runner.generate_dummy_data with
random=False: arange(n) / n). Each model must reproduce the shipped *_output_0.pb within the
backend test's rtol of 1e-3. The five cheapest to evaluate are also compared, on the final
output and on the logits that enter the last Softmax, with onnx.reference.ReferenceEvaluator
(a few seconds each for the others, in pure Python). The models are opset 9, where the
reference evaluator gets Softmax (coerce-to-2-D) and BatchNormalization (it blends in batch
statistics) wrong, so it runs the model converted to opset 15 by onnx.version_converter,
which rewrites those nodes with the same meaning; and its LRN sums the squares over the
wrong dim (the batch), so the evaluator is given a corrected LRN.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper, version_converter
from onnx.backend.test.runner import Runner
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

import onnxruntime as ort

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
WITH_REFERENCE = ["squeezenet", "resnet50", "bvlc_alexnet", "zfnet512", "shufflenet"]
SHIPPED_ONLY = ["densenet121", "inception_v1", "inception_v2", "vgg19"]


def load(name):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    model = onnx.load(path)
    inits = {t.name for t in model.graph.initializer}
    feed = {vi.name: Runner.generate_dummy_data(vi, seed=0, name=name, random=False)
            for vi in model.graph.input if vi.name not in inits}
    shipped = numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT, f"light_{name}_output_0.pb")))
    return model, feed, shipped


class LRN(OpRun):
    """The reference evaluator's LRN with its loop over channels, not over the batch."""
    op_domain = ""

    def _run(self, x, alpha=None, beta=None, bias=None, size=None):
        c = x.shape[1]
        before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
        square_sum = np.zeros_like(x)
        for k in range(c):
            square_sum[:, k] = (x[:, max(0, k - before):min(c, k + after + 1)] ** 2).sum(axis=1)
        return ((x / (bias + alpha / size * square_sum) ** beta).astype(x.dtype),)


def with_logits_output(model):
    """The model with the input of its last Softmax as a second graph output."""
    logits = [n for n in model.graph.node if n.op_type == "Softmax"][-1].input[0]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.output.append(onnx.ValueInfoProto(name=logits))
    return out


def run_twice(model, feed):
    sess = ort.InferenceSession(model.SerializeToString())
    first = sess.run(None, feed)
    second = sess.run(None, feed)  # the cached plan: same results
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    return first


def assert_close(got, want, rtol=1e-3):
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-7 + 1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_light_model_matches_reference(name):
    model, feed, shipped = load(name)
    model = with_logits_output(model)
    out, logits = run_twice(model, feed)
    assert_close(out, shipped)
    ref_out, ref_logits = ReferenceEvaluator(version_converter.convert_version(model, 15), new_ops=[LRN]).run(None, feed)
    assert_close(out, ref_out)
    assert_close(logits, ref_logits)


@pytest.mark.parametrize("name", SHIPPED_ONLY)
def test_light_model_matches_shipped_output(name):
    model, feed, shipped = load(name)
    (out,) = run_twice(model, feed)
    assert_close(out, shipped)
    assert np.all(np.isfinite(out))
