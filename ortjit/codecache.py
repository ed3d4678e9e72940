"""Generated kernel source -> importable module, cached on disk under a name made of its hash.

The file must be a real module registered in sys.modules before it executes: that is
what lets Numba's `cache=True` find it again in the next process (shared/design.md).
Writes are atomic (temp file, then rename), so concurrent processes never see a torn file.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import py_compile
import sys
import tempfile
import threading

from . import config, jit

_loaded: dict[str, object] = {}
written = [0]   # kernel sources this process wrote, none on disk before: their kernels compile
_read_roots: list[str] = []   # artifacts' cache folders: their sources and entries are searched first
_roots_lock = threading.Lock()
_used: dict[str, str] = {}    # file name -> path, of the sources this process loaded


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:20]


def kernel_path(name: str, source: str) -> str:
    return os.path.join(config.cache_dir(), "kernels", f"{name}_{source_hash(source)}.py")


def write_atomic(path: str, data: bytes) -> None:
    """Write data under a temporary name in path's folder, then rename it into place: a
    reader, in this process or another, sees the old file or the whole new one."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(name: str, source: str, attr: str = "kernel"):
    """The function `attr` defined by `source`, imported from its hash-named file."""
    key = f"{name}_{source_hash(source)}"
    mod = _loaded.get(key)
    if mod is None:
        shipped = _shipped(key, source)
        path = shipped or kernel_path(name, source)
        try:
            with open(path) as f:
                fresh = f.read() != source
        except OSError:
            fresh = True
        if fresh:
            written[0] += 1
            try:
                write_atomic(path, source.encode())
            except OSError:
                # an unwritable cache folder costs the on-disk cache, not the run
                path = os.path.join(_fallback_dir(), os.path.basename(path))
                write_atomic(path, source.encode())
        if not shipped:   # an artifact's folder is not written to; it ships its bytecode
            _ensure_bytecode(path, fresh)
        jit.ready()   # the module's njit makes dispatchers, not stand-ins (jit.py)
        modname = f"ortjit_kernel_{key}"
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
        _loaded[key] = mod
        _used[os.path.basename(path)] = path
    if config.showing_code():  # every time a kernel is asked for, compiled before or not
        config.emit(f"# ---- ortjit kernel {name} ({mod.__file__})\n{source}")
    return getattr(mod, attr)


def _ensure_bytecode(path: str, fresh: bool) -> None:
    """Write the module's compiled bytecode next to it, checked by the source's hash (PEP
    552), so that a later process imports it without compiling the source again (0.16-1.4
    ms a module, median 0.26, over 40 of the cache's modules): the way Python writes
    .pyc files, which PYTHONDONTWRITEBYTECODE turns off and which would check the
    source's modification time, not its contents."""
    cfile = importlib.util.cache_from_source(path)
    if not fresh and os.path.exists(cfile):
        return
    try:
        py_compile.compile(path, cfile=cfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except (OSError, py_compile.PyCompileError):
        pass  # an unwritable folder: the import compiles the source, as without this


def _shipped(key: str, source: str) -> str | None:
    """The file holding this source in an artifact opened by this process, if one has it."""
    for root in read_roots():
        path = os.path.join(root, "kernels", f"{key}.py")
        try:
            with open(path) as f:
                if f.read() == source:
                    return path
        except OSError:
            continue
    return None


def add_read_root(root: str) -> None:
    """Search the cache folder `root` (an artifact's) before the cache folder: its kernel
    sources (root/kernels, neither written again nor counted as new) and its compiled
    entries (root/numba, kernel_cache.py)."""
    root = os.path.abspath(root)
    with _roots_lock:
        if root not in _read_roots:
            _read_roots.insert(0, root)


def read_roots() -> list[str]:
    with _roots_lock:
        return list(_read_roots)


def export(root: str) -> list[str]:
    """Copy every kernel source this process loaded into root/kernels (an artifact's), with
    its bytecode; returns their file names."""
    folder = os.path.join(root, "kernels")
    for name, path in sorted(_used.items()):
        target = os.path.join(folder, name)
        if os.path.abspath(path) != os.path.abspath(target):
            with open(path, "rb") as f:
                write_atomic(target, f.read())
            _ensure_bytecode(target, True)
    return sorted(_used)


_fallback: list = []


def _fallback_dir() -> str:
    if not _fallback:
        _fallback.append(tempfile.mkdtemp(prefix="ortjit-kernels-"))
    return _fallback[0]
