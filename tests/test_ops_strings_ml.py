"""String ops, TfIdfVectorizer and the ai.onnx.ml ops (tree ensembles, SVMs, LabelEncoder,
Scaler, OneHotEncoder, Imputer, ...) against onnx.reference.ReferenceEvaluator, with
hypothesis drawing inputs and attributes. Where onnx.reference and ONNX Runtime differ
(ortjit follows ONNX Runtime), the oracle is a small Python model of ONNX Runtime's rule,
named in the test."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import onnxruntime as ort
from ortjit.errors import InvalidArgument
from tests.util import make_model, reference

PROPS = settings(max_examples=20, deadline=None, derandomize=True)
ML = {"ai.onnx.ml": 3}


def run(model, feed):
    return ort.InferenceSession(model.SerializeToString()).run(None, feed)


def same(model, feed, rtol=1e-5, atol=1e-6):
    got, want = run(model, feed), reference(model, feed)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.dtype.kind in "OU":
            assert g.dtype == object and g.tolist() == w.tolist()
        else:
            assert g.dtype == w.dtype, (g.dtype, w.dtype)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return got


def ml_model(op, feed, outputs, opset=3, **attrs):
    node = helper.make_node(op, list(feed), outputs, domain="ai.onnx.ml", **attrs)
    return make_model(node, feed, outputs, extra_opsets={"ai.onnx.ml": opset})


def strings(arr):
    return np.array(arr, dtype=object)


# ---------------------------------------------------------------- strings

words = st.text(alphabet="abAB xy", min_size=1, max_size=5)


@PROPS
@given(st.lists(st.text(alphabet="abAB", min_size=1, max_size=4), min_size=1, max_size=6),
       st.sampled_from(["NONE", "LOWER", "UPPER"]), st.booleans(), st.booleans(),
       st.lists(st.text(alphabet="abAB", min_size=1, max_size=3), max_size=3))
def test_string_normalizer(values, action, sensitive, two_d, stop):
    x = strings([values] if two_d else values)
    attrs = dict(case_change_action=action, is_case_sensitive=int(sensitive))
    if stop:
        attrs["stopwords"] = stop
    model = make_model(helper.make_node("StringNormalizer", ["x"], ["y"], **attrs), {"x": x}, ["y"], opset=10)
    got = run(model, {"x": x})[0]
    # the reference lowers/uppers its stop words instead of comparing case-insensitively:
    # the spec's rule (stop words compared case-insensitively unless is_case_sensitive) is the oracle
    key = (lambda w: w) if sensitive else str.lower
    kept = [w for w in values if key(w) not in {key(s) for s in stop}]
    kept = [{"LOWER": w.lower(), "UPPER": w.upper()}.get(action, w) for w in kept] or [""]
    assert got.tolist() == ([kept] if two_d else kept)


@PROPS
@given(st.lists(words, min_size=1, max_size=6), st.sampled_from([None, "", " ", "a", "ab"]),
       st.sampled_from([None, 0, 1, 2]), st.booleans())
def test_string_split(values, delimiter, maxsplit, two_d):
    x = strings(values).reshape((2, -1) if two_d and len(values) % 2 == 0 else (-1,))
    attrs = {k: v for k, v in (("delimiter", delimiter), ("maxsplit", maxsplit)) if v is not None}
    model = make_model(helper.make_node("StringSplit", ["x"], ["y", "n"], **attrs), {"x": x}, ["y", "n"], opset=20)
    same(model, {"x": x})


@PROPS
@given(st.lists(words, min_size=1, max_size=4), st.lists(words, min_size=1, max_size=1))
def test_string_concat_broadcasts(left, right):
    feed = {"a": strings(left).reshape(-1, 1), "b": strings(right)}
    same(make_model(helper.make_node("StringConcat", ["a", "b"], ["y"]), feed, ["y"], opset=20), feed)


@pytest.mark.parametrize("pattern,text,expected", [
    (r"\d+", "123", True),
    (r"\d+", "١٢٣", False),          # RE2's \d is ASCII only
    (r"[[:alpha:]]+\d", "abc1", True),  # POSIX classes
    (r"a$", "a\n", False),          # RE2's $ is the end of the text
    (r"(?<y>\d{4})-\d\d", "2024-05", True),  # RE2's other named-group spelling
    (r"\Qa.b\E", "a.b", True), (r"\Qa.b\E", "axb", False),
    (r"[^]a]+", "bcd", True), (r"x\z", "x", True),
    (r"(?i)ab", "AB", True), (r"\w+@\w+\.com", "me@x.com", True),
])
def test_regex_full_match_re2_syntax(pattern, text, expected):
    x = strings([text])
    model = make_model(helper.make_node("RegexFullMatch", ["x"], ["y"], pattern=pattern), {"x": x}, ["y"], opset=20)
    got = run(model, {"x": x})[0]
    assert got.dtype == np.bool_ and got.tolist() == [expected]


@pytest.mark.parametrize("pattern", [r"(?=a)a", r"(a)\1", r"a\Z", r"(a"])
def test_regex_full_match_rejects_what_re2_rejects(pattern):
    x = strings(["a"])
    model = make_model(helper.make_node("RegexFullMatch", ["x"], ["y"], pattern=pattern), {"x": x}, ["y"], opset=20)
    with pytest.raises(InvalidArgument, match="pattern"):
        run(model, {"x": x})


@PROPS
@given(st.lists(st.sampled_from(["a", "b", "ab", "é", "A"]), min_size=1, max_size=6), st.data())
def test_equal_on_strings(left, data):
    right = data.draw(st.lists(st.sampled_from(["a", "b", "ab", "é", "A"]), min_size=len(left), max_size=len(left)))
    feed = {"a": strings(left), "b": strings(right)}
    got = run(make_model(helper.make_node("Equal", ["a", "b"], ["y"]), feed, ["y"], opset=19), feed)[0]
    np.testing.assert_array_equal(got, np.array(left) == np.array(right))


@PROPS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2), st.sampled_from(["TF", "IDF", "TFIDF"]),
       st.booleans(), st.data())
def test_tfidf_vectorizer(lo, span, skips, mode, as_strings, data):
    hi = min(lo + span - 1, 3)
    rng = np.random.default_rng(data.draw(st.integers(0, 999), label="seed"))
    pool_1, pool_2 = [1, 2, 3, 5], [1, 2, 2, 3, 5, 1]        # 1-grams, then 2-grams (pairs)
    pool_3 = [1, 2, 3]
    pool = pool_1 + pool_2 + pool_3
    n_grams = len(pool_1) + len(pool_2) // 2 + len(pool_3) // 3
    x = rng.choice([1, 2, 3, 4, 5], size=(2, 7)).astype(np.int64)
    attrs = dict(min_gram_length=lo, max_gram_length=hi, max_skip_count=skips, mode=mode,
                 ngram_counts=[0, len(pool_1), len(pool_1) + len(pool_2)],
                 ngram_indexes=list(rng.permutation(n_grams)), weights=list(rng.random(n_grams)))
    if as_strings:
        attrs["pool_strings"] = [str(v) for v in pool]
        x = x.astype(str).astype(object)
    else:
        attrs["pool_int64s"] = pool
    model = make_model(helper.make_node("TfIdfVectorizer", ["x"], ["y"], **attrs), {"x": x}, ["y"], opset=9)
    same(model, {"x": x})


# ---------------------------------------------------------------- small ai.onnx.ml ops

def test_label_encoder_every_version():
    x = strings(["a", "b", "zz"])
    # opset 1 (strings <-> their position in classes_strings) is not in onnx.reference
    got = run(ml_model("LabelEncoder", {"x": x}, ["y"], opset=1, classes_strings=["b", "a"], default_int64=7),
              {"x": x})[0]
    assert got.dtype == np.int64 and got.tolist() == [1, 0, 7]
    ints = np.array([0, 1, 5], np.int64)
    got = run(ml_model("LabelEncoder", {"x": ints}, ["y"], opset=1, classes_strings=["b", "a"], default_string="?"),
              {"x": ints})[0]
    assert got.tolist() == ["b", "a", "?"]
    same(ml_model("LabelEncoder", {"x": x}, ["y"], opset=2, keys_strings=["a", "b"], values_floats=[0.5, -1.0],
                  default_float=3.0), {"x": x})
    f = np.array([[0.5, 2.0], [7.0, 0.5]], np.float32)
    same(ml_model("LabelEncoder", {"x": f}, ["y"], opset=2, keys_floats=[0.5, 2.0], values_strings=["h", "t"]),
         {"x": f})
    keys = helper.make_tensor("k", TensorProto.INT64, [3], [1, 2, 3])
    values = helper.make_tensor("v", TensorProto.INT16, [3], [10, 20, 30])
    default = helper.make_tensor("d", TensorProto.INT16, [1], [-5])
    i = np.array([3, 1, 9], np.int64)
    same(ml_model("LabelEncoder", {"x": i}, ["y"], opset=4, keys_tensor=keys, values_tensor=values,
                  default_tensor=default), {"x": i})


@PROPS
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), st.floats(-1, 1, width=32), st.data())
def test_binarizer_and_array_feature_extractor(shape, threshold, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 999), label="seed"))
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[0] = threshold  # the boundary itself stays 0
    same(ml_model("Binarizer", {"x": x}, ["y"], threshold=float(threshold)), {"x": x})
    idx = rng.integers(0, shape[-1], size=data.draw(st.integers(1, 3), label="k")).astype(np.int64)
    same(ml_model("ArrayFeatureExtractor", {"x": x, "i": idx}, ["y"]), {"x": x, "i": idx})


def test_array_feature_extractor_rejects_out_of_range_columns():
    x, idx = np.zeros((2, 3), np.float32), np.array([0, 3], np.int64)
    with pytest.raises(InvalidArgument):
        run(ml_model("ArrayFeatureExtractor", {"x": x, "i": idx}, ["y"]), {"x": x, "i": idx})


@PROPS
@given(st.integers(1, 4), st.integers(1, 4), st.booleans(), st.sampled_from([np.float32, np.float64, np.int64]),
       st.data())
def test_scaler(rows, cols, per_feature, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 999), label="seed"))
    x = (rng.standard_normal((rows, cols)) * 10).astype(dtype)
    n = cols if per_feature else 1
    offset, scale = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    got = run(ml_model("Scaler", {"x": x}, ["y"], offset=offset.tolist(), scale=scale.tolist()), {"x": x})[0]
    # the reference keeps the input's type; the spec (and ONNX Runtime) gives float
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, (x.astype(np.float64) - offset) * scale, rtol=1e-5, atol=1e-5)


@PROPS
@given(st.integers(1, 4), st.integers(1, 4), st.booleans(), st.booleans(), st.data())
def test_imputer(rows, cols, per_feature, nan_marker, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 999), label="seed"))
    x = rng.integers(-2, 3, (rows, cols)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = np.nan
    values = rng.standard_normal(cols if per_feature else 1).astype(np.float32).tolist()
    marker = float("nan") if nan_marker else 1.0
    same(ml_model("Imputer", {"x": x}, ["y"], imputed_value_floats=values, replaced_value_float=marker), {"x": x})
    xi = np.nan_to_num(x, nan=0).astype(np.int64)
    same(ml_model("Imputer", {"x": xi}, ["y"], imputed_value_int64s=[9] * (cols if per_feature else 1),
                  replaced_value_int64=1), {"x": xi})


def test_one_hot_encoder():
    x = np.array([[1, 4], [6, 7]], np.int64)
    same(ml_model("OneHotEncoder", {"x": x}, ["y"], cats_int64s=[1, 4, 6]), {"x": x})
    s = strings(["a", "c", "b"])
    same(ml_model("OneHotEncoder", {"x": s}, ["y"], cats_strings=["a", "b"]), {"x": s})
    # ONNX Runtime looks numbers up by their integer part (the reference by exact value)
    f = np.array([1.7, 4.0, np.nan], np.float64)
    got = run(ml_model("OneHotEncoder", {"x": f}, ["y"], cats_int64s=[1, 4]), {"x": f})[0]
    np.testing.assert_array_equal(got, [[1, 0], [0, 1], [0, 0]])
    with pytest.raises(InvalidArgument, match="categories"):
        run(ml_model("OneHotEncoder", {"x": x}, ["y"], cats_int64s=[1, 4, 6], zeros=0), {"x": x})


def test_category_mapper_both_ways():
    attrs = dict(cats_strings=["a", "b"], cats_int64s=[5, 6], default_int64=-9, default_string="?")
    got = run(ml_model("CategoryMapper", {"x": strings([["a", "z"], ["b", "a"]])}, ["y"], **attrs),
              {"x": strings([["a", "z"], ["b", "a"]])})[0]
    assert got.dtype == np.int64 and got.tolist() == [[5, -9], [6, 5]]
    i = np.array([5, 7, 6], np.int64)
    got = run(ml_model("CategoryMapper", {"x": i}, ["y"], **attrs), {"x": i})[0]
    assert got.tolist() == ["a", "?", "b"]


@PROPS
@given(st.integers(1, 3), st.lists(st.tuples(st.integers(1, 4), st.integers(0, 5)), min_size=1, max_size=3),
       st.data())
def test_feature_vectorizer(rows, layout, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 999), label="seed"))
    feed = {f"x{k}": rng.standard_normal((rows, width)).astype(dt)
            for k, ((width, _), dt) in enumerate(zip(layout, [np.float32, np.int64, np.float64]))}
    got = run(ml_model("FeatureVectorizer", feed, ["y"], inputdimensions=[d for _, d in layout]), feed)[0]
    # the reference concatenates in the inputs' common type; the spec gives float
    want = reference(ml_model("FeatureVectorizer", feed, ["y"], inputdimensions=[d for _, d in layout]), feed)[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6)


def test_dict_vectorizer_gives_one_row():
    node = helper.make_node("DictVectorizer", ["x"], ["y"], domain="ai.onnx.ml", string_vocabulary=["a", "b", "c"])
    x = helper.make_value_info("x", helper.make_map_type_proto(
        TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, None)))
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    got = run(model, {"x": {"a": 1.5, "c": -2.0, "unknown": 9.0}})[0]
    # ONNX Runtime answers [1, V]; the reference a flat [V]
    assert got.dtype == np.float32 and got.tolist() == [[1.5, 0.0, -2.0]]


# ---------------------------------------------------------------- tree ensembles

MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
COMPARE = dict(zip(MODES, [np.less_equal, np.less, np.greater_equal, np.greater, np.equal, np.not_equal]))


def random_forest(rng, n_trees, n_features, n_targets, modes=("BRANCH_LEQ",), depth=3, prefix="target",
                  positive=False, missing=False, thresholds=None):
    """v1/v3 attributes of random trees (the root always a branch); every leaf writes 1 to
    n_targets targets."""
    a = defaultdict(list)
    for t in range(n_trees):
        counter = [0]

        def build(d):
            i = counter[0]
            counter[0] += 1
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(i)
            k = len(a["nodes_nodeids"]) - 1
            if d == depth or (d > 0 and rng.random() < 0.25):
                for key, v in (("nodes_modes", "LEAF"), ("nodes_featureids", 0), ("nodes_values", 0.0),
                               ("nodes_truenodeids", 0), ("nodes_falsenodeids", 0),
                               ("nodes_missing_value_tracks_true", 0)):
                    a[key].append(v)
                for target in rng.choice(n_targets, size=rng.integers(1, n_targets + 1), replace=False):
                    w = float(np.float32(rng.random() if positive else rng.standard_normal()))
                    for key, v in (("treeids", t), ("nodeids", i), ("ids", int(target)), ("weights", w)):
                        a[f"{prefix}_{key}"].append(v)
                return i
            a["nodes_modes"].append(str(rng.choice(modes)))
            a["nodes_featureids"].append(int(rng.integers(n_features)))
            a["nodes_values"].append(float(np.float32(rng.choice(thresholds) if thresholds is not None
                                                      else rng.standard_normal())))
            a["nodes_missing_value_tracks_true"].append(int(missing and rng.random() < 0.5))
            a["nodes_truenodeids"].append(0)
            a["nodes_falsenodeids"].append(0)
            a["nodes_truenodeids"][k] = build(d + 1)
            a["nodes_falsenodeids"][k] = build(d + 1)
            return i
        build(0)
    return dict(a)


def leaves_reached(a, row, prefix="target"):
    """ONNX Runtime's walk: per tree, the weights (target, weight) of the leaf a row reaches.
    A NaN goes the tracked way when the comparison itself fails."""
    index = {(t, n): i for i, (t, n) in enumerate(zip(a["nodes_treeids"], a["nodes_nodeids"]))}
    weights = defaultdict(list)
    for t, n, c, w in zip(a[f"{prefix}_treeids"], a[f"{prefix}_nodeids"], a[f"{prefix}_ids"], a[f"{prefix}_weights"]):
        weights[t, n].append((c, w))
    out = []
    for tree in dict.fromkeys(a["nodes_treeids"]):
        i = a["nodes_treeids"].index(tree)
        while a["nodes_modes"][i] != "LEAF":
            v = float(row[a["nodes_featureids"][i]])
            go = bool(COMPARE[a["nodes_modes"][i]](v, np.float32(a["nodes_values"][i]))) or \
                (a["nodes_missing_value_tracks_true"][i] == 1 and np.isnan(v))
            i = index[tree, a["nodes_truenodeids" if go else "nodes_falsenodeids"][i]]
        out.append(weights[tree, a["nodes_nodeids"][i]])
    return out


def regressor_oracle(a, x, n_targets, aggregate, base):
    rows = []
    for row in x:
        got = defaultdict(list)
        for leaf in leaves_reached(a, row):
            for target, w in leaf:
                got[target].append(w)
        fn = {"SUM": sum, "AVERAGE": lambda v: sum(v) / len(set(a["nodes_treeids"])), "MIN": min, "MAX": max}
        rows.append([fn[aggregate](got[t]) if got[t] else 0.0 for t in range(n_targets)])
    out = np.array(rows)
    return out + base if base is not None and len(base) == n_targets else out


@PROPS
@given(st.integers(1, 4), st.integers(1, 3), st.sampled_from(["SUM", "AVERAGE", "MIN", "MAX"]),
       st.booleans(), st.sampled_from([np.float32, np.float64, np.int64]), st.data())
def test_tree_ensemble_regressor(n_trees, n_targets, aggregate, with_base, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 9999), label="seed"))
    thresholds = [-1.0, 0.0, 0.5, 1.0]
    a = random_forest(rng, n_trees, 3, n_targets, modes=MODES, missing=True, thresholds=thresholds)
    x = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan], size=(5, 3))
    if dtype == np.int64:
        x = np.nan_to_num(x).astype(np.int64)
    x = x.astype(dtype)
    base = rng.standard_normal(n_targets).astype(np.float32) if with_base else None
    attrs = dict(a, n_targets=n_targets, aggregate_function=aggregate)
    if base is not None:
        attrs["base_values"] = base.tolist()
    model = ml_model("TreeEnsembleRegressor", {"x": x}, ["y"], opset=1, **attrs)
    got = run(model, {"x": x})[0]
    assert got.dtype == np.float32 and got.shape == (5, n_targets)
    np.testing.assert_allclose(got, regressor_oracle(a, x, n_targets, aggregate, base), rtol=1e-5, atol=1e-5)
    if aggregate in ("SUM", "AVERAGE") and dtype == np.float32 and not np.isnan(x).any():
        np.testing.assert_allclose(got, reference(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


@PROPS
@given(st.integers(1, 4), st.integers(3, 5), st.sampled_from(["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO"]),
       st.booleans(), st.booleans(), st.data())
def test_tree_ensemble_classifier_multiclass(n_trees, k, transform, string_labels, as_tensor, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 9999), label="seed"))
    a = random_forest(rng, n_trees, 3, k, prefix="class", positive=True)
    for c in range(k):  # every class has a weight: onnx.reference takes a single class id for binary
        a["class_treeids"].append(0), a["class_nodeids"].append(a["nodes_nodeids"][a["nodes_modes"].index("LEAF")])
        a["class_ids"].append(c), a["class_weights"].append(0.0)
    labels = dict(classlabels_strings=[f"c{i}" for i in range(k)]) if string_labels else \
        dict(classlabels_int64s=list(range(10, 10 + k)))
    base = rng.random(k).astype(np.float32)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    model = ml_model("TreeEnsembleClassifier", {"x": x}, ["label", "scores"], post_transform=transform,
                     base_values=base.tolist(), **a, **labels)
    got = same(model, {"x": x})
    if as_tensor:  # opset 3's double attributes (not in onnx.reference): the same answers
        tensors = {f"{name}_as_tensor": helper.make_tensor(name, TensorProto.DOUBLE, [len(v)], v) for name, v in
                   (("nodes_values", a.pop("nodes_values")), ("class_weights", a.pop("class_weights")),
                    ("base_values", base.tolist()))}
        model = ml_model("TreeEnsembleClassifier", {"x": x}, ["label", "scores"], post_transform=transform,
                         **a, **labels, **tensors)
        label, scores = run(model, {"x": x})
        assert label.tolist() == got[0].tolist()
        np.testing.assert_allclose(scores, got[1], rtol=1e-6, atol=1e-7)


def _binary_forest(weights, base=None, post="NONE"):
    """One stump on feature 0 (x <= 0 goes to leaf 1, else leaf 2), class id 0 only."""
    attrs = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                 nodes_values=[0.0, 0.0, 0.0], nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
                 nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0], class_treeids=[0, 0],
                 class_nodeids=[1, 2], class_ids=[0, 0], class_weights=list(weights),
                 classlabels_int64s=[3, 7], post_transform=post)
    if base is not None:
        attrs["base_values"] = base
    return attrs


def test_tree_ensemble_classifier_binary_follows_onnxruntime():
    x = np.array([[-1.0], [1.0]], np.float32)
    # all weights positive: the score s of class 1 becomes [1 - s, s]; label 7 when s > 0.5
    label, scores = run(ml_model("TreeEnsembleClassifier", {"x": x}, ["l", "s"],
                                 **_binary_forest([0.2, 0.9])), {"x": x})
    assert label.tolist() == [3, 7]
    np.testing.assert_allclose(scores, [[0.8, 0.2], [0.1, 0.9]], rtol=1e-6)
    # mixed signs and one base value (gradient boosting): [logistic(-s), logistic(s)], label when s > 0
    label, scores = run(ml_model("TreeEnsembleClassifier", {"x": x}, ["l", "s"],
                                 **_binary_forest([-1.0, 0.5], base=[0.25], post="LOGISTIC")), {"x": x})
    s = np.array([-0.75, 0.75])
    assert label.tolist() == [3, 7]
    np.testing.assert_allclose(scores, np.stack([1 / (1 + np.exp(s)), 1 / (1 + np.exp(-s))], 1), rtol=1e-6)
    # mixed signs, no transform: [-s, s]
    label, scores = run(ml_model("TreeEnsembleClassifier", {"x": x}, ["l", "s"],
                                 **_binary_forest([-1.0, 0.5])), {"x": x})
    np.testing.assert_allclose(scores, [[1.0, -1.0], [-0.5, 0.5]])


def _to_v5(a, prefix="target"):
    """v1/v3 attributes (one tree per id, nodes listed depth-first) as TreeEnsemble's."""
    index = {(t, n): i for i, (t, n) in enumerate(zip(a["nodes_treeids"], a["nodes_nodeids"]))}
    branch = [i for i, m in enumerate(a["nodes_modes"]) if m != "LEAF"]
    leaves = [i for i, m in enumerate(a["nodes_modes"]) if m == "LEAF"]
    weight_of = {(t, n): (c, w) for t, n, c, w in zip(a[f"{prefix}_treeids"], a[f"{prefix}_nodeids"],
                                                        a[f"{prefix}_ids"], a[f"{prefix}_weights"])}
    out = defaultdict(list)
    pos_branch, pos_leaf = {j: k for k, j in enumerate(branch)}, {j: k for k, j in enumerate(leaves)}
    for j in branch:
        t = a["nodes_treeids"][j]
        for side in ("true", "false"):
            child = index[t, a[f"nodes_{side}nodeids"][j]]
            is_leaf = a["nodes_modes"][child] == "LEAF"
            out[f"nodes_{side}nodeids"].append(pos_leaf[child] if is_leaf else pos_branch[child])
            out[f"nodes_{side}leafs"].append(int(is_leaf))
        out["nodes_featureids"].append(a["nodes_featureids"][j])
        out["nodes_splits"].append(a["nodes_values"][j])
        out["nodes_modes"].append(MODES.index(a["nodes_modes"][j]))
    for j in leaves:
        c, w = weight_of[a["nodes_treeids"][j], a["nodes_nodeids"][j]]
        out["leaf_targetids"].append(c)
        out["leaf_weights"].append(w)
    out["tree_roots"] = [pos_branch[a["nodes_treeids"].index(t)] for t in dict.fromkeys(a["nodes_treeids"])]
    attrs = {k: v for k, v in out.items() if k not in ("nodes_splits", "leaf_weights", "nodes_modes")}
    attrs["nodes_splits"] = helper.make_tensor("s", TensorProto.FLOAT, [len(out["nodes_splits"])], out["nodes_splits"])
    attrs["leaf_weights"] = helper.make_tensor("w", TensorProto.FLOAT, [len(out["leaf_weights"])], out["leaf_weights"])
    attrs["nodes_modes"] = helper.make_tensor("m", TensorProto.UINT8, [len(out["nodes_modes"])], out["nodes_modes"])
    return attrs


