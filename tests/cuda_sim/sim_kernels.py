"""The CUDA target's kernels, run on Numba's CUDA simulator (or a real GPU).

Not collected by the plain ``python -m pytest`` run (the file name does not start with
``test_``): ``tests/test_cuda.py`` runs it in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``
(numba.cuda picks the simulator or the driver once per process), and, on a machine with
a GPU, once more with ``EINJIT_CUDA_REAL=1`` on the device itself.

A tiny scheduler policy drives every mapping (tiled GEMM, cooperative and split
reductions, thread per output) at extents 1..6; every result is compared with
``numpy.einsum`` in float64.  Bodies and reductions (``einjit.compile(..., reduce=...)``)
are compared with numpy's broadcast-then-reduce in float64, as ``tests/test_body.py``
does on the CPU; the body functions live at module level so their source can be read.
"""

import dataclasses
import math
import os
import sys

import numpy as np
import pytest

REAL = os.environ.get("EINJIT_CUDA_REAL") == "1"
if not REAL and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("run by tests/test_cuda.py with NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

from numba import cuda

import einjit
from einjit import cuda as cuda_target
from einjit import schedule_cuda
from einjit.body import body_dtypes
from einjit.schedule_cuda import (BlockPerOutput, LibraryGemm, Policy, ThreadPerOutput,
                                  TiledGemm)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _bodies import (REDUCTIONS, absdiff, clipped, gauss, greater,  # noqa: E402  (tests/)
                     larger, norm, plus, sqdiff)
from _reference import fold_reference as reference  # noqa: E402  (tests/, one level up)

TINY = Policy(threads=4, warp=1, reduce_threads=4, cooperate_min=2, fill_blocks=4, split_min=4,
              split_terms=1, max_blocks=8, tile=(4, 4, 2), reg=(2, 2), gemm_min=(2, 2, 2),
              library=False, team_terms=2, fuse_work=0)


@pytest.fixture(autouse=True)
def tiny_policy():
    old = schedule_cuda.set_policy(TINY)
    yield
    schedule_cuda.set_policy(old)


def _data(shape, dtype, rng):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.6
    if dtype.kind in "iu":
        return rng.integers(0 if dtype.kind == "u" else -4, 5, shape).astype(dtype)
    x = rng.standard_normal(shape)
    if dtype.kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


def _check(got, ops, equation, **kw):
    want = np.einsum(equation, *ops, **kw)
    got = np.asarray(got)
    assert got.shape == want.shape, (equation, got.shape, want.shape)
    assert got.dtype == want.dtype, (equation, got.dtype, want.dtype)
    kind = want.dtype.kind
    if kind in "biu":
        np.testing.assert_array_equal(got, want)
    else:
        ref = np.einsum(equation, *[o.astype(np.complex128 if np.iscomplexobj(o) else np.float64)
                                    for o in ops], **kw)
        tol = 1e-4 if want.dtype in (np.float32, np.complex64) else 1e-10
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


# One list of cases, grouped by the kernel shape they exercise.
CASES = [
    # element-wise, outer, transposes
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("i,j->ij", [(3,), (5,)]),
    ("ij,jk->ijk", [(2, 3), (3, 4)]),
    ("ij->ji", [(3, 4)]),                         # a view (one operand, nothing summed)
    ("ijk,kji->ijk", [(2, 3, 4), (4, 3, 2)]),
    # full reductions (split over blocks)
    ("i,i->", [(37,)] * 2),
    ("ij,ij->", [(5, 6), (5, 6)]),
    ("i->", [(6,)]),
    ("i,i,i->", [(9,)] * 3),
    # row and column reductions
    ("ij,ij->i", [(5, 7), (5, 7)]),
    ("ij->j", [(6, 5)]),
    ("ij->i", [(4, 6)]),
    ("ij,ij,ij->i", [(4, 6)] * 3),
    ("ijk->j", [(3, 4, 5)]),
    # GEMM-shaped, with batch and transposes
    ("ij,jk->ik", [(5, 3), (3, 6)]),
    ("ij,kj->ik", [(5, 3), (6, 3)]),
    ("ji,jk->ik", [(3, 5), (3, 6)]),
    ("bij,bjk->bik", [(2, 5, 3), (2, 3, 4)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 5, 3), (1, 2, 4, 3)]),
    ("abcd,dbef->aecf", [(2, 3, 2, 4), (4, 3, 2, 3)]),
    ("ijk,jl->ilk", [(3, 4, 2), (4, 5)]),
    # n-ary plans with device intermediates
    ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)]),
    ("ijk,jr,kr->ir", [(3, 4, 5), (4, 2), (5, 2)]),
    ("bn,anm,bm->ba", [(3, 4), (2, 4, 5), (3, 5)]),
    ("ij,jk,ki->", [(3, 4), (4, 5), (5, 3)]),
    # diagonals and broadcasting (canonical views)
    ("ii->", [(4, 4)]),
    ("ii->i", [(4, 4)]),
    ("iij,j->i", [(3, 3, 4), (4,)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (3, 4, 2)]),
    ("ij,j->ij", [(3, 1), (4,)]),
    # 0-d operands and results, zero-size dimensions
    (",i->i", [(), (4,)]),
    (",->", [(), ()]),
    ("ij,jk->ik", [(0, 3), (3, 4)]),
    ("ij,jk->ik", [(3, 0), (0, 4)]),
    ("i,i->", [(0,), (0,)]),
]


