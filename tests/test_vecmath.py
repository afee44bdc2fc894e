"""einjit.codegen.vecmath: the vectorisable exp of CPU kernels, against numpy's."""

import numpy as np
import pytest
import numba
from numba import njit

from einjit.codegen import vecmath


@njit
def _exp_all(x, out):
    for i in range(x.size):
        out[i] = vecmath.exp(x[i])


@njit
def _flush_all(x, out):
    for i in range(x.size):
        out[i] = vecmath.exp_flush(x[i])


@njit
def _sum(x):
    acc = 0.0
    for i in range(x.size):
        acc = vecmath.radd(acc, x[i])
    return acc


SPECIAL = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 709.78, 709.79, 710.0, -708.0,
                    -708.5, -740.0, -745.13, -745.14, -746.0, 1e-300, -1e-300, 1e300, -1e300])


def _ulps(got, want):
    ok = np.isfinite(want) & (want != 0)
    return np.abs(got[ok] - want[ok]) / np.spacing(np.abs(want[ok]))


def test_exp_float64_within_one_ulp_everywhere():
    x = np.concatenate([np.linspace(-800, 800, 400_001),
                        np.random.default_rng(0).standard_normal(100_000), SPECIAL])
    got = np.empty_like(x)
    _exp_all(x, got)
    with np.errstate(over="ignore"):
        want = np.exp(x)
    normal = want >= np.finfo(np.float64).tiny
    assert _ulps(got[normal], want[normal]).max() <= 1
    sub = (want > 0) & ~normal  # subnormal results: within one unit of the last place
    assert np.all(np.abs(got[sub] - want[sub]) <= np.spacing(0.0))
    special = ~np.isfinite(want) | (want == 0)
    np.testing.assert_array_equal(got[special], want[special])


