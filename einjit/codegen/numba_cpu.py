"""Render a :class:`~einjit.ir.LoopNest` as the source of a ``numba.njit`` module.

The renderer prints what the scheduler decided and decides nothing: loops in the given
order, the parallel loop as ``prange`` or as this call's chunk of it (extra arguments
``chunk, chunks``) where the schedule says, sizes as literals (Numba freezes them and LLVM
can unroll and vectorise on them).  The module is written to a file and imported by
:mod:`einjit.cache`, so Numba's ``cache=True`` works across processes.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product, Schedule
>>> from einjit.lower import lower
>>> k = Kernel("k0", (Operand("a0", "float32", ("i",)), Operand("a1", "float32", ("i",))),
...            Operand("out", "float32", ()), (Index("i", 8),),
...            product(2, (("i",), ("i",))), SUM, "float32")
>>> print(render_function(lower(k, Schedule(("i",)))), end="")
def k0(a0, a1, out):
    acc = np.float32(0)
    for i in range(8):
        acc += a0[i] * a1[i]
    out[()] = acc
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterator

from ..ir import (CHUNK, CHUNKS, SLOT, Accumulate, Alloc, Call, Cast, Const, Dim, Expr, Index, Init,
                  Let, Load, Loop, LoopNest, Stmt, Store, Update, Var, loads)

__all__ = ["render_function", "render_module"]

#: Innermost loops of a single statement with a constant trip count in this range run
#: over ``range(vm.opaque(n))``: LLVM would unroll them completely before its loop
#: vectoriser runs (Numba leaves the SLP vectoriser, which could pack the copies again,
#: off), so a sum over 32 contiguous floats was 32 scalar additions; with the trip count
#: hidden the loop is vectorised (``abc->b`` on 1000 x 64 x 32 float32: 0.45 -> 0.28 ms).
#: Shorter loops gain from the complete unrolling; longer or larger bodies are not
#: unrolled completely anyway.
OPAQUE_TRIPS = range(16, 65)
#: The same for a loop over a block of accumulators (a ``Let`` of its index, then the
#: statement): ``ij,jk->ik`` int32 with k = 32, 0.20 -> 0.09 ms; with k = 48, 0.07 ms
#: unrolled against 0.13 ms hidden.  Unrolled completely, a block of 33 to 40 values
#: was scalar code (``bac->bc`` over 256 x 32 x 40, one thread: float32 0.064 -> 0.037
#: ms hidden, with a factor ``bac,b->bc`` 0.092 -> 0.039 ms; float64 0.115 -> 0.085
#: ms; int32 0.12 -> 0.06 ms); of 44 to 60 values it was so for some bodies only
#: (``bac->bc`` 0.08 -> 0.04 ms hidden at 44, ``bac,b->bc`` 0.028 -> 0.042 ms).
OPAQUE_BLOCK_TRIPS = range(16, 41)
#: A loop of constant trip count around sums into a scalar over computed counts (the
#: chunks of a long sum, each ``range(min(size, n - start))``) runs over
#: ``range(vm.opaque(n))`` too: LLVM unrolled it completely, every inner count then a
#: constant, each of those sums one long chain (below): ``i,i->`` over 20000 float32, 20
#: chunks of 1024 terms, 1250 multiply-add instructions, 3.8 us; 6 and 1.7 us hidden.
#: (Not around blocks of accumulators: ``ac->c`` in 2 blocks of 512 lost 16 % hidden.)
#: A sum into one scalar runs over ``range(vm.opaque(n))`` from 16 trips, however
#: long: with the trip count known LLVM vectorises it with one vector accumulator and
#: unrolls that completely up to a few hundred vectors, one chain of dependent
#: fused multiply-adds (``ij,ij->i`` over 4096^2 float32 in chunks of 1024 terms, one
#: thread: 7.7 -> 4.1 ms; chunks of 256 and 512 lost as much, 2048 and 4096 nothing).
OPAQUE_CHAIN_MIN = 16

_BINARY = {"mul": "*", "add": "+", "sub": "-", "truediv": "/", "floordiv": "//", "mod": "%",
           "pow": "**", "xor": "^", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==",
           "ne": "!="}
#: Operators spelled as a numpy function (NaN-propagating min and max, as numpy's), or as
#: one of :mod:`einjit.codegen.vecmath` (``vm``): an ``exp`` LLVM can vectorise.
_NUMPY = {"maximum": "np.maximum", "minimum": "np.minimum", "exp": "vm.exp",
          "exp_flush": "vm.exp_flush", "log": "np.log",
          "sqrt": "np.sqrt", "sin": "np.sin", "cos": "np.cos", "tan": "np.tan",
          "tanh": "np.tanh", "sinh": "np.sinh", "cosh": "np.cosh", "log1p": "np.log1p",
          "expm1": "np.expm1", "log2": "np.log2", "log10": "np.log10", "floor": "np.floor",
          "ceil": "np.ceil", "arctan": "np.arctan", "arcsin": "np.arcsin",
          "arccos": "np.arccos", "exp2": "np.exp2", "cbrt": "np.cbrt", "abs": "np.abs",
          "hypot": "np.hypot", "arctan2": "np.arctan2", "copysign": "np.copysign",
          "logaddexp": "np.logaddexp"}
#: Reductions whose accumulation is ``acc = f(acc, value)`` (max and min: one LLVM
#: ``maximum``/``minimum`` each, see :func:`einjit.codegen.vecmath.fmax`).
_FOLDS = {"maximum": "vm.fmax", "minimum": "vm.fmin", "logaddexp": "np.logaddexp"}
#: Boolean reductions: ``acc op= value`` on booleans.
_LOGICAL = {"or": "|", "and": "&"}


@dataclass(frozen=True)
class _Subscripts:
    """How to spell subscripts: ``unsigned``, the indices LLVM cannot prove non-negative
    (computed ones, see :func:`_computed`), and ``flat``, the strides of each input
    read flat (see :class:`einjit.ir.Schedule`), or None."""

    unsigned: frozenset[str] = frozenset()
    flat: tuple[tuple[int, ...] | None, ...] = ()
    start: tuple[int, ...] = ()  # per input read flat: its first element's offset there


_PLAIN = _Subscripts()


def _index(indices: tuple[str, ...], subs: _Subscripts = _PLAIN) -> str:
    """A subscript.  Indices LLVM cannot prove non-negative are cast to ``np.uintp``:
    Numba then emits no negative-index wraparound, whose select per access stops a loop
    from vectorising."""
    if not indices:
        return "()"
    return ", ".join(f"np.uintp({i})" if i in subs.unsigned else i for i in indices)


def _flat_index(indices: tuple[str, ...], strides: tuple[int, ...], start: int = 0) -> str:
    """The offset of ``indices`` in a flat input with these element strides, whose first
    element lies ``start`` elements into it (after those its negative strides reach)."""
    parts = [("+", str(start))] if start else []
    for i, st in zip(indices, strides):
        if st:
            parts.append(("+" if st > 0 else "-", i if abs(st) == 1 else f"{i} * {abs(st)}"))
    if not parts:
        return "0"
    (sign, first), rest = parts[0], parts[1:]
    text = ("-" if sign == "-" else "") + first + "".join(f" {sg} {t}" for sg, t in rest)
    return f"np.uintp({text})"


def flat_span(extents: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, int]:
    """``(span, start)`` of an array read flat: the elements from its lowest address to
    its highest, and how far into them its first element lies (negative strides).

    >>> flat_span((3, 4), (-8, 1))
    (20, 16)
    """
    span = 1 + sum((n - 1) * abs(st) for n, st in zip(extents, strides))
    return span, sum((n - 1) * -st for n, st in zip(extents, strides) if st < 0)


def _expr(e: Expr, subs: _Subscripts = _PLAIN) -> str:
    if isinstance(e, Load):
        if not e.indices:  # read once at the top (Numba's parfors reject a 0-d getitem)
            return f"s{e.operand}"
        flat = subs.flat[e.operand] if e.operand < len(subs.flat) else None
        if flat is not None:  # see render_function
            start = subs.start[e.operand] if subs.start else 0
            return f"f{e.operand}[{_flat_index(e.indices, flat, start)}]"
        return f"a{e.operand}[{_index(e.indices, subs)}]"
    if isinstance(e, Var):
        if e.at is None:
            return e.name
        at = e.at
        if isinstance(at, Var) and at.at is None and at.name in subs.unsigned:
            return f"{e.name}[np.uintp({at.name})]"
        return f"{e.name}[{_expr(at, subs)}]"
    if isinstance(e, Const):
        return _literal(e.value)
    if isinstance(e, Dim):
        return f"{e.array}.shape[{e.axis}]"
    if isinstance(e, Cast):
        if e.dtype == "bool":  # (a > b) != 0, never the chained a > b != 0
            return f"({_operand(e.value, subs)} != 0)"
        return f"{_np(e.dtype)}({_expr(e.value, subs)})"
    if isinstance(e, Call):
        if e.op in ("min", "max"):  # index arithmetic (block lengths)
            return f"{e.op}({', '.join(_expr(a, subs) for a in e.args)})"
        if e.op in _NUMPY:
            return f"{_NUMPY[e.op]}({', '.join(_expr(a, subs) for a in e.args)})"
        if e.op == "neg":
            return f"-{_operand(e.args[0], subs)}"
        if e.op == "not":
            return f"(not {_operand(e.args[0], subs)})"
        if e.op in _LOGICAL:
            return f" {_LOGICAL[e.op]} ".join(_operand(a, subs) for a in e.args)
        if e.op == "where":
            cond, yes, no = (_expr(a, subs) for a in e.args)
            return f"({yes} if {cond} else {no})"
        sym = _BINARY.get(e.op)
        if sym is None:
            raise ValueError(f"the Numba renderer has no spelling for operator {e.op!r}")
        if len(e.args) == 1:
            return _expr(e.args[0], subs)
        return f" {sym} ".join(_operand(a, subs) for a in e.args)
    raise TypeError(f"not an expression: {e!r}")


def _operand(e: Expr, subs: _Subscripts = _PLAIN) -> str:
    """``e`` as an operand of an infix operator (parenthesised when it is one itself)."""
    text = _expr(e, subs)
    if isinstance(e, Call) and (e.op in _BINARY or e.op in _LOGICAL or e.op == "neg"):
        return f"({text})"
    if isinstance(e, Const) and isinstance(e.value, (int, float)) and e.value < 0:
        return f"({text})"
    return text


def _np(dtype: str) -> str:
    """The numpy scalar type of a dtype name, as Numba spells it."""
    return "np.bool_" if dtype == "bool" else f"np.{dtype}"


def _size(ix: Index) -> str:
    return f"n_{ix.name}" if ix.dynamic else str(ix.extent)


def _product(factors: list[Index]) -> str:
    """The product of some indices' extents: one literal, or a parenthesised product."""
    static = 1
    names = []
    for ix in factors:
        if ix.dynamic:
            names.append(f"n_{ix.name}")
        else:
            static *= ix.extent
    if not names:
        return str(static)
    return "(" + " * ".join(names + ([str(static)] if static != 1 else [])) + ")"