@pytest.mark.parametrize("equation,shapes", CASES, ids=[f"{e}:{s}" for e, s in CASES])
def test_numpy_operands_float64(equation, shapes):
    rng = np.random.default_rng(0)
    ops = [_data(s, np.float64, rng) for s in shapes]
    _check(einjit.einsum(equation, *ops, target="cuda"), ops, equation)


DTYPE_CASES = [
    ("ij,jk->ik", [(4, 3), (3, 5)]),   # tiled GEMM when the dtypes agree
    ("ij,ij->i", [(4, 6), (4, 6)]),    # block per output
    ("i,i->", [(7,), (7,)]),           # split reduction
    ("i,j->ij", [(3,), (4,)]),         # element-wise
]
DTYPES = ["float32", "complex64", "complex128", "int8", "int32", "int64", "uint8", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("equation,shapes", DTYPE_CASES, ids=[e for e, _ in DTYPE_CASES])
def test_dtypes_follow_numpy(equation, shapes, dtype):
    rng = np.random.default_rng(1)
    ops = [_data(s, dtype, rng) for s in shapes]
    _check(einjit.einsum(equation, *ops, target="cuda"), ops, equation)


def test_mixed_dtypes_promote_as_numpy():
    rng = np.random.default_rng(2)
    ops = [_data((3, 4), "int16", rng), _data((4, 5), "float32", rng)]
    _check(einjit.einsum("ij,jk->ik", *ops, target="cuda"), ops, "ij,jk->ik")
    ops = [_data((3, 4), "bool", rng), _data((4,), "int8", rng)]
    _check(einjit.einsum("ij,j->i", *ops, target="cuda"), ops, "ij,j->i")


def test_float16_computes_in_float32_and_rounds_once():
    rng = np.random.default_rng(3)
    ops = [_data((4, 5), "float16", rng), _data((5, 3), "float16", rng)]
    got = einjit.einsum("ij,jk->ik", *ops, target="cuda")
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, np.einsum("ij,jk->ik", *ops), rtol=2e-3, atol=2e-3)


def test_order_out_dtype_and_casting_keywords():
    rng = np.random.default_rng(4)
    a, b = _data((3, 4), "float64", rng), _data((4, 5), "float64", rng)
    got = einjit.einsum("ij,jk->ki", a, b, order="F", target="cuda")
    assert got.flags.f_contiguous
    _check(got, [a, b], "ij,jk->ki", order="F")
    out = np.empty((3, 5), np.float32)
    assert einjit.einsum("ij,jk->ik", a, b, out=out, casting="same_kind", target="cuda") is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-5)
    got = einjit.einsum("ij,jk->ik", a, b, dtype=np.complex128, target="cuda")
    assert got.dtype == np.complex128
    with pytest.raises(TypeError, match="cast"):
        einjit.einsum("ij,jk->ik", a, b, dtype=np.float32, target="cuda")


def test_strided_and_reversed_operands():
    rng = np.random.default_rng(5)
    a = _data((6, 8), "float64", rng)[::2, ::-3]
    b = _data((3, 5), "float64", rng)[:, ::-1]
    _check(einjit.einsum("ij,jk->ik", a, b, target="cuda"), [a, b], "ij,jk->ik")


def test_every_mapping_is_exercised():
    rng = np.random.default_rng(6)
    cuda_target.clear_cache()
    for equation, shapes in [("ij,jk->ik", [(4, 3), (3, 5)]), ("ij,ij->i", [(4, 6)] * 2),
                             ("i,i->", [(9,)] * 2), ("i,j->ij", [(3,), (4,)])]:
        einjit.einsum(equation, *[_data(s, "float64", rng) for s in shapes], target="cuda")
    mappings = [type(s.mapping) for p in cuda_target._PLANS.values() for s in p.schedules]
    assert {TiledGemm, BlockPerOutput, ThreadPerOutput} <= set(mappings)
    assert any(s.scratch for p in cuda_target._PLANS.values() for s in p.schedules)


# Interleaved teams (adjacent threads on adjacent outputs) at tiny extents: outputs
# and terms left over in the last block and team.
INTERLEAVED = Policy(threads=8, warp=2, reduce_threads=8, cooperate_min=2, fill_blocks=2,
                     split_min=1 << 30, fill_threads=64, max_blocks=3, team_terms=1,
                     library=False, gemm_min=(1 << 20,) * 3)


