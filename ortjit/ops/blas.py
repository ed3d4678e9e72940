"""Matrix products on all threads inside one Numba parallel region.

Why not numpy's matmul: it runs on OpenBLAS's own thread pool, whose workers spin for a
while after every GEMM. Our Numba kernels (im2col, epilogues, pooling...) run on Numba's
pool; the two pools fought over the cores (ResNet-50 b1 64 -> 270 ms with parallel
loops), so our kernels had to stay serial. Here the GEMM itself is split into one piece
per Numba thread, each a single-threaded BLAS call: all threading is Numba's, and every
kernel may use it. A parallel region costs a few microseconds to open.

The BLAS: on Intel CPUs, Intel MKL's sequential library where the `mkl` wheel is installed
(x86-64), else numpy's bundled OpenBLAS (`scipy_openblas64_`), pinned to one thread during
our calls. Measured on a 2-core AVX-512 Xeon, split in two: MKL 360-430 GFLOP/s on ResNet,
BERT and MLP shapes, where OpenBLAS's own two threads give 250-350; on a 2-core AMD EPYC
with AVX-512, MKL 72-169 and OpenBLAS 136-190 on four ResNet shapes, three interleaved
runs each (docs/performance.md). Both are called with 64-bit integers (MKL's ILP64
interface). ORTJIT_BLAS=openblas or =mkl picks one; ORTJIT_THREADED_GEMM=0 turns all of
this off (numpy's matmul, serial kernels).

The BLAS functions are made known to LLVM under our own symbol names
(`llvmlite.binding.add_symbol`), so the compiled kernel refers to a name, not an address,
and Numba's on-disk cache stays valid across processes. They are bound at the first
product big enough to need them, so a model without one never loads MKL.
"""
from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.metadata
import math
import os
import threading
import types as types_module

import numpy as np

from .. import jit
from ..jit import intrinsic, numba   # Numba is imported when the first kernel is (jit.py)
from ..kernel_cache import njit
from ..codegen.cpu.threads import run_parts

_NAMES = ("ortjit_sgemm", "ortjit_dgemm", "ortjit_sgemv", "ortjit_dgemv")
_OPENBLAS_NAMES = ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", "scipy_cblas_sgemv64_", "scipy_cblas_dgemv64_")
_MKL_NAMES = ("cblas_sgemm", "cblas_dgemm", "cblas_sgemv", "cblas_dgemv")
_MKL_ILP64, _MKL_SEQUENTIAL = 1, 1


def _openblas_path():
    here = os.path.dirname(np.__file__)
    found = glob.glob(os.path.join(here, os.pardir, "numpy.libs", "libscipy_openblas64_*")) + \
        glob.glob(os.path.join(here, ".dylibs", "libscipy_openblas64_*"))
    return found[0] if found else None


def _mkl_path():
    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith("libmkl_rt.so") or (f.name.startswith("mkl_rt") and f.name.endswith(".dll")):
            path = str(f.locate())
            if os.path.exists(path):
                return path
    return None


