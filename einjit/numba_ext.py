"""einjit inside Numba: ``einjit.einsum`` in ``@numba.njit`` code, and compiled functions.

Numba has no ``np.einsum`` in nopython mode (numba issue #4121).  With einjit installed,
Numba code can call ``einjit.einsum`` with a literal equation, and call functions made
by ``@einjit.compile`` (bodies and reductions included)::

    @numba.njit
    def step(a, b, c):
        return einjit.einsum("ij,jk,kl->il", a, b, c)

At typing time the overload plans the equation for the operands' dtypes and layouts,
with every extent dynamic (the kernels read the sizes from the arrays), renders and
loads the kernels like any einjit kernel, and returns a small generated implementation
that checks the shapes, allocates the intermediates and the result and calls the kernels.
A matrix-product step calls BLAS through ``np.dot`` (as Numba does, through SciPy, when
SciPy is installed) from :data:`GEMM_MIN_WORK` multiply-adds a matrix (one call per
matrix of a batch), and its loop kernel below that: both are compiled, and the sizes
choose at run time.  The path of three or more operands is weighed with those BLAS
products.  Errors in the equation or the
operands are Numba typing errors naming the equation.

A label repeated within one operand (``ii->``, ``bii->bi``) reads that operand's
diagonal: a strided view of it (``as_strided``, the repeated axes' strides added), after
checking that those axes agree.  A result is always a new array, also where numpy
returns a view of the operand (``ii->i``, ``ij->ji``).

``out=`` takes an array of the result's shape whose dtype the result casts to safely;
the result is written into it and it is returned.  ``dtype=`` (``np.float64``, a
``np.dtype`` or a literal string) computes in that dtype, the operands casting to it
safely, or by the rule a literal ``casting=`` names (for ``out=`` too).  A literal
``optimize=`` (``True``, ``"greedy"``, ``"optimal"``, ``False``...) splits the operands
as it does outside Numba; any other value plans with einjit's default.

Limits inside Numba: every operand is an array (no scalars or lists); a label's sizes
must agree exactly (no size-1 broadcasting of labelled dimensions); no keyword
arguments but ``out=``, ``dtype=``, ``casting=`` and ``optimize=`` (no ``order=``).

Numba loads this module through its ``numba_extensions`` entry point (see
``pyproject.toml``), so nothing is imported before Numba compiles something.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, Callable

import numpy as np

__all__ = ["init", "register", "njit_wrapper"]

_lock = threading.Lock()
_registered = False
_FOLDS: list[tuple[str, Any, Callable[..., Any] | None]] = []  # id -> (equation, fold, fn)
_DUMMY_EXTENT = 64
#: Multiply-adds of one matrix product from which a matrix-product step inside Numba
#: calls BLAS (``np.dot``, SciPy installed) rather than its loop kernel: the two took the
#: same time up to 12^3 (about 1 us a call), BLAS 30 % less at 16^3, 3x less at 64^3 and
#: 5x at 512^3.  A batch makes one call per matrix: 1000 products of 4 x 4 took 0.13 ms
#: on BLAS, 0.08 as loops.
#: Read when a call is typed (Numba keeps the implementation per signature).  Inside a
#: ``prange`` loop each of Numba's threads calls BLAS, whose own threads then compete for
#: the cores: 64 products of 128^3 per loop took 15.6 ms that way, 12.7 as loops (serial
#: code: 10.4 and 18.4); at 64^3 and below BLAS was faster there too.
GEMM_MIN_WORK = 1 << 12


def init() -> None:
    """The ``numba_extensions`` entry point: register the overloads."""
    register()


def register() -> None:
    """Register ``einjit.einsum``'s Numba overload and the type of compiled functions."""
    global _registered
    with _lock:
        if _registered:
            return
        _registered = True
    from numba.core import errors, types
    from numba.extending import overload, typeof_impl

    from . import api, engine

    # (not strict: the implementation names each operand, for Numba passes a star
    # argument followed by a keyword one to the implementation wrongly)
    @overload(engine.einsum, prefer_literal=True, strict=False)
    def _einsum(*operands, out=None, dtype=None, casting=None,  # type: ignore[no-untyped-def]
                optimize=None):
        if not operands or not isinstance(operands[0], types.StringLiteral):
            raise errors.TypingError("einjit.einsum inside Numba needs the equation as a "
                                     "literal string (a constant in the code)")
        equation = operands[0].literal_value
        return _implementation(equation, None, None, operands[1:], out_type=_given(out),
                               dtype=_dtype(equation, _given(dtype)),
                               casting=_casting(equation, _given(casting)),
                               optimize=_path(optimize))

    @overload(_fold_call, prefer_literal=True)
    def _folded(fold_id, *operands):  # type: ignore[no-untyped-def]
        equation, fold, fn = _FOLDS[fold_id.literal_value]
        return _implementation(equation, fold, fn, operands, fold_id=True)

    @typeof_impl.register(api.CompiledEinsum)
    def _typeof_compiled(val: Any, c: Any) -> Any:
        from numba.core.typing.typeof import typeof

        return typeof(njit_wrapper(val), c)


