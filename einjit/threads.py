"""einjit's worker threads: one call's work in parts, the first part on the calling thread.

Two kinds of steps use them:

* GEMM steps whose batch is split (:func:`einjit.codegen.blas.batched_matmul`): each
  chunk a ``numpy.matmul`` of its part of the batch (numpy releases the GIL around BLAS);
* loop kernels whose parallel loop runs in chunks (:class:`Chunked`): the kernel is a
  serial Numba function compiled with ``nogil=True`` that takes its chunk number and the
  number of chunks as two trailing arguments and runs that share of the loop; a
  reduction split over threads writes one partial per chunk, and a second small kernel
  folds them (:func:`einjit.lower.partials`).

Numba's ``prange`` would run such a loop on Numba's own threads, but a ``parallel=True``
kernel takes 0.7-1.3 s to compile against 0.15-0.25 s serially (``shared/MEASURED.md``;
``benchmarks/coldstart.py``), and the first one a process loads starts Numba's thread
pool.  ``Policy(chunked=False)`` (:mod:`einjit.schedule`) brings ``prange`` back.  A
hand-over to a chunk worker costs 4-10 us where the workers spin (:mod:`einjit.spin`),
15-45 us where they sleep on locks only (tens of microseconds more to wake a worker
idle for a while, see ``Policy.parallel_min_work``), a ``prange`` launch about 3 us:
parallel loops are scheduled from ``Policy.parallel_min_work`` body evaluations.

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
import sys
import threading
from typing import Any, Callable

import numpy as np

__all__ = ["Chunked", "prepare"]


class _Task:
    """One chunk handed to a worker: whoever takes ``claim`` first runs it, the worker
    when it wakes or the caller once its own chunk is done (the worker was late);
    ``done`` is released when the worker has run it."""

    __slots__ = ("fn", "args", "seq", "claim", "done", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], seq: int) -> None:
        self.fn, self.args, self.seq = fn, args, seq
        self.claim, self.done = threading.Lock(), threading.Lock()
        self.done.acquire()
        self.error: BaseException | None = None


class _Worker:
    """A thread that runs the chunks handed to it, one at a time.

    A hand-over releases a lock the worker sleeps on (about 20 us from hand-over to
    done, where a ``concurrent.futures`` pool's future takes about 55 us).  Where
    :mod:`einjit.spin` compiled, both sides first spin on two words (the latest task's
    number, the last finished one's): a few microseconds.  A chunk the worker has not
    started when the caller's own is done, the caller runs itself: a worker that is
    slow to wake (its core busy with another process's threads) costs no more than
    running serially."""

    def __init__(self) -> None:
        self.go = threading.Lock()  # released: a hand-over the worker has not seen
        self.go.acquire()
        self.task: _Task | None = None
        self.seq = 0  # tasks handed over
        self.wait_fn, self.flags = _spinning()
        threading.Thread(target=self._loop, name="einjit-chunks", daemon=True).start()

    def _loop(self) -> None:
        ran = 0
        while True:
            wait, flags = self.wait_fn, self.flags  # (set later where Numba was not loaded)
            if wait is not None:  # post the last task run, spin for a newer one
                wait(flags.words, flags.DONE, ran, flags.GO, ran + 1, flags.worker_spins,
                     flags.worker_settle)
            self.go.acquire()
            task = self.task
            if task is None or not task.claim.acquire(blocking=False):
                continue  # the caller ran it (this wake-up is for a task it took)
            try:
                task.fn(*task.args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                task.error = exc
            ran = task.seq
            task.done.release()

    def start(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> _Task:
        if self.wait_fn is None and _NUMBA in sys.modules:  # a Numba kernel ran since
            self.wait_fn, self.flags = _spinning()
        self.seq += 1
        task = self.task = _Task(fn, args, self.seq)
        if self.go.locked():  # else a wake-up is pending still (for a task taken back):
            self.go.release()  # the worker will find this one then
        if self.flags is not None:
            self.flags.words[self.flags.GO] = self.seq
        return task

    def finish(self, task: _Task) -> None:
        """Wait for ``task`` (the caller runs it if the worker has not started it)."""
        if task.claim.acquire(blocking=False):
            task.fn(*task.args)
            return
        if self.wait_fn is not None:
            self.wait_fn(self.flags.words, -1, 0, self.flags.DONE, task.seq,
                         self.flags.caller_spins, 0)
        task.done.acquire()
        if task.error is not None:
            raise task.error


def prepare() -> None:
    """Compile (or load from the kernel cache) the workers' spin loop now: a plan that
    runs on the workers calls this when it is built, so that a warm-up covers it."""
    _spin_loop()


_NUMBA = "numba"
_unspinnable = False  # the spin loop failed to compile once: not tried again


def _spin_loop() -> Any:
    """The compiled spin loop (its speed measured), or None where it cannot be compiled
    (the workers then sleep on their locks only), or where Numba is not loaded: a
    process that only splits BLAS batches over the workers does not import it for them
    (until a Numba kernel runs; then the workers take up spinning)."""
    global _unspinnable
    if _unspinnable or _NUMBA not in sys.modules:
        return None
    try:
        from . import spin

        wait = spin.waiter()
        spin.rounds_per_us()
        return wait
    except Exception:  # noqa: BLE001 - only speed depends on it
        _unspinnable = True
        return None


def _spinning() -> tuple[Any, Any]:
    """The spin loop and a new worker's flags, or (None, None) without a spin loop."""
    wait = _spin_loop()
    if wait is None:
        return None, None
    from . import spin

    return wait, spin.Flags(spin.rounds_per_us())


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

    def serial(self) -> "Chunked":
        """The same in one chunk, on the caller's thread (a call too small for threads)."""
        return Chunked(self.fn, 1, self.fold, self.partial, self.slots)

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
                    started.append((worker, worker.start(fn, arrays + (c, n))))
                fn(*arrays, 0, n)
            finally:
                errors = []
                for worker, task in started:
                    try:
                        worker.finish(task)
                    except BaseException as exc:  # noqa: BLE001 - the first is raised
                        errors.append(exc)
                if errors:
                    raise errors[0]
        finally:
            _busy.release()

    def __repr__(self) -> str:
        fold = f", fold={self.fold!r}" if self.fold is not None else ""
        return f"Chunked({self.fn!r}, {self.n}{fold})"