@PROPS
@given(st.integers(1, 4), st.integers(1, 3), st.sampled_from([0, 1]), st.data())
def test_tree_ensemble_v5_matches_v1_and_reference(n_trees, n_targets, aggregate, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 9999), label="seed"))
    a = random_forest(rng, n_trees, 3, 1, modes=MODES, thresholds=[-1.0, 0.0, 1.0])
    a["target_ids"] = [int(rng.integers(n_targets)) for _ in a["target_ids"]]
    x = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0], size=(5, 3)).astype(np.float32)
    model = ml_model("TreeEnsemble", {"x": x}, ["y"], opset=5, n_targets=n_targets,
                     aggregate_function=aggregate, **_to_v5(a))
    got = same(model, {"x": x})[0]
    want = regressor_oracle(a, x, n_targets, ["AVERAGE", "SUM"][aggregate], None)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_tree_ensemble_v5_members_and_one_leaf_trees():
    # tree 0: x in {1, 3} -> leaf 0 (target 0), else leaf 1 (target 1); tree 1 is leaf 2 alone
    attrs = dict(n_targets=2, tree_roots=[0, 2], nodes_featureids=[0, 0, 0],
                 nodes_modes=helper.make_tensor("m", TensorProto.UINT8, [3], [6, 0, 0]),
                 nodes_splits=helper.make_tensor("s", TensorProto.DOUBLE, [3], [0.0, 0.0, 0.0]),
                 nodes_truenodeids=[0, 0, 2], nodes_falsenodeids=[1, 0, 2], nodes_trueleafs=[1, 1, 1],
                 nodes_falseleafs=[1, 1, 1], leaf_targetids=[0, 1, 1],
                 leaf_weights=helper.make_tensor("w", TensorProto.DOUBLE, [3], [10.0, 20.0, 0.5]),
                 membership_values=helper.make_tensor("v", TensorProto.DOUBLE, [3], [1.0, 3.0, np.nan]))
    x = np.array([[1.0], [2.0], [3.0], [np.nan]])
    got = run(ml_model("TreeEnsemble", {"x": x}, ["y"], opset=5, **attrs), {"x": x})[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [[10, 0.5], [0, 20.5], [10, 0.5], [0, 20.5]])


