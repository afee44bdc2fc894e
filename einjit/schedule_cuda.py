"""GPU scheduling: map one planned :class:`~einjit.ir.Kernel` onto CUDA threads and blocks.

The planner's steps are the same as on the CPU; this module decides, per step, how the
kernel runs on the device, from its extents and the strides of its arrays.  Every
decision is a frozen dataclass with a text form (``str``) that tests pin and the
renderer (:mod:`einjit.codegen.cuda`) prints without deciding anything.

Three mappings, chosen by :func:`schedule_gpu`:

* :class:`ThreadPerOutput`: one thread per output element in a grid-stride loop; the
  output index with the smallest strides varies fastest across consecutive threads
  (coalesced loads and stores); each thread sums its reduction serially, loops ordered
  by falling stride.  Element-wise, outer products, column reductions.  Element-wise
  kernels of two or more output indices take a ``band`` of rows per thread instead: a
  block's threads cover a run of the fastest index, and each thread writes that column
  in ``band`` consecutive rows, reading what does not change along the rows once.
* :class:`BlockPerOutput`: a team of threads cooperates on each output element: the
  threads stride over the flattened reduction (its smallest-stride index fastest, so a
  warp reads consecutive memory) and combine partial sums with a tree in shared memory.
  A team is sized so that each thread sums ``team_terms`` terms or more (at least a
  warp); rows of ``short_rows`` to ``cooperate_min`` adjacent terms, which one thread
  each would read a cache line or more apart from its neighbours', get teams of
  ``short_team`` threads.  A block holds several teams when one is smaller than a
  block.  With few outputs and a long reduction, ``split`` blocks share one output:
  each writes a partial sum to a scratch buffer and a second kernel adds them.  Row
  reductions, full reductions (``i,i->``, ``ij,ij->``).  When the outputs, not the
  terms, are adjacent in memory and too few to give each a thread of its own, adjacent
  threads take adjacent outputs instead (``interleave``: column sums).
* :class:`TiledGemm`: GEMM-shaped sums of products (batch, m, n, k index groups; never
  another body or reduction, which run in the two mappings above) as a tiled
  matrix product: a block computes a ``tile_m x tile_n`` tile of the output, staging
  ``tile_k``-deep slices of both operands in shared memory (loaded cooperatively along
  each operand's contiguous axis), each thread accumulating a ``reg_m x reg_n``
  register block.

* :class:`LibraryGemm`: the same GEMM-shaped sums of products of float or complex
  operands, when the call's arrays come from a library with a matrix product (PyTorch
  and CuPy: cuBLAS; see :mod:`einjit.device_arrays`): strided views of the flat arrays,
  reshaped (the library copies where the groups do not merge) and multiplied by the
  library, written into the output directly when its m and n groups merge.

Arrays reach a kernel as flat 1-D device arrays; a :class:`Layout` gives the element
offset of index (0, ..., 0) and one stride per index (0 for a broadcast axis; repeated
labels were folded into a diagonal stride before planning).  Sizes and strides are
literals in the generated source.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product
>>> k = Kernel("k0", (Operand("a0", "float32", ("i", "j")), Operand("a1", "float32", ("i", "j"))),
...            Operand("out", "float32", ("i",)), (Index("i", 4096), Index("j", 1024)),
...            product(2, (("i", "j"), ("i", "j"))), SUM, "float32")
>>> print(schedule_gpu(k, (Layout(0, (1024, 1)), Layout(0, (1024, 1))), Layout(0, (1,))))
block per output: outputs i, 32 threads stride over j (8 outputs per block), tree in shared memory; grid 512 x 256 threads
>>> print(schedule_gpu(k, (Layout(0, (1, 4096)), Layout(0, (1, 4096))), Layout(0, (1,))))
block per output: outputs i, 8 threads stride over j (32 outputs per block, adjacent threads on adjacent outputs), tree in shared memory; grid 128 x 256 threads
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from itertools import pairwise

from . import merge
from .ir import Kernel
from .gemm import gemm_roles

__all__ = [
    "POLICY",
    "BlockPerOutput",
    "GpuSchedule",
    "Launch",
    "Layout",
    "LibraryGemm",
    "Mapping",
    "Policy",
    "ThreadPerOutput",
    "TiledGemm",
    "intermediate_layout",
    "merge_indices",
    "schedule_gpu",
    "set_policy",
]


@dataclass(frozen=True)
class Policy:
    """The GPU scheduler's thresholds (part of every compiled CUDA plan's key).

    ``threads``: threads per block of a thread-per-output kernel, rounded down to the
    output count in whole ``warp`` s.  ``reduce_threads``: threads cooperating on one
    output (a power of two).  ``cooperate_min``: reduction length from which a block
    cooperates on each output instead of one thread summing it (when the reduction has
    smaller strides than the outputs, or there are too few outputs to fill the device).
    ``fill_blocks``: blocks that keep every multiprocessor busy (an H100 or H200 has
    132; on an H200, 2048 blocks of partial sums read `ij,ij->` and `i,i,i->` 5-8 %
    faster than 1024).
    ``split_min``: reduction length from which few outputs split their reduction over
    several blocks; ``split_terms``: terms each thread should at least sum then.
    ``fill_threads``: threads that keep the device busy; fewer outputs than this whose
    memory is adjacent (and at least ``fill_blocks``) get interleaved teams.
    ``max_blocks``: the most blocks a grid-stride launch uses.  ``team_terms``: terms
    each thread of a cooperating team should sum at least, which sizes the team (at
    least a ``warp``) and so how many outputs share a block.  ``short_rows``: the
    shortest row of adjacent terms (shorter than ``cooperate_min``) that teams of
    ``short_team`` threads sum: on an H200, `ij->i` over 2^25 float32 with rows of 32,
    64 and 100 terms took 135, 136 and 81 us a thread per row, 50, 41 and 34 in teams
    of 8 (teams of 32: 186, 75, 54; `ij,ij->i` 269, 283, 264 -> 70, 65, 73); rows of 8
    and 16 stayed faster a thread each (37 and 68 us, teams of 4: 258 and 76).
    ``tile``: a GEMM block's ``(tile_m, tile_n, tile_k)``; ``reg``: each thread's
    ``(reg_m, reg_n)`` register block.  ``gemm_min``: the smallest m, n and k extents
    run as a tiled GEMM.
    ``band``: rows each thread of an element-wise kernel writes (1: a thread per element,
    flattened); an H200 wrote `i,j->ij` over 16384^2 float32 at 4.3 TB/s back to back
    in bands of 4 (2 and 8: 3.6 and 4.2), 2.8 flattened.
    ``library``: whether GEMM-shaped steps use the arrays' library's matrix product
    where the call's arrays have one (:class:`LibraryGemm`).  ``fuse_work``: a call of
    several operands whose whole loop nest (the product of all extents, times the
    operand count) is at most this runs as one kernel, not a path of pairwise steps:
    a launch costs more than such a path saves (``einjit.cuda``; not with an explicit
    ``optimize=``).
    Tests swap the policy (:func:`set_policy`) to drive every mapping at tiny sizes.
    """

    threads: int = 256
    warp: int = 32
    reduce_threads: int = 256
    cooperate_min: int = 128
    fill_blocks: int = 2048
    split_min: int = 1 << 15
    split_terms: int = 16
    fill_threads: int = 1 << 17
    max_blocks: int = 1 << 16
    fuse_work: int = 1 << 22
    team_terms: int = 32
    short_rows: int = 32
    short_team: int = 8
    tile: tuple[int, int, int] = (64, 64, 16)
    reg: tuple[int, int] = (4, 4)
    gemm_min: tuple[int, int, int] = (16, 16, 8)
    band: int = 4
    library: bool = True


POLICY = Policy()


def set_policy(policy: Policy) -> Policy:
    """Install ``policy`` for later schedules; returns the previous one."""
    global POLICY
    old, POLICY = POLICY, policy
    return old


@dataclass(frozen=True)
class Layout:
    """How a kernel addresses one array in a flat buffer: ``offset + sum(index * stride)``.

    >>> print(Layout(0, (4, 1)))
    offset 0, strides (4, 1)
    """

    offset: int
    strides: tuple[int, ...]

    def __str__(self) -> str:
        return f"offset {self.offset}, strides {self.strides}"


@dataclass(frozen=True)
class Launch:
    """A launch configuration: ``grid`` blocks of ``block`` threads (1-D; 0 blocks: no launch)."""

    grid: int
    block: int

    def __str__(self) -> str:
        return f"grid {self.grid} x {self.block} threads"


@dataclass(frozen=True)
class ThreadPerOutput:
    """One thread per output element, grid-stride loop over the flattened outputs.

    ``outputs`` are the output indices in thread order, slowest first (the last one is
    coalesced); ``loops`` the reduction loops, outermost first.  With ``band > 1`` (no
    reduction loops, two or more outputs) the grid strides over (row band, column
    run) pairs instead: a block's threads take ``launch.block`` consecutive values of
    the last output, and each thread writes them in ``band`` consecutive values of the
    other outputs, flattened; the loads that depend on none of those are read once.
    """

    outputs: tuple[str, ...]
    loops: tuple[str, ...]
    launch: Launch
    band: int = 1

    def __str__(self) -> str:
        fast = f" ({self.outputs[-1]} fastest)" if self.outputs else ""
        loops = f", serial loops {''.join(self.loops)}" if self.loops else ""
        band = (f", {self.band} rows of {''.join(self.outputs[:-1])} per thread"
                if self.band > 1 else "")
        return (f"thread per output: threads over {''.join(self.outputs) or '(scalar)'}{fast}"
                f"{loops}{band}; {self.launch}")


@dataclass(frozen=True)
class BlockPerOutput:
    """A block of ``threads`` threads per output element (``split`` blocks per element).

    ``outputs``: output indices in block order, slowest first; ``reduce``: reduction
    indices flattened in this order, the last one fastest across threads.  With
    ``split > 1`` the blocks write partial sums into a scratch buffer of
    ``outputs x split`` accumulators and ``finish`` (one block of ``threads`` per output)
    adds them.  With ``rows > 1`` (and no split) a block of ``threads x rows`` threads
    holds ``rows`` teams, each reducing its own output: short reductions keep every
    thread busy with several terms and the tree has fewer levels.  With ``interleave``
    consecutive threads take consecutive outputs and a team's threads lie ``rows``
    apart: for reductions whose outputs, not terms, are adjacent in memory (a warp then
    reads consecutive elements), too few to give each its own thread and fill the device.
    """

    outputs: tuple[str, ...]
    reduce: tuple[str, ...]
    threads: int
    split: int
    launch: Launch
    finish: Launch | None = None
    rows: int = 1
    interleave: bool = False

    def __str__(self) -> str:
        split = (f", {self.split} blocks per output into partial sums, then {self.finish}"
                 if self.split > 1 else "")
        rows = f" ({self.rows} outputs per block)" if self.rows > 1 else ""
        if self.interleave:
            rows = f" ({self.rows} outputs per block, adjacent threads on adjacent outputs)"
        return (f"block per output: outputs {''.join(self.outputs) or '(scalar)'}, "
                f"{self.threads} threads stride over {''.join(self.reduce)}{rows}, tree in "
                f"shared memory{split}; {self.launch}")


@dataclass(frozen=True)
class TiledGemm:
    """A tiled matrix product ``out[batch, m, n] = sum_k a[batch, m, k] * b[batch, k, n]``.

    Each group lists its indices in the order they merge into one axis (row-major).
    ``a_fast`` (``"m"`` or ``"k"``) and ``b_fast`` (``"k"`` or ``"n"``) name the tile
    axis consecutive threads load along (the operand's smaller stride: coalesced).
    """

    batch: tuple[str, ...]
    m: tuple[str, ...]
    n: tuple[str, ...]
    k: tuple[str, ...]
    tile: tuple[int, int, int]
    reg: tuple[int, int]
    a_fast: str
    b_fast: str
    launch: Launch

    def __str__(self) -> str:
        def g(x: tuple[str, ...]) -> str:
            return "".join(x) or "-"
        tm, tn, tk = self.tile
        return (f"tiled GEMM: batch {g(self.batch)}; m {g(self.m)}; n {g(self.n)}; "
                f"k {g(self.k)}; tiles {tm}x{tn}x{tk} in shared memory, {self.reg[0]}x"
                f"{self.reg[1]} per thread; a loaded along {self.a_fast}, b along "
                f"{self.b_fast}; {self.launch}")


@dataclass(frozen=True)
class LibraryGemm:
    """``out[batch, m, n] = sum_k a[batch, m, k] * b[batch, k, n]`` by the array
    library's batched matrix product (no kernel of einjit's: ``launch`` is empty).

    Groups list their indices in merge order (row-major, slowest first).  ``direct``:
    the output's m and n groups each merge into one strided axis, so the product is
    written in place; otherwise it is computed, then copied into the output's view.
    ``swap``: the output's m rows lie closer in memory than its n columns (``ba,bd->da``),
    so the library computes the transposed product, ``out^T = b^T a^T``, whose result is
    row-major there (PyTorch's and CuPy's products write only row-major results in place:
    others they compute apart and copy).
    """

    batch: tuple[str, ...]
    m: tuple[str, ...]
    n: tuple[str, ...]
    k: tuple[str, ...]
    direct: bool
    launch: Launch = Launch(0, 0)
    swap: bool = False

    def __str__(self) -> str:
        def g(x: tuple[str, ...]) -> str:
            return "".join(x) or "-"
        into = "in place" if self.direct else "then copied into the output"
        swap = ", as the transposed product b^T a^T" if self.swap else ""
        return (f"library GEMM (the arrays' matrix product, cuBLAS): batch {g(self.batch)}; "
                f"m {g(self.m)}; n {g(self.n)}; k {g(self.k)}; written {into}{swap}")


Mapping = ThreadPerOutput | BlockPerOutput | TiledGemm | LibraryGemm


@dataclass(frozen=True)
class GpuSchedule:
    """A kernel's mapping onto the device plus the layouts of its arrays."""

    mapping: Mapping
    inputs: tuple[Layout, ...]
    output: Layout

    @property
    def scratch(self) -> int:
        """Accumulators of scratch memory the launch needs (partial sums), or 0."""
        m = self.mapping
        if isinstance(m, BlockPerOutput) and m.split > 1:
            # one per (output, split) pair: the grid covers them exactly, or with
            # interleaved teams ``rows`` outputs per block (the last block's spares too)
            return m.launch.grid * (m.rows if m.interleave else 1)
        return 0

    def __str__(self) -> str:
        return str(self.mapping)


