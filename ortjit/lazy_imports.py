"""Start-up: heavy modules our dependencies import but a run never touches, loaded on first use.

onnx_ir imports sympy at its top for arithmetic on symbolic dims, which ortjit never does:
importing sympy costs about 0.6 s of a fresh process (0.15 s for all the rest of
`import onnxruntime`). Its module onnx_ir._symbolic_shapes reads sympy's functions into a
table at import, so it is deferred too.

Numba's first compile or cache load imports numba.np.arraymath, which checks that BLAS
is there by importing scipy.linalg.cython_blas when scipy is installed: 0.23 s, nearly all
of it scipy.linalg's package code (which imports numpy.f2py), none of it needed by the
cython_blas extension itself. With scipy.linalg deferred, that import loads the extension
alone; numba finds its BLAS functions there as before (we bind our own anyway).

A deferred module is the real module object, registered in sys.modules under its name
with its real spec; its code runs the first time any attribute other than its import
identity is read, so whoever does use sympy, we or the user, gets the whole module then.
(The standard library's LazyLoader does the same but also loads when `import sympy`
merely checks the module's `__spec__`, which is every import statement.)
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
import types

# what the import system reads of a module already in sys.modules, or of a package when
# it imports one of its submodules
_IDENTITY = frozenset({"__spec__", "__name__", "__class__", "__path__"})


_lock = threading.RLock()   # one thread runs a deferred module's code; others wait for it
_running: set = set()       # ids of deferred modules whose code is running now


class _Deferred(types.ModuleType):
    def __getattribute__(self, attr):
        if attr not in _IDENTITY:
            with _lock:
                if type(self) is _Deferred and id(self) not in _running:
                    _run(self)
        return types.ModuleType.__getattribute__(self, attr)  # inside its own code: as it is so far


def _run(module) -> None:
    spec = types.ModuleType.__getattribute__(module, "__spec__")
    _running.add(id(module))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)  # as a failed import leaves it: not half-made
        raise
    finally:
        _running.discard(id(module))
    object.__setattr__(module, "__class__", types.ModuleType)


def defer(name: str) -> None:
    """Register `name` to run its code on first attribute access (no-op if loaded or absent)."""
    if name in sys.modules:
        return
    parent, _, _ = name.rpartition(".")
    if parent:  # find a submodule without importing its package (which may import it)
        package = importlib.util.find_spec(parent)
        if package is None or not package.submodule_search_locations:
            return
        spec = importlib.machinery.PathFinder.find_spec(name, package.submodule_search_locations)
    else:
        spec = importlib.util.find_spec(name)
    if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
        return  # only plain Python source modules: an extension module is created, not executed
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _Deferred
    sys.modules[name] = module
