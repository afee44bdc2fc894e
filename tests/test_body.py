"""Bodies and reductions beyond the sum of products, against numpy broadcast-and-reduce.

The reference evaluates the same Python function element by element (``np.vectorize``,
so ``math`` functions and ``a if c else b`` work) on the broadcast operands in float64,
then reduces with numpy; a ``max``/``min`` over nothing must raise as numpy's does.
"""

import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import einjit
from _bodies import (REDUCTIONS, absdiff, clipped, gauss, greater, larger, norm, plus,
                     sqdiff)
from _reference import fold_reference as reference

EXAMPLES = max(4, int(os.environ.get("EINJIT_HYPOTHESIS_EXAMPLES", "60")) // 6)
BODIES = [sqdiff, absdiff, gauss, norm, greater, larger, plus, clipped, None]


def _check(eq, ops, fn, reduce):
    f = einjit.CompiledEinsum(eq, fn, reduce=reduce)
    reduced = set(eq.replace(",", "").split("->")[0]) - set(eq.split("->")[1])
    sizes = {lb: n for t, op in zip(eq.split("->")[0].split(","), ops) for lb, n in zip(t, op.shape)}
    if reduce in ("max", "min") and any(sizes[lb] == 0 for lb in reduced):
        with pytest.raises(ValueError, match="zero-size array"):
            f(*ops)
        return
    got = f(*ops)
    ref = reference(eq, ops, fn, reduce)
    assert np.shape(got) == ref.shape, (eq, reduce, fn)
    if reduce in ("any", "all"):
        assert np.asarray(got).dtype == bool
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref, rtol=1e-9,
                                   atol=1e-12, err_msg=f"{eq} {reduce} {fn}")


@st.composite
def _cases(draw):
    letters = "abcd"
    a = draw(st.lists(st.sampled_from(letters), min_size=1, max_size=3, unique=True))
    b = draw(st.lists(st.sampled_from(letters), min_size=1, max_size=3, unique=True))
    labels = list(dict.fromkeys(a + b))
    out = [lb for lb in labels if draw(st.booleans())]
    size = {lb: draw(st.sampled_from([0, 1, 2, 3, 5])) for lb in labels}
    eq = "".join(a) + "," + "".join(b) + "->" + "".join(out)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    ops = [rng.uniform(-2, 2, [size[lb] for lb in t]) for t in (a, b)]
    return eq, ops


@pytest.mark.parametrize("reduce", REDUCTIONS)
@settings(max_examples=EXAMPLES, deadline=None)
@given(case=_cases(), body=st.sampled_from(BODIES))
def test_bodies_and_reductions(case, body, reduce):
    eq, ops = case
    if reduce == "prod" and body in (gauss, norm, clipped):
        body = plus  # keep products of many terms well inside float range
    _check(eq, ops, body, reduce)


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_three_operands_and_size_one(reduce):
    rng = np.random.default_rng(3)
    ops = [rng.uniform(0.5, 1.5, s) for s in [(3, 1), (1, 4), (4, 2)]]
    f = einjit.CompiledEinsum("ij,jk,kl->il", reduce=reduce)
    got = f(*ops)
    a, b, c = np.broadcast_arrays(ops[0][:, :, None, None], ops[1][None, :, :, None],
                                  ops[2][None, None])
    p = a * b * c
    ref = {"sum": p.sum((1, 2)), "prod": p.prod((1, 2)), "max": p.max((1, 2)),
           "min": p.min((1, 2)), "any": p.any((1, 2)), "all": p.all((1, 2)),
           "logsumexp": np.log(np.exp(p).sum((1, 2)))}[reduce]
    np.testing.assert_allclose(np.asarray(got, dtype=float), ref, rtol=1e-12)


def minplus_body(a, b):
    return a + b


def minplus3(a, b, c):
    return a + b + c


def test_semiring_chains_split_and_other_bodies_fuse():
    f = einjit.CompiledEinsum("ij,jk,kl->il", minplus3, reduce="min")
    e = f.explain((40, 40), (40, 40), (40, 40))
    assert len(e.plan.steps) == 2 and "semiring (min, add)" in e.plan.note
    rng = np.random.default_rng(0)
    ops = [rng.random((9, 7)), rng.random((7, 8)), rng.random((8, 6))]
    np.testing.assert_allclose(f(*ops), reference("ij,jk,kl->il", ops, minplus3, "min"))
    g = einjit.CompiledEinsum("ij,jk,kl->il", lambda_free_body, reduce="sum")
    e = g.explain((40, 40), (40, 40), (40, 40))
    assert len(e.plan.steps) == 1 and "not a semiring" in e.plan.note
    np.testing.assert_allclose(g(*ops), reference("ij,jk,kl->il", ops, lambda_free_body, "sum"))


