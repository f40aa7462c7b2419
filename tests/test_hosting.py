"""Safe to host (issue 8, items 2 and 3): a run's memory is estimated from the scenario and
refused before anything is allocated; a run's kernel work is bounded, sliced, resumable
and stoppable, and a run over its budget stops with partial results.

Each hostile scenario of the issue is refused here within a second, with the field to
change named; on the old code each one allocated gigabytes (or ran for minutes).
"""

from __future__ import annotations

import dataclasses
import resource
import time
from pathlib import Path

import numpy as np
import pytest

import llmsim
from llmsim import ConfigError, Limits, Simulation, budget
from llmsim import state as S

ROOT = Path(__file__).resolve().parent.parent


def single(n=20_000, rate=3.0, token_budget=512, prompt=512, output=256, run="", horizon=None):
    length = f"duration_seconds = {horizon}" if horizon else f"num_requests = {n}"
    return f"""
seed = 7
[workload]
{length}
arrival = {{ process = "poisson", rate = {rate} }}
prompt_tokens = {{ dist = "constant", value = {prompt} }}
output_tokens = {{ dist = "constant", value = {output} }}
{run}
[engine]
scheduler = "sarathi"
token_budget = {token_budget}
kv_cache_tokens = 50000000
batch_time = {{ model = "constant", seconds = 0.05 }}
"""


ENGINE = ('[[engines]]\nname = "{name}"\nscheduler = "sarathi"\ntoken_budget = {tb}\n'
          'kv_cache_tokens = 4000000\nbatch_time = {{ model = "constant", seconds = 0.02 }}\n')
STEP = ('[[workflows.steps]]\nname = "{name}"\nengine = "{engine}"\n'
        'prompt_tokens = {{ dist = "constant", value = 10 }}\n'
        'output_tokens = {{ dist = "constant", value = 10 }}\n')
WORKFLOW = '[[workflows]]\nname = "{name}"\narrival = {{ process = "poisson", rate = 2.0 }}\n'


def fork(copies=1000, n=200_000):
    """The issue's 5 kB network file: one call forks into `copies` parallel calls."""
    return (f"seed = 1\n[run]\nnum_requests = {n}\n" + ENGINE.format(name="o", tb=512)
            + WORKFLOW.format(name="w") + STEP.format(name="split", engine="o")
            + "next = [" + ", ".join(['"map"'] * copies) + "]\n" + STEP.format(name="map", engine="o"))


def engines(n_e=64, tb=1 << 20):
    """n_e engines with a 1 M-token budget each, one step per engine in a chain."""
    s = "seed = 1\n[run]\nnum_requests = 1000\n"
    s += "".join(ENGINE.format(name=f"e{i}", tb=tb) for i in range(n_e)) + WORKFLOW.format(name="w")
    for i in range(n_e):
        s += STEP.format(name=f"s{i}", engine=f"e{i}") + (f'next = ["s{i + 1}"]\n' if i + 1 < n_e else "")
    return s


def classes(n_c=1000, n=200_000):
    """n_c workflow classes of one step each."""
    s = f"seed = 1\n[run]\nnum_requests = {n}\n" + ENGINE.format(name="e", tb=512)
    return s + "".join(WORKFLOW.format(name=f"w{c}") + STEP.format(name="a", engine="e") for c in range(n_c))


def chain_points(n_steps=200, points=200_000):
    s = f"seed = 1\n[run]\nnum_requests = 1000\ntimeseries_points = {points}\n"
    s += ENGINE.format(name="e", tb=512) + WORKFLOW.format(name="w")
    for i in range(n_steps):
        s += STEP.format(name=f"s{i}", engine="e") + (f'next = ["s{i + 1}"]\n' if i + 1 < n_steps else "")
    return s


