"""Render a :class:`~einjit.ir.Gemm` loop nest as one batched BLAS matrix product.

The scheduler decided the kernel is a matrix product and which indices are batch, m, n
and k; this renderer only prints the transpose-reshape-matmul-reshape-transpose that
carries it out with ``numpy.matmul`` (BLAS for float and complex dtypes).  Transposes
and reshapes are numpy views or copies; no einsum is called.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product
>>> from einjit.lower import lower
>>> from einjit.schedule import schedule
>>> k = Kernel("k0", (Operand("a0", "float64", ("i", "j", "k")),
...                   Operand("a1", "float64", ("j", "l"))),
...            Operand("out", "float64", ("i", "l", "k")),
...            (Index("i", 64), Index("l", 32), Index("k", 60), Index("j", 64)),
...            product(2, (("i", "j", "k"), ("j", "l"))), SUM, "float64")
>>> nest = lower(k, schedule(k, ((3840, 60, 1), (32, 1)), (1920, 60, 1), threads=2))
>>> print(render(nest), end="")
def k0(a0, a1, out):
    # out[i,l,k] = gemm(a0[i,j,k], a1[j,l])   # batch i; m k; n l; k j; the first batch axis in 2 parts on 2 threads
    x = a0.transpose((0, 2, 1)).reshape((64, 60, 64))
    y = a1.reshape((1, 64, 32))
    try:
        o = np.reshape(out.transpose((0, 2, 1)), (64, 60, 32), copy=False)
    except ValueError:  # out is not a stack of matrices here: copy the product in
        z = np.matmul(x, y)
        copy_into(out, z.reshape((64, 60, 32)).transpose((0, 2, 1)))
        return
    batched_matmul(x, y, o, 2)

Here ``i`` became a batch index (``a1`` broadcasts over it): every operand is then a
stack of matrices BLAS reads in place, where rows ``(i, k)`` would have copied ``a0``;
the 64 small products run half on each of two threads.

Inside Numba code (``einjit.einsum`` in ``@njit`` functions) the same product is a loop
of ``np.dot`` calls (Numba plans no threads, whatever the comment line says).  With the
operands typed C-contiguous, ``a0`` is read in place as matrices (j, k), the transposes
of the (k, j) ones wanted, and ``out`` holds the products transposed, (l, k): each is
written in place as ``a1^T a0[i]``, which BLAS reads and writes without a copy:

>>> source = render_numba(nest, "ijk,jl->ilk", ("C", "C"))
>>> print(source[source.index("def "):], end="")
def k0(a0, a1, out):
    # out[i,l,k] = gemm(a0[i,j,k], a1[j,l])   # batch i; m k; n l; k j; the first batch axis in 2 parts on 2 threads
    x = a0.reshape((64, 64, 60))
    y = a1.reshape((1, 64, 32))
    z = out.reshape((64, 32, 60))
    for q0 in range(64):
        np.dot(y[0].T, x[q0], z[q0])

An operand of unknown strides (layout ``"A"``: a slice) is copied first:

>>> source = render_numba(nest, "ijk,jl->ilk", ("A", "F"))
>>> print(source[source.index("x = "):], end="")
x = np.ascontiguousarray(a0.transpose((0, 2, 1))).reshape((64, 60, 64))
    y = a1.T.reshape((1, 32, 64))
    z = out.reshape((64, 32, 60))
    for q0 in range(64):
        np.dot(y[0], x[q0].T, z[q0])
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..ir import Gemm, Let, LoopNest, Operand
from ..threads import Chunked

__all__ = ["render", "render_numba", "build"]


#: Bytes from which :func:`contiguous` copies an array whose innermost axis is not
#: contiguous with einjit's own kernel (a permutation, tiled) rather than numpy's copy,
#: which gathers such an array one element at a time: a Fortran-ordered 64 x 128 x 128
#: float64 stack transposed to (b, j, i) 4.5-6.0 -> 0.44-0.60 ms, a 2048^2 float64
#: matrix transposed 24 -> 8.2 ms; a [::2, ::2] slice of 1024^2 0.23 -> 0.14 ms.  Below
#: it numpy's call costs less than a kernel's.
KERNEL_COPY_BYTES = 1 << 20


def contiguous(x: np.ndarray, dtype: object = None) -> np.ndarray:
    """``numpy.ascontiguousarray(x, dtype)``, copied by einjit's own kernel where ``x``
    is large (``KERNEL_COPY_BYTES``), not read along its rows (its last axis is not
    contiguous) and not cast.  A GEMM step copies its operands through it.

    >>> x = np.arange(24.0).reshape(2, 3, 4).transpose(2, 1, 0)
    >>> np.array_equal(contiguous(x), np.ascontiguousarray(x))
    True
    """
    if (x.flags.c_contiguous or x.nbytes < KERNEL_COPY_BYTES or not 0 < x.ndim <= 26
            or x.strides[-1] == x.itemsize or x.shape[-1] == 1
            or (dtype is not None and np.dtype(dtype) != x.dtype)):
        return np.ascontiguousarray(x, dtype=dtype)
    out = np.empty(x.shape, x.dtype)
    _kernel_copy(out, x)
    return out


def _kernel_copy(out: np.ndarray, x: np.ndarray) -> None:
    """Copy ``x`` into ``out`` (same shape and dtype) with einjit's own kernel."""
    from ..api import einsum

    labels = "abcdefghijklmnopqrstuvwxyz"[:x.ndim]
    einsum(f"{labels}->{labels}", x, out=out)


