"""llmsim/_single.py: the single-engine kernel (sarathi or orca, one step, one call per request)
that ``Simulation.advance`` runs where it applies, against ``core.run_kernel`` on the same draws.
Both must leave the same state, bit for bit, at every return: every call's row, every engine,
step and run counter, the samples, the time integrals and the work units. Then either kernel
can go on with a run the other paused, and a run's results never depend on which one ran."""

import dataclasses

import numpy as np
import pytest

import llmsim
from llmsim import Simulation, budget
from llmsim import state as S

from test_resume import TightSimulation, _scenario_with_trace

STATE = ("gi", "gf", "ei", "ef", "si", "ji", "jf", "wk", "dec_call", "dec_tgt")


def _scenario(scheduler="sarathi", n=1500, rate=30.0, seed=5, **engine):
    eng = {"scheduler": scheduler, "token_budget": 512, "max_batch_size": 256,
           "kv_cache_tokens": 1_000_000, "batch_time": {"model": "constant", "seconds": 0.02}}
    eng.update(engine)
    return llmsim.scenario_from_table({
        "seed": seed,
        "engine": eng,
        "workload": {"num_requests": n, "arrival": {"process": "poisson", "rate": rate},
                     "prompt_tokens": {"dist": "uniform", "low": 64, "high": 960},
                     "output_tokens": {"dist": "geometric", "mean": 256}}})


def _run(sc, single, sim_class=Simulation, **kw):
    sim = sim_class(sc, **kw)
    sim.single_kernel = single
    return sim


def differences(a: Simulation, b: Simulation) -> list:
    """The state arrays (and the summary) that differ between two runs; [] when none does.
    Call rows only up to the calls created (the rest of those arrays is unused memory)."""
    out = []
    n = int(a.gi[S.G_NCALLS])
    pairs = [("ci", a.ci[:n], b.ci[:n]), ("cf", a.cf[:n], b.cf[:n]),
             ("rec", a.rec[:a.gi[S.G_REC_N]], b.rec[:b.gi[S.G_REC_N]])]
    pairs += [(name, getattr(a, name), getattr(b, name)) for name in STATE]
    for name, x, y in pairs:
        if x.shape != y.shape or x.tobytes() != y.tobytes():
            out.append(name)
    sa, sb = a.summary(), b.summary()
    sa.pop("wall_seconds", None)
    sb.pop("wall_seconds", None)
    if repr(sa) != repr(sb):
        out.append("summary")
    return out


CASES = {
    # W1's kind of run: no memory pressure
    "w1": {},
    # memory pressure: preemptions (of prefilling and of decoding requests)
    "kv": {"kv_cache_tokens": 40_000},
    "kv-small-batch": {"kv_cache_tokens": 20_000, "max_batch_size": 64},
    "kv-small-budget": {"token_budget": 128, "kv_cache_tokens": 30_000},
    # vLLM's knobs that apply to one engine of these schedulers
    "watermark-maxrun": {"kv_cache_tokens": 30_000, "watermark": 0.05, "max_running_requests": 40},
    # the batch times with no context terms
    "staircase": {"batch_time": {"model": "staircase", "c_seconds": 0.012, "a_seconds": 0.004, "b0": 128},
                  "kv_cache_tokens": 40_000},
    "piecewise": {"batch_time": {"model": "piecewise", "c_seconds": 0.015, "a_seconds": 2e-5, "b0": 256}},
}


