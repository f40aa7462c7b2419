"""The summary's p50/p99 (llmsim.simulate._p50_p99, selected without np.percentile's
multi-kth partition) are np.percentile(x, [50, 99]) bit for bit, ties, infinities and NaN
included."""

import numpy as np
import pytest

from llmsim.simulate import _p50_p99


def _same(x):
    ref = np.percentile(x, [50, 99])
    xc = x.copy()
    got = _p50_p99(x)
    assert np.array_equal(x, xc, equal_nan=True), "x was modified"
    assert [float(v).hex() for v in ref] == [float(v).hex() for v in got], (len(x), ref, got)


@pytest.mark.parametrize("n", list(range(1, 40)) + [100, 4095, 4096, 4097, 10_000, 99_831, 250_001])
def test_random_values(n):
    rng = np.random.default_rng(n)
    _same(rng.random(n))
    _same(rng.exponential(size=n) * 3.7)
    _same(np.sort(rng.random(n)))
    _same(np.full(n, 2.5))


@pytest.mark.parametrize("n", [5000, 10_000, 99_831, 300_007])
def test_long_runs_of_equal_values(n):
    rng = np.random.default_rng(n)
    _same(np.where(rng.random(n) < 0.92, 0.02, rng.random(n)))            # tbt: one token per iteration
    _same(np.where(rng.random(n) < 0.5, 0.02, rng.random(n) * 0.01))       # the run at the top
    _same(rng.integers(0, 3, n) * 0.5)                                     # three values
    _same(np.where(rng.random(n) < 0.995, 1.0, 2.0))                       # p99 inside the run
    _same(np.where(rng.random(n) < 0.2, 7.0, np.where(rng.random(n) < 0.2, 9.0, rng.random(n) * 20)))
    _same(np.round(rng.exponential(size=n), 1))


def test_infinities_and_nan():
    rng = np.random.default_rng(0)
    for n in (3, 1000, 50_000):
        x = rng.random(n)
        x[::7] = np.inf
        with np.errstate(invalid="ignore"):  # inf - inf, in numpy's interpolation as here
            _same(x)
        y = rng.random(n)
        y[n // 2] = np.nan
        with np.errstate(invalid="ignore"):
            assert np.isnan(_p50_p99(y)).all() and np.isnan(np.percentile(y, [50, 99])).all()


# ---- the radix selection behind the percentiles of a long run (llmsim/_order.py), on its own:
# each case reaches one of its paths; the ranks are every order statistic the summary asks for
# and the ends

from llmsim._order import order_stats  # noqa: E402


def _ranks(n):
    k50, k99 = (int(k) for k in np.floor((n - 1) * np.array([0.5, 0.99])))
    return np.array(sorted({min(k, n - 1) for k in (0, k50, k50 + 1, k99, k99 + 1, n - 1)}), dtype=np.int64)


def _same_order(x):
    ks = _ranks(len(x))
    xc = x.copy()
    got = order_stats(x, ks, np.empty(len(ks)))
    assert np.array_equal(x, xc), "x was modified"
    want = np.sort(x)[ks]
    assert [v.hex() for v in map(float, got)] == [v.hex() for v in map(float, want)], (got, want)


N = 200_003
_rng = np.random.default_rng(12)
ULP = np.spacing(0.02)


@pytest.mark.parametrize("x", [
    _rng.random(N),                                            # few per first-level bin: narrowed, then sorted
    _rng.exponential(size=N) * 1e-3,                           # many binades
    _rng.normal(size=N),                                       # negative and positive
    _rng.integers(0, 3, N) * 0.5,                              # a third per bin, each one value
    0.02 + _rng.integers(0, 3, N) * ULP,                       # one first-level bin: every digit down to the last
    0.02 + _rng.integers(0, 40_000, N) * ULP,                  # one first-level bin, the last digits differ
    np.full(N, 2.5),                                           # every bit alike
    np.where(_rng.random(N) < 0.9, 0.02, _rng.random(N)),      # most in one bin, the p99 elsewhere
    np.concatenate([[-np.inf, np.inf, -0.0, 0.0], _rng.normal(size=N)]),
    np.concatenate([np.full(N // 2, -1.0), _rng.random(N // 2) * 1e300]),
], ids=["uniform", "exponential", "normal", "three-values", "ulps", "ulps-wide", "constant",
        "tbt-like", "infinities", "huge"])
def test_radix_selection_is_the_sorted_arrays_order_statistics(x):
    _same_order(x)


def test_radix_selection_of_short_and_single_value_arrays():
    for n in (1, 2, 3, 7, 1025):
        _same_order(np.random.default_rng(n).random(n))
    _same_order(np.array([5.0]))