# ... and split over several blocks per group of outputs (a second kernel adds them).
INTERLEAVED_SPLIT = dataclasses.replace(INTERLEAVED, fill_blocks=16, split_min=4, split_terms=1)


@pytest.mark.parametrize("split", [False, True], ids=["one block", "split"])
@pytest.mark.parametrize("equation,shapes", [
    ("ij->j", [(17, 5)]), ("ij,ij->j", [(9, 6)] * 2), ("ijk->ik", [(3, 11, 7)]),
    ("ijk,jr,kr->ir", [(3, 5, 4), (5, 3), (4, 3)]), ("ij,jk->ik", [(3, 9), (9, 5)])])
def test_interleaved_teams(equation, shapes, split):
    rng = np.random.default_rng(16)
    old = schedule_cuda.set_policy(INTERLEAVED_SPLIT if split else INTERLEAVED)
    try:
        cuda_target.clear_cache()
        for dtype in ("float64", "int32"):
            ops = [_data(s, dtype, rng) for s in shapes]
            _check(einjit.einsum(equation, *ops, target="cuda"), ops, equation)
        maps = [s.mapping for p in cuda_target._PLANS.values() for s in p.schedules]
        assert any(isinstance(m, BlockPerOutput) and m.interleave and m.rows > 1
                   and (m.split > 1) == split for m in maps), maps
    finally:
        schedule_cuda.set_policy(old)
        cuda_target.clear_cache()


GEMM_CASES = [  # the library's matrix product: batch broadcasting, transposes, permutations
    ("ij,jk->ik", [(4, 3), (3, 5)]),
    ("ij,kj->ki", [(4, 3), (5, 3)]),             # written through a copy (n, m order)
    ("bij,bjk->bik", [(2, 5, 3), (2, 3, 4)]),
    ("bij,jk->bik", [(2, 5, 3), (3, 4)]),        # the second operand broadcasts over b
    ("abcd,dbef->aecf", [(2, 3, 2, 4), (4, 3, 2, 3)]),
    ("ijk,jl->ilk", [(3, 4, 2), (4, 5)]),
    ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)]),  # intermediates of the call's kind
    ("ijk,jr->ikr", [(3, 5, 4), (5, 6)]),        # i batches (m = ik would be copied)
    ("jr,ijk->rik", [(5, 6), (3, 5, 4)]),        # the same on the n side
    ("ba,bd->da", [(4, 3), (4, 5)]),             # out's rows closer than its columns: out^T
    ("bij,bjk->bki", [(2, 3, 4), (2, 4, 5)]),    # the same in a batch
]


@pytest.mark.parametrize("equation,shapes", GEMM_CASES, ids=[e for e, _ in GEMM_CASES])
def test_library_matrix_products(equation, shapes):
    schedule_cuda.set_policy(dataclasses.replace(TINY, library=True))
    cuda_target.clear_cache()
    rng = np.random.default_rng(13)
    for dtype in ("float64", "complex64"):
        ops = [_data(s, dtype, rng) for s in shapes]
        _check(einjit.einsum(equation, *[cuda.to_device(o) for o in ops]).copy_to_host(), ops,
               equation)
        _check(einjit.einsum(equation, *ops, target="cuda"), ops, equation)
    mappings = {type(s.mapping) for p in cuda_target._PLANS.values() for s in p.schedules}
    # the simulator's arrays multiply with numpy; a GPU's Numba arrays have no library
    assert (LibraryGemm in mappings) is not REAL
    # integers, reversed operands and other reductions stay einjit's own kernels
    ops = [_data(s, "int32", rng) for s in shapes]
    _check(einjit.einsum(equation, *ops, target="cuda"), ops, equation)
    ops = [_data(s, "float64", rng)[(slice(None, None, -1),) * len(s)] for s in shapes]
    _check(einjit.einsum(equation, *ops, target="cuda"), ops, equation)


def test_repeated_calls_launch_directly():
    # After a call's first launch through Numba, a GPU launches the same kernels through
    # einjit.cuda_launch (pointers, not Numba arrays); the simulator keeps Numba's launch.
    rng = np.random.default_rng(18)
    cuda_target.clear_cache()
    cases = [("ij,ij->i", [(5, 7)] * 2), ("i,i->", [(37,)] * 2), ("i,j->ij", [(3,), (5,)]),
             ("ij,jk->ik", [(5, 3), (3, 6)]), ("ij->j", [(9, 4)])]
    kinds = [cuda.to_device]
    if REAL:
        torch = pytest.importorskip("torch")
        kinds.append(lambda a: torch.asarray(a, device="cuda"))
    for to_device in kinds:
        for equation, shapes in cases:
            for _ in range(3):  # fresh data each time: every launch must have run
                ops = [_data(s, "float64", rng) for s in shapes]
                got = einjit.einsum(equation, *[to_device(o) for o in ops])
                host = got.cpu().numpy() if hasattr(got, "cpu") else got.copy_to_host()
                _check(host, ops, equation)
    runs = [r for p in cuda_target._PLANS.values() for r in p.runs if not r.library]
    assert runs and all(r.direct == ([()] if not REAL else r.direct) for r in runs)
    assert not REAL or all(r.direct[0] for r in runs)


