"""Render a :class:`~einjit.ir.Gemm` loop nest as one batched BLAS matrix product.

The scheduler decided the kernel is a matrix product and which indices are batch, m, n
and k; this renderer only prints the transpose-reshape-matmul-reshape-transpose that
carries it out with ``numpy.matmul`` (BLAS for float and complex dtypes).  Transposes
and reshapes are numpy views or copies; no einsum is called.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product, Schedule
>>> from einjit.schedule import lower
>>> k = Kernel("k0", (Operand("a0", "float64", ("b", "i", "j")),
...                   Operand("a1", "float64", ("b", "j", "k"))),
...            Operand("out", "float64", ("b", "i", "k")),
...            (Index("b", 2), Index("i", 3), Index("j", 4), Index("k", 5)),
...            product(2, (("b", "i", "j"), ("b", "j", "k"))), SUM, "float64")
>>> print(render(lower(k, Schedule(("b", "i", "j", "k"), gemm=True))), end="")
def k0(a0, a1, out):
    # out[b,i,k] = gemm(a0[b,i,j], a1[b,j,k])   # batch b; m i; n k; k j
    x = a0.reshape((2, 3, 4))
    y = a1.reshape((2, 4, 5))
    try:
        o = np.reshape(out.transpose((0, 1, 2)), (2, 3, 5), copy=False)
    except ValueError:  # out is not a (batch, m, n) view: copy the product in
        z = np.matmul(x, y)
        np.copyto(out, z.reshape((2, 3, 5)), casting='unsafe')
        return
    np.matmul(x, y, out=o)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..ir import Gemm, LoopNest, Operand

__all__ = ["render", "build"]


def _arrange(op: Operand, groups: tuple[tuple[str, ...], ...], extent: dict[str, int]) -> str:
    """``op`` transposed into the order of ``groups`` and reshaped to one axis per group."""
    order = [name for g in groups for name in g]
    perm = tuple(op.indices.index(name) for name in order)
    text = op.name if perm == tuple(range(len(perm))) else f"{op.name}.transpose({perm!r})"
    return f"{text}.reshape({_grouped_shape(groups, extent)!r})"


def render(nest: LoopNest) -> str:
    """Python source of ``name(a0, a1, out)`` computing the GEMM into ``out``.

    When ``out`` seen as (batch, m, n) is a view, ``matmul`` writes straight into it;
    otherwise the product is copied into ``out``.
    """
    (g,) = nest.body
    assert isinstance(g, Gemm)
    extent = nest.kernel.extent
    order = g.batch + g.m + g.n
    shape = tuple(extent[name] for name in order)
    perm = tuple(order.index(name) for name in g.out.indices)
    inverse = tuple(g.out.indices.index(name) for name in order)
    result = f"z.reshape({shape!r})"
    if perm != tuple(range(len(perm))):
        result += f".transpose({perm!r})"
    return "\n".join([
        f"def {nest.kernel.name}({g.a.name}, {g.b.name}, {g.out.name}):",
        f"    # {g.lines()[0]}",
        f"    x = {_arrange(g.a, (g.batch, g.m, g.k), extent)}",
        f"    y = {_arrange(g.b, (g.batch, g.k, g.n), extent)}",
        "    try:",
        f"        o = np.reshape({g.out.name}.transpose({inverse!r}), "
        f"{_grouped_shape((g.batch, g.m, g.n), extent)!r}, copy=False)",
        "    except ValueError:  # out is not a (batch, m, n) view: copy the product in",
        "        z = np.matmul(x, y)",
        f"        np.copyto({g.out.name}, {result}, casting='unsafe')",
        "        return",
        "    np.matmul(x, y, out=o)",
    ]) + "\n"


def _grouped_shape(groups: tuple[tuple[str, ...], ...], extent: dict[str, int]) -> tuple[int, ...]:
    sizes = []
    for g in groups:
        n = 1
        for name in g:
            n *= extent[name]
        sizes.append(n)
    return tuple(sizes)


def build(nest: LoopNest) -> tuple[Callable[..., None], str]:
    """Compile the rendered source; returns the function and its source."""
    source = render(nest)
    namespace: dict[str, object] = {"np": np}
    exec(compile(source, f"<einjit gemm {nest.kernel.name}>", "exec"), namespace)
    return namespace[nest.kernel.name], source  # type: ignore[return-value]
