"""Element-wise bodies and reductions beyond sum-of-products.

``@einjit.compile(equation, reduce=...)`` on a function that returns an expression makes
that expression, of one element per operand, the kernel's loop body, folded over the
summed indices by the reduction:

>>> import math
>>> def sqdist(x, y):
...     return (x - y) ** 2
>>> print(translate(sqdist, 2))   # loads get their indices from the planner
(a0[] - a1[]) ** 2
>>> print(reduction("min", "float64"))
min

* :func:`translate` turns the function's ``return`` expression (Python source, read
  with :mod:`ast`) into an IR expression over :class:`~einjit.ir.Load` placeholders:
  arithmetic, comparisons, ``and``/``or``/``not``, ``a if c else b``, ``abs``, ``min``,
  ``max`` (numpy's NaN-propagating ``maximum``/``minimum``) and the ``math``/``numpy``
  functions in :data:`FUNCTIONS`.  Anything else is a
  ``TypeError`` naming the function and the construct.
* :func:`reduction` gives a reduction with its identity in the accumulating dtype;
  :func:`body_dtypes` the result and accumulation dtypes (the rule: the dtype numpy gives
  when the function runs on one element of each operand, then numpy's reduction of it).
* :func:`semiring` says when an n-ary expression may be split into pairwise steps: the
  body is one binary operator over the operands, and it distributes over the reduction
  (sum/product, min/plus, max/plus, logsumexp/plus, any/and, all/or).
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, Sequence

import numpy as np

from .ir import Call, Const, Expr, Load, Reduction, SUM, map_loads

__all__ = ["FUNCTIONS", "REDUCTIONS", "translate", "reduction", "body_dtypes", "semiring",
           "numba_reason", "compile_errors"]

#: Reductions by name: the binary operator and its identity (for floats; integer and bool
#: identities of min and max are the dtype's extremes).
REDUCTIONS: dict[str, tuple[str, Any]] = {
    "sum": ("add", 0), "prod": ("mul", 1), "max": ("maximum", -math.inf),
    "min": ("minimum", math.inf),
    "any": ("or", False), "all": ("and", True), "logsumexp": ("logaddexp", -math.inf),
}

#: Functions a body may call (``math.exp``, ``np.exp``...), by the IR operator they become.
FUNCTIONS: dict[str, str] = {
    name: name for name in ("exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh",
                            "log1p", "expm1", "log2", "log10", "floor", "ceil", "arctan",
                            "arcsin", "arccos", "exp2", "cbrt")
} | {"fabs": "abs", "absolute": "abs", "abs": "abs", "atan": "arctan", "asin": "arcsin",
     "acos": "arccos", "maximum": "maximum", "minimum": "minimum",
     "hypot": "hypot", "atan2": "arctan2", "arctan2": "arctan2", "pow": "pow",
     "power": "pow", "copysign": "copysign", "where": "where", "logaddexp": "logaddexp"}

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv",
           ast.FloorDiv: "floordiv", ast.Mod: "mod", ast.Pow: "pow", ast.BitAnd: "and",
           ast.BitOr: "or", ast.BitXor: "xor"}
_COMPARE = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq",
            ast.NotEq: "ne"}
_SEMIRINGS = {("sum", "mul"), ("min", "add"), ("max", "add"), ("logsumexp", "add"),
              ("any", "and"), ("all", "or")}


def _source_tree(fn: Callable[..., Any]) -> ast.FunctionDef:
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise TypeError(f"einjit.compile: cannot read the source of {fn.__qualname__} "
                        f"to use its body ({exc})") from None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn.__name__:
            return node  # type: ignore[return-value]
    raise TypeError(f"einjit.compile: cannot find the definition of {fn.__qualname__}")


def translate(fn: Callable[..., Any], n_operands: int) -> Expr:
    """The IR expression ``fn`` returns, its parameters read as ``Load(0)``, ``Load(1)``...

    (The loads carry no indices yet: the planner gives each its operand's labels.)
    """
    tree = _source_tree(fn)
    params = [a.arg for a in tree.args.args]
    if len(params) != n_operands or tree.args.vararg or tree.args.kwonlyargs:
        raise TypeError(f"einjit.compile: {fn.__qualname__} takes {len(params)} arguments but "
                        f"the equation has {n_operands} operands")
    body = [s for s in tree.body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        raise TypeError(f"einjit.compile: the body of {fn.__qualname__} must be one "
                        "'return <expression>' (or empty for a plain einsum)")
    env = dict(fn.__globals__)
    if fn.__closure__:
        env.update(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__)))
    return _Translator(fn.__qualname__, params, env).expr(body[0].value)


class _Translator:
    def __init__(self, name: str, params: list[str], env: dict[str, Any]) -> None:
        self.name, self.params, self.env = name, params, env

    def fail(self, node: ast.AST, why: str) -> TypeError:
        text = ast.unparse(node)
        return TypeError(f"einjit.compile: the body of {self.name} cannot be fused: {why} "
                         f"in {text!r}. Bodies may use +, -, *, /, //, %, **, comparisons, "
                         "and/or/not, 'a if c else b', abs/min/max and math or numpy "
                         f"functions ({', '.join(sorted(FUNCTIONS))})")

    def expr(self, node: ast.AST) -> Expr:
        if isinstance(node, ast.Name):
            if node.id in self.params:
                return Load(self.params.index(node.id), ())
            value = self.env.get(node.id)
            if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
                return Const(value)
            if isinstance(value, (np.integer, np.floating, np.bool_)):
                return Const(value.item())
            raise self.fail(node, f"{node.id!r} is not a parameter or a number")
        if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float)):
            return Const(node.value)
        if isinstance(node, ast.Attribute) and self._module_of(node.value) is not None:
            value = getattr(self._module_of(node.value), node.attr, None)
            if isinstance(value, float):  # math.pi, np.inf
                return Const(value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return Call(_BINOPS[type(node.op)], (self.expr(node.left), self.expr(node.right)))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return Call("neg", (self.expr(node.operand),))
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand)
            if isinstance(node.op, ast.Not):
                return Call("not", (self.expr(node.operand),))
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            return Call(_COMPARE[type(node.ops[0])],
                        (self.expr(node.left), self.expr(node.comparators[0])))
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            return Call(op, tuple(Call("ne", (self.expr(v), Const(0))) for v in node.values))
        if isinstance(node, ast.IfExp):
            return Call("where", (self.expr(node.test), self.expr(node.body),
                                  self.expr(node.orelse)))
        if isinstance(node, ast.Call) and not node.keywords:
            op = self._function(node.func)
            if op is None:
                raise self.fail(node, f"{ast.unparse(node.func)} is not a function einjit "
                                      "can fuse")
            return Call(op, tuple(self.expr(a) for a in node.args))
        raise self.fail(node, f"unsupported expression ({type(node).__name__})")

    def _module_of(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            value = self.env.get(node.id)
            if value is math or value is np:
                return value
        return None

    def _function(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            if node.id in ("abs", "min", "max") and node.id not in self.env:
                return {"abs": "abs", "min": "minimum", "max": "maximum"}[node.id]
            value = self.env.get(node.id)
            for module in (math, np):
                for name, op in FUNCTIONS.items():
                    if getattr(module, name, None) is value and value is not None:
                        return op
            return None
        if isinstance(node, ast.Attribute) and self._module_of(node.value) is not None:
            return FUNCTIONS.get(node.attr)
        return None


def reduction(name: str, dtype: str) -> Reduction:
    """The reduction ``name`` with its identity in ``dtype`` (the accumulating dtype)."""
    if name not in REDUCTIONS:
        raise ValueError(f"einjit.compile: reduce={name!r} is not one of "
                         f"{', '.join(map(repr, REDUCTIONS))}")
    op, identity = REDUCTIONS[name]
    dt = np.dtype(dtype)
    if name in ("max", "min") and dt.kind in "biu":
        info = np.iinfo(dt) if dt.kind != "b" else None
        if info is None:
            identity = name == "min"
        else:
            identity = int(info.min if name == "max" else info.max)
    return Reduction(name, op, identity)


def body_dtypes(fn: Callable[..., Any] | None, reduce: str, dtypes: Sequence[np.dtype]
                ) -> tuple[np.dtype, str]:
    """``(result dtype, accumulating dtype)`` of a body folded by ``reduce``.

    The body's dtype is the one numpy gives when ``fn`` runs on one element of each
    operand (0-d arrays: numpy's promotion, ``math`` functions give float64, comparisons
    bool); without a body it is numpy's promotion of the operands (their product).  The
    result is then what numpy's reduction of that dtype returns (``np.sum`` of int32
    values is int64, ``max`` keeps the dtype, ``any``/``all`` give bool, ``logsumexp``
    a float); sums and products of integers accumulate in 64 bits, float16 in float32.
    """
    if fn is None:
        body = np.result_type(*dtypes)
    else:
        samples = [np.ones((), dtype=dt) for dt in dtypes]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                body = np.asarray(fn(*samples)).dtype
            except Exception:  # noqa: BLE001 - fall back to the operands' promotion
                body = np.result_type(*dtypes)
    if body.kind not in "biufc":
        raise TypeError(f"einjit.compile: the body gives {body}, not a number")
    if reduce in ("any", "all"):
        return np.dtype(bool), "bool"
    if reduce == "logsumexp":
        if body.kind == "c":
            raise TypeError("einjit.compile: reduce='logsumexp' needs real values")
        result = body if body.kind == "f" else np.dtype(np.float64)
    elif reduce in ("max", "min"):
        if body.kind == "c":
            raise TypeError(f"einjit.compile: reduce={reduce!r} needs real values")
        result = body
    else:
        result = getattr(np, reduce)(np.ones(1, dtype=body)).dtype
    if result.kind in "b":
        accumulate = "bool"
    elif result.kind == "i" or (result.kind == "u" and reduce not in ("max", "min")):
        accumulate = "int64" if result.kind == "i" else "uint64"
    elif result == np.float16:
        accumulate = "float32"
    else:
        accumulate = result.name
    return result, accumulate


def semiring(body: Expr, reduce: Reduction, n_operands: int) -> str | None:
    """The combining operator when ``reduce`` over ``body`` may be split pairwise
    (``body`` is that operator over each operand once, and it distributes over the
    reduction), else None."""
    if n_operands < 2 or not isinstance(body, Call) or (reduce.name, body.op) not in _SEMIRINGS:
        return None
    terms = _flatten(body, body.op)  # a + b + c parses as (a + b) + c
    if [t.operand if isinstance(t, Load) else -1 for t in terms] != list(range(n_operands)):
        return None
    return body.op


def _flatten(expr: Expr, op: str) -> list[Expr]:
    if isinstance(expr, Call) and expr.op == op:
        return [t for a in expr.args for t in _flatten(a, op)]
    return [expr]


def with_indices(expr: Expr, labels: Sequence[tuple[str, ...]]) -> Expr:
    """``expr`` with each ``Load(k)`` given operand k's labels."""
    return map_loads(expr, lambda ld: Load(ld.operand, tuple(labels[ld.operand])))


def is_sum(reduce: Reduction) -> bool:
    return reduce == SUM or reduce.name == "sum"


def numba_reason(exc: BaseException) -> str | None:
    """The gist of a Numba compilation error (None when ``exc`` is not Numba's), for
    the TypeError that names the body Numba could not compile."""
    if not type(exc).__module__.startswith("numba"):
        return None
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = [ln for ln in lines if ln.startswith(("No implementation", "Invalid use", "Cannot",
                                                   "Unknown", ">>>"))]
    return " ".join((detail or lines or [type(exc).__name__])[:3])


@contextmanager
def compile_errors(fn: Callable[..., Any] | None, where: str,
                   target: str = "these operands") -> Iterator[None]:
    """Inside: a Numba failure to compile the body of ``fn`` becomes a TypeError naming
    ``where``, the function and ``target``, with Numba's reason; other errors, and
    everything when there is no body (``fn`` None), pass as they are."""
    if fn is None:
        yield
        return
    try:
        yield
    except Exception as exc:
        reason = numba_reason(exc)
        if reason is None:
            raise
        raise TypeError(f"{where}: Numba cannot compile the body of {fn.__qualname__} for "
                        f"{target}: {reason}") from exc
