"""The equation table again, under scheduler policies that force each strategy on small
shapes: BLAS GEMM for every GEMM-shaped step, blocked accumulators of 2, float sums in
chunks of 2 terms, 2 x 2 tiles for transposed element-wise kernels, output values two
at a time in registers, copies of every input gathered in an innermost loop, and
parallel loops everywhere: output loops in chunks on
einjit's threads, or as Numba's ``prange`` (which compiles slowly, so that policy runs a
smaller slice of the table)."""

import numpy as np
import pytest

import einjit
from einjit import schedule
from einjit.policy import Policy
from test_equations import DTYPE_EQUATIONS, EQUATIONS, LAYOUT_EQUATIONS, LAYOUTS, _params, _rng
from _reference import check_einsum, make_operands, with_layout

# The loop strategies sum in loops even the few terms the default writes out in the body
# (the table's extents are small); "expand" writes out sums of up to 64 terms.
POLICIES = {
    "gemm": Policy(gemm_min_work=0, tile_gemm_max=0, tile_gemm_fit_max=0),
    "block2": Policy(block=2, unroll=1, expand_terms=0),
    "chunk2": Policy(chunk=2, expand_terms=0),
    "parallel": Policy(parallel_min_work=0, expand_terms=0),  # output loops in chunks
    "prange": Policy(parallel_min_work=0, chunked=False, expand_terms=0),
    "tile2": Policy(tile=2, expand_terms=0),
    "unroll2": Policy(unroll=2, expand_terms=0),
    "copy": Policy(copy_min_work=0, copy_reuse=1, gemm_min_work=1 << 40, expand_terms=0),
    "expand": Policy(expand_terms=64),
}


# Each policy compiles new kernels (a prange one in about a second), so to keep CI short
# every policy but gemm runs a slice of the table: prange every twelfth equation (from
# the fourth), parallel every fourth, unroll2, copy and expand every third, the others
# every second one.
_EVERY = {"gemm": 1, "block2": 2, "chunk2": 2, "parallel": 4, "prange": 12, "tile2": 2,
          "unroll2": 3, "copy": 3, "expand": 3}
_FIRST = {"prange": 3}
CASES = [pytest.param(eq, shapes, policy, id=f"{policy}-{p.id}")
         for n, (p, (eq, shapes)) in enumerate(zip(_params(EQUATIONS), EQUATIONS))
         for policy in sorted(POLICIES) if n % _EVERY[policy] == _FIRST.get(policy, 0)]


@pytest.mark.parametrize(("eq", "shapes", "policy"), CASES)
def test_equation_under_policy(eq, shapes, policy, monkeypatch):
    monkeypatch.setattr(einjit.policy, "POLICY", POLICIES[policy])
    if policy == "tile2":  # crossed reduction loops in tiles too, whatever their strides
        monkeypatch.setattr(schedule, "ALIASED_BYTES", 1)
    ops = make_operands(shapes, np.float64, _rng(eq, shapes, policy))
    check_einsum(eq, *ops)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128, np.int32, np.bool_])
@pytest.mark.parametrize(("eq", "shapes"), _params(DTYPE_EQUATIONS))
def test_gemm_and_blocks_in_other_dtypes(eq, shapes, dtype, monkeypatch):
    for name in ("gemm", "block2", "chunk2"):
        monkeypatch.setattr(einjit.policy, "POLICY", POLICIES[name])
        check_einsum(eq, *make_operands(shapes, dtype, _rng(eq, shapes, name)))


