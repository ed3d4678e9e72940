"""Shape, data-movement and constant ops, each checked against onnx.reference."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import onnxruntime as ort
from ortjit.errors import InvalidArgument, RuntimeException
from tests.util import assert_matches_reference, make_model

rng = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-50, 50, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def check(op_type, inputs: dict, consts: dict | None = None, opset=17, n_out=1, **attrs):
    """One node fed `inputs` at run time, with `consts` as initializers; compare all outputs."""
    consts = {k: v for k, v in (consts or {}).items() if k}  # "" marks an omitted optional input
    order = attrs.pop("order", None) or list(inputs) + list(consts)
    outs = [f"y{k}" for k in range(n_out)]
    node = helper.make_node(op_type, order, outs, name=f"{op_type.lower()}_node", **attrs)
    model = make_model(node, inputs, outs, initializers=consts, opset=opset)
    return assert_matches_reference(model, inputs)


def session(model):
    return ort.InferenceSession(model.SerializeToString())


# ---------------------------------------------------------------- shape.py

@pytest.mark.parametrize("opset,attrs", [(13, {}), (15, {"start": 1}), (15, {"start": -2, "end": -1}),
                                         (15, {"end": 10})])
def test_shape(opset, attrs):
    check("Shape", {"x": rand(2, 3, 4)}, opset=opset, **attrs)


def test_size():
    check("Size", {"x": rand(2, 3, 4)})
    check("Size", {"x": rand(0, 3)})


@pytest.mark.parametrize("shape_in,target", [((2, 3, 4), [4, -1]), ((2, 3, 4), [0, 12]), ((2, 3, 4), [-1]),
                                             ((2, 3, 4), [0, 0, -1]), ((2, 0, 4), [0, -1]), ((6,), [2, 3, 1])])
def test_reshape(shape_in, target):
    check("Reshape", {"x": rand(*shape_in)}, {"s": np.array(target, np.int64)})


def test_reshape_allowzero():
    check("Reshape", {"x": rand(0, 3)}, {"s": np.array([3, 0], np.int64)}, opset=14, allowzero=1)


def test_reshape_impossible_raises_runtime_exception():
    model = make_model(helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape"),
                       {"x": rand(2, 3)}, ["y"], initializers={"s": np.array([4], np.int64)})
    sess = session(model)
    with pytest.raises(RuntimeException) as e:
        sess.run(None, {"x": rand(2, 3)})
    msg = str(e.value)
    assert "bad_reshape" in msg
    assert "The input tensor cannot be reshaped to the requested shape. Input shape:{2,3}, requested shape:{4}" in msg


def test_reshape_output_is_not_a_view_of_the_input():
    x = rand(2, 3)
    model = make_model(helper.make_node("Reshape", ["x", "s"], ["y"]), {"x": x}, ["y"],
                       initializers={"s": np.array([3, 2], np.int64)})
    y = session(model).run(None, {"x": x})[0]
    y[...] = 0
    assert np.abs(x).sum() > 0


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_flatten(axis):
    check("Flatten", {"x": rand(2, 3, 4)}, axis=axis)


def test_squeeze_unsqueeze_opset_variants():
    x = rand(1, 3, 1, 4)
    check("Squeeze", {"x": x}, opset=11, axes=[0, -2])
    check("Squeeze", {"x": x}, {"a": np.array([2], np.int64)}, opset=13)
    check("Squeeze", {"x": x}, opset=13)  # no axes: every dim of 1
    y = rand(3, 4)
    check("Unsqueeze", {"x": y}, opset=11, axes=[0, 3])
    check("Unsqueeze", {"x": y}, {"a": np.array([-1, 1], np.int64)}, opset=13)
    check("Unsqueeze", {"x": rand(0, 2)}, {"a": np.array([0], np.int64)}, opset=13)


def test_squeeze_of_a_dim_that_is_not_1_fails():
    model = make_model(helper.make_node("Squeeze", ["x", "a"], ["y"]), {"x": rand(2, 3)}, ["y"],
                       initializers={"a": np.array([0], np.int64)}, opset=13)
    with pytest.raises(InvalidArgument):
        session(model).run(None, {"x": rand(2, 3)})


def test_identity_and_dropout():
    x = rand(3, 4)
    check("Identity", {"x": x})
    check("Dropout", {"x": x}, opset=13)
    check("Dropout", {"x": x}, opset=13, n_out=2)
    check("Dropout", {"x": x}, {"r": np.array(0.3, np.float32)}, opset=13, n_out=2)
    check("Dropout", {"x": x}, opset=7, n_out=1, ratio=0.2)


def test_dropout_in_training_mode():
    x = np.ones((50, 40), np.float32)
    model = make_model(helper.make_node("Dropout", ["x", "r", "t"], ["y", "m"], seed=3), {"x": x}, ["y", "m"],
                       initializers={"r": np.array(0.5, np.float32), "t": np.array(True)}, opset=13)
    y, mask = session(model).run(None, {"x": x})
    assert mask.dtype == np.bool_ and 0.3 < mask.mean() < 0.7
    np.testing.assert_array_equal(y, np.where(mask, 2.0, 0.0))


@pytest.mark.parametrize("shape_in,target", [((3, 1), [2, 1, 4]), ((1,), [2, 3]), ((2, 3), [1, 1]),
                                             ((4, 1), [0, 1, 5])])
def test_expand(shape_in, target):
    check("Expand", {"x": rand(*shape_in)}, {"s": np.array(target, np.int64)})


# ---------------------------------------------------------------- tensor.py

@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1], [1, 2, 0]])
def test_transpose(perm):
    attrs = {} if perm is None else {"perm": perm}
    check("Transpose", {"x": rand(2, 3, 4)}, **attrs)
    check("Transpose", {"x": rand(2, 0, 4, dtype=np.int64)}, **attrs)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for k, s in enumerate(shapes):
        s[axis] = k  # 0, 1 and 2 along the axis: one input is empty
    check("Concat", {f"x{k}": rand(*s) for k, s in enumerate(shapes)}, axis=axis)


def test_concat_of_int_and_opset_4():
    check("Concat", {"a": rand(2, dtype=np.int64), "b": rand(3, dtype=np.int64)}, opset=4, axis=0)


def test_split_variants():
    x = rand(6, 4)
    check("Split", {"x": x}, opset=11, n_out=3)
    check("Split", {"x": x}, opset=11, n_out=2, axis=-1, split=[1, 3])
    check("Split", {"x": x}, {"s": np.array([2, 0, 4], np.int64)}, opset=13, n_out=3)
    check("Split", {"x": x}, opset=13, n_out=2, axis=1)
    check("Split", {"x": rand(7, 2)}, opset=18, n_out=3, num_outputs=3)
    check("Split", {"x": rand(4, 2)}, opset=18, n_out=2, num_outputs=2)


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1], [3], [0], [1]),
    ([0, 1], [-1, 1000], [1, 2], [2, 1]),
    ([-1], [-1000], [1], [-1]),
    ([10], [0], [2], [-2]),
    ([2, -100], [1, 100], [0, -1], [1, 3]),        # empty along axis 0
    ([-2**63], [2**63 - 1], [0], [1]),              # extreme bounds clamp
    ([2**63 - 1], [-2**63], [2], [-1]),
    ([0], [2], [1], None),
])
def test_slice(starts, ends, axes, steps):
    consts = {"s": np.array(starts, np.int64), "e": np.array(ends, np.int64), "a": np.array(axes, np.int64)}
    if steps is not None:
        consts["t"] = np.array(steps, np.int64)
    check("Slice", {"x": rand(3, 4, 5)}, consts)


def test_slice_follows_the_spec_where_numpy_differs():
    # negative step, start below -dim: the spec (and ONNX Runtime) clamp it to 0, numpy gives nothing;
    # an end of INT_MAX with a negative step runs to the beginning
    x = np.arange(5, dtype=np.float32)
    for start, end, expected in ([-10], [-10], x[:1]), ([-1], [2**63 - 1], x[::-1]), ([3], [2**31 - 1], x[3::-1]):
        model = make_model(helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"]), {"x": x}, ["y"],
                           initializers={"s": np.array(start), "e": np.array(end), "a": np.array([0]),
                                         "t": np.array([-1])})
        np.testing.assert_array_equal(session(model).run(None, {"x": x})[0], expected)


def test_slice_int32_bounds_and_default_axes():
    check("Slice", {"x": rand(3, 4)}, {"s": np.array([1, 0], np.int32), "e": np.array([3, -1], np.int32)})


def test_slice_opset_1_attributes():
    check("Slice", {"x": rand(3, 4, 5)}, opset=9, starts=[1, -3], ends=[100, -1], axes=[0, 2])
    check("Slice", {"x": rand(3, 4)}, opset=9, starts=[0, 1], ends=[2, 3])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather(axis):
    x = rand(3, 4, 5)
    dim = x.shape[axis]
    idx = np.array([[0, dim - 1], [-1, -dim]], np.int64)
    check("Gather", {"x": x, "i": idx}, axis=axis)
    check("Gather", {"x": x}, {"i": np.array(-1, np.int32)}, axis=axis)      # scalar index
    check("Gather", {"x": x, "i": np.zeros((0, 2), np.int64)}, axis=axis)    # no index at all


def test_gather_constant_indices():
    check("Gather", {"x": rand(5, 3)}, {"i": np.array([4, -5, 0], np.int64)})


def test_gather_out_of_range_raises_and_session_survives():
    x = rand(3, 4)
    model = make_model(helper.make_node("Gather", ["x", "i"], ["y"], name="my_gather", axis=0),
                       {"x": x, "i": np.array([0, 0], np.int64)}, ["y"])
    sess = session(model)
    for bad in ([0, 3], [-4, 0], [1, 1 << 40]):
        with pytest.raises(InvalidArgument) as e:
            sess.run(None, {"x": x, "i": np.array(bad, np.int64)})
        assert "my_gather" in str(e.value)
    y = sess.run(None, {"x": x, "i": np.array([2, -3], np.int64)})[0]
    np.testing.assert_array_equal(y, x[[2, 0]])


def test_gather_constant_out_of_range_raises():
    model = make_model(helper.make_node("Gather", ["x", "i"], ["y"], name="g"), {"x": rand(3, 4)}, ["y"],
                       initializers={"i": np.array([5], np.int64)})
    with pytest.raises(InvalidArgument):
        session(model).run(None, {"x": rand(3, 4)})


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements(axis):
    x = rand(3, 4)
    dim = x.shape[axis]
    idx = rng.integers(-dim, dim, size=(3, 4)).astype(np.int64)
    check("GatherElements", {"x": x, "i": idx}, axis=axis)


def test_gather_elements_out_of_range_raises():
    model = make_model(helper.make_node("GatherElements", ["x", "i"], ["y"], name="ge", axis=1),
                       {"x": rand(2, 2), "i": np.zeros((2, 2), np.int64)}, ["y"])
    with pytest.raises(InvalidArgument):
        session(model).run(None, {"x": rand(2, 2), "i": np.array([[0, 2], [1, 0]], np.int64)})


@pytest.mark.parametrize("shape_in,reps", [((2, 3), [2, 3]), ((2, 3), [1, 1]), ((3,), [0]), ((2, 1, 3), [1, 4, 2])])
def test_tile(shape_in, reps):
    check("Tile", {"x": rand(*shape_in)}, {"r": np.array(reps, np.int64)})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads", [[1, 2, 2, 1], [0, 0, 0, 0], [2, 0, 0, 3]])
def test_pad(mode, pads):
    consts = {"p": np.array(pads, np.int64)}
    if mode == "constant":
        consts["v"] = np.array(1.5, np.float32)
    check("Pad", {"x": rand(3, 4)}, consts, mode=mode)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_negative_crops(mode):
    # onnx.reference (np.pad) cannot take negative pads; ONNX Runtime crops first, then pads
    x = rand(4, 5)
    model = make_model(helper.make_node("Pad", ["x", "p"], ["y"], mode=mode), {"x": x}, ["y"],
                       initializers={"p": np.array([-1, 2, 1, -2], np.int64)})
    y = session(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, np.pad(x[1:, :3], [(0, 1), (2, 0)], mode=mode))


def test_pad_variants():
    check("Pad", {"x": rand(3, 4)}, opset=2, pads=[1, 0, 0, 2], value=-2.0)
    check("Pad", {"x": rand(3, 4)}, opset=2, pads=[1, 1, 1, 1], mode="reflect")
    check("Pad", {"x": rand(3, 4, dtype=np.int64)}, {"p": np.array([1, 1, 1, 1], np.int64)}, opset=11)
    # opset 18: only the listed axes are padded; constant_value left out
    check("Pad", {"x": rand(2, 3, 4)}, {"p": np.array([1, 2], np.int64), "": None, "a": np.array([-1], np.int64)},
          opset=18, order=["x", "p", "", "a"])


def test_pad_with_a_runtime_constant_value():
    check("Pad", {"x": rand(2, 3), "v": np.array(7.0, np.float32)}, {"p": np.array([1, 1, 1, 1], np.int64)},
          order=["x", "p", "v"])


@pytest.mark.parametrize("start,limit,delta,dtype", [(0, 10, 3, np.int64), (10, 0, -3, np.int32),
                                                     (1.0, 2.0, 0.25, np.float32), (5, 5, 1, np.int64),
                                                     (0.5, -1.5, -0.5, np.float64)])
def test_range(start, limit, delta, dtype):
    check("Range", {}, {"a": np.array(start, dtype), "b": np.array(limit, dtype), "c": np.array(delta, dtype)})


def test_range_of_a_shape():
    # Range fed by Shape -> Gather: values known at plan time, then used at run time
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"]),
             helper.make_node("Range", ["zero", "n", "one"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "rf"], ["y"])]
    x = rand(4)
    model = make_model(nodes, {"x": x}, ["y"], initializers={"zero": np.array(0, np.int64),
                                                               "one": np.array(1, np.int64)})
    assert_matches_reference(model, {"x": x})


# ---------------------------------------------------------------- constant.py

@pytest.mark.parametrize("attrs", [
    {"value": numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3))},
    {"value_float": 2.5}, {"value_floats": [1.0, 2.0]}, {"value_int": 7}, {"value_ints": [1, -2, 3]},
    {"value": helper.make_tensor("t", TensorProto.STRING, [2], [b"p", b"q"])},
])
def test_constant(attrs):
    model = make_model(helper.make_node("Constant", [], ["y"], **attrs), {}, ["y"])
    assert_matches_reference(model, {})


@pytest.mark.parametrize("attrs", [{"value_string": "hello"}, {"value_strings": ["a", "bc"]}])
def test_constant_strings(attrs):
    # onnxruntime hands strings back as object arrays (onnx.reference: numpy '<U' arrays)
    model = make_model(helper.make_node("Constant", [], ["y"], **attrs), {}, ["y"])
    got, = session(model).run(None, {})
    expected = np.asarray(ReferenceEvaluator(model).run(None, {})[0])
    assert got.dtype == object and got.shape == expected.shape
    assert got.tolist() == expected.tolist()


def test_constant_feeding_an_op():
    nodes = [helper.make_node("Constant", [], ["c"], value_floats=[1.0, 2.0, 3.0]),
             helper.make_node("Mul", ["x", "c"], ["y"])]
    model = make_model(nodes, {"x": rand(2, 3)}, ["y"])
    assert_matches_reference(model, {"x": rand(2, 3)})


@pytest.mark.parametrize("value", [None, numpy_helper.from_array(np.array([3], np.int64)),
                                   numpy_helper.from_array(np.array([1.5], np.float64))])
def test_constant_of_shape(value):
    attrs = {} if value is None else {"value": value}
    check("ConstantOfShape", {}, {"s": np.array([2, 3], np.int64)}, **attrs)
    check("ConstantOfShape", {}, {"s": np.array([0], np.int64)}, **attrs)


def test_constant_of_shape_of_a_runtime_shape():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(np.array([2.0], np.float32))),
             helper.make_node("Mul", ["x", "c"], ["y"])]
    model = make_model(nodes, {"x": rand(2, 3)}, ["y"])
    assert_matches_reference(model, {"x": rand(2, 3)})


# ---------------------------------------------------------------- folding at plan time

def test_shape_subgraph_is_folded_at_plan_time():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape: only the Reshape runs."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="the_reshape")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "axes"),
         numpy_helper.from_array(np.array([-1], np.int64), "minus1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = session(model)
    for n in (2, 5):
        x = rand(n, 3, 4)
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x.reshape(n, 12))
    for plan in sess._sess.plans.values():
        assert [s.op_type for s in plan.steps] in (["Reshape"], [])


# ---------------------------------------------------------------- properties

SETTINGS = settings(max_examples=15, deadline=None)
shapes = st.lists(st.integers(0, 4), min_size=1, max_size=4)


@SETTINGS
@given(shape=shapes, data=st.data())
def test_transpose_property(shape, data):
    perm = data.draw(st.permutations(range(len(shape))))
    check("Transpose", {"x": rand(*shape)}, perm=list(perm))


@SETTINGS
@given(shape=shapes, data=st.data())
def test_slice_property(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    step = data.draw(st.integers(-3, 3).filter(bool))
    # a start below -dim with a negative step is where numpy (the oracle) departs from the spec
    lowest = -shape[axis] if step < 0 else -6
    start, end = data.draw(st.integers(lowest, 6)), data.draw(st.integers(-6, 6))
    check("Slice", {"x": rand(*shape)}, {"s": np.array([start], np.int64), "e": np.array([end], np.int64),
                                         "a": np.array([axis], np.int64), "t": np.array([step], np.int64)})


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), idx_shape=st.lists(st.integers(0, 3), min_size=1, max_size=2),
       data=st.data())
def test_gather_property(shape, idx_shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    dim = shape[axis]
    idx = np.array(data.draw(st.lists(st.integers(-dim, dim - 1), min_size=int(np.prod(idx_shape)),
                                      max_size=int(np.prod(idx_shape)))), np.int64).reshape(idx_shape)
    check("Gather", {"x": rand(*shape), "i": idx}, axis=axis)


@SETTINGS
@given(shape=shapes, sizes=st.lists(st.integers(0, 3), min_size=1, max_size=3), data=st.data())
def test_concat_property(shape, sizes, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    inputs = {}
    for k, n in enumerate(sizes):
        s = list(shape)
        s[axis] = n
        inputs[f"x{k}"] = rand(*s)
    check("Concat", inputs, axis=axis)
