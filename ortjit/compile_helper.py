"""Cold compiles on two cores: a forked helper compiles a plan's later kernels meanwhile.

Numba compiles a kernel the first time it is called, one at a time (a process-wide lock),
so a first run with empty caches compiles its kernels one after the other on one core:
ResNet-50 spends about 20 s so. From the start of a first run whose plan wrote new kernel
sources, or once it has had to compile a kernel (the caches are cold, then), it forks a
helper process that calls the remaining steps' kernels from the last one backwards, on
zeros of the right shapes and dtypes (constants as they are). Every kernel the helper
compiles lands in the disk cache (kernel_cache.py), where the run, going forwards, finds
it when it gets there, waiting for it if the helper is at it; the helper, finding the run
at a kernel, skips it. The two meet in the middle. The helper's results are thrown away,
its errors ignored; it is killed when the run ends.

Only where fork() is safe for what is loaded: Linux, not under Numba's OpenMP layer (its
threads do not survive fork). ORTJIT_COMPILE_HELPER=0 turns it off.
"""
from __future__ import annotations

import os
import signal
import sys
import warnings

import numpy as np

from . import jit

_compiles = [0]          # Numba compiles started in this process
_in_helper = [False]     # a helper forks no helpers of its own (a Loop body's first run would)
HEADROOM = 2 << 30       # address space the helper may add to what it inherits


def _listen(numba) -> None:
    from numba.core import event

    class _Count(event.Listener):
        def on_start(self, e):
            _compiles[0] += 1

        def on_end(self, e):
            pass

    event.register("numba:compile", _Count())


jit.on_ready(_listen)   # no compile can start before


def enabled() -> bool:
    if os.environ.get("ORTJIT_COMPILE_HELPER", "1") in ("0", "false", "False") or not hasattr(os, "fork"):
        return False
    if _in_helper[0]:
        return False
    if sys.platform != "linux" or (os.cpu_count() or 1) < 2:
        return False
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet: the layer is what config asks for
        layer = numba.config.THREADING_LAYER
    return layer != "omp"


class FirstRun:
    """The hook a plan's first run calls before each step (`at(k)`), and `close()` after."""

    def __init__(self, plan, inputs: list, bar=None):
        self.plan, self.inputs, self.bar = plan, inputs, bar
        self.active = None   # enabled(), asked when a helper would start (it imports Numba)
        self.start = _compiles[0]
        # kernel sources new on disk: they will compile, so start at once (the first
        # step's compile then has company too)
        self.cold = plan.stats.get("new_kernel_sources", 0) > 0
        self.pid = None

    def at(self, k: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.plan.steps[k].op_type)
        if (self.pid is None and self.active is not False and (self.cold or _compiles[0] > self.start)
                and k < len(self.plan.steps) - 2):
            if self.active is None:
                self.active = enabled()
            if self.active:
                self.pid = _fork_helper(self.plan, self.inputs, k)

    def close(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.pid = None


def _fork_helper(plan, inputs: list, first: int):
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns on fork() with threads running (Numba's): the helper only
            # compiles and calls kernels, and a helper stuck on a lock is killed with its run
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            pid = os.fork()
    except OSError:
        return None
    if pid:
        return pid
    try:  # the helper: never returns
        _in_helper[0] = True
        os.environ["ORTJIT_NUMPY_FIRST_RUN"] = "0"   # the helper is there to compile kernels
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        _die_with_parent()
        _limit_memory()
        from . import kernel_cache
        kernel_cache.skip_claimed = True
        _compile_backwards(plan, inputs, first)
    finally:
        os._exit(0)


def _die_with_parent() -> None:
    """A run killed outright cannot kill its helper: Linux does (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _limit_memory() -> None:
    """Zeros for data can still ask for a huge array (a shape read from data): fail it."""
    try:
        import resource  # POSIX only, as is this module's fork
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + HEADROOM, size + HEADROOM))
    except (ImportError, OSError, ValueError):
        pass


def _compile_backwards(plan, inputs: list, first: int) -> None:
    values = dict(zip(plan.input_slots, inputs))
    made = {}
    for step in plan.steps:
        for slot, info in zip(step.outs, step.out_infos):
            made[slot] = info
    for step in reversed(plan.steps[first:]):
        try:
            args = [None if i is None else _value(i, plan, values, made) for i in step.ins]
            if step.mode == "write":
                step.fn(*args, *[_value(o, plan, values, made, fresh=True) for o in step.outs])
            else:
                step.fn(*args)
        except BaseException:  # noqa: BLE001 - zeros are not real data: whatever fails, fails here
            pass


def _value(slot, plan, values: dict, made: dict, fresh: bool = False):
    if not fresh and slot in values:
        return values[slot]
    if slot not in made:          # a constant: the plan's own
        return plan.template[slot]
    info = made[slot]
    like = plan.template[slot]
    if isinstance(like, np.ndarray):  # a preallocated buffer: same dtype and shape, own memory
        return np.zeros(like.shape, like.dtype)
    return np.zeros(info.shape, info.dtype)
