"""float16 operands and results, converted by einjit's own kernels.

Numba compiles no float16 arrays, so einjit computes float16 einsums in float32 (as
numpy's einsum does): each float16 operand is widened first and a float16 result is
rounded from float32 last.  numpy's ``astype`` takes about 1.7 ns an element each way
here (3.5 ms for 2^21 values, many times what the einsum itself then costs; 60 ns for
float32 values that are NaNs or subnormal halves); these kernels work on the bit
patterns with integer operations and selects, which LLVM vectorises (0.1-0.3 ns an
element), on einjit's worker threads for large arrays.  Exact: bit for bit what
``astype`` gives, zeros, subnormals, infinities and NaNs included.

>>> import numpy as np
>>> x = np.array([1.0, -2.5, 6.1e-05, 6e-08, np.inf, -0.0] * 2000, dtype=np.float16)
>>> widen(x).tolist() == x.astype(np.float32).tolist()
True
>>> widen(np.ones((3000, 4), np.float16, order="F")).flags.f_contiguous
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .codegen.vecmath import as_float, float_bits
from .schedule import thread_count
from .threads import Chunked
from .views import transpose_to_c

__all__ = ["narrow", "widen"]

#: Values from which the widening runs on threads (a memory-bound pass).
THREADS_FROM = 1 << 20
#: Values below which numpy's ``astype`` is quicker (this one's set-up: about 9 us).
KERNEL_FROM = 1 << 13


@njit(nogil=True, cache=True, error_model="numpy")
def _widen_part(src, dst, chunk, chunks):  # type: ignore[no-untyped-def]
    """Chunk ``chunk`` of ``chunks`` of the widening: ``src`` the float16 values' bits
    (uint16), ``dst`` their float32 values, both 1-D.  (In int32 and over slices: so
    LLVM vectorises it, 0.1 ns a value against 1.2 with uint32 bits and indices.)"""
    n = src.size
    lo, hi = n * chunk // chunks, n * (chunk + 1) // chunks
    part, into = src[lo:hi], dst[lo:hi]
    tiny = np.float32(2.0 ** -24)
    for k in range(part.size):
        h = np.int32(part[k])
        magnitude = h & 0x7FFF
        # the exponent rebiased from 15 to 127, the mantissa moved up 13 bits
        bits = np.int32((magnitude << 13) + 0x38000000)
        # infinities and NaNs: the exponent all ones again
        bits = np.int32(bits + 0x38000000) if magnitude >= 0x7C00 else bits
        # zeros and subnormals: the mantissa times 2^-24, exact in float32
        bits = np.int32(float_bits(np.float32(magnitude) * tiny)) if magnitude < 0x400 else bits
        into[k] = as_float(np.int32(bits | ((h & 0x8000) << 16)))


@njit(nogil=True, cache=True, error_model="numpy")
def _narrow_part(src, dst, chunk, chunks):  # type: ignore[no-untyped-def]
    """Chunk ``chunk`` of ``chunks`` of the narrowing: ``src`` float32 values, ``dst``
    the bits (uint16) of each rounded to the nearest float16, ties to even, as numpy
    rounds (NaNs keep the top bits of their payload, as numpy's do)."""
    n = src.size
    lo, hi = n * chunk // chunks, n * (chunk + 1) // chunks
    part, into = src[lo:hi], dst[lo:hi]
    half = as_float(np.int32(126 << 23))  # 0.5
    for k in range(part.size):
        f = np.int32(float_bits(part[k]))
        sign = (f >> 16) & 0x8000
        a = f & 0x7FFFFFFF
        # normal halves: the exponent rebiased, rounded to nearest even on the 13 bits
        # dropped (a carry into the exponent is right: it makes the next binade, or inf)
        o = np.int32((a - ((127 - 15) << 23) + 0xFFF + ((a >> 13) & 1)) >> 13)
        # subnormal halves and zero: adding 0.5 rounds the value to a multiple of 2^-24
        # (ties to even), whose bits then sit in the low mantissa bits
        small = np.int32(float_bits(as_float(np.int32(a)) + half)) - np.int32(126 << 23)
        o = np.int32(small) if a < (113 << 23) else o
        o = np.int32(0x7C00) if a >= ((127 + 16) << 23) else o  # too large: infinity
        nan = np.int32(0x7C00 + ((a & 0x7FFFFF) >> 13))
        nan = np.int32(0x7C01) if nan == 0x7C00 else nan  # a NaN stays a NaN
        o = nan if a > 0x7F800000 else o
        into[k] = np.uint16(o | sign)


def narrow(array: np.ndarray) -> np.ndarray:
    """``array`` (float32) rounded to float16 as ``astype(np.float16)`` rounds it, laid
    out as ``astype`` lays it out.

    >>> x = np.array([1.0, 1e-7, 65519.0, -3e-8, np.nan] * 2000, np.float32)
    >>> narrow(x).tobytes() == x.astype(np.float16).tobytes()
    True
    """
    if array.dtype != np.float32:
        raise TypeError(f"narrow takes a float32 array, not {array.dtype}")
    return _converted(array, np.float16, np.uint16, _narrow_part)


def widen(array: np.ndarray) -> np.ndarray:
    """A float32 copy of the float16 ``array``, laid out as ``astype`` lays it out
    (order ``"K"``: C, Fortran or permuted memory order kept, strides made dense)."""
    if array.dtype.char != "e":
        raise TypeError(f"widen takes a float16 array, not {array.dtype}")
    return _converted(array, np.float32, np.float32, _widen_part)


def _converted(array: np.ndarray, dtype: Any, written: Any, kernel: Any) -> np.ndarray:
    """``array.astype(dtype)``, by ``kernel`` (a chunked one: source, destination of
    ``written`` values, chunk, chunks) reading it flat in memory order."""
    if array.size < KERNEL_FROM or array.ndim == 0:
        return array.astype(dtype)
    # Seen in the axis order that makes it C-ordered (a copy in its memory order where
    # there is none: a slice, reversed axes), it converts as one flat run.
    perm = transpose_to_c(array)
    if perm is None:
        array = array.copy(order="K")
        perm = transpose_to_c(array)
        assert perm is not None  # (dense, positive strides)
    ordered = array.transpose(perm)
    src = ordered.reshape(-1)
    if src.dtype.char == "e":
        src = src.view(np.uint16)
    dst = np.empty(src.size, written)
    if src.size >= THREADS_FROM:
        Chunked(kernel, thread_count())(src, dst)
    else:
        kernel(src, dst, 0, 1)
    return dst.view(dtype).reshape(ordered.shape).transpose(np.argsort(perm))
