"""The summary comes from the kernel's arrays with numpy; the per-request tables are built
only when first read, and a Result never changes after it is made (issue: speed end to end)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import llmsim
from llmsim import Simulation, load_scenario

ROOT = Path(__file__).resolve().parent.parent


def _pandas_summary(res):
    """The summary's latency and count figures recomputed from the per-request tables."""
    rq = res.requests
    done = rq[rq["finish_s"].notna()]
    q = lambda x: (float(np.percentile(x, 50)), float(np.percentile(x, 99)))  # noqa: E731
    out = {"completed": len(done),
           "ttft": q((done["first_token_s"] - done["arrival_s"]).to_numpy()),
           "tbt": q(((done["finish_s"] - done["first_token_s"]) / done["output_tokens"]).to_numpy()),
           "e2e": q((done["finish_s"] - done["arrival_s"]).to_numpy()),
           "goodput": float((done["prompt_tokens"] + done["output_tokens"]).sum())}
    if not res.scenario.single:
        wf = res.workflows
        wd = wf[wf["finish_s"].notna()]
        out["workflows_completed"] = len(wd)
        out["workflow_e2e"] = q((wd["finish_s"] - wd["arrival_s"]).to_numpy())
    return out


@pytest.mark.parametrize("path", ["scenarios/quickstart.toml", "scenarios/agents/fork_join.toml",
                                  "scenarios/agents/react.toml"])
def test_numpy_summary_equals_the_tables(path):
    sc = load_scenario(ROOT / path)
    sc = replace(sc, num_requests=3000)
    res = llmsim.simulate(sc)
    s, ref = res.summary, _pandas_summary(res)
    assert s["completed"] == ref["completed"] > 0
    for name in ("ttft", "tbt", "e2e"):
        assert (s[f"{name}_p50_s"], s[f"{name}_p99_s"]) == ref[name]  # bit for bit
    assert s["goodput_tokens_per_s"] * s["simulated_seconds"] == pytest.approx(ref["goodput"], rel=1e-12)
    if not sc.single:
        assert s["workflows_completed"] == ref["workflows_completed"]
        assert (s["workflow_e2e_p50_s"], s["workflow_e2e_p99_s"]) == ref["workflow_e2e"]


def test_summary_builds_no_dataframe(monkeypatch):
    sc = replace(load_scenario(ROOT / "scenarios/agents/fork_join.toml"), num_requests=2000)
    sim = Simulation(sc).advance()
    built = []
    real_init = pd.DataFrame.__init__

    def counting_init(self, *a, **k):
        built.append(1)
        real_init(self, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "__init__", counting_init)
    sim.summary()
    res = sim.result()
    assert built == [], "the summary or result() built a DataFrame"
    res.requests
    assert built, "the requests table is built on first access"


def test_a_result_does_not_change_when_the_run_goes_on():
    sc = replace(load_scenario(ROOT / "scenarios/quickstart.toml"), num_requests=4000)
    sim = Simulation(sc)
    sim.advance(sim.horizon / 2)
    half = sim.result()
    sim.advance()
    assert len(half.requests) < len(sim.result().requests)
    full = llmsim.simulate(sc)
    mid = Simulation(sc).advance(sim.horizon / 2).result()
    assert half.requests.equals(mid.requests) and half.timeseries.equals(mid.timeseries)
    assert not half.requests.equals(full.requests)