def test_library_products_write_their_intermediates_in_place():
    # bn,nam,bm->ba: the first product (b x am) is laid out b, a, m, not the plan's a, b, m
    # (m is too short for a to batch matrices of a tile's columns)
    schedule_cuda.set_policy(dataclasses.replace(TINY, library=True))
    cuda_target.clear_cache()
    rng = np.random.default_rng(17)
    for equation, shapes in [("bn,nam,bm->ba", [(3, 4), (4, 2, 3), (3, 3)]),
                             ("ijk,jr,kr->ir", [(3, 4, 5), (4, 2), (5, 2)])]:
        ops = [_data(s, "float64", rng) for s in shapes]
        got = einjit.einsum(equation, *[cuda.to_device(o) for o in ops], optimize="greedy")
        _check(got.copy_to_host(), ops, equation)
    first = [p.schedules[0].mapping for p in cuda_target._PLANS.values()]
    assert all(isinstance(m, LibraryGemm) for m in first) == (not REAL)
    assert REAL or first[0].direct


def test_small_calls_run_as_one_kernel():
    # Under the default policy a small n-ary call is one fused kernel, not a path of steps
    schedule_cuda.set_policy(Policy())
    cuda_target.clear_cache()
    rng = np.random.default_rng(19)
    for equation, shapes in [("ij,jk,kl->il", [(6, 5), (5, 7), (7, 4)]),
                             ("bn,anm,bm->ba", [(3, 4), (2, 4, 5), (3, 5)])]:
        ops = [_data(s, "float64", rng) for s in shapes]
        _check(einjit.einsum(equation, *[cuda.to_device(o) for o in ops]).copy_to_host(), ops,
               equation)
        _check(einjit.einsum(equation, *ops, target="cuda", optimize="greedy"), ops, equation)
    steps = sorted(len(p.schedules) for p in cuda_target._PLANS.values())
    assert steps == [1, 1, 2, 2], steps  # optimize="greedy" keeps its path


def test_short_rows_run_in_small_teams():
    # Under the default policy rows of 32 to 127 adjacent terms are summed by teams of 8
    schedule_cuda.set_policy(Policy())
    cuda_target.clear_cache()
    rng = np.random.default_rng(23)
    for equation, shapes in [("ij,ij->i", [(37, 100)] * 2), ("bcd->bc", [(3, 5, 40)]),
                             ("ij->i", [(5, 127)])]:
        ops = [_data(s, "float64", rng) for s in shapes]
        _check(einjit.einsum(equation, *ops, target="cuda"), ops, equation)
    teams = [p.schedules[0].mapping for p in cuda_target._PLANS.values()]
    assert [(type(m).__name__, m.threads) for m in teams] == [("BlockPerOutput", 8)] * 3


def test_default_policy_runs_too():
    schedule_cuda.set_policy(Policy())
    rng = np.random.default_rng(7)
    ops = [_data((3, 4), "float32", rng), _data((4, 2), "float32", rng)]
    _check(einjit.einsum("ij,jk->ik", *ops, target="cuda"), ops, "ij,jk->ik")


# ---------------------------------------------------------------- device operands

def test_device_operands_give_device_results():
    rng = np.random.default_rng(8)
    a, b, c = (_data(s, "float64", rng) for s in [(3, 4), (4, 5), (5, 2)])
    da, db, dc = (cuda.to_device(x) for x in (a, b, c))
    got = einjit.einsum("ij,jk,kl->il", da, db, dc)   # target inferred from the operands
    assert cuda_target.on_device(got)
    _check(got.copy_to_host(), [a, b, c], "ij,jk,kl->il")
    got = einjit.einsum("ij->", da)
    assert cuda_target.on_device(got) and got.shape == ()
    np.testing.assert_allclose(got.copy_to_host(), a.sum())


def test_device_diagonal_broadcast_view_and_out():
    rng = np.random.default_rng(9)
    a = _data((4, 4), "float64", rng)
    da = cuda.to_device(a)
    np.testing.assert_allclose(einjit.einsum("ii->", da).copy_to_host(), np.trace(a))
    view = einjit.einsum("ij->ji", da)
    np.testing.assert_array_equal(view.copy_to_host(), a.T)
    np.testing.assert_array_equal(einjit.einsum("ii->i", da).copy_to_host(), np.diag(a))
    b = _data((1, 4), "float64", rng)
    got = einjit.einsum("ij,ij->ij", da, cuda.to_device(b)).copy_to_host()
    np.testing.assert_allclose(got, a * b)
    out = cuda.device_array((4,), np.float64)
    assert einjit.einsum("ij->i", da, out=out) is out
    np.testing.assert_allclose(out.copy_to_host(), a.sum(1))
    with pytest.raises(TypeError, match="out="):
        einjit.einsum("ij->i", da, out=cuda.device_array((4,), np.float32))
    assert np.allclose(einjit.einsum(",ij->ij", 2.0, da).copy_to_host(), 2 * a)


