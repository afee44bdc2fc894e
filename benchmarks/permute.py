"""Permutation copies: einjit against numpy (and torch), in one process.

    python benchmarks/permute.py                         # the listed cases, both dtypes
    python benchmarks/permute.py --random 60 --seed 5    # and 60 random permutations
    python benchmarks/permute.py --dtype float32 --no-listed --random 20

Each case copies a permuted view of a C-ordered array (``x.transpose(perm)``) into a
given C-ordered result: ``einjit.einsum("abc->abc", view, out=out)`` (einjit's own
permutation kernel, as GEMM steps use for their operand copies) against
``numpy.copyto(out, view)`` and, when installed, torch's ``out.copy_(view)`` on the same
memory (``torch.from_numpy``, two threads).  The contenders run interleaved, a fresh
order each round; medians are printed with the rate (read + write bytes a second) and
einjit / best peer, and the geometric mean of that ratio closes each run.  Random cases
are 1 to 8 MiB arrays of 2 to 5 axes (seeded).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from typing import Callable

import numpy as np

import einjit

LISTED = [
    ((512, 512), (1, 0)), ((2048, 2048), (1, 0)), ((100, 20971), (1, 0)),
    ((16, 65536), (1, 0)), ((65536, 16), (1, 0)), ((3, 1000, 1000), (1, 2, 0)),
    ((1000, 1000, 3), (2, 0, 1)), ((64, 128, 128), (0, 2, 1)), ((256, 256, 16), (2, 0, 1)),
    ((200, 200, 200), (2, 1, 0)), ((48, 7281, 12), (2, 1, 0)), ((24, 24, 24, 24), (0, 2, 3, 1)),
    ((12, 5, 64, 256), (2, 3, 1, 0)), ((32, 32, 32, 32, 4), (4, 0, 1, 2, 3)),
]


def random_cases(n: int, seed: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``n`` seeded random (shape, permutation) pairs of 2^18 to 2^21 elements."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        ndim = rng.choice([2, 3, 3, 4, 4, 5])
        rest, shape = rng.choice([1 << 18, 1 << 20, 1 << 21]), []
        for _ in range(ndim - 1):
            side = rng.choice([2, 3, 4, 8, 12, 16, 24, 32, 48, 64, 100, 128, 256])
            side = max(1, min(rest, side))
            shape.append(side)
            rest //= side
        shape.append(max(1, rest))
        rng.shuffle(shape)
        perm = list(range(ndim))
        while perm == sorted(perm):
            rng.shuffle(perm)
        cases.append((tuple(shape), tuple(perm)))
    return cases


def _seconds(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(shape: tuple[int, ...], perm: tuple[int, ...], dtype: str, rounds: int,
            torch_mod: object | None) -> dict[str, float]:
    """Median seconds per copy of each contender for one case."""
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    view = x.transpose(perm)
    out = np.empty(view.shape, dtype)
    labels = "abcdefgh"[:len(shape)]
    fns: dict[str, Callable[[], object]] = {
        "einjit": lambda: einjit.einsum(f"{labels}->{labels}", view, out=out),
        "numpy": lambda: np.copyto(out, view),
    }
    if torch_mod is not None:
        tv, to = torch_mod.from_numpy(x).permute(*perm), torch_mod.from_numpy(out)
        fns["torch"] = lambda: to.copy_(tv)
    for name, fn in fns.items():  # first calls (einjit compiles), each checked
        out[...] = 0
        fn()
        if not np.array_equal(out, view):
            raise AssertionError(f"{name}: wrong copy of {shape} as {perm}")
    once = min(_seconds(fn, 1) for fn in fns.values())
    calls = max(1, min(200, int(0.01 / max(once, 1e-7))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    shuffler = random.Random(hash((shape, perm, dtype)) & 0xFFFF)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            samples[name].append(_seconds(fns[name], calls))
    return {name: float(np.median(s)) for name, s in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    ap.add_argument("--random", type=int, default=0, help="random cases besides the listed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-listed", action="store_true", help="random cases only")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    torch_mod = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(2)
            torch_mod = torch
        except ImportError:
            pass
    cases = ([] if args.no_listed else list(LISTED)) + random_cases(args.random, args.seed)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    for dtype in dtypes:
        ratios = []
        print(f"== {dtype}: ms per copy (median), einjit's GB/s (read + write), einjit / best peer")
        for shape, perm in cases:
            t = measure(shape, perm, dtype, args.rounds, torch_mod)
            best = min(v for k, v in t.items() if k != "einjit")
            ratios.append(t["einjit"] / best)
            nbytes = math.prod(shape) * np.dtype(dtype).itemsize
            peers = "  ".join(f"{k} {v * 1e3:8.3f}" for k, v in t.items() if k != "einjit")
            print(f"{str(shape):24s} {str(perm):17s} einjit {t['einjit'] * 1e3:8.3f}  {peers}"
                  f"  {2 * nbytes / t['einjit'] / 1e9:5.1f} GB/s  {ratios[-1]:5.2f}", flush=True)
        gm = math.exp(sum(map(math.log, ratios)) / len(ratios))
        print(f"geomean einjit / best peer ({dtype}, {len(ratios)} cases): {gm:.3f}")


if __name__ == "__main__":
    main()
