"""einjit's public functions: ``einsum`` and the ``compile`` decorator."""

from __future__ import annotations

import dis
import functools
import types
from typing import Any, Callable, Hashable

import numpy as np

from . import cache, engine
from .dispatch import FastTable, hosted, keyword_key, signature, with_out
from .engine import DEFAULT_OPTIMIZE, einsum
from .body import compile_errors, reduction, translate
from .parser import parse_subscripts
from .planner import Fold

__all__ = ["einsum", "compile", "CompiledEinsum"]

_STATS = cache.STATS  # one object for the process (reset in place)


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
                 optimize: Any = DEFAULT_OPTIMIZE, dynamic: bool | str = False,
                 reduce: str = "sum", target: str | None = None) -> None:
        if target not in (None, "cpu", "cuda"):
            raise ValueError(f"einjit.compile({equation!r}): target must be None, 'cpu' or "
                             f"'cuda' (got {target!r})")
        self.target = target
        self._host = target != "cuda"
        self._cuda_plans: dict[Hashable, Any] = {}
        self.equation = equation
        self._parsed = parse_subscripts(equation)
        self.optimize = optimize
        self.dynamic = engine.dynamic_labels(equation, self._parsed, dynamic)
        self.reduce = reduce
        if not isinstance(reduce, str):
            raise TypeError(f"einjit.compile({equation!r}): reduce must be a str, not "
                            f"{type(reduce).__name__}")
        self._fold = Fold(None, reduction(reduce, "float64"))  # an unknown name fails here
        self._body_fn: Callable[..., Any] | None = None
        self._plans = engine.PlanTable()
        self._fast = FastTable()
        self._fast_get = self._fast.get  # (bound once: this runs on every call)
        self.__wrapped__ = fn
        if fn is not None:
            if not isinstance(getattr(fn, "__code__", None), types.CodeType):
                raise TypeError(f"einjit.compile({equation!r}) decorates a Python function, "
                                f"not {type(fn).__name__}: pass the operands to the "
                                "decorated function (or to einjit.einsum)")
            functools.update_wrapper(self, fn)
            n = len(self._parsed.inputs)
            argc = fn.__code__.co_argcount
            if not fn.__code__.co_flags & 0x04 and argc != n:  # no *args
                raise TypeError(f"einjit.compile({equation!r}): {fn.__qualname__} takes "
                                f"{argc} arguments but the equation has {n} operands")
            if not _is_bodyless(fn):
                self._fold = Fold(translate(fn, n), self._fold.reduce)
                self._body_fn = fn

    def __call__(self, *operands: Any, **options: Any) -> Any:
        """``einsum(equation, *operands, out=None, dtype=None, order="K",
        casting="safe")`` with this object's kernels."""
        if not options:  # the common call: one signature lookup (none stored for cuda)
            sig = signature(operands)
            if sig is not None:
                run = self._fast_get(sig)
                if run is not None:
                    _STATS.hits += 1
                    return run(operands)
        return self._call(operands, **options)

    def _call(self, operands: tuple[Any, ...], out: np.ndarray | None = None,
              dtype: Any = None, order: str = "K", casting: str = "safe") -> Any:
        key: Hashable = None
        if self._host:
            sig = signature(operands)
            if sig is None:  # numbers, numpy scalars, lists, subclasses: as ndarrays
                converted = hosted(operands)
                if converted is not None:
                    operands, sig = converted, signature(converted)
            if out is not None:
                sig = with_out(sig, out)
            if sig is not None:
                key = (sig if dtype is None and order == "K" and casting == "safe"
                       else (*keyword_key(dtype, order, casting), sig))
                try:
                    run = self._fast_get(key)
                except TypeError:  # an unhashable dtype=
                    key = run = None
                if run is not None:
                    result = run(operands) if out is None else run(operands, out)
                    if result is not None:  # None: ``out`` overlaps an operand
                        _STATS.hits += 1
                        return result
        if key is None:  # not all plain ndarrays, or target='cuda': maybe the GPU
            from . import cuda as cuda_target
            if cuda_target.wants_device(operands, self.target):
                return cuda_target.einsum(self.equation, *operands, out=out, dtype=dtype,
                                          order=order, casting=casting,
                                          optimize=self.optimize, plans=self._cuda_plans,
                                          fold=self._fold, body=self._body_fn)
        if self._fold.default:
            call = engine.prepare_operands(self._parsed, operands, out, dtype, order, casting,
                                           self.optimize)
        else:
            if dtype is not None or casting != "safe":
                raise TypeError(f"einjit.compile({self.equation!r}): dtype= and casting= "
                                "apply to plain einsums; with a body or a reduction the "
                                "result dtype follows the body (cast inside it)")
            call = engine.prepare_fold(self._parsed, operands, out, self._fold, self._body_fn,
                                       self.optimize, order)
        if self.dynamic is True:
            call.dynamic = frozenset(call.spec.size)
        elif self.dynamic:
            call.dynamic = self.dynamic & frozenset(call.spec.size)
        with compile_errors(self._body_fn, f"einjit.compile({self.equation!r})"):
            return engine.finish(call, self._plans, key, self._fast, operands)

    def explain(self, *operands_or_shapes: Any, dtype: Any = None) -> Any:
        """What this function runs for these operands (or shapes): plan, loop nests and
        generated source, as :func:`einjit.explain` shows a plain einsum."""
        from .explain import explain_call

        return explain_call(self.equation, operands_or_shapes, dtype, self.optimize,
                            self.dynamic, self._fold, self._body_fn)

    @property
    def signatures(self) -> int:
        """How many shape/dtype/layout signatures this object has compiled."""
        return len(self._plans)

    def __repr__(self) -> str:
        return f"<einjit.compile {self.equation!r}: {self.signatures} signature(s)>"


