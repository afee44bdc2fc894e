"""einjit's intermediate representation: kernels, schedules and loop nests.

All nodes are frozen dataclasses with a readable text form (``str(node)``).

* A :class:`Kernel` is one einsum step over *canonical* operands: every operand is
  indexed by distinct labels (diagonals and broadcasting were turned into strided views
  before the kernel runs).  Its ``body`` is a scalar expression of one element per operand
  (a product by default) and ``reduce`` the operator that folds it over the reduction
  indices (a sum by default).  Other element-wise bodies and reductions need no new node
  types: a :class:`Call` with another ``op`` and a :class:`Reduction` with another name.
* A :class:`Schedule` is the small value the scheduler decides: loop order and the
  parallel loop.
* A :class:`LoopNest` is a kernel lowered under a schedule: loops, an accumulator
  initialisation, an accumulation and a store.  Code generators render it as it stands.
* A :class:`Plan` is the ordered list of steps that evaluates a whole einsum.

>>> k = Kernel("k0", (Operand("a0", "float64", ("i", "j")), Operand("a1", "float64", ("j",))),
...            Operand("out", "float64", ("i",)), (Index("i", 3), Index("j", 4)),
...            product(2, (("i", "j"), ("j",))), SUM, "float64")
>>> print(k)
kernel k0: out[i] = sum_j a0[i,j] * a1[j]   (i=3, j=4; accumulate float64)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

__all__ = [
    "Index", "Operand", "Load", "Cast", "Call", "Var", "Const", "Dim", "Expr", "Reduction", "SUM", "Kernel",
    "GemmLayout", "Schedule", "Loop", "Init", "Accumulate", "Alloc", "Let", "Gemm", "Store", "Update", "Stmt", "LoopNest", "Step", "Plan",
    "product", "loads", "CHUNK", "CHUNKS", "SLOT", "DYNAMIC_BITS", "size_class", "planned_extent",
]


#: A kernel generic in a label serves the sizes of one class, a factor of 2^DYNAMIC_BITS
#: wide: [16^k, 16^(k+1)), 0 with 1..15.
DYNAMIC_BITS = 4


def size_class(n: int) -> tuple[int, int]:
    """The sizes that share a generic kernel with ``n``: ``[low, high)``.

    >>> size_class(0), size_class(15), size_class(300)
    ((0, 16), (0, 16), (256, 4096))
    """
    k = max(n.bit_length() - 1, 0) // DYNAMIC_BITS
    return (1 << DYNAMIC_BITS * k if k else 0), 1 << DYNAMIC_BITS * (k + 1)


def planned_extent(n: int) -> int:
    """The extent a kernel generic in a dimension is planned for (its path, BLAS or
    loops, threads, tiles) when a call brings ``n``: the middle, on a log scale, of
    ``n``'s size class.  Every size of the class shares the kernel; a size 16 times
    larger gets its own plan, so a kernel planned for 100 rows never runs 10^6 of them
    (or one planned for none, which was 100 times slower).

    >>> [planned_extent(n) for n in (0, 1, 15, 16, 255, 256, 100_000)]
    [4, 4, 4, 64, 64, 1024, 262144]
    """
    return size_class(n)[1] >> DYNAMIC_BITS // 2


@dataclass(frozen=True)
class Index:
    """An index variable and its extent."""

    name: str
    extent: int
    dynamic: bool = False  # the kernel reads the size from its arrays (``extent``: one seen)

    def __str__(self) -> str:
        return f"{self.name}=dynamic" if self.dynamic else f"{self.name}={self.extent}"

    @property
    def size(self) -> "int | Var":
        """The extent as a kernel spells it: a literal, or the local ``n_<name>``."""
        return Var(f"n_{self.name}") if self.dynamic else self.extent

    @property
    def most(self) -> int:
        """The largest extent the kernel runs with: ``extent``, or for a dynamic index
        the last size of its class (``extent`` is the size it is planned for)."""
        return size_class(self.extent)[1] - 1 if self.dynamic else self.extent


@dataclass(frozen=True)
class Operand:
    """An array a kernel reads or writes: its name, dtype name and index labels per axis."""

    name: str
    dtype: str
    indices: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name}[{','.join(self.indices)}]"


# ------------------------------------------------------------------ scalar expressions

@dataclass(frozen=True)
class Load:
    """One element of input ``operand`` (a position in the kernel's inputs)."""

    operand: int
    indices: tuple[str, ...]

    def __str__(self) -> str:
        return f"a{self.operand}[{','.join(self.indices)}]"


@dataclass(frozen=True)
class Cast:
    """``value`` converted to ``dtype`` (numpy's conversion rules; to bool means != 0)."""

    value: "Expr"
    dtype: str

    def __str__(self) -> str:
        return f"{self.dtype}({self.value})"


@dataclass(frozen=True)
class Call:
    """An element-wise operator applied to sub-expressions (``mul``, ``add``...)."""

    op: str
    args: tuple["Expr", ...]

    _INFIX = {"mul": "*", "add": "+", "sub": "-", "truediv": "/", "floordiv": "//",
              "mod": "%", "pow": "**", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
              "eq": "==", "ne": "!="}

    def __str__(self) -> str:
        sym = self._INFIX.get(self.op)
        if sym is not None:
            return f" {sym} ".join(f"({a})" if isinstance(a, Call) and a.op in self._INFIX
                                   else str(a) for a in self.args)
        return f"{self.op}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True)
class Var:
    """A local of the loop nest: a scalar, or element ``at`` of a local array."""

    name: str
    at: Union["Expr", None] = None

    def __str__(self) -> str:
        return self.name if self.at is None else f"{self.name}[{self.at}]"


@dataclass(frozen=True)
class Const:
    """An integer or floating-point literal."""

    value: int | float | bool

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Dim:
    """The length of axis ``axis`` of array ``array`` (a dynamic extent, read at run time)."""

    array: str
    axis: int

    def __str__(self) -> str:
        return f"{self.array}.shape[{self.axis}]"


Expr = Union[Load, Cast, Call, Var, Const, Dim]


def product(n_operands: int, indices: tuple[tuple[str, ...], ...]) -> Expr:
    """The default body: the product of one element from each operand."""
    terms = tuple(Load(k, indices[k]) for k in range(n_operands))
    return terms[0] if len(terms) == 1 else Call("mul", terms)


def loads(expr: Expr) -> list[Load]:
    """Every :class:`Load` in ``expr``, left to right."""
    if isinstance(expr, Load):
        return [expr]
    if isinstance(expr, (Var, Const)):
        return []
    if isinstance(expr, Cast):
        return loads(expr.value)
    return [ld for a in expr.args for ld in loads(a)]


def map_loads(expr: Expr, fn: Callable[[Load], Expr]) -> Expr:
    """``expr`` with each :class:`Load` replaced by ``fn(load)``.

    >>> print(map_loads(product(2, (("i",), ("i",))), lambda ld: Load(ld.operand, ("j",))))
    a0[j] * a1[j]
    """
    if isinstance(expr, Load):
        return fn(expr)
    if isinstance(expr, Cast):
        return Cast(map_loads(expr.value, fn), expr.dtype)
    if isinstance(expr, Call):
        return Call(expr.op, tuple(map_loads(a, fn) for a in expr.args))
    return expr


@dataclass(frozen=True)
class Reduction:
    """How body values are folded over the reduction indices.

    ``op`` names the binary operator (``add`` for a sum) and ``identity`` is its neutral
    element, the value of a reduction over zero elements.
    """

    name: str
    op: str
    identity: int | float | bool

    def __str__(self) -> str:
        return self.name


SUM = Reduction("sum", "add", 0)


# ------------------------------------------------------------------ kernels

@dataclass(frozen=True)
class Kernel:
    """One loop nest's worth of work: ``output[out] = reduce_{red} body``.

    ``indices`` lists every index with its extent; those not in ``output.indices`` are
    reduction indices.  ``accumulate`` is the dtype the reduction is carried out in; the
    store converts it to ``output.dtype``.
    """

    name: str
    inputs: tuple[Operand, ...]
    output: Operand
    indices: tuple[Index, ...]
    body: Expr
    reduce: Reduction
    accumulate: str

    @property
    def extent(self) -> dict[str, int]:
        return {ix.name: ix.extent for ix in self.indices}

    @property
    def sizes(self) -> dict[str, "int | Var"]:
        """Each index's extent as the kernel spells it (``n_<name>`` when dynamic)."""
        return {ix.name: ix.size for ix in self.indices}

    @property
    def dynamic(self) -> tuple[str, ...]:
        """The indices whose extent the kernel reads from its arrays at run time."""
        return tuple(ix.name for ix in self.indices if ix.dynamic)

    @property
    def output_indices(self) -> tuple[str, ...]:
        return self.output.indices

    @property
    def reduction_indices(self) -> tuple[str, ...]:
        out = set(self.output.indices)
        return tuple(ix.name for ix in self.indices if ix.name not in out)

    @property
    def work(self) -> int:
        """Number of body evaluations (the product of all extents)."""
        n = 1
        for ix in self.indices:
            n *= ix.extent
        return n

    def __str__(self) -> str:
        red = self.reduction_indices
        body = str(self.body)
        rhs = f"{self.reduce}_{''.join(red)} {body}" if red else body
        ext = ", ".join(str(ix) for ix in self.indices)
        return (f"kernel {self.name}: {self.output} = {rhs}   "
                f"({ext}; accumulate {self.accumulate})")


@dataclass(frozen=True)
class GemmLayout:
    """How a GEMM-shaped kernel maps onto one batched matrix product.

    Each group lists its indices in the order they are merged into one matrix axis:
    ``batch`` (a separate axis each; an operand without one broadcasts over it), ``m``
    (rows: in ``a`` and the output), ``n`` (columns: in ``b`` and the output) and ``k``
    (summed: in both inputs).  ``copy`` says which inputs are first copied into a
    contiguous buffer, because their strides cannot be seen as a matrix BLAS reads;
    ``direct`` says whether the output can be written as such a matrix (else the
    product goes to a temporary and is copied out).  ``memory`` gives, per copied input,
    the order of its indices in the copy's memory (outermost first) where that is not
    (batch, rows, columns): the input's own memory order, so the copy streams (a
    Fortran-ordered slice, reversed axes), or (batch, columns, rows), so it reads the
    input along a shorter stride; BLAS reads such a copy transposed where need be.
    ``split`` runs the first batch axis in that many parts on as many threads: BLAS runs
    each small matrix product on one thread, so a batch of them would otherwise leave
    cores idle.  ``peel``: output indices (its innermost, short ones) over whose values
    the product is copied out one part at a time, so that each copy runs along the
    product's rows rather than in runs as short as those indices (numpy's copy walks
    its destination in memory order).
    """

    batch: tuple[str, ...]
    m: tuple[str, ...]
    n: tuple[str, ...]
    k: tuple[str, ...]
    copy: tuple[bool, bool] = (False, False)
    direct: bool = True
    split: int = 1
    memory: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    peel: tuple[str, ...] = ()

    @property
    def copies(self) -> bool:
        """Whether BLAS needs a copy: of an input first, or of the product into ``out``."""
        return any(self.copy) or not self.direct

    def __str__(self) -> str:
        def g(x: tuple[str, ...]) -> str:
            return ",".join(x) or "-"
        # the kernel's inputs by their names in its text (a0, a1), not by letters its
        # indices may also bear
        copies = [name + (f" (laid out {','.join(order)})" if order else "")
                  for name, c, order in zip(("a0", "a1"), self.copy, self.memory) if c]
        tail = f"; copy {' and '.join(copies)} first" if copies else ""
        if not self.direct:
            tail += "; product into a temporary, then copied out"
            if self.peel:
                tail += f" for each value of {g(self.peel)}"
        if self.split > 1:
            tail += f"; the first batch axis in {self.split} parts on {self.split} threads"
        return f"batch {g(self.batch)}; m {g(self.m)}; n {g(self.n)}; k {g(self.k)}{tail}"


@dataclass(frozen=True)
class Schedule:
    """What the scheduler decided for one kernel.

    ``order`` lists loop indices outermost first (output indices, then reduction
    indices; with ``hoist``, the nest's own order); ``parallel`` names the loop run with
    ``prange`` (or ``None``); ``fuse`` says how many of the outermost output loops, and of the outermost reduction loops,
    run as one fused loop (0 or 1: none), which keeps deep nests within what Python
    and Numba compile.  ``block = (index, size)`` blocks an output index whose stride is
    smaller than every reduction index's: its loop runs innermost, inside the
    reductions, over a local array of ``size`` accumulators (each output element is
    still written once).  ``gemm`` (a :class:`GemmLayout`) runs the whole kernel as one
    batched matrix product instead of loops.  ``chunk`` sums the innermost reduction
    loop in chunks of that many terms, each into a partial sum (less rounding error on
    long float sums).  ``tile = (u, v, size)`` runs the two innermost loops of an
    element-wise kernel, or the two innermost reduction loops, in size x size tiles,
    when one array is contiguous along ``u`` and another along ``v`` (a transposed
    operand): a tile of each stays in cache.
    ``unroll = (v, n)`` computes n consecutive values of the innermost output index at
    once, each in its own scalar accumulator: n independent chains instead of one whose
    every step waits for the last (short, contiguous reductions such as ``id,jd->ij``).
    ``band = (u, size)`` (with ``unroll``) walks output index ``u`` in bands of ``size``
    values inside each block of unrolled values, so the rows that block reads serve the
    whole band from cache (``id,jd->ij`` with many ``j`` rows: a GEMM-like tiling).
    ``rows`` (with ``band``): that many values of ``u`` at once as well, a register tile
    of ``rows`` x n accumulators that reuses every operand element it loads.
    ``threads`` (when ``parallel`` is an output loop, the outermost): the parallel loop runs
    in that many chunks on einjit's worker threads (:mod:`einjit.threads`), each a call of
    the serial kernel with its chunk number, rather than as Numba's ``prange``.
    ``least_work`` (a kernel generic in some extents, on threads or a split GEMM): the
    body evaluations, counted at run time, from which the threads run; a smaller call
    runs in one chunk (or one BLAS call) on the caller's thread.
    ``flat`` (per input, or empty): the element strides of an input that is neither C- nor
    Fortran-ordered (a slice), which the kernel then reads as one flat run of memory
    (``f0 = vm.flat(a0, span)``; ``vm.flat_from(a0, span, start)`` from the lowest
    address negative strides reach) with these strides as constants,
    ``f0[np.uintp(i * 1100 + j)]``: Numba knows nothing of such an array's strides and
    vectorises no loop over it.
    ``hoist`` (reduction indices): loops run outermost, before the output loops, where
    they walk an operand's memory in order (``abc,ac->b``: a is its slowest axis); the
    output is set to the identity first and each pass over it adds the sum of the
    remaining, inner reductions to each value (:class:`Update`).  With ``threads``, the
    parallel loop is one of them: each chunk sums into its own copy of the output
    (``out[slot, ...]``), and a second kernel folds the copies.
    ``around`` (output indices, with ``hoist``): output loops that run outside the hoisted
    reductions, their strides the larger (``bdac,a->ba``: b, then d, then a): each of
    their values sets its block of the output to the identity, then the passes add into
    that block, which alone need stay in cache.
    ``block_rows = (u, m)`` (with ``block``): m values of the output index u at once,
    each with its own row of the block's accumulators, a register tile: an operand read
    along the block but not along u (``b[j,k]`` in ``ij,jk->ik``) is loaded once for m
    sums, and m independent sums hide the latency of each one's additions.
    ``pack`` (input positions, with ``block_rows``): inputs read along the block but not
    along u that the kernel first copies, per block of v, into a local panel (the block's
    values contiguous, innermost, after the inputs' reduction indices): the tile then
    reads each with vector loads from one short run of memory, where the input's own
    rows along the reductions lie far apart (they fall into few cache sets) or it is
    read across its rows.  The blocks of v run outside the values of u, so each panel
    serves every value of u.
    ``flat_run`` (a column sum: one output index, one reduction index, every input
    C-ordered over both): the inputs are read flat, in runs of that many values (whole
    rows of the output, whole vectors) summed into as many accumulators, which are then
    folded into the output's values (with the rows left over).
    ``reassociate`` lets the compiler sum a float reduction in any order (only the
    accumulation; the body is evaluated as written): LLVM then vectorises it with several
    partial sums, as numpy's own pairwise and SIMD sums do.  ``interleave`` (where it is
    not so vectorised): the innermost reduction loop adds its terms to that many partial
    sums in turn, one chain of dependent additions each, then folds them.  ``contract``
    accumulates a body that is a product as a fused multiply-add (reassociated or not).
    ``expand`` (reduction indices of a few values in all): the body sums their terms as
    one expression, each term its own loads (``a1[c,e_0] * a0[e_0,b] + a1[c,e_1] *
    a0[e_1,b]``), and the kernel runs as an element-wise one over its output.
    ``vector_bits`` (a wide register tile's, or 0): the kernel is compiled with vectors of
    that many bits, wider than the compiler's default (512 on AVX-512 cores, where LLVM
    prefers 256).
    """

    order: tuple[str, ...]
    parallel: str | None = None
    fuse: tuple[int, int] = (0, 0)
    block: tuple[str, int] | None = None
    gemm: GemmLayout | None = None
    chunk: int | None = None
    tile: tuple[str, str, int] | None = None
    unroll: tuple[str, int] | None = None
    reassociate: bool = False
    threads: int = 0
    band: tuple[str, int] | None = None
    rows: int = 1
    contract: bool = False
    interleave: int = 0
    expand: tuple[str, ...] = ()
    flat: tuple[tuple[int, ...] | None, ...] = ()
    hoist: tuple[str, ...] = ()
    around: tuple[str, ...] = ()
    block_rows: tuple[str, int] | None = None
    pack: tuple[int, ...] = ()
    flat_run: int = 0
    least_work: int = 0
    vector_bits: int = 0

    def __str__(self) -> str:
        least = (f" from {self.least_work} terms (counted at run time)"
                 if self.least_work else "")
        if self.gemm:
            return f"one batched GEMM (BLAS): {self.gemm}{least}"
        if self.flat_run:
            par = (f"runs split in {self.threads} chunks on einjit's threads{least}"
                   if self.threads else "serial")
            return (f"order {''.join(self.order)}, {par}, the inputs read flat in runs of "
                    f"{self.flat_run} values, summed into as many accumulators")
        par = f", parallel {self.parallel}" if self.parallel else ", serial"
        if self.threads:
            par += f" in {self.threads} chunks on einjit's threads{least}"
        fuse = (f", fuse {self.fuse[0]} output and {self.fuse[1]} reduction loops"
                if any(self.fuse) else "")
        block = (f", block {self.block[0]} by {self.block[1]} into a local accumulator"
                 if self.block else "")
        if self.block_rows:
            block += f", {self.block_rows[1]} values of {self.block_rows[0]} at once"
        if self.pack:
            block += f", {' and '.join(f'a{k}' for k in self.pack)} packed per block"
        if self.vector_bits:
            block += f" in {self.vector_bits}-bit vectors"
        chunk = f", sum the innermost loop in chunks of {self.chunk}" if self.chunk else ""
        tile = (f", tile {self.tile[0]} and {self.tile[1]} by {self.tile[2]}"
                if self.tile else "")
        unroll = (f", {self.unroll[1]} values of {self.unroll[0]} at once in registers"
                  if self.unroll else "")
        sums = ", sums in any order (vectorised)" if self.reassociate else ""
        if self.interleave:
            sums += f", terms summed into {self.interleave} partials in turn"
        if self.expand:
            sums += f", the sum over {''.join(self.expand)} written out"
        if self.contract:
            sums += ", products added as fused multiply-adds"
        if self.band:
            unroll += f", {self.band[0]} in bands of {self.band[1]}"
            if self.rows > 1:
                unroll += f", {self.rows} values of {self.band[0]} at once"
        flat = "".join(f", a{k} read flat (strides {','.join(map(str, st))})"
                       for k, st in enumerate(self.flat) if st is not None)
        if self.hoist:
            where = (f"inside {''.join(self.around)}" if self.around else "outermost")
            flat += (f", reductions over {''.join(self.hoist)} {where} (the output "
                     "accumulated in place)")
        return (f"order {''.join(self.order) or '(scalar)'}{par}{fuse}{block}{chunk}{tile}"
                f"{unroll}{sums}{flat}")


#: The arguments of a chunked kernel (:attr:`Schedule.threads`): which chunk of the
#: parallel loop this call runs, and how many there are.  Labels are single characters,
#: so no label can shadow them (a label ``c`` once did).
CHUNK, CHUNKS = "chunk", "chunks"
#: The index of a chunk's own partial output in a split hoisted reduction.
SLOT = "slot"


# ------------------------------------------------------------------ loop nests

@dataclass(frozen=True)
class Init:
    """``acc = identity`` before a reduction (``acc`` a scalar or a local array element)."""

    acc: Var
    dtype: str
    value: int | float | bool

    def lines(self) -> list[str]:
        return [f"{self.acc} = {self.dtype}({self.value!r})"]


@dataclass(frozen=True)
class Accumulate:
    """``acc = op(acc, value)`` inside the reduction loops."""

    acc: Var
    op: str
    value: Expr
    dtype: str

    def lines(self) -> list[str]:
        return [f"{self.acc} = {self.op}({self.acc}, {self.value})"]


@dataclass(frozen=True)
class Alloc:
    """``name = empty(size, dtype)``: a local array of accumulators; ``stack``: on the
    kernel's stack (``stack(size, dtype)``, a few KiB at most), else on the heap."""

    name: str
    dtype: str
    size: int
    stack: bool = False

    def lines(self) -> list[str]:
        return [f"{self.name} = {'stack' if self.stack else 'empty'}({self.size}, {self.dtype})"]


@dataclass(frozen=True)
class Let:
    """``name = value``: a derived index or count."""

    name: str
    value: Expr

    def lines(self) -> list[str]:
        return [f"{self.name} = {self.value}"]


@dataclass(frozen=True)
class Store:
    """``output[indices] = dtype(value)``: each output element written once."""

    output: Operand
    value: Expr

    def lines(self) -> list[str]:
        return [f"{self.output} = {self.output.dtype}({self.value})"]


@dataclass(frozen=True)
class Update:
    """``output[indices] = op(output[indices], value)``: an output element that is the
    reduction's running value across passes (see ``Schedule.hoist``); ``op`` is the
    reduction's operator."""

    output: Operand
    op: str
    value: Expr

    def lines(self) -> list[str]:
        return [f"{self.output} = {self.op}({self.output}, {self.value})"]


@dataclass(frozen=True)
class Loop:
    """``for index in range(extent): body``; ``parallel`` marks a ``prange`` loop.

    A fused loop (``unpack`` not empty) runs ``index`` over the product of the unpacked
    indices' extents and derives each of them from it (row-major, the last fastest).
    """

    index: str
    extent: int | Expr
    body: tuple["Stmt", ...]
    parallel: bool = False
    unpack: tuple[Index, ...] = ()

    def lines(self) -> list[str]:
        head = f"for {self.index} in {'prange' if self.parallel else 'range'}({self.extent})"
        if self.unpack:
            head += f" -> ({', '.join(str(ix) for ix in self.unpack)})"
        return [head + ":"] + ["    " + ln for s in self.body for ln in s.lines()]


@dataclass(frozen=True)
class Gemm:
    """``out = a @ b`` as one batched matrix product (a BLAS call).

    ``layout`` says which indices are batch, rows, columns and summed (see
    :class:`GemmLayout`).
    """

    a: Operand
    b: Operand
    out: Operand
    layout: GemmLayout

    def lines(self) -> list[str]:
        return [f"{self.out} = gemm({self.a}, {self.b})   # {self.layout}"]


Stmt = Union[Loop, Init, Accumulate, Store, Update, Alloc, Let, Gemm]


@dataclass(frozen=True)
class LoopNest:
    """A kernel lowered under a schedule: the statements a code generator renders.

    ``views``: arrays the kernel reads or writes as a view of another shape than the one
    it is passed (``(name, shape)``; its indices merged, see :mod:`einjit.merge`, or
    flat); ``-1`` stands for an axis whose length follows from the others', as in
    numpy's ``reshape`` (an axis of partials, a flat view of a dynamic extent).
    """

    kernel: Kernel
    schedule: Schedule
    body: tuple[Stmt, ...]
    views: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __str__(self) -> str:
        k = self.kernel
        args = ", ".join(str(op) for op in k.inputs)
        head = f"{k.name}({args}) -> {k.output}   [{self.schedule}]"
        seen = [f"{name} = {name}.reshape({shape!r})" for name, shape in self.views]
        return "\n".join([head] + ["    " + ln for ln in seen]
                         + ["    " + ln for s in self.body for ln in s.lines()])


# ------------------------------------------------------------------ plans

@dataclass(frozen=True)
class Step:
    """One kernel of a plan: reads values ``args`` (operand ids), writes value ``result``.

    Ids ``0..n-1`` are the einsum's operands, ``n, n+1, ...`` the steps' results.
    """

    kernel: Kernel
    args: tuple[int, ...]
    result: int
    flops: int = 0

    def __str__(self) -> str:
        return f"v{self.result} = {self.kernel.name}({', '.join(f'v{a}' for a in self.args)})"


@dataclass(frozen=True)
class Plan:
    """The steps that evaluate one einsum, in execution order."""

    equation: str
    steps: tuple[Step, ...]
    path: tuple[tuple[int, ...], ...] = field(default=())
    note: str = ""

    def __str__(self) -> str:
        lines = [f"plan for {self.equation}: {len(self.steps)} step(s)"]
        if self.note:
            lines.append(f"  ({self.note})")
        lines += ["  " + str(s) + f"    # {s.kernel.output} ; flops {s.flops}" for s in self.steps]
        return "\n".join(lines)
