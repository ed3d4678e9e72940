"""Ahead-of-time artifacts: a folder holding an optimized model and its compiled kernels.

    OUT_DIR/model.onnx              the graph after ortjit's passes (no pass runs at load)
    OUT_DIR/model.weights           its initializers of 64 KiB and more (ONNX external data),
                                    memory-mapped by a session, never read or copied
    OUT_DIR/cache/numba/...         the kernel cache entries its plans used (kernel_cache.py)
    OUT_DIR/cache/kernels/...       the generated kernel sources they were compiled from
    OUT_DIR/ortjit-artifact.json    the manifest: versions, CPU, options, shapes, checksums

`write` compiles a model and runs it once per requested shape signature (on zeros, or
on the sample inputs given), which builds each plan and compiles or loads every kernel
it needs; the entries used are copied in. `open_artifact` checks the manifest and puts
the artifact's entries first in the kernel search path, so a first run for those shapes
loads kernels instead of compiling them, on any machine with the same CPU features and
versions. Elsewhere, or with a damaged entry, the kernel compiles as it would without an
artifact: a clear warning, never a wrong answer. Entries hold compiled code: load only
artifacts you trust, as with any Python package.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import warnings

import numpy as np

from . import codecache, kernel_cache
from .errors import InvalidArgument, InvalidProtobuf, NoSuchFile

MANIFEST = "ortjit-artifact.json"
MODEL = "model.onnx"
WEIGHTS = "model.weights"
CACHE = "cache"
FORMAT = 1


def is_artifact(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def machine() -> dict:
    """What compiled code depends on, besides its source: versions and the CPU."""
    return dict(_machine())


@functools.lru_cache(maxsize=1)
def _machine() -> dict:   # asked of LLVM once per process: half a millisecond
    import llvmlite
    import llvmlite.binding as llvm
    import numba

    from . import __version__
    return {"ortjit": __version__, "kernel_cache_format": kernel_cache.FORMAT,
            "numba": numba.__version__, "llvmlite": llvmlite.__version__,
            "python": ".".join(map(str, sys.version_info[:3])), "cpu": llvm.get_host_cpu_name(),
            "cpu_features": llvm.get_host_cpu_features().flatten()}


def sample_feed(model, shapes: dict) -> dict:
    """Zeros for each input, at the shape given by name or the model's own fixed dims."""
    feed = {}
    for spec in model.inputs:
        if spec.dtype is None:
            raise InvalidArgument(f"input '{spec.name}' is a {spec.type}: give sample inputs for it")
        shape = shapes.get(spec.name)
        if shape is None:
            if any(not isinstance(d, int) for d in spec.shape):
                raise InvalidArgument(f"input '{spec.name}' has symbolic dims {list(spec.shape)}: "
                                      f"give its shape, e.g. --shape {spec.name}=" +
                                      ",".join(str(d) if isinstance(d, int) else "1" for d in spec.shape))
            shape = spec.shape
        feed[spec.name] = np.zeros(tuple(shape), dtype=spec.dtype)
    return feed


def write(model_path, out_dir: str, signatures: list[dict] | None = None, feeds: list[dict] | None = None,
          progress=None, **options) -> dict:
    """Compile `model_path` into the folder out_dir for each signature (input name -> dims;
    names not given use the model's fixed dims) and each sample feed; returns the manifest."""
    from . import jit, passes
    from .model import CompiledModel
    jit.ready()   # before the runs: a first call made without Numba would compute in numpy, not load its kernel
    optimized = CompiledModel(model_path, **options)
    runs = [sample_feed(optimized, s) for s in (signatures or [])] + list(feeds or [])
    if not runs:
        runs = [sample_feed(optimized, {})]
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(os.path.join(out_dir, MANIFEST)):  # a folder compiled before: not one until done
        os.remove(os.path.join(out_dir, MANIFEST))
    if os.path.exists(os.path.join(out_dir, WEIGHTS)):
        os.remove(os.path.join(out_dir, WEIGHTS))
    optimized.save_optimized(os.path.join(out_dir, MODEL), WEIGHTS)
    # compiled from the saved graph, as a session opening the artifact will load it: a weight
    # read from the file is a read-only array, a kernel argument type of its own
    options = {k: v for k, v in options.items() if k not in ("optimization_level", "free_dimension_overrides")}
    model = CompiledModel(os.path.join(out_dir, MODEL), optimization_level=passes.DISABLE_ALL, mapped_weights=True,
                          **options)
    for k, feed in enumerate(runs):
        if progress:
            progress(k, len(runs), {n: list(np.shape(v)) for n, v in feed.items()})
        model.run(feed)
    sizes = kernel_cache.export(os.path.join(out_dir, CACHE))
    codecache.export(os.path.join(out_dir, CACHE))  # the sources too: a load then writes none
    entries = {relative.replace(os.sep, "/"): size for relative, size in sorted(sizes.items())}
    manifest = {"format": FORMAT, "machine": machine(),
                "passes_applied": optimized.passes_applied,
                "signatures": [{n: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
                                for n, v in feed.items()} for feed in runs],
                "model_bytes": os.path.getsize(os.path.join(out_dir, MODEL)),
                "weights_bytes": _size(os.path.join(out_dir, WEIGHTS)), "entries": entries}
    codecache.write_atomic(os.path.join(out_dir, MANIFEST), json.dumps(manifest, indent=1).encode())
    return manifest


def _size(path: str) -> int:
    """The file's size; 0 if there is none (a model without large weights has no weights file)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def open_artifact(path) -> tuple[str, list]:
    """The artifact's model file and the passes it was optimized with; registers its kernels."""
    path = os.fspath(path)
    model_file = os.path.join(path, MODEL)
    if not os.path.isfile(model_file):
        raise NoSuchFile(f"Load model from {path} failed: the ortjit artifact has no {MODEL}")
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            manifest = json.load(f)
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, this ortjit reads {FORMAT}")
    except (OSError, ValueError) as e:
        warnings.warn(f"ortjit: the artifact {path} has an unreadable manifest ({e}): its model is loaded "
                      "and its kernels compiled", RuntimeWarning, stacklevel=3)
        return model_file, []
    # its size, not a checksum: hashing VGG-19's 550 MB would take longer than loading it;
    # the protobuf parser catches damage inside, as it does for any .onnx file
    for name, key in ((MODEL, "model_bytes"), (WEIGHTS, "weights_bytes")):
        size = _size(os.path.join(path, name))
        if key in manifest and manifest[key] != size:   # weights_bytes: artifacts from before they were mapped lack it
            raise InvalidProtobuf(f"Load model from {path} failed: {name} is truncated or damaged "
                                  f"({size} bytes, written with {manifest[key]}); compile the model again")
    built, here = manifest.get("machine", {}), machine()
    differ = [k for k in here if built.get(k) != here[k]]
    if differ:
        warnings.warn(f"ortjit: the artifact {path} was compiled for another " +
                      ", ".join(f"{k} ({built.get(k)!s:.60} here: {here[k]!s:.60})" for k in differ) +
                      "; its kernels are compiled for this machine at the first run", RuntimeWarning, stacklevel=3)
    else:
        codecache.add_read_root(os.path.join(path, CACHE))  # its sources and its kernel entries
    return model_file, list(manifest.get("passes_applied", []))
