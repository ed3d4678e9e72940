"""ai.onnx.ml tree ensembles: TreeEnsembleRegressor and TreeEnsembleClassifier (opsets 1
and 3, trees addressed by (tree id, node id)) and TreeEnsemble (opset 5, trees addressed
by position, leaves in their own arrays).

Every form is compiled once per plan into one flat forest (node arrays, with the leaves'
weights in a CSR table) that one Numba loop walks for every row and tree. Comparisons
and sums run in float64: exact for float32 thresholds and inputs.

Results follow ONNX Runtime where onnx.reference differs: targets no leaf wrote are 0
(also for MIN / MAX), base values are added only when there is one per target, a single
target only takes PROBIT, a missing value (NaN) goes the tracked way whatever the mode,
and classifiers with two classes score and label as ONNX Runtime does (see _binary).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .base import Info, Op
from .ml_linear import TRANSFORMS, _batch, _probit
from .registry import register

ML = "ai.onnx.ml"
LEAF, MEMBER = -1, 6
MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5,
         "LEAF": LEAF}
AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")             # TreeEnsemble's integer codes, in order
TRANSFORMS_V5 = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")
F32 = np.dtype(np.float32)


@dataclass
class Forest:
    roots: np.ndarray         # node index of each tree's root
    mode: np.ndarray          # int8: 0..5 comparisons, 6 set membership, -1 leaf
    feature: np.ndarray
    threshold: np.ndarray     # float64
    true_next: np.ndarray
    false_next: np.ndarray
    missing_true: np.ndarray  # bool: a NaN feature goes the true way
    set_start: np.ndarray     # membership values of node i: set_values[set_start[i]:set_start[i+1]]
    set_values: np.ndarray
    leaf_start: np.ndarray    # weights of node i: leaf_*[leaf_start[i]:leaf_start[i+1]]
    leaf_target: np.ndarray
    leaf_weight: np.ndarray


@numba.njit(cache=True, nogil=True)
def _walk(x, roots, mode, feature, threshold, true_next, false_next, missing_true, set_start, set_values,
          leaf_start, leaf_target, leaf_weight, aggregate, scores, has):
    """Adds every tree's leaf weights into scores (aggregate: 0/1 sum, 2 min, 3 max) and marks
    the targets written in `has`. Returns False when a walk takes more steps than there are
    nodes: the attributes describe a cycle."""
    n_nodes = mode.shape[0]
    for t in range(roots.shape[0]):  # tree by tree: one tree's nodes stay in cache over the rows
        for r in range(x.shape[0]):
            node = roots[t]
            steps = 0
            while mode[node] >= 0:
                v = x[r, feature[node]]
                m = mode[node]
                th = threshold[node]
                if m == 0:
                    go = v <= th
                elif m == 1:
                    go = v < th
                elif m == 2:
                    go = v >= th
                elif m == 3:
                    go = v > th
                elif m == 4:
                    go = v == th
                elif m == 5:
                    go = v != th
                else:
                    go = False
                    for k in range(set_start[node], set_start[node + 1]):
                        if v == set_values[k]:
                            go = True
                            break
                if not go and missing_true[node] and np.isnan(v):
                    go = True
                node = true_next[node] if go else false_next[node]
                steps += 1
                if steps > n_nodes:
                    return False
            for k in range(leaf_start[node], leaf_start[node + 1]):
                j = leaf_target[k]
                w = leaf_weight[k]
                if aggregate <= 1 or not has[r, j]:
                    scores[r, j] = scores[r, j] + w if aggregate <= 1 else w
                elif aggregate == 2:
                    scores[r, j] = min(scores[r, j], w)
                else:
                    scores[r, j] = max(scores[r, j], w)
                has[r, j] = True
    return True


def _floats(ctx, name, required=False):
    """A float attribute list or its `_as_tensor` twin (opset 3), as float64; None if neither."""
    v = ctx.attr(f"{name}_as_tensor")
    if v is None:
        v = ctx.attr(name)
    if v is None and required:
        raise ctx.fail(f"attribute {name} is required")
    return None if v is None else np.asarray(v, np.float64).reshape(-1)


def _ints(ctx, name, required=True):
    v = ctx.attr(name)
    if v is None:
        if required:
            raise ctx.fail(f"attribute {name} is required")
        return None
    return np.asarray(v, np.int64).reshape(-1)


def _same_length(ctx, **arrays):
    sizes = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(sizes.values())) > 1:
        raise ctx.fail("attributes " + ", ".join(f"{k} ({n})" for k, n in sizes.items()) + " differ in length")


def _missing(ctx, n):
    """nodes_missing_value_tracks_true as booleans (all False when not given)."""
    v = _ints(ctx, "nodes_missing_value_tracks_true", required=False)
    if v is None or v.size == 0:
        return np.zeros(n, bool)
    if v.size != n:
        raise ctx.fail(f"nodes_missing_value_tracks_true has {v.size} values for {n} nodes")
    return v == 1


def _leaves(ctx, n_nodes, node_of_weight, targets, weights, n_targets):
    """The CSR table of leaf weights, grouped by node in their given order."""
    if targets.size and (targets.min() < 0 or targets.max() >= n_targets):
        raise ctx.fail(f"a target / class id is outside [0, {n_targets})")
    order = np.argsort(node_of_weight, kind="stable")
    start = np.zeros(n_nodes + 1, np.int64)
    np.cumsum(np.bincount(node_of_weight, minlength=n_nodes), out=start[1:])
    return start, targets[order], weights[order]


def _node_index(ctx, tree_ids, node_ids):
    """fn(trees, nodes, what) -> the positions of the nodes named (tree id, node id)."""
    if node_ids.min() < 0:
        raise ctx.fail("nodes_nodeids must not be negative")
    lo, stride = tree_ids.min(), max(int(node_ids.max()) + 1, 1)
    keys = (tree_ids - lo) * stride + node_ids
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    twice = np.flatnonzero(ordered[1:] == ordered[:-1])
    if twice.size:
        i = order[twice[0]]
        raise ctx.fail(f"node {node_ids[i]} of tree {tree_ids[i]} is given twice")

    def lookup(trees, nodes, what):
        wanted = (trees - lo) * stride + nodes
        pos = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
        missing = (ordered[pos] != wanted) | (nodes < 0) | (nodes >= stride) | (trees < lo)
        if missing.any():
            k = np.flatnonzero(missing)[0]
            raise ctx.fail(f"tree {trees[k]} has no node {nodes[k]} ({what})")
        return order[pos]
    return lookup


def _forest_v3(ctx, prefix: str, n_targets: int) -> tuple[Forest, int]:
    """Opsets 1 and 3: nodes named by (tree id, node id); prefix 'target' or 'class'."""
    tree_ids, node_ids = _ints(ctx, "nodes_treeids"), _ints(ctx, "nodes_nodeids")
    features = _ints(ctx, "nodes_featureids")
    true_ids, false_ids = _ints(ctx, "nodes_truenodeids"), _ints(ctx, "nodes_falsenodeids")
    values = _floats(ctx, "nodes_values", required=True)
    names = [m.decode() if isinstance(m, bytes) else m for m in ctx.attr("nodes_modes") or []]
    _same_length(ctx, nodes_treeids=tree_ids, nodes_nodeids=node_ids, nodes_featureids=features,
                 nodes_truenodeids=true_ids, nodes_falsenodeids=false_ids, nodes_values=values, nodes_modes=names)
    n = len(tree_ids)
    if n == 0:
        raise ctx.fail("the ensemble has no nodes")
    unknown = sorted(set(names) - set(MODES))
    if unknown:
        raise ctx.fail(f"unknown node mode(s) {unknown}")
    mode = np.array([MODES[m] for m in names], np.int8)
    lookup = _node_index(ctx, tree_ids, node_ids)
    true_next, false_next = np.zeros(n, np.int64), np.zeros(n, np.int64)
    branch = mode != LEAF
    true_next[branch] = lookup(tree_ids[branch], true_ids[branch], "a true branch")
    false_next[branch] = lookup(tree_ids[branch], false_ids[branch], "a false branch")
    _, first = np.unique(tree_ids, return_index=True)
    roots = np.sort(first).astype(np.int64)  # a tree's root is its first node

    w_trees, w_nodes = _ints(ctx, f"{prefix}_treeids"), _ints(ctx, f"{prefix}_nodeids")
    w_targets, weights = _ints(ctx, f"{prefix}_ids"), _floats(ctx, f"{prefix}_weights", required=True)
    _same_length(ctx, **{f"{prefix}_treeids": w_trees, f"{prefix}_nodeids": w_nodes, f"{prefix}_ids": w_targets,
                         f"{prefix}_weights": weights})
    at = lookup(w_trees, w_nodes, "a weight")
    if n_targets == 1:
        # one target: ONNX Runtime counts a leaf without weights as weight 0 (it matters for MIN / MAX)
        bare = np.setdiff1d(np.flatnonzero(mode == LEAF), at)
        at, w_targets = np.concatenate([at, bare]), np.concatenate([w_targets, np.zeros(bare.size, np.int64)])
        weights = np.concatenate([weights, np.zeros(bare.size)])
    forest = Forest(roots, mode, features, values, true_next, false_next, _missing(ctx, n), np.zeros(n + 1, np.int64),
                    np.zeros(0), *_leaves(ctx, n, at, w_targets, weights, n_targets))
    return forest, len(roots)


def _forest_v5(ctx, n_targets: int) -> Forest:
    """Opset 5: nodes and leaves by position; a node's branch is a leaf when its *_leafs flag is set."""
    features = _ints(ctx, "nodes_featureids")
    true_ids, false_ids = _ints(ctx, "nodes_truenodeids"), _ints(ctx, "nodes_falsenodeids")
    true_leaf, false_leaf = _ints(ctx, "nodes_trueleafs") != 0, _ints(ctx, "nodes_falseleafs") != 0
    splits = _floats(ctx, "nodes_splits", required=True)
    mode = _ints(ctx, "nodes_modes")
    _same_length(ctx, nodes_featureids=features, nodes_truenodeids=true_ids, nodes_falsenodeids=false_ids,
                 nodes_trueleafs=true_leaf, nodes_falseleafs=false_leaf, nodes_splits=splits, nodes_modes=mode)
    targets, weights = _ints(ctx, "leaf_targetids"), _floats(ctx, "leaf_weights", required=True)
    _same_length(ctx, leaf_targetids=targets, leaf_weights=weights)
    roots = _ints(ctx, "tree_roots")
    n, n_leaves = len(features), len(targets)
    if n == 0 or roots.size == 0:
        raise ctx.fail("the ensemble has no nodes or no tree_roots")
    if mode.min() < 0 or mode.max() > MEMBER:
        raise ctx.fail("nodes_modes must be within [0, 6]")
    for ids, leaf, what in ((true_ids, true_leaf, "nodes_truenodeids"), (false_ids, false_leaf, "nodes_falsenodeids")):
        bound = np.where(leaf, n_leaves, n)
        if np.any((ids < 0) | (ids >= bound)):
            raise ctx.fail(f"{what} points past the nodes or leaves")
    if np.any((roots < 0) | (roots >= n)):
        raise ctx.fail("tree_roots points past the nodes")
    # a root whose two branches are the same leaf is a one-leaf tree: that leaf is the
    # root's own position in the leaf arrays (ONNX Runtime and onnx.reference agree)
    single = true_leaf[roots] & false_leaf[roots] & (true_ids[roots] == false_ids[roots])
    if np.any(single & (roots >= n_leaves)):
        raise ctx.fail("a one-leaf tree's root points past the leaves")
    roots = np.where(single, n + roots, roots)

    # membership sets: the values of each MEMBER node, in node order, ended by NaN
    members = _floats(ctx, "membership_values")
    members = np.zeros(0) if members is None else members
    ends = np.flatnonzero(np.isnan(members))
    member_nodes = np.flatnonzero(mode == MEMBER)
    if len(ends) < len(member_nodes):
        raise ctx.fail("membership_values must hold one NaN-ended set per BRANCH_MEMBER node")
    set_start = np.zeros(n + n_leaves + 1, np.int64)
    values, begin = [], 0
    for node, end in zip(member_nodes.tolist(), ends.tolist()):
        values.append(members[begin:end])
        set_start[node + 1] = end - begin
        begin = end + 1
    set_start = np.cumsum(set_start)

    total = n + n_leaves
    full_mode = np.concatenate([mode.astype(np.int8), np.full(n_leaves, LEAF, np.int8)])
    pad = np.zeros(n_leaves, np.int64)
    return Forest(roots.astype(np.int64), full_mode, np.concatenate([features, pad]),
                  np.concatenate([splits, np.zeros(n_leaves)]),
                  np.concatenate([np.where(true_leaf, n + true_ids, true_ids), pad]),
                  np.concatenate([np.where(false_leaf, n + false_ids, false_ids), pad]),
                  np.concatenate([_missing(ctx, n), np.zeros(n_leaves, bool)]), set_start,
                  np.concatenate(values) if values else np.zeros(0),
                  *_leaves(ctx, total, n + np.arange(n_leaves), targets, weights, n_targets))


