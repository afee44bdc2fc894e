"""Render a scheduled kernel (:mod:`einjit.schedule_cuda`) as a ``numba.cuda`` module.

The renderer prints what :func:`~einjit.schedule_cuda.schedule_gpu` decided and decides
nothing: the thread mapping, the index order, the tile sizes and every extent, stride
and offset are literals in the source.  Each array arrives as a flat 1-D device array;
an element's address is its layout's offset plus index times stride.

The module defines one ``@cuda.jit`` function per launch: ``<name>`` (and, for a
reduction split over several blocks, ``<name>_part`` first, which writes partial results
into a scratch buffer that ``<name>`` folds), after the device functions they call.  Kernels are written to the disk cache
like the CPU's (:func:`einjit.cache.load_module_function`), so ``cache=True`` keeps
their compiled code between processes.

Bodies and reductions are the IR's, as the CPU renderer spells them: arithmetic,
comparisons, ``&``/``|``/``^``/``not``, ``a if c else b``, ``abs`` and the ``math``
functions the device has (``cmath`` on complex values); numpy's NaN-propagating
``maximum``/``minimum``, ``exp2``, ``cbrt`` and a stable ``logaddexp`` are device
functions printed into the module when a kernel uses them.  Every reduction (sum,
product, max, min, any, all, logsumexp) folds with its own operator and identity in
each mapping: the serial loop, the shared-memory tree and the split second pass.

>>> from einjit.ir import Index, Kernel, Operand, SUM, product
>>> from einjit.schedule_cuda import Layout, schedule_gpu
>>> k = Kernel("k0", (Operand("a0", "float32", ("i",)), Operand("a1", "float32", ("i",))),
...            Operand("out", "float32", ("i",)), (Index("i", 8),),
...            product(2, (("i",), ("i",))), SUM, "float32")
>>> s = schedule_gpu(k, (Layout(0, (1,)), Layout(0, (1,))), Layout(0, (1,)))
>>> print(render_functions(k, s), end="")
@cuda.jit(cache=True)
def k0(a0, a1, out):
    tt = cuda.grid(1)
    while tt < 8:
        i = tt
        out[uint64(i)] = a0[uint64(i)] * a1[uint64(i)]
        tt += cuda.gridsize(1)
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Call, Cast, Const, Expr, Kernel, Load, Var, map_loads
from ..schedule_cuda import (
    BlockPerOutput,
    GpuSchedule,
    Layout,
    LibraryGemm,
    ThreadPerOutput,
    TiledGemm,
)

__all__ = ["kernel_names", "render_functions", "render_module"]

_INFIX = {"mul": "*", "add": "+", "sub": "-", "truediv": "/", "floordiv": "//", "mod": "%",
          "pow": "**", "xor": "^", "and": "&", "or": "|", "lt": "<", "le": "<=", "gt": ">",
          "ge": ">=", "eq": "==", "ne": "!="}
#: Functions spelled as the device's ``math`` function (real arguments).
_MATH = {name: f"math.{name}" for name in (
    "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "log1p", "expm1",
    "log2", "log10", "floor", "ceil", "hypot", "copysign")} | {
    "exp_flush": "math.exp",  # no slow subnormals on the device: plain exp
    "arctan": "math.atan", "arcsin": "math.asin", "arccos": "math.acos",
    "arctan2": "math.atan2"}
#: The same on complex arguments (``cmath``; the others have no complex form on the device).
_CMATH = {name: f"cmath.{name}" for name in (
    "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "log10")} | {
    "arctan": "cmath.atan", "arcsin": "cmath.asin", "arccos": "cmath.acos"}
#: Operators that are device functions printed into the module (numpy's semantics).
_HELPER_OPS = {"maximum": "np_maximum", "minimum": "np_minimum", "logaddexp": "np_logaddexp",
               "exp2": "np_exp2", "cbrt": "np_cbrt"}
_HELPERS = {
    "np_maximum": (
        "def np_maximum(a, b):\n"
        "    # numpy.maximum: NaN when either is NaN\n"
        "    return a if a > b or a != a else b\n"),
    "np_minimum": (
        "def np_minimum(a, b):\n"
        "    # numpy.minimum: NaN when either is NaN\n"
        "    return a if a < b or a != a else b\n"),
    "np_logaddexp": (
        "def np_logaddexp(x, y):\n"
        "    # numpy.logaddexp: log(exp(x) + exp(y)), exp only of non-positive numbers\n"
        "    if x == y:\n"
        "        return x + 0.6931471805599453\n"
        "    d = x - y\n"
        "    if d > 0:\n"
        "        return x + math.log1p(math.exp(-d))\n"
        "    if d <= 0:\n"
        "        return y + math.log1p(math.exp(d))\n"
        "    return d\n"),
    "np_exp2": (
        "def np_exp2(x):\n"
        "    return 2.0 ** x\n"),
    "np_cbrt": (
        "def np_cbrt(x):\n"
        "    # the real cube root, of negative numbers too\n"
        "    return math.copysign(cuda.cbrt(abs(x)), x)\n"),
}
#: Reductions folded with an infix operator (``acc op= value``); the others call the
#: device function of :data:`_HELPER_OPS`.
_FOLD_INFIX = {"add": "+", "mul": "*", "or": "|", "and": "&"}
_FOLD_CALLS = ("maximum", "minimum", "logaddexp")
_MAX_NESTED = 8  # deeper reduction nests run as one flattened loop (Python's block limit)


def _addr(layout: Layout, indices: tuple[str, ...], extent: dict[str, int]) -> str:
    """``offset + i*si + ...``: literal strides, zero strides and size-1 axes left out."""
    terms = [str(layout.offset)] if layout.offset else []
    for name, s in zip(indices, layout.strides):
        if s == 0 or extent[name] == 1:
            continue
        terms.append(name if s == 1 else f"{name} * {s}")
    return " + ".join(terms) or "0"


def _element(addr: str) -> str:
    """An array subscript: the address as ``uint64`` (addresses are never negative, and
    Numba adds no wraparound test for a negative index to an unsigned one)."""
    return addr if addr.isdigit() else f"uint64({addr})"


def _dtype(name: str) -> str:
    return "numba.boolean" if name == "bool" else f"numba.{name}"


def _scalar(name: str) -> str:
    """The numpy scalar type of a dtype name, as device code calls it."""
    return "np.bool_" if name == "bool" else f"np.{name}"


def _literal(value: float) -> str:
    """A constant as device source (``math.inf``; the most negative int64 without an
    out-of-range literal)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "math.nan" if math.isnan(value) else ("math.inf" if value > 0 else "-math.inf")
    if isinstance(value, int) and not isinstance(value, bool) and value == -(1 << 63):
        return "(-9223372036854775807 - 1)"
    return repr(value)


