"""Kernel cache: generated modules on disk, compiled code through Numba's own cache.

Four small roles:

* **Where**: :func:`cache_dir` is ``EINJIT_CACHE_DIR`` if set, otherwise a per-user
  folder (``$XDG_CACHE_HOME/einjit`` or ``~/.cache/einjit``), created with owner-only
  permissions.  A directory that cannot be written, or that another user owns or can
  write, is refused with one warning; the process then keeps its kernels in a private
  temporary directory.
* **What**: a kernel module is named by a hash of its source salted with everything the
  machine code depends on (:func:`_salt`: einjit, Numba, llvmlite and Python versions,
  the CPU's name and features, the target), so a stale kernel is never loaded.
* **Load**: :func:`load_module_function` writes the source to ``kernels/k_<hash>.py``
  (atomically, never replacing a good file) and executes it as a module registered in
  ``sys.modules``; because the function comes from a real file, Numba's ``cache=True``
  keeps its machine code beside it (``kernels/__pycache__/k_<hash>.<name>-<line>.py311
  .nbi`` and ``.nbc``).  :func:`compile_kernel` compiles one signature, loading it from
  Numba's files when they exist: files another user could have written are never loaded,
  corrupted files are deleted with one warning and the kernel is recompiled.
* **Count and list**: :class:`CacheStats` counts what happened in this process
  (:func:`cache_info`); :func:`kernel_files` and :func:`remove_kernels` list and delete
  what is on disk (the ``einjit cache`` command).

The in-memory cache of whole compiled plans lives in :mod:`einjit.engine`.  Nothing here
imports Numba or llvmlite before the first kernel is compiled.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
import traceback
import types
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "STATS",
    "CacheStats",
    "KernelFile",
    "cache_dir",
    "cache_info",
    "compile_kernel",
    "kernel_files",
    "load_module_function",
    "remove_kernels",
]

_FORMAT = "2"  # bump when the generated module layout or the file naming changes
_KERNELS = "kernels"
_PYCACHE = "__pycache__"
_dir_lock = threading.Lock()
_resolved_dir: Path | None = None
_fell_back = False  # once the wanted directory failed, keep the private one for the process
_private_root: Path | None = None  # where single untrusted kernels are recompiled


class _Untrusted(Exception):
    """A cache path another user owns or can write: loading from it could run their code."""


# --------------------------------------------------------------------------- where

def _default_dir() -> Path:
    env = os.environ.get("EINJIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "einjit"


def _distrust(path: Path, st: os.stat_result) -> str | None:
    """Why ``path`` (with status ``st``) must not be trusted, or None when it may be.

    Only its owner may be able to write it: Numba's cache files are pickles, and loading
    one runs code.
    """
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"{str(path)!r} is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return (f"other users can write {str(path)!r} "
                f"(mode {stat.S_IMODE(st.st_mode):04o}; 'chmod go-w' it)")
    return None


def _check_dir(path: Path) -> None:
    """Create ``path`` (mode 0o700) if needed; raise :class:`_Untrusted` if it is unsafe."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    reason = _distrust(path, path.stat())
    if reason is not None:
        raise _Untrusted(reason)


def _prepare(root: Path) -> None:
    """Make ``root``, its ``kernels`` folder and Numba's ``__pycache__`` there usable."""
    _check_dir(root)
    kernels = root / _KERNELS
    _check_dir(kernels)
    _check_dir(kernels / _PYCACHE)  # made by us, so Numba does not create it group-writable
    probe = kernels / f".probe-{os.getpid()}-{threading.get_ident()}"
    probe.write_text("")
    probe.unlink()