def _rows(ctx) -> tuple[int, int]:
    """(rows, features) of a numeric input: a 1-D input is one row, as in ONNX Runtime."""
    if np.dtype(ctx.inputs[0].dtype).kind not in "fiu":
        raise ctx.fail(f"the input must be numeric, got {ctx.inputs[0].dtype}")
    return _batch(ctx)


def _scorer(ctx, forest: Forest, n_targets: int, aggregate: int):
    """fn(x) -> (scores, has) float64 / bool arrays (rows, targets) for one plan's input shape."""
    n, f = _rows(ctx)
    used = forest.feature[forest.mode != LEAF]
    bad = used[(used < 0) | (used >= f)]
    if bad.size:
        raise ctx.fail(f"a node reads feature {int(bad[0])}, outside the input's {f} features")
    arrays = (forest.roots, forest.mode, forest.feature, forest.threshold, forest.true_next, forest.false_next,
              forest.missing_true, forest.set_start, forest.set_values, forest.leaf_start, forest.leaf_target,
              forest.leaf_weight)

    def score(x):
        rows = np.ascontiguousarray(x.reshape(n, f), dtype=np.float64)
        scores, has = np.zeros((n, n_targets)), np.zeros((n, n_targets), bool)
        if not _walk(rows, *arrays, aggregate, scores, has):
            raise ctx.fail("the trees' branches form a cycle")
        return scores, has
    return score