# (scenario text, limits, words the error must contain: the field to change)
HOSTILE = {
    "fork of 1000 copies": (fork(), Limits(), ["num_requests", "fork", "LLM calls"]),
    "1000 workflow classes": (classes(), Limits(), ["num_requests", "workflow classes", "GiB"]),
    "1000 workflow classes, demo": (classes(), Limits.demo(), ["workflows", "steps"]),
    "timeseries_points x 200 steps, demo": (chain_points(), Limits.demo(), ["timeseries_points", "MiB"]),
    "64 engines x 1 M-token budget": (engines(), Limits(), ["token_budget", "max_batch_size", "GiB"]),
    "a pool of 64 replicas x 1 M-token budget": (
        engines(n_e=1).replace('token_budget = 1048576\n', 'token_budget = 1048576\nreplicas = 64\n'),
        Limits(), ["replicas", "token_budget", "GiB"]),
    "duration 1e9 s at rate 1e6": (single(rate=1e6, horizon=1e9), Limits(), ["duration_seconds", "calls"]),
    "200k requests, demo memory": (single(n=200_000).replace('"constant", value = 512', '"uniform", low = 1, high = 9')
                                   .replace("[engine]", "timeseries_points = 200000\n[engine]"),
                                   Limits(memory_bytes=50 * budget.MiB), ["MiB"]),
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_scenarios_are_refused_before_allocating(name):
    text, lim, words = HOSTILE[name]
    sc = llmsim.loads_scenario(text)
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as exc:
        Simulation(sc, limits=lim)
    spent = time.perf_counter() - t0
    msg = str(exc.value)
    for w in words:
        assert w in msg, (w, msg)
    assert "allowed" in msg
    assert spent < 10, spent           # refused, not attempted (the old code ran for minutes)
    assert _rss_mib() - rss0 < 200     # and nothing big was allocated


def test_default_limits_come_from_the_context():
    sc = llmsim.loads_scenario(fork(copies=100, n=30_000))  # 3 M calls: fine for the library
    assert budget.estimate(sc)["calls"] == pytest.approx(101 * 30_000, rel=0.01)
    budget.check(sc)
    with budget.use(Limits.demo()):
        with pytest.raises(ConfigError, match="at most 2,000,000 calls"):
            Simulation(sc)
        with pytest.raises(ConfigError, match="at most 2,000,000 calls"):
            llmsim.simulate(sc)
    budget.check(sc)  # the block's limits ended with it


def test_estimate_is_close_to_the_real_arrays():
    """The estimate is not a wild guess: within a factor 2 of the bytes a run allocates."""
    for path in ("scenarios/quickstart.toml", "scenarios/agents/fork_join.toml"):
        sc = dataclasses.replace(llmsim.load_scenario(ROOT / path), num_requests=50_000)
        sim = Simulation(sc)
        sim.advance()
        res = sim.result()
        real = sum(a.nbytes for a in vars(sim).values() if isinstance(a, np.ndarray))
        real += res.requests.memory_usage(deep=True).sum() + res.timeseries.memory_usage(deep=True).sum()
        est = budget.estimate(sc)["bytes"]
        assert real / 2 < est < 2 * real, (path, est, real)


def test_limits_from_env(monkeypatch):
    monkeypatch.setenv("LLMSIM_DEMO_LIMITS", "memory_mib=512, max_work=1e9,max_calls=5e6")
    lim = Limits.from_env()
    assert lim.memory_bytes == 512 * budget.MiB and lim.max_work == 1e9 and lim.max_calls == 5_000_000
    assert lim.max_steps == Limits.demo().max_steps
    monkeypatch.setenv("LLMSIM_DEMO_LIMITS", "memory=1")
    with pytest.raises(ConfigError, match="LLMSIM_DEMO_LIMITS.*allowed names"):
        Limits.from_env()
    monkeypatch.setenv("LLMSIM_DEMO_LIMITS", "max_work=-3")
    with pytest.raises(ConfigError, match="max_work.*positive"):
        Limits.from_env()
    monkeypatch.delenv("LLMSIM_DEMO_LIMITS")
    assert Limits.from_env() == Limits.demo()


# ----------------------------------------------------------------------------- work

def _state(sim):
    n = int(sim.gi[S.G_NCALLS])
    return (sim.ci[:n].copy(), sim.cf[:n].copy(), sim.gi.copy(), sim.gf.copy(), sim.ei.copy(),
            sim.rec.copy(), sim.work_units)


@pytest.mark.parametrize("path", ["scenarios/quickstart.toml", "scenarios/agents/react.toml"])
def test_work_slices_resume_exactly(path):
    """A run cut into many work slices (and max_work steps) is bit-identical to one call."""
    sc = dataclasses.replace(llmsim.load_scenario(ROOT / path), num_requests=3000)
    whole = Simulation(sc, limits=Limits(slice_work=1 << 40)).advance()
    sliced = Simulation(sc, limits=Limits(slice_work=997))
    calls = 0
    while not sliced.done:
        sliced.advance(max_work=5_000)
        calls += 1
    assert calls > 5
    for a, b in zip(_state(whole), _state(sliced)):
        np.testing.assert_array_equal(a, b)
    sa, sb = whole.summary(), sliced.summary()
    for k in sa:
        if k != "wall_seconds":
            assert sa[k] == sb[k], k


FREEZER = single(n=200_000, rate=0.001, token_budget=1, prompt=65_536, output=65_536)


def test_a_run_sure_to_exceed_the_work_budget_is_refused_before_it_starts():
    """The issue's freezer (token budget 1, 65,536-token prompts and outputs, 200,000
    requests): one iteration per token, minutes of CPU (66 s of stalled health endpoint).
    Its iterations have a lower bound (tokens / token_budget, or horizon / iteration time)
    far above the demo's work budget: refused at once, naming token_budget."""
    sc = llmsim.loads_scenario(FREEZER)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"engine.token_budget: .*at least 4,000,000,000 iterations"):
        Simulation(sc, limits=Limits.demo())
    assert time.perf_counter() - t0 < 2
    est = budget.estimate(sc)
    assert est["work"] > 2 * Limits.demo().max_work
    # the bound is a lower bound: shipped scenarios do more work than it says
    for path in ("scenarios/quickstart.toml", "scenarios/agents/fork_join.toml"):
        small = dataclasses.replace(llmsim.load_scenario(ROOT / path), num_requests=3000)
        assert budget.estimate(small)["work"] <= Simulation(small).advance().work_units


