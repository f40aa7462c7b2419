"""The kernel's plain-Python tier (llmsim/_python_tier.py) computes what the compiled kernel
computes, bit for bit: a run started in Python and finished compiled -- what the dashboard
does while Numba compiles on a cold start -- equals a run compiled throughout, on every
shipped scenario and scheduler."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import llmsim
from llmsim import _python_tier, core
from llmsim import state as S
from llmsim._calls import finished_delays

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").rglob("*.toml")
                   if "sweeps" not in p.parts)
N = 250  # requests (workflows): the Python tier runs a few thousand per second


def _state(sim) -> dict:
    """Every number the run produced (the used part of each array) and its summary."""
    n = int(sim.gi[S.G_NCALLS])
    out = {name: getattr(sim, name).copy() for name in
           ("wk", "gi", "gf", "ei", "ef", "si", "sf", "ji", "jf", "jjoin")}
    out.update(ci=sim.ci[:n].copy(), cf=sim.cf[:n].copy(), rec=sim.rec[:sim.gi[S.G_REC_N]].copy(),
               logi=sim.logi[:sim.gi[S.G_LOG_N]].copy(), logf=sim.logf[:sim.gi[S.G_LOG_N]].copy())
    summary = sim.summary()
    summary.pop("wall_seconds", None)
    out["summary"] = summary
    return out


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if k == "summary":
            assert a[k].keys() == b[k].keys()
            for f in a[k]:  # nan == nan here: the same missing figure in both
                assert repr(a[k][f]) == repr(b[k][f]), f"summary[{f!r}]"
        else:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


def _cases():
    for path in SCENARIOS:
        sc = llmsim.load_scenario(ROOT / path)
        sc = replace(sc, num_requests=min(sc.num_requests or N, N))
        if sc.single and path in ("scenarios/w1.toml", "scenarios/quickstart.toml"):
            for s in ("fastertransformer", "vllm", "orca", "sarathi"):
                eng = {"token_budget": 2048} if s in ("fastertransformer", "vllm") else {}
                yield f"{path}:{s}", sc.with_scheduler(s).with_engine(0, **eng)
        else:
            yield path, sc
    # memory pressure: vllm preempts about one request in three
    w1 = llmsim.load_scenario(ROOT / "scenarios/w1.toml").with_scheduler("vllm")
    w1 = replace(w1.with_engine(0, token_budget=8192, kv_cache_tokens=60_000), num_requests=400)
    yield "w1:vllm-memory", w1.with_rate(13.7)


CASES = dict(_cases())


@pytest.mark.parametrize("name", list(CASES))
def test_python_then_compiled_equals_compiled(name):
    sc = CASES[name]
    ref = llmsim.Simulation(sc, record_iterations=True).advance()
    mixed = llmsim.Simulation(sc, record_iterations=True)
    mixed.python_kernel = True
    mixed.advance(ref.now / 2)                      # the first half in Python
    assert 0 < mixed.gi[S.G_NCALLS] < ref.gi[S.G_NCALLS]
    mixed.python_kernel = False
    mixed.advance()                                 # the rest compiled
    _assert_identical(_state(ref), _state(mixed))


def test_python_run_throughout_and_its_summary():
    """A run entirely in Python (its summary through the Python finished_delays too) equals the
    compiled one, preemptions included."""
    sc = CASES["w1:vllm-memory"]
    ref = llmsim.Simulation(sc).advance()
    py = llmsim.Simulation(sc)
    py.python_kernel = True
    py.advance()
    assert ref.summary()["preemptions"] > 20
    _assert_identical(_state(ref), _state(py))


def test_python_version_is_the_source_and_compiles_nothing():
    k = _python_tier.python_version(core.run_kernel)
    assert k is _python_tier.python_version(core.run_kernel)  # built once
    assert k.__code__ is core.run_kernel.py_func.__code__
    # every compiled function it calls is replaced by its Python version, in its own namespace
    assert k.__globals__["form_batch"].__code__ is core.form_batch.py_func.__code__
    assert k.__globals__ is not core.__dict__ and core.__dict__["form_batch"] is core.form_batch
    assert _python_tier.python_version(finished_delays).__code__ is finished_delays.py_func.__code__


def test_dashboard_run_starts_in_python_while_the_kernel_compiles(monkeypatch):
    """A cold start, played out: the live run does not wait for the compile; its first chunks
    run in the Python tier (the progress line says so), the rest compiled once the kernel is
    ready, and every figure equals a compiled run's."""
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    from llmsim_ui import runs
    checks = {"n": 0}
    real_ready = runs.kernel_ready

    def ready():  # "compiling" for at least the first 6 chunks of the run (then loading, maybe)
        checks["n"] += 1
        return checks["n"] > 6 and real_ready()

    monkeypatch.setattr(runs, "kernel_ready", ready)
    monkeypatch.setattr(runs, "compiling", lambda: True)
    tiers = []
    real_advance = llmsim.Simulation.advance

    def advance(self, *args, **kwargs):
        if self.scenario.num_requests == 1213:  # not the warm-up's tiny run
            tiers.append(self.python_kernel)
        return real_advance(self, *args, **kwargs)

    monkeypatch.setattr(llmsim.Simulation, "advance", advance)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update({"sched": "orca,sarathi", "n": "1213"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    run = at.session_state["single.run"]
    assert run.done and 6 <= run.python_frames < run.frames
    assert tiers[0] and not tiers[-1] and tiers.count(True) == 2 * run.python_frames  # 2 runs
    for s in ("orca", "sarathi"):
        want = llmsim.simulate(run.jobs[s].scenario, limits=runs.LIMITS)
        got = run.outcomes[s].summary
        for k, v in want.summary.items():
            if k != "wall_seconds":
                assert repr(got[k]) == repr(v), (s, k)
        assert run.outcomes[s].verdict == want.verdict


@pytest.mark.parametrize("python_work", [10**9, 500])
def test_small_page_run_in_python_tier_equals_simulate(monkeypatch, python_work):
    """The timeline page's run on a cold start (runs.simulate_small): entirely in the Python
    tier when it fits PY_RUN_WORK, else started there and finished compiled; either way the
    same Result as llmsim.simulate."""
    pytest.importorskip("streamlit")
    from llmsim_ui import runs
    monkeypatch.setattr(runs, "kernel_ready", lambda: False)  # "compiling" throughout
    monkeypatch.setattr(runs, "PY_RUN_WORK", python_work)
    monkeypatch.setattr(runs, "PY_CHUNK_WORK", 200)
    tiers = []
    real_advance = llmsim.Simulation.advance

    def advance(self, *args, **kwargs):
        tiers.append(self.python_kernel)
        return real_advance(self, *args, **kwargs)

    monkeypatch.setattr(llmsim.Simulation, "advance", advance)
    sc = replace(CASES["scenarios/w1.toml:orca"], num_requests=120, drain=True)
    got = runs.simulate_small(sc, record_iterations=True)
    if python_work > 10**6:  # the whole run in Python, 200 units at a time
        assert len(tiers) > 3 and all(tiers)
    else:                    # 3 chunks in Python (600 units >= 500), the rest compiled
        assert tiers == [True, True, True, False]
    monkeypatch.setattr(llmsim.Simulation, "advance", real_advance)
    want = llmsim.simulate(sc, record_iterations=True, limits=runs.LIMITS)
    for k, v in want.summary.items():
        if k != "wall_seconds":
            assert repr(got.summary[k]) == repr(v), k
    assert got.verdict == want.verdict
    assert got.iterations.equals(want.iterations) and got.requests.equals(want.requests)


def test_live_python_chunks_adapt_to_their_time(monkeypatch):
    """A Python chunk's work units shrink when it took longer than PY_CHUNK_S (a work unit
    does not count the loops over a batch's decoders: 2,000 units of 8,192-request batches
    took 1.8 s) and grow back, up to PY_CHUNK_WORK, when chunks are quick."""
    pytest.importorskip("streamlit")
    from llmsim_ui import runs
    sc = replace(CASES["scenarios/w1.toml:sarathi"], num_requests=2000)
    run = runs.LiveRun(("k",), {"x": runs.job("x", sc)})
    sim = llmsim.Simulation(sc)
    sim.python_kernel = True
    run.t = sim.end_time
    monkeypatch.setattr(runs, "PY_CHUNK_S", 1e-9)       # every chunk "too slow"
    w0 = sim.work_units
    run._python_chunk("x", sim)
    assert 2000 <= sim.work_units - w0 < 2100 and run.python_work["x"] == 20
    w0 = sim.work_units
    run._python_chunk("x", sim)
    assert 20 <= sim.work_units - w0 < 40
    monkeypatch.setattr(runs, "PY_CHUNK_S", 1e9)        # every chunk quick: doubles to the cap
    for _ in range(8):
        run._python_chunk("x", sim)
    assert run.python_work["x"] == runs.PY_CHUNK_WORK