def _regression(scores, has, aggregate: str, n_trees: int, base, transform: str):
    scores = np.where(has, scores, 0.0)
    if aggregate == "AVERAGE":
        scores /= n_trees
    if base is not None and len(base) == scores.shape[1]:
        scores += base
    scores = scores.astype(np.float32)
    if scores.shape[1] > 1 or transform == "PROBIT":
        scores = TRANSFORMS[transform](scores)
    return scores


def _transform_name(ctx, name):
    if name not in TRANSFORMS:
        raise ctx.fail(f"unknown post_transform {name!r}")
    return name


def _n_targets(ctx, default):
    n = int(ctx.attr("n_targets", default))
    if n <= 0:
        raise ctx.fail("n_targets must be positive")
    return n


@register("TreeEnsembleRegressor", domain=ML)
class TreeEnsembleRegressor(Op):
    def setup(self, ctx):
        n_targets = _n_targets(ctx, 1)
        aggregate = ctx.attr("aggregate_function", "SUM")
        if aggregate not in AGGREGATES:
            raise ctx.fail(f"unknown aggregate_function {aggregate!r}")
        forest, n_trees = _forest_v3(ctx, "target", n_targets)
        return forest, n_trees, n_targets, aggregate

    def infer(self, ctx):
        n, _ = _rows(ctx)
        return [Info((n, _n_targets(ctx, 1)), F32)]

    def kernel(self, ctx):
        forest, n_trees, n_targets, aggregate = self.setup(ctx)
        transform = _transform_name(ctx, ctx.attr("post_transform", "NONE"))
        base = _floats(ctx, "base_values")
        score = _scorer(ctx, forest, n_targets, AGGREGATES.index(aggregate))

        def tree_ensemble_regressor(x, y):
            y[...] = _regression(*score(x), aggregate, n_trees, base, transform)
        return tree_ensemble_regressor


