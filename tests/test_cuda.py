"""The CUDA target: scheduling decisions and rendering here, kernels in a subprocess.

numba.cuda chooses between the simulator and the real driver once per process (when it
is first imported), so the kernel tests (``tests/cuda_sim/sim_kernels.py``) run in a
child process with ``NUMBA_ENABLE_CUDASIM=1``; on a machine with a GPU the same file
runs once more on the device (``@pytest.mark.gpu``).  This process never imports
numba.cuda.
"""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import einjit
from einjit.body import reduction
from einjit.codegen.cuda import kernel_names, render_module
from einjit.cuda import on_device, wants_device
from einjit.ir import SUM, Call, Cast, Const, Index, Kernel, Load, Operand, product
from einjit.schedule_cuda import (
    BlockPerOutput,
    GpuSchedule,
    Launch,
    Layout,
    LibraryGemm,
    Policy,
    ThreadPerOutput,
    TiledGemm,
    schedule_gpu,
)

ROOT = Path(__file__).resolve().parent.parent
SIM_SUITE = "tests/cuda_sim/sim_kernels.py"


def _kernel(inputs, out, extents, dtype="float32"):
    ops = tuple(Operand(f"a{k}", dtype, tuple(t)) for k, t in enumerate(inputs))
    return Kernel("k0", ops, Operand("out", dtype, tuple(out)),
                  tuple(Index(n, e) for n, e in extents.items()),
                  product(len(inputs), tuple(tuple(t) for t in inputs)), SUM, dtype)


