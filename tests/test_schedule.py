"""Schedules that small test shapes never reach: blocked outputs with a remainder,
parallel blocked loops, parallel reductions with inner loops, fused deep nests.
Each is checked against numpy in float64 (exact for integers) and its schedule pinned."""

import re

import numpy as np
import pytest

import einjit
from einjit import schedule
from einjit.policy import Policy

RNG = np.random.default_rng(11)


def _check(eq, *ops, rtol=1e-12):
    # the reference in float64 (complex128) for inexact dtypes, exact for integers
    dtype = np.result_type(*ops)
    wide = {"f": np.float64, "c": np.complex128}.get(dtype.kind, dtype)
    got = einjit.einsum(eq, *ops)
    ref = np.einsum(eq, *[np.asarray(o, dtype=wide) for o in ops])
    assert got.dtype == dtype and np.shape(got) == np.shape(ref)
    if np.issubdtype(ref.dtype, np.integer):
        np.testing.assert_array_equal(got, ref)
    else:
        # rounding errors scale with the sum of the terms' magnitudes, not with the
        # result's: a sum that cancels (ab,ba-> over random values) keeps them
        mag = np.einsum(eq, *[np.abs(np.asarray(o, dtype=wide)) for o in ops])
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * np.max(mag))
    return einjit.explain(eq, *ops).nests


def _ints(*shape):
    return RNG.integers(-20, 20, shape)  # int64: no BLAS, so the loop schedules run


def test_blocked_output_with_remainder_serial():
    a, b = _ints(3, 7), _ints(7, 515)
    (nest,) = _check("ij,jk->ik", a, b)
    assert nest.schedule.block == ("k", 512) and nest.schedule.parallel is None
    assert "vn = min(512, 515 - v0)" in einjit.explain("ij,jk->ik", a, b).sources[0]


@pytest.mark.parametrize("stack_bytes", [1 << 15, 0])
def test_blocked_accumulators_on_the_stack_or_the_heap(stack_bytes, monkeypatch):
    # a block's accumulators live on the kernel's stack up to Policy.stack_bytes
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        block=8, stack_bytes=stack_bytes))
    for ops in ((_ints(5, 7), _ints(7, 19)), (RNG.random((5, 7)), RNG.random((7, 19)))):
        (nest,) = _check("ij,jk->ik", *ops)
        assert nest.schedule.block == ("k", 8)
        source = einjit.explain("ij,jk->ik", *ops).sources[0]
        on_stack = f"acc = vm.local(8, np.{ops[0].dtype})" in source
        assert on_stack == (stack_bytes > 0)
        assert ("acc = np.empty(8" in source) == (stack_bytes == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_reductions_over_the_slowest_axis_run_outermost(dtype, monkeypatch):
    # a is the slowest axis of the big operand: summed outermost, the output accumulated
    # in place (set to 0 first), c summed inside for each output value
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        hoist_min_bytes=0, parallel_min_work=0))
    x, y = (RNG.integers(-9, 9, s).astype(dtype) for s in ((7, 5, 3, 20), (7, 20)))
    for threads in (1, 2):
        monkeypatch.setattr(einjit.schedule, "thread_count", lambda: threads)
        for eq, ops in (("aebc,ac->eb", (x, y)), ("abc->b", (x[:, 0],)), ("aebc->be", (x,))):
            (nest,) = _check(eq, *ops)
            assert nest.schedule.hoist == ("a",), eq
            assert "reductions over a outermost" in str(nest.schedule)
            source = einjit.explain(eq, *ops).sources[0]
            assert "] += acc" in source
            if threads == 1:
                assert "for a in range(7):" in source and nest.schedule.parallel is None
            else:  # a split over the threads, each chunk into its own partial output
                assert nest.schedule.parallel == "a" and nest.schedule.threads == 2
                assert "for a in range((7 * chunk) // chunks" in source
                assert "slot = chunk * " in source and "its partials" in source
    # not for a small input (the default policy), a max, or an output too big to keep
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(parallel_min_work=0))
    assert not _check("abc->b", x[:, 0])[0].schedule.hoist
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        hoist_min_bytes=0, hoist_max_bytes=8))
    assert not _check("abc->b", x[:, 0])[0].schedule.hoist
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(hoist_min_bytes=0))
    biggest = einjit.CompiledEinsum("abc->b", _first, reduce="max")
    np.testing.assert_array_equal(biggest(x[:, 0]), x[:, 0].max(axis=(0, 2)))
    assert not biggest.explain(x[:, 0]).nests[0].schedule.hoist


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_a_few_output_values_inside_the_sum_stay_in_registers(dtype, monkeypatch):
    # a (2 or 3 values) runs inside d in memory: hoisting c alone would leave d innermost,
    # read by twos or threes; a's values as scalar accumulators read a1 in memory order
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(hoist_min_bytes=0))
    for n in (2, 3):
        x, y = (RNG.integers(-9, 9, s).astype(dtype) for s in ((40,), (40, 30, n)))
        (nest,) = _check("c,cda->a", x, y)
        assert not nest.schedule.hoist and nest.schedule.unroll == ("a", n)
        assert nest.schedule.order[-1] == "d"


def test_every_reduction_hoisted_updates_the_output_directly(monkeypatch):
    # nothing summed inside the output loops: each term updates the output, a loop of
    # one statement that LLVM vectorises (c,acb->bc with b = 17: 0.13 -> 0.07 ms); four
    # values of the innermost hoisted loop per pass (13 = 3 x 4 + 1 left over)
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        hoist_min_bytes=0, parallel_min_work=0))
    for dtype in (np.float32, np.int64):
        x, y = RNG.integers(-9, 9, 11).astype(dtype), RNG.integers(-9, 9, (13, 11, 17))
        y = y.astype(dtype)
        for threads in (1, 2):
            monkeypatch.setattr(einjit.schedule, "thread_count", lambda: threads)
            (nest,) = _check("c,acb->bc", x, y)
            assert nest.schedule.hoist == ("a",)
            source = einjit.explain("c,acb->bc", x, y).sources[0].split("its partials")[0]
            assert "acc =" not in source
            assert "g3 = (hb * 4) + 3" in source and "a = 12 + hr" in source
            # x's element, the same for the four values of a, multiplies their sum once
            assert "] += a0[c] * (a1[np.uintp(g0), c, b] + a1[np.uintp(g1), c, b]" in source
            # (the last value alone: one more pass, one term)
            assert "] += a0[c] * a1[np.uintp(a), c, b]" in source
    # fewer than eight values: one pass each
    (nest,) = _check("c,acb->bc", x, y[:7])
    assert "hb" not in einjit.explain("c,acb->bc", x, y[:7]).sources[0]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_reductions_between_output_loops_run_between_them(threads, monkeypatch):
    # d lies between b and a in memory: the nest runs b, d, a, c (memory order), each
    # value of b setting its row of the output to 0 and each pass over d adding the sums
    # over c into it; split over the threads by d (partial outputs) on two, by b (rows
    # of the output) on three, where the threads share b's values evenly
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        hoist_min_bytes=0, parallel_min_work=0))
    monkeypatch.setattr(einjit.schedule, "thread_count", lambda: threads)
    for x, a in ((_ints(3, 17, 5, 20), _ints(5)),
                 (RNG.random((3, 17, 5, 20)).astype(np.float32), RNG.random(5))):
        (nest,) = _check("bdac,a->ba", x, a, rtol=1e-5 if x.dtype == np.float32 else 1e-12)
        sched = nest.schedule
        assert (sched.around, sched.hoist, sched.order) == (("b",), ("d",), tuple("bdac"))
        assert "reductions over d inside b" in str(sched)
        source = einjit.explain("bdac,a->ba", x, a).sources[0]
        assert source.index("for b in") < source.index("] = 0") < source.index("for d in")
        assert "] += acc" in source
        if threads == 1:
            assert sched.parallel is None
        else:
            assert sched.parallel == ("d" if threads == 2 else "b")
            assert ("slot = chunk * " in source) == (threads == 2)
    # two hoisted loops, two around; into a given output; a transposed operand
    y, z = _ints(4, 6, 5, 7, 3), _ints(5)
    (nest,) = _check("abcde,c->ad", y, z)
    assert (nest.schedule.around, nest.schedule.hoist) == (("a",), ("b", "c"))
    out = np.zeros((2, 4, 7), dtype=np.int64)[1]
    assert einjit.einsum("abcde,c->ad", y, z, out=out) is out
    np.testing.assert_array_equal(out, np.einsum("abcde,c->ad", y, z))
    (nest,) = _check("edcba,c->ad", y.transpose(4, 3, 2, 1, 0), z)
    assert nest.schedule.hoist == ("b", "c") and nest.schedule.order[-1] == "e"
    # no reduction left inside the output loops: a block of accumulators, not passes
    (nest,) = _check("deba->dba", _ints(6, 5, 7, 9))
    assert not nest.schedule.hoist


