"""From a call to a result: validate, look up or build a compiled plan, run it.

:func:`prepare` does everything that depends only on the call (parse, bind shapes,
dtype rules, canonical views) and returns a :class:`Call`.  :func:`build` turns a call's
signature into a :class:`CompiledPlan` (plan, schedules, loop nests, sources, compiled
kernels); :func:`run` executes one.  :func:`einsum` chains them with the in-memory cache.
"""

from __future__ import annotations

import functools
import math
import operator
import string
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from . import buffers, cache, merge
from .codegen import blas, numba_cpu, numpy_ufunc
from .dispatch import (VIEWS, FastTable, Runner, entry_point, hosted, keyword_key,
                       numba_type, path_key, pool_least, remember_view, result_type,
                       signature, view_function, with_out)
from .threads import Chunked, prepare as prepare_workers
from .body import body_dtypes, reduction
from .dtypes import (Arithmetic, arithmetic, as_dtype, check_casting, check_out_array,
                     check_out_cast, narrows_to_half, numba_dtype, result_dtype)
from .ir import DYNAMIC_BITS, Kernel, LoopNest, Plan, Schedule, planned_extent
from .parser import Equation, EinsumSpec, as_subscripts, bind, split_arguments
from .planner import DEFAULT_FOLD, Fold, make_plan, resolve_path, with_copies
from . import policy
from .lower import lower, partials
from .schedule import copies, partial_spread, schedule, serial_at
from .views import c_strides, canonical_view, coalesce, f_strides, permuted_view, stride_rank

__all__ = ["Call", "CompiledPlan", "prepare", "build", "run", "einsum", "clear_cache",
           "DEFAULT_OPTIMIZE"]

DEFAULT_OPTIMIZE = "auto"
_ORDERS = ("C", "F", "A", "K")


@dataclass
class Call:
    """One validated einsum call, ready to plan and run."""

    spec: EinsumSpec
    views: list[np.ndarray]          # canonical operands (distinct labels), precast
    labels: list[tuple[str, ...]]    # each view's labels
    arith: Arithmetic
    result: np.dtype
    out: np.ndarray | None
    order: tuple[int, ...]           # a new result's axes, slowest-varying first
    optimize: Any
    view: np.ndarray | None = None   # the answer itself, when numpy answers with a view
    direct_out: bool = False         # the last kernel writes straight into ``out``
    dynamic: frozenset[str] = frozenset()  # labels whose kernels read the extent at run time
    fold: Fold = DEFAULT_FOLD        # the body and reduction (default: sum of products)
    # Output labels merged (see coalesced): the last kernel's result is reshaped to this
    # shape (the new result's memory order), then transposed by this to the output's.
    final: tuple[tuple[int, ...], tuple[int, ...] | None] | None = None
    # The operands' own shapes (a broadcast label has extent 1 in some): which route
    # numpy's optimized path takes to a 0-d result depends on them (see ``scalar``).
    shapes: tuple[tuple[int, ...], ...] = ()
    # Per operand, where one was converted before its view was taken (see ``converter``):
    # the conversion and the array it made; empty when none was.
    converted: tuple[tuple[Callable[[np.ndarray], np.ndarray], np.ndarray] | None, ...] = ()

    def key(self, erase: frozenset[str] | None = None) -> Hashable:
        """Everything the compiled plan depends on: the in-memory cache key.

        A dynamic label's extent stands as the size it is planned for (see
        :func:`planned_extent`): one compiled plan serves every size of its class.  The
        extents of ``erase`` are left out altogether (see :meth:`family`)."""
        spec: Hashable = self.spec
        planned = erase is None  # dynamic labels: by their planned size
        erase = self.dynamic if planned else erase
        if erase:
            spec = (self.spec.inputs, self.spec.output, tuple(
                (lb, n) if lb not in erase else (lb, None, planned_extent(n)) if planned
                else (lb, None) for lb, n in self.spec.extents), erase)
        target = self.out if self.direct_out else None
        # A view neither C- nor Fortran-ordered may be read flat, its strides in the code.
        layouts = tuple((v.dtype.str, lay, v.flags.writeable, v.flags.aligned, stride_rank(v),
                         None if erase or lay != "A" else v.strides)
                        for v, lay in ((v, _layout(v)) for v in self.views))
        out_layout = (None if target is None else
                      (_layout(target), stride_rank(target), target.dtype.str))
        opt = self.optimize if isinstance(self.optimize, (str, bool)) else repr(self.optimize)
        return (spec, tuple(self.labels), layouts, self.arith, out_layout, self.order, opt,
                policy.POLICY, self.fold)

    @property
    def scalar(self) -> bool:
        """Whether a 0-d result comes back as a numpy scalar, as numpy gives it.

        numpy's default path (``optimize=False``) returns a scalar.  Given any other
        ``optimize`` (None included), numpy (2.x) evaluates a path and returns what its last
        step returned: a scalar from a step over one, or three or more, operands; from a
        step over two, its matrix-product route's 0-d array where they share a summed
        index with other than one value in each of them (numpy's ``bmm_einsum`` sets aside
        a label of one value, broadcast or not, before it looks for one to sum), else the
        scalar of their element-wise product."""
        if self.out is not None:
            return False
        opt = self.optimize
        if opt is False or (isinstance(opt, str) and opt == DEFAULT_OPTIMIZE):
            return True
        if self.spec.output:  # not a 0-d result
            return True
        terms = [tuple(t) for t in self.spec.inputs]
        path = [tuple(range(len(terms)))]  # numpy's path for None, or two operands
        if opt is not None:
            found = _numpy_path(terms, self.spec.size, opt)
            if found == []:  # no step at all (["einsum_path"]): numpy returns its operand
                return False
            path = found or path
        last = _last_step(terms, [dict(zip(t, s)) for t, s in zip(terms, self.shapes)], path)
        if len(last) != 2:
            return True
        (a, extent_a), (b, extent_b) = last
        return not any(extent_a[lb] != 1 and extent_b[lb] != 1 for lb in set(a) & set(b))

    @property
    def written(self) -> tuple[str, ...]:
        """The output labels in the order the last kernel writes them: ``out``'s own order
        when it writes straight into ``out``, else a new result's memory order (slowest
        first), so that kernel writes a C-ordered array, contiguous innermost (Numba knows
        nothing of a transposed array's strides and does not vectorise its stores)."""
        if self.direct_out:
            return self.spec.output
        return tuple(self.spec.output[a] for a in self.order)

    @property
    def unpermute(self) -> tuple[int, ...] | None:
        """The transpose taking the last kernel's array to the result's axis order, or
        None when they agree."""
        if self.direct_out or self.order == tuple(range(len(self.order))):
            return None
        return tuple(int(a) for a in np.argsort(self.order))

    @property
    def reshaped(self) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
        """How the last kernel's array becomes the result: the shape to reshape it to
        (None: none; merged output labels have one) and the transpose after (None:
        none)."""
        if self.final is not None:
            return self.final
        return None, self.unpermute

    @property
    def planning_size(self) -> dict[str, int]:
        """Each label's extent as the plan sees it: a dynamic label's planned size (see
        :func:`planned_extent`), not this call's."""
        size = self.spec.size
        if not self.dynamic:
            return size
        return {lb: planned_extent(n) if lb in self.dynamic else n for lb, n in size.items()}

    def family(self) -> Hashable:
        """The key with every extent left out: calls differing only in sizes."""
        return self.key(frozenset(self.spec.size))


