"""The dashboard, page by page, with Streamlit's AppTest (no browser).

Every page: a default run, changing its key widgets, bad input (a readable st.error and
no exception), and a shared link (query parameters) restoring the view. Runs are kept
small through the URL (n = requests per run) so the whole file takes well under a minute
once numba's cache is warm; the generous timeout covers a cold compile.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import llmsim  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 180  # a cold numba compile takes ~15 s on 2 cores; a busy machine more


def open_page(page: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({k: str(v) for k, v in params.items()})
    if page:
        at.switch_page(page)
    return at.run()


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def badges(at: AppTest) -> list[str]:
    """Verdict badges in page order: 'stable', 'unstable', 'inconclusive', 'error', ..."""
    out = []
    for m in at.markdown:
        v = m.value
        if "-badge[" in v:
            out.append(v.rsplit(" ", 1)[-1].rstrip("]").lower())
    return out


def errors(at: AppTest) -> str:
    assert not at.exception, [e.value for e in at.exception]
    return "\n".join(e.value for e in at.error).replace("\\", "")  # outside text in them is escaped


def widget(at: AppTest, kind: str, key: str):
    return getattr(at, kind)(key=key)


def upload(at: AppTest, key: str, name: str, data: bytes, mime: str = "application/octet-stream") -> AppTest:
    at.file_uploader(key=key).set_value((name, data, mime))
    return at.run()


# ------------------------------------------------------------------ single engine

SMALL = {"n": 2000, "live": 0}


def test_single_default_run_gives_a_verdict_per_scheduler():
    at = open_page(**SMALL)
    ok(at)
    assert at.title[0].value.startswith("Single engine")
    load = next(m for m in at.metric if m.label.startswith("Offered load"))
    assert load.value == "0.93"  # the paper's headline setup (scenarios/paper/headline.toml) at 15.5 req/s
    b = badges(at)
    assert len(b) == len(llmsim.SCHEDULERS)
    assert b[0] == "unstable"  # fastertransformer is far below this load
    assert b[-1] == "stable"   # sarathi is throughput-optimal
    assert any("Latency" in s.value for s in at.subheader)
    # the URL now holds every input: a link reproduces the view
    assert at.query_params["rate"] == "15.5" and at.query_params["n"] == "2000"
    # fastertransformer's backlog flattens the others' lines on the linear axis: the page says so
    assert any("fastertransformer's backlog reaches" in i.value and "log" in i.value.replace("\\", "") for i in at.info)
    at = open_page(**(SMALL | {"scale": "log"}))
    assert not any("backlog reaches" in i.value.replace("\\", "") for i in at.info)


def test_single_live_view_draws_while_it_runs(monkeypatch):
    at = open_page(n=2000, live=1, sched="sarathi", seed=6)  # a new seed: not in the cache
    ok(at)
    # the live view's pace is said only to the benches (a visitor read it as noise)
    assert not [c for c in at.caption if c.value.startswith("Live view:")]
    monkeypatch.setenv("LLMSIM_UI_TIMING", "1")
    at = open_page(n=2000, live=1, sched="sarathi", seed=5)  # a new seed: not in the cache
    ok(at)
    live = [c.value for c in at.caption if c.value.startswith("Live view:")]
    assert live, "the live view reports how many chart updates it drew"
    frames = int(live[0].split()[2])
    assert frames >= 5
    assert badges(at) == ["stable"]
    # the page's first live run in a session pauses once after its first chart update, so the
    # browser draws the sidebar's inputs (they stayed grey placeholders for the whole run);
    # later runs do not (runs.FIRST_PAINT_PAUSE_S; its effect is measured by bench/ab_ui.py)
    from llmsim_ui import runs
    assert at.session_state["llmsim.painted"] == {at.session_state[runs.PAGE_KEY]}
    at.number_input(key="single.seed").set_value(6).run()
    assert badges(at) and "running" not in badges(at)
    assert at.session_state["llmsim.painted"] == {at.session_state[runs.PAGE_KEY]}


def test_single_changing_widgets_reruns():
    at = open_page(n=2000, live=0, sched="orca,sarathi")
    ok(at)
    assert badges(at) == ["stable", "stable"]
    widget(at, "number_input", "single.rate").set_value(30.0)  # above b/t(b) = 16.7 req/s
    at.run()
    ok(at)
    assert badges(at) == ["unstable", "unstable"]
    assert float(next(m for m in at.metric if m.label.startswith("Offered load")).value) > 1
    widget(at, "multiselect", "single.sched").set_value(["sarathi"])
    widget(at, "selectbox", "single.hw").set_value("custom")
    at.run()
    ok(at)
    assert badges(at) == ["unstable"]
    assert widget(at, "selectbox", "single.bt").value == "staircase"
    assert at.query_params["hw"] == "custom" and at.query_params["sched"] == "sarathi"


def test_single_heavy_overload_says_why_throughput_is_zero():
    # far above capacity the prefill-first schedulers finish no request within the run
    at = open_page(n=2000, live=0, rate=100, sched="vllm,orca,sarathi")
    ok(at)
    assert sum("- throughput: **0 req/s**" in m.value for m in at.markdown) == 2
    notes = [c.value for c in at.caption if c.value.startswith("No request finished")]
    assert len(notes) == 2  # sarathi decodes first: it finishes requests
    assert "vllm runs prefill first (while any prompt waits" in notes[0]
    assert "orca runs prefill first (waiting prompts fill the token budget" in notes[1]
    assert "ended at the last arrival" in notes[0] and "above its capacity of 14.3 req/s" in notes[0]


def test_replicas_and_downloads_are_not_squeezed_into_columns():
    # a label or button in a narrow column was cut or broken ("Replica / s", "Download scenario…")
    # at 1024 px and in the Agent workflows page's sidebar expanders
    at = open_page(**SMALL, reps=2)
    ok(at)
    in_columns = {w.label for c in at.columns for kind in ("number_input", "selectbox") for w in c.get(kind)}
    assert "Replicas" not in in_columns and "Router" not in in_columns
    downloads = at.get("download_button")
    assert len(downloads) == 3
    assert not [b for c in at.columns for b in c.get("download_button")]


def test_single_bad_inputs_show_errors_not_tracebacks():
    at = open_page(n=2000, live=0, rate=50000)
    assert "10,000" in errors(at) and "Link parameter rate" in errors(at)  # out of range in the link
    at = open_page(n=2000, live=0, rate="abc")
    assert "not a number" in errors(at)
    for odd in ("1_0", "\u0661\u0660", "\uff11\uff10"):  # float() reads these as 10
        at = open_page(n=2000, live=0, rate=odd)
        assert f"Link parameter rate={odd!r}" in errors(at) and "is not a number" in errors(at), errors(at)
    at = open_page(n=2000, live=0, sched="orca")
    widget(at, "number_input", "single.n").set_value(500_000)
    at.run()
    msg = errors(at)
    assert "Requests per scheduler" in msg and "200,000" in msg and "command line" in msg
    # a prompt that a non-chunking scheduler can never run: its card says why, the others run
    at = open_page(n=2000, live=0, sched="vllm,sarathi", p_value=1000, rate=2)
    assert not at.exception
    assert badges(at) == ["error", "stable"]
    assert any("token_budget" in c.value.replace("\\", "") for c in at.caption)  # escaped outside text
    # a request that can never fit the KV cache: the library's message names the field
    at = open_page(n=2000, live=0, sched="sarathi", kv=1000, p_value=2000)
    assert "kv_cache_tokens" in errors(at)


def test_single_url_restores_the_view():
    at = open_page(n=2000, live=0, sched="orca", rate=9.5, budget=256, hw="custom", bt="constant", bt_ms=20,
                   o_dist="geometric", o_mean=50, scale="log")
    ok(at)
    assert widget(at, "number_input", "single.rate").value == 9.5
    assert widget(at, "number_input", "single.budget").value == 256
    assert widget(at, "selectbox", "single.bt").value == "constant"
    assert widget(at, "number_input", "single.bt_ms").value == 20.0
    assert widget(at, "number_input", "single.o_mean").value == 50.0
    assert widget(at, "multiselect", "single.sched").value == ["orca"]
    assert widget(at, "radio", "single.scale").value == "log"
    assert at.query_params["bt_ms"] == "20" and at.query_params["o_dist"] == "geometric"


def test_single_toml_upload_restores_and_bad_files_are_refused():
    at = open_page(n=2000, live=0, sched="sarathi")
    text = (ROOT / "scenarios" / "quickstart.toml").read_text().replace("num_requests = 20000",
                                                                         "num_requests = 3000")
    at = upload(at, "single.toml_file", "quickstart.toml", text.encode())
    ok(at)
    assert widget(at, "number_input", "single.rate").value == 3.0
    assert widget(at, "number_input", "single.kv").value == 400_000
    assert widget(at, "number_input", "single.kmax").value == 128
    assert widget(at, "selectbox", "single.hw").value == "custom"
    assert widget(at, "selectbox", "single.o_dist").value == "geometric"
    assert widget(at, "number_input", "single.seed").value == 7
    assert widget(at, "number_input", "single.n").value == 3000
    assert any("Restored quickstart.toml" in s.value.replace("\\", "") for s in at.success)

    at = upload(at, "single.toml_file", "broken.toml", b"[workload\nrate = ")
    assert "malformed TOML" in errors(at)
    at = upload(at, "single.toml_file", "bad.toml", text.replace("token_budget = 512", "token_budget = -3").encode())
    assert "engine.token_budget" in errors(at)
    # one value beyond the page's limits refuses the whole file: none of its other values is applied
    big = text.replace("num_requests = 3000", "num_requests = 900000").replace("seed = 7", "seed = 8")
    assert big.count("seed = 8") == 1
    at = upload(at, "single.toml_file", "big.toml", big.encode())
    assert "200,000" in errors(at) and "Nothing from the file was applied" in errors(at)
    assert widget(at, "number_input", "single.seed").value == 7
    assert widget(at, "number_input", "single.n").value == 3000
    net = (ROOT / "scenarios" / "agents" / "tandem.toml").read_bytes()
    at = upload(at, "single.toml_file", "tandem.toml", net)
    assert "tandem.toml: scenario: this file describes a network" in errors(at) and "'Agents' page" in errors(at)
    # every refusal starts with the file's name, the panel's too (found as a hostile visitor would)
    arr = text.replace('arrival = { process = "poisson", rate = 3.0 }',
                       'arrival = { process = "trace", path = "azure_conv_2023_head.csv" }')
    assert arr != text
    at = upload(at, "single.toml_file", "arr.toml", arr.encode())
    assert "arr.toml: workload.arrival.process: 'trace' files are replayed from" in errors(at)
    at = upload(at, "single.toml_file", "binary.toml", b"\xff\xfe\x00garbage")
    assert "not a text" in errors(at)


def test_a_restored_scenario_keeps_its_name_and_description_in_the_download(downloads):
    """The downloaded TOML used to say name = "dashboard" whatever file was restored."""
    at = open_page(n=2000, live=0, sched="sarathi")
    assert 'name = "dashboard"' in downloads["Download scenario (TOML)"]
    text = ('name = "my-setup"\ndescription = "A100 at 3 req/s"\n'
            + (ROOT / "scenarios" / "quickstart.toml").read_text().replace("num_requests = 20000", "num_requests = 3000"))
    at = upload(at, "single.toml_file", "quickstart.toml", text.encode())
    ok(at)
    sc = llmsim.loads_scenario(downloads["Download scenario (TOML)"])
    assert (sc.name, sc.description, sc.seed, sc.num_requests) == ("my-setup", "A100 at 3 req/s", 7, 3000)
    # a file without a name is named after itself (as llmsim.load_scenario names it)
    at = upload(at, "single.toml_file", "my quick[start].toml", (ROOT / "scenarios" / "quickstart.toml").read_bytes())
    ok(at)
    sc = llmsim.loads_scenario(downloads["Download scenario (TOML)"])
    assert (sc.name, sc.description) == ("my quick-start-", "")


def test_single_trace_upload():
    at = open_page(n=2000, live=0, sched="sarathi", wl="trace")
    assert "choose a trace CSV" in errors(at)
    rows = "\n".join(f"{i * 0.2:.2f},{50 + i % 7 * 10},{20 + i % 5}" for i in range(3000))
    at = upload(at, "single.trace_file", "mytrace.csv",
                ("arrival_time_s,prompt_tokens,output_tokens\n" + rows + "\n").encode(), "text/csv")
    ok(at)
    assert badges(at) == ["stable"]
    # what the run makes of the trace is said (a 1,289-row trace became 20,000 requests unsaid)
    notes = [c.value for c in at.sidebar.caption if c.value.startswith("mytrace.csv")]
    assert notes == ["mytrace.csv: 3,000 requests over 600 s. Each run replays its first 2,000."], notes
    at.number_input(key="single.n").set_value(7500).run()
    notes = [c.value for c in at.sidebar.caption if c.value.startswith("mytrace.csv")]
    assert notes and "replays it 2.5 times end to end" in notes[0] and "to 3,000 to replay it once" in notes[0]
    at = upload(at, "single.trace_file", "bad.csv", b"time,prompt,output\n1,2,3\n", "text/csv")
    assert "expected arrival_time_s,prompt_tokens,output_tokens" in errors(at)
    at = upload(at, "single.trace_file", "bad2.csv", b"arrival_time_s,prompt_tokens,output_tokens\n0,5,5\n1,x,5\n")
    assert "line 3" in errors(at)
    # the bound of the page's own length inputs (the library takes up to 10,000,000 tokens)
    at = upload(at, "single.trace_file", "long.csv",
                b"arrival_time_s,prompt_tokens,output_tokens\n0,5,5\n1,5,65536\n2,70000,5\n")
    assert ("long.csv: prompt_tokens 70,000 in request 3 (the rows after the header, blank lines left out) is "
            "above this demo's limit of 65,536") in errors(at)


def test_saved_toml_round_trips_through_the_panel():
    """What 'Download scenario (TOML)' writes, 'Restore a scenario' reads back to the same inputs."""
    from llmsim_ui import inputs
    sc = llmsim.load_scenario(ROOT / "scenarios" / "paper" / "headline.toml")
    text = inputs.toml_text(sc, ["orca", "sarathi"])
    back = llmsim.loads_scenario(text)
    assert back.to_toml() == sc.to_toml()
    assert inputs.schedulers_in(text) == ["orca", "sarathi"]
    v = inputs.values_from_scenario(back)
    assert v["rate"] == sc.total_rate and v["n"] == sc.num_requests and v["seed"] == sc.seed
    assert v["bt"] == sc.engine.batch_time.model == "staircase" and v["st_b0"] == int(sc.engine.batch_time.params[2])


@pytest.mark.parametrize("bt,term", [
    ('{ model = "piecewise", c_seconds = 0.01, a_seconds = 0.001, b0 = 64, decode_seconds_per_token = 1e-5 }',
     "decode_seconds_per_token"),
    ('{ model = "affine", c0_seconds = 0.01, prefill_seconds_per_token = 1e-5, decode_seconds_per_token = 1e-5, '
     'prefill_attention_seconds_per_pair = 1e-9 }', "prefill_attention_seconds_per_pair"),
    ('{ model = "affine", c0_seconds = 0.01, prefill_seconds_per_token = 1e-5, decode_seconds_per_token = 1e-5, '
     'context_seconds_per_token = 1e-7 }', "context_seconds_per_token"),
])
def test_restoring_refuses_batch_time_terms_the_panel_cannot_show(bt, term):
    # restored without the term, the page would run another engine than the file's, silently
    from llmsim_ui import inputs
    text = (ROOT / "scenarios" / "quickstart.toml").read_text()
    text = text.replace('batch_time = { model = "constant", seconds = 0.05 }', f"batch_time = {bt}")
    assert term in text
    with pytest.raises(llmsim.ConfigError, match=f"engine.batch_time.{term}: the dashboard edits"):
        inputs.values_from_scenario(llmsim.loads_scenario(text))
    plain = llmsim.loads_scenario(text.replace(f", {term} = ", ", unused = ").replace(", unused = 1e-5", "")
                                  .replace(", unused = 1e-9", "").replace(", unused = 1e-7", ""))
    assert inputs.values_from_scenario(plain)["bt"] in ("piecewise", "affine")


# ----------------------------------------------------------------------- capacity

CAP = {"n": 1000, "probes": 4, "points": 3, "sched": "orca,sarathi"}


def test_capacity_default_run_finds_critical_rates():
    at = open_page("pages/capacity.py", **CAP)
    ok(at)
    assert at.title[0].value.startswith("Capacity")
    assert any(s.value == "Critical rates" for s in at.subheader)
    table = at.dataframe[0].value
    assert list(table["scheduler"]) == ["orca", "sarathi"]
    # 1000 requests per probe bracket loosely, but the search brackets some rate
    assert table["critical rate (req/s)"].notna().any()
    assert (table["theory capacity (req/s)"] > 16).all()
    assert next(m for m in at.metric if m.label.startswith("Token capacity")).value == "3,343"
    # every cell is a short figure (a theory formula in a cell was cut short at 1400 px): the
    # formulas are listed under the table, whole
    assert table.map(lambda v: len(str(v))).max().max() <= 20
    formulas = next(c.value for c in at.caption if c.value.startswith("Theory capacity, by scheduler"))
    assert "- **orca**: token capacity b/t(b) (the stability region: exact for work-conserving" in formulas
    assert "- **sarathi**: " in formulas


def test_capacity_changing_widgets_reruns():
    at = open_page("pages/capacity.py", **CAP)
    widget(at, "multiselect", "cap.sched").set_value(["fastertransformer", "sarathi"])
    widget(at, "number_input", "cap.budget").set_value(256)
    at.run()
    ok(at)
    table = at.dataframe[0].value
    assert list(table["scheduler"]) == ["fastertransformer", "sarathi"]
    ft, sa = table["critical rate (req/s)"]
    assert ft < sa  # fastertransformer breaks far earlier
    assert at.query_params["budget"] == "256"


def test_capacity_bad_inputs():
    at = open_page("pages/capacity.py", **(CAP | {"tol": 0.9}))
    assert "Link parameter tol" in errors(at)
    at = open_page("pages/capacity.py", **CAP)
    widget(at, "number_input", "cap.n").set_value(300_000)
    at.run()
    assert "Requests per probe" in errors(at) and "command line" in errors(at)
    widget(at, "number_input", "cap.n").set_value(10)
    at.run()
    assert "below the minimum of 1,000" in errors(at) and "command line" not in errors(at)  # no "bigger runs" hint
    widget(at, "number_input", "cap.n").set_value(1000)
    widget(at, "multiselect", "cap.sched").set_value([])
    at.run()
    assert "choose at least one" in errors(at)


def test_capacity_url_restores_the_view():
    at = open_page("pages/capacity.py", **(CAP | {"points": 4, "hw": "custom", "bt": "constant", "bt_ms": 20}))
    ok(at)
    assert widget(at, "number_input", "cap.points").value == 4
    assert widget(at, "number_input", "cap.bt_ms").value == 20.0
    # b/t(b) = 512 tokens / 20 ms
    assert next(m for m in at.metric if m.label.startswith("Token capacity")).value == "25,600"


# ----------------------------------------------------------------------- agents

AG = {"n": 4000, "live": 0}


def test_agents_cyclic_exit_priority_diverges_others_bounded():
    at = open_page("pages/agents.py", **AG)
    ok(at)
    assert at.title[0].value.startswith("Agent workflows")
    # fcfs, priority (as in the file: exit calls first), reversed priority, max-pressure
    assert badges(at) == ["stable", "unstable", "stable", "stable"]
    assert any(c.value.startswith("Unstable (growing:") for c in at.caption)  # the growing buffers are named
    assert any(c.value.startswith("**cyclic**: Rybko") and c.value.endswith("grow without bound") for c in at.caption)


def test_agents_editing_engines_and_priorities():
    at = open_page("pages/agents.py", **AG)
    # give the short calls priority at both engines: now "priority" is the stable order
    for step in ("A.short", "B.short"):
        widget(at, "number_input", f"agents.cyclic.prio_{step}").set_value(0)
    for step in ("A.long", "B.long"):
        widget(at, "number_input", f"agents.cyclic.prio_{step}").set_value(1)
    at.run()
    ok(at)
    assert badges(at) == ["stable", "stable", "unstable", "stable"]
    # a mixed policy set adds the 'as configured' run
    widget(at, "selectbox", "agents.cyclic.e0_policy").set_value("fcfs")
    widget(at, "number_input", "agents.cyclic.rate0").set_value(1.0)
    widget(at, "number_input", "agents.cyclic.e1_budget").set_value(1024)
    at.run()
    ok(at)
    # the preset's description ("every engine load 0.70") no longer describes what is shown
    desc = next(c.value for c in at.caption if c.value.startswith("**cyclic**"))
    assert "as the file has it; changed here: A arrival rate" in desc and "the loads below are yours" in desc
    assert len(badges(at)) == 5
    assert at.query_params["e0_policy"] == "fcfs" and at.query_params["rate0"] == "1"
    widget(at, "selectbox", "agents.preset").set_value("fork_join")
    at.run()
    ok(at)
    assert "fork_join" in at.query_params["preset"] and "rate0" in at.query_params
    assert widget(at, "number_input", "agents.fork_join.rate0").value == 2.0  # the file's, not cyclic's


def test_agents_bad_inputs():
    at = open_page("pages/agents.py", **(AG | {"rate0": "abc"}))
    assert "Link parameter rate0" in errors(at)
    at = open_page("pages/agents.py", **(AG | {"preset": "nope"}))
    assert "Link parameter preset" in errors(at)
    at = open_page("pages/agents.py", **AG)
    at = upload(at, "agents.toml_file", "broken.toml", b"[[engines]\nname=")
    assert "malformed TOML" in errors(at)
    at = upload(at, "agents.toml_file", "single.toml", (ROOT / "scenarios" / "quickstart.toml").read_bytes())
    assert "Single engine" in errors(at)
    bad = (ROOT / "scenarios" / "agents" / "tandem.toml").read_text().replace('engine = "executor"', 'engine = "gpu9"')
    at = upload(at, "agents.toml_file", "typo.toml", bad.encode())
    assert "unknown engine 'gpu9'" in errors(at)
    at = open_page("pages/agents.py", **(AG | {"preset": "uploaded"}))
    assert "no file is loaded" in errors(at)
    at = open_page("pages/agents.py", **(AG | {"preset": "uploaded", "toml": "AAAA"}))
    assert "damaged" in errors(at)


def test_agents_upload_and_shared_link_with_the_file():
    at = open_page("pages/agents.py", **AG)
    text = (ROOT / "scenarios" / "agents" / "tandem.toml").read_text().replace("rate = 20.0", "rate = 7.0")
    text = text.replace("seed = 1", "seed = 3")
    at = upload(at, "agents.toml_file", "mine.toml", text.encode())
    ok(at)
    assert at.query_params["preset"] == "uploaded" and at.query_params["rate0"] == "7"
    # the file's seed, not the sidebar's previous one (it used to be replaced silently)
    assert widget(at, "number_input", "agents.seed").value == 3 and at.query_params["seed"] == "3"
    link = dict(at.query_params)
    # a new visitor with the link gets the same workflow and values
    at2 = open_page("pages/agents.py", **(link | {"e1_budget": "1024"}))
    ok(at2)
    assert badges(at2) == badges(at)
    assert any("engine" in t for t in [at2.dataframe[0].value.to_string()])
    import hashlib
    file_key = "up" + hashlib.sha256(text.encode()).hexdigest()[:8]
    assert widget(at2, "number_input", f"agents.{file_key}.e1_budget").value == 1024


def test_agents_url_restores_the_view():
    at = open_page("pages/agents.py", **(AG | {"preset": "react", "rate0": 2.5, "e0_budget": 1024, "pol": "fcfs"}))
    ok(at)
    assert widget(at, "selectbox", "agents.preset").value == "react"
    assert widget(at, "number_input", "agents.react.rate0").value == 2.5
    assert widget(at, "number_input", "agents.react.e0_budget").value == 1024
    assert badges(at) == ["stable"]


# ------------------------------------------------------------------------ model

def test_model_page():
    at = open_page("pages/model.py")
    ok(at)
    assert at.title[0].value == "The model"
    assert len(at.latex) >= 5
    assert next(m for m in at.metric if m.label == "load ρ").value == "0.84"
    # the section on memory quotes theory's figures for W1 with a 60,000-token cache: they are its own
    import tomllib
    text = "\n".join(m.value for m in at.markdown)
    for sched, quoted in (("orca", "orca about {:.1f}"), ("sarathi", "sarathi {:.1f};")):
        d = tomllib.loads((ROOT / "scenarios" / "w1.toml").read_text())
        d["engine"].update(scheduler=sched, kv_cache_tokens=60_000)
        assert quoted.format(llmsim.analyze(llmsim.scenario_from_table(d)).capacity_rps) in text
    # t(b) follows b along the paper's staircase: t(1024) = 11.28 + 35.47 * 8 = 295.04 ms, so
    # doubling b buys 1024 / 295.04 over 512 / 153.16 = 1.04 times the capacity, not twice it
    widget(at, "number_input", "model.b").set_value(1024)
    at.run()
    ok(at)
    assert widget(at, "number_input", "model.tb").value == pytest.approx(295.04)
    assert widget(at, "number_input", "model.tb").proto.disabled
    assert next(m for m in at.metric if m.label == "load ρ").value == "0.81"  # 14 * 200 * 0.29504 / 1024
    assert at.query_params["b"] == "1024"
    # another engine's t(b), typed by hand
    at.toggle(key="model.tb_auto").set_value(False)
    at.run()
    widget(at, "number_input", "model.tb").set_value(153.16)
    at.run()
    ok(at)
    assert next(m for m in at.metric if m.label == "load ρ").value == "0.42"


def test_model_page_url_and_bad_input():
    at = open_page("pages/model.py", lam=20)
    ok(at)
    assert widget(at, "number_input", "model.lam").value == 20.0
    assert next(m for m in at.metric if m.label == "load ρ").value == "1.20"
    at = open_page("pages/model.py", b=-5)
    assert "Link parameter b" in errors(at)


def test_model_page_at_load_one_and_just_below():
    """At ρ = 1 exactly the page said "the backlog grows without bound" beside a drift of 0, and
    at λ = 19.95 (ρ = 0.9975) showed ρ 1.00 beside "Stable" (a hostile pass)."""
    at = open_page("pages/model.py", b=200, tb=100, tb_auto=0, mp=50, md=50, lam=20)
    ok(at)
    assert next(m for m in at.metric if m.label == "load ρ").value == "1.00"
    assert any(c.value.startswith("Critically loaded (ρ = 1): the fluid drift is 0") for c in at.caption)
    at = open_page("pages/model.py", b=200, tb=100, tb_auto=0, mp=50, md=50, lam=19.95)
    ok(at)
    assert next(m for m in at.metric if m.label == "load ρ").value == "0.998"
    assert any(c.value == "Stable for a work-conserving scheduler." for c in at.caption)


def test_agents_run_length_comes_from_the_file_and_is_bounded():
    at = open_page("pages/agents.py", preset="tandem", live=0)
    ok(at)
    assert widget(at, "number_input", "agents.tandem.n").value == 20_000  # tandem.toml's num_requests
    widget(at, "number_input", "agents.tandem.n").set_value(500_000)
    at.run()
    assert "Workflows per run" in errors(at) and "200,000" in errors(at)


def test_single_shows_why_orca_falls_short_under_a_binding_kv_cache():
    """With a binding KV cache orca's own capacity (a chain with the decoders the cache
    holds) is well below the best possible capacity; tried as a new user would, the page
    showed only "theory capacity: 11.6 /s" beside "Best possible capacity 15.2", with no
    reason, and the help said orca reaches the latter. Its card now gives orca's own load
    and, under "Why this verdict", theory's formula for it."""
    at = open_page(n=4000, live=0, sched="orca", rate=9.8, hw="custom", bt="constant", bt_ms=20, budget=512,
                   kmax=256, kv=60000, p_dist="uniform", p_low=64, p_high=960, o_dist="geometric", o_mean=256)
    ok(at)
    text = "\n".join(m.value for m in at.markdown)
    assert "load on this scheduler: **0.85 (arrival rate over its own theory capacity)**" in text
    assert text.index("load on this scheduler:") < text.index("load ρ: **0.64 (over the best capacity any scheduler")
    # theory's growth beside the measured one, in the same unit (it read "theory drift: 0 tokens/s")
    assert "growth theory predicts: **0 tokens/s (0.0% of arriving work; it would be 0 below this scheduler's" in text
    assert "**Theory's capacity for this scheduler** (11.6 req/s): orca with a binding KV cache" in text
    assert "77 decoders its KV cache holds when full" in text
    best = next(m for m in at.metric if m.label == "Best possible capacity (req/s)")
    assert best.value == "15.2" and "orca too unless max_batch_size or the KV cache binds" in best.help