@pytest.mark.parametrize("threads", [2, 3])
def test_hoisted_reductions_split_over_threads(threads, monkeypatch):
    # every reduction strided wider than the output: all run outermost, the outermost
    # split over the threads, each chunk summing into its own partial output (slots a
    # cache line apart), folded by a second kernel
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        hoist_min_bytes=0, parallel_min_work=0))
    monkeypatch.setattr(einjit.schedule, "thread_count", lambda: threads)
    for c in (3, 11):  # 24 bytes of output: 4 slots per chunk; 88 bytes: 2
        x, y = _ints(13), _ints(13, 5, c)
        (nest,) = _check("b,bac->c", x, y)
        assert nest.schedule.hoist == ("b", "a") and nest.schedule.parallel == "b"
        source = einjit.explain("b,bac->c", x, y).sources[0]
        assert f"slot = chunk * {4 if c == 3 else 2}" in source
        assert f"for ck in range({threads * (4 if c == 3 else 2)}):" in source
        f = RNG.random((13, 5, c))
        _check("b,bac->c", RNG.random(13), f)
        out = np.full((2, c), np.nan)[1]  # into a given output (a row of a bigger array)
        assert einjit.einsum("b,bac->c", x, y, out=out) is out
        np.testing.assert_array_equal(out, np.einsum("b,bac->c", x, y))


def _first(a):
    return a


def test_unvectorised_sums_add_their_terms_to_several_partials(monkeypatch):
    # the innermost sum reads a1 across its rows (no vectors): its terms go to four
    # partials in turn, four independent chains of additions, with the terms left over
    # (250 = 62 x 4 + 2) into the first; in tiles too (rows 2 KiB apart, aliased)
    for shapes, tiled in ((((250, 250), (250, 250)), False), (((256, 256), (256, 256)), True)):
        for dtype in (np.float32, np.float64):
            x, y = (RNG.standard_normal(sh).astype(dtype) for sh in shapes)
            (nest,) = _check("ab,ba->", x, y, rtol=1e-4 if dtype == np.float32 else 1e-12)
            assert nest.schedule.interleave == 4 and not nest.schedule.reassociate
            assert (nest.schedule.tile is not None) == tiled
            assert "terms summed into 4 partials in turn" in str(nest.schedule)
            source = einjit.explain("ab,ba->", x, y).sources[0]
            part = re.search(r"(\w+)_3 \+= ", source)
            assert part and f"{part[1]} += {part[1]}_3" in source, source
            assert not tiled or part[1] == "tsum"
            if not tiled:
                assert "for br in range(2):" in source, source
    # so too where the rows read across lie closer than a cache line (8 or 32 bytes)
    for eq, shapes in (("d,cad->d", ((2,), (64, 32, 2))), ("bdac,dca", ((2, 3, 8, 128), (3, 128, 8)))):
        (nest,) = _check(eq, *(RNG.standard_normal(sh).astype(np.float32) for sh in shapes), rtol=1e-4)
        assert nest.schedule.interleave == 4 and not nest.schedule.reassociate, nest.schedule
    # not where the sum must run in order, nor for integers (exact in any order)
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(reassociate=False))
    (nest,) = _check("ab,ba->", RNG.standard_normal((256, 250)), RNG.standard_normal((250, 256)))
    assert not nest.schedule.interleave
    monkeypatch.undo()
    (nest,) = _check("ab,ba->", _ints(256, 250), _ints(250, 256))
    assert not nest.schedule.interleave


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.float16, np.float32, np.float64,
                                   np.complex128, np.bool_])
def test_sums_of_a_few_terms_are_written_out(dtype):
    # at most four terms (e of 1 to 4 values, or e and f of 2 each): the body sums them
    # as one expression and the kernel runs element-wise over its output; five: loops
    def ops(*shapes):
        return [(RNG.integers(-3, 4, sh) if dtype != np.bool_ else RNG.integers(0, 2, sh))
                .astype(dtype) for sh in shapes]

    for eq, shapes, terms in (("bae,ce,ae->cab", ((40, 17, 2), (30, 2), (17, 2)), 2),
                              ("abe,eb->ab", ((20, 33, 1), (1, 33)), 1),
                              ("abe,eb->ab", ((20, 33, 3), (3, 33)), 3),
                              ("abef,ebf->ba", ((20, 33, 2, 2), (2, 33, 2)), 4),
                              ("abe,eb->ab", ((20, 33, 5), (5, 33)), 0)):
        xs = ops(*shapes)
        got = einjit.einsum(eq, *xs)
        ref = np.einsum(eq, *xs)
        assert got.dtype == ref.dtype and got.shape == ref.shape
        if np.issubdtype(ref.dtype, np.inexact):
            wide = np.einsum(eq, *[x.astype(np.complex128 if dtype == np.complex128
                                            else np.float64) for x in xs])
            np.testing.assert_allclose(got, wide, rtol=1e-2 if dtype == np.float16 else 1e-6)
        else:
            np.testing.assert_array_equal(got, ref)
        last = einjit.explain(eq, *xs).nests[-1]
        if dtype == np.bool_:
            continue  # (a logical or: loops)
        assert bool(last.schedule.expand) == (terms > 0), (eq, last.schedule)
        if terms:
            source = einjit.explain(eq, *xs).sources[-1]
            assert "e_0 = 0" in source and source.count(" += ") == 0, source


def test_short_innermost_loops_hide_their_trip_count():
    # LLVM unrolls a short constant loop completely before vectorising; the generated
    # code hides trip counts of 16 to 64 behind vm.opaque (longer ones stay literals)
    for c, hidden in ((8, False), (16, True), (64, True), (65, False)):
        x, y = RNG.standard_normal((4, c)), RNG.standard_normal(c)
        _check("ab,b->ab", x, y)
        source = einjit.explain("ab,b->ab", x, y).sources[0]
        assert (f"range(vm.opaque({c}))" in source) == hidden, (c, source)
    # a sum into one scalar from 16 trips, however many: with the count known, LLVM
    # makes it one chain of dependent vector additions (chunks of Policy.chunk terms too)
    for c, hidden in ((8, False), (16, True), (65, True), (1000, True), (2048, True)):
        x = RNG.standard_normal((3, 5, c))[:, :4]  # (a slice: a, b do not merge)
        _check("abc->ab", x)
        source = einjit.explain("abc->ab", x).sources[0]
        trips = c if c < 2048 else 1024  # (2048: two chunks)
        assert (f"range(vm.opaque({trips}))" in source) == hidden, (c, source)
    # the loop over chunks too: unrolled, each chunk's count would be a constant again
    for n, chunks in ((20000, 20), (2500, 3)):
        x = RNG.standard_normal(n)
        _check("i,i->", x, x)
        source = einjit.explain("i,i->", x, x).sources[0]
        assert f"for rb in range(vm.opaque({chunks})):" in source, source
    # not a loop over blocks of accumulators (each block's own loops count them)
    x = RNG.standard_normal((300, 1000))
    _check("ac->c", x)
    source = einjit.explain("ac->c", x).sources[0]
    assert "for vb in range(2):" in source, source
    # and in loops over a block of accumulators (index Let, then the sum) up to 40 trips
    # (unrolled, 33 to 40 were scalar code): zeroing, summing and storing the block;
    # above, only the zeroing loop
    for a, hidden in ((32, 3), (36, 3), (40, 3), (41, 1), (48, 1)):
        # (a slice: d and a stay two output loops; c of 5 values, not written out)
        x, y = RNG.standard_normal(5), RNG.standard_normal((5, 20, a + 1))[:, :, :a]
        (nest,) = _check("c,cda->da", x, y)
        assert nest.schedule.block == ("a", a)
        source = einjit.explain("c,cda->da", x, y).sources[0]
        assert source.count(f"range(vm.opaque({a}))") == hidden, source


