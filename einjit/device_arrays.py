"""The array libraries the CUDA target meets, behind one small interface.

A device call's operands are PyTorch CUDA tensors, CuPy arrays, Numba device arrays (or
anything else with ``__cuda_array_interface__``), or the arrays of Numba's CUDA
simulator.  :func:`arrays_for` picks the adapter for the call's first device operand;
:mod:`einjit.cuda` runs a plan through it:

* ``flat(x, dtype, low, count)``: a 1-D array of the operand's kind over its memory,
  ``count`` elements from ``low`` elements before element (0, ..., 0);
* ``empty(count, dtype)``: a new flat array of that kind (results and intermediates);
* ``kernel_arg(flat)``: the same memory as a Numba device array, for a kernel launch
  (no stream synchronisation: the launches go to :meth:`Arrays.stream`);
* ``pointer(flat)``: its (address, element count, item size), for a launch that skips
  Numba's argument handling (:mod:`einjit.cuda_launch`);
* ``strided(base, shape, strides, dtype, offset)``: the result the user gets, a view of
  the operand's kind;
* ``matmul(a, b, out)`` and ``view``/``copy``: the library's batched matrix product
  (cuBLAS under PyTorch and CuPy, numpy on the simulator) for steps the scheduler made
  a :class:`~einjit.schedule_cuda.LibraryGemm`.  Plain Numba device arrays have none
  (``matrix_product`` is False): their GEMM steps run as tiled kernels.

Strides and offsets are in elements.

>>> kind_of_type(int), kind_of_type(type(np.ones(1)))
('numba', 'numba')
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Arrays", "arrays_for", "flat_host", "is_simulated", "kind_of", "kind_of_type",
           "resolved", "span"]

#: Array types met so far -> "torch", "cupy" or "numba" (all other kinds).
_KINDS: dict[type, str] = {}


def kind_of_type(t: type) -> str:
    """``"torch"``, ``"cupy"`` or ``"numba"`` (any other array) for a type."""
    kind = _KINDS.get(t)
    if kind is None:
        module = t.__module__.split(".")[0]
        kind = _KINDS[t] = module if module in ("torch", "cupy") else "numba"
    return kind


def kind_of(x: Any) -> str:
    """:func:`kind_of_type` of ``type(x)``."""
    return _KINDS.get(type(x)) or kind_of_type(type(x))


def resolved(x: Any) -> Any:
    """``x``, or for a PyTorch tensor whose conjugation or negation is a lazy bit (``.conj()``
    of a complex tensor, say) the tensor with those values in memory: kernels read memory."""
    if kind_of(x) == "torch" and (x.is_conj() or x.is_neg()):
        return x.resolve_conj().resolve_neg()
    return x


def is_simulated(x: Any) -> bool:
    """Whether ``x`` is an array of Numba's CUDA simulator."""
    t = type(x)
    return t.__name__ == "FakeCUDAArray" and t.__module__.startswith("numba.cuda.simulator")


def span(shape: Sequence[int], strides: Sequence[int]) -> tuple[int, int]:
    """``(low, count)``: the lowest element offset reached and how many elements the
    array's memory spans from there.

    >>> span((3, 4), (4, 1)), span((3,), (-2,)), span((0, 5), (5, 1))
    ((0, 12), (-4, 5), (0, 0))
    """
    if any(n == 0 for n in shape):
        return 0, 0
    low = sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
    return low, high - low + 1


def flat_host(a: np.ndarray, shape: Sequence[int], strides: Sequence[int], low: int,
              count: int) -> np.ndarray:
    """A 1-D view of ``count`` elements of ``a``'s memory from its lowest address."""
    if count == 0:
        return np.empty(0, dtype=a.dtype)
    corner = tuple(slice(n - 1, n) if s < 0 else slice(0, 1) for n, s in zip(shape, strides))
    start = a[corner] if a.ndim else a.reshape(1)
    return np.lib.stride_tricks.as_strided(start, (count,), (a.itemsize,))