class _Printer:
    """Prints expressions of one kernel (its loads addressed through its layouts) and
    records the device functions they call."""

    def __init__(self, kernel: Kernel, sched: GpuSchedule) -> None:
        self.kernel = kernel
        self.sched = sched
        self.extent = kernel.extent
        self.helpers: dict[str, None] = {}
        self._complex: dict[Expr, bool] = {}
        op = kernel.reduce.op
        if op in _FOLD_CALLS:
            self.helpers[_HELPER_OPS[op]] = None
        elif op not in _FOLD_INFIX:
            raise TypeError(f"the CUDA renderer cannot fold reduction {kernel.reduce} "
                            f"(operator {op!r})")

    def load(self, k: int, indices: tuple[str, ...]) -> str:
        return f"a{k}[{_element(_addr(self.sched.inputs[k], indices, self.extent))}]"

    def accumulate(self, acc: str, value: str) -> str:
        """The statement ``acc = reduce(acc, value)``."""
        op = self.kernel.reduce.op
        if op in _FOLD_INFIX:
            return f"{acc} {_FOLD_INFIX[op]}= {value}"
        return f"{acc} = {_HELPER_OPS[op]}({acc}, {value})"

    def identity(self) -> str:
        """The reduction's identity as a scalar of the accumulating dtype."""
        k = self.kernel
        return f"{_scalar(k.accumulate)}({_literal(k.reduce.identity)})"

    def expr(self, e: Expr) -> str:
        if isinstance(e, Load):
            return self.load(e.operand, e.indices)
        if isinstance(e, Const):
            return _literal(e.value)
        if isinstance(e, Var):
            return e.name
        if isinstance(e, Cast):
            if e.dtype == "bool":
                return f"({self.operand(e.value)} != 0)"
            return f"{_scalar(e.dtype)}({self.expr(e.value)})"
        if isinstance(e, Call):
            return self._call(e)
        raise TypeError(f"the CUDA renderer cannot print {e!r}")

    def _call(self, e: Call) -> str:
        op = e.op
        if op == "where":
            cond, yes, no = (self.expr(a) for a in e.args)
            return f"({yes} if {cond} else {no})"
        if op == "neg":
            return f"-{self.operand(e.args[0])}"
        if op == "not":
            return f"(not {self.operand(e.args[0])})"
        if op in _INFIX:
            if len(e.args) == 1:
                return self.expr(e.args[0])
            return f" {_INFIX[op]} ".join(self.operand(a) for a in e.args)
        args = ", ".join(self.expr(a) for a in e.args)
        if op == "abs":
            return f"abs({args})"
        complex_args = any(self._is_complex(a) for a in e.args)
        if complex_args and op not in _CMATH:
            raise TypeError(f"the CUDA target has no {op} of complex numbers")
        if op in _HELPER_OPS:
            self.helpers[_HELPER_OPS[op]] = None
            return f"{_HELPER_OPS[op]}({args})"
        if op in _MATH:
            return f"{(_CMATH if complex_args else _MATH)[op]}({args})"
        raise ValueError(f"the CUDA renderer has no spelling for operator {op!r}")

    def operand(self, e: Expr) -> str:
        """``e`` as an operand of an infix operator (parenthesised when it is one itself)."""
        text = self.expr(e)
        if isinstance(e, Call) and (e.op in _INFIX or e.op == "neg"):
            return f"({text})"
        if isinstance(e, Const) and not isinstance(e.value, bool) and e.value < 0:
            return f"({text})"
        return text

    def _is_complex(self, e: Expr) -> bool:
        """Whether numpy gives ``e`` a complex dtype (from the operands' dtypes)."""
        if e not in self._complex:
            dtype = _numpy_dtype(e, [op.dtype for op in self.kernel.inputs])
            self._complex[e] = dtype is not None and dtype.kind == "c"
        return self._complex[e]

    def store(self, value: str, have: str | None) -> str:
        """``out[addr] = value`` converted to the output dtype (``have``: the dtype
        ``value`` certainly has, or None)."""
        k = self.kernel
        want = k.output.dtype
        if have != want:
            value = f"({value} != 0)" if want == "bool" else f"np.{want}({value})"
        return f"out[{_element(_addr(self.sched.output, k.output.indices, self.extent))}] = {value}"

    def definitions(self) -> str:
        """The device functions the printed expressions call."""
        return "".join(f"@cuda.jit(device=True)\n{_HELPERS[name]}\n\n"
                       for name in self.helpers)


