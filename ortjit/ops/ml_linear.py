"""ai.onnx.ml LinearClassifier and LinearRegressor: one float32 GEMM plus a post transform.

Results follow ONNX Runtime (the API this package stands in for), which computes in
float32 whatever the input type and returns float32 scores. Where onnx.reference differs
from ONNX Runtime, ONNX Runtime wins:
  * labels come from the raw scores (before the post transform);
  * one score per row with two class labels (a binary model): the scores become
    [1 - s, s] of the raw score s, as ONNX Runtime's own tests expect; onnx.reference
    gives [-s, s] and then applies the transform;
  * one score per row otherwise: only PROBIT is applied (ONNX Runtime skips the others).
Where ONNX Runtime's result is undefined (PROBIT on a binary model, a row of zeros in
SOFTMAX_ZERO, no class labels with several classes) we do what onnx.reference does.

Scores, labels and the post transform of a batch come from one Numba call (_classify):
at batch 1 a chain of numpy calls costs several times the arithmetic. The transforms have
two forms that agree to float32 rounding: TRANSFORMS (numpy, for other ops) and
post_rows (Numba, in place, by TRANSFORM_CODES).
"""
import numpy as np

from ..kernel_cache import njit
from .base import Info, Op
from .registry import register

ML = "ai.onnx.ml"
F32 = np.dtype(np.float32)


def _batch(ctx) -> tuple[int, int]:
    """(rows, features): a 1-D input is one row, as in ONNX Runtime."""
    shape = ctx.inputs[0].shape
    if len(shape) not in (1, 2):
        raise ctx.fail(f"the input must be 1-D or 2-D, got shape {list(shape)}")
    return (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])


def _weights(ctx, n_features: int, n_targets: int | None = None):
    """Coefficients as a (features, targets) float32 matrix, and the intercepts (targets,)."""
    coef = np.asarray(ctx.attr("coefficients", []), dtype=np.float32)
    if n_targets is None:
        n_targets = coef.size // n_features if n_features else 0
    if n_features == 0 or coef.size != n_targets * n_features or n_targets == 0:
        raise ctx.fail(f"{coef.size} coefficients do not fit {n_features} input features "
                       f"(and {n_targets} targets)")
    intercepts = ctx.attr("intercepts")
    intercepts = np.zeros(n_targets, np.float32) if intercepts is None else np.asarray(intercepts, np.float32)
    if intercepts.size != n_targets:
        raise ctx.fail(f"{intercepts.size} intercepts given for {n_targets} targets")
    return np.ascontiguousarray(coef.reshape(n_targets, n_features).T), intercepts


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _raw_row(x, r, coef, intercepts, out):
    """out[r, j] = x[r] . coef[j] + intercepts[j], in float32 as a float32 GEMM (the sum's
    order is free, so that it vectorizes)."""
    for j in range(coef.shape[0]):
        acc = np.float32(0)
        for c in range(coef.shape[1]):
            acc += np.float32(x[r, c]) * coef[j, c]
        out[r, j] = acc + intercepts[j]


@njit(cache=True, nogil=True)
def linear_scores(x, coef, intercepts, out):
    """out (rows, targets) float32 = x (rows, features) @ coef.T + intercepts."""
    for r in range(x.shape[0]):
        _raw_row(x, r, coef, intercepts, out)


@njit(cache=True, nogil=True)
def argmax_row(s, r):
    """np.argmax of row r of s: the first largest value, or the first NaN."""
    best = 0
    v = s[r, 0]
    for j in range(1, s.shape[1]):
        if v == v and not s[r, j] <= v:
            best, v = j, s[r, j]
    return best


@njit(cache=True, nogil=True)
def _classify(x, coef, intercepts, transform, label_ids, labels, z):
    """Multiclass: the raw scores into z, the label of each row's best raw score into
    labels, then the post transform of z in place."""
    for r in range(x.shape[0]):
        _raw_row(x, r, coef, intercepts, z)
        labels[r] = label_ids[argmax_row(z, r)]
    post_rows(z, transform)