#: (address, elements, dtype, device) -> a Numba device array over that memory that owns
#: nothing: importing a foreign array costs Numba tens of microseconds (a context check,
#: a new array type), more than a small kernel runs, so launches reuse the views of
#: memory seen before (a caching allocator hands the same blocks out again and again).
#: A view is only used while the array it was taken from is alive (during a launch).
_VIEWS: dict[tuple[int, int, str, int | None], Any] = {}
_VIEWS_MAX = 512


def _numba_view(cuda: Any, address: int, count: int, dtype: np.dtype,
                device: int | None) -> Any:
    """A 1-D Numba device array of ``count`` elements at ``address`` on ``device``
    (None: the current one), imported without synchronising any stream; the caller
    keeps the memory alive while the view is used."""
    if count == 0:
        return cuda.device_array(0, dtype=dtype)
    key = (address, count, dtype.str, device)
    view = _VIEWS.get(key)
    if view is None:
        if len(_VIEWS) >= _VIEWS_MAX:
            try:
                _VIEWS.pop(next(iter(_VIEWS)), None)  # the oldest
            except (RuntimeError, StopIteration):  # another thread changed it meanwhile
                pass
        desc = {"shape": (count,), "strides": None, "typestr": dtype.str, "version": 3,
                "data": (address, False)}
        view = _VIEWS[key] = cuda.from_cuda_array_interface(desc, owner=None, sync=False)
    return view


def _device_of(x: Any) -> int | None:
    """The device a foreign array lives on, where it says so cheaply (Numba's own
    arrays: their context's device), else None."""
    gpu_data = getattr(x, "gpu_data", None)
    context = getattr(gpu_data, "context", None)
    device = getattr(context, "device", None)
    return getattr(device, "id", None)


_LIBRARIES: dict[str, Any] = {}


def _library(name: str) -> Any:
    """The imported module ``name`` (looked up once: an adapter is made per call)."""
    module = _LIBRARIES.get(name)
    if module is None:
        module = _LIBRARIES[name] = importlib.import_module(name)
    return module


_STREAMS: dict[int, Any] = {}
_UNSET = object()


def _numba_stream(cuda: Any, handle: int | None) -> Any:
    """Numba's stream for a ``__cuda_array_interface__`` stream handle (None: default)."""
    if not handle or handle == 1:  # 1: the legacy default stream in the interface
        return None
    if handle == 2:
        return cuda.per_thread_default_stream()
    stream = _STREAMS.get(handle)
    if stream is None:
        stream = _STREAMS[handle] = cuda.external_stream(handle)
    return stream


class Arrays:
    """Numba device arrays and other ``__cuda_array_interface__`` objects (the base
    adapter: the flat arrays are Numba device arrays, and there is no matrix product)."""

    kind = "numba"
    matrix_product = False
    module: str | None = None  # the library a subclass imports (``self.lib``)

    def __init__(self, cuda: Any, like: Any) -> None:
        self.cuda = cuda
        self.like = like
        self.lib = _library(self.module) if self.module else None
        self._stream: Any = _UNSET

    def flat(self, x: Any, dtype: np.dtype, low: int, count: int) -> Any:
        if count == 0:
            return self.cuda.device_array(0, dtype=dtype)
        address = int(x.__cuda_array_interface__["data"][0]) + low * dtype.itemsize
        return _numba_view(self.cuda, address, count, dtype, _device_of(x))

    def empty(self, count: int, dtype: np.dtype) -> Any:
        stream = self.stream()
        return self.cuda.device_array(count, dtype=dtype, stream=0 if stream is None else stream)

    def kernel_arg(self, flat: Any) -> Any:
        return flat

    def pointer(self, flat: Any) -> tuple[int, int, int]:
        """A flat array's (data address, element count, item size)."""
        return flat.device_ctypes_pointer.value or 0, flat.size, flat.dtype.itemsize

    def address(self, x: Any) -> int:
        """The device address of an operand's first element (its index 0, ...)."""
        return int(x.__cuda_array_interface__["data"][0])

    def stream(self) -> Any:
        """The stream the call's kernels launch on (None: the default stream), looked
        up once per call."""
        if self._stream is _UNSET:
            self._stream = _numba_stream(self.cuda, self._stream_handle())
        return self._stream

    def _stream_handle(self) -> int | None:
        """The library's current stream, as ``__cuda_array_interface__`` spells it."""
        return self.like.__cuda_array_interface__.get("stream")

    def strided(self, base: Any, shape: tuple[int, ...], strides: tuple[int, ...],
                dtype: np.dtype, offset: int = 0) -> Any:
        """``base`` (a flat array, or the operand a view is taken of) seen with this shape
        and element strides, starting ``offset`` elements in: the same kind of array."""
        from numba.cuda.cudadrv.devicearray import DeviceNDArray
        data = base.gpu_data
        if offset:
            data = data.view(offset * dtype.itemsize)
        return DeviceNDArray(shape, tuple(s * dtype.itemsize for s in strides), dtype,
                             gpu_data=data)

    # The matrix product (subclasses with a library).
    def view(self, flat: Any, shape: tuple[int, ...], strides: tuple[int, ...],
             offset: int) -> Any:
        raise TypeError(f"{type(self).__name__} has no matrix product")

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        raise TypeError(f"{type(self).__name__} has no matrix product")

    def copy(self, dst: Any, src: Any) -> None:
        raise TypeError(f"{type(self).__name__} has no matrix product")


