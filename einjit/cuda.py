"""The CUDA target: run an einsum's plan as ``numba.cuda`` kernels on the device.

``einjit.einsum(..., target="cuda")`` and any call whose operands are device arrays
(anything with ``__cuda_array_interface__``: Numba device arrays, CuPy arrays, PyTorch
CUDA tensors; the CUDA simulator's arrays too) come here.  The call is validated by the
CPU pipeline's own rules (:func:`einjit.engine.prepare_operands` on shape-and-dtype
stand-ins, so the result's shape and dtype and every error are numpy's), planned by the
same planner, scheduled per step by :mod:`einjit.schedule_cuda` and rendered by
:mod:`einjit.codegen.cuda`.

* numpy operands (``target="cuda"``) are copied in; the result is copied out as a numpy
  array (``out=`` a numpy array works as in numpy).
* Device operands stay where they are: each reaches the kernels as a flat view of its
  memory (diagonals and broadcasting are strides, nothing is copied).  Intermediates of
  an n-ary plan live on the device.  The result is the operands' kind of array: a
  PyTorch tensor or a CuPy array (allocated by that library) when the first device
  operand is one, a Numba device array otherwise.
* GEMM-shaped float and complex steps of PyTorch and CuPy calls run as that library's
  matrix product (cuBLAS) on strided views of the same memory
  (:class:`~einjit.schedule_cuda.LibraryGemm`, :mod:`einjit.device_arrays`).
* Kernels launch on the operands' library's current stream, without synchronising.  A
  repeated call with the same operand signature (kinds, devices, shapes, strides,
  dtypes) skips validation and planning: a bound call (``_Bound``) takes the flat views,
  allocates the result and launches.
* Mixing host arrays with device arrays, or operands on different devices, is an error.
  Python numbers may join device operands (they are copied in).
* A body and a reduction other than the sum (``einjit.compile(..., reduce=...)``, a
  :class:`~einjit.planner.Fold`) run the same way: validated by
  :func:`einjit.engine.prepare_fold` (the result dtype follows the body, a ``max`` or
  ``min`` over zero elements is numpy's ValueError), planned with the fold, every
  mapping folding with the reduction's operator and identity.

>>> on_device(1.0), on_device([1, 2])
(False, False)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import cache, cuda_launch, engine, schedule_cuda
from .body import compile_errors
from .device_arrays import (
    Arrays,
    arrays_for,
    flat_host,
    is_simulated,
    kind_of,
    resolved,
    span,
)
from .ir import Kernel, Plan, Step
from .parser import split_arguments
from .planner import DEFAULT_FOLD, Fold, make_plan
from .schedule_cuda import (GpuSchedule, Layout, LibraryGemm, intermediate_layout, merge_indices,
                            schedule_gpu)
from .views import c_strides, view_geometry

__all__ = ["CudaPlan", "ScheduledStep", "clear_cache", "einsum", "on_device", "schedule_call",
           "wants_device", "warm"]

_NUMBERS = (bool, int, float, complex)

def on_device(x: Any) -> bool:
    """True when ``x`` is a device array (``__cuda_array_interface__``, or an array of
    Numba's CUDA simulator)."""
    if type(x) is np.ndarray or isinstance(x, _NUMBERS + (str, list, tuple)):
        return False
    kind = kind_of(x)
    if kind == "torch":
        return bool(x.is_cuda)  # torch's __cuda_array_interface__ raises for host tensors
    if kind == "cupy":
        return True
    if is_simulated(x):
        return True
    try:
        return hasattr(x, "__cuda_array_interface__")
    except Exception:  # noqa: BLE001 (a property that raises: not a device array)
        return False


def wants_device(operands: Sequence[Any], target: str | None) -> bool:
    """Whether a call runs on the CUDA target; validates ``target=``.

    ``None`` chooses the device when an operand is on it; ``"cpu"`` with a device operand
    is an error.

    >>> wants_device(("ij->", np.ones((2, 2))), None), wants_device(("i->", [1]), "cuda")
    (False, True)
    >>> wants_device(("i->", [1]), "gpu")
    Traceback (most recent call last):
    ...
    ValueError: einsum: target must be None, 'cpu' or 'cuda' (got 'gpu')
    """
    if target not in (None, "cpu", "cuda"):
        raise ValueError(f"einsum: target must be None, 'cpu' or 'cuda' (got {target!r})")
    if target == "cuda":
        return True
    device = any(on_device(op) for op in operands)
    if device and target == "cpu":
        raise TypeError("einsum: target='cpu' but an operand is a device array; copy it to "
                        "the host first, or leave target=None to compute on its device")
    return device


def _cuda() -> Any:
    """``numba.cuda``, checked to have a device (or the simulator)."""
    from numba import cuda

    if not cuda.is_available():
        raise RuntimeError("einsum: target='cuda' needs a CUDA GPU and driver "
                           "(numba.cuda.is_available() is False); set "
                           "NUMBA_ENABLE_CUDASIM=1 to run the kernels on Numba's simulator")
    return cuda


def _simulator(cuda: Any) -> bool:
    return cuda.jit.__module__.startswith("numba.cuda.simulator")


def _target_key(cuda: Any) -> str:
    """The cache target: the device's compute capability (kernels differ per arch)."""
    if _simulator(cuda):
        return "cuda-simulator"
    major, minor = cuda.get_current_device().compute_capability
    return f"cuda-sm{major}{minor}"


# --------------------------------------------------------------------------- flat views

@dataclass(frozen=True)
class _Geometry:
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # elements
    dtype: np.dtype


def _geometry(x: Any) -> _Geometry:
    if is_simulated(x):
        a = x._ary
        return _Geometry(a.shape, tuple(s // a.itemsize for s in a.strides), a.dtype)
    cai = x.__cuda_array_interface__
    dtype = np.dtype(cai["typestr"])
    shape = tuple(int(n) for n in cai["shape"])
    strides = cai.get("strides")
    if strides is None:
        return _Geometry(shape, c_strides(shape), dtype)
    if any(s % dtype.itemsize for s in strides):
        raise ValueError(f"einsum: a device operand has strides {tuple(strides)} that are not "
                         f"multiples of its item size {dtype.itemsize}")
    return _Geometry(shape, tuple(s // dtype.itemsize for s in strides), dtype)


def _canonical(geo: _Geometry, labels: tuple[str, ...], extent: dict[str, int]
               ) -> tuple[int, ...]:
    """Strides of the canonical view (distinct labels: diagonals add their strides,
    broadcast axes get 0), in order of first appearance, as :mod:`einjit.views` makes."""
    stride: dict[str, int] = {}
    for label, n, s in zip(labels, geo.shape, geo.strides):
        s = s if n == extent[label] else 0
        stride[label] = stride.get(label, 0) + s
    return tuple(stride.values())


# --------------------------------------------------------------------------- compiled plans

@dataclass(frozen=True)
class _StepRun:
    """How one planned step runs: the values it reads and writes (the plan's numbering),
    its result's size, and its kernels with their launch configurations (or, for a
    :class:`~einjit.schedule_cuda.LibraryGemm`, the Python function that calls the
    array library's matrix product)."""

    args: tuple[int, ...]
    result: int
    count: int                      # elements of the result
    dtype: np.dtype                 # the result's dtype
    scratch: int                    # partial sums between two kernels, or 0
    scratch_dtype: np.dtype
    kernels: tuple[tuple[Any, schedule_cuda.Launch], ...]  # (kernel, launch), in order
    configured: tuple[Any, ...]     # the same kernels configured for the default stream
    library: bool = False           # kernels[0][0] is a library GEMM function
    # Once the configured kernels have run: one entry, their direct launchers (None for
    # a kernel not launched), or () where this Numba has none (see einjit.cuda_launch).
    direct: list[tuple[Any, ...]] = field(default_factory=list)

    def run(self, arrays: Arrays, values: dict[int, Any], target: Any, stream: Any) -> None:
        if self.library:
            self.kernels[0][0](arrays, *[values[a] for a in self.args], target)
            return
        flats = [values[a] for a in self.args]
        if stream is None and self.direct and self.direct[0]:
            if self._run_direct(arrays, flats, target):
                return
        self._run_numba(arrays, flats, target, stream)
        if stream is None and not self.direct:
            built = tuple(None if fn is None else cuda_launch.direct(fn)
                          for fn in self.configured)
            usable = all(b is not None for b, fn in zip(built, self.configured) if fn is not None)
            self.direct.append(built if usable else ())

    def _run_direct(self, arrays: Arrays, flats: Sequence[Any], target: Any) -> bool:
        """Launch through the direct launchers; False (nothing launched) when an array
        is empty (Numba's own launch handles those)."""
        pointers = [arrays.pointer(f) for f in flats]
        last = arrays.pointer(target)
        if last[1] == 0 or any(p[1] == 0 for p in pointers):
            return False
        self.launch(arrays, pointers, last)
        return True

    def launch(self, arrays: Arrays, pointers: Sequence[cuda_launch.Pointer],
               last: cuda_launch.Pointer) -> None:
        """Launch through the direct launchers (``self.direct[0]``, none of the arrays
        empty): the step's arguments at ``pointers``, its result at ``last``."""
        launchers = self.direct[0]
        if self.scratch:
            held = arrays.empty(self.scratch, self.scratch_dtype)  # alive until launched
            part = arrays.pointer(held)
            if launchers[0] is not None:
                launchers[0]([*pointers, part])
            if launchers[1] is not None:
                launchers[1]([part, last])
        elif launchers[0] is not None:
            launchers[0]([*pointers, last])

    def _run_numba(self, arrays: Arrays, flats: Sequence[Any], target: Any, stream: Any
                   ) -> None:
        """Launch through Numba's configured kernels."""
        args = [arrays.kernel_arg(f) for f in flats]
        target = arrays.kernel_arg(target)
        if stream is None:
            launchers = self.configured
        else:
            launchers = tuple(fn[launch.grid, launch.block, stream] if launch.grid else None
                              for fn, launch in self.kernels)
        if self.scratch:  # from the library's allocator (a pool: no cudaMalloc per call)
            held = arrays.empty(self.scratch, self.scratch_dtype)  # alive until launched
            part = arrays.kernel_arg(held)
            if launchers[0] is not None:
                launchers[0](*args, part)
            if launchers[1] is not None:
                launchers[1](part, target)
        elif launchers[0] is not None:
            launchers[0](*args, target)


@dataclass
class CudaPlan:
    """A plan with every step scheduled for the device, rendered and loaded."""

    plan: Plan
    schedules: tuple[GpuSchedule, ...]
    sources: tuple[str, ...]
    functions: tuple[tuple[Callable[..., Any], ...], ...]
    runs: tuple[_StepRun, ...] = ()


_PLANS: dict[Hashable, CudaPlan] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the compiled CUDA plans of this process (the disk cache stays)."""
    with _lock:
        _PLANS.clear()
        _FAST.clear()


@dataclass(frozen=True)
class ScheduledStep:
    """One planned step on the device: its kernel (indices merged where every array
    walks them as one), schedule and rendered source."""

    step: Step
    kernel: Kernel
    schedule: GpuSchedule
    source: str


def schedule_call(call: engine.Call, inputs: Sequence[Layout], output: Layout, library: bool
                  ) -> tuple[Plan, tuple[ScheduledStep, ...]]:
    """Plan a validated call for the device, then schedule and render each step
    (nothing is compiled: :func:`einjit.explain` shows this with ``target="cuda"``).

    ``inputs`` and ``output`` lay the operands and the result out in flat memory;
    ``library``: GEMM-shaped steps may use the arrays' library's matrix product.  A
    small call of several operands is planned as one kernel (``Policy.fuse_work``);
    intermediates are laid out by :func:`~einjit.schedule_cuda.intermediate_layout`.
    """
    from .codegen import cuda as render

    size = call.spec.size
    optimize = call.optimize
    if (optimize is engine.DEFAULT_OPTIMIZE and call.fold.default and len(call.views) > 2
            and math.prod(size.values()) * len(call.views) <= schedule_cuda.POLICY.fuse_work):
        optimize = False  # one launch: less than the launches a path of steps would cost
    plan = make_plan(call.labels, call.spec.output, size, [v.dtype.name for v in call.views],
                     call.arith, optimize, fold=call.fold)
    layouts: dict[int, Layout] = dict(enumerate(inputs))
    steps = []
    for i, step in enumerate(plan.steps):
        kernel = step.kernel
        if i == len(plan.steps) - 1:
            out = output
        else:
            out = intermediate_layout(kernel, [layouts[a] for a in step.args], library=library)
        layouts[step.result] = out
        kernel, ins, out = merge_indices(kernel, [layouts[a] for a in step.args], out)
        sched = schedule_gpu(kernel, ins, out, library=library)
        source = render.render_module(kernel, sched, f"{plan.equation} step {kernel.name}")
        steps.append(ScheduledStep(step, kernel, sched, source))
    return plan, tuple(steps)


def _build(call: engine.Call, inputs: Sequence[Layout], output: Layout, target: str,
           library: bool) -> CudaPlan:
    from .codegen import cuda as render

    start = time.perf_counter()
    plan, scheduled = schedule_call(call, inputs, output, library)
    schedules, sources, functions, runs = [], [], [], []
    for planned in scheduled:
        step, kernel, sched, source = (planned.step, planned.kernel, planned.schedule,
                                       planned.source)
        fns = tuple(cache.load_module_function(source, name, target=target)
                    for name in render.kernel_names(kernel, sched))
        launches = [sched.mapping.launch]
        if sched.scratch:
            launches.append(sched.mapping.finish)  # type: ignore[union-attr]
        kernels = tuple(zip(fns, launches))
        on_library = isinstance(sched.mapping, LibraryGemm)
        runs.append(_StepRun(
            tuple(step.args), step.result,
            math.prod(kernel.extent[lb] for lb in kernel.output.indices),
            np.dtype(kernel.output.dtype), sched.scratch, np.dtype(kernel.accumulate), kernels,
            () if on_library else tuple(fn[launch.grid, launch.block] if launch.grid else None
                                        for fn, launch in kernels), on_library))
        schedules.append(sched)
        sources.append(source)
        functions.append(fns)
    cache.STATS.compile_seconds += time.perf_counter() - start
    return CudaPlan(plan, tuple(schedules), tuple(sources), tuple(functions), tuple(runs))


def _execute(compiled: CudaPlan, arrays: Arrays, flats: Sequence[Any], final: Any) -> None:
    """Run every step in order on the adapter's stream; intermediates are new flat
    arrays of the call's kind."""
    stream = arrays.stream()
    values: dict[int, Any] = dict(enumerate(flats))
    last = len(compiled.runs) - 1
    for i, step in enumerate(compiled.runs):
        target = final if i == last else arrays.empty(step.count, step.dtype)
        step.run(arrays, values, target, stream)
        values[step.result] = target


# --------------------------------------------------------------------------- results

def _device_id(x: Any) -> int | None:
    kind = kind_of(x)
    if kind == "torch":
        return x.device.index
    if kind == "cupy":
        return int(x.device.id)
    return None


def out_strides(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a new array whose axes lie in memory in order ``axes``."""
    inner = c_strides([shape[a] for a in axes])
    strides = [0] * len(shape)
    for pos, a in enumerate(axes):
        strides[a] = inner[pos]
    return tuple(strides)


# --------------------------------------------------------------------------- einsum

def einsum(*operands: Any, out: Any = None, dtype: Any = None, order: str = "K",
           casting: str = "safe", optimize: Any = engine.DEFAULT_OPTIMIZE,
           plans: dict[Hashable, CudaPlan] | None = None, fold: Fold = DEFAULT_FOLD,
           body: Callable[..., Any] | None = None) -> Any:
    """:func:`einjit.einsum` on the CUDA device (see the module docstring).

    ``plans`` is the compiled-plan cache to use (default: this module's).  ``fold``
    replaces the sum of products by a body and a reduction, ``body`` being the Python
    function its body was translated from (it decides the result dtype, see
    :func:`einjit.body.body_dtypes`).
    """
    how = _Fold(fold, body)
    key: Hashable = None
    if plain(operands, out, dtype, order, casting):
        key = _fast_key(operands, None if fold.default else how, optimize)
        result = _run_bound(key, operands)
        if result is not MISS:
            return result
    equation, arrays = split_arguments(operands)
    arrays = [resolved(a) for a in arrays]
    if not fold.default and (dtype is not None or casting != "safe"):
        raise TypeError("einsum: dtype= and casting= apply to plain einsums; with a body or "
                        "a reduction the result dtype follows the body (cast inside it)")
    device = [on_device(a) for a in arrays]
    if any(device):
        for k, (a, d) in enumerate(zip(arrays, device)):
            if not d and not isinstance(a, _NUMBERS):
                j = device.index(True)
                raise TypeError(
                    f"einsum: operand {k} ({type(a).__name__}) is on the host but operand {j} "
                    f"({type(arrays[j]).__name__}) is a device array; move them to the same "
                    "place (numpy operands alone are copied to the device with target='cuda')")
        ids = {i for i in (_device_id(a) for a, d in zip(arrays, device) if d) if i is not None}
        if len(ids) > 1:
            raise ValueError(f"einsum: the device operands are on different devices "
                             f"{sorted(ids)}; copy them to one device first")
        if out is not None and not on_device(out):
            raise TypeError("einsum: out= must be a device array when the operands are on "
                            f"the device (got {type(out).__name__})")
        device_id = ids.pop() if ids else None
    cuda = _cuda()
    if any(device):
        gpu = (None if device_id is None or _simulator(cuda) or len(cuda.gpus) == 1
               else cuda.gpus[device_id])
        bound = _bind(cuda, equation, arrays, device, out, dtype, order, casting, optimize,
                      plans, how, gpu)
        if key is not None and out is None:
            _FAST[key] = bound
        return bound(arrays, out)
    return _einsum_host(cuda, equation, arrays, out, dtype, order, casting, optimize, plans,
                        how)


@dataclass(frozen=True)
class _Fold:
    """A call's body and reduction, with the function the body came from."""

    fold: Fold
    fn: Callable[..., Any] | None

    def prepare(self, equation: Any, arrays: Sequence[Any], out: Any, dtype: Any, order: str,
                casting: str, optimize: Any) -> engine.Call:
        """The validated call, by the CPU pipeline's rules (:mod:`einjit.engine`)."""
        if self.fold.default:
            return engine.prepare_operands(equation, arrays, out, dtype, order, casting,
                                           optimize)
        return engine.prepare_fold(equation, arrays, out, self.fold, self.fn, optimize, order)

    def run(self, compiled: CudaPlan, arrays: Arrays, flats: Sequence[Any], final: Any
            ) -> None:
        """:func:`_execute`; Numba's failure to compile a body names the function."""
        if self.fn is None:  # no body to name (and no context manager per call)
            _execute(compiled, arrays, flats, final)
            return
        with compile_errors(self.fn, "einsum", "the CUDA target with these operands"):
            _execute(compiled, arrays, flats, final)


def _lookup(call: engine.Call, inputs: Sequence[Layout], output: Layout, cuda: Any,
            plans: dict[Hashable, CudaPlan] | None, library: bool) -> CudaPlan:
    """The compiled plan (``library``: GEMM steps may call the arrays' matrix product)."""
    target = _target_key(cuda)
    opt = call.optimize if isinstance(call.optimize, (str, bool)) else repr(call.optimize)
    key = (call.spec, tuple(call.labels), tuple(v.dtype.str for v in call.views), tuple(inputs),
           output, call.arith, opt, schedule_cuda.POLICY, target, call.fold, library)
    table = _PLANS if plans is None else plans
    compiled = table.get(key)
    if compiled is not None:
        cache.STATS.hits += 1
        return compiled
    with _lock:
        compiled = table.get(key) or _PLANS.get(key)
        if compiled is None:
            cache.STATS.misses += 1
            compiled = _build(call, inputs, output, target, library)
            _PLANS[key] = compiled
        table[key] = compiled
    return compiled


def _einsum_host(cuda: Any, equation: Any, arrays: Sequence[Any], out: Any, dtype: Any,
                 order: str, casting: str, optimize: Any,
                 plans: dict[Hashable, CudaPlan] | None, how: _Fold) -> Any:
    """numpy operands: copy in, compute, copy the result out."""
    call = how.prepare(equation, arrays, out, dtype, order, casting, optimize)
    if call.view is not None:
        return call.view[()] if call.view.ndim == 0 and call.scalar else call.view
    if call.arith.backend != "numba":
        raise TypeError(f"einsum: target='cuda' computes on bool, integer, float and complex "
                        f"numbers, not {call.result}")
    flats, inputs = [], []
    for v in call.views:
        strides = tuple(s // v.itemsize for s in v.strides)
        low, count = span(v.shape, strides)
        flats.append(cuda.to_device(np.ascontiguousarray(flat_host(v, v.shape, strides, low,
                                                                    count))))
        inputs.append(Layout(-low, strides))
    shape = tuple(call.spec.size[lb] for lb in call.spec.output)
    strides = out_strides(shape, call.order)
    count = int(np.prod(shape, dtype=np.int64))
    compute = np.dtype(call.arith.compute)
    final = cuda.device_array(count, dtype=compute)
    arrays = arrays_for(cuda, final)
    compiled = _lookup(call, inputs, Layout(0, strides), cuda, plans, arrays.matrix_product)
    how.run(compiled, arrays, flats, final)
    host = final.copy_to_host()
    result = np.ndarray(shape, compute, buffer=host,
                        strides=tuple(s * compute.itemsize for s in strides))
    if out is not None:
        np.copyto(out, result, casting="unsafe")
        return out
    if result.dtype != call.result:
        result = result.astype(call.result, order="K")
    return result[()] if result.ndim == 0 and call.scalar else result


def _signature(arrays: Sequence[Any]) -> tuple[Any, ...] | None:
    """A cheap key for the operands' kinds, devices, shapes, strides and dtypes, or None
    when one is not a device array (a number, a host array)."""
    sig = []
    for x in arrays:
        t = type(x)
        kind = kind_of(x)
        if kind == "torch":
            if not x.is_cuda or x.is_conj() or x.is_neg():  # lazy views: the slow path
                return None
            sig.append((t, x.dtype, x.shape, x.stride(), x.get_device()))
        elif kind == "cupy":
            sig.append((t, x.dtype, x.shape, x.strides, x.device.id))
        elif is_simulated(x):
            a = x._ary
            sig.append((t, a.dtype, a.shape, a.strides))
        elif t is np.ndarray or isinstance(x, _NUMBERS + (str, list, tuple)):
            return None
        else:
            try:
                cai = x.__cuda_array_interface__
            except Exception:  # noqa: BLE001 (not a device array)
                return None
            sig.append((t, cai["typestr"], tuple(cai["shape"]), cai.get("strides")))
    return tuple(sig)


#: (equation, fold, optimize, operand signature) -> the bound call (device operands only).
_FAST: dict[Hashable, _Bound] = {}

#: What :func:`fast_call` returns when the call has no bound entry yet.
MISS = object()


def plain(operands: Sequence[Any], out: Any, dtype: Any, order: str, casting: str) -> bool:
    """Whether a call may have a bound entry: an equation string first, and no out=,
    dtype=, order= or casting=."""
    return (out is None and dtype is None and order == "K" and casting == "safe"
            and bool(operands) and type(operands[0]) is str)


def _fast_key(operands: Sequence[Any], fold: Any, optimize: Any) -> Hashable:
    """The key of a call in :data:`_FAST` (``operands[0]`` is the equation), or None
    when it has none (an operand that is not a device array, an unhashable path)."""
    sig = _signature(operands[1:])
    if sig is None:
        return None
    key = (operands[0], fold, None if optimize is engine.DEFAULT_OPTIMIZE else optimize, sig)
    try:
        hash(key)
    except TypeError:  # an unhashable optimize= path
        return None
    return key


def _run_bound(key: Hashable, operands: Sequence[Any]) -> Any:
    """The result of the call bound under ``key`` (for the current policy), or MISS."""
    bound = _FAST.get(key) if key is not None else None
    if bound is None or bound.policy is not schedule_cuda.POLICY:
        return MISS
    cache.STATS.hits += 1
    return bound(operands[1:])


def fast_call(operands: Sequence[Any], optimize: Any) -> Any:
    """The result of a :func:`plain` call (with the default body) that this process has
    bound already, or :data:`MISS`: the engine asks this
    before looking for device operands, so that a repeated call on device arrays skips
    that walk (a few microseconds of a call that costs about 25)."""
    return _run_bound(_fast_key(operands, None, optimize), operands)


@dataclass(frozen=True)
class _Operand:
    """One operand of a bound call: a device array's geometry and span, or the value of
    a Python number (copied in on each call)."""

    geo: _Geometry | None
    low: int = 0
    count: int = 0
    value: np.ndarray | None = None


@dataclass(frozen=True)
class _Bound:
    """A validated, planned and compiled device call for one operand signature: what is
    left to do per call is taking flat views, allocating the result and launching."""

    cuda: Any                       # numba.cuda (or its simulator)
    policy: schedule_cuda.Policy
    how: _Fold
    gpu: Any                        # the device's context manager, or None
    view: tuple[tuple[int, ...], tuple[int, ...], np.dtype] | None  # result is a view
    compiled: CudaPlan | None
    operands: tuple[_Operand, ...]
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    compute: np.dtype

    def __call__(self, arrays: Sequence[Any], out: Any = None) -> Any:
        if self.gpu is None:
            return self._run(arrays, out)
        with self.gpu:
            return self._run(arrays, out)

    def _run(self, operands: Sequence[Any], out: Any) -> Any:
        first = next(a for a, op in zip(operands, self.operands) if op.geo is not None)
        arrays = arrays_for(self.cuda, first)
        if self.view is not None:
            return arrays.strided(first, *self.view)
        assert self.compiled is not None
        if out is None and len(self.compiled.runs) == 1 and arrays.stream() is None:
            result = self._run_direct(arrays, operands, self.compiled.runs[0])
            if result is not None:
                return result
        flats = [arrays.flat(a, op.geo.dtype, op.low, op.count) if op.geo is not None
                 else _number(arrays, op.value) for a, op in zip(operands, self.operands)]
        if out is not None:
            geo = _geometry(out)
            low, count = span(geo.shape, geo.strides)
            self.how.run(self.compiled, arrays, flats,
                         arrays.flat(out, geo.dtype, low, count))
            return out
        result = arrays.empty(math.prod(self.shape), self.compute)
        self.how.run(self.compiled, arrays, flats, result)
        return arrays.strided(result, self.shape, self.strides, self.compute)

    def _run_direct(self, arrays: Arrays, operands: Sequence[Any], step: _StepRun) -> Any:
        """A one-step plan whose kernels launch directly: the operands' addresses taken
        without flat views (a view costs a PyTorch tensor over a microsecond); None where
        that does not apply (not launched yet, a number operand, an empty array)."""
        if step.library or not (step.direct and step.direct[0]):
            return None
        pointers = []
        for a, op in zip(operands, self.operands):
            if op.geo is None or op.count == 0:
                return None
            size = op.geo.dtype.itemsize
            pointers.append((arrays.address(a) + op.low * size, op.count, size))
        count = math.prod(self.shape)
        if count == 0:
            return None
        result = arrays.empty(count, self.compute)
        step.launch(arrays, [pointers[k] for k in step.args], arrays.pointer(result))
        return arrays.strided(result, self.shape, self.strides, self.compute)


def _number(arrays: Arrays, value: np.ndarray) -> Any:
    """A Python number's one-element flat array of the call's kind."""
    flat = arrays.empty(1, value.dtype)
    arrays.kernel_arg(flat).copy_to_device(value)
    return flat


def _bind(cuda: Any, equation: Any, arrays: Sequence[Any], device: Sequence[bool], out: Any,
          dtype: Any, order: str, casting: str, optimize: Any,
          plans: dict[Hashable, CudaPlan] | None, how: _Fold, gpu: Any) -> _Bound:
    """Validate, plan and compile a call on device operands (the result is the operands'
    kind of array; see the module docstring)."""
    geos: list[_Geometry | None] = []
    stand_ins: list[Any] = []
    for a, d in zip(arrays, device):
        if d:
            geo = _geometry(a)
            geos.append(geo)
            stand_ins.append(np.broadcast_to(np.zeros((), dtype=geo.dtype), geo.shape))
        else:
            geos.append(None)
            stand_ins.append(a)
    call = how.prepare(equation, stand_ins, None, dtype, order, casting, optimize)
    first = next(a for a, d in zip(arrays, device) if d)
    arrays_in, arrays = arrays, arrays_for(cuda, first)
    policy = schedule_cuda.POLICY
    if call.view is not None:  # numpy answers with a view: so does the device
        geo = geos[0]
        if geo is None:  # pragma: no cover - a one-operand call has its device operand first
            raise TypeError("einsum: the operand is not a device array")
        shape, strides = view_geometry(geo.shape, geo.strides, call.spec.inputs[0],
                                       call.spec.output)
        return _Bound(cuda, policy, how, gpu, (shape, strides, geo.dtype), None,
                      (_Operand(geo),), (), (), geo.dtype)
    if call.arith.backend != "numba" or call.arith.compute != call.arith.result:
        raise TypeError(f"einsum: the CUDA target does not compute {call.result} results "
                        "yet (float16, long double and object arrays run on the CPU)")
    size = call.spec.size
    operands, inputs = [], []
    for geo, view, labels, term in zip(geos, call.views, call.labels, call.spec.inputs):
        if geo is None:  # a Python number: copied in on each call
            operands.append(_Operand(None, value=np.asarray(view).reshape(1)))
            inputs.append(Layout(0, tuple(0 for _ in labels)))
            continue
        if view.dtype != geo.dtype:
            raise TypeError(f"einsum: a {geo.dtype} device operand would need converting to "
                            f"{view.dtype} first; the CUDA target does not convert on the device")
        low, count = span(geo.shape, geo.strides)
        operands.append(_Operand(geo, low, count))
        inputs.append(Layout(-low, _canonical(geo, term, size)))
    shape = tuple(size[lb] for lb in call.spec.output)
    compute = np.dtype(call.arith.compute)
    if out is not None:
        ogeo = _geometry(out)
        if ogeo.shape != shape or ogeo.dtype != compute:
            raise TypeError(f"einsum: out= must have shape {shape} and dtype {compute} on the "
                            f"device (got {ogeo.shape} and {ogeo.dtype})")
        output = Layout(-span(ogeo.shape, ogeo.strides)[0], ogeo.strides)
    else:
        output = Layout(0, out_strides(shape, call.order))
    # The library's matrix product takes its own arrays only: not with operands (or an
    # out=) of several kinds, whose flat views are Numba device arrays.
    library = arrays.matrix_product and all(
        kind_of(a) == arrays.kind for a in [*arrays_in, out] if a is not None and on_device(a))
    compiled = _lookup(call, inputs, output, cuda, plans, library)
    return _Bound(cuda, policy, how, gpu, None, compiled, tuple(operands), shape,
                  output.strides, compute)


def warm(equation: str, shapes: Sequence[Sequence[int]], dtype: Any = "float64",
         optimize: Any = engine.DEFAULT_OPTIMIZE) -> bool:
    """Compile the CUDA kernels ``einsum(equation, *arrays, target="cuda")`` needs for
    arrays of these shapes and dtype (running them once on zeros); True when a plan was
    built, False when it was already compiled in this process."""
    operands = [np.zeros(tuple(s), dtype=dtype) for s in shapes]
    before = cache.STATS.misses
    einsum(equation, *operands, optimize=optimize)
    return cache.STATS.misses > before