def test_exp_float32_is_float64_rounded_once():
    x = np.linspace(-110, 95, 200_001).astype(np.float32)
    got = np.empty_like(x)
    _exp_all(x, got)
    with np.errstate(over="ignore"):
        want = np.exp(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32


def test_exp_flush_zero_below_minus_708_else_exp():
    x = np.concatenate([np.linspace(-760, 710, 100_001), SPECIAL])
    got = np.empty_like(x)
    _flush_all(x, got)
    with np.errstate(over="ignore"):
        want = np.where(x < -708, 0.0, np.exp(x))
    assert _ulps(got, want).max() <= 1
    special = ~np.isfinite(want) | (want == 0)
    np.testing.assert_array_equal(got[special], want[special])
    assert vecmath.exp_flush(-709.0) == 0.0 and vecmath.exp_flush(1.0) == np.exp(1.0)


@pytest.mark.parametrize("dtype", [np.complex128, np.int64])
def test_exp_other_types_are_numpy_exp(dtype):
    x = np.arange(-3, 4).astype(dtype)
    got = np.empty(x.shape, np.result_type(dtype, np.float64))
    _exp_all(x, got)
    np.testing.assert_allclose(got, np.exp(x), rtol=1e-15)


def test_radd_sums_reassociated_but_exactly_on_integers_in_float():
    x = np.arange(10_000, dtype=np.float64)
    assert _sum(x) == x.sum()
    y = np.random.default_rng(2).standard_normal(10_001)
    assert abs(_sum(y) - np.sum(y)) <= 1e-12 * np.abs(y).sum()


@njit
def _sum_into(x, acc):
    for i in range(x.size):
        acc = vecmath.radd(acc, x[i])
    return acc


def test_radd_widens_mixed_floats_and_adds_complex():
    x32 = np.arange(5, dtype=np.float32)
    assert _sum_into(x32, np.float64(0.5)) == 10.5
    assert isinstance(_sum_into(x32, np.float32(0)), float)  # boxed float32 -> float
    z = np.array([1 + 2j, 3 - 1j])
    assert _sum_into(z, 0j) == 4 + 1j


@njit
def _dot(x, y, acc):
    for i in range(x.size):
        acc = vecmath.rmuladd(x[i], y[i], acc)
    return acc


@njit
def _dot_in_order(x, y, acc):
    for i in range(x.size):
        acc = vecmath.muladd(x[i], y[i], acc)
    return acc


@pytest.mark.parametrize("dot", [_dot, _dot_in_order])
def test_muladds_are_a_product_added_with_at_most_one_rounding_each(dot):
    # 1 + 2**-30 squared: the fused result keeps the 2**-60 term, the unfused loses it;
    # either is right (LLVM fuses where the CPU has an FMA)
    t = 1 + 2.0 ** -30
    got = dot(np.array([t]), np.array([t]), -1.0)
    assert got in (2.0 ** -29 + 2.0 ** -60, 2.0 ** -29)
    x = np.random.default_rng(3).standard_normal(10_001)
    y = np.random.default_rng(4).standard_normal(10_001)
    assert abs(dot(x, y, 0.0) - float(np.dot(x, y))) <= 1e-12 * float(np.abs(x * y).sum())
    # float32 operands into a float64 accumulator: widened before the product
    x32 = np.full(3, 2 ** 12 + 1, dtype=np.float32)
    assert dot(x32, x32, np.float64(0)) == 3 * (2 ** 12 + 1) ** 2


def test_muladd_adds_in_order():
    # 1e16 + 1 + 1 ... in order stays 1e16 (each 1 is lost); any other order may not
    x = np.ones(1000)
    x[0] = 1e16
    assert _dot_in_order(x, np.ones(1000), 0.0) == 1e16


@pytest.mark.parametrize("dot", [_dot, _dot_in_order])
def test_muladds_reject_complex(dot):
    with pytest.raises(numba.TypingError):
        dot(np.ones(2, complex), np.ones(2, complex), 0j)


@njit
def _extrema(x, acc_max, acc_min):
    for i in range(x.size):
        acc_max = vecmath.fmax(acc_max, x[i])
        acc_min = vecmath.fmin(acc_min, x[i])
    return acc_max, acc_min


def test_fmax_fmin_are_numpy_maximum_minimum_with_nan():
    x = np.random.default_rng(5).standard_normal(1001)
    assert _extrema(x, -np.inf, np.inf) == (x.max(), x.min())
    x[500] = np.nan
    assert all(np.isnan(v) for v in _extrema(x, -np.inf, np.inf))
    assert _extrema(np.arange(7), -5, 5) == (6, 0)  # integers: numpy's own maximum
    assert _extrema(np.float32([1.5, -2.5]), np.float64(0), np.float64(0)) == (1.5, -2.5)


@njit
def _bits_round_trip(x32, x64):
    return (vecmath.float_bits(x32), vecmath.as_float(vecmath.float_bits(x32)),
            vecmath.float_bits(x64), vecmath.as_float(vecmath.float_bits(x64)),
            vecmath.as_float(np.int32(0x3F800000)), vecmath.as_float(np.int64(-1 << 63)))


def test_bit_casts_keep_every_bit():
    # the float of an integer's bits and back, at each width (sign, NaN payloads kept)
    x32 = np.float32(-1.5)
    x64 = np.frombuffer(np.uint64(0x7FF0000000000123).tobytes(), np.float64)[0]  # a NaN
    b32, y32, b64, y64, one, minus_zero = _bits_round_trip(x32, x64)
    assert b32 == np.frombuffer(x32.tobytes(), np.uint32)[0] and y32 == x32
    assert b64 == 0x7FF0000000000123 and np.isnan(y64)
    assert np.frombuffer(np.float64(y64).tobytes(), np.uint64)[0] == 0x7FF0000000000123
    assert one == np.float32(1.0) and isinstance(one, float)
    assert minus_zero == 0.0 and np.signbit(minus_zero)
