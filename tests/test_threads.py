"""Eight threads calling a new equation at once: one plan built, eight right results."""

import threading

import numpy as np

import einjit


def test_eight_threads_share_one_compilation(tmp_path, monkeypatch):
    # A fresh disk cache and a shape no other test uses: nothing is cached anywhere.
    monkeypatch.setenv("EINJIT_CACHE_DIR", str(tmp_path / "cache"))
    equation, shapes = "abc,cb,a->ab", [(7, 11, 5), (5, 11), (7,)]
    kernels = [n for n in einjit.explain(equation, *shapes).nests if not n.schedule.gemm]
    assert kernels  # at least one Numba kernel to compile
    rng = np.random.default_rng(4)
    operands = [[rng.random(s) for s in shapes] for _ in range(8)]
    results: list = [None] * 8
    errors: list = []
    barrier = threading.Barrier(8)

    def call(k: int) -> None:
        try:
            barrier.wait()
            results[k] = einjit.einsum(equation, *operands[k])
        except Exception as exc:  # noqa: BLE001 (reported below, in the test's thread)
            errors.append(exc)

    before = einjit.cache_info()
    threads = [threading.Thread(target=call, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    after = einjit.cache_info()
    assert errors == []
    for ops, result in zip(operands, results):
        np.testing.assert_allclose(result, np.einsum(equation, *ops), rtol=1e-12)
    assert after["compilations"] - before["compilations"] == len(kernels)
    assert after["disk_loads"] == before["disk_loads"]
    assert after["misses"] - before["misses"] == 1  # one plan, built once; the others wait
