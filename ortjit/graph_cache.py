"""The optimized-graph cache: a session on a model seen before skips shape inference and
the passes, and loads the graph they made from the cache folder.

    CACHE_DIR/graphs/KEY/model.onnx              the optimized graph (artifact.MODEL)
    CACHE_DIR/graphs/KEY/model.weights           its initializers of 64 KiB and more
    CACHE_DIR/graphs/KEY/ortjit-artifact.json    passes applied, each file's size and CRC-32

KEY hashes the model file's path, size, modification time and inode (or the bytes given),
the options that change the optimized graph (optimization level, steps, free dimension
overrides) and what made it: the stamps of ortjit's own source files and the onnx,
onnx-ir and numpy versions. A model whose weights lie in other files, which the key does
not cover, is never stored. A folder is an artifact without kernels (artifact.py), loaded
the same way: its weights are memory-mapped, never read. Why: on the mid-size CNNs the
passes and shape inference were about half of a warm session's creation (ShuffleNet: 44
of 71 ms).

The session that makes a folder loads its graph back from it, as later sessions will: a
weight read from the file is a read-only array, which Numba types apart from the
writable one the passes made, and kernels compiled for one would not be found for the
other.

Made under a temporary name and renamed into place whole; a folder whose files fail the
size or CRC check (truncated, altered, half evicted) is removed and made again, never
loaded. Eviction (kernel_cache.evict) removes whole folders, least recently used first.
Models larger than MAX_MODEL_BYTES are not cached: writing and reading back the copy of
their weights costs more than the passes save (ResNet-50, 102 MB: its first session 0.9 s
longer, for 0.24 s of passes and inference a later one would skip). ORTJIT_GRAPH_CACHE=0
turns the cache off.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import zlib

from . import artifact, codecache, config, kernel_cache

FORMAT = 1
FOLDER = "graphs"
MAX_MODEL_BYTES = 64 << 20
_CHUNK = 16 << 20


def enabled() -> bool:
    return os.environ.get("ORTJIT_GRAPH_CACHE", "1") not in ("0", "false", "False")


def key(model, level: int, steps: int, overrides: dict | None) -> str | None:
    """The cache key of a model given as a path or bytes; None where the cache does not
    apply: too large, or another kind of object. (A model whose weights lie in other files,
    which the key does not cover, is never stored: see store.)"""
    if isinstance(model, (str, os.PathLike)):
        path = os.path.realpath(os.fspath(model))
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not os.path.isfile(path) or st.st_size > MAX_MODEL_BYTES:
            return None
        h = hashlib.sha256(repr((path, st.st_size, st.st_mtime_ns, st.st_ino)).encode())
    elif isinstance(model, (bytes, bytearray, memoryview)):
        if len(model) > MAX_MODEL_BYTES:
            return None
        h = hashlib.sha256(model)
    else:
        return None
    h.update(repr((FORMAT, level, steps, sorted((overrides or {}).items()), _made_by())).encode())
    return h.hexdigest()[:40]


@functools.lru_cache(maxsize=1)
def _made_by() -> tuple:
    """What the optimized graph depends on besides the model: ortjit's code (each source
    file's name, size and modification time; 0.3 ms once per process, where hashing their
    contents would take ten times that) and the libraries that read and write the graph."""
    import numpy
    import onnx
    import onnx_ir

    root = os.path.dirname(os.path.abspath(__file__))
    stamps = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                st = os.stat(os.path.join(folder, name))
                stamps.append((os.path.relpath(os.path.join(folder, name), root), st.st_size, st.st_mtime_ns))
    code = hashlib.sha256(repr(stamps).encode()).hexdigest()
    return code, onnx.__version__, onnx_ir.__version__, numpy.__version__


def folder_for(cache_key: str) -> str:
    return os.path.join(config.cache_dir(), FOLDER, cache_key)


def find(cache_key: str) -> tuple[str, list] | None:
    """(the cached model file, the passes applied) if a whole folder is there, else None
    (a damaged one is removed)."""
    folder = folder_for(cache_key)
    try:
        with open(os.path.join(folder, artifact.MANIFEST)) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        if os.path.isdir(folder):   # files without a manifest: evicted in part
            _discard(folder)
        return None
    except (OSError, ValueError):
        _discard(folder)
        return None
    try:
        files = manifest["files"]
        whole = manifest.get("format") == FORMAT and all(_fingerprint(os.path.join(folder, name)) == tuple(v)
                                                          for name, v in files.items())
    except (KeyError, TypeError, ValueError, OSError):
        whole = False
    if not whole:
        _discard(folder)
        return None
    kernel_cache._touch(os.path.join(folder, artifact.MANIFEST))   # recently used, for eviction
    return os.path.join(folder, artifact.MODEL), list(manifest.get("passes_applied", []))


def store(cache_key: str, optimized) -> tuple[str, list] | None:
    """Write the CompiledModel's optimized graph as the key's folder; returns what find
    would (the folder's model file, the passes applied), or None where it could not be
    written (with one warning for an unwritable cache folder)."""
    root = config.cache_dir()
    parent = os.path.join(root, FOLDER)
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
        optimized.save_optimized(os.path.join(tmp, artifact.MODEL), artifact.WEIGHTS)
        files = {name: list(_fingerprint(os.path.join(tmp, name)))
                 for name in (artifact.MODEL, artifact.WEIGHTS) if os.path.exists(os.path.join(tmp, name))}
        manifest = {"format": FORMAT, "passes_applied": optimized.passes_applied, "files": files}
        codecache.write_atomic(os.path.join(tmp, artifact.MANIFEST), json.dumps(manifest, indent=1).encode())
        try:
            os.rename(tmp, folder_for(cache_key))   # onto nothing, or an empty folder: atomic
        except OSError:
            if not os.path.isdir(folder_for(cache_key)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process stored it first
            tmp = None
            return find(cache_key)
        tmp = None
    except OSError as e:
        kernel_cache._warn_once(("graphs", root), f"ortjit: cannot write optimized graphs under {root} ({e}); "
                                "each session will optimize its model again")
        return None
    except Exception:  # noqa: BLE001 - a graph onnx-ir cannot serialize: this model is not cached
        return None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    kernel_cache._after_save(root)
    return os.path.join(folder_for(cache_key), artifact.MODEL), list(optimized.passes_applied)


def eviction_items(root: str) -> list:
    """(last use, bytes, folder) of each graph folder under the cache folder root, for
    kernel_cache.evict: dated by its manifest; a folder without one (left by a killed
    process) first to go, one being made now (.tmp-*, under an hour old) not listed."""
    parent = os.path.join(root, FOLDER)
    out = []
    try:
        names = os.listdir(parent)
    except OSError:
        return out
    for name in names:
        folder = os.path.join(parent, name)
        try:
            sizes = [os.stat(os.path.join(folder, f)).st_size for f in os.listdir(folder)]
            used = os.stat(os.path.join(folder, artifact.MANIFEST)).st_mtime
        except OSError:
            try:
                made = os.stat(folder).st_mtime
            except OSError:
                continue
            if name.startswith(".tmp-") and made > time.time() - 3600:
                continue
            sizes, used = [0], 0.0
        out.append((used, sum(sizes), folder))
    return out


def _fingerprint(path: str) -> tuple[int, int]:
    """(size, CRC-32): CRC-32 runs at about 3.5 GB/s here, sha256 at 1.5."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def _discard(folder: str) -> None:
    kernel_cache._warn_once(("graph", folder), f"ortjit: the cached optimized graph {folder} is damaged "
                            "(truncated or altered); optimizing the model again")
    shutil.rmtree(folder, ignore_errors=True)
