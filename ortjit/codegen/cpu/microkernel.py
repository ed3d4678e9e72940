"""A float32 GEMM micro-kernel written as explicit vector IR (a Numba intrinsic).

C[MR, NR] (+)= sum over k < kc of A[k, 0:MR] (outer) B_k[0:NR]

A is packed k-major, MR values per k (a panel of weights, packed once per plan). Row k of
B is read straight from memory at `b + offs[k]`: NR consecutive floats, no packing. That
is what makes a convolution an implicit GEMM (ops/direct_conv.py): over a zero-padded
image, tap (c, a, b) of NR consecutive output pixels reads NR consecutive input floats at
one offset per tap. The MR x NR block of C stays in vector registers for the whole kc
loop: each step loads NR/W vectors of B and broadcasts MR scalars of A into MR * NR/W
fused multiply-adds.

Why IR and not a Numba loop: LLVM keeps a Numba loop's scalar accumulators scalar (a 6x32
block of them ran at 11 GFLOP/s on one core, docs/performance.md). This one measured
107-113 GFLOP/s on one core of the 2-core AMD EPYC (AVX-512) with its operands in L1, for
tiles 8x48, 12x32, 6x64 and 14x32 alike; OpenBLAS's whole GEMM gets 64-91 there.

The tile suits the host: 8 x 48 (24 accumulators of 16 floats) with AVX-512's 32 vector
registers, 4 x 24 (12 of 8) with AVX2's 16. Without either, none: callers keep their
other paths.

Each generated kernel module pastes `source(tile)`, which carries a hash of this file, so
a change here changes the module's name and its kernels recompile (the disk cache keys on
a module's own text, not on what it imports).
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    rows: int      # MR: rows of A (broadcast scalars)
    vectors: int   # NR / lanes: vectors of B per step
    lanes: int     # W: floats per vector

    @property
    def cols(self) -> int:   # NR
        return self.vectors * self.lanes


AVX512 = Tile(8, 3, 16)
AVX2 = Tile(4, 3, 8)


def _features() -> set:
    """The CPU features Numba compiles for: NUMBA_CPU_FEATURES if set, else the host's."""
    from numba.core import config
    import llvmlite.binding as llvm
    if config.CPU_FEATURES:
        flags = config.CPU_FEATURES.split(",")
    else:
        flags = llvm.get_host_cpu_features().flatten().split(",")
    return {f[1:] for f in flags if f.startswith("+")}


@functools.lru_cache(maxsize=1)
def host_tile() -> Tile | None:
    """The tile for the CPU Numba compiles for; None without AVX2 and FMA (or when
    ORTJIT_MICROKERNEL=0). Imports Numba."""
    from ... import jit
    jit.ready()
    if os.environ.get("ORTJIT_MICROKERNEL", "1") == "0":
        return None
    features = _features()
    if {"avx512f", "fma"} <= features:
        return AVX512
    if {"avx2", "fma"} <= features:
        return AVX2
    return None


with open(__file__, "rb") as _f:
    FILE_HASH = hashlib.sha256(_f.read()).hexdigest()[:16]


def source(tile: Tile) -> str:
    """Lines for a generated module: `_microkernel`, this tile's intrinsic, and MR, NR."""
    return (f"# micro-kernel: ortjit/codegen/cpu/microkernel.py {FILE_HASH}\n"
            "from ortjit.codegen.cpu.microkernel import build as _build_microkernel\n"
            f"_microkernel = _build_microkernel({tile.rows}, {tile.vectors}, {tile.lanes})\n"
            f"MR, NR = {tile.rows}, {tile.cols}\n\n")


def narrower_source(tile: Tile) -> str:
    """Lines for a generated module: `_microkernel_<v>` for each v < the tile's vectors, the
    same kernel over the first v vectors of each row of B, for a last panel with fewer
    valid columns (its B stride unchanged), and LANES."""
    return "".join(f"_microkernel_{v} = _build_microkernel({tile.rows}, {v}, {tile.lanes})\n"
                   for v in range(1, tile.vectors)) + f"LANES = {tile.lanes}\n"


def call_by_vectors(tile: Tile, indent: str, args: str, name: str = "_microkernel", full: str = "_microkernel") -> str:
    """Source that calls the micro-kernel with `args` over `vectors` vectors of B (a
    variable of the generated code: the full tile's when it is not smaller): `<name>_<v>`
    for fewer vectors, `full` for all (gathered_source's: name "_gathered", full
    "_gathered_<the tile's vectors>")."""
    lines = []
    for v in range(1, tile.vectors):
        lines += [f"{indent}{'if' if v == 1 else 'elif'} vectors == {v}:", f"{indent}    {name}_{v}({args})"]
    if not lines:
        return f"{indent}{full}({args})\n"
    return "\n".join(lines + [f"{indent}else:", f"{indent}    {full}({args})"]) + "\n"


def gathered_source(tile: Tile) -> str:
    """Lines for a generated module: `_gathered_<v>` for v = 1 .. the tile's vectors (see
    build(gathered=True)), MR, NR and LANES."""
    return (f"# micro-kernel: ortjit/codegen/cpu/microkernel.py {FILE_HASH}\n"
            "from ortjit.codegen.cpu.microkernel import build as _build_microkernel\n"
            + "".join(f"_gathered_{v} = _build_microkernel({tile.rows}, {v}, {tile.lanes}, True)\n"
                      for v in range(1, tile.vectors + 1))
            + f"MR, NR, LANES = {tile.rows}, {tile.cols}, {tile.lanes}\n\n")