@pytest.mark.parametrize(("dtype", "count", "split"), [
    (np.float32, 23, 16), (np.float32, 17, 16), (np.float32, 31, 24), (np.float32, 24, 0),
    (np.float32, 40, 0), (np.float32, 15, 0), (np.float64, 11, 8), (np.float64, 12, 0),
    (np.float64, 23, 0), (np.complex64, 23, 0),
])
def test_a_short_sum_leaves_its_values_over_to_a_loop_of_their_own(dtype, count, split):
    """An innermost float sum into a scalar of two to four vectors' count, not whole
    vectors: the whole vectors in one loop, the values left over summed apart (LLVM's
    vector step of four vectors outnumbered the count: every value was summed in its
    scalar epilogue)."""
    x = RNG.standard_normal((30, 40, count)) * (1 if np.dtype(dtype).kind != "c" else 1 + 1j)
    x = (x * 8).astype(dtype)
    y = (RNG.standard_normal(40) * 8).astype(dtype)
    _check("acb,c->", x, y, rtol=1e-5 if dtype in (np.float32, np.complex64) else 1e-12)
    source = einjit.explain("acb,c->", x, y).sources[-1]
    assert (f"for bt in range({count - split}):" in source) == bool(split), source
    if split:
        assert f"for b in range({split}):" in source or f"vm.opaque({split})" in source, source


def test_blocked_output_parallel_outer_loop():
    # (no rows index: one block of 512 accumulators, in memory)
    x, b = _ints(24, 64), _ints(24, 64, 700)
    (nest,) = _check("aj,ajk->ak", x, b)
    assert nest.schedule.block == ("k", 512) and nest.schedule.parallel == "a"
    assert nest.schedule.block_rows is None


