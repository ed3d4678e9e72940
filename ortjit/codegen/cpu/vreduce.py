"""row_max(address, n): the largest of n float32 at `address`, as explicit vector IR (a
Numba intrinsic), for generated kernels (Softmax's rows).

Why IR: a running maximum in a Numba loop stays scalar: LLVM vectorizes a max reduction
only when it may ignore NaN, and Numba puts no fast-math flags on the compare and select.
Measured over 131072 floats on one core of the 2-core AMD EPYC: 73 us for the plain loop,
37-43 us with 16 accumulators kept in an array, 14.5 us for this.

NaN: llvm.maxnum returns the other operand, so a NaN is skipped here (a row of only NaN,
or none at all, gives -inf); Softmax's row then turns NaN anyway through exp(NaN - max) in
its sum, as with numpy.

Generated modules paste `source()`, which carries this file's hash: the disk cache keys a
module on its own text, and this code becomes part of its machine code.
"""
from __future__ import annotations

import hashlib

from ... import jit

with open(__file__, "rb") as _f:
    FILE_HASH = hashlib.sha256(_f.read()).hexdigest()[:16]

LANES = 16


def source() -> str:
    return f"from ortjit.codegen.cpu.vreduce import row_max  # vreduce.py {FILE_HASH}\n"


@jit.intrinsic
def row_max(typingctx, address, n):
    from numba.core import types
    if not isinstance(address, types.Integer) or not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return _emit(builder, *args)
    return types.float32(types.int64, types.int64), codegen


def _emit(builder, address, n):
    from llvmlite import ir
    from numba.core import cgutils
    f32, i64 = ir.FloatType(), ir.IntType(64)
    vec = ir.VectorType(f32, LANES)
    module = builder.module
    vmax = cgutils.get_or_insert_function(module, ir.FunctionType(vec, [vec, vec]), f"llvm.maxnum.v{LANES}f32")
    smax = cgutils.get_or_insert_function(module, ir.FunctionType(f32, [f32, f32]), "llvm.maxnum.f32")
    reduce = cgutils.get_or_insert_function(module, ir.FunctionType(f32, [vec]),
                                            f"llvm.vector.reduce.fmax.v{LANES}f32")
    base = builder.inttoptr(address, f32.as_pointer())
    low_vec = ir.Constant(vec, [float("-inf")] * LANES)
    whole = builder.and_(n, ir.Constant(i64, -LANES))   # n rounded down to whole vectors

    fn = builder.function
    entry = builder.block
    vloop, vdone, tail, done = (fn.append_basic_block(name) for name in ("rm_vloop", "rm_vdone", "rm_tail", "rm_done"))
    builder.cbranch(builder.icmp_signed(">", whole, ir.Constant(i64, 0)), vloop, vdone)

    builder.position_at_end(vloop)
    i = builder.phi(i64)
    acc = builder.phi(vec)
    i.add_incoming(ir.Constant(i64, 0), entry)
    acc.add_incoming(low_vec, entry)
    v = builder.load(builder.bitcast(builder.gep(base, [i]), vec.as_pointer()), align=4)
    acc_next = builder.call(vmax, [acc, v])
    i_next = builder.add(i, ir.Constant(i64, LANES))
    i.add_incoming(i_next, vloop)
    acc.add_incoming(acc_next, vloop)
    builder.cbranch(builder.icmp_signed("<", i_next, whole), vloop, vdone)

    builder.position_at_end(vdone)
    acc_out = builder.phi(vec)
    acc_out.add_incoming(low_vec, entry)
    acc_out.add_incoming(acc_next, vloop)
    m0 = builder.call(reduce, [acc_out])
    builder.branch(tail)

    builder.position_at_end(tail)   # the last n % LANES, one at a time
    j = builder.phi(i64)
    m = builder.phi(f32)
    j.add_incoming(whole, vdone)
    m.add_incoming(m0, vdone)
    more = builder.icmp_signed("<", j, n)
    step = fn.append_basic_block("rm_step")
    builder.cbranch(more, step, done)
    builder.position_at_end(step)
    m_next = builder.call(smax, [m, builder.load(builder.gep(base, [j]))])
    j.add_incoming(builder.add(j, ir.Constant(i64, 1)), step)
    m.add_incoming(m_next, step)
    builder.branch(tail)

    builder.position_at_end(done)   # reached from the tail's test only: m is final there
    return m