def _literal(value: object) -> str:
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(value)


@dataclass(frozen=True)
class _Context:
    """What the schedule says about how to render a kernel's statements: sums
    reassociated (:func:`vecmath.radd`), products accumulated as multiply-adds
    (:func:`vecmath.rmuladd` where sums are reassociated, else :func:`vecmath.muladd`,
    but for a ``prange`` loop's own reduction), the parallel loop as
    this call's chunk ``chunk`` of ``chunks``; in a register tile, the loops that store
    its rows keep their trip counts (:func:`_copy_out`)."""

    reassociate: bool = False
    chunked: bool = False
    subs: _Subscripts = _PLAIN  # how to spell subscripts
    parfor: bool = False  # a reduction of a ``prange`` loop: ``acc += x`` only
    tile: bool = False  # a register tile's (``Schedule.block_rows``)


def _chain(loop: Loop) -> bool:
    """Whether ``loop``'s work (its ``Let``s aside) is one sum into a scalar."""
    work = [st for st in loop.body if not isinstance(st, Let)]
    return len(work) == 1 and isinstance(work[0], Accumulate) and work[0].acc.at is None


def _short_rows(loop: Loop, work: list[Stmt]) -> bool:
    """Whether ``loop`` runs along a register tile's rows, shorter than
    ``OPAQUE_TRIPS``, each statement a sum into a block of accumulators (one per row)
    that reads the same values along the loop (the rows differ by factors each reads
    once: broadcasts).  LLVM unrolls such a loop completely into scalar code; with its
    trip count hidden it is vectorised (8 rows of 8 float32 ``ce,ca->ae`` over 75 x 8 by
    75 x 100: 160 scalar multiply-adds, 29-32 -> 8 us; float64 30 -> 13 us; 64 products
    of 64 x 32 by 32 x 8 float32 0.27 -> 0.065-0.075 ms).  Where each row reads its own
    run (``ijk,jk->ik`` over 200 x 300 x 8), the unrolled loop ran 1.8x faster."""
    sums = [st for st in work if isinstance(st, Accumulate) and st.acc.at is not None]
    if not (isinstance(loop.extent, int) and loop.extent < OPAQUE_TRIPS.start
            and 1 < len(sums) == len(work)):
        return False
    along = {loop.index} | {st.name for st in loop.body if isinstance(st, Let)}
    reads = [{ld for ld in loads(st.value) if along & set(ld.indices)} for st in sums]
    return bool(reads[0]) and all(r == reads[0] for r in reads)