def test_wide_block_runs_as_register_tiles_over_a_packed_panel(avx2_tiles):
    # 4 rows of i by 16 values of k (int64: 4 per vector), b's block of 64 x 16 values
    # copied into a panel first, the rows in chunks on the threads inside the blocks
    a, b = _ints(300, 64), _ints(64, 700)
    (nest,) = _check("ij,jk->ik", a, b)
    sched = nest.schedule
    assert sched.block == ("k", 16) and sched.block_rows == ("i", 4) and sched.pack == (1,)
    assert sched.parallel == "i"
    source = einjit.explain("ij,jk->ik", a, b).sources[0]
    assert "pk1 = vm.local(1024, np.int64)" in source
    assert "pk1[np.uintp(pi)] = a1[j, np.uintp(k)]" in source
    assert "for ub in range((75 * chunk) // chunks, (75 * (chunk + 1)) // chunks):" in source
    # b read across its rows: its panels are copied across them, no copy of b first
    (nest,) = _check("ij,kj->ik", a, _ints(700, 64))
    sched = nest.schedule
    assert sched.block == ("k", 16) and sched.block_rows == ("i", 4) and sched.pack == (1,)
    assert "pk1[np.uintp(pi)] = a1[np.uintp(k), j]" in einjit.explain(
        "ij,kj->ik", a, _ints(700, 64)).sources[0]
    # a bigger block of b (16 x 2048 values) is read where it lies
    (nest,) = _check("ij,jk->ik", _ints(70, 2048), _ints(2048, 256))
    assert nest.schedule.block_rows == ("i", 4) and not nest.schedule.pack


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32, np.float64, np.complex128])
def test_wide_register_tiles_of_avx512_run_in_512_bit_vectors(dtype, avx512_tiles):
    # 4 rows of 4 vectors of 512 bits (int64 and float64: 32 values, float32 64; int32
    # sums in int64), the kernel asking LLVM for such vectors; complex values keep
    # LLVM's default vectors (and AVX2's rule: 4 rows of 8 complex128).  A body of its
    # own keeps BLAS out.
    f = einjit.compile("ij,jk->ik")(_sqdiff)
    a, b = _ints(300, 64).astype(dtype), _ints(64, 768).astype(dtype)
    if np.dtype(dtype).kind == "c":
        a, b = a * (1 - 2j), b * (3 + 1j)
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    ref = ((a.astype(wide)[:, :, None] - b.astype(wide)[None]) ** 2).sum(1)
    np.testing.assert_allclose(f(a, b), ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
    (nest,) = f.explain(a, b).nests
    width = {np.float32: 64, np.complex128: 8}.get(dtype, 32)
    assert nest.schedule.block == ("k", width) and nest.schedule.block_rows == ("i", 4)
    bits = 0 if dtype == np.complex128 else 512
    assert nest.schedule.vector_bits == bits
    assert ("vm.vector_width(512)" in f.explain(a, b).sources[0]) == bool(bits)


def test_wide_tiles_of_float32_leave_registers_for_the_loads(avx2_tiles):
    # 8 values a vector: 2 rows of 32 (8 accumulators, 2 broadcasts, 1 for the loads),
    # not 4 rows of 32 (all 16 registers accumulators: spilled every step); a body of
    # its own keeps BLAS out
    @einjit.compile("ij,jk->ik")
    def sq(x, y):
        return (x - y) * (x - y)

    a = (_ints(300, 64) / 8).astype(np.float32)
    b = (_ints(64, 700) / 4).astype(np.float32)
    ref = ((a.astype(float)[:, :, None] - b.astype(float)[None]) ** 2).sum(1)
    np.testing.assert_allclose(sq(a, b), ref, rtol=1e-5)
    (nest,) = sq.explain(a, b).nests
    assert nest.schedule.block == ("k", 32) and nest.schedule.block_rows == ("i", 2)
    for lanes, shape in ((2, (4, 8)), (4, (4, 16)), (8, (2, 32)), (16, (2, 64))):
        assert schedule._wide_tile_shape(lanes, 16) == shape
    # AVX-512's 32 registers: 4 rows of 4 vectors (16 sums, 4 broadcasts, 1 load)
    for lanes, shape in ((2, (4, 16)), (4, (4, 16)), (8, (4, 32)), (16, (4, 64))):
        assert schedule._wide_tile_shape(lanes, 32) == shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_rows_of_a_tile_that_share_their_loads_hide_the_trip_count(dtype):
    # 8 rows of 8 values (ce,ca->ae, e = 8): every row reads a0[c,e] along e and one value
    # of a1: LLVM unrolled the loop of 8 into 160 scalar multiply-adds; hidden, it is
    # vectorised. Where each row reads its own run (ijk,jk->ik) the loop stays as it was.
    x = RNG.standard_normal((75, 8)).astype(dtype)
    y = RNG.standard_normal((75, 100)).astype(dtype)
    (nest,) = _check("ce,ca->ae", x, y, rtol=1e-5)
    assert nest.schedule.block == ("e", 8) and nest.schedule.block_rows == ("a", 8)
    source = einjit.explain("ce,ca->ae", x, y).sources[0]
    assert "for tb in range(vm.opaque(8)):" in source
    x = RNG.standard_normal((40, 300, 8)).astype(dtype)
    y = RNG.standard_normal((300, 8)).astype(dtype)
    (nest,) = _check("ijk,jk->ik", x, y, rtol=1e-5)
    assert nest.schedule.block_rows is not None
    assert "vm.opaque" not in einjit.explain("ijk,jk->ik", x, y).sources[0]


@pytest.mark.parametrize(("dtype", "cast"), [(np.float32, False), (np.int32, False),
                                             (np.int16, True)])
def test_each_row_of_a_register_tile_is_stored_by_a_loop_of_its_own(dtype, cast):
    # a loop over all rows, unrolled, stored the sums one value at a time; a loop per
    # row, its count known, stores whole vectors from the registers (hidden, LLVM
    # called memcpy); a store that casts its sums (int16's, summed in int32) keeps the
    # hidden count
    a = (RNG.standard_normal((16, 32, 32)) * 8).astype(dtype)
    b = (RNG.standard_normal((16, 32, 32)) * 8).astype(dtype)
    (nest,) = _check("bij,bjk->bik", a, b, rtol=1e-5)
    assert nest.schedule.block == ("k", 32)
    (u, rows) = nest.schedule.block_rows
    assert u == "i" and rows > 1
    source = einjit.explain("bij,bjk->bik", a, b).sources[0]
    count = re.escape("vm.opaque(32)" if cast else "32")
    for row in range(rows):
        store = (rf"for tb in range\({count}\):\n *k = v0 \+ tb\n *"
                 rf"out\[[^\]]*np\.uintp\(h{row}\), np\.uintp\(k\)\] = [^\n]*\n")
        assert re.search(store, source), source


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_short_rows_of_whole_512_bit_vectors_run_in_them(dtype, avx512_tiles):
    # a row of 32 values summed for several rows at once (_vector_rows): AVX2's rule
    # takes 2 rows (float32) of 256-bit vectors; AVX-512's, 4 rows of 512-bit ones
    a = (RNG.standard_normal((16, 32, 32)) * 8).astype(dtype)
    b = (RNG.standard_normal((16, 32, 32)) * 8).astype(dtype)
    (nest,) = _check("bij,bjk->bik", a, b, rtol=1e-5)
    assert nest.schedule.block == ("k", 32) and nest.schedule.block_rows == ("i", 4)
    assert nest.schedule.vector_bits == 512
    assert "vm.vector_width(512)" in einjit.explain("bij,bjk->bik", a, b).sources[0]
    # 24 values: 3 vectors of float64, no whole ones of float32 or int32 (16 each):
    # AVX2's rule
    c = (RNG.standard_normal((16, 32, 24)) * 8).astype(dtype)
    (nest,) = _check("bij,bjk->bik", a, c, rtol=1e-5)
    assert nest.schedule.vector_bits == (512 if dtype == np.float64 else 0)


@pytest.mark.parametrize("vectors", ["avx2", "avx512"])
def test_a_large_batch_of_short_sums_runs_as_wide_tiles(vectors, request):
    # 64 attention scores of 256 x 64 by 64 x 256 (2^22 multiply-adds each, summing 64
    # terms): AVX-512's float32 tiles rather than a BLAS call per product; not on AVX2,
    # not for 16 products, sums of 128 terms, or float64
    request.getfixturevalue(f"{vectors}_tiles")
    q = RNG.standard_normal((8, 8, 256, 64)).astype(np.float32)
    k = RNG.standard_normal((8, 8, 256, 64)).astype(np.float32)
    (nest,) = _check("bhqd,bhkd->bhqk", q, k, rtol=1e-5)
    assert (nest.schedule.gemm is None) == (vectors == "avx512")
    for shapes, dtype in ((((2, 8, 256, 64),) * 2, "float32"),
                          (((8, 8, 256, 128),) * 2, "float32"),
                          (((8, 8, 256, 64),) * 2, "float64")):
        nest = einjit.explain("bhqd,bhkd->bhqk", *shapes, dtype=dtype).nests[0]
        assert nest.schedule.gemm is not None, (shapes, dtype)


@pytest.mark.parametrize(("vectors", "dtype", "tiled"), [
    ("avx2", np.float32, True), ("avx2", np.float64, False),
    ("avx512", np.float32, True), ("avx512", np.float64, True)])
def test_float32_products_up_to_64_cubed_run_as_register_tiles(vectors, dtype, tiled, request):
    # float32's tiles keep their sums in registers and beat a BLAS call per matrix up to
    # tile_gemm_fit_max multiply-adds; float64's spill on AVX2 (16 registers), and BLAS
    # keeps the larger ones; on AVX-512 (32) they fit, and beat BLAS too
    request.getfixturevalue(f"{vectors}_tiles")
    a = RNG.standard_normal((6, 64, 64)).astype(dtype)
    b = RNG.standard_normal((6, 64, 64)).astype(dtype)
    (nest,) = _check("bij,bjk->bik", a, b, rtol=1e-5)
    assert (nest.schedule.gemm is None) == tiled
    if tiled:
        assert nest.schedule.block_rows is not None
    # 2^21 multiply-adds: AVX-512's tiles still (WIDE_TILE_GEMM_FACTOR), else BLAS
    mid = RNG.standard_normal((2, 128, 128)).astype(dtype)
    (nest,) = _check("bij,bjk->bik", mid, mid, rtol=1e-5)
    assert (nest.schedule.gemm is None) == (vectors == "avx512")
    big = RNG.standard_normal((2, 256, 256)).astype(dtype)  # 2^24 multiply-adds: BLAS
    (nest,) = _check("bij,bjk->bik", big, big, rtol=1e-5)
    assert nest.schedule.gemm is not None


@pytest.mark.parametrize("vectors", ["avx2", "avx512"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("a_shape", "b_shape", "rows", "wide_rows"), [
    ((8, 48, 48), (8, 48, 48), 2, 4),     # 2 rows of 48: 12 sums, 2 broadcasts, 1 load;
                                          # AVX-512: 4 rows of 3 vectors
    ((4, 100, 48), (4, 48, 40), 2, 2),    # 40 wide: 2 rows of 5 vectors (AVX2's)
    ((64, 100), (100, 24), 3, 3),         # 24 wide: 3 rows of 3 vectors (AVX2's)
    ((200, 64), (64, 16), 4, 4),          # 16 wide: 4 rows of 2 vectors, or of one
])
def test_narrow_float32_tiles_that_fit_the_registers_beat_blas(vectors, dtype, a_shape,
                                                               b_shape, rows, wide_rows,
                                                               request):
    # Products of 2^16 to 2^18 multiply-adds whose register tile (any width) keeps its
    # sums and broadcast factors in the registers run as loops; float64's tiles (16
    # vectors of sums at least) stay BLAS on AVX2.  On AVX-512, a block of whole 512-bit
    # vectors runs in them, in 4 rows, and float64's tiles fit its 32 registers.
    request.getfixturevalue(f"{vectors}_tiles")
    tiled = dtype == np.float32 or vectors == "avx512"
    eq = "bij,bjk->bik" if len(a_shape) == 3 else "ij,jk->ik"
    a = RNG.standard_normal(a_shape).astype(dtype)
    b = RNG.standard_normal(b_shape).astype(dtype)
    assert (1 << 16) < a_shape[-2] * a_shape[-1] * b_shape[-1] <= (1 << 18)
    (nest,) = _check(eq, a, b, rtol=1e-5)
    assert (nest.schedule.gemm is None) == tiled
    if tiled and dtype == np.float32:
        wide = vectors == "avx512" and b_shape[-1] % 16 == 0
        assert nest.schedule.block_rows[1] == (wide_rows if vectors == "avx512" else rows)
        assert nest.schedule.block[1] == b_shape[-1]
        assert nest.schedule.vector_bits == (512 if wide else 0)
    elif tiled:  # float64 on AVX-512: 40 and 24 values are whole vectors of 8
        assert nest.schedule.block_rows[1] == 4 and nest.schedule.vector_bits == 512


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_batch_of_small_products_whose_tiles_leave_values_over_runs_as_blas(dtype):
    # 28 values: tiles of 24 and 4 values over (float32), or of 16 and 12 (float64),
    # summed one by one; BLAS for a batch of them, tiles for one product (no call to
    # save) and for 16 values (none over)
    a = RNG.standard_normal((8, 64, 16)).astype(dtype)
    (nest,) = _check("bij,bjk->bik", a, RNG.standard_normal((8, 16, 28)).astype(dtype),
                     rtol=1e-5)
    assert nest.schedule.gemm is not None
    (nest,) = _check("ij,jk->ik", a[0], RNG.standard_normal((16, 28)).astype(dtype),
                     rtol=1e-5)
    assert nest.schedule.gemm is None and nest.schedule.block_rows is not None
    (nest,) = _check("bij,bjk->bik", a, RNG.standard_normal((8, 16, 16)).astype(dtype),
                     rtol=1e-5)
    assert nest.schedule.gemm is None and nest.schedule.block_rows is not None


def test_tiles_that_would_end_in_scalar_columns_leave_mid_size_products_to_blas():
    # 50 values: a tile of 48 and 2 columns summed one by one, slower than BLAS
    a = RNG.standard_normal((100, 50)).astype(np.float32)
    b = RNG.standard_normal((50, 50)).astype(np.float32)
    (nest,) = _check("ij,jk->ik", a, b, rtol=1e-5)
    assert nest.schedule.gemm is not None


def test_blocked_loop_itself_parallel(monkeypatch):
    # (a big input into a small output is summed hoisted by default: see below)
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        hoist_min_bytes=1 << 40))
    a, x = _ints(1500, 1400), _ints(1500)
    (nest,) = _check("ji,j->i", a, x)
    # 4 blocks of 352 (not 3 of 512): the two threads get two blocks each
    assert nest.schedule.block == ("i", 352) and nest.schedule.parallel == "i"
    src = einjit.explain("ji,j->i", a, x).sources[0]
    assert "for vb in range((4 * chunk) // chunks, (4 * (chunk + 1)) // chunks):" in src
    (narrow,) = _check("ji,j->i", _ints(40000, 32), _ints(40000))  # 32 values: 2 blocks
    assert narrow.schedule.block == ("i", 16) and narrow.schedule.parallel == "i"  # of 16


def test_blocked_integers_exact():
    a = RNG.integers(-50, 50, (40, 33)).astype(np.int32)
    b = RNG.integers(-50, 50, (33, 600)).astype(np.int32)
    (nest,) = _check("ij,jk->ik", a, b)
    assert nest.schedule.block is not None


def test_parallel_full_reduction_with_inner_loops():
    a = _ints(1100, 1001)[:, :1000]  # rows apart in memory: i and j do not merge
    (nest,) = _check("ij,ij->", a, a)
    assert nest.schedule.parallel == "i"
    src = einjit.explain("ij,ij->", a, a).sources[0]
    assert "part += " in src and "acc += part" in src


