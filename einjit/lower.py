"""Lowering: a kernel and its :class:`~einjit.ir.Schedule` to a :class:`~einjit.ir.LoopNest`.

:func:`lower` renders what :func:`einjit.schedule.schedule` decided as loops (or one GEMM
statement): output loops outside, each output element accumulated in a local (or a block
of them, a register tile, unrolled values) over the reduction loops and written once;
the parallel loop in chunks (``CHUNK``) or as a ``prange``; a reduction split over
threads writing per-chunk partials, which :func:`partials` folds.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product
>>> from einjit.schedule import schedule
>>> k = Kernel("k0", (Operand("a0", "float64", ("i", "j")), Operand("a1", "float64", ("j", "k"))),
...            Operand("out", "float64", ("i", "k")), (Index("i", 4), Index("j", 5), Index("k", 4)),
...            product(2, (("i", "j"), ("j", "k"))), SUM, "float64")
>>> print(lower(k, schedule(k, ((5, 1), (1, 5)), (4, 1))))   # b column-major
k0(a0[i,j], a1[j,k]) -> out[i,k]   [order ikj, serial]
    for i in range(4):
        for k in range(4):
            acc = float64(0)
            for j in range(5):
                acc = add(acc, a0[i,j] * a1[j,k])
            out[i,k] = float64(acc)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from . import policy
from .ir import (CHUNK, SLOT, Accumulate, Alloc, Call, Cast, Const, Dim, Expr, Gemm, Index, Init,
                 Kernel, Let, Load, Loop, LoopNest, Operand, Schedule, Stmt, Store, Update, Var,
                 loads, map_loads)
from .schedule import (multiply_add, panel_bytes, panel_elements, partial_spread,
                       vector_lanes)

__all__ = ["lower", "partials"]

#: The block-offset loop variable.  Every name a lowering invents has two or more
#: characters (``acc``, ``part``, ``vb``, ``v0``, ``rb``, ``fo``...), so it can never be an
#: einsum label (one letter, or one Greek letter for a broadcast dimension).
_T = "tb"


def _flat_runs(kernel: Kernel, sched: Schedule) -> tuple[Stmt, ...]:
    """Lowering of ``Schedule.flat_run``, the inputs viewed flat (``views``), for each
    value of the batch index (if any) from ``f = b * I * J``::

        for tb in range(L): acc[tb] = 0
        for rb in range(I // m):             # m = L / J rows at a time
            f0 = f + rb * L
            for tb in range(L): ft = f0 + tb; acc[tb] += body[ft]
        for j in range(J):
            sf = 0
            for qf in range(m): sf += acc[qf * J + j]
            for ir in range(I mod m): i = I // m * m + ir; ft = f + i * J + j; sf += body[ft]
            out[..., j] = sf

    The runs are split over threads (``parallel`` i: into partial outputs, chunk 0
    summing the rows left over) or the batch is (``parallel`` b).
    """
    *batch, j = kernel.output.indices
    (i,) = kernel.reduction_indices
    n_j = kernel.extent[j]
    run, red, dt = sched.flat_run, kernel.reduce, kernel.accumulate
    rows = run // n_j
    split = sched.parallel == i  # each chunk sums its runs into its own partial output
    head: tuple[Stmt, ...] = (Let(SLOT, Var(CHUNK)),) if split else ()
    n_i: int | Expr = kernel.extent[i]
    if i in kernel.dynamic:  # read from the (flat) first input
        n_i = Var(f"n_{i}")
        head += (Let(n_i.name, Call("floordiv", (Dim(kernel.inputs[0].name, 0), Const(n_j)))),)
    whole = n_i // rows if isinstance(n_i, int) else Call("floordiv", (n_i, Const(rows)))
    left = n_i % rows if isinstance(n_i, int) else Call("mod", (n_i, Const(rows)))

    def at(name: str) -> Expr:
        return map_loads(kernel.body, lambda ld: Load(ld.operand, (name,)))

    def plus(base: Expr | None, value: Expr) -> Expr:
        return value if base is None else Call("add", (base, value))

    start = (Call("mul", (Var(batch[0]), Const(kernel.extent[i] * n_j))) if batch else None)
    acc, total = Var("acc", Var(_T)), Var("sf")
    fold: tuple[Stmt, ...] = (
        Init(total, dt, red.identity),
        Loop("qf", rows, (Accumulate(total, red.op, Var("acc", Call("add", (
            Call("mul", (Var("qf"), Const(n_j))), Var(j)))), dt),)))
    if left:  # the rows left over (on threads, chunk 0 sums them)
        first = whole * rows if isinstance(whole, int) else Call("mul", (whole, Const(rows)))
        if split:
            left = Call("mul", (_expr(left), Call("sub", (
                Const(1), Call("min", (Var(CHUNK), Const(1)))))))
        fold += (Loop("ir", left, (
            Let(i, Call("add", (_expr(first), Var("ir")))),
            Let("ft", plus(start, Call("add", (Call("mul", (Var(i), Const(n_j))), Var(j))))),
            Accumulate(total, red.op, at("ft"), dt))),)
    store = (Store(Operand(kernel.output.name, dt, (SLOT, j)), total) if split
             else Store(kernel.output, _store_cast(kernel, total, True)))
    sums = (
        Loop(_T, run, (Init(acc, dt, red.identity),)),
        Loop("rb", whole, (Let("f0", plus(start, Call("mul", (Var("rb"), Const(run))))),
                          Loop(_T, run, (Let("ft", Call("add", (Var("f0"), Var(_T)))),
                                         Accumulate(acc, red.op, at("ft"), dt)))), split),
        Loop(j, n_j, fold + (store,)))
    if batch:
        sums = (Loop(batch[0], kernel.extent[batch[0]], sums, sched.parallel == batch[0]),)
    return head + (Alloc("acc", dt, run, run * np.dtype(dt).itemsize <= policy.POLICY.stack_bytes),
                   ) + sums


def _nest(order: Sequence[str], kernel: Kernel, body: tuple[Stmt, ...],
          parallel: str | None, fuse: int = 0, name: str = "f") -> tuple[Stmt, ...]:
    """Loops over ``order`` around ``body``; the first ``fuse`` of them as one fused loop."""
    fuse = fuse if fuse > 1 else 0
    sizes = kernel.sizes
    for ix in reversed(order[fuse:]):
        body = (Loop(ix, sizes[ix], body, ix == parallel),)
    if fuse:
        index = {ix.name: ix for ix in kernel.indices}
        group = tuple(index[ix] for ix in order[:fuse])
        total = _times([g.size for g in group])
        body = (Loop(name, total, body, parallel in order[:fuse], group),)
    return body


def _expr(value: int | Expr) -> Expr:
    """An extent or count as an expression (a literal as a constant)."""
    return Const(value) if isinstance(value, int) else value


def _times(values: Sequence[int | Expr]) -> int | Expr:
    """The product of extents: a number when all are literals, else an expression."""
    if all(isinstance(v, int) for v in values):
        return math.prod(values)  # type: ignore[arg-type]
    return Call("mul", tuple(_expr(v) for v in values))


def _ceil_div(n: int | Expr, size: int) -> int | Expr:
    if isinstance(n, int):
        return -(-n // size)
    return Call("floordiv", (Call("add", (n, Const(size - 1))), Const(size)))


def _dims(kernel: Kernel) -> tuple[Stmt, ...]:
    """``n_<index> = <array>.shape[<axis>]`` for each dynamic index (read once, on entry)."""
    lets = []
    for name in kernel.dynamic:
        op = next(op for op in kernel.inputs + (kernel.output,) if name in op.indices)
        lets.append(Let(f"n_{name}", Dim(op.name, op.indices.index(name))))
    return tuple(lets)


def lower(kernel: Kernel, sched: Schedule, views: dict[str, tuple[int, ...]] | None = None
          ) -> LoopNest:
    """Lower ``kernel`` under ``sched`` into loops, an accumulator and one store per element
    (with ``sched.contract``, sums of products accumulate as ``muladd``).

    ``views``: the kernel's arrays it is passed in another shape (its indices merged):
    it views them in its own (a reduction into partials views them with their axis of
    partials in front)."""
    if sched.flat_run:  # the inputs seen flat
        views = {**(views or {}), **{op.name: (-1,) for op in kernel.inputs}}
        nest = LoopNest(kernel, sched, _flat_runs(kernel, sched))
    else:
        nest = _lower(kernel, sched)
    if sched.reassociate and np.dtype(kernel.accumulate).kind == "f":
        nest = LoopNest(kernel, sched, _vector_tails(nest.body, vector_lanes(kernel),
                                                     kernel.reduce.identity))
    if sched.contract:
        nest = LoopNest(kernel, sched, _contracted(nest.body))
    if sched.interleave > 1:
        nest = LoopNest(kernel, sched, _interleaved(nest.body, sched.interleave,
                                                    kernel.reduce.identity))
    if not views:
        return nest
    into_partials = _into_partials(kernel, sched)
    return replace(nest, views=tuple(
        (name, (-1, *shape) if into_partials and name == kernel.output.name else shape)
        for name, shape in views.items()))


def _contracted(body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """``body`` with each ``acc = add(acc, p * q)`` as ``acc = muladd(acc, p * q)``."""
    out: list[Stmt] = []
    for s in body:
        if isinstance(s, Loop):
            s = Loop(s.index, s.extent, _contracted(s.body), s.parallel, s.unpack)
        elif isinstance(s, Accumulate) and s.op == "add":
            factors = multiply_add(s.value)
            if factors is not None:
                s = Accumulate(s.acc, "muladd", Call("mul", factors), s.dtype)
        out.append(s)
    return tuple(out)


def _one_sum(loop: Loop) -> Accumulate | None:
    """The sum of a loop (serial, no unpacked indices) whose body is the lets that derive
    its indices, then one term added to a scalar; else None."""
    *lets, last = loop.body
    if (loop.parallel or loop.unpack or not isinstance(last, Accumulate)
            or last.acc.at is not None or not all(isinstance(x, Let) for x in lets)):
        return None
    return last


def _sum_loops(body: tuple[Stmt, ...],
               rewrite: Callable[[Loop, Accumulate], list[Stmt] | None]) -> tuple[Stmt, ...]:
    """``body`` with each loop of one scalar sum (see :func:`_one_sum`) replaced by what
    ``rewrite(loop, sum)`` makes of it; where that is None, and in every other loop,
    the loop's own body rewritten so."""
    out: list[Stmt] = []
    for s in body:
        if not isinstance(s, Loop):
            out.append(s)
            continue
        last = _one_sum(s)
        made = None if last is None else rewrite(s, last)
        if made is None:
            out.append(Loop(s.index, s.extent, _sum_loops(s.body, rewrite), s.parallel,
                            s.unpack))
        else:
            out += made
    return tuple(out)


def _vector_tails(body: tuple[Stmt, ...], lanes: int, identity: int | float | bool
                  ) -> tuple[Stmt, ...]:
    """``body`` with each innermost loop of a known count between two and four vectors,
    not a whole number of them, adding one term per iteration to a scalar (after the
    lets that derive its indices), split: the whole vectors, then the values left over
    into an accumulator of their own, added to the first after::

        for r in range(R - R mod V): <lets>; acc = add(acc, term)
        acc_t = identity
        for rt in range(R mod V): r = R - R mod V + rt; <lets>; acc_t = add(acc_t, term)
        acc = add(acc, acc_t)

    Vectorised as one loop, its count hidden (see ``numba_cpu.OPAQUE_TRIPS``), LLVM's
    vector step (four vectors) outnumbers the count, and every value was summed one
    after another in the loop's scalar epilogue; split, the whole vectors are one
    vector loop and the few values left a short unrolled sum (rows of 23 float32
    ``ab,ab->a`` over 2000 rows, one thread: 15.6 -> 10.4 us; of 31, 15.5 -> 11.4 us;
    of 17, 11.6 -> 7.9 us; float64 rows of 11, 9.0 -> 7.1 us).  From four vectors on
    the vector loop runs, and the split gained nothing (rows of 76 float32 lost 12 %)."""

    def split(s: Loop, last: Accumulate) -> list[Stmt] | None:
        if (not isinstance(s.extent, int) or not 2 * lanes < s.extent < 4 * lanes
                or s.extent % lanes == 0):
            return None
        *lets, _ = s.body
        whole, r = s.extent - s.extent % lanes, s.index
        tail, at = Var(f"{last.acc.name}_t"), Let(r, Call("add", (Const(whole), Var(f"{r}t"))))
        return [Loop(r, whole, s.body),
                Init(tail, last.dtype, identity),
                Loop(f"{r}t", s.extent - whole,
                     (at, *lets, Accumulate(tail, last.op, last.value, last.dtype))),
                Accumulate(last.acc, last.op, tail, last.dtype)]

    return _sum_loops(body, split)


def _interleaved(body: tuple[Stmt, ...], k: int, identity: int | float | bool
                 ) -> tuple[Stmt, ...]:
    """``body`` with each innermost loop that adds one term per iteration to a scalar
    (after the lets that derive its indices) adding its terms to ``k`` partials in turn,
    the accumulator itself the first, folded into it after the loop::

        acc_1 = ... = acc_<k-1> = identity
        for rg in range(R // k):
            r = rg * k + 0; <lets>; acc = add(acc, term)
            r = rg * k + 1; <lets>; acc_1 = add(acc_1, term)  ...
        for rr in range(R mod k): r = R // k * k + rr; <lets>; acc = add(acc, term)
        acc = add(acc, acc_1); ...
    """

    def partials(s: Loop, last: Accumulate) -> list[Stmt] | None:
        if isinstance(s.extent, int) and s.extent < 2 * k:
            return None
        *lets, _ = s.body
        acc, r = last.acc, s.index
        parts = [acc] + [Var(f"{acc.name}_{t}") for t in range(1, k)]
        turns: list[Stmt] = []
        for t, part in enumerate(parts):
            turns += [Let(r, Call("add", (Call("mul", (Var(f"{r}g"), Const(k))), Const(t)))),
                      *lets, Accumulate(part, last.op, last.value, last.dtype)]
        start = Call("mul", (_expr(_floordiv(s.extent, k)), Const(k)))
        left = _mod(s.extent, k)
        out: list[Stmt] = [*(Init(p, last.dtype, identity) for p in parts[1:]),
                           Loop(f"{r}g", _floordiv(s.extent, k), tuple(turns))]
        if left != 0:
            out.append(Loop(f"{r}r", left, (Let(r, Call("add", (start, Var(f"{r}r")))),
                                            *lets, last)))
        return out + [Accumulate(acc, last.op, p, last.dtype) for p in parts[1:]]

    return _sum_loops(body, partials)


def _floordiv(n: int | Expr, d: int) -> int | Expr:
    return n // d if isinstance(n, int) else Call("floordiv", (n, Const(d)))


def _mod(n: int | Expr, d: int) -> int | Expr:
    return n % d if isinstance(n, int) else Call("mod", (n, Const(d)))


def _lower(kernel: Kernel, sched: Schedule) -> LoopNest:
    if sched.gemm:
        a, b = kernel.inputs
        return LoopNest(kernel, sched, _dims(kernel) + (Gemm(a, b, kernel.output, sched.gemm),))
    if sched.hoist:  # the order is the nest's: reductions among the output loops
        return LoopNest(kernel, sched, _dims(kernel) + _passes(kernel, sched))
    n_out = len(kernel.output_indices)
    outer, inner = sched.order[:n_out], sched.order[n_out:]
    if sched.block is not None:
        body = _blocked(kernel, sched, list(outer), list(inner))
        return LoopNest(kernel, sched, _dims(kernel) + body)
    if sched.unroll is not None:
        return LoopNest(kernel, sched, _dims(kernel) + _unrolled(kernel, sched, list(outer),
                                                                  list(inner)))
    extent = kernel.sizes
    fuse_out, fuse_red = sched.fuse
    acc, red = Var("acc"), kernel.reduce
    store_value: Expr
    head: tuple[Stmt, ...] = ()
    if sched.expand:
        head, store_value = _written_out(kernel, sched.expand)
        body: tuple[Stmt, ...] = ()
    elif not inner:
        store_value = kernel.body
        body = ()
    else:
        store_value = acc
        init = Init(acc, kernel.accumulate, red.identity)
        if sched.parallel is not None and sched.parallel == inner[0]:
            # A full reduction split over threads: each iteration of the parallel loop
            # folds its slice into a partial, then the partials into ``acc``.
            rest = inner[1:]
            tiled = sched.tile is not None and (inner[0], *rest) == sched.tile[:2]
            if not rest and sched.chunk:
                # One reduction loop: its chunks are the parallel iterations.
                body = (init,) + _chunked(kernel, inner[0], sched.chunk, parallel=True)
            elif tiled:
                # two reduction loops in tiles, those of u on threads (ij,ij-> with one
                # operand Fortran-ordered)
                u, v, size = sched.tile  # type: ignore[misc]
                body = (init,) + _tiled(kernel, u, v, size, (), True, Accumulate(
                    acc, red.op, kernel.body, kernel.accumulate))
            elif rest:
                part = Var("part")
                steps = (Init(part, kernel.accumulate, red.identity),) + _summed(
                    kernel, sched, rest, Accumulate(part, red.op, kernel.body, kernel.accumulate),
                    fuse_red - 1) + (Accumulate(acc, red.op, part, kernel.accumulate),)
            else:
                steps = (Accumulate(acc, red.op, kernel.body, kernel.accumulate),)
            if (rest or not sched.chunk) and not tiled:
                body = (init, Loop(inner[0], extent[inner[0]], steps, True))
        elif sched.chunk:
            body = (init,) + _nest(inner[:-1], kernel, _chunked(kernel, inner[-1], sched.chunk),
                                   None)
        else:
            body = (init,) + _summed(kernel, sched, inner,
                                     Accumulate(acc, red.op, kernel.body, kernel.accumulate),
                                     fuse_red)
    if sched.threads and sched.parallel in inner:  # this chunk's partial, in its slot
        body = body + (Store(Operand(kernel.output.name, kernel.accumulate, (CHUNK,)), acc),)
    else:
        body = body + (Store(kernel.output, _store_cast(kernel, store_value,
                                                        bool(inner or sched.expand))),)
    outer_parallel = sched.parallel if sched.parallel in outer else None
    if sched.tile is not None and sched.tile[0] in outer:
        u, v, size = sched.tile
        outer = tuple(ix for ix in outer if ix not in (u, v))
        body = _tiled(kernel, u, v, size, body, outer_parallel == u)
        outer_parallel = None if outer_parallel == u else outer_parallel
    return LoopNest(kernel, sched,
                    _dims(kernel) + head + _nest(outer, kernel, body, outer_parallel, fuse_out,
                                                 "fo"))


def _written_out(kernel: Kernel, indices: Sequence[str]) -> tuple[tuple[Stmt, ...], Expr]:
    """For ``Schedule.expand``: lets that name each value of ``indices`` (``e_0 = 0``),
    and the sum of the body's terms over every combination of them, each term in the
    accumulating dtype."""
    extent = kernel.extent
    head = tuple(Let(f"{r}_{t}", Const(t)) for r in indices for t in range(extent[r]))
    terms: list[Expr] = []
    for values in itertools.product(*(range(extent[r]) for r in indices)):
        term = _renamed_all(kernel.body, {r: f"{r}_{t}" for r, t in zip(indices, values)})
        terms.append(Cast(term, kernel.accumulate))
    return head, terms[0] if len(terms) == 1 else Call(kernel.reduce.op, tuple(terms))


def _summed(kernel: Kernel, sched: Schedule, loops: Sequence[str], step: Stmt,
            fuse: int) -> tuple[Stmt, ...]:
    """Reduction loops over ``loops`` around ``step``; in tiles when the schedule tiles
    the last two of them."""
    if sched.tile is not None and tuple(loops[-2:]) == sched.tile[:2]:
        u, v, size = sched.tile
        tiled = (_tiled(kernel, u, v, size, (), False, step)  # type: ignore[arg-type]
                 if _float_sum(kernel, step) else _tiled(kernel, u, v, size, (step,), False))
        return _nest(loops[:-2], kernel, tiled, None)
    if fuse <= 1 and isinstance(step, Accumulate) and _partials_pay(kernel, loops, (step,)):
        return _in_partials(kernel, loops, (step,))
    return _nest(loops, kernel, (step,), None, fuse, "fr")


def _partials_pay(kernel: Kernel, loops: Sequence[str], steps: Sequence[Accumulate]) -> bool:
    """Whether float sums over nested reduction loops of more than ``Policy.chunk`` terms
    should add each loop's terms into a partial of its own (see :func:`_in_partials`)."""
    return (len(loops) >= 2 and all(_float_sum(kernel, s) for s in steps)
            and math.prod(kernel.extent[i] for i in loops) > policy.POLICY.chunk)


def _float_sum(kernel: Kernel, step: Stmt) -> bool:
    """Whether ``step`` adds a term into a float (or complex) accumulator: a sum whose
    rounding error grows with its terms, summed in partials where it is long."""
    return isinstance(step, Accumulate) and step.op == "add" and kernel.accumulate[0] in "fc"


#: The fewest terms beneath a reduction loop's body for :func:`_in_partials` to give it a
#: partial sum of its own.
_PARTIAL_MIN = 16


def _in_partials(kernel: Kernel, loops: Sequence[str], steps: Sequence[Accumulate]
                 ) -> tuple[Stmt, ...]:
    """Float sums over nested reduction loops (``steps``: one per accumulator), each
    loop's body (of ``_PARTIAL_MIN`` terms or more) summed into partials of its own,
    then added to the loop outside's.

    One accumulator for every term loses precision as the sum grows: its rounding
    error grows with the number of terms added to it (``ab,bc,cd->`` over 300 x 300
    float32 in one nest, 27 million terms per thread: 5.7e-3 relative to the exact
    value, numpy's 9.7e-5).  With a partial per loop, each accumulator adds at most its
    loop's values (1.6e-7 there), as blocked summation does; the cost is an addition per
    pass of a loop, where LLVM already folds the innermost loop's vector of sums into
    one value per pass.

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> k = Kernel("k", (Operand("a0", "float32", ("i", "j")),), Operand("out", "float32", ()),
    ...            (Index("i", 100), Index("j", 100)), product(1, (("i", "j"),)), SUM, "float32")
    >>> nest = _in_partials(k, ("i", "j"), [Accumulate(Var("acc"), "add", k.body, "float32")])
    >>> for line in nest[0].lines():
    ...     print(line)
    for i in range(100):
        sum0 = float32(0)
        for j in range(100):
            sum0 = add(sum0, a0[i,j])
        acc = add(acc, sum0)
    """
    sizes, extent = kernel.sizes, kernel.extent
    identity = kernel.reduce.identity

    def level(i: int, targets: tuple[Var, ...]) -> Stmt:
        name = loops[i]
        if i == len(loops) - 1:
            return Loop(name, sizes[name], tuple(replace(s, acc=t)
                                                 for s, t in zip(steps, targets)))
        if math.prod(extent[n] for n in loops[i + 1:]) < _PARTIAL_MIN:
            return Loop(name, sizes[name], (level(i + 1, targets),))
        parts = tuple(Var(f"sum{i}" if len(steps) == 1 else f"sum{i}_{s.acc.name}")
                      for s in steps)
        return Loop(name, sizes[name], (
            *(Init(p, s.dtype, identity) for p, s in zip(parts, steps)),
            level(i + 1, parts),
            *(Accumulate(t, s.op, p, s.dtype) for t, p, s in zip(targets, parts, steps))))

    return (level(0, tuple(s.acc for s in steps)),)


def _passes(kernel: Kernel, sched: Schedule) -> tuple[Stmt, ...]:
    """The nests of a schedule with ``hoist``: the output set to the identity, then the
    hoisted reduction loops around the output loops, each output value updated with the
    sum of the remaining reductions; all inside the output loops ``around``, for each of
    their values the block of the output they select (``sched.order`` is the nest's)::

        for a...:                        # around (may be none)
            for o...: out[a, o] = 0
            for h...:                    # hoisted reduction loops
                for o...:                # the other output loops
                    acc = 0
                    for r...: acc += body    # the other reduction loops
                    out[a, o] += acc
    """
    red, acc = kernel.reduce, Var("acc")
    outputs = set(kernel.output_indices)
    around = list(sched.around)
    inside = [n for n in sched.order if n in outputs and n not in sched.around]

    def split(loops: Sequence[str]) -> str | None:  # the parallel loop, if among loops
        return sched.parallel if sched.parallel in loops else None

    target, head = kernel.output, ()
    spread = partial_spread(kernel, sched)
    if spread > 1:  # a split reduction: this chunk's own partial output, in its slot
        target = Operand(target.name, kernel.accumulate, (SLOT,) + target.indices)
        head = (Let(SLOT, Call("mul", (Var(CHUNK), Const(spread)))),)
    rest = [n for n in sched.order if n not in outputs and n not in sched.hoist]
    reset = _nest(inside, kernel, (Store(target, Const(red.identity)),), split(inside))
    if rest:
        update = ((Init(acc, kernel.accumulate, red.identity),)
                  + _nest(rest, kernel,
                          (Accumulate(acc, red.op, kernel.body, kernel.accumulate),), None)
                  + (Update(target, red.op, acc),))
    else:  # every reduction hoisted: each term updates the output, one statement (a
        # short innermost loop of it vectorises, see numba_cpu.OPAQUE_TRIPS)
        update = (Update(target, red.op, kernel.body),)
    single = _nest(inside, kernel, update, split(inside))
    h = sched.hoist[-1]
    if not rest and red.op == "add" and kernel.extent[h] >= 2 * HOIST_UNROLL:
        passes = _nest(list(sched.hoist[:-1]), kernel,
                       _hoist_unrolled(kernel, sched, h, target, inside, split(inside),
                                       single), split(sched.hoist[:-1]))
    else:
        passes = _nest(list(sched.hoist), kernel, single, split(sched.hoist))
    return head + _nest(around, kernel, reset + passes, split(around))


#: Values of the innermost hoisted reduction summed into the output in one pass.
HOIST_UNROLL = 4


def _hoist_unrolled(kernel: Kernel, sched: Schedule, h: str, target: Operand,
                    outer: Sequence[str], parallel: str | None, single: tuple[Stmt, ...]
                    ) -> tuple[Stmt, ...]:
    """The innermost hoisted reduction loop over ``h`` (every reduction hoisted, a sum),
    ``HOIST_UNROLL`` values per pass over the output, their terms added first, then the
    last ``H mod HOIST_UNROLL`` values one pass each (``single``)::

        for hb in range(H // 4):          # in chunks when h is the parallel loop
            g0 = hb * 4 + 0; ...; g3 = hb * 4 + 3
            for o...: out[o] += body[h := g0] + ... + body[h := g3]
        for hr in range(H mod 4): h = H // 4 * 4 + hr; for o...: out[o] += body

    Each pass loads and stores the output once: a quarter of the passes (d,di->i,
    a matrix-vector product, over 64 x 12800 float32 on one thread: 0.080 -> 0.047 ms,
    BLAS 0.045)."""
    n, u = kernel.sizes[h], HOIST_UNROLL
    names = [f"g{t}" for t in range(u)]
    first = Call("mul", (Var("hb"), Const(u)))
    at = tuple(Let(g, Call("add", (first, Const(t)))) for t, g in enumerate(names))
    update = (Update(target, "add", _summed_over(kernel.body, h, names)),)
    whole = _floordiv(n, u)
    loops: tuple[Stmt, ...] = (Loop("hb", whole, at + _nest(outer, kernel, update, parallel),
                                    sched.parallel == h),)
    left = _mod(n, u)
    if left:  # (the values left over; a generic kernel's count is read at run time)
        at_h = Let(h, Call("add", (_expr(_times([whole, u])), Var("hr"))))
        loops += (Loop("hr", left, (at_h,) + single, sched.parallel == h),)
    return loops


def _summed_over(body: Expr, h: str, names: Sequence[str]) -> Expr:
    """The sum of ``body`` with index ``h`` read as each of ``names``; the factors of a
    product that do not depend on h multiply the sum of the others, once (a,bac,c->ca:
    ``a0[a] * a2[c] * (a1[g0,a,c] + ... + a1[g3,a,c])``, float32 0.046 -> 0.040 ms)."""
    factors = body.args if isinstance(body, Call) and body.op == "mul" else (body,)
    kept = tuple(f for f in factors if all(h not in ld.indices for ld in loads(f)))
    varying = tuple(f for f in factors if f not in kept)
    if not kept or not varying:
        return Call("add", tuple(_renamed(body, h, g) for g in names))
    part = varying[0] if len(varying) == 1 else Call("mul", varying)
    return Call("mul", kept + (Call("add", tuple(_renamed(part, h, g) for g in names)),))


def _into_partials(kernel: Kernel, sched: Schedule) -> bool:
    """Whether the kernel is a reduction run in chunks, each writing its own partial
    output (``out[slot, ...]``) for :func:`partials` to fold."""
    return bool(sched.threads) and sched.parallel in kernel.reduction_indices


def partials(nest: LoopNest) -> LoopNest | None:
    """For a reduction run in chunks (``threads`` with a reduction loop parallel): the
    loop nest that folds the chunks' partials (``a0[c, ...]``: one value, or with
    ``hoist`` one copy of the output, per chunk, in the accumulating dtype) into the
    output, with the reduction's operator; None for any other nest.

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> from einjit.schedule import schedule
    >>> k = Kernel("k0", (Operand("a0", "float32", ("i",)),), Operand("out", "float32", ()),
    ...            (Index("i", 1 << 22),), product(1, (("i",),)), SUM, "float32")
    >>> print(partials(lower(k, schedule(k, ((1,),), (), threads=2))))
    k0p(a0[c]) -> out[]   [order c, serial]
        acc = float32(0)
        for c in range(2):
            acc = add(acc, a0[c])
        out[] = float32(acc)
    """
    k, sched = nest.kernel, nest.schedule
    if not _into_partials(k, sched):
        return None
    kept = k.output.indices
    part = "c" if "c" not in kept else "ck"  # labels are single letters
    size, slots = k.extent, sched.threads * partial_spread(k, sched)
    fold = Kernel(f"{k.name}p", (Operand("a0", k.accumulate, (part,) + kept),), k.output,
                  tuple(Index(i, size[i], i in k.dynamic) for i in kept) + (Index(part, slots),),
                  Load(0, (part,) + kept), k.reduce, k.accumulate)
    seen = dict(nest.views).get(k.output.name)  # (-1, the output's shape), if viewed
    return lower(fold, Schedule(kept + (part,)),
                 None if seen is None else {"a0": seen, k.output.name: seen[1:]})


def _block_start(prefix: str, n: int | Expr, size: int) -> tuple[tuple[Stmt, ...], int | Var]:
    """Inside ``for {prefix}b in range(ceil(n / size))``: the block's first index
    ``{prefix}0`` and its length (``size``, or ``{prefix}n`` when n is not known to be a
    multiple)."""
    first = f"{prefix}0"
    head: tuple[Stmt, ...] = (Let(first, Call("mul", (Var(f"{prefix}b"), Const(size)))),)
    if isinstance(n, int) and n % size == 0:
        return head, size
    count = Var(f"{prefix}n")
    total = _expr(n)
    return head + (Let(count.name, Call("min", (Const(size), Call("sub", (total, Var(first)))))),), count


def _chunked(kernel: Kernel, r: str, size: int, parallel: bool = False) -> tuple[Stmt, ...]:
    """The innermost reduction loop over ``r`` summed in chunks of ``size`` terms
    (``parallel``: the chunk loop is a ``prange``)::

        for rb in range(ceil(R / size)):
            r0 = rb * size; rn = min(size, R - r0)
            part = 0
            for tb in range(rn): r = r0 + tb; part += body
            acc += part
    """
    n = kernel.sizes[r]
    part, red = Var("part"), kernel.reduce
    head, count = _block_start("r", n, size)
    step = Loop(_T, count, (Let(r, Call("add", (Var("r0"), Var(_T)))),
                             Accumulate(part, red.op, kernel.body, kernel.accumulate)))
    body = head + (Init(part, kernel.accumulate, red.identity), step,
                   Accumulate(Var("acc"), red.op, part, kernel.accumulate))
    return (Loop("rb", _ceil_div(n, size), body, parallel),)


def _tiled(kernel: Kernel, u: str, v: str, size: int, body: tuple[Stmt, ...],
           parallel: bool, into: Accumulate | None = None) -> tuple[Stmt, ...]:
    """``body`` over ``u`` and ``v`` in ``size`` x ``size`` tiles::

        for pb in range(ceil(U / size)):          # prange when u was the parallel loop
            p0 = pb * size; pn = min(size, U - p0)
            for qb in range(ceil(V / size)):
                q0 = qb * size; qn = min(size, V - q0)
                for pt in range(pn): u = p0 + pt
                    for qt in range(qn): v = q0 + qt; body

    ``into``, in place of ``body``: a sum of terms into an accumulator (a reduction over
    both loops): each tile's terms are summed into a partial of their own, then added to
    it (one accumulator for all terms loses precision, see :func:`_in_partials`).
    """
    assert into is None or not body
    sizes = kernel.sizes
    head_u, count_u = _block_start("p", sizes[u], size)
    head_v, count_v = _block_start("q", sizes[v], size)
    if into is not None:
        part = Var("tsum")
        body = (Accumulate(part, into.op, into.value, into.dtype),)
    walk: Stmt = Loop("pt", count_u, (Let(u, Call("add", (Var("p0"), Var("pt")))),
                                      Loop("qt", count_v, (Let(v, Call("add", (Var("q0"), Var("qt")))),)
                                           + body)))
    tile: tuple[Stmt, ...] = (walk,)
    if into is not None:
        tile = (Init(part, into.dtype, kernel.reduce.identity), walk,
                Accumulate(into.acc, into.op, part, into.dtype))
    blocks_v = Loop("qb", _ceil_div(sizes[v], size), head_v + tile)
    return (Loop("pb", _ceil_div(sizes[u], size), head_u + (blocks_v,), parallel),)


def _unrolled(kernel: Kernel, sched: Schedule, outer: list[str], inner: list[str]
              ) -> tuple[Stmt, ...]:
    """Lowering for ``unroll = (v, n)``: n values of the innermost output index ``v`` per
    pass over the reductions, each in its own scalar accumulator; a plain loop finishes
    the last ``V mod n`` values::

        for vb in range(V // n):                  # prange when v is the parallel loop
            v0 = vb * n; w0 = v0 + 0; ...; w<n-1> = v0 + n - 1
            ac0 = ... = ac<n-1> = identity
            for r ...: ac<t> = op(ac<t>, body[v := w<t>])  for each t
            out[..., w<t>] = ac<t>                            for each t
        for vr in range(V mod n): v = V // n * n + vr; (the plain reduction)

    With ``sched.band = (u, T)`` both run inside ``for ub in range(ceil(U / T))`` and
    each value of ``u`` in the band inside the ``vb`` (and ``vr``) loop: the n operand
    rows of a ``vb`` block stay in cache for T values of ``u``.  With ``sched.rows = m``
    as well, the ``vb`` block takes m values of u at once (``h0 .. h<m-1>``, m x n
    accumulators ``ac<p>_<t>``), then the band's last ``count mod m`` values one by one.
    """
    v, n = sched.unroll  # type: ignore[misc]
    outer.remove(v)
    size = kernel.sizes[v]
    red, dtype = kernel.reduce, kernel.accumulate
    lanes = [f"w{t}" for t in range(n)]
    out = kernel.output

    def tile(rows: Sequence[str | None]) -> tuple[Stmt, ...]:
        """Accumulators for n values of v (and, with names in ``rows``, for each of
        those values of the band's index), the reductions, the stores."""
        u = sched.band[0] if sched.band else None
        cells = [(f"ac{t}" if len(rows) == 1 else f"ac{p}_{t}", lane, row)
                 for p, row in enumerate(rows) for t, lane in enumerate(lanes)]
        where = [{v: lane} | ({u: row} if row and u else {}) for _, lane, row in cells]
        steps = tuple(Accumulate(Var(acc), red.op, _renamed_all(kernel.body, names), dtype)
                      for (acc, _, _), names in zip(cells, where))
        stores = tuple(
            Store(Operand(out.name, out.dtype, tuple(names.get(ix, ix) for ix in out.indices)),
                  _store_cast(kernel, Var(acc), True))
            for (acc, _, _), names in zip(cells, where))
        inits = tuple(Init(Var(acc), dtype, red.identity) for acc, _, _ in cells)
        if _partials_pay(kernel, inner, steps):
            return inits + _in_partials(kernel, inner, steps) + stores
        return inits + _nest(inner, kernel, steps, None) + stores

    head = (Let("v0", Call("mul", (Var("vb"), Const(n)))),) + tuple(
        Let(lane, Call("add", (Var("v0"), Const(t)))) for t, lane in enumerate(lanes))
    band = sched.band
    if band is not None:
        outer.remove(band[0])
        head_u, count_u = _block_start("u", kernel.sizes[band[0]], band[1])

        def across_band(stmts: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
            at_u = Let(band[0], Call("add", (Var("u0"), Var("ut"))))
            return (Loop("ut", count_u, (at_u,) + stmts),)

        m = sched.rows
        if m > 1:
            # m values of u at once (h0 .. h<m-1>), then the band's last count mod m
            rows = [f"h{p}" for p in range(m)]
            pairs = (count_u // m if isinstance(count_u, int)
                     else Call("floordiv", (count_u, Const(m))))
            first = Call("add", (Var("u0"), Call("mul", (Var("ut"), Const(m)))))
            at_rows = tuple(Let(row, Call("add", (first, Const(p))))
                            for p, row in enumerate(rows))
            body = head + (Loop("ut", pairs, at_rows + tile(rows)),)
            done = pairs * m if isinstance(pairs, int) else Call("mul", (pairs, Const(m)))
            left = (count_u - done if isinstance(count_u, int)
                    else Call("sub", (count_u, done)))
            if not isinstance(left, int) or left:
                start_u = Call("add", (Var("u0"), Const(done) if isinstance(done, int)
                                       else done))
                at_u = Let(band[0], Call("add", (start_u, Var("ur"))))
                body += (Loop("ur", left, (at_u,) + tile([None])),)
        else:
            body = head + across_band(tile([None]))
    else:
        def across_band(stmts: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
            return stmts

        body = head + tile([None])
    full = size // n if isinstance(size, int) else Call("floordiv", (size, Const(n)))
    blocks = Loop("vb", full, body, sched.parallel == v)
    start = full * n if isinstance(full, int) else Call("mul", (full, Const(n)))
    rest_n = size - start if isinstance(size, int) else Call("sub", (size, start))
    acc = Var("acc")
    plain = (Init(acc, dtype, red.identity),)
    plain += _nest(inner, kernel, (Accumulate(acc, red.op, kernel.body, dtype),), None)
    plain += (Store(out, _store_cast(kernel, acc, True)),)
    plain = (Let(v, Call("add", (_expr(start), Var("vr")))),) + across_band(plain)
    loops: tuple[Stmt, ...] = (blocks,)
    if not isinstance(rest_n, int) or rest_n:  # parallel too when ``vb`` is
        loops += (Loop("vr", rest_n, plain, sched.parallel == v),)
    outer_parallel = sched.parallel if sched.parallel in outer else None
    if band is not None:
        u_blocks = Loop("ub", _ceil_div(kernel.sizes[band[0]], band[1]), head_u + loops,
                        sched.parallel == band[0])
        return _nest(outer, kernel, (u_blocks,), outer_parallel)
    return _nest(outer, kernel, loops, outer_parallel)


def _renamed_all(expr: Expr, names: dict[str, str]) -> Expr:
    """``expr`` with each index ``old`` of ``names`` read as ``names[old]``."""
    return map_loads(expr, lambda ld: Load(ld.operand,
                                           tuple(names.get(ix, ix) for ix in ld.indices)))


def _renamed(expr: Expr, old: str, new: str) -> Expr:
    """``expr`` with index ``old`` read as ``new`` in every load."""
    return _renamed_all(expr, {old: new})


def _store_cast(kernel: Kernel, value: Expr, reduced: bool) -> Expr:
    dtype = kernel.accumulate if reduced else _dtype_of(kernel.body, kernel)
    return value if dtype == kernel.output.dtype else Cast(value, kernel.output.dtype)


def _blocked(kernel: Kernel, sched: Schedule, outer: list[str], inner: list[str]
             ) -> tuple[Stmt, ...]:
    """Lowering for a blocked output index ``v``: for each block of ``size`` values of v,
    a local array of accumulators is reset, the reduction loops run with v innermost, and
    the block is stored::

        for vb in range(ceil(V / size)):
            v0 = vb * size; vn = min(size, V - v0)
            for tb in range(vn): acc[tb] = 0
            for r ...:                      # reduction loops
                for tb in range(vn): v = v0 + tb; acc[tb] += body
            for tb in range(vn): v = v0 + tb; out[..., v] = acc[tb]

    With ``sched.block_rows = (u, m)`` (a register tile), each pass takes m values of u
    (``h0 .. h<m-1>``, row p of the accumulators at ``acc[p * size + tb]``), the blocks
    are ``V // size`` whole ones and one of the last ``V mod size`` values, every length
    a constant, and the last ``U mod m`` values of u run one row at a time; each row's
    accumulators are stored by a loop of their own.  With
    ``sched.pack`` as well, the blocks of v run outermost, each first copying the packed
    inputs' values for it into their panels, then every value of u::

        for vb in range(V // size):               # then the last V mod size values
            v0 = vb * size
            for r ...: for tb in range(size): pk1[flat(r) * size + tb] = a1[..., v0 + tb]
            for ub in range(U // m): (the tile, reading pk1[flat(r) * size + tb])
            for ur in range(U mod m): (one row)
    """
    v, size = sched.block  # type: ignore[misc]
    outer.remove(v)
    n = kernel.sizes[v]
    red, out = kernel.reduce, kernel.output
    at_v = Let(v, Call("add", (Var("v0"), Var(_T))))

    def block(head: tuple[Stmt, ...], count: int | Var, rows: Sequence[dict[str, str]],
              panels: bool = False) -> tuple[Stmt, ...]:
        """One block of v (from ``v0``, ``count`` values), one row of accumulators per
        renaming of u in ``rows``; the packed inputs read from their panels."""
        accs = [Var("acc", Var(_T) if p == 0 else Call("add", (Const(p * size), Var(_T))))
                for p in range(len(rows))]
        body = kernel.body
        if panels:
            body = _from_panels(body, {k: Var(f"pk{k}", _panel_at(kernel, k, inner, count))
                                       for k in sched.pack})
        reset = Loop(_T, count, tuple(Init(acc, kernel.accumulate, red.identity)
                                      for acc in accs))
        step = Loop(_T, count, (at_v,) + tuple(
            Accumulate(acc, red.op, _renamed_all(body, names), kernel.accumulate)
            for acc, names in zip(accs, rows)))
        # each row's values stored by a loop of its own: a row's accumulators copied out
        # in one loop are vector stores from the registers that hold them, where a loop
        # over all rows at once, unrolled completely, stored them one value at a time
        # (256 products of 32 x 32 by 32 x 32 float32, tiles of 2 x 32, one thread:
        # 0.30 -> 0.23 ms; 32768 x 32 by 32 x 32 1.13 -> 0.86 ms)
        store = tuple(
            Loop(_T, count, (at_v, Store(Operand(out.name, out.dtype,
                                                 tuple(names.get(ix, ix) for ix in out.indices)),
                                         _store_cast(kernel, acc, True))))
            for acc, names in zip(accs, rows))
        return head + (reset,) + _nest(inner, kernel, (step,), None) + store

    def blocks(rows: Sequence[dict[str, str]]) -> tuple[Stmt, ...]:
        """Every block of v: whole ones, then (tiled) a shorter last one; the length of
        each is a constant in a register tile, which LLVM keeps in registers."""
        if sched.block_rows is None:
            head, count = _block_start("v", n, size)
            return (Loop("vb", _ceil_div(n, size), block(head, count, rows),
                         sched.parallel == v),)
        whole, rest = divmod(n, size)  # type: ignore[operator]
        first = Let("v0", Call("mul", (Var("vb"), Const(size))))
        stmts: tuple[Stmt, ...] = (Loop("vb", whole, block((first,), size, rows)),)
        if rest:
            stmts += block((Let("v0", Const(whole * size)),), rest, rows)
        return stmts

    def fill(count: int) -> tuple[Stmt, ...]:
        """Copy this block of each packed input into its panel (see ``_panel_at``)."""
        stmts: tuple[Stmt, ...] = ()
        for k in sched.pack:
            op = kernel.inputs[k]
            panel = Operand(f"pk{k}", op.dtype, ("pi",))
            step = Loop(_T, count, (at_v, Let("pi", _panel_at(kernel, k, inner, count)),
                                    Store(panel, Load(k, op.indices))))
            stmts += _nest([r for r in inner if r in op.indices], kernel, (step,), None)
        return stmts

    m = 1
    panels: tuple[Stmt, ...] = ()
    if sched.block_rows is None:
        loops: tuple[Stmt, ...] = blocks([{}])
    else:  # m values of u at once (h0 .. h<m-1>), then the last U mod m one by one
        u, m = sched.block_rows
        outer.remove(u)
        full, left = divmod(kernel.extent[u], m)
        rows = [f"h{p}" for p in range(m)]
        first = Call("mul", (Var("ub"), Const(m)))
        at_rows = tuple(Let(row, Call("add", (first, Const(p)))) for p, row in enumerate(rows))
        at_u = Let(u, Call("add", (Const(full * m), Var("ur"))))

        def across_u(tile: Callable[[Sequence[dict[str, str]]], tuple[Stmt, ...]]
                     ) -> tuple[Stmt, ...]:
            stmts: tuple[Stmt, ...] = (Loop("ub", full, at_rows + tile([{u: r} for r in rows]),
                                            sched.parallel == u),)
            if left:
                stmts += (Loop("ur", left, (at_u,) + tile([{}]), sched.parallel == u),)
            return stmts

        if not sched.pack:
            loops = across_u(blocks)
        else:  # each block of v copied into the panels once, then every value of u
            whole, rest = divmod(n, size)  # type: ignore[operator]
            loops = (Loop("vb", whole, (Let("v0", Call("mul", (Var("vb"), Const(size)))),)
                          + fill(size) + across_u(lambda rs: block((), size, rs, True))),)
            if rest:
                loops += ((Let("v0", Const(whole * size)),) + fill(rest)
                          + across_u(lambda rs: block((), rest, rs, True)))
            panels = tuple(Alloc(f"pk{k}", kernel.inputs[k].dtype,
                                 panel_elements(kernel, k, inner, size),
                                 panel_bytes(kernel, k, inner, size) <= policy.POLICY.stack_bytes)
                           for k in sched.pack)
    accs: tuple[Stmt, ...] = (Alloc("acc", kernel.accumulate, m * size,
                                    m * size * np.dtype(kernel.accumulate).itemsize
                                    <= policy.POLICY.stack_bytes),)
    if sched.pack and sched.parallel == sched.block_rows[0]:  # type: ignore[index]
        # the panels shared by the parallel loops over u (filled before them), their
        # accumulators each loop's own
        return panels + _nest(outer, kernel, _each_own(loops, accs), None)
    allocs = panels + accs
    if sched.parallel is not None and sched.parallel not in outer:  # v, or u: each loop's
        return _nest(outer, kernel, _each_own(loops, allocs), None)  # own
    if sched.parallel is not None and outer and sched.parallel == outer[0]:
        inside = _nest(outer[1:], kernel, loops, None)
        return (Loop(outer[0], kernel.sizes[outer[0]], allocs + inside, True),)
    return allocs + _nest(outer, kernel, loops, None)


def _each_own(stmts: tuple[Stmt, ...], allocs: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """``stmts`` with ``allocs`` first in the body of each parallel loop among them (at
    any depth): each iteration of a ``prange`` has its own accumulators (and panels)."""
    out: list[Stmt] = []
    for s in stmts:
        if isinstance(s, Loop):
            s = replace(s, body=(allocs + s.body) if s.parallel else _each_own(s.body, allocs))
        out.append(s)
    return tuple(out)


def _panel_at(kernel: Kernel, k: int, inner: Sequence[str], count: int) -> Expr:
    """Where the element of input k for the block's value ``tb`` lies in its panel
    (``Schedule.pack``): the input's reduction indices in loop order, row-major, then
    the block's ``count`` values innermost."""
    at: Expr = Var(_T)
    stride = count
    for r in reversed([r for r in inner if r in kernel.inputs[k].indices]):
        at = Call("add", (Call("mul", (Var(r), Const(stride))), at))
        stride *= kernel.extent[r]
    return at


def _from_panels(expr: Expr, panels: dict[int, Var]) -> Expr:
    """``expr`` with each load of an input in ``panels`` read from its panel instead."""
    return map_loads(expr, lambda ld: panels.get(ld.operand, ld))


def _dtype_of(expr: Expr, kernel: Kernel) -> str:
    """The dtype a body expression evaluates to (loads in their operand's dtype)."""
    if isinstance(expr, Cast):
        return expr.dtype
    if isinstance(expr, Load):
        return kernel.inputs[expr.operand].dtype
    return kernel.accumulate