def _intel_cpu() -> bool:
    """Whether the CPU is Intel's. MKL runs generic code paths elsewhere: on an AMD EPYC
    with AVX-512 its GEMMs measured 0.5-0.95x of OpenBLAS's (docs/performance.md)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    return False


def _choose():
    """(backend name, library path) or (None, None), from what is installed and the CPU;
    nothing loaded."""
    wanted = os.environ.get("ORTJIT_BLAS", "").lower()
    if os.environ.get("ORTJIT_THREADED_GEMM", "1") == "0" or wanted == "none":
        return None, None
    mkl = _mkl_path() if wanted == "mkl" or (wanted == "" and _intel_cpu()) else None
    if mkl:
        return "mkl", mkl
    openblas = _openblas_path()
    return ("openblas", openblas) if openblas else (None, None)


BACKEND, _PATH = _choose()
_threads_calls: list = []   # numpy's OpenBLAS's (get, set) thread-count functions, through ctypes


def _bind_openblas_threads():
    path = _openblas_path()
    if path:
        try:
            lib = ctypes.CDLL(path)
            get, put = lib.scipy_openblas_get_num_threads64_, lib.scipy_openblas_set_num_threads64_
        except (OSError, AttributeError):
            return
        get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
        _threads_calls.extend([get, put])


_bind_openblas_threads()
_bound: list = []
_bind_lock = threading.Lock()


def _bind() -> bool:
    """Loads the chosen BLAS and gives its functions our symbol names, once; False (and
    numpy from then on) if it cannot be loaded as we need it."""
    with _bind_lock:
        if not _bound:
            _bound.append(_load_backend())
    return _bound[0]


def _load_backend() -> bool:
    import llvmlite.binding as llvm
    try:
        lib = ctypes.CDLL(_PATH)
        if BACKEND == "mkl":
            # both settings hold only if MKL was not already in use in this process
            if lib.MKL_Set_Interface_Layer(_MKL_ILP64) != _MKL_ILP64 or \
                    lib.MKL_Set_Threading_Layer(_MKL_SEQUENTIAL) != _MKL_SEQUENTIAL:
                return False
        theirs = _MKL_NAMES if BACKEND == "mkl" else _OPENBLAS_NAMES
        addresses = [ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in theirs]
    except (OSError, AttributeError):
        return False
    for name, address in zip(_NAMES, addresses):
        llvm.add_symbol(name, address)
    return True


def _import_pool(layer: str) -> None:
    """Imports Numba's pool module for `layer`. TBB's needs libtbb.so.12, which the `tbb`
    wheel (a dependency of mkl's) installs under sys.prefix/lib, off the loader's path:
    loaded here first by its full path, the pool's own dependency then resolves to it."""
    try:
        importlib.import_module(f"numba.np.ufunc.{layer}pool")
        return
    except ImportError:
        if layer != "tbb":
            raise
    try:
        files = importlib.metadata.files("tbb") or []
    except importlib.metadata.PackageNotFoundError:
        raise ImportError("no TBB") from None
    for f in files:
        if f.name == "libtbb.so.12":
            ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
            importlib.import_module("numba.np.ufunc.tbbpool")
            return
    raise ImportError("no libtbb.so.12")


def _threadsafe_layer() -> bool:
    """Whether Numba has a threading layer that takes parallel calls from several Python
    threads at once (sessions may run concurrently): TBB, else OpenMP. Its 'workqueue'
    fallback aborts the process on concurrent use, so without either our kernels stay
    serial. TBB first because it survives fork(): with GNU OpenMP, a child forked after
    a run is killed at its first parallel kernel ("fork() called from a process already
    using GNU OpenMP"), which servers that fork workers would meet. OpenMP measured 3-8%
    faster on whole models here. A layer chosen through NUMBA_THREADING_LAYER is kept."""
    for layer in ("tbb", "omp"):
        try:
            _import_pool(layer)
        except (ImportError, OSError):
            continue
        if "NUMBA_THREADING_LAYER" not in os.environ:
            numba.config.THREADING_LAYER = layer
        return numba.config.THREADING_LAYER in ("threadsafe", "omp", "tbb", "safe", "default")
    return False


_threaded: list = []
_threaded_lock = threading.RLock()


def threaded() -> bool:
    """Whether our kernels use Numba's threads (run_parts): only when the GEMMs run on them too.
    Decided once, when first asked, with Numba made ready (whose threaded kernels ask too)."""
    if not _threaded:
        jit.ready()
        with _threaded_lock:
            if not _threaded:
                _threaded.append(BACKEND is not None and _threadsafe_layer())
    return _threaded[0]


# chosen when Numba is made ready, before any parallel kernel can run, whichever kernel
# (threaded_njit's or a generated parallel loop) comes first
jit.on_ready(lambda numba_module: threaded())


def threaded_njit(fn=None, **options):
    """numba.njit for a kernel that hands its parts to codegen/cpu/threads.run_parts, which
    runs them on Numba's threads when threaded(), else in a loop, as decided when the kernel
    compiles. The serial build is compiled under another name: the disk cache does not
    tell the two apart (its key is the source, the signature and the CPU), so a process
    with the other setting would load the wrong one. Other njit options pass through.
    Made when Numba is first needed, as kernel_cache.njit's kernels are."""
    if fn is None:
        return lambda f: threaded_njit(f, **options)
    return jit.defer(lambda: _threaded_dispatcher(fn, options), fn)


def _threaded_dispatcher(fn, options: dict):
    if threaded():
        return njit(cache=True, nogil=True, **options)(fn)
    serial = types_module.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                       fn.__defaults__, fn.__closure__)
    serial.__qualname__, serial.__doc__ = fn.__qualname__ + "_serial", fn.__doc__
    return njit(cache=True, nogil=True, **options)(serial)


