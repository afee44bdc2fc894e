"""The decorator, the cache counters, the disk cache across processes, explain, backends."""

import functools
import os
import pathlib
import subprocess
import sys
import textwrap
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

import einjit

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_einsum_matches_numpy_bmm():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 5, 4)), rng.random((3, 4, 2))
    np.testing.assert_allclose(einjit.einsum("bij,bjk->bik", a, b),
                               np.einsum("bij,bjk->bik", a, b), rtol=1e-12)


def test_decorator_compiles_once_per_signature():
    @einjit.compile("bij,bjk->bik")
    def bmm(a, b):
        """Batched matrix product."""

    assert bmm.__doc__ == "Batched matrix product."
    assert bmm.__name__ == "bmm"
    rng = np.random.default_rng(2)
    a, b = rng.random((2, 3, 5)), rng.random((2, 5, 7))
    before = einjit.cache_info()
    r1 = bmm(a, b)
    mid = einjit.cache_info()
    r2 = bmm(a, b)
    after = einjit.cache_info()
    np.testing.assert_allclose(r1, np.einsum("bij,bjk->bik", a, b), rtol=1e-12)
    np.testing.assert_array_equal(r1, r2)
    assert mid["misses"] == before["misses"] + 1
    built = (mid["compilations"] + mid["disk_loads"]) - (before["compilations"] + before["disk_loads"])
    assert built == 1
    assert after["hits"] == mid["hits"] + 1
    assert after["compilations"] == mid["compilations"]
    assert after["disk_loads"] == mid["disk_loads"]
    assert bmm.signatures == 1
    bmm(a.astype(np.float32), b.astype(np.float32))  # a new dtype is a new signature
    bmm(np.asfortranarray(a), b)                      # so is a new layout
    assert bmm.signatures == 3


def test_decorator_keeps_kernels_after_clear_cache():
    @einjit.compile("ij->j")
    def colsum(a): ...

    x = np.arange(6.0).reshape(2, 3)
    colsum(x)
    einjit.clear_cache()
    np.testing.assert_array_equal(colsum(x), x.sum(axis=0))
    assert einjit.cache_info()["hits"] == 1


def test_decorator_rejects_a_bad_body_and_wrong_arity():
    with pytest.raises(TypeError, match="body of .*f.* cannot be fused"):
        @einjit.compile("ij,jk->ik")
        def f(a, b):
            return print(a, b)
    with pytest.raises(TypeError, match="2 operands"):
        @einjit.compile("ij,jk->ik")
        def g(a): ...
    with pytest.raises(ValueError, match="'%'"):
        einjit.compile("i%,j")
    # a callable that is no Python function
    with pytest.raises(TypeError, match="decorates a Python function, not partial"):
        einjit.compile("ij->j")(functools.partial(print))


def test_compile_called_with_operands_is_the_plain_einsum():
    # einjit.compile(eq)(a, b) is einsum(eq, a, b), its kernels kept by the decorator
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    matmul = einjit.compile("ij,jk->ik")
    np.testing.assert_array_equal(matmul(a, b), np.einsum("ij,jk->ik", a, b))
    out = np.empty((2, 4), np.float32)
    assert matmul(a, b, out=out, casting="unsafe") is out
    np.testing.assert_array_equal(out, np.einsum("ij,jk->ik", a, b))
    np.testing.assert_array_equal(einjit.compile("ij->j")(a), a.sum(axis=0))
    np.testing.assert_array_equal(einjit.compile("ik,kj->ij", reduce="max")(a, b),
                                  (a[:, :, None] * b[None]).max(axis=1))
    with pytest.raises(ValueError):  # too few operands, as numpy.einsum says
        matmul(a)
    with pytest.raises(ValueError):
        matmul()