def _given(arg: Any) -> Any:
    """A keyword argument's Numba type, or None where the call left it out (or None)."""
    from numba.core import types

    if arg is None or isinstance(arg, (types.NoneType, types.Omitted)):
        return None
    return arg


def _dtype(equation: str, arg: Any) -> np.dtype | None:
    """The numpy dtype a ``dtype=`` argument names (a NumPy scalar type such as
    ``np.float64``, a ``np.dtype`` or a literal string), or None without one."""
    from numba.core import errors, types
    from numba.np.numpy_support import as_dtype

    if arg is None:
        return None
    if isinstance(arg, types.NumberClass):
        return as_dtype(arg.instance_type)
    if isinstance(arg, types.DType):
        return as_dtype(arg.dtype)
    if isinstance(arg, types.StringLiteral):
        try:
            return np.dtype(arg.literal_value)
        except TypeError as exc:
            raise errors.TypingError(f"einjit.einsum({equation!r}) inside Numba: "
                                     f"{exc}") from None
    raise errors.TypingError(f"einjit.einsum({equation!r}) inside Numba: dtype= must be a "
                             f"NumPy type, a dtype or a literal string, not {arg}")


def _casting(equation: str, arg: Any) -> str:
    """numpy's ``casting=`` from a literal string argument (default ``"safe"``)."""
    from numba.core import errors, types

    if arg is None:
        return "safe"
    rules = ("no", "equiv", "safe", "same_kind", "unsafe")
    if not isinstance(arg, types.StringLiteral) or arg.literal_value not in rules:
        raise errors.TypingError(f"einjit.einsum({equation!r}) inside Numba: casting= must "
                                 f"be one of {', '.join(map(repr, rules))} as a literal "
                                 f"string, not {arg}")
    return str(arg.literal_value)


def _path(optimize: Any) -> Any:
    """The ``optimize=`` a call inside Numba plans with: its value where it is a literal
    bool or string (a constant in the code), else einjit's default."""
    from numba.core import types

    if isinstance(optimize, (types.BooleanLiteral, types.StringLiteral)):
        return optimize.literal_value
    return "auto"


def _fold_call(fold_id: int, *operands: Any) -> Any:  # pragma: no cover - Numba only
    """Stands for a compiled function with a body or reduction inside Numba code."""
    raise RuntimeError("einjit: _fold_call is only callable from Numba-compiled code")


def njit_wrapper(compiled: Any) -> Any:
    """A ``numba.njit`` function calling ``compiled`` (an ``einjit.compile`` object)."""
    wrapper = getattr(compiled, "_numba_wrapper", None)
    if wrapper is not None:
        return wrapper
    import numba

    from . import engine

    n = len(compiled._parsed.inputs)
    args = ", ".join(f"a{k}" for k in range(n))
    if compiled._fold.default:
        source = f"def call({args}):\n    return einsum({compiled.equation!r}, {args})\n"
        namespace: dict[str, Any] = {"einsum": engine.einsum}
    else:
        with _lock:
            _FOLDS.append((compiled.equation, compiled._fold, compiled._body_fn))
            fold_id = len(_FOLDS) - 1
        source = f"def call({args}):\n    return fold_call({fold_id}, {args})\n"
        namespace = {"fold_call": _fold_call}
    exec(compile(source, f"<einjit numba wrapper {compiled.equation}>", "exec"), namespace)
    wrapper = numba.njit(namespace["call"])
    compiled._numba_wrapper = wrapper
    return wrapper


