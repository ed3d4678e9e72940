"""run_parts(work, count, args): work(part, *args) for part in range(count), spread over
Numba's thread pool, without a parfor. For use inside nopython code (an intrinsic).

Why not numba.prange: Numba lowers a prange loop by compiling its body as a second
function through a whole second pipeline (type inference, parfor passes, lowering, LLVM),
inside the first. A parallel kernel compiled in 2-4 s against 1-2 s for the same code
serially (ResNet-50's max pool: 4.6 s against 2.6 s with this, same run time; docs/startup.md).
Here the body is an ordinary serial function (`work`) compiled once, and the parallel part
is a few lines of IR: a wrapper of the gufunc form that Numba's threading layers run
(`numba_parallel_for`, what parfors call), which calls work for the parts of its chunk.

Scheduling is static, as a parfor's is: the parts are cut into min(threads, count)
contiguous chunks of equal size; a layer hands the chunks to its threads (TBB may run two
on one thread). One thread, or one part, runs inline on the caller's thread.

`work` must not raise (compile it with error_model="numpy"): its status is not looked at,
as no exception can cross the thread pool. A part whose allocation failed (depthwise's and
softmax's small row buffers) would leave its share unwritten.

Serial when the kernels are not threaded (ops/blas.threaded(): no thread-safe layer), as
decided when the caller compiles. The disk cache keys a kernel on its source, not on that
decision: callers compiled both ways must be told apart by name or source
(blas.threaded_njit's serial copies; a generated module's serial build is a plain loop,
see launch()).

Kernels that call this paste FILE_HASH (generated modules) or have it in their cache key
(kernel_cache._source_stamp): the wrapper's IR is part of their compiled code.
"""
from __future__ import annotations

import hashlib
import itertools

from ... import jit

with open(__file__, "rb") as _f:
    FILE_HASH = hashlib.sha256(_f.read()).hexdigest()[:16]

_names = itertools.count()


def header(parallel: bool) -> str:
    """A generated module's import of run_parts (with this file's hash: see the module doc)."""
    return f"from ortjit.codegen.cpu.threads import run_parts  # threads.py {FILE_HASH}\n" if parallel else ""


def launch(parallel: bool, count: str, args: str, work: str = "work", indent: str = "    ") -> str:
    """Source that runs the generated module's <work>(part, <args>) for part < <count>: on
    the thread pool, or a plain loop (a serial build's source must differ from a threaded
    one's, see the module doc)."""
    if parallel:
        return f"run_parts({work}, {count}, ({args},))"
    return f"for part in range({count}):\n{indent}    {work}(part, {args})"


@jit.intrinsic
def run_parts(typingctx, work, count, args):
    from numba.core import types
    if not isinstance(args, types.BaseTuple) or not isinstance(count, types.Integer):
        return None
    work_sig = typingctx.resolve_function_type(work, (types.intp, *args.types), {})
    if work_sig is None:
        return None

    def codegen(context, builder, sig, llargs):
        from ...ops import blas
        _, n, packed = llargs
        n = context.cast(builder, n, sig.args[1], types.intp)
        compiled = work.dispatcher.overloads[work_sig.args]
        context.active_code_library.add_linking_library(compiled.library)

        def call(b, part, values):
            context.call_internal_no_propagate(b, compiled.fndesc, work_sig, [part, *values])

        values = [builder.extract_value(packed, i) for i in range(len(args))]
        if not blas.threaded():
            _serial(builder, n, lambda b, part: call(b, part, values))
            return context.get_dummy_value()
        _threaded(context, builder, n, packed, args, call)
        return context.get_dummy_value()

    return types.none(work, count, args), codegen


def _serial(builder, n, body) -> None:
    from numba.core import cgutils
    with cgutils.for_range(builder, n) as loop:
        body(builder, loop.index)


def _threaded(context, builder, n, packed, args, call) -> None:
    from llvmlite import ir
    from numba.core import cgutils
    from numba.np.ufunc.parallel import _launch_threads
    _launch_threads()   # the layer's symbols (numba_parallel_for, get_num_threads) for LLVM
    i64, i8p = ir.IntType(64), ir.IntType(8).as_pointer()
    zero, one = ir.Constant(i64, 0), ir.Constant(i64, 1)
    module = builder.module
    get_threads = cgutils.get_or_insert_function(module, ir.FunctionType(i64, []), "get_num_threads")
    chunks = builder.call(get_threads, [])
    chunks = builder.select(builder.icmp_signed("<", n, chunks), n, chunks)

    # what the wrapper reads through `data`: the part count, the chunk count, the args
    data_type = ir.LiteralStructType([i64, i64, context.get_value_type(args)])
    wrapper = _wrapper(context, module, data_type, len(args), call)

    with builder.if_else(builder.icmp_signed("<=", chunks, one)) as (inline, pooled):
        with inline:   # one thread or one part: no hand-over
            values = [builder.extract_value(packed, i) for i in range(len(args))]
            _serial(builder, n, lambda b, part: call(b, part, values))
        with pooled:
            data = cgutils.alloca_once(builder, data_type)
            builder.store(n, builder.gep(data, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 0)]))
            builder.store(chunks, builder.gep(data, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 1)]))
            builder.store(packed, builder.gep(data, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 2)]))
            # the layer gives each call args[0] + steps[0] * (its first chunk): with a null
            # base and a step of 1, that is the chunk's number
            base = cgutils.alloca_once_value(builder, ir.Constant(i8p, None))
            dims = cgutils.alloca_once_value(builder, chunks)
            steps = cgutils.alloca_once_value(builder, one)
            parallel_for = cgutils.get_or_insert_function(
                module, ir.FunctionType(ir.VoidType(), [i8p] * 5 + [i64] * 3), "numba_parallel_for")
            builder.call(parallel_for, [builder.bitcast(p, i8p) for p in (wrapper, base, dims, steps, data)]
                         + [zero, one, chunks])


def _wrapper(context, module, data_type, n_args: int, call):
    """void wrapper(char **args, intp *dims, intp *steps, void *data): chunks
    [first, first + dims[0]) of data's parts, first = (intp) args[0]."""
    from llvmlite import ir
    from numba.core import cgutils
    i64, i8p = ir.IntType(64), ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p.as_pointer(), i64.as_pointer(), i64.as_pointer(), i8p])
    wrapper = ir.Function(module, fnty, name=f"ortjit_run_parts_{next(_names)}")
    wrapper.linkage = "internal"
    b = ir.IRBuilder(wrapper.append_basic_block("entry"))
    w_args, w_dims, _, w_data = wrapper.args
    first = b.ptrtoint(b.load(w_args), i64)
    count = b.load(w_dims)
    data = b.load(b.bitcast(w_data, data_type.as_pointer()))
    n, chunks, packed = (b.extract_value(data, i) for i in range(3))
    values = [b.extract_value(packed, i) for i in range(n_args)]
    with cgutils.for_range(b, count) as chunk_loop:
        chunk = b.add(first, chunk_loop.index)
        lo = b.sdiv(b.mul(chunk, n), chunks)
        hi = b.sdiv(b.mul(b.add(chunk, ir.Constant(i64, 1)), n), chunks)
        with cgutils.for_range(b, hi, start=lo) as part_loop:
            call(b, part_loop.index, values)
    b.ret_void()
    return wrapper
