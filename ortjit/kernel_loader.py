"""Numba's side of the kernel cache (kernel_cache.py): the Cache that Numba's dispatchers
call, and a load faster than Numba's. Imported with Numba, when the first kernel is made
(jit.py); kernel_cache.py keeps the entries' files, claims and eviction, which need no Numba.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import os
import pickle
import sys

import llvmlite.binding as ll
from numba.core import codegen as numba_codegen, compiler
from numba.core.caching import Cache, CompileResultCacheImpl, _CacheLocator

from . import codecache, config
from . import kernel_cache as store


class _Locator(_CacheLocator):
    """Numba asks a locator where entries live and how fresh the source is; ours answers
    by module name and content, not by the file's path and modification time."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._module = py_func.__module__

    def ensure_cache_path(self):
        pass

    def get_cache_path(self):
        return os.path.join(config.cache_dir(), "numba", self._module)

    def get_source_stamp(self):
        return store._source_stamp(self._py_file)

    def get_disambiguator(self):
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file):
        return cls(py_func, py_file)


class _CachedLibrary(numba_codegen.JITCodeLibrary):
    """A code library made from a cache entry. Its object code goes to the JIT as Numba's
    own load does; its bitcode, which only a later compile that links this library in
    needs, is parsed on first use (Numba parses it at once, about 3 ms a kernel, then walks
    it for the defined symbols, which the entry now lists)."""

    _bitcode = None
    _parsed = None

    @property
    def _shared_module(self):
        if self._parsed is None and self._bitcode is not None:
            self._parsed = ll.parse_bitcode(self._bitcode)
        return self._parsed

    @_shared_module.setter
    def _shared_module(self, module):
        self._parsed = module

    @classmethod
    def load(cls, codegen, libdata, symbols):
        name, kind, (object_code, bitcode) = libdata
        if kind != "object":
            raise ValueError(f"unexpected library kind {kind!r}")
        library = cls(codegen, name)
        library.enable_object_caching()
        library._set_compiled_object(object_code)
        library._bitcode = bitcode
        library._finalize_final_module()
        codegen._engine._defined_symbols |= symbols
        return library


def _symbols(library) -> tuple[frozenset, frozenset]:
    """(the names the library defines, the outside symbols its code links to)."""
    module = library._get_module_for_linking()  # what Numba's entry holds as bitcode
    defined, external = set(), set()
    for group in (module.functions, module.global_variables):
        for g in group:
            if not g.is_declaration:
                defined.add(g.name)
            elif not g.name.startswith("llvm."):  # LLVM's intrinsics are not symbols
                external.add(g.name)
    return frozenset(defined), frozenset(external)


# CompileResult._rebuild with the library made by _CachedLibrary.load; the Numba versions
# whose _rebuild takes other arguments get Numba's own (slower) load.
_REBUILD_ARGS = ["target_context", "libdata", "fndesc", "env", "signature", "objectmode",
                 "lifted", "typeann", "reload_init", "referenced_envs"]
_FAST_LOAD = list(inspect.signature(compiler.CompileResult._rebuild).parameters) == _REBUILD_ARGS


def _rebuild(target_context, symbols, libdata, fndesc, env, signature, objectmode, lifted,
             typeann, reload_init, referenced_envs):
    for init in reload_init or ():
        init()
    library = _CachedLibrary.load(target_context.codegen(), libdata, symbols)
    cres = compiler.CompileResult(
        target_context=target_context, typing_context=target_context.typing_context,
        library=library, environment=env,
        entry_point=target_context.get_executable(library, fndesc, env), fndesc=fndesc,
        type_annotation=typeann, signature=signature, objectmode=objectmode, lifted=lifted,
        typing_error=None, call_helper=None, metadata=None, reload_init=reload_init,
        referenced_envs=referenced_envs)
    for referenced in referenced_envs:
        library.codegen.set_env(referenced.env_name, referenced)
    return cres


class _Impl(CompileResultCacheImpl):
    _locator_classes = [_Locator]

    def reduce(self, cres):
        return (super().reduce(cres), *_symbols(cres.library))

    def rebuild(self, target_context, payload):
        reduced, symbols, external = payload
        _ensure_resolvable(target_context, external)
        if _FAST_LOAD:
            return _rebuild(target_context, symbols, *reduced)
        return super().rebuild(target_context, reduced)


_prepared: set = set()   # ids of the target contexts made ready for loads in this process


def _prepare_for_loads(target_context) -> None:
    """What loaded code needs of Numba's start-up: the symbols it links to. The C helpers,
    C math functions and exception types are registered when the target context is made;
    the runtime's (NRT) by rtsys.initialize; the hash secret's when numba.cpython.hashing
    is imported. Numba instead refreshes every typing and lowering registry before each
    load: 0.2-0.3 ms each time, and 0.2 s the first time in a process, which imports the
    implementation of everything Numba can compile. Compiles still refresh for themselves."""
    if id(target_context) in _prepared:
        return
    import numba.cpython.hashing  # noqa: F401 - registers the _numba_hashsecret_* symbols
    from numba.core.runtime import rtsys
    rtsys.initialize(target_context)
    # every entry's key holds the codegen's (triple, CPU name, CPU features), which Numba
    # asks LLVM for each time (0.09 ms a kernel); they do not change within a process
    codegen = target_context.codegen()
    magic = codegen.magic_tuple()
    codegen.magic_tuple = lambda: magic
    _prepared.add(id(target_context))