def test_repeated_calls_take_the_fast_path():
    rng = np.random.default_rng(12)
    a, b = _data((5, 4), "float64", rng), _data((4, 3), "float64", rng)
    da, db = cuda.to_device(a), cuda.to_device(b)
    fa = cuda.to_device(np.asfortranarray(a))
    for _ in range(2):  # the second round is served by the signature table
        _check(einjit.einsum("ij,jk->ik", da, db).copy_to_host(), [a, b], "ij,jk->ik")
        _check(einjit.einsum("ij,jk->ik", fa, db).copy_to_host(), [a, b], "ij,jk->ik")
        np.testing.assert_array_equal(einjit.einsum("ij->ji", da).copy_to_host(), a.T)
        _check(einjit.einsum("ij,jk->ik", da, db, optimize="greedy").copy_to_host(), [a, b],
               "ij,jk->ik")
    hits = einjit.cache_info()["hits"]
    einjit.einsum("ij,jk->ik", da, db)
    assert einjit.cache_info()["hits"] == hits + 1
    # another shape is another signature; a new policy is never served a stale plan
    c = _data((4, 6), "float64", rng)
    _check(einjit.einsum("ij,jk->ik", da, cuda.to_device(c)).copy_to_host(), [a, c],
           "ij,jk->ik")
    schedule_cuda.set_policy(Policy())
    _check(einjit.einsum("ij,jk->ik", da, db).copy_to_host(), [a, b], "ij,jk->ik")
    key = ("ij,jk->ik", None, None, cuda_target._signature((da, db)))
    assert cuda_target._FAST[key].policy is schedule_cuda.POLICY


def test_mixing_host_and_device_is_an_error():
    a = np.ones((2, 2))
    with pytest.raises(TypeError, match="operand 1 .* is on the host"):
        einjit.einsum("ij,jk->ik", cuda.to_device(a), a)
    with pytest.raises(TypeError, match="target='cpu'"):
        einjit.einsum("ij->", cuda.to_device(a), target="cpu")


def test_compile_decorator_target():
    @einjit.compile("ij,jk->ik", target="cuda")
    def mm(a, b): ...

    rng = np.random.default_rng(10)
    a, b = _data((3, 4), "float64", rng), _data((4, 2), "float64", rng)
    _check(mm(a, b), [a, b], "ij,jk->ik")
    got = einjit.compile("ij,jk->ik")(lambda a, b: None)(cuda.to_device(a), cuda.to_device(b))
    _check(got.copy_to_host(), [a, b], "ij,jk->ik")


def test_warmup_compiles_cuda_kernels():
    from einjit.warmup import warm

    cuda_target.clear_cache()
    assert warm("ij,jk->ik", [(3, 4), (4, 5)], "float32", target="cuda") == "compiled"
    assert warm("ij,jk->ik", [(3, 4), (4, 5)], "float32", target="cuda") == "already cached"


def test_kernel_modules_go_to_the_disk_cache():
    from pathlib import Path

    cuda_target.clear_cache()
    rng = np.random.default_rng(11)
    einjit.einsum("ij,ij->i", *[_data((3, 5), "float64", rng)] * 2, target="cuda")
    (compiled,) = [p for p in cuda_target._PLANS.values()]
    path = Path(compiled.functions[0][0].py_func.__code__.co_filename)
    assert path.parent.name == "kernels" and path.read_text() == compiled.sources[0]


# ---------------------------------------------------------------- real GPU only

gpu = pytest.mark.skipif(not REAL, reason="needs a CUDA GPU")


@gpu
def test_torch_tensors_give_torch_results():
    torch = pytest.importorskip("torch")
    a = torch.randn(64, 32, device="cuda", dtype=torch.float64)
    b = torch.randn(32, 48, device="cuda", dtype=torch.float64)
    got = einjit.einsum("ij,jk->ik", a, b)
    assert isinstance(got, torch.Tensor) and got.is_cuda
    torch.testing.assert_close(got, a @ b)
    torch.testing.assert_close(einjit.einsum("ij->ji", a), a.T)


@gpu
def test_cupy_arrays_give_cupy_results():
    cupy = pytest.importorskip("cupy")
    a = cupy.random.standard_normal((64, 32))
    b = cupy.random.standard_normal((64, 32))
    got = einjit.einsum("ij,ij->i", a, b)
    assert isinstance(got, cupy.ndarray)
    cupy.testing.assert_allclose(got, (a * b).sum(1))