_TORCH_DTYPES: dict[np.dtype, Any] = {}   # numpy dtype -> torch dtype
_NUMPY_DTYPES: dict[Any, np.dtype] = {}   # torch dtype -> numpy dtype


class TorchArrays(Arrays):
    """PyTorch CUDA tensors: flat arrays are 1-D tensor views, products ``torch.matmul``."""

    kind = "torch"
    matrix_product = True
    module = "torch"

    def _dtype(self, dtype: np.dtype) -> Any:
        t = _TORCH_DTYPES.get(dtype)
        if t is None:
            t = _TORCH_DTYPES[dtype] = self.lib.from_numpy(np.empty(0, dtype)).dtype
        return t

    def flat(self, x: Any, dtype: np.dtype, low: int, count: int) -> Any:
        if not isinstance(x, self.lib.Tensor):  # another library's operand
            return super().flat(x, dtype, low, count)
        return x.as_strided((count,), (1,), x.storage_offset() + low)

    def empty(self, count: int, dtype: np.dtype) -> Any:
        return self.lib.empty(count, dtype=self._dtype(dtype), device=self.like.device)

    def kernel_arg(self, flat: Any) -> Any:
        if not isinstance(flat, self.lib.Tensor):
            return flat
        dtype = _NUMPY_DTYPES.get(flat.dtype)
        if dtype is None:
            dtype = _NUMPY_DTYPES[flat.dtype] = np.dtype(str(flat.dtype).replace("torch.", ""))
        return _numba_view(self.cuda, flat.data_ptr(), flat.numel(), dtype, flat.get_device())

    def pointer(self, flat: Any) -> tuple[int, int, int]:
        if not isinstance(flat, self.lib.Tensor):
            return super().pointer(flat)
        return flat.data_ptr(), flat.numel(), flat.element_size()

    def address(self, x: Any) -> int:
        if not isinstance(x, self.lib.Tensor):
            return super().address(x)
        return x.data_ptr()

    def _stream_handle(self) -> int | None:
        raw = getattr(self.lib._C, "_cuda_getCurrentRawStream", None)
        if raw is not None:  # the handle alone: no Stream object (microseconds a call)
            return raw(self.like.get_device())
        return self.lib.cuda.current_stream(self.like.device).cuda_stream

    def strided(self, base: Any, shape: tuple[int, ...], strides: tuple[int, ...],
                dtype: np.dtype, offset: int = 0) -> Any:
        return base.as_strided(shape, strides, base.storage_offset() + offset)

    def view(self, flat: Any, shape: tuple[int, ...], strides: tuple[int, ...],
             offset: int) -> Any:
        return self.strided(flat, shape, strides, flat.dtype, offset)

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        if out is None:
            return self.lib.matmul(a, b)
        if out.is_contiguous():
            return self.lib.matmul(a, b, out=out)
        out.copy_(self.lib.matmul(a, b))
        return out

    def copy(self, dst: Any, src: Any) -> None:
        dst.copy_(src)


