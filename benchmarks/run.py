"""einjit CPU benchmark suite: einjit against numpy.einsum, opt_einsum and torch.einsum.

    python benchmarks/run.py                      # whole suite, float32 and float64
    python benchmarks/run.py --quick              # smoke test (few repeats, nothing saved)
    python benchmarks/run.py --dtype float32 --cases matmul,frob --repeat 30
    python benchmarks/run.py --plot-only          # redraw the chart from saved JSON
    python benchmarks/run.py --more --no-save     # 32 common einsums beyond the table

Method (see benchmarks/README.md for the columns):

* The machine's ceilings are measured first: a 256 MiB ``np.copyto`` (read + write
  bytes/s) and a 2048^2 numpy matmul in float32 and float64 (GFLOP/s).
* Per case and dtype, operands come from a fixed seed (standard normal).  The first
  einjit call is timed alone and reported as compile time (a fresh, empty einjit kernel
  cache is used unless ``--warm-cache``).  Every contender's result is validated against
  a float64 numpy reference before any timing; a mismatch is flagged in the table and
  excluded from the ratios (and makes the script exit with status 1).
* Repeats are interleaved: each round runs every contender once, in a fresh (seeded)
  random order, so drift, and the threads a contender leaves spinning after its call
  (torch's and Numba's OpenMP pools, OpenBLAS's), hit everyone alike.  Medians are
  reported.  Not quite alike: OpenBLAS's idle thread spins for 2^28 clock ticks (about
  0.12 s here) after each threaded call, taking half of each core from other threads;
  the contenders that call BLAS are unaffected (their calls use that thread), the
  multi-threaded others (einjit's loop kernels, torch) run up to 2x slower in that time.
  Set ``OPENBLAS_THREAD_TIMEOUT`` (before numpy loads) to shorten it for everyone.
* Calls faster than ~5 ms are timed as a loop of many calls per sample (per-call time).
  Each contender gets at most ``--budget`` seconds of samples per case (at least 3
  samples; 1 when one call alone is over the budget).  numpy ``optimize=False`` on
  expressions whose naive cost is huge (``chain``: O(n^4)) is probed once in a forked
  child and abandoned after ``--call-cap`` seconds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import pickle
import platform
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# ----------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    name: str
    equation: str
    shapes: tuple[tuple[int, ...], ...]
    metric: str            # "flop": GFLOP/s; "byte": GB/s; "view": result is a view, no rate
    note: str = ""
    bytes_override: Callable[[np.dtype], int] | None = None


def _trace_bytes(n: int) -> Callable[[np.dtype], int]:
    # A strided walk down the diagonal touches one 64-byte cache line per element: the
    # 64 MiB operand is never read whole, so "operand bytes" would be meaningless here.
    return lambda dtype: n * 64


CASES: list[Case] = [
    Case("matmul", "ij,jk->ik", ((1024, 1024), (1024, 1024)), "flop"),
    Case("bmm", "bij,bjk->bik", ((64, 128, 128), (64, 128, 128)), "flop"),
    Case("attn", "bhqd,bhkd->bhqk", ((8, 8, 256, 64), (8, 8, 256, 64)), "flop"),
    Case("frob", "ij,ij->", ((2048, 2048), (2048, 2048)), "byte"),
    Case("rowdot", "ij,ij->i", ((4096, 1024), (4096, 1024)), "byte"),
    Case("trace", "ii->", ((4096, 4096),), "byte", "bytes = one 64 B line per diagonal element",
         _trace_bytes(4096)),
    Case("diag", "ii->i", ((4096, 4096),), "view", "every contender returns a view"),
    Case("outer", "i,j->ij", ((4096,), (4096,)), "byte"),
    Case("transpose", "ijk->kji", ((256, 256, 256),), "view", "every contender returns a view"),
    Case("dot3", "i,i,i->", ((10**7,), (10**7,), (10**7,)), "byte"),
    Case("rowdot3", "ij,ij,ij->i", ((4096, 1024),) * 3, "byte"),
    Case("chain", "ij,jk,kl->il", ((512, 512),) * 3, "flop"),
    Case("trace3", "ij,jk,ki->", ((512, 512),) * 3, "flop"),
    Case("quadform", "bi,ij,bj->b", ((4096, 256), (256, 256), (4096, 256)), "flop"),
    Case("tccg", "abcd,dbef->aecf", ((24,) * 4, (24,) * 4), "flop"),
    Case("mode2", "ijk,jl->ilk", ((128, 256, 128), (256, 64)), "flop"),
    Case("ellipsis", "...ij,...jk->...ik", ((16, 8, 64, 64), (16, 8, 64, 64)), "flop"),
    Case("mttkrp", "ijk,jr,kr->ir", ((200, 200, 200), (200, 32), (200, 32)), "flop"),
    Case("bilinear", "bn,anm,bm->ba", ((256, 128), (64, 128, 128), (256, 128)), "flop"),
    Case("tiny_mm", "ij,jk->ik", ((4, 4), (4, 4)), "flop"),
    Case("tiny_dot", "i,i->", ((16,), (16,)), "byte"),
]
CASE_BY_NAME = {c.name: c for c in CASES}

#: ``--more``: common einsums of science and machine learning beyond the table above
#: (einjit is not tuned on them; they check that its gains are general).
MORE_CASES: list[Case] = [
    Case("mm_bt", "ik,jk->ij", ((1024, 1024), (1024, 1024)), "flop"),
    Case("mm_at", "ji,jk->ik", ((1024, 1024), (1024, 1024)), "flop"),
    Case("gram", "ni,nj->ij", ((8192, 128), (8192, 128)), "flop"),
    Case("dist", "nd,md->nm", ((2048, 64), (2048, 64)), "flop"),
    Case("linear", "bij,jk->bik", ((32, 256, 512), (512, 512)), "flop"),
    Case("attnv", "bhqk,bhkd->bhqd", ((8, 8, 256, 256), (8, 8, 256, 64)), "flop"),
    Case("bqk", "bqd,bkd->bqk", ((16, 512, 64), (16, 512, 64)), "flop"),
    Case("conv1x1", "nchw,oc->nohw", ((16, 64, 32, 32), (128, 64)), "flop"),
    Case("abc_abd", "abc,abd->cd", ((128, 128, 64), (128, 128, 64)), "flop"),
    Case("tensordot", "ijkl,klmn->ijmn", ((24,) * 4, (24,) * 4), "flop"),
    Case("ijkl_jk", "ijkl,jk->il", ((32, 64, 64, 32), (64, 64)), "flop"),
    Case("chain4", "ij,jk,kl,lm->im", ((256, 256),) * 4, "flop"),
    Case("tucker", "ea,fb,abcd,gc,hd->efgh", ((32, 32),) * 2 + ((32,) * 4,) + ((32, 32),) * 2,
         "flop"),
    Case("ao2mo", "pqrs,pi,qj,rk,sl->ijkl", ((24,) * 4,) + ((24, 24),) * 4, "flop"),
    Case("mps", "abc,cde,efg->abdfg", ((16, 8, 32), (32, 8, 32), (32, 8, 16)), "flop"),
    Case("iajb", "ia,jb,ijab->", ((64, 32), (64, 32), (64, 64, 32, 32)), "flop"),
    Case("bilinear2", "bi,bj,ij->b", ((4096, 64), (4096, 64), (64, 64)), "flop"),
    Case("vmv", "i,ij,j->", ((4096,), (4096, 4096), (4096,)), "byte"),
    Case("matvec", "ij,j->i", ((4096, 4096), (4096,)), "byte"),
    Case("bmv", "bij,bj->bi", ((64, 512, 512), (64, 512)), "byte"),
    Case("midaxis", "ijk,j->ik", ((256,) * 3, (256,)), "byte"),
    Case("rowsum", "ij->i", ((4096, 4096),), "byte"),
    Case("colsum", "ij->j", ((4096, 4096),), "byte"),
    Case("sumall", "ijk->", ((256, 256, 256),), "byte"),
    Case("hadamard", "ij,ij->ij", ((4096, 4096), (4096, 4096)), "byte"),
    Case("colscale", "ij,j->ij", ((4096, 4096), (4096,)), "byte"),
    Case("bouter", "bi,bj->bij", ((64, 512), (64, 512)), "byte"),
    Case("outer3", "i,j,k->ijk", ((256,), (256,), (256,)), "byte"),
    Case("btrace", "bii->b", ((256, 256, 256),), "byte"),
    Case("small_bmm", "bij,bjk->bik", ((1000, 4, 4), (1000, 4, 4)), "flop"),
    Case("tiny_chain", "ij,jk,kl->il", ((8, 8),) * 3, "flop"),
    Case("bdiag", "bii->bi", ((64, 512, 512),), "view", "every contender returns a view"),
]


def random_cases(count: int, seed: int, max_elements: int = 1 << 21,
                 max_cost: float = 2e8) -> list[Case]:
    """``count`` random contractions beyond the table above, seeded: one to three
    operands over two to five labels (now and then a repeated label: a diagonal), a
    random output (implicit and explicit), extents from 2 to 1000 scaled down until no
    operand or result exceeds ``max_elements`` elements and the naive cost (the product
    of all extents) stays under ``max_cost``."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        n_ops = rng.choices([1, 2, 3], [2, 5, 3])[0]
        labels = "abcdefg"[:rng.randint(2, 5)]
        terms = [[rng.choice(labels) for _ in range(rng.randint(1, 4 if n_ops < 3 else 3))]
                 for _ in range(n_ops)]
        for term in terms:  # repeated labels are rare: keep one in ten
            if len(set(term)) < len(term) and rng.random() > 0.1:
                term[:] = list(dict.fromkeys(term))
        used = sorted({lb for t in terms for lb in t})
        if rng.random() < 0.2:
            out = None  # implicit output
        else:
            out = [lb for lb in used if rng.random() < 0.5]
            rng.shuffle(out)
        size = {lb: rng.choice([2, 3, 8, 17, 32, 64, 100, 128, 256, 300, 512, 1000])
                for lb in used}

        def elements(t: list[str]) -> int:
            return math.prod(size[lb] for lb in t)

        result = out if out is not None else [lb for lb in used
                                              if sum(t.count(lb) for t in terms) == 1]
        while (max(elements(t) for t in terms + [result]) > max_elements
               or math.prod(size.values()) > max_cost):
            big = max(size, key=lambda lb: size[lb])
            size[big] = max(2, size[big] // 2)
        equation = ",".join("".join(t) for t in terms)
        if out is not None:
            equation += "->" + "".join(out)
        shapes = tuple(tuple(size[lb] for lb in t) for t in terms)
        reduces = len(result) < len(used)
        cases.append(Case(f"r{len(cases)}", equation, shapes, "flop" if reduces else "byte",
                          f"random (seed {seed})"))
    return cases

CONTENDERS = ["einjit", "numpy", "numpy_opt", "opt_einsum", "torch"]
PEERS = CONTENDERS[1:]
SHORT = {"einjit": "einjit", "numpy": "numpy", "numpy_opt": "np-opt", "opt_einsum": "opt_ein",
         "torch": "torch"}
TOL = {"float32": 1e-5, "float64": 1e-12}   # max |x - ref| / (einsum of |operands|)
SAMPLE_TARGET_S = 5e-3                      # loop fast calls until one sample is ~5 ms
MAX_INNER = 10_000
NAIVE_COST_FORK = 2e10                      # numpy optimize=False above this: forked probe


# ------------------------------------------------------------------------ machine info

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_rev() -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE, text=True,
                             capture_output=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _blas_info() -> dict[str, Any]:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return {"name": blas.get("name"), "version": blas.get("version")}
    except Exception:  # noqa: BLE001 -- informational only
        return {}


def machine_info(torch_mod: Any) -> dict[str, Any]:
    import numba
    import opt_einsum

    import einjit

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "mem_total_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": _blas_info(),
        "numba": numba.__version__,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "numba_threading_layer": numba.config.THREADING_LAYER,
        "opt_einsum": opt_einsum.__version__,
        "torch": getattr(torch_mod, "__version__", None),
        "torch_threads": torch_mod.get_num_threads() if torch_mod is not None else None,
        "einjit": einjit.__version__,
        "einjit_git": _git_rev(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                           "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                                           "NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")
                if k in os.environ},
    }
    return info


