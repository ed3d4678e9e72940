"""The on-disk cache of compiled kernels: Numba's compile results, kept safe to share.

`njit(cache=True, ...)` is numba.njit with this cache in place of Numba's own, which keys
its entries by the source file's modification time, names data files with a counter that
two processes compiling at once can both take (one's index then points at the other's
code), and unpickles whatever it finds. Here:

* an entry's file name is a hash of everything its code depends on: the function's
  module, name and line, the sha256 of its source file's contents, the ortjit, Numba and
  llvmlite versions, and Numba's own key (signature, target CPU name and features,
  bytecode); what a kernel inlines from another module changes with ortjit's version,
  not with its file (as in Numba's cache: edit such a module, clear the cache). A
  different CPU or version looks for another file and compiles; the same kernel source
  finds its entry on any machine, which is what lets `ortjit compile` ship entries;
* an entry is one file, written to a temporary name and renamed into place, with a header
  holding the sha256 of its payload: a torn, truncated or corrupted file fails the check,
  is removed and rebuilt, and is never handed to LLVM;
* loading searches the artifacts this process opened (read-only), then the cache folder
  (`config.cache_dir()`); a folder that cannot be written (read-only, full) costs the
  cache, with one warning, never the run;
* the folder is bounded: past `config.cache_max_bytes()` the least recently used files go
  (a hit touches its file);
* a load hands the entry's object code straight to the JIT and keeps the library's
  bitcode unparsed until a later compile links against it (kernel_loader._CachedLibrary):
  Numba parses it at every load, half of a kernel's load time.

This module needs no Numba: the Cache that Numba's dispatchers call lives in
kernel_loader.py, imported with Numba when the first kernel is made (jit.py).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import marshal
import os
import shutil
import sys
import threading
import time
import warnings

from . import codecache, config, jit

MAGIC = b"ORTJITK1"
FORMAT = 3   # the payload: (Numba's reduced compile result, the library's defined symbols, the
             # symbols its code links to)
SUFFIX = ".ortjitk"
_HEADER = len(MAGIC) + 32

_lock = threading.Lock()
_used: dict[str, str] = {}             # relative path -> file, of entries this process loaded or saved
_unsaved: dict[str, bytes] = {}        # relative path -> payload, of entries it could not write
_stamps: dict[str, str] = {}           # source file -> content hash
_warned: set = set()
_saves = 0
EVICT_EVERY = 64                       # saves between two checks of the folder's size


def njit(fn=None, **options):
    """numba.njit; with cache=True, compile results go through this module's cache. Made
    when Numba is first needed (jit.py): until then a Deferred stands in."""
    if fn is None:
        return lambda f: njit(f, **options)
    return jit.defer(lambda: _dispatcher(fn, options), fn)


def _dispatcher(fn, options: dict):
    import numba

    from .kernel_loader import KernelCache
    options = dict(options)
    cached = options.pop("cache", False)
    dispatcher = numba.njit(**options)(fn)
    if cached:
        dispatcher._cache = cache = KernelCache(fn)
        compile_ = dispatcher.compile

        def compile(sig):  # a compile that raises gives up its claim (see _claim)
            try:
                return compile_(sig)
            except BaseException:
                cache.release_claims()
                raise
        dispatcher.compile = compile
    return dispatcher


def compiled(source: str, filename: str):
    """compile(source, filename, "exec"), kept as an entry of this cache under
    kernels/code, by the source's hash (and Python's bytecode version): a plan's generated
    runner is compiled once per machine (ShuffleNet's: 1.7 ms to compile, 0.19 ms from
    here; DenseNet-121's 5.1 and 0.8 ms). Entries are checked, evicted and shipped in
    artifacts as the kernels' are."""
    key = hashlib.sha256(source.encode() + importlib.util.MAGIC_NUMBER).hexdigest()[:32]
    relative = os.path.join("kernels", "code", key + SUFFIX)
    for root in [*codecache.read_roots(), config.cache_dir()]:   # artifacts' first
        path = os.path.join(root, relative)
        payload = _read_entry(path)
        if payload is None:
            continue
        try:
            code = marshal.loads(payload)
        except (EOFError, ValueError, TypeError) as e:
            _discard(path, f"could not be loaded ({type(e).__name__}: {e})")
            continue
        _touch(path)
        with _lock:
            _used[relative] = path
        return code
    code = compile(source, filename, "exec")
    payload = marshal.dumps(code)
    root = config.cache_dir()
    try:
        write_entry(os.path.join(root, relative), payload)
    except OSError as e:
        _warn_once(root, f"ortjit: cannot write compiled kernels under {root} ({e}); "
                   "they will be compiled again in each process")
        with _lock:
            _unsaved[relative] = payload
        return code
    with _lock:
        _used[relative] = os.path.join(root, relative)
    _after_save(root)
    return code


def export(root: str) -> dict[str, int]:
    """Copy every entry this process loaded, saved or failed to save into the cache folder
    `root` (an artifact's); returns relative path -> size."""
    with _lock:
        files, payloads = dict(_used), dict(_unsaved)
    sizes = {}
    for relative, path in files.items():
        target = os.path.join(root, relative)
        if os.path.abspath(path) != os.path.abspath(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                shutil.copyfile(path, target)
            except FileNotFoundError:
                continue  # evicted since it was used: that kernel compiles where the folder goes
        sizes[relative] = os.path.getsize(target)
    for relative, payload in payloads.items():
        if relative not in sizes:
            write_entry(os.path.join(root, relative), payload)
            sizes[relative] = os.path.getsize(os.path.join(root, relative))
    return sizes


def _source_stamp(path: str) -> str:
    stamp = _stamps.get(path)
    if stamp is None:
        try:
            with open(path, "rb") as f:
                content = f.read()
        except OSError:
            content = path.encode()  # no file (an interactive definition): its name stands in
        # ortjit's version too: a kernel's code includes what it inlines from other modules
        # (ortjit.ops.blas's GEMM pieces, say), which its own file's contents do not show;
        # and the thread pool's wrapper (codegen/cpu/threads.py), which it holds as IR
        import llvmlite
        import numba

        from . import __version__
        versions = f"ortjit {__version__} numba {numba.__version__} llvmlite {llvmlite.__version__} python {sys.version}"
        stamp = _stamps[path] = hashlib.sha256(content + versions.encode() + _threads_source()).hexdigest()
    return stamp


@functools.lru_cache(maxsize=1)
def _threads_source() -> bytes:
    with open(os.path.join(os.path.dirname(__file__), "codegen", "cpu", "threads.py"), "rb") as f:
        return f.read()


# Claims: who compiles a kernel that is not on disk. The claim is a file next to where the
# entry will be, created exclusively, holding "host pid"; the entry's writer removes it. A
# process that finds another's claim waits for the entry instead of compiling it too, so
# that processes starting the same model at once (the compile helper and its run, a
# service's workers) each compile a share. A compile that raises gives its claim up (njit's
# wrapper); a claim whose process is gone, or older than CLAIM_STALE_S, is taken over.
CLAIM_STALE_S = 60.0
skip_claimed = False   # the compile helper: a kernel another process compiles is skipped, not awaited


class Claimed(Exception):
    """Raised instead of waiting, when skip_claimed: another process compiles this kernel."""


CLAIM_POLL_S = 0.02
_host = os.uname().nodename if hasattr(os, "uname") else ""


def _claim(path: str) -> bool:
    """True: this process compiles (claimed, or no claim possible); False: another process
    had it and is done or gone, so look on disk again."""
    claim = path + ".claim"
    try:
        os.makedirs(os.path.dirname(claim), exist_ok=True)
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if skip_claimed and not _own(claim):
            raise Claimed(claim) from None
        return _wait_for(claim)
    except OSError:
        return True  # an unwritable folder: compile, unclaimed
    with os.fdopen(fd, "w") as f:
        f.write(f"{_host} {os.getpid()}")
    return True


def _own(claim: str) -> bool:
    try:
        with open(claim) as f:
            return f.read() == f"{_host} {os.getpid()}"
    except OSError:
        return False


def _release(path: str) -> None:
    if _own(path + ".claim"):
        _remove(path + ".claim")


def _wait_for(claim: str) -> bool:
    """Wait until another process's claim is gone, its process dead, or the claim stale
    (then removed): False. True at once if the claim is this process's own (left by a
    compile that failed): compile again."""
    while True:
        try:
            with open(claim) as f:
                host, _, pid = f.read().partition(" ")
            age = time.time() - os.stat(claim).st_mtime
        except (OSError, ValueError):
            return False  # gone: the entry is written (or its writer failed)
        if host == _host and pid == str(os.getpid()):
            return True
        if age > CLAIM_STALE_S or (host == _host and pid.isdigit() and not _alive(int(pid))):
            _remove(claim)
            return False
        time.sleep(CLAIM_POLL_S)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a child killed but not yet reaped is a zombie: gone for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def write_entry(path: str, payload: bytes) -> None:
    """Header (magic, sha256 of the payload) and payload, made whole before it has its name."""
    codecache.write_atomic(path, MAGIC + hashlib.sha256(payload).digest() + payload)


def _read_entry(path: str) -> bytes | None:
    """The payload of a whole, unaltered entry; None if absent; a damaged one is removed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    payload = data[_HEADER:]
    if data[:len(MAGIC)] != MAGIC or hashlib.sha256(payload).digest() != data[len(MAGIC):_HEADER]:
        _discard(path, "is damaged (truncated or altered)")
        return None
    return payload


def _discard(path: str, why: str) -> None:
    warnings.warn(f"ortjit: the cached kernel {path} {why}; compiling it again", RuntimeWarning, stacklevel=3)
    _remove(path)  # fails for an artifact's read-only file: it is skipped each time, never loaded


def _touch(path: str) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _warn_once(key, message: str) -> None:
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _after_save(root: str) -> None:
    global _saves
    with _lock:
        _saves += 1
        due = _saves % EVICT_EVERY == 1
    if due:
        evict(root, config.cache_max_bytes())


def evict(root: str, limit: int) -> int:
    """Past `limit` bytes of kernels (compiled entries and generated sources) and optimized
    graphs (graph_cache.py) under root, remove the least recently used down to 80% of it;
    returns the bytes removed. A graph's folder goes whole, dated by its manifest."""
    items = []   # (last use, bytes, path)
    for folder, _, names in (w for sub in ("numba", "kernels") for w in os.walk(os.path.join(root, sub))):
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if name.endswith(".tmp") and st.st_mtime < time.time() - 3600:
                _remove(path)  # an entry's write that never finished (its process was killed)
                continue
            items.append((st.st_mtime, st.st_size, path))
    from . import graph_cache   # imports this module
    items += graph_cache.eviction_items(root)
    total = sum(size for _, size, _ in items)
    if total <= limit:
        return 0
    removed = 0
    for _, size, path in sorted(items):
        if total - removed <= 0.8 * limit:
            break
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed += size
        elif _remove(path):
            removed += size
    return removed


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
