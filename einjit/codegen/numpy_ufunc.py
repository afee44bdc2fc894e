"""Render a :class:`~einjit.ir.Kernel` as numpy ufunc operations over broadcast views.

The portable backend: it runs what Numba cannot compile (object arrays of Fractions,
Decimals or sympy symbols; long double) and doubles as a readable reference in tests and
in ``explain``.  Every operand is transposed into the kernel's index order (output
indices, then reduction indices) with new axes where it lacks an index; the body becomes
ufunc calls on those views and the reduction a ``ufunc.reduce`` over the reduction axes.
It never calls an einsum.  Exceptions raised by object arithmetic propagate unchanged.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product
>>> k = Kernel("k0", (Operand("a0", "object", ("i", "j")), Operand("a1", "object", ("j",))),
...            Operand("out", "object", ("i",)), (Index("i", 2), Index("j", 3)),
...            product(2, (("i", "j"), ("j",))), SUM, "object")
>>> print(render(k), end="")
def k0(a0, a1, out):
    # axes: i j (reduce j)
    x0 = a0[:, :]
    x1 = a1[None, :]
    v = np.multiply(x0, x1)
    v = np.add.reduce(v, axis=(1,))
    np.copyto(out, v, casting='unsafe')
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..ir import Call, Cast, Expr, Kernel, Load, Var

__all__ = ["render", "build"]

_UFUNC = {"mul": "multiply", "add": "add", "sub": "subtract", "truediv": "true_divide"}


def _expr(e: Expr) -> str:
    if isinstance(e, Load):
        return f"x{e.operand}"
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Cast):
        if e.dtype == "bool":
            return f"np.not_equal({_expr(e.value)}, 0)"
        return f"np.asarray({_expr(e.value)}).astype({e.dtype!r})"
    if isinstance(e, Call):
        if len(e.args) == 1:
            return _expr(e.args[0])
        ufunc = _UFUNC.get(e.op)
        if ufunc is None:
            raise ValueError(f"the numpy renderer has no ufunc for operator {e.op!r}")
        text = _expr(e.args[0])
        for a in e.args[1:]:
            text = f"np.{ufunc}({text}, {_expr(a)})"
        return text
    raise TypeError(f"not an expression: {e!r}")


def render(kernel: Kernel) -> str:
    """Python source of a function ``name(a0, ..., out)`` that fills ``out``."""
    order = kernel.output_indices + kernel.reduction_indices
    red = kernel.reduction_indices
    args = ", ".join([op.name for op in kernel.inputs] + [kernel.output.name])
    lines = [f"def {kernel.name}({args}):",
             f"    # axes: {' '.join(order) or '(scalar)'}" + (f" (reduce {''.join(red)})" if red else "")]
    for k, op in enumerate(kernel.inputs):
        present = sorted(op.indices, key=order.index)
        perm = tuple(op.indices.index(n) for n in present)
        src = op.name if perm == tuple(range(len(perm))) else f"{op.name}.transpose{perm}"
        index = ", ".join(":" if n in op.indices else "None" for n in order)
        lines.append(f"    x{k} = {src}[{index or '...'}]")
    lines.append(f"    v = {_expr(kernel.body)}")
    if red:
        ufunc = _UFUNC[kernel.reduce.op]
        axes = tuple(range(len(kernel.output_indices), len(order)))
        lines.append(f"    v = np.{ufunc}.reduce(v, axis={axes})")
    if kernel.accumulate != kernel.output.dtype and kernel.output.dtype == "bool":
        lines.append("    v = np.not_equal(v, 0)")
    lines.append("    np.copyto(out, v, casting='unsafe')")
    return "\n".join(lines) + "\n"


def build(kernel: Kernel) -> tuple[Callable[..., None], str]:
    """Compile the rendered source; returns the function and its source."""
    source = render(kernel)
    namespace: dict[str, object] = {"np": np}
    exec(compile(source, f"<einjit numpy kernel {kernel.name}>", "exec"), namespace)
    return namespace[kernel.name], source  # type: ignore[return-value]
