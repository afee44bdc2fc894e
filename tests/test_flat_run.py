"""Column sums read flat in runs of whole rows (Schedule.flat_run): results as numpy's."""

import numpy as np
import pytest

import einjit

RNG = np.random.default_rng(23)


def _schedule(eq, *ops):
    return einjit.explain(eq, *ops).nests[-1].schedule


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.complex128])
@pytest.mark.parametrize("shape", [(1000, 3), (997, 4), (301, 12), (64, 32), (5000, 7),
                                   (40, 5), (333, 1)])
def test_column_sums(shape, dtype):
    x = (RNG.standard_normal(shape) * 10).astype(dtype)
    if dtype is np.complex128:
        x = x + 1j * RNG.standard_normal(shape)
    y = (RNG.standard_normal(shape) * 10).astype(dtype)
    for eq, ops in (("ij->j", (x,)), ("ij,ij->j", (x, y))):
        if shape in ((1000, 3), (5000, 7)):  # many short rows: read flat
            assert _schedule(eq, *ops).flat_run, (eq, shape)
        got = einjit.einsum(eq, *ops)
        wide = [o.astype(np.complex128 if dtype is np.complex128 else
                         np.int64 if dtype is np.int64 else np.float64) for o in ops]
        ref = np.einsum(eq, *wide)
        if dtype is np.int64:
            np.testing.assert_array_equal(got, ref)
        else:  # sums that cancel: float32 rounding relative to the terms' magnitude
            size = np.max(np.einsum(eq, *[np.abs(o) for o in wide]))
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=size * (
                1e-6 if dtype is np.float32 else 1e-14))
        assert got.dtype == np.einsum(eq, *ops).dtype


def test_only_c_ordered_rows_are_read_flat():
    x = RNG.standard_normal((1000, 3))
    assert _schedule("ij->j", x).flat_run
    for view in (np.asfortranarray(x), RNG.standard_normal((1000, 6))[:, ::2],
                 RNG.standard_normal((3, 1000)).T):
        assert not _schedule("ij->j", view).flat_run
        np.testing.assert_allclose(einjit.einsum("ij->j", view), view.sum(0), rtol=1e-12)
    # a broadcast operand (read along j only) keeps the loops
    assert not _schedule("ij,j->j", x, x[0]).flat_run


def test_mixed_dtypes_and_out():
    x = RNG.standard_normal((999, 5)).astype(np.float32)
    y = RNG.standard_normal((999, 5))
    ref = np.einsum("ij,ij->j", x.astype(np.float64), y)
    np.testing.assert_allclose(einjit.einsum("ij,ij->j", x, y), ref, rtol=1e-12)
    out = np.empty(10)[::2]
    assert einjit.einsum("ij,ij->j", x, y, out=out) is out
    np.testing.assert_allclose(out, ref, rtol=1e-12)


@pytest.mark.parametrize("reduce", ["sum", "prod", "max", "min"])
def test_bodies_and_reductions(reduce):
    @einjit.compile("ij,ij->j", reduce=reduce)
    def f(a, b):
        return (a - b) ** 2 * 0.5 + 0.75

    x, y = RNG.random((1001, 6)), RNG.random((1001, 6))
    assert _schedule("ij,ij->j", x, y).flat_run
    terms = (x - y) ** 2 * 0.5 + 0.75
    ref = {"sum": terms.sum(0), "prod": terms.prod(0), "max": terms.max(0),
           "min": terms.min(0)}[reduce]
    for _ in range(2):
        np.testing.assert_allclose(f(x, y), ref, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.complex128])
def test_runs_split_over_threads(dtype):
    # from Policy.parallel_min_work terms, each chunk sums its runs into a partial output
    # of its own (chunk 0 adds the rows left over), folded after
    shape = (200003, 6)
    x = (RNG.standard_normal(shape) * 10).astype(dtype)
    y = (RNG.standard_normal(shape) * 10).astype(dtype)
    wide = np.complex128 if dtype is np.complex128 else np.int64 if dtype is np.int64 else np.float64
    for eq, ops in (("ij->j", (x,)), ("ij,ij->j", (x, y))):
        sched = _schedule(eq, *ops)
        assert sched.flat_run
        assert sched.threads == (2 if einjit.schedule.thread_count() > 1 else 0)
        ref = np.einsum(eq, *[o.astype(wide) for o in ops])
        size = np.einsum(eq, *[np.abs(o.astype(wide)) for o in ops])  # float32: 2e5 terms
        for _ in range(2):
            got = einjit.einsum(eq, *ops)
            if dtype is np.int64:
                np.testing.assert_array_equal(got, ref)
            else:
                np.testing.assert_allclose(got, ref, rtol=1e-12, atol=np.max(size) * (
                    1e-6 if dtype is np.float32 else 1e-14))


def test_rows_of_a_dynamic_count():
    # one kernel for every number of rows: the count read from the flat input
    @einjit.compile("ij,ij->j", dynamic="i")
    def dots(a, b):
        """column dots"""

    assert _schedule_dynamic("ij,ij->j", np.ones((1000, 3)), np.ones((1000, 3))).flat_run
    for n in (1000, 0, 1, 47, 48, 49, 1001, 30001):
        x, y = RNG.standard_normal((n, 3)), RNG.standard_normal((n, 3))
        np.testing.assert_allclose(dots(x, y), np.einsum("ij,ij->j", x, y),
                                   rtol=1e-12, atol=1e-12 * max(n, 1))


def _schedule_dynamic(eq, *ops):
    return einjit.explain(eq, *ops, dynamic="i").nests[-1].schedule


@pytest.mark.parametrize("eq,shape", [
    ("iq->q", (1000, 3)), ("bj->j", (1000, 3)), ("sj->j", (1000, 5)), ("is->s", (1000, 5)),
    ("nb->b", (700, 6)), ("rbj->rj", (4, 1000, 3)), ("qrs->qs", (3, 1000, 4)),
    ("fbq,fbq->fq", (5, 999, 3)), ("bij->bj", (64, 1000, 3)), ("bij->bj", (16, 5000, 4))])
def test_any_labels_and_a_batch_of_column_sums(eq, shape):
    # the kernel's own loop variables never shadow an index, whatever its letter
    ops = [RNG.standard_normal(shape) for _ in range(eq.count(",") + 1)]
    assert _schedule(eq, *ops).flat_run
    for _ in range(2):
        np.testing.assert_allclose(einjit.einsum(eq, *ops), np.einsum(eq, *ops), rtol=1e-12)


def test_a_large_batch_of_column_sums_splits_the_batch_over_threads():
    x = RNG.standard_normal((64, 5000, 4)).astype(np.float32)
    sched = _schedule("bij->bj", x)
    assert sched.flat_run
    assert sched.parallel == ("b" if einjit.schedule.thread_count() > 1 else None)
    ref = np.einsum("bij->bj", x.astype(np.float64))
    for _ in range(2):
        np.testing.assert_allclose(einjit.einsum("bij->bj", x), ref, rtol=1e-12,
                                   atol=1e-6 * np.abs(x).sum(1).max())


def test_a_column_sum_with_no_columns():
    """A step summing rows of no values (a zero extent) is no column sum to read in runs
    (found by hypothesis: a division by zero planning it)."""
    ops = [np.zeros((3, 0), np.int8), np.int8(2), np.zeros((1, 0), np.int8), np.int8(3)]
    for optimize in ("optimal", "greedy", False):
        got = einjit.einsum("K...,,K...,", *ops, optimize=optimize)
        assert got.shape == (0,) and got.dtype == np.int8
