"""BLAS held to one thread a call while einjit's threads split a batch of products."""
import threading

import numpy as np
import pytest

import einjit
from einjit import blas_threads, schedule
from einjit.codegen import blas

needs_limit = pytest.mark.skipif(not blas_threads.limitable(),
                                 reason="no BLAS library threadpoolctl can limit")


def _threads():
    return [lib.num_threads for lib in blas_threads._blas()]


@needs_limit
def test_one_thread_holds_blas_from_the_main_thread_and_gives_its_threads_back():
    before = _threads()
    with blas_threads.one_thread():
        assert _threads() == [1] * len(before)
        with blas_threads.one_thread():  # nested: the outer block lifts the limit
            pass
        assert _threads() == [1] * len(before)
    assert _threads() == before
    seen = []

    def other():  # (OpenBLAS takes the setting from the main thread only)
        with blas_threads.one_thread():
            seen.append(_threads())

    worker = threading.Thread(target=other)
    worker.start()
    worker.join(10)
    assert seen == [before] and _threads() == before


@needs_limit
@pytest.mark.skipif(schedule.thread_count() < 2, reason="one CPU: no batch is split")
def test_a_batch_of_larger_products_is_split_with_blas_on_one_thread(monkeypatch):
    # 64 products of 128^3 float64 (2^21 multiply-adds each, which OpenBLAS would
    # thread): split over einjit's threads, each part's BLAS calls on one thread
    seen = []
    part = blas._matmul_part

    def recording(*args):
        seen.append(_threads())
        part(*args)

    monkeypatch.setattr(blas, "_matmul_part", recording)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 128, 128)), rng.standard_normal((64, 128, 128))
    assert einjit.explain("bij,bjk->bik", a, b).nests[0].schedule.gemm.split == 2
    np.testing.assert_allclose(einjit.einsum("bij,bjk->bik", a, b), np.matmul(a, b),
                               rtol=1e-12)
    assert seen and all(t == [1] * len(t) for t in seen)
    assert _threads() == [lib.num_threads for lib in blas_threads._blas()]


def test_without_a_limit_only_products_blas_runs_on_one_thread_are_split(monkeypatch):
    monkeypatch.setattr(blas_threads, "_controllers", [])
    rng = np.random.default_rng(4)
    a = rng.standard_normal((64, 128, 128))
    assert einjit.explain("bij,bjk->bik", a, a).nests[0].schedule.gemm.split == 1