def test_capacity_explains_the_best_capacity_by_its_own_bound():
    """The "Best possible capacity" help gave the first chosen scheduler's own formula (orca's
    chain, 11.6 req/s) for the best capacity (the memory capacity, 15.2); it now names the
    bound that gives the best capacity, whatever the schedulers' order."""
    at = open_page("pages/capacity.py", **(CAP | dict(sched="orca,sarathi", hw="custom", bt="constant", bt_ms=20,
                                                       budget=512, kmax=256, kv=60000, p_dist="uniform", p_low=64,
                                                       p_high=960, o_dist="geometric", o_mean=256)))
    assert not at.exception, [e.value for e in at.exception]
    best = next(m for m in at.metric if m.label == "Best possible capacity (req/s)")
    assert best.value == "15.2"
    assert "Binding here: Memory capacity" in best.help and "orca" not in best.help.split("Binding here:")[1]


def test_a_running_card_says_why_a_cold_start_is_slow(monkeypatch):
    """On a cold start every card read "Simulating; the verdict ... appear when the run ends"
    for 20 s and more, and nothing above the fold said the simulator was compiling (tried as a
    new user would): the cards say so until the compiled kernel is loaded."""
    from types import SimpleNamespace

    from llmsim_ui import runs
    warming = SimpleNamespace(is_alive=lambda: True)
    monkeypatch.setattr(runs, "compiling", lambda: True)
    monkeypatch.setattr(runs, "_warm_up_thread", lambda: (warming, {}))
    assert "compiles once per server start" in runs.running_note()
    warming.is_alive = lambda: False
    assert runs.running_note() == "Simulating; the verdict and its evidence appear when the run ends."
    monkeypatch.setattr(runs, "compiling", lambda: False)
    assert "compiles" not in runs.running_note()