_NUMPY_NAMES = {"mul": "multiply", "sub": "subtract", "truediv": "true_divide",
                "floordiv": "floor_divide", "mod": "remainder", "pow": "power",
                "xor": "bitwise_xor", "and": "bitwise_and", "or": "bitwise_or", "lt": "less",
                "le": "less_equal", "gt": "greater", "ge": "greater_equal", "eq": "equal",
                "ne": "not_equal", "neg": "negative", "not": "logical_not", "abs": "absolute"}


def _numpy_dtype(e: Expr, dtypes: list[str]) -> np.dtype | None:
    """The dtype numpy gives ``e`` on one element of each operand (None: numpy cannot
    evaluate it)."""
    def value(x: Expr) -> object:
        if isinstance(x, Load):
            return np.ones((), dtype=dtypes[x.operand])
        if isinstance(x, Const):
            return x.value
        if isinstance(x, Cast):
            value(x.value)
            return np.ones((), dtype=x.dtype)
        if isinstance(x, Call):
            args = [value(a) for a in x.args]
            if x.op == "where":
                return np.where(*args)
            return getattr(np, _NUMPY_NAMES.get(x.op, x.op))(*args)
        raise TypeError(f"not an expression: {x!r}")
    try:
        with np.errstate(all="ignore"):
            return np.asarray(value(e)).dtype
    except (TypeError, ValueError, AttributeError):
        return None


def _known_dtype(kernel: Kernel, e: Expr) -> str | None:
    """The dtype ``e`` certainly has on the device (loads, casts, and sums and products
    of values of one dtype), else None."""
    if isinstance(e, Load):
        return kernel.inputs[e.operand].dtype
    if isinstance(e, Cast):
        return e.dtype
    if isinstance(e, Call) and e.op in ("mul", "add", "sub"):
        kinds = {_known_dtype(kernel, a) for a in e.args}
        if len(kinds) == 1:
            return kinds.pop()
    return None


def _unflatten(var: str, names: tuple[str, ...], extent: dict[str, int], indent: str
               ) -> list[str]:
    """Lines deriving each index of ``names`` (row-major, last fastest) from ``var``.

    The division and remainder are unsigned: a signed one by a constant costs the sign
    fix-ups of Python's floor semantics, on 64-bit integers the device emulates."""
    live = [n for n in names if extent[n] != 1]
    lines = [f"{indent}{n} = 0" for n in names if extent[n] == 1]
    if not live:
        return lines
    if len(live) == 1:
        return lines + [f"{indent}{live[0]} = {var}"]
    lines.append(f"{indent}rem = uint64({var})")
    for n in reversed(live[1:]):
        lines += [f"{indent}{n} = int64(rem % uint64({extent[n]}))",
                  f"{indent}rem = rem // uint64({extent[n]})"]
    return lines + [f"{indent}{live[0]} = int64(rem)"]


