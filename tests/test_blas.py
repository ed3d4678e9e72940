"""The threaded GEMM (ortjit/ops/blas.py): every layout it reads in place, the products it
hands to numpy, and OpenBLAS's thread count left as the caller had it."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ortjit.ops import blas


def _layout(x, transposed):
    """x's values, stored transposed (a Fortran-order view) when asked."""
    return np.ascontiguousarray(x.swapaxes(-1, -2)).swapaxes(-1, -2) if transposed else x


@settings(max_examples=60, deadline=None)
@given(m=st.sampled_from([1, 2, 7, 64, 130]), k=st.sampled_from([1, 5, 64, 300]),
       n=st.sampled_from([1, 3, 49, 200]), batch=st.sampled_from([0, 1, 3]),
       ta=st.booleans(), tb=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       alpha=st.sampled_from([1.0, 0.5]), beta=st.sampled_from([0.0, 2.0]), seed=st.integers(0, 9))
def test_matmul_matches_numpy(m, k, n, batch, ta, tb, dtype, alpha, beta, seed):
    """Any mix of transposed operands, a batch with a 2-D side broadcast over it, the
    vector cases (M or N of 1, done as GEMV), small products (numpy) and large (threads)."""
    rng = np.random.default_rng(seed)
    lead = (batch,) if batch else ()
    a = _layout(rng.standard_normal(lead + (m, k)).astype(dtype), ta)
    b = _layout(rng.standard_normal((k, n)).astype(dtype), tb)   # broadcast over a's batch
    out = rng.standard_normal(lead + (m, n)).astype(dtype)
    want = alpha * np.matmul(a.astype(np.float64), b.astype(np.float64)) + beta * out
    blas.matmul(a, b, out, alpha=alpha, beta=beta)
    np.testing.assert_allclose(out, want, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-3)


def test_batched_strided_output_and_large_product():
    """A product above the small-product cutoff, through the threads, into a strided batch
    of outputs (every other matrix of a larger buffer)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 96, 128)).astype(np.float32)
    b = rng.standard_normal((4, 128, 80)).astype(np.float32)
    big = np.zeros((8, 96, 80), np.float32)
    blas.matmul(a, b, big[::2])
    np.testing.assert_allclose(big[::2], a @ b, rtol=1e-4, atol=1e-4)
    assert not big[1::2].any()


@pytest.mark.parametrize("case", ["int", "mixed", "noncontiguous_rows", "zero_k"])
def test_what_blas_cannot_do_goes_to_numpy(case):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((70, 90)).astype(np.float32)
    b = rng.standard_normal((90, 100)).astype(np.float32)
    if case == "int":
        a, b = (a * 10).astype(np.int64), (b * 10).astype(np.int64)
    elif case == "mixed":
        b = b.astype(np.float64)
    elif case == "noncontiguous_rows":
        a = rng.standard_normal((70, 180)).astype(np.float32)[:, ::2]
    else:
        a, b = a[:, :0], b[:0]
    out = np.full((70, 100), 7, np.result_type(a, b))
    blas.matmul(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not blas.threaded(), reason="numpy's BLAS is not OpenBLAS with 64-bit ints here")
def test_openblas_thread_count_is_given_back():
    """A run pins OpenBLAS to one thread (its own pool would spin next to Numba's) and
    gives the caller's count back afterwards."""
    get, put = blas._threads_calls
    before = get()
    try:
        put(2)
        previous = blas.pin_one_thread()
        assert get() == 1 and previous == 2
        a = np.ones((300, 300), np.float32)
        out = np.empty_like(a)
        blas.matmul(a, a, out)
        assert get() == 1
        blas.unpin(previous)
        assert get() == 2
    finally:
        put(before)
