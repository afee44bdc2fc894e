"""Kernels generic in some extents: ``einjit.compile(..., dynamic=...)`` and the automatic
switch once a label keeps arriving with new sizes."""

import numpy as np
import pytest

import einjit
from einjit import engine, schedule
from test_equations import EQUATIONS, _params, _rng
from _reference import check_einsum, make_operands


def _grown(shapes, by):
    """The shapes with every extent above 1 grown by ``by`` (size-1 axes may broadcast)."""
    return [tuple(n + by if n > 1 else n for n in s) for s in shapes]


# Every fourth equation of the table: dynamic kernels compile like static ones.
@pytest.mark.parametrize(("eq", "shapes"), _params(EQUATIONS[::4]))
def test_table_with_every_dimension_dynamic(eq, shapes):
    fn = einjit.CompiledEinsum(eq, dynamic=True)
    for by in (0, 2):
        ops = make_operands(_grown(shapes, by), np.float64, _rng("dyn", eq, by))
        check_einsum(eq, *ops, _fn=lambda _, *arrays: fn(*arrays))
    assert fn.signatures <= 1  # one generic plan (none for a view)


@pytest.mark.parametrize("policy", [schedule.Policy(block=2, unroll=1), schedule.Policy(chunk=2),
                                    schedule.Policy(parallel_min_work=0),
                                    schedule.Policy(gemm_min_work=0),
                                    schedule.Policy(unroll=2, block=1 << 20),
                                    schedule.Policy(unroll=3, parallel_min_work=0)],
                         ids=["block2", "chunk2", "parallel", "gemm", "unroll2", "unroll3par"])
@pytest.mark.parametrize(("eq", "shapes"), [
    ("ij,jk->ik", [(3, 5), (5, 4)]),
    ("ij->j", [(7, 5)]),
    ("ijk,ijk->", [(3, 4, 5), (3, 4, 5)]),
    ("bij,bjk->bik", [(2, 3, 5), (2, 5, 3)]),
    ("ijk,jl->ilk", [(3, 4, 5), (4, 2)]),
    ("cb->c", [(7, 40)]),  # the values of c left over from the unrolled ones, in chunks
])
def test_every_strategy_generic_in_sizes(eq, shapes, policy, monkeypatch):
    """Blocks and chunks of a size the kernel learns at run time: partial last blocks,
    empty and single-element extents."""
    monkeypatch.setattr(schedule, "POLICY", policy)
    fn = einjit.CompiledEinsum(eq, dynamic=True)
    for by in (0, 1, 4, -1):
        ops = make_operands(_grown(shapes, by), np.float64, _rng(eq, by))
        check_einsum(eq, *ops, _fn=lambda _, *arrays: fn(*arrays))
    assert fn.signatures == 1


def test_named_labels_only():
    @einjit.compile("bij,bjk->bik", dynamic="b")
    def bmm(a, b): ...

    rng = np.random.default_rng(0)
    for n in (1, 4, 0, 9):
        a, b = rng.random((n, 3, 4)), rng.random((n, 4, 2))
        np.testing.assert_allclose(bmm(a, b), a @ b, rtol=1e-12)
    assert bmm.signatures == 1
    bmm(rng.random((2, 5, 4)), rng.random((2, 4, 2)))  # i is still specialised
    assert bmm.signatures == 2


def test_a_decorated_function_keeps_its_own_size_history():
    """Plain einsum calls that made ``i`` dynamic do not make it dynamic for a function."""
    rng = np.random.default_rng(2)
    for n in (3, 5, 6, 7):
        a, b = rng.random((2, n, 4)), rng.random((2, 4, 2))
        np.testing.assert_allclose(einjit.einsum("bij,bjk->bik", a, b), a @ b, rtol=1e-12)

    @einjit.compile("bij,bjk->bik")
    def bmm(a, b): ...

    for n in (3, 5):
        a, b = rng.random((2, n, 4)), rng.random((2, 4, 2))
        np.testing.assert_allclose(bmm(a, b), a @ b, rtol=1e-12)
    assert bmm.signatures == 2  # two specialised kernels: its own history has two sizes


def test_a_label_that_keeps_changing_goes_dynamic():
    """After DYNAMIC_AFTER distinct sizes, every new size reuses one generic kernel."""
    rng = np.random.default_rng(1)
    eq = "bqd,bkd->bqk"
    before = einjit.cache_info()["misses"]
    sizes = [3, 5, 7, 11, 13, 17, 0, 1]
    for n in sizes:
        a, b = rng.random((n, 6, 9)), rng.random((n, 7, 9))
        np.testing.assert_allclose(einjit.einsum(eq, a, b), np.einsum(eq, a, b), rtol=1e-12)
    # a specialised plan for each of the first sizes, then one generic plan
    assert einjit.cache_info()["misses"] - before == engine.DYNAMIC_AFTER
    # sizes seen before the switch keep their specialised kernels
    a, b = rng.random((3, 6, 9)), rng.random((3, 7, 9))
    misses = einjit.cache_info()["misses"]
    einjit.einsum(eq, a, b)
    assert einjit.cache_info()["misses"] == misses


def test_explain_names_dynamic_dimensions():
    e = einjit.explain("bij,bjk->bik", (4, 3, 5), (4, 5, 2), dynamic="b")
    assert "dynamic dimensions: b" in str(e)
    assert "b=dynamic" in str(e.plan.steps[0].kernel)
    assert "n_b = a0.shape[0]" in e.sources[0]
    static = einjit.explain("ij->j", (6, 7))
    assert "dynamic" not in str(static)
    loops = einjit.explain("ij->j", (6, 7), dynamic=True)
    assert "n_i = a0.shape[0]" in loops.sources[0] and "range(n_i)" in loops.sources[0]


def test_bad_dynamic_arguments():
    with pytest.raises(ValueError, match="'z'"):
        einjit.compile("ij,jk->ik", dynamic="z")
    with pytest.raises(TypeError, match="dynamic"):
        einjit.compile("ij,jk->ik", dynamic=3)
    with pytest.raises(ValueError, match="'q'"):
        einjit.explain("ij->j", (2, 3), dynamic="q")