def test_a_throughput_next_to_zero_says_why():
    """An uploaded trace at load 1.84: orca's card read "throughput: 0.0102 req/s" beside
    sarathi's 2.58 with the same growth sentence and no word why (tried as a new user would).
    A prefill-first scheduler above its capacity that finishes under 1 request in 20 says so."""
    from types import SimpleNamespace

    from llmsim_ui import widgets
    v = SimpleNamespace(capacity_rps=2.6, arrival_rate_rps=4.77, offered_tokens_per_s=4.77 * 800)
    s = {"arrived": 20_000, "completed": 42, "scheduler": "orca", "simulated_seconds": 4200.0,
         "horizon_seconds": 4200.0, "tokens_done": 8_000_000, "final_waiting": 100, "throughput_rps": 0.01}
    note = widgets.zero_throughput(s, v)
    assert note.startswith("Only 42 of 20,000 requests finished before the run ended at the last arrival")
    assert "orca runs prefill first" in note and "few requests got all their output tokens" in note
    # 1 in 20: not few, but clearly below capacity (the headline engine at load 1.2: orca 12.9
    # req/s beside sarathi's 16.5, the same capacity): why, with the tokens it processed
    assert widgets.zero_throughput({**s, "completed": 1000}, v) is None            # 1 in 20: not few
    assert widgets.throughput_note(s, v) == note
    lag = widgets.throughput_note({**s, "completed": 1000, "throughput_rps": 0.238}, v)
    assert lag.startswith("Throughput counts finished requests only: orca finished 0.238 req/s, below its "
                          "capacity of 2.6 req/s, while the engine processed 1,905 tokens/s (92% of what 2.6")
    assert "orca runs prefill first" in lag and "fewer finish within the run" in lag
    assert widgets.throughput_note({**s, "completed": 10_000, "throughput_rps": 2.4}, v) is None  # near capacity
    assert widgets.throughput_note({**s, "completed": 1000, "throughput_rps": 0.238, "scheduler": "sarathi"},
                                   v) is None
    assert widgets.zero_throughput({**s, "scheduler": "sarathi"}, v) is None       # decodes first
    assert "no request got all its output tokens" in widgets.zero_throughput({**s, "completed": 0}, v)