@pytest.mark.parametrize("chunked", [True, False])
def test_parallel_single_float_reduction_runs_in_chunks_summed_reassociated(chunked,
                                                                            monkeypatch):
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(chunked=chunked))
    x = RNG.standard_normal(1_100_003)
    (nest,) = _check("i,i,i->", x, x, x)
    assert nest.schedule.parallel == "i" and nest.schedule.chunk and nest.schedule.reassociate
    src = einjit.explain("i,i,i->", x, x, x).sources[0]
    # the terms of a chunk of 1024 are summed with the reassociating multiply-add
    assert nest.schedule.contract
    assert ("part = vm.rmuladd(a0[np.uintp(i)] * a1[np.uintp(i)], a2[np.uintp(i)], part)"
            in src)  # i = r0 + tb: cast so that no wraparound select stops the vectoriser
    if chunked:  # einjit's threads: each writes its partial, a second kernel folds them
        assert nest.schedule.threads > 1 and "out[chunk] = acc" in src
        fold = einjit.lower.partials(nest)
        assert fold is not None and str(fold.kernel).startswith("kernel k0p: out[] = sum_c")
    else:  # the chunk loop is the prange (its fold stays ``+=`` for Numba's parfors)
        assert "for rb in prange(" in src and "acc += part" in src


@pytest.mark.parametrize("reduce", ["sum", "max", "any", "logsumexp"])
def test_reductions_in_chunks_fold_their_partials_with_their_operator(reduce, monkeypatch):
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(parallel_min_work=8))
    x = RNG.standard_normal(1001)
    plus = einjit.CompiledEinsum("i,i->", _plus, reduce=reduce)
    want = {"sum": np.sum, "max": np.max, "any": np.any,
            "logsumexp": lambda v: np.logaddexp.reduce(v)}[reduce](x + x[::-1])
    for _ in range(2):  # the launcher of the fast path too
        got = plus(x, x[::-1])
        np.testing.assert_allclose(got, want, rtol=1e-12)
    ints = np.arange(-500, 501)
    assert einjit.CompiledEinsum("i,i->", _plus, reduce="max")(ints, ints) == 1000


def _plus(a, b):
    return a + b


def test_reassociation_only_for_float_sums_over_an_innermost_reduction():
    f = RNG.standard_normal((40, 64))
    (nest,) = _check("ij,ij,ij->i", f, f, f)  # the j loop innermost
    assert nest.schedule.reassociate and nest.schedule.contract
    assert "vm.rmuladd(" in einjit.explain("ij,ij,ij->i", f, f, f).sources[0]
    (single,) = _check("ij->i", f)  # a sum of single terms: no product to fuse
    assert single.schedule.reassociate and not single.schedule.contract
    assert "vm.radd(" in einjit.explain("ij->i", f).sources[0]
    ints = _ints(40, 64)
    assert not _check("ij,ij,ij->i", ints, ints, ints)[0].schedule.reassociate
    (blocked,) = _check("ji,ji->i", f, f)  # the i loop innermost, over accumulators
    assert blocked.schedule.block and not blocked.schedule.reassociate
    (short,) = _check("ij,ij,ij->i", f[:, :5], f[:, :5], f[:, :5])
    assert not short.schedule.reassociate  # too short to fill vectors


@einjit.compile("id,jd->ij")
def sqdist(x, y):
    return (x - y) ** 2


def test_band_of_the_other_output_index_when_unrolled_rows_are_read_again(monkeypatch):
    # id,jd->ij with j unrolled: each block of j rows serves a band of i values.  Small
    # thresholds reach it with small shapes; remainders in i (the band), j (the
    # unrolled values) and both, serial and in chunks.
    for parallel in (1 << 62, 0):
        monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
            band=4, band_bytes=64, parallel_min_work=parallel))
        for n, m in ((16, 12), (19, 14), (9, 8)):
            a, b = RNG.standard_normal((n, 9)), RNG.standard_normal((m, 9))
            (nest,) = _check("id,jd->ij", a, b)
            assert nest.schedule.band == ("i", 4) and nest.schedule.unroll == ("j", 4)
            # products: a register tile of 2 values of i by 4 of j, multiply-adds
            assert nest.schedule.rows == 2 and nest.schedule.contract
            src = einjit.explain("id,jd->ij", a, b).sources[0]
            assert "for ut in range(un // 2):" in src or "for ut in range(2):" in src
            if n % 4 == 3:  # the last band has an odd count: its last value alone
                assert "for ur in range(" in src
            d = sqdist(a, b)
            np.testing.assert_allclose(d, ((a[:, None] - b[None]) ** 2).sum(-1), rtol=1e-12)
            assert sqdist.explain(a, b).nests[0].schedule.rows == 2
            ints = _ints(n, 7), _ints(m, 7)
            (exact,) = _check("id,jd->ij", *ints)
            assert exact.schedule.band == ("i", 4) and exact.schedule.rows == 1
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy())
    small = RNG.standard_normal((50, 8))
    assert einjit.explain("id,jd->ij", small, small).nests[0].schedule.band is None


def test_band_inside_a_batch_loop(monkeypatch):
    # bid,bjd->bij: the band walks i inside b; the rows read again are one batch's
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        band=4, band_bytes=64, parallel_min_work=0))
    a, b = RNG.standard_normal((4, 11, 7)), RNG.standard_normal((4, 10, 7))
    (nest,) = _check("bid,bjd->bij", a, b)
    assert nest.schedule.band == ("i", 4) and nest.schedule.parallel == "b"
    ints = _ints(4, 11, 7), _ints(4, 10, 7)
    assert _check("bid,bjd->bij", *ints)[0].schedule.band == ("i", 4)


def test_parallel_loop_the_threads_share_evenly(monkeypatch):
    # b's 3 values would leave one of two threads idle a third of the time: c runs in
    # parallel, outermost; the innermost loop stays where the strides put it
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(parallel_min_work=0))
    monkeypatch.setattr(einjit.schedule, "thread_count", lambda: 2)
    a, b = RNG.standard_normal((4, 3, 8, 7)), RNG.standard_normal((7, 4, 8, 3))
    (nest,) = _check("cbad,dcab->bdac", a, b)
    assert nest.schedule.parallel == "c" and nest.schedule.order[0] == "c"
    assert nest.schedule.order[-1] == "a"
    (nest,) = _check("cbad,dcab->bdac", a[:, :2], b[..., :2])  # 2 values: even
    assert nest.schedule.parallel == "b"
    (nest,) = _check("ab,ab->ab", a[:, 0, :, 0], a[:, 1, :, 0])  # one loop left: the last
    assert nest.schedule.parallel is not None


def test_parallel_outer_output_loop():
    a = RNG.random((2000, 600))
    (nest,) = _check("ij,ij,ij->i", a, a, a)
    assert nest.schedule.parallel == "i" and nest.schedule.block is None


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_blocked_with_other_dtypes(dtype):
    a = (RNG.random((5, 9)) * 4).astype(dtype)
    b = (RNG.random((9, 520)) * 4).astype(dtype)
    got = einjit.einsum("ij,jk->ik", a, b)
    ref = np.einsum("ij,jk->ik", a, b)
    assert got.dtype == ref.dtype
    if dtype is np.float32:
        np.testing.assert_allclose(got, np.einsum("ij,jk->ik", a.astype(float), b.astype(float)),
                                   rtol=1e-5)
    else:
        np.testing.assert_array_equal(got, ref)


def test_rt_ff_into_fortran_out_regression():
    # The blocked lowering once named its offset loop 't', clobbering the label 't':
    # wrong values and writes out of bounds (found by hypothesis in CI).
    a = np.array([[1], [2], [0], [3]], np.uint16)
    b = np.array([[1, 5], [7, 1]], np.uint16)
    out = np.full((4, 1), 3, np.uint16, order="F")
    assert einjit.einsum("rt,ff", a, b, out=out) is out
    np.testing.assert_array_equal(out, np.einsum("rt,ff", a, b))


@pytest.mark.parametrize(("label", "unroll"),
                         [(lb, 1) for lb in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"]
                         + [(lb, 2) for lb in "acvwrtqpAVW"])  # unrolled names: vb v0 w0 ac0 vr
def test_every_label_survives_blocking_and_chunking(label, unroll, monkeypatch):
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(block=2, chunk=2, unroll=unroll))
    i, k = [c for c in "ikIK" if c != label][:2]
    a, b = _ints(3, 5), _ints(5, 3)
    for eq in (f"{i}{label},{label}{k}->{i}{k}", f"{label}{i},{i}{k}->{label}{k}",
               f"{i}{label},{i}{label}->{i}"):
        ops = (a, b) if eq.count(",") and not eq.endswith(f"->{i}") else (a, a)
        got = einjit.einsum(eq, *ops)
        np.testing.assert_array_equal(got, np.einsum(eq, *ops))
    x = RNG.random((3, 5))
    np.testing.assert_allclose(einjit.einsum(f"{i}{label}->{i}", x), x.sum(axis=1), rtol=1e-12)


