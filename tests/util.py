"""Helpers shared by the tests: build one-node models, run them through the facade and
compare with onnx.reference.ReferenceEvaluator (the oracle)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator


def make_model(nodes, inputs: dict, outputs: list, initializers: dict | None = None, opset: int = 17,
               extra_opsets: dict | None = None, output_types: dict | None = None) -> onnx.ModelProto:
    """inputs: name -> numpy array (its dtype and shape declare the graph input);
    outputs: names (types left to shape inference unless given in output_types)."""
    if isinstance(nodes, onnx.NodeProto):
        nodes = [nodes]
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs.items()]
    outs = []
    for n in outputs:
        if output_types and n in output_types:
            outs.append(helper.make_tensor_value_info(n, output_types[n], None))
        else:
            outs.append(onnx.ValueInfoProto(name=n))
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in (initializers or {}).items()]
    graph = helper.make_graph(nodes, "test", ins, outs, inits)
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def reference(model: onnx.ModelProto, feed: dict) -> list:
    return ReferenceEvaluator(model).run(None, feed)


def run_ours(model: onnx.ModelProto, feed: dict, **session_kwargs) -> list:
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), **session_kwargs)
    return sess.run(None, feed)


def assert_matches_reference(model, feed, rtol=1e-5, atol=1e-6):
    expected = reference(model, feed)
    got = run_ours(model, feed)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        e = np.asarray(e)
        assert g.shape == e.shape, (g.shape, e.shape)
        assert g.dtype == e.dtype, (g.dtype, e.dtype)
        if e.dtype.kind in "fc":
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(g, e)
    return got


# Python source for a test's subprocess: `compiles` lists the kernels Numba compiles from
# here on (its compile events; a kernel loaded from a cache is not one).
COUNT_COMPILES = r"""
from numba.core import event
compiles = []
class _Count(event.Listener):
    def on_start(self, e): compiles.append(e.data["dispatcher"].py_func.__qualname__)
    def on_end(self, e): pass
event.register("numba:compile", _Count())
"""