def pin_one_thread() -> int:
    """Sets OpenBLAS to one thread for a run and returns the count to give back to
    `unpin`. A numpy matmul left in some op then runs on one core instead of waking
    OpenBLAS's workers, which would spin next to Numba's for the rest of the run."""
    if not _threads_calls:
        return 0
    previous = _threads_calls[0]()
    if previous != 1:
        _threads_calls[1](1)
    return previous


def unpin(previous: int) -> None:
    if previous > 1:
        _threads_calls[1](previous)


_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@intrinsic
def _cblas_gemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm(RowMajor, ...) on raw addresses; float32 alpha calls sgemm, float64 dgemm."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    sig = types.void(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    single = alpha == types.float32
    i32, i64 = ir.IntType(32), ir.IntType(64)

    def codegen(context, builder, signature, args):
        real = ir.FloatType() if single else ir.DoubleType()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, i64, i64,
                                               i64, i64, real, i64, i64])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "ortjit_sgemm" if single else "ortjit_dgemm")
        ta, tb, m_, n_, k_, al, a_, lda_, b_, ldb_, be, c_, ldc_ = args
        builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), builder.trunc(ta, i32), builder.trunc(tb, i32),
                          m_, n_, k_, al, a_, lda_, b_, ldb_, be, c_, ldc_])
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def _cblas_gemv(typingctx, trans, rows, cols, alpha, a, lda, x, incx, beta, y, incy):
    """cblas_?gemv(RowMajor, ...) on raw addresses: y = alpha * op(A) x + beta * y."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    sig = types.void(trans, rows, cols, alpha, a, lda, x, incx, beta, y, incy)
    single = alpha == types.float32
    i32, i64 = ir.IntType(32), ir.IntType(64)

    def codegen(context, builder, signature, args):
        real = ir.FloatType() if single else ir.DoubleType()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i64, i64, real, i64, i64, i64, i64, real,
                                               i64, i64])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "ortjit_sgemv" if single else "ortjit_dgemv")
        tr, rows_, cols_, al, a_, lda_, x_, incx_, be, y_, incy_ = args
        builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), builder.trunc(tr, i32), rows_, cols_, al, a_, lda_,
                          x_, incx_, be, y_, incy_])
        return context.get_dummy_value()
    return sig, codegen


@njit(inline="always")
def _vector_piece(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, lo, hi, itemsize):
    """Outputs lo:hi of a product whose M or N is 1, as a matrix-vector product (OpenBLAS's
    GEMM runs a 1-row product several times slower than its GEMV)."""
    if m == 1:   # c[0, lo:hi] = op(B)[:, lo:hi]^T a, a's K values `inc_a` apart
        inc_a = 1 if trans_a == _NO_TRANS else lda
        if trans_b == _NO_TRANS:   # B is (K, N), rows ldb apart
            _cblas_gemv(_TRANS, k, hi - lo, alpha, b + lo * itemsize, ldb, a, inc_a, beta, c + lo * itemsize, 1)
        else:                      # B is stored (N, K)
            _cblas_gemv(_NO_TRANS, hi - lo, k, alpha, b + lo * ldb * itemsize, ldb, a, inc_a, beta,
                        c + lo * itemsize, 1)
    else:        # n == 1: c[lo:hi, 0] = op(A)[lo:hi] b, b's K values `inc_b` apart
        inc_b = ldb if trans_b == _NO_TRANS else 1
        if trans_a == _NO_TRANS:   # A is (M, K)
            _cblas_gemv(_NO_TRANS, hi - lo, k, alpha, a + lo * lda * itemsize, lda, b, inc_b, beta,
                        c + lo * ldc * itemsize, ldc)
        else:                      # A is stored (K, M)
            _cblas_gemv(_TRANS, k, hi - lo, alpha, a + lo * itemsize, lda, b, inc_b, beta,
                        c + lo * ldc * itemsize, ldc)


@njit(inline="always")
def split(parts, batch, m, n):
    """How a batch of m x n products is cut among `parts` threads: (pieces per matrix,
    whether along N, piece length). Each matrix is cut into pieces along N (wide outputs)
    or M, as few as give every thread the same number. Over the GEMMs of five CNNs,
    cutting along M wherever M had 32 rows a piece took the same total time. Pieces are
    whole 16-column (or 4-row) blocks, so that no thread gets a ragged sliver. Piece p of a
    matrix covers [p * length, min(p * length + length, n or m))."""
    # whole matrices when they share out evenly (8 images on 2 threads) or are many, else
    # cut so that the pieces do (3 images on 2 threads: 2 pieces each, 3 per thread)
    per = 1 if batch >= 4 * parts else parts // math.gcd(batch, parts)
    cut_n = n >= m or n >= 256 * per
    total = n if cut_n else m
    align = 16 if cut_n else 4
    return per, cut_n, ((total + per - 1) // per + align - 1) // align * align


@njit(inline="always")
def gemm_piece(a, b, c, i, image, cut_n, lo, hi):
    """c[image] (rows or columns lo:hi, as `split` cut it) = a @ b[i]: a (M, K), b (batch,
    K, N) C-contiguous float32 or float64, c (images, M, N) the same but for its images,
    which may lie apart (a Concat's part: see plan._concat_views)."""
    m, k, n = a.shape[0], a.shape[1], b.shape[2]
    item = c.itemsize
    bi = b.ctypes.data + i * k * n * item
    ci = c.ctypes.data + image * c.strides[0]
    one, zero = c.dtype.type(1), c.dtype.type(0)
    if cut_n:
        _cblas_gemm(_NO_TRANS, _NO_TRANS, m, hi - lo, k, one, a.ctypes.data, k, bi + lo * item, n,
                    zero, ci + lo * item, n)
    else:
        _cblas_gemm(_NO_TRANS, _NO_TRANS, hi - lo, n, k, one, a.ctypes.data + lo * k * item, k, bi, n,
                    zero, ci + lo * n * item, n)


@njit(nogil=True, error_model="numpy")
def _gemm_unit(unit, parts, batch, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b,
               beta, c, ldc, stride_c, itemsize):
    """Piece `unit` of _gemm's products."""
    per, cut_n, piece = split(parts, batch, m, n)
    vector = m == 1 or n == 1
    length = n if cut_n else m
    i, p = unit // per, unit % per
    lo = p * piece
    hi = min(length, lo + piece)
    if hi > lo:
        ai = a + i * stride_a * itemsize
        bi = b + i * stride_b * itemsize
        ci = c + i * stride_c * itemsize
        if vector:
            _vector_piece(trans_a, trans_b, m, n, k, alpha, ai, lda, bi, ldb, beta, ci, ldc, lo, hi, itemsize)
        elif cut_n:
            step_b = ldb if trans_b != _NO_TRANS else 1
            _cblas_gemm(trans_a, trans_b, m, hi - lo, k, alpha, ai, lda, bi + lo * step_b * itemsize, ldb,
                        beta, ci + lo * itemsize, ldc)
        else:
            step_a = 1 if trans_a != _NO_TRANS else lda
            _cblas_gemm(trans_a, trans_b, hi - lo, n, k, alpha, ai + lo * step_a * itemsize, lda, bi, ldb,
                        beta, ci + lo * ldc * itemsize, ldc)


@njit(cache=True, nogil=True)  # kernel_cache's: one cache for every kernel, artifacts included
def _gemm(parts, batch, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b,
          beta, c, ldc, stride_c, itemsize):
    """C[i] = alpha * op(A[i]) @ op(B[i]) + beta * C[i] for i < batch, on addresses and
    element strides, cut among the threads as `split` says."""
    per = split(parts, batch, m, n)[0]
    run_parts(_gemm_unit, batch * per, (parts, batch, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb,
                                        stride_b, beta, c, ldc, stride_c, itemsize))


@njit(inline="always")
def _operand(x, rows, cols, batched):
    """(transpose flag, leading dimension, batch stride) in elements for a stack of
    matrices that BLAS can read in place; flag 0 where it cannot. An operand that is not
    batched is one matrix for every product (batch stride 0)."""
    item = x.itemsize
    rs, cs = x.strides[1] // item, x.strides[2] // item
    batch = x.strides[0] // item if batched else 0
    if cs == 1 and (rs >= max(cols, 1) or rows == 1):
        return _NO_TRANS, max(rs, cols, 1), batch
    if rs == 1 and (cs >= max(rows, 1) or cols == 1):
        return _TRANS, max(cs, rows, 1), batch
    return 0, 0, 0


def _launch_kernel(a, b, c, a_batched, b_batched, alpha, beta, parts):
    """Checks that a, b, c (3-D; a and b batched or one matrix for all products) are a
    product BLAS can do in place and runs it as _gemm; False where it cannot (the caller
    then uses numpy). Compiled once per dtype (see _launcher)."""
    m, k, n = a.shape[1], a.shape[2], b.shape[2]
    batch = c.shape[0]
    if b.shape[1] != k or c.shape[1] != m or c.shape[2] != n or \
            (a_batched and a.shape[0] != batch) or (b_batched and b.shape[0] != batch):
        return False
    ta, lda, sa = _operand(a, m, k, a_batched)
    tb, ldb, sb = _operand(b, k, n, b_batched)
    tc, ldc, sc = _operand(c, m, n, True)
    if ta == 0 or tb == 0 or tc != _NO_TRANS or m == 0 or n == 0 or k == 0:
        return False
    _gemm(parts, batch, ta, tb, m, n, k, c.dtype.type(alpha), a.ctypes.data, lda, sa, b.ctypes.data, ldb, sb,
          c.dtype.type(beta), c.ctypes.data, ldc, sc, c.itemsize)
    return True


_launchers: dict = {}
_launchers_lock = threading.Lock()


def _launcher(dtype):
    """_launch_kernel for dtype, compiled (or loaded) for one signature: any-layout 3-D
    arrays, a and b read-only. Numba passes arrays of every layout and writability to it
    (their types convert; the call costs the same), where it would otherwise compile the
    launcher, and _gemm linked into it, once per combination: 0.5-1.5 s each, three in
    ResNet-50 (the Winograd stacks, 1x1 convolutions, the classifier's read-only
    transposed weight)."""
    launch = _launchers.get(dtype)
    if launch is None:
        with _launchers_lock:
            launch = _launchers.get(dtype)
            if launch is None:
                item = numba.from_dtype(dtype)
                read, write = (numba.types.Array(item, 3, "A", readonly=True),
                               numba.types.Array(item, 3, "A"))
                launch = njit(cache=True, nogil=True)(_launch_kernel)
                launch.compile((read, read, write, numba.types.boolean, numba.types.boolean,
                                numba.types.float64, numba.types.float64, numba.types.int64))
                launch.disable_compile()
                _launchers[dtype] = launch
    return launch


# Products under this many multiply-adds (about 10 us on one core) go to numpy's matmul:
# on one thread in a run (see pin_one_thread), and without the cost of a parallel region.
SMALL = 1 << 19
_REALS = (np.dtype(np.float32), np.dtype(np.float64))


def ready(dtype) -> bool:
    """Whether products of this dtype run on our threads (the BLAS bound, or bindable)."""
    return threaded() and np.dtype(dtype) in _REALS and (_bound[0] if _bound else _bind())


def matmul(a, b, out, alpha=1.0, beta=0.0):
    """out = alpha * a @ b + beta * out for float32/float64 2-D or 3-D operands (a 2-D one
    broadcast over the other's batch), out's rows contiguous; numpy does what this cannot."""
    if out.dtype in _REALS and threaded() and a.dtype == out.dtype and b.dtype == out.dtype \
            and 2 <= out.ndim <= 3 and 2 <= a.ndim <= out.ndim and 2 <= b.ndim <= out.ndim \
            and a.shape[-2] * a.shape[-1] * b.shape[-1] * (out.shape[0] if out.ndim == 3 else 1) >= SMALL \
            and (_bound[0] if _bound else _bind()):
        # OpenBLAS called from our threads must not start threads of its own
        previous = pin_one_thread() if BACKEND == "openblas" else 0
        try:
            done = _launcher(out.dtype)(a if a.ndim == 3 else a[None], b if b.ndim == 3 else b[None],
                                        out if out.ndim == 3 else out[None], a.ndim == 3, b.ndim == 3,
                                        float(alpha), float(beta), numba.get_num_threads())
        finally:
            unpin(previous)
        if done:
            return out
    return _numpy_matmul(a, b, out, alpha, beta)


def _numpy_matmul(a, b, out, alpha, beta):
    if alpha == 1.0 and beta == 0.0:
        return np.matmul(a, b, out=out)
    product = np.matmul(a, b)
    if alpha != 1.0:
        np.multiply(product, alpha, out=product, casting="unsafe")
    if beta != 0.0:
        product += beta * out
    out[...] = product
    return out