@gpu
@pytest.mark.parametrize("library", ["torch", "cupy"])
@pytest.mark.parametrize("equation,shapes", GEMM_CASES + CASES[:12],
                         ids=[e for e, _ in GEMM_CASES + CASES[:12]])
def test_library_arrays_every_plan(library, equation, shapes):
    """Each library's arrays through the default policy (its matrix product included),
    at sizes where GEMM steps go to cuBLAS, and strided views of them."""
    xp = pytest.importorskip(library)
    schedule_cuda.set_policy(Policy(fuse_work=0))  # n-ary plans as paths, at these sizes
    rng = np.random.default_rng(14)
    scale = {c: 1 + 7 * (k % 3) for k, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
    terms = equation.split("->")[0].split(",")
    shapes = [tuple(n * scale[c] if n > 1 else n for n, c in zip(s, t))
              for s, t in zip(shapes, terms)]
    for dtype in ("float64", "float32"):
        ops = [_data(s, dtype, rng) for s in shapes]
        dev = [xp.asarray(o, device="cuda") if library == "torch" else xp.asarray(o)
               for o in ops]
        got = einjit.einsum(equation, *dev)
        assert type(got).__module__.split(".")[0] == library
        host = got.cpu().numpy() if library == "torch" else got.get()
        _check(host, ops, equation)
        if all(o.ndim for o in ops):  # every other element of the last axis: strided
            view = [d[..., ::2] for d in dev]
            sub = [o[..., ::2] for o in ops]
            if _valid(equation, sub):
                got = einjit.einsum(equation, *view)
                host = got.cpu().numpy() if library == "torch" else got.get()
                _check(host, sub, equation)


@gpu
@pytest.mark.parametrize("library", ["torch", "cupy"])
def test_repeated_calls_launch_at_the_operands_addresses(library):
    """From the second call on, a one-step plan launches directly at addresses taken
    from the operands (no flat views): views with an offset and a stride of 2 (PyTorch)
    or -2 (CuPy), and a split reduction's two kernels."""
    xp = pytest.importorskip(library)
    schedule_cuda.set_policy(Policy())
    rng = np.random.default_rng(16)
    cases = [("ij,ij->i", [(40, 30), (40, 30)]), ("i,j->ij", [(33,), (17,)]),
             ("ij->", [(300, 200)]), ("ij,jk->ik", [(9, 7), (7, 5)]),
             ("ijk,ik->kj", [(6, 40, 20), (6, 20)])]
    for equation, shapes in cases:
        ops = [_data(tuple(2 * n + 2 for n in s), "float32", rng) for s in shapes]
        dev = [xp.asarray(o, device="cuda") if library == "torch" else xp.asarray(o)
               for o in ops]
        cuts = [tuple(slice(1, 1 + 2 * n, 2) if library == "torch" else slice(2 * n, 0, -2)
                      for n in s) for s in shapes]
        dev = [d[c] for d, c in zip(dev, cuts)]
        ops = [o[c] for o, c in zip(ops, cuts)]
        for _ in range(3):
            got = einjit.einsum(equation, *dev)
            host = got.cpu().numpy() if library == "torch" else got.get()
            _check(host, ops, equation)
        bound = [b for k, b in cuda_target._FAST.items() if k[0] == equation
                 and b.compiled is not None and len(b.compiled.runs) == 1]
        assert any(b.compiled.runs[0].direct and b.compiled.runs[0].direct[0]
                   for b in bound), equation


def _valid(equation, ops):
    try:
        np.einsum(equation, *ops)
    except ValueError:
        return False
    return True


@gpu
def test_mixed_libraries_and_streams():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(15)
    a, b = _data((64, 48), "float32", rng), _data((48, 40), "float32", rng)
    ta = torch.asarray(a, device="cuda")
    got = einjit.einsum("ij,jk->ik", ta, cuda.to_device(b))   # torch with a Numba array
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.cpu().numpy(), a @ b, rtol=1e-5, atol=1e-5)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):   # launched on the side stream, ordered after its work
        tb = torch.asarray(b, device="cuda") * 2
        got = einjit.einsum("ij,jk->ik", ta, tb) + 1
    side.synchronize()
    np.testing.assert_allclose(got.cpu().numpy(), 2 * a @ b + 1, rtol=1e-5, atol=1e-4)


@gpu
def test_torch_lazy_conjugates_are_read_as_values():
    torch = pytest.importorskip("torch")
    a = torch.randn(64, 32, dtype=torch.complex128, device="cuda")
    b = torch.randn(64, 32, dtype=torch.complex128, device="cuda")
    for _ in range(2):  # a repeated call too
        got = einjit.einsum("ij,ij->i", a.conj(), b)
        torch.testing.assert_close(got, (a.conj() * b).sum(1))
        torch.testing.assert_close(einjit.einsum("ij->i", -a.conj().T.T), -(a.conj()).sum(1))


