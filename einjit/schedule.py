"""Scheduling: choose each kernel's loop order and parallel loop, then lower it to a loop nest.

Two passes, both pure functions:

* :func:`schedule` decides a :class:`~einjit.ir.Schedule` from the kernel and the strides
  of its arrays: output loops outside, reduction loops inside (so every output element is
  accumulated in a local and written once); within each group, loops ordered by falling
  stride so the innermost loop walks the smallest strides; when an output index has
  smaller strides than every reduction index (``ij,jk->ik`` in C order), that index is
  blocked: a local array of accumulators lets it run innermost, inside the reductions;
  the outermost output loop in parallel when the kernel has enough work to pay for
  threads (or, for a full reduction, the outer reduction loop, with partial sums):
  chunks on einjit's threads (:mod:`einjit.threads`), or Numba's ``prange``.
* :func:`lower` turns a kernel and its schedule into a :class:`~einjit.ir.LoopNest`.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product
>>> k = Kernel("k0", (Operand("a0", "float64", ("i", "j")), Operand("a1", "float64", ("j", "k"))),
...            Operand("out", "float64", ("i", "k")), (Index("i", 2), Index("j", 3), Index("k", 4)),
...            product(2, (("i", "j"), ("j", "k"))), SUM, "float64")
>>> s = schedule(k, ((3, 1), (1, 3)), (4, 1))   # b stored column-major: j is contiguous
>>> print(s)
order ikj, serial
>>> print(lower(k, s))
k0(a0[i,j], a1[j,k]) -> out[i,k]   [order ikj, serial]
    for i in range(2):
        for k in range(4):
            acc = float64(0)
            for j in range(3):
                acc = add(acc, a0[i,j] * a1[j,k])
            out[i,k] = float64(acc)
>>> print(schedule(k, ((3, 1), (4, 1)), (4, 1)))  # row-major b: k innermost, unrolled
order ikj, serial, 4 values of k at once in registers
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

import itertools
import math

import numpy as np

from .ir import (CHUNK, SLOT, Accumulate, Alloc, Call, Cast, Const, Dim, Expr, Gemm, GemmLayout,
                 Index, Init, Kernel, Let, Load, Loop, LoopNest, Operand, Schedule, Stmt, Store,
                 Update, Var, loads, map_loads)
from .views import c_strides

__all__ = ["Policy", "POLICY", "schedule", "lower", "partials", "partial_spread", "copies",
           "innermost", "gemm_roles", "gemm_worthy", "gemm_cost", "runs_as_blas", "thread_count"]

#: The block-offset loop variable.  Every name a lowering invents has two or more
#: characters (``acc``, ``part``, ``vb``, ``v0``, ``rb``, ``fo``...), so it can never be an
#: einsum label (one letter, or one Greek letter for a broadcast dimension).
_T = "tb"


@dataclass(frozen=True)
class Policy:
    """The scheduler's thresholds (part of every compiled plan's cache key).

    ``parallel_min_work``: body evaluations below which a kernel stays serial.  A
    hand-over to einjit's chunk workers costs 4-10 us while they spin, but a call
    between other work (another library's calls, as in a benchmark, with the caches
    cold) finds them asleep, and waking one costs tens of microseconds, more on a busy
    host: of 46 random kernels of 2**18 to 2**20 terms timed that way, every one ran
    faster serially (geometric mean 0.67 of the two-thread time, 0.41 to 0.94); called
    back to back, 0.83 (four slower, up to 1.42 in float64).
    ``gemm_min_work``: multiply-adds from which a GEMM-shaped kernel runs as a BLAS call
    rather than loops.  ``block``: accumulators in a blocked
    output loop.  ``chunk``: terms per partial sum in long float reductions.
    ``tile``: the side of the tiles an element-wise kernel with a transposed operand
    walks.  ``unroll``: output values computed at once in registers (1: none).
    ``reassociate``: float sums may be added in any order (vectorised reductions).
    ``chunked``: a parallel output loop runs in chunks on einjit's threads (a serial
    kernel compiles in a fraction of a ``prange`` kernel's time), else as a ``prange``.
    ``unroll_max_bytes``: the most bytes of inputs read across their rows along the
    unrolled index: beyond, as many rows at once stream from memory, and one value at a
    time reads faster (``bij,bj->bi`` over 64 x 512 x 512 float32: 3.0 -> 1.5 ms; where
    the rows are in cache, ``bij,bj->bi`` over 2 x 256 x 256, unrolling gains 20 %).
    ``band``, ``band_bytes``: with unrolled output values, the other output index runs
    in bands of ``band`` values when the rows read again for each of its values exceed
    ``band_bytes`` (they then stay in cache across the band); ``rows`` of its values at
    once when the body is a product (a register tile).  ``contract``: a float sum of
    products may use fused multiply-adds (one rounding per term instead of two).
    ``hoist_min_bytes``, ``hoist_max_bytes``: the smallest input and the largest output
    of a sum whose outermost reduction loops run outside the output loops
    (``Schedule.hoist``; from 64 KiB of input: bac->ac 100 x 64 x 8 float32 0.098 ->
    0.043 ms hoisted, with 1 MiB as the least it was not).  ``stack_bytes``: the largest local array of accumulators kept
    on the kernel's stack rather than the heap.  ``copy_reuse``, ``copy_min_work``: an
    input read at least ``copy_reuse`` times per element (on average) by a kernel of at
    least ``copy_min_work`` body evaluations, across its memory in the innermost loop,
    is read from a copy laid out along that loop (see :func:`copies`).
    ``tile_terms``: the accumulators of a register tile, rows of a narrow block
    (``Schedule.block_rows``; 0: none).  ``tile_gemm_max``: multiply-adds per matrix up
    to which a GEMM-shaped kernel runs as such a tile rather than BLAS.
    ``gemv_min_work``: multiply-adds below which a matrix-vector product or dot runs as
    loops (when they read every input along its runs) rather than a BLAS call;
    ``gemv_max_calls``: the most BLAS calls (one per product) a batch of them may take;
    a larger batch runs as loops, on the same condition.
    ``wide_tile_terms``, ``panel_bytes``: a wide block of accumulators runs as register
    tiles when its sums have at least ``wide_tile_terms`` terms and the block of each
    input the tile's rows share takes at most ``panel_bytes`` (see :func:`_wide_tile`).
    ``pack_rows``, ``pack_bytes``: such a tile over at least ``pack_rows`` values of its
    rows' index reads the inputs it shares across them from a panel copied per block
    (``Schedule.pack``), when that panel takes at most ``pack_bytes``.
    ``gemm_split_max``: the largest matrix product (multiply-adds) whose batch is split
    over threads.  ``max_loop_depth``: deepest nest rendered as nested loops; deeper
    groups are fused (Python allows at most 20 nested blocks in one function).  Tests
    swap the policy to drive every strategy with small shapes.
    """

    parallel_min_work: int = 1 << 20
    gemm_min_work: int = 1 << 14
    gemv_min_work: int = 1 << 16
    gemv_max_calls: int = 1
    block: int = 512
    max_loop_depth: int = 12
    chunk: int = 1024
    tile: int = 32
    unroll: int = 4
    unroll_max_bytes: int = 1 << 21
    gemm_split_max: int = 1 << 18
    reassociate: bool = True
    chunked: bool = True
    band: int = 16
    band_bytes: int = 1 << 17
    stack_bytes: int = 1 << 15
    hoist_min_bytes: int = 1 << 16
    hoist_max_bytes: int = 1 << 16
    copy_reuse: int = 8
    copy_min_work: int = 1 << 15
    tile_terms: int = 64
    tile_gemm_max: int = 1 << 16
    rows: int = 2
    contract: bool = True
    wide_tile_terms: int = 32
    panel_bytes: int = 1 << 18
    pack_rows: int = 64
    pack_bytes: int = 1 << 15


POLICY = Policy()
_BLAS_DTYPES = frozenset(("float32", "float64", "complex64", "complex128"))


def gemm_roles(kernel: Kernel, casts: bool = False) -> tuple[tuple[str, ...], ...] | None:
    """``(batch, m, n, k)`` index groups when ``kernel`` is a matrix product, else None.

    A kernel is GEMM-shaped when it has two operands, its body is their plain product
    summed (with ``casts``, an operand may be cast to the accumulator's dtype first),
    and every index is in both operands and the output (batch), in the first operand
    and the output (m), in the second and the output (n), or in both operands only (k).
    """
    if (len(kernel.inputs) != 2 or not isinstance(kernel.body, Call) or kernel.body.op != "mul"
            or kernel.reduce.op != "add"):
        return None
    if not all(isinstance(a, Load) or casts and isinstance(a, Cast) and isinstance(a.value, Load)
               and a.dtype == kernel.accumulate for a in kernel.body.args):
        return None
    a, b = (set(op.indices) for op in kernel.inputs)
    out = set(kernel.output.indices)
    roles: tuple[list[str], ...] = ([], [], [], [])
    for ix in kernel.indices:
        where = (ix.name in a, ix.name in b, ix.name in out)
        role = {(True, True, True): 0, (True, False, True): 1, (False, True, True): 2,
                (True, True, False): 3}.get(where)
        if role is None:
            return None
        roles[role].append(ix.name)
    return tuple(tuple(r) for r in roles)


def gemm_worthy(kernel: Kernel) -> bool:
    """A true matrix-matrix product (m, n and k extents of 8 or more) that BLAS runs
    far faster than a loop nest could: the planner keeps such steps apart."""
    if not _use_gemm(kernel):
        return False
    roles = gemm_roles(kernel, casts=True)
    assert roles is not None
    extent = kernel.extent
    sizes = []
    for group in roles[1:]:
        n = 1
        for name in group:
            n *= extent[name]
        sizes.append(n)
    return min(sizes) >= 8


def runs_as_blas(kernel: Kernel) -> bool:
    """Whether :func:`schedule` runs a kernel over C-ordered arrays as BLAS calls."""
    if not _use_gemm(kernel):
        return False
    return schedule(kernel, *_c_ordered(kernel)).gemm is not None


def _use_gemm(kernel: Kernel) -> bool:
    if kernel.accumulate not in _BLAS_DTYPES or kernel.work < POLICY.gemm_min_work:
        return False
    # An input of another dtype is cast as BLAS copies it (float32 by float64, as numpy's
    # optimized path does): only where no value changes.
    if kernel.output.dtype != kernel.accumulate or not all(
            np.can_cast(op.dtype, kernel.accumulate, "safe") for op in kernel.inputs):
        return False
    roles = gemm_roles(kernel, casts=True)
    if roles is None:
        return False
    extent = kernel.extent
    batch, m, n, k = (_product(extent[name] for name in group) for group in roles)
    # A batch of dot products (ij,ij->i) is one BLAS call per row: loops stream it.
    return k >= 8 and (m * n > 1 or batch == 1)


def gemm_cost(kernel: Kernel) -> float | None:
    """Seconds a matrix-matrix product (see :func:`gemm_worthy`) over C-ordered arrays
    takes as a BLAS call by the cost model of :func:`_gemm_layout`, its copies included;
    None for any other kernel (the planner weighs intermediates' layouts with it)."""
    if not gemm_worthy(kernel):
        return None
    return _gemm_layout(kernel, *_c_ordered(kernel), 1)[1]


def _c_ordered(kernel: Kernel) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """The strides of a kernel's inputs and output where all are C-ordered arrays."""
    extent = kernel.extent

    def strides(op: Operand) -> tuple[int, ...]:
        return c_strides([extent[name] for name in op.indices])

    return [strides(op) for op in kernel.inputs], strides(kernel.output)


def _product(values: Iterable[int]) -> int:
    result = 1
    for v in values:
        result *= v
    return result


# The GEMM cost model, in seconds: an operand's copy costs what ``_copy_s`` says, the
# product's copy into a result BLAS cannot write moves bytes at _COPY_BPS, a BLAS call
# runs at the dtype's rate times an efficiency that falls off for thin matrices, and each
# matrix of a batch costs a call.
_COPY_BPS = 4e9
# A copy in the input's own memory order (a slice's rows, a Fortran-ordered or reversed
# array) streams: 1024 x 1024 float32 sliced [::2, ::2] from a Fortran-ordered array
# 0.31 ms so, 6.6 ms into C order (numpy; 13.5 against 0.6 GB/s); 16 x 24 x 16 x 256
# float32 permuted keeping its rows, 6.3 MB in 0.2 ms.  Beyond the caches (and the new
# buffer's pages first touched) at less than half that: 200^3 float32 (32 MB) copied as
# jik to run ijk,jr->ikr as one product rather than 200 took 10 ms in all against 6.
_STREAM_COPY_BPS, _CACHED_BYTES, _STREAM_FAR_BPS = 2e10, 1 << 23, 6e9
# A copy that reads its input across rows gathers each element.  Between two steps along
# the input's rows (its unit-stride axis) the copy reads one cache line per element of
# the axes inside that one: where those lines stay in L1 the rows' next elements are
# found there; else each element costs a line from further off, dearer where the lines
# read one after the other are too far apart (a few to a page) for the hardware to
# prefetch them, dearer again where they no longer fit in L2.  numpy, ns per element,
# float32 / float64: 24^4 (abcd) copied as acdb 0.55 / 0.39 (24 lines between steps along
# d), as dbac 1.1 / 0.75 (13824 lines, 96 or 192 bytes apart); 100 x 256 x 32 (gea) as gae
# 0.34 / 0.8 (256 lines), as age 0.9 / 1.05 (25600 lines 128 or 256 bytes apart), as aeg
# 3.6 / 3.7 (25600, 32 or 64 KB apart); 24 x 4 x 32 x 24 x 16 (fdegb) as dbgfe 0.9 / 2.1
# (18432, 1.5 or 3 KB apart), as dbegf 1.6 / 2.2 (196 or 393 KB apart); 48 x 32 x 64
# (dcb) as bcd 8 or 16 KB apart (1536 lines) against bdc 256 or 512 bytes apart: 2x.
_L1_LINES, _L1_GATHER_S, _NEAR_GATHER_BYTES, _NEAR_GATHER_S = 512, 0.6e-9, 2048, 0.9e-9
_L2_LINES, _L2_GATHER_S, _FAR_GATHER_S = 16384, 1.5e-9, 2.5e-9
# BLAS's rates as this machine's OpenBLAS runs them on two threads (half that, the
# model picked one product between copies over a batch read in place: adc,dg->gac over
# 256 x 48 x 64 by 48 x 24, float64, 2.2 ms against 0.5-0.8).
_GEMM_FLOPS = {"float32": 2e11, "float64": 1e11, "complex64": 5e10, "complex128": 2.5e10}
_GEMM_CALL_S = 5e-6
# The largest matrix-vector product OpenBLAS runs on one thread (2304 x its
# GEMM_MULTITHREAD_THRESHOLD of 4).
_GEMV_ONE_THREAD = 9216
# A term of a loop nest that streams its inputs (a gathered one costs GATHER_COST of
# them), weighed against BLAS's modelled time for thin products (scaled with its rates).
_LOOP_TERM_S = 0.15e-9
_MAX_MOVES = 6


def _merged(group: Sequence[str], strides: dict[str, int], extent: dict[str, int]
            ) -> int | None:
    """The stride of ``group`` seen as one axis (in this order), or None when its
    strides do not nest (a reshape would copy).  An empty group gets stride 1."""
    live = [g for g in group if extent[g] != 1]
    if not live:
        return 1
    for outer, inner in zip(live, live[1:]):
        if strides[outer] != strides[inner] * extent[inner]:
            return None
    return strides[live[-1]]


def _blasable(groups: tuple[Sequence[str], Sequence[str]], strides: dict[str, int],
              extent: dict[str, int]) -> bool:
    """Whether an operand is a matrix BLAS reads as it is (rows x cols, either one with
    unit stride and the other stepping over it), once each group is merged."""
    sizes, steps = [], []
    for group in groups:
        st = _merged(group, strides, extent)
        if st is None or st <= 0:
            return False
        n = 1
        for g in group:
            n *= extent[g]
        sizes.append(n)
        steps.append(st)
    (r, c), (sr, sc) = sizes, steps
    if r == 1 or c == 1:
        return (sc == 1 or c == 1) or (sr == 1 or r == 1)
    return (sc == 1 and sr >= c) or (sr == 1 and sc >= r)


def _across(kernel: Kernel, v: str) -> int:
    """Bytes of the inputs a kernel reads across their rows along output index ``v``
    (each of ``Policy.unroll`` values of ``v`` at once reads one more row of them)."""
    extent = kernel.extent
    return sum(np.dtype(op.dtype).itemsize * _product(extent[i] for i in op.indices)
               for op in kernel.inputs if v in op.indices)


def _gemm_layout(kernel: Kernel, input_strides: Sequence[Sequence[int]],
                 output_strides: Sequence[int], threads: int) -> tuple[GemmLayout, float]:
    """The cheapest way to run a GEMM-shaped kernel as one batched BLAS product, and its
    cost by the model (seconds).

    Indices of one input and the output are rows (``m``) or columns (``n``), or batch
    indices the other input broadcasts over; each group's order decides whether an
    operand's strides merge into a matrix without a copy.  Every choice is costed
    (copies, the product at a rate that falls for thin matrices, one call per matrix of
    the batch) and the cheapest wins.
    """
    roles = gemm_roles(kernel, casts=True)
    assert roles is not None
    batch0, m0, n0, k0 = roles
    extent = kernel.extent
    a, b = kernel.inputs
    sa, sb, so = ({name: int(st) for name, st in zip(op.indices, strides)} for op, strides in
                  zip((a, b, kernel.output), (*input_strides, output_strides)))
    itemsize = 16 if kernel.accumulate == "complex128" else (
        4 if kernel.accumulate == "float32" else 8)
    rate = _GEMM_FLOPS[kernel.accumulate]

    def orders(group: Sequence[str], *strides: dict[str, int]) -> list[tuple[str, ...]]:
        # sorted: a tie in cost picks the same layout in every process (set order varies)
        found = {tuple(sorted(group, key=lambda g: -abs(st[g]))) for st in strides}
        return sorted(found) or [()]

    def size(group: Sequence[str]) -> int:
        n = 1
        for g in group:
            n *= extent[g]
        return n

    movable = [(name, 1) for name in m0] + [(name, 2) for name in n0]
    if len(movable) > _MAX_MOVES:
        movable = []
    best: tuple[float, GemmLayout] | None = None
    for moves in itertools.product((False, True), repeat=len(movable)):
        moved = {name for (name, _), mv in zip(movable, moves) if mv}
        m = [x for x in m0 if x not in moved]
        n = [x for x in n0 if x not in moved]
        batch = tuple(batch0) + tuple(x for x in m0 + n0 if x in moved)
        batch = tuple(sorted(batch, key=lambda g: -abs(so[g])))
        for mo, no, ko in itertools.product(orders(m, sa, so), orders(n, sb, so),
                                            orders(k0, sa, sb)):
            copy_a, memory_a, copy_a_s = _gemm_operand(kernel, a, batch, (mo, ko), sa)
            copy_b, memory_b, copy_b_s = _gemm_operand(kernel, b, batch, (ko, no), sb)
            direct = _blasable((mo, no), so, extent)
            M, N, K, B = size(mo), size(no), size(ko), size(batch)
            eff = 1.0
            for d in (M, N, K):
                eff *= d / (d + 24)
            cost = (2.0 * M * N * K * B / (rate * eff) + B * _GEMM_CALL_S + copy_a_s + copy_b_s
                    + (0 if direct else 2 * itemsize * size(kernel.output.indices)) / _COPY_BPS)
            layout = GemmLayout(batch, mo, no, ko, (copy_a, copy_b), direct,
                                memory=(memory_a, memory_b))
            if best is None or cost < best[0]:
                best = (cost, layout)
    assert best is not None
    cost, layout = best
    # OpenBLAS runs a product of fewer than 2^18 multiply-adds on one thread: split a
    # batch of such products over threads instead (larger ones are threaded by BLAS).
    # A matrix-vector product it threads from 9216 multiply-adds: two threads each
    # calling a threaded one oversubscribe the cores (acd,ab,ac over 75 x 128 x 150
    # float64: 1.05 ms split, 0.49 ms not, and up to 14 ms beside torch's threads).
    each = size(layout.m) * size(layout.n) * size(layout.k)
    thin = min(size(layout.m), size(layout.n)) == 1
    if (threads > 1 and layout.direct and layout.batch
            and extent[layout.batch[0]] >= 2 * threads
            and each <= (_GEMV_ONE_THREAD if thin else POLICY.gemm_split_max)
            and kernel.work >= POLICY.parallel_min_work):
        layout = replace(layout, split=threads)
    return layout, cost


def _smallest_matrices(kernel: Kernel) -> int:
    """Multiply-adds per matrix of the smallest products a GEMM-shaped kernel splits
    into: output indices of one operand only taken as batch indices (as
    :func:`_gemm_layout` may take them) while rows and columns keep 8 values (or all
    they have).

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> k = Kernel("k", (Operand("a0", "float64", ("i", "j", "k")),
    ...                  Operand("a1", "float64", ("j", "l"))),
    ...            Operand("out", "float64", ("i", "l", "k")),
    ...            (Index("i", 64), Index("l", 16), Index("k", 64), Index("j", 32)),
    ...            product(2, (("i", "j", "k"), ("j", "l"))), SUM, "float64")
    >>> _smallest_matrices(k)  # 64 values of k by 16 of l, 32 of j summed (i: batch)
    32768
    """
    roles = gemm_roles(kernel, casts=True)
    assert roles is not None
    extent = kernel.extent

    def least(group: Sequence[str]) -> int:
        sizes = [extent[name] for name in group]
        floor = min(8, _product(sizes))
        return min(_product(kept) for r in range(len(sizes) + 1)
                   for kept in itertools.combinations(sizes, r) if _product(kept) >= floor)

    return least(roles[1]) * least(roles[2]) * _product(extent[name] for name in roles[3])


def _gemm_operand(kernel: Kernel, op: Operand, batch: Sequence[str],
                  groups: tuple[Sequence[str], Sequence[str]], strides: dict[str, int]
                  ) -> tuple[bool, tuple[str, ...], float]:
    """How a GEMM reads ``op`` as matrices of ``groups`` (rows, columns) after its
    ``batch`` axes: whether it is copied first (as it is when its dtype is not the
    accumulator's: cast), the copy's memory order (see :class:`GemmLayout`; empty: not
    copied, or copied into (batch, rows, columns) order) and the copy's cost (seconds).

    The copy is laid out in the cheapest of: the operand's own memory order (where BLAS
    can read that), (batch, rows, columns) and (batch, columns, rows), BLAS reading the
    last transposed."""
    extent = kernel.extent
    if op.dtype == kernel.accumulate and _blasable(groups, strides, extent):
        return False, (), 0.0
    lead = tuple(name for name in batch if name in op.indices)
    arranged = lead + tuple(groups[0]) + tuple(groups[1])
    candidates = [arranged, lead + tuple(groups[1]) + tuple(groups[0])]
    live = [name for name in op.indices if extent[name] != 1]
    if all(strides[name] != 0 for name in live):
        memory = tuple(sorted(op.indices, key=lambda name: -abs(strides[name])))
        compact = dict(zip(memory, c_strides([extent[name] for name in memory])))
        if _blasable(groups, compact, extent):
            candidates.append(memory)
    # the first of the cheapest (a tie keeps (batch, rows, columns))
    cost, best = min(((_copy_s(kernel, op, order, strides), k) for k, order
                      in enumerate(candidates)), key=lambda pair: pair[0])
    return True, () if best == 0 else candidates[best], cost


def _copy_s(kernel: Kernel, op: Operand, memory: Sequence[str], strides: dict[str, int]
            ) -> float:
    """Seconds numpy takes to copy ``op`` (cast to the accumulator's dtype) into a
    C-ordered buffer whose axes run in ``memory`` order.  It walks the buffer in memory
    order, so it reads ``op`` along the buffer's innermost axis: where that is the axis
    of ``op``'s rows (its smallest stride) the copy streams, else each element is a
    gather (see ``_L1_LINES`` and the constants beside it)."""
    extent = kernel.extent
    live = [name for name in memory if extent[name] != 1]
    elements = _product(extent[name] for name in op.indices)
    step = abs(strides[live[-1]]) * np.dtype(op.dtype).itemsize if live else 0
    size = elements * np.dtype(kernel.accumulate).itemsize
    streamed = size / (_STREAM_COPY_BPS if size <= _CACHED_BYTES else _STREAM_FAR_BPS)
    rows = min(live, key=lambda name: abs(strides[name])) if live else None  # unit stride
    if rows is None or rows == live[-1]:  # along the input's rows: it streams
        return streamed
    lines = _product(extent[name] for name in live[live.index(rows) + 1:])
    each = (_L1_GATHER_S if lines <= _L1_LINES else _NEAR_GATHER_S if step < _NEAR_GATHER_BYTES
            else _L2_GATHER_S if lines <= _L2_LINES else _FAR_GATHER_S)
    return max(streamed, elements * each)


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


def schedule(kernel: Kernel, input_strides: Sequence[Sequence[int]],
             output_strides: Sequence[int], threads: int | None = None,
             flat: bool = True, blas: bool = True) -> Schedule:
    """Pick loop order and parallel loop from the arrays' strides (in elements).

    ``flat``: inputs that are neither C- nor Fortran-ordered may be read flat, with their
    strides as constants (only where the caller keys its kernels by those strides).
    ``blas``: whether a GEMM-shaped kernel may run as a BLAS call."""
    threads = thread_count() if threads is None else threads
    if blas and _use_gemm(kernel):
        layout, blas_s = _gemm_layout(kernel, input_strides, output_strides, threads)
        extent = kernel.extent
        thin = min(_product(extent[g] for g in layout.m), _product(extent[g] for g in layout.n))
        gemm = Schedule(tuple(ix.name for ix in kernel.indices), gemm=layout,
                        least_work=_least_work(kernel, layout.split > 1,
                                               POLICY.parallel_min_work))
        calls = _product(extent[g] for g in layout.batch)
        if thin == 1 and (kernel.work < POLICY.gemv_min_work or calls > POLICY.gemv_max_calls):
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
            # for the product), by the cost model.
            loops = schedule(kernel, input_strides, output_strides, threads, flat, False)
            gathers = copies(kernel, loops, input_strides, reuse=1)
            slow = gathers or loops.hoist
            if not slow or (any(layout.copy)
                            and kernel.work * GATHER_COST * _LOOP_TERM_S < blas_s):
                return loops
            return gemm
        volume = _product(extent[g] for g in layout.m + layout.n + layout.k)
        copied = any(layout.copy) or not layout.direct
        if min(volume, _smallest_matrices(kernel) if copied else volume) <= POLICY.tile_gemm_max:
            # Small matrices: a register tile of loops (``block_rows``) beats a BLAS call
            # per matrix (1024 16 x 16 float32 products: 0.35 against 0.62 ms; 512 of
            # 32 x 32, float64: 1.6 against 2.7 ms); also where BLAS would take such a
            # batch as rows but copy an operand or the product (ijk,jl->ilk over
            # 64 x 32 x 64 by 32 x 16: float32 0.14 -> 0.04 ms); not where it copies
            # nothing (the products of a Tucker product, 32 x 32 by 32 x 32768).  Where
            # BLAS would copy, loops vectorised along a block of the output beat it too
            # (dfbc,bacd->fcad, 400 products of 128 x 24 by 24 x 16, float64: BLAS after
            # three transposing copies 6.0 ms, loops 2.8 ms).
            loops = schedule(kernel, input_strides, output_strides, threads, flat, False)
            if loops.block_rows is not None or (copied and loops.block is not None):
                return loops
        # A matrix-vector product is memory-bound: BLAS gains nothing on a loop nest that
        # reads each operand once, so it is not worth a transposing copy of an operand.
        if not (any(layout.copy) and thin < 8):
            return gemm
    flat_runs = _flat_schedule(kernel, input_strides, threads)
    if flat_runs is not None:
        return flat_runs
    cost = {ix.name: 0 for ix in kernel.indices}
    weighed = dict(cost)
    for op, strides in zip(kernel.inputs + (kernel.output,),
                           tuple(input_strides) + (tuple(output_strides),)):
        elements = _product(kernel.extent[i] for i in op.indices)
        for name, s in zip(op.indices, strides):
            cost[name] += abs(s)
            weight = ALIASED_WEIGHT if _aliased(s, op.dtype) else 1
            weighed[name] += abs(s) * elements * weight
    read = {ix.name: 0 for ix in kernel.indices}  # the inputs' strides only
    for op, strides in zip(kernel.inputs, input_strides):
        for name, s in zip(op.indices, strides):
            read[name] += abs(s)
    position = {ix.name: p for p, ix in enumerate(kernel.indices)}

    def inside(v: str, r: str) -> bool:
        # output index v runs inside reduction r: smaller strides, on a tie the inputs'
        # (ecdb,c->eb with b = 2: b and d tie, b reads a0 contiguously, d by twos: 1.2 ->
        # 0.59 ms); from two values (dcab,a->db with b = 3: 0.84 -> 0.29 ms)
        return (cost[v], read[v]) < (cost[r], read[r]) and extent[v] >= 2

    def by_stride(names: Sequence[str]) -> list[str]:
        # Largest stride outermost, each array's weighed by its elements: the biggest
        # arrays are walked in memory order (a small one read across its rows stays in
        # cache, or is copied, see ``copies``), strides whose rows fall into few cache
        # sets weighing more; on ties the equation's order (C-like).
        return sorted(names, key=lambda n: (-weighed[n], position[n]))

    outer = by_stride(kernel.output_indices)
    inner = by_stride(kernel.reduction_indices)
    extent = kernel.extent
    parallel = None
    # Numba's parfors fold a prange reduction only by + and *: other reductions over
    # every label stay serial unless they run in chunks on einjit's threads.
    splittable = outer or POLICY.chunked or kernel.reduce.op in ("add", "mul")
    half = POLICY.max_loop_depth // 2
    deep = len(outer) + len(inner) > POLICY.max_loop_depth
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
               and not _hoisted(kernel, outer, inner, inside, cost, deep, None))
    far = gathers and _far_gathered(kernel, input_strides, last, every=True)
    least = POLICY.parallel_min_work // (FAR_GATHER_COST if far else
                                         GATHER_COST if gathers else 1)
    if threads > 1 and kernel.work >= least and splittable:
        group = outer if outer else inner
        wide = [n for n in group if extent[n] >= 2]
        if wide:
            parallel = _balanced(wide, group, extent, threads)
            group.remove(parallel)
            group.insert(0, parallel)
    hoist = _hoisted(kernel, outer, inner, inside, cost, deep, parallel)
    if len(hoist) == len(inner) and parallel is None and len(outer) == 1:
        # Every reduction outermost, no threads to split them and one output loop: a block
        # of accumulators (below) keeps the output in registers instead (adb,da->b with
        # b = 17: 0.30 ms hoisted, 0.14 ms blocked).  A block covers one output loop only:
        # with more, each of the others walks the input across its rows again (bac->ac
        # 300 x 64 x 8 float64: 0.37 ms blocked, 0.09 ms hoisted).
        hoist = []
    if hoist:
        rest = [n for n in inner if n not in hoist]
        if parallel is not None:
            # Each thread sums its part of a hoisted reduction into its own copy of the
            # (small) output, folded afterwards (``partials``): it reads a contiguous part
            # of the input, where a parallel output loop would have every thread read
            # every row in short runs.
            parallel = _balanced(hoist, list(hoist) + outer + rest, extent, threads)
        summed = (kernel.accumulate[0] in "fc" and POLICY.reassociate and bool(rest)
                  and extent[rest[-1]] >= 8)
        return Schedule(tuple(outer + inner), parallel, fuse, reassociate=summed,
                        contract=summed and _fused(kernel),
                        threads=threads if POLICY.chunked and parallel is not None else 0,
                        flat=flat_inputs(kernel, input_strides) if flat else (),
                        hoist=tuple(hoist),
                        least_work=_least_work(kernel, POLICY.chunked and parallel is not None,
                                               least))
    block = unroll = block_rows = None
    if inner and outer and not deep:
        v = outer[-1]  # the output index with the smallest strides
        rows_of = (_vector_rows(kernel, outer, v, _lanes(kernel))
                   if inside(v, inner[-1]) and parallel != v else None)
        if rows_of is not None:
            block, block_rows = (v, extent[v]), rows_of
        elif inside(v, inner[-1]):
            if POLICY.unroll > 1 and extent[v] <= 2 * POLICY.unroll and v not in kernel.dynamic:
                # a few values: scalar accumulators (a local array compiles slower), all
                # at once: one pass over the inputs (e,bea->a with a = 8, 64 x 3200 x 8
                # float32: 0.45 ms in two passes of four, 0.26 ms in one of eight)
                unroll = (v, extent[v])
            else:
                block = (v, POLICY.block if v in kernel.dynamic
                         else _block_size(extent[v], threads if parallel == v else 1))
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
        if tile_of is None or not _packed(kernel, *tile_of, inner):
            tile_of = None
    elif block_rows is None:
        tile_of = _register_tile(kernel, outer, inner, block, parallel)
    if tile_of is not None:
        block, block_rows = tile_of
        pack = _packed(kernel, block, block_rows, inner)
    chunk = None
    if (inner and block is None and unroll is None and not fuse[1]
            and (parallel not in inner or len(inner) == 1)
            and kernel.accumulate[0] in "fc" and extent[inner[-1]] > POLICY.chunk):
        chunk = POLICY.chunk
    if (unroll is None and inner and outer and block is None and chunk is None
            and not any(fuse) and extent[outer[-1]] >= 2 * POLICY.unroll and POLICY.unroll > 1
            and _across(kernel, outer[-1]) <= POLICY.unroll_max_bytes):
        unroll = (outer[-1], POLICY.unroll)
    band = None
    if unroll is not None and len(outer) >= 2 and outer[-2] not in kernel.dynamic:
        # Operands read along the unrolled index and the reductions but not along the
        # next output index u are read again for every u: when that is more than fits
        # in cache, walk u in bands so each block of their rows serves a band of u.
        u, around = outer[-2], outer[:-2]
        again = [op for op in kernel.inputs
                 if u not in op.indices and unroll[0] in op.indices]
        reread = max((np.dtype(op.dtype).itemsize
                      * _product(extent[i] for i in op.indices if i not in around)
                      for op in again), default=0)
        if reread > POLICY.band_bytes and extent[u] >= 2 * POLICY.band:
            band = (u, POLICY.band)
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

    if not inner and len(outer) >= 2 and not deep:
        u, v = outer[-2], outer[-1]
        if crossed(u, v) and min(extent[u], extent[v]) >= POLICY.tile:
            tile = (u, v, POLICY.tile)
    elif (len(inner) >= 2 and not deep and block is None and unroll is None and chunk is None
          and parallel != inner[-1] and not any(fuse)):
        # The same for the two innermost reduction loops (``ed,de->``: de read down its
        # columns, each load a new cache line): a tile of each operand stays in cache.
        # It pays where the column's rows alias in the cache (strides a multiple of 512
        # bytes, 512 x 512 float32: 0.83 -> 0.50 ms); elsewhere the plain column walk
        # stays in L2, and the tiles' short loops only cost (1000 x 1000: 1.8 -> 3.6 ms).
        u, v = inner[-2], inner[-1]
        if crossed(u, v, ALIASED_BYTES) and min(extent[u], extent[v]) >= POLICY.tile:
            tile = (u, v, POLICY.tile)
    # Only a reduction loop innermost gains (a blocked output loop is vectorised as it
    # is), and only when long enough to fill vectors.  Not one that reads an input a
    # cache line or more apart: vectorised, its loads are gather instructions, slower
    # here than one load at a time (ab,ba-> over 1000 x 1000, float32 0.56 -> 0.44 ms,
    # float64 0.56 -> 0.49 ms in order; ii-> level).
    reassociate = (POLICY.reassociate and bool(inner) and block is None
                   and kernel.reduce.op == "add" and kernel.accumulate[0] in "fc"
                   and extent[inner[-1]] >= 8
                   and not _far_gathered(kernel, input_strides, inner[-1]))
    # A register tile sums each value in order, vectorised across the block: its terms
    # may still be fused multiply-adds, one instruction where a multiply and an add were
    # two (float32 bnd,bne->bde over 32 x 128 x 64, one thread: 0.44 -> 0.32 ms; sq = (x
    # - y) ** 2 over id,dj->ij, 2048 x 2048 x 64 float64: 10.3 -> 7.7 ms).
    contract = _fused(kernel) and (reassociate or block_rows is not None)
    # A register tile over two output indices pays once the body is a multiply-add:
    # then loads, not arithmetic, bound the loop, and each load serves ``rows`` values.
    rows = POLICY.rows if band is not None and contract else 1
    # Chunks of the outermost loop on einjit's threads (of both loops, when an unrolled
    # index is parallel: its blocks and its remainder), when that loop is an output loop.
    # A reduction split over threads (no output loops) runs in chunks too, each chunk's
    # partial into its own slot; a second small kernel folds them (see ``partials``).
    chunks = threads if (POLICY.chunked and parallel is not None
                         and (parallel in outer or not outer)) else 0
    return Schedule(tuple(outer + inner), parallel, fuse, block, chunk=chunk, tile=tile,
                    unroll=unroll, reassociate=reassociate, threads=chunks, band=band,
                    rows=rows, contract=contract,
                    flat=flat_inputs(kernel, input_strides)
                    if flat and not kernel.dynamic else (), block_rows=block_rows, pack=pack,
                    least_work=_least_work(kernel, bool(chunks), least))


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