def _c(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return Layout(0, tuple(reversed(strides)))


# ---------------------------------------------------------------- scheduling decisions

def test_rowdot_cooperates_along_the_contiguous_reduction():
    k = _kernel(["ij", "ij"], "i", {"i": 65536, "j": 1024})
    s = schedule_gpu(k, (_c((65536, 1024)),) * 2, _c((65536,)))
    # a warp per row, 32 terms each, 8 rows to a block
    assert s.mapping == BlockPerOutput(("i",), ("j",), 32, 1, Launch(8192, 256), rows=8)
    k = _kernel(["ij", "ij"], "i", {"i": 65536, "j": 200})
    s = schedule_gpu(k, (_c((65536, 200)),) * 2, _c((65536,)))  # short rows: 4 per block
    assert s.mapping == BlockPerOutput(("i",), ("j",), 32, 1, Launch(16384, 128), rows=4)
    assert "32 threads stride over j (4 outputs per block)" in str(s)


def test_short_rows_of_adjacent_terms_get_small_teams():
    # Rows of 32 to 127 adjacent terms: a team of 8 per row (a thread per row read
    # a cache line or more apart from its neighbours); shorter rows keep a thread each.
    k = _kernel(["ij", "ij"], "i", {"i": 20971, "j": 100})
    s = schedule_gpu(k, (_c((20971, 100)),) * 2, _c((20971,)))
    assert s.mapping == BlockPerOutput(("i",), ("j",), 8, 1, Launch(2622, 64), rows=8)
    k = _kernel(["ij"], "i", {"i": 65536, "j": 32})
    assert schedule_gpu(k, (_c((65536, 32)),), _c((65536,))).mapping.threads == 8
    k = _kernel(["ij"], "i", {"i": 65536, "j": 16})
    assert isinstance(schedule_gpu(k, (_c((65536, 16)),), _c((65536,))).mapping,
                      ThreadPerOutput)
    # Column sums of that length keep adjacent threads on adjacent outputs.
    k = _kernel(["ij"], "j", {"i": 100, "j": 65536})
    assert isinstance(schedule_gpu(k, (_c((100, 65536)),), _c((65536,))).mapping,
                      ThreadPerOutput)


def test_column_sum_maps_threads_to_the_contiguous_output():
    k = _kernel(["ij"], "j", {"i": 4096, "j": 4096})
    s = schedule_gpu(k, (_c((4096, 4096)),), _c((4096,)))
    # 4096 outputs, too few for a thread each: a warp of adjacent outputs per block,
    # 8 threads on each, 512 terms per thread
    assert s.mapping == BlockPerOutput(("j",), ("i",), 8, 1, Launch(128, 256), rows=32,
                                       interleave=True)
    assert str(s) == ("block per output: outputs j, 8 threads stride over i (32 outputs per "
                      "block, adjacent threads on adjacent outputs), tree in shared memory; "
                      "grid 128 x 256 threads")
    k = _kernel(["ij"], "j", {"i": 4096, "j": 1 << 17})  # enough outputs: a thread each
    s = schedule_gpu(k, (_c((4096, 1 << 17)),), _c((1 << 17,)))
    assert s.mapping == ThreadPerOutput(("j",), ("i",), Launch(512, 256))
    assert str(s) == ("thread per output: threads over j (j fastest), serial loops i; "
                      "grid 512 x 256 threads")


def test_full_reduction_splits_over_blocks():
    k = _kernel(["i", "i", "i"], "", {"i": 10 ** 8})
    s = schedule_gpu(k, (_c((10 ** 8,)),) * 3, Layout(0, ()))
    m = s.mapping
    assert isinstance(m, BlockPerOutput) and m.split == 2048 and s.scratch == 2048
    assert m.finish == Launch(1, 256)


def test_outer_product_coalesces_on_the_last_output_index():
    k = _kernel(["i", "j"], "ij", {"i": 16384, "j": 16384})
    s = schedule_gpu(k, (_c((16384,)), _c((16384,))), _c((16384, 16384)))
    assert isinstance(s.mapping, ThreadPerOutput) and s.mapping.outputs == ("i", "j")
    # a block per 256 columns of 4 rows: 64 x 4096 pairs, grid-stride beyond max_blocks
    assert s.mapping.band == 4 and s.mapping.launch == Launch(1 << 16, 256)
    assert str(s) == ("thread per output: threads over ij (j fastest), 4 rows of i per "
                      "thread; grid 65536 x 256 threads")
    k = _kernel(["ij", "j"], "ij", {"i": 6, "j": 40})  # a short run, rows left over
    s = schedule_gpu(k, (_c((6, 40)), _c((40,))), _c((6, 40)))
    assert s.mapping.band == 4 and s.mapping.launch == Launch(2, 64)
    source = render_module(k, s, "t")
    assert "h0 = a1[uint64(j)]" in source and "if j < 40:" in source and "if oo < 6:" in source
    k = _kernel(["ij", "j"], "ij", {"i": 6, "j": 8})  # rows shorter than a warp: flattened
    assert schedule_gpu(k, (_c((6, 8)), _c((8,))), _c((6, 8))).mapping.band == 1


def test_library_gemm_writes_a_transposed_output_as_the_transposed_product():
    # out[d, a] = sum_b x[b, a] y[b, d]: the product (a x d) would be computed apart and
    # copied into the C-ordered output; its transpose y^T x^T (d x a) is written in place
    k = _kernel(["ba", "bd"], "da", {"a": 1000, "b": 17, "d": 300})
    s = schedule_gpu(k, (_c((17, 1000)), _c((17, 300))), _c((300, 1000)), library=True)
    assert s.mapping == LibraryGemm((), ("a",), ("d",), ("b",), True, swap=True)
    source = render_module(k, s, "t")
    assert "x = xp.view(a1, (300, 17), (1, 300), 0)" in source
    assert "xp.matmul(x, y, xp.view(out, (300, 1000), (1000, 1), 0))" in source
    s = schedule_gpu(k, (_c((17, 1000)), _c((17, 300))), Layout(0, (1, 1000)), library=True)
    assert not s.mapping.swap  # an (a, d) output: the product itself is row-major there


def test_gemm_shapes_get_shared_memory_tiles():
    k = _kernel(["bij", "bjk"], "bik", {"b": 256, "i": 256, "j": 256, "k": 256})
    s = schedule_gpu(k, (_c((256,) * 3),) * 2, _c((256,) * 3))
    assert s.mapping == TiledGemm(("b",), ("i",), ("k",), ("j",), (64, 64, 16), (4, 4),
                                  "k", "n", Launch(4096, 256))
    attn = _kernel(["bqd", "bkd"], "bqk", {"b": 4, "q": 128, "k": 128, "d": 64})
    s = schedule_gpu(attn, (_c((4, 128, 64)), _c((4, 128, 64))), _c((4, 128, 128)))
    assert (s.mapping.a_fast, s.mapping.b_fast) == ("k", "k")   # both contiguous along d
    tiny = _kernel(["ij", "jk"], "ik", {"i": 4, "j": 4, "k": 4})
    assert isinstance(schedule_gpu(tiny, (_c((4, 4)),) * 2, _c((4, 4))).mapping, ThreadPerOutput)


def test_library_gemm_batches_a_group_its_operand_cannot_merge():
    # ijk,jr->ikr: m = (i, k) is no single axis of a0 (strides 262144 and 1): i batches
    k = _kernel(["ijk", "jr"], "ikr", {"i": 512, "k": 512, "r": 64, "j": 512})
    lay = (_c((512, 512, 512)), _c((512, 64)))
    s = schedule_gpu(k, lay, _c((512, 512, 64)), library=True)
    assert s.mapping == LibraryGemm(("i",), ("k",), ("r",), ("j",), True)
    # ... unless what is left makes matrices of fewer rows than a tile: then a copy
    k = _kernel(["ijk", "jr"], "ikr", {"i": 512, "k": 8, "r": 64, "j": 512})
    s = schedule_gpu(k, (_c((512, 512, 8)), _c((512, 64))), _c((512, 8, 64)), library=True)
    assert s.mapping == LibraryGemm((), ("i", "k"), ("r",), ("j",), True)
    # ... or where broadcasting the other operand over the batch (PyTorch materialises
    # it) costs more than copying this one: ced,acb, n = (a, b) with c between them in
    # a1; a batch of 75 would broadcast a0's 150,000 values 75 times over, a copy of a1
    # moves 1,687,500 (on an H200: 0.288 -> 0.193 ms a call back to back)
    k = _kernel(["ced", "acb"], "abde", {"a": 75, "b": 150, "d": 125, "e": 8, "c": 150})
    s = schedule_gpu(k, (_c((150, 8, 125)), _c((75, 150, 150))), _c((75, 150, 125, 8)),
                     library=True)
    assert s.mapping.batch == () and s.mapping.n == ("a", "b"), s.mapping


def test_explain_shows_the_gpu_plan_without_a_gpu():
    e = einjit.explain("ij,ij->", (8192, 8192), (8192, 8192), dtype="float32", target="cuda")
    text = str(e)
    assert e.backend == "numba.cuda" and "GPU schedule:" in text and "loop nest:" not in text
    # the kernel as scheduled: i and j merged into one index of every term
    assert "out[] = sum_i a0[i] * a1[i]   (i=67108864" in text
    assert "2048 blocks per output into partial sums" in text
    assert "def k0_part(a0, a1, part):" in text and "@cuda.jit(cache=True)" in text
    # GEMM steps: the library's matrix product, batched where a group does not merge
    e = einjit.explain("ijk,jr->ikr", (512, 512, 512), (512, 64), target="cuda")
    assert str(e.nests[0]).startswith("library GEMM") and "batch i; m k" in str(e.nests[0])
    # of two equally cheap paths, the one whose product reads its operands as matrices
    e = einjit.explain("ijk,jr,kr->ir", (512, 512, 512), (512, 64), (512, 64), target="cuda")
    assert str(e.nests[0]).startswith("library GEMM") and "batch -;" in str(e.nests[0])
    assert isinstance(e.nests[1], GpuSchedule)
    assert einjit.explain("ij->ji", (3, 4), target="cuda").backend == "view"
    with pytest.raises(ValueError, match="target must be"):
        einjit.explain("ij->", (3, 4), target="tpu")
    with pytest.raises(ValueError, match="exact shapes"):
        einjit.explain("ij->", (3, 4), target="cuda", dynamic=True)


def test_explain_command_takes_a_target(capsys):
    from einjit.cli import main
    assert main(["explain", "ij,ij->i", "4096x1024", "4096x1024", "--target", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "GPU schedule:" in out and "32 threads stride over j" in out


def test_policy_is_a_value():
    k = _kernel(["ij", "jk"], "ik", {"i": 4, "j": 4, "k": 4})
    tiny = Policy(tile=(4, 4, 2), reg=(2, 2), gemm_min=(2, 2, 2))
    s = schedule_gpu(k, (_c((4, 4)),) * 2, _c((4, 4)), tiny)
    assert isinstance(s.mapping, TiledGemm) and s.mapping.launch == Launch(1, 4)


# ---------------------------------------------------------------- rendering

def test_renderer_prints_literal_strides_and_split_kernels():
    k = _kernel(["i", "i"], "", {"i": 1 << 20})
    s = schedule_gpu(k, (Layout(7, (-1,)), _c((1 << 20,))), Layout(0, ()))
    src = render_module(k, s, "i,i-> step k0")
    assert kernel_names(k, s) == ("k0_part", "k0")
    assert "a0[uint64(7 + i * -1)] * a1[uint64(i)]" in src and "def k0_part(a0, a1, part):" in src
    assert "def k0(part, out):" in src and "cuda.syncthreads()" in src
    compile(src, "k", "exec")  # valid Python


def test_renderer_casts_bool_and_small_integers_as_numpy():
    k = Kernel("k0", (Operand("a0", "int8", ("i",)),), Operand("out", "int8", ()),
               (Index("i", 4),), product(1, (("i",),)), SUM, "int64")
    src = render_module(k, schedule_gpu(k, (_c((4,)),), Layout(0, ())), "t")
    assert "np.int8(shared[0])" in src or "np.int8(acc)" in src


# Under this policy every mapping appears at tiny extents (as in tests/cuda_sim).
TINY = Policy(threads=4, warp=1, reduce_threads=4, cooperate_min=2, fill_blocks=4, split_min=4,
              split_terms=1, max_blocks=8, tile=(4, 4, 2), reg=(2, 2), gemm_min=(2, 2, 2),
              team_terms=1)


def _fold_kernel(reduce, dtype="float64", body=None, out_dtype=None, acc=None):
    """``ij,jk->ik`` with ``body`` (default: the product) folded by ``reduce``."""
    acc = acc or dtype
    body = body or product(2, (("i", "j"), ("j", "k")))
    return Kernel("k0", (Operand("a0", dtype, ("i", "j")), Operand("a1", dtype, ("j", "k"))),
                  Operand("out", out_dtype or dtype, ("i", "k")),
                  (Index("i", 4), Index("j", 3), Index("k", 5)), body,
                  reduction(reduce, acc), acc)


# Each reduction's fold in the serial loop, the tree and the second pass of a split.
FOLD_SPELLING = {"sum": "acc += ", "prod": "acc *= ", "max": "acc = np_maximum(acc, ",
                 "min": "acc = np_minimum(acc, ", "logsumexp": "acc = np_logaddexp(acc, "}
FOLD_IDENTITY = {"sum": "np.float64(0)", "prod": "np.float64(1)",
                 "max": "np.float64(-math.inf)", "min": "np.float64(math.inf)",
                 "logsumexp": "np.float64(-math.inf)"}


@pytest.mark.parametrize("reduce", sorted(FOLD_SPELLING))
def test_every_mapping_folds_with_the_reductions_operator_and_identity(reduce):
    k = _fold_kernel(reduce)
    no_gemm = dataclasses.replace(TINY, gemm_min=(99, 99, 99))
    mappings = {
        "thread": schedule_gpu(k, (_c((4, 3)), _c((3, 5))), _c((4, 5)), Policy()),
        # b read along j: the reduction has the smaller strides, a block cooperates
        "block": schedule_gpu(k, (_c((4, 3)), Layout(0, (1, 3))), _c((4, 5)), no_gemm),
    }
    full = Kernel("k0", (Operand("a0", "float64", ("i",)),), Operand("out", "float64", ()),
                  (Index("i", 9),), Load(0, ("i",)), reduction(reduce, "float64"), "float64")
    mappings["split"] = schedule_gpu(full, (_c((9,)),), Layout(0, ()), TINY)
    assert isinstance(mappings["thread"].mapping, ThreadPerOutput)
    assert isinstance(mappings["block"].mapping, BlockPerOutput)
    assert mappings["split"].mapping.split > 1 and mappings["split"].scratch
    for name, sched in mappings.items():
        kernel = full if name == "split" else k
        src = render_module(kernel, sched, f"{reduce} {name}")
        compile(src, "k", "exec")
        assert FOLD_SPELLING[reduce] in src and FOLD_IDENTITY[reduce] in src, (name, src)
        if name != "thread":   # the tree folds with the same operator
            tree = FOLD_SPELLING[reduce].replace("acc", "shared[tid]")
            assert f"{tree}shared[tid + " in src, src
        if name == "split":    # both passes fold
            assert src.count(FOLD_SPELLING[reduce]) == 2 and "part[oo * " in src, src
        helper = FOLD_SPELLING[reduce].partition("= ")[2].partition("(")[0]
        if helper:
            assert src.count(f"def {helper}(") == 1 and "@cuda.jit(device=True)" in src


def test_gemm_shaped_folds_never_tile():
    lay = (_c((4, 3)), _c((3, 5)))
    assert isinstance(schedule_gpu(_fold_kernel("sum"), lay, _c((4, 5)), TINY).mapping, TiledGemm)
    for reduce in ("prod", "max", "min", "logsumexp"):
        sched = schedule_gpu(_fold_kernel(reduce), lay, _c((4, 5)), TINY)
        assert not isinstance(sched.mapping, TiledGemm), reduce
    minplus = Call("add", (Load(0, ("i", "j")), Load(1, ("j", "k"))))
    sched = schedule_gpu(_fold_kernel("min", body=minplus), lay, _c((4, 5)), TINY)
    assert not isinstance(sched.mapping, TiledGemm)


def test_boolean_and_integer_folds():
    flags = Cast(Call("gt", (Load(0, ("i", "j")), Load(1, ("j", "k")))), "bool")
    for reduce, op in (("any", "acc |= "), ("all", "acc &= ")):
        k = _fold_kernel(reduce, body=flags, out_dtype="bool", acc="bool")
        src = render_module(k, schedule_gpu(k, (_c((4, 3)), _c((3, 5))), _c((4, 5))), "t")
        assert op in src and f"np.bool_({reduce == 'all'})" in src
        # a comparison cast to bool is parenthesised (no chained comparison)
        assert "(a0[uint64(i * 3 + j)] > a1[uint64(j * 5 + k)]) != 0" in src
        assert "out[uint64(i * 5 + k)] = acc\n" in src       # already bool
    k = _fold_kernel("max", dtype="int32", acc="int64")
    src = render_module(k, schedule_gpu(k, (_c((4, 3)), _c((3, 5))), _c((4, 5))), "t")
    assert "np.int64((-9223372036854775807 - 1))" in src and "np.int32(acc)" in src


def test_bodies_spell_device_functions():
    x, y = Load(0, ("i", "j")), Load(1, ("j", "k"))
    body = Call("add", (
        Call("maximum", (Call("sub", (x, y)), Const(-0.5))),
        Call("where", (Call("gt", (x, y)), Call("exp2", (x,)), Call("cbrt", (y,)))),
        Call("arctan2", (x, y)), Call("neg", (Call("abs", (x,)),)),
        Call("not", (Call("lt", (x, Const(float("inf")))),)),
        Call("pow", (Call("log1p", (x,)), Const(2)))))
    k = _fold_kernel("sum", body=body)
    src = render_module(k, schedule_gpu(k, (_c((4, 3)), _c((3, 5))), _c((4, 5))), "t")
    compile(src, "k", "exec")
    x, y = "a0[uint64(i * 3 + j)]", "a1[uint64(j * 5 + k)]"
    for text in (f"np_maximum({x} - {y}, -0.5)", "math.atan2(",
                 f"(np_exp2({x}) if {x} > {y} else np_cbrt(",
                 f"-abs({x})", f"(not ({x} < math.inf))",
                 f"math.log1p({x}) ** 2", "def np_exp2(", "def np_cbrt("):
        assert text in src, (text, src)
    assert "def np_logaddexp(" not in src       # only the device functions it calls


def test_complex_bodies_use_cmath_or_refuse():
    z = Load(0, ("i", "j"))
    k = _fold_kernel("sum", dtype="complex128", body=Call("exp", (z,)))
    src = render_module(k, schedule_gpu(k, (_c((4, 3)), _c((3, 5))), _c((4, 5))), "t")
    assert "cmath.exp(a0[" in src
    k = _fold_kernel("sum", dtype="complex128", body=Call("log1p", (z,)))
    with pytest.raises(TypeError, match="no log1p of complex"):
        render_module(k, schedule_gpu(k, (_c((4, 3)), _c((3, 5))), _c((4, 5))), "t")
    k = _fold_kernel("sum", body=Call("erf", (z,)))
    with pytest.raises(ValueError, match="no spelling for operator 'erf'"):
        render_module(k, schedule_gpu(k, (_c((4, 3)), _c((3, 5))), _c((4, 5))), "t")


# ---------------------------------------------------------------- routing (no GPU needed)

def test_routing_keeps_host_calls_on_the_cpu():
    a = np.ones((2, 3))
    assert not on_device(a) and not wants_device(("ij->", a), None)
    assert wants_device(("ij->", a), "cuda")
    with pytest.raises(ValueError, match="target must be"):
        einjit.einsum("ij->", a, target="tpu")
    assert einjit.einsum("ij->", a, target="cpu") == 6.0


class _FakeDevice:
    """An object that claims to live on a GPU."""

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": (2,), "typestr": "<f8", "data": (0, False), "version": 3,
                "strides": None}


def test_device_operands_are_detected_and_cpu_refuses_them():
    assert on_device(_FakeDevice())
    with pytest.raises(TypeError, match="target='cpu'"):
        einjit.einsum("i->", _FakeDevice(), target="cpu")


# ---------------------------------------------------------------- the kernels

def _run_suite(env_extra: dict, timeout: int) -> None:
    env = dict(os.environ, **env_extra)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           SIM_SUITE], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def test_kernels_on_the_cuda_simulator():
    _run_suite({"NUMBA_ENABLE_CUDASIM": "1", "EINJIT_CUDA_REAL": "0"}, timeout=600)


def _has_gpu() -> bool:
    probe = "from numba import cuda; raise SystemExit(0 if cuda.is_available() else 1)"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    try:
        return subprocess.run([sys.executable, "-c", probe], check=False, env=env, timeout=120,
                              capture_output=True).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.gpu
def test_kernels_on_a_real_gpu():
    if not _has_gpu():
        pytest.skip("no CUDA GPU")
    _run_suite({"NUMBA_ENABLE_CUDASIM": "0", "EINJIT_CUDA_REAL": "1"}, timeout=1200)
