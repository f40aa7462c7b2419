"""The Stability map page under Streamlit's AppTest: a small map run on the page, bad
input answered with a readable error, a sweep's Parquet result loaded and drawn."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGE = "pages/sweep.py"
TIMEOUT = 300  # a cold numba compile on a busy 2-core machine
SMALL = {"n": 1000, "x_n": 2, "y_n": 2, "sched": "vllm,sarathi"}


def open_page(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({k: str(v) for k, v in params.items()})
    at.switch_page(PAGE)
    return at.run()


def errors(at: AppTest) -> str:
    assert not at.exception, [e.value for e in at.exception]
    return "\n".join(e.value for e in at.error).replace("\\", "")  # outside text in them is escaped


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def charts(at: AppTest) -> list:
    return at.get("vega_lite_chart")


def test_a_small_map_runs_and_shows_theory_and_verdicts():
    at = open_page(**SMALL)
    assert errors(at) == ""
    assert at.title[0].value.startswith("Stability map")
    assert metric(at, "Points") == "8"  # 2 schedulers x 2 budgets x 2 loads
    assert int(metric(at, "Stable")) > 0 and int(metric(at, "Unstable")) > 0
    assert len(charts(at)) == 2  # one map per scheduler, each filling its column
    assert [json.loads(c.proto.spec)["title"] for c in charts(at)] == ["vllm", "sarathi"]
    # the axis selects show short names (the whole label was cut to "Token budget b (tokens per iterat")
    assert at.sidebar.selectbox(key="map.x").options[:2] == ["Load ρ", "Token budget b"]
    # long axis titles in lines: at 1,024 px a one-line x title was clipped at the map's edge
    enc = json.loads(charts(at)[0].proto.spec)["layer"][0]["encoding"]
    assert enc["x"]["title"] == ["Token budget b", "(tokens per iteration)"]
    assert enc["y"]["title"] == ["Load ρ", "(arrival rate ÷ best possible capacity)"]
    assert any("theory" in c.value for c in at.caption)
    # a token budget moves the capacity: one ρ is a different rate in each column, and the page says so
    assert any("ρ is the arrival rate over each column's own best capacity" in c.value for c in at.caption)
    # the address bar holds the map
    assert at.query_params["x"] == "engine.token_budget" and at.query_params["y"] == "load"
    # colour by latency: the same map, another layer, no rerun of the simulations
    at.radio(key="map.metric").set_value("e2e_p99_s").run()
    assert errors(at) == "" and len(charts(at)) == 2
    # the maps share one colour scale: the domain spans both schedulers' latencies
    scales = [json.loads(c.proto.spec)["layer"][0]["encoding"]["color"]["scale"] for c in charts(at)]
    assert scales[0] == scales[1] and scales[0]["domain"][0] < scales[0]["domain"][1]
    assert metric(at, "Points") == "8"
    assert any("sweep file" in b.proto.label for b in at.get("download_button"))


def test_the_ticks_sit_on_the_cell_centres():
    """Each axis has a tick at every swept value, the middle of its cell (on the log budget
    axis the geometric middle), not Vega's round numbers falling between cells."""
    at = open_page(**{**SMALL, "x_n": 3, "y_n": 3})
    assert errors(at) == ""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
    chart = charts(at)[0].proto
    rects = json.loads(chart.spec)["layer"][0]
    cells = convert_arrow_bytes_to_pandas_df(next(d.data.data for d in chart.datasets
                                                  if d.name == rects["data"]["name"]))
    for axis, swept, log in (("x", [128, 512, 2048], True), ("y", [0.5, 1.0, 1.5], False)):
        assert rects["encoding"][axis]["axis"]["values"] == swept
        for v in swept:
            lo, hi = cells.loc[cells[axis] == v, [f"{axis}0", f"{axis}1"]].iloc[0]
            assert (math.sqrt(lo * hi) if log else (lo + hi) / 2) == pytest.approx(v)