def _implementation(equation: str, fold: Any, fn: Callable[..., Any] | None,
                    array_types: tuple[Any, ...], fold_id: bool = False,
                    out_type: Any = None, dtype: np.dtype | None = None,
                    casting: str = "safe", optimize: Any = "auto") -> Any:
    """The generated implementation for these Numba array types (see the module doc);
    ``out_type``: the Numba type of an ``out=`` array, None without one; ``dtype``,
    ``casting``: numpy's; ``optimize``: how the plan splits three or more operands."""
    from numba.core import errors, types
    from numba.np.numpy_support import as_dtype

    from . import cache
    from .codegen import blas, numba_cpu
    from .dtypes import arithmetic, result_dtype
    from .parser import bind, parse_subscripts
    from .planner import DEFAULT_FOLD

    where = f"einjit.einsum({equation!r}) inside Numba"
    try:
        parsed = parse_subscripts(equation)
    except (ValueError, TypeError) as exc:
        raise errors.TypingError(f"{where}: {exc}") from None
    if len(parsed.inputs) != len(array_types):
        raise errors.TypingError(f"{where}: {len(array_types)} operands for "
                                 f"{len(parsed.inputs)} terms")
    for k, t in enumerate(array_types):
        if not isinstance(t, types.Array):
            raise errors.TypingError(f"{where}: operand {k} is {t}, not an array")
    try:
        spec = bind(parsed, [(_DUMMY_EXTENT,) * t.ndim for t in array_types])
    except (ValueError, TypeError) as exc:
        raise errors.TypingError(f"{where}: {exc}") from None
    # A repeated label reads a diagonal: the operand is seen through a strided view
    # with one axis per label (its type has layout "A"), made first in the generated code.
    terms = [tuple(dict.fromkeys(term)) for term in spec.inputs]
    array_types = tuple(t if len(term) == len(spec.inputs[k]) else
                        types.Array(t.dtype, len(term), "A")
                        for k, (t, term) in enumerate(zip(array_types, terms)))
    dtypes = [as_dtype(t.dtype) for t in array_types]
    fold = fold or DEFAULT_FOLD
    try:
        if fold.default:
            result = result_dtype([np.empty(0, dt) for dt in dtypes], dtype, casting)
            arith = arithmetic(result)
        else:
            from .body import body_dtypes, reduction
            from .dtypes import Arithmetic
            from .planner import Fold

            result, accumulate = body_dtypes(fn, fold.reduce.name, dtypes)
            fold = Fold(fold.body, reduction(fold.reduce.name, accumulate), fold.combine)
            arith = Arithmetic(result.name, result.name, accumulate, "numba")
    except (ValueError, TypeError) as exc:
        raise errors.TypingError(f"{where}: {exc}") from None
    if arith.backend != "numba" or arith.compute != arith.result:
        raise errors.TypingError(f"{where}: dtype {result} is not supported inside Numba")
    if out_type is not None:
        if not isinstance(out_type, types.Array) or out_type.ndim != len(spec.output):
            raise errors.TypingError(f"{where}: out= must be an array of {len(spec.output)} "
                                     f"dimensions, not {out_type}")
        if not np.can_cast(result, as_dtype(out_type.dtype), casting):
            raise errors.TypingError(f"{where}: cannot write the {result} result into an "
                                     f"out= of {as_dtype(out_type.dtype)} "
                                     f"(casting={casting!r})")
        if not out_type.mutable:
            raise errors.TypingError(f"{where}: out= is read-only")
    size = spec.size
    labels = terms
    from .engine import _build_lock  # (see _plan_generic)

    with _build_lock:
        try:
            plan, nests, gemms = _plan_generic(spec, labels, size, dtypes, arith, fold,
                                               array_types, _blas_in_numba(), optimize)
        except (ValueError, TypeError, KeyError) as exc:
            raise errors.TypingError(f"{where}: {exc}") from None
    namespace: dict[str, Any] = {"np": np, "as_strided": np.lib.stride_tricks.as_strided}
    lines = []
    params = [f"a{k}" for k in range(len(array_types))]
    for k, (term, full) in enumerate(zip(terms, spec.inputs)):
        if len(term) != len(full):
            lines += _diagonal(equation, k, full, term)
            params[k] = f"d{k}"
    # shape checks: every label's extent from its first operand, the others must agree
    first_at: dict[str, tuple[int, int]] = {}
    for k, term in enumerate(terms):
        for axis, lb in enumerate(term):
            if lb not in first_at:
                first_at[lb] = (k, axis)
                lines.append(f"    n_{_name(lb)} = {params[k]}.shape[{axis}]")
            else:
                lines.append(f"    if {params[k]}.shape[{axis}] != n_{_name(lb)}:")
                lines.append(f"        raise ValueError({_mismatch(equation, lb, k)!r})")
    for i, (step, nest, gemm) in enumerate(zip(plan.steps, nests, gemms)):
        title = f"{plan.equation} step {step.kernel.name}"
        source = numba_cpu.render_module(nest, title)
        namespace[f"k{i}"] = cache.load_module_function(source, step.kernel.name)
        out = step.kernel.output
        dims = ", ".join(f"n_{_name(lb)}" for lb in out.indices)
        shape = f"({dims},)" if len(out.indices) == 1 else f"({dims})"
        namespace[f"t{i}"] = np.dtype(out.dtype)
        lines.append(f"    v{step.result} = np.empty({shape}, dtype=t{i})")
        call_args = ", ".join(
            (params[a] if a < len(array_types) else f"v{a}") for a in step.args)
        if gemm is None:
            lines.append(f"    k{i}({call_args}, v{step.result})")
            continue
        # A matrix product: BLAS (np.dot) from GEMM_MIN_WORK multiply-adds, the loop
        # kernel below that (copies and a BLAS call cost more than a few loops).
        x, y = ("C" if a >= len(array_types) else array_types[a].layout for a in step.args)
        namespace[f"g{i}"] = cache.load_module_function(
            blas.render_numba(gemm, title, (x, y)), step.kernel.name)
        # (the multiply-adds of one matrix of the batch: BLAS takes one call per matrix)
        lay = gemm.schedule.gemm
        work = " * ".join(f"n_{_name(name)}" for name in lay.m + lay.n + lay.k) or "1"
        lines += [f"    if {work} >= {GEMM_MIN_WORK}:",
                  f"        g{i}({call_args}, v{step.result})",
                  "    else:",
                  f"        k{i}({call_args}, v{step.result})"]
    last = f"v{plan.steps[-1].result}"
    if out_type is not None:  # numpy's out=: the result's shape, written into it, returned
        dims = "".join(f"n_{_name(lb)}, " for lb in spec.output)
        lines += [f"    if out.shape != ({dims}):",
                  f"        raise ValueError({_out_shape(equation)!r})",
                  f"    out[...] = {last}" if spec.output else f"    out[()] = {last}[()]",
                  "    return out"]
    else:
        lines.append(f"    return {last}[()]" if not spec.output else f"    return {last}")
    if fold_id:
        head = ["def impl(fold_id, *operands):"]
        head += [f"    a{k} = operands[{k}]" for k in range(len(params))]
    else:
        head = [f"def impl(equation, {''.join(f'a{k}, ' for k in range(len(params)))}"
                "out=None, dtype=None, casting=None, optimize=None):"]
    text = "\n".join(head + lines) + "\n"
    exec(compile(text, f"<einjit in numba {equation}>", "exec"), namespace)
    return namespace["impl"]