@pytest.mark.parametrize("scheduler", ["sarathi", "orca"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_both_kernels_leave_the_same_state(scheduler, case):
    sc = _scenario(scheduler, **CASES[case])
    general, single = _run(sc, False), _run(sc, None)
    general.advance()
    single.advance()
    assert single.single_kernel is True and general.single_kernel is False
    assert differences(general, single) == []
    assert general.summary()["completed"] > 150
    if case.startswith("kv") or case == "staircase":
        assert general.ei[0, S.E_PREEMPTS] > 20  # the preemption paths really run


@pytest.mark.parametrize("scheduler", ["sarathi", "orca"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_run_sliced_between_the_kernels_is_the_same_run(scheduler, seed):
    """Slices of simulated time and of work units, each run by one kernel or the other at
    random: the hand-over is exact whichever kernel paused the run, wherever it paused."""
    sc = _scenario(scheduler, kv_cache_tokens=30_000, seed=seed)
    whole = _run(sc, False).advance()
    sliced = _run(sc, False)
    rng = np.random.default_rng(seed)
    slices = 0
    while not sliced.done:
        sliced.single_kernel = bool(rng.random() < 0.5)
        if rng.random() < 0.5:
            sliced.advance(until_s=sliced.now + rng.exponential(0.5))
        else:
            sliced.advance(max_work=int(rng.integers(1, 800)))
        slices += 1
    assert slices > 50
    assert differences(whole, sliced) == []


@pytest.mark.parametrize("scheduler", ["sarathi", "orca"])
@pytest.mark.parametrize("group,gap", [(3, 2.0), (40, 1.0)])
def test_growing_between_the_arrivals_of_one_instant(scheduler, group, gap):
    """Room runs out after nearly every call created, between two arrivals of one instant
    too (tests/test_resume.py): the single kernel stops and resumes as the general one does."""
    sc = _scenario_with_trace(scheduler, group, gap)
    general, single = _run(sc, False, TightSimulation), _run(sc, None, TightSimulation)
    general.advance()
    single.advance()
    assert single.single_kernel and single.grows > 100 and single.grows == general.grows
    assert differences(general, single) == []


@pytest.mark.parametrize("scheduler", ["sarathi", "orca"])
def test_a_run_stopped_by_its_work_budget_stops_at_the_same_instant(scheduler):
    sc = _scenario(scheduler, kv_cache_tokens=30_000)
    lim = dataclasses.replace(budget.current(), max_work=5_000, slice_work=700)
    general, single = _run(sc, False, limits=lim), _run(sc, None, limits=lim)
    general.advance()
    single.advance()
    assert general.stopped is not None and single.stopped == general.stopped
    assert differences(general, single) == []


@pytest.mark.parametrize("scheduler", ["sarathi", "orca"])
def test_decode_rounds_rebase_in_the_single_kernel(scheduler):
    sc = _scenario(scheduler, kv_cache_tokens=30_000)
    runs = []
    for single in (False, None):
        sim = _run(sc, single)
        sim.ei[:, S.E_ROUND] = S.ROUND_REBASE - 100
        sim.ei[:, S.E_DEC_LB] = S.NO_TARGET
        runs.append(sim.advance())
    assert int(runs[0].ei[0, S.E_ROUND]) < 10**6  # the rounds were rebased
    assert differences(*runs) == []


def test_the_comparison_sees_a_one_ulp_change():
    """The comparison can fail: a batch time one ulp longer in one run moves its times."""
    sc = _scenario("sarathi", n=400)
    general, single = _run(sc, False), _run(sc, None)
    single.ef[0, S.EF_BT0] = np.nextafter(single.ef[0, S.EF_BT0], 1.0)
    general.advance()
    single.advance()
    assert "cf" in differences(general, single)


@pytest.mark.parametrize("what,table", [
    ("vllm", {"scheduler": "vllm", "token_budget": 8192}),
    ("fastertransformer", {"scheduler": "fastertransformer", "token_budget": 8192}),
    ("affine batch time", {"batch_time": {"model": "affine", "c0_seconds": 0.01,
                                          "prefill_seconds_per_token": 1e-5,
                                          "decode_seconds_per_token": 2e-5}}),
    ("blocks of 16", {"block_size": 16}),
])
def test_the_single_kernel_runs_only_where_it_applies(what, table):
    assert _run(_scenario(**table), None).advance(until_s=1.0).single_kernel is False, what
    assert _run(_scenario(), None).advance(until_s=1.0).single_kernel is True
    # an iteration log, a network: the general kernel
    assert _run(_scenario(), None, record_iterations=True).advance(until_s=1.0).single_kernel is False
    react = dataclasses.replace(llmsim.load_scenario("scenarios/agents/react.toml"), num_requests=50)
    assert _run(react, None).advance(until_s=1.0).single_kernel is False


def test_a_cold_server_runs_the_general_kernel_until_the_single_one_is_loaded(monkeypatch):
    """While the compile process a cold server started has not written the single-engine
    kernel (and the server loaded it), a run that may take it takes the general kernel rather
    than compile it in the server; once loaded, the run's next slices take it. The run ends as
    the general kernel alone ends it."""
    import threading

    from llmsim import _kernel_cache, _single, core
    ran = []
    for mod, name in ((_single, "run_single"), (core, "run_kernel")):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _real=real, _name=name: ran.append(_name) or _real(*a))
    monkeypatch.setattr(_kernel_cache, "_child", [object()])  # a compile process, still compiling
    monkeypatch.setattr(_kernel_cache, "_single_loaded", threading.Event())
    assert not _kernel_cache.single_ready()
    sim = _run(_scenario(n=600), None).advance(until_s=5.0)
    assert sim.single_kernel is True and ran and set(ran) == {"run_kernel"}
    forced = _run(_scenario(n=600), True).advance(until_s=5.0)  # the server's loading run
    assert set(ran[-1:]) == {"run_single"} and differences(forced, sim) == []
    _kernel_cache.single_loaded()
    ran.clear()
    sim.advance()
    assert ran and set(ran) == {"run_single"}
    assert differences(sim, _run(_scenario(n=600), False).advance()) == []
    monkeypatch.setattr(_kernel_cache, "_single_loaded", threading.Event())
    monkeypatch.setattr(_kernel_cache, "_child", [None])  # a warm cache: no compile process
    assert _kernel_cache.single_ready()


def test_a_compile_process_that_ends_before_the_second_kernel_leaves_runs_on_the_first(monkeypatch):
    """The server's loader of the single-engine kernel (llmsim_ui.runs._load_single) compiles
    nothing when the compile process ended without writing that kernel: runs keep the general
    kernel (compiling it in the server held Numba's compiler ~9 s, and the page's warm-up
    waited behind it: a hostile pass). When the process wrote it, the loader loads it."""
    runs = pytest.importorskip("llmsim_ui.runs")
    from llmsim import _kernel_cache
    loaded, warmed = [], []
    monkeypatch.setattr(_kernel_cache, "single_loaded", lambda: loaded.append(1))
    monkeypatch.setattr(_kernel_cache, "warm_single", lambda: warmed.append(1))
    monkeypatch.setattr(_kernel_cache, "wait_precompile", lambda line=None, **k: False)
    runs._load_single()
    assert warmed == [] and loaded == []
    monkeypatch.setattr(_kernel_cache, "wait_precompile", lambda line=None, **k: line == _kernel_cache.SINGLE_READY)
    runs._load_single()
    assert warmed == [1] and loaded == [1]


# ------------------------------------------------------------ random single-engine runs

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def single_engine_tables(draw):
    """A random scenario the single-engine kernel runs: sarathi or orca, any budget, batch
    size, KV cache, watermark, running cap and context-free batch time; Poisson, gamma or
    deterministic arrivals (ties at one instant), constant, uniform or geometric lengths."""
    p_hi = draw(st.integers(1, 600))
    lengths = st.sampled_from([
        {"dist": "uniform", "low": 1, "high": p_hi},
        {"dist": "constant", "value": p_hi},
        {"dist": "geometric", "mean": float(max(1, p_hi // 3))}])
    eng = {"scheduler": draw(st.sampled_from(["sarathi", "orca"])),
           "token_budget": draw(st.integers(1, 2048)),
           "max_batch_size": draw(st.integers(1, 300)),
           "kv_cache_tokens": draw(st.integers(1_000, 200_000))}
    if draw(st.booleans()):
        eng["watermark"] = draw(st.sampled_from([0.01, 0.05, 0.2]))
    if draw(st.booleans()):
        eng["max_running_requests"] = draw(st.integers(1, 64))
    bt = draw(st.sampled_from(["constant", "staircase", "piecewise"]))
    eng["batch_time"] = {"constant": {"model": "constant", "seconds": 0.02},
                         "staircase": {"model": "staircase", "c_seconds": 0.01, "a_seconds": 0.003, "b0": 64},
                         "piecewise": {"model": "piecewise", "c_seconds": 0.012, "a_seconds": 3e-5, "b0": 128},
                         }[bt]
    rate = draw(st.floats(0.5, 80.0))
    arrival = draw(st.sampled_from([{"process": "poisson", "rate": rate},
                                    {"process": "deterministic", "rate": rate},
                                    {"process": "gamma", "rate": rate, "cv": 3.0}]))
    return {"seed": draw(st.integers(0, 2**31)),
            "engine": eng,
            "workload": {"num_requests": draw(st.integers(1, 400)), "drain": draw(st.booleans()),
                         "arrival": arrival, "prompt_tokens": draw(lengths), "output_tokens": draw(lengths)}}


@settings(max_examples=int(__import__("os").environ.get("LLMSIM_FUZZ_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(table=single_engine_tables(), slices_seed=st.integers(0, 1000))
def test_random_single_engine_runs_agree_with_the_general_kernel(table, slices_seed):
    try:
        sc = llmsim.scenario_from_table(table)
        general = _run(sc, False)
    except llmsim.ConfigError:
        assume(False)  # a configuration the library refuses (a prompt that can never fit, ...)
    try:
        general.advance()
    except llmsim.ConfigError:
        assume(False)
    single = _run(sc, None).advance()
    assert single.single_kernel
    assert differences(general, single) == []
    # and sliced at random between the two kernels
    sliced = _run(sc, False)
    rng = np.random.default_rng(slices_seed)
    while not sliced.done:
        sliced.single_kernel = bool(rng.random() < 0.5)
        sliced.advance(max_work=int(rng.integers(1, 400)))
    assert differences(general, sliced) == []
