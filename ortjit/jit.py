"""Numba on demand: kernels are defined when their modules are imported, Numba is imported
when the first kernel is needed.

Importing Numba takes about 0.2 s, most of what a fresh process spends creating its first
session, and a session whose first run needs no compiled kernel (steps that numpy computes
bit for bit, see codegen/elementwise.numpy_twin) need not pay it. So the modules that
define kernels import no Numba themselves:

* `kernel_cache.njit`, `intrinsic` here and `blas.threaded_njit` return a Deferred while
  Numba is not imported: it records how to make the real dispatcher (or intrinsic);
* `numba` here stands in for the module in their globals: reading any attribute of it
  (numba.get_num_threads() at plan time) imports Numba;
* `ready()` (called by the first use of a Deferred or of the stand-in, and before a
  generated kernel module runs) imports Numba, makes every Deferred's real object, and
  puts the real objects in place of the stand-ins in the globals of ortjit's modules and
  of every deferred function. Numba resolves what a kernel's code names (run_parts, the
  helpers it calls) by value when it compiles, so those must be the real objects.

Deferring the numba module itself (as lazy_imports defers sympy) does not work: Numba's
submodules then import before its package code has run, and hit a circular import.
"""
from __future__ import annotations

import os
import sys
import threading

_real = None            # the numba module, once ready() is done
_making = None          # (thread id, numba module) while ready() runs
_deferred: list = []    # Deferreds made before ready()
_on_ready: list = []    # callbacks run (with the numba module) at the end of ready()
_lock = threading.RLock()


class _NumbaStandIn:
    """`numba` for a module that must not import it yet: an attribute read imports it."""

    def __getattr__(self, name):
        return getattr(ready(), name)

    def __repr__(self):
        return "<numba, imported on first use (ortjit.jit)>"


numba = _NumbaStandIn()


class Deferred:
    """A kernel (or intrinsic) defined before Numba was imported. Called, or asked for an
    attribute (signatures, py_func, ...), it imports Numba and hands over to the real one."""

    __slots__ = ("_make", "py_func", "_real")

    def __init__(self, make, py_func):
        self._make, self.py_func, self._real = make, py_func, None

    def resolve(self):
        if self._real is None:
            ready()
        return self._real

    def __call__(self, *args, **kwargs):
        real = self._real
        return (real if real is not None else self.resolve())(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.resolve(), name)

    def __repr__(self):
        return f"<deferred kernel {getattr(self.py_func, '__qualname__', self.py_func)}>"


def defer(make, py_func):
    """make() -> the real object: now if Numba is ready (or being made ready on this
    thread), else a Deferred that ready() resolves."""
    if _real is not None or (_making is not None and _making[0] == threading.get_ident()):
        return make()
    with _lock:
        if _real is None:
            d = Deferred(make, py_func)
            _deferred.append(d)
            return d
    return make()


def unwrap(obj):
    """The real kernel behind a Deferred made ready (a call then skips the stand-in), else obj."""
    if type(obj) is Deferred and obj._real is not None:
        return obj._real
    return obj


def intrinsic(fn):
    """numba.extending.intrinsic, deferred like njit."""
    def make():
        from numba.extending import intrinsic as numba_intrinsic
        return numba_intrinsic(fn)
    return defer(make, fn)


def is_ready() -> bool:
    return _real is not None


def on_ready(callback) -> None:
    """callback(numba) at the end of ready(), on the thread that made Numba ready; at once
    if it is ready already."""
    with _lock:
        if _real is None:
            _on_ready.append(callback)
            return
    callback(_real)


def ready():
    """The numba module, imported, with every Deferred resolved and swapped in (see the
    module doc). Thread-safe; a no-op after the first call."""
    global _real, _making
    if _real is not None:
        return _real
    with _lock:
        if _real is not None:
            return _real
        if _making is not None:   # asked again while making ready, on this thread
            return _making[1]
        import numba as module
        _making = (threading.get_ident(), module)
        try:
            pending = list(_deferred)
            for d in pending:
                d._real = d._make()
            _swap(pending, module)
            _deferred.clear()
            for callback in _on_ready:
                callback(module)
            _on_ready.clear()
        except BaseException:
            for d in pending:
                d._real = None
            raise
        finally:
            _making = None
        _real = module   # last: other threads take the fast path only once all is in place
    return _real


def _swap(pending: list, module) -> None:
    stand_in = numba
    spaces = [vars(m) for name, m in list(sys.modules.items())
              if m is not None and (name == "ortjit" or name.startswith(("ortjit.", "ortjit_kernel_")))]
    spaces += [d.py_func.__globals__ for d in pending if hasattr(d.py_func, "__globals__")]
    seen = set()
    for space in spaces:
        if id(space) in seen:
            continue
        seen.add(id(space))
        for name, value in list(space.items()):
            if value is stand_in:
                space[name] = module
            elif type(value) is Deferred and value._real is not None:
                space[name] = value._real


def max_threads() -> int:
    """numba.config.NUMBA_NUM_THREADS, without importing Numba when it is not ready:
    NUMBA_NUM_THREADS from the environment, else the CPUs this process may run on."""
    if _real is not None:
        return _real.config.NUMBA_NUM_THREADS
    try:
        return max(1, int(os.environ["NUMBA_NUM_THREADS"]))
    except (KeyError, ValueError):
        pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
