"""numpy's dtype rules for einsum, and the dtypes einjit computes in.

* :func:`result_dtype` applies numpy's promotion, ``dtype=`` and ``casting=`` rules.
* :class:`Arithmetic` says how a result dtype is computed: the dtype of intermediates, the
  dtype reductions accumulate in, and whether Numba can compile it at all.

Accumulation follows numpy's results exactly: integers accumulate in their own width, or
32 bits for narrower ones, and are truncated on the store (wrap-around is the same modulo
2**bits as numpy's, which computes in the result's dtype); booleans sum
products as integers and store ``acc != 0`` (logical or of logical and); float16 computes
in float32, as numpy's einsum does, and rounds once at the end.

>>> arithmetic(np.dtype("int8")).accumulate, arithmetic(np.dtype("uint64")).accumulate
('int32', 'uint64')
>>> arithmetic(np.dtype("float16")).compute
'float32'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["CASTINGS", "Arithmetic", "arithmetic", "as_dtype", "check_casting", "result_dtype",
           "check_out_array", "check_out_cast", "numba_dtype", "narrows_to_half"]

CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")

#: dtypes the Numba code generator takes as they are.
_NUMBA_NATIVE = frozenset(
    np.dtype(t) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float32, np.float64, np.complex64, np.complex128))
_FLOAT16 = np.dtype(np.float16)


def numba_dtype(dt: np.dtype) -> bool:
    """True when Numba can compile arrays of ``dt`` (float16 is converted first)."""
    return dt in _NUMBA_NATIVE or dt == _FLOAT16


@dataclass(frozen=True)
class Arithmetic:
    """How one result dtype is computed.

    ``result``: the dtype numpy returns; ``compute``: intermediates' dtype;
    ``accumulate``: the dtype of every product and sum; ``backend``: ``"numba"`` or
    ``"numpy"`` (object arrays, long double and what else Numba cannot compile).
    """

    result: str
    compute: str
    accumulate: str
    backend: str


@functools.lru_cache(maxsize=256)
def narrows_to_half(written: Any, wanted: np.dtype) -> bool:
    """Whether a kernel's float32 result is wanted as float16: rounded then by einjit's
    own kernel (:func:`einjit.float16.narrow`), not by numpy's ``astype``.

    >>> half = np.dtype("float16")
    >>> narrows_to_half("float32", half), narrows_to_half("float64", half)
    (True, False)
    """
    return wanted.char == "e" and np.dtype(written) == np.float32


def arithmetic(result: np.dtype) -> Arithmetic:
    """The :class:`Arithmetic` for a result dtype."""
    name = result.name if result.kind != "O" else "object"
    if not numba_dtype(result):
        return Arithmetic(name, name, name, "numpy")
    if result.kind == "b":
        return Arithmetic(name, name, "int64", "numba")
    if result.kind in "iu":
        return Arithmetic(name, name, _int_accumulator(result), "numba")
    if result == _FLOAT16:
        return Arithmetic(name, "float32", "float32", "numba")
    return Arithmetic(name, name, name, "numba")


def _int_accumulator(result: np.dtype) -> str:
    """The dtype an integer result's products and sums are computed in: its own width, 32
    bits for narrower ones (the same results modulo 2**bits).  Twice the values a vector
    holds against 64 bits: 35 GEMM-shaped int32 contractions run as register tiles in
    0.70x the time of 64-bit sums (``bij,bjk->bik`` 64 x 128^3 4.4 -> 2.5 ms), 200
    random contractions in 0.92x."""
    bits = 32 if result.itemsize <= 4 else 64
    return f"{'int' if result.kind == 'i' else 'uint'}{bits}"


def check_casting(casting: Any) -> str:
    """Validate ``casting=`` (TypeError for a non-str, ValueError for an unknown name)."""
    if not isinstance(casting, str):
        raise TypeError(f"einsum: casting must be a str, one of {', '.join(map(repr, CASTINGS))} "
                        f"(got {casting!r})")
    if casting not in CASTINGS:
        raise ValueError(
            f"einsum: casting must be one of {', '.join(map(repr, CASTINGS))} "
            f"(got {casting!r})")
    return casting


def as_dtype(dtype: Any) -> np.dtype:
    """``np.dtype(dtype)``, with an error that names the keyword."""
    try:
        return np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"einsum: dtype={dtype!r} is not a data type: {exc}") from None


def result_dtype(arrays: Sequence[np.ndarray], dtype: Any, casting: Any) -> np.dtype:
    """numpy's result dtype for einsum, after checking that every operand may be cast to it.

    >>> result_dtype([np.ones(2, np.float32), np.ones(2, np.int16)], None, "safe")
    dtype('float32')
    """
    if dtype is None:
        try:
            result = np.result_type(*arrays)
        except TypeError as exc:
            odd = [f"operand {k} ({a.dtype})" for k, a in enumerate(arrays)
                   if a.dtype.kind not in "biufcO"]
            # the type numpy raised (DTypePromotionError, a TypeError), named better
            raise type(exc)(f"einsum: cannot find a common dtype for "
                            f"{', '.join(odd) or 'the operands'}: {exc}") from None
    else:
        result = as_dtype(dtype)
    if result.kind not in "biufcO":
        odd = [f"operand {k} ({a.dtype})" for k, a in enumerate(arrays)
               if a.dtype.kind not in "biufcO"] or [f"dtype={result}"]
        raise TypeError(f"einsum: {', '.join(odd)}: einsum computes on numbers (bool, "
                        f"integer, float, complex) and object arrays, not {result}")
    for k, a in enumerate(arrays):
        if not np.can_cast(a.dtype, result, casting=casting):
            raise TypeError(
                f"einsum: operand {k} dtype {a.dtype} cannot be cast to {result} "
                f"according to the rule {casting!r}")
    return result


def check_out_array(out: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Validate ``out=`` as numpy does: an ndarray of the exact shape, writeable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"einsum: keyword parameter 'out' must be an array, got "
                        f"{type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"einsum: 'out' has shape {out.shape} but the result has shape "
                         f"{tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError("einsum: 'out' is read-only")
    return out


def check_out_cast(out: np.ndarray, result: np.dtype, casting: str) -> None:
    """The result dtype must be castable to ``out``'s under the casting rule."""
    if not np.can_cast(result, out.dtype, casting=casting):
        raise TypeError(f"einsum: the result dtype {result} cannot be cast to the 'out' "
                        f"dtype {out.dtype} according to the rule {casting!r}")
