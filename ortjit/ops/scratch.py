"""Scratch memory shared by the kernels that run on one thread.

im2col columns and Winograd's transformed tiles are large (64 channels of 224x224 unroll
into 115 MB) and live only within one kernel call. Held per Conv node, VGG-19's scratch
alone added about 400 MB to a session; shared, the largest one sets the size. Each
thread has its own pool, so sessions run from several threads do not share buffers.
"""
from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def scratch(name: str, count: int, dtype) -> np.ndarray:
    """An uninitialized 1-D array of count elements, valid until the next call with this
    name on this thread. Kernels using several at once give each its own name."""
    dtype = np.dtype(dtype)
    nbytes = max(count * dtype.itemsize, 1)
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    entry = pool.get(name)
    if entry is None or entry[0].nbytes < nbytes + 63:   # room for the alignment shift too
        buf = np.empty(nbytes + 63, np.uint8)
        # 64-byte aligned, for the vector loops; found once (ndarray.ctypes costs 1-2 us)
        entry = pool[name] = (buf, -buf.ctypes.data % 64)
    buf, start = entry
    return buf[start:start + count * dtype.itemsize].view(dtype)
