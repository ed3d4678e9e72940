"""ai.onnx.ml tree ensembles: TreeEnsembleRegressor and TreeEnsembleClassifier (opsets 1
and 3, trees addressed by (tree id, node id)) and TreeEnsemble (opset 5, trees addressed
by position, leaves in their own arrays).

Every form is compiled once per plan into one flat forest (node arrays, with the leaves'
weights in a CSR table). Comparisons and sums run in float64: exact for float32
thresholds and inputs. Unless a node tests set membership, the forest is walked without
branches (see Walk): BLOCK trees at a time step down one level together, each taking
nodes[node, 1 + went_true], until the deepest of them is at its leaf (leaves lead to
themselves). The walks of a block are independent, so the CPU overlaps them instead of
stalling on one mispredicted comparison after another; every index the walk follows is
checked when the plan is built (features, children, depths: a cycle fails there). The
same Numba call finishes the scores (averages, base values, argmax labels, post
transform): at batch 1 a chain of numpy calls would cost more than the trees. Measured on
the benchmark's scikit-learn forests (100 trees of depth 10; 300 of depth 3), 1000 rows:
about 6.4 and 4.9 ms walked node by node with branches, 2.1 and 1.9 ms this way.

Results follow ONNX Runtime where onnx.reference differs: targets no leaf wrote are 0
(also for MIN / MAX), base values are added only when there is one per target, a single
target only takes PROBIT, a missing value (NaN) goes the tracked way whatever the mode,
and classifiers with two classes score and label as ONNX Runtime does (see _binary).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..jit import numba   # imported when the first kernel is (jit.py)
from ..kernel_cache import njit
from ..codegen.cpu.threads import run_parts
from . import blas
from .base import Info, Op
from .ml_linear import TRANSFORM_CODES, TRANSFORMS, _batch, _probit, post_rows
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


@njit(inline="always", nogil=True)
def _add_leaf(scores, has, r, node, leaf_start, leaf_target, leaf_weight, aggregate):
    """Row r takes leaf `node`'s weights into scores (aggregate: 0/1 sum, 2 min, 3 max) and
    marks the targets written in `has`."""
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


@njit(cache=True, nogil=True)
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
            _add_leaf(scores, has, r, node, leaf_start, leaf_target, leaf_weight, aggregate)
    return True


# ---- the branch-free walk (forests without set membership)

BLOCK = 16   # trees walked together, at most (measured: 8 was 10-20% slower, 32 no faster)
# go the true way when one of the tests whose bit is set holds: bit 0 value < threshold,
# 1 value == threshold, 2 value > threshold, 3 the value is NaN, 4 value != threshold
RULES = {0: 0b00011, 1: 0b00001, 2: 0b00110, 3: 0b00100, 4: 0b00010, 5: 0b10000}
MISSING_TRUE = 0b01000


@dataclass
class Walk:
    blocks: np.ndarray      # int64 (blocks, 1 + up to BLOCK): levels to walk (the deepest tree's),
                            # then the roots; the last block padded with the idle leaf
    nodes: np.ndarray       # int32 (nodes, 4): feature, false child, true child, RULES bits;
                            # a leaf's children are itself (and its feature 0)
    threshold: np.ndarray   # float64 per node
    leq: bool               # every branch is BRANCH_LEQ or _LT (then made LEQ), NaN going the false way
    leaf_start: np.ndarray  # the Forest's, for one more node: the idle leaf, with no weights
    leaf_target: np.ndarray
    leaf_weight: np.ndarray

    def args(self) -> tuple:
        return (self.blocks, self.nodes, self.threshold, self.leq, self.leaf_start, self.leaf_target,
                self.leaf_weight)


def _depths(roots, nodes, leaf):
    """Levels from each root to its deepest leaf, all trees a level at a time; None when a
    walk can take more levels than there are nodes: the branches form a cycle. (numpy, not
    Numba: about a level's worth of small calls per level, and no compile at start-up.)"""
    n = leaf.shape[0]
    depth = np.zeros(len(roots), np.int64)
    at, tree = roots.astype(np.int64), np.arange(len(roots))
    level = 0
    while True:
        going = ~leaf[at]
        at, tree = at[going], tree[going]
        if at.size == 0:
            return depth
        level += 1
        if level > n:
            return None
        depth[tree] = level
        pairs = np.unique(np.concatenate([tree * n + nodes[at, 1], tree * n + nodes[at, 2]]))
        tree, at = np.divmod(pairs, n)


def _walk_of(ctx, forest: Forest) -> Walk | None:
    """The branch-free form of a forest (None if a node tests set membership); fails on a cycle."""
    n = forest.mode.shape[0]
    mode = np.append(forest.mode, LEAF)        # node n: the idle leaf that pads the last block
    leaf = mode == LEAF
    missing = np.append(forest.missing_true, False)
    itself = np.arange(n + 1)
    nodes = np.zeros((n + 1, 4), np.int32)
    nodes[:, 0] = np.where(leaf, 0, np.append(forest.feature, 0))
    nodes[:, 1] = np.where(leaf, itself, np.append(forest.false_next, n))
    nodes[:, 2] = np.where(leaf, itself, np.append(forest.true_next, n))
    for m, bits in RULES.items():
        nodes[mode == m, 3] = bits
    nodes[~leaf & missing, 3] |= MISSING_TRUE
    depths = _depths(forest.roots, nodes, leaf)
    if depths is None:
        raise ctx.fail("the trees' branches form a cycle")
    if np.any(mode == MEMBER):
        return None
    threshold = np.append(np.where(leaf[:n], 0.0, forest.threshold), 0.0)
    leq = bool(np.all((mode[~leaf] <= 1) & ~missing[~leaf]))
    if leq:
        # BRANCH_LT is BRANCH_LEQ on the next float64 below the threshold (none lies
        # between; a NaN passes neither; below -inf nothing passes, as against a NaN)
        lt = mode == 1
        below = np.nextafter(threshold[lt], -np.inf)
        threshold[lt] = np.where(threshold[lt] == -np.inf, np.nan, below)
    n_trees = len(forest.roots)
    count = -(-n_trees // BLOCK)
    width = -(-n_trees // count)   # blocks as even as can be: the idle leaf pads the last one
    roots = np.full(count * width, n, np.int64)
    roots[:n_trees] = forest.roots
    depth = np.zeros(count * width, np.int64)
    depth[:n_trees] = depths
    blocks = np.concatenate([depth.reshape(count, width).max(axis=1)[:, None], roots.reshape(count, width)], axis=1)
    return Walk(np.ascontiguousarray(blocks), nodes, threshold, leq,
                np.append(forest.leaf_start, forest.leaf_start[-1]), forest.leaf_target, forest.leaf_weight)


@njit(cache=True, nogil=True)
def _walk_blocks(x, blocks, nodes, threshold, leq, leaf_start, leaf_target, leaf_weight, aggregate, scores, has):
    """_walk's results for a forest without set membership (see Walk). Block by block, so
    that a block's nodes stay in cache over the rows; each row still adds its trees in
    their order. (As one function with a loop over the block's trees: compiled in about a
    third of the time of helpers unrolled per tree, and as fast.)"""
    width = blocks.shape[1] - 1
    at = np.empty(width, np.int64)
    for b in range(blocks.shape[0]):
        for r in range(x.shape[0]):
            for k in range(width):
                at[k] = blocks[b, 1 + k]
            for _ in range(blocks[b, 0]):
                for k in range(width):
                    i = at[k]
                    v = x[r, nodes[i, 0]]
                    if leq:
                        at[k] = nodes[i, 1 + np.int64(v <= threshold[i])]
                    else:
                        th = threshold[i]
                        bits = np.int64(nodes[i, 3])
                        go = (bits & np.int64(v < th)) | ((bits >> 1) & np.int64(v == th)) \
                            | ((bits >> 2) & np.int64(v > th)) | ((bits >> 3) & np.int64(v != v)) \
                            | ((bits >> 4) & np.int64(v != th))
                        at[k] = nodes[i, 1 + (go & 1)]
            for k in range(width):
                i = at[k]
                _add_leaf(scores, has, r, i, leaf_start, leaf_target, leaf_weight, aggregate)


@njit(nogil=True, error_model="numpy")
def _walk_run(run, x, blocks, nodes, threshold, leq, leaf_start, leaf_target, leaf_weight, aggregate,
              scores, has, runs):
    """Run `run` of _walk_blocks_threaded's rows."""
    n = x.shape[0]
    lo, hi = run * n // runs, (run + 1) * n // runs
    _walk_blocks(x[lo:hi], blocks, nodes, threshold, leq, leaf_start, leaf_target, leaf_weight, aggregate,
                 scores[lo:hi], has[lo:hi])


@blas.threaded_njit
def _walk_blocks_threaded(x, blocks, nodes, threshold, leq, leaf_start, leaf_target, leaf_weight, aggregate,
                          scores, has, runs):
    """_walk_blocks over `runs` runs of rows on Numba's threads: rows are independent."""
    run_parts(_walk_run, runs, (x, blocks, nodes, threshold, leq, leaf_start, leaf_target, leaf_weight,
                                aggregate, scores, has, runs))


# From how many rows a walk runs on Numba's threads: a parallel region costs microseconds,
# which batch-1 calls (about 10 us in all) cannot afford.
THREADED_ROWS = 64


def _floats(ctx, name, required=False):
    """A float attribute list or its `_as_tensor` twin (opset 3), as float64; None if neither."""
    v = ctx.attr(f"{name}_as_tensor")
    if v is None:
        v = ctx.attr(name)
    if v is None and required:
        raise ctx.fail(f"attribute {name} is required")
    return None if v is None else np.asarray(v, np.float64).reshape(-1)


def _mode_codes(ctx, strings) -> np.ndarray:
    """nodes_modes as MODES' codes. A long list comes as protobuf's bytes
    (frontend.EncodedStrings), which numpy reads at once: 2 ms for 38,634 modes, where
    decoding them and looking each up took 7 ms. 16 bytes hold every mode's name; a
    longer string cut to 16 matches none."""
    encoded = getattr(strings, "encoded", None)
    if encoded is None:
        encoded = [m.encode() if isinstance(m, str) else m for m in strings]
    names = np.fromiter(encoded, dtype="S16", count=len(encoded))
    mode = np.full(len(encoded), MEMBER + 1, np.int8)   # no mode's code
    for name, code in MODES.items():
        mode[names == name.encode()] = code
    if np.any(mode == MEMBER + 1):
        unknown = sorted({encoded[k].decode(errors="replace") for k in np.flatnonzero(mode == MEMBER + 1)})
        raise ctx.fail(f"unknown node mode(s) {unknown}")
    return mode


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
    mode = _mode_codes(ctx, ctx.attr("nodes_modes") or [])
    _same_length(ctx, nodes_treeids=tree_ids, nodes_nodeids=node_ids, nodes_featureids=features,
                 nodes_truenodeids=true_ids, nodes_falsenodeids=false_ids, nodes_values=values, nodes_modes=mode)
    n = len(tree_ids)
    if n == 0:
        raise ctx.fail("the ensemble has no nodes")
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


class Trees:
    """A forest ready for one plan's input shape: `walk` (its branch-free form, or None when
    a node tests set membership), `rows(x)` (the input as the kernels take it) and
    `scores(x)` -> (scores, has), float64 / bool arrays (rows, targets)."""

    def __init__(self, ctx, forest: Forest, n_targets: int, aggregate: int):
        self.n, f = _rows(ctx)
        used = forest.feature[forest.mode != LEAF]
        bad = used[(used < 0) | (used >= f)]
        if bad.size:
            raise ctx.fail(f"a node reads feature {int(bad[0])}, outside the input's {f} features")
        self.shape, self.n_targets, self.aggregate = (self.n, f), n_targets, aggregate
        self.ctx, self.forest = ctx, forest
        self.half = np.dtype(ctx.inputs[0].dtype) == np.float16   # Numba has no float16: as float32, exactly
        self.walk = _walk_of(ctx, forest)
        # runs of rows for the threads, several per thread so that uneven rows even out
        self.runs = min(self.n // 16, 4 * numba.get_num_threads()) \
            if blas.threaded() and self.walk is not None and self.n >= THREADED_ROWS else 1

    def rows(self, x):
        rows = x.reshape(self.shape)
        return rows.astype(np.float32) if self.half else rows

    def scores(self, x):
        scores, has = np.zeros((self.n, self.n_targets)), np.zeros((self.n, self.n_targets), bool)
        if self.runs > 1:
            _walk_blocks_threaded(self.rows(x), *self.walk.args(), self.aggregate, scores, has, self.runs)
            return scores, has
        if self.walk is not None:
            _walk_blocks(self.rows(x), *self.walk.args(), self.aggregate, scores, has)
            return scores, has
        fo = self.forest
        if not _walk(np.ascontiguousarray(x.reshape(self.shape), dtype=np.float64), fo.roots, fo.mode, fo.feature,
                     fo.threshold, fo.true_next, fo.false_next, fo.missing_true, fo.set_start, fo.set_values,
                     fo.leaf_start, fo.leaf_target, fo.leaf_weight, self.aggregate, scores, has):
            raise self.ctx.fail("the trees' branches form a cycle")
        return scores, has


@njit(cache=True, nogil=True)
def _finish_regression(scores, has, divisor, base, transform, z):
    """z = float32(scores, 0 where no leaf wrote, / divisor if > 0, + base if given), then
    the post transform (TRANSFORM_CODES; 0 for none) in place."""
    for r in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            v = scores[r, j] if has[r, j] else 0.0
            if divisor > 0:
                v /= divisor
            if base.shape[0]:
                v += base[j]
            z[r, j] = np.float32(v)
    post_rows(z, transform)


@njit(cache=True, nogil=True)
def _finish_classes(scores, has, base, transform, label_ids, labels, z):
    """Three or more classes: labels[r] = label_ids of the best class among those a leaf
    (or a base value) scored (np.argmax's choice: the first largest, or the first NaN);
    z = float32(scores + base), then the post transform in place."""
    for r in range(scores.shape[0]):
        best, top = 0, -np.inf
        for j in range(scores.shape[1]):
            v = scores[r, j]
            scored = has[r, j]
            if base.shape[0]:
                v += base[j]
                scored = True
            z[r, j] = np.float32(v)
            c = v if scored else -np.inf
            if j == 0:
                top = c
            elif top == top and not c <= top:
                best, top = j, c
        labels[r] = label_ids[best]
    post_rows(z, transform)


@njit(cache=True, nogil=True)
def _walk_regression(x, blocks, nodes, threshold, leq, leaf_start, leaf_target, leaf_weight, aggregate, divisor,
                     base, transform, z):
    """_walk_blocks then _finish_regression, in one call."""
    scores, has = np.zeros(z.shape), np.zeros(z.shape, np.bool_)
    _walk_blocks(x, blocks, nodes, threshold, leq, leaf_start, leaf_target, leaf_weight, aggregate, scores, has)
    _finish_regression(scores, has, divisor, base, transform, z)


@njit(cache=True, nogil=True)
def _walk_classes(x, blocks, nodes, threshold, leq, leaf_start, leaf_target, leaf_weight, base, transform,
                  label_ids, labels, z):
    """_walk_blocks (summing) then _finish_classes, in one call."""
    scores, has = np.zeros(z.shape), np.zeros(z.shape, np.bool_)
    _walk_blocks(x, blocks, nodes, threshold, leq, leaf_start, leaf_target, leaf_weight, 1, scores, has)
    _finish_classes(scores, has, base, transform, label_ids, labels, z)


def _regression(trees: Trees, aggregate: str, n_trees: int, base, transform: str, out_dtype):
    """fn(x, y): the regressors' scores into y (float32, or the input's float type for TreeEnsemble)."""
    n, n_targets = trees.n, trees.n_targets
    base = np.asarray(base, np.float64) if base is not None and len(base) == n_targets else np.zeros(0)
    code = TRANSFORM_CODES[transform] if n_targets > 1 or transform == "PROBIT" else 0
    divisor = float(n_trees) if aggregate == "AVERAGE" else 0.0
    direct = np.dtype(out_dtype) == F32
    walk = None if trees.walk is None or trees.runs > 1 else trees.walk.args()

    def regression(x, y):
        z = y.reshape(n, n_targets) if direct else np.empty((n, n_targets), np.float32)
        if walk is not None:
            _walk_regression(trees.rows(x), *walk, trees.aggregate, divisor, base, code, z)
        else:
            _finish_regression(*trees.scores(x), divisor, base, code, z)
        if not direct:
            y[...] = z.reshape(y.shape)
    return regression


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
        trees = Trees(ctx, forest, n_targets, AGGREGATES.index(aggregate))
        return _regression(trees, aggregate, n_trees, base, transform, F32)


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
        trees = Trees(ctx, forest, n_targets, aggregate)
        return _regression(trees, AGGREGATES[aggregate], len(forest.roots), None, TRANSFORMS_V5[transform],
                           ctx.inputs[0].dtype)


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
        trees = Trees(ctx, forest, k, 1)
        post = TRANSFORMS[transform]

        if k > 2:
            by_id = labels.dtype == object   # string labels: Numba picks the index, numpy the label
            label_ids = np.arange(k, dtype=np.int64) if by_id else labels
            code = TRANSFORM_CODES[transform]
            n = trees.n
            walk = None if trees.walk is None or trees.runs > 1 else trees.walk.args()

            def tree_ensemble_classifier(x):
                label, z = np.empty(n, np.int64), np.empty((n, k), np.float32)
                if walk is not None:
                    _walk_classes(trees.rows(x), *walk, base, code, label_ids, label, z)
                else:
                    _finish_classes(*trees.scores(x), base, code, label_ids, label, z)
                return (labels[label] if by_id else label), z
            tree_ensemble_classifier.fresh_outputs = True   # new arrays every call (see Plan)
            return tree_ensemble_classifier

        def binary_tree_ensemble_classifier(x):
            winner, z = _binary(*trees.scores(x), base, binary_case, all_positive, transform, post)
            return labels[winner], z
        binary_tree_ensemble_classifier.fresh_outputs = True
        return binary_tree_ensemble_classifier


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
