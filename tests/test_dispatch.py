"""The fast path for repeated call signatures replays the right kernels on new data."""

import warnings

import numpy as np
import pytest

import einjit
from einjit import engine

CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ii->", [(4, 4)]),                        # a diagonal view recipe
    ("i,i->i", [(1,), (5,)]),                  # a broadcast (stride 0) recipe
    ("ii->i", [(4, 4)]),                       # numpy's diagonal view
    ("ij->ji", [(3, 4)]),                      # numpy's transpose view
    ("i,i->", [(6,), (6,)]),                   # a 0-d result
    ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)]),  # several steps
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...i,...i", [(2, 3), (3,)]),
    ("ba,ba->ab", [(2, 3), (2, 3)]),           # results in the operands' memory order
    ("a,bc->acb", [(3,), (4, 2)]),
    ("ab,ab->", [(3, 4), (3, 4)]),             # operands viewed flat (ravel)
    ("abc,abc->a", [(2, 3, 4), (2, 3, 4)]),    # operands reshaped (b and c merged)
    ("a,b,ab->b", [(3,), (4,), (3, 4)]),       # three operands
]


def _ops(shapes, dtype, seed, layout):
    rng = np.random.default_rng(seed)
    ops = [(rng.random(s) * 10).astype(dtype) for s in shapes]
    if layout == "F":
        ops = [np.asfortranarray(o) for o in ops]
    elif layout == "negative":
        ops = [o[::-1] if o.ndim else o for o in ops]
    elif layout == "transposed":  # C-ordered in memory, axes rotated: neither C nor F
        rot = [tuple(range(1, o.ndim)) + (0,) for o in ops]
        ops = [np.ascontiguousarray(o.transpose(r)).transpose(np.argsort(r))
               if o.ndim > 2 else o for o, r in zip(ops, rot)]
    elif layout == "readonly":
        for o in ops:
            o.flags.writeable = False
    return ops


@pytest.mark.parametrize("layout", ["C", "F", "negative", "readonly", "transposed"])
@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.float16])
@pytest.mark.parametrize(("eq", "shapes"), CASES, ids=[c[0] for c in CASES])
def test_repeated_signature_gives_fresh_results(eq, shapes, dtype, layout):
    for seed in range(3):  # the first call builds; the next two replay
        ops = _ops(shapes, dtype, seed, layout)
        before = einjit.cache_info()
        got = einjit.einsum(eq, *ops)
        ref = np.einsum(eq, *ops)
        assert type(got) is type(ref)
        assert np.shape(got) == np.shape(ref) and np.asarray(got).dtype == np.asarray(ref).dtype
        exact = np.einsum(eq, *[o.astype(np.float64) for o in ops])  # float16 rounds
        np.testing.assert_allclose(np.asarray(got, dtype=float),
                                   exact if dtype == np.float16 else np.asarray(ref, dtype=float),
                                   rtol=1e-2 if dtype == np.float16 else 1e-12)
        if seed:
            after = einjit.cache_info()
            assert after["misses"] == before["misses"]


@pytest.mark.parametrize("out_layout", ["C", "F", "float32"])
@pytest.mark.parametrize(("eq", "shapes"), CASES, ids=[c[0] for c in CASES])
def test_repeated_signature_with_out(eq, shapes, out_layout):
    """Calls with ``out=`` replay too: the result lands in ``out`` (cast like numpy's
    assignment for a float32 ``out``), every call after the first a fast-path hit."""
    for seed in range(3):
        ops = _ops(shapes, np.float64, seed, "C")
        ref = np.einsum(eq, *ops)
        out = np.zeros(np.shape(ref), np.float32 if out_layout == "float32" else np.float64,
                       order="F" if out_layout == "F" else "C")
        before = einjit.cache_info()
        got = einjit.einsum(eq, *ops, out=out, casting="unsafe")
        assert got is out
        np.testing.assert_allclose(out, ref, rtol=1e-6 if out_layout == "float32" else 1e-12)
        if seed:
            after = einjit.cache_info()
            assert after["misses"] == before["misses"] and after["hits"] > before["hits"]