def test_tree_ensembles_reject_bad_structure():
    x = np.zeros((2, 2), np.float32)
    cycle = dict(nodes_treeids=[0, 0], nodes_nodeids=[0, 1], nodes_featureids=[0, 0], nodes_values=[0.0, 0.0],
                 nodes_modes=["BRANCH_LEQ", "BRANCH_LEQ"], nodes_truenodeids=[1, 0], nodes_falsenodeids=[1, 0],
                 target_treeids=[0], target_nodeids=[1], target_ids=[0], target_weights=[1.0], n_targets=1)
    with pytest.raises(InvalidArgument, match="cycle"):
        run(ml_model("TreeEnsembleRegressor", {"x": x}, ["y"], **cycle), {"x": x})
    far = dict(cycle, nodes_modes=["BRANCH_LEQ", "LEAF"], nodes_featureids=[5, 0], nodes_falsenodeids=[1, 0])
    with pytest.raises(InvalidArgument, match="feature 5"):
        run(ml_model("TreeEnsembleRegressor", {"x": x}, ["y"], **far), {"x": x})
    missing = dict(far, nodes_featureids=[0, 0], nodes_truenodeids=[4, 0])
    with pytest.raises(InvalidArgument, match="no node 4"):
        run(ml_model("TreeEnsembleRegressor", {"x": x}, ["y"], **missing), {"x": x})