# ---------------------------------------------------------------- bodies and reductions

def trig(x, y):
    return (math.atan2(x, y) + np.arctan(x) + math.hypot(x, y) + np.cbrt(x) + np.exp2(y)
            + math.floor(x) + np.ceil(y) + math.copysign(1.5, x) + math.cosh(y)
            + math.sinh(x) + math.cos(x) * math.sin(y) + math.tan(x / 4))


def logs(x, y):
    return (math.log(abs(x) + 1) + np.log2(abs(y) + 1) + math.log10(abs(x) + 2)
            + np.expm1(y) + math.sqrt(abs(y)) + np.arcsin(x / 4) + np.arccos(y / 4)
            + math.exp(-abs(x)))


def arith(x, y):
    return x // 0.7 + x % 0.3 - x / (abs(y) + 1) + (-x) ** 2 - 2


def logic(x, y):
    return (x > 0 and y < 0.5) or not x < -1


def bits(x, y):
    return ((x > 0) ^ (y > 0)) | (x < -1) & (y >= 0)


BODIES = [sqdiff, absdiff, gauss, norm, greater, larger, plus, clipped, trig, logs, arith,
          logic, bits, None]

# The fold mappings under TINY.  Every body runs with a thread per output; the mappings
# with barriers (slow on the simulator), which print the body the same way, run a few.
FEW = [plus, clipped, None]
FOLD_CASES = [
    ("ij,ij->j", [(3, 5), (3, 5)], BODIES),     # a thread per output, a serial loop
    ("id,jd->ij", [(3, 4), (2, 4)], FEW),       # a block per output, a tree
    ("i,i->", [(9,), (9,)], FEW),               # split over blocks, then a second pass
]
ELEMENTWISE = ("ij,j->ij", [(2, 3), (3,)])     # nothing reduced: each body's value stored


def _check_fold(eq, ops, fn, reduce, rtol=1e-9, **kw):
    """Run ``eq`` with body ``fn`` and ``reduce`` on the device; compare with numpy."""
    f = einjit.CompiledEinsum(eq, fn, reduce=reduce, target="cuda", **kw)
    got = f(*ops)
    ref = reference(eq, ops, fn, reduce)
    what = f"{eq} reduce={reduce} body={getattr(fn, '__name__', None)}"
    assert np.shape(got) == ref.shape, what
    want = body_dtypes(fn, reduce, [np.asarray(o).dtype for o in ops])[0]
    assert np.asarray(got).dtype == want, (what, np.asarray(got).dtype, want)
    if reduce in ("any", "all"):
        np.testing.assert_array_equal(got, ref, err_msg=what)
    else:
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref, rtol=rtol,
                                   atol=1e-12, err_msg=what)
    return f


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_bodies_and_reductions_in_every_mapping(reduce):
    rng = np.random.default_rng(12)
    mappings = set()
    cases = [*FOLD_CASES, (*ELEMENTWISE, BODIES)]
    for eq, shapes, bodies in cases:
        ops = [rng.uniform(-2, 2, s) for s in shapes]
        for fn in bodies:
            f = _check_fold(eq, ops, fn, reduce)
            plans = f._cuda_plans.values()
            mappings |= {(type(s.mapping), s.scratch > 0) for p in plans for s in p.schedules}
    assert {(BlockPerOutput, False), (BlockPerOutput, True), (ThreadPerOutput, False)} <= mappings
    assert all(m is not TiledGemm for m, _ in mappings) or reduce == "sum"


ZERO_AND_ONE = [
    ("ij,jk->ik", [(2, 0), (0, 3)]),   # nothing to reduce: the identity
    ("i,i->", [(0,), (0,)]),
    ("ij,jk->ik", [(0, 2), (2, 3)]),   # an empty result
    ("ij,jk->ik", [(1, 3), (3, 1)]),   # size-1 dimensions
    ("ij,jk->ik", [(3, 1), (1, 2)]),
    ("ij,j->i", [(4, 1), (1,)]),
]


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_zero_size_and_size_one_dimensions(reduce):
    rng = np.random.default_rng(13)
    for eq, shapes in ZERO_AND_ONE:
        ops = [rng.uniform(-2, 2, s) for s in shapes]
        inputs, output = eq.split("->")
        size = {lb: n for t, s in zip(inputs.split(","), shapes) for lb, n in zip(t, s)}
        empty = any(size[lb] == 0 for lb in size if lb not in output)
        for fn in (plus, None):
            if reduce in ("max", "min") and empty:
                with pytest.raises(ValueError, match="zero-size array"):
                    einjit.CompiledEinsum(eq, fn, reduce=reduce, target="cuda")(*ops)
                continue
            _check_fold(eq, ops, fn, reduce)


