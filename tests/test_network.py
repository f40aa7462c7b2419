"""Networks of engines: tandem queues, fork-join, loops, policies, and the one-node case."""

import numpy as np
import pytest

from llmsim import ConfigError, load_scenario, loads_scenario, scenario_from_table, simulate

ROOT = __import__("pathlib").Path(__file__).parents[1]


def tandem(s1_dec, s2_dec, lam, t=0.01, n=150_000, seed=2):
    def eng(name):
        return {"name": name, "scheduler": "fastertransformer", "token_budget": 512, "max_batch_size": 1,
                "kv_cache_tokens": 100_000, "batch_time": {"model": "constant", "seconds": t}}

    return scenario_from_table({
        "seed": seed, "run": {"num_requests": n, "drain": True},
        "engines": [eng("e1"), eng("e2")],
        "workflows": [{"name": "job", "arrival": {"process": "poisson", "rate": lam}, "steps": [
            {"name": "a", "engine": "e1", "prompt_tokens": {"dist": "constant", "value": 10},
             "output_tokens": {"dist": "constant", "value": s1_dec}, "next": ["b"]},
            {"name": "b", "engine": "e2", "prompt_tokens": {"dist": "constant", "value": 10},
             "output_tokens": {"dist": "constant", "value": s2_dec}}]}]})


@pytest.mark.slow
@pytest.mark.parametrize("d1,d2", [(4, 9), (9, 4)])
def test_tandem_deterministic_servers_friedman(d1, d2):
    """Two batch-size-1 engines in series with deterministic service S_i = (1 + D_i) t:
    by Friedman's theorem the total wait equals that of an M/D/1 queue with the slower
    server, whatever the order (and the faster server second never makes anyone wait)."""
    t = 0.01
    s1, s2 = (1 + d1) * t, (1 + d2) * t
    smax = max(s1, s2)
    lam = 0.7 / smax
    res = simulate(tandem(d1, d2, lam, t))
    wf = res.workflows
    sojourn = (wf.finish_s - wf.arrival_s).mean()
    rho = lam * smax
    wq = rho * smax / (2 * (1 - rho))
    assert sojourn == pytest.approx(wq + s1 + s2, rel=0.03)
    rq = res.requests
    b = rq[rq.step == "b"]
    wait_b = (b.admitted_s - b.arrival_s).mean()
    if s2 <= s1:
        assert wait_b == pytest.approx(0.0, abs=1e-9)
    else:
        assert wait_b > 0.05 * wq


def test_fork_join_conserves_jobs():
    sc = load_scenario(ROOT / "scenarios/agents/fork_join.toml")
    from dataclasses import replace
    res = simulate(replace(sc, num_requests=2000, drain=True))
    wf, rq = res.workflows, res.requests
    assert wf.finish_s.notna().all()
    counts = rq.groupby(["workflow_id", "step"]).size().unstack()
    assert (counts["split"] == 1).all() and (counts["map"] == 4).all() and (counts["reduce"] == 1).all()
    maps_done = rq[rq.step == "map"].groupby("workflow_id").finish_s.max()
    red = rq[rq.step == "reduce"].set_index("workflow_id")
    np.testing.assert_array_equal(red.loc[maps_done.index, "arrival_s"].to_numpy(), maps_done.to_numpy())
    fin = rq.groupby("workflow_id").finish_s.max()
    np.testing.assert_array_equal(wf.set_index("workflow_id").loc[fin.index, "finish_s"].to_numpy(), fin.to_numpy())
    # every map call of a workflow was created when its split finished
    split_done = rq[rq.step == "split"].set_index("workflow_id").finish_s
    m = rq[rq.step == "map"]
    assert (m.arrival_s.to_numpy() == split_done.loc[m.workflow_id].to_numpy()).all()


def test_react_loop_visits_and_delays():
    """think -> act (p = 0.6, after an exponential tool delay of mean 0.5 s) or answer:
    act is visited 0.6 / 0.4 = 1.5 times per workflow on average."""
    from dataclasses import replace
    sc = load_scenario(ROOT / "scenarios/agents/react.toml")
    res = simulate(replace(sc, num_requests=20_000, drain=True))
    rq = res.requests
    n = len(res.workflows)
    per = rq.groupby("step").size() / n
    assert per["think"] == 1 and per["answer"] == 1
    assert per["act"] == pytest.approx(1.5, rel=0.05)
    # the delay: an act call enters its buffer 0.5 s (mean) after its parent finished
    prev_finish = rq.groupby("workflow_id").finish_s.shift(1)
    gaps = (rq.arrival_s - prev_finish)[rq.step == "act"].dropna()
    assert gaps.mean() == pytest.approx(0.5, rel=0.05)
    assert (gaps >= 0).all()