# --------------------------------------------------------------------------- ceilings

def measure_ceilings(quick: bool) -> dict[str, Any]:
    reps = 3 if quick else 7
    n = (256 * 2**20) // 8
    src = np.random.default_rng(1).random(n)
    dst = np.empty_like(src)
    np.copyto(dst, src)                                     # fault the pages in
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    moved = 2 * src.nbytes                                  # read + write
    out: dict[str, Any] = {
        "copy_bytes": src.nbytes,
        "copy_GBps": moved / min(times) / 1e9,
        "copy_GBps_median": moved / statistics.median(times) / 1e9,
    }
    del src, dst
    size = 2048
    for dt in ("float32", "float64"):
        rng = np.random.default_rng(2)
        a = rng.standard_normal((size, size)).astype(dt)
        b = rng.standard_normal((size, size)).astype(dt)
        a @ b
        times = []
        for _ in range(2 if quick else 4):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        flops = 2.0 * size**3
        out[f"matmul_{dt}_GFLOPs"] = flops / min(times) / 1e9
        out[f"matmul_{dt}_GFLOPs_median"] = flops / statistics.median(times) / 1e9
    out["matmul_size"] = size
    out["note"] = ("copy: np.copyto of 256 MiB float64, (read + write bytes) / best time; "
                   "matmul: numpy a @ b at 2048^2, 2*n^3 / best time")
    return out