def _logistic(s):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-s))).astype(np.float32)


def _softmax(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softmax_zero(s):
    """Softmax that leaves (near-)zero scores at zero; a row of zeros becomes 0.5 each."""
    v_max = s.max(axis=1, keepdims=True)
    nonzero = np.abs(s) > 1e-7
    e = np.where(nonzero, np.exp(s - v_max), s * np.exp(-v_max))
    total = np.where(nonzero, e, 0).sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total == 0, np.float32(0.5), e / total).astype(np.float32)


def _probit(s):
    """sqrt(2) * erfinv(2s - 1), with the closed-form erfinv approximation ONNX uses."""
    x = 2 * s - 1
    sign = np.where(x < 0, np.float32(-1), np.float32(1))
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log((1 - x) * (1 + x))
        v = np.float32(2 / (np.pi * 0.147)) + np.float32(0.5) * log
        v3 = -v + np.sqrt(v * v - np.float32(1 / 0.147) * log)
        return (np.float32(1.41421356) * sign * np.sqrt(v3)).astype(np.float32)


TRANSFORMS = {"NONE": lambda s: s, "LOGISTIC": _logistic, "SOFTMAX": _softmax,
              "SOFTMAX_ZERO": _softmax_zero, "PROBIT": _probit}
TRANSFORM_CODES = {"NONE": 0, "LOGISTIC": 1, "SOFTMAX": 2, "SOFTMAX_ZERO": 3, "PROBIT": 4}

_F = np.float32


@njit(cache=True, nogil=True)
def _probit_one(s):
    x = _F(2) * s - _F(1)
    sign = _F(-1) if x < 0 else _F(1)
    log = np.log((_F(1) - x) * (_F(1) + x))
    v = _F(2 / (np.pi * 0.147)) + _F(0.5) * log
    v3 = -v + np.sqrt(v * v - _F(1 / 0.147) * log)
    return _F(1.41421356) * sign * np.sqrt(v3)


@njit(cache=True, nogil=True)
def post_rows(z, transform):
    """TRANSFORMS[name] of a float32 (rows, columns) array, in place; transform is
    TRANSFORM_CODES[name]. float32 arithmetic, as the numpy forms."""
    n, k = z.shape
    if transform == 1:
        for r in range(n):
            for j in range(k):
                z[r, j] = _F(1) / (_F(1) + np.exp(-z[r, j]))
    elif transform == 4:
        for r in range(n):
            for j in range(k):
                z[r, j] = _probit_one(z[r, j])
    elif (transform == 2 or transform == 3) and k > 0:
        for r in range(n):
            top = z[r, 0]
            for j in range(1, k):
                top = max(top, z[r, j])
            total = _F(0)
            if transform == 2:
                for j in range(k):
                    z[r, j] = np.exp(z[r, j] - top)
                    total += z[r, j]
                for j in range(k):
                    z[r, j] = z[r, j] / total
            else:  # SOFTMAX_ZERO: (near-)zero scores stay (near) zero; a row of zeros is 0.5 each
                for j in range(k):
                    if abs(z[r, j]) > _F(1e-7):
                        z[r, j] = np.exp(z[r, j] - top)
                        total += z[r, j]
                    else:
                        z[r, j] = z[r, j] * np.exp(-top)
                for j in range(k):
                    z[r, j] = _F(0.5) if total == 0 else z[r, j] / total


def _transform(ctx):
    name = ctx.attr("post_transform", "NONE")
    if name not in TRANSFORMS:
        raise ctx.fail(f"unknown post_transform '{name}'")
    return name


