"""A GEMM whose output tiles get an elementwise epilogue while they are still in cache.

C[image] = A @ B[i] is cut among Numba's threads as ops/blas.py's `split` says; each
thread runs its piece's BLAS call and then the fused elementwise program (bias, scale and
shift, residual Add, activation...) over that piece's rows and columns, in place. One
parallel region instead of two (each a wake-up of the thread team), and no second pass
over the output through memory.

The output is seen as (images, M, N): for a Conv, images x channels x pixels. Every other
input of the program is given as a 3-D array whose dims are either full or 1 (broadcast),
so the source depends on the broadcast pattern, not on the sizes.
"""
from __future__ import annotations

from . import copy_out_program, threads
from ..elementwise import ScalarProgram

# Part of every generated source: a change to blas.py's piece functions that changes
# their meaning must bump this, so that cached kernels built against the old ones (the
# disk cache keys on this file's text only) are not reused.
BLAS_PIECES_VERSION = 2


def render_gemm_epilogue(program: ScalarProgram, product_at: int, patterns: list[tuple]) -> str:
    """The kernel(parts, image0, a, b, c, in...) source. program.inputs[product_at] is the
    product's element; patterns[j] tells for input j (the others, in order) which of
    (image, row, column) it varies along."""
    header, others, _, inner, body = copy_out_program(program, product_at, "row[i2]", "row[i2]", "")
    args = ", ".join(["parts", "image0", "a", "b", "c"] + [f"in{j}" for j in others])
    lines = [f"# GEMM pieces: ortjit.ops.blas, version {BLAS_PIECES_VERSION}",
             "from ortjit.ops.blas import gemm_piece, split",
             threads.header(True),
             "",
             "@njit(nogil=True, error_model='numpy')",
             f"def work(unit, {args}):",
             "    batch, m, n = b.shape[0], a.shape[0], b.shape[2]",
             "    per, cut_n, piece = split(parts, batch, m, n)",
             "    length = n if cut_n else m",
             "    i = unit // per",
             "    lo = (unit % per) * piece",
             "    hi = min(length, lo + piece)",
             "    if hi <= lo:",
             "        return",
             "    img = image0 + i",
             "    gemm_piece(a, b, c, i, img, cut_n, lo, hi)",
             "    r0, r1, c0, c1 = (0, m, lo, hi) if cut_n else (lo, hi, 0, n)",
             "    for i1 in range(r0, r1):",
             "        row = c[img, i1, c0:c1]"]
    # per row: inputs that vary along pixels as row views (the inner loop indexes them
    # from 0, so Numba adds no wraparound checks and LLVM vectorizes it), the others as
    # scalars read once
    for j, (images, channels, pixels) in zip(others, patterns):
        at = ", ".join(["img" if images else "0", "i1" if channels else "0"])
        if pixels:
            lines.append(f"        in{j}_row = in{j}[{at}, c0:c1]")
            inner.append(f"{program.inputs[j]} = in{j}_row[i2]")
        else:
            lines.append(f"        {program.inputs[j]} = in{j}[{at}, 0]")
    lines.append("        for i2 in range(c1 - c0):")
    lines += ["            " + line for line in inner + body]
    lines += ["", "",
              "@njit(cache=True, nogil=True)",
              f"def kernel({args}):",
              "    per = split(parts, b.shape[0], a.shape[0], b.shape[2])[0]",
              f"    {threads.launch(True, 'b.shape[0] * per', args)}"]
    return header + "\n".join(lines) + "\n"