def _sklearn_trees(trees, leaf_weights):
    """TreeEnsembleClassifier attributes of fitted scikit-learn trees; leaf_weights(tree,
    node) gives the (class id, weight) pairs of a leaf."""
    a = defaultdict(list)
    for t, est in enumerate(trees):
        tree = est.tree_
        for i in range(tree.node_count):
            leaf = tree.children_left[i] == -1
            for key, v in (("nodes_treeids", t), ("nodes_nodeids", i),
                           ("nodes_modes", "LEAF" if leaf else "BRANCH_LEQ"),
                           ("nodes_featureids", 0 if leaf else int(tree.feature[i])),
                           ("nodes_values", 0.0 if leaf else float(tree.threshold[i])),
                           ("nodes_truenodeids", 0 if leaf else int(tree.children_left[i])),
                           ("nodes_falsenodeids", 0 if leaf else int(tree.children_right[i]))):
                a[key].append(v)
            for c, w in (leaf_weights(tree, i) if leaf else []):
                for key, val in (("treeids", t), ("nodeids", i), ("ids", c), ("weights", w)):
                    a[f"class_{key}"].append(val)
    return dict(a)


def test_tree_ensembles_agree_with_scikit_learn():
    ensemble = pytest.importorskip("sklearn.ensemble")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] ** 2 > 0.5).astype(int) + (x[:, 2] > 1)
    forest = ensemble.RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, y)
    a = _sklearn_trees(forest.estimators_, lambda tree, i: enumerate(tree.value[i][0] / tree.value[i][0].sum() / 5))
    label, proba = run(ml_model("TreeEnsembleClassifier", {"x": x}, ["l", "p"], classlabels_int64s=[0, 1, 2], **a),
                       {"x": x})
    np.testing.assert_allclose(proba, forest.predict_proba(x), atol=1e-5)
    assert (label == forest.predict(x)).mean() > 0.95  # ties between classes may break either way
    # binary gradient boosting: one score per row, the prior as base value, LOGISTIC
    boost = ensemble.GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0).fit(x, y > 0)
    a = _sklearn_trees(boost.estimators_[:, 0], lambda tree, i: [(0, float(tree.value[i][0][0]) * boost.learning_rate)])
    prior = float(boost._raw_predict_init(x[:1])[0, 0])
    label, proba = run(ml_model("TreeEnsembleClassifier", {"x": x}, ["l", "p"], classlabels_int64s=[0, 1],
                                base_values=[prior], post_transform="LOGISTIC", **a), {"x": x})
    np.testing.assert_allclose(proba, boost.predict_proba(x), atol=1e-5)
    np.testing.assert_array_equal(label, boost.predict(x))


