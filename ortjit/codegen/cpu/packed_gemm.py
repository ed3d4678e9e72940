"""Source of a GEMM whose B is packed once per plan (MatMul and Gemm with constant weights):
see ops/packed_gemm.py for when and why. C = A @ B, optionally with a fused elementwise
program (bias, GELU, residual Add...) applied as each block is copied into C.

B comes packed as (N panels, K, NR): a panel's NR columns of row k are contiguous, so the
micro-kernel (microkernel.py) reads row k of a panel at `offs[k] = k * NR`. Each thread
packs its own rows of A as (M panels, K, MR), then runs every (row panel, column panel)
block it owns over all of K, in blocks of KC rows (a panel of A and of B then stay in
L1/L2), into its own MR x NR block buffer, and copies the block into C, through the
program when there is one. Threads take row panels where there are at least two per
thread, else column panels (then each packs all of A, which is small).

The program's other inputs come as flat arrays of the output seen as (rows, columns),
each full or broadcast along rows or columns (patterns), so the source depends on the
broadcast patterns only.
"""
from __future__ import annotations

from . import HEADER, copy_out_program, microkernel, threads
from ..elementwise import ScalarProgram

KC = 512   # rows of K per block: an MR panel of A (16 KB) in L1, an NR panel of B (96 KB) in L2

_WORK = '''
@njit(nogil=True, error_model="numpy")
def work(part, a, packed, offs, a_packs, blocks, c, dims{extra_args}):
    """Thread `part`'s blocks of C = A @ B (A as flat (M, K), C as flat (M, N)), {what}."""
    m, k, n, parts, split_m = dims
    m_panels, n_panels = (m + MR - 1) // MR, packed.shape[0]
    if split_m:
        q_lo, q_hi = part * m_panels // parts, (part + 1) * m_panels // parts
        p_lo, p_hi = 0, n_panels
    else:
        q_lo, q_hi = 0, m_panels
        p_lo, p_hi = part * n_panels // parts, (part + 1) * n_panels // parts
    if q_hi <= q_lo or p_hi <= p_lo:
        return
    ap = a_packs[part]
    for q in range(q_lo, q_hi):
        base = (q - q_lo) * k * MR
        for i in range(MR):
            r = q * MR + i
            if r < m:
                src = r * k
                for kk in range(k):
                    ap[np.uint64(base + kk * MR + i)] = a[np.uint64(src + kk)]
            else:
                for kk in range(k):
                    ap[np.uint64(base + kk * MR + i)] = 0.0
    block = blocks[part]
    a_base, b_base, o_base, c_base = ap.ctypes.data, packed.ctypes.data, offs.ctypes.data, block.ctypes.data
    for p in range(p_lo, p_hi):
        n0 = p * NR
        cols = min(NR, n - n0)
        vectors = (cols + LANES - 1) // LANES   # the last panel's: a narrower kernel
        for q in range(q_lo, q_hi):
            m0 = q * MR
            for k0 in range(0, k, KC):
                kc = min(KC, k - k0)
                a_at, b_at = a_base + ((q - q_lo) * k + k0) * MR * 4, b_base + (p * k + k0) * NR * 4
{call}            for i in range(min(MR, m - m0)):
                row = m0 + i
                dst = row * n + n0
{per_row}
                for j in range(cols):
{per_pixel}
'''

_KERNEL = '''

@njit(cache=True, nogil=True)
def kernel(a, packed, offs, a_packs, blocks, c, dims{extra_args}):
    """C = {what_short} of A @ B: each thread's share is one call of work()."""
    {launch}
'''


def render_packed_gemm(tile: microkernel.Tile, parallel: bool, program: ScalarProgram | None = None,
                       product_at: int = 0, patterns: list | None = None) -> str:
    """Module source defining kernel(a, packed, offs, a_packs, blocks, c, dims, in...). Without
    a program: c = the product. With one: c = program(product, in...), input j varying
    along (rows, columns) as patterns[j] says; each is a flat array of its own extent."""
    ind_r, ind_p = " " * 16, " " * 20
    product = "block[i, j]"
    if program is None:
        per_row, per_pixel = [], [ind_p + f"c[np.uint64(dst + j)] = {product}"]
        extra_args, what = "", "copied out"
        header = HEADER
    else:
        header, others, extra_args, per_pixel, body = copy_out_program(program, product_at, product,
                                                                       "c[np.uint64(dst + j)]", ind_p)
        what = "through the fused program as they are copied out"
        per_row = []
        for j, (rows, columns) in zip(others, patterns):
            if columns:   # varies along the columns: one base per row
                per_row.append(ind_r + f"at{j} = {'row * n' if rows else '0'} + n0")
                per_pixel.append(ind_p + f"{program.inputs[j]} = in{j}[np.uint64(at{j} + j)]")
            else:         # one value per row (or for all)
                per_row.append(ind_r + f"{program.inputs[j]} = in{j}[np.uint64({'row' if rows else '0'})]")
        per_pixel += body
    args = "a, packed, offs, a_packs, blocks, c, dims" + extra_args
    launch = threads.launch(parallel, "dims[3]", args)
    # a panel of fewer than NR valid columns (N = 256: 5 full panels and 16 columns) runs
    # the micro-kernel with just the vectors it needs; B's panel stride stays NR
    call = microkernel.call_by_vectors(tile, " " * 16, "kc, a_at, b_at, o_base, c_base, NR, k0")
    body = (_WORK + _KERNEL).format(extra_args=extra_args, what=what, call=call,
                                    what_short="the program" if program is not None else "the value",
                                    per_row="\n".join(per_row) or ind_r + "pass",
                                    per_pixel="\n".join(per_pixel), launch=launch)
    return ("# GEMM with B packed once: ortjit/codegen/cpu/packed_gemm.py\n" + header + threads.header(parallel)
            + microkernel.source(tile) + microkernel.narrower_source(tile) + f"KC = {KC}\n" + body)