def test_second_process_loads_kernels_from_disk(tmp_path):
    cache = tmp_path / "cache"
    script = textwrap.dedent("""
        import json, numpy as np, einjit
        a = np.arange(12.0).reshape(3, 4); b = np.arange(20.0).reshape(4, 5)
        r = einjit.einsum("ij,jk->ik", a, b)
        r3 = einjit.einsum("ij,jk,kl->il", a, b, b.T)
        assert np.allclose(r, a @ b) and np.allclose(r3, a @ b @ b.T)
        print(json.dumps(einjit.cache_info()))
    """)
    env = dict(os.environ, EINJIT_CACHE_DIR=str(cache))
    import json

    first = json.loads(subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                      capture_output=True, text=True).stdout)
    second = json.loads(subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    assert first["compilations"] == 3 and first["disk_loads"] == 0
    assert second["compilations"] == 0 and second["disk_loads"] == 3
    assert len(list((cache / "kernels").glob("k_*.py"))) == 3
    if os.name == "posix":
        assert (cache.stat().st_mode & 0o077) == 0  # owner-only


def test_cache_info_fields():
    info = einjit.cache_info()
    for field in ("hits", "misses", "compilations", "compile_seconds", "disk_loads"):
        assert field in info
    assert info["directory"] == os.environ["EINJIT_CACHE_DIR"]


def test_explain_shows_plan_loops_and_source():
    e = einjit.explain("ij,jk,kl->il", (4, 5), (5, 6), (6, 3))
    text = str(e)
    assert len(e.plan.steps) == 2
    assert "@njit(cache=True" in text and "for " in text and "acc +=" in text
    assert "plan for ij,jk,kl->il: 2 step(s)" in text
    a = np.ones((3, 3))
    assert "order" in str(einjit.explain("ii,i->i", a, a[0]))
    view = einjit.explain("ii->i", a)
    assert view.backend == "view" and not view.plan.steps


def test_explain_object_backend_is_ufuncs():
    e = einjit.explain("ij,jk->ik", np.ones((2, 2), dtype=object), np.ones((2, 2), dtype=object))
    assert e.backend == "numpy"
    assert "np.add.reduce" in str(e) and "einsum" not in e.sources[0]


def test_object_arrays_fractions_exact():
    a = np.array([[Fraction(1, 3), Fraction(2, 5)], [Fraction(-1, 7), Fraction(3, 2)]], dtype=object)
    b = np.array([[Fraction(1, 2)], [Fraction(5, 3)]], dtype=object)
    r = einjit.einsum("ij,jk->ik", a, b)
    assert r.dtype == object
    assert r.tolist() == np.einsum("ij,jk->ik", a, b).tolist()
    assert einjit.einsum("ii", a) == Fraction(1, 3) + Fraction(3, 2)


def test_object_arrays_decimals_and_errors_propagate():
    a = np.array([Decimal("1.1"), Decimal("2.2")], dtype=object)
    assert einjit.einsum("i,i->", a, a) == Decimal("1.1") ** 2 + Decimal("2.2") ** 2
    bad = np.array([None, 1], dtype=object)
    with pytest.raises(TypeError):
        np.einsum("i,i->i", bad, bad)
    with pytest.raises(TypeError):
        einjit.einsum("i,i->i", bad, bad)


def test_long_double_runs_on_numpy_backend():
    a = np.arange(6, dtype=np.longdouble).reshape(2, 3)
    r = einjit.einsum("ij,ij->i", a, a)
    assert r.dtype == np.longdouble
    np.testing.assert_array_equal(r, np.einsum("ij,ij->i", a, a))


def test_never_calls_another_einsum(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("einjit delegated to numpy.einsum")

    monkeypatch.setattr(np, "einsum", forbidden)
    a = np.arange(6.0).reshape(2, 3)
    einjit.einsum("ij,jk,kl->il", a, a.T, a, optimize=True)
    einjit.einsum("ij->", a.astype(object))


def test_parallel_schedule_for_large_work():
    e = einjit.explain("ij,jk->ik", (256, 128), (128, 64), dtype=np.int64)
    assert e.nests[0].schedule.parallel is not None and e.nests[0].schedule.threads > 1
    assert "(chunk + 1)) // chunks):" in e.sources[0] and "parallel=False" in e.sources[0]
    a = np.random.default_rng(3).integers(-9, 9, (256, 128))
    b = np.random.default_rng(4).integers(-9, 9, (128, 64))
    np.testing.assert_array_equal(einjit.einsum("ij,jk->ik", a, b), a @ b)
    assert einjit.explain("ij,jk->ik", (512, 512), (512, 512)).nests[0].schedule.gemm
    x = np.random.default_rng(5).random(1 << 20)
    e2 = einjit.explain("i,i,i->", x, x, x, optimize=False)
    assert e2.nests[0].schedule.parallel == "i"
    np.testing.assert_allclose(einjit.einsum("i,i,i->", x, x, x, optimize=False),
                               np.sum(x * x * x), rtol=1e-10)


def test_quickstart_example_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")],
                         check=True, capture_output=True, text=True).stdout
    assert "bij,bjk->bik" in out


def test_single_operand_without_sum_is_a_view_like_numpy():
    a = np.arange(12, dtype=np.int16).reshape(3, 4)
    for eq in ("ij->ji", "ij", "ji", "...->..."):
        r, ref = einjit.einsum(eq, a, dtype=np.int32), np.einsum(eq, a, dtype=np.int32)
        assert r.dtype == ref.dtype == np.int16
        assert np.shares_memory(r, a)
        np.testing.assert_array_equal(r, ref)
    d = einjit.einsum("ii->i", np.arange(9.0).reshape(3, 3))
    assert d.flags.writeable and d.tolist() == [0.0, 4.0, 8.0]


def test_deep_nests_are_fused():
    a = np.random.default_rng(6).random([2, 1, 3] + [1] * 20 + [2, 2, 3])
    # every other label summed: no two summed labels adjacent, so none merge
    for eq in ("abcdefghijklmnopqrstuvwxyz->zxvtrpnljhfdb",
               "abcdefghijklmnopqrstuvwxyz->zyxwvutsrqponmlk"):
        np.testing.assert_allclose(einjit.einsum(eq, a), np.einsum(eq, a), rtol=1e-12)
        assert any(einjit.explain(eq, a).nests[0].schedule.fuse)


def test_out_dtype_joins_the_computation_dtype_like_numpy():
    a, b = np.ones((2, 3), bool), np.ones((3, 4), bool)
    out = np.zeros((2, 4), np.int32)
    assert einjit.einsum("ij,jk->ik", a, b, out=out) is out
    np.testing.assert_array_equal(out, np.einsum("ij,jk->ik", a, b, out=np.zeros_like(out)))
    assert out[0, 0] == 3


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_out_overlapping_an_operand_gets_the_result_of_the_operands_as_given(dtype):
    # Kernels are compiled with their arguments marked noalias (einjit.codegen.noalias):
    # an ``out`` that is an operand, or a view into one, must never reach a kernel.
    rng = np.random.default_rng(7)
    for eq, shapes, at in (("ij,j->ij", ((40, 24), (24,)), lambda a, b: a),
                           ("ij,jk->ik", ((24, 24), (24, 24)), lambda a, b: b),
                           ("ij->ji", ((24, 24),), lambda a: a),
                           ("ij,j->i", ((24, 40), (40,)), lambda a, b: b[:24])):
        for call in range(2):  # the first call plans, the second replays the signature
            ops = [rng.integers(-9, 9, s).astype(dtype) for s in shapes]
            want = np.einsum(eq, *[o.copy() for o in ops])
            out = at(*ops)
            assert einjit.einsum(eq, *ops, out=out) is out
            np.testing.assert_array_equal(out, want)


def test_optimized_path_assigns_into_out_like_numpy():
    # numpy's own test gh-31350: with optimize= given, numpy assigns its last step into
    # ``out`` (an unsafe cast); without it, casting="safe" refuses float64 into int64.
    a = np.arange(7.0) + 0.75
    out = np.array(0)
    assert einjit.einsum("i,i->", a, a, out=out, optimize="optimal") is out
    assert out == int(np.dot(a, a))
    b, v = np.arange(12.0).reshape(3, 4) + 0.5, np.ones(4)
    got = einjit.einsum("ij,j->i", b, v, out=np.zeros(3, int), optimize=True)
    np.testing.assert_array_equal(got, b.sum(1).astype(int))
    for optimize in ({}, {"optimize": False}):
        with pytest.raises(TypeError, match="cannot be cast"):
            einjit.einsum("i,i->", a, a, out=np.array(0), **optimize)
    with pytest.raises(TypeError, match="cannot be cast"):  # one operand: numpy checks
        einjit.einsum("i->", a, out=np.array(0), optimize=True)

def test_order_k_follows_numpys_iterator():
    a = np.ones((2, 3, 5), order="F")
    b = np.ones((4, 3), order="F")
    for order in "AaFfCcKk":
        got = einjit.einsum("...ft,mf->...mt", a, b, order=order)
        ref = np.einsum("...ft,mf->...mt", a, b, order=order)
        assert got.strides == ref.strides, order
    with pytest.raises(ValueError, match="order"):
        einjit.einsum("ij", a[0], order="Q")


@pytest.mark.parametrize(("eq", "shapes"), [
    ("bd,aca->dabc", [(1, 7), (6, 3, 6)]),     # b has length 1: no stride to compare
    ("cc,ab->bca", [(5, 5), (1, 8)]),
    ("b,cba->abc", [(3,), (3, 3, 1)]),
])
def test_order_k_ignores_the_strides_of_length_1_axes_like_numpy(eq, shapes):
    ops = [np.ones(s) for s in shapes]
    ops[0] = np.asfortranarray(ops[0])
    assert einjit.einsum(eq, *ops).strides == np.einsum(eq, *ops).strides


def test_long_float_sums_are_chunked():
    value = 1.0 + np.finfo(np.float64).eps * 8196
    x = np.broadcast_to(np.array(value), 1_000_000)
    assert abs(einjit.einsum("i->", x) / x.size - value) < 1.5e-15
    assert einjit.explain("i->", x).nests[0].schedule.chunk


def test_float32_sums_over_nested_loops_keep_their_precision():
    # ab,bc,cd-> in one nest: 8 million float32 terms; with one accumulator for them all
    # the relative error was 7e-4 (numpy's 4e-6); a partial sum per loop keeps it ~1e-7
    rng = np.random.default_rng(0)
    b = rng.random((200, 200), dtype=np.float32)
    exact = np.einsum("ab,bc,cd->", *[b.astype(np.float64)] * 3)
    got = einjit.einsum("ab,bc,cd->", b, b, b, optimize=False)
    assert got.dtype == np.float32
    assert abs(got / exact - 1) < 2e-6
    c = rng.random((12, 12, 12), dtype=np.float32)
    exact = np.einsum("abc,cde,efg->", *[c.astype(np.float64)] * 3)
    assert abs(einjit.einsum("abc,cde,efg->", c, c, c, optimize=False) / exact - 1) < 2e-6
    # four output values at once in registers, half a million terms each (opt_einsum's
    # test_contract case, at float32: relative error 1e-4 with one accumulator each)
    eq = "hbc,bdef,cdkj,ji,ikeh,lfo"
    ops = [rng.random(sh, dtype=np.float32) for sh in
           ((6, 3, 4), (3, 5, 4, 3), (4, 5, 3, 4), (4, 5), (5, 3, 4, 6), (2, 3, 4))]
    exact = np.einsum(eq, *[op.astype(np.float64) for op in ops])
    got = einjit.einsum(eq, *ops, optimize=False)
    assert "4 values of o at once" in str(einjit.explain(eq, *ops, optimize=False).nests[0])
    np.testing.assert_allclose(got, exact, rtol=2e-6)


@pytest.mark.parametrize("optimize", [False, True, "greedy", "optimal", None,
                                      ["einsum_path", (0, 1)], ["einsum_path", (0, 1, 2)],
                                      ["einsum_path", (1, 2), (0, 1)]])
def test_full_contractions_return_what_numpy_returns_for_each_optimize(optimize):
    # numpy 2.x: a scalar from its default path, else what the path's last step gives
    # (a 0-d array from a two-operand step that sums an index, the scalar of a product
    # otherwise); values as numpy's, twice (the fast path too).
    x, a = np.arange(5.0), np.arange(4.0).reshape(2, 2)
    one, c, s = np.ones(1), np.arange(4.0), np.float64(2.0)
    rng = np.random.default_rng(3)
    seven = [rng.random(sh) for sh in [(3,), (3, 4), (3, 5), (3, 6), (4, 6), (5, 6), (5, 4)]]
    cases = [("i,i", (x, x)), ("i->", (x,)), ("ii", (a,)), ("->", (np.array(3.0),)),
             ("ij,jk,kl->", (a, a, a)), ("i,i,i", (x, x, x)), ("ij,jk,kl->il", (a, a, a)),
             ("i,i", (one, one)), ("ab,ab,c->", (a, a, c)), (",,->", (s, s, s)),
             ("a,ac,ab,ad,cd,bd,bc->", seven),
             # a summed label broadcast from one value: no matrix product (a scalar);
             # one of no values in both: a matrix product (a 0-d array), object too
             ("i,i", (c, one)), ("ij,ij->", (np.ones((1, 4)), np.ones((3, 1)))),
             ("ij,j->", (a, one)), ("i,i", (np.zeros(0), np.zeros(0))),
             ("i,i", (np.zeros(0, object), np.zeros(0, object))),
             ("ij,jk,k->", (np.ones((1, 3)), np.ones((3, 2)), np.ones(1)))]
    for eq, ops in cases:
        try:
            want = np.einsum(eq, *ops, optimize=optimize)
        except (ValueError, TypeError, IndexError, RuntimeError):  # a path not fitting them
            continue
        for _ in range(2):
            got = einjit.einsum(eq, *ops, optimize=optimize)
            assert type(got) is type(want), (eq, optimize)
            assert getattr(got, "dtype", None) == getattr(want, "dtype", None), (eq, optimize)
            np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float),
                                       rtol=1e-13)


