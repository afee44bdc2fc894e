"""``einjit.explain``: what einjit will do for an einsum, as a printable object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .codegen import blas, numpy_ufunc
from .engine import (DEFAULT_OPTIMIZE, Call, coalesced, dynamic_labels, numba_sources, plan_call,
                     prepare_fold, prepare_operands)
from .planner import DEFAULT_FOLD, Fold
from .ir import LoopNest, Plan
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
    nests: tuple[LoopNest, ...]
    sources: tuple[str, ...]
    note: str = ""

    def __str__(self) -> str:
        lines = [f"einsum {self.equation!r}", f"  canonical: {self.spec}",
                 f"  result dtype: {self.dtype}; backend: {self.backend}"]
        if self.note:
            lines.append(f"  {self.note}")
        lines += ["", str(self.plan)]
        for step, nest, source in zip(self.plan.steps, self.nests, self.sources):
            lines += ["", str(step.kernel), "", "loop nest:", str(nest), "",
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
            optimize: Any = DEFAULT_OPTIMIZE, dynamic: bool | str = False) -> Explanation:
    """Explain how einjit evaluates ``subscripts`` on these operands (or shapes).

    Nothing is compiled or run.  Operands may be arrays or shape tuples; ``dtype``
    gives shape-only operands their dtype (float64 by default).  ``dynamic`` (True, or
    a string of labels) shows the kernels generic in those dimensions, as
    ``einjit.compile(..., dynamic=...)`` builds them: they read ``n_<label>`` from the
    arrays and the kernel line says ``<label>=dynamic``.

    >>> import einjit
    >>> e = einjit.explain("ij,jk->ik", (2, 3), (3, 4))
    >>> print(e.plan)
    plan for ij,jk->ik: 1 step(s)
      v2 = k0(v0, v1)    # out[i,k] ; flops 48
    >>> "for i in range(2)" in str(e)
    True
    """
    return explain_call(subscripts, operands_or_shapes, dtype, optimize,
                        dynamic_labels(subscripts, parse_subscripts(subscripts), dynamic))


def explain_call(subscripts: str, operands_or_shapes: Sequence[Any], dtype: Any,
                 optimize: Any, labels: bool | frozenset[str], fold: Fold = DEFAULT_FOLD,
                 fn: Any = None) -> Explanation:
    """:func:`explain` for validated dynamic labels and a body or reduction (``fold``)."""
    operands: Sequence[Any] = [_as_operand(x, dtype) for x in operands_or_shapes]
    parsed = parse_subscripts(subscripts)
    call: Call
    if fold.default:
        call = prepare_operands(parsed, operands, None, None, "K",
                                "unsafe" if dtype is not None else "safe", optimize)
    else:
        call = prepare_fold(parsed, operands, None, fold, fn, optimize)
    call.dynamic = (frozenset(call.spec.size) if labels is True else
                    frozenset(labels or ()) & frozenset(call.spec.size))
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
        notes.append(f"dynamic dimensions: {', '.join(sorted(call.dynamic))} (sizes read at "
                     "run time)")
    if call.unpermute is not None:
        notes.append(f"the result is written C-ordered as {''.join(call.written)} (its memory "
                     f"order), then returned transposed to {''.join(call.spec.output)}")
    note = "\n  ".join(notes)
    return Explanation(subscripts, call.spec.text, str(call.result), call.arith.backend,
                       plan, nests, sources, note)
