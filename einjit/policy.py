"""The scheduler's thresholds: one :class:`Policy`, read by :mod:`einjit.schedule`,
:mod:`einjit.gemm` and :mod:`einjit.lower` as ``policy.POLICY`` at each use, so that tests
(and :mod:`einjit.numba_ext`, which plans steps for loops and BLAS apart) can swap it.

Setting ``POLICY`` calls the functions registered with :func:`on_change`: the call
signatures' launchers (:mod:`einjit.dispatch`) run plans made under the policy of their
first call, so they are dropped, and the next call plans under the new one.

>>> from einjit import policy
>>> policy.POLICY.unroll, policy.Policy(unroll=2).unroll
(4, 2)
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Callable

__all__ = ["Policy", "POLICY", "on_change"]

_LISTENERS: list[Callable[[], None]] = []


def on_change(fn: Callable[[], None]) -> Callable[[], None]:
    """Have ``fn()`` called whenever ``POLICY`` is set (a decorator)."""
    _LISTENERS.append(fn)
    return fn


class _PolicyModule(types.ModuleType):
    """This module, whose ``POLICY`` attribute tells :func:`on_change`'s functions when
    it is set (as ``monkeypatch.setattr`` and :mod:`einjit.numba_ext` set it)."""

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if name == "POLICY":
            for fn in _LISTENERS:
                fn()


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
    0.043 ms hoisted, with 1 MiB as the least it was not); of the output, the block
    inside the hoisted loops where output loops run around them (``Schedule.around``).
    ``expand_terms``: the most terms of a sum written out as one expression in the body
    (``Schedule.expand``; 0: none).  ``stack_bytes``: the largest local array of accumulators kept
    on the kernel's stack rather than the heap.  ``copy_reuse``, ``copy_min_work``: an
    input read at least ``copy_reuse`` times per element (on average) by a kernel of at
    least ``copy_min_work`` body evaluations, across its memory in the innermost loop,
    is read from a copy laid out along that loop (see :func:`einjit.schedule.copies`).
    ``tile_terms``: the accumulators of a register tile, rows of a narrow block
    (``Schedule.block_rows``; 0: none).  ``tile_gemm_max``: multiply-adds per matrix up
    to which a GEMM-shaped kernel runs as such a tile rather than BLAS;
    ``tile_gemm_fit_max`` the same for a tile, wide or narrow, whose sums and broadcast
    factors fit the vector registers (float32: see
    :func:`einjit.schedule._fits_registers`).  In one process against BLAS (its batch
    split over both threads): batches of 64^3 float32 products 0.75 of the time, of 32
    x 128 by 128 x 64 0.55-0.85, one 64^3 product 0.64; narrow tiles (16 to 56 values
    wide) 0.23-0.88 in 48 products of 2^16-2^18 multiply-adds, one process per case
    (256 of 48 x 48 by 48 x 48: 0.91 -> 0.50 ms).  Above 2^18 the tiles drew or
    lost (128^3 0.97-1.0, 256 x 64 by 64 x 256 1.1-1.4x slower, ``ijk,jl->ilk`` over
    128 x 256 x 128 by 256 x 64 1.3-2x); narrow tiles (8 values wide, 8 rows) were
    3.5-4x slower from 80000 multiply-adds, float64's spilled tiles 1.15-1.4x from 64^3.
    ``gemv_min_work``: multiply-adds below which a matrix-vector product or dot runs as
    loops (when they read every input along its runs) rather than a BLAS call;
    ``gemv_max_calls``: the most BLAS calls (one per product) a batch of them may take;
    a larger batch runs as loops, on the same condition.
    ``wide_tile_terms``, ``panel_bytes``: a wide block of accumulators runs as register
    tiles when its sums have at least ``wide_tile_terms`` terms and the block of each
    input the tile's rows share takes at most ``panel_bytes`` (see
    :func:`einjit.schedule._wide_tile`).
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
    expand_terms: int = 4
    copy_reuse: int = 8
    copy_min_work: int = 1 << 15
    tile_terms: int = 64
    tile_gemm_max: int = 1 << 16
    tile_gemm_fit_max: int = 1 << 18
    rows: int = 2
    contract: bool = True
    wide_tile_terms: int = 32
    panel_bytes: int = 1 << 18
    pack_rows: int = 64
    pack_bytes: int = 1 << 15


POLICY = Policy()


sys.modules[__name__].__class__ = _PolicyModule
