"""What an op is to the compiler.

An op class tells, for one node whose input shapes are known (a plan is built for
concrete shapes), what its outputs look like (`infer`) and how to compute them
(`kernel`). Elementwise ops instead give a scalar expression, so that chains of them
can be fused into one generated loop (see ortjit/codegen).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..errors import InvalidArgument, NotImplemented


@dataclass
class Info:
    """A value known at plan time: its shape and dtype, and its data if it is static."""
    shape: tuple | None            # None for non-tensors (sequences, maps)
    dtype: Any                     # numpy dtype, or a string for non-tensors
    value: Any = None              # numpy array when known at plan time (constant or shape-derived)
    dynamic: bool = False          # known only at run time (shape, or the value is not a tensor)

    @property
    def static(self) -> bool:
        return self.value is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape is not None else 0


class NeedsRuntimeValue(NotImplemented):
    """An op needs an input's value that is not known when the plan is built."""


@dataclass
class NodeContext:
    """One node as an op sees it when a plan is built."""
    op_type: str
    name: str
    opset: int
    attrs: dict
    inputs: list                   # list[Info | None]; None for an omitted optional input
    num_outputs: int
    node: Any = None               # the onnx_ir Node (for subgraph attributes)
    extra: dict = field(default_factory=dict)

    def attr(self, name, default=None):
        v = self.attrs.get(name)
        return default if v is None else v

    def input(self, i) -> Info | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def value(self, i, what="input"):
        """The value of input i, which this op needs to know its output shape.

        Known at plan time for constants and shape-derived values. Otherwise the node
        becomes a run-time step (see ortjit/plan.py: DynamicStep), whose kernel is built
        per call signature with the actual values (`runtime_values`), recorded in `read`
        so that a kernel is reused only for the same values."""
        info = self.input(i)
        if info is None:
            return None
        if info.value is not None:
            return info.value
        runtime = self.extra.get("runtime_values")
        if runtime is None:
            raise NeedsRuntimeValue(f"{self.op_type} node '{self.name}': its {what} (input {i}) is known "
                                    "only at run time")
        self.extra.setdefault("read", set()).add(i)
        return runtime[i]

    def fail(self, message, cls=InvalidArgument):
        return cls(f"{self.op_type} node '{self.name}': {message}")


class Op:
    """Base of every op. Subclasses set op_type (and domain) and implement infer + kernel."""
    op_type: str = ""
    domain: str = ""
    # 'write': kernel(*inputs, *outputs) fills preallocated outputs (the fast path).
    # 'return': kernel(*inputs) returns its outputs (views, or non-tensor values).
    mode = "write"
    # Ops whose outputs depend only on input shapes (Shape, Size): evaluated at plan time.
    shape_only = False
    # Ops with random outputs (Dropout in training mode, random generators): never folded.
    nondeterministic = False
    # Ops always planned at run time (see ortjit/plan.py: DynamicStep): control flow,
    # sequences, data-dependent output shapes.
    dynamic = False

    def infer(self, ctx: NodeContext) -> list[Info]:
        raise NotImplementedError

    def kernel(self, ctx: NodeContext) -> Callable:
        raise NotImplementedError

    def evaluate(self, ctx: NodeContext, inputs: list) -> list:
        """Compute the outputs from concrete inputs (constant folding, plan-time values)."""
        fn = self.kernel(ctx)
        if self.mode == "return":
            out = fn(*inputs)
            if ctx.num_outputs == 1:  # the one output may itself be a list (a sequence)
                return [out]
            return list(out)
        outs = [np.empty(i.shape, i.dtype) for i in self.infer(ctx)]
        fn(*inputs, *outs)
        return outs


def broadcast_shapes(ctx: NodeContext, *shapes) -> tuple:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[s for s in shapes if s is not None]))
    except ValueError:
        raise ctx.fail("input shapes " + ", ".join(str(list(s)) for s in shapes)
                       + " cannot be broadcast together") from None