class CupyArrays(Arrays):
    """CuPy arrays: flat arrays are 1-D CuPy views, products ``cupy.matmul``."""

    kind = "cupy"
    matrix_product = True
    module = "cupy"

    def flat(self, x: Any, dtype: np.dtype, low: int, count: int) -> Any:
        if not isinstance(x, self.lib.ndarray):  # another library's operand
            return super().flat(x, dtype, low, count)
        if count == 0:
            return self.lib.empty(0, dtype=dtype)
        mem = x.data.mem  # the allocation: the flat run starts ``low`` elements before x's
        start = self.lib.cuda.MemoryPointer(mem, x.data.ptr - mem.ptr + low * dtype.itemsize)
        return self.lib.ndarray((count,), dtype, start)

    def empty(self, count: int, dtype: np.dtype) -> Any:
        with self.like.device:
            return self.lib.empty(count, dtype=dtype)

    def kernel_arg(self, flat: Any) -> Any:
        if not isinstance(flat, self.lib.ndarray):
            return flat
        return _numba_view(self.cuda, flat.data.ptr, flat.size, flat.dtype, flat.data.device_id)

    def pointer(self, flat: Any) -> tuple[int, int, int]:
        if not isinstance(flat, self.lib.ndarray):
            return super().pointer(flat)
        return flat.data.ptr, flat.size, flat.itemsize

    def address(self, x: Any) -> int:
        if not isinstance(x, self.lib.ndarray):
            return super().address(x)
        return x.data.ptr

    def _stream_handle(self) -> int | None:
        return self.lib.cuda.get_current_stream().ptr

    def strided(self, base: Any, shape: tuple[int, ...], strides: tuple[int, ...],
                dtype: np.dtype, offset: int = 0) -> Any:
        return self.lib.ndarray(shape, dtype, base.data + offset * dtype.itemsize,
                                 strides=tuple(s * dtype.itemsize for s in strides))

    def view(self, flat: Any, shape: tuple[int, ...], strides: tuple[int, ...],
             offset: int) -> Any:
        return self.strided(flat, shape, strides, flat.dtype, offset)

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        return self.lib.matmul(a, b, out=out)

    def copy(self, dst: Any, src: Any) -> None:
        dst[...] = src


class SimulatedArrays(Arrays):
    """The CUDA simulator's arrays (numpy arrays inside): products ``numpy.matmul``, so
    the library-GEMM steps run on the simulator too."""

    matrix_product = True

    def flat(self, x: Any, dtype: np.dtype, low: int, count: int) -> Any:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        a = x._ary
        strides = tuple(s // a.itemsize for s in a.strides)
        return FakeCUDAArray(flat_host(a, a.shape, strides, low, count))

    def _stream_handle(self) -> int | None:
        return None

    def strided(self, base: Any, shape: tuple[int, ...], strides: tuple[int, ...],
                dtype: np.dtype, offset: int = 0) -> Any:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return FakeCUDAArray(self.view(base, shape, strides, offset))

    def view(self, flat: Any, shape: tuple[int, ...], strides: tuple[int, ...],
             offset: int) -> np.ndarray:
        a = flat._ary
        a_strides = tuple(s // a.itemsize for s in a.strides)
        low, count = span(a.shape, a_strides)
        start = flat_host(a, a.shape, a_strides, low, count)[offset - low:] if count else a
        return np.lib.stride_tricks.as_strided(start, shape,
                                               tuple(s * a.itemsize for s in strides))

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        return np.matmul(a, b, out=out)

    def copy(self, dst: Any, src: Any) -> None:
        np.copyto(dst, src)


def arrays_for(cuda: Any, like: Any) -> Arrays:
    """The adapter for a call whose first device operand is ``like``."""
    if is_simulated(like):
        return SimulatedArrays(cuda, like)
    kind = kind_of(like)
    if kind == "torch":
        return TorchArrays(cuda, like)
    if kind == "cupy":
        return CupyArrays(cuda, like)
    return Arrays(cuda, like)