def test_matrix_vector_products_that_need_a_copy_run_as_loops():
    # k = (a, b) does not merge in a1[a, c, b]: BLAS would need a transposing copy of a1
    # for a product with one row, which loops that read a1 once beat
    a, b = RNG.standard_normal((32, 150)), RNG.standard_normal((32, 250, 150))
    (nest,) = _check("ab,acb->c", a, b, rtol=1e-10)
    assert nest.schedule.gemm is None
    # the same product whose k merges (a1[a, b, c]) stays a BLAS call, and so does a
    # true matrix product that needs the copy
    (nest,) = _check("ab,abc->c", a, RNG.standard_normal((32, 150, 250)), rtol=1e-10)
    assert nest.schedule.gemm is not None and not any(nest.schedule.gemm.copy)
    (nest,) = _check("dab,acb->dc", RNG.standard_normal((16, 32, 150)), b, rtol=1e-10)
    assert nest.schedule.gemm is not None and any(nest.schedule.gemm.copy)


COPIED = [
    # (equation, shapes, operand made a strided view, copies expected)
    ("c,acc,bac->bc", ((5,), (6, 5, 5), (7, 6, 5)), None, 1),  # acc: a diagonal view
    ("ab,cb->ca", ((9, 8), (7, 8)), None, 0),                   # b contiguous in both
    ("ba,cb->ca", ((8, 9), (7, 8)), None, 0),                   # the copy's output: GEMM
    ("abc,bc->a", ((30, 6, 5), (5, 6)), 1, 1),   # bc transposed: read across along c
    ("abc,bc->a", ((30, 6, 5), (6, 10)), 1, 1),  # every other column: c, stride 2
]


@pytest.mark.parametrize("eq,shapes,view,expected", COPIED)
@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.complex128])
def test_gathered_inputs_read_from_a_copy(eq, shapes, view, expected, dtype, monkeypatch):
    # an input gathered in the innermost loop and read many times per element is copied
    # first, laid out along that loop (Policy.copy_reuse); small sizes with the limits at 0
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        copy_min_work=0, copy_reuse=2, gemm_min_work=1 << 40))
    ops = [(_ints(*s) + (1j * _ints(*s) if dtype is np.complex128 else 0)).astype(dtype)
           for s in shapes]
    if view is not None:  # bc as a transposed operand, or every other column of one
        ops[view] = ops[view].T if ops[view].shape[1] == 6 else ops[view][:, ::2]
    nests = _check(eq, *ops)
    plan = einjit.explain(eq, *ops).plan
    copied = [s for s in plan.steps if s.kernel.name.startswith("k0c")]
    assert len(copied) == expected, plan
    if expected:
        assert "copied v" in plan.note
        # the kernel now reads the copy contiguously along its innermost loop (whose
        # index may stand for the copy's last ones, merged: see einjit.merge)
        inner = einjit.schedule.innermost(nests[-1].kernel, nests[-1].schedule)
        laid = copied[0].kernel.output.indices
        assert inner in laid
        assert not set(laid[laid.index(inner) + 1:]) & set(nests[-1].kernel.extent)
        assert copied[0].result in plan.steps[-1].args


def test_copied_inputs_keep_a_body_and_reduction(monkeypatch):
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        copy_min_work=0, copy_reuse=2))
    x, y = RNG.standard_normal((40, 6, 5)), RNG.standard_normal((6, 10))[:, ::2]
    top = einjit.CompiledEinsum("abc,bc->a", _sqdiff, reduce="max")
    got = top(x, y)
    np.testing.assert_allclose(got, ((x - y[None]) ** 2).max(axis=(1, 2)), rtol=1e-12)
    assert "copied v1" in top.explain(x, y).plan.note


def _sqdiff(a, b):
    return (a - b) ** 2


def test_crossed_reduction_loops_run_in_tiles(monkeypatch):
    # ed,de->: one operand is read down its columns whichever loop is inside; in 32 x 32
    # tiles where its rows alias in the cache (both operands' here)
    a, b = _ints(64, 64), _ints(64, 64)
    (nest,) = _check("ed,de->", a, b)
    assert set(nest.schedule.tile[:2]) == {"e", "d"} and nest.schedule.tile[2] == 32
    assert "for qt in range(" in einjit.explain("ed,de->", a, b).sources[0]
    # only where the column's rows alias in the cache (a's are 512 bytes apart here)
    (plain,) = _check("ed,de->", _ints(70, 63), _ints(63, 70))
    assert plain.schedule.tile is None
    # also inside the loop split over threads (each iteration's partial), and under outputs
    monkeypatch.setattr(einjit.schedule, "ALIASED_BYTES", 8)
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        parallel_min_work=0, tile=4))
    monkeypatch.setattr(einjit.schedule, "thread_count", lambda: 2)
    x, y = _ints(3, 9, 10), _ints(3, 10, 9)
    (split,) = _check("bed,bde->", x, y)
    assert split.schedule.parallel == "b" and split.schedule.tile[2] == 4
    (rows,) = _check("bed,bde->b", x, y)
    assert set(rows.schedule.tile[:2]) == {"e", "d"}
    _check("bed,bde->", RNG.standard_normal((3, 9, 10)), RNG.standard_normal((3, 10, 9)))
    # the two loops of a full reduction, the tiles of the outer one split over threads
    # (ij,ij-> with one operand Fortran-ordered, 2048^2: 12 -> 5 ms), each tile's terms
    # summed into a partial of its own
    for x in (_ints(10, 9), RNG.standard_normal((10, 9))):
        (whole,) = _check("ed,de->", x, x.T.copy())
        assert whole.schedule.parallel in whole.schedule.tile[:2], whole.schedule
        assert "for pb in range((3 * chunk) // chunks" in einjit.explain(
            "ed,de->", x, x.T.copy()).sources[0]


def test_loop_order_follows_the_biggest_arrays_memory():
    # cb (small, read for each a) and abc (big, read once) cross; by raw strides b would
    # run innermost, reading abc across its rows; weighed by size, c runs innermost
    x, y, z = _ints(6), _ints(40, 48), _ints(6, 48, 40)
    (nest,) = _check("a,cb,abc->", x, y, z)[-1:]
    assert nest.schedule.order[-1] == "c"
    assert nest.kernel.inputs[2].indices == ("a", "b", "c")


def test_copies_across_strides_run_both_contiguous_axes_in_tiles():
    # ijk,kji->ijk: the output and a0 run along k, a1 along i; by strides j would run
    # innermost (every array's rows apart along it): k and i innermost in tiles instead,
    # j around them on the threads
    a, b = RNG.random((64, 64, 64)), RNG.random((64, 64, 64))
    (nest,) = _check("ijk,kji->ijk", a, b)
    assert nest.schedule.order == ("j", "i", "k") and nest.schedule.parallel == "j"
    # a1's rows along k lie 32 KiB apart, all in one cache set: tiles of 8 rows
    assert nest.schedule.tile == ("i", "k", 8)
    # 800 bytes apart they spread over the cache: tiles of 32
    (nest,) = _check("ijk,kji->ijk", RNG.random((100, 90, 80)), RNG.random((80, 90, 100)))
    assert nest.schedule.order[1:] == ("i", "k") and nest.schedule.tile == ("i", "k", 32)
    # operands that stay in the second level cache keep the order by strides
    small = [RNG.random((32, 32, 32)).astype(np.float32) for _ in range(2)]
    (nest,) = _check("ijk,kji->ijk", *small, rtol=1e-6)
    assert nest.schedule.tile is None or nest.schedule.tile[:2] != ("i", "k")
    # and in two dimensions, rows 4 KiB apart are tiled 8 by 8
    (nest,) = _check("ij,ji->ij", RNG.random((512, 512)), RNG.random((512, 512)))
    assert nest.schedule.tile[2] == 8


def _check_copies(cases, dtypes):
    # each permuted view copied into a given C-ordered result by einjit's kernel: exact
    for shape, perm in cases:
        for dtype in dtypes:
            x = (RNG.standard_normal(shape) * 50).astype(dtype)
            view = x.transpose(perm)
            out = np.zeros(view.shape, dtype)
            labels = "abcde"[:x.ndim]
            assert einjit.einsum(f"{labels}->{labels}", view, out=out) is out
            np.testing.assert_array_equal(out, view)