def _diagonal(equation: str, k: int, full: tuple[str, ...], term: tuple[str, ...]
              ) -> list[str]:
    """Lines making ``d{k}``, operand ``a{k}`` (labels ``full``) seen with one axis per
    label of ``term``: a repeated label's axes must agree, and its strides add up."""
    lines = []
    shape, strides = [], []
    for lb in term:
        axes = [a for a, x in enumerate(full) if x == lb]
        for a in axes[1:]:
            lines += [f"    if a{k}.shape[{a}] != a{k}.shape[{axes[0]}]:",
                      f"        raise ValueError({_collapsing(equation, lb, k)!r})"]
        shape.append(f"a{k}.shape[{axes[0]}]")
        strides.append(" + ".join(f"a{k}.strides[{a}]" for a in axes))
    tail = "," if len(term) == 1 else ""
    return lines + [f"    d{k} = as_strided(a{k}, shape=({', '.join(shape)}{tail}), "
                    f"strides=({', '.join(strides)}{tail}))"]


def _out_shape(equation: str) -> str:
    return f"einjit.einsum({equation!r}): out= does not have the result's shape"


def _collapsing(equation: str, label: str, operand: int) -> str:
    return (f"einjit.einsum({equation!r}): dimensions in operand {operand} for collapsing "
            f"index {label!r} don't match")


