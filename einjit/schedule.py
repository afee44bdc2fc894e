"""Scheduling: choose each kernel's loop order, blocking and parallel loop.

:func:`schedule`, a pure function, decides a :class:`~einjit.ir.Schedule` from the
kernel and the strides of its arrays: output loops outside, reduction loops inside (so
every output element is accumulated in a local and written once); within each group,
loops ordered by falling stride so the innermost loop walks the smallest strides; when
an output index has smaller strides than every reduction index (``ij,jk->ik`` in C
order), that index is blocked: a local array of accumulators lets it run innermost,
inside the reductions; the outermost output loop in parallel when the kernel has enough
work to pay for threads (or, for a full reduction, the outer reduction loop, with
partial sums): chunks on einjit's threads (:mod:`einjit.threads`), or Numba's
``prange``; a matrix product worth it runs as BLAS calls instead (:mod:`einjit.gemm`
decides how). :func:`einjit.lower.lower` then turns the kernel and its schedule into a
loop nest.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product
>>> k = Kernel("k0", (Operand("a0", "float64", ("i", "j")), Operand("a1", "float64", ("j", "k"))),
...            Operand("out", "float64", ("i", "k")), (Index("i", 4), Index("j", 5), Index("k", 4)),
...            product(2, (("i", "j"), ("j", "k"))), SUM, "float64")
>>> s = schedule(k, ((5, 1), (1, 5)), (4, 1))   # b stored column-major: j is contiguous
>>> print(s)
order ikj, serial
>>> print(schedule(k, ((5, 1), (4, 1)), (4, 1)))  # row-major b: k innermost, unrolled
order ikj, serial, 4 values of k at once in registers
"""

from __future__ import annotations

import math
import os
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from . import host, policy
from .gemm import LOOP_TERM_S, c_ordered_strides, gemm_layout, small_for_blas, use_gemm
from .ir import Call, Cast, Const, Expr, GemmLayout, Kernel, Load, Schedule, loads
from .views import c_strides

__all__ = ["schedule", "runs_as_blas", "serial_at", "copies", "innermost", "partial_spread",
           "vector_lanes",
           "multiply_add", "panel_elements", "panel_bytes", "thread_count", "flat_inputs"]


def runs_as_blas(kernel: Kernel) -> bool:
    """Whether :func:`schedule` runs a kernel over C-ordered arrays as BLAS calls."""
    if not use_gemm(kernel):
        return False
    return schedule(kernel, *c_ordered_strides(kernel)).gemm is not None


def _across(kernel: Kernel, v: str) -> int:
    """Bytes of the inputs a kernel reads across their rows along output index ``v``
    (each of ``Policy.unroll`` values of ``v`` at once reads one more row of them)."""
    extent = kernel.extent
    return sum(np.dtype(op.dtype).itemsize * math.prod(extent[i] for i in op.indices)
               for op in kernel.inputs if v in op.indices)


def thread_count() -> int:
    """Threads Numba would use (NUMBA_NUM_THREADS, else the CPUs available)."""
    env = os.environ.get("NUMBA_NUM_THREADS")
    if env and env.isdigit():
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def flat_inputs(kernel: Kernel, input_strides: Sequence[Sequence[int]]
                ) -> tuple[tuple[int, ...] | None, ...]:
    """Per input, its strides when the kernel reads it flat (see :class:`Schedule`):
    neither C- nor Fortran-ordered, one stride 1 or -1 (a negative one: the input
    reversed along it, which Numba would see as an array of unknown strides); None for
    the others."""
    extent = kernel.extent
    flat: list[tuple[int, ...] | None] = []
    for op, strides in zip(kernel.inputs, input_strides):
        live = [(extent[i], int(s)) for i, s in zip(op.indices, strides) if extent[i] != 1]
        ordered = any(all(s == expected for (_, s), expected
                          in zip(run, c_strides([n for n, _ in run])))
                      for run in (live, live[::-1]))
        # Only an input with contiguous runs gains: strided alone, vectorised reads
        # would be gathers (a diagonal, a step-2 slice).
        flat.append(None if ordered or any(n == 0 for n, s in live)
                    or all(abs(s) != 1 for _, s in live)
                    else tuple(int(s) for s in strides))
    return tuple(flat) if any(st is not None for st in flat) else ()


#: Dtypes whose BLAS dot product runs on one thread (OpenBLAS 0.3.31: ``sdot`` over 4M
#: float32 1.17 ms on one thread or two, ``ddot`` 2.30 -> 1.16 ms; ``sgemv`` and
#: ``dgemv`` both halve their time on two).
UNTHREADED_DOTS = frozenset({"float32"})


def _unthreaded_dot(kernel: Kernel, layout: GemmLayout, threads: int) -> bool:
    """Whether a GEMM-shaped kernel is one dot product (no batch, a 1 x 1 result) that
    BLAS runs on one thread where einjit's loops would run on ``threads``: then the loops
    (``ij,ij->`` over 2048^2 float32: ``sdot`` 1.17 ms, loops on two threads 0.66 ms)."""
    extent = kernel.extent
    return (threads > 1 and kernel.accumulate in UNTHREADED_DOTS
            and all(op.dtype == kernel.accumulate for op in kernel.inputs)
            and kernel.work >= policy.POLICY.parallel_min_work
            and all(math.prod(extent[g] for g in group) == 1
                    for group in (layout.batch, layout.m, layout.n)))