def copy_into(out: np.ndarray, x: np.ndarray) -> None:
    """``numpy.copyto(out, x, casting="unsafe")``, by einjit's own kernel where the copy
    is large (``KERNEL_COPY_BYTES``), of one dtype, and not along both arrays' rows (a
    product copied out transposed: 64 x 128 x 128 float64 4.4 -> 0.6 ms).

    >>> out = np.zeros((4, 3, 2))
    >>> copy_into(out, np.arange(24.0).reshape(2, 3, 4).transpose(2, 1, 0))
    >>> float(out[3, 2, 1])
    23.0
    """
    if (x.dtype != out.dtype or x.shape != out.shape or x.nbytes < KERNEL_COPY_BYTES
            or not 0 < x.ndim <= 26
            or (x.strides[-1] == x.itemsize and out.strides[-1] == out.itemsize)):
        np.copyto(out, x, casting="unsafe")
        return
    _kernel_copy(out, x)


def _arranged(op: Operand, groups: tuple[tuple[str, ...], ...], batch: tuple[str, ...],
              size: dict[str, str], copy: bool, memory: tuple[str, ...] = (),
              dtype: str | None = None, copier: str = "contiguous") -> str:
    """``op`` as a stack of matrices: its batch axes (size 1 where it has none, so it
    broadcasts), then one axis per group; copied into a contiguous buffer if ``copy``
    (by ``copier``: :func:`contiguous`, or numpy's inside Numba code), laid out in the
    order ``memory`` gives where it gives one (else in that order), of ``dtype`` where
    that is not ``op``'s (cast as it is copied).

    >>> a = Operand("a0", "float32", ("i", "j"))
    >>> _arranged(a, (("j",), ("i",)), (), {"i": "4", "j": "5"}, True, ("j", "i"))
    'contiguous(a0.transpose((1, 0))).reshape((5, 4))'
    >>> _arranged(a, (("i",), ("j",)), (), {"i": "4", "j": "5"}, True, ("j", "i"))
    'contiguous(a0.transpose((1, 0))).transpose((1, 0)).reshape((4, 5))'
    """
    order = [name for name in batch if name in op.indices] + [n for g in groups for n in g]

    def moved(text: str, names: Sequence[str], start: Sequence[str]) -> str:
        perm = tuple(start.index(name) for name in names)
        return text if perm == tuple(range(len(perm))) else f"{text}.transpose({perm!r})"

    cast = f", dtype=np.{dtype}" if dtype is not None and dtype != op.dtype else ""
    if copy and memory and tuple(memory) != tuple(order):
        text = moved(f"{copier}({moved(op.name, memory, op.indices)}{cast})", order, memory)
    else:
        text = moved(op.name, order, op.indices)
        if copy:
            text = f"{copier}({text}{cast})"
    shape = [size[name] if name in op.indices else "1" for name in batch]
    return f"{text}.reshape({_shape(shape + _grouped(groups, size))})"


