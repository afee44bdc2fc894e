"""Matrix products: which kernels run as BLAS GEMM calls, how, and at what cost.

A kernel is GEMM-shaped when its body is the plain product of two operands summed
(:func:`gemm_roles` names its batch, row, column and summed index groups).  For one that
BLAS should run (:func:`use_gemm`), :func:`gemm_layout` picks the cheapest way to run it
as one batched product (a :class:`~einjit.ir.GemmLayout`: each group's order, which
operands are copied first and in what order, whether the product is written transposed
or copied into the result, and over how many threads its batch is split), by a cost
model in seconds: copies by how they read their input (:func:`_copy_s`), BLAS calls at
this machine class's measured rates.  The planner weighs steps and intermediates' layouts
with the same model (:func:`gemm_cost`).

>>> from einjit.ir import Index, Kernel, Operand, SUM, product
>>> k = Kernel("k0", (Operand("a0", "float64", ("i", "j")), Operand("a1", "float64", ("j", "k"))),
...            Operand("out", "float64", ("i", "k")),
...            (Index("i", 256), Index("j", 256), Index("k", 256)),
...            product(2, (("i", "j"), ("j", "k"))), SUM, "float64")
>>> gemm_roles(k)    # (batch, m, n, k)
((), ('i',), ('k',), ('j',))
>>> gemm_worthy(k), gemm_cost(k) < 1e-3
(True, True)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Sequence

import numpy as np

from . import policy
from .ir import Call, Cast, GemmLayout, Kernel, Load, Operand
from .merge import merge_indices
from .views import c_strides

__all__ = ["gemm_roles", "gemm_worthy", "gemm_cost", "use_gemm", "gemm_layout", "smallest_matrices",
           "c_ordered_strides"]

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
    if not use_gemm(kernel):
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


def use_gemm(kernel: Kernel) -> bool:
    if kernel.accumulate not in _BLAS_DTYPES or kernel.work < policy.POLICY.gemm_min_work:
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
    batch, m, n, k = (math.prod(extent[name] for name in group) for group in roles)
    # A batch of dot products (ij,ij->i) is one BLAS call per row: loops stream it.
    return k >= 8 and (m * n > 1 or batch == 1)


def gemm_cost(kernel: Kernel) -> float | None:
    """Seconds a matrix-matrix product (see :func:`gemm_worthy`) over C-ordered arrays
    takes as a BLAS call by the cost model of :func:`gemm_layout`, its copies included,
    or, where the scheduler may run it as loops (:func:`small_for_blas`), at least what
    the loops would; None for any other kernel (the planner weighs intermediates'
    layouts with it)."""
    if not gemm_worthy(kernel):
        return None
    inputs, output = c_ordered_strides(kernel)
    # as the scheduler sees it: indices that walk memory as one merged
    merged, strides, _ = merge_indices(kernel, [*inputs, output])
    layout, cost = gemm_layout(merged, strides[:-1], strides[-1], 1)
    if small_for_blas(merged, layout):  # the scheduler may run it as loops instead
        return max(cost, kernel.work * LOOP_TERM_S)
    return cost


def small_for_blas(kernel: Kernel, layout: GemmLayout, limit: int | None = None) -> bool:
    """Whether a GEMM-shaped kernel's products are small enough (``limit``, by default
    ``tile_gemm_max``, multiply-adds each) that a register tile of loops may beat
    BLAS: its matrices, or, where BLAS would copy an operand or the product, the
    smallest matrices its batch could split into (:func:`smallest_matrices`)."""
    extent = kernel.extent
    volume = math.prod(extent[g] for g in layout.m + layout.n + layout.k)
    least = smallest_matrices(kernel) if layout.copies else volume
    return min(volume, least) <= (policy.POLICY.tile_gemm_max if limit is None else limit)


def c_ordered_strides(kernel: Kernel) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """The strides of a kernel's inputs and output where all are C-ordered arrays."""
    extent = kernel.extent

    def strides(op: Operand) -> tuple[int, ...]:
        return c_strides([extent[name] for name in op.indices])

    return [strides(op) for op in kernel.inputs], strides(kernel.output)