def _private_dir(prefix: str) -> Path:
    """A fresh owner-only temporary directory, removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _prepare(path)
    atexit.register(shutil.rmtree, path, True)
    return path


def cache_dir() -> Path:
    """The directory kernel modules are written to (created on first use, mode 0o700).

    When it cannot be created or written, or when another user owns it or could write
    it (or its ``kernels`` folder), einjit warns once and falls back to a fresh private
    temporary directory: kernels still work, they are just not kept.

    >>> cache_dir().is_dir()
    True
    """
    global _resolved_dir, _fell_back
    with _dir_lock:
        wanted = _default_dir()
        if _resolved_dir is not None and (_resolved_dir == wanted or _fell_back):
            return _resolved_dir
        try:
            _prepare(wanted)
            _resolved_dir = wanted
        except (OSError, _Untrusted) as exc:
            fallback = _private_dir("einjit-tmp")
            if isinstance(exc, _Untrusted):
                why = f"refusing to load kernels from it: {exc}"
            else:
                why = f"it is not usable ({exc})"
            warnings.warn(f"einjit: kernel cache directory {str(wanted)!r}: {why}; kernels are "
                          f"kept in {str(fallback)!r} for this process only",
                          RuntimeWarning, stacklevel=3)
            _resolved_dir, _fell_back = fallback, True
        return _resolved_dir


def _private_kernels() -> Path:
    """Where a kernel whose cached files cannot be trusted is recompiled (this process)."""
    global _private_root
    with _dir_lock:
        if _private_root is None:
            _private_root = _private_dir("einjit-private")
        return _private_root / _KERNELS


def _numba_dirs(kernels: Path) -> list[Path]:
    """Where Numba keeps the compiled code of modules in ``kernels``.

    Its in-tree ``__pycache__``, or the folder under ``NUMBA_CACHE_DIR`` that Numba's
    ``UserProvidedCacheLocator`` picks (the parent's name and a SHA-1 of its path).
    """
    dirs = [kernels / _PYCACHE]
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        parent = os.path.abspath(kernels)
        digest = hashlib.sha1(parent.encode()).hexdigest()
        dirs.append(Path(numba_dir) / f"{os.path.basename(parent)}_{digest}")
    return dirs


# --------------------------------------------------------------------------- counters

@dataclass
class CacheStats:
    """Counters of the kernel cache (one set per process).

    ``hits``/``misses``: in-memory lookups of compiled plans; ``compilations``: kernels
    Numba compiled; ``disk_loads``: kernels Numba loaded from the disk cache;
    ``compile_seconds``: time spent generating, compiling and loading kernels.
    """

    hits: int = 0
    misses: int = 0
    compilations: int = 0
    disk_loads: int = 0
    compile_seconds: float = 0.0

    def reset(self) -> None:
        self.hits = self.misses = self.compilations = self.disk_loads = 0
        self.compile_seconds = 0.0


STATS = CacheStats()
_modules: dict[str, Any] = {}
_module_lock = threading.RLock()


def cache_info() -> dict[str, Any]:
    """Counters of this process's kernel cache, plus the cache directory.

    >>> sorted(cache_info())
    ['compilations', 'compile_seconds', 'directory', 'disk_loads', 'hits', 'misses']
    """
    info: dict[str, Any] = asdict(STATS)
    info["directory"] = str(_default_dir())
    return info


# --------------------------------------------------------------------------- keys

_salt_text: str | None = None


def _salt() -> str:
    """Everything a kernel's machine code depends on besides its source (computed once).

    >>> import numba
    >>> f"numba-{numba.__version__}" in _salt()
    True
    """
    global _salt_text
    if _salt_text is None:
        import llvmlite
        import numba

        from . import __version__
        from .host import cpu_features, cpu_name

        cpu, features = cpu_name(), cpu_features()
        _salt_text = "|".join([
            f"einjit-kernel-format-{_FORMAT}", f"einjit-{__version__}",
            f"numba-{numba.__version__}", f"llvmlite-{llvmlite.__version__}",
            f"python-{sys.version_info[0]}.{sys.version_info[1]}", f"cpu-{cpu}",
            f"features-{features}"])
    return _salt_text


def _source_key(source: str, target: str = "cpu") -> str:
    """The name of a kernel module: its source's hash, salted by :func:`_salt` and target.

    >>> _source_key("x = 1") != _source_key("x = 1", target="cuda")
    True
    """
    text = f"{_salt()}|target-{target}|{source}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- load

def _numba_files(directory: Path, stem: str) -> list[Path]:
    """Numba's index and data files for module ``stem`` in ``directory``."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    prefix = stem + "."
    return [directory / n for n in names if n.startswith(prefix) and n.endswith((".nbi", ".nbc"))]


def _remove(paths: Sequence[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _write_new(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it exists; True when this call created it.

    The bytes go to a temporary file first, then take the final name in one step with
    ``os.link``, which never replaces a file: a concurrent writer's complete file stays.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".k_", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        _remove([Path(tmp)])


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".k_", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        _remove([Path(tmp)])


def _place_source(kernels: Path, key: str, source: str) -> Path:
    """``kernels/k_<key>.py`` holding exactly ``source``; a corrupted file is rewritten.

    A file another user could have written moves the kernel to this process's private
    directory instead (with a warning).
    """
    data = source.encode("utf-8")
    path = kernels / f"k_{key}.py"
    try:
        st = path.stat()
    except FileNotFoundError:
        if not _write_new(path, data):
            return _place_source(kernels, key, source)  # another process just wrote it
        return path
    reason = _distrust(path, st)
    if reason is not None:
        private = _private_kernels()
        warnings.warn(f"einjit: refusing to load a kernel module: {reason}; recompiling it in "
                      f"{str(private)!r} for this process", RuntimeWarning, stacklevel=5)
        return _place_source(private, key, source)
    try:
        good = path.read_bytes() == data
    except OSError:
        good = False
    if not good:
        warnings.warn(f"einjit: kernel module {str(path)!r} is corrupted or truncated; "
                      "deleting it and Numba's files for it, recompiling",
                      RuntimeWarning, stacklevel=5)
        for directory in _numba_dirs(kernels):
            _remove(_numba_files(directory, path.stem))
        _replace(path, data)
    return path


def _execute(key: str, path: Path, source: str) -> types.ModuleType:
    """Run ``source`` as module ``einjit_kernels.k_<key>`` whose file is ``path``.

    The module runs from the generated text, never from the file's bytes, and no
    ``.pyc`` is written; Numba reads the file only to check its cache is fresh.
    """
    modname = f"einjit_kernels.k_{key}"
    module = types.ModuleType(modname)
    module.__file__ = str(path)
    code = compile(source, str(path), "exec")
    sys.modules[modname] = module  # before exec: Numba's cache resolves it by name
    try:
        exec(code, module.__dict__)  # noqa: S102 (our generated kernel module)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return module


def load_module_function(source: str, name: str, target: str = "cpu") -> Any:
    """Import the function ``name`` from generated module ``source`` (cached on disk).

    ``target`` salts the file name (``"cuda-sm90"``: kernels for one GPU architecture).

    >>> f = load_module_function("def k0(x):\\n    return x + 1\\n", "k0")
    >>> f(1), Path(f.__code__.co_filename).parent.name
    (2, 'kernels')
    """
    key = _source_key(source, target)
    with _module_lock:
        module = _modules.get(key)
        if module is None:
            path = _place_source(cache_dir() / _KERNELS, key, source)
            module = _modules[key] = _execute(key, path, source)
    return getattr(module, name)


def _numba_cache(fn: Any) -> Any:
    """The dispatcher's Numba cache object, or None when it has no disk cache."""
    cache = getattr(fn, "_cache", None)
    return cache if hasattr(cache, "cache_path") and hasattr(cache, "load_overload") else None


def _untrusted_numba_files(fn: Any) -> str | None:
    """Why Numba's files for this dispatcher must not be loaded (None when they may)."""
    cache = _numba_cache(fn)
    if cache is None:
        return None
    directory = Path(cache.cache_path)
    stem = Path(fn.py_func.__code__.co_filename).stem
    for path in [directory] + _numba_files(directory, stem):
        try:
            reason = _distrust(path, path.stat())
        except FileNotFoundError:
            continue
        if reason is not None:
            return reason
    return None


def _bad_file(exc: BaseException, cache: Any, stem: str) -> str:
    """The Numba cache file a failed load was reading (best effort, for the warning)."""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        local = frame.f_locals
        if frame.f_code.co_name == "_load_data" and "path" in local:
            return str(local["path"])
        if frame.f_code.co_name == "_load_index" and hasattr(local.get("self"), "_index_path"):
            return str(local["self"]._index_path)
    files = _numba_files(Path(cache.cache_path), stem)
    return ", ".join(str(p) for p in files) or str(cache.cache_path)


def _guard(fn: Any) -> bool:
    """Make a broken Numba cache file a warning and a recompilation, never a crash.

    Numba unpickles its index (``.nbi``) and data (``.nbc``) files without catching
    errors; a truncated or garbled one would fail every call.  Here a failed load warns
    once, deletes the module's Numba files and reports a miss, so Numba compiles again
    and writes fresh files.  A failed save (disk full, read-only) warns and keeps the
    kernel in memory.  False when ``fn`` has no disk cache.
    """
    cache = _numba_cache(fn)
    if cache is None:
        return False
    if getattr(cache, "_einjit_guarded", False):
        return True
    load, save = cache.load_overload, cache.save_overload
    stem = Path(fn.py_func.__code__.co_filename).stem

    def load_overload(sig: Any, target_context: Any) -> Any:
        try:
            return _load_without_registries(cache, load, sig, target_context)
        except Exception as exc:  # noqa: BLE001 (any unreadable file: recompile)
            bad = _bad_file(exc, cache, stem)
            warnings.warn(f"einjit: Numba cache file {bad} is corrupted or truncated "
                          f"({type(exc).__name__}: {exc}); deleting it and recompiling",
                          RuntimeWarning, stacklevel=2)
            _remove(_numba_files(Path(cache.cache_path), stem))
            _start_numba()  # Numba compiles next
            return None

    def save_overload(sig: Any, data: Any) -> None:
        try:
            save(sig, data)
        except Exception as exc:  # noqa: BLE001 (not kept on disk; still works)
            warnings.warn(f"einjit: could not write Numba's cache files in "
                          f"{str(cache.cache_path)!r} ({type(exc).__name__}: {exc}); "
                          "the kernel is kept in memory only", RuntimeWarning, stacklevel=2)

    cache.load_overload, cache.save_overload = load_overload, save_overload
    cache._einjit_guarded = True
    return True


def _load_without_registries(cache: Any, load: Any, sig: Any, target_context: Any) -> Any:
    """Numba's ``Cache.load_overload`` less its ``target_context.refresh()``.

    That refresh imports and installs every typing and lowering registry Numba has (its
    linear algebra, random numbers, typed containers, jitclass...): about a third of a
    second in a fresh process, and only compiling needs them (Numba's compiler refreshes
    the context itself before it compiles).  Machine code loaded from the cache needs
    Numba's runtime (NRT), started here.  Numba versions without these internals take
    the plain path."""
    private = getattr(cache, "_load_overload", None)
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    try:
        from numba.core.runtime import rtsys
    except ImportError:  # pragma: no cover - another Numba layout
        rtsys = None
    if private is None or guard is None or rtsys is None:  # pragma: no cover
        _start_numba()
        return load(sig, target_context)
    rtsys.initialize(target_context)
    with guard():
        loaded = private(sig, target_context)
        if loaded is None:
            _start_numba()  # Numba compiles next
        return loaded
    _start_numba()  # pragma: no cover - the guard swallowed a spurious I/O error
    return None  # pragma: no cover


def _tighten(fn: Any) -> None:
    """Drop group/other write bits Numba's files got from the umask (so they stay loadable)."""
    cache = _numba_cache(fn)
    if cache is None:
        return
    stem = Path(fn.py_func.__code__.co_filename).stem
    for path in _numba_files(Path(cache.cache_path), stem):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o022:
                path.chmod(mode & ~0o022)
        except OSError:
            pass


_numba_started = False


def _start_numba() -> None:
    """Import Numba's array-math registry without importing ``scipy.linalg`` yet.

    Numba's CPU target imports ``numba.np.arraymath`` before it compiles its first
    kernel, and that module probes for BLAS by importing ``scipy.linalg.cython_blas``:
    0.2-0.45 s here, mostly scipy's own imports, and einjit's kernels never call BLAS
    from Numba.  With scipy installed the probe can only succeed (or fail Numba's import
    outright), so its answer is known; it is skipped while that module is imported.
    Every Numba function that really calls BLAS still imports scipy first, when typed.
    Loading a kernel from the cache needs none of this (:func:`_load_without_registries`):
    this runs before a compilation only.
    """
    global _numba_started
    if _numba_started:
        return
    _numba_started = True
    import importlib.util

    if "numba.np.arraymath" in sys.modules or importlib.util.find_spec("scipy") is None:
        return
    try:
        import numba.np.linalg as linalg
    except ImportError:  # another Numba layout: leave it alone
        return
    probe = getattr(linalg, "ensure_blas", None)
    if probe is None:
        return
    linalg.ensure_blas = lambda: None
    try:
        import numba.np.arraymath as arraymath
    finally:
        linalg.ensure_blas = probe
    if getattr(arraymath, "ensure_blas", None) is not probe:
        arraymath.ensure_blas = probe  # it imported the name: later calls probe for real


class _NoWarning(Warning):
    """Stands for a warning class this Numba does not have (filtering it is a no-op)."""


def _ir_assumption_warning() -> type[Warning]:
    """Numba's ``NumbaIRAssumptionWarning``."""
    from numba.core import errors

    return getattr(errors, "NumbaIRAssumptionWarning", _NoWarning)


def compile_kernel(source: str, name: str, signature: Sequence[Any]) -> Any:
    """The Numba dispatcher ``name`` of module ``source``, compiled for ``signature``.

    Loads the machine code from Numba's disk cache when it is there and trusted
    (``STATS.disk_loads``), compiles it otherwise (``STATS.compilations``).  Cache files
    another user could write are not loaded: the kernel is recompiled in a private
    directory.  Corrupted files give one ``RuntimeWarning``, are deleted and recompiled.

    >>> import numba
    >>> src = "from numba import njit\\n\\n@njit(cache=True)\\ndef k0(x):\\n    return x + 1\\n"
    >>> fn = compile_kernel(src, "k0", (numba.int64,))
    >>> fn(41)
    42
    """
    with _module_lock:  # one compilation at a time keeps the counters exact
        fn = load_module_function(source, name)
        if tuple(signature) in fn.overloads:  # compiled earlier in this process
            return fn
        reason = _untrusted_numba_files(fn)
        if reason is not None:
            key = _source_key(source)
            private = _private_kernels()
            warnings.warn(f"einjit: refusing to load Numba's cache files: {reason}; recompiling "
                          f"the kernel in {str(private)!r} for this process",
                          RuntimeWarning, stacklevel=3)
            path = _place_source(private, key, source)
            module = _modules[key] = _execute(key, path, source)
            fn = getattr(module, name)
        if not _guard(fn):
            _start_numba()  # no disk cache: Numba compiles
        before = sum(fn.stats.cache_hits.values())
        with warnings.catch_warnings():
            # Numba's pedantic SSA check warns about the variables of inlined overloads
            # (vecmath's exp in logsumexp kernels: 15 warnings a kernel); nothing is wrong
            warnings.simplefilter("ignore", _ir_assumption_warning())
            fn.compile(tuple(signature))
        if sum(fn.stats.cache_hits.values()) > before:
            STATS.disk_loads += 1
        else:
            STATS.compilations += 1
            _tighten(fn)
        return fn


# --------------------------------------------------------------------------- list, remove

@dataclass(frozen=True)
class KernelFile:
    """One kernel module on disk with Numba's files for it.

    ``title`` is the module's header (``"<equation> step <kernel>"``); ``size`` counts
    every file in ``files`` (bytes); ``modified`` is the newest of their times.
    """

    path: Path
    title: str
    files: tuple[Path, ...]
    size: int
    modified: float

    @property
    def equation(self) -> str:
        """The einsum the kernel belongs to (from its header)."""
        return self.title.rsplit(" step ", 1)[0]


def _title(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline().strip()
    except OSError:
        return "?"
    marker = "# Generated by einjit:"
    return first[len(marker):].strip() if first.startswith(marker) else "?"


def _stat_all(paths: Sequence[Path]) -> Iterator[tuple[Path, os.stat_result]]:
    for p in paths:
        try:
            yield p, p.stat()
        except OSError:
            continue


def kernel_files(directory: Path | str | None = None) -> list[KernelFile]:
    """The kernel modules in a cache directory (default: the configured one), by name.

    Reads the directory only; creates nothing.

    >>> isinstance(kernel_files(), list)
    True
    """
    kernels = Path(directory if directory is not None else _default_dir()) / _KERNELS
    try:
        names = sorted(n for n in os.listdir(kernels) if n.startswith("k_") and n.endswith(".py"))
    except OSError:
        return []
    by_stem: dict[str, list[Path]] = {}
    for d in _numba_dirs(kernels):
        for n in os.listdir(d) if d.is_dir() else []:
            by_stem.setdefault(n.split(".", 1)[0], []).append(d / n)
    result = []
    for name in names:
        owned = [kernels / name] + by_stem.get(name[:-3], [])
        stats = list(_stat_all(owned))
        if not stats:
            continue
        result.append(KernelFile(kernels / name, _title(kernels / name),
                                 tuple(p for p, _ in stats), sum(s.st_size for _, s in stats),
                                 max(s.st_mtime for _, s in stats)))
    return result


def _strays(kernels: Path, modules: set[str]) -> list[Path]:
    """Files of no kernel module: Numba files of deleted modules, temporary files."""
    found = []
    for d in [kernels] + _numba_dirs(kernels):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            stem = n.split(".", 1)[0]
            if n.startswith((".k_", ".probe-")) or ".tmp." in n or (
                    d != kernels and stem.startswith("k_") and stem not in modules):
                found.append(d / n)
    return found


def remove_kernels(older_than_days: float | None = None,
                   directory: Path | str | None = None) -> tuple[int, int]:
    """Delete kernel modules and Numba's files for them; returns (kernels, bytes) removed.

    With ``older_than_days``, only kernels none of whose files changed in that many days.
    Left-over temporary files and Numba files of deleted modules go too.

    >>> import tempfile
    >>> remove_kernels(directory=tempfile.mkdtemp())
    (0, 0)
    """
    root = Path(directory if directory is not None else _default_dir())
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400.0
    count = size = 0
    kept: set[str] = set()
    for k in kernel_files(root):
        if cutoff is not None and k.modified >= cutoff:
            kept.add(k.path.stem)
            continue
        _remove(k.files)
        count += 1
        size += k.size
    kernels = root / _KERNELS
    for p, st in _stat_all(_strays(kernels, kept)):
        if cutoff is None or st.st_mtime < cutoff:
            _remove([p])
            size += st.st_size
    return count, size
