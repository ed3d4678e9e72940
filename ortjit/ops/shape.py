"""Ops that only look at or change a tensor's shape: Shape, Size, Reshape, Flatten,
Squeeze, Unsqueeze, Identity, Dropout (inference), Expand.

Most are "return" ops handing back numpy views (no copy); the plan copies a graph
output that is a view. The target shapes they need (Reshape's shape, Unsqueeze's axes)
must be known when the plan is built, which they are when they come from constants or
from Shape subgraphs (folded at plan time).
"""
import numpy as np

from ..errors import RuntimeException
from .base import Info, Op, broadcast_shapes, normalize_axis
from .registry import register

INT64 = np.dtype(np.int64)


def _dims(shape) -> str:
    """A shape as ONNX Runtime prints it: {2,3}."""
    return "{" + ",".join(str(int(d)) for d in shape) + "}"


def _axes(ctx):
    """The axes of Squeeze/Unsqueeze: an attribute before opset 13, the second input from 13."""
    axes = ctx.attr("axes") if ctx.opset < 13 else ctx.value(1, "axes")
    return None if axes is None else [int(a) for a in np.asarray(axes).ravel()]


class ViewOp(Op):
    """An op whose single output is a view of its input with a shape computed at plan time."""
    mode = "return"

    def out_shape(self, ctx) -> tuple:
        raise NotImplementedError

    def infer(self, ctx):
        return [Info(self.out_shape(ctx), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        shape = self.out_shape(ctx)

        def view(x, *rest):
            return x.reshape(shape)
        return view


@register("Shape")
class Shape(Op):
    shape_only = True

    def _dims(self, ctx):
        shape = ctx.inputs[0].shape
        if ctx.opset < 15:
            return list(shape)
        # start/end clamp like Python slices, which is what the spec asks for
        start, end = ctx.attr("start", 0), ctx.attr("end")
        return list(shape)[start:end]

    def infer(self, ctx):
        return [Info((len(self._dims(ctx)),), INT64)]

    def evaluate(self, ctx, inputs):
        return [np.array(self._dims(ctx), dtype=np.int64)]


@register("Size")
class Size(Op):
    shape_only = True

    def infer(self, ctx):
        return [Info((), INT64)]

    def evaluate(self, ctx, inputs):
        return [np.array(ctx.inputs[0].size, dtype=np.int64)]


def reshape_target(ctx, in_shape: tuple, requested, allowzero: bool) -> tuple:
    """Resolve 0 (copy the input dim, unless allowzero) and -1 (infer) as ONNX Runtime does."""
    shape = [int(d) for d in requested]
    if any(d < -1 for d in shape):
        raise ctx.fail(f"a dimension cannot be less than -1, got {_dims(shape)}")
    if shape.count(-1) > 1:
        raise ctx.fail(f"at most one dimension can be -1, got {_dims(shape)}")
    if allowzero and -1 in shape and 0 in shape:
        raise ctx.fail("with allowzero=1 the shape cannot contain both 0 and -1")
    for i, d in enumerate(shape):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                raise ctx.fail("the dimension with value zero exceeds the dimension size of the input tensor")
            shape[i] = in_shape[i]
    total = int(np.prod(in_shape, dtype=np.int64))
    known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
    ok = (known != 0 and total % known == 0) if -1 in shape else known == total
    if not ok:
        # ONNX Runtime reports this as a runtime failure of the node, with this wording
        raise RuntimeException(f"Non-zero status code returned while running {ctx.op_type} node. "
                               f"Name:'{ctx.name}' Status Message: The input tensor cannot be reshaped to the "
                               f"requested shape. Input shape:{_dims(in_shape)}, requested shape:{_dims(shape)}")
    if -1 in shape:
        shape[shape.index(-1)] = total // known
    return tuple(shape)


@register("Reshape")
class Reshape(ViewOp):
    def out_shape(self, ctx):
        requested = ctx.attr("shape") if ctx.opset < 5 else ctx.value(1, "shape")
        allowzero = bool(ctx.attr("allowzero", 0)) if ctx.opset >= 14 else False
        return reshape_target(ctx, ctx.inputs[0].shape, np.asarray(requested).ravel(), allowzero)


@register("Flatten")
class Flatten(ViewOp):
    def out_shape(self, ctx):
        shape = ctx.inputs[0].shape
        axis = ctx.attr("axis", 1)
        if not -len(shape) <= axis <= len(shape):   # axis == rank is allowed: (N, 1)
            raise ctx.fail(f"axis {axis} is out of range for a tensor of rank {len(shape)}")
        axis = axis + len(shape) if axis < 0 else axis
        return (int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64)))


