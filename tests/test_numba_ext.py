"""einjit.einsum and compiled functions called from @numba.njit code."""

import numba
import numpy as np
import pytest
from numba.core.errors import TypingError

import einjit


@numba.njit
def _chain(a, b, c):
    return einjit.einsum("ij,jk,kl->il", a, b, c)


@numba.njit
def _frobenius(a):
    return einjit.einsum("ij,ij->", a, a)


@numba.njit
def _batched(a, b):
    return einjit.einsum("...ij,...jk->...ik", a, b)


@numba.njit
def _implicit(a, b):
    return einjit.einsum("ba,ac", a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.complex128])
def test_einsum_inside_njit(dtype):
    rng = np.random.default_rng(0)
    a, b, c = [(rng.random(s) * 4).astype(dtype) for s in [(3, 4), (4, 5), (5, 2)]]
    for got, ref in [(_chain(a, b, c), np.einsum("ij,jk,kl->il", a, b, c)),
                     (_frobenius(a), np.einsum("ij,ij->", a, a)),
                     (_implicit(b.T.copy(), b), np.einsum("ba,ac", b.T, b))]:
        if np.ndim(ref):  # (Numba boxes a returned scalar as a Python number)
            assert got.dtype == ref.dtype
        np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
    x, y = rng.random((2, 3, 4, 5)), rng.random((2, 3, 5, 2))
    np.testing.assert_allclose(_batched(x, y), x @ y, rtol=1e-12)
    # other sizes reuse the generic kernels (sizes are read at run time)
    a2, b2, c2 = rng.random((6, 1)), rng.random((1, 7)), rng.random((7, 3))
    np.testing.assert_allclose(_chain(a2, b2, c2), a2 @ b2 @ c2, rtol=1e-12)
    np.testing.assert_allclose(_chain(np.ones((0, 4)), b, c).shape, (0, 2))


def test_errors_inside_njit():
    a = np.ones((3, 4))
    with pytest.raises(ValueError, match="size of label 'j'"):
        _chain(a, a, a)

    @numba.njit
    def wrong_count(x):
        return einjit.einsum("ij,jk->ik", x)

    with pytest.raises(TypingError, match="ij,jk->ik"):
        wrong_count(a)

    @numba.njit
    def bad_equation(x):
        return einjit.einsum("i%->i", x)

    with pytest.raises(TypingError, match="i%->i"):
        bad_equation(a)

    @numba.njit
    def not_literal(eq, x):
        return einjit.einsum(eq, x)

    with pytest.raises(TypingError, match="literal string"):
        not_literal("ij->i", a)

    with pytest.raises(ValueError, match="collapsing index 'i'"):
        _diagonal(np.ones((3, 4)))
    with pytest.raises(ValueError, match="collapsing index 'j'"):
        _diagonals(np.ones((3, 3, 2, 3)), np.ones((2,)))


@numba.njit
def _diagonal(x):
    return einjit.einsum("ii->i", x)


@numba.njit
def _trace(x):
    return einjit.einsum("ii", x)


@numba.njit
def _diagonals(x, y):
    return einjit.einsum("ijjk,k->i", x, y)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.complex64])
def test_diagonals_inside_njit(dtype):
    """A repeated label reads the operand's diagonal (a strided view), C, Fortran and
    reversed operands alike."""
    rng = np.random.default_rng(3)
    x = (rng.random((5, 5)) * 4).astype(dtype)
    z, y = (rng.random((3, 4, 4, 2)) * 4).astype(dtype), (rng.random(2) * 4).astype(dtype)
    for a in (x, np.asfortranarray(x), x[::-1, ::-1]):
        np.testing.assert_allclose(_diagonal(a), np.einsum("ii->i", a), rtol=1e-6)
        np.testing.assert_allclose(_trace(a), np.einsum("ii", a), rtol=1e-6)
    np.testing.assert_allclose(_diagonals(z, y), np.einsum("ijjk,k->i", z, y), rtol=1e-6)
    assert _diagonal(x).dtype == dtype


@numba.njit
def _into(a, b, out):
    return einjit.einsum("ij,jk->ik", a, b, out=out)


@numba.njit
def _sum_into(a, out):
    return einjit.einsum("ij->", a, out=out)


