"""einjit's CUDA target against torch.einsum and cupy.einsum (issue 5's suite).

    python benchmarks/gpu.py                    # float32, every case
    python benchmarks/gpu.py --cases bmm,rowdot3 --repeat 30 --json results/gpu.json

Per case: the inputs (standard normal, never all zeros) are made once on the device as
torch tensors (cupy arrays share their memory), each contender runs a few warm-up calls,
then ``--repeat`` interleaved rounds timed with CUDA events; the medians are reported.
TF32 is off for torch (and cupy uses plain fp32 GEMM), so fp32 products are true fp32.
Every result is checked against a float64 torch reference (relative error <= 1e-5 of
the reference's largest magnitude, as issue 5 asks).  For each case the table gives
milliseconds, einjit / torch, and the achieved TB/s (memory-bound cases: bytes the
einsum must read and write at least once) or TFLOP/s (contractions) against the
card's ceilings, which the script measures first on the same card: a 2 GiB device copy
(torch, read + write) and a 8192^3 fp32 matmul with TF32 off (``--copy-tbs`` and
``--matmul-tflops`` give them instead).  einjit's first call (planning, compiling and
one run) is reported apart, in the last column, never mixed into the medians.  A case
that raises is reported with its error and the run goes on.

Without a GPU, torch or cupy it says what is missing and exits 0 (cupy alone missing:
the cupy column is left out).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import traceback
from collections.abc import Callable
from typing import Any

#: (name, equation, shapes, kind): "memory" cases are judged by TB/s, "flops" by TFLOP/s.
CASES: list[tuple[str, str, list[tuple[int, ...]], str]] = [
    ("matmul", "ij,jk->ik", [(4096, 4096), (4096, 4096)], "flops"),
    ("bmm", "bij,bjk->bik", [(256, 256, 256), (256, 256, 256)], "flops"),
    ("attn", "bhqd,bhkd->bhqk", [(16, 16, 1024, 64), (16, 16, 1024, 64)], "flops"),
    ("frob", "ij,ij->", [(8192, 8192), (8192, 8192)], "memory"),
    ("rowdot", "ij,ij->i", [(65536, 1024), (65536, 1024)], "memory"),
    ("outer", "i,j->ij", [(16384,), (16384,)], "memory"),
    ("transpose", "ijk->kji", [(512, 512, 512)], "memory"),
    ("dot3", "i,i,i->", [(10 ** 8,)] * 3, "memory"),
    ("rowdot3", "ij,ij,ij->i", [(65536, 1024)] * 3, "memory"),
    ("chain", "ij,jk,kl->il", [(2048, 2048)] * 3, "flops"),
    ("quadform", "bi,ij,bj->b", [(65536, 512), (512, 512), (65536, 512)], "memory"),
    ("tccg", "abcd,dbef->aecf", [(48, 48, 48, 48)] * 2, "flops"),
    ("mttkrp", "ijk,jr,kr->ir", [(512, 512, 512), (512, 64), (512, 64)], "flops"),
    ("bilinear", "bn,anm,bm->ba", [(4096, 256), (256, 256, 256), (4096, 256)], "flops"),
    ("tiny_mm", "ij,jk->ik", [(4, 4), (4, 4)], "flops"),
]


def _missing() -> str | None:
    """Why the benchmark cannot run here, or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install torch with CUDA support)"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    try:
        from numba import cuda
        if not cuda.is_available():
            return "numba.cuda finds no GPU (check the CUDA driver and numba-cuda)"
    except ImportError:
        return "numba.cuda cannot be imported"
    return None


