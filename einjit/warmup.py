"""Compile kernels ahead of time, from equations and shapes alone (``einjit warmup``).

A service or a test suite lists the einsums it will run; warming them up compiles each
kernel into the disk cache, so a later process loads it instead of compiling it.  No
real data is needed: operands are ``np.empty`` arrays (the memory is never touched) and
the call goes through the same preparation and plan as :func:`einjit.einsum`, so the
kernels are exactly those a call with C-contiguous operands of these shapes uses.

The kernel-list file, TOML or JSON::

    [[kernel]]
    equation = "bij,bjk->bik"
    shapes = [[64, 128, 128], [64, 128, 128]]
    dtypes = ["float32", "float64"]      # one kernel per dtype ("dtype" for one)
    target = "cpu"                       # or "cuda" (needs a GPU, or NUMBA_ENABLE_CUDASIM=1)
    optimize = "auto"                    # optional, as einsum's optimize=

JSON: ``{"kernel": [{...}, ...]}`` or a top-level list of the same tables.

>>> specs = kernels_from_entries([{"equation": "ij,jk->ik", "shapes": [[2, 3], [3, 4]],
...                                "dtypes": ["float32", "float64"]}], "inline")
>>> [str(s) for s in specs]
['ij,jk->ik 2x3,3x4 float32', 'ij,jk->ik 2x3,3x4 float64']
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import cache, engine
from .parser import parse_subscripts
from .planner import PATH_FINDERS

__all__ = [
    "CACHED",
    "COMPILED",
    "FAILED",
    "NOTHING",
    "TARGETS",
    "KernelFileError",
    "KernelSpec",
    "WarmResult",
    "format_shape",
    "kernels_from_entries",
    "parse_shape",
    "read_kernel_file",
    "warm",
    "warm_all",
    "warm_kernel",
]

TARGETS = ("cpu", "cuda")
COMPILED = "compiled"
CACHED = "already cached"
FAILED = "failed"
NOTHING = "nothing to compile"
_FIELDS = ("equation", "shapes", "dtypes", "dtype", "target", "optimize")


class KernelFileError(ValueError):
    """A malformed kernel list; ``problems`` holds one ``"<file>: kernel[i].<field>: ..."``
    line per problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class KernelSpec:
    """One kernel to warm up: an equation, operand shapes, one dtype, a target."""

    equation: str
    shapes: tuple[tuple[int, ...], ...]
    dtype: str = "float64"
    target: str = "cpu"
    optimize: Any = engine.DEFAULT_OPTIMIZE

    def __str__(self) -> str:
        shapes = ",".join(format_shape(s) for s in self.shapes)
        target = "" if self.target == "cpu" else f" [{self.target}]"
        return f"{self.equation} {shapes} {self.dtype}{target}"


@dataclass(frozen=True)
class WarmResult:
    """What warming one kernel did: ``status`` is :data:`COMPILED`, :data:`CACHED`,
    :data:`NOTHING` or :data:`FAILED`; ``reason`` says why (failures, nothing to do)."""

    spec: KernelSpec
    status: str
    reason: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        detail = f" ({self.reason})" if self.reason else ""
        return f"{self.status}{detail}: {self.spec} [{self.seconds:.2f} s]"


# --------------------------------------------------------------------------- shapes

def parse_shape(text: str) -> tuple[int, ...]:
    """``"64x128x128"`` → ``(64, 128, 128)``; ``""`` or ``"scalar"`` is a 0-d shape.

    >>> parse_shape("64x128x128"), parse_shape("7"), parse_shape("scalar")
    ((64, 128, 128), (7,), ())
    >>> parse_shape("3xq")
    Traceback (most recent call last):
    ...
    ValueError: shape '3xq': expected sizes joined by 'x', like 64x128 ('' or 'scalar' for 0-d)
    """
    text = text.strip()
    if text in ("", "scalar", "()"):
        return ()
    parts = text.lower().split("x")
    if not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"shape {text!r}: expected sizes joined by 'x', like 64x128 "
                         "('' or 'scalar' for 0-d)")
    return tuple(int(p) for p in parts)


def format_shape(shape: Sequence[int]) -> str:
    """The inverse of :func:`parse_shape`.

    >>> format_shape((64, 128)), format_shape(())
    ('64x128', 'scalar')
    """
    return "x".join(str(n) for n in shape) if shape else "scalar"


# --------------------------------------------------------------------------- the file

