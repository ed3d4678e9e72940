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
  bitcode unparsed until a later compile links against it (see _CachedLibrary): Numba
  parses it at every load, half of a kernel's load time.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import shutil
import sys
import threading
import time
import warnings

import llvmlite
import llvmlite.binding as ll
import numba
from numba.core import codegen as numba_codegen, compiler
from numba.core.caching import Cache, CompileResultCacheImpl, _CacheLocator

from . import codecache, config

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
    """numba.njit; with cache=True, compile results go through this module's cache."""
    if fn is None:
        return lambda f: njit(f, **options)
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
        # (ortjit.ops.blas's GEMM pieces, say), which its own file's contents do not show
        from . import __version__
        versions = f"ortjit {__version__} numba {numba.__version__} llvmlite {llvmlite.__version__} python {sys.version}"
        stamp = _stamps[path] = hashlib.sha256(content + versions.encode()).hexdigest()
    return stamp


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
        return _source_stamp(self._py_file)

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
        key = repr((FORMAT, self._impl.filename_base, self._impl.locator.get_source_stamp(), str(types), target, code))
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return os.path.join("numba", self._module, f"{self._impl.filename_base}.{digest}{SUFFIX}")

    def load_overload(self, sig, target_context):
        if not self._enabled:
            return None
        _prepare_for_loads(target_context)
        relative = self._relative(sig, target_context.codegen())
        cres = self._load(relative, target_context)
        # Not on disk: unless another process is compiling it right now (then wait for its
        # entry, and load that), this process claims it and compiles.
        path = os.path.join(config.cache_dir(), relative)
        while cres is None and not _claim(path):
            cres = self._load(relative, target_context)
        if cres is None:
            self._claims.add(path)
        return cres

    def release_claims(self) -> None:
        for path in list(self._claims):
            self._claims.discard(path)
            _release(path)

    def _load(self, relative: str, target_context):
        for root in [*codecache.read_roots(), config.cache_dir()]:  # artifacts' first
            path = os.path.join(root, relative)
            payload = _read_entry(path)
            if payload is None:
                continue
            try:
                cres = self._impl.rebuild(target_context, pickle.loads(payload))
            except Exception as e:  # noqa: BLE001 - any failure means: compile instead
                _discard(path, f"could not be loaded ({type(e).__name__}: {e})")
                continue
            _touch(path)
            with _lock:
                _used[relative] = path
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
            write_entry(path, payload)
        except OSError as e:
            _warn_once(root, f"ortjit: cannot write compiled kernels under {root} ({e}); "
                             "they will be compiled again in each process")
            with _lock:
                _unsaved[relative] = payload
            return
        finally:
            self._claims.discard(path)
            _release(path)
        with _lock:
            _used[relative] = path
        _after_save(root)


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
    """Past `limit` bytes of kernels (compiled entries and generated sources) under root,
    remove the least recently used files down to 80% of it; returns the bytes removed."""
    files = []
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
            files.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in files)
    if total <= limit:
        return 0
    removed = 0
    for _, size, path in sorted(files):
        if total - removed <= 0.8 * limit:
            break
        if _remove(path):
            removed += size
    return removed


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
