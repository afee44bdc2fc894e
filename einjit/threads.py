"""einjit's worker threads: one call's work in parts, the first part on the calling thread.

Two kinds of steps use them:

* GEMM steps whose batch is split (:func:`einjit.codegen.blas.batched_matmul`): each
  chunk a ``numpy.matmul`` of its part of the batch (numpy releases the GIL around BLAS);
* loop kernels whose parallel loop runs in chunks (:class:`Chunked`): the kernel is a
  serial Numba function compiled with ``nogil=True`` that takes its chunk number and the
  number of chunks as two trailing arguments and runs that share of the loop; a
  reduction split over threads writes one partial per chunk, and a second small kernel
  folds them (:func:`einjit.schedule.partials`).

Numba's ``prange`` would run such a loop on Numba's own threads, but a ``parallel=True``
kernel takes 0.7-1.3 s to compile against 0.15-0.25 s serially (``shared/MEASURED.md``;
``benchmarks/coldstart.py``), and the first one a process loads starts Numba's thread
pool.  ``Policy(chunked=False)`` (:mod:`einjit.schedule`) brings ``prange`` back.  A
hand-over to a chunk worker costs about 20 us, a ``prange`` launch about 3 us: parallel
loops are only scheduled for at least 2**20 body evaluations.

>>> import numpy as np
>>> def fill(out, c, n):  # chunk c of n
...     out[c::n] = c
>>> out = np.zeros(6)
>>> Chunked(fill, 2)(out)
>>> out
array([0., 1., 0., 1., 0., 1.])
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import numpy as np

__all__ = ["Chunked", "prepare"]

class _Worker:
    """A thread that runs one task at a time, handed over with two locks (about 20 us
    from hand-over to done, where a ``concurrent.futures`` pool's future takes about
    55 us), and, where :mod:`einjit.spin` compiled, spinning on two words before each
    lock, which brings a hand-over down to a few microseconds."""

    def __init__(self) -> None:
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.task: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        self.error: BaseException | None = None
        self.seq = 0  # tasks handed over
        self.wait_fn, self.flags = _spinning()
        threading.Thread(target=self._loop, name="einjit-chunks", daemon=True).start()

    def _loop(self) -> None:
        seq, wait, flags = 0, self.wait_fn, self.flags
        while True:
            if wait is not None:  # post the last task done, spin for the next one
                wait(flags.words, flags.DONE, seq, flags.GO, seq + 1, flags.worker_spins)
            self.go.acquire()
            seq += 1
            fn, args = self.task  # type: ignore[misc]
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self.error = exc
            self.task = None
            self.done.release()

    def start(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.task, self.error = (fn, args), None
        self.seq += 1
        self.go.release()
        if self.flags is not None:
            self.flags.words[self.flags.GO] = self.seq

    def wait(self) -> None:
        if self.wait_fn is not None:
            self.wait_fn(self.flags.words, -1, 0, self.flags.DONE, self.seq,
                         self.flags.caller_spins)
        self.done.acquire()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def prepare() -> None:
    """Compile (or load from the kernel cache) the workers' spin loop now: a plan that
    runs on the workers calls this when it is built, so that a warm-up covers it."""
    _spinning()


def _spinning() -> tuple[Any, Any]:
    """The spin loop and a new worker's flags, or (None, None) where the spin loop
    cannot be compiled (the workers then sleep on their locks only)."""
    try:
        from . import spin

        return spin.waiter(), spin.Flags(spin.rounds_per_us())
    except Exception:  # noqa: BLE001 - only speed depends on it
        return None, None


_workers: list[_Worker] = []
_busy = threading.Lock()  # one chunked kernel at a time uses the workers


def _forget_workers() -> None:
    """In a forked child: the workers' threads did not come along; start new ones."""
    global _busy
    _workers.clear()
    _busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


class Chunked:
    """``fn(*arrays)`` as ``fn(*arrays, c, n)`` for c = 0..n-1: chunk 0 on the caller's
    thread, the others on einjit's chunk workers; returns when every chunk is done
    (re-raising an error of one).  ``fn`` must release the GIL (Numba ``nogil=True``) for
    the chunks to overlap.  While another thread's chunked kernel holds the workers, the
    caller runs every chunk itself.

    With ``fold`` (a reduction in chunks), the last array (the output) is replaced by an
    array of ``slots`` (default n) partial outputs of dtype ``partial`` (shape
    ``(slots,) + output.shape``), each chunk writing its own, and ``fold(partials,
    output)`` combines them afterwards; with more slots than chunks they start as zeros
    (see :func:`einjit.schedule.partial_spread`).
    """

    __slots__ = ("fn", "n", "fold", "partial", "slots")

    def __init__(self, fn: Callable[..., Any], n: int, fold: Callable[..., Any] | None = None,
                 partial: Any = None, slots: int = 0) -> None:
        self.fn, self.n, self.fold, self.partial = fn, n, fold, partial
        self.slots = slots or n

    def _partials(self, out: np.ndarray) -> np.ndarray:
        shape = (self.slots,) + out.shape
        if self.slots == self.n:
            return np.empty(shape, self.partial)
        return np.zeros(shape, self.partial)  # spread out: the slots between hold zeros

    def __call__(self, *arrays: Any) -> None:
        if self.fold is None:
            self._chunks(arrays)
            return
        parts = self._partials(arrays[-1])
        self._chunks(arrays[:-1] + (parts,))
        self.fold(parts, arrays[-1])

    def specialised(self, arrays: Any) -> "Chunked":
        """The same, calling the compiled code of each Numba function for exactly these
        arrays' types (no per-call type dispatch; see ``einjit.dispatch``)."""
        from .dispatch import entry_point

        if self.fold is None:
            return Chunked(entry_point(self.fn, [*arrays, 0, 0]), self.n)
        parts = self._partials(arrays[-1])
        return Chunked(entry_point(self.fn, [*arrays[:-1], parts, 0, 0]), self.n,
                       entry_point(self.fold, [parts, arrays[-1]]), self.partial, self.slots)

    def _chunks(self, arrays: tuple[Any, ...]) -> None:
        fn, n = self.fn, self.n
        if not _busy.acquire(blocking=False):
            for c in range(n):
                fn(*arrays, c, n)
            return
        try:
            while len(_workers) < n - 1:
                _workers.append(_Worker())
            started = []
            try:
                for c in range(1, n):
                    worker = _workers[c - 1]
                    worker.start(fn, arrays + (c, n))
                    started.append(worker)
                fn(*arrays, 0, n)
            finally:
                errors = []
                for worker in started:
                    try:
                        worker.wait()
                    except BaseException as exc:  # noqa: BLE001 - the first is raised
                        errors.append(exc)
                if errors:
                    raise errors[0]
        finally:
            _busy.release()

    def __repr__(self) -> str:
        fold = f", fold={self.fold!r}" if self.fold is not None else ""
        return f"Chunked({self.fn!r}, {self.n}{fold})"