def test_an_optimize_value_equal_to_a_cached_one_is_still_checked():
    # 1 == True and 0 == False (equal hashes), but numpy refuses optimize=1 and 0; so
    # does einjit, also after a call with True or False put its plan in the caches
    a, b, c = np.ones((3, 4)), np.ones((4, 5)), np.ones((5, 2))
    for good, bad in ((True, 1), (False, 0)):
        einjit.einsum("ij,jk,kl->il", a, b, c, optimize=good)
        with pytest.raises(TypeError):
            np.einsum("ij,jk,kl->il", a, b, c, optimize=bad)
        with pytest.raises(TypeError):
            einjit.einsum("ij,jk,kl->il", a, b, c, optimize=bad)
    # dtype= "q" and "l" are equal dtypes of different names: the result keeps the name
    q = np.arange(7, dtype="q")
    for name in ("q", "l", "q"):
        assert einjit.einsum("i,i->i", q, q, dtype=np.dtype(name)).dtype.char == name


def test_a_path_of_no_steps_returns_a_0d_array_as_numpy_does():
    # optimize=["einsum_path"] on one operand: numpy's path has no step and it returns
    # its operand as an array (opt_einsum's test_pathinfo_for_empty_contraction)
    for _ in range(2):
        got = einjit.einsum("->", 1.0, optimize=["einsum_path"])
        assert type(got) is np.ndarray and got.shape == () and got == 1.0
    assert type(einjit.einsum("->", 1.0)) is np.float64


