"""Fused elementwise kernels: a small scalar program over broadcast inputs.

A program is a list of steps, each an elementwise op applied to earlier variables. The
generated kernel loops over the output once, computing every step per element; inputs
that broadcast are indexed with 0 on their broadcast dims. Dims are collapsed first so
the loop nest is as shallow as the broadcast pattern allows (often one flat loop), which
keeps the kernel source independent of the actual sizes: one kernel serves all shapes
with the same broadcast pattern.

float16: Numba has no float16 scalars (nor float16 arrays), so a compiled kernel sees
float16 inputs as float32 arrays (converted exactly by the caller, see
ortjit/codegen/cpu) and writes float16 outputs to float32 arrays the caller copies back.
Every step whose type is float16 rounds its value to the nearest float16 (`_f16`, ties
to even, overflow to inf) and keeps it as a float32, as numpy's float16 loops do; plain
Python evaluation (constant folding) does the same with numpy's float16 conversion.
"""
from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field

import numpy as np

from ..ops.base import Info

# numpy scalar constructors usable in generated code (numba and plain Python alike);
# float16 is np.float16 in plain Python and F16_ROUND in Numba code (see the module doc)
SCALAR_TYPE = {
    np.dtype(np.float32): "np.float32", np.dtype(np.float64): "np.float64", np.dtype(np.float16): "np.float16",
    np.dtype(np.int8): "np.int8", np.dtype(np.int16): "np.int16", np.dtype(np.int32): "np.int32",
    np.dtype(np.int64): "np.int64", np.dtype(np.uint8): "np.uint8", np.dtype(np.uint16): "np.uint16",
    np.dtype(np.uint32): "np.uint32", np.dtype(np.uint64): "np.uint64", np.dtype(np.bool_): "np.bool_",
}
F16 = np.dtype(np.float16)
F16_ROUND = "_f16"


@dataclass
class Step:
    op: object          # an Elementwise op
    ctx: object         # its NodeContext (dtypes of its inputs, attributes)
    args: list          # variable names of its inputs
    out: str            # variable name of its result
    dtype: np.dtype


@dataclass
class ScalarProgram:
    inputs: list[str]                 # variable names bound to the kernel's inputs
    in_infos: list[Info]
    steps: list[Step] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    out_dtypes: list = field(default_factory=list)

    def name(self) -> str:
        ops = []
        for s in self.steps:
            n = s.op.op_type.lower()
            if n not in ops:
                ops.append(n)
        return "fused_" + "_".join(ops[:6]) + ("_etc" if len(ops) > 6 else "")

    def uses_float16(self) -> bool:
        return any(np.dtype(s.dtype) == F16 for s in self.steps)

    def body_lines(self, compiled: bool = False, rewrite_f32=None) -> list[str]:
        """One typed assignment per step; `compiled`: for Numba (float16 rounded by F16_ROUND).
        rewrite_f32: the backend's rewrite of float32 steps' expressions (faster math)."""
        lines = []
        for s in self.steps:
            expr = s.op.expr(s.ctx, s.args)
            dtype = np.dtype(s.dtype)
            if rewrite_f32 is not None and dtype == np.float32:
                expr = rewrite_f32(expr)
            if dtype == F16:  # rounded to float16, held as float32 (see the module doc)
                lines.append(f"{s.out} = {F16_ROUND}({expr})" if compiled else
                             f"{s.out} = np.float32(np.float16({expr}))")
            else:
                lines.append(f"{s.out} = {SCALAR_TYPE[dtype]}({expr})")
        return lines


def collapse(out_shape: tuple, in_shapes: list[tuple]) -> tuple[tuple, list[tuple]]:
    """Merge adjacent dims that broadcast alike in every input; drop size-1 output dims.

    Returns the collapsed output shape and each input's collapsed shape (1 where it broadcasts).
    """
    rank = len(out_shape)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in in_shapes]
    dims, patterns = [], []
    for d in range(rank):
        if out_shape[d] == 1:
            continue
        pat = tuple(p[d] == out_shape[d] for p in padded)
        if dims and patterns[-1] == pat:
            dims[-1] *= out_shape[d]
        else:
            dims.append(out_shape[d])
            patterns.append(pat)
    if not dims:
        return (1,), [(1,) for _ in in_shapes]
    ins = [tuple(dims[k] if patterns[k][i] else 1 for k in range(len(dims))) for i in range(len(in_shapes))]
    return tuple(dims), ins


def render_loop_body(program: ScalarProgram, in_shapes: list[tuple], rank: int, indent: str,
                     rewrite_f32=None) -> list[str]:
    idx = [f"i{k}" for k in range(rank)]
    lines = []
    for name, var, shape in zip([f"in{j}" for j in range(len(program.inputs))], program.inputs, in_shapes):
        sub = ", ".join(idx[k] if shape[k] != 1 else "0" for k in range(rank))
        lines.append(f"{var} = {name}[{sub}]")
    lines += program.body_lines(compiled=True, rewrite_f32=rewrite_f32)
    sub = ", ".join(idx)
    for j, var in enumerate(program.outputs):
        lines.append(f"out{j}[{sub}] = {var}")
    return [indent + line for line in lines]


