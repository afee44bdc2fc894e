"""Kernels generic in some extents: ``einjit.compile(..., dynamic=...)`` and the automatic
switch once a label keeps arriving with new sizes."""

import numpy as np
import pytest

import einjit
from einjit import engine
from einjit.ir import size_class
from einjit.policy import Policy
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
    # a generic plan per size class (see the test below; none for a view)
    assert fn.signatures <= 2


@pytest.mark.parametrize("policy", [Policy(block=2, unroll=1), Policy(chunk=2),
                                    Policy(parallel_min_work=0),
                                    Policy(gemm_min_work=0),
                                    Policy(unroll=2, block=1 << 20),
                                    Policy(unroll=3, parallel_min_work=0)],
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
    monkeypatch.setattr(einjit.policy, "POLICY", policy)
    fn = einjit.CompiledEinsum(eq, dynamic=True)
    for by in (0, 1, 4, -1):
        ops = make_operands(_grown(shapes, by), np.float64, _rng(eq, by))
        check_einsum(eq, *ops, _fn=lambda _, *arrays: fn(*arrays))
    assert fn.signatures <= 2  # these sizes span two size classes at most


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
    sizes = [17, 30, 100, 201, 255, 16, 99]
    for n in sizes:
        a, b = rng.random((n, 6, 9)), rng.random((n, 7, 9))
        np.testing.assert_allclose(einjit.einsum(eq, a, b), np.einsum(eq, a, b), rtol=1e-12)
    # a specialised plan for each of the first sizes, then one generic plan (16..255)
    assert einjit.cache_info()["misses"] - before == engine.DYNAMIC_AFTER
    # sizes seen before the switch keep their specialised kernels
    a, b = rng.random((17, 6, 9)), rng.random((17, 7, 9))
    misses = einjit.cache_info()["misses"]
    einjit.einsum(eq, a, b)
    assert einjit.cache_info()["misses"] == misses


def test_small_extents_count_apart_from_large_ones():
    """Extents below SPECIALISED_BELOW and the others count apart towards a label going
    dynamic: large sizes do not send a small one to a generic kernel, and a sweep of
    small sizes still ends in one generic kernel for them."""
    rng = np.random.default_rng(4)
    eq = "bij,bjk->bik"
    engine.clear_cache()  # (this process's history of the equation's sizes)

    def call(n):
        a, b = rng.random((50, n, n)), rng.random((50, n, n))
        np.testing.assert_allclose(einjit.einsum(eq, a, b), a @ b, rtol=1e-12)
        return engine.lookup(engine.prepare((eq, a, b))).plan.steps[0].kernel.dynamic

    assert not any(call(n) for n in (16, 40, 4, 8))  # two sizes on each side
    assert call(300) and call(20)  # the third large size: generic from then on
    assert not call(4) and not call(8)  # the small sizes seen keep their kernels...
    before = einjit.cache_info()["misses"]
    assert call(2) and call(7) and call(13)  # ...and the third small one goes generic
    assert einjit.cache_info()["misses"] - before == 1  # one generic kernel for 0..15


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


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_a_generic_kernel_serves_one_size_class(dtype):
    """A kernel generic in a label is planned for its size class (a factor of 16), not
    for the sizes of the call that compiled it: sizes of one class share it, a size of
    another class gets a plan of its own, planned for its sizes."""
    fn = einjit.CompiledEinsum("ij,ij->i", dynamic="i")
    rng = np.random.default_rng(3)
    classes = set()
    for n in (0, 1, 15, 300, 4095, 256, 16, 5000, 70000, 255):
        a, b = (make_operands([(n, 64)], dtype, rng)[0] for _ in range(2))
        check_einsum("ij,ij->i", a, b, _fn=lambda _, *arrays: fn(*arrays))
        classes.add(size_class(n))
        assert fn.signatures == len(classes)  # a new plan for a new class only
    # [0, 16), [16, 256), [256, 4096), [4096, 65536), [65536, 2^20)
    assert len(classes) == 5


@pytest.mark.parametrize(("eq", "shapes"), [
    ("cd->d", [("n", 300)]),
    ("abc->b", [("n", 40, 50)]),
    ("cba->b", [("n", 50, 40)]),
    ("cd,cd->d", [("n", 300), ("n", 300)]),
    ("cad,a->d", [("n", 20, 300), (20,)]),
])
def test_a_generic_kernel_hoists_sums_over_threads(eq, shapes):
    """A generic kernel may sum outside its output loops (``hoist``), each thread into
    a partial output of its own: the kernel folding the partials reads the output's
    extents at run time (planned for 1024 columns, it read past the end of 300)."""
    fn = einjit.compile(eq, dynamic=True)
    planned = [tuple(700 if d == "n" else d for d in s) for s in shapes]
    assert "outermost (the output accumulated in place)" in str(
        einjit.explain(eq, *planned, dtype="float32", dynamic=True))
    rng = np.random.default_rng(5)
    for n in (256, 257, 700, 4095, 3):
        arrays = make_operands([tuple(n if d == "n" else d for d in s) for s in shapes],
                               np.float32, rng)
        check_einsum(eq, *arrays, _fn=lambda _, *a: fn(*a))


def test_a_generic_kernel_reads_a_gathered_input_from_a_copy():
    """As a specialised one does: an input read across its rows in the innermost loop
    is first copied in that loop's order (a generic copy kernel)."""
    eq, fn = "abd,da->bd", einjit.compile("abd,da->bd", dynamic=True)
    assert "copied v1 as a1[a,d]" in str(
        einjit.explain(eq, (100, 24, 16), (16, 100), dtype="float32", dynamic=True))
    rng = np.random.default_rng(6)
    for a, b, d in ((100, 24, 16), (17, 255, 200), (300, 30, 17)):
        x, y = make_operands([(a, b, d), (d, a)], np.float32, rng)
        check_einsum(eq, x, y, _fn=lambda _, *arrays: fn(*arrays))


def test_a_generic_kernel_is_planned_for_its_class_not_the_first_call():
    """A first call with no rows used to plan plain serial loops for every later size."""
    empty = einjit.explain("ij,jk->ik", (0, 256), (256, 256), dynamic="i")
    large = einjit.explain("ij,jk->ik", (5000, 256), (256, 256), dynamic="i")
    big = einjit.explain("ij,jk->ik", (9000, 256), (256, 256), dynamic="i")
    assert "planned for i=16384, serving i in [4096, 65536)" in str(large)
    assert "planned for i=4, serving i in [0, 16)" in str(empty)
    assert large.sources == big.sources  # one class, one plan
    assert "matmul" in large.sources[0]  # planned as the GEMM 16384 rows make it


@pytest.mark.parametrize(("eq", "shapes"), [
    ("ij,ij->i", [("n", 128), ("n", 128)]),  # an output loop in chunks
    ("ij->j", [("n", 128)]),                 # a column sum: runs of rows into partials
    ("ij->", [("n", 128)]),                  # a whole reduction into partials
    ("ji->j", [(128, "n")]),
    ("bij,bjk->bik", [("n", 8, 16), ("n", 16, 8)]),     # a batch of small products
    ("bij,bjk->bik", [("n", 32, 32), ("n", 32, 32)]),   # BLAS, the batch split
])
def test_threads_of_a_generic_kernel_start_at_run_time(eq, shapes, monkeypatch):
    """A generic kernel put on threads for the size it was planned for runs a smaller
    call of its class in one chunk (``Schedule.least_work``), a larger one on threads;
    both correct, through ``einjit.einsum``'s launchers and a compiled function."""
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(parallel_min_work=1 << 12))
    serial = []
    original = einjit.threads.Chunked.serial
    monkeypatch.setattr(einjit.threads.Chunked, "serial",
                        lambda self: serial.append(1) or original(self))
    label = eq.split(",")[0][list(shapes[0]).index("n")]
    fn = einjit.CompiledEinsum(eq, dynamic=label)
    rng = np.random.default_rng(4)
    for n in (16, 250, 17, 200):  # one class: planned for 64
        ops = make_operands([tuple(n if d == "n" else d for d in s) for s in shapes],
                            np.float32, rng)
        check_einsum(eq, *ops, _fn=lambda _, *arrays: fn(*arrays))
    assert fn.signatures == 1
    nest = fn._plans[next(iter(fn._plans))].nests[-1]
    assert nest.schedule.least_work == 1 << 12
    sizes = {lb: d for term, s in zip(eq.split("->")[0].split(","), shapes)
             for lb, d in zip(term, s) if d != "n"}
    fixed = int(np.prod(list(sizes.values())))  # body evaluations per value of n
    if not nest.schedule.gemm:
        # 16 and 17 rows ran in one chunk where that is too little work for threads
        assert bool(serial) == (17 * fixed < 1 << 12)