@pytest.mark.parametrize("optimize", [("greedy", 10), ("optimal", 1e6), ("greedy", 0),
                                      ["greedy", 1000]])
def test_optimize_with_a_memory_limit_as_numpy(optimize):
    # numpy's (finder, largest intermediate) form: same values and result type; a limit
    # no pairwise step fits in gives one step over every operand (a scalar for three).
    rng = np.random.default_rng(8)
    a, b, c = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((5, 2))
    for eq, ops in [("ij,jk,kl->il", (a, b, c)), ("ij,jk,kl->", (a, b, c)), ("ij,jk->", (a, b)),
                    ("ij->", (a,))]:
        want = np.einsum(eq, *ops, optimize=optimize)
        for _ in range(2):
            got = einjit.einsum(eq, *ops, optimize=optimize)
            assert type(got) is type(want), (eq, optimize)
            np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(KeyError):
        einjit.einsum("ij,jk,kl->il", a, b, c, optimize=("bogus", 10))


@pytest.mark.parametrize("eq,shapes,steps", [
    ("cd,abc->a", ((50, 30), (2, 10, 50)), 2),            # d only in the first operand
    ("ad,c->c", ((12, 30), (6,)), 2),                     # a whole operand summed: a 0-d value
    ("dc,bd,cab->db", ((6, 5), (30, 6), (5, 8, 30)), 2),  # then one fused nest
    ("ae,aed->", ((4, 9), (4, 9, 50)), 1),               # summing d first reads as much
    ("ab,bc->ac", ((20, 30), (30, 40)), 1),                # nothing only one operand has
    ("ij,jk->i", ((3, 4), (4, 2)), 1),                     # k: too small to pay
    ("cba,ac->a", ((40, 40, 32), (32, 40)), 2),  # fused, ac would be gathered along a
    ("abc,c->a", ((40, 40, 32), (32,)), 1),      # fused, c is read along its run
    ("deb,adc->dba", ((32, 8, 2), (32, 32, 32)), 3),  # c too: 53 % of 2**16 terms left
    ("deb,adc->dba", ((8, 8, 2), (8, 8, 8)), 2),      # not c: 52 % of 2**10 terms left
    ("cd,abc->a", ((10, 30), (5, 6, 10)), 2),  # d: 1 456 of 9 000 terms, with the call
    ("cd,abc->a", ((2, 5), (2, 3, 2)), 1),     # not d: the call costs more than it saves
])
def test_labels_only_one_operand_has_are_summed_first(eq, shapes, steps):
    rng = np.random.default_rng(5)
    for dtype in (np.float64, np.int64):
        ops = [rng.integers(-9, 9, s).astype(dtype) for s in shapes]
        got = einjit.einsum(eq, *ops)
        want = np.einsum(eq, *[o.astype(np.float64) for o in ops])
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-12)
    plan = einjit.explain(eq, *ops).plan
    assert len(plan.steps) == steps
    if steps > 1:
        assert plan.note.startswith("first summed over the labels only one operand has")
    # numpy's own fused evaluation when asked for it
    assert len(einjit.explain(eq, *ops, optimize=False).plan.steps) == 1


@pytest.mark.parametrize("eq,shapes", [("b,ab,b->b", ((100,), (50, 100), (100,))),
                                       ("i,ij->i", ((64,), (64, 80)))])
def test_complex_products_count_when_summing_first(eq, shapes):
    """A complex product costs about as much as an iteration's loads and adds: in complex
    arithmetic the operand's own labels are summed first, where real operands (their
    products fused into the adds) stay one loop nest."""
    rng = np.random.default_rng(7)
    ops = [rng.standard_normal(s) for s in shapes]
    assert len(einjit.explain(eq, *ops).plan.steps) == 1
    for dtype in (np.complex64, np.complex128):
        zs = [(o + 1j * o[..., ::-1]).astype(dtype) for o in ops]
        plan = einjit.explain(eq, *zs).plan
        assert len(plan.steps) == 2 and plan.steps[0].args == (1,)
        got = einjit.einsum(eq, *zs)
        assert got.dtype == dtype
        wide = [z.astype(np.complex128) for z in zs]
        tol = 1e-5 if dtype == np.complex64 else 1e-12  # of the terms' magnitudes
        np.testing.assert_allclose(got, np.einsum(eq, *wide), rtol=tol,
                                   atol=tol * np.einsum(eq, *map(np.abs, wide)).max())


