"""Time numpy's matmul over a sweep of matrix sizes and report how far einjit's GEMM cost
model (``einjit.gemm._product_s``) is from the times measured on this machine.

    python benchmarks/gemm_model.py                  # float32 and float64, ~5 min
    python benchmarks/gemm_model.py --quick          # fewer sizes, ~1 min
    python benchmarks/gemm_model.py --save sweep.json

The sweep: single products of M x K by K x N (M of 8 to 4096, N and K of 8 to 1024) and
stacks of 16 and 128 small ones, written into a preallocated result, as the kernels'
products are.  Printed: for each dtype and kind (single, stack), the median and the root
mean square of log(model / measured), by size class (M N K multiply-adds).  The model's
constants were fitted to such a sweep (session 26: rms about 0.3, the model before it
0.75-0.9); rerun it on another machine to see whether they still hold.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time

import numpy as np

from einjit.gemm import _product_s


def _median_s(fn, budget: float) -> float:
    fn()
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    times = []
    for _ in range(max(5, min(400, int(budget / max(one, 1e-6))))):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def sweep(dtypes: list[str], quick: bool) -> list[dict]:
    """Timed products: one dict per (dtype, kind, M, N, K, batch) with its median ``t``."""
    sizes = [8, 32, 128, 512] if quick else [8, 16, 32, 64, 128, 256, 512, 1024]
    small = [8, 32, 128] if quick else [8, 16, 32, 64, 128, 256]
    rng = np.random.default_rng(0)
    budget = 0.05 if quick else 0.15
    rows = []
    for dt in dtypes:
        for m, n, k in itertools.product(sizes + [4096], sizes, sizes):
            if not 2 ** 12 <= m * n * k <= 2 ** 30 or (m == 4096 and n > 256):
                continue
            a, b = rng.random((m, k)).astype(dt), rng.random((k, n)).astype(dt)
            out = np.empty((m, n), dt)
            rows.append(dict(dtype=dt, kind="single", m=m, n=n, k=k, batch=1,
                             t=_median_s(lambda: np.matmul(a, b, out=out), budget)))
        for m, n, k in itertools.product(small, small, [8, 32, 128, 512]):
            for batch in (16, 128):
                if batch * m * n * k > 2 ** 28:
                    continue
                a, b = rng.random((batch, m, k)).astype(dt), rng.random((batch, k, n)).astype(dt)
                out = np.empty((batch, m, n), dt)
                rows.append(dict(dtype=dt, kind="stack", m=m, n=n, k=k, batch=batch,
                                 t=_median_s(lambda: np.matmul(a, b, out=out), budget)))
    return rows


def report(rows: list[dict]) -> None:
    """Print the model's error against the measured times, by dtype, kind and size."""
    classes = [(0, 2 ** 15), (2 ** 15, 2 ** 18), (2 ** 18, 2 ** 21), (2 ** 21, 2 ** 31)]
    print(f"{'dtype':8s} {'kind':6s} {'multiply-adds':>16s} {'n':>4s} {'median':>7s} {'rms':>5s}"
          "   (log of model / measured)")
    for dt in sorted({r["dtype"] for r in rows}):
        for kind in ("single", "stack"):
            for lo, hi in classes + [(0, 2 ** 31)]:
                err = np.array([math.log(_product_s(dt, r["m"], r["n"], r["k"], r["batch"]) / r["t"])
                                for r in rows if r["dtype"] == dt and r["kind"] == kind
                                and lo <= r["m"] * r["n"] * r["k"] < hi])
                if err.size:
                    label = "all" if (lo, hi) == (0, 2 ** 31) else f"2^{int(math.log2(max(lo, 1)))}-2^{int(math.log2(hi))}"
                    print(f"{dt:8s} {kind:6s} {label:>16s} {err.size:4d} {np.median(err):+7.2f} "
                          f"{math.sqrt(float(np.mean(err ** 2))):5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float32,float64", help="comma-separated dtypes")
    ap.add_argument("--quick", action="store_true", help="fewer sizes, shorter timings")
    ap.add_argument("--save", metavar="PATH", help="write the timed products as JSON")
    ap.add_argument("--load", metavar="PATH", help="report on a saved sweep instead of timing")
    args = ap.parse_args()
    if args.load:
        with open(args.load) as fh:
            rows = json.load(fh)
    else:
        rows = sweep(args.dtype.split(","), args.quick)
    if args.save:
        with open(args.save, "w") as fh:
            json.dump(rows, fh)
    report(rows)


if __name__ == "__main__":
    main()