# ---------------------------------------------------------------------------- timing

def _timer(fn: Callable[[], Any], inner: int) -> float:
    """Seconds per call of ``fn`` over one sample of ``inner`` calls (gc off)."""
    was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner
    finally:
        if was:
            gc.enable()


def _forked_call(fn: Callable[[], Any], cap_s: float) -> tuple[str, float, Any]:
    """Run ``fn`` once in a forked child; ("ok", seconds, result) or ("timeout", cap, None).

    Used only for numpy optimize=False on expressions whose naive cost would take minutes;
    the child runs numpy's own C loops (no threads) on copy-on-write operands.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                            # child
        code = 0
        try:
            os.close(rfd)
            t0 = time.perf_counter()
            res = fn()
            dt = time.perf_counter() - t0
            payload = pickle.dumps(("ok", dt, np.asarray(res)))
        except BaseException as exc:  # noqa: BLE001
            payload = pickle.dumps(("error", 0.0, repr(exc)))
            code = 1
        with os.fdopen(wfd, "wb") as fh:
            fh.write(payload)
        os._exit(code)
    os.close(wfd)
    deadline = time.monotonic() + cap_s
    chunks: list[bytes] = []
    timed_out = False
    with os.fdopen(rfd, "rb", buffering=0) as fh:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([fh], [], [], left)
            if not ready:
                continue
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return "timeout", cap_s, None
    os.waitpid(pid, 0)
    status, dt, res = pickle.loads(b"".join(chunks))
    if status != "ok":
        return "error", dt, res
    return "ok", dt, res


# ------------------------------------------------------------------------ validation

def _check(result: Any, ref: np.ndarray, absref: np.ndarray, dtype: str) -> tuple[bool, float, str]:
    try:
        res = np.asarray(result)
    except Exception as exc:  # noqa: BLE001
        return False, math.inf, f"not an array: {exc!r}"
    if res.shape != ref.shape:
        return False, math.inf, f"shape {res.shape} != {ref.shape}"
    if res.dtype != np.dtype(dtype):
        return False, math.inf, f"dtype {res.dtype} != {dtype}"
    diff = np.abs(res.astype(np.float64) - ref)
    err = float(np.max(diff / (absref + 1e-300))) if diff.size else 0.0
    if not np.isfinite(err) or err > TOL[dtype]:
        return False, err, f"max scaled error {err:.3g} > {TOL[dtype]:g}"
    return True, err, ""


# ---------------------------------------------------------------------------- a case

def _operands(case: Case, dtype: str) -> list[np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    return [rng.standard_normal(s).astype(dtype) for s in case.shapes]


def _work(case: Case, ops: list[np.ndarray], ref: np.ndarray, dtype: str) -> tuple[float | None, str]:
    import opt_einsum as oe

    if case.metric == "flop":
        # opt_einsum's cost of its optimal path counts a multiply-add as 2 FLOPs.
        return float(oe.contract_path(case.equation, *ops, shapes=False)[1].opt_cost), "FLOP"
    if case.metric == "byte":
        if case.bytes_override is not None:
            return float(case.bytes_override(np.dtype(dtype))), "B"
        return float(sum(o.nbytes for o in ops) + ref.size * np.dtype(dtype).itemsize), "B"
    return None, ""


def _estimate(fn: Callable[[], Any], first_s: float) -> float:
    """Seconds per call, refined with a short loop when the call is fast."""
    est = first_s
    if est < SAMPLE_TARGET_S:
        inner = max(1, min(MAX_INNER, int(2e-3 / max(est, 1e-7))))
        est = min(_timer(fn, inner), _timer(fn, inner))
    return est


def balanced_orders(names: list[str], rounds: int, rng: random.Random) -> list[list[str]]:
    """``rounds`` orders of ``names`` in which each runs right after each other one
    equally often: a Williams design, balanced every n rounds for an even number n of
    names, every 2n for an odd one; which name takes which place is drawn from ``rng``.

    >>> orders = balanced_orders(list("abcde"), 10, random.Random(0))
    >>> pairs = [(x, y) for o in orders for x, y in zip(o, o[1:])]
    >>> sorted(set(pairs.count(p) for p in pairs))
    [2]
    """
    n = len(names)
    first, low, high = [0], 1, n - 1  # 0, 1, n-1, 2, n-2, ...
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    rows = [[(i + shift) % n for i in first] for shift in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    placed = rng.sample(names, n)
    return [[placed[i] for i in rows[r % len(rows)]] for r in range(rounds)]


def run_case(case: Case, dtype: str, args: argparse.Namespace, torch_mod: Any,
             ceilings: dict[str, Any]) -> dict[str, Any]:
    import opt_einsum as oe

    import einjit

    eq = case.equation
    ops = _operands(case, dtype)
    ops64 = [o.astype(np.float64) for o in ops]
    ref = np.asarray(np.einsum(eq, *ops64, optimize=True))
    absref = np.asarray(np.einsum(eq, *[np.abs(o) for o in ops64], optimize=True))
    del ops64
    work, unit = _work(case, ops, ref, dtype)
    naive_cost = float(oe.contract_path(eq, *ops, shapes=False)[1].naive_cost)

    fns: dict[str, Callable[[], Any]] = {
        "einjit": lambda: einjit.einsum(eq, *ops),
        "numpy": lambda: np.einsum(eq, *ops, optimize=False),
        "numpy_opt": lambda: np.einsum(eq, *ops, optimize=True),
    }
    expr = oe.contract_expression(eq, *[o.shape for o in ops])     # built once, untimed
    fns["opt_einsum"] = lambda: expr(*ops)
    if torch_mod is not None:
        tops = [torch_mod.from_numpy(o) for o in ops]               # zero-copy, untimed
        fns["torch"] = lambda: torch_mod.einsum(eq, *tops)

    rec: dict[str, Any] = {"name": case.name, "equation": eq, "shapes": [list(s) for s in case.shapes],
                           "dtype": dtype, "metric": case.metric, "note": case.note,
                           "naive_cost": naive_cost, "work": work, "work_unit": unit,
                           "first_call_s": None, "compile": None, "contenders": {}}
    cont: dict[str, dict[str, Any]] = {c: {"status": "absent"} for c in CONTENDERS}
    est: dict[str, float] = {}
    samples: dict[str, list[float]] = {}

    # -- einjit's first call, alone: compile (or disk load) plus one execution
    before = einjit.cache_info()
    gc.collect()
    try:
        t0 = time.perf_counter()
        res = fns["einjit"]()
        rec["first_call_s"] = time.perf_counter() - t0
        after = einjit.cache_info()
        rec["compile"] = {k: after[k] - before[k]
                          for k in ("compilations", "disk_loads", "compile_seconds", "misses")}
        ok, err, why = _check(res, ref, absref, dtype)
        del res
        cont["einjit"] = {"status": "ok" if ok else "mismatch", "max_scaled_err": err, "why": why}
        t0 = time.perf_counter()
        fns["einjit"]()
        est["einjit"] = _estimate(fns["einjit"], time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001
        cont["einjit"] = {"status": "error", "why": f"{type(exc).__name__}: {exc}"[:300]}

    # -- peers: one validating call each (also the time estimate)
    for name in PEERS:
        if name not in fns:
            continue
        fn = fns[name]
        try:
            if name == "numpy" and naive_cost > NAIVE_COST_FORK:
                status, dt, res = _forked_call(fn, args.call_cap)
                if status == "timeout":
                    cont[name] = {"status": "timeout", "why": f"one call > {args.call_cap:g} s (forked probe)"}
                    continue
                if status == "error":
                    raise RuntimeError(res)
                samples[name] = [dt]                    # the probe is the one sample
            else:
                t0 = time.perf_counter()
                res = fn()
                dt = time.perf_counter() - t0
            ok, err, why = _check(res, ref, absref, dtype)
            del res
            cont[name] = {"status": "ok" if ok else "mismatch", "max_scaled_err": err, "why": why}
            if name not in samples:
                if dt < 0.5:                            # first calls may carry lazy set-up
                    t0 = time.perf_counter()
                    fn()
                    dt = min(dt, time.perf_counter() - t0)
                est[name] = _estimate(fn, dt)
        except Exception as exc:  # noqa: BLE001
            cont[name] = {"status": "error", "why": f"{type(exc).__name__}: {exc}"[:300]}

    # -- plan: samples and calls per sample for each contender
    plan: dict[str, tuple[int, int]] = {}
    for name, t in est.items():
        inner = 1 if t >= SAMPLE_TARGET_S else max(1, min(MAX_INNER, math.ceil(SAMPLE_TARGET_S / t)))
        per_sample = t * inner
        if per_sample > args.budget:
            n = 1
        else:
            n = min(args.repeat, max(min(3, args.repeat), int(args.budget / per_sample)))
        plan[name] = (n, inner)
        # einjit's estimate was a steady-state call (the compile call came before it): when
        # one call alone is over the budget it is the one sample, rather than paying twice.
        samples[name] = [t] if (n == 1 and inner == 1 and name == "einjit") else []

    # -- interleaved rounds: a contender's threads may keep spinning after its call
    # (torch's OpenMP pool, OpenBLAS's), which slows whoever runs next (a BLAS call right
    # after torch's: 2x); the orders put each contender right after each other one
    # equally often (a rotation would always put the same one after the same one, and
    # random orders did so unevenly: up to 8 of 20 samples after torch).
    order = [c for c in CONTENDERS if c in plan]
    rounds = max((n for n, _ in plan.values()), default=0)
    shuffler = random.Random(zlib.crc32(f"{case.name}/{dtype}".encode()))
    for names in balanced_orders(order, rounds, shuffler):
        for name in names:
            n, inner = plan[name]
            if len(samples[name]) < n:
                samples[name].append(_timer(fns[name], inner))

    # -- statistics
    for name, times in samples.items():
        if not times:
            continue
        med = statistics.median(times)
        entry = cont[name]
        entry.update({"median_ms": med * 1e3, "min_ms": min(times) * 1e3, "samples": len(times),
                      "calls_per_sample": plan.get(name, (1, 1))[1],
                      "samples_ms": [t * 1e3 for t in times]})
        if work is not None:
            rate = work / med / 1e9
            ceiling = (ceilings["copy_GBps"] if case.metric == "byte"
                       else ceilings[f"matmul_{dtype}_GFLOPs"])
            entry["rate"] = rate
            entry["rate_unit"] = "GB/s" if case.metric == "byte" else "GFLOP/s"
            entry["pct_of_ceiling"] = 100.0 * rate / ceiling
    rec["contenders"] = cont

    valid_peers = {c: cont[c]["median_ms"] for c in PEERS
                   if cont[c].get("status") == "ok" and "median_ms" in cont[c]}
    rec["best_peer"] = min(valid_peers, key=valid_peers.get) if valid_peers else None
    rec["ratio"] = None
    if rec["best_peer"] and cont["einjit"].get("status") == "ok" and "median_ms" in cont["einjit"]:
        rec["ratio"] = cont["einjit"]["median_ms"] / valid_peers[rec["best_peer"]]
    return rec


# ---------------------------------------------------------------------------- output

def _fmt_ms(entry: dict[str, Any], repeat: int) -> str:
    st = entry.get("status")
    if st == "absent":
        return "-"
    if st == "timeout":
        return "TIMEOUT"
    if st == "error":
        return "ERROR"
    med = entry.get("median_ms")
    if med is None:
        return "?"
    s = f"{med:.0f}" if med >= 1000 else f"{med:.4g}" if med >= 1e-3 else f"{med:.2e}"
    if st == "mismatch":
        s += "!"
    elif entry.get("samples", repeat) < repeat:
        s += "*"
    return s


def _fmt_rate(entry: dict[str, Any]) -> tuple[str, str]:
    if "rate" not in entry:
        return "-", "-"
    unit = "GB/s" if entry["rate_unit"] == "GB/s" else "GF/s"
    r = entry["rate"]
    rs = f"{r:.1f}" if r >= 10 else f"{r:.3g}"
    return f"{rs} {unit}", f"{entry['pct_of_ceiling']:.0f}%" if entry["pct_of_ceiling"] >= 1 \
        else f"{entry['pct_of_ceiling']:.1g}%"


COLS = (f"{'case':10} {'equation':19} {'1st s':>6} {'einjit':>9} {'numpy':>9} {'np-opt':>9} "
        f"{'opt_ein':>9} {'torch':>9} {'best':>7} {'ratio':>8} {'einjit rate':>12} {'%peak':>6}")


def format_row(rec: dict[str, Any], repeat: int) -> str:
    c = rec["contenders"]
    first = f"{rec['first_call_s']:.2f}" if rec.get("first_call_s") is not None else "-"
    ms = " ".join(f"{_fmt_ms(c[n], repeat):>9}" for n in CONTENDERS)
    best = SHORT.get(rec.get("best_peer") or "", "-")
    est = c["einjit"].get("status")
    if est == "mismatch":
        ratio = "MISMATCH"
    elif est == "error":
        ratio = "ERROR"
    else:
        ratio = f"{rec['ratio']:.2f}" if rec.get("ratio") is not None else "-"
    rate, pct = _fmt_rate(c["einjit"]) if rec["metric"] != "view" else ("(view)", "-")
    return (f"{rec['name']:10} {rec['equation']:19} {first:>6} {ms} {best:>7} {ratio:>8} "
            f"{rate:>12} {pct:>6}")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def geomean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = [d for d in ("float32", "float64") if d in results]
    names: list[str] = []
    for d in dtypes:
        for rec in results[d]["cases"]:
            if rec["name"] not in names:
                names.append(rec["name"])
    width = 0.8 / max(1, len(dtypes))
    fig, ax = plt.subplots(figsize=(max(8, 0.62 * len(names) + 2), 5.2))
    colors = {"float32": "#1f77b4", "float64": "#ff7f0e"}
    ratios_all = []
    for j, d in enumerate(dtypes):
        by = {r["name"]: r for r in results[d]["cases"]}
        xs, ys = [], []
        for i, n in enumerate(names):
            rec = by.get(n)
            x = i + (j - (len(dtypes) - 1) / 2) * width
            if rec is None:
                continue
            if rec.get("ratio") is None:
                st = rec["contenders"]["einjit"].get("status", "")
                label = {"mismatch": "MISMATCH", "error": "ERROR"}.get(st, "n/a")
                ax.text(x, 1.0, label, rotation=90, ha="center", va="bottom", color="red", fontsize=7)
                continue
            xs.append(x)
            ys.append(rec["ratio"])
        ratios_all += ys
        gm = results[d].get("geomean_ratio")
        lab = f"{d} (geomean {gm:.2f}x)" if gm else d
        ax.bar(xs, ys, width=width, color=colors.get(d), label=lab)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    if ratios_all:
        lo, hi = min(ratios_all + [1.0]), max(ratios_all + [1.0])
        ax.set_ylim(lo / 1.6, hi * 1.6)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylabel("einjit time / best peer time  (log; < 1: einjit faster)")
    mi = results[dtypes[0]]["machine"] if dtypes else {}
    ax.set_title(f"einjit vs best of numpy.einsum / opt_einsum / torch.einsum\n"
                 f"{mi.get('cpu_model', '?')}, {mi.get('usable_cpus', '?')} cores, "
                 f"einjit {mi.get('einjit_git') or mi.get('einjit', '')}", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------ main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    p.add_argument("--repeat", type=int, default=None,
                   help="samples per contender and case (default 20; 3 with --quick)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of samples per contender and case (default 2.5; 0.3 with --quick)")
    p.add_argument("--call-cap", type=float, default=10.0,
                   help="abandon numpy optimize=False on huge naive costs after this many s (default 10)")
    p.add_argument("--cases", default=None,
                   help="comma-separated case names (default: all; with --random: r0, r1, ...)")
    p.add_argument("--random", type=int, default=0, metavar="N",
                   help="run N random contractions (see random_cases) instead of the table; "
                        "results go to --outdir/partial unless --outdir is given")
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    p.add_argument("--more", action="store_true",
                   help="run MORE_CASES (common einsums beyond the table) instead; results "
                        "go to --outdir/partial unless --outdir is given")
    p.add_argument("--quick", action="store_true", help="few repeats; smoke test")
    p.add_argument("--outdir", type=Path, default=None,
                   help="where JSON and PNG go (default benchmarks/results; "
                        "benchmarks/results/partial for --quick or --cases)")
    p.add_argument("--no-save", action="store_true", help="print only; write no JSON or PNG")
    p.add_argument("--no-torch", action="store_true", help="leave the torch column out")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--warm-cache", action="store_true",
                   help="use einjit's normal kernel cache (default: a fresh empty one, so the "
                        "first call is a real compile)")
    p.add_argument("--plot-only", action="store_true",
                   help="redraw cpu.png from the JSON files in --outdir and exit")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 20
    if args.budget is None:
        args.budget = 0.3 if args.quick else 2.5
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.random and args.more:
        p.error("--random and --more are two different case lists: give one")
    known = ({c.name: c for c in random_cases(args.random, args.seed)} if args.random
             else {c.name: c for c in MORE_CASES} if args.more else CASE_BY_NAME)
    if args.cases:  # of the table, or with --random of its cases (r0, r1, ...)
        names = [n.strip() for n in args.cases.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(known)}")
        args.case_list = [known[n] for n in names]
    else:
        args.case_list = list(known.values())
    if args.outdir is None:
        args.outdir = (RESULTS / "partial" if (args.quick or args.cases or args.random
                                               or args.more)
                       else RESULTS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot_only:
        results = {}
        for d in ("float32", "float64"):
            f = args.outdir / f"cpu-{d}.json"
            if f.exists():
                results[d] = json.loads(f.read_text())
        if not results:
            print(f"no cpu-*.json in {args.outdir}", file=sys.stderr)
            return 2
        plot(results, args.outdir / "cpu.png")
        print(f"wrote {args.outdir / 'cpu.png'}")
        return 0

    t_start = time.perf_counter()
    tmp_cache = None
    if not args.warm_cache:
        tmp_cache = tempfile.mkdtemp(prefix="einjit-bench-cache-")
        os.environ["EINJIT_CACHE_DIR"] = tmp_cache

    torch_mod = None
    if not args.no_torch:
        try:
            import torch as torch_mod  # type: ignore[no-redef]

            torch_mod.set_num_threads(args.torch_threads)
        except ImportError:
            print("torch is not installed: the torch column is left out", file=sys.stderr)
            torch_mod = None

    import einjit

    # Load Numba's machinery once, on an equation outside the suite, so the first case's
    # compile time is not charged with the process's one-off start-up.
    einjit.einsum("ij->j", np.ones((3, 2)))

    machine = machine_info(torch_mod)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    print(f"einjit CPU benchmark: {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs, "
          f"numpy {machine['numpy']}, numba {machine['numba']} ({machine['numba_threads']} threads), "
          f"opt_einsum {machine['opt_einsum']}, torch {machine['torch'] or 'absent'}"
          f"{'' if torch_mod is None else f' ({torch_mod.get_num_threads()} threads)'}, "
          f"einjit {machine['einjit_git'] or machine['einjit']}", flush=True)
    print("measuring ceilings ...", end=" ", flush=True)
    ceilings = measure_ceilings(args.quick)
    print(f"copy {ceilings['copy_GBps']:.1f} GB/s (read+write), matmul 2048^2: "
          f"float32 {ceilings['matmul_float32_GFLOPs']:.1f} GFLOP/s, "
          f"float64 {ceilings['matmul_float64_GFLOPs']:.1f} GFLOP/s", flush=True)

    settings = {"repeat": args.repeat, "budget_s": args.budget, "call_cap_s": args.call_cap,
                "quick": args.quick, "fresh_kernel_cache": not args.warm_cache,
                "torch_threads": None if torch_mod is None else torch_mod.get_num_threads(),
                "sample_target_s": SAMPLE_TARGET_S, "tolerance": TOL,
                "flop_count": "opt_einsum.contract_path(...)[1].opt_cost (optimal path; "
                              "a multiply-add counts 2 FLOPs)",
                "bytes_count": "operand bytes + output bytes (trace: 64 B per diagonal element)"}
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    try:
        for dtype in dtypes:
            t_dtype = time.perf_counter()
            print(f"\n== {dtype} == medians in ms per call; * fewer samples than --repeat "
                  f"(budget), ! result mismatch; ratio = einjit / best peer", flush=True)
            print(COLS)
            print("-" * len(COLS), flush=True)
            recs = []
            for case in args.case_list:
                rec = run_case(case, dtype, args, torch_mod, ceilings)
                recs.append(rec)
                print(format_row(rec, args.repeat), flush=True)
                gc.collect()
            ratios = [r["ratio"] for r in recs if r.get("ratio") is not None]
            gm = geomean(ratios)
            print("-" * len(COLS))
            print(f"geomean einjit / best-peer ratio ({dtype}, {len(ratios)} cases): "
                  f"{gm:.3f}" if gm else f"geomean: n/a ({dtype})")
            for r in recs:
                for name, e in r["contenders"].items():
                    if e.get("status") in ("mismatch", "error"):
                        msg = f"{dtype} {r['name']}: {name} {e['status'].upper()}: {e.get('why')}"
                        if name == "einjit":
                            failures.append(msg)
                        print(f"  !!! {msg}")
                    elif e.get("status") == "timeout":
                        print(f"  note: {dtype} {r['name']}: {name} {e.get('why')}")
            results[dtype] = {
                "suite": "einjit CPU benchmark", "dtype": dtype,
                "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
                "machine": machine, "ceilings": ceilings, "settings": settings,
                "cases": recs, "geomean_ratio": gm, "geomean_cases": len(ratios),
                "seconds": time.perf_counter() - t_dtype,
            }
    finally:
        if tmp_cache:
            shutil.rmtree(tmp_cache, ignore_errors=True)

    try:
        import numba

        machine["numba_threading_layer_used"] = numba.threading_layer()
    except (ValueError, ImportError):
        pass
    if len(results) > 1:
        allr = [r["ratio"] for d in results.values() for r in d["cases"] if r.get("ratio") is not None]
        gm = geomean(allr)
        if gm:
            print(f"\ngeomean einjit / best-peer ratio, all dtypes ({len(allr)}): {gm:.3f}")
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s")

    if not args.no_save:
        args.outdir.mkdir(parents=True, exist_ok=True)
        for d, res in results.items():
            res["total_seconds"] = total
            f = args.outdir / f"cpu-{d}.json"
            f.write_text(json.dumps(_jsonable(res), indent=1) + "\n")
            print(f"wrote {f}")
        try:
            plot(results, args.outdir / "cpu.png")
            print(f"wrote {args.outdir / 'cpu.png'}")
        except ImportError:
            print("matplotlib is not installed: no chart", file=sys.stderr)
    if failures:
        print(f"\n!!! {len(failures)} einjit result(s) did not match numpy:", file=sys.stderr)
        for m in failures:
            print(f"!!!   {m}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
