"""Shared helpers for the einjit-vs-numpy comparison tests.

Everything here is about building operands and checking an ``einjit.einsum`` result
against ``numpy.einsum``; nothing here computes an einsum in any other way.

Reference rule
--------------
* integer / bool results: exactly equal to ``numpy.einsum`` on the same inputs
  (numpy computes these with wrap-around in the result dtype; so must einjit);
* object results (e.g. ``fractions.Fraction``): exactly equal to ``numpy.einsum``;
* float / complex results: compared with ``numpy.einsum(..., optimize=False)`` run on
  the operands cast to the computation dtype (``dtype=`` if given, else the common type
  of the operands and, with ``out=``, of ``out`` -- as numpy does) and then widened to
  float64 / complex128 (long double stays long double), with
  ``|got - ref| <= atol + rtol * |ref|`` and ``atol = rtol * einsum(|operands|)``;
  rtol is 1e-12 for float64 / complex128 / long double, 1e-5 for float32 / complex64
  and 1e-2 for float16;
* always: the result's shape and dtype equal ``numpy.einsum``'s, and the operands are
  not modified.
"""
from __future__ import annotations

import copy
import warnings
from fractions import Fraction

import numpy as np

import einjit

einsum = einjit.einsum

# --------------------------------------------------------------------------- dtypes

NUMERIC_DTYPES = [
    np.dtype(np.bool_),
    np.dtype(np.int8),
    np.dtype(np.int16),
    np.dtype(np.int32),
    np.dtype(np.int64),
    np.dtype(np.uint8),
    np.dtype(np.uint16),
    np.dtype(np.uint32),
    np.dtype(np.uint64),
    np.dtype(np.float16),
    np.dtype(np.float32),
    np.dtype(np.float64),
    np.dtype(np.complex64),
    np.dtype(np.complex128),
]
OBJECT = np.dtype(object)  # filled with fractions.Fraction
LONGDOUBLE = np.dtype(np.longdouble)
ALL_DTYPES = NUMERIC_DTYPES + [OBJECT, LONGDOUBLE]


def dtype_id(dt) -> str:
    dt = np.dtype(dt)
    if dt == OBJECT:
        return "object-Fraction"
    return dt.name


# ------------------------------------------------------------------------ operands