@pytest.mark.parametrize("decorated", [False, True])
def test_replay_into_an_out_that_is_an_operand(decorated):
    """A call whose ``out`` is one of its operands computes into a temporary first, also
    when its signature was first seen with a separate ``out``."""
    @einjit.compile("ij,jk->ik")
    def matmul(a, b): ...

    mm = matmul if decorated else (lambda a, b, out: einjit.einsum("ij,jk->ik", a, b, out=out))
    rng = np.random.default_rng(3)
    a = rng.random((6, 6))
    mm(a, a, out=np.empty((6, 6)))
    for _ in range(2):  # aliased: a = a @ a, twice
        expect = a @ a
        assert mm(a, a, out=a) is a
        np.testing.assert_allclose(a, expect, rtol=1e-12)
    b, out = rng.random((6, 6)), np.empty((6, 6))
    assert mm(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize(("eq", "shape"), [("ii->i", (5, 5)), ("iii->i", (3, 3, 3)),
                                           ("ii->i", (1, 1)), ("ii->i", (0, 0))])
def test_replayed_diagonal_is_a_writeable_view(eq, shape, order):
    """A diagonal of a contiguous array replays as a slice of its flat memory: the same
    elements, writeable, writes landing in the array, as numpy's view does."""
    for seed in range(3):
        a = np.asarray(np.random.default_rng(seed).random(shape), order=order)
        d = einjit.einsum(eq, a)
        np.testing.assert_array_equal(d, np.einsum(eq, a))
        assert d.flags.writeable and (a.size == 0 or np.shares_memory(d, a))
        d[...] = -1.0
        np.testing.assert_array_equal(np.einsum(eq, a), -np.ones(shape[0]))


def test_fast_path_returns_new_arrays_and_views_like_numpy():
    a = np.arange(12.0).reshape(3, 4)
    r1 = einjit.einsum("ij,ij->i", a, a)
    r2 = einjit.einsum("ij,ij->i", a, a)
    assert r1 is not r2 and not np.shares_memory(r1, r2)
    for _ in range(2):
        t = einjit.einsum("ij->ji", a)
        assert np.shares_memory(t, a) and t.base is a.base
        d = einjit.einsum("ii->i", a[:3, :3])
        assert np.shares_memory(d, a)


@pytest.mark.parametrize(("eq", "shapes"), [
    ("ijk->kji", [(2, 3, 4)]), ("bca", [(2, 3, 4)]), ("i", [(5,)]), ("ij->ij", [(3, 2)]),
    ("...ij->...ji", [(2, 3), (4, 2, 3), (5,) * 4]),
    ("i...->...i", [(3, 4), (3,), (3, 1, 2)]),
    ("ii->i", [(3, 3), (1, 1), (5, 5)]), ("bcbb->cb", [(2, 3, 2, 2), (4, 1, 4, 4)]),
    ("iij->ji", [(2, 2, 3)]), ("...ii->i...", [(3, 3), (2, 4, 4)])])
def test_views_answer_any_array_of_their_dimension(eq, shapes):
    """After its first call an equation numpy answers with a view (transposed, diagonals
    taken) answers by the equation alone (``dispatch.VIEWS``): for arrays of any shape,
    strides and dtype, numpy's view of the operand, writeable as the operand; an array
    of another dimension or whose repeated labels' extents differ gets numpy's answer."""
    engine.clear_cache()
    rng = np.random.default_rng(0)
    for shape in shapes:
        base = rng.random(tuple(2 * n for n in shape))
        for a in (base[tuple(slice(None, None, 2) for _ in shape)], base[:shape[0]].copy()
                  [tuple(slice(n) for n in shape)].astype(np.float32),
                  np.asarray(rng.random(shape), order="F"),
                  np.arange(int(np.prod(shape))).astype(object).reshape(shape)):
            for _ in range(2):
                t = einjit.einsum(eq, a)
                expected = np.einsum(eq, a)
                assert t.shape == expected.shape and t.strides == expected.strides
                assert t.dtype == a.dtype and np.shares_memory(t, a)
                assert t.flags.writeable and expected.flags.writeable
                np.testing.assert_array_equal(t, expected)
    hits = engine.cache.STATS.hits
    b = np.ones(shapes[-1]).astype(np.float16)  # the dimension of the last one planned
    b.flags.writeable = False
    t = einjit.einsum(eq, b)
    assert engine.cache.STATS.hits == hits + 1 and not t.flags.writeable
    c = np.ones(shapes[-1])[...]  # read-only, a view of a writeable array
    c.flags.writeable = False
    assert not einjit.einsum(eq, c).flags.writeable and not np.einsum(eq, c).flags.writeable
    # keywords and other kinds of operand take the full way, with numpy's answers
    for order in "CF":  # numpy's view whatever the order
        t, expected = einjit.einsum(eq, b, order=order), np.einsum(eq, b, order=order)
        np.testing.assert_array_equal(t, expected)
        assert t.strides == expected.strides
    if "..." not in eq:  # an array of another dimension is still an error
        with pytest.raises(ValueError, match="operand 0"):
            einjit.einsum(eq, np.ones((2,) * 6))
    labels = eq.split("->")[0].replace("...", "")
    if len(set(labels)) < len(labels):  # so are a diagonal's unequal extents
        shape = list(shapes[-1])  # the last repeated label's extent one larger
        k = max(k for k, lb in enumerate(labels) if labels.count(lb) > 1)
        shape[k + (len(shape) - len(labels) if eq.startswith("...") else 0)] += 1
        with pytest.raises(ValueError):
            np.einsum(eq, np.ones(shape))
        with pytest.raises(ValueError, match="operand 0"):
            einjit.einsum(eq, np.ones(shape))
    assert type(einjit.einsum(eq, np.ma.masked_array(b))) is np.ndarray


def test_decorator_fast_path():
    @einjit.compile("ij,j->i")
    def matvec(a, x): ...

    rng = np.random.default_rng(0)
    for _ in range(3):
        a, x = rng.random((5, 4)), rng.random(4)
        np.testing.assert_allclose(matvec(a, x), a @ x, rtol=1e-12)
    assert matvec.signatures == 1


@pytest.mark.parametrize("writeable", [True, False])
@pytest.mark.parametrize(("eq", "shapes"), [("ii->", [(5, 5)]), ("i,i->i", [(1,), (7,)]),
                                            ("iij,j->i", [(3, 3, 4), (4,)]),
                                            ("abc,abc->a", [(2, 3, 4), (2, 3, 4)])])
def test_replay_reuses_the_compiled_kernel(eq, shapes, writeable):
    """The replayed canonical views have the Numba type the kernel was compiled for (a
    read-only view of a writeable array would compile the kernel a second time)."""
    ops = _ops(shapes, np.float64, 7, "C")
    for o in ops:
        o.flags.writeable = writeable
    einjit.einsum(eq, *ops)
    compiled = engine.lookup(engine.prepare((eq, *ops)))
    before = [len(k.signatures) for k in compiled.kernels]
    for _ in range(3):
        np.testing.assert_allclose(einjit.einsum(eq, *ops), np.einsum(eq, *ops), rtol=1e-12)
    assert [len(k.signatures) for k in compiled.kernels] == before


def test_diagonal_view_of_a_view_and_of_a_read_only_array():
    base = np.arange(32.0).reshape(2, 4, 4)
    ro = base[1].copy()
    ro.flags.writeable = False
    for _ in range(3):
        d = einjit.einsum("ii->i", base[1])          # a view: the slow, general route
        assert d.base is np.einsum("ii->i", base[1]).base
        assert d.tolist() == np.diagonal(base[1]).tolist()
        r = einjit.einsum("ii->i", ro)               # the owner itself: the generated one
        assert r.base is ro and not r.flags.writeable and r.tolist() == np.diagonal(ro).tolist()


def test_replay_tells_aligned_and_unaligned_operands_apart():
    """Launchers call compiled code directly, so a signature pins the alignment too."""
    rng = np.random.default_rng(3)
    a = rng.random((5, 6))
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    unaligned = np.frombuffer(raw[1:].data, dtype=np.float64).reshape(5, 6)
    unaligned[...] = a
    assert not unaligned.flags.aligned
    for x in (a, unaligned, a, unaligned):
        np.testing.assert_allclose(einjit.einsum("ij,ij->i", x, x), (a * a).sum(1),
                                   rtol=1e-12)
        np.testing.assert_allclose(einjit.einsum("ij,kj->ik", x, x), a @ a.T, rtol=1e-12)


def _like_numpy(eq, ops, order):
    """einjit's result on its first call and on the fast path: numpy's shape, strides
    and values (returns numpy's)."""
    ref = np.einsum(eq, *ops, order=order)
    for _ in range(2):
        got = einjit.einsum(eq, *ops, order=order)
        assert got.shape == ref.shape and got.strides == ref.strides
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    return ref


@pytest.mark.parametrize(("eq", "shapes", "order"), [
    ("c,ba->abc", [(7,), (5, 3)], "K"),        # result (b, a, c) in memory
    ("ijk,kl->lji", [(3, 4, 5), (5, 6)], "K"),
    ("ijk,kj->ik", [(3, 4, 5), (5, 4)], "F"),
    ("ij,jk->ik", [(30, 40), (40, 20)], "F"),   # a GEMM step writing a transposed result
    ("abc,cd->dba", [(2, 3, 4), (4, 5)], "C"),
])
def test_the_last_kernel_writes_the_result_in_memory_order(eq, shapes, order):
    # A result whose axes lie in memory in another order is written by a kernel that
    # sees it C-ordered (Numba vectorises stores only where it knows the strides), then
    # handed back transposed: numpy's strides, numpy's values, on the first call and on
    # the fast path.
    rng = np.random.default_rng(5)
    ops = [rng.random(s) for s in shapes]
    ref = _like_numpy(eq, ops, order)
    call = engine.prepare((eq, *ops), order=order)
    output, memory_order = call.spec.output, call.written
    assert "".join(memory_order) == "".join(
        sorted(output, key=lambda lb: -ref.strides[output.index(lb)]))
    plan = engine.lookup(call)
    written = plan.plan.steps[-1].kernel.output.indices
    assert written == call.written
    # adjacent axes of that order may merge into one (then the result is reshaped)
    assert written == tuple(lb for lb in memory_order if lb in written)
    merged = plan.nests[-1].kernel.output.indices  # and in the kernel, which views it so
    assert merged == tuple(lb for lb in written if lb in merged)


@pytest.mark.parametrize(("eq", "shape", "axes"), [
    ("abc,c->ab", (4, 5, 6), (1, 0, 2)),
    ("abc,abc->ab", (4, 5, 6), (2, 0, 1)),
    ("abc->", (4, 5, 6), (1, 2, 0)),
    ("abcd,bd->ca", (3, 4, 5, 6), (3, 1, 0, 2)),
    ("abc,cd->abd", (4, 5, 6), (2, 0, 1)),
])
def test_transposed_operands_are_read_in_memory_order(eq, shape, axes):
    # An operand that is a transposed C-ordered array reaches its kernel C-ordered, its
    # labels moved with its axes (Numba vectorises a loop over a C-ordered array only).
    rng = np.random.default_rng(8)
    x = rng.random(shape).transpose(axes)
    assert not (x.flags.c_contiguous or x.flags.f_contiguous)
    terms = eq.split("->")[0].split(",")
    size = dict(zip(terms[0], x.shape))
    others = [rng.random([size.get(lb, 3) for lb in t]) for t in terms[1:]]
    ref = np.einsum(eq, x, *others)
    for _ in range(2):  # built, then replayed
        got = einjit.einsum(eq, x, *others)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
        assert np.shape(got) == np.shape(ref)
    view = engine.prepare((eq, x, *others)).views[0]
    assert view.flags.c_contiguous


def test_transposed_operand_with_a_body():
    rng = np.random.default_rng(9)
    x = rng.random((3, 4, 5)).transpose(1, 2, 0)
    y = rng.random((4, 5))

    @einjit.compile("abc,ab->ac", reduce="max")
    def f(p, q):
        return abs(p - q)

    ref = np.abs(x - y[:, :, None]).max(axis=1)
    for _ in range(2):
        np.testing.assert_allclose(f(x, y), ref, rtol=1e-12)
    # a slice large enough to be read flat
    x = rng.random((60, 30, 12))[:, :, 2:]
    y = rng.random((60, 30))
    ref = np.abs(x - y[:, :, None]).max(axis=1)
    for _ in range(2):
        np.testing.assert_allclose(f(x, y), ref, rtol=1e-12)
    assert "a0 read flat" in str(f.explain(x, y))


@pytest.mark.parametrize(("eq", "shapes", "order"), [
    ("eba->ba", [(12, 30, 10)], "K"),          # the sum runs over 300 contiguous outputs
    ("eba->ab", [(12, 30, 10)], "K"),          # ... written b, a, returned transposed
    ("bac->ac", [(7, 16, 20)], "K"),
    ("dab,d->ab", [(5, 30, 12), (5,)], "C"),
    ("abc,c->ab", [(20, 16, 8), (8,)], "F"),   # F: a and b lie apart, no merge
    ("c,ba->abc", [(7,), (10, 30)], "K"),
    ("ijk,k->ij", [(20, 16, 3), (3,)], "A"),
])
def test_adjacent_output_axes_are_written_as_one(eq, shapes, order):
    # Output labels next to each other in every operand and in the new result's memory
    # order merge: the kernel writes fewer, longer axes; the result is reshaped back,
    # numpy's shape, strides and values, on the first call and on the fast path.
    rng = np.random.default_rng(11)
    ops = [rng.random(s) for s in shapes]
    ref = _like_numpy(eq, ops, order)
    call = engine.prepare((eq, *ops), order=order)
    n_out = len(call.spec.output)
    engine.lookup(call)
    merged = call.final is not None
    assert merged == (order != "F")
    assert len(call.spec.output) == (n_out - 1 if merged else n_out)
    # into a given out=, or with a small result, every axis stays
    out = np.empty_like(ref)
    assert einjit.einsum(eq, *ops, out=out) is out
    np.testing.assert_allclose(out, np.einsum(eq, *ops), rtol=1e-12)
    call = engine.prepare((eq, *ops), out=out)
    engine.lookup(call)
    assert call.final is None


@pytest.mark.parametrize(("eq", "shapes", "fortran"), [
    ("a,c->ac", [(4,), (5,)], (True, True)),            # 1-D operands are F-contiguous
    ("a,ab->ab", [(4,), (4, 5)], (True, False)),
    ("a,ab->ab", [(4,), (4, 5)], (True, True)),
    ("ab,c->abc", [(1, 5), (3,)], (False, True)),       # (1, 5) is C- and F-contiguous
    ("ab,bc->ac", [(4, 5), (5, 3)], (True, False)),
    ("aab,b->ab", [(4, 4, 5), (5,)], (True, True)),     # a diagonal view: not contiguous
])
def test_order_a_follows_numpy(eq, shapes, fortran):
    rng = np.random.default_rng(13)
    ops = [rng.random(s) for s in shapes]
    ops = [np.asfortranarray(o) if f else o for o, f in zip(ops, fortran)]
    _like_numpy(eq, ops, "A")


def test_small_results_keep_their_axes():
    x = np.random.default_rng(12).random((6, 5, 3))  # 15 outputs: not worth a reshape
    call = engine.prepare(("eba->ba", x))
    engine.lookup(call)
    assert call.final is None and call.spec.output == ("b", "a")
    np.testing.assert_allclose(einjit.einsum("eba->ba", x), np.einsum("eba->ba", x))


def test_explain_says_the_result_is_written_in_memory_order():
    text = str(einjit.explain("c,ba->abc", (7,), (10, 30)))
    # b and a lie next to each other in the operand and in the result: written as one
    assert ("written C-ordered as bc (its memory order, adjacent axes merged), then reshaped "
            "to (10, 30, 7), returned transposed to abc") in text
    text = str(einjit.explain("ac,cb->ba", (5, 3), (3, 4)))  # a and b apart: no merge
    assert "written C-ordered as ab (its memory order), then returned transposed to ba" in text
    assert "returned transposed" not in str(einjit.explain("ba,c->bac", (5, 3), (7,)))


@pytest.mark.parametrize(("eq", "shapes"), [
    ("ij,ij->i", [(150, 120), (150, 120)]),
    ("ij->j", [(150, 120)]),
    ("ijk,jk->ik", [(10, 40, 50), (40, 50)]),
    ("ij,jk->ik", [(140, 130), (130, 60)]),     # BLAS steps take the views as they are
    ("ij,j,ij->", [(150, 120), (120,), (150, 120)]),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_sliced_operands_are_read_flat(eq, shapes, dtype):
    # Slices of larger arrays (neither C- nor Fortran-ordered) are read flat, their
    # strides constants in the kernel; arrays of the same shape cut from parents of
    # other widths have other strides, and get kernels of their own.
    rng = np.random.default_rng(11)
    for pad in (3, 7, 3):
        ops = []
        for s in shapes:
            parent = (rng.random(s[:-1] + (s[-1] + pad,)) * 10).astype(dtype)
            ops.append(parent[..., pad:] if len(s) > 1 else parent[pad:])
        ref = np.einsum(eq, *[o.astype(np.float64) for o in ops])
        for _ in range(2):  # built (or found), then replayed
            np.testing.assert_allclose(einjit.einsum(eq, *ops), ref,
                                       rtol=1e-4 if dtype == np.float32 else 1e-12)
    sched = str(einjit.explain(eq, *ops).nests[0].schedule)
    blas = eq == "ij,jk->ik" and dtype != np.int64
    assert ("read flat" in sched) != blas


@pytest.mark.parametrize(("eq", "shapes"), [
    ("ij,ij->i", [(150, 120), (150, 120)]),
    ("ij->j", [(150, 120)]),
    ("ijk,jk->ik", [(10, 40, 50), (40, 50)]),
    ("i,i->", [(5000,), (5000,)]),
    ("ij,j->ij", [(150, 120), (120,)]),
])
@pytest.mark.parametrize("flip", [(0,), (-1,), (0, -1)], ids=["rows", "last", "both"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.complex128])
def test_reversed_operands_are_read_flat(eq, shapes, flip, dtype):
    """Operands reversed along some axes (negative strides): read flat from the lowest
    address they reach, where Numba would see arrays of unknown strides and vectorise
    nothing (ij,ij->i over 2048 x 1024 float32 rows reversed: 1.32 -> 0.08 ms)."""
    rng = np.random.default_rng(13)
    ops = []
    for s in shapes:
        a = (rng.random(s) * 10).astype(dtype)
        axes = tuple(sorted({ax % len(s) for ax in flip}))
        ops.append(np.flip(a, axes) if len(s) > 1 or flip != (-1,) else a[::-1])
    ref = np.einsum(eq, *[o.astype(np.complex128 if dtype == np.complex128 else np.float64)
                          for o in ops])
    for _ in range(2):  # built (or found), then replayed
        got = einjit.einsum(eq, *ops)
        if dtype == np.int64:
            np.testing.assert_array_equal(got, ref.astype(np.int64))
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-4 if dtype == np.float32 else 1e-12)
    sched = str(einjit.explain(eq, *ops).nests[0].schedule)
    assert "read flat (strides -" in sched or ",-" in sched


def test_sliced_operands_with_dynamic_sizes_are_not_read_flat():
    f = einjit.compile("ij,ij->i", dynamic=True)(lambda a, b: None)
    rng = np.random.default_rng(12)
    for n in (70, 90):
        a = rng.random((n, n + 5))[:, 5:]
        np.testing.assert_allclose(f(a, a), (a * a).sum(1), rtol=1e-12)
    assert "read flat" not in str(f.explain(a, a))


def test_setting_the_policy_drops_the_launchers(monkeypatch):
    # a launcher runs the plan made under the policy of its signature's first call: a new
    # policy (as the strategy tests set) must plan again, for einsum and compiled objects
    import einjit.engine
    from einjit.policy import Policy

    a, b = np.arange(12.0).reshape(3, 4), np.arange(20.0).reshape(4, 5)

    @einjit.compile("ij,jk->ik")
    def mm(x, y): ...

    einjit.einsum("ij,jk->ik", a, b), mm(a, b)
    plans = len(einjit.engine._PLANS)
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(block=2, unroll=1, gemm_min_work=1 << 40))
    assert not einjit.engine.FAST and not mm._fast
    np.testing.assert_array_equal(einjit.einsum("ij,jk->ik", a, b), a @ b)
    assert len(einjit.engine._PLANS) > plans  # planned again, under the new policy
    np.testing.assert_array_equal(mm(a, b), a @ b)


def _other_forms(rng):
    a, b, c = rng.random((3, 4)), rng.random((4, 5)), rng.random(5)
    path = np.einsum_path("ij,jk,k->i", a, b, c, optimize="greedy")[0]  # a list
    return {
        "sublists": ((a, [0, 1], b, [1, 2], [0, 2]), {}),
        "sublists, implicit output": ((a, [0, 1], b, [1, 2]), {}),
        "sublists, ellipsis": ((a, [Ellipsis, 1], a.T.copy(), [1, Ellipsis]), {}),
        "python number": (("ij,->ij", a, 2.5), {}),
        "numpy scalar": (("ij,->ji", a, np.float32(2.5)), {}),
        "nested lists": (("ij,j->i", b.tolist(), c.tolist()), {}),
        "ndarray subclass": (("ij,jk->ik", a.view(np.matrix), b), {}),
        "explicit path": (("ij,jk,k->i", a, b, c), {"optimize": path}),
        "bytes subscripts": ((b"ij,jk->ik", a, b), {}),
    }


@pytest.mark.parametrize("form", list(_other_forms(np.random.default_rng(0))))
def test_other_call_forms_replay(form, monkeypatch):
    """The sublist form, bytes subscripts, numbers and numpy scalars, lists and ndarray
    subclasses as operands, and an explicit path given as numpy's list: a repeated call
    replays its signature (the full way, ``prepare``, is not taken again), with numpy's
    results."""
    prepared = []
    full = engine.prepare
    monkeypatch.setattr(engine, "prepare", lambda *a, **k: prepared.append(1) or full(*a, **k))
    for seed in range(3):
        args, kw = _other_forms(np.random.default_rng(seed))[form]
        got, ref = einjit.einsum(*args, **kw), np.einsum(*args, **kw)
        assert type(got) is type(ref) and got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-12)
        assert len(prepared) == 1  # only the first call went the full way


