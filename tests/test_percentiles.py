"""The summary's p50/p99 (llmsim.simulate._p50_p99, selected without np.percentile's
multi-kth partition) are np.percentile(x, [50, 99]) bit for bit, ties, infinities and NaN
included."""

import numpy as np
import pytest

from llmsim import _order
from llmsim.simulate import _p50_p99


@pytest.fixture(params=["radix", "partitions"], autouse=True)
def selection(request, monkeypatch):
    """Every test twice: with the compiled radix selection, and with numpy's partitions (what
    the dashboard's server uses until its compile process has written the radix one)."""
    if request.param == "partitions":
        monkeypatch.setattr(_order, "ready", lambda: False)
        monkeypatch.setattr(_order, "order_stats", None)  # never called then
    return request.param


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

