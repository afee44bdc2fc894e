"""Split an einsum into kernels along a contraction path.

Input: each operand's canonical labels (distinct, see :mod:`einjit.views`), the output
labels, every label's extent, the operands' dtypes and the :class:`~einjit.dtypes.Arithmetic`.
Output: a :class:`~einjit.ir.Plan` of :class:`~einjit.ir.Step` s, each a
:class:`~einjit.ir.Kernel` whose body is the product of its operands and whose reduction is
a sum.

Paths come from opt_einsum's path finders (pure search; opt_einsum never computes a
result here), chosen by name in :data:`PATH_FINDERS`.

>>> import numpy as np
>>> from einjit.dtypes import arithmetic
>>> plan = make_plan((("i", "j"), ("j", "k"), ("k", "l")), ("i", "l"),
...                  {"i": 4, "j": 5, "k": 6, "l": 7}, ("float64",) * 3,
...                  arithmetic(np.dtype("float64")), "greedy")
>>> print(plan)  # doctest: +NORMALIZE_WHITESPACE
plan for ij,jk,kl->il: 2 step(s)
  v3 = k0(v1, v2)    # out[l,j] ; flops 420
  v4 = k1(v0, v3)    # out[i,l] ; flops 280
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from .body import semiring, with_indices
from .dtypes import Arithmetic
from .ir import (SUM, Call, Cast, Const, Expr, Index, Kernel, Load, Operand, Plan, Reduction,
                 Step)
from .layout import for_products, laid_out_like
from . import policy
from .gemm import LOOP_TERM_S, gemm_cost, gemm_worthy
from .schedule import runs_as_blas

#: Object-dtype expressions up to this many body evaluations run as one fused step.
OBJECT_FUSE_LIMIT = 1 << 20
#: A path of BLAS calls (its steps that move more than this fraction of its bytes) is
#: taken over a fused loop nest that moves up to this fraction fewer bytes (the path's
#: intermediates are vectors beside the matrix both read).
SPLIT_BYTES_SLACK = 1 / 16

__all__ = ["PATH_FINDERS", "make_plan", "resolve_path", "with_copies", "PathError"]

Labels = tuple[str, ...]


class PathError(ValueError, IndexError):
    """An explicit ``optimize=`` path entry that does not fit the operands.

    numpy raises ``IndexError`` for an out-of-range contraction; this error is also a
    ``ValueError``, as einjit's other input errors are.
    """


class IncompletePathError(ValueError, RuntimeError):
    """An explicit path that leaves more than one operand (numpy: ``RuntimeError``)."""


class UnknownPathError(TypeError, KeyError):
    """An ``optimize=`` value that names no path finder (numpy: ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def _opt_einsum_finder(name: str) -> Callable[..., list[tuple[int, ...]]]:
    def find(inputs: list[set[str]], output: set[str], size: dict[str, int]):
        from opt_einsum import paths  # imported on first n-ary plan only
        return paths.get_path_fn(name)(inputs, output, size, None)
    find.__name__ = f"{name}_path"
    return find


def _auto_path(inputs: Sequence[Labels | set[str]], output: set[str], size: dict[str, int]
               ) -> list[tuple[int, ...]]:
    """opt_einsum's ``auto``: the optimal path for up to four operands, searched here
    exhaustively (at most 18 orders; no opt_einsum import, which costs a first call
    about 10 ms), and opt_einsum's choice of finder beyond that.  Of orders equally
    cheap, it takes one whose products read the operands (given as label tuples, in
    memory order) as matrices most often (:func:`_split_reads`)."""
    if len(inputs) > 4:
        return _opt_einsum_finder("auto")([set(t) for t in inputs], output, size)
    return _cheapest(list(inputs), output, size)[2]


def _split_reads(a: Labels | set[str], b: Labels | set[str], keep: set[str]) -> int:
    """How many of ``a`` and ``b`` (label tuples in memory order; a set is an
    intermediate, laid out as its product wants) a product of the two reads with the
    labels it sums between labels it keeps, other than their shared kept (batch) ones: a
    matrix product then loops over the outer kept labels (``ijk,jr->ikr`` runs as a batch
    of ``i`` products, ``ijk,kr->ijr`` as one; over 200^3 and 200 x 32 float32, 8.9 and
    6.9 ms)."""
    batch = set(a) & set(b) & keep
    split = 0
    for t in (a, b):
        if not isinstance(t, tuple):
            continue
        kinds = [lb in keep for lb in t if lb not in batch]
        split += sum(x != y for x, y in zip(kinds, kinds[1:])) > 1
    return split


def _cheapest(terms: list[Labels | set[str]], output: set[str], size: dict[str, int]
              ) -> tuple[int, int, list[tuple[int, ...]]]:
    """``(cost, split, path)`` of the pairwise order with the fewest body evaluations,
    and of those, the fewest operands read split (:func:`_split_reads`)."""
    if len(terms) == 1:
        return 0, 0, []
    best: tuple[int, int, list[tuple[int, ...]]] | None = None
    for i in range(len(terms)):
        for j in range(i + 1, len(terms)):
            rest = [t for k, t in enumerate(terms) if k not in (i, j)]
            keep = output.union(*rest) if rest else output
            both = set(terms[i]) | set(terms[j])
            cost = 1
            for name in both:
                cost *= size[name]
            split = _split_reads(terms[i], terms[j], keep)
            sub, sub_split, path = _cheapest(rest + [both & keep], output, size)
            if best is None or (cost + sub, split + sub_split) < best[:2]:
                best = (cost + sub, split + sub_split, [(i, j)] + path)
    assert best is not None
    return best


#: Operands from which "auto" weighs several paths by their modelled time
#: (:func:`_auto_candidates`); up to four, its own exhaustive search has the fewest flops.
MANY_OPERANDS = 5
#: How much faster another path must be modelled than opt_einsum's "auto" to be taken:
#: the model sees neither the intermediates' layouts nor the loops' schedules.  Over 60
#: random expressions of 5 to 8 operands, the 17 paths modelled 1.25x to 6x faster ran
#: 0.14x to 1.04x the time (1.13x and 1.24x in two, noise-sized); of those modelled 1.0x
#: to 1.23x faster, one of the same modelled time took 5.4x (``dbac,ab,acd,a,b,dca->bc``:
#: an intermediate laid out against its consumer's loops), others 1.2x to 1.7x.
PATH_MARGIN = 1.25
#: Operands up to which dynamic programming searches a path: its time grows
#: exponentially with them (16 operands of 3 labels among 8, extents 8: about 1 s by
#: flops; 12: 0.3 s; 10: 25 ms).
DP_OPERANDS = 12
#: Seconds a step's kernel call adds to the modelled time of a path (with its new
#: intermediate), and the bytes a second a loop nest streams (:func:`modelled_s`).
STEP_S, STREAM_BPS = 2e-6, 2e10


def _auto_candidates(inputs: Sequence[Labels], output: set[str], size: dict[str, int],
                     auto: Sequence[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
    """The paths "auto" chooses from for :data:`MANY_OPERANDS` operands or more:
    opt_einsum's ``auto`` (given: branch and bound, greedy from 15 operands), its dynamic
    programming by flops (the fewest flops without outer products; ``auto`` can miss
    it by 8x: ``bc,f,df,fech,bac->bahd``) and by flops and intermediates' sizes
    (``combo``) up to :data:`DP_OPERANDS`, its greedy, and, for five operands,
    einjit's exhaustive search; distinct, in that order."""
    from opt_einsum import paths

    sets = [set(t) for t in inputs]
    found = [list(auto)]
    if 0 in size.values():  # no work: nothing to weigh (and dynamic programming finds
        return found        # no path over a zero-size label)
    finders: list[Callable[[], Any]] = []
    if len(inputs) <= DP_OPERANDS:
        finders.append(lambda: PATH_FINDERS["dp"](sets, output, size))  # by flops
        finders.append(lambda: paths.DynamicProgramming(minimize="combo")(sets, output, size))
    finders.append(lambda: PATH_FINDERS["greedy"](sets, output, size))
    if len(inputs) <= MANY_OPERANDS:
        finders.append(lambda: _cheapest(list(inputs), output, size)[2])
    for find in finders:
        try:
            found.append(find())
        except Exception:  # noqa: BLE001 - a finder that finds none: the others stand
            continue
    distinct: list[list[tuple[int, ...]]] = []
    for path in found:
        path = [tuple(int(i) for i in c) for c in path]
        if path not in distinct:
            distinct.append(path)
    return distinct


def modelled_s(steps: Sequence[Step]) -> float:
    """A plan's modelled time in seconds: each matrix product as BLAS runs it
    (:func:`~einjit.gemm.gemm_cost`), each other step as a loop nest that spends
    :data:`~einjit.gemm.LOOP_TERM_S` a multiplication of its terms and at least streams
    its operands and result (:data:`STREAM_BPS`), each call :data:`STEP_S` more."""
    total = 0.0
    for st in steps:
        kernel = st.kernel
        cost = gemm_cost(kernel)
        if cost is None:
            cost = max(kernel.work * LOOP_TERM_S * max(len(kernel.inputs) - 1, 1),
                       _bytes(kernel) / STREAM_BPS)
        total += cost + STEP_S
    return total


#: Path finders by name: ``(inputs, output, sizes) -> [(i, j), ...]`` (opt_einsum's convention:
#: positions in the shrinking operand list; the result is appended at the end).
PATH_FINDERS: dict[str, Callable[..., list[tuple[int, ...]]]] = {
    name: _opt_einsum_finder(name) for name in ("greedy", "optimal", "branch-2", "dp")
} | {"auto": _auto_path}


def resolve_path(optimize: Any, inputs: Sequence[Labels], output: Labels,
                 extent: dict[str, int]) -> tuple[tuple[int, ...], ...] | None:
    """The contraction path for ``optimize``; ``None`` means one fused kernel.

    ``optimize`` is numpy's: ``False`` (one kernel), ``True`` or ``"greedy"``,
    ``"optimal"``, another finder's name, or an explicit ``["einsum_path", (0, 1), ...]``.
    einjit's default ``"auto"`` picks the finder by the number of operands.  As in numpy,
    a finder's name is only looked at when there are three or more operands.
    """
    n = len(inputs)
    if optimize is False or optimize is None:  # numpy reads None as False
        return None
    limit = memory_limit(optimize)
    if limit is not None:  # numpy's (finder, largest intermediate in elements)
        if n <= 2:
            return None
        from opt_einsum import paths

        found = paths.get_path_fn(optimize[0])([set(t) for t in inputs], set(output), extent,
                                              limit)
        return tuple(tuple(int(i) for i in c) for c in found)
    if isinstance(optimize, (list, tuple)):
        if not optimize or optimize[0] != "einsum_path":
            raise TypeError(f"einsum: did not understand the path optimize={optimize!r}; an "
                            "explicit path starts with 'einsum_path'")
        return _check_path(optimize[1:], n)
    if optimize is True:
        optimize = "greedy"
    if not isinstance(optimize, str):
        raise TypeError(f"einsum: did not understand optimize={optimize!r}; use a bool, "
                        f"one of {sorted(PATH_FINDERS)}, or ['einsum_path', (i, j), ...]")
    if n <= 2:
        return None
    if optimize not in PATH_FINDERS:
        raise UnknownPathError(f"einsum: optimize={optimize!r} names no path finder; use "
                               f"one of {sorted(PATH_FINDERS)}")
    if optimize == "auto":  # the operands' memory order breaks ties
        found = _auto_path([tuple(t) for t in inputs], set(output), extent)
    else:
        found = PATH_FINDERS[optimize]([set(t) for t in inputs], set(output), extent)
    return tuple(tuple(int(i) for i in c) for c in found)


def memory_limit(optimize: Any) -> int | None:
    """The memory limit of numpy's ``optimize=(finder, limit)`` form (elements of the
    largest intermediate), checking the finder's name; None for every other form."""
    if not (isinstance(optimize, (list, tuple)) and len(optimize) == 2
            and isinstance(optimize[0], str) and optimize[0] != "einsum_path"
            and isinstance(optimize[1], (int, float)) and not isinstance(optimize[1], bool)):
        return None
    if optimize[0] not in PATH_FINDERS:
        raise UnknownPathError(f"einsum: optimize={optimize!r} names no path finder; use "
                               f"one of {sorted(PATH_FINDERS)}")
    return int(optimize[1])


def _check_path(path: Sequence[Any], n: int) -> tuple[tuple[int, ...], ...]:
    checked = []
    remaining = n
    for c in path:
        try:
            contraction = tuple(int(i) for i in c)
        except (TypeError, ValueError):
            raise PathError(f"einsum: optimize path entry {c!r} is not a tuple of operand "
                            "positions") from None
        if not contraction or len(set(contraction)) != len(contraction) or any(
                not 0 <= i < remaining for i in contraction):
            raise PathError(f"einsum: optimize path entry {c!r} does not fit the "
                            f"{remaining} operands left at that point of the path")
        remaining -= len(contraction) - 1
        checked.append(contraction)
    if remaining != 1:
        raise IncompletePathError(f"einsum: invalid optimize path {list(path)!r}: "
                                  f"{remaining - 1} more operands have to be contracted")
    return tuple(checked)


def _load(k: int, indices: Labels, dtype: str, arith: Arithmetic) -> Expr:
    expr: Expr = Load(k, indices)
    if arith.result == "bool" and dtype != "bool":
        expr = Cast(expr, "bool")
        dtype = "bool"
    if dtype != arith.accumulate:
        expr = Cast(expr, arith.accumulate)
    return expr


def _kernel(name: str, args: Sequence[Labels], dtypes: Sequence[str], out: Labels,
            out_dtype: str, extent: dict[str, int], arith: Arithmetic,
            dynamic: frozenset[str] = frozenset(), fold: Fold | None = None) -> Kernel:
    """One kernel over ``args``: the fold's body (default: the product of one element of
    each operand, in the accumulating dtype) reduced by the fold's reduction."""
    fold = fold or DEFAULT_FOLD
    seen: dict[str, None] = dict.fromkeys(out)
    for labels in args:
        seen.update(dict.fromkeys(labels))
    body: Expr
    if fold.body is None:
        terms = tuple(_load(k, tuple(labels), dt, arith)
                      for k, (labels, dt) in enumerate(zip(args, dtypes)))
        body = terms[0] if len(terms) == 1 else Call(fold.combine, terms)
    else:
        body = with_indices(fold.body, args)
    if fold.reduce.name in ("any", "all") and out_dtype == "bool":
        body = Cast(body, "bool")
    inputs = tuple(Operand(f"a{k}", dt, tuple(lb)) for k, (lb, dt) in enumerate(zip(args, dtypes)))
    return Kernel(name, inputs, Operand("out", out_dtype, tuple(out)),
                  tuple(Index(lb, extent[lb], lb in dynamic) for lb in seen), body,
                  fold.reduce, arith.accumulate)


@dataclass(frozen=True)
class Fold:
    """What a plan folds: ``body`` (an expression over ``Load(k, ())`` placeholders, or
    None for the combining operator applied to one element of each operand), combined
    pairwise by ``combine`` when split, and reduced by ``reduce``."""

    body: Expr | None = None
    reduce: Reduction = SUM
    combine: str = "mul"

    @property
    def default(self) -> bool:
        return self.body is None and self.reduce == SUM and self.combine == "mul"


DEFAULT_FOLD = Fold()


def make_plan(inputs: Sequence[Labels], output: Labels, extent: dict[str, int],
              dtypes: Sequence[str], arith: Arithmetic, optimize: Any = "auto",
              dynamic: frozenset[str] = frozenset(), fold: Fold = DEFAULT_FOLD) -> Plan:
    """Plan an einsum over canonical operands (see module docstring for an example).

    Labels in ``dynamic`` get kernels generic in their extent (``extent`` holds the
    sizes seen now, which guide the path and the schedule).  ``fold`` replaces the sum
    of products by another body and reduction: such a plan is split along the path only
    when they form a semiring (:func:`einjit.body.semiring`), else it is one loop nest."""
    inputs = [tuple(t) for t in inputs]
    output = tuple(output)
    n = len(inputs)
    equation = ",".join("".join(t) for t in inputs) + "->" + "".join(output)
    if not fold.default:
        return two_pass_logsumexp(_fold_plan(equation, inputs, output, extent, dtypes, arith,
                                             optimize, dynamic, fold), n)
    pre: tuple[Step, ...] = ()
    ids = list(range(n))
    if optimize == "auto" and arith.backend != "numpy":
        pre, inputs, dtypes, ids = presum(inputs, output, extent, dtypes, arith, dynamic)
    plan = _sum_plan(equation, inputs, output, extent, dtypes, arith, optimize, dynamic, ids,
                     len(pre))
    if not pre:
        return plan
    return Plan(equation, pre + plan.steps, plan.path,
                _presum_note(pre) + (f"then {plan.note}" if plan.note else ""))


def with_copies(plan: Plan, copies: dict[int, dict[int, Labels]]) -> Plan:
    """``plan`` with a copying step before step i for each input position p in
    ``copies[i]``, which writes that input C-ordered with the labels ``copies[i][p]``
    (a permutation of its own); step i then reads the copy.  Value ids are renumbered
    (step j's result is ``n + j``).

    >>> from einjit.ir import Index, Kernel, Operand, SUM, Step, product
    >>> k = Kernel("k0", (Operand("a0", "float64", ("i", "j")),), Operand("out", "float64", ("i",)),
    ...            (Index("i", 4), Index("j", 5)), product(1, (("i", "j"),)), SUM, "float64")
    >>> print(with_copies(Plan("ij->i", (Step(k, (0,), 1),)), {0: {0: ("j", "i")}}))
    plan for ij->i: 2 step(s)
      (copied v0 as a0[j,i] for k0)
      v1 = k0c0(v0)    # out[j,i] ; flops 0
      v2 = k0(v1)    # out[i] ; flops 0
    """
    if not copies:
        return plan
    n = plan.steps[0].result
    steps: list[Step] = []
    renamed: dict[int, int] = {}
    notes = []
    for i, step in enumerate(plan.steps):
        k = step.kernel
        args = [renamed.get(a, a) for a in step.args]
        inputs, labels = list(k.inputs), [op.indices for op in k.inputs]
        index = {ix.name: ix for ix in k.indices}
        for p, order in sorted(copies.get(i, {}).items()):
            op = k.inputs[p]
            copy = Kernel(f"{k.name}c{p}", (Operand("a0", op.dtype, op.indices),),
                          Operand("out", op.dtype, order),
                          tuple(index[lb] for lb in order), Load(0, op.indices), SUM, op.dtype)
            steps.append(Step(copy, (args[p],), n + len(steps)))
            notes.append(f"copied v{args[p]} as a{p}[{','.join(order)}] for {k.name}")
            args[p], inputs[p], labels[p] = steps[-1].result, replace(op, indices=order), order
        body = with_indices(k.body, labels)
        steps.append(replace(step, kernel=replace(k, inputs=tuple(inputs), body=body),
                             args=tuple(args), result=n + len(steps)))
        renamed[step.result] = steps[-1].result
    note = "; ".join(notes)
    return Plan(plan.equation, tuple(steps), plan.path,
                f"{plan.note}; {note}" if plan.note else note)


def _presum_note(pre: Sequence[Step]) -> str:
    """What ``explain`` says about :func:`presum`'s steps (empty without them)."""
    if not pre:
        return ""
    return ("first summed over the labels only one operand has: "
            + "; ".join(str(st.kernel).split(":", 1)[1].strip() for st in pre) + "; ")


#: Fused iterations from which :func:`presum` sums first for a saving of a quarter, and
#: weighs each iteration by the operands it reads (below, a second kernel's call costs
#: more than the loads it saves).
PRESUM_WEIGHED = 1 << 15
#: What the kernel call :func:`presum` adds costs, in iterations of the fused loop nest
#: (a few tenths of a microsecond with its intermediate): a tiny operand is not summed
#: first (``cd,abc->a`` over 2 x 5 and 2 x 3 x 2 stays one nest).
STEP_CALL = 256
#: What one complex multiplication adds to an iteration of a loop nest, in iterations of
#: a sum's (its loads and adds): a fused nest multiplies its n operands' values at each
#: of its iterations, a sum first over one operand's own labels does not (complex64
#: ``b,ab,b->b`` over 128 x 1000: 0.098 ms fused, 0.032 ms summed first; complex128
#: 0.22 -> 0.051 ms; ``i,ij->i`` over 4096 x 256: complex64 0.126 -> 0.115 ms,
#: complex128 0.28 -> 0.21 ms).  Real products are fused into the adds (multiply-adds)
#: and weigh nothing here.
COMPLEX_PRODUCT = 1
#: Fused iterations from which complex products are weighed so: below, the second
#: kernel's call costs about what it saves (``a,c->c`` over 17 and 17: 2.2 -> 2.7 us
#: summed first; ``a,ba->a`` over 256 x 17, 4352 iterations: 7.7 -> 3.5 us).
COMPLEX_WEIGHED = 1 << 12


def presum(inputs: list[Labels], output: Labels, extent: dict[str, int],
           dtypes: Sequence[str], arith: Arithmetic, dynamic: frozenset[str] = frozenset(),
           fold: Fold | None = None
           ) -> tuple[tuple[Step, ...], list[Labels], list[str], list[int]]:
    """Reduce first, in each operand, the labels that neither another operand nor the
    output has: ``cd,abc->a`` is ``(sum_d cd),abc->a``, a thousandth of the work when
    d has a thousand values.  Only for several operands, and only where it at least
    halves the cost, or from :data:`PRESUM_WEIGHED` iterations on saves a quarter: it
    adds a kernel (and an intermediate) to compile and run (``deb,adc->dba`` with
    c = 64, b = 2: summing c first leaves 52 % of the fused terms), whose call counts as
    :data:`STEP_CALL` iterations.  When
    the fused nest would read another operand across its rows in its innermost loop
    (along this operand's last label), from :data:`PRESUM_WEIGHED` iterations on, each
    iteration is weighed by the operands it reads and a saving of a quarter pays: a
    fused ``cba,ac->a`` loads both operands for each of its c*b*a terms (``ac`` by
    gathers), the sum over b only ``cba``, contiguously.  In complex arithmetic, from
    :data:`COMPLEX_WEIGHED` iterations on, each iteration of a nest of n operands is
    weighed by its n - 1 multiplications (:data:`COMPLEX_PRODUCT`), which the sum first
    does not do, and a saving of a quarter pays.

    Returns the reducing steps and the operands after them: their labels, dtypes and
    value ids (an operand reduced by step s is value ``n + s``).  With ``fold``, each
    step reduces by its reduction (valid for a semiring: the combining operator
    distributes over it)."""
    n = len(inputs)
    count: dict[str, int] = {}
    for t in inputs:
        for lb in t:
            count[lb] = count.get(lb, 0) + 1
    total = math.prod(extent[lb] for lb in count)
    steps: list[Step] = []
    labels, types, ids = list(inputs), list(dtypes), list(range(n))
    if n < 2 or total == 0:  # a zero-size label: no work to save
        return (), labels, types, ids
    # an iteration of the nest that multiplies complex operands, in iterations of a sum
    weight = (1 + COMPLEX_PRODUCT * (n - 1)
              if fold is None and np.dtype(arith.accumulate).kind == "c" else 0)
    for k, t in enumerate(inputs):
        alone = [lb for lb in t if count[lb] == 1 and lb not in output]
        if not alone:
            continue
        cut = math.prod(extent[lb] for lb in alone)
        own, left = math.prod(extent[lb] for lb in t), total // cut
        cost = own + left + STEP_CALL  # the sum first, then the nest left
        # A fused nest runs along this operand's last (contiguous) label innermost: an
        # operand with that label elsewhere is read across its rows there.
        gathered = any(t[-1] in u and u[-1] != t[-1] for j, u in enumerate(labels) if j != k)
        if weight and total >= COMPLEX_WEIGHED:  # weighed by their complex products
            if 4 * (own + STEP_CALL + weight * left) > 3 * weight * total:
                continue
        elif gathered and total >= PRESUM_WEIGHED:  # iterations weighed by their reads
            if 4 * (cost + (n - 1) * left) > 3 * n * total:
                continue
        elif 4 * cost > 3 * total if total >= PRESUM_WEIGHED else 2 * cost > total:
            continue  # not worth a kernel
        kept = tuple(lb for lb in t if lb not in alone)
        kernel = _kernel(f"k{len(steps)}", [t], [dtypes[k]], kept, arith.compute, extent,
                         arith, dynamic, fold and Fold(None, fold.reduce, fold.combine))
        steps.append(Step(kernel, (k,), n + len(steps), _flops(kernel)))
        labels[k], types[k], ids[k] = kept, arith.compute, steps[-1].result
        total //= cut
    return tuple(steps), labels, types, ids


def _sum_plan(equation: str, inputs: list[Labels], output: Labels, extent: dict[str, int],
              dtypes: Sequence[str], arith: Arithmetic, optimize: Any,
              dynamic: frozenset[str], ids: list[int], done: int) -> Plan:
    """The sum of products over operands ``ids`` (labels ``inputs``), after ``done``
    steps: fused, or split along the path."""
    n = len(inputs)
    fused = _kernel(f"k{done}", inputs, dtypes, output, arith.compute, extent, arith, dynamic)
    single = Plan(equation, (Step(fused, tuple(ids), n + done, _flops(fused)),))
    if optimize == "auto" and n > 2 and len({frozenset(t) for t in inputs}) == 1:
        # Every operand has the same indices: pairwise steps only add intermediates.
        return Plan(equation, single.steps, (), f"fused: every operand has the same "
                    f"indices; one loop nest, {single.steps[0].flops} flops")
    path = resolve_path(optimize, inputs, output, extent)
    if path is None:
        return single
    if arith.backend == "numpy" and fused.work <= OBJECT_FUSE_LIMIT:
        # Object arithmetic: numpy's one pass gives the same Python types (an empty sum is
        # the int 0, not Fraction(0) from a later product), so stay fused unless huge.
        return Plan(equation, single.steps, (), "fused: object arithmetic, as numpy")
    split = _split(equation, inputs, output, extent, dtypes, arith, path, dynamic,
                   ids=ids, done=done)
    chose = ""
    if optimize == "auto" and n >= MANY_OPERANDS:
        candidates = _auto_candidates(inputs, set(output), extent, path)
        splits = [split if tuple(map(tuple, c)) == path else
                  _split(equation, inputs, output, extent, dtypes, arith, tuple(c), dynamic,
                         ids=ids, done=done) for c in candidates]
        times = [modelled_s(sp.steps) for sp in splits]
        best = min(range(len(splits)), key=times.__getitem__)
        if times[best] * PATH_MARGIN > times[0]:
            best = 0  # opt_einsum's own, unless clearly slower
        split = splits[best]
        chose = (f"path: {'the modelled fastest' if best else 'opt_einsum auto'} of "
                 f"{len(splits)} ({', '.join(f'{t * 1e6:.3g}' for t in times)} us); ")
    if optimize == "auto" and n > 2:
        # Fuse the whole expression into one loop nest unless that raises the flop count
        # by more than 2x or gives up a matrix-matrix product BLAS would run.
        split_flops = sum(s.flops for s in split.steps)
        split_bytes = sum(_bytes(s.kernel) for s in split.steps)
        blas = any(gemm_worthy(s.kernel) for s in split.steps)
        # A path of BLAS matrix-vector products that moves no more bytes than a loop
        # nest on threads: memory-bound either way, and BLAS's threads, awake after other
        # BLAS calls in the program, would share the cores with einjit's (x^T A x over
        # 4096^2 float64 beside numpy's and torch's calls: 6.8 ms fused, 3.0 ms as a
        # gemv and a dot; 1024^2: 0.13 and 0.07 ms; back to back level).
        streamed = (fused.work >= policy.POLICY.parallel_min_work  # loops on threads
                    and all(runs_as_blas(s.kernel) for s in split.steps
                        if _bytes(s.kernel) > split_bytes * SPLIT_BYTES_SLACK)
                    and split_bytes <= _bytes(fused) * (1 + SPLIT_BYTES_SLACK))
        verdict = ("fused" if not (blas or streamed) and single.steps[0].flops <= 2 * split_flops
                   else "split")
        note = (f"{chose}{verdict}: one fused loop nest costs {single.steps[0].flops} flops "
                f"and moves {_bytes(fused)} bytes, the path {split_flops} flops and {split_bytes} bytes"
                + (" with BLAS matrix products" if blas else
                   " in BLAS calls" if streamed else ""))
        chosen = single if verdict == "fused" else split
        return Plan(equation, chosen.steps, chosen.path, note)
    return split


def _fold_plan(equation: str, inputs: list[Labels], output: Labels, extent: dict[str, int],
               dtypes: Sequence[str], arith: Arithmetic, optimize: Any,
               dynamic: frozenset[str], fold: Fold) -> Plan:
    """The plan for a body or reduction other than the sum of products."""
    n = len(inputs)
    template = fold.body if fold.body is not None else (
        Load(0, ()) if n == 1 else Call(fold.combine, tuple(Load(k, ()) for k in range(n))))
    combine = semiring(template, fold.reduce, n)
    what = f"{fold.reduce} over {template}"
    pre: tuple[Step, ...] = ()
    ids = list(range(n))
    if combine is not None and optimize == "auto":
        pre, inputs, dtypes, ids = presum(inputs, output, extent, dtypes, arith, dynamic,
                                          Fold(None, fold.reduce, combine))
    done = len(pre)
    fused = _kernel(f"k{done}", inputs, dtypes, output, arith.compute, extent, arith, dynamic,
                    fold)
    single = pre + (Step(fused, tuple(ids), n + done, _flops(fused)),)
    first = _presum_note(pre)
    if combine is None:
        why = ("one operand" if n == 1 else "two operands" if n == 2 else
               "not a semiring (the body is not one operator over the operands that "
               "distributes over the reduction), so splitting would change the result")
        return Plan(equation, single, (),
                    f"fused: {what}: {why}; one loop nest, {single[-1].flops} flops")
    path = resolve_path(optimize, inputs, output, extent)
    if n <= 2 or path is None:
        return Plan(equation, single, (), f"{first}fused: {what}: a semiring, "
                    f"one loop nest, {single[-1].flops} flops")
    pairwise = Fold(None, fold.reduce, combine)
    split = _split(equation, inputs, output, extent, dtypes, arith, path, dynamic, pairwise,
                   ids, done)
    split_flops = sum(st.flops for st in split.steps)
    verdict = "fused" if single[-1].flops <= 2 * split_flops else "split"
    note = (f"{first}{verdict}: {what} is a semiring ({fold.reduce}, {combine}): one fused "
            f"loop nest costs {single[-1].flops} flops, the pairwise path {split_flops} flops")
    if verdict == "fused":
        return Plan(equation, single, (), note)
    return Plan(equation, pre + split.steps, split.path, note)


def two_pass_logsumexp(plan: Plan, n: int) -> Plan:
    """Replace each logsumexp step that reduces by three steps (a pass from plan to plan).

    Folding ``acc = logaddexp(acc, t)`` costs an ``exp`` and a ``log1p`` per term, both
    library calls that keep the loop scalar.  Instead: ``m = max t`` (vectorised), then
    ``s = sum exp(t - m)`` with :func:`einjit.codegen.vecmath.exp_flush` (one vectorised
    ``exp`` a term, none overflows: ``t - m <= 0``), then ``m + log(s)`` per output element,
    or ``m`` itself where it is infinite (no terms or all ``-inf``: ``-inf``; a ``+inf``
    term: ``+inf``); a NaN term makes ``m`` and so the result NaN.  ``n`` is the number of
    operands: steps are renumbered so that ids stay ``n, n+1, ...`` in execution order.

    >>> from einjit.dtypes import Arithmetic
    >>> from einjit.body import reduction
    >>> fold = Fold(None, reduction("logsumexp", "float64"), "add")
    >>> print(make_plan((("i", "k"), ("k", "j")), ("i", "j"), {"i": 2, "j": 3, "k": 4},
    ...                 ("float64",) * 2, Arithmetic("float64", "float64", "float64", "numba"),
    ...                 fold=fold))  # doctest: +NORMALIZE_WHITESPACE
    plan for ik,kj->ij: 3 step(s)
      (fused: logsumexp over a0[] + a1[]: a semiring, one loop nest, 48 flops; logsumexp
       in two passes: the maximum, then the sum of exp(term - maximum))
      v2 = k0(v0, v1)    # out[i,j] ; flops 48
      v3 = k1(v0, v1, v2)    # out[i,j] ; flops 96
      v4 = k2(v2, v3)    # out[i,j] ; flops 36
    """
    if not any(st.kernel.reduce.name == "logsumexp" and st.kernel.reduction_indices
               for st in plan.steps):
        return plan
    steps: list[Step] = []
    ids: dict[int, int] = {k: k for k in range(n)}

    def add(kernel: Kernel, args: tuple[int, ...]) -> int:
        kernel = replace(kernel, name=f"k{len(steps)}")
        steps.append(Step(kernel, args, n + len(steps), _flops(kernel)))
        return n + len(steps) - 1

    for st in plan.steps:
        k = st.kernel
        args = tuple(ids[a] for a in st.args)
        if k.reduce.name != "logsumexp" or not k.reduction_indices:
            ids[st.result] = add(k, args)
            continue
        acc, out = k.accumulate, k.output.indices
        at = len(k.inputs)
        most = Reduction("max", "maximum", -math.inf)
        m = add(replace(k, output=Operand("out", acc, out), reduce=most), args)
        term = Call("exp_flush", (Call("sub", (k.body, Load(at, out))),))
        s = add(replace(k, inputs=k.inputs + (Operand(f"a{at}", acc, out),),
                        output=Operand("out", acc, out), body=term, reduce=SUM),
                args + (m,))
        big, tot = Load(0, out), Load(1, out)
        finite = Call("where", (Call("eq", (Call("abs", (big,)), Const(math.inf))), big,
                                Call("add", (big, Call("log", (tot,))))))
        kept = [ix for ix in k.indices if ix.name in out]
        ids[st.result] = add(Kernel(k.name, (Operand("a0", acc, out), Operand("a1", acc, out)),
                                    k.output, tuple(kept), finite, SUM, acc), (m, s))
    note = (plan.note + "; " if plan.note else "") + (
        "logsumexp in two passes: the maximum, then the sum of exp(term - maximum)")
    return Plan(plan.equation, tuple(steps), plan.path, note)


def _split(equation: str, inputs: list[Labels], output: Labels, extent: dict[str, int],
           dtypes: Sequence[str], arith: Arithmetic, path: tuple[tuple[int, ...], ...],
           dynamic: frozenset[str] = frozenset(), fold: Fold | None = None,
           ids: Sequence[int] | None = None, done: int = 0) -> Plan:
    """The plan that contracts along ``path``, one kernel per contraction: over the
    values ``ids`` (default: the operands) after ``done`` earlier steps."""
    n = len(inputs)
    contractions = list(path) if path else [tuple(range(n))]
    partners = _partners(n, contractions)
    ids = list(range(n)) if ids is None else list(ids)
    local = list(range(n))  # the same values numbered as the path numbers them
    labels = list(inputs)
    types = list(dtypes)
    steps: list[Step] = []
    for c in contractions:
        picked = sorted(c, reverse=True)
        args = [ids.pop(p) for p in picked][::-1]
        for p in picked:
            local.pop(p)
        arg_labels = [labels.pop(p) for p in picked][::-1]
        arg_types = [types.pop(p) for p in picked][::-1]
        kernel = None
        if ids:
            keep = set(output).union(*labels)
            out = tuple(dict.fromkeys(lb for t in arg_labels for lb in t if lb in keep))
            consumer, others = partners[n + len(steps)]
            near = [labels[local.index(p)] for p in others if p in local]
            if consumer == len(contractions) - 1:  # combined into the result: its order
                near.append(output)  # too, where it shares more with it than a partner
            apart = [labels[i] for i, p in enumerate(local) if p not in others]
            kept = set(output).union(*apart)
            out = laid_out_like(out, near, kept)
            kernel = _kernel(f"k{done + len(steps)}", arg_labels, arg_types, out,
                             arith.compute, extent, arith, dynamic, fold)
            if len(arg_labels) == 2 and gemm_worthy(kernel):
                near_one = (labels[local.index(others[0])]
                            if len(others) == 1 and others[0] in local else None)
                typed = dict(zip(arg_labels, arg_types))
                if near_one is not None:
                    typed[near_one] = types[local.index(others[0])]
                out = for_products(out, arg_labels, near_one, kept,
                                   output if consumer == len(contractions) - 1 else None,
                                   _costing(typed, extent, arith, dynamic, fold))
        else:
            out = output
        if kernel is None or kernel.output.indices != out:
            kernel = _kernel(f"k{done + len(steps)}", arg_labels, arg_types, out,
                             arith.compute, extent, arith, dynamic, fold)
        result = n + done + len(steps)
        local.append(n + len(steps))
        steps.append(Step(kernel, tuple(args), result, _flops(kernel)))
        ids.append(result)
        labels.append(out)
        types.append(arith.compute)
    return Plan(equation, tuple(steps), path)


def _costing(typed: dict[Labels, str], extent: dict[str, int], arith: Arithmetic,
             dynamic: frozenset[str], fold: Fold | None
             ) -> Callable[[Sequence[Labels], Labels], float | None]:
    """The cost of a matrix product of operands (labels; their dtypes from ``typed``, an
    intermediate's the arithmetic's) into a result laid out as given, by the
    scheduler's model: for :func:`~einjit.layout.for_products`."""
    def cost(ops: Sequence[Labels], result: Labels) -> float | None:
        dts = [typed.get(tuple(op), arith.compute) for op in ops]
        return gemm_cost(_kernel("k", ops, dts, result, arith.compute, extent, arith,
                                 dynamic, fold))
    return cost


def _partners(n: int, contractions: Sequence[tuple[int, ...]]
              ) -> dict[int, tuple[int, tuple[int, ...]]]:
    """For each intermediate (numbered n, n+1, ... in path order): the contraction that
    consumes it (its position in the path) and that contraction's other operands."""
    ids = list(range(n))
    partners: dict[int, tuple[int, tuple[int, ...]]] = {}
    for step, c in enumerate(contractions):
        args = [ids[p] for p in c]
        for a in args:
            if a >= n:
                partners[a] = (step, tuple(x for x in args if x != a))
        ids = [x for x in ids if x not in args] + [n + step]
    return partners


def _bytes(kernel: Kernel) -> int:
    """Bytes the kernel reads and writes at least once: every operand and its result."""
    extent = kernel.extent
    total = 0
    for op in kernel.inputs + (kernel.output,):
        n = np.dtype(op.dtype).itemsize
        for name in op.indices:
            n *= extent[name]
        total += n
    return total


def _flops(kernel: Kernel) -> int:
    """Operations the kernel performs: each body evaluation's operators (the n - 1
    multiplications of a product, as opt_einsum counts them) plus one to reduce."""
    ops = _operators(kernel.body) + (1 if kernel.reduction_indices else 0)
    return kernel.work * max(ops, 1)


def _operators(expr: Expr) -> int:
    if isinstance(expr, Cast):
        return _operators(expr.value)
    if isinstance(expr, Call):
        return max(len(expr.args) - 1, 1) + sum(_operators(a) for a in expr.args)
    return 0

