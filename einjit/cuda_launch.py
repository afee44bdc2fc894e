"""Launch a compiled kernel without Numba's per-call argument handling.

A configured Numba launch (``kernel[grid, block](*arrays)``) types every argument,
imports each foreign array as a Numba device array and packs its fields again, call
after call: about 0.1 ms of host time for three small arrays, more than a small
kernel runs on the device.  einjit's kernels take nothing but 1-D C-contiguous arrays
(:mod:`einjit.codegen.cuda`), so once Numba has compiled and launched a kernel, later
launches can pass the same fields directly: for each array its data pointer, element
count and item size, as Numba lays a 1-D array argument out (meminfo, parent, count,
item size, data, shape, stride in bytes).

:func:`direct` builds such a launcher from a configured Numba launch that has run once,
or returns None where this Numba's internals differ from what it expects (then the
caller keeps Numba's own launch).  The simulator has no compiled kernels, and a machine
with several GPUs would need a launcher per device's context: None there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Pointer", "direct"]

#: An array argument: (data address, element count, item size in bytes).
Pointer = tuple[int, int, int]


def direct(configured: Any) -> Callable[[Sequence[Pointer]], None] | None:
    """A launcher ``fn(pointers)`` doing what ``configured(*arrays)`` does for arrays at
    those pointers (on the configured grid, block and stream), or None."""
    try:
        from cuda.core import LaunchConfig, launch
        from numba import cuda

        if len(cuda.gpus) != 1:  # the function below belongs to one device's context
            return None
        dispatcher = configured.dispatcher
        kernels = list(dispatcher.overloads.values())
        if len(kernels) != 1:  # one signature only: the one einjit launched with
            return None
        kernel = kernels[0]
        if kernel.debug or kernel.cooperative or kernel.extensions or configured.sharedmem:
            return None
        if any(getattr(t, "ndim", None) != 1 or getattr(t, "layout", None) != "C"
               for t in kernel.argument_types):
            return None
        function = kernel._codelibrary.get_cufunc().kernel
        config = LaunchConfig(grid=configured.griddim, block=configured.blockdim,
                              shmem_size=0)
        stream = configured.stream
    except (ImportError, AttributeError, TypeError):
        return None

    def run(pointers: Sequence[Pointer]) -> None:
        args: list[int] = []
        for address, count, itemsize in pointers:
            args += (0, 0, count, itemsize, address, count, itemsize)
        launch(stream, config, function, *args)

    return run