def _strided_loop(var: str, start: str, stop: int | str, step: str, indent: str
                  ) -> tuple[list[str], list[str]]:
    """The head and the tail of ``for var in range(start, stop, step)`` spelled as a
    ``while`` loop (the body goes between them): Numba's ``range`` with a step keeps a
    trip counter besides the index, a few more 64-bit operations per iteration."""
    return ([f"{indent}{var} = {start}", f"{indent}while {var} < {stop}:"],
            [f"{indent}    {var} += {step}"])


def _serial_fold(p: _Printer, loops: tuple[str, ...], indent: str) -> list[str]:
    """``acc = identity`` then the reduction loops folding the body into it."""
    k = p.kernel
    lines = [f"{indent}acc = {p.identity()}"]
    extent = p.extent
    step = p.accumulate("acc", p.expr(k.body))
    if len(loops) > _MAX_NESTED:
        total = 1
        for n in loops:
            total *= extent[n]
        lines.append(f"{indent}for ff in range({total}):")
        lines += _unflatten("ff", loops, extent, indent + "    ")
        return lines + [f"{indent}    {step}"]
    for depth, n in enumerate(loops):
        lines.append(f"{indent}{'    ' * depth}for {n} in range({extent[n]}):")
    return lines + [f"{indent}{'    ' * len(loops)}{step}"]


