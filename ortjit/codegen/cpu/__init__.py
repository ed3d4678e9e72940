"""CPU backend: fused loops compiled by Numba (serial by default; see parallel_loop)."""
from __future__ import annotations

import os

import numpy as np

from ... import codecache, config, jit
from . import threads, vmath
from ...ops import blas
from ..elementwise import F16, F16_ROUND, ScalarProgram, collapse, numpy_call, numpy_twin, render_loop_body

# From how many elements a generated loop runs on Numba's threads (its outer loop's
# iterations handed to threads.run_parts); ORTJIT_PARALLEL_MIN_ELEMENTS overrides. Only where the GEMMs use the same
# threads (ops/blas.py): next to OpenBLAS's own pool the two fought over the cores
# (light_resnet50 270 ms a run with parallel loops from 65536 elements, 64 ms serial).
# Below about 64K elements a loop takes a few microseconds and threads do not pay; a
# parallel build compiles a second function and the thread pool's wrapper.
def parallel_loop(size: int) -> bool:
    """Whether a generated loop over `size` elements runs on Numba's threads. Below the
    default threshold this does not ask blas.threaded(), which imports Numba."""
    threshold = int(os.environ.get("ORTJIT_PARALLEL_MIN_ELEMENTS", 0))
    if threshold:
        return size >= threshold
    return size >= 1 << 16 and blas.threaded()

HEADER = "import math\nimport numpy as np\nimport numba\nfrom ortjit.kernel_cache import njit\n\n"

# Numba has no float16: a float16 step rounds its value to the nearest float16 (ties to
# even, overflow to inf, subnormals kept) and holds it as a float32, exactly as numpy's
# float32 -> float16 conversion does. Part of the generated source, so that the module
# stays self-contained and its hash covers this code too.
F16_HELPER = f'''@njit(cache=True, nogil=True)
def {F16_ROUND}(x):
    v = np.float64(x)
    a = abs(v)
    if not a < 65520.0:  # 65520 rounds up (to even) past the largest float16, 65504
        if a != a:
            return np.float32(v)
        return np.float32(math.copysign(math.inf, v))
    if a < 6.103515625e-05:  # below 2**-14: subnormal float16, spaced 2**-24
        q = 5.960464477539063e-08
    else:  # 11 significant bits
        q = math.ldexp(1.0, math.frexp(a)[1] - 11)
    return np.float32(math.copysign(np.rint(a / q) * q, v))


'''


class Vectorizer:
    """The float32 rewrite a generated loop's steps go through (exp/tanh/erf as vectorizable
    code, see vmath.py), and the module header that the rewritten code then needs."""

    def __init__(self):
        self.used = False

    def __call__(self, expr: str) -> str:
        expr, changed = vmath.vectorize(expr)
        self.used = self.used or changed
        return expr

    def header(self, program: ScalarProgram) -> str:
        return HEADER + (F16_HELPER if program.uses_float16() else "") + (vmath.SOURCE if self.used else "")


def copy_out_program(program: ScalarProgram, product_at: int, product: str, store: str, indent: str):
    """The per-element lines of a fused elementwise program run on a product as it is
    copied out (direct_conv, channel_conv, packed_gemm, gemm_epilogue), all but the other
    inputs' reads, which depend on each kernel's layout and go between `read` and `body`.
    Returns (module header, the other inputs' indices, their kernel arguments, read, body):
    read puts `product` into the program's input, body runs its steps and stores the
    result at `store`."""
    rewrite = Vectorizer()
    others = [j for j in range(len(program.inputs)) if j != product_at]
    read = [indent + f"{program.inputs[product_at]} = {product}"]
    body = [indent + line for line in program.body_lines(compiled=True, rewrite_f32=rewrite)]
    body.append(indent + f"{store} = {program.outputs[0]}")
    return rewrite.header(program), others, "".join(f", in{j}" for j in others), read, body


def bias_copy_out(product: str, store: str, bias: bool, ind_c: str, ind_p: str):
    """The copy-out lines of a convolution without a fused program (direct_conv,
    channel_conv): the product stored, plus bias[m], read once per channel, with `bias`.
    Returns (module header, per-channel lines, per-pixel lines, extra kernel arguments,
    what the kernel's docstring says it adds)."""
    per_channel = [ind_c + "bm = bias[m]"] if bias else []
    per_pixel = [ind_p + f"{store} = {product}{' + bm' if bias else ''}"]
    return HEADER, per_channel, per_pixel, "", "bias[m] +" if bias else "the value"