def _copy_out(work: list[Stmt], ctx: _Context) -> bool:
    """Whether a loop's work is a register tile's row of accumulators stored as they are
    (no cast).  Such a loop keeps its trip count: LLVM stores the row as a few vectors
    from the registers that hold it, where with the count hidden it called ``memcpy``
    (256 products of 32 x 32 by 32 x 32 float32 in tiles of 2 x 32, two threads: 0.24 ms
    hidden, 0.12-0.13 ms kept).  Outside tiles it was mixed (``bac->bc`` over 256 x 32 x
    n float32, counts kept against hidden: n = 16 to 32 0.72-0.95 of the time, 36 and
    40 1.08-1.10x; float64 1.02-1.07x), so those keep ``OPAQUE_BLOCK_TRIPS``."""
    return (ctx.tile and len(work) == 1 and isinstance(work[0], Store)
            and isinstance(work[0].value, Var) and work[0].value.at is not None)


def _stmt(s: Stmt, indent: str, ctx: _Context = _Context()) -> list[str]:
    if isinstance(s, Loop):
        rng = "prange" if s.parallel else "range"
        extent = s.extent if isinstance(s.extent, int) else _expr(s.extent, ctx.subs)
        work = [st for st in s.body if not isinstance(st, Let)]  # Lets: index arithmetic
        trips = OPAQUE_TRIPS if len(work) == len(s.body) else OPAQUE_BLOCK_TRIPS
        chain = _chain(s)
        around = any(isinstance(st, Loop) and not isinstance(st.extent, int) and _chain(st)
                     for st in work)
        if (isinstance(s.extent, int) and not s.parallel and s.extent > 1
                and not _copy_out(work, ctx)
                and (around or len(work) == 1 and not isinstance(work[0], Loop)
                     and (s.extent in trips or (chain and s.extent >= OPAQUE_CHAIN_MIN))
                     or _short_rows(s, work))):
            extent = f"vm.opaque({extent})"
        lines = [f"{indent}for {s.index} in {rng}({extent}):"]
        if s.parallel and ctx.chunked:  # one chunk of the loop, on einjit's threads
            if isinstance(s.extent, Call):  # (n - m) * chunk, not n - m * chunk
                extent = f"({extent})"
            lines = [f"{indent}for {s.index} in range(({extent} * {CHUNK}) // {CHUNKS}, "
                     f"({extent} * ({CHUNK} + 1)) // {CHUNKS}):"]
        inner = indent + "    "
        factors: list[Index] = []
        for ix in reversed(s.unpack):  # row-major: the last unpacked index varies fastest
            value = f"({s.index} // {_product(factors)})" if factors else s.index
            lines.append(f"{inner}{ix.name} = {value} % {_size(ix)}" if ix is not s.unpack[0]
                         else f"{inner}{ix.name} = {value}")
            factors.append(ix)
        # Numba's parfors only know ``acc += x`` as the reduction of a prange loop.
        flat = (replace(ctx, reassociate=False, parfor=True) if s.parallel and not ctx.chunked
                else ctx)
        for child in s.body:
            lines += _stmt(child, indent + "    ", flat if isinstance(child, Accumulate)
                           else ctx)
        return lines
    if isinstance(s, Init):
        return [f"{indent}{_expr(s.acc, ctx.subs)} = {_np(s.dtype)}({_literal(s.value)})"]
    if isinstance(s, Accumulate):
        acc = _expr(s.acc, ctx.subs)
        if s.op in _FOLDS:
            return [f"{indent}{acc} = {_FOLDS[s.op]}({acc}, {_expr(s.value, ctx.subs)})"]
        if s.op == "add" and ctx.reassociate:  # a sum LLVM may vectorise (see vecmath.radd)
            return [f"{indent}{acc} = vm.radd({acc}, {_expr(s.value, ctx.subs)})"]
        if s.op == "muladd":  # acc + p * q (the value is the product p * q)
            p, q = s.value.args  # type: ignore[union-attr]
            if ctx.reassociate or not (ctx.parfor or _flagged(s)):  # fused by an intrinsic
                fn = "vm.rmuladd" if ctx.reassociate else "vm.muladd"
                return [f"{indent}{acc} = {fn}({_expr(p, ctx.subs)}, {_expr(q, ctx.subs)}, {acc})"]
            return [(f"{indent}{acc} += {_operand(p, ctx.subs)} * "
                     f"{_operand(q, ctx.subs)}")]
        sym = _BINARY.get(s.op) or _LOGICAL.get(s.op)
        if sym is None:
            raise ValueError(f"the Numba renderer has no spelling for reduction {s.op!r}")
        return [f"{indent}{acc} {sym}= {_expr(s.value, ctx.subs)}"]
    if isinstance(s, Alloc):
        if s.stack:
            return [f"{indent}{s.name} = vm.local({s.size}, {_np(s.dtype)})"]
        return [f"{indent}{s.name} = np.empty({s.size}, dtype={_np(s.dtype)})"]
    if isinstance(s, Let):
        return [f"{indent}{s.name} = {_expr(s.value, ctx.subs)}"]
    if isinstance(s, Store):
        return [(f"{indent}{s.output.name}[{_index(s.output.indices, ctx.subs)}] = "
                 f"{_expr(s.value, ctx.subs)}")]
    if isinstance(s, Update):
        sym = _BINARY.get(s.op) or _LOGICAL.get(s.op)
        if sym is None:
            raise ValueError(f"the Numba renderer has no spelling for reduction {s.op!r}")
        return [(f"{indent}{s.output.name}[{_index(s.output.indices, ctx.subs)}] {sym}= "
                 f"{_expr(s.value, ctx.subs)}")]
    raise TypeError(f"not a statement: {s!r}")


