"""Vectorisable elementary functions for generated CPU kernels.

Numba lowers ``np.exp`` on a float to a call of the C library's ``exp``.  LLVM cannot
vectorise a loop around a call it has no vector version of (this llvmlite has no SVML),
so a body such as ``exp(a - b)`` runs one element at a time.  :func:`exp` here is plain
arithmetic that Numba inlines and LLVM vectorises:

* range reduction ``x = n ln2 + r`` with ``|r| <= ln2 / 2`` (Cody-Waite: ``ln2`` in a high
  part with trailing zero bits, so ``n * LN2_HI`` is exact, and a low part);
* ``e**r`` by its Taylor polynomial to degree 13 (truncation error below 2**-60 on that
  interval), evaluated by Estrin's scheme for short dependency chains, the leading
  ``1 + r`` added last;
* ``2**n`` built from its exponent bits, in two factors so that results in the
  subnormal range come out right.

Float64 results are within 1 ulp of numpy's (tests compare them over the whole range,
infinities, NaN and subnormal results included); float32 is computed in float64 and
rounded once.  Other argument types (complex, integers, bool) keep ``np.exp``.

:func:`radd` is ``a + b`` as one LLVM ``fadd`` with the fast-math flag ``reassoc``: a sum
accumulated with it is vectorised, with several partial sums, while every other
operation of the kernel keeps IEEE order (the flag is on that instruction alone).
:func:`fmax` and :func:`fmin` are ``numpy.maximum`` and ``numpy.minimum`` of two floats as
one LLVM ``maximum``/``minimum`` each (NaN-propagating, like numpy's): a max or min
reduction over a nest LLVM unrolls fully then stays small, where numpy's compare-and-select
form sent LLVM's optimiser into minutes (``PK,HK->`` over 8 x 5 x 3 terms).  On ties of
zeros they give +0.0 (max) and -0.0 (min).
:func:`rmuladd` is ``a * b + acc`` for such a sum of products: LLVM's ``fmuladd``, which
becomes one fused multiply-add (a single rounding) where the CPU has one, with the
same ``reassoc`` flag.

:func:`flat` views an array of any layout as the 1-D C-ordered run of ``span`` elements
from its first one, inside the kernel and for free: a kernel reads an input that is
neither C- nor Fortran-ordered through it, with the strides as constants (see
``einjit.ir.Schedule.flat``), since Numba vectorises no loop over such an array itself.
:func:`opaque` hides a loop's constant trip count from LLVM, which would otherwise unroll
a short loop completely before vectorising it (see ``einjit.codegen.numba_cpu``).
:func:`local` is a small array of accumulators on the kernel's stack (``einjit.ir.Alloc``
with ``stack``), aligned to cache lines: no heap allocation, and compiled code that
references none of Numba's array implementations, which a process loading it from the
cache then never imports.

:func:`exp_flush` is the same but gives zero for ``x < -708`` (where ``e**x`` is within a
factor 1.5 of the smallest normal float64, 2**-1022, or below it): subnormal arithmetic
costs a hundred cycles an operation on x86, and the two-pass logsumexp
(:func:`einjit.planner.two_pass_logsumexp`) sums ``exp(t - max)``, where such terms cannot
change the sum (it is at least 1).

>>> import numba
>>> e = numba.njit(lambda x: exp(x))(1.0)
>>> bool(abs(e - np.exp(1.0)) <= np.spacing(np.exp(1.0)))
True
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload

__all__ = ["as_float", "exp", "exp_flush", "flat", "flat_from", "float_bits", "fmax", "fmin",
           "local", "opaque", "radd", "rmuladd", "vector_width"]

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 to 32 bits: n * _LN2_HI is exact for |n| < 2**20
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_ROUND = 6755399441055744.0  # 1.5 * 2**52: x + _ROUND - _ROUND rounds x to an integer
_C = [1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(14)]
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = _C[2:]


_FLOAT_OF_WIDTH = {32: (types.float32, llvm_ir.FloatType()),
                   64: (types.float64, llvm_ir.DoubleType())}


@intrinsic
def as_float(typingctx, bits):  # type: ignore[no-untyped-def]
    """The float whose bit pattern is the integer ``bits``, of its width (an int32 or
    uint32 gives a float32, an int64 or uint64 a float64): an LLVM bitcast."""
    if not isinstance(bits, types.Integer) or bits.bitwidth not in _FLOAT_OF_WIDTH:
        return None
    result, ir_type = _FLOAT_OF_WIDTH[bits.bitwidth]

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir_type)

    return result(bits), codegen


@intrinsic
def float_bits(typingctx, value):  # type: ignore[no-untyped-def]
    """The bit pattern of the float32 or float64 ``value``, as a uint32 or uint64."""
    if value not in (types.float32, types.float64):
        return None
    width = value.bitwidth
    result = types.uint32 if width == 32 else types.uint64

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], llvm_ir.IntType(width))

    return result(value), codegen


@intrinsic
def vector_width(typingctx, bits):  # type: ignore[no-untyped-def]
    """Ask LLVM to vectorise the calling function with vectors of ``bits`` (a literal
    int): its ``"prefer-vector-width"`` attribute.  LLVM's default on AVX-512 x86 cores
    is 256 (the ``prefer-256-bit`` tuning); 512 lets the loop vectoriser use zmm
    registers in that function only."""
    if not isinstance(bits, types.IntegerLiteral):
        return None
    width = bits.literal_value

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        # a string attribute: llvmlite's attribute set knows only LLVM's keywords
        set.add(builder.function.attributes, f'"prefer-vector-width"="{width}"')
        return context.get_dummy_value()

    return types.none(bits), codegen


@njit(inline="always")
def _exp_reduced(x):  # type: ignore[no-untyped-def]
    """``(p, n)`` with ``e**x = p * 2**n``, for ``x`` already clamped to [-746, 710]."""
    nf = (x * _LOG2E + _ROUND) - _ROUND
    nf = 0.0 if nf != nf else nf  # NaN: keep the integer conversion defined
    r = (x - nf * _LN2_HI) - nf * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    s0 = (_C2 + _C3 * r) + (_C4 + _C5 * r) * r2
    s1 = (_C6 + _C7 * r) + (_C8 + _C9 * r) * r2
    s2 = (_C10 + _C11 * r) + (_C12 + _C13 * r) * r2
    tail = (s0 + s1 * r4) + s2 * (r4 * r4)
    return 1.0 + (r + r2 * tail), np.int64(nf)


@njit(inline="always")
def _exp64(x):  # type: ignore[no-untyped-def]
    xc = 710.0 if x > 710.0 else x  # e**710 is already inf, e**-746 already 0
    xc = -746.0 if xc < -746.0 else xc
    p, n = _exp_reduced(xc)
    half = n >> 1  # 2**n in two factors: n runs from -1075 to 1024
    return p * as_float((half + 1023) << 52) * as_float((n - half + 1023) << 52)


@njit(inline="always")
def _exp64_flush(x):  # type: ignore[no-untyped-def]
    value = _exp64(-708.0 if x < -708.0 else x)
    return 0.0 if x < -708.0 else value


def exp(x):  # type: ignore[no-untyped-def]
    """``numpy.exp``, vectorisable inside Numba kernels (see the module docstring)."""
    return np.exp(x)


def exp_flush(x):  # type: ignore[no-untyped-def]
    """``numpy.exp``, but zero for ``x < -708`` (no subnormal results)."""
    value = np.exp(x)
    return np.where(np.asarray(x) < -708.0, 0.0 * value, value)[()]


def _overload_with(impl64):  # type: ignore[no-untyped-def]
    def typer(x):  # type: ignore[no-untyped-def]
        if x == types.float64:
            return lambda x: impl64(x)
        if x == types.float32:
            return lambda x: np.float32(impl64(np.float64(x)))
        return lambda x: np.exp(x)
    return typer


overload(exp, inline="always")(_overload_with(_exp64))
overload(exp_flush, inline="always")(_overload_with(_exp64_flush))


def _widest(*floats):  # type: ignore[no-untyped-def]
    """The widest of some Numba float types (the first of equals)."""
    return max(floats, key=lambda t: t.bitwidth)


def _widened(context, builder, sig, args, result):  # type: ignore[no-untyped-def]
    """An intrinsic's arguments, each cast to ``result``."""
    return [context.cast(builder, v, t, result) for v, t in zip(args, sig.args)]