def _name(label: str) -> str:
    return label if label.isascii() else f"u{ord(label)}"


def _mismatch(equation: str, label: str, operand: int) -> str:
    return (f"einjit.einsum({equation!r}): operand {operand} disagrees with an earlier "
            f"operand on the size of label {label!r}")


def _blas_in_numba() -> bool:
    """Whether ``np.dot`` compiles inside Numba here (Numba reaches BLAS through SciPy)."""
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


def _plan_generic(spec: Any, labels: list[Any], size: dict[str, int], dtypes: list[Any],
                  arith: Any, fold: Any, array_types: tuple[Any, ...], blas: bool,
                  optimize: Any = "auto") -> tuple[Any, list[Any], list[Any]]:
    """The plan, the loop nests of kernels generic in every extent (dummy sizes guide the
    path and the schedule; C or F strides from the Numba layouts), and for each step the
    nest of a BLAS matrix product where the step is one and ``blas`` (else None).

    No step runs on threads or calls BLAS from Python (the caller's code may itself be
    parallel).  The schedule's policy is module state: the caller holds the lock every
    einjit build holds, so no other thread plans while it is swapped."""
    from . import policy as policies, schedule
    from .lower import lower
    from .planner import make_plan
    from .views import c_strides, f_strides

    policy = policies.POLICY
    loops = replace(policy, gemm_min_work=1 << 62, parallel_min_work=1 << 62)
    products = replace(policy, parallel_min_work=1 << 62)
    try:
        # the path and the fusion weighed as the steps will run: a matrix-product step
        # calls BLAS where it can (ij,jk,ki-> over 512^2 float64 as one loop nest: 530 ms;
        # a product and a sum of products: 5 ms)
        policies.POLICY = products if blas else loops
        plan = make_plan(labels, spec.output, size, [dt.name for dt in dtypes], arith,
                         optimize, frozenset(size), fold)
        strides: dict[int, tuple[int, ...]] = {}
        for k, t in enumerate(array_types):
            shape = [_DUMMY_EXTENT] * t.ndim
            strides[k] = c_strides(shape) if t.layout != "F" else f_strides(shape)
        nests, gemms = [], []
        for step in plan.steps:
            shape = tuple(size[lb] for lb in step.kernel.output.indices)
            strides[step.result] = c_strides(shape)
            args = [strides[a] for a in step.args]
            policies.POLICY = loops
            sched = schedule.schedule(step.kernel, args, strides[step.result], flat=False)
            nests.append(lower(step.kernel, sched))
            gemm = None
            if blas:
                policies.POLICY = products
                sched = schedule.schedule(step.kernel, args, strides[step.result], flat=False)
                gemm = lower(step.kernel, sched) if sched.gemm else None
            gemms.append(gemm)
    finally:
        policies.POLICY = policy
    return plan, nests, gemms
