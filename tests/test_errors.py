"""Bad input gets ONNX Runtime's exception class, a message naming what is at fault,
and the session keeps working afterwards."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile, NotImplemented, RuntimeException,
)

from .util import make_model


def _add_model():
    g = helper.make_graph([helper.make_node("Add", ["X", "Y"], ["Z"], name="add")], "g",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3]),
                           helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])],
                          [helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["N", 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def sess():
    return ort.InferenceSession(_add_model().SerializeToString())


def _works(sess):
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(sess.run(None, {"X": x, "Y": x})[0], 2 * x)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.onnx")
    with pytest.raises(NoSuchFile, match="nope.onnx"):
        ort.InferenceSession(path)


def test_garbage_bytes(tmp_path):
    with pytest.raises(InvalidProtobuf):
        ort.InferenceSession(b"\x08\x07garbage bytes, not a protobuf \xff\xff")
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\xff" * 100)
    with pytest.raises(InvalidProtobuf, match="garbage.onnx"):
        ort.InferenceSession(str(path))
    path.write_bytes(b"")   # an empty file (nothing to map)
    with pytest.raises(InvalidProtobuf, match="garbage.onnx"):
        ort.InferenceSession(str(path))
    whole = make_model(helper.make_node("Relu", ["X"], ["Y"]), {"X": np.zeros(3, np.float32)}, ["Y"]).SerializeToString()
    path.write_bytes(whole[:-7])   # cut short
    with pytest.raises(InvalidProtobuf, match="garbage.onnx"):
        ort.InferenceSession(str(path))


def test_unknown_op_is_invalid_graph():
    m = make_model(helper.make_node("NoSuchOpAnywhere", ["X"], ["Y"], name="weird"),
                   {"X": np.zeros(2, np.float32)}, ["Y"])
    with pytest.raises(InvalidGraph, match="NoSuchOpAnywhere"):
        ort.InferenceSession(m.SerializeToString())


def _unimplemented_spec_ops():
    """Ops of the ONNX spec that ortjit has no kernel for and that are no functions."""
    import onnx
    from ortjit.ops import registry
    known = set(registry.known_ops())
    for schema in sorted(onnx.defs.get_all_schemas(), key=lambda s: (s.domain, s.name)):
        if (registry.normalize_domain(schema.domain), schema.name) not in known and schema.inputs \
                and not schema.has_function and not schema.has_context_dependent_function:
            yield schema


def test_op_without_implementation_is_not_implemented():
    """The first spec op without a kernel whose node passes onnx's checks must be refused
    with NotImplemented naming it, when the session is created."""
    for schema in _unimplemented_spec_ops():
        node = helper.make_node(schema.name, ["X"] * schema.min_input, ["Y"], name="n", domain=schema.domain)
        m = make_model(node, {"X": np.zeros((2, 2), np.float32)}, ["Y"], opset=max(schema.since_version, 17),
                       extra_opsets={schema.domain: schema.since_version} if schema.domain else None)
        try:
            ort.InferenceSession(m.SerializeToString())
        except NotImplemented as e:
            assert schema.name in str(e)
            return
        except Exception:  # noqa: BLE001 - a node these inputs do not fit: try the next op
            continue
    pytest.skip("every op of the spec that takes these inputs is implemented")


def test_wrong_input_name(sess):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(InvalidArgument, match="Invalid input name: W"):
        sess.run(None, {"X": x, "Y": x, "W": x})
    _works(sess)


def test_missing_input(sess):
    with pytest.raises(InvalidArgument, match=r"Required inputs \(\['Y'\]\) are missing"):
        sess.run(None, {"X": np.ones((2, 3), np.float32)})
    _works(sess)


def test_wrong_dtype(sess):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(InvalidArgument, match=r"Actual: \(tensor\(double\)\) , expected: \(tensor\(float\)\)"):
        sess.run(None, {"X": x.astype(np.float64), "Y": x})
    _works(sess)


def test_wrong_rank_and_dim(sess):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(InvalidArgument, match="Invalid rank for input: X Got: 3 Expected: 2"):
        sess.run(None, {"X": x[None], "Y": x})
    with pytest.raises(InvalidArgument, match="(?s)Got invalid dimensions for input: Y.*index: 1 Got: 4 Expected: 3"):
        sess.run(None, {"X": x, "Y": np.ones((2, 4), np.float32)})
    _works(sess)


def test_unknown_output_name(sess):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(InvalidArgument, match="Invalid output name: nope"):
        sess.run(["nope"], {"X": x, "Y": x})
    _works(sess)


def test_inconsistent_dims_at_run_time(sess):
    with pytest.raises(InvalidArgument, match="add"):
        sess.run(None, {"X": np.ones((2, 3), np.float32), "Y": np.ones((4, 3), np.float32)})
    _works(sess)


def test_gather_index_out_of_range_raises_and_session_survives():
    m = make_model(helper.make_node("Gather", ["D", "I"], ["Y"], name="gather", axis=0),
                   {"D": np.zeros((3, 2), np.float32), "I": np.zeros(2, np.int64)}, ["Y"])
    sess = ort.InferenceSession(m.SerializeToString())
    d = np.arange(6, dtype=np.float32).reshape(3, 2)
    for bad in ([0, 3], [-4, 0], [10**12, 0]):
        with pytest.raises(InvalidArgument, match="gather.*out of data bounds"):
            sess.run(None, {"D": d, "I": np.array(bad, np.int64)})
    np.testing.assert_array_equal(sess.run(None, {"D": d, "I": np.array([2, -1], np.int64)})[0], d[[2, -1]])


def test_impossible_reshape():
    m = make_model(helper.make_node("Reshape", ["X", "S"], ["Y"], name="reshape"),
                   {"X": np.zeros((2, 3), np.float32)}, ["Y"], initializers={"S": np.array([4], np.int64)})
    sess = ort.InferenceSession(m.SerializeToString())
    with pytest.raises(RuntimeException, match="reshape"):
        sess.run(None, {"X": np.zeros((2, 3), np.float32)})


def test_terminated_run_fails_and_session_survives(sess):
    opts = ort.RunOptions()
    opts.terminate = True
    x = np.ones((2, 3), np.float32)
    with pytest.raises(Fail, match="terminate"):
        sess.run(None, {"X": x, "Y": x}, opts)
    opts.terminate = False
    np.testing.assert_array_equal(sess.run(None, {"X": x, "Y": x}, opts)[0], 2 * x)


def test_bad_model_object():
    with pytest.raises(InvalidArgument):
        ort.InferenceSession(12345)


def test_exceptions_are_exceptions():
    for cls in (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile, NotImplemented, RuntimeException):
        assert issubclass(cls, Exception)
    assert onnx is not None
