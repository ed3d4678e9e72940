"""run_parts (ortjit/codegen/cpu/threads.py): every part runs once, on the thread pool,
whatever the count and the thread count, from several Python threads at once."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from ortjit import codecache, jit
from ortjit.codegen.cpu import HEADER, threads

_SOURCE = HEADER + threads.header(True) + '''
@njit(nogil=True, error_model="numpy")
def work(part, seen, scale, thread_of):
    seen[part] += part * scale
    thread_of[part] = numba.get_thread_id()


@njit(cache=True, nogil=True)
def kernel(seen, scale, thread_of):
    {launch}
'''


@pytest.fixture(scope="module")
def kernel():
    jit.ready()
    return codecache.load("test_run_parts", _SOURCE.format(launch=threads.launch(True, "seen.size",
                                                                                "seen, scale, thread_of")))


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 64, 1001])
def test_every_part_runs_once(kernel, count):
    seen, thread_of = np.zeros(count, np.int64), np.full(count, -1, np.int64)
    kernel(seen, 3, thread_of)
    np.testing.assert_array_equal(seen, np.arange(count) * 3)
    assert (thread_of >= 0).all()


def test_parts_spread_over_threads_and_one_thread_runs_inline(kernel):
    import numba
    if numba.get_num_threads() < 2:
        pytest.skip("one thread: nothing to spread")
    seen, thread_of = np.zeros(4096, np.int64), np.full(4096, -1, np.int64)
    kernel(seen, 1, thread_of)
    # static chunks, one per thread, as a parfor's schedule: each a contiguous run
    changes = np.count_nonzero(np.diff(thread_of))
    assert changes <= numba.get_num_threads() - 1
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        seen[:] = 0
        kernel(seen, 2, thread_of)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(seen, np.arange(4096) * 2)


def test_calls_from_several_python_threads_at_once(kernel):
    results, errors = {}, []

    def call(i):
        try:
            for _ in range(50):
                seen, thread_of = np.zeros(500 + i, np.int64), np.zeros(500 + i, np.int64)
                kernel(seen, i + 1, thread_of)
                if not np.array_equal(seen, np.arange(500 + i) * (i + 1)):
                    errors.append(i)
            results[i] = True
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors and len(results) == 4


def test_a_serial_build_is_a_plain_loop_with_its_own_source():
    parallel = threads.header(True) + threads.launch(True, "n", "a, b")
    serial = threads.header(False) + threads.launch(False, "n", "a, b")
    assert "run_parts(work, n, (a, b,))" in parallel and threads.FILE_HASH in parallel
    assert serial == "for part in range(n):\n        work(part, a, b)"