def test_run_over_its_work_budget_stops_with_partial_results():
    """A run whose lower bound fits the budget but whose real work does not (token
    budget 1 again, short calls): it stops at the budget and says so."""
    sc = llmsim.loads_scenario(single(n=200_000, rate=0.001, token_budget=1, prompt=5, output=5))
    lim = Limits(max_work=3_000_000, slice_work=500_000)
    assert budget.estimate(sc)["work"] < 2 * lim.max_work
    t0 = time.process_time()
    res = llmsim.simulate(sc, limits=lim)
    assert time.process_time() - t0 < 20
    s = res.summary
    assert s["stopped"] and "work budget" in s["stopped"] and "partial" in s["stopped"]
    assert 3_000_000 <= s["work_units"] < 3_000_000 + 200_000
    assert 0 < s["completed"] < 200_000 and s["simulated_seconds"] < s["horizon_seconds"]
    assert len(res.requests) >= s["completed"] and res.verdict.verdict == "inconclusive"
    assert "work budget" in res.verdict.explanation
    # a stopped run stays stopped
    sim = Simulation(sc, limits=lim)
    sim.advance()
    now = sim.now
    assert sim.done and sim.stopped
    sim.advance()
    assert sim.now == now
    # a normal run reports its work and no stop
    ok = llmsim.simulate(llmsim.loads_scenario(single(n=2000)), limits=Limits.demo()).summary
    assert ok["stopped"] is None and ok["work_units"] > 2000