def render_elementwise(program: ScalarProgram, out_rank: int, in_shapes: list[tuple], parallel: bool) -> str:
    args = ", ".join([f"in{j}" for j in range(len(program.inputs))] + [f"out{j}" for j in range(len(program.outputs))])
    rewrite = Vectorizer()
    # parallel: the outer loop's iterations are the parts run_parts hands to the threads
    outer = 1 if parallel else 0
    lines = ["@njit(nogil=True, error_model='numpy')", f"def work(i0, {args}):"] if parallel else \
        ["@njit(cache=True, nogil=True, error_model='numpy')", f"def kernel({args}):"]
    for k in range(outer, out_rank):
        lines.append(f"    n{k} = out0.shape[{k}]")
    indent = "    "
    for k in range(outer, out_rank):
        lines.append(f"{indent}for i{k} in range(n{k}):")
        indent += "    "
    lines += render_loop_body(program, in_shapes, out_rank, indent, rewrite)
    if parallel:
        lines += ["", "", "@njit(cache=True, nogil=True)", f"def kernel({args}):",
                  f"    {threads.launch(True, 'out0.shape[0]', args)}"]
    return rewrite.header(program) + threads.header(parallel) + "\n".join(lines) + "\n"


def elementwise_kernel(program: ScalarProgram, out_shape: tuple, in_shapes: list[tuple]):
    """The generated loop for program; for one exact op (numpy_call) on a loop that would
    run serially, that op's numpy ufunc instead: the same pass over memory and the same
    bits, for a fraction of a call's cost (a 3x2 Mul: 0.5 against 4 us, most of it the
    dispatch of Numba's arguments), and no kernel to load or compile."""
    size = int(np.prod(out_shape, dtype=np.int64))
    direct = numpy_call(program)
    if direct is not None and not parallel_loop(size):
        return direct
    return ElementwiseKernel(program, out_shape, in_shapes)


class ElementwiseKernel:
    """A compiled fused loop plus the reshapes that map real shapes onto its collapsed ones.

    Called as kernel(*inputs, *outputs): fills the preallocated outputs. float16 inputs
    reach the compiled loop as float32 copies and float16 outputs are written through
    float32 buffers (Numba cannot type float16 arrays); both conversions are exact.
    """

    def __init__(self, program: ScalarProgram, out_shape: tuple, in_shapes: list[tuple]):
        cout, cins = collapse(out_shape, in_shapes)
        size = int(np.prod(out_shape, dtype=np.int64))
        self.parallel = parallel_loop(size)
        self.source = render_elementwise(program, len(cout), cins, self.parallel)
        self.name = program.name()
        self._fn = None
        # numpy's way to the same result, bit for bit, where there is one (numpy_twin): for
        # a first call made before Numba is imported, which then needs no Numba at all
        self.twin = numpy_twin(program)
        self._twin_used = False
        self.cout, self.cins = cout, cins
        self.n_in = len(cins)
        self.f16_in = [j for j, info in enumerate(program.in_infos) if np.dtype(info.dtype) == F16]
        self.f16_out = [j for j, dt in enumerate(program.out_dtypes) if np.dtype(dt) == F16]

    @property
    def fn(self):
        """The compiled loop, its module loaded on first use."""
        if self._fn is None:
            self._fn = codecache.load(self.name, self.source)
        return self._fn

    def _first_call_in_numpy(self, arrays) -> bool:
        """The first call, when Numba is not imported yet: numpy computes it. Only the
        first: the fused loop is faster, and a later call has it loaded (or compiled)."""
        if self.twin is None or self._twin_used or jit.is_ready() or not config.numpy_first_runs():
            return False
        self._twin_used = True
        self.twin(*arrays)
        return True

    def __call__(self, *arrays):
        fn = self._fn
        if fn is None:
            if self._first_call_in_numpy(arrays):
                return
            fn = self.fn
        ins = [np.asarray(a).reshape(s) for a, s in zip(arrays[:self.n_in], self.cins)]
        outs = [o.reshape(self.cout) for o in arrays[self.n_in:]]
        for j in self.f16_in:
            ins[j] = ins[j].astype(np.float32)
        if not self.f16_out:
            fn(*ins, *outs)
            return
        targets = list(outs)
        for j in self.f16_out:
            outs[j] = np.empty(self.cout, np.float32)
        fn(*ins, *outs)
        for j in self.f16_out:
            targets[j][...] = outs[j]  # exact: every value is already a float16