def _time(fn: Callable[[], Any], torch: Any) -> float:
    """Milliseconds of one call, by CUDA events."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop)


def _as_torch(x: Any, torch: Any) -> Any:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, device="cuda")


def _work(equation: str, shapes: list[tuple[int, ...]], itemsize: int) -> tuple[float, float]:
    """(bytes read and written at least once, flops of the cheapest pairwise path)."""
    import numpy as np
    import opt_einsum

    inputs, output = equation.split("->")
    extent: dict[str, int] = {}
    for term, shape in zip(inputs.split(","), shapes):
        extent.update(zip(term, shape))
    out_elems = math.prod(extent[c] for c in output)
    nbytes = itemsize * (sum(math.prod(s) for s in shapes) + out_elems)
    views = [np.broadcast_to(np.zeros((), np.float32), s) for s in shapes]
    info = opt_einsum.contract_path(equation, *views, optimize="greedy")[1]
    return float(nbytes), float(info.opt_cost)


def ceilings(torch: Any, repeat: int = 10) -> tuple[float, float]:
    """(device copy TB/s counting bytes read and written, fp32 matmul TFLOP/s, TF32 off),
    medians of ``repeat`` timed runs on the current card."""
    src = torch.empty(1 << 29, device="cuda", dtype=torch.float32)  # 2 GiB
    dst = torch.empty_like(src)
    a = torch.randn(8192, 8192, device="cuda")
    b = torch.randn(8192, 8192, device="cuda")
    for _ in range(2):
        dst.copy_(src)
        torch.matmul(a, b)
    copy_ms = statistics.median(_time(lambda: dst.copy_(src), torch) for _ in range(repeat))
    mm_ms = statistics.median(_time(lambda: torch.matmul(a, b), torch) for _ in range(repeat))
    del src, dst, a, b
    torch.cuda.empty_cache()
    return 2 * 4 * (1 << 29) / copy_ms / 1e9, 2 * 8192 ** 3 / mm_ms / 1e9


def _case(name: str, equation: str, shapes: list[tuple[int, ...]], kind: str, repeat: int,
          warmup: int, copy_tbs: float, matmul_tflops: float, torch: Any, cupy: Any,
          einjit: Any, gen: Any) -> dict[str, Any]:
    """One case's row (see the module's docstring)."""
    import time

    ops = [torch.randn(s, device="cuda", dtype=torch.float32, generator=gen) for s in shapes]
    contenders: dict[str, Callable[[], Any]] = {
        "einjit": lambda: einjit.einsum(equation, *ops),
        "torch": lambda: torch.einsum(equation, *ops),
    }
    if cupy is not None:
        cops = [cupy.asarray(o) for o in ops]
        contenders["cupy"] = lambda: cupy.einsum(equation, *cops)
    reference = torch.einsum(equation, *[o.double() for o in ops])
    scale = float(reference.abs().max()) or 1.0
    row: dict[str, Any] = {"case": name, "equation": equation, "shapes": shapes}
    from einjit import cuda as einjit_cuda

    einjit_cuda.clear_cache()  # so that the plans this case builds are the only ones held
    for who, fn in contenders.items():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        got = _as_torch(fn(), torch)
        torch.cuda.synchronize()
        row[f"{who}_first_s"] = time.perf_counter() - t0
        if who == "einjit":  # a view of an operand moves no bytes: its time is the call's
            row["view"] = any(got.untyped_storage().data_ptr() == o.untyped_storage().data_ptr()
                              for o in ops)
        err = float((got.double() - reference).abs().max()) / scale
        row[f"{who}_error"] = err
        if err > 1e-5:
            print(f"  {name}: {who} differs from the float64 reference by {err:.2e} "
                  "(relative to its largest element)")
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {who: [] for who in contenders}
    for _ in range(repeat):  # interleaved rounds: drift hits every contender alike
        for who, fn in contenders.items():
            times[who].append(_time(fn, torch))
    for who in contenders:
        row[f"{who}_ms"] = statistics.median(times[who])
    # Back to back: the device's time per call once the host runs ahead of it (the
    # host's per-call cost hidden wherever it is shorter than the kernels').
    chained: dict[str, list[float]] = {who: [] for who in contenders}
    for _ in range(max(3, repeat // 3)):
        for who, fn in contenders.items():
            chained[who].append(_time(lambda fn=fn: [fn() for _ in range(10)], torch) / 10)
    for who in contenders:
        row[f"{who}_chained_ms"] = statistics.median(chained[who])
    for who, fn in contenders.items():  # later calls take other paths (direct launches)
        err = float((_as_torch(fn(), torch).double() - reference).abs().max()) / scale
        row[f"{who}_error"] = max(row[f"{who}_error"], err)
        if err > 1e-5:
            print(f"  {name}: {who}'s last call differs from the float64 reference by {err:.2e}")
    nbytes, flops = _work(equation, shapes, 4)
    seconds = row["einjit_ms"] / 1e3
    at_ceiling_s = nbytes / copy_tbs / 1e12 if kind == "memory" else flops / matmul_tflops / 1e12
    if row["view"] or at_ceiling_s < 1e-6:  # no work to speak of: the call's own overhead
        row["achieved"] = 0.0
        row["ceiling"] = "a view (call overhead)" if row["view"] else "(call overhead)"
    elif kind == "memory":
        row["achieved"] = nbytes / seconds / 1e12
        row["ceiling"] = f"{row['achieved']:.2f} TB/s ({row['achieved'] / copy_tbs:.0%} of copy)"
    else:
        row["achieved"] = flops / seconds / 1e12
        row["ceiling"] = (f"{row['achieved']:.2f} TFLOP/s "
                          f"({row['achieved'] / matmul_tflops:.0%} of matmul)")
    row["vs_torch"] = row["einjit_ms"] / row["torch_ms"]
    held = list(einjit_cuda._PLANS.values())
    row["schedules"] = [str(s) for plan in held for s in plan.schedules]
    row["sources"] = [src for plan in held for src in plan.sources]
    return row


def run(cases: list[str], repeat: int, warmup: int, copy_tbs: float, matmul_tflops: float
        ) -> list[dict[str, Any]]:
    import torch

    import einjit

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        import cupy
    except ImportError:
        cupy = None
        print("cupy is not installed: the cupy.einsum column is left out")
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for name, equation, shapes, kind in CASES:
        if cases and name not in cases:
            continue
        try:
            row = _case(name, equation, shapes, kind, repeat, warmup, copy_tbs, matmul_tflops,
                        torch, cupy, einjit, gen)
        except Exception as exc:  # noqa: BLE001 (report the case, go on with the suite)
            traceback.print_exc()
            print(f"| {name} | `{equation}` | failed: {type(exc).__name__}: {exc} |", flush=True)
            rows.append({"case": name, "equation": equation, "error": repr(exc)})
            torch.cuda.empty_cache()
            continue
        rows.append(row)
        cupy_ms = f"{row['cupy_ms']:.3f}" if "cupy_ms" in row else "-"
        print(f"| {name} | `{equation}` | {row['einjit_ms']:.3f} | {row['torch_ms']:.3f} | "
              f"{cupy_ms} | {row['vs_torch']:.2f} | {row['ceiling']} | "
              f"{row['einjit_first_s']:.2f} |", flush=True)
        print("    back to back, ms per call: " + ", ".join(
            f"{who} {row[f'{who}_chained_ms']:.3f}" for who in ("einjit", "torch", "cupy")
            if f"{who}_chained_ms" in row), flush=True)
        for text in row["schedules"]:
            print(f"    {name}: {text}", flush=True)
        torch.cuda.empty_cache()
    return rows


def random_suite(count: int, seed: int, json_path: str = "") -> int:
    """Random contractions on the device: each result checked against float64
    (|einjit - reference| <= 1e-5 x the einsum of the operands' magnitudes, element by
    element), then timed back to back (10 calls between CUDA events, median of 5) against
    torch.einsum.  Exit status 1 when a result is wrong or a call fails."""
    import os
    import time

    import torch

    import einjit

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run import random_cases  # noqa: E402  (benchmarks/run.py's generator)

    torch.backends.cuda.matmul.allow_tf32 = False
    gen = torch.Generator(device="cuda").manual_seed(seed)
    rows, bad = [], 0
    print(f"{torch.cuda.get_device_name()}: {count} random contractions (seed {seed}), float32; "
          "ms per call back to back\n")
    print("| case | equation | shapes | einjit ms | torch ms | einjit / torch | error | first s |")
    print("|---|---|---|---|---|---|---|---|")
    for case in random_cases(count, seed, max_elements=1 << 24, max_cost=2e10):
        ops = [torch.randn(s, device="cuda", generator=gen) for s in case.shapes]
        row: dict[str, Any] = {"case": case.name, "equation": case.equation,
                               "shapes": case.shapes}
        try:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            got = einjit.einsum(case.equation, *ops)
            torch.cuda.synchronize()
            row["first_s"] = time.perf_counter() - t0
            ref = torch.einsum(case.equation, *[o.double() for o in ops])
            bound = torch.einsum(case.equation, *[o.double().abs() for o in ops])
            got = torch.as_tensor(got, device="cuda").double()
            if got.shape != ref.shape:
                raise AssertionError(f"shape {tuple(got.shape)}, numpy's {tuple(ref.shape)}")
            err = float(((got - ref).abs() / (bound + 1e-30)).max()) if ref.numel() else 0.0
            row["error"] = err
            fns = {"einjit": lambda: einjit.einsum(case.equation, *ops),
                   "torch": lambda: torch.einsum(case.equation, *ops)}
            for fn in fns.values():
                fn()
            times: dict[str, list[float]] = {who: [] for who in fns}
            for _ in range(5):
                for who, fn in fns.items():
                    times[who].append(_time(lambda fn=fn: [fn() for _ in range(10)], torch) / 10)
            last = torch.as_tensor(fns["einjit"](), device="cuda").double()
            err = max(err, float(((last - ref).abs() / (bound + 1e-30)).max()) if ref.numel()
                      else 0.0)
            row["error"] = err
            for who in fns:
                row[f"{who}_ms"] = statistics.median(times[who])
            row["ratio"] = row["einjit_ms"] / row["torch_ms"]
        except Exception as exc:  # noqa: BLE001 (report the case, go on)
            row["failed"] = f"{type(exc).__name__}: {exc}"
        flag = ""
        if "failed" in row or row.get("error", 0) > 1e-5:
            bad += 1
            flag = " **WRONG**" if "failed" not in row else f" **{row['failed'][:120]}**"
        shapes = ",".join("x".join(map(str, sh)) or "()" for sh in case.shapes)
        if "ratio" in row:
            print(f"| {case.name} | `{case.equation}` | {shapes} | {row['einjit_ms']:.4f} | "
                  f"{row['torch_ms']:.4f} | {row['ratio']:.2f} | {row['error']:.1e}{flag} | "
                  f"{row['first_s']:.2f} |", flush=True)
        else:
            print(f"| {case.name} | `{case.equation}` | {shapes} |{flag} |||||", flush=True)
        rows.append(row)
        del ops
        torch.cuda.empty_cache()
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    if ratios:
        geo = math.exp(statistics.mean(math.log(x) for x in ratios))
        worst = sorted((r for r in rows if "ratio" in r), key=lambda r: -r["ratio"])[:5]
        print(f"\ngeometric mean of einjit / torch.einsum over {len(ratios)} cases: {geo:.2f}; "
              f"slowest: " + ", ".join(f"{r['case']} {r['ratio']:.2f}" for r in worst))
    print(f"{bad} wrong or failed")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump({"device": torch.cuda.get_device_name(), "seed": seed, "rows": rows}, fh,
                      indent=1)
    return 1 if bad else 0


def table(path: str) -> int:
    """Print a run's JSON (``--json``) as the README's markdown table."""
    with open(path, encoding="utf-8") as fh:
        run = json.load(fh)
    print(f"{run['device']}: device copy {run['copy_tbs']:.2f} TB/s, fp32 matmul "
          f"{run['matmul_tflops']:.1f} TFLOP/s (TF32 off), measured by the script.\n")
    print("| case | einjit ms | torch ms | cupy ms | einjit / torch | back to back: einjit / "
          "torch ms | einjit achieved (one call) |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for r in run["rows"]:
        if "vs_torch" not in r:
            print(f"| {r['case']} | failed: {r.get('error', '?')} |||||")
            continue
        ratios.append(r["vs_torch"])
        cupy = f"{r['cupy_ms']:.3f}" if "cupy_ms" in r else "-"
        chained = (f"{r['einjit_chained_ms']:.3f} / {r['torch_chained_ms']:.3f}"
                   if "einjit_chained_ms" in r else "-")
        print(f"| {r['case']} | {r['einjit_ms']:.3f} | {r['torch_ms']:.3f} | {cupy} | "
              f"{r['vs_torch']:.2f} | {chained} | {r['ceiling']} |")
    if ratios:
        geo = math.exp(statistics.mean(math.log(x) for x in ratios))
        print(f"\nGeometric mean of einjit / torch.einsum over {len(ratios)} cases: {geo:.2f}")
    return 0


def profile(name: str, calls: int = 2000) -> int:
    """Where einjit's host time goes on one case: microseconds per call, then cProfile."""
    import cProfile
    import pstats
    import time

    import torch

    import einjit

    case = next((c for c in CASES if c[0] == name), None)
    if case is None:
        print(f"--profile: no case {name!r}; cases: {', '.join(c[0] for c in CASES)}")
        return 2
    _, equation, shapes, _ = case
    ops = [torch.randn(s, device="cuda") for s in shapes]
    for _ in range(10):
        einjit.einsum(equation, *ops)
        torch.einsum(equation, *ops)
    torch.cuda.synchronize()
    for who, fn in (("einjit", einjit.einsum), ("torch", torch.einsum)):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(equation, *ops)
        torch.cuda.synchronize()
        print(f"{who}: {(time.perf_counter() - t0) / calls * 1e6:.1f} us per call "
              f"(host loop of {calls}, then one synchronisation)")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        einjit.einsum(equation, *ops)
    torch.cuda.synchronize()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--copy-tbs", type=float, default=0.0,
                        help="device copy bandwidth, TB/s (default: measured; H200: 4.15)")
    parser.add_argument("--matmul-tflops", type=float, default=0.0,
                        help="fp32 matmul rate with TF32 off, TFLOP/s (default: measured)")
    parser.add_argument("--policy", default="",
                        help="integer fields of the GPU scheduler's policy, e.g. "
                             "reduce_threads=64,max_blocks=4096 (einjit.schedule_cuda.Policy)")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    parser.add_argument("--random", type=int, default=0, metavar="N",
                        help="instead of the suite: N random contractions (benchmarks/run.py's "
                             "generator, up to 2^24 elements an array), checked and timed "
                             "back to back against torch.einsum")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    parser.add_argument("--table", default="", metavar="JSON",
                        help="instead of measuring: print the README's table of a run's JSON")
    parser.add_argument("--profile", default="", metavar="CASE",
                        help="instead of the suite: profile einjit's host side on one case "
                             "(cProfile over 2000 calls, the 25 most costly functions)")
    args = parser.parse_args(argv)
    if args.table:
        return table(args.table)
    why = _missing()
    if why is not None:
        print(f"benchmarks/gpu.py: nothing to measure here: {why}.")
        return 0
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    if args.policy:
        import dataclasses

        from einjit import schedule_cuda

        fields = {k: int(v) for k, v in (item.split("=") for item in args.policy.split(","))}
        bad = [k for k in fields if type(getattr(schedule_cuda.POLICY, k, None)) is not int]
        if bad:
            parser.error(f"--policy: {', '.join(bad)} are not integer fields of the policy")
        schedule_cuda.set_policy(dataclasses.replace(schedule_cuda.POLICY, **fields))
        print(f"policy: {schedule_cuda.POLICY}")
    if args.profile:
        return profile(args.profile)
    if args.random:
        return random_suite(args.random, args.seed, args.json)
    copy_tbs, matmul_tflops = args.copy_tbs, args.matmul_tflops
    if not (copy_tbs and matmul_tflops):
        measured = ceilings(torch)
        copy_tbs, matmul_tflops = copy_tbs or measured[0], matmul_tflops or measured[1]
    print(f"device: {torch.cuda.get_device_name()}; float32, TF32 off, median ms of "
          f"{args.repeat} interleaved rounds (CUDA events); ceilings: device copy "
          f"{copy_tbs:.2f} TB/s, fp32 matmul {matmul_tflops:.1f} TFLOP/s\n")
    print("| case | equation | einjit ms | torch ms | cupy ms | einjit / torch | einjit achieved "
          "| einjit first call s |")
    print("|---|---|---|---|---|---|---|---|")
    rows = run([c for c in args.cases.split(",") if c], args.repeat, args.warmup,
               copy_tbs, matmul_tflops)
    ratios = [r["vs_torch"] for r in rows if "vs_torch" in r]
    if ratios:
        geo = math.exp(statistics.mean(math.log(r) for r in ratios))
        print(f"\ngeometric mean of einjit / torch.einsum over {len(ratios)} cases: {geo:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"device": torch.cuda.get_device_name(), "copy_tbs": copy_tbs,
                       "matmul_tflops": matmul_tflops, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