def schedule(kernel: Kernel, input_strides: Sequence[Sequence[int]],
             output_strides: Sequence[int], threads: int | None = None,
             flat: bool = True, blas: bool = True) -> Schedule:
    """Pick loop order and parallel loop from the arrays' strides (in elements).

    ``flat``: inputs that are neither C- nor Fortran-ordered may be read flat, with their
    strides as constants (only where the caller keys its kernels by those strides).
    ``blas``: whether a GEMM-shaped kernel may run as a BLAS call."""
    pol = policy.POLICY
    threads = thread_count() if threads is None else threads
    if blas and use_gemm(kernel):
        layout, blas_s = gemm_layout(kernel, input_strides, output_strides, threads)
        extent = kernel.extent
        thin = min(math.prod(extent[g] for g in layout.m), math.prod(extent[g] for g in layout.n))
        gemm = Schedule(tuple(ix.name for ix in kernel.indices), gemm=layout,
                        least_work=_least_work(kernel, layout.split > 1,
                                               pol.parallel_min_work))
        calls = math.prod(extent[g] for g in layout.batch)
        tile_vectors = _wide_vectors(kernel)
        if thin == 1 and (kernel.work < pol.gemv_min_work or calls > pol.gemv_max_calls
                          or _unthreaded_dot(kernel, layout, threads)):
            # A small matrix-vector product or dot: BLAS's call costs more than a loop
            # nest's whole pass (i,i-> over 16384 floats 14.5 -> 6.0 us), where the loops
            # read every input along their runs (in one pass: not hoisted, which passes
            # over the output again for each value of the reduction, dab,d->ab 32 x 300
            # x 3: 25 us hoisted, 22 us BLAS).
            # A batch of them is one memory-bound call per matrix, each threaded on its
            # own (or not at all): one loop nest streams the batch on every thread
            # (float32 ijk,j->ik over 256^3: 5.6 -> 1.8 ms; bij,bi->bj over
            # 64 x 512 x 512: 4.2 -> 0.83 ms).
            # Loops that gather an input still win where BLAS would first copy one
            # (cbb,cab->a over 75 x 2 x 128: 24 us of loops, 56 us copying a1 along c,b
            # for the product), by the cost model, and over a batch of tiny products,
            # where the calls cost more than the terms (ac,bca->bc over 32 x 512 by
            # 2 x 512 x 32, 64 terms a product: float32 0.059 -> 0.028 ms; eb,bec->bc,
            # 200: 0.14 -> 0.04 ms; not be,edb->ed, 8192: 0.26 -> 0.46-0.58 ms).
            loops = schedule(kernel, input_strides, output_strides, threads, flat, False)
            gathers = copies(kernel, loops, input_strides, reuse=1)
            slow = gathers or loops.hoist
            tiny = calls > 1 and kernel.work <= calls * TINY_PRODUCT_TERMS
            if not slow or ((any(layout.copy) or tiny)
                            and kernel.work * GATHER_COST * LOOP_TERM_S < blas_s):
                return loops
            return gemm
        if small_for_blas(kernel, layout):
            # Small matrices: a register tile of loops (``block_rows``) beats a BLAS call
            # per matrix (1024 16 x 16 float32 products: 0.35 against 0.62 ms; 512 of
            # 32 x 32, float64: 1.6 against 2.7 ms); also where BLAS would take such a
            # batch as rows but copy an operand or the product (ijk,jl->ilk over
            # 64 x 32 x 64 by 32 x 16: float32 0.14 -> 0.04 ms); not where it copies
            # nothing (the products of a Tucker product, 32 x 32 by 32 x 32768).  Where
            # BLAS would copy, loops vectorised along a block of the output beat it too
            # (dfbc,bacd->fcad, 400 products of 128 x 24 by 24 x 16, float64: BLAS after
            # three transposing copies 6.0 ms, loops 2.8 ms).
            # Not a batch whose tiles end in a block of fewer than VECTOR_LOOP_MIN values
            # left over: its rows' loop sums them one by one, at several times the cost
            # of the tiles' values (32 products of 64 x 16 by 16 x 20 float32: 0.093 ms in
            # tiles of 16 and a block of 4, 0.035 ms BLAS; float64 0.126, 0.062); a single
            # product saves BLAS's call still (64 x 16 by 16 x 20: 4 and 8 us); 24 values
            # left over are vectorised (32 products of 64 x 16 by 16 x 56 float64 in
            # tiles of 32: 0.13 ms, BLAS 0.23), as is one vector of them (float64's 4 of
            # 20: level with BLAS in 13 batches, 0.5-1.75x).
            loops = schedule(kernel, input_strides, output_strides, threads, flat, False)
            left = (kernel.extent[loops.block[0]] % loops.block[1]
                    if loops.block is not None else 0)
            ragged = 0 < left < VECTOR_LOOP_MIN and left != vector_lanes(kernel)
            if ((loops.block_rows is not None and not (ragged and calls > 1))
                    or (layout.copies and loops.block is not None)):
                return loops
        elif (_fitting_shape(tile_vectors.lanes, tile_vectors.registers) is not None
              and (small_for_blas(kernel, layout, pol.tile_gemm_fit_max
                                  * (WIDE_TILE_GEMM_FACTOR if tile_vectors.bits else 1))
                   or (tile_vectors.bits and _short_sums_batch(kernel, layout, calls)))):
            # Larger ones where the loops run a tile whose sums stay in registers (none
            # does where no wide one does: on AVX2, 64 values in at least 16 vectors of
            # float64).  AVX-512's float64 tiles (each row stored from its registers)
            # against BLAS, two threads, each alone in its process: ``bij,bjk->bik``
            # 64 x 128^3 3.4 -> 1.8 ms, 128 x 64 x 128 by 128 x 128 x 128 with the second
            # transposed (bkj) 4.3 -> 2.4-2.8 ms, one product of 128^3 58 -> 42 us, of
            # 256 x 128 by 128 x 64 46 -> 39 us; alternating with BLAS calls in one
            # process (OpenBLAS's idle thread then spins for ~0.1 s, taking half a
            # core from einjit's threads) 0.41-1.22x, 0.79 in geometric mean over 20
            # products of 2^15-2^21.
            loops = schedule(kernel, input_strides, output_strides, threads, flat, False)
            if _fits_registers(kernel, loops):
                return loops
        # A matrix-vector product is memory-bound: BLAS gains nothing on a loop nest that
        # reads each operand once, so it is not worth a transposing copy of an operand.
        if not (any(layout.copy) and thin < 8):
            return gemm
    expand = _expanded(kernel)
    flat_runs = None if expand else _flat_schedule(kernel, input_strides, threads)
    if flat_runs is not None:
        return flat_runs
    cost = {ix.name: 0 for ix in kernel.indices}
    weighed, across = dict(cost), dict(cost)
    for op, strides in zip(kernel.inputs + (kernel.output,),
                           tuple(input_strides) + (tuple(output_strides),)):
        elements = math.prod(kernel.extent[i] for i in op.indices)
        for name, s in zip(op.indices, strides):
            cost[name] += abs(s)
            weight = ALIASED_WEIGHT if _aliased(s, op.dtype) else 1
            weighed[name] += abs(s) * elements * weight
            across[name] += abs(s) * weight
    read = {ix.name: 0 for ix in kernel.indices}  # the inputs' strides only
    for op, strides in zip(kernel.inputs, input_strides):
        for name, s in zip(op.indices, strides):
            read[name] += abs(s)
    position = {ix.name: p for p, ix in enumerate(kernel.indices)}

    def inside(v: str, r: str) -> bool:
        # output index v runs inside reduction r: smaller strides, on a tie the inputs'
        # (ecdb,c->eb with b = 2: b and d tie, b reads a0 contiguously, d by twos: 1.2 ->
        # 0.59 ms); from two values (dcab,a->db with b = 3: 0.84 -> 0.29 ms).  The
        # reduction's aliased strides weigh ALIASED_WEIGHT times: innermost, r would
        # walk those rows all in a few cache sets for each value of v, while a block of
        # v is kept short where it reads such rows (ALIASED_BLOCK; ba,ab->a over 1024^2
        # float32: b innermost 5.5 ms, a block of 8 values of a inside b 1.1 ms)
        return (cost[v], read[v]) < (across[r], read[r]) and extent[v] >= 2

    def by_stride(names: Sequence[str]) -> list[str]:
        # Largest stride outermost, each array's weighed by its elements: the biggest
        # arrays are walked in memory order (a small one read across its rows stays in
        # cache, or is copied, see ``copies``), strides whose rows fall into few cache
        # sets weighing more; on ties the equation's order (C-like).
        return sorted(names, key=lambda n: (-weighed[n], position[n]))

    outer = by_stride(kernel.output_indices)
    inner = [] if expand else by_stride(kernel.reduction_indices)
    extent = kernel.extent
    parallel = None
    # Numba's parfors fold a prange reduction only by + and *: other reductions over
    # every label stay serial unless they run in chunks on einjit's threads.
    splittable = outer or pol.chunked or kernel.reduce.op in ("add", "mul")
    half = pol.max_loop_depth // 2
    deep = len(outer) + len(inner) > pol.max_loop_depth
    fuse = (len(outer) - half + 1 if deep and len(outer) > half else 0,
            len(inner) - half + 1 if deep and len(inner) > half else 0)
    # The innermost loop: the reduction with the smallest strides, unless a block (or
    # unrolled values) of the output index with smaller ones runs inside it (below).
    blocked = bool(inner and outer and not deep and inside(outer[-1], inner[-1]))
    last = outer[-1] if blocked else (inner or outer)[-1] if (inner or outer) else None
    # A term whose innermost loop gathers an input (a stride other than 0 or 1: no
    # vectors, a cache line per load) costs several times a streamed one: threads pay
    # from fewer of them (ab,ba-> 1000 x 1000 float32: 1.7 ms serial, 0.9 ms on two).
    # Not where the reductions would run hoisted, reading the input in memory order.
    # Where every input it reads lies a cache line or more apart, each term is a cache
    # line (and often a page) of its own: threads pay from fewer still (bii->b over
    # 256^3, 65536 terms, beside numpy's and torch's calls: float32 0.09 -> 0.06-0.08 ms,
    # float64 0.11-0.12 -> 0.08-0.10 ms on two threads; ii-> over 4096^2, 4096 terms,
    # 2x slower on two).
    gathers = (bool(_gathered(kernel, input_strides, last))
               and not _hoisted(kernel, outer, inner, inside, cost, deep, None)[1])
    far = gathers and _far_gathered(kernel, input_strides, last, every=True)
    least = pol.parallel_min_work // (FAR_GATHER_COST if far else
                                         GATHER_COST if gathers else 1)
    if threads > 1 and kernel.work >= least and splittable:
        group = outer if outer else inner
        wide = [n for n in group if extent[n] >= 2]
        if wide:
            parallel = _balanced(wide, group, extent, threads)
            _to_front(group, parallel)
    around, hoist = _hoisted(kernel, outer, inner, inside, cost, deep, parallel)
    if len(hoist) == len(inner) and parallel is None and len(outer) == 1:
        # Every reduction outermost, no threads to split them and one output loop: a block
        # of accumulators (below) keeps the output in registers instead (adb,da->b with
        # b = 17: 0.30 ms hoisted, 0.14 ms blocked).  A block covers one output loop only:
        # with more, each of the others walks the input across its rows again (bac->ac
        # 300 x 64 x 8 float64: 0.37 ms blocked, 0.09 ms hoisted).
        hoist = []
    if hoist:
        rest = [n for n in inner if n not in hoist]
        outer = around + [o for o in outer if o not in around]
        if parallel is not None:
            # An output loop around the passes splits the output between the threads;
            # else each thread sums its part of a hoisted reduction into its own copy of
            # the (small) output, folded afterwards (``partials``): it reads a contiguous
            # part of the input, where a parallel output loop inside would have every
            # thread read every row in short runs.
            split = [n for n in around + hoist if extent[n] >= 2]
            parallel = _balanced(split, split + outer[len(around):] + rest, extent, threads)
        summed = (kernel.accumulate[0] in "fc" and pol.reassociate and bool(rest)
                  and extent[rest[-1]] >= 8)
        return Schedule(tuple(around + hoist + outer[len(around):] + rest), parallel, fuse, reassociate=summed,
                        contract=summed and _fused(kernel),
                        threads=threads if pol.chunked and parallel is not None else 0,
                        flat=flat_inputs(kernel, input_strides) if flat else (),
                        hoist=tuple(hoist), around=tuple(around),
                        least_work=_least_work(kernel, pol.chunked and parallel is not None,
                                               least))
    block = unroll = block_rows = None
    if inner and outer and not deep:
        v = outer[-1]  # the output index with the smallest strides
        rows_of = (_vector_rows(kernel, outer, v, vector_lanes(kernel))
                   if inside(v, inner[-1]) and parallel != v else None)
        if rows_of is not None:
            block, block_rows = (v, extent[v]), rows_of
        elif inside(v, inner[-1]):
            if pol.unroll > 1 and extent[v] <= 2 * pol.unroll and v not in kernel.dynamic:
                # a few values: scalar accumulators (a local array compiles slower), all
                # at once: one pass over the inputs (e,bea->a with a = 8, 64 x 3200 x 8
                # float32: 0.45 ms in two passes of four, 0.26 ms in one of eight)
                unroll = (v, extent[v])
            else:
                size = (pol.block if v in kernel.dynamic
                        else _block_size(extent[v], threads if parallel == v else 1))
                if _aliased_along(kernel, input_strides, v):
                    size = min(size, ALIASED_BLOCK)
                block = (v, size)
    pack: tuple[int, ...] = ()
    tile_of = None
    if (block is None and unroll is None and inner and outer and not deep
            and parallel != outer[-1] and outer[-1] not in kernel.dynamic):
        # The reductions run inside the output index v: where a wide register tile of v
        # would read every input along v from panels, it reads them in runs along v
        # still (the panels are copied across) and shares each load between rows (sq =
        # (x - y) ** 2 over id,jd->ij, 2048 x 2048 x 64: float32 5.4 -> 3.8 ms,
        # float64 8.1 -> 7.6 ms)
        trial = (outer[-1], extent[outer[-1]])
        tile_of = _register_tile(kernel, outer, inner, trial, parallel)
        if tile_of is None or not _packed(kernel, *tile_of[:2], inner):
            tile_of = None
    elif block_rows is None:
        tile_of = _register_tile(kernel, outer, inner, block, parallel)
    else:  # a short row's sums (_vector_rows): in wide vectors where they are whole ones
        tile_of = _narrow_wide_tile(kernel, outer, block)  # type: ignore[arg-type]
    vector_bits = 0
    if tile_of is not None:
        block, block_rows, vector_bits = tile_of
        pack = _packed(kernel, block, block_rows, inner)
    chunk = None
    if (inner and block is None and unroll is None and not fuse[1]
            and (parallel not in inner or len(inner) == 1)
            and kernel.accumulate[0] in "fc" and extent[inner[-1]] > pol.chunk):
        chunk = pol.chunk
    if (unroll is None and inner and outer and block is None and chunk is None
            and not any(fuse) and extent[outer[-1]] >= 2 * pol.unroll and pol.unroll > 1
            and _across(kernel, outer[-1]) <= pol.unroll_max_bytes):
        unroll = (outer[-1], pol.unroll)
    band = None
    if unroll is not None and len(outer) >= 2 and outer[-2] not in kernel.dynamic:
        # Operands read along the unrolled index and the reductions but not along the
        # next output index u are read again for every u: when that is more than fits
        # in cache, walk u in bands so each block of their rows serves a band of u.
        u, around = outer[-2], outer[:-2]
        again = [op for op in kernel.inputs
                 if u not in op.indices and unroll[0] in op.indices]
        reread = max((np.dtype(op.dtype).itemsize
                      * math.prod(extent[i] for i in op.indices if i not in around)
                      for op in again), default=0)
        if reread > pol.band_bytes and extent[u] >= 2 * pol.band:
            band = (u, pol.band)
    tile = None
    arrays = tuple(zip(kernel.inputs + (kernel.output,),
                       tuple(input_strides) + (tuple(output_strides),)))

    def crossed(u: str, v: str, apart: int = 1) -> bool:
        # an array runs along u, the outer of the two (its rows along v a multiple of
        # ``apart`` bytes apart)
        return any(u in op.indices and v in op.indices
                   and abs(st[op.indices.index(u)]) < abs(st[op.indices.index(v)])
                   and abs(st[op.indices.index(v)]) * np.dtype(op.dtype).itemsize % apart == 0
                   for op, st in arrays)

    if not inner and len(outer) >= 3 and not deep:
        # A copy across strides in three or more dimensions (ijk->kji): its two innermost
        # loops by strides may be neither array's contiguous axis (j, 256 x 8 bytes apart
        # in both, each i a new cache line of the output for every j and k). The output's
        # contiguous index innermost, the largest input's just outside it, in tiles
        # (below), the others around them: every line read and written whole while in
        # cache (ijk,ijk->kji over 256^3 float64 into a C-ordered result: 125 -> 42 ms;
        # ijk,kji->ijk over 256^3 float32: 71 -> 24 ms).  A pair of short sides
        # (SHORT_PAIR_VALUES) runs innermost too, the others around it: each pass of
        # those reads and writes a few lines the next one continues, where the pair's
        # short side outside was a pass over all of both arrays (copies, alternating
        # both ways in one process: 36 of 200 permutations changed, 0.20-1.31, 0.56 in
        # geometric mean; (48, 7281, 12) reversed float32 3.1 -> 0.86 ms, float64 5.5
        # -> 1.1 ms, (12, 116508, 3) 1.13 -> 0.82 and 2.35 -> 1.14 ms; (14, 48, 32, 12)
        # as (c, a, d, b) 67 -> 88 us).  So does a pair with one short side the output
        # runs along, in tiles of it whole (_short_tile), where the loops of the short
        # side and of others ran outside the long one (20 of 600 permutations changed,
        # 0.08-0.76, 0.26: (24, 682, 64) reversed float32 4.0 -> 0.32 ms, (12, 5, 64,
        # 256, 1) as (c, e, d, b, a) 4.1 -> 0.66 ms).  Not a side of less than
        # SHORT_PAIR_BYTES: a short run of a longer one the output runs along, each of
        # its lines written a piece per pass of the loops around ((2, 32, 16384)
        # reversed 1.1 -> 2.7 ms).
        pair = _crossing(kernel, input_strides, output_strides)
        rest = [n for n in outer if n not in (pair or ())]
        if (pair is not None and _pair_inside(kernel, output_strides, pair)
                and (parallel is None or any(extent[n] >= 2 for n in rest))):
            outer = rest + list(pair)
            if parallel is not None:
                parallel = _balanced([n for n in outer if extent[n] >= 2], outer, extent,
                                     threads)
                _to_front(outer, parallel)
    if not inner and len(outer) >= 2 and not deep:
        u, v = outer[-2], outer[-1]
        along = dict(zip(kernel.output.indices, output_strides))
        if (abs(along[u]) == 1 != abs(along[v]) and min(extent[u], extent[v]) >= pol.tile
                and crossed(u, v)):
            # In the tiles below, the output's rows innermost: each step a run of the
            # output written, the input read across its rows, where the loop order by
            # strides had the input read along them and the output written a line a
            # value (copies alternating both ways in one process: 30 of 200
            # permutations changed, 0.26-0.97, 0.57 in geometric mean; 100 x 20971
            # transposed float32 1.51 -> 0.47 ms, float64 1.91 -> 0.77 ms; (64, 128,
            # 512) into (128, 512, 64) 3.7 -> 0.96 ms).
            u, v = v, u
            outer[-2:] = [u, v]
            if parallel == v:  # the tiles' outer blocks on the threads
                parallel = u
                _to_front(outer, u)
        if crossed(u, v) and min(extent[u], extent[v]) >= pol.tile:
            # an array read or written across its rows along v keeps a line per row
            # of the tile in the cache while the tile runs
            across_v = [abs(st[op.indices.index(v)]) * np.dtype(op.dtype).itemsize
                        for op, st in arrays if v in op.indices]
            tile = (u, v, min(_tile_rows(b) for b in across_v))
        elif crossed(u, v) and (short := _short_tile(kernel, output_strides, u, v)):
            # One side too short for square tiles, and the output's rows along it (the
            # other array read across it): without tiles the loop along the short side
            # ran outside, each of its values a pass over the whole output writing one
            # element a line.  Tiles of the short side whole and blocks of the long one,
            # the blocks outermost and on the threads: every line written whole while in
            # cache.  Copies into a C-ordered result, each case alternating both ways in
            # one process (20 of 120 permutations changed, 0.08-0.65, 0.26 in geometric
            # mean): 16 x 65536 float32 transposed 2.8 -> 0.22 ms, (3, 1000, 1000) into
            # (1000, 1000, 3) (channels last) 1.6 -> 0.47 ms, float64 2.9 -> 0.90 ms,
            # 24^4 as (a, c, d, b) 0.25 -> 0.12 ms.  Where the output runs along the long
            # side instead, its rows along the short one often lie a power of two apart,
            # a tile's lines in one cache set (65536 x 16 transposed in tiles of 32: 0.8
            # -> 2.1 ms): tiles of fewer values, and only over 4 MiB (27 of 140 cases
            # changed, 0.34-0.93, 0.63: 65536 x 16 transposed float32 0.80 -> 0.52 ms,
            # float64 1.69 -> 0.68 ms; (1000, 1000, 3) into (3, 1000, 1000) 0.89 -> 0.75
            # and 1.82 -> 0.99 ms; below, 16384 x 24 float64 0.23 -> 0.29 ms, and slabs
            # of 128 x 2 transposed within a larger array 1.5-1.7x).
            tile = short
            if parallel in (u, v):  # the short side's one block would leave no split
                parallel = tile[0]
                _to_front(outer, parallel)
    elif (len(inner) >= 2 and not deep and block is None and unroll is None and chunk is None
          and parallel != inner[-1] and not any(fuse)):
        # The same for the two innermost reduction loops (``ed,de->``: de read down its
        # columns, each load a new cache line): a tile of each operand stays in cache.
        # It pays where the column's rows alias in the cache (strides a multiple of 512
        # bytes, 512 x 512 float32: 0.83 -> 0.50 ms); elsewhere the plain column walk
        # stays in L2, and the tiles' short loops only cost (1000 x 1000: 1.8 -> 3.6 ms).
        u, v = inner[-2], inner[-1]
        if crossed(u, v, ALIASED_BYTES) and min(extent[u], extent[v]) >= pol.tile:
            tile = (u, v, pol.tile)
    # Only a reduction loop innermost gains (a blocked output loop is vectorised as it
    # is), and only when long enough to fill vectors.  Not one that reads an input a
    # cache line or more apart: vectorised, its loads are gather instructions, slower
    # here than one load at a time (ab,ba-> over 1000 x 1000, float32 0.56 -> 0.44 ms,
    # float64 0.56 -> 0.49 ms in order; ii-> level).  Nor, but for a register block (whose
    # values lie side by side and vectorise across it), one that reads an input across its
    # rows at all: its terms in four partials in turn (``interleave``, below) beat the
    # vectors (d,cad->d over 2 x 512 x 32 x 2 float32, 8 bytes apart: 42 -> 11 us;
    # bdac,dca over 2 x 3 x 8 x 128, 32 bytes apart: 11 -> 6 us; abb,cba,c 33 -> 15 us).
    reassociate = (pol.reassociate and bool(inner) and block is None
                   and kernel.reduce.op == "add" and kernel.accumulate[0] in "fc"
                   and extent[inner[-1]] >= 8
                   and not _far_gathered(kernel, input_strides, inner[-1])
                   and (unroll is not None or not _gathered(kernel, input_strides, inner[-1])))
    # A register tile sums each value in order, vectorised across the block: its terms
    # may still be fused multiply-adds, one instruction where a multiply and an add were
    # two (float32 bnd,bne->bde over 32 x 128 x 64, one thread: 0.44 -> 0.32 ms; sq = (x
    # - y) ** 2 over id,dj->ij, 2048 x 2048 x 64 float64: 10.3 -> 7.7 ms).
    contract = _fused(kernel) and (reassociate or block_rows is not None)
    # Where it is not vectorised, such a sum still need not wait for each addition
    # before the next: its terms go to INTERLEAVE partials in turn, as many independent
    # chains (ab,ba-> over 256 x 256 float64: 84-100 -> 42-50 us).
    interleave = (INTERLEAVE if (pol.reassociate and not reassociate and bool(inner)
                                 and block is None and unroll is None
                                 and kernel.reduce.op == "add"
                                 and kernel.accumulate[0] in "fc"
                                 and extent[inner[-1]] >= 2 * INTERLEAVE) else 0)
    # A register tile over two output indices pays once the body is a multiply-add:
    # then loads, not arithmetic, bound the loop, and each load serves ``rows`` values.
    rows = pol.rows if band is not None and contract else 1
    # Chunks of the outermost loop on einjit's threads (of both loops, when an unrolled
    # index is parallel: its blocks and its remainder), when that loop is an output loop.
    # A reduction split over threads (no output loops) runs in chunks too, each chunk's
    # partial into its own slot; a second small kernel folds them (see ``partials``).
    chunks = threads if (pol.chunked and parallel is not None
                         and (parallel in outer or not outer)) else 0
    return Schedule(tuple(outer + inner), parallel, fuse, block, chunk=chunk, tile=tile,
                    unroll=unroll, reassociate=reassociate, threads=chunks, band=band,
                    rows=rows, contract=contract, interleave=interleave, expand=expand,
                    flat=flat_inputs(kernel, input_strides)
                    if flat and not kernel.dynamic else (), block_rows=block_rows, pack=pack,
                    least_work=_least_work(kernel, bool(chunks), least),
                    vector_bits=vector_bits)


