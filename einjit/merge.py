"""Merge a kernel's indices that walk memory as one: a pass from IR to IR.

A pair of indices ``p``, ``q`` that every array holds together, ``q`` right after ``p``
and ``stride(p) == extent(q) * stride(q)``, is one axis of extent ``extent(p) *
extent(q)``: the kernel does the same work over fewer, longer loops.  The call's
canonical form merges such labels of the whole einsum (``views.coalesce``); this pass
does it per kernel, where a step of a plan finds pairs the whole einsum did not (an
intermediate laid out so: ``dfa,cdeg,gebf->abc`` first sums ``cdeg,gebf->cdbf``, whose
``c,d`` and ``b,f`` merge into one matrix product of 405 x 125 by 125 x 600).

The GPU addresses every array flat (any strides merge); the CPU's kernels see the
arrays as views of the merged shape, so there an array whose memory is not C-ordered
(``fixed``) merges none of its indices.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product
>>> k = Kernel("k0", (Operand("a0", "float32", ("i", "j", "k")),
...                   Operand("a1", "float32", ("j", "k"))), Operand("out", "float32", ("i",)),
...            (Index("i", 8), Index("j", 4), Index("k", 3)),
...            product(2, (("i", "j", "k"), ("j", "k"))), SUM, "float32")
>>> merged, strides, groups = merge_indices(k, [(12, 3, 1), (3, 1), (1,)])
>>> print(merged)
kernel k0: out[i] = sum_j a0[i,j] * a1[j]   (i=8, j=12; accumulate float32)
>>> strides, groups
(((12, 1), (1,), (1,)), {'j': ('j', 'k')})
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from .ir import Index, Kernel, Load, Operand, loads, map_loads

__all__ = ["merge_indices", "c_ordered"]


def c_ordered(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether an array of ``shape`` with ``strides`` (in elements) is C-ordered, axes of
    one value (whatever their stride) aside, as numpy's ``C_CONTIGUOUS`` flag says.

    >>> c_ordered((4, 1, 3), (3, 99, 1)), c_ordered((4, 3), (1, 4))
    (True, False)
    """
    step = 1
    for n, st in zip(reversed(shape), reversed(strides)):
        if n == 1:
            continue
        if st != step:
            return False
        step *= n
    return True


def merge_indices(kernel: Kernel, strides: Sequence[Sequence[int]],
                  fixed: Sequence[bool] = ()) -> tuple[Kernel, tuple[tuple[int, ...], ...],
                                                       dict[str, tuple[str, ...]]]:
    """The same work over fewer indices, with each array's strides (``strides``: the
    inputs' then the output's, in elements) and, for each index of the new kernel that
    stands for several, the indices it merges (in memory order, slowest first).

    A pair ``p``, ``q`` (both output or both reduction indices) becomes the one index
    ``p`` when every array and every load has either neither or ``p`` directly followed
    by ``q``, with ``stride(p) == extent(q) * stride(q)``; an array ``fixed`` (same
    order as ``strides``) keeps its indices.  Kernels with a dynamic extent, or an
    extent of 0, are returned as they are.
    """
    extent = kernel.extent
    if kernel.dynamic or 0 in extent.values():
        return kernel, tuple(tuple(s) for s in strides), {}
    fixed = tuple(fixed) or (False,) * len(strides)
    arrays = [(op.indices, tuple(st)) for op, st in zip((*kernel.inputs, kernel.output), strides)]
    held = {x for (indices, _), f in zip(arrays, fixed) if f for x in indices}
    outs = set(kernel.output.indices)

    def follows(indices: tuple[str, ...], p: str, q: str) -> bool | None:
        """None: neither there; True: q right after p; False: otherwise."""
        if p not in indices and q not in indices:
            return None
        return p in indices and indices[indices.index(p) + 1:indices.index(p) + 2] == (q,)

    def mergeable(p: str, q: str) -> bool:
        if (p in outs) != (q in outs) or p in held or q in held:
            return False
        for indices, st in arrays:
            there = follows(indices, p, q)
            if there is False or (there and st[indices.index(p)]
                                  != extent[q] * st[indices.index(q)]):
                return False
        return all(follows(ld.indices, p, q) is not False for ld in loads(kernel.body))

    groups: dict[str, tuple[str, ...]] = {}
    while True:
        pair = next(((p, q) for indices, _ in arrays for p, q in pairwise(indices)
                     if mergeable(p, q)), None)
        if pair is None:
            break
        p, q = pair
        arrays = [(indices, st) if p not in indices else
                  (tuple(x for x in indices if x != q),
                   tuple(s for x, s in zip(indices, st) if x != p))
                  for indices, st in arrays]
        extent = {x: (n * extent[q] if x == p else n) for x, n in extent.items() if x != q}
        groups[p] = groups.get(p, (p,)) + groups.pop(q, (q,))
        kernel = _drop_index(kernel, p, q, extent)
    return kernel, tuple(st for _, st in arrays), groups


def _drop_index(kernel: Kernel, p: str, q: str, extent: dict[str, int]) -> Kernel:
    """``kernel`` with ``q`` folded into ``p`` (of the new ``extent``) everywhere."""
    def drop(indices: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(x for x in indices if x != q)

    return Kernel(kernel.name,
                  tuple(Operand(op.name, op.dtype, drop(op.indices)) for op in kernel.inputs),
                  Operand(kernel.output.name, kernel.output.dtype, drop(kernel.output.indices)),
                  tuple(Index(ix.name, extent[ix.name]) for ix in kernel.indices if ix.name != q),
                  map_loads(kernel.body, lambda ld: Load(ld.operand, drop(ld.indices))),
                  kernel.reduce, kernel.accumulate)
