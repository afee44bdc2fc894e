"""The CPU that Numba compiles einjit's kernels for, and the vector registers the
scheduler plans them with.

Numba targets the host CPU (or ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` where
they are set): :func:`cpu_name` and :func:`cpu_features` say which, as the kernel cache
keys its files.  :func:`vectors` says what the scheduler may count on: LLVM vectorises
with 256-bit vectors on AVX2 and AVX-512 cores alike (it prefers them on the latter,
its ``prefer-256-bit`` tuning), and AVX-512 doubles the registers to 32 (the ``EVEX``
encoding reaches ymm16-31 too) and allows 512-bit vectors where a function asks for
them (:func:`einjit.codegen.vecmath.vector_width`).

>>> v = vectors()
>>> (v.registers, v.wide_bytes) in ((16, 32), (32, 64))
True
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

__all__ = ["Vectors", "cpu_name", "cpu_features", "vectors"]


@functools.cache
def cpu_name() -> str:
    """The CPU Numba compiles for: ``NUMBA_CPU_NAME``, else LLVM's name of the host's."""
    import llvmlite.binding as llvm
    import numba

    return str(numba.config.CPU_NAME or llvm.get_host_cpu_name())


@functools.cache
def cpu_features() -> str:
    """The features Numba compiles with (``+avx2,-avx512f,...``): ``NUMBA_CPU_FEATURES``,
    else the host's as LLVM lists them."""
    import llvmlite.binding as llvm
    import numba

    return str(numba.config.CPU_FEATURES or llvm.get_host_cpu_features().flatten())


@dataclass(frozen=True)
class Vectors:
    """The vector registers kernels are planned for: how many there are, and the bytes
    of the widest vectors a kernel may ask for (a register tile's: its sums stay in
    registers either way, and a 512-bit multiply-add does twice the work of a 256-bit
    one).  LLVM's default code uses 32-byte vectors on either kind of core."""

    registers: int = 16
    wide_bytes: int = 32


def vectors(features: str | None = None) -> Vectors:
    """The :class:`Vectors` of a CPU with these features, listed as LLVM does; by
    default Numba's target: ``NUMBA_CPU_FEATURES`` where set, else the host's unless
    ``NUMBA_CPU_NAME`` names another CPU (then only AVX2's are counted on).  The host's
    come from numpy's own CPU dispatch, so planning a BLAS call imports no compiler.

    >>> vectors("+avx,+avx2,+fma"), vectors("+avx2,+avx512f,+avx512vl")
    (Vectors(registers=16, wide_bytes=32), Vectors(registers=32, wide_bytes=64))
    """
    if features is None:
        features = os.environ.get("NUMBA_CPU_FEATURES", "")
        if not features:
            if os.environ.get("NUMBA_CPU_NAME", "host") not in ("", "host"):
                return Vectors()
            return _host_vectors()
    if {"+avx512f", "+avx512vl"} <= set(features.split(",")):
        return Vectors(32, 64)
    return Vectors()


@functools.cache
def _host_vectors() -> Vectors:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as found
    except ImportError:  # (numpy 1.x)
        from numpy.core._multiarray_umath import __cpu_features__ as found
    if found.get("AVX512F") and found.get("AVX512VL"):
        return Vectors(32, 64)
    return Vectors()