def _flagged(s: Accumulate) -> bool:
    """Whether a multiply-add summed in order is spelled ``acc += p * q`` and fused by
    the function's ``fastmath={'contract'}`` (see :func:`render_module`) rather than by
    :func:`vecmath.muladd`: where both factors are values read (or casts of them).  LLVM
    prices the intrinsic so cheaply that it unrolled a register tile's loop of 16
    values completely before its loop vectoriser ran, leaving scalar code (Numba keeps
    the SLP vectoriser off): ``bij,bjk->bik`` over 1024 16 x 16 float32 matrices, one
    thread, 0.12 ms as a multiply and an add, 1.06 ms by the intrinsic, 0.12 ms fused by
    the flag; over 32 products of 64 x 128 by 128 x 64 float64 (blocks of 16): 0.88,
    4.4 and 0.67 ms.  Computed factors keep the intrinsic (the flag would contract
    their own arithmetic too)."""
    return s.op == "muladd" and all(  # an input's element, a panel's or a local
        isinstance(f.value if isinstance(f, Cast) else f, (Load, Var))
        for f in s.value.args)  # type: ignore[union-attr]


def _walk(stmts: tuple[Stmt, ...]) -> Iterator[Stmt]:
    """Every statement of ``stmts``, loops' bodies included."""
    for st in stmts:
        yield st
        if isinstance(st, Loop):
            yield from _walk(st.body)