def render(nest: LoopNest) -> str:
    """Python source of ``name(a0, a1, out)`` computing the GEMM into ``out``.

    When the schedule says ``out`` seen as (batch, m, n) matrices is a view BLAS can
    write, ``matmul`` writes straight into it; otherwise the product is copied into
    ``out``.  Dynamic extents are read from the arrays on entry.
    """
    g, size, perm, result, lines = _prologue(nest)
    lay, acc = g.layout, nest.kernel.accumulate
    if not (lay.batch or lay.m or lay.n):  # a dot: two vectors into a 0-d ``out``
        # (``np.dot``, not ``matmul`` of a row by a column into a 1 x 1 view: 2 us less)
        return "\n".join(lines + [
            f"    x = {_arranged(g.a, (lay.k,), (), size, lay.copy[0], lay.memory[0], acc)}",
            f"    y = {_arranged(g.b, (lay.k,), (), size, lay.copy[1], lay.memory[1], acc)}",
            f"    {g.out.name}[()] = np.dot(x, y)",
        ]) + "\n"
    order = lay.batch + lay.m + lay.n
    inverse = tuple(g.out.indices.index(name) for name in order)
    lines += [
        f"    x = {_arranged(g.a, (lay.m, lay.k), lay.batch, size, lay.copy[0], lay.memory[0], acc)}",
        f"    y = {_arranged(g.b, (lay.k, lay.n), lay.batch, size, lay.copy[1], lay.memory[1], acc)}",
    ]
    fallback = ["z = np.matmul(x, y)", f"copy_into({g.out.name}, {result})"]
    if not lay.direct:
        return "\n".join(lines + ["    " + ln for ln in
                                  _copied_out(g.out, lay.peel, size, result, fallback)]) + "\n"
    matrices = _shape([size[name] for name in lay.batch] + _grouped((lay.m, lay.n), size))
    return "\n".join(lines + [
        "    try:",
        f"        o = np.reshape({g.out.name}.transpose({inverse!r}), {matrices}, copy=False)",
        "    except ValueError:  # out is not a stack of matrices here: copy the product in",
        *("        " + ln for ln in fallback),
        "        return",
        (f"    batched_matmul(x, y, o, {lay.split}"
         + (f", least={nest.schedule.least_work})" if nest.schedule.least_work else ")"))
        if lay.split > 1 else
        "    np.matmul(x, y, out=o)",
    ]) + "\n"


def _copied_out(out: Operand, peel: Sequence[str], size: dict[str, str], result: str,
                whole: list[str]) -> list[str]:
    """The lines that copy the product into ``out``: ``whole`` (one copy), or one copy
    per value of the ``peel`` indices (see :class:`~einjit.ir.GemmLayout`)."""
    if not peel:
        return whole
    var = {name: f"v{k}" for k, name in enumerate(peel)}
    at = "[" + ", ".join(var.get(name, ":") for name in out.indices) + "]"
    lines = [whole[0], f"p = {result}"]
    for depth, name in enumerate(peel):
        lines.append("    " * depth + f"for {var[name]} in range({size[name]}):")
    lines.append("    " * len(peel) + f"np.copyto({out.name}{at}, p{at}, casting='unsafe')")
    return lines


def render_numba(nest: LoopNest, title: str, layouts: tuple[str, str] = ("A", "A")) -> str:
    """A module defining ``@njit`` ``name(a0, a1, out)``: the GEMM as ``np.dot`` calls
    inside Numba code (Numba reaches BLAS through SciPy), one per matrix of the batch.

    ``layouts`` gives the operands' Numba layouts (``"C"``, ``"F"`` or ``"A"``); ``out``
    is C-contiguous.  Numba's ``np.dot`` reads a C- or F-contiguous matrix in place (BLAS
    takes it transposed) and writes a C-contiguous one.  So a contiguous operand whose
    axes in memory are (batch, rows, columns) or (batch, columns, rows) is read in place,
    any other is copied first (its strides are known only at run time); the product is
    written into ``out`` in place when ``out``'s axes are (batch, m, n), or as its
    transpose ``b^T a^T`` when they are (batch, n, m), else copied in.
    """
    g, size, _, result, lines = _prologue(nest)
    lay = g.layout

    def stack(op: Operand, groups: tuple[tuple[str, ...], tuple[str, ...]], layout: str
              ) -> tuple[str, bool]:
        # (the operand as a stack of matrices, whether each is stored transposed)
        batch = tuple(n for n in lay.batch if n in op.indices)
        memory = op.indices[::-1] if layout == "F" else op.indices
        name = f"{op.name}.T" if layout == "F" and len(memory) > 1 else op.name
        for flip, order in ((False, groups), (True, groups[::-1])):
            if layout in "CF" and batch + order[0] + order[1] == memory:
                shape = [size[n] if n in op.indices else "1" for n in lay.batch]
                text = f"{name}.reshape({_shape(shape + _grouped(order, size))})"
                break
        else:
            text, flip = _arranged(op, groups, lay.batch, size, True,
                                   copier="np.ascontiguousarray"), False
        acc = nest.kernel.accumulate
        return (text if op.dtype == acc else f"{text}.astype(np.{acc})"), flip

    x, x_flip = stack(g.a, (lay.m, lay.k), layouts[0])
    y, y_flip = stack(g.b, (lay.k, lay.n), layouts[1])
    straight = g.out.indices == lay.batch + lay.m + lay.n
    swapped = not straight and g.out.indices == lay.batch + lay.n + lay.m
    in_place = straight or swapped
    # (out's matrices are (n, m) where it holds the transposed product b^T a^T)
    rows, columns = (lay.n, lay.m) if swapped else (lay.m, lay.n)
    matrices = _shape([size[n] for n in lay.batch] + _grouped((rows, columns), size))
    lines += [
        f"    x = {x}",
        f"    y = {y}",
        f"    z = {g.out.name}.reshape({matrices})" if in_place else
        f"    z = np.empty({matrices}, dtype={g.out.name}.dtype)",
    ]
    indent = "    "
    for q, name in enumerate(lay.batch):  # a loop per batch axis; a missing one broadcasts
        lines.append(f"{indent}for q{q} in range({size[name]}):")
        indent += "    "

    def at(op: Operand, var: str, transposed: bool) -> str:
        picks = [f"q{q}" if name in op.indices else "0" for q, name in enumerate(lay.batch)]
        text = f"{var}[{', '.join(picks)}]" if lay.batch else var
        return f"{text}.T" if transposed else text

    z = f"z[{', '.join(f'q{q}' for q in range(len(lay.batch)))}]" if lay.batch else "z"
    if swapped:
        lines.append(f"{indent}np.dot({at(g.b, 'y', not y_flip)}, {at(g.a, 'x', not x_flip)}, "
                     f"{z})")
    else:
        lines.append(f"{indent}np.dot({at(g.a, 'x', x_flip)}, {at(g.b, 'y', y_flip)}, {z})")
    if not in_place:
        lines.append(f"    {g.out.name}[...] = {result}")
    return (f"# Generated by einjit: {title}\n# {nest.kernel}\nimport numpy as np\n"
            "from numba import njit\n\n\n@njit(cache=True, nogil=True)\n"
            + "\n".join(lines) + "\n")


