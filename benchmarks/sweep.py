"""One equation over a sweep of sizes, in one process: einjit against numpy, opt_einsum
and torch.

    python benchmarks/sweep.py "ij,ij->i" "n,64" "n,64"
    python benchmarks/sweep.py "bij,bjk->bik" "n,16,16" "n,16,16" --sizes 1,16,256,4096
    python benchmarks/sweep.py "i,i->" n n --dtype float64 --sizes 1000,1000000

Each shape is a comma-separated list of extents; ``n`` stands for the size swept.  One
process sees every size, as an application whose batch size varies does: from the third
size on (``einjit.engine.DYNAMIC_AFTER``), einjit serves the sizes with kernels generic
in the label that varies, one per size class (``einjit.engine.planned_extent``), and the
``plan`` column says which: ``exact`` or ``generic``.  Per size, the first einjit call
(compilation included) is reported apart; then the contenders run interleaved, in a fresh
random order each round, and the medians are printed with einjit / best peer.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

import einjit
from einjit import engine


def _peers(eq: str, shapes: list[tuple[int, ...]]) -> dict[str, object]:
    peers: dict[str, object] = {"numpy": lambda *a: np.einsum(eq, *a, optimize=True)}
    try:
        import opt_einsum
        peers["opt_einsum"] = opt_einsum.contract_expression(eq, *shapes)
    except ImportError:
        pass
    try:
        import torch
        torch.set_num_threads(2)

        def by_torch(*a: np.ndarray, _t=[]) -> object:  # operands converted once per size
            if not _t or _t[0][0] is not a[0]:
                _t[:] = [(a[0], [torch.from_numpy(x) for x in a])]
            return torch.einsum(eq, *_t[0][1])
        peers["torch"] = by_torch
    except ImportError:
        pass
    return peers


def _median_us(samples: list[float]) -> float:
    return 1e6 * float(np.median(samples))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("equation")
    ap.add_argument("shapes", nargs="+", help="one per operand, e.g. n,64")
    ap.add_argument("--sizes", default="10,100,1000,3000,10000,30000,100000,300000")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.equation} {' '.join(args.shapes)} ({args.dtype}), n over {args.sizes}")
    print(f"{'n':>8} {'plan':>8} {'1st ms':>8} {'einjit us':>10} {'best peer':>21} {'ratio':>6}")
    for n in (int(x) for x in args.sizes.split(",")):
        shapes = [tuple(n if d == "n" else int(d) for d in s.split(",")) for s in args.shapes]
        ops = [rng.standard_normal(s).astype(args.dtype) for s in shapes]
        misses = einjit.cache_info()["misses"]
        start = time.perf_counter()
        einjit.einsum(args.equation, *ops)
        first = 1e3 * (time.perf_counter() - start)
        call = engine.prepare((args.equation, *ops))
        if call.view is not None:  # numpy returns a view: nothing compiled
            plan = "view"
        else:
            engine.lookup(call)  # (a hit) says whether the call went generic
            plan = "generic" if call.dynamic else "exact"
            if einjit.cache_info()["misses"] == misses:
                plan += "*"  # served by a kernel compiled for another size
        contenders = {"einjit": lambda *a: einjit.einsum(args.equation, *a)}
        contenders.update(_peers(args.equation, shapes))
        times: dict[str, list[float]] = {k: [] for k in contenders}
        for fn in contenders.values():
            fn(*ops)
        for _ in range(args.rounds):
            for name in random.sample(list(contenders), len(contenders)):
                start = time.perf_counter()
                contenders[name](*ops)
                times[name].append(time.perf_counter() - start)
        ours = _median_us(times.pop("einjit"))
        best = min(times, key=lambda k: _median_us(times[k]))
        peer = _median_us(times[best])
        print(f"{n:>8} {plan:>8} {first:>8.1f} {ours:>10.1f} {peer:>10.1f} {best:<10}"
              f"{ours / peer:>6.2f}")


if __name__ == "__main__":
    main()