def test_a_links_load_sets_the_rate_and_a_disagreeing_pair_is_said():
    """A link with rho=0.5 opened at the default rate (load 0.93): its load was read, then
    overwritten by the rate's."""
    at = open_page(n=2000, live=0, sched="sarathi", rho=0.5)
    ok(at)
    assert widget(at, "number_input", "single.rho").value == 0.5
    cap = widget(at, "number_input", "single.rate").value / 0.5
    at = open_page(n=2000, live=0, sched="sarathi", rho=0.25)
    assert widget(at, "number_input", "single.rate").value == pytest.approx(0.25 * cap, rel=1e-3)
    at = open_page(n=2000, live=0, sched="sarathi", rho=0.5, rate=3)
    assert widget(at, "number_input", "single.rate").value == 3.0
    assert "Link parameters rate=3 and rho=0.5 disagree" in errors(at) and "using the rate" in errors(at)
    at = open_page(n=2000, live=0, sched="sarathi", rho=f"{3 / cap:.3g}", rate=3)  # as the page itself shows them
    ok(at)
    # a bad rate beside a good load: the message names the rate the load gives, not the default
    at = open_page(n=2000, live=0, sched="sarathi", rho=0.5, rate="abc")
    assert widget(at, "number_input", "single.rate").value == pytest.approx(0.5 * cap, rel=1e-3)
    assert "Link parameter rate='abc'" in errors(at) and "Using the link's load rho=0.5 (a rate of" in errors(at)