@intrinsic
def radd(typingctx, a, b):  # type: ignore[no-untyped-def]
    """``a + b`` on floats (the wider of the two) or on one complex type, as LLVM
    ``fadd reassoc``: LLVM may reassociate it with the additions around it."""
    if isinstance(a, types.Float) and isinstance(b, types.Float):
        result = _widest(a, b)

        def add_floats(context, builder, sig, args):  # type: ignore[no-untyped-def]
            x, y = _widened(context, builder, sig, args, result)
            return builder.fadd(x, y, flags=("reassoc",))

        return result(a, b), add_floats
    if isinstance(a, types.Complex) and a == b:

        def add_complex(context, builder, sig, args):  # type: ignore[no-untyped-def]
            x, y = (context.make_complex(builder, a, value=v) for v in args)
            z = context.make_complex(builder, a)
            z.real = builder.fadd(x.real, y.real, flags=("reassoc",))
            z.imag = builder.fadd(x.imag, y.imag, flags=("reassoc",))
            return z._getvalue()

        return a(a, b), add_complex
    return None


def _fmuladd(name: str, flags: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """An intrinsic ``a * b + acc`` on floats (the widest of the three) as LLVM
    ``fmuladd`` with the fast-math ``flags``: one fused multiply-add where the CPU has
    it (the product is not rounded)."""

    def typer(typingctx, a, b, acc):  # type: ignore[no-untyped-def]
        if not all(isinstance(t, types.Float) for t in (a, b, acc)):
            return None
        result = _widest(a, b, acc)

        def muladd(context, builder, sig, args):  # type: ignore[no-untyped-def]
            ty = context.get_value_type(result)
            x, y, z = _widened(context, builder, sig, args, result)
            fn = builder.module.declare_intrinsic("llvm.fmuladd", [ty],
                                                  llvm_ir.FunctionType(ty, [ty, ty, ty]))
            return builder.call(fn, [x, y, z], fastmath=flags)

        return result(a, b, acc), muladd

    typer.__name__ = typer.__qualname__ = name  # Numba names an intrinsic by its function
    return typer


#: ``rmuladd(a, b, acc)``: ``a * b + acc`` fused, with the flags ``reassoc contract``
#: (LLVM may reassociate it with the additions around it: a vectorised sum).
rmuladd = intrinsic(_fmuladd("rmuladd", ("reassoc", "contract")))
#: ``muladd(a, b, acc)``: ``a * b + acc`` fused, with the flag ``contract`` only: each
#: sum is added in its order (a register tile's, vectorised across its values).
muladd = intrinsic(_fmuladd("muladd", ("contract",)))


def _ieee_extremum(name: str):  # type: ignore[no-untyped-def]
    """An intrinsic computing LLVM's ``name`` (``llvm.maximum``, ``llvm.minimum``) of two
    floats, in the wider type."""

    @intrinsic
    def extremum(typingctx, a, b):  # type: ignore[no-untyped-def]
        if not (isinstance(a, types.Float) and isinstance(b, types.Float)):
            return None
        result = _widest(a, b)

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            ty = context.get_value_type(result)
            x, y = _widened(context, builder, sig, args, result)
            fn = builder.module.declare_intrinsic(name, [ty], llvm_ir.FunctionType(ty, [ty, ty]))
            return builder.call(fn, [x, y])

        return result(a, b), codegen

    return extremum


_maximum = _ieee_extremum("llvm.maximum")
_minimum = _ieee_extremum("llvm.minimum")


def fmax(a, b):  # type: ignore[no-untyped-def]
    """``numpy.maximum(a, b)``: NaN if either is NaN; one LLVM ``maximum`` on floats."""
    return np.maximum(a, b)


def fmin(a, b):  # type: ignore[no-untyped-def]
    """``numpy.minimum(a, b)``: NaN if either is NaN; one LLVM ``minimum`` on floats."""
    return np.minimum(a, b)


def _extremum_overload(intrinsic_fn, fallback):  # type: ignore[no-untyped-def]
    def typer(a, b):  # type: ignore[no-untyped-def]
        if isinstance(a, types.Float) and isinstance(b, types.Float):
            return lambda a, b: intrinsic_fn(a, b)
        return lambda a, b: fallback(a, b)
    return typer


overload(fmax, inline="always")(_extremum_overload(_maximum, np.maximum))
overload(fmin, inline="always")(_extremum_overload(_minimum, np.minimum))


@intrinsic
def opaque(typingctx, n):  # type: ignore[no-untyped-def]
    """``n`` itself, through an empty inline assembly block LLVM cannot see into: a loop
    ``range(opaque(32))`` has a trip count LLVM does not know, so it is not unrolled
    completely before the loop vectoriser runs (which it would be with a small constant
    one, and Numba leaves the SLP vectoriser, which could repack it, off)."""
    if not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        value = context.cast(builder, args[0], sig.args[0], types.intp)
        ty = context.get_value_type(types.intp)
        return builder.asm(llvm_ir.FunctionType(ty, [ty]), "", "=r,0", [value],
                           side_effect=False, name="opaque")

    return types.intp(n), codegen


@intrinsic
def local(typingctx, size, dtype):  # type: ignore[no-untyped-def]
    """A 1-D C-ordered array of ``size`` (a literal integer) values of ``dtype``, on the
    kernel's stack: no heap allocation per call, and nothing of Numba's array
    implementations referenced by the compiled code (loading it from the cache imports
    none of them).  It is zero-filled once, when the kernel starts (kernels set each
    accumulator before they use it); it must not outlive the kernel."""
    if not isinstance(size, types.IntegerLiteral) or size.literal_value < 1:
        return None
    if isinstance(dtype, types.NumberClass):
        item = dtype.instance_type
    elif isinstance(dtype, types.DType):
        item = dtype.dtype
    else:
        return None
    result = types.Array(item, 1, "C")
    count = size.literal_value

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        from numba.np.arrayobj import populate_array  # compile time only, as in flat

        data_type = context.get_data_type(item)
        data = cgutils.alloca_once(builder, data_type, size=count)  # in the entry block
        data.align = 64  # whole cache lines, as Numba's heap arrays: vectors never split
        itemsize = context.get_abi_sizeof(data_type)
        view = context.make_array(result)(context, builder)
        intp = context.get_value_type(types.intp)
        populate_array(view, data=data, shape=[llvm_ir.Constant(intp, count)],
                       strides=[llvm_ir.Constant(intp, itemsize)],
                       itemsize=llvm_ir.Constant(intp, itemsize), meminfo=None)
        return view._getvalue()

    return result(size, dtype), codegen


def _flat_typer(array, span, start):  # type: ignore[no-untyped-def]
    """The signature and code of :func:`flat` (``start``: None) and :func:`flat_from`."""
    if not isinstance(array, types.Array) or not isinstance(span, types.Integer):
        return None
    if start is not None and not isinstance(start, types.Integer):
        return None
    result = types.Array(array.dtype, 1, "C", readonly=not array.mutable,
                         aligned=array.aligned)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        # imported here: loading a cached kernel whose module imports vecmath needs
        # none of Numba's array implementations (about 50 ms to import)
        from numba.np.arrayobj import populate_array

        source = context.make_array(sig.args[0])(context, builder, args[0])
        view = context.make_array(sig.return_type)(context, builder)
        n = context.cast(builder, args[1], sig.args[1], types.intp)
        data = source.data
        if len(args) > 2:  # back ``start`` elements
            back = context.cast(builder, args[2], sig.args[2], types.intp)
            data = builder.gep(data, [builder.neg(back)])
        populate_array(view, data=data, shape=cgutils.pack_array(builder, [n]),
                       strides=cgutils.pack_array(builder, [source.itemsize]),
                       itemsize=source.itemsize, meminfo=source.meminfo, parent=source.parent)
        return impl_ret_borrowed(context, builder, sig.return_type, view._getvalue())

    sig = result(array, span) if start is None else result(array, span, start)
    return sig, codegen


@intrinsic
def flat(typingctx, array, span):  # type: ignore[no-untyped-def]
    """``array``'s memory from its first element, ``span`` elements of its dtype, as a 1-D
    C-ordered array sharing its data (no copy, no call): for non-negative strides only,
    which the caller has checked."""
    return _flat_typer(array, span, None)


@intrinsic
def flat_from(typingctx, array, span, start):  # type: ignore[no-untyped-def]
    """:func:`flat` from ``start`` elements before ``array``'s first one: the lowest
    address its negative strides reach (the caller computed both)."""
    return _flat_typer(array, span, start)