def render_function(nest: LoopNest) -> str:
    """The ``def`` of one kernel (without decorator)."""
    k = nest.kernel
    chunked = nest.schedule.threads > 0
    args = ", ".join([op.name for op in k.inputs] + [k.output.name]
                     + ([CHUNK, CHUNKS] if chunked else []))
    lines = [f"def {k.name}({args}):"]
    if nest.schedule.vector_bits:
        lines.append(f"    vm.vector_width({nest.schedule.vector_bits})")
    lines += [f"    {name} = {name}.reshape({shape!r})" for name, shape in nest.views]
    lines += [f"    s{n} = {op.name}[()]" for n, op in enumerate(k.inputs) if not op.indices]
    extent = k.extent
    starts = []
    for n, (op, strides) in enumerate(zip(k.inputs, nest.schedule.flat)):
        start = 0
        if strides is not None:  # read flat: the run of memory it spans, as a 1-D array
            span, start = flat_span(tuple(extent[i] for i in op.indices), strides)
            lines.append(f"    f{n} = vm.flat_from({op.name}, {span}, {start})" if start
                         else f"    f{n} = vm.flat({op.name}, {span})")
        starts.append(start)
    ctx = _Context(nest.schedule.reassociate, chunked,
                   _Subscripts(_computed(nest.body, chunked), nest.schedule.flat,
                               tuple(starts) if any(starts) else ()),
                   tile=nest.schedule.block_rows is not None)
    for s in nest.body:
        if chunked and isinstance(s, Loop) and not (_has_parallel(s)
                                                   or _writes_own(s, k.output.name)):
            raise ValueError(f"{k.name}: a chunked kernel runs only its parallel loop, not {s}")
        lines += _stmt(s, "    ", ctx)
    return "\n".join(lines) + "\n"