def test_the_timeline_restores_a_file_from_the_other_pages():
    """Files the other pages write hold 1,000 or more requests, beyond the timeline's 300: the
    all-or-nothing restore refused every one (found as a hostile visitor would). The timeline
    keeps its own run length, as the capacity page keeps its probe size."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/timeline.py")
    at.run()
    n = widget(at, "number_input", "tl.n").value
    at = upload(at, "tl.toml_file", "headline.toml", (ROOT / "scenarios" / "paper" / "headline.toml").read_bytes())
    ok(at)
    assert widget(at, "number_input", "tl.n").value == n
    assert any("Restored headline.toml" in x.value.replace("\\", "") for x in at.success)


def test_a_prefill_first_card_above_capacity_says_why_it_finishes_fewer():
    at = open_page(n=20000, live=0, rho=1.2, sched="orca,sarathi")
    ok(at)
    notes = [c.value for c in at.caption if c.value.startswith("Throughput counts finished requests only")]
    assert len(notes) == 1 and notes[0].startswith("Throughput counts finished requests only: orca finished ")
    assert "(100% of what" in notes[0] or "(99% of what" in notes[0]


def test_a_links_presets_bring_what_choosing_them_brings():
    """hw=<preset> in a link kept the page's 20,000,000 KV tokens where choosing the preset sets
    its own 467,291 (found as a new user would); a link that sets kv, rate or rho keeps them."""
    from llmsim.presets import HARDWARE_PRESETS
    kv = HARDWARE_PRESETS["llama3-8b/h100-80gb"].kv_cache_tokens
    at = open_page(n=2000, live=0, sched="sarathi", hw="llama3-8b/h100-80gb")
    assert widget(at, "number_input", "single.kv").value == kv
    at = open_page(n=2000, live=0, sched="sarathi", hw="llama3-8b/h100-80gb", kv=30000)
    assert widget(at, "number_input", "single.kv").value == 30000
    at = open_page("pages/capacity.py", hw="llama3-8b/h100-80gb")
    assert widget(at, "number_input", "cap.kv").value == kv
    at = open_page(n=2000, live=0, sched="sarathi", wl="azure-conv-2023")
    assert widget(at, "number_input", "single.rho").value == 0.8  # L.PRESET_LOAD, as choosing it sets
    at = open_page(n=2000, live=0, sched="sarathi", wl="azure-conv-2023", rate=2)
    assert widget(at, "number_input", "single.rate").value == 2.0
    # a refused value beside a preset: the message names what the preset brings, not the default
    at = open_page(n=2000, live=0, sched="sarathi", hw="llama3-8b/h100-80gb", kv=5)
    assert widget(at, "number_input", "single.kv").value == kv
    assert f"Link parameter kv='5'" in errors(at) and f"Using the preset's {kv:,} instead." in errors(at)
    at = open_page(n=2000, live=0, sched="sarathi", wl="azure-conv-2023", rate="abc")
    assert widget(at, "number_input", "single.rho").value == 0.8
    assert "Using the preset's starting load ρ = 0.8 instead." in errors(at)
    # a custom workload (every shared link of one says wl=custom) brings no starting load: the
    # message names the rate the page keeps (it named the preset's load, and the page ran at 15.5)
    at = open_page(n=2000, live=0, sched="sarathi", wl="custom", rate="abc")
    rate = widget(at, "number_input", "single.rate").value
    assert "Using the preset's starting load" not in errors(at) and f"Using {rate:g} instead." in errors(at)


def test_a_best_capacity_below_the_token_capacity_says_what_binds():
    at = open_page(n=2000, live=0, sched="sarathi")
    assert not [c for c in at.caption if c.value.startswith("Best possible capacity")]  # they agree
    at = upload(at, "single.toml_file", "quickstart.toml", (ROOT / "scenarios" / "quickstart.toml").read_bytes())
    ok(at)
    gap = [c.value for c in at.caption if c.value.startswith("Best possible capacity")]
    assert len(gap) == 1 and "max_batch_size = 128 binds" in gap[0], gap
    assert "10,240 tok/s" in gap[0]


def test_compares_b_says_that_theorys_growth_leaves_out_the_recomputed_work():
    """Compare's default B (vllm, a small KV cache): +18% measured beside "theory predicts 9%"
    with no comment (found as a new user would); the recomputation after preemptions is the rest."""
    at = open_page("pages/compare.py", live=0)
    ok(at)
    b = [c.value for c in at.caption if c.value.startswith("Unstable")]
    assert len(b) == 1 and "theory predicts 9%" in b[0], b
    assert re.search(r"preemptions made the engine redo 1\d\.\d% of the offered work, work that theory's 9% "
                     r"leaves out\.", b[0]), b[0]


def test_the_network_drawing_says_which_step_an_engine_serves_first():
    """'priority 0' / 'priority 1' left open which wins (seen as a new user would)."""
    from llmsim_ui import network
    assert [network._ordinal(i) for i in (1, 2, 3, 4, 11, 12, 13, 21, 102, 111)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "102nd", "111th"]
    sc = llmsim.load_scenario(ROOT / "scenarios" / "agents" / "cyclic.toml")  # B.long before A.short at engine1
    text = network.dot(sc)
    assert 'label="B.long\\nprompt ≈ 3,900 · output ≈ 101\\nserved 1st"' in text
    assert 'label="A.short\\nprompt ≈ 640 · output ≈ 27\\nserved 2nd"' in text
    assert "priority" not in text.split("digraph", 1)[1].replace("· priority", "")  # the policy name only


def test_a_network_of_engines_side_by_side_is_drawn_at_its_own_size():
    """Scaled to the page's column, a chain of 4 engines had 9 px labels and one of 8 engines
    5 px (tried as a new user would): engines side by side are drawn at their own size (no
    "size" for Graphviz to scale to) and the page scrolls them; one engine's steps still fill
    about a column. The drawing's estimated width grows by an engine's panel per engine."""
    from llmsim_ui import network
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_theory_worst as B

    def chain(n):
        eng = [['scheduler = "sarathi"', "token_budget = 512", "kv_cache_tokens = 500000",
                'batch_time = { model = "constant", seconds = 0.02 }'] for _ in range(n)]
        return llmsim.loads_scenario(B._chain(eng, "1.0", '{ dist = "constant", value = 100 }',
                                              '{ dist = "constant", value = 20 }')["toml"])
    wide = network.dot(chain(8))
    assert "rankdir=LR" in wide and not re.search(r"\bsize=", wide) and "fontsize=12" in wide
    tall = network.dot(llmsim.load_scenario(ROOT / "scenarios" / "agents" / "react.toml"))
    assert "rankdir=TB" in tall and 'size="8,4.5!"' in tall and "fontsize=16" in tall
    px = [network.drawing_px(chain(n)) for n in (2, 3, 4, 8)]
    per_engine = (px[3] - px[0]) / 6
    assert 250 < per_engine < 320 and all(abs((b - a) - per_engine) < 5 for a, b in zip(px, px[1:3])), px
    # in Chromium the chain of 2 is 767 px wide and the presets 811-833 px (bench: the browser test)
    assert 700 < px[0] < 800
    for name in ("tandem", "fork_join", "cyclic", "two_class"):
        assert 650 < network.drawing_px(llmsim.load_scenario(ROOT / "scenarios" / "agents" / f"{name}.toml")) < 900
    # a chain deeper than Python's recursion limit (the library takes 5,000 steps) is walked without recursion
    assert network.drawing_px(chain(1200)) > 1200 * 250


def test_an_agents_link_file_is_run_as_written_or_says_what_differs():
    """A toml= link ran 200,000 workflows for num_requests = 20,000,000, ignored its
    duration_seconds and its seed, and without preset=uploaded showed the default preset, all
    without a word (found as a hostile visitor would)."""
    from llmsim_ui import uploads
    base = (ROOT / "scenarios" / "agents" / "tandem.toml").read_text()
    assert "seed = 1\n" in base and "num_requests = " in base

    def link(text, **extra):
        return open_page("pages/agents.py", live=0, toml=uploads.encode_link_toml(text), **extra)

    def infos(at):
        return " | ".join(i.value.replace("\\", "") for i in at.info)

    text = re.sub(r"num_requests = \d+", "num_requests = 2000", base).replace("seed = 1\n", "seed = 7\n")
    at = link(text)  # no preset=: the link's file, with its own seed
    ok(at)
    assert widget(at, "selectbox", "agents.preset").value == "uploaded"
    assert widget(at, "number_input", "agents.seed").value == 7
    assert [i.value for i in at.info] == ["All 4 policies ran alike: every engine here serves a single buffer, so "
                                          "no policy has an order to decide."]  # and nothing differs from the file
    at = link(text, seed=3)  # the link's own seed wins
    assert widget(at, "number_input", "agents.seed").value == 3
    at = link(re.sub(r"num_requests = \d+", "num_requests = 20000000", base))
    assert "num_requests = 20,000,000 is outside this page's 1,000 to 200,000" in infos(at)
    at = link(re.sub(r"num_requests = \d+", "duration_seconds = 100000", base))
    assert "duration_seconds = 100,000 is not used here" in infos(at)
    at = link(base.replace("seed = 1\n", "seed = 99999999999\n"))
    assert "seed = 99,999,999,999 is outside" in infos(at)
    at = link(text, seed="abc")  # a bad seed in the link: the file's is used, and said
    assert widget(at, "number_input", "agents.seed").value == 7
    assert "Link parameter seed='abc'" in errors(at) and "Using the file's seed 7 instead." in errors(at)
    # a single-engine file in a link is refused as an upload is (the page crashed in pd.concat)
    at = link((ROOT / "scenarios" / "quickstart.toml").read_text())
    assert not at.exception and "this is a single-engine scenario" in errors(at)


def test_the_timeline_refuses_a_log_that_preemptions_push_past_its_bound():
    at = open_page("pages/timeline.py", sched="orca", budget=1, kv=1500, p_value=213, o_value=444, n=91, rate=1000)
    assert not at.exception
    assert "the iteration log passed 60,000 rows" in errors(at) and "each preemption adds a row" in errors(at)


def test_a_capped_lognormal_says_what_its_lengths_average():
    at = open_page(n=2000, live=0, sched="sarathi", p_dist="lognormal", p_mean=5000, p_cv=20, p_max=8192)
    assert [c.value for c in at.sidebar.caption if "average" in c.value] == [
        "Prompt lengths average 1,397 tokens: the mean above (5,000) is the lognormal's before rounding and the "
        "cap at 1 to 8,192."]
    at = open_page(n=2000, live=0, sched="sarathi", p_dist="lognormal", p_mean=500, p_cv=0.5, p_max=8192)
    assert not [c.value for c in at.sidebar.caption if "average" in c.value]  # within 2%: nothing to say
    # small means keep their digits ("average 1 tokens: the mean above (1)" read as a contradiction)
    at = open_page(n=2000, live=0, sched="sarathi", p_dist="lognormal", p_mean=1.4, p_cv=20, p_max=2)
    notes = [c.value for c in at.sidebar.caption if "average" in c.value]
    assert len(notes) == 1 and "(1.4)" in notes[0] and not notes[0].startswith("Prompt lengths average 1 tokens")


def test_a_new_gpu_that_moves_the_load_far_says_the_rate_was_kept():
    """Choosing an H100 preset kept 15.5 req/s: load 0.07, every scheduler stable, unexplained
    (a workload preset sets load 0.8; found as a new user would)."""
    at = open_page(n=2000, live=0, sched="sarathi")
    at.selectbox(key="single.hw").set_value("llama3-8b/h100-80gb").run()
    notes = [i.value for i in at.sidebar.info]
    assert len(notes) == 1 and notes[0].startswith("The arrival rate stays at 15.5 req/s on this GPU: load ρ 0.071")
    at.number_input(key="single.seed").set_value(3).run()  # said once, at the change
    assert not [i.value for i in at.sidebar.info if "stays at" in i.value]


def test_the_network_drawing_colours_each_buffer_as_its_line_in_the_chart():
    """The drawing coloured buffers by workflow, the chart below by buffer: a buffer's box and its
    line did not match (tried as a new user would). Each box now takes its line's colour."""
    from llmsim_ui import network, palette
    sc = llmsim.load_scenario(ROOT / "scenarios" / "agents" / "react.toml")
    names = network.buffer_names(sc)
    assert len(names) >= 3 and len(set(names)) == len(names)
    scale = palette.categorical(names)  # the chart's colours (pages/agents.py)
    text = network.dot(sc)
    for wi, w in enumerate(sc.workflows):
        for si, s in enumerate(w.steps):
            col = dict(zip(scale.domain, scale.range))[f"{w.name}.{s.name}"]
            node = re.search(rf"^\s*s{wi}_{si} \[label=.*$", text, re.M).group(0)
            assert f'color="{col}"' in node and f'fillcolor="{col}40"' in node, node
    assert len({dict(zip(scale.domain, scale.range))[n] for n in names}) == len(names)  # told apart


