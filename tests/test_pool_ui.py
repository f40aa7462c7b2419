"""Issue 10 on the dashboard: replicas and router on the single-engine and agents pages
(AppTest, no browser; small runs through the URL as in test_app.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from test_app import badges, errors, ok, open_page, widget  # noqa: E402


def test_single_engine_replicas_and_router():
    # 24 requests/s is above one staircase engine's 16.7: unstable alone, stable as two
    # replicas behind jsq_tokens (capacity 33.4, load 0.72)
    at = open_page(n=4000, live=0, sched="sarathi", rate=24.0)
    ok(at)
    assert badges(at) == ["unstable"]
    widget(at, "number_input", "single.reps").set_value(2)
    at.run()
    ok(at)
    assert badges(at) == ["stable"]
    assert at.query_params["reps"] == "2"
    widget(at, "selectbox", "single.router").set_value("round_robin")
    at.run()
    ok(at)
    assert at.query_params["router"] == "round_robin"
    at = open_page(n=2000, live=0, reps=999)
    assert "reps" in errors(at) and "1 to 64" in errors(at)


def test_agents_page_pools_an_engine():
    at = open_page("pages/agents.py", preset="tandem", n=2000, live=0)
    ok(at)
    widget(at, "number_input", "agents.tandem.e0_reps").set_value(2)
    at.run()
    ok(at)
    widget(at, "selectbox", "agents.tandem.e0_router").set_value("least_requests")
    at.run()
    ok(at)
    assert at.query_params["e0_reps"] == "2" and at.query_params["e0_router"] == "least_requests"