@pytest.mark.parametrize("body", [None, "max"])
def test_decorated_functions_replay_numbers_and_lists(body, monkeypatch):
    """A compiled function called with a list, a number, an ndarray subclass or float16
    arrays replays its signature too (``prepare`` is not taken again), with numpy's
    results."""
    @einjit.compile("ij,j->i", reduce=body or "sum")
    def f(a, x): ...

    prepared = []
    for name in ("prepare_operands", "prepare_fold"):
        full = getattr(engine, name)
        monkeypatch.setattr(engine, name, lambda *a, _full=full, **k:
                            prepared.append(1) or _full(*a, **k))
    for seed in range(3):
        rng = np.random.default_rng(seed)
        a, x = rng.random((4, 3)), rng.random(3)
        for args in ((a.tolist(), x.tolist()), (a.view(np.matrix), x), (a[:, :1], [2.5]),
                     (a.astype(np.float16), x.astype(np.float16))):  # widened again
            got = f(*args)
            terms = np.asarray(args[0], float) * np.asarray(args[1], float)
            np.testing.assert_allclose(got, terms.max(1) if body else terms.sum(1),
                                       rtol=1e-3 if got.dtype == np.float16 else 1e-12)
    assert len(prepared) == 4  # the first call of each form went the full way


@pytest.mark.parametrize("bad", [[0.0, 1], [True, 1], [0, 52], [0, -1], (0, "i")])
def test_sublists_numpy_refuses_after_a_valid_one(bad):
    """A subscript that equals a valid one (0.0 == 0, True == 1) is still refused as numpy
    refuses it, after the valid spelling was kept for the fast path."""
    a = np.ones((2, 2))
    einjit.einsum(a, [0, 1], [0])
    einjit.einsum(a, [0, 1], [0])
    with pytest.raises(Exception) as want:
        np.einsum(a, bad, [0])
    with pytest.raises(type(want.value)):
        einjit.einsum(a, bad, [0])


