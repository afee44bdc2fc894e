"""Shared test set-up: one kernel cache directory for the whole test run.

Numba compilation dominates the test time, so every test process (including the
subprocesses some tests start) shares one on-disk kernel cache.  A second run of the
suite on the same checkout loads every kernel from it.
"""
import os
import pathlib

_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".einjit-test-cache"
os.environ.setdefault("EINJIT_CACHE_DIR", str(_CACHE))

try:
    from hypothesis import HealthCheck, Phase, settings

    # Every shrinking step compiles new kernels (0.2-1 s each), so a failure is reported
    # unshrunk, with the blob that replays it (`@reproduce_failure`), instead of spending
    # many minutes of CI shrinking it.  Set EINJIT_HYPOTHESIS_SHRINK=1 to shrink locally.
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if os.environ.get("EINJIT_HYPOTHESIS_SHRINK"):
        phases.append(Phase.shrink)
    settings.register_profile(
        "einjit",
        max_examples=int(os.environ.get("EINJIT_HYPOTHESIS_EXAMPLES", "60")),
        deadline=None,
        phases=phases,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.load_profile("einjit")
except ImportError:  # hypothesis is a test extra; the plain tests still run
    pass

import pytest  # noqa: E402


def _pin_wide_vectors(monkeypatch, size: int, registers: int):
    from einjit import engine, schedule

    engine.clear_cache()  # (plans in memory were made for the host's)
    monkeypatch.setattr(schedule, "WIDE_VECTOR_BYTES", size)
    monkeypatch.setattr(schedule, "WIDE_REGISTERS", registers)
    yield
    monkeypatch.undo()
    engine.clear_cache()


@pytest.fixture
def avx2_tiles(monkeypatch):
    """Wide register tiles planned as on an AVX2 core (256-bit vectors, 16 registers),
    whatever this host is: for tests of those plans."""
    yield from _pin_wide_vectors(monkeypatch, 32, 16)


@pytest.fixture
def avx512_tiles(monkeypatch):
    """Wide register tiles planned as on an AVX-512 core (512-bit vectors, 32
    registers); on a host without them LLVM compiles the kernels for its own."""
    yield from _pin_wide_vectors(monkeypatch, 64, 32)