# ---------------------------------------------------------------- SVMs

KERNELS = ["LINEAR", "POLY", "RBF", "SIGMOID"]


def svc_attrs(rng, k, kernel, n_features, proba=False, labels="ints"):
    per = rng.integers(1, 4, size=k)
    v = int(per.sum())
    coef = rng.standard_normal((k - 1) * v).astype(np.float32)
    coef[0], coef[-1] = -abs(coef[0]), abs(coef[-1])  # mixed signs: onnx.reference's binary label rule
    attrs = dict(kernel_type=kernel, kernel_params=[0.3, 0.1, 2.0], vectors_per_class=per.tolist(),  # differs else
                 support_vectors=rng.standard_normal(v * n_features).astype(np.float32).tolist(),
                 coefficients=coef.tolist(),
                 rho=rng.standard_normal(k * (k - 1) // 2).astype(np.float32).tolist())
    attrs["classlabels_ints" if labels == "ints" else "classlabels_strings"] = \
        list(range(5, 5 + k)) if labels == "ints" else [f"c{i}" for i in range(k)]
    if proba:
        pairs = k * (k - 1) // 2
        attrs.update(prob_a=(-rng.random(pairs)).tolist(), prob_b=rng.standard_normal(pairs).tolist())
    return attrs


@PROPS
@given(st.sampled_from(KERNELS), st.integers(2, 4), st.data())
def test_svm_classifier_one_vs_one(kernel, k, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 9999), label="seed"))
    x = rng.standard_normal((6, 3)).astype(np.float32)
    # onnx.reference cannot take string labels with two classes
    labels = "strings" if k > 2 and data.draw(st.booleans(), label="strings") else "ints"
    same(ml_model("SVMClassifier", {"x": x}, ["l", "s"], opset=1, **svc_attrs(rng, k, kernel, 3, labels=labels)),
         {"x": x}, rtol=1e-4, atol=1e-5)


