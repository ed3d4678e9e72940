"""ai.onnx.ml SVMClassifier and SVMRegressor, computed as ONNX Runtime computes them.

A model either has support vectors (libsvm, SVC mode: one-vs-one classifiers over kernel
values, votes, optionally libsvm's pairwise probabilities) or none (liblinear mode: one
linear score per class plus rho[0]). Where onnx.reference differs from ONNX Runtime,
ONNX Runtime wins:
  * two classes without probabilities: the single score s is written as [-s, s] under
    NONE and as [1 - s, s] under any other post_transform, PROBIT as [probit(s), 0];
  * the SVC label comes from the votes (max weight 0 in ONNX Runtime's binary rule);
  * SVMRegressor ignores post_transform and n_targets (one target).
Kernels are computed in float64 and the scores rounded to float32 once.
"""
from __future__ import annotations

import numpy as np

from ..kernel_cache import njit
from .base import Info, Op
from .ml_linear import TRANSFORMS, _probit
from .ml_trees import _logistic, _rows, class_labels
from .registry import register

ML = "ai.onnx.ml"
F32 = np.dtype(np.float32)
KERNELS = ("LINEAR", "POLY", "RBF", "SIGMOID")


def _floats(ctx, name, required=False):
    v = ctx.attr(name)
    if v is None and required:
        raise ctx.fail(f"attribute {name} is required")
    return np.asarray([] if v is None else v, np.float64).reshape(-1)


def _kernel_fn(ctx):
    """fn(x (n, f), vectors (v, f)) -> (n, v) kernel values, from kernel_type / kernel_params."""
    name = ctx.attr("kernel_type", "LINEAR")
    name = name.decode() if isinstance(name, bytes) else name
    if name not in KERNELS:
        raise ctx.fail(f"unknown kernel_type {name!r}")
    params = _floats(ctx, "kernel_params")
    gamma, coef0, degree = (params.tolist() + [0.0, 0.0, 0.0])[:3] if params.size else (0.0, 0.0, 0.0)
    if name == "RBF":
        def rbf(x, v):
            d = (x * x).sum(1)[:, None] + (v * v).sum(1)[None, :] - 2 * (x @ v.T)
            return np.exp(-gamma * np.maximum(d, 0))
        return rbf
    if name == "POLY":
        return lambda x, v: (gamma * (x @ v.T) + coef0) ** degree
    if name == "SIGMOID":
        return lambda x, v: np.tanh(gamma * (x @ v.T) + coef0)
    return lambda x, v: x @ v.T


def _features(ctx, n_features):
    n, f = _rows(ctx)
    if f != n_features:
        raise ctx.fail(f"the input has {f} features, the model {n_features}")
    return n, f


def _as_rows(x, n, f):
    return x.reshape(n, f).astype(np.float32).astype(np.float64)  # ONNX Runtime reads float32


@register("SVMRegressor", domain=ML)
class SVMRegressor(Op):
    def setup(self, ctx):
        coef, rho = _floats(ctx, "coefficients", True), _floats(ctx, "rho", True)
        n_supports = int(ctx.attr("n_supports", 0))
        if coef.size == 0 or rho.size == 0:
            raise ctx.fail("coefficients and rho must not be empty")
        if n_supports > 0:
            sv = _floats(ctx, "support_vectors")
            if sv.size % n_supports or coef.size < n_supports:
                raise ctx.fail(f"{sv.size} support vector values / {coef.size} coefficients do not fit "
                               f"n_supports={n_supports}")
            return sv.reshape(n_supports, -1), coef[:n_supports], rho[0]
        return None, coef, rho[0]

    def infer(self, ctx):
        sv, coef, _ = self.setup(ctx)
        n, _ = _features(ctx, coef.size if sv is None else sv.shape[1])
        return [Info((n, 1), F32)]

    def kernel(self, ctx):
        sv, coef, rho = self.setup(ctx)
        n, f = _features(ctx, coef.size if sv is None else sv.shape[1])
        kernel = _kernel_fn(ctx) if sv is not None else (lambda x, v: x @ v.T)
        vectors = sv if sv is not None else coef[None, :]
        weights = coef if sv is not None else np.ones(1)
        one_class = bool(ctx.attr("one_class", 0))

        def svm_regressor(x, y):
            s = kernel(_as_rows(x, n, f), vectors) @ weights + rho
            y[:, 0] = np.where(s > 0, 1.0, -1.0) if one_class else s
        return svm_regressor


@njit(cache=True, nogil=True)
def _multiclass_probability(pairwise, out):
    """libsvm's coupling of pairwise probabilities r (rows, k, k) into class probabilities,
    ONNX Runtime's loop (at most 100 rounds, stop at max error 0.005 / k)."""
    k = pairwise.shape[1]
    eps = 0.005 / k
    q = np.zeros((k, k))
    qp = np.zeros(k)
    for row in range(pairwise.shape[0]):
        r = pairwise[row]
        p = out[row]
        q[:, :] = 0.0
        for i in range(k):
            p[i] = 1.0 / k
            for j in range(i):
                q[i, i] += r[j, i] * r[j, i]
                q[i, j] = q[j, i]
            for j in range(i + 1, k):
                q[i, i] += r[j, i] * r[j, i]
                q[i, j] = -r[j, i] * r[i, j]
        for _ in range(100):
            pqp = 0.0
            for i in range(k):
                qp[i] = 0.0
                for j in range(k):
                    qp[i] += q[i, j] * p[j]
                pqp += p[i] * qp[i]
            max_error = 0.0
            for i in range(k):
                max_error = max(max_error, abs(qp[i] - pqp))
            if max_error < eps:
                break
            for i in range(k):
                diff = (-qp[i] + pqp) / q[i, i]
                p[i] += diff
                pqp = (pqp + diff * (diff * q[i, i] + 2 * qp[i])) / (1 + diff) / (1 + diff)
                for j in range(k):
                    qp[j] = (qp[j] + diff * q[i, j]) / (1 + diff)
                    p[j] /= 1 + diff