def test_should_stop_interrupts_between_slices():
    sc = llmsim.loads_scenario(FREEZER)
    sim = Simulation(sc, limits=Limits(slice_work=100_000))
    asked = []

    def stop():
        asked.append(sim.work_units)
        return len(asked) >= 3

    sim.advance(should_stop=stop)
    assert len(asked) == 3 and not sim.done and sim.stopped is None
    assert 300_000 <= sim.work_units < 400_000


# ------------------------------------------------------------------------ dashboard

def _texts(at) -> str:
    assert not at.exception, [e.value for e in at.exception]
    return "\n".join(x.value for kind in ("error", "warning", "caption") for x in getattr(at, kind))


FREEZER_LINK = {"sched": "sarathi", "n": "200000", "rate": "0.001", "hw": "custom", "bt": "constant",
                "bt_ms": "50", "kv": "50000000", "budget": "1", "kmax": "0", "wl": "custom",
                "p_dist": "constant", "p_value": "65536", "o_dist": "constant", "o_value": "65536"}


@pytest.mark.parametrize("page", ["pages/single_engine.py", "pages/capacity.py"])
def test_dashboard_refuses_the_freezer_link_at_once(page):
    """The issue's link that froze the server (44 s on the capacity page, 66 s on the
    single-engine page) is refused before any run, naming token_budget."""
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update(FREEZER_LINK | ({"points": "3", "probes": "2"} if "capacity" in page else {}))
    at.switch_page(page)
    at.run()  # a first run may compile the kernel (the timeout covers it)
    t0 = time.perf_counter()
    at.run()
    assert time.perf_counter() - t0 < 30
    text = _texts(at)
    assert "token_budget" in text and "work budget" in text, text


def test_dashboard_refuses_the_fork_file_with_the_field_named():
    """The issue's 5 kB network file (a 1,000-copy fork) uploaded on the agents page:
    each policy's run is refused before allocating, with the fork named."""
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update({"preset": "tandem", "n": "1000"})
    at.switch_page("pages/agents.py")
    at.run()
    text = fork(copies=1000, n=200_000).encode()
    assert len(text) < 8_000
    at.file_uploader(key="agents.toml_file").set_value(("fork.toml", text, "application/toml"))
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    at.run()
    assert time.perf_counter() - t0 < 30
    assert _rss_mib() - rss0 < 300
    msg = _texts(at)
    assert "LLM calls" in msg and "fork" in msg and "allowed" in msg, msg


def test_byte_lru_bounds_bytes_not_entries():
    from llmsim_ui.runs import ByteLRU
    c = ByteLRU(1000)
    for i in range(10):
        c.put(("k", str(i)), i, 150)
    assert c.bytes <= 1000 and len(c) < 10
    assert c.get(("k", "9")) == 9 and c.get(("k", "0")) is None
    c.put(("big",), "x", 5000)  # larger than the whole cache: not kept, nothing evicted
    assert c.get(("big",)) is None and c.get(("k", "9")) == 9


def test_every_page_runs_under_the_demo_limits_and_they_do_not_leak(monkeypatch):
    """app.py runs each page inside ``budget.use(runs.LIMITS)``: a page that calls
    llmsim.simulate (sweep, model region) without limits still gets the demo's; the test
    process's own default is untouched afterwards. The limits in force are read from
    inside the page (at its call of runs.warm_up)."""
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    from llmsim_ui import runs
    seen = []
    real = runs.warm_up

    def spy(*args, **kwargs):
        seen.append(budget.current())
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "warm_up", spy)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update({"sched": "sarathi", "n": "1000"})
    at.run()
    assert not at.exception
    assert seen and all(lim == runs.LIMITS for lim in seen) and runs.LIMITS != Limits()
    assert budget.current() == Limits()
