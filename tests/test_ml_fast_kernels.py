"""The Numba kernels of the scikit-learn ops against plain numpy forms of the same rules:
the branch-free tree walk against the node-by-node walk (_walk, still used for set
membership), the finishing kernels and post transforms against the numpy formulas, the
linear classifier and the normalizer against numpy."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ortjit.errors import InvalidArgument
from ortjit.ops import ml_linear, ml_normalizer, ml_trees
from ortjit.ops.base import Info, NodeContext
from tests.test_ops_strings_ml import ml_model, random_forest, same

PROPS = settings(max_examples=40, deadline=None, derandomize=True)
MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
EDGES = [-np.inf, -1.0, -0.0, 0.0, 1e-45, 0.5, 1.0, np.inf]


def _ctx(attrs, x, op="TreeEnsembleRegressor"):
    return NodeContext(op, "n", 3, attrs, [Info(x.shape, x.dtype)], 1)


def _old_walk(forest, x, n_targets, aggregate):
    rows = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float64)
    scores, has = np.zeros((len(x), n_targets)), np.zeros((len(x), n_targets), bool)
    assert ml_trees._walk(rows, forest.roots, forest.mode, forest.feature, forest.threshold, forest.true_next,
                          forest.false_next, forest.missing_true, forest.set_start, forest.set_values,
                          forest.leaf_start, forest.leaf_target, forest.leaf_weight, aggregate, scores, has)
    return scores, has


@PROPS
@given(st.integers(1, 20), st.integers(1, 3), st.integers(1, 7), st.sampled_from([0, 1, 2, 3]),
       st.sampled_from([np.float32, np.float64, np.int64, np.float16]), st.booleans(), st.data())
def test_branch_free_walk_matches_node_walk(n_trees, n_targets, depth, aggregate, dtype, leq_only, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 99999), label="seed"))
    modes = ["BRANCH_LEQ", "BRANCH_LT"] if leq_only else MODES
    a = random_forest(rng, n_trees, 4, n_targets, modes=modes, depth=depth, missing=not leq_only,
                      thresholds=EDGES + [np.nan])
    x = rng.choice(EDGES + [2.0, np.nan], size=(9, 4))
    if dtype == np.int64:
        x = np.nan_to_num(x, posinf=7, neginf=-7)
    x = x.astype(dtype)
    ctx = _ctx(a, x)
    forest, _ = ml_trees._forest_v3(ctx, "target", n_targets)
    walk = ml_trees._walk_of(ctx, forest)
    assert walk.leq or not leq_only
    got = ml_trees.Trees(ctx, forest, n_targets, aggregate).scores(x)
    want = _old_walk(forest, x.astype(np.float32) if dtype == np.float16 else x, n_targets, aggregate)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])   # same trees, same order: the same sums


@pytest.mark.parametrize("root_mode", ["BRANCH_GT", "BRANCH_LT"])
def test_branch_free_walk_deep_shared_and_single_row(root_mode):
    # a chain 60 deep (tree 0), a tree whose branches share one subtree (tree 1), and
    # 18 one-leaf trees: two blocks of 10 trees, of depths 60 and 0
    n_chain = 60
    tree, node, feat, val, mode, true, false = [], [], [], [], [], [], []
    for i in range(n_chain):
        tree.append(0), node.append(i), feat.append(i % 3), val.append(float(i % 5) - 2)
        mode.append("BRANCH_LT"), true.append(i + 1), false.append(n_chain)
    for i in (n_chain, n_chain + 1):
        tree.append(0), node.append(i), feat.append(0), val.append(0.0), mode.append("LEAF"), true.append(0)
        false.append(0)
    tree += [1, 1, 1, 1]
    node += [0, 1, 2, 3]
    feat += [0, 1, 0, 0]
    val += [0.0, 0.5, 0.0, 0.0]
    mode += [root_mode, "BRANCH_LEQ", "LEAF", "LEAF"]
    true += [1, 2, 0, 0]
    false += [1, 3, 0, 0]   # both branches of the root lead to node 1
    for t in range(2, 20):
        tree.append(t), node.append(0), feat.append(0), val.append(0.0), mode.append("LEAF"), true.append(0)
        false.append(0)
    leaves = [(t, n) for t, n, m in zip(tree, node, mode) if m == "LEAF"]
    a = dict(nodes_treeids=tree, nodes_nodeids=node, nodes_featureids=feat, nodes_values=val, nodes_modes=mode,
             nodes_truenodeids=true, nodes_falsenodeids=false, target_treeids=[t for t, _ in leaves],
             target_nodeids=[n for _, n in leaves], target_ids=[k % 2 for k in range(len(leaves))],
             target_weights=[float(k + 1) for k in range(len(leaves))])
    rng = np.random.default_rng(3)
    for rows in (1, 7):
        x = rng.choice([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0], size=(rows, 3)).astype(np.float32)
        ctx = _ctx(a, x)
        forest, _ = ml_trees._forest_v3(ctx, "target", 2)
        walk = ml_trees._walk_of(ctx, forest)
        assert walk.blocks[:, 0].tolist() == [n_chain, 0] and walk.leq == (root_mode == "BRANCH_LT")
        got = ml_trees.Trees(ctx, forest, 2, 1).scores(x)
        want = _old_walk(forest, x, 2, 1)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_cycle_fails_when_the_plan_is_built():
    x = np.zeros((1, 1), np.float32)
    a = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
             nodes_values=[0.0, 0.0, 0.0], nodes_modes=["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"],
             nodes_truenodeids=[2, 0, 0], nodes_falsenodeids=[1, 2, 0], target_treeids=[0], target_nodeids=[2],
             target_ids=[0], target_weights=[1.0])
    ctx = _ctx(a, x)
    forest, _ = ml_trees._forest_v3(ctx, "target", 1)
    with pytest.raises(InvalidArgument, match="cycle"):   # 0 -> 1 -> 0, whatever the rows take
        ml_trees._walk_of(ctx, forest)


def _old_regression(scores, has, aggregate, n_trees, base, transform):
    scores = np.where(has, scores, 0.0)
    if aggregate == "AVERAGE":
        scores /= n_trees
    if base is not None and len(base) == scores.shape[1]:
        scores += base
    scores = scores.astype(np.float32)
    if scores.shape[1] > 1 or transform == "PROBIT":
        scores = ml_linear.TRANSFORMS[transform](scores)
    return scores


@pytest.mark.parametrize("transform", list(ml_linear.TRANSFORM_CODES))
@pytest.mark.parametrize("n_targets", [1, 3])
@pytest.mark.parametrize("aggregate", ["SUM", "AVERAGE"])
def test_finish_regression_matches_numpy(transform, n_targets, aggregate):
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((6, n_targets)) * 3
    scores[0] = 0.0
    has = rng.random((6, n_targets)) < 0.8
    base = rng.standard_normal(n_targets)
    trees = SimpleNamespace(n=6, n_targets=n_targets, walk=None, scores=lambda x: (scores.copy(), has.copy()))
    y = np.empty((6, n_targets), np.float32)
    ml_trees._regression(trees, aggregate, 4, base, transform, np.float32)(None, y)
    want = _old_regression(scores, has, aggregate, 4, base, transform)
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-7)
    y64 = np.empty((6, n_targets))
    ml_trees._regression(trees, aggregate, 4, None, transform, np.float64)(None, y64)
    np.testing.assert_allclose(y64, _old_regression(scores, has, aggregate, 4, None, transform), rtol=2e-6,
                               atol=1e-7)


@pytest.mark.parametrize("transform", list(ml_linear.TRANSFORM_CODES))
def test_post_rows_matches_numpy_transforms(transform):
    rng = np.random.default_rng(2)
    z = (rng.standard_normal((50, 4)) * 4).astype(np.float32)
    z[3] = 0
    z[4, :2] = 0
    z[5] = [90, -90, 1e-8, 0]
    if transform == "PROBIT":
        z = rng.random((50, 4)).astype(np.float32)
    want = ml_linear.TRANSFORMS[transform](z.copy())
    ml_linear.post_rows(z, ml_linear.TRANSFORM_CODES[transform])
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, want, rtol=2e-6, atol=1e-7)


def test_finish_classes_matches_numpy_argmax():
    rng = np.random.default_rng(4)
    scores = rng.integers(-2, 3, size=(40, 4)).astype(np.float64)   # ties: the first wins
    has = rng.random((40, 4)) < 0.7
    has[0] = False
    scores[1, 2] = np.nan
    ids = np.array([10, 20, 30, 40])
    for base in (np.zeros(0), rng.standard_normal(4)):
        label, z = np.empty(40, np.int64), np.empty((40, 4), np.float32)
        ml_trees._finish_classes(scores, has, base, 0, ids, label, z)
        s, h = (scores + base, np.ones_like(has)) if len(base) else (scores, has)
        np.testing.assert_array_equal(label, ids[np.argmax(np.where(h, s, -np.inf), axis=1)])
        np.testing.assert_array_equal(z, s.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_linear_classify_matches_numpy(dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((300, 23)) * 3).astype(dtype)
    coef = rng.standard_normal((4, 23)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    ids = np.array([3, 1, 4, 1], np.int64)
    label, z = np.empty(300, np.int64), np.empty((300, 4), np.float32)
    ml_linear._classify(x, coef, b, ml_linear.TRANSFORM_CODES["SOFTMAX"], ids, label, z)
    raw = x.astype(np.float32) @ coef.T + b
    np.testing.assert_allclose(z, ml_linear._softmax(raw), rtol=1e-5, atol=1e-6)
    close = np.sort(raw, axis=1)[:, -1] - np.sort(raw, axis=1)[:, -2] > 1e-4   # away from near ties
    np.testing.assert_array_equal(label[close], ids[np.argmax(raw, axis=1)][close])


@pytest.mark.parametrize("kind", ["MAX", "L1", "L2"])
def test_normalize_matches_numpy(kind):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((20, 5)).astype(np.float32)
    x[0] = 0
    x[1, 3] = np.nan
    x[2, 0] = np.nan
    out = np.empty_like(x)
    ml_normalizer._normalize(x, ml_normalizer.KINDS[kind], out)
    norm = {"MAX": lambda v: v.max(axis=1, keepdims=True), "L1": lambda v: np.abs(v).sum(axis=1, keepdims=True),
            "L2": lambda v: np.sqrt(np.square(v).sum(axis=1, keepdims=True))}[kind](x)
    np.testing.assert_allclose(out, x / np.where(norm == 0, np.float32(1), norm), rtol=1e-6)


@pytest.mark.parametrize("rows", [1, 37, 300])   # 300: runs of rows on Numba's threads (THREADED_ROWS)
@pytest.mark.parametrize("transform", ["NONE", "SOFTMAX", "LOGISTIC"])
def test_many_tree_classifier_and_regressor_against_reference(rows, transform):
    rng = np.random.default_rng(7)
    a = random_forest(rng, 29, 6, 4, depth=6, prefix="class", positive=True)
    for c in range(4):   # every class has a weight somewhere (see test_ops_strings_ml)
        a["class_treeids"].append(0), a["class_nodeids"].append(a["nodes_nodeids"][a["nodes_modes"].index("LEAF")])
        a["class_ids"].append(c), a["class_weights"].append(0.0)
    x = rng.standard_normal((rows, 6)).astype(np.float32)
    same(ml_model("TreeEnsembleClassifier", {"x": x}, ["label", "scores"], post_transform=transform,
                  classlabels_strings=["a", "b", "c", "d"], base_values=[0.1, 0.2, 0.3, 0.4], **a), {"x": x})
    r = random_forest(rng, 21, 6, 2, depth=5, modes=["BRANCH_LEQ", "BRANCH_LT"])
    same(ml_model("TreeEnsembleRegressor", {"x": x}, ["y"], n_targets=2, aggregate_function="AVERAGE",
                  base_values=[1.0, -1.0], **r), {"x": x})


def test_threaded_walk_gives_the_serial_walks_scores():
    rng = np.random.default_rng(3)
    attrs = random_forest(rng, 40, 5, 3, depth=7, modes=["BRANCH_LEQ", "BRANCH_GT"])
    x = rng.standard_normal((1000, 5)).astype(np.float32)
    ctx = _ctx({**attrs, "n_targets": 3}, x)
    trees = ml_trees.Trees(ctx, ml_trees._forest_v3(ctx, "target", 3)[0], 3, 1)
    scores, has = trees.scores(x)
    serial_scores, serial_has = np.zeros_like(scores), np.zeros_like(has)
    ml_trees._walk_blocks(x, *trees.walk.args(), 1, serial_scores, serial_has)
    from ortjit.ops import blas
    assert trees.runs > 1 or not blas.threaded()
    np.testing.assert_array_equal(scores, serial_scores)
    np.testing.assert_array_equal(has, serial_has)


def test_long_forest_keeps_its_types_and_names_a_bad_mode():
    """Over 1024 nodes: shape inference gets the classifier without its trees (frontend's
    _without_big_weights) and the modes stay protobuf's bytes (frontend.EncodedStrings);
    the label type still comes out as strings, and an unknown mode is named in full."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument as OrtInvalidArgument
    from tests.test_ops_strings_ml import ml_model
    rng = np.random.default_rng(5)
    a = random_forest(rng, 40, 5, 3, depth=6, prefix="class", positive=True, modes=MODES)
    assert len(a["nodes_modes"]) > 1024
    for c in range(3):   # every class has a weight somewhere
        a["class_treeids"].append(0), a["class_nodeids"].append(a["nodes_nodeids"][a["nodes_modes"].index("LEAF")])
        a["class_ids"].append(c), a["class_weights"].append(0.0)
    x = rng.standard_normal((5, 5)).astype(np.float32)
    model = ml_model("TreeEnsembleClassifier", {"x": x}, ["label", "scores"], classlabels_strings=["a", "b", "c"], **a)
    model.graph.output[0].ClearField("type")   # left to inference
    session = ort.InferenceSession(model.SerializeToString())
    assert session.get_outputs()[0].type == "tensor(string)"
    from ortjit import frontend
    node = next(iter(frontend.to_ir(model).graph))
    assert isinstance(node.attributes["nodes_modes"].value, frontend.EncodedStrings)
    assert list(node.attributes["nodes_modes"].value) == a["nodes_modes"]
    same(model, {"x": x})
    bad = a["nodes_modes"].index("BRANCH_LEQ") if "BRANCH_LEQ" in a["nodes_modes"] else 0
    a["nodes_modes"][bad] = "BRANCH_LESS_OR_EQUAL_TO"   # longer than any mode's name
    model = ml_model("TreeEnsembleClassifier", {"x": x}, ["label", "scores"], classlabels_strings=["a", "b", "c"], **a)
    with pytest.raises(OrtInvalidArgument, match="unknown node mode.*BRANCH_LESS_OR_EQUAL_TO"):
        ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
