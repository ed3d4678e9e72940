"""TreeEnsemble (ai.onnx.ml opset 5): every row walks every tree down to a leaf, all rows
of a tree at once (one vectorized step per tree level); leaf weights are aggregated per
target, then post-transformed."""
from __future__ import annotations

import math

import numpy as np

from .base import Info, Op
from .registry import register

ML = "ai.onnx.ml"
LEQ, LT, GTE, GT, EQ, NEQ, MEMBER = range(7)


def _array(ctx, name, dtype=None, default=None):
    v = ctx.attr(name)
    if v is None:
        return default
    return np.asarray(v, dtype).reshape(-1) if dtype is not None else np.asarray(v).reshape(-1)


def _post(scores: np.ndarray, kind: int) -> np.ndarray:
    if kind == 1:  # SOFTMAX
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if kind == 2:  # LOGISTIC
        return 1 / (1 + np.exp(-scores))
    if kind == 3:  # SOFTMAX_ZERO: zeros take no part and stay 0
        nz = scores != 0
        m = np.where(nz, scores, -np.inf).max(axis=1, keepdims=True)
        e = np.where(nz, np.exp(scores - np.where(np.isfinite(m), m, 0)), 0.0)
        s = e.sum(axis=1, keepdims=True)
        return np.where(s > 0, e / np.where(s > 0, s, 1), 0.0)
    if kind == 4:  # PROBIT
        return np.vectorize(lambda p: math.sqrt(2) * _erfinv(2 * p - 1))(scores)
    return scores


def _erfinv(y: float) -> float:
    """Inverse error function by Newton steps on math.erf (enough for PROBIT scores)."""
    if y <= -1:
        return -math.inf
    if y >= 1:
        return math.inf
    x = 0.0
    for _ in range(60):
        err = math.erf(x) - y
        x -= err / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


@register("TreeEnsemble", domain=ML, since=5)
class TreeEnsemble(Op):
    def infer(self, ctx):
        x = ctx.inputs[0]
        if len(x.shape) != 2:
            raise ctx.fail(f"X must be [N, F], got {list(x.shape)}")
        return [Info((x.shape[0], int(ctx.attr("n_targets"))), x.dtype)]

    def kernel(self, ctx):
        features = _array(ctx, "nodes_featureids", np.int64)
        splits = _array(ctx, "nodes_splits", np.float64)
        modes = _array(ctx, "nodes_modes", np.int64, np.zeros(features.size, np.int64))
        true_ids, false_ids = _array(ctx, "nodes_truenodeids", np.int64), _array(ctx, "nodes_falsenodeids", np.int64)
        true_leaf = _array(ctx, "nodes_trueleafs", np.int64).astype(bool)
        false_leaf = _array(ctx, "nodes_falseleafs", np.int64).astype(bool)
        missing_true = _array(ctx, "nodes_missing_value_tracks_true", np.int64,
                              np.zeros(features.size, np.int64)).astype(bool)
        roots = _array(ctx, "tree_roots", np.int64)
        leaf_targets, leaf_weights = _array(ctx, "leaf_targetids", np.int64), _array(ctx, "leaf_weights", np.float64)
        n_targets = int(ctx.attr("n_targets"))
        aggregate = int(ctx.attr("aggregate_function", 1))
        post = int(ctx.attr("post_transform", 0))
        members = self._members(ctx, modes)

        def step(x, rows, node):
            v = x[rows, features[node]]
            s = splits[node]
            m = modes[node]
            go = np.select([m == LEQ, m == LT, m == GTE, m == GT, m == EQ, m == NEQ],
                           [v <= s, v < s, v >= s, v > s, v == s, v != s], default=False)
            for k in np.nonzero(m == MEMBER)[0]:
                go[k] = v[k] in members[int(node[k])]
            return np.where(np.isnan(v), missing_true[node], go)

        def run(x, y):
            if x.shape[1] <= features.max(initial=0):
                raise ctx.fail(f"X has {x.shape[1]} features, the trees read feature {int(features.max())}")
            n = x.shape[0]
            xf = x.astype(np.float64)
            agg = np.zeros((n, n_targets)) if aggregate in (0, 1) else \
                np.full((n, n_targets), np.inf if aggregate == 2 else -np.inf)
            for root in roots:
                node = np.full(n, root, np.int64)
                leaf = np.full(n, -1, np.int64)
                rows = np.arange(n)
                while rows.size:
                    go = step(xf, rows, node[rows])
                    nxt = np.where(go, true_ids[node[rows]], false_ids[node[rows]])
                    is_leaf = np.where(go, true_leaf[node[rows]], false_leaf[node[rows]])
                    leaf[rows[is_leaf]] = nxt[is_leaf]
                    node[rows] = nxt
                    rows = rows[~is_leaf]
                targets, weights = leaf_targets[leaf], leaf_weights[leaf]
                if aggregate in (0, 1):
                    np.add.at(agg, (np.arange(n), targets), weights)
                elif aggregate == 2:
                    np.minimum.at(agg, (np.arange(n), targets), weights)
                else:
                    np.maximum.at(agg, (np.arange(n), targets), weights)
            if aggregate == 0:
                agg /= max(len(roots), 1)
            agg = np.where(np.isinf(agg), 0.0, agg)
            y[...] = _post(agg, post)
        return run

    @staticmethod
    def _members(ctx, modes):
        """BRANCH_MEMBER node -> its set, from membership_values (sets separated by NaN)."""
        values = _array(ctx, "membership_values", np.float64, np.zeros(0))
        sets, current = [], set()
        for v in values:
            if np.isnan(v):
                sets.append(current)
                current = set()
            else:
                current.add(float(v))
        if current:
            sets.append(current)
        member_nodes = np.nonzero(modes == MEMBER)[0]
        return {int(k): sets[i] if i < len(sets) else set() for i, k in enumerate(member_nodes)}