@functools.lru_cache(maxsize=None)
def build(rows: int, vectors: int, lanes: int, gathered: bool = False):
    """The intrinsic _microkernel(kc, a, b, offs, c, ldc, accumulate), all int64: a, b,
    offs and c are addresses, ldc C's row stride in floats; accumulate != 0 adds to C,
    else overwrites it. Step k reads A's MR values at a + k MR and B's NR at b + offs[k]
    (floats).

    gathered: the roles of the operands turned round for a convolution with the output
    channels in the vectors (ops/direct_conv.py's ChannelConv). `a` is then the input and
    `offs` the taps' offsets as before, `b` an array of MR int64 row offsets (one per output
    pixel), and the packed weights come as the extra last argument `w`: step k broadcasts
    input float a + row[i] + offs[k] for each row i and reads NR weights at w + k * ldw,
    ldw (the panel's width) being the argument after it."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    if gathered:
        @intrinsic
        def gathered_kernel(typingctx, kc, a, rows_at, offs, c, ldc, accumulate, w, ldw):
            sig = types.void(kc, a, rows_at, offs, c, ldc, accumulate, w, ldw)

            def codegen(context, builder, signature, args):
                _emit(builder, args[:7], rows, vectors, lanes, ir, cgutils, gather=args[7:])
                return context.get_dummy_value()
            return sig, codegen
        return gathered_kernel

    @intrinsic
    def microkernel(typingctx, kc, a, b, offs, c, ldc, accumulate):
        sig = types.void(kc, a, b, offs, c, ldc, accumulate)

        def codegen(context, builder, signature, args):
            _emit(builder, args, rows, vectors, lanes, ir, cgutils)
            return context.get_dummy_value()
        return sig, codegen
    return microkernel


def _emit(builder, args, rows, vectors, lanes, ir, cgutils, gather=None):
    kc, a_addr, b_addr, offs_addr, c_addr, ldc, accumulate = args
    f32, i64, i32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)
    vec = ir.VectorType(f32, lanes)
    vec_ptr = vec.as_pointer()
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                         f"llvm.fma.v{lanes}f32")
    a0 = builder.inttoptr(a_addr, f32.as_pointer())
    b0 = builder.inttoptr(b_addr, f32.as_pointer())
    c0 = builder.inttoptr(c_addr, f32.as_pointer())
    offs0 = builder.inttoptr(offs_addr, i64.as_pointer())
    zero = ir.Constant(vec, None)
    splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

    def const(v):
        return ir.Constant(i64, v)

    if gather is not None:   # each pixel's input address, loaded once before the loop
        rows0 = builder.inttoptr(b_addr, i64.as_pointer())
        pixels = [builder.gep(a0, [builder.load(builder.gep(rows0, [const(i)]))]) for i in range(rows)]
    entry, fn = builder.block, builder.function
    loop, done = fn.append_basic_block("mk_loop"), fn.append_basic_block("mk_done")
    builder.cbranch(builder.icmp_signed(">", kc, const(0)), loop, done)

    # the k loop: accumulators are phis, so they live in registers throughout
    builder.position_at_end(loop)
    k = builder.phi(i64)
    k.add_incoming(const(0), entry)
    acc = [[builder.phi(vec) for _ in range(vectors)] for _ in range(rows)]
    for row in acc:
        for phi in row:
            phi.add_incoming(zero, entry)
    if gather is None:
        b_row = builder.gep(b0, [builder.load(builder.gep(offs0, [k]))])
        a_k = builder.gep(a0, [builder.mul(k, const(rows))])
        scalars = [builder.gep(a_k, [const(i)]) for i in range(rows)]
    else:   # B: the packed weights' row k; A: each pixel's input at its row offset plus tap k's
        w_addr, ldw = gather
        b_row = builder.gep(builder.inttoptr(w_addr, f32.as_pointer()), [builder.mul(k, ldw)])
        tap = builder.load(builder.gep(offs0, [k]))
        scalars = [builder.gep(pixel, [tap]) for pixel in pixels]
    b = [builder.load(builder.bitcast(builder.gep(b_row, [const(j * lanes)]), vec_ptr), align=4)
         for j in range(vectors)]
    summed = []
    for i in range(rows):
        s = builder.load(scalars[i])
        s = builder.shuffle_vector(builder.insert_element(ir.Constant(vec, ir.Undefined), s, ir.Constant(i32, 0)),
                                   ir.Constant(vec, ir.Undefined), splat)
        summed.append([builder.call(fma, [s, b[j], acc[i][j]]) for j in range(vectors)])
    k_next = builder.add(k, const(1))
    body_end = builder.block
    k.add_incoming(k_next, body_end)
    for i in range(rows):
        for j in range(vectors):
            acc[i][j].add_incoming(summed[i][j], body_end)
    builder.cbranch(builder.icmp_signed("<", k_next, kc), loop, done)

    # the block of C: stored, or added to what is there
    builder.position_at_end(done)
    result = []
    for i in range(rows):
        row = []
        for j in range(vectors):
            phi = builder.phi(vec)
            phi.add_incoming(zero, entry)
            phi.add_incoming(summed[i][j], body_end)
            row.append(phi)
        result.append(row)
    add, store, after = (fn.append_basic_block(n) for n in ("mk_add", "mk_store", "mk_after"))
    builder.cbranch(builder.icmp_signed("!=", accumulate, ir.Constant(accumulate.type, 0)), add, store)
    for block, adding in ((add, True), (store, False)):
        builder.position_at_end(block)
        for i in range(rows):
            c_row = builder.gep(c0, [builder.mul(ldc, const(i))])
            for j in range(vectors):
                p = builder.bitcast(builder.gep(c_row, [const(j * lanes)]), vec_ptr)
                v = builder.fadd(builder.load(p, align=4), result[i][j]) if adding else result[i][j]
                builder.store(v, p, align=4)
        builder.branch(after)
    builder.position_at_end(after)