def _has_parallel(loop: Loop) -> bool:
    """Whether ``loop`` is the parallel loop or has it inside (a chunked kernel's every
    loop must be restricted to its chunk)."""
    return loop.parallel or any(isinstance(s, Loop) and _has_parallel(s) for s in loop.body)


def _writes_own(loop: Loop, output: str) -> bool:
    """Whether ``loop`` writes only its chunk's own partial output (``out[slot, ...]``,
    see ``schedule.partial_spread``), which each chunk of a split reduction sets up, or
    its own local arrays (the panels of ``Schedule.pack``), not the ``output``."""
    writes = [s for s in loop.body if isinstance(s, (Store, Update))]
    return (all(s.output.indices[:1] == (SLOT,) or s.output.name != output for s in writes)
            and all(_writes_own(s, output) for s in loop.body if isinstance(s, Loop)))


def _computed(body: tuple[Stmt, ...], chunked: bool) -> frozenset[str]:
    """Indices whose values LLVM cannot prove non-negative: those a ``Let`` computes,
    those unpacked from a fused loop by ``//`` and ``%``, and a chunked loop's (its
    bounds come from the chunk arguments).  Loops over ``range(n)`` are not among them."""
    names: set[str] = set()

    def walk(stmts: tuple[Stmt, ...]) -> None:
        for st in stmts:
            if isinstance(st, Let):
                names.add(st.name)
            elif isinstance(st, Loop):
                names.update(ix.name for ix in st.unpack)
                if st.parallel and chunked:
                    names.add(st.index)
                walk(st.body)

    walk(body)
    return frozenset(names)


def render_module(nest: LoopNest, title: str) -> str:
    """A complete module: imports, the ``@njit(cache=True)`` decorator and the function."""
    parallel = nest.schedule.parallel is not None and not nest.schedule.threads
    function = render_function(nest)
    vecmath = ("from einjit.codegen import vecmath as vm\n" if re.search(r"\bvm\.", function)
               else "")
    # multiply-adds in order spelled ``acc += p * q``, fused by the flag (see _flagged)
    sched = nest.schedule
    fused = (", fastmath={'contract'}" if sched.contract and not sched.reassociate and any(
        isinstance(st, Accumulate) and _flagged(st) for st in _walk(nest.body)) else "")
    header = (
        f"# Generated by einjit: {title}\n"
        f"# {nest.kernel}\n"
        "import numpy as np\n"
        f"from numba import njit, prange\n"
        f"from einjit.codegen.noalias import NoAliasCompiler\n{vecmath}\n\n"
        f"@njit(cache=True, nogil=True, parallel={parallel}, error_model='numpy'{fused},\n"
        "      pipeline_class=NoAliasCompiler)  # its output overlaps no input\n"
    )
    return header + function
