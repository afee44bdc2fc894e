"""Kernel cache: generated modules on disk, compiled code through Numba's own cache.

Three small roles:

* :func:`cache_dir` says where kernels live: ``EINJIT_CACHE_DIR`` if set, otherwise a
  per-user folder (``$XDG_CACHE_HOME/einjit`` or ``~/.cache/einjit``), created with
  owner-only permissions.
* :func:`load_module_function` writes a kernel module's source to a file named by its
  content hash (atomically: a temporary name, then ``os.replace``), imports it as a real
  module registered in ``sys.modules`` and returns the jitted function.  Because the
  function comes from a real file, Numba's ``cache=True`` stores its machine code beside
  it and a later process loads it instead of compiling.
* :class:`CacheStats` counts what happened; :func:`cache_info` reports it.

The in-memory cache of whole compiled plans lives in :mod:`einjit.engine`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "load_module_function", "CacheStats", "STATS", "cache_info"]

_FORMAT = "1"  # bump when the generated module layout changes
_dir_lock = threading.Lock()
_resolved_dir: Path | None = None
_fell_back = False  # once the wanted directory failed, keep the private one for the process


def _default_dir() -> Path:
    env = os.environ.get("EINJIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "einjit"


def cache_dir() -> Path:
    """The directory kernel modules are written to (created on first use, mode 0o700).

    When it cannot be created or written, einjit warns once and falls back to a fresh
    private temporary directory: kernels still work, they are just not kept.
    """
    global _resolved_dir, _fell_back
    with _dir_lock:
        wanted = _default_dir()
        if _resolved_dir is not None and (_resolved_dir == wanted or _fell_back):
            return _resolved_dir
        try:
            wanted.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = wanted / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            _resolved_dir = wanted
        except OSError as exc:
            fallback = Path(tempfile.mkdtemp(prefix="einjit-tmp"))
            warnings.warn(f"einjit: cache directory {str(wanted)!r} is not usable ({exc}); "
                          f"kernels are kept in {str(fallback)!r} for this process only",
                          RuntimeWarning, stacklevel=3)
            _resolved_dir, _fell_back = fallback, True
        return _resolved_dir


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
_module_lock = threading.Lock()


def cache_info() -> dict[str, Any]:
    """Counters of this process's kernel cache, plus the cache directory.

    >>> sorted(cache_info())
    ['compilations', 'compile_seconds', 'directory', 'disk_loads', 'hits', 'misses']
    """
    info: dict[str, Any] = asdict(STATS)
    info["directory"] = str(_default_dir())
    return info


def _source_key(source: str) -> str:
    import numba

    salt = f"einjit-kernel-format-{_FORMAT}|numba-{numba.__version__}|"
    return hashlib.sha256((salt + source).encode()).hexdigest()[:24]


def load_module_function(source: str, name: str) -> Any:
    """Import the function ``name`` from generated module ``source`` (cached on disk)."""
    key = _source_key(source)
    with _module_lock:
        module = _modules.get(key)
        if module is None:
            directory = cache_dir() / "kernels"
            directory.mkdir(mode=0o700, exist_ok=True)
            path = directory / f"k_{key}.py"
            if not path.exists() or path.read_text() != source:
                fd, tmp = tempfile.mkstemp(dir=directory, prefix=".k_", suffix=".tmp")
                with os.fdopen(fd, "w") as fh:
                    fh.write(source)
                os.replace(tmp, path)
            modname = f"einjit_kernels.k_{key}"
            spec = importlib.util.spec_from_file_location(modname, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module  # before exec: Numba's cache resolves it by name
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(modname, None)
                raise
            _modules[key] = module
    return getattr(module, name)
