"""Process-wide switches: where compiled kernels are cached, whether generated code is shown."""
from __future__ import annotations

import os
import sys

_show_code = None
_cache_dir = None
DEFAULT_CACHE_MAX_MB = 2048


def set_cache_dir(path: str | None) -> None:
    """Where this process caches compiled kernels from now on (the session config entry
    session.ortjit.cache_dir sets it; kernels are shared by all sessions of a process);
    None goes back to ORTJIT_CACHE_DIR or the default."""
    global _cache_dir
    _cache_dir = os.path.abspath(os.path.expanduser(path)) if path else None


def cache_max_bytes() -> int:
    """ORTJIT_CACHE_MAX_MB (default 2048): past it, the least recently used kernels go."""
    try:
        mb = float(os.environ.get("ORTJIT_CACHE_MAX_MB", DEFAULT_CACHE_MAX_MB))
    except ValueError:
        mb = DEFAULT_CACHE_MAX_MB
    return int(mb * 2 ** 20)


def cache_dir() -> str:
    """set_cache_dir's folder, else ORTJIT_CACHE_DIR, else the user's cache folder (XDG on Linux)."""
    if _cache_dir:
        return _cache_dir
    path = os.environ.get("ORTJIT_CACHE_DIR")
    if not path:
        if sys.platform == "win32":
            base = os.environ.get("LOCALAPPDATA", os.path.expanduser("~"))
        elif sys.platform == "darwin":
            base = os.path.expanduser("~/Library/Caches")
        else:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        path = os.path.join(base, "ortjit")
    return path


def show_code(enable: bool | None = True) -> None:
    """Print every fused kernel's generated source and every plan as it is built.

    The same switch as the environment variable ORTJIT_SHOW_CODE=1; None goes back to
    what the environment says.
    """
    global _show_code
    _show_code = enable


def showing_code() -> bool:
    if _show_code is not None:
        return _show_code
    return os.environ.get("ORTJIT_SHOW_CODE", "") not in ("", "0", "false", "False")


def emit(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def numpy_first_runs() -> bool:
    """Whether a fused elementwise loop called before Numba is imported computes that first
    call with numpy, where numpy gives the compiled loop's result bit for bit
    (codegen/elementwise.numpy_twin): a process's first run of such a model then imports
    no Numba and loads no kernel. ORTJIT_NUMPY_FIRST_RUN=0 turns it off."""
    return os.environ.get("ORTJIT_NUMPY_FIRST_RUN", "1") not in ("0", "false", "False")