def minplus3(a, b, c):
    return a + b + c


def fused3(a, b, c):
    return a * b - c


def test_three_operand_plans_split_semirings_and_fuse_other_bodies():
    rng = np.random.default_rng(14)
    ops = [rng.uniform(0.5, 1.5, s) for s in [(4, 5), (5, 6), (6, 3)]]
    eq = "ij,jk,kl->il"
    f = _check_fold(eq, ops, minplus3, "min")
    (plan,) = f._cuda_plans.values()
    assert len(plan.plan.steps) == 2 and "semiring (min, add)" in plan.plan.note
    g = _check_fold(eq, ops, fused3, "sum")
    (plan,) = g._cuda_plans.values()
    assert len(plan.plan.steps) == 1 and "not a semiring" in plan.plan.note
    small = [rng.uniform(0.5, 1.5, s) for s in [(3, 1), (1, 4), (4, 2)]]
    for reduce in REDUCTIONS:   # the plain product under every reduction
        _check_fold(eq, small, None, reduce, rtol=1e-12)


def logmatmul(a, b):
    return a + b


def test_logsumexp_stays_finite_near_1e3():
    rng = np.random.default_rng(15)
    a, b = rng.uniform(900, 1100, (4, 6)), rng.uniform(900, 1100, (6, 3))
    f = _check_fold("ik,kj->ij", [a, b], logmatmul, "logsumexp", rtol=1e-13)
    assert np.all(np.isfinite(f(a, b)))
    got = f(a.astype(np.float32), b.astype(np.float32))
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference("ik,kj->ij", [a, b], logmatmul, "logsumexp"),
                               rtol=1e-5)


def test_integer_and_bool_accumulators():
    rng = np.random.default_rng(16)
    i32 = [rng.integers(-50, 50, (3, 5)).astype(np.int32) for _ in range(2)]
    for reduce in ("max", "min", "sum", "prod"):   # identities: the int64 extremes, 0, 1
        _check_fold("ij,ij->i", i32, plus, reduce)
    u8 = [rng.integers(0, 9, (3, 5)).astype(np.uint8) for _ in range(2)]
    for reduce in ("max", "min"):                  # uint8 accumulates in uint8
        _check_fold("ij,ij->j", u8, None, reduce)
    flags = [rng.random((4, 6)) < 0.5, rng.random((4, 6)) < 0.9]
    for reduce in ("any", "all", "prod", "max"):   # (a body-less sum is numpy.einsum's)
        _check_fold("ij,ij->i", flags, None, reduce)
    _check_fold("ij,ij->i", i32, greater, "sum")   # bool values, an int64 count


def times(a, b):
    return a * b


def test_the_tiled_gemm_only_sums_products():
    rng = np.random.default_rng(17)
    ops = [rng.uniform(-2, 2, (4, 3)), rng.uniform(-2, 2, (3, 5))]
    for reduce in ("max", "prod", "logsumexp"):
        f = _check_fold("ij,jk->ik", ops, None, reduce)
        assert not any(isinstance(s.mapping, TiledGemm)
                       for p in f._cuda_plans.values() for s in p.schedules)
    f = _check_fold("ij,jk->ik", ops, times, "sum")  # a product body summed: still tiled
    assert any(isinstance(s.mapping, TiledGemm) for p in f._cuda_plans.values()
               for s in p.schedules)


def test_folds_on_device_operands_and_keywords():
    rng = np.random.default_rng(18)
    x, y = rng.uniform(-2, 2, (4, 3)), rng.uniform(-2, 2, (5, 3))
    f = einjit.compile("id,jd->ij")(sqdiff)               # target inferred from operands
    got = f(cuda.to_device(x), cuda.to_device(y))
    assert cuda_target.on_device(got)
    np.testing.assert_allclose(got.copy_to_host(), reference("id,jd->ij", [x, y], sqdiff, "sum"))
    out = cuda.device_array((4, 5), np.float64)
    g = einjit.compile("id,jd->ij", reduce="max")(absdiff)
    assert g(cuda.to_device(x), cuda.to_device(y), out=out) is out
    np.testing.assert_allclose(out.copy_to_host(), reference("id,jd->ij", [x, y], absdiff, "max"))
    h = einjit.compile("id,jd->ji", reduce="min", target="cuda")(absdiff)
    host_out = np.empty((5, 4), np.float32)              # same_kind, as a numpy reduction's
    assert h(x, y, out=host_out) is host_out
    np.testing.assert_allclose(host_out, reference("id,jd->ji", [x, y], absdiff, "min"),
                               rtol=1e-6)
    got = h(x, y, order="F")
    assert got.flags.f_contiguous
    with pytest.raises(TypeError, match="dtype="):
        h(x, y, dtype=np.float32)
    with pytest.raises(ValueError, match="zero-size array"):
        h(np.ones((2, 0)), np.ones((3, 0)))
