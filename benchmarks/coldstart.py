"""einjit cold start: compile latency, import time, disk-cache loads, call overhead, warm-up.

    python benchmarks/coldstart.py                 # everything (~2 min on 2 cores)
    python benchmarks/coldstart.py --quick         # smoke test: a few cases, few repeats
    python benchmarks/coldstart.py --json cold.json

Measures, on this machine, the targets of project issue 4 ("Cold start") and prints one
table (measured value, target, pass/fail); ``--json PATH`` writes every number.  Every
measurement runs in fresh subprocesses (``sys.executable``), each with its own einjit
kernel cache (``EINJIT_CACHE_DIR`` in a temporary folder; Numba's files go beside the
kernel modules, so a fresh folder means an empty Numba cache too).  Bytecode of Python
modules is kept in a private ``PYTHONPYCACHEPREFIX`` (primed once), so imports are timed
as an installed package would see them, and nothing is written in the source tree.

1. cold compile: per CPU-suite case (``CASES`` of ``benchmarks/run.py``, float32), one
   process that imports einjit, compiles and runs two small unrelated Numba kernels
   (serial and ``parallel=True``: Numba's one-time start is not a kernel's cost), then
   times ``einjit.warmup.warm(equation, shapes, "float32")`` from an empty cache.  Each
   Numba kernel's own time is recorded around ``einjit.cache.compile_kernel``.  Cases that
   need no Numba kernel (a view, BLAS only) are listed but left out of the median.
2. ``import einjit``: ``perf_counter`` around the import inside fresh processes (median
   of 7), and whether numba (or llvmlite, opt_einsum) got imported with it.
3. first call in a fresh process whose kernels are in the disk cache: a cache is warmed
   (in another process) with the suite's Numba kernels; then each fresh process times its
   first call (``tiny_mm``, includes importing Numba and its one-time start) and the first
   and second call of every other cached kernel; the load cost of a further kernel is
   first call - second call.  ``cache_info()`` must show 0 compilations, >0 disk loads.
4. call overhead: ``ij,jk->ik`` on 4x4 float32 operands: ``einjit.einsum``, a
   ``einjit.compile`` function, ``numpy.einsum``, the compiled Numba kernel alone (with a
   preallocated output) and ``np.empty((4, 4))``, medians of interleaved ``timeit``
   samples.  Overhead = call - kernel alone.
5. warm-up of the CPU suite (float32 and float64): ``python -m einjit warmup FILE`` with
   ``--jobs 2`` and ``--jobs 1``, each into a fresh cache, then a fresh process runs every
   case once (real shapes, random data) on the ``--jobs 2`` cache: 0 compilations.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARK = "@@coldstart@@ "          # a child's result: this prefix, then one JSON line

TARGETS = {
    "compile_median_s": 0.5,
    "import_s": 0.3,
    "first_cached_call_s": 0.45,
    "further_cached_kernel_s": 0.015,
    "decorator_overhead_us": 1.5,
}

# Item 3: the cached kernels (suite cases whose plan has a Numba step); the first is the
# first call of each fresh process.
FIRST_CALL_CASES = ["tiny_mm", "tiny_dot", "trace", "rowdot", "outer", "dot3", "rowdot3",
                    "quadform", "mttkrp"]
QUICK_COMPILE_CASES = ["tiny_mm", "tiny_dot", "rowdot", "matmul", "diag"]
QUICK_FIRST_CALL_CASES = ["tiny_mm", "tiny_dot", "rowdot"]
QUICK_SUITE_CASES = ["tiny_mm", "tiny_dot", "trace", "rowdot", "matmul", "diag"]


# =============================================================================== children
# Run as ``coldstart.py --child NAME JSON``: nothing heavy is imported at module level, so
# each child starts as a plain Python process; it prints MARK + one JSON line at the end.

def _numba_startup() -> float:
    """Compile and run two small kernels unrelated to any einjit kernel: Numba's
    one-time start (its import, compiler pipeline, parfors, threading layer)."""
    t0 = time.perf_counter()
    import numpy as np
    from numba import njit, prange

    @njit(cache=False, nogil=True, error_model="numpy")
    def serial(a: Any, out: Any) -> None:
        for i in range(a.shape[0]):
            s = 0.0
            for j in range(a.shape[1]):
                s += a[i, j] * 2.0
            out[i] = s

    @njit(cache=False, nogil=True, parallel=True, error_model="numpy")
    def parallel(a: Any, out: Any) -> None:
        for i in prange(a.shape[0]):
            s = 0.0
            for j in range(a.shape[1]):
                s += a[i, j]
            out[i] = s

    a = np.ones((50, 3))
    out = np.empty(50)
    serial(a, out)
    parallel(a, out)
    return time.perf_counter() - t0


def _step_kinds(engine: Any, np: Any, equation: str, shapes: list[list[int]],
                dtype: str) -> list[str]:
    """Per plan step: "blas", "serial" or "parallel" (Numba); ["view"] for a view."""
    call = engine.prepare((equation, *[np.empty(tuple(s), dtype) for s in shapes]))
    if call.view is not None:
        return ["view"]
    if call.arith.backend != "numba":
        return ["numpy-ufunc"]
    _, nests = engine.plan_call(call)
    return ["blas" if n.schedule.gemm else
            "parallel" if n.schedule.parallel is not None else "serial" for n in nests]


def child_compile(p: dict[str, Any]) -> dict[str, Any]:
    """Item 1: compile one case's kernels from an empty cache, after Numba's start."""
    t0 = time.perf_counter()
    import numpy as np

    import einjit
    from einjit import cache, engine, warmup
    import_s = time.perf_counter() - t0
    kinds = _step_kinds(engine, np, p["equation"], p["shapes"], p["dtype"])
    numba_steps = [k for k in kinds if k in ("serial", "parallel")]
    startup_s = _numba_startup() if numba_steps else None

    kernels: list[dict[str, Any]] = []
    original = cache.compile_kernel

    def timed(source: str, name: str, signature: Any) -> Any:
        before = cache.STATS.compilations
        t = time.perf_counter()
        fn = original(source, name, signature)
        kernels.append({"name": name, "seconds": time.perf_counter() - t,
                        "compiled": cache.STATS.compilations > before,
                        "parallel": "parallel=True" in source})
        return fn

    cache.compile_kernel = timed           # engine calls it through the module
    before = einjit.cache_info()
    t = time.perf_counter()
    status = warmup.warm(p["equation"], p["shapes"], p["dtype"])
    wall = time.perf_counter() - t
    after = einjit.cache_info()
    return {"import_s": import_s, "numba_startup_s": startup_s, "steps": kinds,
            "status": status, "wall_s": wall, "kernels": kernels,
            "compile_seconds": after["compile_seconds"] - before["compile_seconds"],
            "compilations": after["compilations"] - before["compilations"],
            "disk_loads": after["disk_loads"] - before["disk_loads"]}


def child_first_calls(p: dict[str, Any]) -> dict[str, Any]:
    """Item 3: first call in a fresh process, then first/second call of each other
    cached kernel."""
    t0 = time.perf_counter()
    import numpy as np

    import einjit
    import_s = time.perf_counter() - t0
    numba_before = "numba" in sys.modules
    numba_import_s = None
    if p.get("split"):                          # breakdown run: Numba's import timed apart
        t = time.perf_counter()
        import numba  # noqa: F401
        numba_import_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    data = [(c["name"], c["equation"],
             [rng.standard_normal(tuple(s)).astype(p["dtype"]) for s in c["shapes"]])
            for c in p["cases"]]
    name, eq, ops = data[0]
    t = time.perf_counter()
    einjit.einsum(eq, *ops)
    first_s = time.perf_counter() - t
    info_first = einjit.cache_info()
    scipy_after_first = "scipy.linalg" in sys.modules
    further = []
    for name, eq, ops in data[1:]:
        before = einjit.cache_info()
        loaded = set(sys.modules)
        t = time.perf_counter()
        einjit.einsum(eq, *ops)
        t1 = time.perf_counter() - t
        after = einjit.cache_info()
        imported = sorted({m.split(".")[0] for m in set(sys.modules) - loaded} - {
            "einjit_kernels", "__mp_main__"})      # kernel modules; multiprocessing's alias
        later = []
        for _ in range(3):
            t = time.perf_counter()
            einjit.einsum(eq, *ops)
            later.append(time.perf_counter() - t)
        # load_s: einjit's own time to get the cached plan ready (plan, generate, load
        # Numba's files: cache_info's compile_seconds), without the kernel's run.
        further.append({"name": name, "first_s": t1, "later_best_s": min(later),
                        "first_minus_later_s": t1 - min(later),
                        "load_s": after["compile_seconds"] - before["compile_seconds"],
                        "disk_loads": after["disk_loads"] - before["disk_loads"],
                        "imported": imported})
    info = einjit.cache_info()
    return {"import_s": import_s, "numba_imported_before_first_call": numba_before,
            "numba_import_s": numba_import_s, "scipy_imported_by_first_call": scipy_after_first,
            "first_case": data[0][0], "first_s": first_s, "further": further,
            "first_disk_loads": info_first["disk_loads"],
            "compilations": info["compilations"], "disk_loads": info["disk_loads"],
            "compile_seconds": info["compile_seconds"]}


def child_overhead(p: dict[str, Any]) -> dict[str, Any]:
    """Item 4: a cached ``ij,jk->ik`` on 4x4 float32, against its kernel alone."""
    import random
    import timeit

    import numpy as np

    import einjit
    from einjit import engine

    eq = "ij,jk->ik"
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 4)).astype(np.float32)
    b = rng.standard_normal((4, 4)).astype(np.float32)

    @einjit.compile(eq)
    def mm(a: Any, b: Any) -> Any:
        """Matrix product."""

    expect = a @ b                              # the reference: not numpy.einsum
    checks = {"einjit.einsum": einjit.einsum(eq, a, b), "decorator": mm(a, b)}
    plan = engine.lookup(engine.prepare((eq, a, b)))
    kernel = plan.kernels[0]
    out = np.empty((4, 4), np.float32)
    kernel(a, b, out)
    checks["kernel alone"] = out
    wrong = [k for k, v in checks.items() if not np.allclose(v, expect, rtol=1e-5, atol=1e-5)]
    shape, f32 = (4, 4), np.float32
    names = {"einsum": einjit.einsum, "mm": mm, "np_einsum": np.einsum, "kernel": kernel,
             "empty": np.empty, "eq": eq, "a": a, "b": b, "out": out, "shape": shape,
             "f32": f32}
    stmts = {"einjit.einsum": "einsum(eq, a, b)", "decorator": "mm(a, b)",
             "numpy.einsum": "np_einsum(eq, a, b)", "kernel alone": "kernel(a, b, out)",
             "np.empty": "empty(shape, f32)"}
    timers = {k: timeit.Timer(s, globals=names) for k, s in stmts.items()}
    for t in timers.values():                   # warm every path once
        t.timeit(200)
    samples: dict[str, list[float]] = {k: [] for k in timers}
    order = list(timers)
    shuffle = random.Random(4)
    for _ in range(p["samples"]):
        shuffle.shuffle(order)                  # interleaved, in a fresh order each round
        for k in order:
            samples[k].append(timers[k].timeit(p["number"]) / p["number"])
    med = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
    return {"median_us": med, "min_us": {k: min(v) * 1e6 for k, v in samples.items()},
            "samples": p["samples"], "number": p["number"], "wrong": wrong,
            "kernel_type": type(kernel).__module__ + "." + type(kernel).__qualname__,
            "plan_backend": plan.backend, "cache": einjit.cache_info()}


def child_run_suite(p: dict[str, Any]) -> dict[str, Any]:
    """Item 5: every case once, real shapes and random data, on a warmed cache."""
    t0 = time.perf_counter()
    import numpy as np

    import einjit
    rng = np.random.default_rng(2)
    rows = []
    for c in p["cases"]:
        for dtype in p["dtypes"]:
            ops = [rng.standard_normal(tuple(s)).astype(dtype) for s in c["shapes"]]
            before = einjit.cache_info()
            t = time.perf_counter()
            einjit.einsum(c["equation"], *ops)
            dt = time.perf_counter() - t
            after = einjit.cache_info()
            rows.append({"name": c["name"], "dtype": dtype, "seconds": dt,
                         "compilations": after["compilations"] - before["compilations"],
                         "disk_loads": after["disk_loads"] - before["disk_loads"]})
            del ops
    info = einjit.cache_info()
    return {"wall_s": time.perf_counter() - t0, "cases": rows,
            "compilations": info["compilations"], "disk_loads": info["disk_loads"],
            "misses": info["misses"]}


def child_prime(p: dict[str, Any]) -> dict[str, Any]:
    """Import and run everything once, so every module's bytecode is cached."""
    import numpy as np
    import opt_einsum.paths  # noqa: F401

    import einjit
    _numba_startup()
    einjit.einsum("ab,b->a", np.ones((3, 2)), np.ones(2))
    return {}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "prime": child_prime, "compile": child_compile, "first_calls": child_first_calls,
    "overhead": child_overhead, "run_suite": child_run_suite,
}