def test_labels_summed_first_then_a_pairwise_path():
    rng = np.random.default_rng(6)
    ops = [rng.random(s) for s in ((64, 32), (300, 64), (32, 8, 300))]
    plan = einjit.explain("dc,bd,cab->db", *ops).plan
    assert len(plan.steps) == 3 and plan.steps[0].args == (2,) and "then split" in plan.note
    np.testing.assert_allclose(einjit.einsum("dc,bd,cab->db", *ops),
                               np.einsum("dc,bd,cab->db", *ops, optimize=True), rtol=1e-12)


def test_of_equally_cheap_paths_the_one_reading_its_operands_as_matrices(avx2_tiles):
    # ijk,jr,kr->ir: summing j or k first costs the same; k first reads ijk as one
    # (ij) x k matrix (one BLAS call), j first as a batch of i matrices.  With ijk laid
    # out as ikj, j first is the one product read whole.  (Planned as on AVX2, where
    # these float64 products are BLAS calls; AVX-512 runs them as register tiles.)
    rng = np.random.default_rng(11)
    ops = [rng.random((24, 24, 24)), rng.random((24, 16)), rng.random((24, 16))]
    ikj = np.ascontiguousarray(ops[0].transpose(0, 2, 1)).transpose(0, 2, 1)
    for a, first in ((ops[0], (0, 2)), (ikj, (0, 1))):
        explained = einjit.explain("ijk,jr,kr->ir", a, *ops[1:])
        assert explained.plan.steps[0].args == first, explained.plan
        assert not explained.nests[0].schedule.gemm.batch
        np.testing.assert_allclose(einjit.einsum("ijk,jr,kr->ir", a, *ops[1:]),
                                   np.einsum("ijk,jr,kr->ir", *ops), rtol=1e-12)


def test_an_intermediate_loops_consume_is_laid_out_as_one_matrix_product(avx2_tiles):
    # bn,anm,bm->ba: anm x bm first; laid out (a,b,n), as the loops after it read it
    # best, it is a batch of a products; laid out (a,n,b), one product of (a n) rows
    rng = np.random.default_rng(12)
    ops = [rng.random(s) for s in ((64, 32), (16, 32, 32), (64, 32))]
    explained = einjit.explain("bn,anm,bm->ba", *ops)
    assert explained.plan.steps[0].kernel.output.indices == ("a", "n", "b")
    assert not explained.nests[0].schedule.gemm.batch
    for _ in range(2):
        np.testing.assert_allclose(einjit.einsum("bn,anm,bm->ba", *ops),
                                   np.einsum("bn,anm,bm->ba", *ops), rtol=1e-12)


def test_matrix_vector_paths_split_where_the_loops_would_run_on_threads():
    # x^T A y: the fused loop nest and the path (a BLAS matrix-vector product, then a
    # dot) move the same bytes; from Policy.parallel_min_work terms the path is taken
    # (the loops' threads would share the cores with BLAS's), below it one loop nest
    rng = np.random.default_rng(10)
    for n, steps in ((1024, 2), (256, 1)):
        ops = [rng.random(n), rng.random((n, n)), rng.random(n)]
        plan = einjit.explain("i,ij,j->", *ops).plan
        assert len(plan.steps) == steps, plan
        assert ("in BLAS calls" in plan.note) == (steps == 2), plan.note
        np.testing.assert_allclose(einjit.einsum("i,ij,j->", *ops),
                                   np.einsum("i,ij,j->", *ops), rtol=1e-12)


@pytest.mark.parametrize(("eq", "shapes"), [
    ("bc,f,df,fech,bac->bahd", ((32, 64), (4,), (64, 4), (4, 16, 64, 8), (32, 16, 64))),
    ("d,ca,ef,ebda,ceda,egd->dbgc",
     ((8,), (32, 64), (128, 64), (128, 16, 8, 64), (32, 128, 8, 64), (128, 32, 8))),
])
def test_many_operands_take_the_modelled_fastest_of_several_paths(eq, shapes):
    # opt_einsum's "auto" (branch and bound) took 8x the fewest flops on the first and a
    # 34-million-element intermediate on the second (3x numpy's time); of its path, the
    # dynamic programming ones and the greedy one, the plan has the modelled fastest
    from einjit import planner

    plan = einjit.explain(eq, *shapes, dtype="float64").plan
    assert "path: the modelled fastest of" in plan.note, plan.note  # not opt_einsum auto
    inputs = [tuple(t) for t in eq.split("->")[0].split(",")]
    size = {lb: n for t, s in zip(inputs, shapes) for lb, n in zip(t, s)}
    auto = einjit.explain(eq, *shapes, dtype="float64", optimize=[
        "einsum_path", *planner._opt_einsum_finder("auto")(
            [set(t) for t in inputs], set(eq.split("->")[1]), size)]).plan
    assert planner.modelled_s(plan.steps) < 0.8 * planner.modelled_s(auto.steps)
    assert sum(s.flops for s in plan.steps) < sum(s.flops for s in auto.steps)
    rng = np.random.default_rng(13)
    ops = [rng.random(s) for s in shapes]
    np.testing.assert_allclose(einjit.einsum(eq, *ops), np.einsum(eq, *ops, optimize=True),
                               rtol=1e-12)


