"""float16 operands and results: einjit's own conversions (einjit.float16) and the
einsums that use them, against numpy."""

import warnings

import numpy as np
import pytest

import einjit
from einjit.float16 import KERNEL_FROM, narrow, widen
from _reference import check_einsum


def _layouts(a):
    """``a`` and views of it in other memory orders: transposed, reversed, sliced."""
    return [a, a.T, a[::-1], a[:, ::3], a[1:, 2:], np.asfortranarray(a)]


def test_widen_is_exact_for_every_float16():
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    wide = widen(halves)
    assert wide.dtype == np.float32
    assert wide.view(np.uint32).tobytes() == halves.astype(np.float32).view(np.uint32).tobytes()


def test_narrow_rounds_as_numpy_rounds():
    """Every rounding case: random bit patterns (NaNs, subnormals, overflow included),
    values around each tie and the subnormal boundary, both signs."""
    rng = np.random.default_rng(0)
    rand = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    steps = np.arange(1 << 19, dtype=np.uint32) << 13  # every float16 value's float32 bits
    ties = np.concatenate([steps, steps | 0xFFF, steps | 0x1000, steps | 0x1001])
    low = np.arange(0x33000000 - 8192, 0x38800000 + 8192, 97, dtype=np.uint32)
    bits = np.concatenate([rand, ties, low])
    values = np.concatenate([bits, bits | np.uint32(1 << 31)]).view(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = values.astype(np.float16)
    got = narrow(values)
    assert got.dtype == np.float16
    assert got.view(np.uint16).tobytes() == expected.view(np.uint16).tobytes()


@pytest.mark.parametrize("convert, dtype", [(widen, np.float16), (narrow, np.float32)])
def test_conversions_keep_astypes_layout(convert, dtype):
    a = np.random.default_rng(1).standard_normal((300, 200)).astype(dtype)
    for view in _layouts(a) + [np.broadcast_to(a[0], (60, 200)), a[:1]]:
        got = convert(view)
        expected = view.astype(np.float32 if dtype == np.float16 else np.float16)
        assert got.tobytes("A") == expected.tobytes("A")
        assert got.strides == expected.strides and got.shape == expected.shape


def test_conversions_reject_other_dtypes():
    with pytest.raises(TypeError, match="float16"):
        widen(np.ones(3))
    with pytest.raises(TypeError, match="float32"):
        narrow(np.ones(3))


@pytest.mark.parametrize(("eq", "shapes"), [
    ("ij,ij->i", [(300, 64), (300, 64)]),
    ("ij,ij->ij", [(300, 64), (300, 64)]),  # a float16 result of 19200 values
    ("ij,jk->ik", [(128, 96), (96, 160)]),   # BLAS on the widened operands
    ("i,j->ij", [(200,), (300,)]),
    ("ij->", [(4000, 5)]),
    ("bij,bjk->bik", [(8, 40, 30), (8, 30, 50)]),
])
def test_float16_einsums_match_numpy(eq, shapes):
    rng = np.random.default_rng(2)
    ops = [rng.uniform(-2, 2, s).astype(np.float16) for s in shapes]
    assert sum(a.size for a in ops) >= KERNEL_FROM or eq == "i,j->ij"
    for layout in range(3):
        views = [a if layout == 0 else a.T.copy().T if layout == 1 else a[..., ::-1]
                 for a in ops]
        check_einsum(eq, *views)
        check_einsum(eq, *views)  # again: through the call's launcher
    out = np.empty(np.einsum(eq, *ops).shape, np.float16)
    check_einsum(eq, *ops, out=out)
    check_einsum(eq, *ops, out=out)


def test_a_float16_result_of_float32_operands():
    # (no product near float16's subnormals, which the reference's rtol cannot judge)
    a = np.random.default_rng(3).uniform(0.5, 2, (400, 60)).astype(np.float32)
    check_einsum("ij,ij->ij", a, a, dtype=np.float16, casting="same_kind")
    check_einsum("ij,ij->ij", a, a, dtype=np.float16, casting="same_kind")


def test_float16_overflow_gives_inf_without_warnings_as_numpy():
    a = np.full(20000, 300, np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = einjit.einsum("i,i->i", a, a)
        expected = np.einsum("i,i->i", a, a)
    assert got.dtype == np.float16 and np.array_equal(got, expected)
    assert np.isinf(got).all()


def test_operands_are_rounded_to_float16_first_as_numpy_rounds_them():
    """``dtype=float16``: numpy casts each operand to float16, then multiplies; 1 + 2^-11
    rounds to 1.0 there, and its square would round to 1 + 2^-10."""
    a = np.full(10000, 1 + 2.0 ** -11, np.float32)
    expected = np.einsum("i,i->i", a, a, dtype=np.float16, casting="same_kind")
    got = einjit.einsum("i,i->i", a, a, dtype=np.float16, casting="same_kind")
    assert got.dtype == np.float16 and np.array_equal(got, expected)
    assert (got == 1).all()
    doubles = a.astype(np.float64)
    assert np.array_equal(einjit.einsum("i,i->i", doubles, doubles, dtype=np.float16,
                                        casting="same_kind"), expected)