@pytest.mark.parametrize("layout", ["strided", "negative", "transposed", "broadcast"])
@pytest.mark.parametrize(("eq", "shapes"), _params(LAYOUT_EQUATIONS))
def test_copies_of_gathered_inputs_on_strided_layouts(eq, shapes, layout, monkeypatch):
    # every input gathered in the innermost loop is read from a copy along it
    monkeypatch.setattr(einjit.policy, "POLICY", POLICIES["copy"])
    ops = make_operands(shapes, np.float64, _rng(eq, shapes, "copy", layout), layouts=layout)
    check_einsum(eq, *ops)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gemm_on_every_layout(layout, monkeypatch):
    monkeypatch.setattr(einjit.policy, "POLICY", POLICIES["gemm"])
    rng = _rng("gemm-layout", layout)
    for eq, shapes in [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
                       ("abcd,dbef->aecf", [(2, 3, 2, 3), (3, 3, 2, 2)]),
                       ("ij,kj->ki", [(4, 5), (3, 5)]),
                       # rows/columns the scheduler may turn into broadcast batch indices
                       ("ijk,jl->ilk", [(3, 4, 5), (4, 2)]),
                       ("abj,cjd->cabd", [(2, 3, 4), (3, 4, 2)]),
                       ("ibj,jk->kbi", [(3, 2, 9), (9, 2)])]:
        ops = [with_layout(o, layout, rng) for o in make_operands(shapes, np.float64, rng)]
        check_einsum(eq, *ops)


@pytest.mark.parametrize("eq,shapes", [("ij,jk->ik", [(4, 5), (5, 3)]),
                                       ("ijk,jl->ilk", [(3, 4, 5), (4, 2)]),
                                       ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)])])
@pytest.mark.parametrize("out_layout", ["C", "F", "strided", "transposed"])
def test_gemm_into_out(eq, shapes, out_layout, monkeypatch):
    """The product goes straight into ``out=`` when it is a stack of matrices BLAS can
    write, through a temporary otherwise; both must give numpy's values."""
    monkeypatch.setattr(einjit.policy, "POLICY", POLICIES["gemm"])
    rng = _rng("gemm-out", eq, out_layout)
    ops = make_operands(shapes, np.float64, rng)
    out = with_layout(np.empty(np.einsum(eq, *ops).shape), out_layout, rng)
    check_einsum(eq, *ops, out=out)


@pytest.mark.parametrize(("eq", "shapes"), [("i,i->", [(70000,), (70000,)]),
                                            ("ij,ij->", [(300, 300), (300, 300)]),
                                            ("abc,abc->", [(40, 40, 50), (40, 40, 50)])])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("layout", ["C", "F", "negative", "strided"])
def test_a_dot_as_blas(eq, shapes, dtype, layout):
    """A full contraction to a scalar made a BLAS step is one ``np.dot`` of two vectors
    (the operands copied into vectors where they must be), into a new result or ``out=``
    of another dtype."""
    rng = _rng("dot", eq, layout)
    ops = [with_layout(o, layout, rng) for o in make_operands(shapes, dtype, rng)]
    explained = __import__("einjit").explain(eq, *ops)
    if layout in ("C", "F"):
        assert explained.nests[0].schedule.gemm is not None
    if explained.nests[0].schedule.gemm is not None:
        source = explained.sources[0]
        assert "np.dot(x, y)" in source and "matmul" not in source, source
    check_einsum(eq, *ops)
    check_einsum(eq, *ops, out=np.empty((), np.complex128))


@pytest.mark.parametrize("policy", ["tile2", "parallel"])
@pytest.mark.parametrize(("eq", "shapes"), [("ij,ji->ij", [(5, 7), (7, 5)]),
                                            ("ijk,kj->ijk", [(2, 5, 3), (3, 5)]),
                                            ("ij,ji->ji", [(3, 4), (4, 3)]),
                                            ("abc,cb->bca", [(3, 4, 5), (5, 4)])])
def test_tiles_with_partial_edges(eq, shapes, policy, monkeypatch):
    """Tiled element-wise kernels, tiles cut at the array edges (sizes not multiples of
    the tile), serial and with the tile rows in ``prange``."""
    pol = Policy(tile=2, parallel_min_work=0 if policy == "parallel" else 1 << 20)
    monkeypatch.setattr(einjit.policy, "POLICY", pol)
    nest = __import__("einjit").explain(eq, *shapes).nests[0]
    assert nest.schedule.tile is not None
    check_einsum(eq, *make_operands(shapes, np.float64, _rng("tile", eq, policy)))


@pytest.mark.parametrize(("eq", "shapes"), [("bij,bjk->bik", [(5, 3, 8), (5, 8, 2)]),
                                            ("bij,bkj->bik", [(4, 3, 9), (4, 2, 9)]),
                                            ("ijk,jl->ilk", [(9, 32, 128), (32, 16)]),
                                            ("...ij,...jk->...ik", [(4, 3, 2, 8), (4, 3, 8, 2)])])