@register("Squeeze")
class Squeeze(ViewOp):
    def out_shape(self, ctx):
        shape = ctx.inputs[0].shape
        axes = _axes(ctx)
        if not axes:  # none given (or an empty list, as ONNX Runtime reads it): every dim of 1
            return tuple(d for d in shape if d != 1)
        axes = {normalize_axis(ctx, a, len(shape)) for a in axes}
        for a in axes:
            if shape[a] != 1:
                raise ctx.fail(f"dimension {a} of the input (shape {list(shape)}) must be 1 to be squeezed")
        return tuple(d for i, d in enumerate(shape) if i not in axes)


@register("Unsqueeze")
class Unsqueeze(ViewOp):
    def out_shape(self, ctx):
        shape = ctx.inputs[0].shape
        axes = _axes(ctx)
        if not axes:
            raise ctx.fail("axes must be given and not empty")
        rank = len(shape) + len(axes)
        axes = [normalize_axis(ctx, a, rank) for a in axes]
        if len(set(axes)) != len(axes):
            raise ctx.fail(f"axes {axes} contain duplicates")
        dims = iter(shape)
        return tuple(1 if i in axes else next(dims) for i in range(rank))


@register("Identity")
class Identity(Op):
    mode = "return"

    def infer(self, ctx):
        x = ctx.inputs[0]
        return [Info(x.shape, x.dtype)]

    def kernel(self, ctx):
        def identity(x):
            return x
        return identity


@register("Dropout")
class Dropout(Op):
    """In inference Dropout passes its input through; its mask says every element was kept.

    training_mode (opset 12+) is honoured when it is given and true: then the output is
    random, so constant folding must leave the node alone.
    """
    mode = "return"
    nondeterministic = True

    def _mask_dtype(self, ctx):
        return np.dtype(np.bool_) if ctx.opset >= 10 else ctx.inputs[0].dtype  # before 10 the mask was T

    def infer(self, ctx):
        x = ctx.inputs[0]
        return [Info(x.shape, x.dtype), Info(x.shape, self._mask_dtype(ctx))][:ctx.num_outputs]

    def kernel(self, ctx):
        n_out, mask_dtype = ctx.num_outputs, self._mask_dtype(ctx)
        default_ratio = float(ctx.attr("ratio", 0.5))
        seed = ctx.attr("seed")
        # numpy's legacy generator with the node's seed: a seeded Dropout then draws the masks
        # that the ONNX backend cases (made with np.random.seed) expect, first call first
        rng = np.random.RandomState(None if seed is None else int(seed) % 2**32)

        def dropout(x, ratio=None, training_mode=None):
            if training_mode is not None and bool(training_mode) and ctx.opset >= 12:
                r = default_ratio if ratio is None else float(ratio)
                keep = rng.uniform(0.0, 1.0, x.shape) >= r
                y = (x * keep / (1.0 - r)).astype(x.dtype) if r < 1 else np.zeros_like(x)
                return (y, keep.astype(mask_dtype))[:n_out] if n_out > 1 else y
            if n_out == 1:
                return x
            return x, np.ones(x.shape, mask_dtype)
        return dropout


@register("Expand")
class Expand(Op):
    """Broadcast to a shape (bidirectionally: the result has the larger of each dim)."""

    def infer(self, ctx):
        target = tuple(int(d) for d in np.asarray(ctx.value(1, "shape")).ravel())
        return [Info(broadcast_shapes(ctx, ctx.inputs[0].shape, target), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        def expand(x, shape, out):
            np.copyto(out, x)  # numpy broadcasts x to out's shape
        return expand