def _layout(a: np.ndarray) -> str:
    if a.flags.c_contiguous:
        return "C"
    return "F" if a.flags.f_contiguous else "A"


def prepare(args: Sequence[Any], out: Any = None, dtype: Any = None, order: Any = "K",
            casting: Any = "safe", optimize: Any = DEFAULT_OPTIMIZE) -> Call:
    """Validate an einsum call as numpy would and put its operands in canonical form."""
    equation, operands = split_arguments(args)
    return prepare_operands(equation, operands, out, dtype, order, casting, optimize)


def prepare_operands(equation: Equation, operands: Sequence[Any], out: Any, dtype: Any,
                     order: Any, casting: Any, optimize: Any) -> Call:
    """:func:`prepare` for an already parsed equation."""
    if not isinstance(order, str):
        raise TypeError(f"einsum: order must be a str, one of 'C', 'F', 'A', or 'K' (got {order!r})")
    if order.upper() not in _ORDERS:
        raise ValueError(f"einsum: order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
    order = order.upper()
    casting = check_casting(casting)
    wanted = None if dtype is None else as_dtype(dtype)
    arrays = [np.asarray(op) for op in operands]
    spec = bind(equation, [a.shape for a in arrays])
    size = spec.size
    if out is None and len(arrays) == 1 and set(spec.inputs[0]) == set(spec.output):
        # numpy returns a view here, whatever dtype=, order= and casting= say.
        view = permuted_view(arrays[0], spec.inputs[0], spec.output)
        return Call(spec, [], [], arithmetic(view.dtype), view.dtype, None, (), optimize, view,
                    shapes=(arrays[0].shape,))
    if out is not None:
        check_out_array(out, tuple(size[lb] for lb in spec.output))
    # Like numpy, the computation dtype is common to the operands and ``out``.
    result = result_dtype(arrays + ([out] if out is not None and wanted is None else []),
                          wanted, casting)
    arith = arithmetic(result)
    if out is not None:
        # numpy's optimized path (an explicit ``optimize=`` other than False, two or more
        # operands) assigns its last step into ``out``, casting as an assignment does;
        # its plain path checks ``casting``.
        assigns = optimize is not False and optimize is not DEFAULT_OPTIMIZE and len(arrays) > 1
        check_out_cast(out, result, "unsafe" if assigns else casting)
    views, labels, converted = [], [], []
    for array, term in zip(arrays, spec.inputs):
        convert = converter(array.dtype, result, arith)
        if convert is not None:
            array = convert(array)
            converted.append((convert, array))
        else:
            converted.append(None)
        view, unique = canonical_view(array, term, size)
        views.append(view)
        labels.append(unique)
    axes = output_axes(order, spec.output, views, labels, arrays)
    direct = (out is not None and out.dtype == np.dtype(arith.compute)
              and not any(np.may_share_memory(out, v) for v in views))
    return Call(spec, views, labels, arith, result, out, axes, optimize, None, direct,
                shapes=tuple(a.shape for a in arrays),
                converted=tuple(converted) if any(converted) else ())


def converter(dtype: np.dtype, result: np.dtype, arith: Arithmetic
              ) -> Callable[[np.ndarray], np.ndarray] | None:
    """The conversion an operand of ``dtype`` goes through before a call that computes
    ``result`` in ``arith`` reads it, or None when its kernels read it as it is: numpy's
    cast to a float16 ``dtype=`` first (a float32 operand rounded by einjit's own
    kernel), float16 widened (computed in float32, see :mod:`einjit.float16`), and
    numpy's own ``astype`` for a dtype Numba has no type for (non-native byte order,
    say) or a complex operand of a real result (warning as numpy does).  The same for
    every call of a signature: its runner repeats it.

    >>> f8 = np.dtype("f8")
    >>> converter(np.dtype(">f8"), f8, arithmetic(f8))(np.ones(2, ">f8")).dtype
    dtype('float64')
    >>> converter(f8, f8, arithmetic(f8)) is None
    True
    """
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    if result.char == "e" and dtype.char != "e":
        # numpy casts the operands to float16 (``dtype=``), then computes in float32
        steps.append(functools.partial(narrowed, dtype=result) if dtype == np.float32
                     else operator.methodcaller("astype", result))
        dtype = result
    if arith.backend == "numba" and dtype.char == "e":
        from .float16 import widen  # exactly: float16 values are float32 values

        steps.append(widen)
        if arith.compute != "float32":
            steps.append(operator.methodcaller("astype", arith.compute))
    elif arith.backend == "numba" and (not numba_dtype(dtype)
                                       or (dtype.kind == "c" and result.kind != "c")):
        steps.append(operator.methodcaller("astype", arith.compute))
    if len(steps) < 2:
        return steps[0] if steps else None

    def in_turn(array: np.ndarray) -> np.ndarray:
        for step in steps:
            array = step(array)
        return array

    return in_turn


def prepare_fold(equation: Equation, operands: Sequence[Any], out: Any, fold: Fold,
                 fn: Callable[..., Any] | None, optimize: Any, order: str = "K") -> Call:
    """:func:`prepare_operands` for a body or a reduction other than the sum of products.

    The result dtype follows :func:`einjit.body.body_dtypes`; ``out=`` takes it with
    ``same_kind`` casting, like a numpy reduction's ``out``.  A ``max`` or ``min`` over
    zero elements raises ValueError, as numpy's reductions do.
    """
    arrays = [np.asarray(op) for op in operands]
    for k, a in enumerate(arrays):
        if not numba_dtype(a.dtype):
            raise TypeError(f"einjit: operand {k} has dtype {a.dtype}; bodies and reductions "
                            "other than the sum need bool, integer, float or complex arrays")
    spec = bind(equation, [a.shape for a in arrays])
    size = spec.size
    result, accumulate = body_dtypes(fn, fold.reduce.name, [a.dtype for a in arrays])
    reduced = set(size) - set(spec.output)
    if fold.reduce.name in ("max", "min") and any(size[lb] == 0 for lb in reduced):
        raise ValueError(f"zero-size array to reduction operation "
                         f"{'maximum' if fold.reduce.name == 'max' else 'minimum'} "
                         "which has no identity")
    fold = Fold(fold.body, reduction(fold.reduce.name, accumulate), fold.combine)
    if out is not None:
        check_out_array(out, tuple(size[lb] for lb in spec.output))
        check_out_cast(out, result, "same_kind")
    compute = "float32" if result == np.float16 else result.name
    arith = Arithmetic(result.name, compute, accumulate, "numba")
    views, labels, converted = [], [], []
    for array, term in zip(arrays, spec.inputs):
        if array.dtype.char == "e":  # widened exactly (see ``converter``)
            from .float16 import widen

            array = widen(array)
            converted.append((widen, array))
        else:
            converted.append(None)
        view, unique = canonical_view(array, term, size)
        views.append(view)
        labels.append(unique)
    if not isinstance(order, str) or order.upper() not in _ORDERS:
        raise ValueError(f"einsum: order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
    axes = output_axes(order.upper(), spec.output, views, labels, arrays)
    direct = (out is not None and out.dtype == np.dtype(compute)
              and not any(np.may_share_memory(out, v) for v in views))
    return Call(spec, views, labels, arith, result, out, axes, optimize, None, direct,
                fold=fold, shapes=tuple(a.shape for a in arrays),
                converted=tuple(converted) if any(converted) else ())


#: Results of fewer elements keep every output axis (see :func:`coalesced`).
MERGE_OUTPUT_MIN = 256


def coalesced(call: Call) -> None:
    """Merge, in place, the call's labels that walk memory as one (see
    :func:`einjit.views.coalesce`): its views, labels and spec then describe fewer,
    longer loops.  Dynamic labels merge only with dynamic ones.  Output labels merge
    too when the call makes a new result and lays them out next to each other: the
    last kernel then writes the result with fewer axes, and ``call.final`` says how to
    reshape and transpose it into the output's shape."""
    if call.view is not None or call.arith.backend != "numba":
        return
    # (a small result is not worth its reshape: about a microsecond a call)
    merge_out = (call.out is None and call.final is None
                 and math.prod(call.spec.size[lb] for lb in call.spec.output) >= MERGE_OUTPUT_MIN)
    written = call.written if merge_out else ()
    merged = coalesce(call.views, call.labels, call.spec.size, frozenset(call.spec.output),
                      call.dynamic, written)
    if merged is None:
        return
    call.views, call.labels, size = merged
    output = call.spec.output
    if any(lb not in size for lb in output):  # output labels merged
        call.final = (tuple(call.spec.size[lb] for lb in written), call.unpermute)
        output = tuple(lb for lb in written if lb in size)
        call.order = tuple(range(len(output)))
    call.spec = EinsumSpec(tuple(call.labels), output,
                           tuple((lb, size[lb]) for lb, _ in call.spec.extents if lb in size))
    call.dynamic = call.dynamic & frozenset(size)


def output_axes(order: str, output: tuple[str, ...], views: Sequence[np.ndarray],
                labels: Sequence[tuple[str, ...]], arrays: Sequence[np.ndarray]
                ) -> tuple[int, ...]:
    """The memory order of a new result's axes, slowest first, for numpy's ``order=``.

    'C' and 'F' as named; 'A' is 'F' when every operand is Fortran-contiguous (1-D and
    0-d ones are) and has no repeated label (numpy takes a diagonal view), else 'C';
    'K' follows the operands' strides: of two output axes, the first operand holding both
    (with non-zero strides) decides which varies slower, as numpy's iterator does.
    """
    n = len(output)
    if order == "A":
        fortran = all(a.flags.f_contiguous and a.ndim == len(t) for a, t in zip(arrays, labels))
        order = "F" if fortran else "C"
    if order == "C" or n < 2:
        return tuple(range(n))
    if order == "F":
        return tuple(range(n - 1, -1, -1))

    # numpy's iterator orders its axes (output labels, then summed labels) by an
    # insertion sort on the operands' strides: an operand holding both axes with
    # non-zero strides may veto a move; axes no operand compares keep looking further.
    names = list(output) + [lb for t in labels for lb in t if lb not in output]
    names = list(dict.fromkeys(names))
    # Like numpy's iterator, a length-1 axis has no stride to compare.
    strides = [{lb: abs(st) if n != 1 else 0 for lb, st, n in zip(t, v.strides, v.shape)}
               for v, t in zip(views, labels)]
    perm = names[::-1]  # fastest first
    for i0 in range(1, len(perm)):
        a0, ipos = perm[i0], i0
        for i1 in range(i0 - 1, -1, -1):
            a1, ambiguous, swap = perm[i1], True, True
            for st in strides:
                s1, s0 = st.get(a1, 0), st.get(a0, 0)
                if s1 and s0:
                    if s1 <= s0:
                        swap = False
                    ambiguous = False
            if not ambiguous:
                if not swap:
                    break
                ipos = i1
        if ipos != i0:
            perm.insert(ipos, perm.pop(i0))
    slowest_first = [lb for lb in reversed(perm) if lb in output]
    return tuple(output.index(lb) for lb in slowest_first)


def _numpy_path(terms: Sequence[tuple[str, ...]], size: dict[str, int], optimize: Any
                ) -> list[tuple[int, ...]] | None:
    """The path numpy's ``einsum`` takes to a 0-d result for ``optimize`` (its finder,
    run on shape-only stand-ins; no product is computed), or einjit's where numpy has no
    such finder; None where neither can make one (the plan reports the error).  Kept
    per equation, sizes and ``optimize`` (a call whose operands are not arrays, Python
    numbers say, asks again on every call: numpy's finder takes about 30 us)."""
    key = (tuple(tuple(t) for t in terms), tuple(sorted(size.items())))
    try:
        return _find_numpy_path(*key, optimize)
    except TypeError:  # an unhashable optimize= (an explicit path as a list): not kept
        return _find_numpy_path.__wrapped__(*key, optimize)


@functools.lru_cache(maxsize=256, typed=True)  # optimize=1 is not True
def _find_numpy_path(terms: tuple[tuple[str, ...], ...], sizes: tuple[tuple[str, int], ...],
                     optimize: Any) -> list[tuple[int, ...]] | None:
    size = dict(sizes)
    letter = dict(zip(dict.fromkeys(lb for t in terms for lb in t), string.ascii_letters))
    equation = ",".join("".join(letter.get(lb, "?") for lb in t) for t in terms) + "->"
    stand_ins = [np.broadcast_to(np.empty(()), tuple(size[lb] for lb in t)) for t in terms]
    try:
        found = np.einsum_path(equation, *stand_ins, optimize=optimize)[0][1:]
    except Exception:  # noqa: BLE001 - an einjit-only finder ("dp"), odd labels
        try:
            path = resolve_path(optimize, terms, (), size)
        except Exception:  # noqa: BLE001
            return None
        return None if path is None else list(path)
    return [tuple(int(i) for i in step) for step in found]


def _last_step(terms: Sequence[tuple[str, ...]], extents: Sequence[dict[str, int]],
               path: Sequence[tuple[int, ...]]
               ) -> list[tuple[tuple[str, ...], dict[str, int]]]:
    """The operands' labels and extents at the last step of ``path`` (as numpy numbers
    its operands: each step's result appended last, keeping the labels still used
    elsewhere, each with the extent other than one that an operand of the step gave it).

    >>> _last_step([("i",), ("i", "j"), ("j",)], [{"i": 1}, {"i": 3, "j": 2}, {"j": 2}],
    ...            [(0, 1), (0, 1)])
    [(('j',), {'j': 2}), (('j',), {'j': 2})]
    """
    now = list(zip(terms, extents))
    for step in path[:-1]:
        picked = [now[i] for i in step]
        now = [t for i, t in enumerate(now) if i not in step]
        left = {lb for t, _ in now for lb in t}
        kept = tuple(dict.fromkeys(lb for t, _ in picked for lb in t if lb in left))
        now.append((kept, {lb: next((e[lb] for _, e in picked if e.get(lb, 1) != 1), 1)
                           for lb in kept}))
    return [now[i] for i in path[-1] if i < len(now)]


@dataclass
class CompiledPlan:
    """A plan with every step scheduled, rendered and compiled."""

    plan: Plan
    nests: tuple[LoopNest, ...]
    sources: tuple[str, ...]
    kernels: tuple[Callable[..., None], ...]
    backend: str
    #: The kernels' compiled code for this plan's argument types, which its key fixes
    #: (set by the first :func:`run`: typed once, by einjit, not by Numba on each call).
    entries: tuple[Callable[..., None], ...] | None = None


def _elements(strides: Sequence[int], itemsize: int) -> tuple[int, ...]:
    return tuple(s // itemsize for s in strides)


def plan_call(call: Call) -> tuple[Plan, tuple[LoopNest, ...]]:
    """Plan and schedule a call: the pure part of :func:`build` (also used by explain)."""
    size = call.planning_size
    plan = make_plan(call.labels, call.written, size, [v.dtype.name for v in call.views],
                     call.arith, call.optimize, call.dynamic, call.fold)
    strides = _planning_strides(call, size)
    # Inputs read flat have their strides in the code: only where the key holds them.
    flat = not call.dynamic and all(s % v.itemsize == 0 for v in call.views for s in v.strides)
    scheduled = _scheduled(call, plan, dict(strides), flat)
    if call.arith.backend == "numba" and call.optimize is not False:  # False: one kernel
        wanted = {}
        for i, (step, (kernel, sched, ins, groups)) in enumerate(zip(plan.steps, scheduled)):
            found = copies(kernel, sched, ins)
            if found:  # in the step's own labels: each merged one stands for its group
                wanted[i] = {p: tuple(x for lb in order for x in groups.get(lb, (lb,)))
                             for p, order in found.items()}
        if wanted:  # inputs gathered in a kernel that reads them often: read copies
            plan = with_copies(plan, wanted)
            scheduled = _scheduled(call, plan, dict(strides), flat)
    return plan, tuple(lower(kernel, sched, _views(step.kernel, kernel))
                       for step, (kernel, sched, _, _) in zip(plan.steps, scheduled))


def _planning_strides(call: Call, size: dict[str, int]) -> dict[int, tuple[int, ...]]:
    """Each operand's strides in elements, by value id; for a plan generic in some
    extents, a C- or Fortran-ordered operand's are those of its planned shape."""
    strides = {}
    for k, (v, labels) in enumerate(zip(call.views, call.labels)):
        shape = [size[lb] for lb in labels]
        if call.dynamic and v.flags.c_contiguous:
            strides[k] = c_strides(shape)
        elif call.dynamic and v.flags.f_contiguous:
            strides[k] = f_strides(shape)
        else:
            strides[k] = _elements(v.strides, v.itemsize)
    return strides


def _scheduled(call: Call, plan: Plan, strides: dict[int, tuple[int, ...]], flat: bool
               ) -> list[tuple[Kernel, Schedule, list[tuple[int, ...]], dict[str, tuple[str, ...]]]]:
    """Each step's kernel with its indices merged where its arrays allow (see
    :mod:`einjit.merge`; a C-ordered array is viewed in the merged shape), that kernel's
    schedule, its inputs' strides, and the indices each merged one stands for.
    ``strides`` (of the operands, by value id) gains the steps' results'."""
    size = call.planning_size
    found = []
    for i, step in enumerate(plan.steps):
        kernel = step.kernel
        shape = tuple(size[lb] for lb in kernel.output.indices)
        if i == len(plan.steps) - 1 and call.direct_out:
            out_strides = _elements(call.out.strides, call.out.itemsize)
        else:
            out_strides = c_strides(shape)
        strides[step.result] = out_strides
        arrays = [strides[a] for a in step.args] + [out_strides]
        # A small output merges too (unlike the call's labels, see coalesced): the
        # kernel views it reshaped in compiled code (about 90 ns), and its loops run over
        # the merged index (abd->db over 512 x 100 x 2 float32: 24-37 -> 10 us, where d
        # was summed two values at a time)
        fixed = [not merge.c_ordered([size[lb] for lb in op.indices], st)
                 for op, st in zip((*kernel.inputs, kernel.output), arrays)]
        kernel, arrays, groups = merge.merge_indices(kernel, arrays, fixed)
        *ins, out = arrays
        found.append((kernel, schedule(kernel, ins, out, flat=flat), ins, groups))
    return found


def _views(kernel: Kernel, merged: Kernel) -> dict[str, tuple[int, ...]]:
    """The arrays of ``kernel`` that ``merged`` (the same kernel, its indices merged)
    sees in another shape, and that shape."""
    extent = merged.extent
    return {new.name: tuple(extent[x] for x in new.indices)
            for old, new in zip((*kernel.inputs, kernel.output), (*merged.inputs, merged.output))
            if new.indices != old.indices}


def _targets(call: Call, plan: Plan) -> list[np.ndarray]:
    """Arrays each step writes: intermediates (C order) and the final result."""
    size = call.spec.size
    targets = []
    for i, step in enumerate(plan.steps):
        out = step.kernel.output
        shape = tuple(size[lb] for lb in out.indices)
        if i == len(plan.steps) - 1 and call.direct_out:
            targets.append(call.out)
        else:
            last = i == len(plan.steps) - 1
            targets.append(buffers.empty(shape, result_type(call, out.dtype) if last
                                         else out.dtype, pool_least(call, plan.steps, i)))
    return targets


def _signatures(call: Call, plan: Plan, nests: Sequence[LoopNest]
                ) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """Numba argument types of every step's kernel (allocating nothing: np.empty is
    lazy), and of the kernel folding its partials (empty when it has none).  A chunked
    kernel takes its chunk number and the chunk count last; a reduction in chunks
    writes one partial each into an array of them instead of the output."""
    import numba

    typ: dict[int, Any] = {k: numba_type(v) for k, v in enumerate(call.views)}
    sigs = []
    for step, nest, target in zip(plan.steps, nests, _targets(call, plan)):
        out = typ[step.result] = numba_type(target)
        fold: tuple[Any, ...] = ()
        if partials(nest) is not None:
            parts = numba_type(np.empty((0,) * (1 + target.ndim), step.kernel.accumulate))
            out, fold = parts, (parts, out)
        chunk = (numba.int64, numba.int64) if nest.schedule.threads else ()
        sigs.append((tuple(typ[a] for a in step.args) + (out,) + chunk, fold))
    return sigs


def numba_sources(plan: Plan, nest: LoopNest) -> tuple[str, str | None]:
    """The Numba module of one step's loop nest, and for a reduction in chunks the module
    of the kernel that folds their partials (else None)."""
    title = f"{plan.equation} step {nest.kernel.name}"
    fold = partials(nest)
    return (numba_cpu.render_module(nest, title),
            None if fold is None else numba_cpu.render_module(fold, f"{title}, its partials"))


def build(call: Call) -> CompiledPlan:
    """Plan, schedule, render and compile everything a call needs."""
    start = time.perf_counter()
    plan, nests = plan_call(call)
    kernels: list[Callable[..., None]] = []
    sources: list[str] = []
    if call.arith.backend == "numba":
        # Numba's types only for Numba steps: a plan of BLAS calls imports no Numba (but
        # where it copies a large operand across its rows: ``blas.contiguous``).
        loops = any(not nest.schedule.gemm for nest in nests)
        sigs = _signatures(call, plan, nests) if loops else [((), ())] * len(nests)
        for step, nest, (sig, fold_sig) in zip(plan.steps, nests, sigs):
            if nest.schedule.gemm:
                fn, source = blas.build(nest)
                kernels.append(fn)
                sources.append(source)
                continue
            source, fold_source = numba_sources(plan, nest)
            fn = cache.compile_kernel(source, step.kernel.name, sig)
            if fold_source is not None:  # then the kernel folding the chunks' partials
                fold_fn = cache.compile_kernel(fold_source, f"{step.kernel.name}p", fold_sig)
                fn = Chunked(fn, nest.schedule.threads, fold_fn, step.kernel.accumulate,
                             nest.schedule.threads * partial_spread(step.kernel, nest.schedule))
                source += "\n" + fold_source
            elif nest.schedule.threads:
                fn = Chunked(fn, nest.schedule.threads)
            kernels.append(fn)
            sources.append(source)
        if any(n.schedule.threads or (n.schedule.gemm and n.schedule.gemm.split > 1)
               for n in nests):
            prepare_workers()  # the workers' spin loop, compiled with the plan (warm-up)
    else:
        for step in plan.steps:
            fn, source = numpy_ufunc.build(step.kernel)
            kernels.append(fn)
            sources.append(source)
    cache.STATS.compile_seconds += time.perf_counter() - start
    return CompiledPlan(plan, nests, tuple(sources), tuple(kernels), call.arith.backend)


def run(compiled: CompiledPlan, call: Call) -> Any:
    """Execute a compiled plan on a call's operands; returns what numpy.einsum returns."""
    values: dict[int, np.ndarray] = dict(enumerate(call.views))
    steps = compiled.plan.steps
    targets = _targets(call, compiled.plan)
    entries = compiled.entries
    if entries is None:
        typed = values | {step.result: t for step, t in zip(steps, targets)}
        entries = compiled.entries = tuple(
            entry_point(fn, [typed[a] for a in step.args] + [target])
            for step, fn, target in zip(steps, compiled.kernels, targets))
    for step, fn, target, nest in zip(steps, entries, targets, compiled.nests):
        if call.dynamic and isinstance(fn, Chunked) and serial_at(nest.schedule, step.kernel,
                                                                   call.spec.size):
            fn = fn.serial()
        fn(*(values[a] for a in step.args), target)
        values[step.result] = target
    result = targets[-1]
    shape, unpermute = call.reshaped
    if shape is not None:  # merged output labels: the output's own axes again
        result = result.reshape(shape)
    if unpermute is not None:
        result = result.transpose(unpermute)
    if call.out is not None:
        if result is not call.out:
            np.copyto(call.out, narrowed(result, call.out.dtype), casting="unsafe")
        return call.out
    if result.dtype != call.result:
        result = narrowed(result, call.result)
        if result.dtype != call.result:
            result = result.astype(call.result, order="K")
    return result[()] if result.ndim == 0 and call.scalar else result


def narrowed(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A float32 result rounded to float16 by einjit's own kernel where ``dtype`` is
    float16 (see :mod:`einjit.float16`); else ``result`` itself."""
    if not narrows_to_half(result.dtype, dtype):
        return result
    from .float16 import narrow

    return narrow(result)


class PlanTable(dict):  # type: ignore[type-arg]
    """Compiled plans by call key, with the extents each call family has arrived with
    (``seen``): the automatic dynamic shapes of :func:`lookup` count per table, so a
    decorated function's history is its own, as torch.compile's is per function."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[Hashable, dict[tuple[str, bool], set[int]]] = {}


_PLANS = PlanTable()
FAST = FastTable()
_STATS = cache.STATS  # one object for the process (reset in place)
_ndarray = np.ndarray
_build_lock = threading.Lock()


#: A label that has arrived with this many distinct extents (same equation, dtypes and
#: layouts) gets kernels generic in its extent from then on, like torch.compile's
#: automatic dynamic shapes: the first sizes keep their specialised kernels.
DYNAMIC_AFTER = 3
#: Extents below this (the smallest size class) and the others count apart: a label
#: goes generic in the small ones only once it has shown DYNAMIC_AFTER of them, so
#: that large sizes do not send a few small ones to a generic kernel, where a loop of a
#: few trips known only at run time costs more than its work (1000 products of 2 x 2
#: float32: 3.7 us specialised, 43 us generic; of 8 x 8, 54 us against 320 us); and
#: many small sizes (a test sweeping 1..16) still share one.
SPECIALISED_BELOW = 1 << DYNAMIC_BITS
_MAX_FAMILIES = 4096


def _auto_dynamic(call: Call, table: dict[Hashable, Any]) -> frozenset[str]:
    """Record the call's extents in ``table``'s history (the process-wide one for a
    plain dict); the labels seen with DYNAMIC_AFTER sizes or more on the call's side of
    :data:`SPECIALISED_BELOW` (small extents and the others count apart)."""
    history = getattr(table, "seen", _PLANS.seen)
    family = call.family()
    seen = history.get(family)
    if seen is None:
        if len(history) >= _MAX_FAMILIES:
            history.clear()
        seen = history[family] = {}
    dynamic = set(call.dynamic)
    for lb, n in call.spec.extents:
        sizes = seen.setdefault((lb, n < SPECIALISED_BELOW), set())
        if len(sizes) < DYNAMIC_AFTER:
            sizes.add(n)
        if len(sizes) >= DYNAMIC_AFTER:
            dynamic.add(lb)
    return frozenset(dynamic)


def dynamic_labels(equation: str, parsed: Equation, dynamic: bool | str) -> bool | frozenset[str]:
    """Validate ``dynamic=`` (of ``einjit.compile`` and ``explain``): True (every
    dimension), False, or a string of the equation's labels."""
    if isinstance(dynamic, bool):
        return dynamic
    if not isinstance(dynamic, str):
        raise TypeError(f"einjit.compile({equation!r}): dynamic must be a bool or a string "
                        f"of labels, not {type(dynamic).__name__}")
    labels = {lb for term in parsed.inputs for lb in term.labels}
    unknown = sorted(set(dynamic) - labels - {" ", ","})
    if unknown:
        raise ValueError(f"einjit.compile({equation!r}): dynamic label(s) "
                         f"{', '.join(map(repr, unknown))} not in the equation")
    return frozenset(dynamic) - {" ", ","}


def lookup(call: Call, plans: dict[Hashable, CompiledPlan] | None = None) -> CompiledPlan:
    """The compiled plan for a call, from ``plans`` (default: the process-wide cache).

    A miss records the call's sizes; once a label has varied often enough
    (:data:`DYNAMIC_AFTER`), the call is served by a plan generic in it
    (``call.dynamic`` is updated)."""
    table = _PLANS if plans is None else plans
    coalesced(call)
    key = call.key()
    compiled = table.get(key)
    if compiled is not None:
        cache.STATS.hits += 1
        return compiled
    with _build_lock:
        compiled = table.get(key)
        if compiled is None:
            dynamic = _auto_dynamic(call, table)
            if dynamic != call.dynamic:
                call.dynamic = dynamic
                key = call.key()
                compiled = table.get(key)
        if compiled is None:
            cache.STATS.misses += 1
            compiled = _PLANS.get(key) or build(call)
            table[key] = compiled
            _PLANS.setdefault(key, compiled)
        else:
            cache.STATS.hits += 1
    return compiled


def einsum(*operands: Any, out: np.ndarray | None = None, dtype: Any = None, order: str = "K",
           casting: str = "safe", optimize: Any = DEFAULT_OPTIMIZE, target: str | None = None
           ) -> Any:
    """Evaluate an Einstein summation with compiled kernels: a drop-in for ``numpy.einsum``.

    Same grammar (explicit and implicit output, ``...`` broadcasting, repeated labels,
    the interleaved sublist form), same result shape, dtype and values, same exceptions.
    Each distinct equation, shape, dtype and layout compiles once; later calls reuse
    the kernel (and later processes load it from the disk cache).

    Parameters are numpy's.  ``optimize`` picks how expressions with three or more
    operands are split into pairwise kernels: ``"auto"`` (einjit's default),
    ``True``/``"greedy"``, ``"optimal"``, an explicit ``["einsum_path", (0, 1), ...]``,
    or ``False`` for one fused loop nest over all operands; beyond numpy's names, also
    opt_einsum's finders ``"dp"`` and ``"branch-2"`` (numpy raises KeyError for them).
    ``order="K"`` and ``"A"`` give a Fortran-ordered result when every operand is
    Fortran-ordered, C otherwise.
    ``target``: ``None`` computes on the CPU unless an operand is a device array (one
    with ``__cuda_array_interface__``), ``"cpu"``, or ``"cuda"`` (numpy operands are
    copied to the GPU and the result back; see :mod:`einjit.cuda`).

    >>> import numpy as np, einjit
    >>> a = np.arange(6.0).reshape(2, 3); b = np.arange(12.0).reshape(3, 4)
    >>> einjit.einsum("ij,jk->ik", a, b)
    array([[20., 23., 26., 29.],
           [56., 68., 80., 92.]])
    >>> einjit.einsum("ii", np.eye(3))
    np.float64(3.0)
    >>> einjit.einsum(a, [0, 1], b, [1, 2], [0, 2]).shape
    (2, 4)
    """
    key: Hashable = None
    if len(operands) == 2 and type(operands[0]) is str:  # one array: a view seen before?
        make = VIEWS.get(operands[0])
        if make is not None:
            a = operands[1]
            if (type(a) is _ndarray and out is None and dtype is None
                    and optimize is DEFAULT_OPTIMIZE and order == "K" and casting == "safe"
                    and target is None):
                view = make(a)
                if view is not None:
                    _STATS.hits += 1
                    return view
    plain = (dtype is None and optimize is DEFAULT_OPTIMIZE and order == "K"
             and casting == "safe")
    if operands and type(operands[0]) is not str:  # sublists or bytes, spelled as a str
        operands = as_subscripts(operands) or operands
    if operands and type(operands[0]) is str and (target is None or target == "cpu"):
        arrays = operands[1:]
        sig = signature(arrays)
        if sig is None:  # numbers, scalars, lists, subclasses: as the full way takes them
            converted = hosted(arrays)
            if converted is not None:
                operands, arrays = (operands[0], *converted), converted
                sig = signature(arrays)
        if out is not None:
            sig = with_out(sig, out)
        if sig is not None:
            if plain:
                key = (operands[0], sig)
            else:
                # by type too: optimize=1 is not optimize=True (1 == True)
                key = (operands[0], *keyword_key(dtype, order, casting), path_key(optimize),
                       type(optimize), sig)
            try:
                run = FAST.get(key)
            except TypeError:  # an unhashable dtype= or optimize= path: no fast path
                key = run = None
            if run is not None:
                result = run(arrays) if out is None else run(arrays, out)
                if result is not None:  # None: ``out`` overlaps an operand
                    _STATS.hits += 1
                    return result
    if key is None:  # not all plain ndarrays, or target= given: maybe the GPU
        from . import cuda as cuda_target
        if target in (None, "cuda") and cuda_target.plain(operands, out, dtype, order,
                                                          casting):
            result = cuda_target.fast_call(operands, optimize)
            if result is not cuda_target.MISS:
                return result
        if cuda_target.wants_device(operands, target):
            return cuda_target.einsum(*operands, out=out, dtype=dtype, order=order,
                                      casting=casting, optimize=optimize)
    call = prepare(operands, out, dtype, order, casting, optimize)
    if key is not None and plain and out is None and target is None and len(operands) == 2:
        make = view_function(call)
        if make is not None:
            remember_view(operands[0], make)
    return finish(call, None, key, FAST, operands[1:])


def finish(call: Call, plans: dict[Hashable, CompiledPlan] | None, key: Hashable | None,
           fast: FastTable, arrays: Sequence[Any]) -> Any:
    """Run a prepared call and, when ``key`` is given, keep a runner for its signature."""
    if call.view is not None:
        if key is not None:
            fast.put(key, Runner(call, None, arrays))
        return call.view[()] if call.view.ndim == 0 and call.scalar else call.view
    compiled = lookup(call, plans)
    if key is not None and Runner.eligible(call, arrays):
        fast.put(key, Runner(call, compiled, arrays))
    return run(compiled, call)


def clear_cache() -> None:
    """Forget every compiled plan in memory and reset the counters (disk files stay)."""
    with _build_lock:
        _PLANS.clear()
        _PLANS.seen.clear()
        FAST.clear()
        VIEWS.clear()
        buffers.clear()
        cache.STATS.reset()