def test_a_typed_value_survives_a_visit_to_another_page_and_a_panel_that_hid_it():
    """A geometric mean typed as 256 was 100 again after a visit to another page: Streamlit
    dropped the widget's value, and the one restore() had set before the field's widget first
    showed came back (found as a new user would). Hiding the field (another law) and showing it
    again kept the typed value too."""
    at = open_page(n=2000, live=0, sched="sarathi")
    at.selectbox(key="single.o_dist").set_value("geometric").run()
    at.number_input(key="single.o_mean").set_value(256.0).run()
    at.switch_page("pages/model.py")
    at.run()
    at.switch_page("pages/single_engine.py")
    at.run()
    ok(at)
    assert widget(at, "number_input", "single.o_mean").value == 256.0
    assert at.query_params["o_mean"] in ("256", ["256"])
    at.selectbox(key="single.o_dist").set_value("uniform").run()
    at.selectbox(key="single.o_dist").set_value("geometric").run()
    assert widget(at, "number_input", "single.o_mean").value == 256.0


def test_a_presets_caption_says_when_the_run_uses_another_kv_cache():
    """The GPU preset's caption gave the preset's memory beside a KV cache field that held
    another value (found as a new user would): it now says which one the run uses."""
    from llmsim.presets import HARDWARE_PRESETS
    hw = "llama3-8b/h100-80gb"
    kv = HARDWARE_PRESETS[hw].kv_cache_tokens

    def caption(at):
        return next(c.value for c in at.caption if f"memory for {kv:,} KV-cache tokens" in c.value)

    assert "the run uses" not in caption(open_page(n=2000, live=0, sched="sarathi", hw=hw))
    assert "(the run uses the KV cache below, 30,000 tokens)" in caption(
        open_page(n=2000, live=0, sched="sarathi", hw=hw, kv=30000))