_resolvable: set = set()   # outside symbols found in this process


def _ensure_resolvable(target_context, external) -> None:
    """Every outside symbol the entry's code links to is known to LLVM, which would end the
    process on one it cannot resolve. One that _prepare_for_loads did not register gets
    Numba's whole start-up (its registry refresh, its thread pool); one still missing makes
    the entry unloadable (compiled instead)."""
    missing = [name for name in external if name not in _resolvable and not ll.address_of_symbol(name)]
    if missing:
        from numba.np.ufunc.parallel import _launch_threads
        target_context.refresh()
        _launch_threads()
        missing = [name for name in missing if not ll.address_of_symbol(name)]
        if missing:
            raise RuntimeError(f"its code links to symbols this process lacks: {', '.join(sorted(missing))}")
    _resolvable.update(external)


class _Unpickler(pickle.Unpickler):
    """pickle's, with environments rebuilt by _rebuild_env_lazily."""

    def find_class(self, module, name):
        if module == "numba.core.environment" and name == "_rebuild_env":
            return _rebuild_env_lazily
        return super().find_class(module, name)


def _rebuild_env_lazily(modname, consts, env_name):
    """Numba's _rebuild_env, but a module not imported yet is not imported for an
    environment that holds no constants. Numba imports the module of every helper a
    kernel inlines (numba.np.arrayobj, its unicode and sort modules: 25 ms, once per
    process, at the first load of a kernel that inlines one of them) only to hand its
    dict to the environment as globals, which nopython code never reads: only object
    mode does (numba/core/pylowering.py), and our kernels are all nopython."""
    from numba.core import environment
    if consts or modname in sys.modules:
        return environment._rebuild_env(modname, consts, env_name)
    env = environment.lookup_environment(env_name)
    if env is None:
        env = environment.Environment({"__name__": modname})
        env.env_name = env_name
        environment.Environment._memo[env_name] = env
    return env


class KernelCache(Cache):
    _impl_class = _Impl

    def __init__(self, py_func):  # Numba's Cache.__init__ would set up its index files
        self._name = repr(py_func)
        self._py_func = py_func
        self._impl = self._impl_class(py_func)
        self._module = py_func.__module__
        self._enabled = True
        self._claims: set = set()   # entries this process claimed and has not written yet

    @property
    def cache_path(self):
        return os.path.join(config.cache_dir(), "numba", self._module)

    def flush(self):
        pass

    def _relative(self, sig, codegen) -> str:
        # Numba's key as text: its pickled form holds each type's per-process code number
        types, target, code = self._index_key(sig, codegen)
        key = repr((store.FORMAT, self._impl.filename_base, self._impl.locator.get_source_stamp(), str(types), target, code))
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return os.path.join("numba", self._module, f"{self._impl.filename_base}.{digest}{store.SUFFIX}")

    def load_overload(self, sig, target_context):
        if not self._enabled:
            return None
        _prepare_for_loads(target_context)
        relative = self._relative(sig, target_context.codegen())
        cres = self._load(relative, target_context)
        # Not on disk: unless another process is compiling it right now (then wait for its
        # entry, and load that), this process claims it and compiles.
        path = os.path.join(config.cache_dir(), relative)
        while cres is None and not store._claim(path):
            cres = self._load(relative, target_context)
        if cres is None:
            self._claims.add(path)
        return cres

    def release_claims(self) -> None:
        for path in list(self._claims):
            self._claims.discard(path)
            store._release(path)

    def _load(self, relative: str, target_context):
        for root in [*codecache.read_roots(), config.cache_dir()]:  # artifacts' first
            path = os.path.join(root, relative)
            payload = store._read_entry(path)
            if payload is None:
                continue
            try:
                cres = self._impl.rebuild(target_context, _Unpickler(io.BytesIO(payload)).load())
            except Exception as e:  # noqa: BLE001 - any failure means: compile instead
                store._discard(path, f"could not be loaded ({type(e).__name__}: {e})")
                continue
            store._touch(path)
            with store._lock:
                store._used[relative] = path
            return cres
        return None

    def save_overload(self, sig, cres):
        if not self._enabled:
            return
        root = config.cache_dir()
        relative = self._relative(sig, cres.codegen)
        path = os.path.join(root, relative)
        try:
            if not self._impl.check_cachable(cres):
                return
            payload = pickle.dumps(self._impl.reduce(cres), protocol=-1)
            store.write_entry(path, payload)
        except OSError as e:
            store._warn_once(root, f"ortjit: cannot write compiled kernels under {root} ({e}); "
                             "they will be compiled again in each process")
            with store._lock:
                store._unsaved[relative] = payload
            return
        finally:
            self._claims.discard(path)
            store._release(path)
        with store._lock:
            store._used[relative] = path
        store._after_save(root)