#: The first level cache: ways and sets of 64-byte lines (32 KiB, 8-way: Zen 3, and
#: most x86 cores since).  Rows ``stride`` bytes apart fall into ``4096 / gcd(stride,
#: 4096)`` sets (counted in lines); a row in each of a few sets evicts the others.
L1_WAYS, L1_SETS = 8, 64


def _tile_rows(stride: int) -> int:
    """Rows of a tile along which an array runs ``stride`` bytes apart: ``Policy.tile``
    where half the lines of the sets they fall into hold them, else fewer (8 at least):
    a tile of 32 rows 4 KiB apart evicts its own lines from the 8 ways of their one set
    (ijk,kji->ijk over 64^3 float32: 0.39 ms in tiles of 32, 0.24 in 8; ij,ji->ij over
    1024^2 float32: 2.3 ms, 1.0; rows 512 bytes apart fill 8 sets, 64 lines: acb,dba->bca
    over 2 x 1000 x 128 float32 0.08 ms in tiles of 32, 0.12 in 8).

    >>> _tile_rows(4096), _tile_rows(1024), _tile_rows(512), _tile_rows(4000)
    (8, 16, 32, 32)
    """
    tile = policy.POLICY.tile
    if stride == 0:
        return tile
    sets = min(L1_SETS, 4096 // max(math.gcd(stride, 4096), 64))
    return max(ALIASED_BLOCK, min(tile, L1_WAYS * sets // 2))


#: The least bytes of an input read across the output's rows for :func:`_crossing`:
#: a smaller one stays in the second level cache (512 KiB here) however it is walked,
#: and tiles only add loops (ijk,kji->ijk over 32^3 float32, 128 KiB an operand: 31 us
#: in the order by strides, 46 us crossed in tiles; 64^3, 1 MiB: 0.21 -> 0.18 ms).
CROSS_MIN_BYTES = 1 << 18


def _crossing(kernel: Kernel, input_strides: Sequence[Sequence[int]],
              output_strides: Sequence[int]) -> tuple[str, str] | None:
    """(u, v) where a kernel with no reductions crosses strides: v the output's index of
    the smallest stride, u that of the largest input (or of one at least half its
    size) read along v too whose smallest is another index; None where they all run
    along v, or where that input takes less than :data:`CROSS_MIN_BYTES`.

    >>> from einjit.ir import Index, Operand, SUM, product
    >>> k = Kernel("k0", (Operand("a0", "float64", ("i", "j", "k")),),
    ...            Operand("out", "float64", ("k", "j", "i")),
    ...            tuple(Index(n, 256) for n in "kji"), product(1, (("i", "j", "k"),)),
    ...            SUM, "float64")
    >>> _crossing(k, [(65536, 256, 1)], (65536, 256, 1))
    ('k', 'i')
    """
    extent = kernel.extent

    def fastest(indices: Sequence[str], strides: Sequence[int]) -> str | None:
        moving = [(abs(s), n) for n, s in zip(indices, strides) if s and extent[n] >= 2]
        return min(moving)[1] if moving else None

    v = fastest(kernel.output.indices, output_strides)
    sizes = [math.prod(extent[n] for n in op.indices) for op in kernel.inputs]
    for k in sorted(range(len(sizes)), key=lambda k: -sizes[k]):
        if (2 * sizes[k] < max(sizes)
                or sizes[k] * np.dtype(kernel.inputs[k].dtype).itemsize < CROSS_MIN_BYTES):
            break
        u = fastest(kernel.inputs[k].indices, input_strides[k])
        if v in kernel.inputs[k].indices and u is not None and u != v:
            return u, v
    return None


def _expanded(kernel: Kernel) -> tuple[str, ...]:
    """The reduction indices to write out in the body (``Schedule.expand``): all of them,
    for a sum of at most ``policy.POLICY.expand_terms`` terms into an output (sizes
    known).  Summed in
    loops, each output value would run a loop of two to four trips (or a block of
    accumulators one pass per value): written out, the kernel is element-wise, its
    innermost loop an output index that reads and writes in runs (bae,ce,ae->cab's second
    step, 256 x 256 x 17 x 2: a block over b,a summed in two passes; written out, one)."""
    red = kernel.reduction_indices
    extent = kernel.extent
    if (not red or not kernel.output_indices or kernel.reduce.op != "add"
            or any(r in kernel.dynamic for r in red)
            or not 0 < math.prod(extent[r] for r in red) <= policy.POLICY.expand_terms):
        return ()
    return tuple(red)


def serial_at(sched: Schedule, kernel: Kernel, size: Mapping[str, int]) -> bool:
    """Whether a kernel generic in some extents and scheduled on threads runs in one
    chunk at these extents: fewer body evaluations than its ``least_work``."""
    if not sched.least_work or any(ix.name not in size for ix in kernel.indices):
        return False
    return math.prod(size[ix.name] for ix in kernel.indices) < sched.least_work


def _least_work(kernel: Kernel, threaded: bool, least: int) -> int:
    """``Schedule.least_work``: ``least`` for a kernel generic in some extents that runs
    on threads (decided for the extents it was planned for), else 0."""
    return least if threaded and kernel.dynamic else 0


#: The bytes of one vector register of LLVM's default code (AVX2 and AVX-512 cores
#: alike), and the registers the rules of narrow register tiles and rows count (AVX2's:
#: they were measured there; AVX-512's 32 let short rows of 12 float64 values run 6 at
#: once, ``bij,bjk->bik`` over 256 x 40 x 40 by 256 x 40 x 12 twice BLAS's time).
VECTOR_BYTES, VECTOR_REGISTERS = 32, 16
#: The bytes of a wide register tile's vectors and the registers it may fill
#: (:func:`einjit.host.vectors`): the host's widest, which its kernel asks LLVM for
#: (``Schedule.vector_bits``).  AVX-512: 64 bytes and 32 registers, tiles of 4 rows of
#: 4 vectors (:func:`_fitting_shape`); one thread, against AVX2's 2 rows of 4 256-bit
#: vectors: float32 ``...ij,...jk->...ik`` over 16 x 8 x 64 x 64 1.01 -> 0.49 ms,
#: ``bij,bjk->bik`` 64 x 128^3 3.5 -> 1.9 ms, 512 x 256 by 256 x 512 1.6 -> 0.83 ms;
#: float64 (AVX2: no tile fits, 4 rows spilled) 1.9 -> 1.15, 8.3 -> 3.9, 4.3 -> 2.9
#: ms.  2 rows of 8 vectors ran at 0.6-0.85 of AVX2's time, 2 of 16 0.9-1.4x.  Other
#: kernels keep 256-bit vectors: 512-bit ones throughout, their thresholds unchanged,
#: drew (200 random contractions, float32: 1.005 in geometric mean, 0.78-1.51).
_HOST = host.vectors()
WIDE_VECTOR_BYTES, WIDE_REGISTERS = _HOST.wide_bytes, _HOST.registers
#: How many times ``Policy.tile_gemm_fit_max`` multiply-adds a product may have that runs
#: as a tile in wider vectors than LLVM's default (``Schedule.vector_bits``) rather than
#: BLAS: AVX-512's float32 tiles beat OpenBLAS's batch up to 2^21 (two threads,
#: alternating in one process: 256 products of 64 x 128 by 128 x 64 1.93 -> 1.11 ms, of
#: 128 x 64 by 64 x 128 2.89 -> 1.96 ms, 64 of 128^3 2.45 -> 1.99 ms, one of 128^3 53
#: -> 36 us, ``bhqd,bhkd->bhqk`` over 8 x 8 x 128 x 64 1.52 -> 1.10 ms; with a
#: transposed operand, 0.97) and lost from 2^22 (32 of 128 x 256 by 256 x 128 1.32x,
#: 512^3 2.8x).
WIDE_TILE_GEMM_FACTOR = 8
#: The fewest trips of a loop that runs as vector code: LLVM unrolls a shorter one
#: completely into scalar code or, its trip count hidden, vectorises it for more trips
#: than it has (the values a register tile leaves over, 4 float32 of 20: one by one),
#: but for exactly one vector's (4 float64: one vector step).
VECTOR_LOOP_MIN = 16
#: The most rows of a register tile: each needs its own broadcast operand per term.
MAX_TILE_ROWS = 4
#: Multiply-adds of a matrix-vector product of a batch from which its BLAS call (one per
#: matrix) may cost less than loops that gather.
TINY_PRODUCT_TERMS = 512
#: Partial sums the terms of an innermost sum go to in turn where it is not vectorised
#: (``Schedule.interleave``).
INTERLEAVE = 4
def _to_front(loops: list[str], name: str) -> None:
    """Move loop ``name`` to the front of ``loops``: the parallel loop runs outermost."""
    loops.remove(name)
    loops.insert(0, name)


#: The most values of a copy's crossing pair (:func:`_crossing`) that runs innermost
#: untiled, however short its sides; the least bytes of the short side of one that runs
#: innermost in tiles of it whole.
SHORT_PAIR_VALUES, SHORT_PAIR_BYTES = 1024, 32


def _pair_inside(kernel: Kernel, output_strides: Sequence[int], pair: tuple[str, str]) -> bool:
    """Whether a copy's crossing pair of loops (:func:`_crossing`) runs innermost, the
    other loops around it: where both its sides have ``Policy.tile`` values or more (in
    tiles), it has at most ``SHORT_PAIR_VALUES`` (untiled), or one short side of at
    least ``SHORT_PAIR_BYTES`` runs in tiles of it whole (:func:`_short_tile`)."""
    extent = kernel.extent
    short = min(extent[n] for n in pair)
    return (short >= policy.POLICY.tile
            or extent[pair[0]] * extent[pair[1]] <= SHORT_PAIR_VALUES
            or (short * np.dtype(kernel.output.dtype).itemsize >= SHORT_PAIR_BYTES
                and _short_tile(kernel, output_strides, *pair) is not None))


#: The shortest side of a copy's tiles when the other is longer than ``Policy.tile``, and
#: the least output (bytes) such tiles pay for where the output runs along the long side.
SHORT_TILE_MIN, SHORT_TILE_FAR_BYTES = 2, 1 << 22


def _short_tile(kernel: Kernel, output_strides: Sequence[int], u: str, v: str
                ) -> tuple[str, str, int] | None:
    """``(long, short, size)``: tiles of the two innermost output loops ``u`` and ``v``
    where one is shorter than ``Policy.tile`` (at least ``SHORT_TILE_MIN``) and the other
    longer: of ``Policy.tile`` where the output's rows run along the short one; where
    they run along the long one, only where the two span ``SHORT_TILE_FAR_BYTES`` or
    more (what the other array reads across them no longer in the second level cache),
    of as many values as its rows along the short one, often a power of two apart, keep
    in the cache (:func:`_tile_rows`).  Else None.

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> k = Kernel("k0", (Operand("a0", "float32", ("c", "a")),),
    ...            Operand("out", "float32", ("a", "c")), (Index("a", 65536), Index("c", 16)),
    ...            product(1, (("c", "a"),)), SUM, "float32")
    >>> _short_tile(k, (16, 1), "c", "a"), _short_tile(k, (1, 65536), "c", "a")
    (('a', 'c', 32), ('a', 'c', 8))
    """
    extent, tile = kernel.extent, policy.POLICY.tile
    long_, short = (u, v) if extent[u] >= extent[v] else (v, u)
    if not (extent[long_] >= tile and SHORT_TILE_MIN <= extent[short] < tile):
        return None
    along = dict(zip(kernel.output.indices, output_strides))
    itemsize = np.dtype(kernel.output.dtype).itemsize
    if abs(along[short]) == 1:
        return long_, short, tile
    if extent[long_] * extent[short] * itemsize >= SHORT_TILE_FAR_BYTES:
        return long_, short, _tile_rows(abs(along[short]) * itemsize)
    return None


#: Rows of an array whose stride (bytes) is a multiple of this fall into few cache sets.
ALIASED_BYTES = 512
#: How much more such a stride weighs in the loop order: gathered along it, a column's
#: elements evict each other from the cache (``ba,ab,b->`` over 1000 x 512 float32: b
#: innermost gathers a0 2048 bytes apart, 0.61 ms; a innermost, a1 4000 bytes apart,
#: 0.28 ms).
ALIASED_WEIGHT = 4
#: The most accumulators of a block whose loop reads an input at such a stride: for each
#: term of the sums it reads one line of the input per value, all in the same few cache
#: sets, which hold 8 lines each; a longer block evicts them before the next terms, on
#: the same lines, are read (ba,ab->a over 256 x 300 float32: a block of 300 values 0.126
#: ms, of 16 0.088, of 8 0.049; float64 0.163, 0.094, 0.057).
ALIASED_BLOCK = 8


def _aliased_along(kernel: Kernel, input_strides: Sequence[Sequence[int]], v: str) -> bool:
    """Whether a loop over ``v`` reads an input across its rows at a stride whose rows
    fall into few cache sets (see :func:`_aliased`)."""
    return any(v in op.indices and _aliased(strides[op.indices.index(v)], op.dtype)
               for op, strides in zip(kernel.inputs, input_strides))


def _aliased(stride: int, dtype: str) -> bool:
    """Whether rows ``stride`` elements of ``dtype`` apart fall into few cache sets."""
    size = abs(stride) * np.dtype(dtype).itemsize
    return size >= ALIASED_BYTES and size % ALIASED_BYTES == 0


#: How many streamed terms one gathered term costs, for the threads' threshold.
GATHER_COST = 4
#: The same for a term all of whose inputs are read a cache line or more apart.
FAR_GATHER_COST = 16


def _register_tile(kernel: Kernel, outer: Sequence[str], inner: Sequence[str],
                   block: tuple[str, int] | None, parallel: str | None
                   ) -> tuple[tuple[str, int], tuple[str, int], int] | None:
    """``((v, w), (u, m), bits)``: a narrow block of accumulators (fewer than
    ``policy.POLICY.tile_terms``) of output index v runs as a register tile, blocks of w values
    of v (whole vectors) for m values of the output index u at once, m * w >=
    ``tile_terms`` as far as the vector registers hold them; the last ``V mod w`` values
    of v are a block of their own.  u is the innermost output index along which some
    operand read along v does not run, so each of its loads serves m sums.  None when no
    such u exists (see ``Schedule.block_rows``); a wide block is tiled as
    :func:`_wide_tile` says, in vectors of ``WIDE_VECTOR_BYTES`` (``bits``: its
    ``Schedule.vector_bits``, 0 where they are LLVM's default), a narrow one of whole
    such vectors in them (:func:`_narrow_wide_tile`).

    A narrow block's loop LLVM unrolls completely, into scalar code, before it would
    vectorise it; m rows make the loop long enough to be vectorised instead, and keep
    its sums in registers (bij,bjk->bik on 1024 16 x 16 float32 matrices: 1.53 -> 0.35
    ms; two rows of 16 float64 stayed scalar, four are vectorised).  Blocks of whole
    vectors only, in at most ``MAX_TILE_ROWS`` rows: a block of 12 float32 in 6 rows ran
    2.5x slower than one row (ij,jk->ik, 3000 x 100 x 12), in blocks of 8 (8 rows) and 4,
    1.4x slower; 20 float32 in blocks of 16 (4 rows) and 4, 4x faster."""
    pol = policy.POLICY
    if block is None or parallel == block[0] or block[0] in kernel.dynamic:
        return None
    v, size = block
    n = min(size, kernel.extent[v])
    lanes = vector_lanes(kernel)
    if not lanes:
        return None
    if n >= pol.tile_terms:
        tile = _wide_tile(kernel, outer, inner, v)
        return None if tile is None else (*tile, _wide_vectors(kernel).bits)
    wide = _narrow_wide_tile(kernel, outer, (v, n))
    if wide is not None:
        return wide
    for w in range(n // lanes * lanes, 0, -lanes):  # the widest block that fits
        m = -(-pol.tile_terms // w)
        if m * (w // lanes) > VECTOR_REGISTERS or m > MAX_TILE_ROWS:
            continue
        u = _rows(kernel, outer, v, m)
        return None if u is None else ((v, w), (u, m), 0)
    return None


def _narrow_wide_tile(kernel: Kernel, outer: Sequence[str], block: tuple[str, int]
                      ) -> tuple[tuple[str, int], tuple[str, int], int] | None:
    """A narrow block (fewer than ``tile_terms`` values) of whole wide vectors as a
    register tile in them: the block, ``(u, m)`` for the most rows (at most
    ``MAX_TILE_ROWS``) whose sums and broadcasts fit the registers, and the vectors'
    ``Schedule.vector_bits``; None where the host has no wider vectors than LLVM's
    default, or the block is no whole number of them.  AVX-512 against AVX2's rule (2
    rows of 32 float32 in 256-bit vectors, 4 in 512-bit ones; two threads): float32 8
    tile cases 0.54-0.94x (``bij,bjk->bik`` 256 x 32^2 by 256 x 32^2 109 -> 75 us, 512 x
    64 by 64 x 48 40 -> 23 us), float64 7 cases 0.40-0.89x, int32 (then int64 sums) 16
    cases 0.44-1.23x, 0.67 in geometric mean.  A block with values left over (24 or 40
    float32) ran 1.0-3.2x slower than AVX2's tile of its whole width."""
    v, n = block
    lanes, registers, bits = _wide_vectors(kernel)
    if not bits or n < lanes or n % lanes:
        return None
    for m in range(MAX_TILE_ROWS, 0, -1):
        if m * n >= policy.POLICY.tile_terms and _tile_registers(m, n // lanes) <= registers:
            u = _rows(kernel, outer, v, m)
            if u is not None:
                return (v, n), (u, m), bits
    return None


#: The bytes of a column sum's run of accumulators (``Schedule.flat_run``), at least.
FLAT_RUN_BYTES = 512


def _flat_run(kernel: Kernel, input_strides: Sequence[Sequence[int]]) -> int:
    """Values per run when a column sum reads its inputs flat (``Schedule.flat_run``),
    else 0: a sum over one reduction index i of a body of inputs all C-ordered over
    (i, j), or (b, i, j) with b an output index too (a batch of column sums), j the
    last output index, whose rows are short or no whole vectors.

    A block of accumulators of one row's values sums each row as one short loop (and a
    row of 3 or 12 values is no whole vector), where a run of whole rows (``m`` of them,
    at least ``FLAT_RUN_BYTES``, whole vectors) is one long vectorised loop: ``ij->j``
    over 100000 x 3 float32 328 -> 18 us, 60000 x 4 float64 214 -> 29 us, 10000 x 32
    float32 38 -> 14 us (one thread; torch 81, 31, 23 us on two).

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> k = Kernel("k", (Operand("a0", "float32", ("i", "j")),), Operand("out", "float32", ("j",)),
    ...            (Index("j", 3), Index("i", 1000)), product(1, (("i", "j"),)), SUM, "float32")
    >>> _flat_run(k, [(3, 1)]), _flat_run(k, [(1, 1000)])
    (144, 0)
    """
    outs = kernel.output.indices
    if len(outs) not in (1, 2) or len(kernel.reduction_indices) != 1:
        return 0
    j, (i,) = outs[-1], kernel.reduction_indices
    batch = outs[:-1]
    if j in kernel.dynamic or (batch and kernel.dynamic):  # (the rows' count may be
        return 0                                            # read at run time)
    n_j, n_i = kernel.extent[j], kernel.extent[i]
    order = (*batch, i, j)
    strides = c_strides([kernel.extent[x] for x in order])
    if not (kernel.inputs and all(op.indices == order and tuple(st) == strides
                                  for op, st in zip(kernel.inputs, input_strides))
            and all(ld.indices == order for ld in loads(kernel.body))):
        return 0
    lanes = vector_lanes(kernel)
    if not lanes or n_j == 0:  # (no values to sum into: nothing to read in runs)
        return 0
    least = FLAT_RUN_BYTES // np.dtype(kernel.accumulate).itemsize
    unit = math.lcm(n_j, lanes)
    run = unit * -(-least // unit)
    rows = run // n_j
    # each sum ends folding its run's accumulators: a batch of them, each of fewer than
    # 16 runs, ran slower so (bij->bj over 256 x 200 x 8 float32: 21 -> 35 us)
    fewest = 16 * rows if batch else 2 * rows
    return run if run <= 2 * least and rows >= 2 and (n_i >= fewest
                                                       or i in kernel.dynamic) else 0


def _flat_schedule(kernel: Kernel, input_strides: Sequence[Sequence[int]], threads: int
                   ) -> Schedule | None:
    """The schedule of a column sum read flat (see :func:`_flat_run`), or None.  From
    ``parallel_min_work`` terms on, each thread sums a part of the runs into a partial
    output of its own (ij->j over 200000 x 12 float32: 246 us hoisted on two threads, 130
    us in runs on one, 71 us in runs on two), or its own part of a batch; a batch too
    short to split keeps the loops."""
    pol = policy.POLICY
    run = _flat_run(kernel, input_strides)
    if not run:
        return None
    *batch, j = kernel.output.indices
    (i,) = kernel.reduction_indices
    rows = run // kernel.extent[j]
    parallel = None
    if threads > 1 and pol.chunked and kernel.work >= pol.parallel_min_work:
        if batch and kernel.extent[batch[0]] >= 2 * threads:
            parallel = batch[0]  # each thread its own sums of the batch
        elif not batch and kernel.extent[i] >= 2 * threads * rows:
            parallel = i
    if parallel is None and batch and kernel.work >= pol.parallel_min_work:
        return None
    return Schedule(kernel.output.indices + kernel.reduction_indices, parallel,
                    threads=threads if parallel else 0, flat_run=run,
                    least_work=_least_work(kernel, bool(parallel), pol.parallel_min_work))


#: A batch of at least this many products, each a sum of at most ``SHORT_SUM_TERMS``
#: terms, runs as AVX-512 register tiles of float32 whatever the products' size (see
#: :func:`_short_sums_batch`).
SHORT_SUM_BATCH, SHORT_SUM_TERMS = 64, 64


def _short_sums_batch(kernel: Kernel, layout: GemmLayout, calls: int) -> bool:
    """Whether a batch of float32 products of short sums runs as wide register tiles
    (where the host has wider vectors than LLVM's default) however large each product
    is: OpenBLAS's call per product packs both operands for
    a few terms each, and synchronises its threads, where the tile reads them in place
    and the batch splits over einjit's threads.  Two threads, ``bhqd,bhkd->bhqk`` over
    8 x 8 x 256 x 64 (64 products of 2^22 multiply-adds): 3.84 -> 1.75-1.85 ms alone in
    a process, 3.94 -> 3.74 ms alternating with BLAS calls (whose idle thread spins
    beside einjit's); 64 products of 256 x 64 by 64 x 256: 3.74 -> 1.64 ms, 3.84 -> 3.48
    ms.  Fewer products lost beside BLAS calls (16 of 512 x 64 by 64 x 512: 1.53 ms
    against 2.96 alone, 3.97 against 3.04 beside them; one of 4096 x 64 by 64 x 1024:
    2.2x), as did sums of 128 terms (1.4-1.65x) and float64's (1.36x)."""
    return (kernel.accumulate == "float32" and calls >= SHORT_SUM_BATCH
            and math.prod(kernel.extent[g] for g in layout.k) <= SHORT_SUM_TERMS)


def vector_lanes(kernel: Kernel) -> int:
    """Values of the kernel's accumulator dtype per vector register of LLVM's default code
    (0: wider)."""
    return VECTOR_BYTES // np.dtype(kernel.accumulate).itemsize


class _Vectors(NamedTuple):
    """A register tile's vectors: values of the kernel's accumulator dtype per vector,
    the registers the tile may fill, and its ``Schedule.vector_bits`` (0: LLVM's
    default vectors)."""

    lanes: int
    registers: int
    bits: int


def _wide_vectors(kernel: Kernel) -> _Vectors:
    """The vectors of a wide register tile (and of a narrow one of whole such vectors,
    :func:`_narrow_wide_tile`): ``WIDE_VECTOR_BYTES`` and
    ``WIDE_REGISTERS`` but for complex values, pairs LLVM vectorises poorly, which keep
    LLVM's default (AVX-512's tiles of them took 1.9-2.6x BLAS's time on small
    products, which AVX2's left to BLAS)."""
    size = np.dtype(kernel.accumulate).itemsize
    if kernel.accumulate[0] == "c" or WIDE_VECTOR_BYTES <= VECTOR_BYTES:
        return _Vectors(VECTOR_BYTES // size, VECTOR_REGISTERS, 0)
    return _Vectors(WIDE_VECTOR_BYTES // size, WIDE_REGISTERS, 8 * WIDE_VECTOR_BYTES)


def _loaded(expr: Expr) -> bool:
    """Whether ``expr`` is an input's element as it is (or cast)."""
    return isinstance(expr.value if isinstance(expr, Cast) else expr, Load)


#: The fewest sums of a row tile's loop that LLVM vectorises rather than unrolls into
#: scalar code: the terms of a product, of a single value (cheaper, unrolled further).
ROW_TILE_TERMS, ROW_TILE_SUM_TERMS = 64, 128


def _vector_rows(kernel: Kernel, outer: Sequence[str], v: str, lanes: int
                 ) -> tuple[str, int] | None:
    """``(u, m)``: a short output index v, innermost inside the reductions, whole
    vectors of values (at most ``ROW_TILE_SUM_TERMS // 4``), summed for m values of
    another output index u at once (``Schedule.block_rows`` over all of v): the block's
    loop is then long enough for LLVM to vectorise it, where the values of one row,
    scalar accumulators or a block, are summed one by one (bcd->bd, 512 x 500 x 8
    float32, one thread: 0.28 ms one row, 0.093 ms sixteen).  Bodies that are a load
    or a product only; m as the vector registers hold the sums (float64 sums of 8
    values would need 16 rows, 32 registers of 32 bytes: none); sums of
    ``policy.POLICY.wide_tile_terms`` terms or more (c,cbab->ca over 100 x 2 x 32 x 2, sums of
    two terms: 4.6 -> 5.0 us in rows)."""
    n = kernel.extent[v]
    factors = multiply_add(kernel.body)
    if _loaded(kernel.body):
        terms = ROW_TILE_SUM_TERMS
    elif factors is not None and all(_loaded(f) for f in factors):
        terms = ROW_TILE_TERMS
    else:
        return None
    if (not lanes or v in kernel.dynamic or n % lanes or n > ROW_TILE_SUM_TERMS // 4
            or kernel.reduce.op != "add"
            or math.prod(kernel.extent[r] for r in kernel.reduction_indices)
            < policy.POLICY.wide_tile_terms):
        return None
    m = -(-terms // n)
    if m * (n // lanes) > VECTOR_REGISTERS:
        return None
    u = _rows(kernel, outer, v, m, shared=False)
    return None if u is None else (u, m)


def _rows(kernel: Kernel, outer: Sequence[str], v: str, m: int, shared: bool = True
          ) -> str | None:
    """The innermost output index u of at least m values, sizes known, along which (with
    ``shared``) some input read along v does not run (a tile's rows: that input's loads
    serve m sums)."""
    for u in reversed(outer):
        if (u != v and u not in kernel.dynamic and kernel.extent[u] >= m
                and (not shared or _shared(kernel, u, v))):
            return u
    return None


def _fits_registers(kernel: Kernel, sched: Schedule) -> bool:
    """Whether ``sched`` runs a register tile, wide or narrow, whose sums and broadcast
    factors fit the vector registers (:func:`_tile_registers`).  float32 tiles of 2 x
    48, 3 x 24 and 4 x 16 values do (the 2 x 48 tile's loop: 12 accumulators, 2
    broadcasts, one register for the loaded vectors, no spill); float64's (at least 16
    vectors of sums) and float32's 8 rows of 8 values do not.  Only where the tile's
    index is whole vectors: its last few values, summed one by one, cost more than the
    tile saves (100 x 50 by 50 x 50 float32: BLAS 13 us, tiles of 48 and 2 scalar
    columns 18 us)."""
    if sched.block is None or sched.block_rows is None:
        return False
    lanes, registers = (_wide_vectors(kernel)[:2] if sched.vector_bits
                        else (vector_lanes(kernel), VECTOR_REGISTERS))
    if not lanes or kernel.extent[sched.block[0]] % lanes:
        return False
    vectors = -(-sched.block[1] // lanes)
    return _tile_registers(sched.block_rows[1], vectors) <= registers


def _tile_registers(m: int, v: int) -> int:
    """Vector registers a register tile of m rows of v vectors keeps busy in its loop: its
    m * v sums, a broadcast factor per row and one for the vectors each step loads
    (LLVM loads each into the same register just before its multiply-adds)."""
    return m * v + m + 1


def _fitting_shape(lanes: int, registers: int) -> tuple[int, int] | None:
    """``(m, w)``: a wide register tile's m rows of w values, ``lanes`` to a vector, that
    fit ``registers`` (:func:`_tile_registers`), together
    ``tile_terms`` values or more (else LLVM unrolls the row loop completely before it
    would vectorise it): powers of two of rows (at most ``MAX_TILE_ROWS``) and of vectors
    a row (whose blocks divide the power-of-two extents), the most multiply-adds per
    value loaded (m x v of them for m broadcasts and v vectors), then the fewest
    registers; None where none fits (or no vectors).  AVX2 (16 registers): 2 rows of 4
    vectors; AVX-512 (32): 4 rows of 4.

    >>> [_fitting_shape(lanes, 16) for lanes in (16, 8, 4, 0)]
    [(2, 64), (2, 32), None, None]
    >>> [_fitting_shape(lanes, 32) for lanes in (16, 8, 4)]
    [(4, 64), (4, 32), (4, 16)]
    """
    if not lanes:
        return None
    terms = policy.POLICY.tile_terms
    fits = [(m * v / (m + v), -_tile_registers(m, v), m, v)
            for m in (2, 4, 8, 16) if m <= MAX_TILE_ROWS
            for v in (1, 2, 4, 8, 16)
            if m * v * lanes >= terms and _tile_registers(m, v) <= registers]
    if not fits:
        return None
    *_, m, v = max(fits)
    return m, v * lanes


def _wide_tile_shape(lanes: int, registers: int) -> tuple[int, int]:
    """``(m, w)``: the rows and the values per row of a wide block's register tile whose
    values are ``lanes`` to a vector register: :func:`_fitting_shape`.  AVX-512: 4 rows
    of 64 float32 or 32 float64 values (16 accumulators of 512 bits, see
    ``WIDE_VECTOR_BYTES``).  float32 on AVX2:
    2 rows of 32 values (8 accumulators); the tile of 4 rows of 32 it replaces held all
    16 registers as accumulators and spilled them every step (bij,bjk->bik, one thread,
    products as loops: 128 x 64^3 28-30 -> 72 GFLOP/s, 16 x 128^3 29-31 -> 80-86, OpenBLAS
    35-81).
    Where no such tile exists (float64, int64: 4 rows of 16 are the fewest that LLVM
    vectorises, 3 rows of 16 or 4 of 12 ran as scalar code at 4-5 GFLOP/s), 4 rows of
    as many vectors as the registers hold: spilled, but vectorised (int64 ik,kj->ij
    512^3: 15.5 ms with 512 accumulators in memory, 6.9 ms in tiles of 4 x 16)."""
    return (_fitting_shape(lanes, registers)
            or (MAX_TILE_ROWS, lanes * (registers // MAX_TILE_ROWS)))


def _wide_tile(kernel: Kernel, outer: Sequence[str], inner: Sequence[str], v: str
               ) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """A wide block's register tile (:func:`_wide_tile_shape`): m rows of u, each w
    values of v.  Only where it pays
    (sq = (x - y) ** 2 over ab,bc->ac, 256 x K x 256, in tiles against the block):

    - the reductions have ``policy.POLICY.wide_tile_terms`` terms or more: each tile is set,
      stored and (``Schedule.pack``) its panel filled for them (K = 8: 1.3-1.5x
      slower; K = 16: level; K = 64: 0.66-0.71 of the block's time);
    - the blocks of w values cover v but for at most a sixteenth: the last ``V mod w``
      values are a short tile that LLVM does not vectorise (125 values, K = 64:
      float64 0.94 of the block's time, where 256 values take 0.71);
    - no input is read along both u and v: the tile would read it in m short runs,
      where the block reads one long one (cda,da->ac over 125 x 100 x 128 float32:
      0.085 -> 0.106 ms in tiles);
    - the block of w values each input shared by the rows reads (along the
      reductions) takes at most ``policy.POLICY.panel_bytes``: read again for each m rows,
      it stays in cache (a,cdb->ba over 100 x 8 x 512 x 256 float64, a panel of 512
      KiB: 0.069 -> 0.078 ms in tiles)."""
    pol = policy.POLICY
    extent = kernel.extent
    wide = _wide_vectors(kernel)
    m, w = _wide_tile_shape(wide.lanes, wide.registers)
    n = extent[v]
    if (math.prod(extent[r] for r in inner) < pol.wide_tile_terms
            or (n % w and n < 16 * w)):
        return None
    u = _rows(kernel, outer, v, m)
    if u is None or any(u in op.indices and v in op.indices for op in kernel.inputs):
        return None
    if any(panel_bytes(kernel, k, inner, w) > pol.panel_bytes
           for k in _shared(kernel, u, v)):
        return None
    return (v, w), (u, m)


def _packed(kernel: Kernel, block: tuple[str, int], rows: tuple[str, int],
            inner: Sequence[str]) -> tuple[int, ...]:
    """The inputs a register tile over ``block`` (v, w) and ``rows`` (u, m) reads from
    panels (``Schedule.pack``): those read along v but not u, when u has
    ``policy.POLICY.pack_rows`` values or more (each panel serves them all), the block is wide
    (a narrow one is the whole of v: its rows are read once per value of u either
    way) and each panel, w values for each of the input's reduction indices, takes at
    most ``policy.POLICY.pack_bytes``.

    The tile reads such an input along the reductions, one short row of w values per
    step: rows a multiple of 4 KiB apart fall into one cache set and evict each other,
    and an input laid out along the reductions is read across its rows, w loads per
    step.  The panel is one run of memory (sq = (x - y) ** 2 over id,dj->ij, 2048 x
    2048 x 64 float64: 10.5 -> 7.7 ms)."""
    pol = policy.POLICY
    (v, w), (u, _) = block, rows
    extent = kernel.extent
    if kernel.dynamic or extent[u] < pol.pack_rows or extent[v] < pol.tile_terms:
        return ()
    found = _shared(kernel, u, v)
    if any(panel_bytes(kernel, k, inner, w) > pol.pack_bytes for k in found):
        return ()
    return found


def _shared(kernel: Kernel, u: str, v: str) -> tuple[int, ...]:
    """The inputs a tile's rows (u) share: read along its block (v) but not along u."""
    return tuple(k for k, op in enumerate(kernel.inputs)
                 if v in op.indices and u not in op.indices)


def panel_elements(kernel: Kernel, k: int, inner: Sequence[str], w: int) -> int:
    """The values of input k a block of w values of a tile reads: w for each of its
    reduction indices' values (its panel, ``Schedule.pack``)."""
    return w * math.prod(kernel.extent[i] for i in kernel.inputs[k].indices if i in inner)


def panel_bytes(kernel: Kernel, k: int, inner: Sequence[str], w: int) -> int:
    return panel_elements(kernel, k, inner, w) * np.dtype(kernel.inputs[k].dtype).itemsize


def _fused(kernel: Kernel) -> bool:
    """Whether the kernel is a float sum of products, whose terms may be accumulated as
    fused multiply-adds (each rounded once instead of twice), ``Policy.contract``
    permitting.  Its callers fuse reassociated sums only: an ``llvm.fmuladd`` without
    ``reassoc`` in a block of accumulators kept LLVM from vectorising the block (16 x 16
    float32 matrices: 3 against 36 GFLOP/s with ``acc += p * q``)."""
    return (policy.POLICY.contract and kernel.reduce.op == "add" and kernel.accumulate[0] == "f"
            and multiply_add(kernel.body) is not None)


def _hoisted(kernel: Kernel, outer: Sequence[str], inner: Sequence[str],
             inside: Callable[[str, str], bool], cost: dict[str, int], deep: bool,
             parallel: str | None) -> tuple[list[str], list[str]]:
    """The reduction loops to run outside output loops (``Schedule.hoist``), and the
    output loops to run around them (``Schedule.around``): with every loop in memory
    order (strides summed over the arrays, largest first), the output loops before the
    first reduction run around, the reductions that follow it up to the next output
    loop are hoisted; in a sum over an input of at least ``policy.POLICY.hoist_min_bytes``
    into blocks of the output (its values inside the hoisted loops) of at most
    ``policy.POLICY.hoist_max_bytes``.

    Summed with the output loops outside, such a loop makes each output value walk the
    input in short runs far apart (``abc->b``: a run of c per a, a's stride away;
    ``bdac,a->ba``: 17 runs of c, d's stride apart, per value of a), which the hardware
    prefetches badly; placed by its strides, the nest reads the input in memory order,
    and the block of the output, small, stays in cache across the passes.  Only sums
    kept in the output's dtype (each pass adds into it; float sums only when they may be
    reassociated); in a kernel generic in some extents, the block bounded by the
    largest sizes of their classes.  On several threads the outermost of the hoisted
    loops or of those around them is split (see ``partial_spread``).  None when the
    output index with the smallest strides would run ``inside`` (the scheduler's test)
    the innermost reduction left, or when no reduction is left inside while output
    loops run around (a block of accumulators serves then)."""
    pol = policy.POLICY
    if (not outer or not inner or deep or kernel.reduce.op != "add"
            or kernel.accumulate != kernel.output.dtype
            or kernel.accumulate[0] not in "fciu"
            or (kernel.accumulate[0] in "fc" and not pol.reassociate)
            or (parallel is not None and not pol.chunked)):
        return [], []
    extent = kernel.extent
    largest = max(np.dtype(op.dtype).itemsize * math.prod(extent[i] for i in op.indices)
                  for op in kernel.inputs)
    if largest < pol.hoist_min_bytes:
        return [], []
    # The loops in memory order (strides largest first; an output loop first on a tie):
    # the output loops before the first reduction run around, the reductions next run
    # hoisted, if an output loop follows them.
    merged = sorted(outer + [r for r in inner if extent[r] >= 2], key=lambda n: -cost[n])
    first = next((k for k, n in enumerate(merged) if n in inner), len(merged))
    after = next((k for k in range(first, len(merged)) if merged[k] in outer), len(merged))
    around, hoist = merged[:first], merged[first:after]
    if not hoist or after == len(merged):
        return [], []
    inside_outputs = [o for o in outer if o not in around]
    rest = [r for r in inner if r not in hoist]
    if around and not rest:
        # Output loops innermost, inside every reduction: a block of accumulators (a
        # register tile) reads the inputs in runs along them already, each load of an
        # input not read along the others serving several values (cdea,deba->abd's
        # second step, 256 x 2 x 128 x 17, float64: 0.66-0.88 ms, 1.2 hoisted inside d)
        return [], []
    # (a generic kernel's extents at their class's largest)
    block = math.prod(ix.most for ix in kernel.indices if ix.name in inside_outputs)
    if np.dtype(kernel.accumulate).itemsize * block > pol.hoist_max_bytes:
        return [], []
    if rest and inside(outer[-1], rest[-1]):
        # The reductions left inside would run innermost across the memory an output
        # loop walks along (cea,cde->da: e, a's stride apart): a block of that output
        # index, the reductions outside it, reads the inputs in runs instead.
        return [], []
    return around, hoist


def _balanced(wide: Sequence[str], loops: Sequence[str], extent: dict[str, int],
              threads: int) -> str:
    """The loop to run in parallel among ``wide``, the loops of ``loops`` (outermost
    first) with at least two values: the outermost whose values the threads share
    evenly, give or take an eighth, else the one they share the most evenly.  Not one
    of the two innermost loops (one, of two loops), unless no other is wide: moving it
    outward would break the contiguous runs and tiles the order was chosen for.

    Three values on two threads are two on one thread and one on the other: the
    loop takes 2/3 of its serial time, where an even split takes half.

    >>> _balanced(["b", "c", "d", "a"], ["b", "c", "d", "a"],
    ...           {"b": 3, "c": 32, "d": 125, "a": 128}, 2)
    'c'
    """
    kept = set(loops[-2:] if len(loops) > 2 else loops[1:])
    candidates = [name for name in wide if name not in kept] or list(wide[:1])

    def slack(name: str) -> float:  # the busiest thread's share over an even share, less 1
        n = extent[name]
        return -(-n // threads) * threads / n - 1

    even = [name for name in candidates if slack(name) <= 0.125]
    return even[0] if even else min(candidates, key=slack)


def _block_size(n: int, threads: int) -> int:
    """Accumulators per block of an output loop of ``n`` values: at most
    ``policy.POLICY.block``, in a number of blocks that the threads share evenly when the
    blocks are the parallel loop (32 values on 2 threads: 2 blocks of 16, not one of
    32 on one thread), rounded up to a multiple of 8 (whole vectors)."""
    pol = policy.POLICY
    if threads <= 1 or n < 8 * threads:
        return min(pol.block, n)
    blocks = -(-n // pol.block)
    blocks = -(-blocks // threads) * threads  # a multiple of the threads
    per = -(-n // blocks)
    return min(pol.block, -(-per // 8) * 8)


def multiply_add(expr: Expr) -> tuple[Expr, Expr] | None:
    """``(p, q)`` when ``expr`` is the product ``p * q`` (a square ``t ** 2`` is
    ``t * t``; a product of more factors groups all but the last), else ``None``."""
    if isinstance(expr, Call) and expr.op == "mul" and len(expr.args) >= 2:
        first = expr.args[0] if len(expr.args) == 2 else Call("mul", expr.args[:-1])
        return first, expr.args[-1]
    if (isinstance(expr, Call) and expr.op == "pow" and isinstance(expr.args[1], Const)
            and expr.args[1].value == 2):
        return expr.args[0], expr.args[0]
    return None


def innermost(kernel: Kernel, sched: Schedule) -> str | None:
    """The index of a schedule's innermost loop (None for a BLAS call or no loops)."""
    if sched.gemm or not sched.order:
        return None
    if sched.block is not None:
        return sched.block[0]
    return sched.order[-1]


def copies(kernel: Kernel, sched: Schedule, input_strides: Sequence[Sequence[int]],
           reuse: int | None = None) -> dict[int, tuple[str, ...]]:
    """Inputs the kernel should read from a C-ordered copy, by position: the copy's
    labels, those of the input in its memory order with the innermost loop's last.

    An input whose innermost-loop label has a stride other than 0 or 1 is gathered
    there: a diagonal view (``acc``), a slice, an operand read across its rows; its
    loads do not vectorise.  Read ``Policy.copy_reuse`` times per element or more, a
    copy along that loop costs one pass and makes every later read contiguous.
    ``reuse`` (default: the policy's, for kernels of ``Policy.copy_min_work`` or more)
    1 lists every input the kernel gathers.

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> k = Kernel("k0", (Operand("a0", "float64", ("a", "c")),
    ...                   Operand("a1", "float64", ("b", "a", "c"))),
    ...            Operand("out", "float64", ("b", "c")),
    ...            (Index("b", 300), Index("c", 17), Index("a", 256)),
    ...            product(2, (("a", "c"), ("b", "a", "c"))), SUM, "float64")
    >>> strides = ((289, 18), (4352, 17, 1))   # a0: a diagonal view of a 256x17x17 array
    >>> copies(k, schedule(k, strides, (17, 1), threads=1), strides)
    {0: ('a', 'c')}
    """
    v = innermost(kernel, sched)
    if reuse is None:
        if kernel.work < policy.POLICY.copy_min_work:
            return {}
        reuse = policy.POLICY.copy_reuse
    if v is None:
        return {}
    extent = kernel.extent
    found = {}
    for k in _gathered(kernel, input_strides, v):
        if k in sched.pack:  # copied into panels by the kernel itself
            continue
        op, strides = kernel.inputs[k], input_strides[k]
        if kernel.work < reuse * math.prod(extent[i] for i in op.indices):
            continue
        order = sorted((i for i in op.indices if i != v),
                       key=lambda i: -abs(strides[op.indices.index(i)]))
        found[k] = tuple(order) + (v,)
    return found


def _gathered(kernel: Kernel, input_strides: Sequence[Sequence[int]], v: str | None
              ) -> list[int]:
    """The positions of the inputs a loop over ``v`` gathers: its stride in them is
    other than 0 or 1 (no vector loads, a cache line per element)."""
    return [k for k, (op, strides) in enumerate(zip(kernel.inputs, input_strides))
            if v in op.indices and abs(strides[op.indices.index(v)]) not in (0, 1)]


def _far_gathered(kernel: Kernel, input_strides: Sequence[Sequence[int]], v: str,
                  every: bool = False) -> bool:
    """Whether a loop over ``v`` reads an input (``every`` input it reads) a cache line
    (64 bytes) or more apart."""
    test = all if every else any
    return test(abs(strides[op.indices.index(v)]) * np.dtype(op.dtype).itemsize >= 64
                for op, strides in zip(kernel.inputs, input_strides) if v in op.indices)


def partial_spread(kernel: Kernel, sched: Schedule) -> int:
    """Slots per chunk in the array of partials of a reduction split over threads: 1
    for a full reduction (each chunk writes its one partial once), more for a split
    hoisted reduction, whose chunks update their partial outputs throughout: chunk c
    then uses slot ``c * spread``, at least 64 bytes (a cache line) from the next
    chunk's, so no two threads write the same line; the unused slots hold zeros."""
    if not (sched.threads and sched.parallel in sched.hoist):
        return 1
    size = np.dtype(kernel.accumulate).itemsize * math.prod(kernel.extent[i]
                                                            for i in kernel.output_indices)
    return 1 + -(-64 // size)
