"""Spin-waiting for einjit's chunk workers: a hand-over between two threads in a few
microseconds.

A worker that sleeps on a lock between tasks costs 15-45 us per parallel kernel on a
virtual machine: the sleeping thread is woken through the kernel, and the GIL then passes
between the two threads twice more, each time by another wake-up.  So each side first
spins, without the GIL, on a word the other side writes:

* a worker that finished a task posts its sequence number and spins until the next task's
  appears (up to :data:`WORKER_SPIN_US`), then sleeps on its lock as before; seeing it,
  it spins :data:`WORKER_SETTLE_US` more, so that the caller has dropped the GIL (in its
  own chunk's compiled code) when the worker takes it;
* the caller, once its own chunk is done, spins until the worker posts (up to
  :data:`CALLER_SPIN_US`), then sleeps on the worker's lock.

Locks still carry every hand-over (each side releases its lock before it posts, so a
spin that sees the word finds the lock free): spinning only saves the sleep.  Both spins
are short, and every 64 rounds they yield the core (``sched_yield``): on two cores shared
with BLAS's and other libraries' threads, which spin too, a longer or stubborn spin took
their time (spinning 200 us then 2 ms, without yielding, made the suite's BLAS-bound
cases up to 30 % slower; 50 and 30 us, yielding, left them as they were).  The spin
loop is one small Numba function (:func:`waiter`), compiled once into einjit's kernel
cache; this module imports Numba, so :mod:`einjit.threads` imports it when it starts its
first worker.

>>> import numpy as np
>>> wait = waiter()
>>> flags = np.zeros(16, np.int64)
>>> wait(flags, 8, 5, 0, 1, 10, 0)   # post 5 at flags[8], then spin 10 times for flags[0] >= 1
False
>>> int(flags[8]), wait(flags, -1, 0, 8, 5, 10, 0)
(5, True)
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any, Callable

import numpy as np
from llvmlite import ir as llvm_ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["waiter", "rounds_per_us", "Flags", "WORKER_SPIN_US", "CALLER_SPIN_US",
           "WORKER_SETTLE_US", "load_acquire", "store_release", "pause"]

#: How long a worker spins for its next task before sleeping, and how long the caller
#: spins for a worker to finish, in microseconds.  Between two parallel kernels of a
#: loop the worker is still spinning; an idle worker stops within 50 us.
WORKER_SPIN_US, CALLER_SPIN_US = 50, 30
#: How long a worker that saw its task posted spins on before it takes the GIL, in
#: microseconds: the caller posts the task holding the GIL and drops it only once its
#: own chunk's compiled code starts, a few microseconds later.  A worker that asks for
#: the GIL before then sleeps until it is dropped and is woken by the kernel: its chunk
#: started 30-40 us after the call, 7-9 us with 5 us of settling (two chunks of the
#: float32 ``...ij,...jk->...ik`` over 16 x 8 x 64 x 64: 302 -> 228 us a call; over
#: several sub-millisecond kernels 5-15 % faster, e.g. ``abc->b`` 64 x 128 x 128
#: float64 190-214 -> 159-174 us).
WORKER_SETTLE_US = 5

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_YIELD = hasattr(os, "sched_yield")  # POSIX


def _element(context, builder, sig, args):  # type: ignore[no-untyped-def]
    array = context.make_array(sig.args[0])(context, builder, args[0])
    return builder.gep(array.data, [args[1]])


@intrinsic
def load_acquire(typingctx, flags, index):  # type: ignore[no-untyped-def]
    """``flags[index]`` (an int64 array) as an atomic load with acquire ordering: read
    from memory on every call, never hoisted out of a loop."""
    if not (isinstance(flags, types.Array) and flags.dtype == types.int64
            and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.load_atomic(_element(context, builder, sig, args), "acquire", 8)

    return types.int64(flags, index), codegen


@intrinsic
def store_release(typingctx, flags, index, value):  # type: ignore[no-untyped-def]
    """``flags[index] = value`` as an atomic store with release ordering."""
    if not (isinstance(flags, types.Array) and flags.dtype == types.int64
            and isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, _element(context, builder, sig, args), "release", 8)
        return context.get_dummy_value()

    return types.void(flags, index, value), codegen


@intrinsic
def pause(typingctx):  # type: ignore[no-untyped-def]
    """The x86 ``pause`` instruction (a spin loop's hint to the core); nothing elsewhere."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        if _X86:
            fnty = llvm_ir.FunctionType(llvm_ir.VoidType(), [])
            builder.call(builder.module.declare_intrinsic("llvm.x86.sse2.pause", [], fnty), [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def yield_cpu(typingctx):  # type: ignore[no-untyped-def]
    """``sched_yield()``: another thread ready to run on this core (a BLAS thread, the
    other side of a hand-over) runs now rather than after this spin; returns at once
    when none is.  Nothing where the C library has no such function."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        if _YIELD:
            fnty = llvm_ir.FunctionType(llvm_ir.IntType(32), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


_SOURCE = '''\
# Generated by einjit: the chunk workers' spin-wait (einjit/spin.py)
from numba import njit
from einjit.spin import load_acquire, pause, store_release, yield_cpu


@njit(cache=True, nogil=True)
def post_and_wait(flags, post, value, wait, expect, spins, settle):
    if post >= 0:
        store_release(flags, post, value)
    for k in range(spins):
        if load_acquire(flags, wait) >= expect:
            for _ in range(settle):
                pause()
            return True
        if k % 64 == 63:
            yield_cpu()
        else:
            pause()
    return False
'''

#: ``wait(flags, post, value, index, expect, spins, settle) -> bool``: with ``post >= 0``,
#: store ``value`` at ``flags[post]``; then spin until ``flags[index] >= expect`` (then
#: ``settle`` rounds more, and True) or ``spins`` rounds have passed (False), without the
#: GIL.
Wait = Callable[[np.ndarray, int, int, int, int, int, int], bool]


class Flags:
    """One worker's flags and its spin budgets, in rounds of the spin loop.

    ``words[GO]``: the number of the worker's latest task (written by the caller);
    ``words[DONE]``: the number of the last task it finished (written by the worker); a
    cache line apart, so that neither write takes the other's line away."""

    GO, DONE = 0, 8
    __slots__ = ("words", "worker_spins", "caller_spins", "worker_settle")

    def __init__(self, rounds_per_us: float) -> None:
        self.words = np.zeros(16, np.int64)
        self.worker_spins = int(WORKER_SPIN_US * rounds_per_us)
        self.caller_spins = int(CALLER_SPIN_US * rounds_per_us)
        self.worker_settle = int(WORKER_SETTLE_US * rounds_per_us)


_wait: Any = None
_rounds_per_us = 0.0


def waiter() -> Wait:
    """The compiled spin loop (from einjit's kernel cache, compiled on first use)."""
    global _wait
    if _wait is None:
        from .cache import compile_kernel
        from .dispatch import entry_point

        flags = np.zeros(16, np.int64)
        args = (flags, 0, 0, 0, 0, 0, 0)
        fn = compile_kernel(_SOURCE, "post_and_wait", (types.int64[::1],) + (types.int64,) * 6)
        _wait = entry_point(fn, args)
    return _wait  # type: ignore[no-any-return]


def rounds_per_us() -> float:
    """Rounds of the spin loop per microsecond on this machine (measured once: a
    ``pause`` takes 10 to 150 cycles, by processor)."""
    global _rounds_per_us
    if not _rounds_per_us:
        wait, flags = waiter(), np.zeros(16, np.int64)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            wait(flags, -1, 0, 0, 1, 4000, 0)
            best = min(best, time.perf_counter() - start)
        _rounds_per_us = 4000 / max(best * 1e6, 1e-3)
    return _rounds_per_us
