"""einjit.threads: chunked kernels on einjit's worker threads."""

import multiprocessing
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import einjit
from einjit import schedule
from einjit.policy import Policy
from einjit.threads import Chunked


def _fill(out, c, n):
    out[c::n] = c + 1


def test_every_chunk_runs_once_with_its_number():
    out = np.zeros(12)
    Chunked(_fill, 3)(out)
    np.testing.assert_array_equal(out, np.tile([1.0, 2.0, 3.0], 4))


def test_an_error_in_any_chunk_reaches_the_caller_and_the_workers_carry_on():
    def fail_in_last(out, c, n):
        if c == n - 1:
            raise ZeroDivisionError("chunk")
        out[c] = 1
    out = np.zeros(3)
    with pytest.raises(ZeroDivisionError, match="chunk"):
        Chunked(fail_in_last, 3)(out)
    Chunked(_fill, 3)(out)  # the workers still answer
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])


def test_concurrent_callers_each_get_every_chunk():
    outs = [np.zeros(64) for _ in range(8)]
    threads = [threading.Thread(target=Chunked(_fill, 2), args=(o,)) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in outs:
        np.testing.assert_array_equal(o, np.tile([1.0, 2.0], 32))


def _numba_fill():
    from numba import njit

    @njit(nogil=True)
    def fill(out, c, n):  # a chunk that runs without the GIL, as the kernels do
        for i in range(c, out.size, n):
            out[i] = out[i] + c + 1
    return fill


@pytest.mark.parametrize("spinning", [True, False])
def test_hand_overs_in_a_row_spinning_or_sleeping(spinning, monkeypatch):
    # many short tasks back to back (the workers spin between them), then after pauses
    # longer than a worker spins (it sleeps on its lock); without the spin loop
    # (einjit.spin unavailable) the locks alone carry every hand-over
    from einjit import threads

    threads._forget_workers()  # fresh workers, with or without the spin loop
    if not spinning:
        monkeypatch.setattr(threads, "_spinning", lambda: (None, None))
    fill, out = _numba_fill(), np.zeros(6)
    for k in range(1, 301):
        Chunked(fill, 3)(out)
        if k % 100 == 0:
            time.sleep(0.005)
    np.testing.assert_array_equal(out, np.tile([300.0, 600.0, 900.0], 2))
    assert all((w.wait_fn is not None) == spinning for w in threads._workers)
    threads._forget_workers()


def test_the_spin_loop_posts_and_waits():
    from einjit import spin

    wait, flags = spin.waiter(), spin.Flags(spin.rounds_per_us())
    assert flags.worker_spins > 0 and flags.caller_spins > 0 and flags.worker_settle > 0
    words = flags.words
    assert not wait(words, flags.DONE, 7, flags.GO, 1, 100, 0)  # nothing posted at GO
    assert words[flags.DONE] == 7
    words[flags.GO] = 1
    assert wait(words, -1, 0, flags.GO, 1, 1, 0)
    assert wait(words, -1, 0, flags.GO, 1, 1, flags.worker_settle)  # seen, then settles


def test_the_caller_runs_a_chunk_its_worker_has_not_started(monkeypatch):
    # a worker that does not wake (as one whose core is busy): the caller runs its
    # chunk; the worker, woken by the next hand-over, runs that one only
    from einjit import threads

    threads._forget_workers()
    monkeypatch.setattr(threads, "_spinning", lambda: (None, None))
    Chunked(_fill, 2)(np.zeros(2))  # starts the worker
    time.sleep(0.05)  # it sleeps on its lock again
    worker = threads._workers[0]
    ran = []

    def record(out, c, n):
        ran.append((c, threading.current_thread().name))
        out[c] = c + 1
    asleep = threading.Lock()
    asleep.acquire()
    with monkeypatch.context() as m:
        m.setattr(worker, "go", asleep)  # the hand-over's wake-up goes nowhere
        out = np.zeros(2)
        Chunked(record, 2)(out)
    np.testing.assert_array_equal(out, [1.0, 2.0])
    me = threading.current_thread().name
    assert sorted(ran) == [(0, me), (1, me)]
    out = np.zeros(2)
    Chunked(record, 2)(out)  # the worker wakes now: chunk 1 runs once, wherever
    np.testing.assert_array_equal(out, [1.0, 2.0])
    assert sorted(c for c, _ in ran) == [0, 0, 1, 1]
    threads._forget_workers()


_BLAS_ONLY = """
import sys, numpy as np, einjit
from einjit import schedule, threads
schedule.WIDE_VECTOR_BYTES, schedule.WIDE_REGISTERS = 32, 16  # BLAS calls, as on AVX2
a, b = np.ones((16, 48, 48)), np.ones((16, 48, 48))
assert einjit.explain("bij,bjk->bik", a, b).nests[0].schedule.gemm.split == 2
np.testing.assert_array_equal(einjit.einsum("bij,bjk->bik", a, b), np.full((16, 48, 48), 48.0))
assert "numba" not in sys.modules and threads._workers[0].wait_fn is None
einjit.einsum("ij,ij->i", np.ones((1024, 512)), np.ones((1024, 512)))  # a Numba kernel
einjit.einsum("bij,bjk->bik", a, b)
assert threads._workers[0].wait_fn is not None  # the workers spin from now on
"""


@pytest.mark.skipif(schedule.thread_count() < 2, reason="one CPU: nothing runs on workers")
def test_blas_batches_on_the_workers_import_no_numba(tmp_path):
    env = dict(os.environ, EINJIT_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", _BLAS_ONLY], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_spin_loop_that_fails_to_compile_is_tried_once(monkeypatch):
    from einjit import spin, threads

    tries = []

    def broken():
        tries.append(1)
        raise RuntimeError("no compiler")
    monkeypatch.setattr(spin, "waiter", broken)
    monkeypatch.setattr(threads, "_unspinnable", False)
    assert threads._spinning() == (None, None) and threads._spinning() == (None, None)
    assert len(tries) == 1


def _child(queue):
    out = np.zeros(4)
    Chunked(_fill, 2)(out)
    queue.put(out.tolist())


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_forked_child_starts_its_own_workers():
    Chunked(_fill, 2)(np.zeros(4))  # workers started in this process
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0 and queue.get(timeout=5) == [1.0, 2.0, 1.0, 2.0]


def test_large_output_loops_run_chunked_and_match_numpy(monkeypatch):
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(parallel_min_work=1 << 10))
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((68, 45)), rng.standard_normal((45, 31))
    for eq, ops in [("ij,ij->i", (a, a)), ("i,j->ij", (a[:, 0], b[0])),
                    ("ij,jk->ki", (a.astype(np.int64), b.astype(np.int64)))]:
        nest = einjit.explain(eq, *ops).nests[0]
        assert nest.schedule.threads == schedule.thread_count() > 1
        assert "chunk, chunks):" in einjit.explain(eq, *ops).sources[0]
        got = einjit.einsum(eq, *ops)
        want = np.einsum(eq, *ops)
        for _ in range(2):  # the fast path's launcher too
            got = einjit.einsum(eq, *ops)
            np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("eq,shapes", [("c,c,c->", [(5000,)] * 3), ("nc,nc->", [(40, 70)] * 2),
                                       ("ec->c", [(900, 20)]), ("cn,cn->c", [(70, 40)] * 2)])
def test_a_label_named_like_a_chunk_variable(eq, shapes, monkeypatch):
    # chunked kernels once took their chunk as ``c``: a label ``c`` overwrote it, and a
    # reduction's partial went to ``out[c]`` with c the label's last value (out of bounds)
    monkeypatch.setattr(einjit.policy, "POLICY", Policy(parallel_min_work=1 << 10))
    rng = np.random.default_rng(8)
    for dtype in (np.float64, np.int64):
        ops = [rng.integers(-9, 9, s).astype(dtype) for s in shapes]
        assert einjit.explain(eq, *ops).nests[-1].schedule.threads or any(
            n.schedule.threads for n in einjit.explain(eq, *ops).nests)
        for _ in range(2):
            np.testing.assert_array_equal(einjit.einsum(eq, *ops), np.einsum(eq, *ops))