def _coupled(pairwise):
    """libsvm's pairwise coupling solved exactly: min p'Qp subject to sum(p) = 1."""
    k = len(pairwise)
    q = -pairwise.T * pairwise
    np.fill_diagonal(q, [sum(pairwise[j, t] ** 2 for j in range(k) if j != t) for t in range(k)])
    a = np.block([[q, np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]])
    return np.linalg.solve(a, np.r_[np.zeros(k), 1.0])[:k]


@PROPS
@given(st.sampled_from(KERNELS), st.integers(2, 4), st.data())
def test_svm_classifier_probabilities(kernel, k, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 9999), label="seed"))
    x = rng.standard_normal((4, 3)).astype(np.float32)
    attrs = svc_attrs(rng, k, kernel, 3, proba=True)
    model = ml_model("SVMClassifier", {"x": x}, ["l", "s"], opset=1, **attrs)
    label, proba = run(model, {"x": x})
    raw = reference(ml_model("SVMClassifier", {"x": x}, ["l", "s"], opset=1,
                             **{n: v for n, v in attrs.items() if n not in ("prob_a", "prob_b")}), {"x": x})
    assert label.tolist() == raw[0].tolist()  # the label comes from the votes
    # onnx.reference's coupling multiplies whole rows for k > 2: the exact solution is the oracle
    pair_scores = raw[1] if k > 2 else raw[1][:, 1:]
    for row, scores in zip(proba, pair_scores):
        r, c = np.zeros((k, k)), 0
        for i in range(k):
            for j in range(i + 1, k):
                p = np.clip(1 / (1 + np.exp(scores[c] * attrs["prob_a"][c] + attrs["prob_b"][c])), 1e-7, 1 - 1e-7)
                r[i, j], r[j, i], c = p, 1 - p, c + 1
        np.testing.assert_allclose(row, _coupled(r), atol=5e-3)