def _prologue(nest: LoopNest) -> tuple[Gemm, dict[str, str], tuple[int, ...], str, list[str]]:
    """What both renderers start from: the nest's GEMM; each index's extent as source (a
    literal, or the name a dynamic one is read into); the output's axes as a permutation
    of (batch, m, n) order; the product ``z`` as an array of the output's axes; and the
    function's first lines (its header, the GEMM as a comment, the extents read)."""
    *dims, g = nest.body
    assert isinstance(g, Gemm) and all(isinstance(d, Let) for d in dims)
    lay = g.layout
    size = {ix.name: f"n_{ix.name}" if ix.dynamic else str(ix.extent)
            for ix in nest.kernel.indices}
    order = lay.batch + lay.m + lay.n
    perm = tuple(order.index(name) for name in g.out.indices)
    result = f"z.reshape({_shape([size[name] for name in order])})"
    if perm != tuple(range(len(perm))):
        result += f".transpose({perm!r})"
    lines = [f"def {nest.kernel.name}({g.a.name}, {g.b.name}, {g.out.name}):",
             f"    # {g.lines()[0]}",
             *(f"    {name} = {name}.reshape({shape!r})" for name, shape in nest.views),
             *(f"    {d.name} = {d.value}" for d in dims)]  # type: ignore[union-attr]
    return g, size, perm, result, lines


def _grouped(groups: tuple[tuple[str, ...], ...], size: dict[str, str]) -> list[str]:
    """Each group's total extent: a literal, or a product with the dynamic extents."""
    out = []
    for g in groups:
        static, names = 1, []
        for name in g:
            if size[name].isdigit():
                static *= int(size[name])
            else:
                names.append(size[name])
        out.append(" * ".join(names + ([str(static)] if static != 1 or not names else [])))
    return out


def _shape(parts: list[str]) -> str:
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def batched_matmul(x: np.ndarray, y: np.ndarray, out: np.ndarray, parts: int,
                   least: int = 0) -> None:
    """``np.matmul(x, y, out=out)`` with the first batch axis cut in ``parts`` pieces run
    on einjit's worker threads (numpy releases the GIL around BLAS).  ``x`` or ``y`` may
    broadcast over that axis (size 1).  A product of fewer than ``least`` multiply-adds
    (a kernel generic in its sizes, see ``Schedule.least_work``) is one call."""
    if out.size * x.shape[-1] < least:
        np.matmul(x, y, out=out)
        return
    Chunked(_matmul_part, parts)(x, y, out)


def _matmul_part(x: np.ndarray, y: np.ndarray, out: np.ndarray, c: int, n: int) -> None:
    """Part c of n of ``np.matmul(x, y, out=out)``, along the first batch axis."""
    size = out.shape[0]
    lo, hi = size * c // n, size * (c + 1) // n
    np.matmul(x if x.shape[0] == 1 else x[lo:hi], y if y.shape[0] == 1 else y[lo:hi],
              out=out[lo:hi])


def build(nest: LoopNest) -> tuple[Callable[..., None], str]:
    """Compile the rendered source; returns the function and its source."""
    source = render(nest)
    namespace: dict[str, object] = {"np": np, "batched_matmul": batched_matmul,
                                    "contiguous": contiguous, "copy_into": copy_into}
    exec(compile(source, f"<einjit gemm {nest.kernel.name}>", "exec"), namespace)
    return namespace[nest.kernel.name], source  # type: ignore[return-value]
