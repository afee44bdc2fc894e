"""Indices merged per step of a plan (einjit.merge): the kernels see their arrays as views
of fewer, longer axes; results as numpy's."""

import numpy as np
import pytest

import einjit
from einjit.gemm import LOOP_TERM_S, gemm_cost
from einjit.gemm import c_ordered_strides
from einjit.ir import Index, Kernel, Operand, SUM, product
from einjit.merge import c_ordered, merge_indices
from einjit.schedule import schedule

RNG = np.random.default_rng(11)


def _kernel():
    # out[a,b] = sum_cd x[a,b,c,d] * y[c,d]
    return Kernel("k0", (Operand("a0", "float64", ("a", "b", "c", "d")),
                         Operand("a1", "float64", ("c", "d"))),
                  Operand("out", "float64", ("a", "b")),
                  (Index("a", 2), Index("b", 3), Index("c", 4), Index("d", 5)),
                  product(2, (("a", "b", "c", "d"), ("c", "d"))), SUM, "float64")


def test_pairs_that_walk_memory_as_one_merge():
    merged, strides, groups = merge_indices(_kernel(), [(60, 20, 5, 1), (5, 1), (3, 1)])
    assert [op.indices for op in merged.inputs] == [("a", "c"), ("c",)]
    assert merged.output.indices == ("a",)
    assert merged.extent == {"a": 6, "c": 20}
    assert strides == ((20, 1), (1,), (1,))
    assert groups == {"a": ("a", "b"), "c": ("c", "d")}


def test_runs_of_more_than_two_indices_merge_into_one():
    # out[c,d,b] = sum_e y[e,c,d,b]: c, d, b walk both arrays' memory as one axis (once c
    # and d had merged, the body's loads were still read as (e, c, d, b): b stayed apart)
    k = Kernel("k1", (Operand("a0", "float32", ("e", "c", "d", "b")),),
               Operand("out", "float32", ("c", "d", "b")),
               (Index("c", 4), Index("d", 5), Index("b", 3), Index("e", 7)),
               product(1, (("e", "c", "d", "b"),)), SUM, "float32")
    merged, strides, groups = merge_indices(k, [(60, 15, 3, 1), (15, 3, 1)])
    assert str(merged).startswith("kernel k1: out[c] = sum_e a0[e,c]   (c=60, e=7;")
    assert strides == ((60, 1), (1,)) and groups == {"c": ("c", "d", "b")}
    x, y = RNG.standard_normal((8, 3, 5, 4)), RNG.standard_normal((7, 4, 5, 3))
    got = einjit.einsum("abdc,ecdb->", x, y)  # its step sums e out of y so
    np.testing.assert_allclose(got, np.einsum("abdc,ecdb->", x, y), rtol=1e-12)


def test_strides_that_do_not_nest_or_fixed_arrays_keep_their_indices():
    # y transposed: c, d do not walk its memory as one
    merged, _, groups = merge_indices(_kernel(), [(60, 20, 5, 1), (1, 4), (3, 1)])
    assert groups == {"a": ("a", "b")}
    # the output fixed (as a view of another shape would not be C-ordered)
    merged, _, groups = merge_indices(_kernel(), [(60, 20, 5, 1), (5, 1), (3, 1)],
                                      fixed=(False, False, True))
    assert groups == {"c": ("c", "d")} and merged.output.indices == ("a", "b")


def test_c_ordered_ignores_axes_of_one_value():
    assert c_ordered((3, 1, 4), (4, 7, 1)) and c_ordered((), ())
    assert not c_ordered((3, 4), (1, 3)) and not c_ordered((3, 4), (8, 2))


def test_a_step_runs_as_one_matrix_product_over_merged_indices():
    # cdeg,gebf->cdbf (the first step): c,d and b,f merge, one 405 x 125 by 125 x 600
    # product; unmerged, the small matrices of a split looked cheaper as loops
    eq = "dfa,cdeg,gebf->abc"
    ops = [RNG.random(s) for s in ((15, 30, 22), (27, 15, 25, 5), (5, 25, 20, 30))]
    first = einjit.explain(eq, *ops).nests[0]
    assert first.schedule.gemm is not None
    assert first.kernel.extent["c"] == 27 * 15 and first.kernel.extent["b"] == 20 * 30
    assert dict(first.views) == {"a0": (405, 25, 5), "a1": (5, 25, 600), "out": (405, 600)}
    for _ in range(2):  # the first call and the launcher
        np.testing.assert_allclose(einjit.einsum(eq, *ops), np.einsum(eq, *ops), rtol=1e-12)