def normalize_axis(ctx: NodeContext, axis: int, rank: int, what="axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ctx.fail(f"{what} {axis} is out of range for a tensor of rank {rank}")
    return axis + rank if axis < 0 else axis


def check_index_range(ctx: NodeContext, indices: np.ndarray, bound: int, what="indices"):
    """Numba does not bounds-check: every index that comes from data is checked here first."""
    if indices.size and (indices.min() < -bound or indices.max() >= bound):
        bad = indices[(indices < -bound) | (indices >= bound)].ravel()[0]
        # ONNX Runtime reports this as INVALID_ARGUMENT
        raise InvalidArgument(f"Non-zero status code returned while running {ctx.op_type} node. Name:'{ctx.name}' "
                              f"Status Message: {what} element out of data bounds, "
                               f"idx={int(bad)} must be within the inclusive range [{-bound},{bound - 1}]")


class Elementwise(Op):
    """An op computed element by element over broadcast inputs: gives a scalar expression.

    `expr(ctx, args)` returns Python/Numba source for one element, given the variable
    names of its inputs; it must work both in Numba and in plain Python on numpy scalars.
    Chains of these ops are fused into one generated loop.
    """
    fold_with_kernel = False  # True: constant folding runs the compiled kernel, not plain Python


    def out_dtype(self, ctx: NodeContext):
        return ctx.inputs[0].dtype

    def expr(self, ctx: NodeContext, args: list[str]) -> str:
        raise NotImplementedError

    def check(self, ctx: NodeContext) -> None:
        """Raise for inputs this op cannot take (wrong dtype...)."""

    def present_inputs(self, ctx: NodeContext) -> list[int]:
        return [i for i, x in enumerate(ctx.inputs) if x is not None]

    def infer(self, ctx):
        self.check(ctx)
        wide = self._widened(ctx)
        self._check_scalar_types(wide or ctx)
        shape = broadcast_shapes(ctx, *[ctx.inputs[i].shape for i in self.present_inputs(ctx)])
        return [Info(shape, np.dtype(self.out_dtype(ctx)))]

    def _widened(self, ctx):
        """For bfloat16 / float8 / float4 operands, which Numba cannot type: the same node
        with those operands as float32 (exact), computed there and rounded once to the
        output type at the end, as ONNX Runtime computes these types. None otherwise."""
        present = [ctx.inputs[i] for i in self.present_inputs(ctx)]
        out = self.out_dtype(ctx)
        if not any(is_narrow_float(i.dtype) for i in present) and not is_narrow_float(out):
            return None
        inputs = [None if i is None else
                  Info(i.shape, np.dtype(np.float32), None if i.value is None else i.value.astype(np.float32))
                  if is_narrow_float(i.dtype) else i for i in ctx.inputs]
        wide = replace(ctx, inputs=inputs)
        if is_narrow_float(self.out_dtype(wide)):
            raise ctx.fail(f"output type {np.dtype(out)} is not supported", NotImplemented)
        return wide

    def _check_scalar_types(self, ctx):
        """Generated code handles numeric and bool tensors only (not strings, not sequences)."""
        from ..codegen.elementwise import SCALAR_TYPE
        for i in self.present_inputs(ctx):
            info = ctx.inputs[i]
            if info.shape is None or not isinstance(info.dtype, np.dtype) or info.dtype not in SCALAR_TYPE:
                raise ctx.fail(f"input {i} of type {info.dtype} is not supported", NotImplemented)
        out = self.out_dtype(ctx)
        if not isinstance(out, (np.dtype, type)) or np.dtype(out) not in SCALAR_TYPE:
            raise ctx.fail(f"output type {out} is not supported", NotImplemented)

    def program(self, ctx):
        from ..codegen.elementwise import ScalarProgram, Step
        present = self.present_inputs(ctx)
        names = [f"x{i}" for i in present]
        args = [f"x{i}" if x is not None else None for i, x in enumerate(ctx.inputs)]
        dtype = np.dtype(self.out_dtype(ctx))
        return ScalarProgram(names, [ctx.inputs[i] for i in present],
                             [Step(self, ctx, args, "y", dtype)], ["y"], [dtype])

    def kernel(self, ctx):
        from ..codegen.cpu import elementwise_kernel
        wide = self._widened(ctx)
        if wide is not None:
            return _Narrowed(self.kernel(wide), self.infer(wide)[0], len(ctx.inputs))
        out = self.infer(ctx)[0]
        program = self.program(ctx)
        k = elementwise_kernel(program, out.shape, [i.shape for i in program.in_infos])
        present, n = self.present_inputs(ctx), len(ctx.inputs)
        if len(present) == n:
            return k
        return _SkipOmitted(k, present, n)

    def evaluate(self, ctx, inputs):
        from ..codegen.elementwise import evaluate_python
        out = self.infer(ctx)[0]
        if out.size <= 4096 and not self.fold_with_kernel and self._widened(ctx) is None:
            present = self.present_inputs(ctx)
            return evaluate_python(self.program(ctx), [np.asarray(inputs[i]) for i in present], out.shape)
        return super().evaluate(ctx, inputs)


class _SkipOmitted:
    """An elementwise kernel called with its omitted optional inputs (None) left out."""

    def __init__(self, kernel, present: list[int], n_inputs: int):
        self.kernel, self.present, self.n_inputs = kernel, present, n_inputs
        self.source, self.name = kernel.source, kernel.name

    def __call__(self, *arrays):
        self.kernel(*[arrays[i] for i in self.present], *arrays[self.n_inputs:])


def is_narrow_float(dtype) -> bool:
    """bfloat16, the float8 and float4 types (ml_dtypes): stored narrow, computed in float32."""
    return isinstance(dtype, np.dtype) and dtype.type.__module__.startswith("ml_dtypes") and \
        "float" in dtype.name


class _Narrowed:
    """Runs a float32 kernel for a node on narrow float types: inputs widened, the result
    rounded to the output's type once."""

    def __init__(self, kernel, wide_out: Info, n_inputs: int):
        self.kernel, self.wide_out, self.n_inputs = kernel, wide_out, n_inputs
        self.source, self.name = getattr(kernel, "source", None), getattr(kernel, "name", "narrowed")

    def __call__(self, *arrays):
        ins = [a.astype(np.float32) if a is not None and is_narrow_float(a.dtype) else a
               for a in arrays[:self.n_inputs]]
        out = arrays[self.n_inputs]
        if out.dtype == self.wide_out.dtype:
            self.kernel(*ins, out)
            return
        tmp = np.empty(self.wide_out.shape, self.wide_out.dtype)
        self.kernel(*ins, tmp)
        out[...] = tmp.astype(out.dtype)


def widened_context(ctx: NodeContext) -> NodeContext | None:
    """The node with its narrow float inputs (bfloat16, float8) as float32, or None when it
    has none: for ops that compute such types through float32 (see widen_kernel)."""
    if not any(i is not None and is_narrow_float(i.dtype) for i in ctx.inputs):
        return None
    return replace(ctx, inputs=[None if i is None else
                                Info(i.shape, np.dtype(np.float32), None if i.value is None else i.value.astype(np.float32))
                                if is_narrow_float(i.dtype) else i for i in ctx.inputs])


def widen_kernel(op: Op, ctx: NodeContext):
    """A 'write' kernel for a node on narrow floats: the op's float32 kernel, inputs widened,
    outputs rounded back to their types once at the end."""
    wide = widened_context(ctx)
    return _Narrowed(op.kernel(wide), op.infer(wide)[0], len(ctx.inputs))
