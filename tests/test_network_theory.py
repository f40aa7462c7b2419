"""Theory of engines that host several workflow steps (issue 13 item 4): the stability
region and the memory bound apply per engine over the mix of steps it serves.

With one slot per iteration (max_batch_size 1) and a constant batch time an engine is
busy for exactly ceil(P / b) + D iterations per call, so its load must equal the busy
fraction measured in the simulation."""

from dataclasses import replace
from pathlib import Path

import pytest

from llmsim import analyze, load_scenario
from llmsim import state as S
from llmsim.simulate import Simulation

AGENTS = Path(__file__).parents[1] / "scenarios" / "agents"


def one_slot(name, target=0.8, n=1500, policy=None):
    sc = load_scenario(AGENTS / f"{name}.toml")
    sc = replace(sc, engines=tuple(replace(e, max_batch_size=1) for e in sc.engines),
                 num_requests=n, duration_seconds=None, drain=False)
    if policy:
        sc = sc.with_policy(policy)
    th = analyze(sc)
    return sc.with_rate(sc.total_rate * target / th.load)


# (scenario, engine, policy): the three engines
CASES = [("cyclic", "engine1", "fcfs"), ("fork_join", "orchestrator", None), ("react", "llm", None)]


@pytest.mark.parametrize("name,engine,policy", CASES)
def test_engine_load_is_its_busy_fraction(name, engine, policy):
    sc = one_slot(name, policy=policy)
    th = analyze(sc)
    i = [e.name for e in sc.engines].index(engine)
    sim = Simulation(sc)
    sim.advance()
    busy = sim.ef[i, S.EF_BUSY_TIME] / sim.now
    load = th.engines[i].load
    assert load == pytest.approx(busy, rel=0.05), (load, busy)
    assert load > 0.3  # the old token-only load was ~0.05 here


def test_network_capacity_counts_every_step():
    """The network capacity is the rate at which the busiest engine's load reaches 1:
    with one slot per iteration, ~1/(iterations x t) workflows/s, not the token figure."""
    sc = one_slot("react", target=0.5)
    th = analyze(sc)
    assert th.capacity_rps == pytest.approx(sc.total_rate / 0.5, rel=1e-6)
    e = th.engines[0]
    assert e.token_capacity / (e.offered_tokens_per_s / sc.total_rate) > 5 * th.capacity_rps


def test_overloaded_network_explains_with_the_real_load():
    from llmsim import simulate
    sc = one_slot("fork_join", target=1.5, n=800)
    r = simulate(sc)
    assert r.verdict.verdict == "unstable"
    assert "load 1.50" in r.verdict.explanation
    assert "-" not in r.verdict.explanation.split("about ")[1][:3]


@pytest.mark.parametrize("preset, policy, own_load", [("tandem", None, 1.17), ("fork_join", None, 1.25),
                                                      ("cyclic", "fcfs", 1.2)])
def test_network_drift_is_the_work_held_back_behind_the_busiest_engine(preset, policy, own_load):
    """Above load 1 the busiest engine passes calls on at 1/load of their rate: its steps and
    those after it pile up at 1 - 1/load of their work, steps before it or beside it keep up.
    Theory used to sum each engine's own excess: tandem at 1.17 predicted 8.5% of the arriving
    work where the run grows 14.5%; fork_join (its split before the workers) 9.5% for 15.4%."""
    from llmsim import simulate
    sc = load_scenario(Path(__file__).parents[1] / "scenarios" / "agents" / f"{preset}.toml")
    if policy:
        sc = sc.with_policy(policy)
    sc = sc.with_rate(sc.total_rate * own_load / analyze(sc).scheduler_load)
    t = analyze(sc)
    share = t.drift_tokens_per_s / sum(e.offered_tokens_per_s for e in t.engines)
    v = simulate(sc).verdict
    assert v.verdict == "unstable"
    assert v.growth_lo - 0.005 <= share <= v.growth_hi + 0.005, (share, v.growth_lo, v.growth_hi)
    # the sentence says what the share is of (1 - 1/load would be 20% at 1.25 where fork_join predicts 16%)
    assert f"theory predicts {100 * share:.0f}% of the network's arriving work" in v.explanation


def test_the_theory_runs_on_one_blas_thread_and_gives_the_callers_back(monkeypatch):
    # OpenBLAS's spinning worker threads doubled the CPU of a 16-replica orca pool's theory on 2
    # cores (its chains' dense solves are at most 400 x 400); the caller's setting is restored
    from threadpoolctl import threadpool_info, threadpool_limits
    import llmsim.theory as T
    seen = []
    inner = T._analyze_one_thread

    def spy(sc):
        seen.extend(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")
        return inner(sc)

    monkeypatch.setattr(T, "_analyze_one_thread", spy)
    sc = load_scenario(AGENTS / "react.toml")
    with threadpool_limits(limits=2, user_api="blas"):
        T._analyze(sc)
        after = [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]
    assert seen and set(seen) == {1}
    assert set(after) == {2}