# A term of a loop nest that streams its inputs, weighed against BLAS's modelled time
# (a gathered one costs ``schedule.GATHER_COST`` of them).
LOOP_TERM_S = 0.15e-9
# The GEMM cost model, in seconds: an operand's copy costs what ``_copy_s`` says, so
# does the product's copy into a result BLAS cannot write (``_copy_out``), and the
# product what ``_product_s`` says.
# A copy in the input's own memory order (a slice's rows, a Fortran-ordered or reversed
# array) streams: 1024 x 1024 float32 sliced [::2, ::2] from a Fortran-ordered array
# 0.31 ms so, 6.6 ms into C order (numpy; 13.5 against 0.6 GB/s); 16 x 24 x 16 x 256
# float32 permuted keeping its rows, 6.3 MB in 0.2 ms.  Each byte beyond the first 4 MB
# (the caches) at less than half that: 200^3 float32 (32 MB) copied as jik to run
# ijk,jr->ikr as one product rather than 200 took 10 ms in all against 6; 6, 8, 12 and
# 16 MB of float32 copied keeping their rows of 128: 0.44, 1.0, 2.0, 2.8 ms.
_STREAM_COPY_BPS, _CACHED_BYTES, _STREAM_FAR_BPS = 2e10, 1 << 22, 6e9
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
# Each run of numpy's inner loop (the innermost axes that nest in both arrays) costs
# about 8 ns more: rows of 4 to 32 float32 copied across a 2 MB array, 7.5 to 11.5 ns a
# row (a 2 MB float32 operand copied in rows of 32 within a GEMM: 0.4-0.6 ms, 0.1 ms by
# the bytes alone).
_COPY_RUN_S = 8e-9
# A copy split over the values of the output's innermost axes (``GemmLayout.peel``)
# costs about 2 us a part (two views and a call of numpy's copyto), and has at most 16.
_COPY_CALL_S, _MAX_PEEL = 2e-6, 16
# Every copy has a new buffer (an operand's copy, or the product a result is copied
# from) whose pages are first touched: 8 MB filled 0.63 ms new, 0.35 ms reused.
_FRESH_S_PER_BYTE = 3.5e-11
# BLAS as numpy's matmul runs it here (OpenBLAS, two threads), fitted to 1,650 timed
# products of 8 to 4096 rows and columns and 8 to 1024 terms, single or in stacks of
# 16 and 128 (``benchmarks/gemm_model.py``): an M x K by K x N product runs
# at the dtype's rate times M/(M+c) N/(N+c) K/(K+c), c = _GEMM_CORNER, each matrix of a
# stack costs _GEMM_MATRIX_S more and the call _GEMM_CALL_S; about 1.35x error (rms).  The
# earlier model (c = 24, 5 us a matrix, the rates of _THIN_FLOPS) put numpy's stacks at
# 2.4x their time in float32: it still prices products with a side under 8, which the fit
# did not cover and where loops often win (matrix-vector products, 3 x 17 by 17 x 64).
_GEMM_FLOPS = {"float32": 1.2e11, "float64": 6e10, "complex64": 3e10, "complex128": 1.5e10}
_GEMM_CORNER, _GEMM_MATRIX_S, _GEMM_CALL_S = 10, 1e-7, 2e-6
_THIN_FLOPS = {"float32": 2e11, "float64": 1e11, "complex64": 5e10, "complex128": 2.5e10}
_THIN_CORNER, _THIN_MATRIX_S = 24, 5e-6


def _product_s(dtype: str, m: int, n: int, k: int, batch: int) -> float:
    """Seconds numpy's matmul takes for ``batch`` products of m x k by k x n matrices."""
    fitted = min(m, n, k) >= 8
    corner = _GEMM_CORNER if fitted else _THIN_CORNER
    eff = 1.0
    for d in (m, n, k):
        eff *= d / (d + corner)
    rate = (_GEMM_FLOPS if fitted else _THIN_FLOPS)[dtype]
    return (2.0 * m * n * k * batch / (rate * eff)
            + (batch * _GEMM_MATRIX_S + _GEMM_CALL_S if fitted else batch * _THIN_MATRIX_S))


# The largest matrix-vector product OpenBLAS runs on one thread (2304 x its
# GEMM_MULTITHREAD_THRESHOLD of 4).
_GEMV_ONE_THREAD = 9216
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


def gemm_layout(kernel: Kernel, input_strides: Sequence[Sequence[int]],
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
            out_s, peel = (0.0, ()) if direct else _copy_out(kernel, batch + mo + no, so)
            cost = _product_s(kernel.accumulate, M, N, K, B) + copy_a_s + copy_b_s + out_s
            layout = GemmLayout(batch, mo, no, ko, (copy_a, copy_b), direct,
                                memory=(memory_a, memory_b), peel=peel)
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
            and each <= (_GEMV_ONE_THREAD if thin else policy.POLICY.gemm_split_max)
            and kernel.work >= policy.POLICY.parallel_min_work):
        layout = replace(layout, split=threads)
    return layout, cost