def test_gemm_batch_split_over_threads(eq, shapes, monkeypatch):
    """Batches of small matrix products run in parts on a thread pool, broadcast batch
    axes included; the parts must cover the batch exactly (odd sizes)."""
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(
        gemm_min_work=0, tile_gemm_max=0, tile_gemm_fit_max=0, parallel_min_work=0))
    monkeypatch.setattr(schedule, "thread_count", lambda: 2)
    layout = __import__("einjit").explain(eq, *shapes).nests[0].schedule.gemm
    assert layout is not None and layout.split == 2
    for seed in range(2):
        check_einsum(eq, *make_operands(shapes, np.float64, _rng("split", eq, seed)))


def test_threaded_matrix_vector_batches_are_not_split(monkeypatch):
    """OpenBLAS threads a matrix-vector product from 9216 multiply-adds: a batch of
    those stays one call (splitting it would run BLAS threads inside einjit's)."""
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(
        gemm_min_work=0, gemv_min_work=0, gemv_max_calls=1 << 20, tile_gemm_max=0,
        tile_gemm_fit_max=0, parallel_min_work=0))
    monkeypatch.setattr(schedule, "thread_count", lambda: 2)
    for d, split in ((128, 1), (16, 2)):  # 128 x 128 (threaded by BLAS), 128 x 16
        shapes = [(6, 128, d), (6, 128)]
        layout = einjit.explain("acd,ac->ad", *shapes).nests[0].schedule.gemm
        assert layout is not None and layout.split == split, d
        check_einsum("acd,ac->ad", *make_operands(shapes, np.float64, _rng("gemv", d)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.complex128])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize(("eq", "shapes"), [("ij,jk->ik", [(11, 5), (5, 6)]),
                                            ("bij,bjk->bik", [(3, 7, 4), (3, 4, 5)]),
                                            ("ijk,jl->ilk", [(2, 6, 5), (6, 7)]),
                                            ("ij,jk,k->ik", [(9, 4), (4, 6), (6,)]),
                                            ("abj,jc->acb", [(3, 8, 4), (4, 5)])])
def test_register_tiles(eq, shapes, dtype, parallel, monkeypatch):
    """Blocks of accumulators several output rows at a time (``Schedule.block_rows``),
    forced on small shapes: vectors of 16 bytes, tiles of 12 terms, so blocks of 5 or 6
    values run 2 or 3 rows at a time, in whole vectors and a shorter last block, and
    leave rows over; the row loop is serial or in chunks on threads."""
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(
        gemm_min_work=1 << 40, unroll=1, tile_terms=12, expand_terms=0,
        parallel_min_work=0 if parallel else 1 << 20))
    monkeypatch.setattr(schedule, "VECTOR_BYTES", 16)
    monkeypatch.setattr(schedule, "VECTOR_REGISTERS", 1 << 10)
    monkeypatch.setattr(schedule, "MAX_TILE_ROWS", 12)
    ops = make_operands(shapes, dtype, _rng("rows", eq, parallel))
    nests = __import__("einjit").explain(eq, *ops).nests
    assert any(n.schedule.block_rows is not None for n in nests)
    check_einsum(eq, *ops)


WIDE_TILE_CASES = [("ij,jk->ik", [(11, 5), (5, 67)]),        # rows and a block left over
                   ("bij,bjk->bik", [(3, 7, 4), (3, 4, 66)]),  # panels inside the batch loop
                   ("ijk,jkl->il", [(7, 3, 2), (3, 2, 65)]),   # two reductions in a panel
                   ("ji,jk->ik", [(6, 10), (6, 64)]),          # rows read across
                   ("ij,kj->ik", [(10, 6), (65, 6)])]          # panels copied across