#: The bytes of one vector register (AVX2), and how many there are.
VECTOR_BYTES, VECTOR_REGISTERS = 32, 16
#: The most rows of a register tile: each needs its own broadcast operand per term.
MAX_TILE_ROWS = 4
#: Rows of an array whose stride (bytes) is a multiple of this fall into few cache sets.
ALIASED_BYTES = 512
#: How much more such a stride weighs in the loop order: gathered along it, a column's
#: elements evict each other from the cache (``ba,ab,b->`` over 1000 x 512 float32: b
#: innermost gathers a0 2048 bytes apart, 0.61 ms; a innermost, a1 4000 bytes apart,
#: 0.28 ms).
ALIASED_WEIGHT = 4


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
                   ) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """``((v, w), (u, m))``: a narrow block of accumulators (fewer than
    ``POLICY.tile_terms``) of output index v runs as a register tile, blocks of w values
    of v (whole vectors) for m values of the output index u at once, m * w >=
    ``tile_terms`` as far as the vector registers hold them; the last ``V mod w`` values
    of v are a block of their own.  u is the innermost output index along which some
    operand read along v does not run, so each of its loads serves m sums.  None when no
    such u exists (see ``Schedule.block_rows``); a wide block is tiled as
    :func:`_wide_tile` says.

    A narrow block's loop LLVM unrolls completely, into scalar code, before it would
    vectorise it; m rows make the loop long enough to be vectorised instead, and keep
    its sums in registers (bij,bjk->bik on 1024 16 x 16 float32 matrices: 1.53 -> 0.35
    ms; two rows of 16 float64 stayed scalar, four are vectorised).  Blocks of whole
    vectors only, in at most ``MAX_TILE_ROWS`` rows: a block of 12 float32 in 6 rows ran
    2.5x slower than one row (ij,jk->ik, 3000 x 100 x 12), in blocks of 8 (8 rows) and 4,
    1.4x slower; 20 float32 in blocks of 16 (4 rows) and 4, 4x faster."""
    if block is None or parallel == block[0] or block[0] in kernel.dynamic:
        return None
    v, size = block
    n = min(size, kernel.extent[v])
    lanes = _lanes(kernel)
    if not lanes:
        return None
    if n >= POLICY.tile_terms:
        return _wide_tile(kernel, outer, inner, v, lanes)
    for w in range(n // lanes * lanes, 0, -lanes):  # the widest block that fits
        m = -(-POLICY.tile_terms // w)
        if m * (w // lanes) > VECTOR_REGISTERS or m > MAX_TILE_ROWS:
            continue
        u = _rows(kernel, outer, v, m)
        return None if u is None else ((v, w), (u, m))
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
    lanes = _lanes(kernel)
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
    run = _flat_run(kernel, input_strides)
    if not run:
        return None
    *batch, j = kernel.output.indices
    (i,) = kernel.reduction_indices
    rows = run // kernel.extent[j]
    parallel = None
    if threads > 1 and POLICY.chunked and kernel.work >= POLICY.parallel_min_work:
        if batch and kernel.extent[batch[0]] >= 2 * threads:
            parallel = batch[0]  # each thread its own sums of the batch
        elif not batch and kernel.extent[i] >= 2 * threads * rows:
            parallel = i
    if parallel is None and batch and kernel.work >= POLICY.parallel_min_work:
        return None
    return Schedule(kernel.output.indices + kernel.reduction_indices, parallel,
                    threads=threads if parallel else 0, flat_run=run,
                    least_work=_least_work(kernel, bool(parallel), POLICY.parallel_min_work))


def _flat_runs(kernel: Kernel, sched: Schedule) -> tuple[Stmt, ...]:
    """Lowering of ``Schedule.flat_run``, the inputs viewed flat (``views``), for each
    value of the batch index (if any) from ``f = b * I * J``::

        for tb in range(L): acc[tb] = 0
        for rb in range(I // m):             # m = L / J rows at a time
            f0 = f + rb * L
            for tb in range(L): ft = f0 + tb; acc[tb] += body[ft]
        for j in range(J):
            sf = 0
            for qf in range(m): sf += acc[qf * J + j]
            for ir in range(I mod m): i = I // m * m + ir; ft = f + i * J + j; sf += body[ft]
            out[..., j] = sf

    The runs are split over threads (``parallel`` i: into partial outputs, chunk 0
    summing the rows left over) or the batch is (``parallel`` b).
    """
    *batch, j = kernel.output.indices
    (i,) = kernel.reduction_indices
    n_j = kernel.extent[j]
    run, red, dt = sched.flat_run, kernel.reduce, kernel.accumulate
    rows = run // n_j
    split = sched.parallel == i  # each chunk sums its runs into its own partial output
    head: tuple[Stmt, ...] = (Let(SLOT, Var(CHUNK)),) if split else ()
    n_i: int | Expr = kernel.extent[i]
    if i in kernel.dynamic:  # read from the (flat) first input
        n_i = Var(f"n_{i}")
        head += (Let(n_i.name, Call("floordiv", (Dim(kernel.inputs[0].name, 0), Const(n_j)))),)
    whole = n_i // rows if isinstance(n_i, int) else Call("floordiv", (n_i, Const(rows)))
    left = n_i % rows if isinstance(n_i, int) else Call("mod", (n_i, Const(rows)))

    def at(name: str) -> Expr:
        return map_loads(kernel.body, lambda ld: Load(ld.operand, (name,)))

    def plus(base: Expr | None, value: Expr) -> Expr:
        return value if base is None else Call("add", (base, value))

    start = (Call("mul", (Var(batch[0]), Const(kernel.extent[i] * n_j))) if batch else None)
    acc, total = Var("acc", Var(_T)), Var("sf")
    fold: tuple[Stmt, ...] = (
        Init(total, dt, red.identity),
        Loop("qf", rows, (Accumulate(total, red.op, Var("acc", Call("add", (
            Call("mul", (Var("qf"), Const(n_j))), Var(j)))), dt),)))
    if left:  # the rows left over (on threads, chunk 0 sums them)
        first = whole * rows if isinstance(whole, int) else Call("mul", (whole, Const(rows)))
        if split:
            left = Call("mul", (_expr(left), Call("sub", (
                Const(1), Call("min", (Var(CHUNK), Const(1)))))))
        fold += (Loop("ir", left, (
            Let(i, Call("add", (_expr(first), Var("ir")))),
            Let("ft", plus(start, Call("add", (Call("mul", (Var(i), Const(n_j))), Var(j))))),
            Accumulate(total, red.op, at("ft"), dt))),)
    store = (Store(Operand(kernel.output.name, dt, (SLOT, j)), total) if split
             else Store(kernel.output, _store_cast(kernel, total, True)))
    sums = (
        Loop(_T, run, (Init(acc, dt, red.identity),)),
        Loop("rb", whole, (Let("f0", plus(start, Call("mul", (Var("rb"), Const(run))))),
                          Loop(_T, run, (Let("ft", Call("add", (Var("f0"), Var(_T)))),
                                         Accumulate(acc, red.op, at("ft"), dt)))), split),
        Loop(j, n_j, fold + (store,)))
    if batch:
        sums = (Loop(batch[0], kernel.extent[batch[0]], sums, sched.parallel == batch[0]),)
    return head + (Alloc("acc", dt, run, run * np.dtype(dt).itemsize <= POLICY.stack_bytes),
                   ) + sums


def _lanes(kernel: Kernel) -> int:
    """Values of the kernel's accumulator dtype per vector register (0: wider)."""
    return VECTOR_BYTES // np.dtype(kernel.accumulate).itemsize


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
    ``POLICY.wide_tile_terms`` terms or more (c,cbab->ca over 100 x 2 x 32 x 2, sums of
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
            or _product(kernel.extent[r] for r in kernel.reduction_indices)
            < POLICY.wide_tile_terms):
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


def _wide_tile(kernel: Kernel, outer: Sequence[str], inner: Sequence[str], v: str,
               lanes: int) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """A wide block's register tile: ``MAX_TILE_ROWS`` rows of u, each of as many
    vectors of v as the registers hold for all of them (int64 ik,kj->ij 512^3: 15.5 ms
    with 512 accumulators in memory, 6.9 ms in tiles of 4 x 16).  Only where it pays
    (sq = (x - y) ** 2 over ab,bc->ac, 256 x K x 256, in tiles against the block):

    - the reductions have ``POLICY.wide_tile_terms`` terms or more: each tile is set,
      stored and (``Schedule.pack``) its panel filled for them (K = 8: 1.3-1.5x
      slower; K = 16: level; K = 64: 0.66-0.71 of the block's time);
    - the blocks of w values cover v but for at most a sixteenth: the last ``V mod w``
      values are a short tile that LLVM does not vectorise (125 values, K = 64:
      float64 0.94 of the block's time, where 256 values take 0.71);
    - no input is read along both u and v: the tile would read it in m short runs,
      where the block reads one long one (cda,da->ac over 125 x 100 x 128 float32:
      0.085 -> 0.106 ms in tiles);
    - the block of w values each input shared by the rows reads (along the
      reductions) takes at most ``POLICY.panel_bytes``: read again for each m rows,
      it stays in cache (a,cdb->ba over 100 x 8 x 512 x 256 float64, a panel of 512
      KiB: 0.069 -> 0.078 ms in tiles)."""
    extent = kernel.extent
    m = MAX_TILE_ROWS
    w = lanes * (VECTOR_REGISTERS // m)
    n = extent[v]
    if (_product(extent[r] for r in inner) < POLICY.wide_tile_terms
            or (n % w and n < 16 * w)):
        return None
    u = _rows(kernel, outer, v, m)
    if u is None or any(u in op.indices and v in op.indices for op in kernel.inputs):
        return None
    if any(_panel_bytes(kernel, k, inner, w) > POLICY.panel_bytes
           for k in _shared(kernel, u, v)):
        return None
    return (v, w), (u, m)


def _packed(kernel: Kernel, block: tuple[str, int], rows: tuple[str, int],
            inner: Sequence[str]) -> tuple[int, ...]:
    """The inputs a register tile over ``block`` (v, w) and ``rows`` (u, m) reads from
    panels (``Schedule.pack``): those read along v but not u, when u has
    ``POLICY.pack_rows`` values or more (each panel serves them all), the block is wide
    (a narrow one is the whole of v: its rows are read once per value of u either
    way) and each panel, w values for each of the input's reduction indices, takes at
    most ``POLICY.pack_bytes``.

    The tile reads such an input along the reductions, one short row of w values per
    step: rows a multiple of 4 KiB apart fall into one cache set and evict each other,
    and an input laid out along the reductions is read across its rows, w loads per
    step.  The panel is one run of memory (sq = (x - y) ** 2 over id,dj->ij, 2048 x
    2048 x 64 float64: 10.5 -> 7.7 ms)."""
    (v, w), (u, _) = block, rows
    extent = kernel.extent
    if kernel.dynamic or extent[u] < POLICY.pack_rows or extent[v] < POLICY.tile_terms:
        return ()
    found = _shared(kernel, u, v)
    if any(_panel_bytes(kernel, k, inner, w) > POLICY.pack_bytes for k in found):
        return ()
    return found


def _shared(kernel: Kernel, u: str, v: str) -> tuple[int, ...]:
    """The inputs a tile's rows (u) share: read along its block (v) but not along u."""
    return tuple(k for k, op in enumerate(kernel.inputs)
                 if v in op.indices and u not in op.indices)


def _panel_elements(kernel: Kernel, k: int, inner: Sequence[str], w: int) -> int:
    """The values of input k a block of w values of a tile reads: w for each of its
    reduction indices' values (its panel, ``Schedule.pack``)."""
    return w * _product(kernel.extent[i] for i in kernel.inputs[k].indices if i in inner)


def _panel_bytes(kernel: Kernel, k: int, inner: Sequence[str], w: int) -> int:
    return _panel_elements(kernel, k, inner, w) * np.dtype(kernel.inputs[k].dtype).itemsize


def _fused(kernel: Kernel) -> bool:
    """Whether the kernel is a float sum of products, whose terms may be accumulated as
    fused multiply-adds (each rounded once instead of twice), ``Policy.contract``
    permitting.  Its callers fuse reassociated sums only: an ``llvm.fmuladd`` without
    ``reassoc`` in a block of accumulators kept LLVM from vectorising the block (16 x 16
    float32 matrices: 3 against 36 GFLOP/s with ``acc += p * q``)."""
    return (POLICY.contract and kernel.reduce.op == "add" and kernel.accumulate[0] == "f"
            and multiply_add(kernel.body) is not None)


def _hoisted(kernel: Kernel, outer: Sequence[str], inner: Sequence[str],
             inside: Callable[[str, str], bool], cost: dict[str, int], deep: bool,
             parallel: str | None) -> list[str]:
    """The reduction loops to run outermost (``Schedule.hoist``), in stride order: those
    whose stride exceeds every output index's, in a sum over an input of at least
    ``POLICY.hoist_min_bytes`` into an output of at most ``POLICY.hoist_max_bytes``.

    Summed with the output loops outside, such a loop makes each output value walk the
    input in short runs far apart (``abc->b``: a run of c per a, a's stride away), which
    the hardware prefetches badly; outermost, the nest reads the input in memory order,
    and the output, small, stays in cache across the passes.  Only sums kept in the
    output's dtype (each pass adds into it; float sums only when they may be
    reassociated), and sizes known.  On several threads the outermost of them is split
    (see ``partial_spread``).  None when the output index with the smallest strides would
    run ``inside`` (the scheduler's test) the innermost reduction left."""
    if (not outer or not inner or deep or kernel.dynamic or kernel.reduce.op != "add"
            or kernel.accumulate != kernel.output.dtype
            or kernel.accumulate[0] not in "fciu"
            or (kernel.accumulate[0] in "fc" and not POLICY.reassociate)
            or (parallel is not None and not POLICY.chunked)):
        return []
    extent = kernel.extent
    itemsize = np.dtype(kernel.accumulate).itemsize
    if itemsize * _product(extent[i] for i in outer) > POLICY.hoist_max_bytes:
        return []
    largest = max(np.dtype(op.dtype).itemsize * _product(extent[i] for i in op.indices)
                  for op in kernel.inputs)
    if largest < POLICY.hoist_min_bytes:
        return []
    widest = max(cost[o] for o in outer)
    hoist = [r for r in inner if cost[r] > widest and extent[r] >= 2]
    rest = [r for r in inner if r not in hoist]
    if rest and inside(outer[-1], rest[-1]):
        # The reductions left inside would run innermost across the memory an output
        # loop walks along (cea,cde->da: e, a's stride apart): a block of that output
        # index, the reductions outside it, reads the inputs in runs instead.
        return []
    return hoist


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
    ``POLICY.block``, in a number of blocks that the threads share evenly when the
    blocks are the parallel loop (32 values on 2 threads: 2 blocks of 16, not one of
    32 on one thread), rounded up to a multiple of 8 (whole vectors)."""
    if threads <= 1 or n < 8 * threads:
        return min(POLICY.block, n)
    blocks = -(-n // POLICY.block)
    blocks = -(-blocks // threads) * threads  # a multiple of the threads
    per = -(-n // blocks)
    return min(POLICY.block, -(-per // 8) * 8)


def _nest(order: Sequence[str], kernel: Kernel, body: tuple[Stmt, ...],
          parallel: str | None, fuse: int = 0, name: str = "f") -> tuple[Stmt, ...]:
    """Loops over ``order`` around ``body``; the first ``fuse`` of them as one fused loop."""
    fuse = fuse if fuse > 1 else 0
    sizes = kernel.sizes
    for ix in reversed(order[fuse:]):
        body = (Loop(ix, sizes[ix], body, ix == parallel),)
    if fuse:
        index = {ix.name: ix for ix in kernel.indices}
        group = tuple(index[ix] for ix in order[:fuse])
        total = _times([g.size for g in group])
        body = (Loop(name, total, body, parallel in order[:fuse], group),)
    return body


def _expr(value: int | Expr) -> Expr:
    """An extent or count as an expression (a literal as a constant)."""
    return Const(value) if isinstance(value, int) else value


def _times(values: Sequence[int | Expr]) -> int | Expr:
    """The product of extents: a number when all are literals, else an expression."""
    if all(isinstance(v, int) for v in values):
        return _product(values)  # type: ignore[arg-type]
    return Call("mul", tuple(_expr(v) for v in values))


def _ceil_div(n: int | Expr, size: int) -> int | Expr:
    if isinstance(n, int):
        return -(-n // size)
    return Call("floordiv", (Call("add", (n, Const(size - 1))), Const(size)))


def _dims(kernel: Kernel) -> tuple[Stmt, ...]:
    """``n_<index> = <array>.shape[<axis>]`` for each dynamic index (read once, on entry)."""
    lets = []
    for name in kernel.dynamic:
        op = next(op for op in kernel.inputs + (kernel.output,) if name in op.indices)
        lets.append(Let(f"n_{name}", Dim(op.name, op.indices.index(name))))
    return tuple(lets)


def lower(kernel: Kernel, sched: Schedule, views: dict[str, tuple[int, ...]] | None = None
          ) -> LoopNest:
    """Lower ``kernel`` under ``sched`` into loops, an accumulator and one store per element
    (with ``sched.contract``, sums of products accumulate as ``muladd``).

    ``views``: the kernel's arrays it is passed in another shape (its indices merged):
    it views them in its own (a reduction into partials views them with their axis of
    partials in front)."""
    if sched.flat_run:  # the inputs seen flat
        views = {**(views or {}), **{op.name: (-1,) for op in kernel.inputs}}
        nest = LoopNest(kernel, sched, _flat_runs(kernel, sched))
    else:
        nest = _lower(kernel, sched)
    if sched.contract:
        nest = LoopNest(kernel, sched, _contracted(nest.body))
    if not views:
        return nest
    into_partials = _into_partials(kernel, sched)
    return replace(nest, views=tuple(
        (name, (-1, *shape) if into_partials and name == kernel.output.name else shape)
        for name, shape in views.items()))


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


def _contracted(body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """``body`` with each ``acc = add(acc, p * q)`` as ``acc = muladd(acc, p * q)``."""
    out: list[Stmt] = []
    for s in body:
        if isinstance(s, Loop):
            s = Loop(s.index, s.extent, _contracted(s.body), s.parallel, s.unpack)
        elif isinstance(s, Accumulate) and s.op == "add":
            factors = multiply_add(s.value)
            if factors is not None:
                s = Accumulate(s.acc, "muladd", Call("mul", factors), s.dtype)
        out.append(s)
    return tuple(out)


def _lower(kernel: Kernel, sched: Schedule) -> LoopNest:
    if sched.gemm:
        a, b = kernel.inputs
        return LoopNest(kernel, sched, _dims(kernel) + (Gemm(a, b, kernel.output, sched.gemm),))
    n_out = len(kernel.output_indices)
    outer, inner = sched.order[:n_out], sched.order[n_out:]
    if sched.hoist:
        return LoopNest(kernel, sched, _dims(kernel) + _passes(kernel, sched, outer, inner))
    if sched.block is not None:
        body = _blocked(kernel, sched, list(outer), list(inner))
        return LoopNest(kernel, sched, _dims(kernel) + body)
    if sched.unroll is not None:
        return LoopNest(kernel, sched, _dims(kernel) + _unrolled(kernel, sched, list(outer),
                                                                  list(inner)))
    extent = kernel.sizes
    fuse_out, fuse_red = sched.fuse
    acc, red = Var("acc"), kernel.reduce
    store_value: Expr
    if not inner:
        store_value = kernel.body
        body: tuple[Stmt, ...] = ()
    else:
        store_value = acc
        init = Init(acc, kernel.accumulate, red.identity)
        if sched.parallel is not None and sched.parallel == inner[0]:
            # A full reduction split over threads: each iteration of the parallel loop
            # folds its slice into a partial, then the partials into ``acc``.
            rest = inner[1:]
            tiled = sched.tile is not None and (inner[0], *rest) == sched.tile[:2]
            if not rest and sched.chunk:
                # One reduction loop: its chunks are the parallel iterations.
                body = (init,) + _chunked(kernel, inner[0], sched.chunk, parallel=True)
            elif tiled:
                # two reduction loops in tiles, those of u on threads (ij,ij-> with one
                # operand Fortran-ordered)
                u, v, size = sched.tile  # type: ignore[misc]
                body = (init,) + _tiled(kernel, u, v, size, (), True, Accumulate(
                    acc, red.op, kernel.body, kernel.accumulate))
            elif rest:
                part = Var("part")
                steps = (Init(part, kernel.accumulate, red.identity),) + _summed(
                    kernel, sched, rest, Accumulate(part, red.op, kernel.body, kernel.accumulate),
                    fuse_red - 1) + (Accumulate(acc, red.op, part, kernel.accumulate),)
            else:
                steps = (Accumulate(acc, red.op, kernel.body, kernel.accumulate),)
            if (rest or not sched.chunk) and not tiled:
                body = (init, Loop(inner[0], extent[inner[0]], steps, True))
        elif sched.chunk:
            body = (init,) + _nest(inner[:-1], kernel, _chunked(kernel, inner[-1], sched.chunk),
                                   None)
        else:
            body = (init,) + _summed(kernel, sched, inner,
                                     Accumulate(acc, red.op, kernel.body, kernel.accumulate),
                                     fuse_red)
    if sched.threads and sched.parallel in inner:  # this chunk's partial, in its slot
        body = body + (Store(Operand(kernel.output.name, kernel.accumulate, (CHUNK,)), acc),)
    else:
        body = body + (Store(kernel.output, _store_cast(kernel, store_value, bool(inner))),)
    outer_parallel = sched.parallel if sched.parallel in outer else None
    if sched.tile is not None and sched.tile[0] in outer:
        u, v, size = sched.tile
        outer = tuple(ix for ix in outer if ix not in (u, v))
        body = _tiled(kernel, u, v, size, body, outer_parallel == u)
        outer_parallel = None if outer_parallel == u else outer_parallel
    return LoopNest(kernel, sched,
                    _dims(kernel) + _nest(outer, kernel, body, outer_parallel, fuse_out, "fo"))


def _summed(kernel: Kernel, sched: Schedule, loops: Sequence[str], step: Stmt,
            fuse: int) -> tuple[Stmt, ...]:
    """Reduction loops over ``loops`` around ``step``; in tiles when the schedule tiles
    the last two of them."""
    if sched.tile is not None and tuple(loops[-2:]) == sched.tile[:2]:
        u, v, size = sched.tile
        tiled = (_tiled(kernel, u, v, size, (), False, step)  # type: ignore[arg-type]
                 if _float_sum(kernel, step) else _tiled(kernel, u, v, size, (step,), False))
        return _nest(loops[:-2], kernel, tiled, None)
    if fuse <= 1 and isinstance(step, Accumulate) and _partials_pay(kernel, loops, (step,)):
        return _in_partials(kernel, loops, (step,))
    return _nest(loops, kernel, (step,), None, fuse, "fr")


def _partials_pay(kernel: Kernel, loops: Sequence[str], steps: Sequence[Accumulate]) -> bool:
    """Whether float sums over nested reduction loops of more than ``Policy.chunk`` terms
    should add each loop's terms into a partial of its own (see :func:`_in_partials`)."""
    return (len(loops) >= 2 and all(_float_sum(kernel, s) for s in steps)
            and _product(kernel.extent[i] for i in loops) > POLICY.chunk)


def _float_sum(kernel: Kernel, step: Stmt) -> bool:
    """Whether ``step`` adds a term into a float (or complex) accumulator: a sum whose
    rounding error grows with its terms, summed in partials where it is long."""
    return isinstance(step, Accumulate) and step.op == "add" and kernel.accumulate[0] in "fc"


#: The fewest terms beneath a reduction loop's body for :func:`_in_partials` to give it a
#: partial sum of its own.
_PARTIAL_MIN = 16


def _in_partials(kernel: Kernel, loops: Sequence[str], steps: Sequence[Accumulate]
                 ) -> tuple[Stmt, ...]:
    """Float sums over nested reduction loops (``steps``: one per accumulator), each
    loop's body (of ``_PARTIAL_MIN`` terms or more) summed into partials of its own,
    then added to the loop outside's.

    One accumulator for every term loses precision as the sum grows: its rounding
    error grows with the number of terms added to it (``ab,bc,cd->`` over 300 x 300
    float32 in one nest, 27 million terms per thread: 5.7e-3 relative to the exact
    value, numpy's 9.7e-5).  With a partial per loop, each accumulator adds at most its
    loop's values (1.6e-7 there), as blocked summation does; the cost is an addition per
    pass of a loop, where LLVM already folds the innermost loop's vector of sums into
    one value per pass.

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> k = Kernel("k", (Operand("a0", "float32", ("i", "j")),), Operand("out", "float32", ()),
    ...            (Index("i", 100), Index("j", 100)), product(1, (("i", "j"),)), SUM, "float32")
    >>> nest = _in_partials(k, ("i", "j"), [Accumulate(Var("acc"), "add", k.body, "float32")])
    >>> for line in nest[0].lines():
    ...     print(line)
    for i in range(100):
        sum0 = float32(0)
        for j in range(100):
            sum0 = add(sum0, a0[i,j])
        acc = add(acc, sum0)
    """
    sizes, extent = kernel.sizes, kernel.extent
    identity = kernel.reduce.identity

    def level(i: int, targets: tuple[Var, ...]) -> Stmt:
        name = loops[i]
        if i == len(loops) - 1:
            return Loop(name, sizes[name], tuple(replace(s, acc=t)
                                                 for s, t in zip(steps, targets)))
        if _product(extent[n] for n in loops[i + 1:]) < _PARTIAL_MIN:
            return Loop(name, sizes[name], (level(i + 1, targets),))
        parts = tuple(Var(f"sum{i}" if len(steps) == 1 else f"sum{i}_{s.acc.name}")
                      for s in steps)
        return Loop(name, sizes[name], (
            *(Init(p, s.dtype, identity) for p, s in zip(parts, steps)),
            level(i + 1, parts),
            *(Accumulate(t, s.op, p, s.dtype) for t, p, s in zip(targets, parts, steps))))

    return (level(0, tuple(s.acc for s in steps)),)


def _passes(kernel: Kernel, sched: Schedule, outer: Sequence[str], inner: Sequence[str]
            ) -> tuple[Stmt, ...]:
    """The nests of a schedule with ``hoist``: the output set to the identity, then the
    hoisted reduction loops around the output loops, each output value updated with the
    sum of the remaining reductions::

        for o...: out[o] = 0
        for h...:                        # hoisted reduction loops
            for o...:                    # output loops (the parallel one as scheduled)
                acc = 0
                for r...: acc += body    # the other reduction loops
                out[o] += acc
    """
    red, acc = kernel.reduce, Var("acc")
    parallel = sched.parallel if sched.parallel in outer else None
    target, head = kernel.output, ()
    spread = partial_spread(kernel, sched)
    if spread > 1:  # a split reduction: this chunk's own partial output, in its slot
        target = Operand(target.name, kernel.accumulate, (SLOT,) + target.indices)
        head = (Let(SLOT, Call("mul", (Var(CHUNK), Const(spread)))),)
    rest = [r for r in inner if r not in sched.hoist]
    reset = head + _nest(outer, kernel, (Store(target, Const(red.identity)),), parallel)
    if rest:
        update = ((Init(acc, kernel.accumulate, red.identity),)
                  + _nest(rest, kernel,
                          (Accumulate(acc, red.op, kernel.body, kernel.accumulate),), None)
                  + (Update(target, red.op, acc),))
    else:  # every reduction hoisted: each term updates the output, one statement (a
        # short innermost loop of it vectorises, see numba_cpu.OPAQUE_TRIPS)
        update = (Update(target, red.op, kernel.body),)
        h = sched.hoist[-1]
        if (red.op == "add" and h not in kernel.dynamic
                and kernel.extent[h] >= 2 * HOIST_UNROLL):
            passes = _hoist_unrolled(kernel, sched, h, target, outer, parallel,
                                     _nest(outer, kernel, update, parallel))
            return reset + _nest(list(sched.hoist[:-1]), kernel, passes,
                                 sched.parallel if sched.parallel in sched.hoist[:-1] else None)
    return reset + _nest(list(sched.hoist), kernel, _nest(outer, kernel, update, parallel),
                         sched.parallel if sched.parallel in sched.hoist else None)


#: Values of the innermost hoisted reduction summed into the output in one pass.
HOIST_UNROLL = 4


def _hoist_unrolled(kernel: Kernel, sched: Schedule, h: str, target: Operand,
                    outer: Sequence[str], parallel: str | None, single: tuple[Stmt, ...]
                    ) -> tuple[Stmt, ...]:
    """The innermost hoisted reduction loop over ``h`` (every reduction hoisted, a sum),
    ``HOIST_UNROLL`` values per pass over the output, their terms added first, then the
    last ``H mod HOIST_UNROLL`` values one pass each (``single``)::

        for hb in range(H // 4):          # in chunks when h is the parallel loop
            g0 = hb * 4 + 0; ...; g3 = hb * 4 + 3
            for o...: out[o] += body[h := g0] + ... + body[h := g3]
        for hr in range(H mod 4): h = H // 4 * 4 + hr; for o...: out[o] += body

    Each pass loads and stores the output once: a quarter of the passes (d,di->i,
    a matrix-vector product, over 64 x 12800 float32 on one thread: 0.080 -> 0.047 ms,
    BLAS 0.045)."""
    n, u = kernel.extent[h], HOIST_UNROLL
    names = [f"g{t}" for t in range(u)]
    first = Call("mul", (Var("hb"), Const(u)))
    at = tuple(Let(g, Call("add", (first, Const(t)))) for t, g in enumerate(names))
    update = (Update(target, "add", _summed_over(kernel.body, h, names)),)
    loops: tuple[Stmt, ...] = (Loop("hb", n // u, at + _nest(outer, kernel, update, parallel),
                                    sched.parallel == h),)
    if n % u:
        at_h = Let(h, Call("add", (Const(n // u * u), Var("hr"))))
        loops += (Loop("hr", n % u, (at_h,) + single, sched.parallel == h),)
    return loops


def _summed_over(body: Expr, h: str, names: Sequence[str]) -> Expr:
    """The sum of ``body`` with index ``h`` read as each of ``names``; the factors of a
    product that do not depend on h multiply the sum of the others, once (a,bac,c->ca:
    ``a0[a] * a2[c] * (a1[g0,a,c] + ... + a1[g3,a,c])``, float32 0.046 -> 0.040 ms)."""
    factors = body.args if isinstance(body, Call) and body.op == "mul" else (body,)
    kept = tuple(f for f in factors if all(h not in ld.indices for ld in loads(f)))
    varying = tuple(f for f in factors if f not in kept)
    if not kept or not varying:
        return Call("add", tuple(_renamed(body, h, g) for g in names))
    part = varying[0] if len(varying) == 1 else Call("mul", varying)
    return Call("mul", kept + (Call("add", tuple(_renamed(part, h, g) for g in names)),))


def innermost(kernel: Kernel, sched: Schedule) -> str | None:
    """The index of a schedule's innermost loop (None for a BLAS call or no loops)."""
    if sched.gemm or not sched.order:
        return None
    if sched.block is not None:
        return sched.block[0]
    if sched.hoist:
        rest = [n for n in sched.order if n not in sched.hoist]
        return rest[-1]
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
        if kernel.work < POLICY.copy_min_work:
            return {}
        reuse = POLICY.copy_reuse
    if v is None or kernel.dynamic:
        return {}
    extent = kernel.extent
    found = {}
    for k in _gathered(kernel, input_strides, v):
        if k in sched.pack:  # copied into panels by the kernel itself
            continue
        op, strides = kernel.inputs[k], input_strides[k]
        if kernel.work < reuse * _product(extent[i] for i in op.indices):
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
    size = np.dtype(kernel.accumulate).itemsize * _product(kernel.extent[i]
                                                            for i in kernel.output_indices)
    return 1 + -(-64 // size)


def _into_partials(kernel: Kernel, sched: Schedule) -> bool:
    """Whether the kernel is a reduction run in chunks, each writing its own partial
    output (``out[slot, ...]``) for :func:`partials` to fold."""
    return bool(sched.threads) and sched.parallel in kernel.reduction_indices


def partials(nest: LoopNest) -> LoopNest | None:
    """For a reduction run in chunks (``threads`` with a reduction loop parallel): the
    loop nest that folds the chunks' partials (``a0[c, ...]``: one value, or with
    ``hoist`` one copy of the output, per chunk, in the accumulating dtype) into the
    output, with the reduction's operator; None for any other nest.

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> k = Kernel("k0", (Operand("a0", "float32", ("i",)),), Operand("out", "float32", ()),
    ...            (Index("i", 1 << 22),), product(1, (("i",),)), SUM, "float32")
    >>> print(partials(lower(k, schedule(k, ((1,),), (), threads=2))))
    k0p(a0[c]) -> out[]   [order c, serial]
        acc = float32(0)
        for c in range(2):
            acc = add(acc, a0[c])
        out[] = float32(acc)
    """
    k, sched = nest.kernel, nest.schedule
    if not _into_partials(k, sched):
        return None
    kept = k.output.indices
    part = "c" if "c" not in kept else "ck"  # labels are single letters
    size, slots = k.extent, sched.threads * partial_spread(k, sched)
    fold = Kernel(f"{k.name}p", (Operand("a0", k.accumulate, (part,) + kept),), k.output,
                  tuple(Index(i, size[i]) for i in kept) + (Index(part, slots),),
                  Load(0, (part,) + kept), k.reduce, k.accumulate)
    seen = dict(nest.views).get(k.output.name)  # (-1, the output's shape), if viewed
    return lower(fold, Schedule(kept + (part,)),
                 None if seen is None else {"a0": seen, k.output.name: seen[1:]})


def _block_start(prefix: str, n: int | Expr, size: int) -> tuple[tuple[Stmt, ...], int | Var]:
    """Inside ``for {prefix}b in range(ceil(n / size))``: the block's first index
    ``{prefix}0`` and its length (``size``, or ``{prefix}n`` when n is not known to be a
    multiple)."""
    first = f"{prefix}0"
    head: tuple[Stmt, ...] = (Let(first, Call("mul", (Var(f"{prefix}b"), Const(size)))),)
    if isinstance(n, int) and n % size == 0:
        return head, size
    count = Var(f"{prefix}n")
    total = _expr(n)
    return head + (Let(count.name, Call("min", (Const(size), Call("sub", (total, Var(first)))))),), count


def _chunked(kernel: Kernel, r: str, size: int, parallel: bool = False) -> tuple[Stmt, ...]:
    """The innermost reduction loop over ``r`` summed in chunks of ``size`` terms
    (``parallel``: the chunk loop is a ``prange``)::

        for rb in range(ceil(R / size)):
            r0 = rb * size; rn = min(size, R - r0)
            part = 0
            for tb in range(rn): r = r0 + tb; part += body
            acc += part
    """
    n = kernel.sizes[r]
    part, red = Var("part"), kernel.reduce
    head, count = _block_start("r", n, size)
    step = Loop(_T, count, (Let(r, Call("add", (Var("r0"), Var(_T)))),
                             Accumulate(part, red.op, kernel.body, kernel.accumulate)))
    body = head + (Init(part, kernel.accumulate, red.identity), step,
                   Accumulate(Var("acc"), red.op, part, kernel.accumulate))
    return (Loop("rb", _ceil_div(n, size), body, parallel),)


def _tiled(kernel: Kernel, u: str, v: str, size: int, body: tuple[Stmt, ...],
           parallel: bool, into: Accumulate | None = None) -> tuple[Stmt, ...]:
    """``body`` over ``u`` and ``v`` in ``size`` x ``size`` tiles::

        for pb in range(ceil(U / size)):          # prange when u was the parallel loop
            p0 = pb * size; pn = min(size, U - p0)
            for qb in range(ceil(V / size)):
                q0 = qb * size; qn = min(size, V - q0)
                for pt in range(pn): u = p0 + pt
                    for qt in range(qn): v = q0 + qt; body

    ``into``, in place of ``body``: a sum of terms into an accumulator (a reduction over
    both loops): each tile's terms are summed into a partial of their own, then added to
    it (one accumulator for all terms loses precision, see :func:`_in_partials`).
    """
    assert into is None or not body
    sizes = kernel.sizes
    head_u, count_u = _block_start("p", sizes[u], size)
    head_v, count_v = _block_start("q", sizes[v], size)
    if into is not None:
        part = Var("tsum")
        body = (Accumulate(part, into.op, into.value, into.dtype),)
    walk: Stmt = Loop("pt", count_u, (Let(u, Call("add", (Var("p0"), Var("pt")))),
                                      Loop("qt", count_v, (Let(v, Call("add", (Var("q0"), Var("qt")))),)
                                           + body)))
    tile: tuple[Stmt, ...] = (walk,)
    if into is not None:
        tile = (Init(part, into.dtype, kernel.reduce.identity), walk,
                Accumulate(into.acc, into.op, part, into.dtype))
    blocks_v = Loop("qb", _ceil_div(sizes[v], size), head_v + tile)
    return (Loop("pb", _ceil_div(sizes[u], size), head_u + (blocks_v,), parallel),)


def _unrolled(kernel: Kernel, sched: Schedule, outer: list[str], inner: list[str]
              ) -> tuple[Stmt, ...]:
    """Lowering for ``unroll = (v, n)``: n values of the innermost output index ``v`` per
    pass over the reductions, each in its own scalar accumulator; a plain loop finishes
    the last ``V mod n`` values::

        for vb in range(V // n):                  # prange when v is the parallel loop
            v0 = vb * n; w0 = v0 + 0; ...; w<n-1> = v0 + n - 1
            ac0 = ... = ac<n-1> = identity
            for r ...: ac<t> = op(ac<t>, body[v := w<t>])  for each t
            out[..., w<t>] = ac<t>                            for each t
        for vr in range(V mod n): v = V // n * n + vr; (the plain reduction)

    With ``sched.band = (u, T)`` both run inside ``for ub in range(ceil(U / T))`` and
    each value of ``u`` in the band inside the ``vb`` (and ``vr``) loop: the n operand
    rows of a ``vb`` block stay in cache for T values of ``u``.  With ``sched.rows = m``
    as well, the ``vb`` block takes m values of u at once (``h0 .. h<m-1>``, m x n
    accumulators ``ac<p>_<t>``), then the band's last ``count mod m`` values one by one.
    """
    v, n = sched.unroll  # type: ignore[misc]
    outer.remove(v)
    size = kernel.sizes[v]
    red, dtype = kernel.reduce, kernel.accumulate
    lanes = [f"w{t}" for t in range(n)]
    out = kernel.output

    def tile(rows: Sequence[str | None]) -> tuple[Stmt, ...]:
        """Accumulators for n values of v (and, with names in ``rows``, for each of
        those values of the band's index), the reductions, the stores."""
        u = sched.band[0] if sched.band else None
        cells = [(f"ac{t}" if len(rows) == 1 else f"ac{p}_{t}", lane, row)
                 for p, row in enumerate(rows) for t, lane in enumerate(lanes)]
        where = [{v: lane} | ({u: row} if row and u else {}) for _, lane, row in cells]
        steps = tuple(Accumulate(Var(acc), red.op, _renamed_all(kernel.body, names), dtype)
                      for (acc, _, _), names in zip(cells, where))
        stores = tuple(
            Store(Operand(out.name, out.dtype, tuple(names.get(ix, ix) for ix in out.indices)),
                  _store_cast(kernel, Var(acc), True))
            for (acc, _, _), names in zip(cells, where))
        inits = tuple(Init(Var(acc), dtype, red.identity) for acc, _, _ in cells)
        if _partials_pay(kernel, inner, steps):
            return inits + _in_partials(kernel, inner, steps) + stores
        return inits + _nest(inner, kernel, steps, None) + stores

    head = (Let("v0", Call("mul", (Var("vb"), Const(n)))),) + tuple(
        Let(lane, Call("add", (Var("v0"), Const(t)))) for t, lane in enumerate(lanes))
    band = sched.band
    if band is not None:
        outer.remove(band[0])
        head_u, count_u = _block_start("u", kernel.sizes[band[0]], band[1])

        def across_band(stmts: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
            at_u = Let(band[0], Call("add", (Var("u0"), Var("ut"))))
            return (Loop("ut", count_u, (at_u,) + stmts),)

        m = sched.rows
        if m > 1:
            # m values of u at once (h0 .. h<m-1>), then the band's last count mod m
            rows = [f"h{p}" for p in range(m)]
            pairs = (count_u // m if isinstance(count_u, int)
                     else Call("floordiv", (count_u, Const(m))))
            first = Call("add", (Var("u0"), Call("mul", (Var("ut"), Const(m)))))
            at_rows = tuple(Let(row, Call("add", (first, Const(p))))
                            for p, row in enumerate(rows))
            body = head + (Loop("ut", pairs, at_rows + tile(rows)),)
            done = pairs * m if isinstance(pairs, int) else Call("mul", (pairs, Const(m)))
            left = (count_u - done if isinstance(count_u, int)
                    else Call("sub", (count_u, done)))
            if not isinstance(left, int) or left:
                start_u = Call("add", (Var("u0"), Const(done) if isinstance(done, int)
                                       else done))
                at_u = Let(band[0], Call("add", (start_u, Var("ur"))))
                body += (Loop("ur", left, (at_u,) + tile([None])),)
        else:
            body = head + across_band(tile([None]))
    else:
        def across_band(stmts: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
            return stmts

        body = head + tile([None])
    full = size // n if isinstance(size, int) else Call("floordiv", (size, Const(n)))
    blocks = Loop("vb", full, body, sched.parallel == v)
    start = full * n if isinstance(full, int) else Call("mul", (full, Const(n)))
    rest_n = size - start if isinstance(size, int) else Call("sub", (size, start))
    acc = Var("acc")
    plain = (Init(acc, dtype, red.identity),)
    plain += _nest(inner, kernel, (Accumulate(acc, red.op, kernel.body, dtype),), None)
    plain += (Store(out, _store_cast(kernel, acc, True)),)
    plain = (Let(v, Call("add", (_expr(start), Var("vr")))),) + across_band(plain)
    loops: tuple[Stmt, ...] = (blocks,)
    if not isinstance(rest_n, int) or rest_n:  # parallel too when ``vb`` is
        loops += (Loop("vr", rest_n, plain, sched.parallel == v),)
    outer_parallel = sched.parallel if sched.parallel in outer else None
    if band is not None:
        u_blocks = Loop("ub", _ceil_div(kernel.sizes[band[0]], band[1]), head_u + loops,
                        sched.parallel == band[0])
        return _nest(outer, kernel, (u_blocks,), outer_parallel)
    return _nest(outer, kernel, loops, outer_parallel)


def _renamed_all(expr: Expr, names: dict[str, str]) -> Expr:
    """``expr`` with each index ``old`` of ``names`` read as ``names[old]``."""
    return map_loads(expr, lambda ld: Load(ld.operand,
                                           tuple(names.get(ix, ix) for ix in ld.indices)))


def _renamed(expr: Expr, old: str, new: str) -> Expr:
    """``expr`` with index ``old`` read as ``new`` in every load."""
    return _renamed_all(expr, {old: new})


def _store_cast(kernel: Kernel, value: Expr, reduced: bool) -> Expr:
    dtype = kernel.accumulate if reduced else _dtype_of(kernel.body, kernel)
    return value if dtype == kernel.output.dtype else Cast(value, kernel.output.dtype)


def _blocked(kernel: Kernel, sched: Schedule, outer: list[str], inner: list[str]
             ) -> tuple[Stmt, ...]:
    """Lowering for a blocked output index ``v``: for each block of ``size`` values of v,
    a local array of accumulators is reset, the reduction loops run with v innermost, and
    the block is stored::

        for vb in range(ceil(V / size)):
            v0 = vb * size; vn = min(size, V - v0)
            for tb in range(vn): acc[tb] = 0
            for r ...:                      # reduction loops
                for tb in range(vn): v = v0 + tb; acc[tb] += body
            for tb in range(vn): v = v0 + tb; out[..., v] = acc[tb]

    With ``sched.block_rows = (u, m)`` (a register tile), each pass takes m values of u
    (``h0 .. h<m-1>``, row p of the accumulators at ``acc[p * size + tb]``), the blocks
    are ``V // size`` whole ones and one of the last ``V mod size`` values, every length
    a constant, and the last ``U mod m`` values of u run one row at a time.  With
    ``sched.pack`` as well, the blocks of v run outermost, each first copying the packed
    inputs' values for it into their panels, then every value of u::

        for vb in range(V // size):               # then the last V mod size values
            v0 = vb * size
            for r ...: for tb in range(size): pk1[flat(r) * size + tb] = a1[..., v0 + tb]
            for ub in range(U // m): (the tile, reading pk1[flat(r) * size + tb])
            for ur in range(U mod m): (one row)
    """
    v, size = sched.block  # type: ignore[misc]
    outer.remove(v)
    n = kernel.sizes[v]
    red, out = kernel.reduce, kernel.output
    at_v = Let(v, Call("add", (Var("v0"), Var(_T))))

    def block(head: tuple[Stmt, ...], count: int | Var, rows: Sequence[dict[str, str]],
              panels: bool = False) -> tuple[Stmt, ...]:
        """One block of v (from ``v0``, ``count`` values), one row of accumulators per
        renaming of u in ``rows``; the packed inputs read from their panels."""
        accs = [Var("acc", Var(_T) if p == 0 else Call("add", (Const(p * size), Var(_T))))
                for p in range(len(rows))]
        body = kernel.body
        if panels:
            body = _from_panels(body, {k: Var(f"pk{k}", _panel_at(kernel, k, inner, count))
                                       for k in sched.pack})
        reset = Loop(_T, count, tuple(Init(acc, kernel.accumulate, red.identity)
                                      for acc in accs))
        step = Loop(_T, count, (at_v,) + tuple(
            Accumulate(acc, red.op, _renamed_all(body, names), kernel.accumulate)
            for acc, names in zip(accs, rows)))
        store = Loop(_T, count, (at_v,) + tuple(
            Store(Operand(out.name, out.dtype, tuple(names.get(ix, ix) for ix in out.indices)),
                  _store_cast(kernel, acc, True))
            for acc, names in zip(accs, rows)))
        return head + (reset,) + _nest(inner, kernel, (step,), None) + (store,)

    def blocks(rows: Sequence[dict[str, str]]) -> tuple[Stmt, ...]:
        """Every block of v: whole ones, then (tiled) a shorter last one; the length of
        each is a constant in a register tile, which LLVM keeps in registers."""
        if sched.block_rows is None:
            head, count = _block_start("v", n, size)
            return (Loop("vb", _ceil_div(n, size), block(head, count, rows),
                         sched.parallel == v),)
        whole, rest = divmod(n, size)  # type: ignore[operator]
        first = Let("v0", Call("mul", (Var("vb"), Const(size))))
        stmts: tuple[Stmt, ...] = (Loop("vb", whole, block((first,), size, rows)),)
        if rest:
            stmts += block((Let("v0", Const(whole * size)),), rest, rows)
        return stmts

    def fill(count: int) -> tuple[Stmt, ...]:
        """Copy this block of each packed input into its panel (see ``_panel_at``)."""
        stmts: tuple[Stmt, ...] = ()
        for k in sched.pack:
            op = kernel.inputs[k]
            panel = Operand(f"pk{k}", op.dtype, ("pi",))
            step = Loop(_T, count, (at_v, Let("pi", _panel_at(kernel, k, inner, count)),
                                    Store(panel, Load(k, op.indices))))
            stmts += _nest([r for r in inner if r in op.indices], kernel, (step,), None)
        return stmts

    m = 1
    panels: tuple[Stmt, ...] = ()
    if sched.block_rows is None:
        loops: tuple[Stmt, ...] = blocks([{}])
    else:  # m values of u at once (h0 .. h<m-1>), then the last U mod m one by one
        u, m = sched.block_rows
        outer.remove(u)
        full, left = divmod(kernel.extent[u], m)
        rows = [f"h{p}" for p in range(m)]
        first = Call("mul", (Var("ub"), Const(m)))
        at_rows = tuple(Let(row, Call("add", (first, Const(p)))) for p, row in enumerate(rows))
        at_u = Let(u, Call("add", (Const(full * m), Var("ur"))))

        def across_u(tile: Callable[[Sequence[dict[str, str]]], tuple[Stmt, ...]]
                     ) -> tuple[Stmt, ...]:
            stmts: tuple[Stmt, ...] = (Loop("ub", full, at_rows + tile([{u: r} for r in rows]),
                                            sched.parallel == u),)
            if left:
                stmts += (Loop("ur", left, (at_u,) + tile([{}]), sched.parallel == u),)
            return stmts

        if not sched.pack:
            loops = across_u(blocks)
        else:  # each block of v copied into the panels once, then every value of u
            whole, rest = divmod(n, size)  # type: ignore[operator]
            loops = (Loop("vb", whole, (Let("v0", Call("mul", (Var("vb"), Const(size)))),)
                          + fill(size) + across_u(lambda rs: block((), size, rs, True))),)
            if rest:
                loops += ((Let("v0", Const(whole * size)),) + fill(rest)
                          + across_u(lambda rs: block((), rest, rs, True)))
            panels = tuple(Alloc(f"pk{k}", kernel.inputs[k].dtype,
                                 _panel_elements(kernel, k, inner, size),
                                 _panel_bytes(kernel, k, inner, size) <= POLICY.stack_bytes)
                           for k in sched.pack)
    accs: tuple[Stmt, ...] = (Alloc("acc", kernel.accumulate, m * size,
                                    m * size * np.dtype(kernel.accumulate).itemsize
                                    <= POLICY.stack_bytes),)
    if sched.pack and sched.parallel == sched.block_rows[0]:  # type: ignore[index]
        # the panels shared by the parallel loops over u (filled before them), their
        # accumulators each loop's own
        return panels + _nest(outer, kernel, _each_own(loops, accs), None)
    allocs = panels + accs
    if sched.parallel is not None and sched.parallel not in outer:  # v, or u: each loop's
        return _nest(outer, kernel, _each_own(loops, allocs), None)  # own
    if sched.parallel is not None and outer and sched.parallel == outer[0]:
        inside = _nest(outer[1:], kernel, loops, None)
        return (Loop(outer[0], kernel.sizes[outer[0]], allocs + inside, True),)
    return allocs + _nest(outer, kernel, loops, None)


def _each_own(stmts: tuple[Stmt, ...], allocs: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """``stmts`` with ``allocs`` first in the body of each parallel loop among them (at
    any depth): each iteration of a ``prange`` has its own accumulators (and panels)."""
    out: list[Stmt] = []
    for s in stmts:
        if isinstance(s, Loop):
            s = replace(s, body=(allocs + s.body) if s.parallel else _each_own(s.body, allocs))
        out.append(s)
    return tuple(out)


def _panel_at(kernel: Kernel, k: int, inner: Sequence[str], count: int) -> Expr:
    """Where the element of input k for the block's value ``tb`` lies in its panel
    (``Schedule.pack``): the input's reduction indices in loop order, row-major, then
    the block's ``count`` values innermost."""
    at: Expr = Var(_T)
    stride = count
    for r in reversed([r for r in inner if r in kernel.inputs[k].indices]):
        at = Call("add", (Call("mul", (Var(r), Const(stride))), at))
        stride *= kernel.extent[r]
    return at


def _from_panels(expr: Expr, panels: dict[int, Var]) -> Expr:
    """``expr`` with each load of an input in ``panels`` read from its panel instead."""
    return map_loads(expr, lambda ld: panels.get(ld.operand, ld))


def _dtype_of(expr: Expr, kernel: Kernel) -> str:
    """The dtype a body expression evaluates to (loads in their operand's dtype)."""
    if isinstance(expr, Cast):
        return expr.dtype
    if isinstance(expr, Load):
        return kernel.inputs[expr.operand].dtype
    return kernel.accumulate