def compile(equation: str, *, optimize: Any = DEFAULT_OPTIMIZE, dynamic: bool | str = False,
            reduce: str = "sum", target: str | None = None) -> Callable[..., Any]:
    """Decorate a function to make it a compiled einsum.

    A body-less function (a docstring, ``pass`` or ``...``) is the plain einsum.  A
    function that returns an expression of one element per operand makes that
    expression the loop body, folded over the summed indices by ``reduce`` (``"sum"``,
    ``"prod"``, ``"max"``, ``"min"``, ``"any"``, ``"all"`` or ``"logsumexp"``): no
    broadcast intermediate is ever built.  The body may use arithmetic, comparisons,
    ``and``/``or``/``not``, ``a if c else b``, ``abs``/``min``/``max`` and ``math`` or
    numpy functions (``exp``, ``log``, ``sqrt``...); the result dtype is what numpy
    gives running the body on one element of each operand, then reducing it (see
    :func:`einjit.body.body_dtypes`).  A ``max``/``min`` over zero elements raises
    ValueError, as numpy's do; the other reductions give their identity.

    Kernels are specialised to the exact sizes they see, and a label that keeps
    arriving with new sizes soon gets kernels generic in it (see
    :data:`einjit.engine.DYNAMIC_AFTER`; sizes below 16 count apart).  ``dynamic=True``
    makes every dimension generic from the first call; ``dynamic="b"`` only the labels named.  A generic
    kernel serves one size class (a factor of 16: 0-15, 16-255, ...) and is planned
    for its middle (see :func:`einjit.engine.planned_extent`).
    ``target="cuda"`` runs it on the GPU (numpy operands copied in and out); with the
    default ``None`` device operands (``__cuda_array_interface__``) run there anyway.
    Called with operands rather than a function, ``einjit.compile(equation)`` is the
    plain einsum (folded by ``reduce``), its kernels kept by the decorator.

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
    >>> @einjit.compile("id,jd->ij")
    ... def sqdist(x, y):
    ...     return (x - y) ** 2
    >>> sqdist(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[3.0, 4.0]]))
    array([[25.],
           [13.]])
    >>> @einjit.compile("ik,kj->ij", reduce="min")
    ... def minplus(a, b):
    ...     return a + b
    >>> minplus(np.array([[0.0, 2.0]]), np.array([[5.0], [1.0]]))
    array([[3.]])
    >>> matmul = einjit.compile("ij,jk->ik")   # no function: the plain einsum
    >>> matmul(np.ones((2, 3)), np.ones((3, 4)))[0]
    array([3., 3., 3., 3.])
    """
    parsed = parse_subscripts(equation)  # errors in the equation surface at decoration time
    engine.dynamic_labels(equation, parsed, dynamic)

    if isinstance(reduce, str):
        reduction(reduce, "float64")  # an unknown reduction fails at decoration

    @functools.cache
    def plain() -> CompiledEinsum:  # for calls with operands, made on the first
        return CompiledEinsum(equation, None, optimize, dynamic, reduce, target)

    def decorate(*args: Any, **options: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not options:
            return CompiledEinsum(equation, args[0], optimize, dynamic, reduce, target)
        # einjit.compile(eq)(a, b): no function, the plain einsum, its kernels kept here
        return plain()(*args, **options)

    return decorate
