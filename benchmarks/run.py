"""A first benchmark: einjit against numpy.einsum on a few cases, medians in one run.

    python benchmarks/run.py [--repeat N]

Compile time is measured separately (the first call) and never mixed into kernel
times; repeats are interleaved so machine drift hits both alike.  The full suite with
opt_einsum, torch, ceilings and charts is the CPU-speed issue's work.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import einjit

CASES = [
    ("matmul", "ij,jk->ik", [(256, 256), (256, 256)]),
    ("bmm", "bij,bjk->bik", [(64, 64, 64), (64, 64, 64)]),
    ("frob", "ij,ij->", [(1024, 1024), (1024, 1024)]),
    ("rowdot3", "ij,ij,ij->i", [(2048, 512)] * 3),
    ("trace", "ii->", [(2048, 2048)]),
    ("chain", "ij,jk,kl->il", [(128, 128)] * 3),
    ("tiny_mm", "ij,jk->ik", [(4, 4), (4, 4)]),
]


def _time(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'case':10} {'equation':16} {'compile s':>9} {'einjit ms':>10} {'numpy ms':>10} "
          f"{'numpy opt ms':>12} {'ratio':>6}")
    for name, eq, shapes in CASES:
        ops = [rng.random(s).astype(args.dtype) for s in shapes]
        compile_s = _time(einjit.einsum, eq, *ops)
        ref = np.einsum(eq, *ops, optimize=True)
        np.testing.assert_allclose(einjit.einsum(eq, *ops), ref, rtol=1e-3, atol=1e-3)
        runs: dict[str, list[float]] = {"einjit": [], "numpy": [], "numpy_opt": []}
        for _ in range(args.repeat):
            runs["einjit"].append(_time(einjit.einsum, eq, *ops))
            runs["numpy"].append(_time(lambda *o: np.einsum(eq, *o), *ops))
            runs["numpy_opt"].append(_time(lambda *o: np.einsum(eq, *o, optimize=True), *ops))
        med = {k: statistics.median(v) * 1e3 for k, v in runs.items()}
        best = min(med["numpy"], med["numpy_opt"])
        print(f"{name:10} {eq:16} {compile_s:9.2f} {med['einjit']:10.3f} {med['numpy']:10.3f} "
              f"{med['numpy_opt']:12.3f} {med['einjit'] / best:6.2f}")


if __name__ == "__main__":
    main()