@register("TreeEnsemble", domain=ML, since=5)
class TreeEnsemble(Op):
    """Outputs in the input's float type (float, double, float16)."""

    def infer(self, ctx):
        n, _ = _rows(ctx)
        x = ctx.inputs[0]
        if np.dtype(x.dtype).kind != "f":
            raise ctx.fail(f"the input must be float, double or float16, got {x.dtype}")
        return [Info((n, _n_targets(ctx, 0)), x.dtype)]

    def kernel(self, ctx):
        n_targets = _n_targets(ctx, 0)
        aggregate, transform = int(ctx.attr("aggregate_function", 1)), int(ctx.attr("post_transform", 0))
        if not 0 <= aggregate < len(AGGREGATES) or not 0 <= transform < len(TRANSFORMS_V5):
            raise ctx.fail(f"aggregate_function {aggregate} or post_transform {transform} is not defined")
        forest = _forest_v5(ctx, n_targets)
        score = _scorer(ctx, forest, n_targets, aggregate)
        n_trees = len(forest.roots)

        def tree_ensemble(x, y):
            y[...] = _regression(*score(x), AGGREGATES[aggregate], n_trees, None, TRANSFORMS_V5[transform])
        return tree_ensemble


def class_labels(ctx, ints_name):
    """classlabels_strings (an object array) or the int64 labels named ints_name."""
    strings, ints = ctx.attr("classlabels_strings"), ctx.attr(ints_name)
    if strings:
        return np.array([s.decode() if isinstance(s, bytes) else s for s in strings], dtype=object)
    if ints:
        return np.array(ints, np.int64)
    raise ctx.fail(f"classlabels_strings or {ints_name} is required")


