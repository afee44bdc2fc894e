"""BLAS's own threads while einjit's workers split a batch of products between them.

A batch of matrix products split over einjit's threads (``GemmLayout.split``) calls
BLAS once per matrix on each thread.  OpenBLAS threads each call of 2^18
multiply-adds or more itself, so two threads calling it at once ask for more threads
than there are cores (64 products of 128^3 float64, two threads each calling a
threaded ``dgemm``: 3.4 ms; one ``matmul`` call threaded by OpenBLAS: 3.4 ms; the
batch split, each call on one thread: 2.6 ms).  :func:`one_thread` holds the BLAS
libraries loaded in the process to one thread a call while such a batch runs
(threadpoolctl's ``set_num_threads``, as its ``threadpool_limits`` does: the limit is
the process's, so a BLAS call made meanwhile on another thread runs on one thread too).

Only the process's main thread sets the limit: OpenBLAS 0.3.31 takes the setting from
it alone (set from another thread, a 1024^2 ``dgemm`` still ran on two threads, and a
limit set by the main thread was not lifted), so a batch split from another thread
runs with BLAS as it is.  Without threadpoolctl (or with no BLAS library it knows)
:func:`limitable` is False and :func:`one_thread` changes nothing; the scheduler then
splits only batches of products BLAS runs on one thread anyway.

>>> with one_thread():
...     pass
>>> isinstance(limitable(), bool)
True
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["limitable", "one_thread"]

_depth = 0  # the main thread's blocks under the limit (nested)
_saved: list[tuple[Any, int]] = []  # (library controller, its threads before)
_controllers: list[Any] | None = None


def _blas() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded (found once)."""
    global _controllers
    if _controllers is None:
        try:
            from threadpoolctl import ThreadpoolController

            found = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # (no threadpoolctl, or a library it cannot query)
            found = []
        _controllers = list(found)
    return _controllers


def limitable() -> bool:
    """Whether :func:`one_thread` can hold BLAS to one thread a call."""
    return bool(_blas())


@contextmanager
def one_thread() -> Iterator[None]:
    """Hold the BLAS libraries to one thread a call while the block runs, when called
    from the main thread (nested blocks share the limit; the outermost lifts it)."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    if _depth == 1:
        for lib in _blas():
            threads = lib.num_threads
            if threads != 1:
                _saved.append((lib, threads))
                lib.set_num_threads(1)
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            for lib, threads in _saved:
                lib.set_num_threads(threads)
            _saved.clear()
