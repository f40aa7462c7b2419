"""Issue 10: vLLM's knobs (max_running_requests, block_size, watermark), the length laws
the paper uses (poisson, zipf, bounded Pareto), and the context-aware batch time."""

import numpy as np
import pytest

from llmsim import loads_scenario
from llmsim.errors import ConfigError
from llmsim.workload import BoundedPareto, PoissonLength, Zipf, length_dist


# ------------------------------------------------------------------ length laws


@pytest.mark.parametrize("dist", [PoissonLength(32.0), PoissonLength(512.0), PoissonLength(1.0),
                                  Zipf(1.2, 4096), Zipf(3.5, 100),
                                  BoundedPareto(1.5, 16, 8192), BoundedPareto(0.8, 1, 2000)])
def test_length_law_moments_match_samples(dist):
    x = dist.sample(np.random.default_rng(3), 400_000)
    assert x.min() >= 1
    if np.isfinite(dist.max_value):
        assert x.max() <= dist.max_value
    # heavy tails (zipf, Pareto): sample moments themselves vary by per cents
    heavy = isinstance(dist, (Zipf, BoundedPareto))
    assert x.mean() == pytest.approx(dist.mean, rel=0.03 if heavy else 0.01)
    assert x.var() == pytest.approx(dist.var, rel=0.12 if heavy else 0.03)


def test_poisson_length_is_the_papers_law():
    d = PoissonLength(32.0)
    assert d.mean == pytest.approx(32.0, abs=1e-9)  # P(0) = e^-32: the floor is invisible
    assert d.var == pytest.approx(32.0, rel=1e-6)
    assert d.quantile(1 - 1e-12) < 80
    # P(X = 0) = e^-1 for mean 1: the floor at 1 lifts the mean to 1 + e^-1
    assert PoissonLength(1.0).mean == pytest.approx(1 + np.exp(-1))


def test_zipf_pmf_by_hand():
    d = Zipf(1.0, 3)  # P(k) = (1/k) / (1 + 1/2 + 1/3)
    h = 1 + 1 / 2 + 1 / 3
    assert d.mean == pytest.approx((1 + 1 + 1) / h)


@pytest.mark.parametrize("table,field", [
    ({"dist": "poisson", "mean": 0}, "mean"),
    ({"dist": "poisson", "mean": 32, "max": 3}, "unknown key"),
    ({"dist": "zipf", "s": 0, "max": 100}, "s"),
    ({"dist": "zipf", "s": 1.1}, "max"),
    ({"dist": "bounded_pareto", "alpha": 1.5, "low": 100, "high": 50}, "high"),
    ({"dist": "bounded_pareto", "alpha": -1, "low": 1, "high": 50}, "alpha"),
])
def test_length_law_bad_input_names_the_field(table, field):
    with pytest.raises(ConfigError, match=field):
        length_dist(table, "workload.prompt_tokens")


def test_length_laws_round_trip_through_toml():
    for t in ({"dist": "poisson", "mean": 32.0}, {"dist": "zipf", "s": 1.2, "max": 4096},
              {"dist": "bounded_pareto", "alpha": 1.5, "low": 16.0, "high": 8192}):
        assert length_dist(t, "x").to_table() == t