_TILE_DTYPES = [np.float64, np.int64, np.float32, np.complex128, np.int8]
# prange kernels compile in seconds each: every equation and every dtype runs under
# prange once (the k-th equation in the k-th dtype), each pair serial and in chunks.
_WIDE_TILE_RUNS = [pytest.param(eq, shapes, dtype, mode, id=f"{eq}-{dtype.__name__}-{mode}")
                   for k, (eq, shapes) in enumerate(WIDE_TILE_CASES)
                   for dtype in _TILE_DTYPES for mode in ("serial", "chunks", "prange")
                   if mode != "prange" or dtype is _TILE_DTYPES[k % len(_TILE_DTYPES)]]


@pytest.mark.parametrize(("eq", "shapes", "dtype", "mode"), _WIDE_TILE_RUNS)
def test_wide_register_tiles_read_packed_panels(eq, shapes, dtype, mode, monkeypatch):
    """A wide block of accumulators runs as register tiles (3 rows of 4 values here:
    vectors of two accumulators, 8 registers), its shared input copied per block into a
    panel (``Schedule.pack``), forced on small shapes; the row loop serial, in chunks on
    threads, or a ``prange`` inside the loop over blocks."""
    import einjit

    monkeypatch.setattr(einjit.policy, "POLICY", Policy(
        gemm_min_work=1 << 40, unroll=1, tile_terms=8, pack_rows=4, wide_tile_terms=1,
        expand_terms=0,  # (sums of two to four terms: not written out, for the tiles)
        parallel_min_work=1 << 40 if mode == "serial" else 0, chunked=mode != "prange"))
    accumulate = {np.float32: 4, np.complex128: 16, np.int8: 4}.get(dtype, 8)  # (int8: int32)
    for name in ("VECTOR_BYTES", "WIDE_VECTOR_BYTES"):
        monkeypatch.setattr(schedule, name, 2 * accumulate)
    for name in ("VECTOR_REGISTERS", "WIDE_REGISTERS"):
        monkeypatch.setattr(schedule, name, 8)
    monkeypatch.setattr(schedule, "MAX_TILE_ROWS", 3)
    ops = make_operands(shapes, dtype, _rng("panels", eq, mode))
    sched = einjit.explain(eq, *ops).nests[0].schedule
    assert sched.block_rows is not None and sched.block[1] == 4 and sched.pack
    assert (sched.parallel is None) == (mode == "serial")
    check_einsum(eq, *ops)


def _sqdiff(x, y):
    return (x - y) ** 2


@pytest.mark.parametrize("reduce", ["sum", "min"])
@pytest.mark.parametrize("eq", ["id,dj->ij", "id,jd->ij"])
def test_wide_register_tiles_of_a_body(eq, reduce, monkeypatch):
    """A body's register tile: a computed factor (``(x - y) ** 2``) is summed by fused
    multiply-adds in order (``vecmath.muladd``); other reductions fold as written."""
    import einjit
    from _reference import fold_reference

    monkeypatch.setattr(einjit.policy, "POLICY", Policy(tile_terms=8, pack_rows=4,
                                                            wide_tile_terms=1))
    monkeypatch.setattr(schedule, "WIDE_VECTOR_BYTES", schedule.VECTOR_BYTES)
    for name in ("VECTOR_REGISTERS", "WIDE_REGISTERS"):
        monkeypatch.setattr(schedule, name, 8)
    rng = _rng("body tiles", eq, reduce)
    x = rng.uniform(-2, 2, (13, 7))
    y = rng.uniform(-2, 2, (7, 130) if eq == "id,dj->ij" else (130, 7))
    f = einjit.CompiledEinsum(eq, _sqdiff, reduce=reduce)
    nest = f.explain(x, y).nests[0]
    assert nest.schedule.pack == (1,) and nest.schedule.contract == (reduce == "sum")
    assert ("vm.muladd(" in f.explain(x, y).sources[0]) == (reduce == "sum")
    np.testing.assert_allclose(f(x, y), fold_reference(eq, [x, y], _sqdiff, reduce),
                               rtol=1e-12)


@pytest.mark.parametrize("mode", ["serial", "chunks", "prange"])
@pytest.mark.parametrize(("eq", "shapes", "rows"), [("bcd->bd", [(37, 40, 8)], 16),
                                                    ("bcd,c->bd", [(37, 40, 8), (40,)], 8),
                                                    ("bcd->bd", [(33, 40, 16)], 8)])