def test_one_node_network_equals_single_engine():
    single = load_scenario(ROOT / "scenarios/quickstart.toml")
    net = loads_scenario("""
seed = 7
[run]
num_requests = 20000
[[engines]]
name = "engine"
scheduler = "sarathi"
token_budget = 512
max_batch_size = 128
kv_cache_tokens = 400000
batch_time = { model = "constant", seconds = 0.05 }
[[workflows]]
name = "requests"
arrival = { process = "poisson", rate = 3.0 }
[[workflows.steps]]
name = "call"
engine = "engine"
prompt_tokens = { dist = "constant", value = 512 }
output_tokens = { dist = "geometric", mean = 256 }
""")
    a, b = simulate(single), simulate(net)
    cols = ["request_id", "arrival_s", "admitted_s", "first_token_s", "finish_s", "prompt_tokens",
            "output_tokens", "preemptions"]
    assert a.requests[cols].equals(b.requests[cols])
    assert a.timeseries["backlog_tokens"].equals(b.timeseries["engine.backlog_tokens"])
    for k in ("completed", "throughput_rps", "ttft_p99_s", "e2e_p50_s", "final_backlog_tokens", "load"):
        assert a.summary[k] == b.summary[k], k


@pytest.mark.slow
def test_cyclic_network_verdicts_per_policy():
    """Every engine at load 0.70: exit-class priority diverges, the reversed priority,
    FCFS and max-pressure stay bounded — in every one of three seeds."""
    from dataclasses import replace
    sc = load_scenario(ROOT / "scenarios/agents/cyclic.toml")
    assert max(sc_load for sc_load in __import__("llmsim").analyze(sc).engine_load) < 0.71
    reverse = {k: 1 - v for k, v in sc.step_priorities().items()}
    variants = {"exit-priority": (sc, "unstable"),
                "reversed": (sc.with_policy("priority", reverse), "stable"),
                "fcfs": (sc.with_policy("fcfs"), "stable"),
                "max-pressure": (sc.with_policy("max-pressure"), "stable")}
    for name, (v, want) in variants.items():
        for seed in (11, 12, 13):
            res = simulate(replace(v, seed=seed))
            assert res.verdict.verdict == want, (name, seed, res.verdict.explanation)
            if want == "unstable":
                assert res.verdict.unstable_parts
                assert res.verdict.assumption_broken.startswith("policy:")
                assert "moves between buffers in waves" in res.verdict.explanation
            else:
                assert "waves" not in res.verdict.explanation


@pytest.mark.parametrize("steps,needle", [
    ([{"name": "a", "engine": "e", "prompt_tokens": {"dist": "constant", "value": 5},
       "output_tokens": {"dist": "constant", "value": 5}, "next": ["a"]}],
     "no exit probability"),
    ([{"name": "a", "engine": "e", "prompt_tokens": {"dist": "constant", "value": 5},
       "output_tokens": {"dist": "constant", "value": 5},
       "routes": [{"p": 0.5, "to": ["j"]}, {"p": 0.5, "to": []}]},
      {"name": "j", "engine": "e", "join": True, "prompt_tokens": {"dist": "constant", "value": 5},
       "output_tokens": {"dist": "constant", "value": 5}}],
     "join parent 'a' reaches it only with probability 0.5"),
    ([{"name": "a", "engine": "nowhere", "prompt_tokens": {"dist": "constant", "value": 5},
       "output_tokens": {"dist": "constant", "value": 5}}],
     "unknown engine 'nowhere'"),
    ([{"name": "a", "engine": "e", "prompt_tokens": {"dist": "constant", "value": 5},
       "output_tokens": {"dist": "constant", "value": 5},
       "routes": [{"p": 0.5, "to": []}, {"p": 0.4, "to": []}]}],
     "probabilities sum to 0.9; they must sum to 1"),
    ([{"name": "a", "engine": "e", "prompt_tokens": {"dist": "constant", "value": 5},
       "output_tokens": {"dist": "constant", "value": 5}, "next": ["zz"]}],
     "routes to unknown step 'zz'"),
    ([{"name": "a", "engine": "e", "prompt_tokens": {"dist": "constant", "value": 5},
       "output_tokens": {"dist": "constant", "value": 5},
       "routes": [{"p": 0.8, "to": ["a", "a"]}, {"p": 0.2, "to": []}]}],
     "forks faster than it exits"),
])
def test_network_bad_input(steps, needle):
    with pytest.raises(ConfigError) as e:
        scenario_from_table({
            "seed": 1, "run": {"num_requests": 10},
            "engines": [{"name": "e", "scheduler": "sarathi", "token_budget": 64, "kv_cache_tokens": 1000,
                         "batch_time": {"model": "constant", "seconds": 0.01}}],
            "workflows": [{"name": "w", "arrival": {"process": "poisson", "rate": 1.0}, "steps": steps}]})
    assert needle in str(e.value), str(e.value)