def _thread_band(p: _Printer, m: ThreadPerOutput) -> str:
    """:class:`ThreadPerOutput` with ``band`` rows per thread (see its docstring)."""
    k, extent = p.kernel, p.extent
    last, rows = m.outputs[-1], m.outputs[:-1]
    n_in, block, band = extent[last], m.launch.block, m.band
    n_rows = math.prod(extent[n] for n in rows)
    runs = -(-n_in // block)
    hoisted: dict[Load, str] = {}

    def once(ld: Load) -> Expr:  # read once per thread: no index of the band
        if set(ld.indices) & set(rows):
            return ld
        return Var(hoisted.setdefault(ld, f"h{len(hoisted)}"))

    # The printer picks cmath over math by the dtypes of the loads it sees: with a
    # complex operand every load stays in place.
    any_complex = any(np.dtype(op.dtype).kind == "c" for op in k.inputs)
    body = k.body if any_complex else map_loads(k.body, once)
    head, tail = _strided_loop("blk", "cuda.blockIdx.x", runs * -(-n_rows // band),
                               "cuda.gridDim.x", "    ")
    ind = "        "
    lines = [f"def {k.name}({', '.join(op.name for op in k.inputs)}, out):",
             "    tid = cuda.threadIdx.x", *head]
    if runs == 1:
        lines += [f"{ind}{last} = tid", f"{ind}ob = blk * {band}"]
    else:
        lines += [f"{ind}{last} = int64(uint64(blk) % uint64({runs})) * {block} + tid",
                  f"{ind}ob = int64(uint64(blk) // uint64({runs})) * {band}"]
    if n_in % block:
        lines.append(f"{ind}if {last} < {n_in}:")
        ind += "    "
    lines += [f"{ind}{name} = {p.expr(ld)}" for ld, name in hoisted.items()]
    lines.append(f"{ind}for rr in range({band}):")
    ind += "    "
    lines.append(f"{ind}oo = ob + rr")
    if n_rows % band:
        lines.append(f"{ind}if oo < {n_rows}:")
        ind += "    "
    lines += _unflatten("oo", rows, extent, ind)
    lines.append(f"{ind}{p.store(p.expr(body), _known_dtype(k, k.body))}")
    return "\n".join(lines + tail) + "\n"


def _thread_per_output(p: _Printer, m: ThreadPerOutput) -> str:
    k, extent = p.kernel, p.extent
    if m.band > 1:
        return _thread_band(p, m)
    total = 1
    for n in m.outputs:
        total *= extent[n]
    head, tail = _strided_loop("tt", "cuda.grid(1)", total, "cuda.gridsize(1)", "    ")
    lines = [f"def {k.name}({', '.join(op.name for op in k.inputs)}, out):", *head]
    lines += _unflatten("tt", m.outputs, extent, "        ")
    if k.reduction_indices:
        lines += _serial_fold(p, m.loops, "        ")
        # ``acc`` keeps the accumulating dtype when an infix fold adds values of that
        # dtype; a wider body or a function fold may widen it: then the store converts.
        exact = k.reduce.op in _FOLD_INFIX and _known_dtype(k, k.body) == k.accumulate
        lines.append(f"        {p.store('acc', k.accumulate if exact else None)}")
    else:
        lines.append(f"        {p.store(p.expr(k.body), _known_dtype(k, k.body))}")
    return "\n".join(lines + tail) + "\n"


def _tree(p: _Printer, threads: int, acc: str, indent: str, lane: str = "tid",
          spacing: int = 1) -> list[str]:
    """Fold each team's ``threads`` values of ``shared`` into its first one (every thread
    runs every barrier; ``lane`` is a thread's place in its team, whose threads lie
    ``spacing`` apart)."""
    lines = [f"{indent}shared[tid] = {acc}", f"{indent}cuda.syncthreads()"]
    width = threads // 2
    while width:
        lines += [f"{indent}if {lane} < {width}:",
                  f"{indent}    {p.accumulate('shared[tid]', f'shared[tid + {width * spacing}]')}",
                  f"{indent}cuda.syncthreads()"]
        width //= 2
    return lines


def _block_per_output(p: _Printer, m: BlockPerOutput) -> str:
    k, extent = p.kernel, p.extent
    n_out = 1
    for n in m.outputs:
        n_out *= extent[n]
    n_red = 1
    for n in m.reduce:
        n_red *= extent[n]
    acc_t = _dtype(k.accumulate)
    ins = ", ".join(op.name for op in k.inputs)
    split = m.split
    if split == 1:
        return _teams(p, m, n_out, n_red)
    # Split: each block folds every (split * threads)-th term into a partial sum ...
    ind = "        "
    if m.interleave:  # a block: rows adjacent outputs, a team of threads rows apart on each
        rows, team = m.rows, m.threads
        groups = -(-n_out // rows)
        blocks, blocks_end = _strided_loop("blk", "cuda.blockIdx.x", groups * split,
                                           "cuda.gridDim.x", "    ")
        lines = [f"def {k.name}_part({ins}, part):",
                 "    tid = cuda.threadIdx.x",
                 f"    lane = tid // {rows}",
                 f"    shared = cuda.shared.array({team * rows}, {acc_t})", *blocks,
                 f"{ind}oo = int64(uint64(blk) // uint64({split})) * {rows} + tid % {rows}",
                 f"{ind}ss = int64(uint64(blk) % uint64({split}))",
                 f"{ind}acc = {p.identity()}"]
        inner = ind + "    " if n_out % rows else ind
        if n_out % rows:  # the last group's spare threads sum nothing (and store nothing)
            lines.append(f"{ind}if oo < {n_out}:")
        lines += _unflatten("oo", m.outputs, extent, inner)
        terms, terms_end = _strided_loop("rr", f"ss * {team} + lane", n_red,
                                         str(team * split), inner)
        lines += terms
        lines += _unflatten("rr", m.reduce, extent, inner + "    ")
        lines.append(f"{inner}    {p.accumulate('acc', p.expr(k.body))}")
        lines += terms_end
        lines += _tree(p, team, "acc", ind, "lane", rows)
        last = f" and oo < {n_out}" if n_out % rows else ""
        lines += [f"{ind}if lane == 0{last}:", f"{ind}    part[oo * {split} + ss] = shared[tid]",
                  f"{ind}cuda.syncthreads()", *blocks_end]
    else:
        blocks, blocks_end = _strided_loop("blk", "cuda.blockIdx.x", n_out * split,
                                           "cuda.gridDim.x", "    ")
        lines = [f"def {k.name}_part({ins}, part):",
                 "    tid = cuda.threadIdx.x",
                 f"    shared = cuda.shared.array({m.threads}, {acc_t})", *blocks,
                 f"{ind}oo = int64(uint64(blk) // uint64({split}))",
                 f"{ind}ss = int64(uint64(blk) % uint64({split}))"]
        lines += _unflatten("oo", m.outputs, extent, ind)
        terms, terms_end = _strided_loop("rr", f"ss * {m.threads} + tid", n_red,
                                         str(m.threads * split), ind)
        lines += [f"{ind}acc = {p.identity()}", *terms]
        lines += _unflatten("rr", m.reduce, extent, ind + "    ")
        lines.append(f"{ind}    {p.accumulate('acc', p.expr(k.body))}")
        lines += terms_end
        lines += _tree(p, m.threads, "acc", ind)
        lines += [f"{ind}if tid == 0:", f"{ind}    part[blk] = shared[0]",
                  f"{ind}cuda.syncthreads()", *blocks_end]
    text = "\n".join(lines) + "\n"
    # ... and a second kernel folds each output's partial sums.
    fin = m.finish
    if fin is None:  # pragma: no cover - a split without its second launch: scheduler bug
        raise TypeError(f"the CUDA schedule of {k.name} splits its reduction without a "
                        "second launch")
    lines = [f"def {k.name}(part, out):",
             "    tid = cuda.threadIdx.x",
             f"    shared = cuda.shared.array({fin.block}, {acc_t})",
             f"    for oo in range(cuda.blockIdx.x, {n_out}, cuda.gridDim.x):"]
    lines += _unflatten("oo", m.outputs, extent, ind)
    lines += [f"{ind}acc = {p.identity()}",
              f"{ind}for ss in range(tid, {split}, {fin.block}):",
              f"{ind}    {p.accumulate('acc', f'part[oo * {split} + ss]')}"]
    lines += _tree(p, fin.block, "acc", ind)
    lines += [f"{ind}if tid == 0:", f"{ind}    {p.store('shared[0]', k.accumulate)}",
              f"{ind}cuda.syncthreads()"]
    return text + "\n\n@cuda.jit(cache=True)\n" + "\n".join(lines) + "\n"


def _teams(p: _Printer, m: BlockPerOutput, n_out: int, n_red: int) -> str:
    """A block of ``m.rows`` teams of ``m.threads`` threads, a team per output: each
    thread folds every ``threads``-th term (a loop with a constant trip count, then the
    remainder), then the team's tree."""
    k, extent = p.kernel, p.extent
    team, rows = m.threads, m.rows
    ins = ", ".join(op.name for op in k.inputs)
    ind = "        "
    blocks, blocks_end = _strided_loop("blk", "cuda.blockIdx.x", -(-n_out // rows),
                                       "cuda.gridDim.x", "    ")
    if m.interleave:  # adjacent threads on adjacent outputs, a team's threads rows apart
        lane, row, spacing = f"tid // {rows}", f"tid % {rows}", rows
    else:
        lane, row, spacing = f"tid % {team}", f"tid // {team}", 1
    lines = [f"def {k.name}({ins}, out):",
             "    tid = cuda.threadIdx.x",
             f"    lane = {lane}" if rows > 1 else "    lane = tid",
             f"    shared = cuda.shared.array({team * rows}, {_dtype(k.accumulate)})",
             *blocks,
             f"{ind}oo = blk * {rows} + {row}" if rows > 1 else f"{ind}oo = blk",
             f"{ind}acc = {p.identity()}"]
    body = [f"{ind}    {p.accumulate('acc', p.expr(k.body))}"]
    lines += _unflatten("oo", m.outputs, extent, ind)
    inner = ind + "    " if n_out % rows else ind
    if n_out % rows:  # the last block's spare teams sum nothing (and store nothing)
        lines.append(f"{ind}if oo < {n_out}:")
    main = n_red - n_red % team
    if main:
        lines += [f"{inner}for r0 in range(0, {main}, {team}):", f"{inner}    rr = r0 + lane"]
        lines += _unflatten("rr", m.reduce, extent, inner + "    ")
        lines += [inner + line[len(ind):] for line in body]
    if n_red % team:
        lines += [f"{inner}if lane < {n_red % team}:", f"{inner}    rr = {main} + lane"]
        lines += _unflatten("rr", m.reduce, extent, inner + "    ")
        lines += [inner + line[len(ind):] for line in body]
    lines += _tree(p, team, "acc", ind, "lane", spacing)
    last = f" and oo < {n_out}" if n_out % rows else ""
    lines += [f"{ind}if lane == 0{last}:", f"{ind}    {p.store('shared[tid]', k.accumulate)}",
              f"{ind}cuda.syncthreads()", *blocks_end]
    return "\n".join(lines) + "\n"


def _group_addr(layout: Layout, op_indices: tuple[str, ...], names: tuple[str, ...]) -> str:
    """The address contribution of the indices ``names`` (those ``op`` has)."""
    stride = dict(zip(op_indices, layout.strides))
    terms = [(n if stride[n] == 1 else f"{n} * {stride[n]}") for n in names
             if n in stride and stride[n] != 0]
    return " + ".join(terms) or "0"


def _tiled_gemm(p: _Printer, g: TiledGemm) -> str:
    k, extent = p.kernel, p.extent
    (la, lb), lo = p.sched.inputs, p.sched.output
    a, b = k.inputs
    out = k.output

    def size(names: tuple[str, ...]) -> int:
        n = 1
        for x in names:
            n *= extent[x]
        return n

    M, N, K, B = size(g.m), size(g.n), size(g.k), size(g.batch)
    tm, tn, tk = g.tile
    rm, rn = g.reg
    ty_n, tx_n = tm // rm, tn // rn  # threads along m and along n
    threads = ty_n * tx_n
    mt, nt = -(-M // tm), -(-N // tn)
    acc_t = _dtype(k.accumulate)
    zero = f"np.{k.accumulate}(0)"
    i8, i12, i16 = " " * 8, " " * 12, " " * 16
    lines = [
        f"def {k.name}(a0, a1, out):",
        "    tid = cuda.threadIdx.x",
        f"    tx = tid % {tx_n}",
        f"    ty = tid // {tx_n}",
        f"    sa = cuda.shared.array(({tk}, {tm + 1}), {acc_t})",
        f"    sb = cuda.shared.array(({tk}, {tn + 1}), {acc_t})",
        f"    cc = cuda.local.array(({rm}, {rn}), {acc_t})",
        f"    ra = cuda.local.array({rm}, {acc_t})",
        f"    rb = cuda.local.array({rn}, {acc_t})",
        f"    for tile in range(cuda.blockIdx.x, {B * mt * nt}, cuda.gridDim.x):",
        f"        tn0 = (tile % {nt}) * {tn}",
        f"        rest = tile // {nt}",
        f"        tm0 = (rest % {mt}) * {tm}",
        "        bt = rest // " + str(mt),
    ]
    lines += _unflatten("bt", g.batch, extent, i8)
    lines += [f"        base_a = {la.offset} + {_group_addr(la, a.indices, g.batch)}",
              f"        base_b = {lb.offset} + {_group_addr(lb, b.indices, g.batch)}",
              f"        base_o = {lo.offset} + {_group_addr(lo, out.indices, g.batch)}",
              f"        for ii in range({rm}):",
              f"            for jj in range({rn}):",
              f"                cc[ii, jj] = {zero}",
              f"        for tk0 in range(0, {K}, {tk}):"]

    def stage(shared: str, src: str, base: str, lay: Layout, op_indices: tuple[str, ...],
              outer: tuple[str, ...], rows: int, fast: str, size_outer: int) -> list[str]:
        # shared[kk, xx] = src[k = tk0 + kk, x = t0 + xx]; ``fast`` is the axis that
        # consecutive threads step along.
        t0 = "tm0" if shared == "sa" else "tn0"
        if fast == "k":
            split = [f"{i16}kk = ee % {tk}", f"{i16}xx = ee // {tk}"]
        else:
            split = [f"{i16}xx = ee % {rows}", f"{i16}kk = ee // {rows}"]
        body = [f"{i12}for ee in range(tid, {tk * rows}, {threads}):", *split,
                f"{i16}gk = tk0 + kk", f"{i16}gx = {t0} + xx",
                f"{i16}if gk < {K} and gx < {size_outer}:"]
        body += _unflatten("gk", g.k, extent, i16 + "    ")
        body += _unflatten("gx", outer, extent, i16 + "    ")
        addr = " + ".join(x for x in (base, _group_addr(lay, op_indices, g.k),
                                      _group_addr(lay, op_indices, outer)) if x != "0")
        body += [f"{i16}    {shared}[kk, xx] = {src}[{_element(addr)}]",
                 f"{i16}else:", f"{i16}    {shared}[kk, xx] = {zero}"]
        return body

    lines += stage("sa", "a0", "base_a", la, a.indices, g.m, tm, g.a_fast, M)
    lines += stage("sb", "a1", "base_b", lb, b.indices, g.n, tn,
                   "k" if g.b_fast == "k" else "x", N)
    lines += [f"{i12}cuda.syncthreads()",
              f"{i12}for kk in range({tk}):",
              f"{i16}for ii in range({rm}):",
              f"{i16}    ra[ii] = sa[kk, ty + ii * {ty_n}]",
              f"{i16}for jj in range({rn}):",
              f"{i16}    rb[jj] = sb[kk, tx + jj * {tx_n}]",
              f"{i16}for ii in range({rm}):",
              f"{i16}    for jj in range({rn}):",
              f"{i16}        cc[ii, jj] += ra[ii] * rb[jj]",
              f"{i12}cuda.syncthreads()",
              f"{i8}for ii in range({rm}):",
              f"{i12}gm = tm0 + ty + ii * {ty_n}",
              f"{i12}for jj in range({rn}):",
              f"{i16}gn = tn0 + tx + jj * {tx_n}",
              f"{i16}if gm < {M} and gn < {N}:"]
    lines += _unflatten("gm", g.m, extent, i16 + "    ")
    lines += _unflatten("gn", g.n, extent, i16 + "    ")
    addr = " + ".join(x for x in ("base_o", _group_addr(lo, out.indices, g.m),
                                  _group_addr(lo, out.indices, g.n)) if x != "0")
    value = "cc[ii, jj]"
    if out.dtype != k.accumulate:
        value = f"({value} != 0)" if out.dtype == "bool" else f"np.{out.dtype}({value})"
    lines.append(f"{i16}    out[{_element(addr)}] = {value}")
    return "\n".join(lines) + "\n"


def _library_gemm(kernel: Kernel, sched: GpuSchedule, g: LibraryGemm) -> str:
    """A plain Python function ``name(xp, a0, a1, out)`` that multiplies strided views of
    the flat arrays with the library adapter ``xp`` (:mod:`einjit.device_arrays`)."""
    extent = kernel.extent

    def view(name: str, indices: tuple[str, ...], layout: Layout, groups: tuple[tuple[str, ...], ...]
             ) -> tuple[str, tuple[int, ...]]:
        stride = dict(zip(indices, layout.strides))
        shape = [extent[b] if b in indices else 1 for b in g.batch]
        strides = [stride.get(b, 0) for b in g.batch]
        for group in groups:
            shape += [extent[x] for x in group]
            strides += [stride[x] for x in group]
        merged = tuple(shape[:len(g.batch)]) + tuple(math.prod(extent[x] for x in group)
                                                      for group in groups)
        return (f"xp.view({name}, {tuple(shape)!r}, {tuple(strides)!r}, {layout.offset})",
                merged)

    (a, b), out = kernel.inputs, kernel.output
    if g.swap:  # out^T[n, m] = sum_k b[k, n] a[m, k]: b's transpose times a's
        va, sa = view(b.name, b.indices, sched.inputs[1], (g.n, g.k))
        vb, sb = view(a.name, a.indices, sched.inputs[0], (g.k, g.m))
    else:
        va, sa = view(a.name, a.indices, sched.inputs[0], (g.m, g.k))
        vb, sb = view(b.name, b.indices, sched.inputs[1], (g.k, g.n))
    rows, cols = (g.n, g.m) if g.swap else (g.m, g.n)
    lines = [f"def {kernel.name}(xp, {a.name}, {b.name}, out):",
             f"    # {g}",
             f"    x = {va}.reshape({sa!r})",
             f"    y = {vb}.reshape({sb!r})"]
    so = dict(zip(out.indices, sched.output.strides))
    batch = tuple(extent[x] for x in g.batch)
    if g.direct:
        shape = batch + (math.prod(extent[x] for x in rows), math.prod(extent[x] for x in cols))
        strides = tuple(so[x] for x in g.batch) + tuple(
            so[group[-1]] if group else 1 for group in (rows, cols))
        lines.append(f"    xp.matmul(x, y, xp.view(out, {shape!r}, {strides!r}, "
                     f"{sched.output.offset}))")
    else:
        vo, _ = view("out", out.indices, sched.output, (g.m, g.n))
        full = batch + tuple(extent[x] for x in g.m + g.n)
        lines.append(f"    xp.copy({vo}, xp.matmul(x, y).reshape({full!r}))")
    return "\n".join(lines) + "\n"


def render_functions(kernel: Kernel, sched: GpuSchedule) -> str:
    """The decorated ``@cuda.jit`` function(s) of one scheduled kernel, after the device
    functions they call (for a :class:`~einjit.schedule_cuda.LibraryGemm`, the Python
    function calling the library)."""
    m = sched.mapping
    if isinstance(m, LibraryGemm):
        return _library_gemm(kernel, sched, m)
    p = _Printer(kernel, sched)
    if isinstance(m, ThreadPerOutput):
        text = _thread_per_output(p, m)
    elif isinstance(m, BlockPerOutput):
        text = _block_per_output(p, m)
    elif isinstance(m, TiledGemm):
        if kernel.reduce.op != "add":  # the scheduler tiles sums of products only
            raise TypeError(f"the CUDA renderer tiles sums of products, not {kernel.reduce}")
        text = _tiled_gemm(p, m)
    else:  # pragma: no cover - an unknown mapping is a scheduler bug
        raise TypeError(f"the CUDA renderer has no template for {type(m).__name__}")
    return p.definitions() + "@cuda.jit(cache=True)\n" + text


def kernel_names(kernel: Kernel, sched: GpuSchedule) -> tuple[str, ...]:
    """The functions the module defines, in launch order."""
    m = sched.mapping
    if isinstance(m, BlockPerOutput) and m.split > 1:
        return (f"{kernel.name}_part", kernel.name)
    return (kernel.name,)


def render_module(kernel: Kernel, sched: GpuSchedule, title: str) -> str:
    """A complete module: a header naming the kernel and schedule, imports, functions."""
    return (f"# Generated by einjit (CUDA): {title}\n"
            f"# {kernel}\n"
            f"# {sched}\n"
            "import cmath\n"
            "import math\n\n"
            "import numba\n"
            "import numpy as np\n"
            "from numba import cuda, int64, uint64\n\n\n"
            + render_functions(kernel, sched))