def test_short_output_axis_summed_for_rows_at_once(eq, shapes, rows, mode, monkeypatch):
    """A short contiguous output axis (whole float32 vectors) inside a long sum runs as
    a block over all its values for several values of another output index at once
    (``_vector_rows``), rows left over one at a time."""
    import einjit

    monkeypatch.setattr(einjit.policy, "POLICY", Policy(
        parallel_min_work=1 << 40 if mode == "serial" else 0, chunked=mode != "prange"))
    ops = make_operands(shapes, np.float32, _rng("vector rows", eq, mode))
    sched = einjit.explain(eq, *ops).nests[0].schedule
    assert sched.block == ("d", shapes[0][2]) and sched.block_rows[1] == rows
    check_einsum(eq, *ops)
    # float64 sums of 8 values would need 16 rows of 2 vectors: more than the registers
    assert einjit.explain("bcd->bd", (37, 40, 8)).nests[0].schedule.block_rows is None


@pytest.mark.parametrize(("shapes", "dtype"), [([(1024, 16, 16)] * 2, np.float32),
                                               ([(7, 32, 16), (7, 16, 16)], np.float64),
                                               ([(5, 40, 24), (5, 24, 32)], np.float32)])
def test_small_matrix_products_run_as_register_tiles(shapes, dtype):
    """Batches of small matrices (at most ``tile_gemm_max`` multiply-adds each) run as
    loops in register tiles rather than a BLAS call per matrix, when a tile applies."""
    import einjit

    ops = make_operands(shapes, dtype, _rng("small gemm", shapes))
    sched = einjit.explain("bij,bjk->bik", *ops).nests[0].schedule
    assert sched.gemm is None and sched.block_rows is not None
    check_einsum("bij,bjk->bik", *ops)


def _fma() -> bool:
    import llvmlite.binding as llvm

    return "+fma" in llvm.get_host_cpu_features().flatten()


@pytest.mark.parametrize(("eq", "shapes", "dtypes"), [
    ("bij,bjk->bik", [(64, 16, 16), (64, 16, 16)], (np.float64, np.float64)),
    ("bij,bjk->bik", [(64, 16, 16), (64, 16, 16)], (np.float32, np.float64)),
    ("bnd,bne->bde", [(4, 70, 64), (4, 70, 64)], (np.float64, np.float64)),  # a panel
])
def test_register_tiles_of_plain_products_fuse_by_the_contract_flag(eq, shapes, dtypes,
                                                                    monkeypatch):
    """A register tile's multiply-adds of values read are ``acc += p * q`` in a function
    compiled with ``fastmath={'contract'}`` (the intrinsic got short tiles unrolled
    into scalar code): each term is rounded once where the CPU has FMA."""
    import einjit

    # products of up to 2^20 multiply-adds as tiles (the panel's case), not BLAS
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(tile_gemm_max=1 << 20))
    rng = _rng("contract flag", eq, shapes, dtypes)
    x, y = (rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes))
    explained = einjit.explain(eq, x, y)
    nest, source = explained.nests[0], explained.sources[0]
    assert nest.schedule.block_rows is not None and nest.schedule.contract
    assert "fastmath={'contract'}" in source and "vm.muladd(" not in source
    assert bool(nest.schedule.pack) == (eq == "bnd,bne->bde")
    check_einsum(eq, x, y)
    if x.dtype == np.float64:  # out[0, 0, 0] = -1 * 1 + t * t, t = 1 + 2^-30: t * t
        t = 1 + 2.0 ** -30  # keeps its 2^-60 term only fused
        first = (0, slice(None), 0) if eq == "bnd,bne->bde" else (0, 0, slice(None))
        x[first], y[0, :, 0] = 0, 0
        xs, ys = x[first], y[0, :, 0]
        xs[0], ys[0], xs[1], ys[1] = -1, 1, t, t
        got = einjit.einsum(eq, x, y)[0, 0, 0]
        fused = 2.0 ** -29 + 2.0 ** -60
        assert got == fused if _fma() else got in (fused, 2.0 ** -29)
