"""The ``einjit`` command: warm up kernels, inspect or clear the cache, explain a plan.

``einjit warmup``, ``einjit cache info|clear|path`` and ``einjit explain``; also
``python -m einjit``.  :func:`main` takes the argument list and returns the exit status:
0 success, 1 some kernel failed to compile, 2 a usage error or a malformed kernel file.

>>> main(["explain", "i,i->", "3", "3"])  # doctest: +ELLIPSIS
einsum 'i,i->'
...
0
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import cache
from .warmup import (
    CACHED,
    COMPILED,
    FAILED,
    NOTHING,
    KernelFileError,
    KernelSpec,
    WarmResult,
    kernels_from_entries,
    parse_shape,
    read_kernel_file,
    warm_all,
)

__all__ = ["Progress", "build_parser", "main"]

_MAIN_EPILOG = """\
examples:
  einjit warmup kernels.toml --jobs 2      compile every kernel a file lists
  einjit warmup --equation "bij,bjk->bik" --shapes 64x128x128,64x128x128 --dtype float32
  einjit cache info                        what the disk cache holds
  einjit cache clear --older-than 30       delete kernels older than 30 days
  einjit explain "ij,jk->ik" 64x32 32x16   plan, loop nests and generated source

The cache directory is $EINJIT_CACHE_DIR, else $XDG_CACHE_HOME/einjit or ~/.cache/einjit.
"""

_WARMUP_EPILOG = """\
A kernel file is TOML or JSON; each [[kernel]] table is one equation and its shapes:

  [[kernel]]
  equation = "bij,bjk->bik"
  shapes = [[64, 128, 128], [64, 128, 128]]
  dtypes = ["float32", "float64"]      # one kernel per dtype ("dtype" for one name)
  target = "cpu"                       # or "cuda" (a GPU, or NUMBA_ENABLE_CUDASIM=1)
  optimize = "auto"                    # optional, as einsum's optimize=

JSON: {"kernel": [{"equation": ..., "shapes": ...}, ...]} or a top-level list.
Operands are C-contiguous arrays of those shapes; nothing is computed.

examples:
  einjit warmup kernels.toml
  einjit warmup a.toml b.json --jobs 4
  einjit warmup --equation "bij,bjk->bik" --shapes 64x128x128,64x128x128 --dtype float32
  einjit warmup --equation "i,i->" --shapes 1000,1000 --dtype float32,float64
  einjit warmup --equation "ij,j->i" --shapes 8x8,8 --dtype float32 --dtype complex64

exit status: 0 all kernels ready, 1 some kernel failed, 2 a malformed file or usage.
"""

_CACHE_EPILOG = """\
examples:
  einjit cache info                  directory, kernel count, size, per-equation list
  einjit cache clear                 delete every kernel and Numba's files for it
  einjit cache clear --older-than 7  only kernels whose files are older than 7 days
  einjit cache path                  print the directory (for scripts)
"""

_EXPLAIN_EPILOG = """\
SHAPE is sizes joined by 'x' (64x128x128); '' or 'scalar' is a 0-d operand.
Nothing is compiled or run.

