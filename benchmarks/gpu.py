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
card's measured ceilings (``--copy-tbs``, ``--matmul-tflops``; default: the H200
figures in shared/MEASURED.md).

Without a GPU, torch or cupy it says what is missing and exits 0 (cupy alone missing:
the cupy column is left out).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
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
        ops = [torch.randn(s, device="cuda", dtype=torch.float32, generator=gen) for s in shapes]
        contenders: dict[str, Callable[[], Any]] = {
            "einjit": lambda eq=equation, ops=ops: einjit.einsum(eq, *ops),
            "torch": lambda eq=equation, ops=ops: torch.einsum(eq, *ops),
        }
        if cupy is not None:
            cops = [cupy.asarray(o) for o in ops]
            contenders["cupy"] = lambda eq=equation, cops=cops: cupy.einsum(eq, *cops)
        reference = torch.einsum(equation, *[o.double() for o in ops])
        scale = float(reference.abs().max()) or 1.0
        row: dict[str, Any] = {"case": name, "equation": equation, "shapes": shapes}
        for who, fn in contenders.items():
            got = _as_torch(fn(), torch).double()
            err = float((got - reference).abs().max()) / scale
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
        nbytes, flops = _work(equation, shapes, 4)
        seconds = row["einjit_ms"] / 1e3
        if kind == "memory":
            row["achieved"] = nbytes / seconds / 1e12
            row["ceiling"] = f"{row['achieved']:.2f} TB/s ({row['achieved'] / copy_tbs:.0%} of copy)"
        else:
            row["achieved"] = flops / seconds / 1e12
            row["ceiling"] = (f"{row['achieved']:.2f} TFLOP/s "
                              f"({row['achieved'] / matmul_tflops:.0%} of matmul)")
        row["vs_torch"] = row["einjit_ms"] / row["torch_ms"]
        rows.append(row)
        cupy_ms = f"{row['cupy_ms']:.3f}" if "cupy_ms" in row else "-"
        print(f"| {name} | `{equation}` | {row['einjit_ms']:.3f} | {row['torch_ms']:.3f} | "
              f"{cupy_ms} | {row['vs_torch']:.2f} | {row['ceiling']} |", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--copy-tbs", type=float, default=4.15,
                        help="measured device copy bandwidth, TB/s (H200: 4.15)")
    parser.add_argument("--matmul-tflops", type=float, default=50.6,
                        help="measured fp32 matmul rate with TF32 off, TFLOP/s (H200: 50.6)")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    why = _missing()
    if why is not None:
        print(f"benchmarks/gpu.py: nothing to measure here: {why}.")
        return 0
    import torch

    print(f"device: {torch.cuda.get_device_name()}; float32, TF32 off, median ms of "
          f"{args.repeat} interleaved rounds (CUDA events)\n")
    print("| case | equation | einjit ms | torch ms | cupy ms | einjit / torch | einjit achieved |")
    print("|---|---|---|---|---|---|---|")
    rows = run([c for c in args.cases.split(",") if c], args.repeat, args.warmup,
               args.copy_tbs, args.matmul_tflops)
    if rows:
        geo = math.exp(statistics.mean(math.log(r["vs_torch"]) for r in rows))
        print(f"\ngeometric mean of einjit / torch.einsum: {geo:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
