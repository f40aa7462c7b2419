"""Verdicts against theory, capacity search against the capacity formulas."""

from dataclasses import replace

import pytest

from llmsim import analyze, scenario_from_table, simulate
from llmsim.capacity import capacity_search


def scenario(sched, rate=10.0, n=20_000, seed=1, prompt=None):
    return scenario_from_table({
        "seed": seed,
        "workload": {"num_requests": n, "arrival": {"process": "poisson", "rate": rate},
                     "prompt_tokens": prompt or {"dist": "constant", "value": 100},
                     "output_tokens": {"dist": "geometric", "mean": 32}},
        "engine": {"scheduler": sched, "token_budget": 256, "kv_cache_tokens": 2_000_000,
                   "batch_time": {"model": "constant", "seconds": 0.01}}})


@pytest.mark.slow
@pytest.mark.parametrize("sched", ["fastertransformer", "vllm", "orca", "sarathi"])
def test_verdict_accuracy_across_seeds(sched):
    """At 0.8 and 1.2 of the scheduler's theoretical capacity the verdict is right in at
    least 95% of 20 seeds (default horizon: 20,000 requests)."""
    cap = analyze(scenario(sched)).capacity_rps
    for factor, want in ((0.8, "stable"), (1.2, "unstable")):
        right = 0
        for seed in range(20):
            v = simulate(scenario(sched, factor * cap, seed=seed)).verdict
            right += v.verdict == want
        assert right >= 19, (sched, factor, right)


def test_theory_capacities():
    """Work-conserving: b / (t_b E[P+D]) = 25,600 / 132 req/s. fastertransformer with a
    constant prompt: batches of floor(256/100) = 2 prompts, one prefill iteration plus
    E[max of 2 geometric(1/32)] decode iterations per batch."""
    wc = 256 / 0.01 / 132
    for s in ("orca", "sarathi"):
        assert analyze(scenario(s)).capacity_rps == pytest.approx(wc, rel=1e-12)
    q = 1 - 1 / 32
    e_max = sum(1 - (1 - q ** k) ** 2 for k in range(0, 5000))
    ft = 2 / (0.01 * (1 + e_max))
    assert analyze(scenario("fastertransformer")).capacity_rps == pytest.approx(ft, rel=1e-9)
    v = analyze(scenario("vllm")).capacity_rps
    assert ft < v < wc


def test_drift_of_overloaded_engine_matches_theory():
    for s in ("orca", "sarathi"):
        t = analyze(scenario(s))
        res = simulate(scenario(s, 1.25 * t.capacity_rps, n=60_000))
        theory = res.verdict.theory_drift_tokens_per_s
        assert theory == pytest.approx((1.25 - 1) * t.capacity_rps * 132, rel=1e-9)
        assert res.verdict.backlog_growth_tokens_per_s == pytest.approx(theory, rel=0.10)


@pytest.mark.slow
def test_capacity_search_matches_formulas():
    """Critical rates found by search: within 3% of b/(t_b E[P+D]) for the work-conserving
    schedulers; within 5% of the fastertransformer (exact) and vllm (Markov-chain
    approximation) formulas; each theory value inside or near the search interval."""
    out = capacity_search(scenario("sarathi"), ["fastertransformer", "vllm", "orca", "sarathi"],
                          num_requests=40_000, workers=2)
    by = {r.scheduler: r for r in out}
    wc = 256 / 0.01 / 132
    for s in ("orca", "sarathi"):
        assert by[s].critical_rate_rps == pytest.approx(wc, rel=0.03)
    for s in ("fastertransformer", "vllm"):
        assert by[s].critical_rate_rps == pytest.approx(by[s].theory_capacity_rps, rel=0.05)
        lo, hi = by[s].interval
        assert lo < hi
    assert by["fastertransformer"].critical_rate_rps < by["vllm"].critical_rate_rps < by["sarathi"].critical_rate_rps
