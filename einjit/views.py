"""Canonical operand views: one axis per distinct label, no data copied.

Repeated labels in one operand (a diagonal, ``ii``) become one axis whose stride is the
sum of the repeated axes' strides; a size-1 axis that broadcasts against a larger extent
gets stride 0.  After this, every kernel operand is indexed by distinct labels at their
full extents, and the kernels need neither diagonal nor broadcasting logic.  A transposed
C-ordered array is seen with its axes in memory order, C-ordered again: Numba knows the
strides of a C-ordered array, and vectorises loops over it, but not over a transposed one.

>>> import numpy as np
>>> v, labels = canonical_view(np.arange(9.0).reshape(3, 3), ("i", "i"), {"i": 3})
>>> labels, v.tolist()
(('i',), [0.0, 4.0, 8.0])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["c_strides", "canonical_view", "coalesce", "f_strides", "memory_ordered",
           "permuted_view", "stride_rank", "transpose_to_c", "view_geometry"]


def canonical_view(array: np.ndarray, labels: tuple[str, ...],
                   extent: dict[str, int]) -> tuple[np.ndarray, tuple[str, ...]]:
    """A strided view of ``array`` with one axis per distinct label.

    The sizes were validated by :func:`einjit.parser.bind`, so every axis either has the
    label's extent or size 1 (broadcast), and repeated labels have equal sizes.
    """
    unique: list[str] = []
    strides: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for label, n, s in zip(labels, array.shape, array.strides):
        if label in strides:
            strides[label] += s
        else:
            unique.append(label)
            strides[label] = s
            sizes[label] = n
    if len(unique) == array.ndim and all(sizes[lb] == extent[lb] for lb in unique):
        return memory_ordered(array, tuple(unique))
    shape = tuple(extent[lb] for lb in unique)
    new_strides = tuple(0 if sizes[lb] != extent[lb] else strides[lb] for lb in unique)
    # Writeable when ``array`` is (kernels never write their inputs): Numba dispatches
    # on writeable arrays several microseconds faster than on read-only ones.
    return as_strided(array, shape, new_strides), tuple(unique)


def memory_ordered(array: np.ndarray, labels: tuple[str, ...]
                   ) -> tuple[np.ndarray, tuple[str, ...]]:
    """``array`` transposed into its memory order, with its labels, when that makes it
    C-ordered (it is a transposed C-ordered array); else both as they are.

    >>> a = np.zeros((2, 3, 4)).transpose(1, 0, 2)
    >>> v, labels = memory_ordered(a, ("i", "j", "k"))
    >>> labels, v.shape, v.flags.c_contiguous
    (('j', 'i', 'k'), (2, 3, 4), True)
    """
    flags = array.flags
    if array.ndim < 2 or flags.c_contiguous or flags.f_contiguous:
        return array, labels
    perm = transpose_to_c(array)
    if perm is None:
        return array, labels
    return array.transpose(perm), tuple(labels[k] for k in perm)


def transpose_to_c(array: np.ndarray) -> tuple[int, ...] | None:
    """The axis order in which ``array`` is C-ordered, or None when there is none."""
    perm = tuple(sorted(range(array.ndim), key=lambda k: -array.strides[k]))
    return perm if array.transpose(perm).flags.c_contiguous else None


def coalesce(views: Sequence[np.ndarray], labels: Sequence[tuple[str, ...]],
             extent: dict[str, int], keep: frozenset[str], apart: frozenset[str] = frozenset(),
             written: tuple[str, ...] = ()
             ) -> tuple[list[np.ndarray], list[tuple[str, ...]], dict[str, int]] | None:
    """Merge summed labels that always walk memory as one: ``p`` directly followed by
    ``q`` in every view that has either, with ``stride(p) == extent(q) * stride(q)``.

    The pair becomes one label ``p`` of extent ``extent(p) * extent(q)``, so a kernel
    runs one long loop instead of a nest whose inner loop may be too short to vectorise
    (``edc->`` over a C-ordered (1000, 64, 2) array: one loop of 128000).  Labels in
    ``keep`` (the output's) merge only with each other, and only where ``written`` (the
    order a new result lays them out in memory, slowest first) has ``q`` right after
    ``p``: that result is then written with one axis fewer and reshaped (``eba->ba``
    over a C array sums into one run of ``b * a`` outputs).  A label of ``apart``
    (dynamic ones) merges only with another of ``apart``, never an output one.  Returns
    the new views, labels and extents, or None when nothing merges.  No data is copied.

    >>> a = np.zeros((4, 3, 2))
    >>> vs, ls, ext = coalesce([a], [("e", "d", "c")], {"e": 4, "d": 3, "c": 2}, frozenset())
    >>> ls, vs[0].shape, ext
    ([('e',)], (24,), {'e': 24})
    """
    views, labels, extent = list(views), [tuple(t) for t in labels], dict(extent)
    written = tuple(written)

    def mergeable(p: str, q: str) -> bool:
        if (p in keep) != (q in keep) or (p in apart) != (q in apart) or 0 in (extent[p],
                                                                                extent[q]):
            return False
        if p in keep and (p in apart or p not in written
                          or written[written.index(p) + 1:written.index(p) + 2] != (q,)):
            return False
        for v, t in zip(views, labels):
            if (p in t) != (q in t):
                return False
            if p in t:
                i = t.index(p)
                if t[i + 1:i + 2] != (q,):
                    return False
                if 1 not in (extent[p], extent[q]) and (
                        v.strides[i] != extent[q] * v.strides[i + 1]):
                    return False
        return True

    merged = False
    while True:
        pair = next(((p, q) for t in labels for p, q in zip(t, t[1:]) if mergeable(p, q)),
                    None)
        if pair is None:
            break
        p, q = pair
        for k, (v, t) in enumerate(zip(views, labels)):
            if p in t:
                i = t.index(p)
                stride = v.strides[i] if extent[q] == 1 else v.strides[i + 1]
                views[k] = as_strided(v, v.shape[:i] + (extent[p] * extent[q],) + v.shape[i + 2:],
                                      v.strides[:i] + (stride,) + v.strides[i + 2:])
                labels[k] = t[:i + 1] + t[i + 2:]
        extent[p] *= extent.pop(q)
        written = tuple(lb for lb in written if lb != q)
        merged = True
    return (views, labels, extent) if merged else None


def stride_rank(array: np.ndarray) -> tuple[int, ...]:
    """Axes ordered from the largest absolute stride to the smallest (the layout class)."""
    strides = array.strides
    return tuple(sorted(range(array.ndim), key=lambda ax: (-abs(strides[ax]), ax)))


def view_geometry(shape: Sequence[int], strides: Sequence[int], labels: tuple[str, ...],
                  output: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shape and byte strides of the view ``labels -> output`` of an array with this
    shape and strides (repeated labels step along the diagonal: their strides add up)."""
    step: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for label, n, s in zip(labels, shape, strides):
        step[label] = step.get(label, 0) + s
        sizes[label] = n
    return tuple(sizes[lb] for lb in output), tuple(step[lb] for lb in output)


def permuted_view(array: np.ndarray, labels: tuple[str, ...], output: tuple[str, ...]) -> np.ndarray:
    """The view numpy.einsum returns for one operand without reduction (``ij->ji``, ``ii->i``).

    Writeable when ``array`` is, as numpy's.

    >>> a = np.arange(4.0).reshape(2, 2)
    >>> permuted_view(a, ("i", "i"), ("i",)).tolist()
    [0.0, 3.0]
    """
    shape, strides = view_geometry(array.shape, array.strides, labels, output)
    # Like numpy's own views, the result's base is the array that owns the memory.
    owner = array
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if owner.dtype.hasobject or owner.base is not None:
        return as_strided(array, shape, strides, writeable=array.flags.writeable)
    offset = array.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
    view = np.ndarray(shape, array.dtype, buffer=owner, offset=offset, strides=strides)
    if not array.flags.writeable and view.flags.writeable:
        view.flags.writeable = False
    return view


def c_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a C-ordered array of ``shape`` (size-0 axes count as 1)."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def f_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a Fortran-ordered array of ``shape`` (size-0 axes count as 1).

    >>> f_strides((2, 3, 4))
    (1, 2, 6)
    """
    return tuple(reversed(c_strides(tuple(shape)[::-1])))