def test_svm_classifier_two_classes_follow_onnxruntime():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    attrs = svc_attrs(rng, 2, "RBF", 3)
    s = reference(ml_model("SVMClassifier", {"x": x}, ["l", "s"], opset=1, **attrs), {"x": x})[1][:, 1]
    for post, want in (("NONE", np.stack([-s, s], 1)), ("LOGISTIC", np.stack([1 - s, s], 1))):
        scores = run(ml_model("SVMClassifier", {"x": x}, ["l", "s"], opset=1, post_transform=post, **attrs),
                     {"x": x})[1]
        np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
    # liblinear mode: one score per class plus rho[0]; two classes: class 1 once the larger score is > 0
    coef = rng.standard_normal((2, 3)).astype(np.float32)
    model = ml_model("SVMClassifier", {"x": x}, ["l", "s"], opset=1, coefficients=coef.ravel().tolist(), rho=[0.1],
                     classlabels_ints=[4, 8])
    label, scores = run(model, {"x": x})
    want = x @ coef.T + np.float32(0.1)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
    assert label.tolist() == np.where(want.max(1) > 0, 8, np.array([4, 8])[want.argmax(1)]).tolist()


@PROPS
@given(st.sampled_from(KERNELS), st.booleans(), st.booleans(), st.data())
def test_svm_regressor(kernel, one_class, linear, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 9999), label="seed"))
    x = rng.standard_normal((5, 3)).astype(np.float32)
    if linear:
        attrs = dict(coefficients=rng.standard_normal(3).tolist(), rho=[0.3], n_supports=0)
    else:
        attrs = dict(kernel_type=kernel, kernel_params=[0.4, 0.2, 3.0], n_supports=4, rho=[-0.2],
                     support_vectors=rng.standard_normal(12).tolist(), coefficients=rng.standard_normal(4).tolist())
    same(ml_model("SVMRegressor", {"x": x}, ["y"], opset=1, one_class=int(one_class), **attrs), {"x": x},
         rtol=1e-4, atol=1e-5)


