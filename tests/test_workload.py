"""Distributions report their true mean and variance; arrival processes their rate and
burstiness; presets resolve into scenarios."""

import numpy as np
import pytest

from llmsim import loads_scenario
from llmsim.workload import (Constant, Deterministic, Empirical, GammaArrivals, Geometric, Lognormal,
                             Poisson, Uniform)


@pytest.mark.parametrize("dist", [
    Constant(7), Uniform(64, 960), Geometric(256.0), Geometric(1.0), Lognormal(1155, 1.2, 8192),
    Lognormal(30, 3.0, 200), Empirical((1, 5, 5, 9, 100)),
])
def test_mean_and_variance_match_samples(dist):
    x = dist.sample(np.random.default_rng(0), 400_000)
    assert x.min() >= 1
    assert x.max() <= dist.max_value
    assert x.mean() == pytest.approx(dist.mean, rel=0.01)
    if dist.var == 0:
        assert x.var() == 0
    else:
        assert x.var() == pytest.approx(dist.var, rel=0.03)


def test_lognormal_clipping_changes_the_mean():
    """The reported mean is that of the clipped law, not the parameter."""
    d = Lognormal(30, 3.0, 200)
    assert d.mean < 30
    assert d.max_value == 200


def test_lognormal_moments_match_a_plain_python_sum():
    """The vectorized table agrees with P(rint(X) = k) summed with math.erf, term by term
    (1 and max absorb the clipped tails)."""
    import math
    d = Lognormal(40, 2.5, 3000)
    mu, sigma = d._mu_sigma

    def cdf(x):
        return 0.0 if x <= 0 else 0.5 * (1 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2))))

    p = [cdf(1.5)] + [cdf(k + 0.5) - cdf(k - 0.5) for k in range(2, 3000)]
    p.append(1.0 - cdf(2999.5))
    mean = sum(k * q for k, q in zip(range(1, 3001), p))
    var = sum(k * k * q for k, q in zip(range(1, 3001), p)) - mean * mean
    assert d.mean == pytest.approx(mean, rel=1e-12)
    assert d.var == pytest.approx(var, rel=1e-10)


def test_length_moments_are_computed_once_per_law():
    """A million-value table is built once: an equal law (a new instance, as each rerun of a
    page parses its scenario again) reads the cached moments."""
    from llmsim.workload import _pmf_moments
    Lognormal(10, 20.0, 1_000_000).mean
    before = _pmf_moments.cache_info()
    for _ in range(20):
        d = Lognormal(10, 20.0, 1_000_000)
        d.mean, d.var
    after = _pmf_moments.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 40


@pytest.mark.parametrize("proc,cv", [(Poisson(5.0), 1.0), (Deterministic(5.0), 0.0),
                                     (GammaArrivals(5.0, 3.0), 3.0), (GammaArrivals(5.0, 0.5), 0.5)])
def test_arrival_rate_and_cv(proc, cv):
    t = proc.times(np.random.default_rng(1), 200_000)
    gaps = np.diff(np.r_[0.0, t])
    assert 1 / gaps.mean() == pytest.approx(5.0, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, abs=0.05 * max(cv, 1))


def test_workload_and_hardware_presets_in_a_scenario():
    sc = loads_scenario("""
seed = 1
[workload]
preset = "azure-conv-2023"
num_requests = 1000
[engine]
scheduler = "sarathi"
token_budget = 2048
preset = "llama3-8b/h100-80gb"
""")
    from llmsim.presets import HARDWARE_PRESETS, WORKLOAD_PRESETS
    hp = HARDWARE_PRESETS["llama3-8b/h100-80gb"]
    assert sc.engine.kv_cache_tokens == hp.kv_cache_tokens
    assert sc.engine.batch_time.model == "affine"
    assert sc.workflow.arrival.rate == WORKLOAD_PRESETS["azure-conv-2023"].arrival["rate"]
    # the preset's rate can be overridden by an explicit arrival
    sc2 = loads_scenario("""
seed = 1
[workload]
preset = "azure-conv-2023"
num_requests = 1000
arrival = { process = "poisson", rate = 2.0 }
[engine]
preset = "llama3-8b/h100-80gb"
""")
    assert sc2.workflow.arrival.rate == 2.0
    assert sc2.workflow.steps[0].prompt_tokens == sc.workflow.steps[0].prompt_tokens
