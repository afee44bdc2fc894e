"""``einjit.explain``: what einjit will do for an einsum, as a printable object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .codegen import blas, numpy_ufunc
from .engine import (DEFAULT_OPTIMIZE, Call, coalesced, dynamic_labels, numba_sources, plan_call,
                     prepare_fold, prepare_operands)
from .ir import Kernel, LoopNest, Plan, planned_extent, size_class
from .planner import DEFAULT_FOLD, Fold
from .schedule_cuda import GpuSchedule
from .parser import parse_subscripts

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True)
class Explanation:
    """The plan, each kernel's loop nest and schedule, and the generated source.

    ``str()`` gives the full report; the fields give the parts.
    """

    equation: str
    spec: str
    dtype: str
    backend: str
    plan: Plan
    nests: tuple[LoopNest | GpuSchedule, ...]  # the GPU's schedules with target="cuda"
    sources: tuple[str, ...]
    note: str = ""
    target: str = "cpu"
    kernels: tuple[Kernel, ...] = ()  # the kernels as scheduled, when not the plan's

    def __str__(self) -> str:
        lines = [f"einsum {self.equation!r}", f"  canonical: {self.spec}",
                 f"  result dtype: {self.dtype}; backend: {self.backend}"]
        if self.note:
            lines.append(f"  {self.note}")
        lines += ["", str(self.plan)]
        label = "GPU schedule:" if self.target == "cuda" else "loop nest:"
        kernels = self.kernels or tuple(step.kernel for step in self.plan.steps)
        for kernel, nest, source in zip(kernels, self.nests, self.sources):
            lines += ["", str(kernel), "", label, str(nest), "",
                      "generated source:", source.rstrip()]
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython
        p.text(str(self))


def _as_operand(x: Any, dtype: Any) -> Any:
    """Arrays stay as they are; a shape (tuple of ints) becomes an uninitialised array."""
    if isinstance(x, tuple) and all(isinstance(n, (int, np.integer)) for n in x):
        return np.empty(x, dtype=np.float64 if dtype is None else dtype)
    return x


def explain(subscripts: str, *operands_or_shapes: Any, dtype: Any = None,
            optimize: Any = DEFAULT_OPTIMIZE, dynamic: bool | str = False,
            target: str = "cpu") -> Explanation:
    """Explain how einjit evaluates ``subscripts`` on these operands (or shapes).

    Nothing is compiled or run.  Operands may be arrays or shape tuples; ``dtype``
    gives shape-only operands their dtype (float64 by default).  ``dynamic`` (True, or
    a string of labels) shows the kernels generic in those dimensions, as
    ``einjit.compile(..., dynamic=...)`` builds them: they read ``n_<label>`` from the
    arrays and the kernel line says ``<label>=dynamic``.  ``target="cuda"`` shows the
    GPU's plan instead: each step's thread mapping and ``numba.cuda`` source, as for
    PyTorch or CuPy operands with these shapes and strides (no GPU needed).

    >>> import einjit
    >>> e = einjit.explain("ij,jk->ik", (2, 3), (3, 4))
    >>> print(e.plan)
    plan for ij,jk->ik: 1 step(s)
      v2 = k0(v0, v1)    # out[i,k] ; flops 48
    >>> "for i in range(2)" in str(e)
    True
    """
    if target == "cuda":
        if dynamic:
            raise ValueError("explain: the CUDA target compiles exact shapes only "
                             "(dynamic= is for the CPU)")
        return explain_cuda(subscripts, operands_or_shapes, dtype, optimize)
    if target != "cpu":
        raise ValueError(f"explain: target must be 'cpu' or 'cuda' (got {target!r})")
    return explain_call(subscripts, operands_or_shapes, dtype, optimize,
                        dynamic_labels(subscripts, parse_subscripts(subscripts), dynamic))


def _prepare(subscripts: str, operands_or_shapes: Sequence[Any], dtype: Any, optimize: Any,
             fold: Fold, fn: Any) -> Call:
    """The validated call of an explanation (shapes become arrays of ``dtype``)."""
    operands: Sequence[Any] = [_as_operand(x, dtype) for x in operands_or_shapes]
    parsed = parse_subscripts(subscripts)
    if fold.default:
        return prepare_operands(parsed, operands, None, None, "K",
                                "unsafe" if dtype is not None else "safe", optimize)
    return prepare_fold(parsed, operands, None, fold, fn, optimize)


def explain_cuda(subscripts: str, operands_or_shapes: Sequence[Any], dtype: Any,
                 optimize: Any, fold: Fold = DEFAULT_FOLD, fn: Any = None) -> Explanation:
    """:func:`explain` with ``target="cuda"``: the plan and schedules
    :mod:`einjit.cuda` would compile, for operands laid out as these arrays are (shapes:
    C-ordered), the result in numpy's memory order."""
    from .cuda import out_strides, schedule_call
    from .device_arrays import span
    from .schedule_cuda import Layout

    call = _prepare(subscripts, operands_or_shapes, dtype, optimize, fold, fn)
    if call.view is not None:
        note = "a view of the operand, as numpy returns it: nothing to compute"
        return Explanation(subscripts, call.spec.text, str(call.result), "view", Plan(
            call.spec.text, ()), (), (), note, "cuda")
    if call.arith.backend != "numba" or call.arith.compute != call.arith.result:
        raise TypeError(f"explain: the CUDA target does not compute {call.result} results")
    inputs = []
    for v in call.views:
        strides = tuple(s // v.itemsize for s in v.strides)
        inputs.append(Layout(-span(v.shape, strides)[0], strides))
    shape = [call.spec.size[lb] for lb in call.spec.output]
    output = Layout(0, out_strides(shape, call.order))
    plan, steps = schedule_call(call, inputs, output, library=True)
    note = ("GPU schedules as for PyTorch or CuPy operands: matrix-product steps call "
            "their library (cuBLAS); Numba device arrays run them as tiled kernels")
    return Explanation(subscripts, call.spec.text, str(call.result), "numba.cuda", plan,
                       tuple(s.schedule for s in steps), tuple(s.source for s in steps), note,
                       "cuda", tuple(s.kernel for s in steps))


def explain_call(subscripts: str, operands_or_shapes: Sequence[Any], dtype: Any,
                 optimize: Any, labels: bool | frozenset[str], fold: Fold = DEFAULT_FOLD,
                 fn: Any = None) -> Explanation:
    """:func:`explain` for validated dynamic labels and a body or reduction (``fold``)."""
    call = _prepare(subscripts, operands_or_shapes, dtype, optimize, fold, fn)
    call.dynamic = (frozenset(call.spec.size) if labels is True else
                    frozenset(labels or ()) & frozenset(call.spec.size))
    output = call.spec.output  # before labels merge
    coalesced(call)
    if call.view is not None:
        note = "a view of the operand, as numpy returns it: nothing to compute"
        return Explanation(subscripts, call.spec.text, str(call.result), "view", Plan(
            call.spec.text, ()), (), (), note)
    plan, nests = plan_call(call)
    if call.arith.backend == "numba":
        sources = tuple(blas.render(n) if n.schedule.gemm else
                        "\n".join(s for s in numba_sources(plan, n) if s is not None)
                        for n in nests)
    else:
        sources = tuple(numpy_ufunc.render(s.kernel) for s in plan.steps)
    notes = []
    if call.dynamic:
        size = call.spec.size
        notes.append(f"dynamic dimensions: {', '.join(sorted(call.dynamic))} (sizes read at "
                     "run time; planned for " + ", ".join(
                         f"{lb}={planned_extent(size[lb])}, serving {lb} in "
                         "[{}, {})".format(*size_class(size[lb])) for lb in sorted(call.dynamic))
                     + ")")
    shape, unpermute = call.reshaped
    if shape is not None or unpermute is not None:
        then = [f"reshaped to {shape}"] if shape is not None else []
        if unpermute is not None:
            then.append(f"returned transposed to {''.join(output)}")
        merged = ", adjacent axes merged" if shape is not None else ""
        notes.append(f"the result is written C-ordered as {''.join(call.written)} (its memory "
                     f"order{merged}), then {', '.join(then)}")
    note = "\n  ".join(notes)
    return Explanation(subscripts, call.spec.text, str(call.result), call.arith.backend,
                       plan, nests, sources, note)