@pytest.mark.parametrize(("eq", "shapes", "dtype"), [
    ("ddf,ad,f,,fce,a->", ((4, 4, 4), (4, 4), (4,), (), (4, 2, 0), (4,)), np.complex128),
    ("g,,aa,f,gee->f", ((4,), (), (7, 7), (4,), (4, 0, 0)), np.float32),
    ("ab,bc,cd,de,ef->af", ((3, 0), (0, 4), (4, 5), (5, 2), (2, 3)), np.float64),
])
def test_many_operands_with_a_zero_size_label(eq, shapes, dtype):
    # dynamic programming finds no path over a zero-size label (opt_einsum raises
    # RuntimeError); the plan keeps opt_einsum's auto path
    rng = np.random.default_rng(14)
    ops = [rng.random(s).astype(dtype) for s in shapes]
    got = einjit.einsum(eq, *ops)
    ref = np.einsum(eq, *ops)
    assert np.shape(got) == np.shape(ref) and np.asarray(got).dtype == np.asarray(ref).dtype
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_an_intermediate_the_result_is_made_of_is_laid_out_like_it():
    # ab,dca->(dcb) then (dcb),db->dcb: laid out like the result (dcb) rather than its
    # partner db alone (cdb), the first product reads dca as one matrix, no copy
    rng = np.random.default_rng(7)
    ops = [rng.random(s) for s in ((32, 17), (32, 32, 32), (32, 17))]
    explained = einjit.explain("ab,dca,db->dcb", *ops)
    first, second = explained.nests
    assert explained.plan.steps[0].kernel.output.indices == ("d", "c", "b")
    assert first.schedule.gemm and first.schedule.gemm.copy == (False, False)
    for _ in range(2):  # the launcher too
        np.testing.assert_allclose(einjit.einsum("ab,dca,db->dcb", *ops),
                                   np.einsum("ab,dca,db->dcb", *ops), rtol=1e-12)


def test_an_intermediate_keeps_its_batch_index_off_the_innermost_axis():
    # cb,cdb -> an intermediate over c, d, b, then abd with it -> cda: d is that second
    # product's batch index; with d innermost (as abd has it) no matrix of the
    # intermediate has a unit stride and BLAS would copy it: it is laid out cdb instead,
    # read as matrices in place
    rng = np.random.default_rng(8)
    ops = [rng.random(s) for s in ((16, 64, 5), (48, 64), (48, 5, 64))]
    explained = einjit.explain("abd,cb,cdb->cda", *ops)
    first, second = explained.nests
    assert first.kernel.output.indices == ("c", "d", "b")
    assert second.schedule.gemm and second.schedule.gemm.copy[1] is False
    for _ in range(2):
        np.testing.assert_allclose(einjit.einsum("abd,cb,cdb->cda", *ops),
                                   np.einsum("abd,cb,cdb->cda", *ops), rtol=1e-12)


@pytest.mark.parametrize("eq,shapes", [
    # one matrix per axis of a tensor (a Tucker product), summed in the tensor's order:
    # each product sums the leading axis and appends its new one last, so every
    # operand and every intermediate is a matrix BLAS reads or writes as it is (the
    # partner-led order copied all four)
    ("ea,fb,abcd,gc,hd->efgh", [(8, 12), (9, 12), (12, 12, 12, 12), (10, 12), (11, 12)]),
    ("ab,bcd,de->ace", [(30, 31), (31, 32, 33), (33, 34)]),
    # a chain whose intermediates are written transposed (C^T = B^T A^T)
    ("ij,jk,kl,lm->im", [(40, 41), (41, 42), (42, 43), (43, 44)]),
])
def test_intermediates_between_matrix_products_are_never_copied(eq, shapes):
    rng = np.random.default_rng(9)
    ops = [rng.random(s) for s in shapes]
    nests = einjit.explain(eq, *ops, optimize="greedy").nests
    assert len(nests) == len(shapes) - 1
    for nest in nests:
        gemm = nest.schedule.gemm
        assert gemm and gemm.copy == (False, False) and gemm.direct, nest.kernel
    for _ in range(2):
        np.testing.assert_allclose(einjit.einsum(eq, *ops, optimize="greedy"),
                                   np.einsum(eq, *ops), rtol=1e-12)


@pytest.mark.parametrize("eq,views", [
    # slices of Fortran-ordered matrices, reversed axes, a batch of such slices
    ("ij,jk->ik", lambda a, c: (a[::2, ::2], a[1::2, ::3])),
    ("ij,jk->ik", lambda a, c: (a[::-1], a[:, ::-1])),
    ("ij,jk->ki", lambda a, c: (a[::-1, ::2], a[1::2])),
    ("bij,bjk->bik", lambda a, c: (c[:, ::2], c[::-1, ::-1, :64])),
])
def test_a_gemm_copies_a_strided_operand_in_its_own_memory_order(eq, views, avx2_tiles):
    # BLAS needs unit-stride matrices: a strided operand is copied first, in its own
    # memory order (a Fortran-ordered slice stays Fortran-ordered, read transposed by
    # BLAS), not transposed into C order (numpy's 2-D transposing copy runs 10-20x slower)
    rng = np.random.default_rng(11)
    a = np.asfortranarray(rng.random((1536, 1536)))[:192, :192]  # rows 12 KB apart
    c = np.asfortranarray(rng.random((96, 96, 4))).transpose(2, 0, 1)  # F-ordered matrices
    ops = views(a, c)
    gemm = einjit.explain(eq, *ops).nests[0].schedule.gemm
    assert gemm and gemm.copy == (True, True) and all(gemm.memory), gemm
    for _ in range(2):
        np.testing.assert_allclose(einjit.einsum(eq, *ops), np.einsum(eq, *ops), rtol=1e-12)


