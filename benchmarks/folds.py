"""Bodies and reductions beyond einsum: einjit against what users write today.

    python benchmarks/folds.py            # all cases, float64 (issue 6's sizes)
    python benchmarks/folds.py --quick    # smaller sizes, fewer repeats

Cases (issue 6): pairwise squared distances (numpy broadcast-and-reduce, the expanded
``|x|^2 + |y|^2 - 2 x.y`` formula, ``scipy.spatial.distance.cdist``, ``torch.cdist``),
the min-plus product (numpy and torch broadcast + min), and the log-space matrix
product (numpy broadcast + a stable logsumexp, ``scipy.special.logsumexp``,
``torch.logsumexp``).  Every contender runs in its own subprocess: the time is the
median of repeated calls after a warm-up call, the memory the growth of the process's
peak resident set during one call after the warm-up (Linux: ``/proc/self/clear_refs``
resets the peak first), so it counts the intermediates a call builds, not one-time
costs such as compiling.  Results are checked against the numpy broadcast version.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {
    "sqdist": {"title": "pairwise squared distances id,jd->ij",
               "shapes": [(2048, 64), (2048, 64)], "quick": [(500, 16), (400, 16)]},
    "minplus": {"title": "min-plus product ik,kj->ij", "shapes": [(512, 512), (512, 512)],
                "quick": [(150, 150), (150, 150)]},
    "logmatmul": {"title": "log-space product ik,kj->ij (logsumexp)",
                  "shapes": [(512, 512), (512, 512)], "quick": [(120, 120), (120, 120)]},
}

CONTENDERS = {
    "sqdist": ["einjit", "numpy_broadcast", "numpy_expanded", "scipy_cdist", "torch_cdist"],
    "minplus": ["einjit", "numpy_broadcast", "torch_broadcast"],
    "logmatmul": ["einjit", "numpy_broadcast", "scipy_logsumexp", "torch_logsumexp"],
}

# The child program: builds the operands, runs one contender, prints JSON.
CHILD = r'''
import json, resource, statistics, sys, time
import numpy as np
case, who, shapes, repeat = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
a, b = (rng.uniform(-1, 1, s) for s in shapes)
if case == "logmatmul":
    a, b = a * 300, b * 300            # exp() of the broadcast sum would overflow
def make():
    if who == "einjit":
        import einjit
        if case == "sqdist":
            return einjit.CompiledEinsum("id,jd->ij", _sq), (a, b)
        reduce = "min" if case == "minplus" else "logsumexp"
        return einjit.CompiledEinsum("ik,kj->ij", _plus, reduce=reduce), (a, b)
    if who.startswith("torch"):
        import torch
        torch.set_num_threads(2)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        if case == "sqdist":
            return (lambda x, y: torch.cdist(x, y) ** 2), (ta, tb)
        if case == "minplus":
            return (lambda x, y: (x[:, :, None] + y[None]).min(1).values), (ta, tb)
        return (lambda x, y: torch.logsumexp(x[:, :, None] + y[None], 1)), (ta, tb)
    if who == "scipy_cdist":
        from scipy.spatial.distance import cdist
        return (lambda x, y: cdist(x, y, "sqeuclidean")), (a, b)
    if who == "scipy_logsumexp":
        from scipy.special import logsumexp
        return (lambda x, y: logsumexp(x[:, :, None] + y[None], axis=1)), (a, b)
    if who == "numpy_expanded":
        return (lambda x, y: (x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2 * x @ y.T), (a, b)
    if case == "sqdist":
        return (lambda x, y: ((x[:, None] - y[None]) ** 2).sum(-1)), (a, b)
    if case == "minplus":
        return (lambda x, y: (x[:, :, None] + y[None]).min(1)), (a, b)
    def lse(x, y):
        s = x[:, :, None] + y[None]
        m = s.max(1, keepdims=True)
        return (np.log(np.exp(s - m).sum(1, keepdims=True)) + m)[:, 0]
    return lse, (a, b)
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])  # KiB
fn, args = make()
first = time.perf_counter(); out = fn(*args); first = time.perf_counter() - first
del out
try:  # reset the peak resident set (Linux), then measure one steady-state call
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = status("VmRSS:")
    out = fn(*args)
    peak = status("VmHWM:") - before
except OSError:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = fn(*args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
times = []
for _ in range(repeat):
    t0 = time.perf_counter(); fn(*args); times.append(time.perf_counter() - t0)
out = np.asarray(out)
np.save(sys.argv[5], out)
print(json.dumps({"median_s": statistics.median(times), "first_s": first,
                  "peak_mib": peak / 1024}))
'''

BODIES = '''
def _sq(x, y):
    return (x - y) ** 2


def _plus(a, b):
    return a + b
'''


def run(case: str, who: str, shapes: list, repeat: int, workdir: Path) -> dict:
    out = workdir / f"{case}-{who}.npy"
    program = workdir / "child.py"
    program.write_text(BODIES + CHILD)
    done = subprocess.run([sys.executable, str(program), case, who, json.dumps(shapes),
                           str(repeat), str(out)], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS=os.environ.get(
                              "OMP_NUM_THREADS", "2")))
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["file"] = str(out)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per contender")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 7)
    import numpy as np

    results: dict = {}
    status = 0
    with tempfile.TemporaryDirectory(prefix="einjit-folds-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("EINJIT_CACHE_DIR", str(workdir / "cache"))
        for case, spec in CASES.items():
            shapes = spec["quick"] if args.quick else spec["shapes"]
            print(f"\n== {spec['title']}: shapes {shapes}, float64")
            print(f"{'contender':18s} {'median ms':>10s} {'speedup':>8s} {'peak MiB':>9s}  check")
            run(case, "einjit", shapes, 1, workdir)  # compile into the disk cache
            rows = {who: run(case, who, shapes, repeat, workdir) for who in CONTENDERS[case]}
            ref_file = rows["numpy_broadcast"].get("file")
            ref = np.load(ref_file) if ref_file else None
            base = rows["einjit"].get("median_s")
            for who, r in rows.items():
                if "error" in r:
                    print(f"{who:18s} {'-':>10s} {'-':>8s} {'-':>9s}  {r['error'][:60]}")
                    continue
                ok = ref is None or np.allclose(np.load(r["file"]), ref, rtol=1e-9, atol=1e-9)
                status |= 0 if ok else 1
                speed = r["median_s"] / base if base else float("nan")
                print(f"{who:18s} {r['median_s'] * 1e3:10.2f} {speed:8.2f} "
                      f"{r['peak_mib']:9.1f}  {'ok' if ok else 'MISMATCH'}")
                r.pop("file", None)
            results[case] = {"shapes": shapes, "contenders": rows}
    print("\nspeedup = contender time / einjit time (above 1: einjit is faster); peak MiB ="
          " growth of the peak resident set during one call (result and intermediates)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