def test_a_stopped_runs_share_is_rounded_down():
    """A run stopped at 99.6% said "Stopped at 100% of the run. Verdicts need the whole run"
    (found as a new user would): shares of a run are rounded down."""
    from llmsim_ui import runs
    assert [runs.percent(p) for p in (0.0, 0.29, 0.53, 0.996, 1.0, 1.2)] == ["0%", "29%", "53%", "99%", "100%",
                                                                          "100%"]


def test_a_page_offers_the_engine_and_workload_of_the_page_before_it():
    """Each page keeps its own inputs: a new user set a GPU and a workload on the single-engine
    page, opened the capacity page and searched the default engine's capacity without a word.
    The capacity page now offers the single-engine page's engine and workload (not its rate,
    which it sweeps), and takes them with one click; then the button goes."""
    at = open_page(n=2000, live=0, sched="sarathi")
    at.selectbox(key="single.hw").set_value("llama2-7b/a100-80gb").run()
    at.selectbox(key="single.o_dist").set_value("geometric").run()
    at.number_input(key="single.o_mean").set_value(256.0).run()
    ok(at)
    kv = widget(at, "number_input", "single.kv").value
    at.query_params.clear()  # as a browser's page link does (AppTest keeps them)
    at.switch_page("pages/capacity.py")
    at.run()
    take = [b for b in at.button if b.key == "cap.take_setup"]
    assert take and take[0].label == "Use the Single engine page's engine and workload"
    # and a line in the page's column, shown on a phone only (its sidebar is folded away)
    assert [c for c in at.caption if c.value.startswith("This page runs its own engine and workload, not those "
                                                        "of the Single engine page")]
    assert widget(at, "selectbox", "cap.hw").value != "llama2-7b/a100-80gb"
    take[0].click().run()
    ok(at)
    assert widget(at, "selectbox", "cap.hw").value == "llama2-7b/a100-80gb"
    assert widget(at, "selectbox", "cap.o_dist").value == "geometric"
    assert widget(at, "number_input", "cap.o_mean").value == 256.0
    assert widget(at, "number_input", "cap.kv").value == kv != 20_000_000
    assert not [b for b in at.button if b.key == "cap.take_setup"]  # the same setup now
    at.query_params.clear()
    at.switch_page("pages/single_engine.py")
    at.run()
    assert not [b for b in at.button if b.key == "single.take_setup"]