def smallest_matrices(kernel: Kernel) -> int:
    """Multiply-adds per matrix of the smallest products a GEMM-shaped kernel splits
    into: output indices of one operand only taken as batch indices (as
    :func:`gemm_layout` may take them) while rows and columns keep 8 values (or all
    they have).

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> k = Kernel("k", (Operand("a0", "float64", ("i", "j", "k")),
    ...                  Operand("a1", "float64", ("j", "l"))),
    ...            Operand("out", "float64", ("i", "l", "k")),
    ...            (Index("i", 64), Index("l", 16), Index("k", 64), Index("j", 32)),
    ...            product(2, (("i", "j", "k"), ("j", "l"))), SUM, "float64")
    >>> smallest_matrices(k)  # 64 values of k by 16 of l, 32 of j summed (i: batch)
    32768
    """
    roles = gemm_roles(kernel, casts=True)
    assert roles is not None
    extent = kernel.extent

    def least(group: Sequence[str]) -> int:
        sizes = [extent[name] for name in group]
        floor = min(8, math.prod(sizes))
        return min(math.prod(kept) for r in range(len(sizes) + 1)
                   for kept in itertools.combinations(sizes, r) if math.prod(kept) >= floor)

    return least(roles[1]) * least(roles[2]) * math.prod(extent[name] for name in roles[3])


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
    elements = math.prod(extent[name] for name in op.indices)
    step = abs(strides[live[-1]]) * np.dtype(op.dtype).itemsize if live else 0
    size = elements * np.dtype(kernel.accumulate).itemsize
    streamed = (min(size, _CACHED_BYTES) / _STREAM_COPY_BPS
                + max(0, size - _CACHED_BYTES) / _STREAM_FAR_BPS)
    # numpy's inner loop runs over the innermost axes whose strides nest in both arrays
    run = 1
    for inner, outer in zip(live[::-1], live[-2::-1] + [None]):
        run *= extent[inner]
        if outer is None or strides[outer] != strides[inner] * extent[inner]:
            break
    overhead = elements / run * _COPY_RUN_S + size * _FRESH_S_PER_BYTE
    rows = min(live, key=lambda name: abs(strides[name])) if live else None  # unit stride
    if rows is None or rows == live[-1]:  # along the input's rows: it streams
        return streamed + overhead
    lines = math.prod(extent[name] for name in live[live.index(rows) + 1:])
    each = (_L1_GATHER_S if lines <= _L1_LINES else _NEAR_GATHER_S if step < _NEAR_GATHER_BYTES
            else _L2_GATHER_S if lines <= _L2_LINES else _FAR_GATHER_S)
    return max(streamed, elements * each) + overhead


def _copy_out(kernel: Kernel, order: Sequence[str], output_strides: dict[str, int]
              ) -> tuple[float, tuple[str, ...]]:
    """Seconds numpy takes to copy a product, a C-ordered array of the accumulator's
    dtype whose axes run in ``order`` (batch, rows, columns), into the output, and the
    output's innermost axes the copy loops over (see :class:`GemmLayout`'s ``peel``).

    numpy walks the output in its memory order (:func:`_copy_s`): where the output's
    innermost axes are short and the product's rows run along another axis, each of
    their values is copied apart, so that the copy walks the product along its rows in
    long runs: ``dbe,bc->cde`` over 512 x 100 x 2 by 100 x 64 float32 copied its
    1024 x 64 product into the output laid out d, c, e in 323 us in one copy (runs of
    2), 36 us in two (runs of 64)."""
    extent = kernel.extent
    dynamic = {ix.name for ix in kernel.indices if ix.dynamic}
    strides = dict(zip(order, c_strides([extent[name] for name in order])))
    memory = sorted(kernel.output.indices, key=lambda name: -abs(output_strides[name]))
    live = [name for name in memory if extent[name] != 1]
    best: tuple[float, tuple[str, ...]] | None = None
    for cut in range(len(live)):
        peel = tuple(live[len(live) - cut:])
        copies = math.prod(extent[name] for name in peel)
        if copies > _MAX_PEEL or dynamic.intersection(peel):  # (a loop of known length)
            break
        product = Operand("z", kernel.accumulate, tuple(n for n in order if n not in peel))
        rest = [name for name in memory if name not in peel]
        cost = copies * (_copy_s(kernel, product, rest, strides) + (_COPY_CALL_S if peel else 0))
        if best is None or cost < best[0]:
            best = (cost, peel)
    assert best is not None
    return best