def _pow2_floor(n: int) -> int:
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


def _pow2_ceil(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _count(names: Sequence[str], extent: dict[str, int]) -> int:
    n = 1
    for name in names:
        n *= extent[name]
    return n


def schedule_gpu(kernel: Kernel, inputs: Sequence[Layout], output: Layout,
                 policy: Policy | None = None, library: bool = False) -> GpuSchedule:
    """Decide how ``kernel`` runs on the device (see the module docstring for examples).

    ``library``: the call's arrays come from a library with a matrix product (see
    :mod:`einjit.device_arrays`), which GEMM-shaped float and complex steps then use.
    """
    p = POLICY if policy is None else policy
    extent = kernel.extent
    cost = {ix.name: 0 for ix in kernel.indices}
    for op, lay in zip(kernel.inputs, inputs):
        for name, s in zip(op.indices, lay.strides):
            cost[name] += abs(s)
    out_stride = dict(zip(kernel.output.indices, output.strides))
    position = {ix.name: k for k, ix in enumerate(kernel.indices)}

    def by_stride(names: Sequence[str]) -> tuple[str, ...]:
        # Largest input stride first (outermost), ties by output stride then equation order.
        return tuple(sorted(names, key=lambda n: (-cost[n], -abs(out_stride.get(n, 0)),
                                                  position[n])))

    outputs = by_stride(kernel.output_indices)
    reduce = by_stride(kernel.reduction_indices)
    n_out = _count(outputs, extent)
    n_red = _count(reduce, extent)
    layouts = (tuple(inputs), output)

    gemm = _library_gemm(kernel, inputs, output, p) if library and p.library else None
    if gemm is None:
        gemm = _tiled_gemm(kernel, inputs, output, p, n_out)
    if gemm is not None:
        return GpuSchedule(gemm, *layouts)
    # Whether the terms' rows lie apart and the outputs are adjacent in memory (else the
    # terms of a row are adjacent).
    rows_apart = bool(outputs and reduce) and cost[reduce[-1]] >= cost[outputs[-1]]
    # Rows of adjacent terms too short for a warp each, too long for a thread each.
    short = (bool(outputs and reduce) and not rows_apart
             and max(p.short_rows, 2) <= n_red < p.cooperate_min)
    cooperate = n_out and (n_red >= max(p.cooperate_min, 2) or short)
    # adjacent threads on adjacent outputs
    adjacent = cooperate and rows_apart
    if adjacent and n_out < p.fill_threads:
        interleaved = _interleaved(outputs, reduce, n_out, n_red, p)
        if interleaved is not None:
            return GpuSchedule(interleaved, *layouts)
    if cooperate and (not outputs or not adjacent or n_out < p.fill_blocks):
        threads = min(p.reduce_threads, _pow2_floor(n_red))
        split = 1
        if n_out < p.fill_blocks and n_red >= p.split_min:
            split = max(1, min(_ceil_div(p.fill_blocks, n_out),
                               n_red // (threads * p.split_terms)))
        if split > 1:
            grid = n_out * split
            finish = Launch(min(n_out, p.max_blocks),
                            min(p.reduce_threads, _pow2_floor(split)))
            mapping: Mapping = BlockPerOutput(outputs, reduce, threads, split,
                                              Launch(grid, threads), finish)
        else:
            least = min(p.short_team, p.warp) if short else p.warp
            team = min(threads, max(least, _pow2_floor(max(1, n_red // p.team_terms))))
            rows = min(threads // team, _pow2_ceil(n_out))
            mapping = BlockPerOutput(outputs, reduce, team, 1,
                                     Launch(min(_ceil_div(n_out, rows), p.max_blocks),
                                            team * rows), rows=rows)
        return GpuSchedule(mapping, *layouts)
    inner = extent[outputs[-1]] if outputs else 0
    n_rows = n_out // inner if inner else 0
    if not reduce and p.band > 1 and inner >= p.warp and n_rows > 1:
        band = min(p.band, n_rows)
        block = min(p.threads, _ceil_div(inner, p.warp) * p.warp)
        groups = _ceil_div(inner, block) * _ceil_div(n_rows, band)
        return GpuSchedule(ThreadPerOutput(outputs, reduce,
                                           Launch(min(groups, p.max_blocks), block), band),
                           *layouts)
    block = min(p.threads, max(p.warp, _ceil_div(n_out, p.warp) * p.warp))
    grid = min(_ceil_div(n_out, block), p.max_blocks)
    return GpuSchedule(ThreadPerOutput(outputs, reduce, Launch(grid, block)), *layouts)


def merge_indices(kernel: Kernel, inputs: Sequence[Layout], output: Layout
                  ) -> tuple[Kernel, tuple[Layout, ...], Layout]:
    """The same work over fewer indices (:func:`einjit.merge.merge_indices`, every array
    addressed flat, so any strides merge), with the arrays' new layouts.

    A pass from IR to IR, run before :func:`schedule_gpu`: a kernel then derives fewer
    indices from each flat thread or term number (``ij,ij->`` over C arrays sums one
    index, not two: no division per term).  Kernels with a dynamic extent are left alone.

    >>> from einjit.ir import Index, Operand, SUM, product
    >>> k = Kernel("k0", (Operand("a0", "float32", ("i", "j")),), Operand("out", "float32", ()),
    ...            (Index("i", 8), Index("j", 4)), product(1, (("i", "j"),)), SUM, "float32")
    >>> merged, ins, out = merge_indices(k, (Layout(0, (4, 1)),), Layout(0, ()))
    >>> print(merged, ins[0], sep="; ")
    kernel k0: out[] = sum_i a0[i]   (i=32; accumulate float32); offset 0, strides (1,)
    """
    arrays = (*inputs, output)
    merged, strides, groups = merge.merge_indices(kernel, [lay.strides for lay in arrays])
    if not groups:
        return kernel, tuple(inputs), output
    layouts = tuple(Layout(lay.offset, st) for lay, st in zip(arrays, strides))
    return merged, layouts[:-1], layouts[-1]


def _row_major(order: Sequence[str], names: Sequence[str], extent: dict[str, int]) -> Layout:
    """The layout of a new array over ``names`` whose axes lie in memory in ``order``
    (slowest first)."""
    strides, step = {}, 1
    for name in reversed(order):
        strides[name] = step
        step *= extent[name]
    return Layout(0, tuple(strides[name] for name in names))


def intermediate_layout(kernel: Kernel, inputs: Sequence[Layout], policy: Policy | None = None,
                        library: bool = False) -> Layout:
    """The layout of a step's result that only later steps read (the scheduler's to
    choose): row-major in the kernel's output order, unless the step is a library GEMM
    that could not write that in place; then row-major in (batch, m, n) order, which it
    can (``bn,nam,bm->ba`` with a short ``m``: the product ``b x am`` is not copied into
    an ``a, b, m`` intermediate, and ``a`` would batch matrices of too few columns).

    >>> from einjit.ir import Index, Operand, SUM, product
    >>> k = Kernel("k0", (Operand("a0", "float32", ("b", "n")),
    ...                   Operand("a1", "float32", ("n", "a", "m"))),
    ...            Operand("out", "float32", ("a", "b", "m")),
    ...            (Index("a", 64), Index("b", 128), Index("m", 8), Index("n", 64)),
    ...            product(2, (("b", "n"), ("n", "a", "m"))), SUM, "float32")
    >>> ins = (Layout(0, (64, 1)), Layout(0, (512, 8, 1)))
    >>> print(intermediate_layout(k, ins), intermediate_layout(k, ins, library=True), sep="; ")
    offset 0, strides (1024, 8, 1); offset 0, strides (8, 512, 1)
    """
    extent = kernel.extent
    names = kernel.output.indices
    plain = _row_major(names, names, extent)
    if not library:
        return plain
    gemm = schedule_gpu(kernel, inputs, plain, policy, library=True).mapping
    if not isinstance(gemm, LibraryGemm) or gemm.direct:
        return plain
    chosen = _row_major((*gemm.batch, *gemm.m, *gemm.n), names, extent)
    again = schedule_gpu(kernel, inputs, chosen, policy, library=True).mapping
    return chosen if isinstance(again, LibraryGemm) and again.direct else plain


def _interleaved(outputs: tuple[str, ...], reduce: tuple[str, ...], n_out: int, n_red: int,
                 p: Policy) -> BlockPerOutput | None:
    """Adjacent outputs, each too long a sum for one thread: a warp's worth of adjacent
    outputs per block (fewer when there are fewer), a team of threads on each, ``rows``
    apart; when such groups of outputs are too few to fill the device, each output's
    terms split over several blocks as well.  None when a team would be one thread."""
    rows = min(p.threads, p.warp, _pow2_ceil(n_out))
    groups = _ceil_div(n_out, rows)
    team = p.threads // rows
    if groups < p.fill_blocks and n_red >= p.split_min:
        split = min(_ceil_div(p.fill_blocks, groups), n_red // (team * p.split_terms))
        if split > 1:
            finish = Launch(min(n_out, p.max_blocks), min(p.reduce_threads, _pow2_floor(split)))
            return BlockPerOutput(outputs, reduce, team, split, Launch(groups * split, team * rows),
                                  finish, rows=rows, interleave=True)
    team = min(team, _pow2_floor(max(1, p.fill_threads // n_out)),
               _pow2_floor(max(1, n_red // p.team_terms)))
    if team < 2:
        return None
    return BlockPerOutput(outputs, reduce, team, 1, Launch(min(groups, p.max_blocks), team * rows),
                          rows=rows, interleave=True)


_LIBRARY_DTYPES = ("float32", "float64", "complex64", "complex128")


def _gemm_groups(kernel: Kernel, inputs: Sequence[Layout], output: Layout, p: Policy
                 ) -> tuple[tuple[str, ...], ...] | None:
    """``(batch, m, n, k)``, each group in merge order (largest strides first), when the
    kernel sums the product of two operands with m, n and k extents of at least
    ``p.gemm_min`` each, else None."""
    if kernel.reduce.op != "add":  # matrix products multiply-add: other folds never do
        return None
    roles = gemm_roles(kernel)
    if roles is None:
        return None
    extent = kernel.extent
    batch, m, n, k = roles
    M, N, K = (_count(g, extent) for g in (m, n, k))
    if M < p.gemm_min[0] or N < p.gemm_min[1] or K < p.gemm_min[2]:
        return None
    sa = dict(zip(kernel.inputs[0].indices, inputs[0].strides))
    sb = dict(zip(kernel.inputs[1].indices, inputs[1].strides))
    so = dict(zip(kernel.output.indices, output.strides))

    def order(group: Sequence[str], *strides: dict[str, int]) -> tuple[str, ...]:
        return tuple(sorted(group, key=lambda g: -sum(abs(s.get(g, 0)) for s in strides)))

    return order(batch, so, sa, sb), order(m, sa, so), order(n, sb, so), order(k, sa, sb)


def _merges(group: Sequence[str], strides: dict[str, int], extent: dict[str, int]) -> bool:
    """Whether the group's axes, in this order, walk memory as one strided axis."""
    return all(strides[a] == strides[b] * extent[b] for a, b in pairwise(group))


def _library_gemm(kernel: Kernel, inputs: Sequence[Layout], output: Layout, p: Policy
                  ) -> LibraryGemm | None:
    """A :class:`LibraryGemm` for a GEMM-shaped float or complex step whose arrays all
    have the accumulator's dtype and no negative stride (library views cannot walk
    backwards), else None."""
    dtypes = {op.dtype for op in kernel.inputs} | {kernel.output.dtype, kernel.accumulate}
    if len(dtypes) != 1 or kernel.accumulate not in _LIBRARY_DTYPES:
        return None
    if any(s < 0 for lay in (*inputs, output) for s in lay.strides):
        return None
    groups = _gemm_groups(kernel, inputs, output, p)
    if groups is None:
        return None
    batch, m, n, k = groups
    extent = kernel.extent
    so = dict(zip(kernel.output.indices, output.strides))
    sa = dict(zip(kernel.inputs[0].indices, inputs[0].strides))
    sb = dict(zip(kernel.inputs[1].indices, inputs[1].strides))
    # An m (n) group its operand cannot walk as one axis would be copied by the library:
    # its leading indices become batch indices instead (the other operand broadcasts
    # over them), as long as the rest still makes matrices of at least a tile's rows
    # and the broadcast, which PyTorch's product materialises, is smaller than the copy
    # (ijk,jr->ikr over 512^3: 512 x 512 x 64 values, not a 512^3 permutation; ced,acb
    # over 150 x 8 x 125 by 75 x 150 x 150: a copy of acb, not 75 x 150 x 1000 values).
    size_a, size_b = (_count(op.indices, extent) for op in kernel.inputs)
    m, to_batch = _batched(m, sa, so, extent, p.tile[0], size_a / max(size_b, 1))
    batch += to_batch
    n, to_batch = _batched(n, sb, so, extent, p.tile[1], size_b / max(size_a, 1))
    batch += to_batch
    direct = _merges(m, so, extent) and _merges(n, so, extent)
    swap = direct and bool(m and n) and abs(so[m[-1]]) < abs(so[n[-1]])
    return LibraryGemm(batch, m, n, k, direct, swap=swap)


def _batched(group: tuple[str, ...], strides: dict[str, int], out: dict[str, int],
             extent: dict[str, int], least: int, most: float
             ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(rest, leading)``: the group without its shortest prefix after which it merges
    in both its operand and the output, when the rest spans ``least`` or more and the
    prefix fewer than ``most`` values (the other operand is broadcast over them); else
    the whole group and ``()``."""
    for cut in range(len(group)):
        rest = group[cut:]
        if _merges(rest, strides, extent) and _merges(rest, out, extent):
            if cut and _count(rest, extent) >= least and _count(group[:cut], extent) < most:
                return rest, group[:cut]
            break
    return group, ()


def _tiled_gemm(kernel: Kernel, inputs: Sequence[Layout], output: Layout, p: Policy,
                n_out: int) -> TiledGemm | None:
    """A :class:`TiledGemm` when the kernel sums the product of two operands with m, n
    and k extents of at least ``p.gemm_min`` each, else None."""
    groups = _gemm_groups(kernel, inputs, output, p) if n_out else None
    if groups is None:
        return None
    extent = kernel.extent
    bo, mo, no, ko = groups
    M, N = _count(mo, extent), _count(no, extent)
    sa = dict(zip(kernel.inputs[0].indices, inputs[0].strides))
    sb = dict(zip(kernel.inputs[1].indices, inputs[1].strides))
    a_fast = "m" if abs(sa[mo[-1]]) < abs(sa[ko[-1]]) else "k"
    b_fast = "n" if abs(sb[no[-1]]) < abs(sb[ko[-1]]) else "k"
    tm, tn, _ = p.tile
    rm, rn = p.reg
    tiles = _count(bo, extent) * _ceil_div(M, tm) * _ceil_div(N, tn)
    launch = Launch(min(tiles, p.max_blocks), (tm // rm) * (tn // rn))
    return TiledGemm(bo, mo, no, ko, p.tile, p.reg, a_fast, b_fast, launch)