def test_the_setup_offer_compares_shown_valid_values_and_passes_over_default_pages():
    """A recheck as a new user would: the offer came when only a hidden value differed (a
    geometric mean set, then the law changed back to constant), and copied a KV cache of 5 that
    the other page refused; a page passed through at its defaults hid the setup built before it."""
    def go(at, page):
        at.query_params.clear()  # as a browser's page link does (AppTest keeps them)
        at.switch_page(page)
        return at.run()

    def offer(at, key):
        return [b.label for b in at.button if b.key == key]

    at = open_page(n=2000, live=0, sched="sarathi")
    at.selectbox(key="single.p_dist").set_value("geometric").run()
    at.number_input(key="single.p_mean").set_value(50.0).run()
    at.selectbox(key="single.p_dist").set_value("constant").run()
    assert offer(go(at, "pages/timeline.py"), "tl.take_setup") == []  # only a hidden value differs
    at = go(at, "pages/single_engine.py")
    at.number_input(key="single.kv").set_value(5).run()
    assert offer(go(at, "pages/capacity.py"), "cap.take_setup") == []  # the other page refuses its KV cache
    at = go(at, "pages/single_engine.py")
    at.number_input(key="single.kv").set_value(30_000).run()
    go(at, "pages/timeline.py")  # passed through, at its defaults
    at = go(at, "pages/compare.py")
    assert offer(at, "cmp.take_setup") == ["Use the Single engine page's engine and workload"]
    at.button(key="cmp.take_setup").click().run()
    assert widget(at, "number_input", "cmp.kv").value == 30_000