@register("SVMClassifier", domain=ML)
class SVMClassifier(Op):
    mode = "return"   # string labels

    def setup(self, ctx):
        labels = class_labels(ctx, "classlabels_ints")
        k = len(labels)
        coef, rho = _floats(ctx, "coefficients", True), _floats(ctx, "rho", True)
        prob_a, prob_b = _floats(ctx, "prob_a"), _floats(ctx, "prob_b")
        per_class = np.asarray(ctx.attr("vectors_per_class") or [], np.int64)
        if coef.size == 0 or rho.size == 0 or prob_a.size != prob_b.size:
            raise ctx.fail("coefficients and rho must not be empty, prob_a and prob_b of one length")
        n_vectors = int(per_class.sum())
        if n_vectors == 0:  # liblinear: one row of coefficients per class
            if coef.size % k:
                raise ctx.fail(f"{coef.size} coefficients do not fit {k} classes")
            return labels, None, coef.reshape(k, -1), rho, per_class, prob_a, prob_b
        pairs = k * (k - 1) // 2
        sv = _floats(ctx, "support_vectors")
        if k < 2 or len(per_class) != k or np.any(per_class < 0) or sv.size % n_vectors \
                or coef.size < (k - 1) * n_vectors or rho.size < pairs or 0 < prob_a.size < pairs:
            raise ctx.fail(f"vectors_per_class, support_vectors, coefficients, rho and prob_a/prob_b do not fit "
                           f"{k} classes and {n_vectors} support vectors")
        return labels, sv.reshape(n_vectors, -1), coef[:(k - 1) * n_vectors].reshape(k - 1, n_vectors), rho, \
            per_class, prob_a, prob_b

    def infer(self, ctx):
        labels, sv, coef, _, _, prob_a, _ = self.setup(ctx)
        n, _ = _features(ctx, coef.shape[1] if sv is None else sv.shape[1])
        k = len(labels)
        width = k if sv is None or prob_a.size else (k * (k - 1) // 2 if k > 2 else 2)
        return [Info((n,), labels.dtype), Info((n, width), F32)]

    def kernel(self, ctx):
        labels, sv, coef, rho, per_class, prob_a, prob_b = self.setup(ctx)
        n, f = _features(ctx, coef.shape[1] if sv is None else sv.shape[1])
        k = len(labels)
        transform = ctx.attr("post_transform", "NONE")
        if transform not in TRANSFORMS:
            raise ctx.fail(f"unknown post_transform {transform!r}")
        post = TRANSFORMS[transform]
        all_positive = bool(np.all(_floats(ctx, "coefficients") >= 0))

        if sv is None:
            def linear(x):
                scores = (_as_rows(x, n, f) @ coef.T + rho[0]).astype(np.float32)
                best = np.argmax(scores, axis=1)
                label = labels[best]
                if k == 2:  # ONNX Runtime's binary rule on the larger score
                    top = scores.max(axis=1)
                    label = np.where((top >= 0.5) if all_positive else (top > 0), labels[1], label)
                if k > 1 or transform == "PROBIT":
                    scores = post(scores)
                return label, scores.astype(np.float32)
            return linear

        kernel = _kernel_fn(ctx)
        starts = np.concatenate([[0], np.cumsum(per_class)[:-1]])
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        blocks = [(slice(starts[i], starts[i] + per_class[i]), slice(starts[j], starts[j] + per_class[j]))
                  for i, j in pairs]
        first, second = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

        def svc(x):
            kv = kernel(_as_rows(x, n, f), sv)
            # classifier (i, j): class i's vectors with coefficient row j-1, class j's with row i
            scores = np.stack([kv[:, bi] @ coef[j - 1, bi] + kv[:, bj] @ coef[i, bj] + rho[c]
                               for c, ((i, j), (bi, bj)) in enumerate(zip(pairs, blocks))], axis=1)
            votes = np.zeros((n, k), np.int64)
            wins = np.where(scores > 0, first[None, :], second[None, :])
            for c in range(len(pairs)):
                np.add.at(votes, (np.arange(n), wins[:, c]), 1)
            label = labels[np.argmax(votes, axis=1)]
            if prob_a.size:
                val = 1 - _logistic(scores * prob_a[:len(pairs)] + prob_b[:len(pairs)])
                val = np.clip(val, 1e-7, 1 - 1e-7)
                pairwise = np.zeros((n, k, k))
                pairwise[:, first, second] = val
                pairwise[:, second, first] = 1 - val
                probs = np.empty((n, k))
                _multiclass_probability(pairwise, probs)
                return label, post(probs.astype(np.float32)).astype(np.float32)
            s = scores.astype(np.float32)
            if k > 2:
                return label, post(s).astype(np.float32)
            s = s[:, 0]
            if transform == "PROBIT":
                return label, np.stack([_probit(s), np.zeros_like(s)], axis=1)
            return label, np.stack([-s if transform == "NONE" else 1 - s, s], axis=1).astype(np.float32)
        return svc