def test_svm_classifier_agrees_with_scikit_learn():
    svm = pytest.importorskip("sklearn.svm")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    for kernel in KERNELS:
        svc = svm.SVC(kernel=kernel.lower(), gamma=0.5, coef0=0.2, degree=3, decision_function_shape="ovo").fit(x, y)
        model = ml_model("SVMClassifier", {"x": x}, ["l", "s"], opset=1, kernel_type=kernel,
                         kernel_params=[0.5, 0.2, 3.0], vectors_per_class=svc.n_support_.tolist(),
                         support_vectors=svc.support_vectors_.ravel().tolist(),
                         coefficients=svc.dual_coef_.ravel().tolist(), rho=svc.intercept_.tolist(),
                         classlabels_ints=svc.classes_.tolist())
        label, scores = run(model, {"x": x})
        np.testing.assert_allclose(scores, svc.decision_function(x), rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(label, svc.predict(x))


def test_svm_rejects_inconsistent_attributes():
    x = np.zeros((2, 3), np.float32)
    attrs = svc_attrs(np.random.default_rng(0), 3, "RBF", 3)
    attrs["rho"] = attrs["rho"][:1]
    with pytest.raises(InvalidArgument, match="do not fit"):
        run(ml_model("SVMClassifier", {"x": x}, ["l", "s"], opset=1, **attrs), {"x": x})
    with pytest.raises(InvalidArgument, match="features"):
        good = svc_attrs(np.random.default_rng(0), 3, "RBF", 4)
        run(ml_model("SVMClassifier", {"x": x}, ["l", "s"], opset=1, **good), {"x": x})
