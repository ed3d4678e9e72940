"""CPU backend: fused loops compiled by Numba (parallel only when the tensor is large)."""
from __future__ import annotations

import numpy as np

from ... import codecache
from ..elementwise import ScalarProgram, collapse, render_loop_body

# Below this many output elements threads cost more than they save, and a parallel
# compile costs about 10x a serial one (shared/design.md).
PARALLEL_MIN_ELEMENTS = 1 << 16

HEADER = "import math\nimport numpy as np\nimport numba\n\n"


def render_elementwise(program: ScalarProgram, out_rank: int, in_shapes: list[tuple], parallel: bool) -> str:
    args = ", ".join([f"in{j}" for j in range(len(program.inputs))] + [f"out{j}" for j in range(len(program.outputs))])
    lines = [HEADER + f"@numba.njit(cache=True, nogil=True, parallel={parallel}, error_model='numpy')",
             f"def kernel({args}):"]
    for k in range(out_rank):
        lines.append(f"    n{k} = out0.shape[{k}]")
    indent = "    "
    for k in range(out_rank):
        rng = "numba.prange" if parallel and k == 0 else "range"
        lines.append(f"{indent}for i{k} in {rng}(n{k}):")
        indent += "    "
    lines += render_loop_body(program, in_shapes, out_rank, indent)
    return "\n".join(lines) + "\n"


class ElementwiseKernel:
    """A compiled fused loop plus the reshapes that map real shapes onto its collapsed ones."""

    def __init__(self, program: ScalarProgram, out_shape: tuple, in_shapes: list[tuple]):
        cout, cins = collapse(out_shape, in_shapes)
        size = int(np.prod(out_shape, dtype=np.int64))
        self.parallel = size >= PARALLEL_MIN_ELEMENTS
        self.source = render_elementwise(program, len(cout), cins, self.parallel)
        self.name = program.name()
        self.fn = codecache.load(self.name, self.source)
        self.cout, self.cins = cout, cins
        self.n_in = len(cins)

    def __call__(self, *arrays):
        ins = [a.reshape(s) for a, s in zip(arrays[:self.n_in], self.cins)]
        outs = [o.reshape(self.cout) for o in arrays[self.n_in:]]
        self.fn(*ins, *outs)