@register("LinearClassifier", domain=ML)
class LinearClassifier(Op):
    mode = "return"   # string labels cannot live in the plan's raw buffers

    def setup(self, ctx):
        n, f = _batch(ctx)
        coef_t, intercepts = _weights(ctx, f)
        ints, strings = ctx.attr("classlabels_ints"), ctx.attr("classlabels_strings")
        if strings:
            labels = np.array(list(strings), dtype=object)
        elif ints:
            labels = np.array(ints, dtype=np.int64)
        else:
            labels = None
        if labels is not None and coef_t.shape[1] > 1 and len(labels) != coef_t.shape[1]:
            raise ctx.fail(f"{len(labels)} class labels given for {coef_t.shape[1]} classes")
        return n, f, coef_t, intercepts, labels, strings is not None and len(strings) > 0

    def infer(self, ctx):
        n, f, coef_t, _, labels, strings = self.setup(ctx)
        n_classes = coef_t.shape[1]
        width = 2 if n_classes == 1 and labels is not None and len(labels) == 2 else n_classes
        return [Info((n,), np.dtype(object) if strings else np.dtype(np.int64)), Info((n, width), F32)]

    def kernel(self, ctx):
        n, f, coef_t, intercepts, labels, strings = self.setup(ctx)
        transform = _transform(ctx)
        coef = np.ascontiguousarray(coef_t.T)
        rows = _rows_of(ctx.inputs[0], n, f)
        if coef.shape[0] > 1:
            names = labels if labels is not None else np.arange(coef.shape[0], dtype=np.int64)
            by_id = names.dtype == object   # string labels: Numba picks the index, numpy the label
            label_ids = np.arange(len(names), dtype=np.int64) if by_id else names
            code = TRANSFORM_CODES[transform]

            def multiclass(x):
                label, z = np.empty(n, np.int64), np.empty((n, coef.shape[0]), np.float32)
                _classify(rows(x), coef, intercepts, code, label_ids, label, z)
                return (names[label] if by_id else label), z
            multiclass.fresh_outputs = True   # new arrays every call (see Plan)
            return multiclass

        # one score per row: positive when it is > 0
        if labels is not None and len(labels) == 2:
            names, two_labels = labels, True
        else:
            names = np.array(["0", "1"], dtype=object) if strings else np.array([0, 1], dtype=np.int64)
            two_labels = False

        def binary(x):
            s = np.empty((n, 1), np.float32)
            linear_scores(rows(x), coef, intercepts, s)
            label = names[(s[:, 0] > 0).astype(np.intp)]
            if two_labels:
                s = _probit(np.concatenate([-s, s], axis=1)) if transform == "PROBIT" else \
                    np.concatenate([1 - s, s], axis=1)
            elif transform == "PROBIT":
                s = _probit(s)
            return label, s
        binary.fresh_outputs = True
        return binary


def _rows_of(x_info, n, f):
    """fn(x) -> x as (rows, features) for the Numba kernels (float16 as float32: exact)."""
    if np.dtype(x_info.dtype) == np.float16:
        return lambda x: x.reshape(n, f).astype(np.float32)
    if len(x_info.shape) == 2:
        return lambda x: x
    return lambda x: x.reshape(n, f)


@register("LinearRegressor", domain=ML)
class LinearRegressor(Op):
    def setup(self, ctx):
        n, f = _batch(ctx)
        targets = int(ctx.attr("targets", 1))
        return n, f, *_weights(ctx, f, targets)

    def infer(self, ctx):
        n, _, coef_t, _ = self.setup(ctx)
        return [Info((n, coef_t.shape[1]), F32)]

    def kernel(self, ctx):
        n, f, coef_t, intercepts = self.setup(ctx)
        transform = _transform(ctx)
        # as in ONNX Runtime, a single target only takes PROBIT
        code = TRANSFORM_CODES[transform] if coef_t.shape[1] > 1 or transform == "PROBIT" else 0
        coef = np.ascontiguousarray(coef_t.T)
        rows = _rows_of(ctx.inputs[0], n, f)

        def linear_regressor(x, out):
            y = out.reshape(n, coef.shape[0])
            linear_scores(rows(x), coef, intercepts, y)
            post_rows(y, code)
        return linear_regressor