def read_kernel_file(path: str | Path) -> list[KernelSpec]:
    """Every kernel a TOML or JSON kernel list names (one per entry and dtype).

    Raises :class:`KernelFileError` naming the file, the entry and the field of every
    problem; nothing is compiled.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KernelFileError([f"{name}: cannot read it ({exc})"]) from None
    is_json = Path(path).suffix.lower() == ".json" or (
        Path(path).suffix.lower() != ".toml" and text.lstrip()[:1] in ("{", "["))
    if is_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KernelFileError([f"{name}: not valid JSON ({exc})"]) from None
    else:
        data = _load_toml(name, text)
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"kernel"})
        if unknown:
            raise KernelFileError([(f"{name}: unknown top-level key {unknown[0]!r} (kernels "
                                    "are [[kernel]] tables, or a JSON 'kernel' list)")])
        if "kernel" not in data:
            raise KernelFileError([(f"{name}: no kernels: expected [[kernel]] tables "
                                    "(JSON: a 'kernel' list, or a top-level list)")])
        data = data["kernel"]
    if not isinstance(data, list):
        raise KernelFileError([f"{name}: kernel: expected a list of tables, got {data!r}"])
    return kernels_from_entries(data, name)


def _load_toml(name: str, text: str) -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise KernelFileError([(f"{name}: reading TOML needs Python 3.11 or the tomli "
                                    "package; or write the kernel list as JSON")]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KernelFileError([f"{name}: not valid TOML ({exc})"]) from None


def kernels_from_entries(entries: Sequence[Any], source: str) -> list[KernelSpec]:
    """Validate kernel-list entries (dicts) and expand them, one :class:`KernelSpec` per
    dtype.  ``source`` names where they came from in error messages.

    >>> kernels_from_entries([{"equation": "ij->", "shapes": "abc"}], "k.toml")
    Traceback (most recent call last):
    ...
    einjit.warmup.KernelFileError: k.toml: kernel[0].shapes: expected a list of integer lists, got 'abc'
    """
    problems: list[str] = []
    specs: list[KernelSpec] = []
    for i, entry in enumerate(entries):
        where = f"{source}: kernel[{i}]"
        found = _entry(entry, where, problems)
        if found is not None:
            specs.extend(found)
    if problems:
        raise KernelFileError(problems)
    return specs


def _entry(entry: Any, where: str, problems: list[str]) -> list[KernelSpec] | None:
    """One entry's kernels, or None after appending its problems."""
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a table with equation and shapes, got {entry!r}")
        return None
    before = len(problems)
    for key in sorted(set(entry) - set(_FIELDS)):
        problems.append(f"{where}: unknown field {key!r} (expected one of {', '.join(_FIELDS)})")
    equation = entry.get("equation")
    n_operands = None
    if not isinstance(equation, str):
        problems.append(f"{where}.equation: expected a string like 'ij,jk->ik', got {equation!r}")
    else:
        try:
            n_operands = len(parse_subscripts(equation).inputs)
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}.equation: {exc}")
    shapes = entry.get("shapes")
    if not _is_shape_list(shapes):
        problems.append(f"{where}.shapes: expected a list of integer lists, got {shapes!r}")
    elif n_operands is not None and len(shapes) != n_operands:
        problems.append(f"{where}.shapes: the equation has {n_operands} operand(s), "
                        f"got {len(shapes)} shape(s)")
    dtypes = _dtypes(entry, where, problems)
    target = entry.get("target", "cpu")
    if target not in TARGETS:
        problems.append(f"{where}.target: expected one of {', '.join(map(repr, TARGETS))}, "
                        f"got {target!r}")
    optimize = _optimize(entry.get("optimize", engine.DEFAULT_OPTIMIZE), where, problems)
    if len(problems) > before:
        return None
    shape_tuple = tuple(tuple(s) for s in shapes)
    return [KernelSpec(equation, shape_tuple, dt, target, optimize) for dt in dtypes]


def _is_shape_list(shapes: Any) -> bool:
    return isinstance(shapes, list) and all(
        isinstance(s, list) and all(type(n) is int and n >= 0 for n in s) for s in shapes)


def _dtypes(entry: dict[str, Any], where: str, problems: list[str]) -> list[str]:
    if "dtypes" in entry and "dtype" in entry:
        problems.append(f"{where}: give 'dtypes' (a list) or 'dtype' (one name), not both")
        return []
    if "dtype" in entry:
        names, field = [entry["dtype"]], "dtype"
        if not isinstance(entry["dtype"], str):
            problems.append(f"{where}.dtype: expected a dtype name, got {entry['dtype']!r}")
            return []
    else:
        names, field = entry.get("dtypes", ["float64"]), "dtypes"
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            problems.append(f"{where}.dtypes: expected a non-empty list of dtype names, "
                            f"got {names!r}")
            return []
    result = []
    for k, name in enumerate(names):
        label = f"{where}.{field}" + (f"[{k}]" if field == "dtypes" else "")
        try:
            result.append(np.dtype(name).name)
        except TypeError:
            problems.append(f"{label}: {name!r} is not a numpy dtype")
    return result


