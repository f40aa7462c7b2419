"""The stability-region chart on the model page (issue 13 item 3), with AppTest."""

from __future__ import annotations

from pathlib import Path

import re
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


def open_model(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({k: str(v) for k, v in params.items()})
    at.switch_page("pages/model.py")
    return at.run()


def metric(at, label):
    return next(m for m in at.metric if m.label == label).value


def test_region_section_paper_vertex_c():
    at = open_model(r_b=128, r_k=100, r_p=290, r_d=990, r_lam=1.6)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    assert "7. The stability region (Theorem 10)" in [h.value for h in at.header]
    assert metric(at, "region capacity λ*") == "2.139 req/s"
    assert metric(at, "load λ/λ*") == "0.75"
    assert any("29 prefill tokens + 99 decode tokens every 46.75 ms" in c.value for c in at.caption)
    # one batch type at vertex C (the metric showed the region's vertex count, "6 vertices")
    assert metric(at, "batch types at capacity") == "1"
    assert any(re.search(r"The region has \d+ vertices", c.value) for c in at.caption), [c.value for c in at.caption]
    assert len(at.get("vega_lite_chart")) >= 1
    table = at.table[-1].value  # a static table: the bound's sentence wraps
    assert set(table.index) == {"orca", "sarathi"}  # 290-token prompts do not fit b = 128 whole
    assert table.loc["sarathi", "theory capacity (req/s)"] == 2.139  # significant digits, not decimals


def test_region_section_measures_boundary_points():
    at = open_model(r_b=128, r_k=16, r_p=64, r_d=32, r_lam=5, r_hw="llama2-7b/a100-80gb")
    assert not at.exception
    at.toggle(key="model.region_search").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.table[-1].value
    assert table["measured (req/s)"].notna().all()
    for s in table.index:
        assert table.loc[s, "measured (req/s)"] == pytest.approx(table.loc[s, "theory capacity (req/s)"], rel=0.15)


def test_region_section_bad_input():
    at = open_model(r_k=-3)
    assert not at.exception
    assert any("r_k" in e.value or "max batch size" in e.value for e in at.error)


def test_model_page_values_below_the_minimum_get_a_message():
    """A number input with min_value silently refuses a lower value in the browser and keeps
    the old figures; without it the value reaches the page's check, which names the range."""
    at = open_model()
    at.number_input(key=next(n.key for n in at.number_input if n.label == "b (tokens)")).set_value(0).run()
    assert not at.exception, [e.value for e in at.exception]
    # named as the page names it (its label), the range written out
    assert any("b (tokens): 0 is outside the allowed range 1 to 65,536" in e.value for e in at.error), \
        [e.value for e in at.error]


def test_region_search_tells_a_scheduler_that_cannot_run_apart():
    """vllm freezes on this workload (a preempted request's recompute above b): it used to
    blank every scheduler's measurement with one warning under a 'server busy' icon."""
    at = open_model(r_hw="llama2-70b/a100-80gb-tp2-attn", r_b=16384, r_k=16384, r_p=1, r_d=65536)
    at.toggle(key="model.region_search").set_value(True).run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    warned = [w.value for w in at.warning]
    assert len(warned) == 1 and warned[0].startswith("vllm could not be measured here") and "froze" in warned[0]
    table = at.table[-1].value
    assert table.loc[["orca", "sarathi"], "measured (req/s)"].notna().all()
    assert table.loc["vllm", "measured (req/s)"] is None or table.loc["vllm", "measured (req/s)"] != table.loc[
        "vllm", "measured (req/s)"]  # None or NaN


def test_a_page_that_asked_for_a_new_run_stops_waiting():
    """A script run whose page asked for a new run (an input changed, a toggle, Stop) counts
    as gone: its long job and its waits end at the next poll. The Model page's boundary search
    used to run to its end for every change of an input, both long-job slots taken for minutes."""
    from types import SimpleNamespace
    from unittest import mock
    from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests
    from llmsim_ui import runs
    req = ScriptRequests()
    ctx = SimpleNamespace(session_id="s", script_requests=req)
    runtime = SimpleNamespace(is_active_session=lambda sid: True)
    with mock.patch("streamlit.runtime.scriptrunner.get_script_run_ctx", return_value=ctx), \
            mock.patch("streamlit.runtime.Runtime.exists", return_value=True), \
            mock.patch("streamlit.runtime.Runtime.instance", return_value=runtime):
        assert not runs.session_gone()
        req.request_rerun(RerunData())
        assert runs.session_gone()
        req2 = ScriptRequests()
        ctx.script_requests = req2
        req2.request_stop()
        assert runs.session_gone()
        ctx.script_requests = ScriptRequests()
        runtime.is_active_session = lambda sid: False  # the tab closed
        assert runs.session_gone()
