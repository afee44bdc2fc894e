"""Property tests: random valid einsum calls, einjit.einsum against numpy.einsum.

The strategy draws 1-4 operands, random labels (upper and lower case, repeated within
an operand and across operands), explicit or implicit output, optional ellipsis with
per-operand broadcast dimensions, extents 0..4 with size-1 broadcasting, a dtype and a
memory layout per operand, and the call form (subscripts string or sublists).  The
comparison rule is the one in ``_reference.py``.

``max_examples`` comes from the profile registered in ``conftest.py``.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from _reference import (  # noqa: E402
    ALL_DTYPES,
    LAYOUTS,
    check_einsum,
    dtype_id,
    random_array,
    to_interleaved,
    with_layout,
)


@dataclass
class Call:
    subscripts: str
    shapes: list
    dtypes: list
    layouts: list
    seed: int

    def operands(self):
        rng = np.random.default_rng(self.seed)
        return [
            with_layout(random_array(s, d, rng), lay, rng)
            for s, d, lay in zip(self.shapes, self.dtypes, self.layouts)
        ]

    def __repr__(self):
        return (
            f"Call({self.subscripts!r}, shapes={self.shapes}, "
            f"dtypes={[dtype_id(d) for d in self.dtypes]}, layouts={self.layouts}, seed={self.seed})"
        )


# dtypes mixed between operands: a smaller set, so promotion stays well-defined and cheap
_MIXABLE = [np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int32, np.int64, np.float32, np.float64, np.complex64)]


@st.composite
def einsum_calls(draw, max_operands=4):
    n_ops = draw(st.integers(1, max_operands))
    labels = draw(st.lists(st.sampled_from(string.ascii_letters), min_size=1, max_size=5, unique=True))
    extent = {lab: draw(st.integers(0, 4)) for lab in labels}

    use_ellipsis = draw(st.booleans())
    ell_shape = draw(st.lists(st.integers(0, 3), max_size=2)) if use_ellipsis else []

    terms, shapes = [], []
    any_ellipsis = False
    for _ in range(n_ops):
        ndim = draw(st.integers(0, 4)) if labels else 0
        term = [draw(st.sampled_from(labels)) for _ in range(ndim)]  # repeats allowed
        # size-1 broadcasting: per (operand, label), so a repeated label stays square
        size = {}
        for lab in set(term):
            size[lab] = 1 if (extent[lab] != 1 and draw(st.integers(0, 5)) == 0) else extent[lab]
        shape = [size[lab] for lab in term]
        if use_ellipsis and draw(st.booleans()):
            any_ellipsis = True
            k = draw(st.integers(0, len(ell_shape)))  # operands may carry fewer broadcast dims
            dims = [1 if draw(st.integers(0, 4)) == 0 else d for d in ell_shape[len(ell_shape) - k :]]
            pos = draw(st.integers(0, len(term)))
            term.insert(pos, "...")
            shape[pos:pos] = dims
        terms.append("".join(term))
        shapes.append(tuple(shape))

    subscripts = ",".join(terms)
    if draw(st.booleans()):  # explicit output
        used = sorted({c for t in terms for c in t if c != "."})
        out = draw(st.permutations(used))
        out = list(out[: draw(st.integers(0, len(used)))])
        if any_ellipsis:
            out.insert(draw(st.integers(0, len(out))), "...")
        subscripts += "->" + "".join(out)

    if draw(st.integers(0, 4)) == 0:
        dtypes = [draw(st.sampled_from(_MIXABLE)) for _ in range(n_ops)]
    else:
        dtypes = [draw(st.sampled_from(ALL_DTYPES))] * n_ops
    layouts = [draw(st.sampled_from(LAYOUTS)) for _ in range(n_ops)]
    seed = draw(st.integers(0, 2**32 - 1))
    return Call(subscripts, shapes, dtypes, layouts, seed)


@given(
    call=einsum_calls(),
    optimize=st.sampled_from([False, True, "greedy", "optimal"]),
    order=st.sampled_from(["K", "C", "F", "A"]),
)
def test_random_einsum(call, optimize, order):
    ops = call.operands()
    result = check_einsum(call.subscripts, *ops, optimize=optimize, order=order)
    if order in "CF":
        expected = np.asarray(np.einsum(call.subscripts, *ops, order=order))
        got = np.asarray(result)
        # numpy honours the order except where it returns a view of an input;
        # where numpy's result has the requested layout, so must einjit's
        if order == "C" and expected.flags.c_contiguous:
            assert got.flags.c_contiguous, f"order='C' result strides {got.strides}"
        if order == "F" and expected.flags.f_contiguous:
            assert got.flags.f_contiguous, f"order='F' result strides {got.strides}"


@given(call=einsum_calls())
def test_random_einsum_sublist_form(call):
    ops = call.operands()
    check_einsum(*to_interleaved(call.subscripts, ops))


@given(
    call=einsum_calls(max_operands=3),
    out_layout=st.sampled_from(["C", "F", "strided", "negative"]),
)
def test_random_einsum_out(call, out_layout):
    ops = call.operands()
    shape = np.shape(np.einsum(call.subscripts, *ops))
    # numpy's result dtype (a 0-d object result comes back as a bare Python object)
    dtype = np.result_type(*ops)
    fill = 3  # garbage: einsum must overwrite, not accumulate into, out
    rng = np.random.default_rng(call.seed + 1)
    out = with_layout(np.full(shape, fill, dtype=dtype), out_layout, rng)
    result = check_einsum(call.subscripts, *ops, out=out)
    assert result is out