def test_tick_labels_are_as_short_as_tells_the_values_apart():
    """8 loads from 0.5 to 1.5 were labelled 0.642857, 0.785714, ... (found as a new user would
    on the map page); three digits tell them apart, and a close pair gets the digits it needs.
    Token budgets read 1.02e+3 and 2.05e+3, and log-spaced KV caches 4.23e+4 (tried as a new
    user would): whole numbers are shown whole, the others in decimal notation."""
    from llmsim_ui.sweepmap import axis_values, tick_format
    loads = axis_values(0.5, 1.5, 8, False, False)
    assert tick_format(loads) == ",.3~r"
    assert len({f"{v:.3g}" for v in loads}) == 8
    assert tick_format([1000.5, 1001.5, 2048.25]) == ",.4~r"
    assert tick_format([0.9, 0.90001]) == ",.5~r"
    assert tick_format([128, 256, 512, 1024, 2048]) == ",d"
    assert tick_format(axis_values(20_000, 400_000, 5, True, True)) == ",d"
    # a geometric axis's inner values as a reader would write them (42,295 and 89,443 read as
    # arbitrary; tried as a new user would); whole numbers stay, and no two values merge
    assert axis_values(20_000, 400_000, 5, True, True) == [20_000, 42_000, 90_000, 190_000, 400_000]
    assert axis_values(256, 4096, 5, True, True) == [256, 512, 1024, 2048, 4096]
    assert axis_values(0.5, 2.0, 4, True, False) == [0.5, 0.8, 1.26, 2.0]
    assert axis_values(1.0, 20.0, 4, False, False) == [1.0, 7.0, 14.0, 20.0]  # not 7.33 and 13.7
    assert len(axis_values(1.0, 2.0, 200, True, False)) == len(axis_values(1.0, 2.0, 200, False, False)) == 200


def test_axis_values_that_round_alike_are_one_point():
    """A load from 1 to 1.0000001 in 30 points ran 30 simulations stacked in one cell (a hostile
    pass): values that round to the same one are one point."""
    from llmsim_ui.sweepmap import axis_values
    assert axis_values(1.0, 1.0000001, 30, False, False) == [1.0]
    assert len(axis_values(0.5, 1.5, 8, False, False)) == 8


def test_neither_axis_a_rate_gives_a_fixed_load_and_theory_cells():
    at = open_page(**{**SMALL, "x": "engine.token_budget", "x_lo": 256, "x_hi": 1024,
                      "y": "engine.kv_cache_tokens", "y_lo": 20000, "y_hi": 400000, "rho": 1.2, "sched": "orca"})
    assert errors(at) == ""
    assert metric(at, "Points") == "4"
    assert any("Crosses" in c.value for c in at.caption)
    assert not any("ρ is the arrival rate over each" in c.value for c in at.caption)  # no load axis


@pytest.mark.parametrize("params,message", [
    ({"x": "load", "y": "load"}, "Axes: x and y are both"),
    # a hostile pass: the load overwrote the rate at every point, the rate axis drawn without effect
    ({"x": "load", "y": "workload.arrival.rate", "y_lo": 1, "y_hi": 20}, "both set the arrival rate"),
    ({"x_n": 30, "y_n": 30, "sched": "vllm,orca,sarathi"}, "above this demo's limit of 600"),
    ({"x_lo": 2000, "x_hi": 100, "y_hi": 10_000_000}, "must not exceed"),
    ({"n": 50_000, "x_n": 10, "y_n": 10}, "simulated requests per map"),
    ({"sched": "fifo"}, "Link parameter sched='fifo'"),
    # a long value is echoed cut to 40 characters (200 kB came back as a 700 kB message)
    ({"sched": "x" * 200_000}, "Link parameter sched='" + "x" * 40 + "…' (schedulers): unknown value(s) '"
                               + "x" * 40 + "…'; allowed"),
])
def test_bad_input_gives_a_readable_error(params, message):
    at = open_page(**{**SMALL, **params})
    assert message in errors(at) and len(errors(at)) < 2_000