def random_array(shape, dtype, rng: np.random.Generator) -> np.ndarray:
    """Small random data of ``dtype`` and ``shape`` (C order), never all zeros."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if dtype == np.bool_:
        a = rng.random(shape) < 0.6
    elif dtype.kind == "i":
        a = rng.integers(-3, 4, size=shape).astype(dtype)
    elif dtype.kind == "u":
        a = rng.integers(0, 4, size=shape).astype(dtype)
    elif dtype.kind == "f":
        a = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    elif dtype.kind == "c":
        a = (rng.uniform(-1, 1, size=shape) + 1j * rng.uniform(-1, 1, size=shape)).astype(dtype)
    elif dtype == OBJECT:
        a = np.empty(shape, dtype=object)
        flat = a.reshape(-1)
        for k in range(flat.size):
            flat[k] = Fraction(int(rng.integers(-4, 5)), int(rng.integers(1, 5)))
    else:  # pragma: no cover - helper misuse
        raise TypeError(dtype)
    a = np.array(a, dtype=dtype, order="C")  # (np.ascontiguousarray would make 0-d 1-d)
    if a.size and not np.any(a != 0):
        a.reshape(-1)[0] = Fraction(1, 1) if dtype == OBJECT else 1
    return a


LAYOUTS = [
    "C",
    "F",
    "strided",  # non-contiguous slice x[::2]-style
    "negative",  # negative strides x[::-1]
    "transposed",  # transposed view of a contiguous array
    "broadcast",  # np.broadcast_to: zero strides
    "readonly",  # flags.writeable = False
]


def with_layout(a: np.ndarray, layout: str, rng: np.random.Generator) -> np.ndarray:
    """An array with the same shape as ``a`` in the given memory layout.

    Values equal ``a`` except for 'broadcast', where the first axis of size > 1 is
    replaced by a zero-stride broadcast of one slice of ``a``.
    """
    if layout == "C":
        return np.array(a, order="C")
    if layout == "F":
        return np.array(a, order="F")
    if layout == "strided":
        if a.ndim == 0:
            return a.copy()
        base = np.zeros(tuple(2 * n + 1 for n in a.shape), dtype=a.dtype)
        if a.dtype == OBJECT:
            base[...] = Fraction(99)
        view = base[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "negative":
        if a.ndim == 0:
            return a.copy()
        base = a[(slice(None, None, -1),) * a.ndim].copy()
        return base[(slice(None, None, -1),) * a.ndim]
    if layout == "transposed":
        if a.ndim < 2:
            return a.copy()
        perm = rng.permutation(a.ndim)
        while a.ndim > 1 and np.all(perm == np.arange(a.ndim)):
            perm = rng.permutation(a.ndim)
        inv = np.argsort(perm)
        base = a.transpose(perm).copy()
        return base.transpose(inv)
    if layout == "broadcast":
        axes = [k for k, n in enumerate(a.shape) if n > 1]
        if not axes:
            # shape without extents > 1: a fully zero-stride broadcast of a scalar
            return np.broadcast_to(a.reshape(-1)[:1].reshape(()) if a.size else a, a.shape)
        ax = axes[0]
        small = a[(slice(None),) * ax + (slice(0, 1),)].copy()
        return np.broadcast_to(small, a.shape)
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    raise ValueError(layout)


def make_operands(shapes, dtypes, rng, layouts=None):
    if isinstance(dtypes, (np.dtype, type, str)):
        dtypes = [dtypes] * len(shapes)
    if layouts is None or isinstance(layouts, str):
        layouts = [layouts or "C"] * len(shapes)
    return [
        with_layout(random_array(s, d, rng), lay, rng)
        for s, d, lay in zip(shapes, dtypes, layouts)
    ]


# --------------------------------------------------------------------- comparison


def _is_interleaved(args) -> bool:
    return not isinstance(args[0], str)


def operand_positions(args):
    """Indices in ``args`` that hold operands (both call forms)."""
    if not _is_interleaved(args):
        return list(range(1, len(args)))
    n = len(args) - (len(args) % 2)
    return list(range(0, n, 2))


def map_operands(args, fn):
    args = list(args)
    for k in operand_positions(args):
        args[k] = fn(args[k])
    return tuple(args)


def describe_args(args) -> str:
    parts = []
    pos = set(operand_positions(args))
    for k, x in enumerate(args):
        if k in pos:
            if isinstance(x, np.ndarray):
                parts.append(
                    f"array(shape={x.shape}, dtype={x.dtype}, strides={x.strides}, "
                    f"C={x.flags.c_contiguous}, F={x.flags.f_contiguous}, "
                    f"writeable={x.flags.writeable})"
                )
            else:
                parts.append(f"{type(x).__name__}({x!r})")
        else:
            parts.append(repr(x))
    return ", ".join(parts)


def _snapshot(x):
    if isinstance(x, np.ndarray):
        return x.copy()
    return copy.deepcopy(x)


def _same_values(a, b) -> bool:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype == OBJECT or b.dtype == OBJECT:
        return all(x == y for x, y in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist()))
    return bool(np.array_equal(a, b))


def _float_rtol(dtype) -> float:
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return 1e-2
    if dtype in (np.dtype(np.float32), np.dtype(np.complex64)):
        return 1e-5
    return 1e-12


def _wide(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        return np.dtype(np.clongdouble) if dtype == np.clongdouble else np.dtype(np.complex128)
    return np.dtype(np.longdouble) if dtype == LONGDOUBLE else np.dtype(np.float64)


def _ref_kwargs(kwargs):
    kw = {k: v for k, v in kwargs.items() if k not in ("out", "optimize")}
    kw["optimize"] = False
    return kw


def check_einsum(*args, _fn=None, **kwargs):
    """Call einjit.einsum(*args, **kwargs) and compare it with numpy.einsum.

    Returns the einjit result.  ``out=`` in kwargs is handled: the result must be
    ``out`` itself and numpy gets a fresh array of the same dtype / shape.
    """
    fn = einsum if _fn is None else _fn
    what = f"einsum({describe_args(args)}, **{ {k: v for k, v in kwargs.items() if k != 'out'} })"

    ref_kw = _ref_kwargs(kwargs)
    out = kwargs.get("out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        if out is not None:
            np_out = np.zeros(out.shape, dtype=out.dtype)
            expected_raw = np.einsum(*args, out=np_out, **ref_kw)
        else:
            expected_raw = np.einsum(*args, **ref_kw)
    expected = _as_array(expected_raw)

    before = [_snapshot(args[k]) for k in operand_positions(args)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        result = fn(*args, **kwargs)
    for k, old in zip(operand_positions(args), before):
        assert _same_values(args[k], old), f"{what}: operand {k} was modified"

    # numpy returns a numpy scalar or a 0-d array for 0-d results (depending on
    # `optimize`), and the bare Python object for a 0-d object-dtype result
    allowed = (np.ndarray, np.generic)
    if expected.dtype == OBJECT:
        allowed += (type(expected_raw),)
    assert isinstance(result, allowed), (
        f"{what}: returned {type(result).__name__}, numpy returns {type(expected_raw).__name__}"
    )
    if out is not None:
        assert result is out, f"{what}: with out= the result must be the out array itself"
    got = _as_array(result, object if expected.dtype == OBJECT else None)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != numpy {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != numpy {expected.dtype}"

    assert_values_match(got, expected, args, kwargs, what)
    return result


def _as_array(x, dtype=None):
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    a = np.empty((), dtype=object if dtype is None else dtype)
    a[()] = x
    return a


def assert_values_match(got, expected, args, kwargs, what):
    dt = expected.dtype
    if dt.kind in "biu" or dt == OBJECT:
        if not _same_values(got, expected):
            bad = _first_mismatch(got, expected)
            raise AssertionError(
                f"{what}: values differ from numpy (exact comparison, dtype {dt}); "
                f"first mismatch at {bad}: got {got[bad]!r}, numpy {expected[bad]!r}\n"
                f"got={got!r}\nnumpy={expected!r}"
            )
        return
    assert dt.kind in "fc", dt

    # float / complex: numpy on operands cast like numpy casts them, then widened
    ref_kw = _ref_kwargs(kwargs)
    ref_kw.pop("dtype", None)
    ref_kw.pop("casting", None)
    ref_kw.pop("order", None)
    calc = np.dtype(kwargs["dtype"]) if kwargs.get("dtype") is not None else None
    if calc is None:
        # the computation dtype numpy uses: the common type of the operands
        # (with out=, numpy includes the out dtype: bool operands into an int out are
        # summed as integers, float32 operands into a float64 out are computed in float64)
        arrays = [np.asarray(args[k]) for k in operand_positions(args)]
        if kwargs.get("out") is not None:
            arrays.append(np.empty((), dtype=kwargs["out"].dtype))
        calc = np.result_type(*arrays)
        if calc.kind not in "fc":
            calc = dt
    wide = _wide(calc if calc.kind in "fc" else dt)
    if wide.kind != "c" and dt.kind == "c":
        wide = np.dtype(np.complex128)

    def cast(x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            return np.asarray(x).astype(calc, casting="unsafe").astype(wide)

    ref_args = map_operands(args, cast)
    abs_args = map_operands(ref_args, np.abs)
    ref = np.asarray(np.einsum(*ref_args, **ref_kw))
    if dt.kind != "c" and ref.dtype.kind == "c":
        ref = ref.real  # complex computation stored into a real output keeps the real part
    mag = np.asarray(np.einsum(*abs_args, **ref_kw))
    # a result stored into a narrower float type than the computation is rounded there
    rtol = max(_float_rtol(dt), _float_rtol(calc))
    atol = rtol * mag
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got.astype(wide) - ref)
        ok = diff <= atol + rtol * np.abs(ref)
    if not np.all(ok):
        bad = tuple(int(i) for i in np.argwhere(~ok)[0]) if ok.ndim else ()
        raise AssertionError(
            f"{what}: values differ from the reference (rtol={rtol}); first mismatch at "
            f"{bad}: got {got[bad]!r}, reference {ref[bad]!r}, allowed {atol[bad] + rtol * abs(ref[bad])!r}"
            f"\ngot={got!r}\nreference={ref!r}"
        )


def _first_mismatch(got, expected):
    if got.ndim == 0:
        return ()
    g = got.reshape(-1).tolist()
    e = expected.reshape(-1).tolist()
    for k, (x, y) in enumerate(zip(g, e)):
        if not (x == y):
            return tuple(int(i) for i in np.unravel_index(k, got.shape))
    return (0,) * got.ndim


def check_raises_like_numpy(*args, **kwargs):
    """numpy.einsum raises here; einjit.einsum must raise the same exception type."""
    try:
        np.einsum(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        np_exc = type(e)
    else:
        raise AssertionError("test set-up: numpy.einsum did not raise")
    try:
        einsum(*args, **kwargs)
    except np_exc:
        return
    except Exception as e:  # noqa: BLE001
        raise AssertionError(
            f"einsum({describe_args(args)}) raised {type(e).__name__}: {e}; numpy raises {np_exc.__name__}"
        ) from e
    raise AssertionError(f"einsum({describe_args(args)}) did not raise; numpy raises {np_exc.__name__}")


# ------------------------------------------------------------------- sublist form


def label_to_int(c: str) -> int:
    """numpy's sublist convention: 0-25 are 'A'-'Z', 26-51 are 'a'-'z'."""
    if "A" <= c <= "Z":
        return ord(c) - ord("A")
    if "a" <= c <= "z":
        return ord(c) - ord("a") + 26
    raise ValueError(c)