def test_the_planner_prices_a_product_as_the_scheduler_will_run_it():
    # cdeg,gebf summed into c,d,b,f merges into one 405 x 125 by 125 x 600 product (BLAS);
    # into c,b,d,f it does not, and its small matrices (15 x 125 by 125 x 20 at least)
    # run as loops: the planner's price for the step says so, whatever BLAS would cost
    extent = {"c": 27, "d": 15, "e": 25, "g": 5, "b": 20, "f": 30}

    def step(out):
        return Kernel("k", (Operand("a0", "float64", tuple("cdeg")),
                            Operand("a1", "float64", tuple("gebf"))),
                      Operand("out", "float64", tuple(out)),
                      tuple(Index(n, extent[n]) for n in out + "eg"),
                      product(2, (tuple("cdeg"), tuple("gebf"))), SUM, "float64")

    merged, apart = step("cdbf"), step("cbdf")
    assert gemm_cost(apart) >= apart.work * LOOP_TERM_S > 2 * gemm_cost(merged)
    assert schedule(apart, *c_ordered_strides(apart)).gemm is None
    inputs, output = c_ordered_strides(merged)
    one = merge_indices(merged, [*inputs, output])[0]  # as the scheduler sees it
    assert schedule(one, *c_ordered_strides(one)).gemm is not None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_a_small_output_is_viewed_merged_by_its_kernel(dtype):
    # 100 x 2 values: the result keeps its axes (written as bd, returned transposed),
    # the kernel sees it as one run of 200 values (one loop, vectorised)
    x = (RNG.random((512, 100, 2)) * 8).astype(dtype)
    (nest,) = einjit.explain("abd->db", x).nests
    assert nest.kernel.extent == {"b": 200, "a": 512} and ("out", (200,)) in nest.views
    for _ in range(2):
        got = einjit.einsum("abd->db", x)
        assert got.shape == (2, 100) and got.dtype == dtype
        if dtype is np.int64:
            np.testing.assert_array_equal(got, np.einsum("abd->db", x))
        else:
            np.testing.assert_allclose(got, np.einsum("abd->db", x.astype(np.float64)),
                                       rtol=1e-5 if dtype is np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_a_reduction_into_partials_views_them_merged(dtype):
    # the last step sums j on two threads into partials of its merged output (k, l)
    eq, path = "i,ijkl,j,lk->kl", ["einsum_path", (0, 1), (0, 1), (0, 1)]
    shapes = ((2,), (2, 4096, 4, 64), (4096,), (64, 4))
    ops = [(RNG.random(s) * 8).astype(dtype) for s in shapes]
    nests = einjit.explain(eq, *ops, optimize=path).nests
    assert any(("out", (-1, 256)) in n.views for n in nests), [n.views for n in nests]
    ref = np.einsum(eq, *[o.astype(np.float64) for o in ops])
    for _ in range(2):
        got = einjit.einsum(eq, *ops, optimize=path)
        if dtype is np.int64:
            np.testing.assert_array_equal(got, np.einsum(eq, *ops))
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype is np.float32 else 1e-12)


@pytest.mark.parametrize("layout", ["F", "sliced", "reversed"])
def test_operands_not_c_ordered_are_not_viewed(layout):
    eq = "dfa,cdeg,gebf->abc"
    shapes = ((15, 30, 22), (27, 15, 25, 5), (5, 25, 20, 30))
    ops = [RNG.random(s) for s in shapes]
    if layout == "F":
        ops[1] = np.asfortranarray(ops[1])
    elif layout == "sliced":
        ops[1] = RNG.random((27, 15, 25, 10))[..., ::2]
    else:
        ops[1] = ops[1][::-1]
    explained = einjit.explain(eq, *ops)
    step = explained.plan.steps[0]
    if 1 in step.args:  # read as it is (not a copy): never viewed
        assert "a" + str(step.args.index(1)) not in dict(explained.nests[0].views)
    for _ in range(2):
        np.testing.assert_allclose(einjit.einsum(eq, *ops), np.einsum(eq, *ops), rtol=1e-12)


def test_into_out_of_any_layout():
    eq = "dfa,cdeg,gebf->abc"
    ops = [RNG.random(s) for s in ((15, 30, 22), (27, 15, 25, 5), (5, 25, 20, 30))]
    ref = np.einsum(eq, *ops)
    for out in (np.empty((22, 20, 27)), np.empty((22, 20, 27), order="F"),
                np.empty((22, 40, 27))[:, ::2]):
        for _ in range(2):
            assert einjit.einsum(eq, *ops, out=out) is out
            np.testing.assert_allclose(out, ref, rtol=1e-12)