def _logistic(s):
    # ONNX Runtime's form: no overflow for large |s|
    v = 1 / (1 + np.exp(-np.abs(s)))
    return np.where(s < 0, 1 - v, v).astype(np.float32)


@register("TreeEnsembleClassifier", domain=ML)
class TreeEnsembleClassifier(Op):
    """Class scores are summed over trees (no aggregate_function for classifiers)."""
    mode = "return"   # string labels

    def _labels(self, ctx):
        labels = class_labels(ctx, "classlabels_int64s")
        if len(labels) < 2:
            raise ctx.fail("a classifier needs at least two class labels")
        return labels

    def infer(self, ctx):
        n, _ = _rows(ctx)
        labels = self._labels(ctx)
        return [Info((n,), labels.dtype), Info((n, len(labels)), F32)]

    def kernel(self, ctx):
        labels = self._labels(ctx)
        k = len(labels)
        forest, _ = _forest_v3(ctx, "class", k)
        transform = _transform_name(ctx, ctx.attr("post_transform", "NONE"))
        base = _floats(ctx, "base_values")
        base = np.zeros(0) if base is None else base
        if k > 2 and len(base) not in (0, k):
            raise ctx.fail(f"{len(base)} base_values given for {k} classes")
        class_ids = _ints(ctx, "class_ids")
        weights = _floats(ctx, "class_weights")
        binary_case = k == 2 and len(np.unique(class_ids)) == 1
        all_positive = bool(np.all(weights >= 0))
        score = _scorer(ctx, forest, k, 1)
        post = TRANSFORMS[transform]

        def tree_ensemble_classifier(x):
            scores, has = score(x)
            if k > 2:
                if len(base):
                    scores, has = scores + base, np.ones_like(has)
                # the best class among those a leaf (or a base value) scored
                best = np.argmax(np.where(has, scores, -np.inf), axis=1)
                return labels[best], post(scores.astype(np.float32))
            winner, z = _binary(scores, has, base, binary_case, all_positive, transform, post)
            return labels[winner], z
        return tree_ensemble_classifier


def _binary(scores, has, base, binary_case, all_positive, transform, post):
    """Two classes, as ONNX Runtime's TreeAggregatorClassifier: the rows where class 1 got
    no score keep one score s, which becomes [1 - s, s] (all weights positive), [-s, s]
    (mixed weights; LOGISTIC of both under LOGISTIC) or s alone (PROBIT); the label is
    class 1 when the positive score passes 0.5 (all weights positive) or 0."""
    s0, s1, h0, h1 = scores[:, 0], scores[:, 1], has[:, 0], has[:, 1]
    second = np.full(len(s0), -1)      # ONNX Runtime's add_second_class
    if len(base) == 2:
        s0, s1 = np.where(h1, -(base[1] + s0), s0 + base[0]), np.where(h1, base[1] + s0, s1 + base[1])
        two = np.ones(len(s0), bool)
    else:
        if len(base) == 1:
            s0 = s0 + base[0]
        elif len(base) == 0:
            second[:] = 3
        two = h1 | (len(base) > 2)
    positive = np.where(two & h1, s1, np.where(h0, s0, 0.0))
    if binary_case:
        winner = positive > (0.5 if all_positive else 0.0)
        second = np.where(winner, 0, 1) if all_positive else np.where(winner, 2, 3)
    else:
        winner = positive > 0  # ONNX Runtime answers labels 1 / 0 here; the labels at 1 / 0 for us
    z = post(np.stack([s0, s1], axis=1).astype(np.float32)).astype(np.float32)
    s = s0.astype(np.float32)
    if transform == "PROBIT":
        one = np.stack([_probit(s), np.zeros_like(s)], axis=1)
    else:
        mixed = [_logistic(-s), _logistic(s)] if transform == "LOGISTIC" else [-s, s]
        one = np.select([((second == 0) | (second == 1))[:, None], (second >= 2)[:, None]],
                        [np.stack([1 - s, s], axis=1), np.stack(mixed, axis=1)], np.stack([s, 0 * s], axis=1))
    return winner.astype(np.intp), np.where(two[:, None], z, one).astype(np.float32)