CONVERTED = [  # operand dtypes and keywords whose operands are converted before the kernels
    (("float16", "float16"), {}),
    (("float16", "float32"), {}),
    ((">f8", ">f8"), {}),            # non-native byte order: numpy's astype first
    ((">f4", "<f8"), {}),
    ((">c16", ">c16"), {}),
    (("float64", "float32"), {"dtype": "float16", "casting": "unsafe"}),
    (("complex128", "float64"), {"dtype": "float64", "casting": "unsafe"}),  # warns
]


@pytest.mark.parametrize("layout", ["C", "F", "negative", "strided"])
@pytest.mark.parametrize(("dtypes", "kw"), CONVERTED, ids=[f"{d[0]},{d[1]},{k.get('dtype')}"
                                                             for d, k in CONVERTED])
@pytest.mark.parametrize("eq", ["ab,b->a", "ab,ab->", "ab,b->ba"])
def test_converted_operands_replay(eq, dtypes, kw, layout, monkeypatch):
    """Operands converted before the kernels read them (float16 widened, non-native byte
    order, a cast to ``dtype=``) are converted again by the signature's runner: repeated
    calls do not go the full way, see each call's values and warn as numpy does."""
    prepared = []
    full = engine.prepare
    monkeypatch.setattr(engine, "prepare", lambda *a, **k: prepared.append(1) or full(*a, **k))
    for seed in range(3):
        rng = np.random.default_rng(seed)
        a = (rng.standard_normal((12, 10)) + (1j if "c" in dtypes[0] else 0)).astype(dtypes[0])
        b = rng.standard_normal(10).astype(dtypes[1])
        if layout == "F":
            a = np.asfortranarray(a)
        elif layout == "negative":
            a = a[::-1, ::-1]
        elif layout == "strided":
            a = np.repeat(np.repeat(a, 2, 0), 2, 1)[::2, 1::2]
        ops = (a, b) if eq != "ab,ab->" else (a, a)
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            got = einjit.einsum(eq, *ops, **kw)
        with warnings.catch_warnings(record=True) as theirs:
            warnings.simplefilter("always")
            ref = np.einsum(eq, *ops, **kw)
        assert [w.category for w in ours] == [w.category for w in theirs]
        assert type(got) is type(ref) and np.asarray(got).dtype == np.asarray(ref).dtype
        real = np.asarray(ref).dtype.kind != "c"  # a complex operand's real part, as cast
        exact = np.einsum(eq, *[np.asarray(o.real if real else o, dtype=np.float64 if real
                                           else np.complex128) for o in ops])
        tol = 1e-2 if "float16" in dtypes or kw.get("dtype") == "float16" else 1e-6
        np.testing.assert_allclose(np.asarray(got), exact, rtol=tol, atol=tol)
        assert len(prepared) <= 1  # only the first call went the full way (if any did)