def test_out_inside_njit():
    """out= takes an array of the result's shape (any layout, a dtype the result casts
    to safely), is written and returned; a wrong shape is a ValueError, an unsafe dtype
    or a read-only array a typing error."""
    rng = np.random.default_rng(6)
    a, b = rng.random((5, 6)), rng.random((6, 7))
    for out in (np.zeros((5, 7)), np.zeros((7, 5)).T, np.zeros((5, 7), np.complex128)):
        got = _into(a, b, out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-12)
        assert np.shares_memory(got, out) and got.dtype == out.dtype
    total = np.zeros(())
    _sum_into(a, total)
    np.testing.assert_allclose(total, a.sum(), rtol=1e-12)
    with pytest.raises(ValueError, match="out= does not have the result's shape"):
        _into(a, b, np.zeros((5, 6)))
    with pytest.raises(TypingError, match="casting='safe'"):
        _into(a, b, np.zeros((5, 7), np.float32))
    readonly = np.zeros((5, 7))
    readonly.flags.writeable = False
    with pytest.raises(TypingError, match="read-only"):
        _into(a, b, readonly)


@numba.njit
def _paths(a, b, c, out):
    one = einjit.einsum("ij,jk,kl->il", a, b, c, optimize=False)  # one fused nest
    einjit.einsum("ij,jk,kl->il", a, b, c, optimize="optimal", out=out)
    return one


def test_optimize_inside_njit():
    rng = np.random.default_rng(7)
    a, b, c = rng.random((4, 5)), rng.random((5, 6)), rng.random((6, 3))
    out = np.zeros((4, 3))
    np.testing.assert_allclose(_paths(a, b, c, out), a @ b @ c, rtol=1e-12)
    np.testing.assert_allclose(out, a @ b @ c, rtol=1e-12)

    @numba.njit
    def unknown(x):  # (numpy raises KeyError; with two operands it asks for no path)
        return einjit.einsum("ij,jk,kl->il", x, x, x, optimize="fastest")

    with pytest.raises(TypingError, match="fastest"):
        unknown(np.ones((2, 2)))


@numba.njit
def _widened(a, b):
    return (einjit.einsum("ij,jk->ik", a, b, dtype=np.float64),
            einjit.einsum("ij->", a, dtype="complex128"))


def test_dtype_inside_njit():
    """dtype= (a NumPy type, or a literal string) computes in that dtype; an operand that
    does not cast to it safely is a typing error, as numpy raises TypeError."""
    rng = np.random.default_rng(8)
    a, b = rng.random((30, 40)).astype(np.float32), rng.random((40, 5)).astype(np.float32)
    product, total = _widened(a, b)
    assert product.dtype == np.float64 and isinstance(total, complex)
    np.testing.assert_allclose(product, a.astype(np.float64) @ b, rtol=1e-12)
    np.testing.assert_allclose(total, a.astype(np.float64).sum(), rtol=1e-12)

    @numba.njit
    def narrowed(x):
        return einjit.einsum("ij->", x, dtype=np.int32)

    with pytest.raises(TypingError, match="cannot be cast to int32"):
        narrowed(a)

    @numba.njit
    def unsafe(x, out):  # casting= names the rule, for dtype= and out= alike
        einjit.einsum("ij->i", x, out=out, casting="same_kind")
        return einjit.einsum("ij->i", x, dtype=np.int64, casting="unsafe")

    x, out = rng.random((4, 6)) * 10, np.zeros(4, np.float32)
    np.testing.assert_array_equal(unsafe(x, out),
                                  np.einsum("ij->i", x, dtype=np.int64, casting="unsafe"))
    np.testing.assert_allclose(out, x.sum(1), rtol=1e-6)


# Spelled for this test alone: Numba keeps one implementation per equation and types.
_PRODUCTS = [("zpq,zqr->zpr", [(4, 6, 5), (4, 5, 3)]), ("pqr,qs->psr", [(3, 6, 4), (6, 5)]),
             ("abcd,dbef->aecf", [(2, 3, 4, 5), (5, 3, 2, 3)]),
             ("ab,cb,cdb->cda", [(4, 5), (3, 5), (3, 6, 5)]),
             # operands read transposed in place, products written transposed in place
             ("ij,jk,kl->il", [(4, 6), (6, 5), (5, 3)]), ("ji,kj->ki", [(6, 4), (3, 6)]),
             ("bji,bjk->bki", [(2, 5, 4), (2, 5, 3)])]