examples:
  einjit explain "ij,jk->ik" 64x32 32x16
  einjit explain "bij,bjk->bik" 8x32x16 8x16x4 --dtype float32
  einjit explain "ij,jk,kl->il" 10x20 20x30 30x5 --optimize greedy
  einjit explain "i,->i" 5 scalar
  einjit explain "ij,ij->i" 65536x1024 65536x1024 --dtype float32 --target cuda
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``einjit`` command (every subcommand has ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="einjit", formatter_class=_formatter, epilog=_MAIN_EPILOG,
        description="Einstein summation compiled to fused Numba kernels: the command line.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"einjit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    warm = sub.add_parser(
        "warmup", formatter_class=_formatter, epilog=_WARMUP_EPILOG,
        help="compile kernels into the disk cache ahead of time",
        description="Compile the kernels FILE(s) (TOML or JSON) or --equation name into the "
                    "disk cache, so later processes load them instead of compiling.")
    warm.add_argument("files", nargs="*", metavar="FILE", help="TOML or JSON kernel list")
    warm.add_argument("--equation", "-e", help="an einsum equation, e.g. 'bij,bjk->bik'")
    warm.add_argument("--shapes", "-s", metavar="SHAPES",
                      help="operand shapes for --equation, comma-separated: 64x128,128x32")
    warm.add_argument("--dtype", "-d", action="append", metavar="DTYPE",
                      help="dtype(s) for --equation: repeat or comma-separate (default float64)")
    warm.add_argument("--target", default="cpu", choices=("cpu", "cuda"),
                      help="target for --equation (default cpu)")
    warm.add_argument("--optimize", default="auto", metavar="OPT",
                      help="einsum's optimize= for --equation: auto (default), greedy, "
                           "optimal, true, false")
    warm.add_argument("--jobs", "-j", type=_positive, default=1, metavar="N",
                      help="compile in N processes (default 1: in this process)")
    warm.set_defaults(run=_warmup)

    cache_cmd = sub.add_parser(
        "cache", formatter_class=_formatter, epilog=_CACHE_EPILOG,
        help="inspect or clear the kernel cache on disk",
        description="Inspect or clear the kernel cache on disk.")
    cache_sub = cache_cmd.add_subparsers(dest="action", metavar="ACTION")
    cache_sub.required = True
    info = cache_sub.add_parser(
        "info", formatter_class=_formatter, epilog=_CACHE_EPILOG,
        help="directory, number of kernels, size on disk, kernels per equation",
        description="The cache directory, its kernels, their size on disk and a "
                    "per-equation list.")
    info.set_defaults(run=_cache_info)
    clear = cache_sub.add_parser(
        "clear", formatter_class=_formatter, epilog=_CACHE_EPILOG,
        help="delete kernel modules and Numba's cache files for them",
        description="Delete kernel modules and Numba's compiled code for them (and "
                    "left-over temporary files).")
    clear.add_argument("--older-than", type=_days, metavar="DAYS",
                       help="only kernels none of whose files changed in DAYS days")
    clear.set_defaults(run=_cache_clear)
    path = cache_sub.add_parser(
        "path", formatter_class=_formatter, epilog=_CACHE_EPILOG,
        help="print the cache directory", description="Print the cache directory.")
    path.set_defaults(run=_cache_path)

    explain = sub.add_parser(
        "explain", formatter_class=_formatter, epilog=_EXPLAIN_EPILOG,
        help="print the plan, loop nests and generated source for an einsum",
        description="Print how einjit evaluates EQUATION on operands of these shapes: the "
                    "plan, every kernel's loop nest and its generated source.")
    explain.add_argument("equation", metavar="EQUATION")
    explain.add_argument("shapes", nargs="*", metavar="SHAPE", type=_shape,
                         help="one per operand: 64x128x128; '' or 'scalar' for 0-d")
    explain.add_argument("--dtype", "-d", default=None, metavar="DTYPE",
                         help="the operands' dtype (default float64)")
    explain.add_argument("--optimize", default="auto", metavar="OPT",
                         help="einsum's optimize=: auto (default), greedy, optimal, true, false")
    explain.add_argument("--target", default="cpu", choices=("cpu", "cuda"),
                         help="cpu (default), or cuda: the GPU's thread mapping and numba.cuda "
                              "source per step (no GPU needed)")
    explain.set_defaults(run=_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``einjit`` command with ``argv`` (default ``sys.argv[1:]``); the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args, parser))
    except BrokenPipeError:  # `einjit cache info | head`
        return 0
    except KeyboardInterrupt:
        print("einjit: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- argument types

def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, got {text!r}")
    return days


def _shape(text: str) -> tuple[int, ...]:
    try:
        return parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _optimize(text: str) -> Any:
    low = text.strip().lower()
    return {"true": True, "false": False}.get(low, low)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# --------------------------------------------------------------------------- warmup

class Progress:
    """Reports warm-up results: one updating bar on a terminal, else a line per kernel.

    The bar goes to ``err`` (when it is a terminal); per-kernel lines (and, on a terminal,
    only the failures) go to ``out``.

    >>> import io
    >>> p = Progress(1, out=io.StringIO(), err=io.StringIO())
    >>> p.tty
    False
    """

    def __init__(self, total: int, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.total, self.done = total, 0
        self.out = sys.stdout if out is None else out
        self.err = sys.stderr if err is None else err
        isatty = getattr(self.err, "isatty", None)
        self.tty = bool(isatty and isatty())
        if self.tty:
            self._draw("")

    def _draw(self, label: str) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        width = 24
        filled = width * self.done // max(self.total, 1)
        line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {label}"
        self.err.write("\r" + line[:max(columns - 1, 10)] + "\033[K")
        self.err.flush()

    def update(self, result: WarmResult) -> None:
        """Count one finished kernel and show it."""
        self.done += 1
        line = _result_line(result)
        if not self.tty:
            print(line, file=self.out, flush=True)
            return
        if result.status == FAILED:
            self.err.write("\r\033[K")
            print(line, file=self.out, flush=True)
        self._draw(f"{result.status}: {result.spec}")

    def close(self) -> None:
        """Erase the bar (a terminal) so the summary starts on a clean line."""
        if self.tty:
            self.err.write("\r\033[K")
            self.err.flush()


def _result_line(result: WarmResult) -> str:
    reason = f" ({result.reason})" if result.reason else ""
    return f"{result.status + ':':<20}{result.spec}  [{result.seconds:.2f} s]{reason}"


def _inline_kernels(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[KernelSpec]:
    if args.equation is None:
        if args.shapes is not None or args.dtype:
            parser.error("warmup: --shapes and --dtype need --equation")
        return []
    if args.shapes is None:
        parser.error("warmup: --equation needs --shapes (e.g. --shapes 64x128,128x32)")
    try:
        shapes = [list(parse_shape(s)) for s in args.shapes.split(",")]
    except ValueError as exc:
        parser.error(f"warmup: --shapes: {exc}")
    dtypes = [d.strip() for group in (args.dtype or ["float64"]) for d in group.split(",")
              if d.strip()]
    entry = {"equation": args.equation, "shapes": shapes, "dtypes": dtypes,
             "target": args.target, "optimize": _optimize(args.optimize)}
    return kernels_from_entries([entry], "--equation")


def _warmup(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.files and args.equation is None:
        parser.error("warmup: give a kernel FILE or --equation with --shapes")
    specs: list[KernelSpec] = []
    problems: list[str] = []
    for name in args.files:  # every file is checked before anything compiles
        try:
            specs += read_kernel_file(name)
        except KernelFileError as exc:
            problems += exc.problems
    try:
        specs += _inline_kernels(args, parser)
    except KernelFileError as exc:
        problems += exc.problems
    if problems:
        for line in problems:
            print(f"einjit warmup: {line}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    progress = Progress(len(specs))
    try:
        results = warm_all(specs, args.jobs, progress.update)
    finally:
        progress.close()
    counts: dict[str, int] = defaultdict(int)
    for r in results:
        counts[r.status] += 1
    parts = [f"{counts[COMPILED]} compiled", f"{counts[CACHED]} already cached"]
    if counts[NOTHING]:
        parts.append(f"{counts[NOTHING]} with nothing to compile")
    parts.append(f"{counts[FAILED]} failed")
    print(f"{', '.join(parts)} in {time.perf_counter() - start:.1f} s "
          f"(cache: {cache.cache_info()['directory']})")
    return 1 if counts[FAILED] else 0


# --------------------------------------------------------------------------- cache

def _tree_size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _cache_info(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    directory = Path(cache.cache_info()["directory"]).absolute()
    if not directory.is_dir():
        print(f"directory: {directory} (does not exist yet)")
        print("kernels: 0")
        return 0
    kernels = cache.kernel_files(directory)
    print(f"directory: {directory}")
    print(f"kernels: {len(kernels)} ({_size(_tree_size(directory))} on disk)")
    if not kernels:
        return 0
    groups: dict[str, list[cache.KernelFile]] = defaultdict(list)
    for k in kernels:
        groups[k.equation].append(k)
    print(f"{'kernels':>9}  {'size':>10}  equation")
    for equation, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        size = sum(k.size for k in members)
        print(f"{len(members):>9}  {_size(size):>10}  {equation}")
    return 0


def _cache_clear(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    directory = Path(cache.cache_info()["directory"]).absolute()
    if not directory.is_dir():
        print(f"nothing to clear: {directory} does not exist")
        return 0
    count, size = cache.remove_kernels(args.older_than, directory)
    age = "" if args.older_than is None else f" older than {args.older_than:g} days"
    kept = len(cache.kernel_files(directory))
    print(f"removed {count} kernel(s){age} ({_size(size)}) from {directory}; {kept} kept")
    return 0


def _cache_path(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    print(Path(cache.cache_info()["directory"]).absolute())
    return 0


# --------------------------------------------------------------------------- explain

def _explain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .explain import explain

    try:
        text = str(explain(args.equation, *args.shapes, dtype=args.dtype,
                           optimize=_optimize(args.optimize), target=args.target))
    except (ValueError, TypeError, KeyError) as exc:
        print(f"einjit explain: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0