def test_a_large_operand_copied_across_its_rows_goes_through_einjits_own_kernel(monkeypatch):
    # Fortran-ordered stacks of matrices (the batch innermost): BLAS needs each matrix
    # with unit stride, so both operands and the product are copied across their rows;
    # numpy's copy gathers one element at a time, einjit's permutation kernel copies in
    # tiles (float64 64 x 128 x 128: 24.5 -> 12 ms in all)
    from einjit.codegen import blas
    from einjit import api

    calls = []
    real = api.einsum

    def spy(subscripts, *operands, **kwargs):
        calls.append((subscripts, operands[0].shape))
        return real(subscripts, *operands, **kwargs)

    monkeypatch.setattr(api, "einsum", spy)
    rng = np.random.default_rng(17)
    a = np.asfortranarray(rng.random((16, 128, 160)))  # products of 2^21.3 multiply-adds:
    b = np.asfortranarray(rng.random((16, 160, 136)))  # BLAS calls on any host
    assert a.nbytes >= blas.KERNEL_COPY_BYTES
    source = einjit.explain("bij,bjk->bik", a, b).sources[0]
    assert "contiguous(a0" in source and "contiguous(a1" in source, source
    calls.clear()
    np.testing.assert_allclose(real("bij,bjk->bik", a, b), np.matmul(a, b), rtol=1e-12)
    copies = [("abc->abc", (16, 136, 160)), ("abc->abc", (16, 160, 128))]
    if "copy_into(out" in source:  # the product copied out whole (else per batch value)
        copies.append(("abc->abc", (16, 128, 136)))
    assert sorted(calls) == sorted(copies)
    # a product copied out whole, across its rows
    c = np.asfortranarray(rng.random((64, 128, 128)))
    source = einjit.explain("bij,bjk->bik", c, c).sources[0]
    assert "copy_into(out" in source
    calls.clear()
    np.testing.assert_allclose(real("bij,bjk->bik", c, c), np.matmul(c, c), rtol=1e-12)
    assert ("abc->abc", (128, 128, 64)) in calls
    # small, read along rows, or cast: numpy's copy
    calls.clear()
    small = np.asfortranarray(rng.random((4, 8, 8)))
    np.testing.assert_allclose(real("bij,bjk->bik", small, small), np.matmul(small, small),
                               rtol=1e-12)
    assert not calls
    x = a[:, :, ::2]  # its last axis strided (as is a's): copied by the kernel, unless cast
    for y in (np.ascontiguousarray(a)[:, ::2], x):
        np.testing.assert_array_equal(blas.contiguous(y), np.ascontiguousarray(y))
    np.testing.assert_array_equal(blas.contiguous(x, np.float32),
                                  np.ascontiguousarray(x, dtype=np.float32))
    assert [c[0] for c in calls] == ["abc->abc"]  # x only: its last axis strided, no cast