def _optimize(value: Any, where: str, problems: list[str]) -> Any:
    if isinstance(value, bool) or (isinstance(value, str) and value in PATH_FINDERS):
        return value
    if (isinstance(value, list) and value and value[0] == "einsum_path"
            and all(_is_shape_list([c]) for c in value[1:])):
        return ["einsum_path", *(tuple(c) for c in value[1:])]
    problems.append(f"{where}.optimize: expected true, false, one of "
                    f"{', '.join(map(repr, PATH_FINDERS))} or ['einsum_path', [0, 1], ...], "
                    f"got {value!r}")
    return None


# --------------------------------------------------------------------------- warming

def warm(equation: str, shapes: Sequence[Sequence[int]], dtype: Any = "float64",
         optimize: Any = engine.DEFAULT_OPTIMIZE, target: str = "cpu") -> str:
    """Compile (or load) the kernels ``einsum(equation, *arrays)`` needs for arrays of
    these shapes and this dtype; returns what happened, a status string:

    ``"compiled"`` (Numba compiled at least one kernel), ``"already cached"`` (every
    kernel came from the disk cache or from memory) or ``"nothing to compile (...)"``
    (a view, BLAS or numpy ufuncs only).  Errors are einsum's own exceptions.

    >>> warm("ij->ji", [(2, 3)])
    'nothing to compile (a view)'
    >>> warm("i,i->", [(3,), (3,)]) in ("compiled", "already cached")
    True
    """
    if target == "cuda":
        from . import cuda as cuda_target
        return COMPILED if cuda_target.warm(equation, shapes, dtype, optimize) else CACHED
    if target != "cpu":
        raise ValueError(f"unknown target {target!r} (expected one of {', '.join(TARGETS)})")
    operands = [np.empty(tuple(s), dtype=dtype) for s in shapes]  # pages never touched
    call = engine.prepare_operands(parse_subscripts(equation), operands, None, None, "K",
                                   "safe", optimize)
    if call.view is not None:
        return f"{NOTHING} (a view)"
    before = cache.STATS.compilations
    compiled = engine.lookup(call)
    if cache.STATS.compilations > before:
        return COMPILED
    if compiled.backend == "numba" and any(not n.schedule.gemm for n in compiled.nests):
        return CACHED  # from the disk cache, or compiled earlier in this process
    return f"{NOTHING} ({'BLAS' if call.arith.backend == 'numba' else 'numpy ufuncs'})"


def warm_kernel(spec: KernelSpec) -> WarmResult:
    """:func:`warm` one kernel; exceptions become a :data:`FAILED` result with the message.

    >>> r = warm_kernel(KernelSpec("ij,jk->ik", ((2, 3), (4, 5))))
    >>> r.status, "'j'" in r.reason
    ('failed', True)
    """
    start = time.perf_counter()
    try:
        status = warm(spec.equation, spec.shapes, spec.dtype, spec.optimize, spec.target)
    except Exception as exc:  # noqa: BLE001 (reported per kernel; the rest go on)
        return WarmResult(spec, FAILED, str(exc) or type(exc).__name__,
                          time.perf_counter() - start)
    reason = ""
    if status.startswith(NOTHING + " ("):
        status, reason = NOTHING, status[len(NOTHING) + 2:-1]
    return WarmResult(spec, status, reason, time.perf_counter() - start)


def warm_all(specs: Iterable[KernelSpec], jobs: int = 1,
             on_result: Callable[[WarmResult], None] | None = None) -> list[WarmResult]:
    """Warm every kernel, in this process (``jobs=1``) or in ``jobs`` fresh processes.

    Results come back in completion order; ``on_result`` sees each as it arrives.
    Worker processes are spawned (not forked: a forked Numba or OpenMP runtime is unsafe)
    and share the disk cache through ``EINJIT_CACHE_DIR``/the default directory.
    """
    specs = list(specs)
    results: list[WarmResult] = []

    def done(result: WarmResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    if jobs <= 1 or len(specs) <= 1:
        for spec in specs:
            done(warm_kernel(spec))
        return results
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(specs)), mp_context=context) as pool:
        futures = {pool.submit(warm_kernel, spec): spec for spec in specs}
        for future in as_completed(futures):
            try:
                done(future.result())
            except Exception as exc:  # noqa: BLE001 (a worker died: report it, go on)
                done(WarmResult(futures[future], FAILED, f"worker process failed: {exc}"))
    return results
