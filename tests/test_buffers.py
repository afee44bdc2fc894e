"""The pool of large result buffers (einjit/buffers.py)."""

import gc
import threading

import numpy as np
import pytest

import einjit
from einjit import buffers

N = 512  # 512 x 512 float64: 2 MiB, above buffers.MIN_BYTES


@pytest.fixture(autouse=True)
def empty_pool():
    buffers.clear()
    yield
    buffers.clear()


def _ops(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((N, 8)), rng.random((8, N))


def test_a_dead_result_lends_its_memory_to_the_next():
    a, b = _ops()
    first = einjit.einsum("ik,kj->ij", a, b)
    address = first.ctypes.data
    np.testing.assert_allclose(first, a @ b, rtol=1e-12)
    del first
    assert buffers.pooled_bytes() == N * N * 8
    second = einjit.einsum("ik,kj->ij", 2 * a, b)
    assert second.ctypes.data == address and buffers.pooled_bytes() == 0
    np.testing.assert_allclose(second, 2 * a @ b, rtol=1e-12)
    assert second.flags.writeable and second.flags.c_contiguous and address % 64 == 0


def test_a_view_keeps_the_memory_of_its_result():
    a, b = _ops()
    result = einjit.einsum("ik,kj->ij", a, b)
    view = result[::2].T
    expected = (a @ b)[::2].T.copy()
    del result
    gc.collect()
    assert buffers.pooled_bytes() == 0           # still in use through the view
    other = einjit.einsum("ik,kj->ij", 3 * a, b)  # must not write over the view
    np.testing.assert_allclose(view, expected, rtol=1e-12)
    assert not np.shares_memory(view, other)
    del view
    assert buffers.pooled_bytes() == N * N * 8


def test_fortran_order_and_intermediates():
    a, b = _ops(1)
    c = np.random.default_rng(2).random((N, 8))
    got = einjit.einsum("ik,kj->ji", np.asfortranarray(a), np.asfortranarray(b), order="F")
    np.testing.assert_allclose(got, (a @ b).T, rtol=1e-12)
    assert got.flags.f_contiguous
    got = einjit.einsum("ik,kj,jl->il", a, b, c)  # a 2 MiB intermediate from the pool
    np.testing.assert_allclose(got, a @ b @ c, rtol=1e-10)


def test_intermediates_come_from_the_pool_from_smaller_sizes(avx2_tiles):
    # three 128 KiB matrices alive at once page-fault afresh in every call with
    # numpy.empty; the intermediate (below MIN_BYTES) comes from the pool, the result not
    # (BLAS products as on AVX2: AVX-512's register tiles write the result in place)
    n = 128
    assert n * n * 8 < buffers.MIN_BYTES and n * n * 8 >= buffers.MIN_STEP_BYTES
    rng = np.random.default_rng(4)
    a, b, c = rng.random((n, n)), rng.random((n, n)), rng.random((n, n))
    for k in range(3):
        got = einjit.einsum("ik,kj,jl->il", a, k * b, c)
        np.testing.assert_allclose(got, a @ (k * b) @ c, rtol=1e-10)
        assert got.base is None and got.flags.owndata
        assert buffers.pooled_bytes() == n * n * 8   # the intermediate, again and again


def test_a_result_kept_alive_is_never_lent_again():
    a, b = _ops(5)
    kept = [einjit.einsum("ik,kj->ij", a * k, b) for k in range(buffers.TRACKED + 3)]
    for k, got in enumerate(kept):  # more than the pool watches: the oldest are forgotten
        np.testing.assert_allclose(got, (a * k) @ b, rtol=1e-12)
    assert len({got.ctypes.data for got in kept}) == len(kept)
    assert buffers.pooled_bytes() == 0
    del kept, got
    assert buffers.pooled_bytes() == buffers.TRACKED * N * N * 8


def test_the_pool_keeps_at_most_its_limit(monkeypatch):
    monkeypatch.setattr(buffers, "LIMIT", 3 * N * N * 8)
    arrays = [buffers.empty((N, N), np.float64) for _ in range(5)]
    del arrays
    assert buffers.pooled_bytes() == 3 * N * N * 8
    einjit.clear_cache()
    assert buffers.pooled_bytes() == 0


def test_small_and_object_arrays_are_numpy_empty():
    assert buffers.empty((4, 4), np.float64).base is None
    assert buffers.empty((N, N), object).base is None
    assert buffers.empty((N, N), np.float32).base is not None


def test_threads_share_the_pool_safely():
    a, b = _ops(3)
    expected = a @ b
    errors = []

    def work(k):
        try:
            for _ in range(20):
                got = einjit.einsum("ik,kj->ij", a * k, b)
                if not np.allclose(got, expected * k, rtol=1e-12):
                    errors.append(k)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert buffers.pooled_bytes() <= buffers.LIMIT
