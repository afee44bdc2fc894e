"""Memory for results and intermediates: large buffers are reused once their arrays die.

A new large array gets its memory from the operating system a page at a time, as it is
first written: a page fault and 4 KiB of zeroing each, about 0.1-0.2 ms per MiB on this
machine class (4 ms for a 2048 x 2048 float64 result, a fifth of the time its pairwise
distances take).  So arrays of at least :data:`MIN_BYTES` come from buffers that go back
to a pool when the last array using them dies, as in PyTorch's caching allocator for GPU
memory; the next array of the same byte size takes one and writes to memory already
mapped.  The pool keeps at most :data:`LIMIT` bytes (a buffer freed beyond that goes back
to the system); ``einjit.clear_cache()`` empties it.  Smaller arrays are ``numpy.empty``.

An array from the pool is an ordinary writeable, 64-byte aligned array, except that it
does not own its memory (``flags.owndata`` is False; its ``base`` is a small lease
object), so it cannot be resized in place.

>>> a = empty((512, 512), "float64")          # 2 MiB: from the pool
>>> a.shape, a.dtype, a.flags.writeable, a.ctypes.data % 64
((512, 512), dtype('float64'), True, 0)
>>> address = a.ctypes.data
>>> del a                                        # its buffer returns to the pool
>>> empty((1024, 256), "float64").ctypes.data == address   # same byte size: reused
True
>>> type(empty((4, 4), "float64").base)         # small: numpy.empty
<class 'NoneType'>
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LIMIT", "MIN_BYTES", "clear", "empty", "pooled", "pooled_bytes"]

#: Arrays from this many bytes up come from the pool.
MIN_BYTES = 1 << 20
#: The most bytes the pool keeps while no array uses them.
LIMIT = 1 << 29
_ALIGN = 64

_pool: dict[int, list[np.ndarray]] = {}
_pooled = 0
# Re-entrant: a garbage collection inside ``empty`` may release a buffer in this thread.
_lock = threading.RLock()


class _Lease:
    """What a pooled array's memory belongs to: numpy keeps it as the array's ``base``,
    and the buffer goes back to the pool when the lease dies (after every view)."""

    __slots__ = ("__array_interface__", "__weakref__", "raw")

    def __init__(self, raw: np.ndarray, address: int, shape: tuple[int, ...],
                 dtype: np.dtype) -> None:
        self.raw = raw
        self.__array_interface__ = {"shape": shape, "typestr": dtype.str,
                                    "descr": dtype.descr, "data": (address, False),
                                    "version": 3}


def empty(shape: Sequence[int], dtype: Any) -> np.ndarray:
    """An uninitialised C-ordered array, its memory from the pool when large."""
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    if nbytes < MIN_BYTES or dtype.hasobject:
        return np.empty(shape, dtype)
    shape = tuple(int(n) for n in shape)
    global _pooled
    raw = None
    with _lock:
        stack = _pool.get(nbytes)
        if stack:
            raw = stack.pop()
            _pooled -= nbytes
    if raw is None:
        raw = np.empty(nbytes + _ALIGN, np.uint8)
    address = raw.__array_interface__["data"][0]
    lease = _Lease(raw, address + (-address) % _ALIGN, shape, dtype)
    weakref.finalize(lease, _release, raw, nbytes).atexit = False
    return np.asarray(lease)


def _release(raw: np.ndarray, nbytes: int) -> None:
    global _pooled
    with _lock:
        if _pooled + nbytes <= LIMIT:
            _pool.setdefault(nbytes, []).append(raw)
            _pooled += nbytes


def pooled(shape: Sequence[int], dtype: Any) -> bool:
    """Whether :func:`empty` takes an array of this shape and dtype from the pool."""
    dtype = np.dtype(dtype)
    return not dtype.hasobject and dtype.itemsize * math.prod(shape) >= MIN_BYTES


def pooled_bytes() -> int:
    """Bytes the pool holds for later arrays."""
    return _pooled


def clear() -> None:
    """Give every pooled buffer back to the system."""
    global _pooled
    with _lock:
        _pool.clear()
        _pooled = 0