def term_to_sublist(term: str):
    out = []
    term = term.replace(" ", "")
    k = 0
    while k < len(term):
        if term.startswith("...", k):
            out.append(Ellipsis)
            k += 3
        else:
            out.append(label_to_int(term[k]))
            k += 1
    return out


def to_interleaved(subscripts: str, operands):
    """('ij,jk->ik', [a, b]) -> (a, [..], b, [..], [..]) (no output sublist if implicit)."""
    s = subscripts.replace(" ", "")
    lhs, arrow, rhs = s.partition("->")
    terms = lhs.split(",")
    assert len(terms) == len(operands)
    args = []
    for op, t in zip(operands, terms):
        args += [op, term_to_sublist(t)]
    if arrow:
        args.append(term_to_sublist(rhs))
    return tuple(args)


# ---- bodies and reductions (einjit.compile(..., reduce=...))

def _stable_logsumexp(v, axes):
    if not axes:
        return v
    m = np.max(v, axis=axes, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(np.sum(np.exp(v - m), axis=axes, keepdims=True)) + m, axes)


def fold_reference(eq, ops, fn, reduce):
    """numpy broadcast-then-reduce in float64 (labels distinct within each operand)."""
    inputs, output = eq.split("->")
    terms = inputs.split(",")
    labels = list(dict.fromkeys("".join(terms)))
    views = []
    for t, op in zip(terms, ops):
        a = np.asarray(op, dtype=np.float64)
        shape = [a.shape[t.index(lb)] if lb in t else 1 for lb in labels]
        views.append(np.transpose(a, [t.index(lb) for lb in labels if lb in t]).reshape(shape))
    if fn is None:
        v = views[0]
        for w in views[1:]:
            v = v * w
    else:
        v = np.vectorize(fn, otypes=[np.float64])(*views)
    full = np.broadcast_shapes(*[w.shape for w in views])
    v = np.broadcast_to(v, full).astype(np.float64)
    axes = tuple(k for k, lb in enumerate(labels) if lb not in output)
    if reduce == "logsumexp":
        r = _stable_logsumexp(v, axes)
    elif reduce in ("any", "all"):
        r = getattr(np, reduce)(v != 0, axis=axes)
    else:
        r = getattr(np, reduce)(v, axis=axes)
    kept = [lb for lb in labels if lb in output]
    return np.transpose(r, [kept.index(lb) for lb in output])