IMPORT_CODE = """\
import sys, time, json
pre = sys.argv[1:] == ["numpy-first"]
if pre:
    import numpy
t0 = time.perf_counter()
import einjit
dt = time.perf_counter() - t0
heavy = [m for m in ("numpy", "numba", "llvmlite", "opt_einsum", "scipy", "torch")
         if m in sys.modules]
print(MARK + json.dumps({"seconds": dt, "modules": heavy}))
""".replace("MARK", repr(MARK))


# ================================================================================ parent

class ChildError(RuntimeError):
    pass


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="einjit-coldstart-"))
        self.pycache = self.tmp / "pycache"
        self.caches = 0

    def fresh_cache(self, label: str) -> Path:
        self.caches += 1
        path = self.tmp / f"cache-{self.caches:02d}-{label}"
        return path                              # einjit creates it (mode 0o700)

    def env(self, cache_dir: Path, bytecode: bool = True) -> dict[str, str]:
        env = dict(os.environ)
        env["EINJIT_CACHE_DIR"] = str(cache_dir)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + (
            [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        if bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env["PYTHONPYCACHEPREFIX"] = str(self.tmp / "no-pycache")
        return env

    def spawn(self, cmd: list[str], cache_dir: Path, timeout: float = 600,
              bytecode: bool = True) -> dict[str, Any]:
        proc = subprocess.run(cmd, check=False, env=self.env(cache_dir, bytecode), cwd=ROOT, text=True,
                              capture_output=True, timeout=timeout)
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise ChildError(f"child {cmd[-2:]!r} exited {proc.returncode}: " + " | ".join(tail))

    def child(self, name: str, payload: dict[str, Any], cache_dir: Path,
              timeout: float = 600) -> dict[str, Any]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name,
               json.dumps(payload)]
        return self.spawn(cmd, cache_dir, timeout)

    def close(self) -> None:
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _load_cases() -> list[Any]:
    """``CASES`` of benchmarks/run.py (imported as a module, not run)."""
    spec = importlib.util.spec_from_file_location("einjit_bench_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module             # dataclasses look their module up
    spec.loader.exec_module(module)
    return list(module.CASES)


def _case_dict(case: Any) -> dict[str, Any]:
    return {"name": case.name, "equation": case.equation,
            "shapes": [list(s) for s in case.shapes]}


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


class CpuMeter:
    """How busy the machine was besides this script and its children, over an interval:
    busy CPU time from /proc/stat minus our own (getrusage), as a share of all CPUs;
    and the hypervisor's steal time.  None where /proc/stat is missing."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, float] | None:
        import resource
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except OSError:
            return None
        ticks = [int(x) for x in fields] + [0] * 8
        hz = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
        busy = (user + nice + system + irq + softirq) / hz
        own = sum(getattr(resource.getrusage(who), f) for who in
                  (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime"))
        return busy, own, steal / hz, time.monotonic()

    def read(self) -> dict[str, float] | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall = max(end[3] - self.start[3], 1e-9)
        cpus = os.cpu_count() or 1
        other = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return {"other_cpu_pct": max(0.0, 100 * other / (wall * cpus)),
                "steal_pct": 100 * (end[2] - self.start[2]) / (wall * cpus)}


def _say(text: str) -> None:
    print(text, flush=True)


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.1f} ms"


# ----------------------------------------------------------------------------- item 1

def item_compile(bench: Bench, cases: list[Any]) -> dict[str, Any]:
    _say(f"\n[1] cold compile, one process per case, float32 (load {_load()})")
    rows = []
    for case in cases:
        payload = {**_case_dict(case), "dtype": "float32"}
        try:
            r = bench.child("compile", payload, bench.fresh_cache(f"compile-{case.name}"))
        except (ChildError, subprocess.TimeoutExpired) as exc:
            rows.append({"name": case.name, "error": str(exc)})
            _say(f"  {case.name:<10} ERROR {exc}")
            continue
        r["name"], r["equation"] = case.name, case.equation
        rows.append(r)
        compiled = [k for k in r["kernels"] if k["compiled"]]
        if compiled:
            per = ", ".join(f"{k['seconds']:.2f} s{' par' if k['parallel'] else ''}"
                            for k in compiled)
            what = f"{len(compiled)} Numba kernel(s): {per}"
        else:
            what = r["status"]
        _say(f"  {case.name:<10} {case.equation:<20} steps {'+'.join(r['steps']):<18} "
             f"wall {r['wall_s']:.3f} s  compile_seconds {r['compile_seconds']:.3f} s  "
             f"[{what}]  (Numba start before: "
             f"{'-' if r['numba_startup_s'] is None else format(r['numba_startup_s'], '.2f')} s)")
    kernel_times = [k["seconds"] for r in rows for k in r.get("kernels", []) if k["compiled"]]
    case_times = [r["wall_s"] for r in rows if any(k["compiled"] for k in r.get("kernels", []))]
    serial = [k["seconds"] for r in rows for k in r.get("kernels", [])
              if k["compiled"] and not k["parallel"]]
    parallel = [k["seconds"] for r in rows for k in r.get("kernels", [])
                if k["compiled"] and k["parallel"]]
    res = {
        "cases": rows,
        "kernels_compiled": len(kernel_times),
        "median_kernel_s": statistics.median(kernel_times) if kernel_times else None,
        "median_case_wall_s": statistics.median(case_times) if case_times else None,
        "median_serial_kernel_s": statistics.median(serial) if serial else None,
        "median_parallel_kernel_s": statistics.median(parallel) if parallel else None,
        "no_numba_cases": [r["name"] for r in rows
                           if "error" not in r and not any(k["compiled"] for k in r["kernels"])],
        "errors": [r["name"] for r in rows if "error" in r],
    }
    if kernel_times:
        _say(f"  median over {len(kernel_times)} Numba kernels: {res['median_kernel_s']:.3f} s "
             f"(serial {_fmt_s(res['median_serial_kernel_s'])}, parallel "
             f"{_fmt_s(res['median_parallel_kernel_s'])}); median case wall "
             f"{res['median_case_wall_s']:.3f} s; no Numba compile: "
             f"{', '.join(res['no_numba_cases']) or '-'}")
    return res


def _fmt_s(s: float | None) -> str:
    return "-" if s is None else f"{s:.3f} s"


# ----------------------------------------------------------------------------- item 2

def item_import(bench: Bench, repeats: int) -> dict[str, Any]:
    _say(f"\n[2] import einjit, {repeats} fresh processes each (load {_load()})")
    cache_dir = bench.fresh_cache("import")
    res: dict[str, Any] = {}
    for label, extra, bytecode in (("import einjit", [], True),
                                   ("import einjit after numpy", ["numpy-first"], True),
                                   ("import einjit, no .pyc", [], False)):
        cmd = [sys.executable, "-c", IMPORT_CODE, *extra]
        bench.spawn(cmd, cache_dir, 120, bytecode)          # primes the bytecode cache
        runs = [bench.spawn(cmd, cache_dir, 120, bytecode) for _ in range(repeats)]
        secs = [r["seconds"] for r in runs]
        res[label] = {"median_s": statistics.median(secs), "min_s": min(secs),
                      "samples_s": secs, "modules": runs[-1]["modules"]}
        _say(f"  {label:<28} median {statistics.median(secs) * 1e3:6.1f} ms  "
             f"(min {min(secs) * 1e3:.1f} ms)  modules loaded: {', '.join(runs[-1]['modules'])}")
    return res


# ----------------------------------------------------------------------------- item 3

def item_first_calls(bench: Bench, cases: list[Any], processes: int) -> dict[str, Any]:
    _say(f"\n[3] first calls in fresh processes, kernels in the disk cache (load {_load()})")
    cache_dir = bench.fresh_cache("first-calls")
    kernel_file = bench.tmp / "first-calls.json"
    kernel_file.write_text(json.dumps({"kernel": [
        {"equation": c.equation, "shapes": [list(s) for s in c.shapes], "dtype": "float32"}
        for c in cases]}))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "einjit", "warmup", str(kernel_file)],
                          check=False, env=bench.env(cache_dir), cwd=ROOT, text=True, capture_output=True,
                          timeout=600)
    summary = proc.stdout.strip().splitlines()[-1:] or [proc.stderr.strip()]
    _say(f"  warmed {len(cases)} kernels in {time.perf_counter() - t:.1f} s: {summary[0]}")
    if proc.returncode != 0:
        raise ChildError(f"einjit warmup exited {proc.returncode}: {proc.stderr[-500:]}")
    payload = {"cases": [_case_dict(c) for c in cases], "dtype": "float32"}
    runs = []
    for _ in range(processes):
        runs.append(bench.child("first_calls", payload, cache_dir))
    # Breakdown: the same, with ``import numba`` timed on its own before the first call.
    splits = [bench.child("first_calls", {**payload, "split": True}, cache_dir)
              for _ in range(max(1, processes // 2))]
    firsts = [r["first_s"] for r in runs]
    per_kernel: dict[str, list[float]] = {}
    per_kernel_first: dict[str, list[float]] = {}
    per_kernel_extra: dict[str, list[float]] = {}
    for r in runs:
        for f in r["further"]:
            per_kernel.setdefault(f["name"], []).append(f["load_s"])
            per_kernel_first.setdefault(f["name"], []).append(f["first_s"])
            per_kernel_extra.setdefault(f["name"], []).append(f["first_minus_later_s"])
    kernel_medians = {k: statistics.median(v) for k, v in per_kernel.items()}
    all_loads = [x for v in per_kernel.values() for x in v]
    clean = all(r["compilations"] == 0 and r["disk_loads"] > 0 for r in runs)
    res = {
        "runs": runs, "split_runs": splits, "first_case": cases[0].name,
        "split_numba_import_median_s": statistics.median(r["numba_import_s"] for r in splits),
        "split_first_call_median_s": statistics.median(r["first_s"] for r in splits),
        "scipy_imported_by_first_call": runs[0]["scipy_imported_by_first_call"],
        "first_call_median_s": statistics.median(firsts),
        "further_load_median_s": statistics.median(all_loads) if all_loads else None,
        "further_load_per_kernel_median_s": kernel_medians,
        "further_first_call_per_kernel_median_s": {k: statistics.median(v)
                                                   for k, v in per_kernel_first.items()},
        "further_first_minus_later_per_kernel_median_s": {
            k: statistics.median(v) for k, v in per_kernel_extra.items()},
        "further_load_worst_kernel_s": max(kernel_medians.values()) if kernel_medians else None,
        "compilations": [r["compilations"] for r in runs],
        "disk_loads": [r["disk_loads"] for r in runs],
        "no_compilations_and_disk_loads": clean,
    }
    _say(f"  first call ({cases[0].name}, {cases[0].equation}): median "
         f"{res['first_call_median_s'] * 1e3:.0f} ms over {processes} processes "
         f"({', '.join(f'{x * 1e3:.0f}' for x in firsts)} ms); numba imported before it: "
         f"{runs[0]['numba_imported_before_first_call']}")
    _say(f"  breakdown ({len(splits)} more processes): import numba "
         f"{res['split_numba_import_median_s'] * 1e3:.0f} ms, then the first call "
         f"{res['split_first_call_median_s'] * 1e3:.0f} ms; scipy.linalg imported during the "
         f"first call (Numba's BLAS probe): {res['scipy_imported_by_first_call']}")
    imports = {f["name"]: f["imported"] for f in runs[0]["further"]}
    for k, v in kernel_medians.items():
        _say(f"  further {k:<10} load (einjit build) median {v * 1e3:6.1f} ms; 1st call "
             f"{res['further_first_call_per_kernel_median_s'][k] * 1e3:7.1f} ms, 1st - best of "
             f"next 3 {res['further_first_minus_later_per_kernel_median_s'][k] * 1e3:6.1f} ms"
             f"{'; imported ' + ', '.join(imports[k]) if imports.get(k) else ''}")
    _say(f"  compilations per process {res['compilations']}, disk loads {res['disk_loads']}")
    return res


# ----------------------------------------------------------------------------- item 4

def item_overhead(bench: Bench, samples: int, number: int) -> dict[str, Any]:
    _say(f"\n[4] cached-call overhead, ij,jk->ik 4x4 float32 (load {_load()})")
    r = bench.child("overhead", {"samples": samples, "number": number},
                    bench.fresh_cache("overhead"))
    med = r["median_us"]
    r["einsum_overhead_us"] = med["einjit.einsum"] - med["kernel alone"]
    r["decorator_overhead_us"] = med["decorator"] - med["kernel alone"]
    r["numpy_einsum_us"] = med["numpy.einsum"]
    for k, v in med.items():
        _say(f"  {k:<14} median {v:7.3f} us  (min {r['min_us'][k]:.3f})")
    _say(f"  overhead above the kernel: einjit.einsum {r['einsum_overhead_us']:.3f} us, "
         f"decorator {r['decorator_overhead_us']:.3f} us; kernel: {r['kernel_type']}"
         f"{'; WRONG RESULT: ' + ', '.join(r['wrong']) if r['wrong'] else ''}")
    return r


# ----------------------------------------------------------------------------- item 5

def item_suite_warmup(bench: Bench, cases: list[Any]) -> dict[str, Any]:
    dtypes = ["float32", "float64"]
    _say(f"\n[5] warm-up of {len(cases)} cases x {len(dtypes)} dtypes (load {_load()})")
    kernel_file = bench.tmp / "suite.json"
    kernel_file.write_text(json.dumps({"kernel": [
        {"equation": c.equation, "shapes": [list(s) for s in c.shapes], "dtypes": dtypes}
        for c in cases]}, indent=1))
    res: dict[str, Any] = {"kernel_file_entries": len(cases), "dtypes": dtypes}
    dirs = {}
    for jobs in (2, 1):
        cache_dir = dirs[jobs] = bench.fresh_cache(f"suite-jobs{jobs}")
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "einjit", "warmup", str(kernel_file),
                               "--jobs", str(jobs)], check=False, env=bench.env(cache_dir), cwd=ROOT,
                              text=True, capture_output=True, timeout=1200)
        wall = time.perf_counter() - t
        lines = proc.stdout.strip().splitlines()
        res[f"jobs{jobs}"] = {"wall_s": wall, "returncode": proc.returncode,
                              "summary": lines[-1] if lines else proc.stderr.strip()[-300:],
                              "failed": [ln for ln in lines if ln.startswith("failed")]}
        _say(f"  --jobs {jobs}: {wall:.1f} s (exit {proc.returncode}): "
             f"{res[f'jobs{jobs}']['summary']}  (load {_load()})")
        for ln in res[f"jobs{jobs}"]["failed"]:
            _say(f"    {ln}")
    payload = {"cases": [_case_dict(c) for c in cases], "dtypes": dtypes}
    r = bench.child("run_suite", payload, dirs[2], timeout=900)
    res["after"] = r
    comp = [f"{c['name']}/{c['dtype']}" for c in r["cases"] if c["compilations"]]
    _say(f"  a fresh process ran every case on the --jobs 2 cache in {r['wall_s']:.1f} s: "
         f"{r['compilations']} compilations, {r['disk_loads']} disk loads"
         f"{' (compiled: ' + ', '.join(comp) + ')' if comp else ''}")
    return res


# ----------------------------------------------------------------------------- report

def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []

    def err(item: str, label: str) -> bool:
        if isinstance(results.get(item), dict) and "error" in results[item]:
            rows.append((label, "ERROR: " + results[item]["error"][:60], "", "FAIL"))
            return True
        return item not in results

    if not err("compile", "1 cold compile, median/kernel"):
        c = results["compile"]
        m = c["median_kernel_s"]
        rows.append((f"1 cold compile, median of {c['kernels_compiled']} Numba kernels",
                     _fmt_s(m), f"<= {TARGETS['compile_median_s']} s",
                     _verdict(None if m is None else m <= TARGETS["compile_median_s"])))
        rows.append(("  serial / parallel kernels (median)",
                     (f"{_fmt_s(c['median_serial_kernel_s'])} / "
                      f"{_fmt_s(c['median_parallel_kernel_s'])}"), "", ""))
        rows.append(("  median case wall (warm(), incl. planning)",
                     _fmt_s(c["median_case_wall_s"]), "", ""))
        rows.append(("  cases with no Numba compile (excluded)",
                     f"{len(c['no_numba_cases'])} (BLAS or a view: see [1])", "", ""))
    if not err("import", "2 import einjit"):
        i = results["import"]
        m = i["import einjit"]["median_s"]
        mods = i["import einjit"]["modules"]
        rows.append(("2 import einjit (median, with .pyc)", _ms(m),
                     f"<= {TARGETS['import_s'] * 1e3:.0f} ms",
                     _verdict(m <= TARGETS["import_s"])))
        rows.append(("  numba imported by it", "yes" if "numba" in mods else "no", "no",
                     _verdict("numba" not in mods)))
        rows.append(("  of which after numpy is loaded",
                     _ms(i["import einjit after numpy"]["median_s"]), "", ""))
        rows.append(("  without .pyc files", _ms(i["import einjit, no .pyc"]["median_s"]),
                     "", ""))
    if not err("first_calls", "3 first cached call"):
        f = results["first_calls"]
        m = f["first_call_median_s"]
        rows.append((f"3 first call, fresh process, cached ({f['first_case']})", _ms(m),
                     f"<= {TARGETS['first_cached_call_s'] * 1e3:.0f} ms",
                     _verdict(m <= TARGETS["first_cached_call_s"])))
        w = f["further_load_worst_kernel_s"]
        med = f["further_load_median_s"]
        rows.append(("  of which import numba / the rest",
                     (f"{_ms(f['split_numba_import_median_s'])} / "
                      f"{_ms(f['split_first_call_median_s'])}"), "", ""))
        rows.append(("  each further cached kernel (load): median / worst", f"{_ms(med)} / {_ms(w)}",
                     f"<= {TARGETS['further_cached_kernel_s'] * 1e3:.0f} ms each",
                     _verdict(None if w is None else w <= TARGETS["further_cached_kernel_s"])))
        rows.append(("  compilations == 0, disk loads > 0",
                     f"{max(f['compilations'])} / {min(f['disk_loads'])}", "0 / > 0",
                     _verdict(f["no_compilations_and_disk_loads"])))
    if not err("overhead", "4 call overhead"):
        o = results["overhead"]
        rows.append(("4 einjit.einsum overhead (4x4 ij,jk->ik)",
                     f"{o['einsum_overhead_us']:.2f} us",
                     f"<= numpy.einsum {o['numpy_einsum_us']:.2f} us",
                     _verdict(o["einsum_overhead_us"] <= o["numpy_einsum_us"]
                              and not o["wrong"])))
        rows.append(("  decorator overhead", f"{o['decorator_overhead_us']:.2f} us",
                     f"<= {TARGETS['decorator_overhead_us']} us",
                     _verdict(o["decorator_overhead_us"] <= TARGETS["decorator_overhead_us"]
                              and not o["wrong"])))
        med = o["median_us"]
        mn = o["min_us"]
        rows.append(("  from minima: einsum / decorator overhead",
                     (f"{mn['einjit.einsum'] - mn['kernel alone']:.2f} / "
                      f"{mn['decorator'] - mn['kernel alone']:.2f} us"),
                     f"numpy.einsum min {mn['numpy.einsum']:.2f} us", ""))
        rows.append(("  decorator overhead less the np.empty",
                     f"{o['decorator_overhead_us'] - med['np.empty']:.2f} us", "", ""))
        rows.append(("  einsum / decorator / kernel / np.empty",
                     (f"{med['einjit.einsum']:.2f} / {med['decorator']:.2f} / "
                      f"{med['kernel alone']:.2f} / {med['np.empty']:.2f} us"), "", ""))
    if not err("suite_warmup", "5 suite warm-up"):
        s = results["suite_warmup"]
        j1, j2 = s["jobs1"]["wall_s"], s["jobs2"]["wall_s"]
        ok = s["jobs1"]["returncode"] == 0 and s["jobs2"]["returncode"] == 0 and j2 < j1
        rows.append((f"5 warm-up of {s['kernel_file_entries']} cases x 2 dtypes: jobs 2 / 1",
                     f"{j2:.1f} s / {j1:.1f} s", "jobs 2 faster", _verdict(ok)))
        a = s["after"]
        rows.append(("  following process: compilations", str(a["compilations"]), "0",
                     _verdict(a["compilations"] == 0)))
    return rows


def busy_line(results: dict[str, Any]) -> str:
    parts = []
    for number, key in (("1", "compile"), ("2", "import"), ("3", "first_calls"),
                        ("4", "overhead"), ("5", "suite_warmup")):
        entry = results.get(key)
        busy = entry.get("machine_busy") if isinstance(entry, dict) else None
        if busy is None:
            continue
        steal = busy["steal_pct"]
        parts.append(f"[{number}] {busy['other_cpu_pct']:.0f}%"
                     + (f" (steal {steal:.0f}%)" if steal >= 1 else ""))
    return ("CPU used by other processes per item: " + ", ".join(parts)) if parts else ""


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows + [("item", "measured", "target", "result")])
              for i in range(4)]
    header = ("item", "measured", "target", "result")
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print("\n" + line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def machine_info() -> dict[str, Any]:
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        git = subprocess.run(["git", "describe", "--always", "--dirty"], check=False, cwd=ROOT, text=True,
                             capture_output=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"cpu_model": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "numpy": version("numpy"),
            "numba": version("numba"), "llvmlite": version("llvmlite"),
            "opt_einsum": version("opt_einsum"), "einjit_git": git,
            "env": {k: v for k, v in os.environ.items()
                    if k.startswith(("NUMBA_", "OMP_", "OPENBLAS_", "MKL_"))}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--quick", action="store_true",
                   help="a few cases and repeats: a smoke test (~30 s)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write every result to PATH")
    p.add_argument("--items", default="1,2,3,4,5",
                   help="comma-separated item numbers to run (default all)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary caches (their folder is printed)")
    p.add_argument("--child", nargs=2, metavar=("NAME", "JSON"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        name, payload = args.child
        result = CHILDREN[name](json.loads(payload))
        print(MARK + json.dumps(result), flush=True)
        return 0

    items = {s.strip() for s in args.items.split(",") if s.strip()}
    all_cases = _load_cases()
    by_name = {c.name: c for c in all_cases}
    quick = args.quick
    compile_cases = [by_name[n] for n in QUICK_COMPILE_CASES] if quick else all_cases
    first_cases = [by_name[n] for n in (QUICK_FIRST_CALL_CASES if quick else FIRST_CALL_CASES)]
    suite_cases = [by_name[n] for n in QUICK_SUITE_CASES] if quick else all_cases

    bench = Bench(args)
    info = machine_info()
    _say(f"einjit cold start: {info['cpu_model']}, {info['cpus']} CPUs, Python "
         f"{info['python']}, numpy {info['numpy']}, numba {info['numba']}, einjit "
         f"{info['einjit_git']}{' (quick)' if quick else ''}; load average {_load()}; "
         f"temporary caches in {bench.tmp}")
    results: dict[str, Any] = {"machine": info, "quick": quick, "targets": TARGETS,
                               "load_average_start": _load()}
    start = time.perf_counter()
    try:
        # Prime the private bytecode cache so no measured process compiles .py files.
        bench.child("prime", {}, bench.fresh_cache("prime"), 300)
        steps: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
            ("1", "compile", lambda: item_compile(bench, compile_cases)),
            ("2", "import", lambda: item_import(bench, 3 if quick else 7)),
            ("3", "first_calls", lambda: item_first_calls(bench, first_cases, 2 if quick else 5)),
            ("4", "overhead", lambda: item_overhead(bench, 11 if quick else 41,
                                                    500 if quick else 2000)),
            ("5", "suite_warmup", lambda: item_suite_warmup(bench, suite_cases)),
        ]
        for number, key, fn in steps:
            if number not in items:
                continue
            meter = CpuMeter()
            try:
                results[key] = fn()
            except (ChildError, subprocess.TimeoutExpired, OSError) as exc:
                _say(f"  ERROR: {exc}")
                results[key] = {"error": str(exc)}
            busy = meter.read()
            if busy is not None:
                results[key]["machine_busy"] = busy
                _say(f"  (other processes used {busy['other_cpu_pct']:.0f}% of the CPUs "
                     f"during this item; steal {busy['steal_pct']:.0f}%)")
    finally:
        bench.close()
    results["load_average_end"] = _load()
    results["total_seconds"] = time.perf_counter() - start
    rows = summary_rows(results)
    results["table"] = [dict(zip(("item", "measured", "target", "result"), r)) for r in rows]
    print_table(rows)
    line = busy_line(results)
    if line:
        _say(line + " (a quiet machine: ~0%)")
    _say(f"total {results['total_seconds']:.0f} s; load average at the end "
         f"{results['load_average_end']} (1, 5, 15 min; {info['cpus']} CPUs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        _say(f"wrote {args.json}")
    failed = [r for r in rows if r[3] == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