def test_tiles_run_the_outputs_rows_innermost(monkeypatch):
    # a 100 x 20971 transpose into a C-ordered result: by strides the input was read
    # along its rows and the output written a line a value; in the tiles, the output's
    # rows innermost, its blocks of rows on the threads
    from einjit.ir import Index, Kernel, Operand, SUM, product
    k = Kernel("k0", (Operand("a0", "float32", ("a", "b")),),
               Operand("out", "float32", ("a", "b")), (Index("a", 20971), Index("b", 100)),
               product(1, (("a", "b"),)), SUM, "float32")
    sched = schedule.schedule(k, [(1, 20971)], (100, 1), threads=2)
    assert sched.tile == ("a", "b", 32) and sched.parallel == "a"
    # the output Fortran-ordered (its rows along a), the input C-ordered: a innermost
    sched = schedule.schedule(k, [(100, 1)], (1, 20971), threads=2)
    assert sched.tile == ("b", "a", 32) and sched.parallel == "b"
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(parallel_min_work=0))
    _check_copies([(shape, (1, 0)) for shape in ((100, 2100), (2100, 100), (33, 65), (65, 33))],
                  (np.float32, np.float64, np.int16))


def test_a_copy_crossing_two_short_sides_runs_them_innermost(monkeypatch):
    # ijk,kji->ijk over 3 x 5000 x 12: the output runs along k (12 values), the second
    # input along i (3): both innermost, untiled, j around them (a pass over i outside
    # was a pass over all of both arrays for each of its values)
    a, b = _ints(3, 5000, 12), _ints(12, 5000, 3)
    (nest,) = _check("ijk,kji->ijk", a, b)
    assert nest.schedule.order == ("j", "i", "k") and nest.schedule.tile is None
    # on threads, the long side split; permutations into a given result exact
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(parallel_min_work=0))
    (nest,) = _check("ijk,kji->ijk", a, b)
    assert nest.schedule.order == ("j", "i", "k") and nest.schedule.parallel == "j"
    _check_copies((((12, 1000, 3), (2, 1, 0)), ((5, 7, 300, 6), (3, 2, 1, 0)),
                   ((2, 10, 48, 8, 9), (4, 3, 2, 1, 0)), ((12, 5, 64, 77, 1), (2, 4, 3, 1, 0)),
                   ((12, 10, 1747), (2, 1, 0))), (np.float32, np.int64, np.complex64))


def test_a_crossing_pair_with_one_short_side_runs_innermost_in_tiles():
    # ijk,kji->ijk over 1747 x 100 x 12: the output runs along k (12 values, 48 bytes),
    # the second input along i (1747): i and k innermost in tiles of k whole, j around
    # them (by strides k ran outside, a pass over the output per value)
    a, b = _ints(1747, 100, 12).astype(np.float32), _ints(12, 100, 1747).astype(np.float32)
    (nest,) = _check("ijk,kji->ijk", a, b)
    assert nest.schedule.order[-2:] == ("i", "k") and nest.schedule.tile == ("i", "k", 32)
    # not a side of 2 values (8 bytes): a short run of the output's rows
    a, b = _ints(16384, 32, 2).astype(np.float32), _ints(2, 32, 16384).astype(np.float32)
    (nest,) = _check("ijk,kji->ijk", a, b)
    assert nest.schedule.tile != ("i", "k", 32)


def test_a_copy_with_a_short_side_runs_in_tiles_of_it_whole(monkeypatch):
    # out[a, c] = x[c, a] * y[a, c], c shorter than Policy.tile and the output's rows
    # along it: tiles of c whole by 32 values of a (without, each value of c was a pass
    # over the output writing one element a line), the blocks of a on the threads
    x, y = _ints(4096, 16), _ints(16, 4096)
    (nest,) = _check("ac,ca->ac", x, y)
    assert nest.schedule.tile == ("a", "c", 32)
    big = _ints(65536, 16), _ints(16, 65536)
    (nest,) = _check("ac,ca->ac", *big)
    assert nest.schedule.tile == ("a", "c", 32) and nest.schedule.parallel == "a"
    # where the output runs along the long side, its rows along the short one 256 KiB
    # apart (one cache set): tiles of 8 values, and only over 4 MiB
    (nest,) = _check("ca,ac->ca", big[1], big[0])
    assert nest.schedule.tile == ("a", "c", 8) and nest.schedule.parallel == "a"
    (nest,) = _check("ca,ac->ca", x.T.copy(), x)
    assert nest.schedule.tile is None
    # permutations into a given C-ordered result: short sides of 2 to 31, blocks left
    # over, on threads or not, exact (the last into rows along its long side, 5 MB)
    for threads in (False, True):
        monkeypatch.setattr(einjit.policy, "POLICY", Policy(parallel_min_work=0 if threads
                                                            else 1 << 40))
        _check_copies((((3, 40, 50), (1, 2, 0)), ((2, 33), (1, 0)), ((31, 100), (1, 0)),
                       ((5, 7, 9, 11), (0, 2, 3, 1)), ((24, 3, 24, 24), (0, 2, 3, 1)),
                       ((70001, 9), (1, 0))), (np.float32, np.float64, np.uint8, np.complex128))


def test_small_matrix_vector_products_run_as_loops():
    # below Policy.gemv_min_work, a dot or matrix-vector product runs as a loop nest
    # (BLAS's call costs more), unless the loops would gather an input that BLAS reads
    # in place, or would copy for less than the gathering costs (by the cost model)
    x, y = RNG.standard_normal((64, 300)), RNG.standard_normal(300)
    (small,) = _check("ba,a->b", x, y)
    assert not small.schedule.gemm
    (big,) = _check("ba,a->b", RNG.standard_normal((640, 300)), y)
    assert big.schedule.gemm
    # a slice (a and b stay apart, so the sum over d gathers along b), which BLAS would
    # copy first: loops (13.9 against 18.6 us in float64)
    (strided,) = _check("dab,d->ab", RNG.standard_normal((32, 300, 4))[:, :, :3],
                        RNG.standard_normal(32))
    assert not strided.schedule.gemm
    # a diagonal the loops gather (along a), BLAS reads in place, one matrix per b
    (diagonal,) = _check("baaa,cba->bc", RNG.standard_normal((32,) * 4),
                         RNG.standard_normal((17, 32, 32)))
    assert diagonal.schedule.gemm
    # a diagonal the loops gather, BLAS would copy (along c, b): loops (24 against 56 us)
    (copied,) = _check("cbb,cab->a", RNG.standard_normal((75, 128, 128)),
                       RNG.standard_normal((75, 2, 128)))
    assert not copied.schedule.gemm


@pytest.mark.parametrize("threads", [1, 2])
def test_a_float32_dot_runs_as_loops_on_threads(threads):
    # BLAS's float32 dot runs on one thread: from parallel_min_work multiply-adds a single
    # float32 dot is loops split over the threads; float64's (threaded ddot), a smaller
    # one, a matrix-vector product (threaded gemv), or one thread keep BLAS
    from einjit.gemm import c_ordered_strides

    def plan(eq, *shapes, dtype=np.float32):
        ops = [np.ones(sh, dtype) for sh in shapes]
        k = einjit.explain(eq, *ops).nests[0].kernel
        return schedule.schedule(k, *c_ordered_strides(k), threads=threads)

    big = plan("ij,ij->", (1024, 1024), (1024, 1024))
    assert (big.gemm is None) == (threads == 2)
    if threads == 2:
        assert big.parallel == "i" and big.threads == 2
    assert plan("ij,ij->", (1024, 1024), (1024, 1024), dtype=np.float64).gemm
    assert plan("i,i->", (1 << 17,), (1 << 17,)).gemm
    assert plan("ij,j->i", (1024, 1024), (1024,)).gemm
    a = RNG.standard_normal((1024, 1024)).astype(np.float32)
    np.testing.assert_allclose(einjit.einsum("ij,ij->", a, a),
                               np.sum(a.astype(np.float64) ** 2), rtol=1e-5)


def test_batches_of_matrix_vector_products_run_as_loops():
    # one BLAS call per matrix of a memory-bound batch loses to one loop nest over it,
    # above Policy.gemv_min_work too: a batch index of both operands, or one the
    # layout moves out of the rows (i, k of ijk do not merge into one axis)
    for eq, shapes in (("bij,bj->bi", [(6, 128, 96), (6, 96)]),
                       ("bij,bi->bj", [(6, 128, 96), (6, 128)]),
                       ("ijk,j->ik", [(8, 96, 100), (96,)])):
        (nest,) = _check(eq, *(RNG.standard_normal(s) for s in shapes))
        assert not nest.schedule.gemm, eq
    # one matrix of that size still goes to BLAS
    (one,) = _check("ijk,k->ij", RNG.standard_normal((8, 96, 100)), RNG.standard_normal(100))
    assert one.schedule.gemm
    # a batch of tiny products (32 terms each, one call per value of c) the loops
    # gather: still loops, the calls cost more than the gathering
    for dtype in (np.float32, np.float64):
        x, y = (RNG.standard_normal(s).astype(dtype) for s in ((32, 512), (2, 512, 32)))
        (tiny,) = _check("ac,bca->bc", x, y, rtol=1e-5 if dtype == np.float32 else 1e-12)
        assert not tiny.schedule.gemm
    # of 8192 terms each: BLAS
    (wide,) = _check("be,edb->ed", RNG.standard_normal((64, 150)),
                     RNG.standard_normal((150, 128, 64)))
    assert wide.schedule.gemm


