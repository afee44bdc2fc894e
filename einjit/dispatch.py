"""The fast path for repeated calls.

A call's *signature* is everything its compiled plan and its validation depend on: the
subscripts, the keyword arguments and, per operand, the shape, strides, dtype and flags
(alignment, writeability...).  The first call with a signature goes the full way (parse, validate,
plan, compile) and leaves a :class:`Runner` behind; later calls with the same signature
skip straight to the kernels.  Only plain ``numpy.ndarray`` operands (and ``out=``)
take this path, and only when no operand needed a dtype conversion.  With ``out=``, the
signature covers ``out`` too; a runner whose last kernel writes straight into ``out``
checks that ``out`` shares no memory with an operand, and returns None when it does
(the caller then takes the full way, which computes into a temporary first).
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Callable, Hashable, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import buffers, policy
from .dtypes import narrows_to_half
from .schedule import serial_at
from .threads import Chunked
from .views import transpose_to_c

__all__ = ["signature", "with_out", "hosted", "path_key", "Runner", "FastTable",
           "entry_point", "numba_type", "VIEWS", "view_function", "remember_view"]

_MAX_ENTRIES = 4096


def signature(arrays: Sequence[Any]) -> tuple[Any, ...] | None:
    """The operands' part of a call signature (a flat tuple of each one's shape, strides,
    dtype and flags: alignment, writeability, contiguity, ownership), or None when one
    is not a plain ndarray."""
    n = len(arrays)
    if n == 2:  # the common cases, spelled out: this runs on every call
        a, b = arrays
        if type(a) is _ndarray and type(b) is _ndarray:
            return (a.shape, a.strides, a.dtype, a.flags.num,
                    b.shape, b.strides, b.dtype, b.flags.num)
        return None
    if n == 1:
        a = arrays[0]
        if type(a) is _ndarray:
            return (a.shape, a.strides, a.dtype, a.flags.num)
        return None
    if n == 3:
        a, b, c = arrays
        if type(a) is _ndarray and type(b) is _ndarray and type(c) is _ndarray:
            return (a.shape, a.strides, a.dtype, a.flags.num,
                    b.shape, b.strides, b.dtype, b.flags.num,
                    c.shape, c.strides, c.dtype, c.flags.num)
        return None
    sig: tuple[Any, ...] = ()
    for a in arrays:
        if type(a) is not _ndarray:
            return None
        sig += (a.shape, a.strides, a.dtype, a.flags.num)
    return sig


_ndarray = np.ndarray
#: Operands that numpy's einsum, and einjit's full way, take in as ``np.asarray`` makes
#: them: Python numbers, numpy scalars, nested lists and tuples, ndarray subclasses
#: (numpy's result is a plain ndarray for them too).  None of them is a device array.
_HOSTED = (int, float, complex, np.generic, list, tuple, np.ndarray)


def hosted(arrays: Sequence[Any]) -> tuple[np.ndarray, ...] | None:
    """The operands as plain ndarrays, as ``np.asarray`` makes them, where each is a
    number, a numpy scalar, a list or tuple, or an ndarray (of a subclass), so that a
    call with them has a signature; None where one is anything else (a device array, an
    object numpy would convert by its ``__array__``) or does not convert (the full way
    then reports it in numpy's order).

    >>> [a.dtype.name for a in hosted([2.0, np.float32(1), [[1, 2]], np.ones(2).view(np.matrix)])]
    ['float64', 'float32', 'int64', 'float64']
    >>> hosted([[1.0, [2.0]]]) is None
    True
    """
    if not all(isinstance(a, _HOSTED) for a in arrays):
        return None
    try:
        return tuple(a if type(a) is _ndarray else np.asarray(a) for a in arrays)
    except Exception:  # noqa: BLE001 - a ragged list, say
        return None


def path_key(optimize: Any) -> Any:
    """``optimize`` as a key of the signature's table: an explicit path given as a list
    (``["einsum_path", (0, 1)]``, as ``numpy.einsum_path`` returns it) as a tuple of
    tuples; anything else as it is (an unhashable one then has no fast path)."""
    if type(optimize) is list:
        return tuple(tuple(s) if type(s) is list else s for s in optimize)
    return optimize


def with_out(sig: tuple[Any, ...] | None, out: Any) -> tuple[Any, ...] | None:
    """A signature of operands extended with an ``out=`` array's (None when either is
    not a plain ndarray's)."""
    if sig is None or type(out) is not _ndarray:
        return None
    return sig + ("out", out.shape, out.strides, out.dtype, out.flags.num)


def keyword_key(dtype: Any, order: Any, casting: Any) -> tuple[Any, ...]:
    """The part of a call signature that ``dtype=``, ``order=`` and ``casting=`` make,
    where one is not the default: ``dtype`` with its character code, for
    ``dtype("q")`` equals ``dtype("l")`` but numpy keeps the name it was given."""
    return dtype, getattr(dtype, "char", None), order, casting


class Runner:
    """Replays one call signature: a small Python function generated for it.

    Everything the signature fixes (canonical view shapes and strides, allocations,
    kernels, the result's dtype and layout) is baked into straight-line code, so a
    repeated call costs the kernels plus a few microseconds.  ``source`` shows it.
    """

    __slots__ = ("run", "source")

    def __init__(self, call: Any, compiled: Any, arrays: Sequence[np.ndarray]) -> None:
        names: dict[str, Any] = {"ndarray": np.ndarray, "empty": np.empty,
                                 "pooled": buffers.empty,
                                 "as_strided": as_strided,
                                 "shares": np.may_share_memory, "copyto": np.copyto}
        args = ", ".join(f"a{k}" for k in range(len(arrays)))
        lines = [f"def run(arrays{'' if call.out is None else ', out'}):",
                 f"    {args}{',' if len(arrays) == 1 else ''} = arrays"]
        if call.view is not None:
            lines += _view_lines(call, arrays, names)
        else:
            lines += _kernel_lines(call, compiled, arrays, names)
        self.source = "\n".join(lines) + "\n"
        exec(compile(self.source, "<einjit runner>", "exec"), names)
        self.run = names["run"]

    @staticmethod
    def eligible(call: Any, arrays: Sequence[np.ndarray]) -> bool:
        """Whether a call can be replayed: each canonical view a view of its operand, or
        of the array its conversion made (the runner converts it again), ``out`` (if
        given) a plain ndarray."""
        if call.out is not None and type(call.out) is not np.ndarray:
            return False
        sources = [a if c is None else c[1] for a, c in zip(arrays, _converted(call))]
        return call.view is not None or all(
            v.dtype == a.dtype and (v is a or v.base is not None)
            for v, a in zip(call.views, sources))

    def __call__(self, arrays: Sequence[np.ndarray]) -> Any:
        return self.run(arrays)


#: Equations numpy answers with a view of their one operand (transposed, diagonals
#: taken), by subscripts string: a function that makes that view of any plain array of
#: the operand's dimension (see :func:`view_function`).  ``engine.einsum`` looks here
#: first for a call of one array and no keywords: 0.6-0.7 us a transpose, 1.2-1.4 us a
#: diagonal, where the signature's table took 1.6 and 1.7-2.4 (numpy 1.2-1.6 both).
#: Cleared when it grows past 4096 entries.
VIEWS: dict[str, Callable[[np.ndarray], Any]] = {}


def view_function(call: Any) -> Callable[[np.ndarray], Any] | None:
    """For a call that numpy answers with a view of its operand (one operand, no label
    summed, at least one in the output), a function of one array that makes the same
    view of any array of that dimension whose repeated labels have equal extents, and
    returns None for any other array (the full way then raises numpy's error); None for
    any other call.  The view is writeable when the array is, as numpy's.

    >>> import numpy as np, einjit
    >>> from einjit.engine import prepare
    >>> a = np.arange(24.0).reshape(2, 3, 2, 2)
    >>> call = prepare(("bcbb->cb", a))
    >>> print(view_function(call).source)
    def view(a):
        if a.ndim == 4:
            s = a.shape
            if s[0] == s[2] == s[3]:
                v = a.diagonal(0, 0, 2).diagonal(0, 1, 2)
                if a.flags.writeable:
                    v.setflags(write=True)
                return v
        return None
    <BLANKLINE>
    """
    if call.view is None or not call.spec.output:
        return None
    return _view_maker(tuple(call.spec.inputs[0]), tuple(call.spec.output))


@functools.lru_cache(maxsize=_MAX_ENTRIES)
def _view_maker(labels: tuple[str, ...], output: tuple[str, ...]) -> Callable[..., Any]:
    """:func:`view_function`'s function for an operand's labels and the output's, made
    once (the first call of an equation asks for it twice: its table and its runner)."""
    axes, diagonals = list(labels), ""
    while len(set(axes)) < len(axes):  # numpy's diagonal() puts its axis last
        p = next(k for k, lb in enumerate(axes) if axes.count(lb) > 1)
        q = axes.index(axes[p], p + 1)
        diagonals += f".diagonal(0, {p}, {q})"
        axes = [lb for k, lb in enumerate(axes) if k not in (p, q)] + [axes[p]]
    perm = tuple(axes.index(lb) for lb in output)
    transpose = ("" if perm == tuple(range(len(perm))) and diagonals
                 else ".T" if len(perm) > 1 and perm == tuple(range(len(perm)))[::-1]
                 else f".transpose({perm!r})")
    lines = ["def view(a):", f"    if a.ndim == {len(labels)}:"]
    if not diagonals:
        lines.append(f"        return a{transpose}")
    else:
        repeated = [[k for k, x in enumerate(labels) if x == lb]
                    for lb in dict.fromkeys(labels) if labels.count(lb) > 1]
        equal = " and ".join(" == ".join(f"s[{k}]" for k in ks) for ks in repeated)
        lines += ["        s = a.shape",
                  f"        if {equal}:",
                  f"            v = a{diagonals}",
                  "            if a.flags.writeable:",  # diagonal() gives a read-only view
                  "                v.setflags(write=True)",
                  f"            return v{transpose}"]
    source = "\n".join(lines + ["    return None"]) + "\n"
    names: dict[str, Any] = {}
    exec(compile(source, "<einjit view>", "exec"), names)
    fn = names["view"]
    fn.source = source
    return fn


def remember_view(subscripts: str, fn: Callable[[np.ndarray], Any]) -> None:
    """Keep ``fn`` (see :func:`view_function`) as the answer to ``subscripts``."""
    if len(VIEWS) >= _MAX_ENTRIES:
        VIEWS.clear()
    VIEWS[subscripts] = fn


def _view_lines(call: Any, arrays: Sequence[np.ndarray], names: dict[str, Any]) -> list[str]:
    make = view_function(call)
    if make is None:  # a 0-d operand: itself (a view), or its scalar
        return ["    return a0[()]" if call.scalar else "    return a0.transpose(())"]
    names["view"] = make
    return ["    return view(a0)"]


def _kernel_lines(call: Any, compiled: Any, arrays: Sequence[np.ndarray],
                  names: dict[str, Any]) -> list[str]:
    names_of: dict[int, str] = {}  # value id -> its local in the launcher
    lines = []
    for k, (a, v, c) in enumerate(zip(arrays, call.views, _converted(call))):
        name = f"a{k}"
        if c is not None:  # converted as the full way converted it, then viewed alike
            names[f"convert{k}"], a = c
            name = f"c{k}"
            lines.append(f"    {name} = convert{k}(a{k})")
        if v is a:
            names_of[k] = name  # the operand itself
        elif (a.flags.c_contiguous and v.flags.c_contiguous and v.size == a.size
              and not a.dtype.hasobject and v.ctypes.data == a.ctypes.data):
            # the operand reshaped (merged labels): ravel() 0.05 us, reshape() 0.1 us,
            # where the ndarray constructor takes 0.19 us
            lines.append(f"    v{k} = {name}.ravel()" if v.ndim == 1
                         else f"    v{k} = {name}.reshape({v.shape!r})")
        else:
            lines.append(f"    v{k} = {_strided(v, k, a, names, name)}")
    size = call.spec.size
    steps = compiled.plan.steps
    if call.direct_out:  # the last kernel writes into ``out``: never over an operand
        lines.append(f"    if {' or '.join(f'shares(out, a{k})' for k in range(len(arrays)))}:")
        lines.append("        return None")
    values: list[Any] = list(call.views)  # this call's arrays, to type each kernel's call
    narrowing = _narrowing(call, steps)
    for i, (step, fn, nest) in enumerate(zip(steps, compiled.kernels, compiled.nests)):
        if isinstance(fn, Chunked) and serial_at(nest.schedule, step.kernel, size):
            fn = fn.serial()  # a kernel generic in its sizes, on a call too small for threads
        out = step.kernel.output
        shape = tuple(size[lb] for lb in out.indices)  # the last one in memory order
        direct = call.direct_out and i == len(steps) - 1
        least = pool_least(call, steps, i)
        values.append(call.out if direct else buffers.empty(shape, out.dtype, least))
        names[f"k{i}"] = entry_point(fn, [values[a] for a in step.args + (step.result,)])
        names[f"t{i}"] = result_type(call, out.dtype) if i == len(steps) - 1 else np.dtype(
            out.dtype)
        new = (f"pooled({shape!r}, t{i}, {least})" if buffers.pooled(shape, out.dtype, least)
               else f"empty({shape!r}, t{i})")
        lines.append(f"    v{step.result} = " + ("out" if direct else new))
        lines.append(f"    k{i}({', '.join(names_of.get(a, f'v{a}') for a in step.args)}, "
                     f"v{step.result})")
    result = f"v{steps[-1].result}"
    shape, unpermute = call.reshaped
    if shape is not None:  # merged output labels: the output's own axes again
        result += f".reshape({shape!r})"
    if unpermute is not None:  # seen in the output's axis order
        result += f".transpose({unpermute!r})"
    if narrowing:
        from .float16 import narrow  # a float16 result, rounded by einjit's own kernel

        names["narrow"] = narrow
        result = f"narrow({result})"
    if call.out is not None:  # into ``out``, cast as an assignment casts
        if not call.direct_out:
            lines.append(f"    copyto(out, {result}, casting='unsafe')")
        return lines + ["    return out"]
    if not narrowing and np.dtype(steps[-1].kernel.output.dtype) != call.result:
        names["result_dtype"] = call.result
        result += ".astype(result_dtype, order='K')"
    if not call.spec.output and call.scalar:
        result += "[()]"
    return lines + [f"    return {result}"]


def _narrowing(call: Any, steps: Sequence[Any]) -> bool:
    """Whether einjit's own kernel rounds the last step's float32 array to the float16
    result (see :mod:`einjit.float16`)."""
    into = call.result if call.out is None else call.out.dtype
    return narrows_to_half(np.dtype(steps[-1].kernel.output.dtype), into) and \
        not call.direct_out


def pool_least(call: Any, steps: Sequence[Any], i: int) -> int | None:
    """``buffers.empty``'s ``least`` for the array step ``i`` writes: the default for
    the array returned, :data:`~einjit.buffers.MIN_STEP_BYTES` for one that dies in
    the call (an intermediate, or the last array where it is copied into ``out`` or
    rounded to float16)."""
    if i == len(steps) - 1 and call.out is None and not _narrowing(call, steps):
        return None
    return buffers.MIN_STEP_BYTES


def result_type(call: Any, written: str) -> np.dtype:
    """The dtype of the array the last kernel writes (``written``, a name): the call's
    result dtype itself where the two are equal, so that one of two names for a type
    comes back as given (``longlong`` where ``int64`` is ``long``, as numpy keeps it)."""
    dtype = np.dtype(written)
    return call.result if dtype == call.result else dtype


def _converted(call: Any) -> Sequence[Any]:
    """Per operand: its conversion and the array it made, or None (see ``Call``)."""
    return call.converted or (None,) * len(call.views)


def _strided(view: np.ndarray, k: int, a: np.ndarray, names: dict[str, Any],
             name: str) -> str:
    """An expression for this call's ``view`` (its shape and strides) of operand ``k``
    (``a``, the local ``name``), which starts at the operand's first element; the names
    it uses go into ``names``."""
    # A transposed C-ordered operand is seen C-ordered (see views.memory_ordered).
    perm = None if a.flags.c_contiguous or a.flags.f_contiguous else transpose_to_c(a)
    if not a.dtype.hasobject and (perm or a.flags.c_contiguous or a.flags.f_contiguous):
        # a contiguous array lends its buffer (as_strided is ~10x slower); writeable
        # when ``a`` is, like the canonical view the kernel was compiled for
        names[f"d{k}"] = a.dtype
        lender = name if perm is None else f"{name}.transpose({perm!r})"
        return f"ndarray({view.shape!r}, d{k}, {lender}, 0, {view.strides!r})"
    return f"as_strided({name}, {view.shape!r}, {view.strides!r})"


def entry_point(fn: Any, args: Sequence[np.ndarray]) -> Any:
    """The compiled code of Numba dispatcher ``fn`` for exactly these arguments' types,
    called without Numba's per-call type dispatch; ``fn`` itself when it is not a
    dispatcher or has no such overload.

    A launcher keeps the result for its signature: shape, strides, dtype and flags
    (alignment, writeability) of every operand are part of its key, so each call's
    arrays have the Numba types the overload was compiled for.  ``engine.run`` looks it
    up for each call's own arrays.
    """
    if isinstance(fn, Chunked):  # the same for the kernel each chunk calls
        return fn.specialised(args)
    overloads = getattr(fn, "overloads", None)
    if not overloads:
        return fn
    compiled = overloads.get(tuple(numba_type(a) for a in args))
    return fn if compiled is None else compiled.entry_point


def numba_type(value: Any) -> Any:
    """``numba.typeof(value)``, for a plain ndarray without the ``numpy.ma`` import that
    Numba's own makes on its first array (about 40 ms of a process's first call): the
    same ``Array(dtype, ndim, layout, readonly)``."""
    from numba import typeof

    if type(value) is not np.ndarray:
        return typeof(value)
    from numba.core import types
    from numba.np.numpy_support import from_dtype

    try:
        dtype = from_dtype(value.dtype)
    except Exception:  # noqa: BLE001 - Numba's own error for an unsupported dtype
        return typeof(value)
    flags = value.flags
    layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
    return types.Array(dtype, value.ndim, layout, readonly=not flags.writeable)


class FastTable(dict):  # type: ignore[type-arg]
    """Launchers (``run(arrays)``, see :class:`Runner`) by call signature; a dict, so a
    lookup is one C call.  Bounded: cleared when it grows past 4096 entries, and when the
    scheduler's policy is set (its launchers run plans made under the old one)."""

    def __init__(self) -> None:
        super().__init__()
        _TABLES[id(self)] = weakref.ref(self, lambda _, key=id(self): _TABLES.pop(key, None))

    def put(self, key: Hashable, runner: Runner) -> None:
        if len(self) >= _MAX_ENTRIES:
            self.clear()
        run = runner.run
        run.source = runner.source  # type: ignore[attr-defined]
        self[key] = run


#: Every live table, by id (a dict compares by contents: no WeakSet).
_TABLES: dict[int, weakref.ref[FastTable]] = {}


@policy.on_change
def _forget_launchers() -> None:
    for ref in list(_TABLES.values()):
        table = ref()
        if table is not None:
            table.clear()