@pytest.mark.parametrize("views", [
    lambda a, b: (np.asfortranarray(a), np.asfortranarray(b)),
    lambda a, b: (a[::-1, :, ::-1], b[:, ::-1]),
    lambda a, b: (a.transpose(2, 1, 0).copy().transpose(2, 1, 0)[:, ::2], b[:, :, ::2]),
    lambda a, b: (a[:1], b),  # a broadcast batch
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_gemm_copies_through_einjits_kernel_are_exact(views, dtype, monkeypatch):
    from einjit.codegen import blas

    monkeypatch.setattr(blas, "KERNEL_COPY_BYTES", 0)  # every copy across rows: a kernel
    rng = np.random.default_rng(18)
    a = rng.random((6, 40, 24)).astype(dtype)
    b = rng.random((6, 24, 36)).astype(dtype)
    ops = views(a, b)
    got = einjit.einsum("bij,bjk->bik", *ops)
    want = np.einsum("bij,bjk->bik", *[o.astype(np.complex128 if dtype == np.complex128
                                                 else np.float64) for o in ops])
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_a_batch_of_products_read_in_place_beats_one_product_between_copies(avx2_tiles):
    # adc,dg->gac: a batch over a of (g x d) @ (d x c) reads both operands and writes the
    # result in place; one product over rows (a, c) needs a copy of adc and of the
    # result.  With BLAS's rate modelled at what this machine's OpenBLAS runs, the
    # batch wins, as measured (float64: 2.2 -> 0.5-0.8 ms)
    rng = np.random.default_rng(13)
    ops = [rng.random((256, 48, 64)), rng.random((48, 24))]
    gemm = einjit.explain("adc,dg->gac", *ops).nests[0].schedule.gemm
    assert gemm and gemm.batch == ("a",) and gemm.copy == (False, False) and gemm.direct, gemm
    np.testing.assert_allclose(einjit.einsum("adc,dg->gac", *ops),
                               np.einsum("adc,dg->gac", *ops), rtol=1e-12)


def test_a_copy_pays_for_its_rows_and_its_new_buffer():
    # bca,cd over 8 x 1000 x 64 by 1000 x 17: one product over rows (b, a) first copies
    # bca into (c, b, a) order, 8000 runs of 64 values into a new 4 MB buffer; a batch of
    # 8 products over b reads it in place (float32: 0.39 -> 0.27 ms; the first model
    # priced the copy by its bytes alone)
    rng = np.random.default_rng(14)
    ops = [rng.random((8, 1000, 64)).astype(np.float32), rng.random((1000, 17)).astype(np.float32)]
    gemm = einjit.explain("bca,cd", *ops).nests[0].schedule.gemm
    assert gemm and gemm.batch == ("b",) and gemm.copy == (False, False) and gemm.direct, gemm
    np.testing.assert_allclose(einjit.einsum("bca,cd", *ops),
                               np.einsum("bca,cd", *(o.astype(np.float64) for o in ops)), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_a_product_is_copied_out_along_its_rows(dtype):
    # dbe,bc over 512 x 100 x 2 by 100 x 64: the result is laid out d, c, e (numpy's
    # order), the product (d, e) x c; one copy walks the result in runs of 2 (e), one
    # per value of e runs along the product's rows of 64 (float32 copy 323 -> 36 us)
    rng = np.random.default_rng(15)
    ops = [rng.random((512, 100, 2)).astype(dtype), rng.random((100, 64)).astype(dtype)]
    gemm = einjit.explain("dbe,bc", *ops).nests[0].schedule.gemm
    assert gemm and not gemm.direct and gemm.peel == ("e",), gemm
    got = einjit.einsum("dbe,bc", *ops)
    want = np.einsum("dbe,bc", *(o.astype(np.complex128) for o in ops))
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert got.strides == np.einsum("dbe,bc", *ops).strides  # numpy's memory order
    out = np.zeros((64, 512, 2), dtype)[:, :, ::-1]  # out= of other strides: one copy
    einjit.einsum("dbe,bc", *ops, out=out)
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_small_products_that_blas_would_copy_run_as_loops():
    # dfbc,bacd->fcad: 400 products of 128 x 24 by 24 x 16 (batch c, d); BLAS would copy
    # both operands and the result (transposing copies); loops vectorised along c read
    # them as they are (float64 6.0 -> 2.8 ms)
    rng = np.random.default_rng(14)
    ops = [rng.random((4, 128, 24, 100)), rng.random((24, 16, 100, 4))]
    nests = einjit.explain("dfbc,bacd->fcad", *ops).nests
    assert all(n.schedule.gemm is None for n in nests), [str(n.schedule) for n in nests]
    np.testing.assert_allclose(einjit.einsum("dfbc,bacd->fcad", *ops),
                               np.einsum("dfbc,bacd->fcad", *ops), rtol=1e-12)


@pytest.mark.parametrize("dtypes", [
    ("float32", "float64"), ("int32", "float64"), ("float64", "complex64"),
    ("int8", "float32"), ("bool", "complex128"), ("float16", "float32"),
])
def test_a_gemm_over_operands_of_two_dtypes_casts_as_it_copies(dtypes, avx2_tiles):
    # float32 by float64 (numpy computes in float64): BLAS reads a float64 copy of the
    # float32 operand, made in its memory order, rather than loops (2-3x slower; as
    # planned with AVX2's tiles: AVX-512's float32 ones beat the cast copy and BLAS)
    rng = np.random.default_rng(12)
    a = (rng.random((96, 80)) * 8).astype(dtypes[0])
    b = np.asfortranarray((rng.random((80, 64)) * 8).astype(dtypes[1]))
    b += 1j if b.dtype.kind == "c" else 0
    for eq, ops in (("ij,jk->ik", (a, b)), ("jk,ij->ik", (b, a)), ("ij,jk->ki", (a, b[:, ::2]))):
        gemm = einjit.explain(eq, *ops).nests[0].schedule.gemm
        assert gemm is not None
        got = einjit.einsum(eq, *ops)
        want = np.einsum(eq, *(np.asarray(op, dtype=got.dtype) for op in ops))
        assert got.dtype == np.result_type(*ops)
        np.testing.assert_allclose(got, want, rtol=1e-5 if got.dtype.itemsize <= 8 else 1e-12)
    # a cast that loses values (dtype= below an operand's) stays on loops, as numpy casts
    got = einjit.einsum("jk,ij->ik", b.real.astype(np.float64), a, dtype=np.float32,
                        casting="same_kind")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.einsum("jk,ij->ik", b.real.astype(np.float64), a,
                                              dtype=np.float32, casting="same_kind"), rtol=1e-5)


@pytest.mark.parametrize("eq,shapes,merged", [
    ("edc->", ((40, 6, 2),), "e"),                      # every label: one loop
    ("ijk,ijk->i", ((30, 10, 3), (30, 10, 3)), "i,j"),  # j and k merge, i is the output's
    ("ijk,jk->i", ((5, 10, 3), (10, 3)), "i,j"),
    ("ijk,kj->i", ((5, 10, 3), (3, 10)), "i,j,k"),      # k before j in one, after in the other
    ("ij,ij->j", ((4, 5), (4, 5)), "j,i"),              # output labels never merge
])
def test_summed_labels_that_walk_memory_as_one_merge(eq, shapes, merged):
    rng = np.random.default_rng(9)
    for dtype in (np.float64, np.int64):
        ops = [rng.integers(-9, 9, s).astype(dtype) for s in shapes]
        for _ in range(2):  # the launcher too
            np.testing.assert_array_equal(einjit.einsum(eq, *ops), np.einsum(eq, *ops))
    labels = ",".join(sorted({ix.name for n in einjit.explain(eq, *ops).nests
                              for ix in n.kernel.indices}, key=merged.index))
    assert labels == merged


def test_merging_respects_strides_broadcasts_and_dynamic_labels():
    rng = np.random.default_rng(10)
    a = rng.random((6, 4, 3))
    t = np.transpose(rng.random((3, 4, 6)))            # j, k not adjacent in memory
    assert len(einjit.explain("ijk,ijk->i", t, t).nests[0].kernel.indices) == 3
    np.testing.assert_allclose(einjit.einsum("ijk,ijk->i", t, t),
                               np.einsum("ijk,ijk->i", t, t), rtol=1e-12)
    b = np.broadcast_to(rng.random((6, 1, 1)), (6, 4, 3))  # stride 0 along j and k
    np.testing.assert_allclose(einjit.einsum("ijk,ijk->i", a, b),
                               np.einsum("ijk,ijk->i", a, b), rtol=1e-12)
    s = a[:, ::2, :]                                     # a gap between rows of k
    np.testing.assert_allclose(einjit.einsum("ijk->i", s), s.sum((1, 2)), rtol=1e-12)
    f = einjit.CompiledEinsum("ijk->i", dynamic="k")
    assert {ix.name for ix in f.explain(a).nests[0].kernel.indices} == {"i", "j", "k"}
    np.testing.assert_allclose(f(a), a.sum((1, 2)), rtol=1e-12)
    assert {ix.name for ix in einjit.CompiledEinsum("ijk->i", dynamic=True).explain(a)
            .nests[0].kernel.indices} == {"i", "j"}


def test_longlong_operands_give_a_longlong_result_as_numpy_does():
    # int64 has two names (long 'l', longlong 'q'); numpy keeps the operands' one
    q = np.arange(1, 7, dtype="q").reshape(2, 3)
    for eq, ops in [("ij->", (q,)), ("ij->i", (q,)), ("ij,ij->i", (q, q)), ("ij,kj->ik", (q, q))]:
        want = np.einsum(eq, *ops)
        for _ in range(2):  # the launcher too
            got = einjit.einsum(eq, *ops)
            assert type(got) is type(want) and got.dtype.char == want.dtype.char == "q"
            np.testing.assert_array_equal(got, want)


def test_bytes_subscripts_are_read_as_ascii_text():
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(einjit.einsum(b"ij,kj->ik", a, a),
                                  np.einsum(b"ij,kj->ik", a, a))
    with pytest.raises(ValueError):
        einjit.einsum(b"\xff", a)