def test_unrolled_values_only_over_rows_in_cache():
    # several values of i at once read as many rows of a0 at a time: where a0 fits in
    # cache (Policy.unroll_max_bytes) that shares the loads of a1; beyond, one row at a
    # time streams from memory faster
    for b, unrolled in ((2, True), (16, False)):
        x, y = RNG.standard_normal((b, 128, 256)), RNG.standard_normal((b, 256))
        (nest,) = _check("bij,bj->bi", x, y)
        assert (nest.schedule.unroll is not None) == unrolled, b


def test_every_reduction_hoisted_only_when_split(monkeypatch):
    # on one thread, a block of accumulators keeps such an output in registers instead
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        hoist_min_bytes=0, parallel_min_work=0))
    monkeypatch.setattr(einjit.schedule, "thread_count", lambda: 1)
    (nest,) = _check("b,bac->c", _ints(13), _ints(13, 5, 11))
    assert not nest.schedule.hoist and nest.schedule.block == ("c", 11)
    # but a block covers one output loop: with two, the sum still runs outermost (a slice,
    # so that a and c do not merge into one output loop)
    (nest,) = _check("bac->ac", _ints(13, 5, 12)[:, :, :11])
    assert nest.schedule.hoist == ("b",) and not nest.schedule.threads


def test_no_hoist_where_the_reductions_left_inside_would_stride(monkeypatch):
    # c is strided wider than the output, but e, summed inside, runs across a's memory
    # (a0[c, e, a]): a block of a with c and e outside reads a0 in its memory order
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        hoist_min_bytes=0, parallel_min_work=0))
    for dtype in (np.float64, np.int64):
        x, y = (RNG.integers(-9, 9, s).astype(dtype) for s in ((17, 15, 32), (17, 3, 15)))
        (nest,) = _check("cea,cde->da", x, y)
        assert not nest.schedule.hoist and nest.schedule.block[0] == "a", dtype
        # with nothing left inside (e merged away), the sum still runs outermost
        (nest,) = _check("cea->ea", x)
        assert nest.schedule.hoist == ("c",)


def test_the_loop_order_avoids_gathering_along_aliased_rows():
    # both orders gather one operand across its rows: b innermost reads a0's column, a
    # innermost a1's, with the wider stride; a0's rows 512 bytes apart fall into a few
    # cache sets, and its column weighs more; 480 bytes apart, it does not
    for a, order in ((128, "a"), (120, "b")):
        x, y, z = (RNG.random(s).astype(np.float32) for s in ((200, a), (a, 200), (200,)))
        (nest,) = _check("ba,ab,b->", x, y, z, rtol=1e-5)
        assert nest.schedule.order[-1] == order, a


def test_a_block_along_aliased_rows_is_short_and_runs_inside_aliased_sums():
    # a innermost (a block) reads y across its rows 2 KiB apart: a block of 8 values,
    # whose 8 rows per term stay in their few cache sets until the next terms
    (nest,) = _check("ba,ab->a", RNG.random((256, 300)), RNG.random((300, 256)))
    assert nest.schedule.block == ("a", 8)
    (nest,) = _check("ba,ab->a", RNG.random((255, 300)), RNG.random((300, 255)))
    assert nest.schedule.block == ("a", 300)  # 2040 bytes apart: one block
    # Both orders read an operand across rows 4 KiB apart (1024 x 1024 float32): b
    # innermost would walk 1024 of x's rows per value of a, all in one cache set; a
    # short block of a runs inside b instead
    x, y = (RNG.random((1024, 1024)).astype(np.float32) for _ in range(2))
    (nest,) = _check("ba,ab->a", x, y, rtol=1e-5)
    assert nest.schedule.block == ("a", 8)
    assert nest.schedule.order[-1] == "b"  # the block's loop runs inside it


def test_a_few_output_values_are_summed_at_once_in_one_pass():
    # a = 8 values (at most twice Policy.unroll): eight scalar accumulators, the input
    # read once in memory order, rather than two passes of four
    x, y = _ints(300), _ints(8, 300, 8)
    (nest,) = _check("e,bea->a", x, y)
    assert nest.schedule.unroll == ("a", 8) and nest.schedule.parallel is None
    (nest,) = _check("e,bea->a", x, y[:, :, :5])  # five: all five
    assert nest.schedule.unroll == ("a", 5)
    # two or three values too, read in runs inside the sums (d strides by b's extent);
    # where b and d tie on every array's strides, the inputs' decide (out's stride 1)
    (nest,) = _check("dcab,a->db", _ints(5, 7, 9, 3), _ints(9))
    assert nest.schedule.unroll == ("b", 3)
    (nest,) = _check("ecdb,c->eb", _ints(5, 7, 9, 2), _ints(7))
    assert nest.schedule.unroll == ("b", 2)


def test_gathering_kernels_take_threads_from_fewer_terms(monkeypatch):
    # 600 x 600 terms: below parallel_min_work, but each gathers a column element
    monkeypatch.setattr(einjit.schedule, "thread_count", lambda: 2)
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        parallel_min_work=1 << 20))
    a, b = _ints(600, 600), _ints(600, 600)
    (crossed,) = _check("ab,ba->", a, b)
    assert crossed.schedule.parallel is not None and crossed.schedule.threads == 2
    (streamed,) = _check("ab,ab->", a, b)  # read in memory order: one thread
    assert streamed.schedule.parallel is None
    # a,abe->ae: the sum over b strides by e's extent, but a block of e runs inside it,
    # reading contiguous memory: no gather, one thread (0.096 -> 0.041 ms in float32)
    (blocked,) = _check("a,abe->ae", _ints(300), _ints(300, 8, 300))
    assert blocked.schedule.block == ("e", 300) and blocked.schedule.parallel is None


@pytest.mark.parametrize(("eq", "shapes"), [
    ("ij,jk->ik", [(300, 8), (8, 700)]),               # sums of 8 terms
    ("ij,jk->ik", [(300, 64), (64, 100)]),             # 100 = 6 x 16 + 4 left over
    ("cda,da->ac", [(125, 64, 128), (64, 128)]),       # a0 read along both c and a
    ("ij,jk->ik", [(70, 4096), (4096, 256)])])         # a block of 4096 x 16 values of a1
def test_wide_blocks_stay_in_memory_where_register_tiles_do_not_pay(eq, shapes):
    sched = einjit.explain(eq, *shapes, dtype="int64").nests[0].schedule
    assert sched.block is not None and sched.block[1] > 16 and sched.block_rows is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_that_gather_a_cache_line_apart_add_in_order(dtype):
    # vectorised, a loop reading b down a column would load it by gather instructions
    a, b = (RNG.standard_normal((40, 40)).astype(dtype) for _ in range(2))
    (nest,) = _check("ab,ba->", a, b, rtol=1e-5)
    assert not nest.schedule.reassociate
    (nest,) = _check("ab,ab->", a, b, rtol=1e-5)  # both rows in runs: vectorised
    assert nest.schedule.reassociate
    x, y = RNG.standard_normal((40, 3)).astype(dtype), a[0]  # x read 3 values apart
    (nest,) = _check("ab,a->b", x, y, rtol=1e-5)
    assert nest.schedule.reassociate and nest.schedule.order[-1] == "a"


def test_sums_of_far_gathers_only_take_threads_from_fewer_terms(monkeypatch):
    # every term a cache line of its own: threads from parallel_min_work / 16 terms;
    # a term that also streams an input: from parallel_min_work / 4
    monkeypatch.setattr(einjit.policy, "POLICY", einjit.policy.Policy(
        parallel_min_work=1 << 12))
    monkeypatch.setattr(einjit.schedule, "thread_count", lambda: 2)
    x = RNG.standard_normal((8, 50, 50))
    (nest,) = _check("bii->b", x)  # 400 terms
    assert nest.schedule.parallel is not None
    a = RNG.standard_normal((20, 20))
    (nest,) = _check("ab,ba->", a, a.T.copy())  # 400 terms, a0 streamed
    assert nest.schedule.parallel is None
    (nest,) = _check("bii->b", x[:2])  # 100 terms
    assert nest.schedule.parallel is None
