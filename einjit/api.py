"""einjit's public functions: ``einsum`` and the ``compile`` decorator."""

from __future__ import annotations

import dis
import functools
from typing import Any, Callable, Hashable

import numpy as np

from . import cache, engine
from .dispatch import FastTable, signature
from .engine import DEFAULT_OPTIMIZE, CompiledPlan, einsum
from .parser import parse_subscripts

__all__ = ["einsum", "compile", "CompiledEinsum"]


def _is_bodyless(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` only has a docstring, ``pass`` or ``...`` (it returns None)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    for ins in dis.get_instructions(code):
        if ins.opname in ("RESUME", "NOP", "RETURN_CONST", "RETURN_VALUE", "LOAD_CONST",
                          "POP_TOP", "CACHE"):
            if ins.opname in ("RETURN_CONST", "LOAD_CONST") and ins.argval not in (None, Ellipsis) \
                    and not isinstance(ins.argval, str):
                return False
            continue
        return False
    return True


class CompiledEinsum:
    """An einsum equation with its own compiled kernels (made by :func:`compile`).

    Calling it is ``einjit.einsum(equation, *operands, ...)``; kernels compile once per
    shape, dtype and layout signature and stay with the object.
    """

    def __init__(self, equation: str, fn: Callable[..., Any] | None = None,
                 optimize: Any = DEFAULT_OPTIMIZE, dynamic: bool | str = False) -> None:
        self.equation = equation
        self._parsed = parse_subscripts(equation)
        self.optimize = optimize
        self.dynamic = engine.dynamic_labels(equation, self._parsed, dynamic)
        self._plans: dict[Hashable, CompiledPlan] = {}
        self._fast = FastTable()
        self.__wrapped__ = fn
        if fn is not None:
            functools.update_wrapper(self, fn)
            if not _is_bodyless(fn):
                raise TypeError(
                    f"einjit.compile({equation!r}): the body of {fn.__qualname__} must be "
                    "empty (a docstring, 'pass' or '...'); element-wise bodies are not "
                    "supported in this version")
            n = len(self._parsed.inputs)
            argc = fn.__code__.co_argcount
            if not fn.__code__.co_flags & 0x04 and argc != n:  # no *args
                raise TypeError(f"einjit.compile({equation!r}): {fn.__qualname__} takes "
                                f"{argc} arguments but the equation has {n} operands")

    def __call__(self, *operands: Any, out: np.ndarray | None = None, dtype: Any = None,
                 order: str = "K", casting: str = "safe") -> Any:
        key: Hashable = None
        if out is None:
            sig = signature(operands)
            if sig is not None:
                key = (sig if dtype is None and order == "K" and casting == "safe"
                       else (dtype, order, casting, sig))
                try:
                    run = self._fast.get(key)
                except TypeError:  # an unhashable dtype=
                    key = run = None
                if run is not None:
                    cache.STATS.hits += 1
                    return run(operands)
        call = engine.prepare_operands(self._parsed, operands, out, dtype, order, casting,
                                       self.optimize)
        if self.dynamic is True:
            call.dynamic = frozenset(call.spec.size)
        elif self.dynamic:
            call.dynamic = self.dynamic & frozenset(call.spec.size)
        return engine.finish(call, self._plans, key, self._fast, operands)

    @property
    def signatures(self) -> int:
        """How many shape/dtype/layout signatures this object has compiled."""
        return len(self._plans)

    def __repr__(self) -> str:
        return f"<einjit.compile {self.equation!r}: {self.signatures} signature(s)>"


def compile(equation: str, *, optimize: Any = DEFAULT_OPTIMIZE, dynamic: bool | str = False
            ) -> Callable[[Callable[..., Any]], CompiledEinsum]:
    """Decorate a body-less function to make it a compiled einsum.

    Kernels are specialised to the exact sizes they see, and a label that keeps
    arriving with new sizes soon gets kernels generic in it (see
    :data:`einjit.engine.DYNAMIC_AFTER`).  ``dynamic=True`` makes every dimension
    generic from the first call; ``dynamic="b"`` only the labels named.

    >>> import numpy as np, einjit
    >>> @einjit.compile("bij,bjk->bik")
    ... def bmm(a, b):
    ...     '''Batched matrix product.'''
    >>> bmm(np.ones((2, 3, 4)), np.ones((2, 4, 5))).shape
    (2, 3, 5)
    >>> bmm.__doc__
    'Batched matrix product.'
    >>> @einjit.compile("bij,bjk->bik", dynamic="b")
    ... def bmm_any_batch(a, b): ...
    >>> [bmm_any_batch(np.ones((n, 3, 4)), np.ones((n, 4, 5))).shape[0] for n in (1, 2, 3)]
    [1, 2, 3]
    >>> bmm_any_batch.signatures   # one kernel, generic in b
    1
    """
    parsed = parse_subscripts(equation)  # errors in the equation surface at decoration time
    engine.dynamic_labels(equation, parsed, dynamic)

    def decorate(fn: Callable[..., Any]) -> CompiledEinsum:
        return CompiledEinsum(equation, fn, optimize, dynamic)

    return decorate
