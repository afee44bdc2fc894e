"""Memory for results and intermediates: large buffers are reused once their arrays die.

A new large array gets its memory from the operating system a page at a time, as it is
first written: a page fault and 4 KiB of zeroing each, about 0.1-0.2 ms per MiB on a Xeon
of this machine class and 0.6 ms on an EPYC (4 ms for a 2048 x 2048 float64 result, a
fifth of the time its pairwise distances take).  The C library keeps freed memory for the
next request only up to a threshold (128 KiB to start with): three 256 KiB float32
matrices alive at once, as in a chain of matrix products, page-fault every call (0.5 ms
of ``ij,jk,kl,lm->im`` over 256 x 256 float32 on the EPYC, a third of it).  So results of
at least :data:`MIN_BYTES`, and intermediates (arrays a call makes and drops) of at least
:data:`MIN_STEP_BYTES`, come from buffers that go back to a pool when the last array
using them dies, as in PyTorch's caching allocator for GPU memory; the next array of the
same byte size takes one and writes to memory already mapped.  The pool keeps at most
:data:`LIMIT` bytes (a buffer freed beyond that goes back to the system);
``einjit.clear_cache()`` empties it.  Smaller arrays are ``numpy.empty``: taking a buffer
costs 2-4 us more, and one array at a time, as a result is in a loop of calls, reuses the
C library's freed memory up to about 1 MiB.

An array from the pool is an ordinary writeable, 64-byte aligned array, except that it
does not own its memory (``flags.owndata`` is False; its ``base`` is the pool's ``uint8``
buffer), so it cannot be resized in place.  Every view of it holds that buffer too, so
the pool knows a buffer is free when only the pool refers to it: :func:`empty` looks
among the buffers it lent (at most :data:`TRACKED`, the newest) when it finds none free
of the size it needs, which costs a reference count per buffer instead of a finaliser per
array.

>>> a = empty((512, 512), "float64")          # 2 MiB: from the pool
>>> a.shape, a.dtype, a.flags.writeable, a.ctypes.data % 64
((512, 512), dtype('float64'), True, 0)
>>> address = a.ctypes.data
>>> del a                                        # its buffer can return to the pool
>>> empty((1024, 256), "float64").ctypes.data == address   # same byte size: reused
True
>>> empty((4, 4), "float64").base is None        # small: numpy.empty
True
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LIMIT", "MIN_BYTES", "MIN_STEP_BYTES", "TRACKED", "clear", "empty", "pooled",
           "pooled_bytes"]

#: Results from this many bytes up come from the pool.
MIN_BYTES = 1 << 20
#: Intermediates from this many bytes up come from the pool.
MIN_STEP_BYTES = 1 << 16
#: The most bytes the pool keeps while no array uses them.
LIMIT = 1 << 29
#: The most lent buffers the pool watches for their arrays' death (older ones it forgets:
#: their memory goes back to the system with their last array, as numpy's does).
TRACKED = 64
_ALIGN = 64

# A buffer is (its array, the byte size it is lent for, the offset of its first 64-byte
# aligned byte).
_pool: dict[int, list[tuple[np.ndarray, int, int]]] = {}  # free buffers by byte size
_lent: list[tuple[np.ndarray, int, int]] = []  # oldest first
_pooled = 0
_lock = threading.RLock()  # re-entrant: a garbage collection inside empty() may run anything


def _references_when_free() -> int:
    """``sys.getrefcount`` of a lent buffer that only ``_lent`` holds (interpreters count
    the call's own argument differently)."""
    probe = [(np.empty(1, np.uint8), 1, 0)]
    return sys.getrefcount(probe[0][0])


_FREE = _references_when_free()


def empty(shape: Sequence[int], dtype: Any, least: int | None = None) -> np.ndarray:
    """An uninitialised C-ordered array, its memory from the pool when it takes at least
    ``least`` bytes (default :data:`MIN_BYTES`)."""
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    if nbytes < _threshold(least) or dtype.hasobject:
        return np.empty(shape, dtype)
    global _pooled
    with _lock:
        stack = _pool.get(nbytes)
        if not stack:
            _reclaim()
            stack = _pool.get(nbytes)
        if stack:
            buffer = stack.pop()
            _pooled -= nbytes
        else:
            raw = np.empty(nbytes + _ALIGN, np.uint8)
            buffer = (raw, nbytes, -raw.ctypes.data % _ALIGN)
        _lent.append(buffer)
        if len(_lent) > TRACKED:
            del _lent[0]
        # made under the lock: until the array holds the buffer, another thread's
        # _reclaim would count it free
        return np.ndarray(shape, dtype, buffer[0], buffer[2])


def _reclaim() -> None:
    """Move the lent buffers no array uses any more to the pool (``_lock`` held)."""
    global _pooled
    kept = []
    for buffer in _lent:
        if sys.getrefcount(buffer[0]) > _FREE:
            kept.append(buffer)
        elif _pooled + buffer[1] <= LIMIT:
            _pool.setdefault(buffer[1], []).append(buffer)
            _pooled += buffer[1]
    _lent[:] = kept


def pooled(shape: Sequence[int], dtype: Any, least: int | None = None) -> bool:
    """Whether :func:`empty` takes an array of this shape and dtype from the pool."""
    dtype = np.dtype(dtype)
    return not dtype.hasobject and dtype.itemsize * math.prod(shape) >= _threshold(least)


def _threshold(least: int | None) -> int:
    """The fewest bytes an array takes from the pool: ``least``, by default (read at
    each call) :data:`MIN_BYTES`."""
    return MIN_BYTES if least is None else least


def pooled_bytes() -> int:
    """Bytes the pool holds for later arrays (after taking back those no array uses)."""
    with _lock:
        _reclaim()
        return _pooled


def clear() -> None:
    """Give every pooled buffer back to the system."""
    global _pooled
    with _lock:
        _pool.clear()
        _lent.clear()
        _pooled = 0