def lambda_free_body(a, b, c):
    return a * b - c


def logmatmul(a, b):
    return a + b


def test_logsumexp_is_stable_where_the_naive_formula_overflows():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(900, 1100, (4, 6)), rng.uniform(900, 1100, (6, 3))
    f = einjit.CompiledEinsum("ik,kj->ij", logmatmul, reduce="logsumexp")
    with np.errstate(over="ignore"):
        assert not np.all(np.isfinite(np.log(np.exp(a[:, :, None] + b[None]).sum(1))))
    got = f(a, b)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference("ik,kj->ij", [a, b], logmatmul, "logsumexp"),
                               rtol=1e-13)
    f32 = f(a.astype(np.float32), b.astype(np.float32))
    assert f32.dtype == np.float32 and np.all(np.isfinite(f32))


def test_logsumexp_infinities_and_nan_as_numpy_logaddexp_reduce():
    # Two passes (maximum, then the sum of exp(term - maximum)) must keep numpy's answers
    # where the maximum is infinite or NaN.
    inf, nan = np.inf, np.nan
    a = np.array([[-inf, -inf, -inf], [inf, 0.0, -inf], [1.0, nan, 2.0], [-inf, 3.0, -inf],
                  [-800.0, -1e4, -700.0], [inf, inf, 5.0]])
    f = einjit.CompiledEinsum("ij,j->i", logmatmul, reduce="logsumexp")
    got = f(a, np.zeros(3))
    with np.errstate(invalid="ignore"):
        want = np.logaddexp.reduce(a, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert "two passes" in f.explain(a.shape, (3,)).plan.note


@pytest.mark.parametrize(("reduce", "identity"), [("sum", 0.0), ("prod", 1.0), ("any", False),
                                                  ("all", True), ("logsumexp", -np.inf)])
def test_empty_reductions_give_the_identity(reduce, identity):
    f = einjit.CompiledEinsum("ij,jk->ik", plus, reduce=reduce)
    got = f(np.ones((2, 0)), np.ones((0, 3)))
    assert got.shape == (2, 3) and np.all(got == identity)


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_max_and_min_over_nothing_raise_like_numpy(reduce):
    f = einjit.CompiledEinsum("ij,jk->ik", plus, reduce=reduce)
    with pytest.raises(ValueError, match="zero-size array"):
        f(np.ones((2, 0)), np.ones((0, 3)))
    with pytest.raises(ValueError):
        getattr(np, reduce)(np.ones((2, 0)), axis=1)
    assert f(np.ones((0, 2)), np.ones((2, 3))).shape == (0, 3)  # nothing empty is reduced


def test_result_dtypes_follow_the_body_then_the_reduction():
    i32 = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert einjit.CompiledEinsum("ij,ij->i", greater)(i32, i32.T.copy().T).dtype == np.int64
    assert einjit.CompiledEinsum("ij,ij->i", plus, reduce="max")(i32, i32).dtype == np.int32
    assert einjit.CompiledEinsum("ij,ij->i", plus, reduce="logsumexp")(i32, i32).dtype == np.float64
    f32 = i32.astype(np.float32)
    assert einjit.CompiledEinsum("ij,ij->i", sqdiff)(f32, f32).dtype == np.float32
    assert einjit.CompiledEinsum("ij,ij->i", norm)(f32, f32).dtype == np.float64  # math.sqrt
    assert einjit.CompiledEinsum("ij,ij->i", plus, reduce="any")(f32, f32).dtype == np.bool_
    np.testing.assert_array_equal(
        einjit.CompiledEinsum("ij,ij->i", greater)(i32, i32[:, ::-1].copy()), [1, 1])


def unsupported(x, y):
    return sorted([x, y])[0]


def two_statements(x, y):
    z = x + y
    return z


def floordiv(x, y):
    return x // y


def test_errors_name_the_function():
    with pytest.raises(TypeError, match="unsupported.*sorted"):
        einjit.compile("ij,jk->ik")(unsupported)
    with pytest.raises(TypeError, match="two_statements.*one 'return"):
        einjit.compile("ij,jk->ik")(two_statements)
    with pytest.raises(TypeError, match="takes 2 arguments but the equation has 3"):
        einjit.compile("ij,jk,kl->il")(plus)
    with pytest.raises(ValueError, match="reduce='median'"):
        einjit.compile("ij,jk->ik", reduce="median")
    f = einjit.compile("ij,jk->ik")(plus)
    with pytest.raises(TypeError, match="dtype="):
        f(np.ones((2, 2)), np.ones((2, 2)), dtype=np.float32)
    g = einjit.compile("ij,jk->ik")(floordiv)
    with pytest.raises(TypeError, match="Numba cannot compile the body of floordiv"):
        g(np.ones((2, 2), complex), np.ones((2, 2), complex))
    with pytest.raises(TypeError, match="reduce='max' needs real values"):
        einjit.CompiledEinsum("ij,jk->ik", plus, reduce="max")(np.ones((2, 2), complex),
                                                                np.ones((2, 2)))


def test_out_and_fast_path():
    f = einjit.CompiledEinsum("id,jd->ij", sqdiff)
    rng = np.random.default_rng(5)
    for _ in range(3):
        x, y = rng.random((4, 3)), rng.random((5, 3))
        np.testing.assert_allclose(f(x, y), reference("id,jd->ij", [x, y], sqdiff, "sum"))
    out = np.empty((4, 5))
    assert f(x, y, out=out) is out
    np.testing.assert_allclose(out, reference("id,jd->ij", [x, y], sqdiff, "sum"))
    assert f.signatures == 2  # the call with out= writes straight into it


@pytest.mark.parametrize(("reduce", "expected"), [("any", [True, False]), ("all", [False, False]),
                                                  ("sum", [1, 0])])
def test_comparison_bodies_under_boolean_reductions(reduce, expected):
    """A comparison body cast to bool must stay one comparison (not ``a > b != 0``)."""
    x = np.array([[1.0, -1.0], [-2.0, -3.0]])
    y = np.zeros((2, 2))
    got = einjit.CompiledEinsum("ij,ij->i", greater, reduce=reduce)(x, y)
    assert got.tolist() == expected


def test_semiring_reduces_a_label_only_one_operand_has_first():
    # min over k, j of a[i,k] + b[k,j,l]: l is only b's, k both: min over l first is
    # right because + distributes over min
    f = einjit.CompiledEinsum("ik,kl->i", minplus_body, reduce="min")
    rng = np.random.default_rng(2)
    ops = [rng.random((7, 40)), rng.random((40, 60))]
    e = f.explain(*ops)
    assert len(e.plan.steps) == 2 and e.plan.note.startswith("first ")
    np.testing.assert_allclose(f(*ops), reference("ik,kl->i", ops, minplus_body, "min"))
    g = einjit.CompiledEinsum("ik,kl->i", absdiff, reduce="sum")  # no semiring
    assert len(g.explain(*ops).plan.steps) == 1
    np.testing.assert_allclose(g(*ops), reference("ik,kl->i", ops, absdiff, "sum"))


@pytest.mark.parametrize("reduce", ["max", "min", "logsumexp"])
def test_max_min_folds_over_a_fully_unrolled_nest_compile_quickly(reduce):
    # PK,HK-> over 8 x 5 x 3 terms: numpy.maximum's compare-and-select chain, unrolled by
    # LLVM, took minutes to optimise; the folds use LLVM's maximum/minimum now
    f = einjit.CompiledEinsum("PK,HK->", absdiff, reduce=reduce)
    rng = np.random.default_rng(12)
    ops = [rng.random((8, 3)), rng.random((5, 3))]
    np.testing.assert_allclose(f(*ops), reference("PK,HK->", ops, absdiff, reduce), rtol=1e-12)
    ops[0][2, 1] = np.nan  # NaN propagates, as numpy's reductions propagate it
    assert np.isnan(f(*ops))


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_every_reduction_over_every_label_under_prange(reduce, monkeypatch):
    # Numba's parfors fold only + and *: the other reductions over every label stay serial
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        chunked=False, parallel_min_work=0))
    f = einjit.CompiledEinsum("mn,mn->", absdiff, reduce=reduce)
    ops = [np.arange(12.0).reshape(3, 4) / 7, np.ones((3, 4))]
    np.testing.assert_allclose(f(*ops), reference("mn,mn->", ops, absdiff, reduce), rtol=1e-12)
    assert (f.explain(*ops).nests[-1].schedule.parallel is None) == (reduce not in ("sum", "prod"))