def test_a_sweep_result_file_is_drawn_and_a_bad_file_refused(tmp_path):
    from llmsim.sweep import InProcess, loads_sweep, run_sweep
    text = (ROOT / "scenarios/quickstart.toml").read_text() + """
[sweep]
num_requests = 1000
[sweep.axes]
"engine.scheduler" = ["orca", "sarathi"]
"engine.token_budget" = [512, 1024]
load = [0.6, 1.4]
"""
    df = run_sweep(loads_sweep(text, ROOT / "scenarios"), executor=InProcess())
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    at = open_page(src="file")
    assert errors(at) == ""
    at.file_uploader(key="map.parquet").set_value(("results.parquet", buf.getvalue(), "application/octet-stream"))
    at.run()
    assert errors(at) == ""
    assert metric(at, "Points") == "8" and len(charts(at)) == 2
    at.file_uploader(key="map.parquet").set_value(("results.parquet", b"not parquet", "application/octet-stream"))
    at.run()
    assert "not a readable Parquet file" in errors(at)


def test_the_map_as_a_sweep_file_is_the_same_sweep():
    from llmsim.sweep import loads_sweep, sweep_from_table
    from llmsim_ui.sweepmap import sweep_file_text
    base = (ROOT / "scenarios/quickstart.toml").read_text()
    import tomllib
    table = tomllib.loads(base)
    table["sweep"] = {"seed": 4, "name": "dashboard map",
                      "axes": {"engine.scheduler": ["orca"], "engine.token_budget": [256, 1024], "load": [0.9]}}
    a = sweep_from_table(table, ".")
    b = loads_sweep(sweep_file_text(table), ".")
    assert a.fingerprint() == b.fingerprint() and a.points() == b.points()


def test_an_oversized_parquet_is_refused_from_its_footer(monkeypatch):
    import pandas as pd
    from llmsim_ui import sweepmap as M
    buf = io.BytesIO()
    pd.DataFrame({"a": range(100)}).to_parquet(buf, index=False)
    assert len(M.read_parquet(buf.getvalue(), "ok.parquet")) == 100
    monkeypatch.setattr(M, "MAX_PARQUET_ROWS", 10)
    with pytest.raises(ValueError, match="100 rows is above"):
        M.read_parquet(buf.getvalue(), "big.parquet")
    monkeypatch.setattr(M, "MAX_PARQUET_ROWS", 1000)
    monkeypatch.setattr(M, "MAX_PARQUET_MEMORY", 10)
    with pytest.raises(ValueError, match="once decompressed"):
        M.read_parquet(buf.getvalue(), "bomb.parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        M.read_parquet(b"PAR1 nope", "bad.parquet")


def test_the_map_offers_the_engine_and_workload_of_the_page_before_it_and_back():
    """A new user set a GPU on the single-engine page, opened the stability map and mapped the
    default engine without a word: the map page offers the other page's engine and workload
    (as the other pages with this panel do), and they offer the map's."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"n": "2000", "live": "0", "sched": "sarathi"})
    at.switch_page("pages/single_engine.py")
    at.run()
    at.selectbox(key="single.hw").set_value("llama2-7b/a100-80gb").run()
    assert errors(at) == ""
    at.query_params.clear()  # as a browser's page link does (AppTest keeps them)
    at.query_params.update({k: str(v) for k, v in SMALL.items()})
    at.switch_page(PAGE)
    at.run()
    take = [b for b in at.button if b.key == "map.take_setup"]
    assert take and take[0].label == "Use the Single engine page's engine and workload"
    assert at.sidebar.selectbox(key="map.hw").value != "llama2-7b/a100-80gb"
    take[0].click().run()
    assert errors(at) == ""
    assert at.sidebar.selectbox(key="map.hw").value == "llama2-7b/a100-80gb"
    assert not [b for b in at.button if b.key == "map.take_setup"]  # the same setup now
    at.sidebar.number_input(key="map.budget").set_value(1024).run()
    at.query_params.clear()
    at.switch_page("pages/single_engine.py")
    at.run()
    take = [b for b in at.button if b.key == "single.take_setup"]
    assert take and take[0].label == "Use the Stability map page's engine and workload"
    take[0].click().run()
    assert errors(at) == ""
    assert at.sidebar.number_input(key="single.budget").value == 1024