@pytest.mark.parametrize("equation,shapes", _PRODUCTS)  # apart: each compiles for long
def test_matrix_products_inside_njit(monkeypatch, equation, shapes):
    """Matrix-product steps call np.dot (BLAS) from GEMM_MIN_WORK multiply-adds (here
    0: always; the small products of the tests above run their loop kernels): batched,
    broadcast over a batch index, transposed and n-ary; C, Fortran and strided operands
    (read in place or copied), float32 and complex."""
    pytest.importorskip("scipy")  # (without it Numba has no np.dot: loop kernels only)
    from einjit import numba_ext

    assert numba_ext._blas_in_numba()
    monkeypatch.setattr(numba_ext, "GEMM_MIN_WORK", 0)  # read when typing
    rng = np.random.default_rng(5)
    args = ", ".join(f"x{k}" for k in range(len(shapes)))
    namespace = {"einjit": einjit}
    exec(f"def f({args}):\n    return einjit.einsum({equation!r}, {args})\n", namespace)
    f = numba.njit(namespace["f"])
    base = [rng.standard_normal(s) for s in shapes]
    variants = [base, [np.repeat(o, 2, axis=-1)[..., ::2] for o in base],
                [(o * 1j + o[..., ::-1]).astype(np.complex64) for o in base]]
    if equation in ("zpq,zqr->zpr", "ji,kj->ki"):  # (each typing compiles: the rest
        variants.append([np.asfortranarray(o, dtype=np.float32) for o in base])  # not)
    if equation == "ji,kj->ki":  # an integer operand, cast to the product's dtype
        variants.append([(base[0] * 4).astype(np.int32), base[1]])
    for ops in variants:
        got = f(*ops)
        assert got.dtype == np.einsum(equation, *ops).dtype
        want = np.einsum(equation, *[o.astype(np.complex128) for o in ops])
        tol = 1e-5 if got.dtype in (np.float32, np.complex64) else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=equation)


def test_plans_inside_njit_weigh_the_blas_products():
    """With BLAS reachable, a chain whose fused loop nest has the flops of its products
    (``ij,jk,ki->``: n^3 either way) is split so that a product runs on BLAS (one loop
    nest over 512^2 float64 took 530 ms, the product and a sum 5 ms); without BLAS the
    loop nest stays fused, and either way the result is numpy's."""
    from numba.core import types

    from einjit import numba_ext
    from einjit.dtypes import arithmetic
    from einjit.parser import bind, parse_subscripts
    from einjit.planner import DEFAULT_FOLD

    spec = bind(parse_subscripts("ij,jk,ki->"), [(64, 64)] * 3)
    f64 = np.dtype("float64")
    steps = {}
    for blas in (True, False):
        plan, _, gemms = numba_ext._plan_generic(
            spec, [tuple(t) for t in spec.inputs], spec.size, [f64] * 3, arithmetic(f64),
            DEFAULT_FOLD, (types.Array(types.float64, 2, "C"),) * 3, blas)
        steps[blas] = (len(plan.steps), sum(g is not None for g in gemms))
    assert steps == {True: (2, 1), False: (1, 0)}
    a, b, c = (np.random.default_rng(k).random((40, 40)) for k in range(3))
    np.testing.assert_allclose(_trace3(a, b, c), np.einsum("ij,jk,ki->", a, b, c),
                               rtol=1e-12)


@numba.njit
def _trace3(a, b, c):
    return einjit.einsum("ij,jk,ki->", a, b, c)


@einjit.compile("bij,bjk->bik")
def bmm(a, b): ...


@einjit.compile("id,jd->ij")
def sqdist(x, y):
    return (x - y) ** 2


@einjit.compile("ik,kj->ij", reduce="min")
def minplus(a, b):
    return a + b


@numba.njit
def _use_compiled(p, q, x, y, d):
    return bmm(p, q), sqdist(x, y), minplus(d, d)


def test_compiled_functions_inside_njit():
    rng = np.random.default_rng(1)
    p, q = rng.random((2, 3, 4)), rng.random((2, 4, 5))
    x, y = rng.random((5, 3)), rng.random((4, 3))
    d = rng.random((6, 6))
    m, s, mp = _use_compiled(p, q, x, y, d)
    np.testing.assert_allclose(m, p @ q, rtol=1e-12)
    np.testing.assert_allclose(s, ((x[:, None] - y[None]) ** 2).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(mp, (d[:, :, None] + d[None]).min(1), rtol=1e-12)