def evaluate_python(program: ScalarProgram, arrays: list[np.ndarray], out_shape: tuple) -> list[np.ndarray]:
    """Run the program element by element in plain Python: for folding small constants
    without paying a compile."""
    import math  # noqa: F401 - used by expressions
    code = compile("\n".join(program.body_lines()), "<ortjit-fold>", "exec")
    outs = [np.empty(out_shape, dt) for dt in program.out_dtypes]
    # float16 values are held as float32, as in compiled kernels: a float literal then
    # compares with them in float32, not rounded to float16 by numpy's weak-scalar rule
    bcast = [np.broadcast_to(a.astype(np.float32) if a.dtype == F16 else a, out_shape) for a in arrays]
    scope = {"np": np, "math": __import__("math")}
    for idx in np.ndindex(*out_shape):
        env = dict(scope)
        for var, a in zip(program.inputs, bcast):
            env[var] = a[idx]
        with np.errstate(all="ignore"):
            exec(code, env)
        for o, var in zip(outs, program.outputs):
            o[idx] = env[var]
    return outs


# Ops whose numpy ufunc gives what the compiled kernel computes, bit for bit, on operands
# of the step's own dtype (by dtype kind): IEEE 754's correctly rounded +, -, *, / in that
# float type (no fused multiply-add: the kernels are compiled without fastmath), and the
# wrap-around of the integer +, -, * (Numba computes those in 64 bits, then narrows to
# the step's type: the same low bits). float16 is left out: the kernels round it by hand.
_EXACT_UFUNCS = {"Add": (np.add, "fiu"), "Sub": (np.subtract, "fiu"), "Mul": (np.multiply, "fiu"),
                 "Div": (np.divide, "f"), "Neg": (np.negative, "f"), "Abs": (np.absolute, "f")}


def _exact_steps(program: ScalarProgram) -> list | None:
    """(ufunc, argument names, result name) per step; None unless every step is an
    _EXACT_UFUNCS op on operands of its own dtype."""
    dtypes = {var: np.dtype(info.dtype) for var, info in zip(program.inputs, program.in_infos)}
    steps = []
    for s in program.steps:
        ufunc, kinds = _EXACT_UFUNCS.get(s.op.op_type, (None, "")) if s.op.domain == "" else (None, "")
        dtype = np.dtype(s.dtype)
        if ufunc is None or dtype.kind not in kinds or dtype == F16 or \
                any(a is None or dtypes.get(a) != dtype for a in s.args):
            return None
        dtypes[s.out] = dtype
        steps.append((ufunc, s.args, s.out))
    return steps


def numpy_twin(program: ScalarProgram):
    """fn(*inputs, *outputs), filling the outputs as the compiled kernel would, with numpy's
    array operations; None unless every step is exact (_exact_steps). A whole-array
    operation per step, so meant for a first call (no compile, no kernel load), not
    instead of the fused loop."""
    steps = _exact_steps(program)
    if steps is None:
        return None
    inputs, outputs = list(program.inputs), list(program.outputs)

    def twin(*arrays):
        values = dict(zip(inputs, arrays))
        with np.errstate(all="ignore"):
            for ufunc, args, out in steps:
                values[out] = ufunc(*[values[a] for a in args])
        for var, target in zip(outputs, arrays[len(inputs):]):
            target[...] = values[var]
    return twin


def numpy_call(program: ScalarProgram):
    """For a program of one exact op (_exact_steps): fn(*inputs, out) calling that op's
    numpy ufunc into out, with floating-point errors ignored as the kernel's arithmetic
    ignores them (no warnings); None for other programs."""
    steps = _exact_steps(program)
    if steps is None or len(steps) != 1:
        return None
    ((ufunc, args, _),) = steps
    order = [program.inputs.index(a) for a in args]
    if order == [0, 1]:
        def call(a, b, out):
            _quiet().run(ufunc, a, b, out)
    elif order == [0]:
        def call(a, out):
            _quiet().run(ufunc, a, out)
    else:
        def call(*arrays):
            _quiet().run(ufunc, *[arrays[k] for k in order], arrays[-1])
    call.name, call.source = f"numpy.{ufunc.__name__}", None
    return call


_contexts = threading.local()


def _quiet() -> contextvars.Context:
    """This thread's context in which numpy ignores floating-point errors: entering it
    costs a tenth of np.errstate's (0.1 against 1.3 us measured)."""
    try:
        return _contexts.quiet
    except AttributeError:
        quiet = _contexts.quiet = contextvars.copy_context()
        quiet.run(np.seterr, all="ignore")
        return quiet
