"""Single engine — which scheduler keeps up at this load?"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import llmsim
from llmsim import SCHEDULERS, ConfigError
from llmsim_ui import entry
from llmsim_ui import charts, controls, inputs, palette, phone_nav, runs, widgets
from llmsim_ui import limits as L
from llmsim_ui.state import Field, PageState
from llmsim_ui.markdown import plain

entry.require_app()
runs.timing("page imported")

PAGE = "single"
METRICS = {"waiting": "Waiting requests", "backlog_tokens": "Backlog (tokens)",
           "kv_tokens": "KV cache in use (%)"}
FORMATS = {"Backlog (tokens)": "~s"}

ps = PageState(PAGE, inputs.fields(with_rate=True) + [
    Field("sched", list(SCHEDULERS), "list", choices=tuple(SCHEDULERS), label="schedulers"),
    Field("n", 20_000, "int", L.MIN_REQUESTS, L.MAX_REQUESTS, label="requests per scheduler"),
    Field("scale", "linear", "str", choices=("log", "linear"), label="y scale"),
    Field("live", True, "bool", label="play live"),
])


ps.restore()

st.title("Single engine — which scheduler keeps up?")
st.markdown(
    "Requests arrive at an LLM engine; each has a **prompt** (read in one or more *prefill* chunks) and "
    "an **output** (written one *decode* token per iteration). A **scheduler** decides which tokens go "
    "into each iteration. Below, the same requests are fed to each scheduler: if its queue keeps growing, "
    "it cannot keep up with this arrival rate.")

status_slot = st.empty()  # the compile note and errors, at the top where the eye is

# ---------------------------------------------------------------- inputs (sidebar)
upload = controls.engine_inputs(ps, with_rate=True)
with st.sidebar:
    inputs._num(ps, "n", f"Requests per scheduler (up to {L.MAX_REQUESTS:,})", 5_000,
                help="More requests: a longer run and a sharper verdict.")
ps.publish(ps.visible + ["sched", "n", "scale", "live"])
ps.show_url_errors()

schedulers = ps.get("sched")
errors = inputs.check(ps) + [m for m in [L.check("Requests per scheduler", ps.get("n"), L.MIN_REQUESTS,
                                                 L.MAX_REQUESTS, why=L.CLI_HINT)] if m]
if not schedulers:
    errors.append("Schedulers to compare: choose at least one.")
controls.show_errors(errors)

try:
    base, extra = inputs.build(ps, ps.get("n"), ps.get("rate"), upload, speed=ps.get("speed"))
except ConfigError as exc:
    st.error(f"Cannot run this scenario — {plain(exc)}", icon=":material/block:")
    st.stop()

jobs, refused = [], {}
for s in schedulers:
    sc = base.with_scheduler(s)
    try:
        llmsim.validate(sc)
        jobs.append(runs.job(s, sc, extra))
    except ConfigError as exc:
        refused[s] = str(exc)


# ----------------------------------------------------------------------- theory
# drawn here, computed below once the empty chart axes are on their way: the browser loads its
# chart code (about a second) while this process computes the theory and loads the kernel
theory_box = st.container()


def _draw_theory() -> None:
    # base runs sarathi: the load and the capacities shown here do not depend on the scheduler
    th = runs.theory(runs.job("base", base, extra))
    e0 = th.engines[0]
    mean_work = e0.offered_tokens_per_s / base.total_rate if base.total_rate else float("nan")
    # units in the labels keep the figures short: a projector at 1024 px cuts "16.7 r…"
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Offered load ρ", f"{th.load:.2f}" if th.load >= 0.01 else f"{th.load:.2g}",
              help="Arriving work divided by the most the engine can process (the binding capacity). "
                   + ("Above 1 no scheduler keeps up." if not e0.memory_binds else
                      "Here the KV cache binds: the capacity is the memory capacity, an approximation, so "
                      "near 1 the simulation decides (a scheduler may keep up a little above it)."))
    c2.metric("Arrival rate λ (req/s)", f"{base.total_rate:.3g}")
    cap_label, cap_help = widgets.token_capacity_label(base.engine)
    c3.metric(cap_label, f"{e0.token_capacity:,.0f}",
              help=f"{cap_help}A full iteration of b = {e0.token_budget} tokens takes t(b) = {e0.t_b_seconds * 1e3:.4g} ms. "
                   f"With {mean_work:,.0f} tokens per request on average that is "
                   f"{e0.token_capacity / mean_work:.3g} requests/s.")
    c4.metric("Best possible capacity (req/s)", f"{th.optimal_capacity_rps:.3g}",
              help=widgets.capacity_help(e0.optimal_kind))
    gap = widgets.capacity_gap_note(th.optimal_capacity_rps, e0, mean_work, base.engine.max_batch_size)
    if gap:
        st.caption(gap)


# -------------------------------------------------------------------- the run
key = tuple((j.toml, j.extra_key) for j in jobs)
run = None if controls.wants_new_run(PAGE, key) else runs.session_run(PAGE)  # started once the frame is drawn

# the run's progress and its Stop button under the headline figures, where the eye is
run_row = st.columns([2, 5], vertical_alignment="top")
button_slot, progress_slot = controls.run_slot(run_row[0]), run_row[1].empty()

labels = list(schedulers)  # in the order chosen; refused ones show why
cols = phone_nav.card_columns(len(labels), "Verdicts", help=widgets.VERDICT_MEANING)
cards, fixes = {}, {}
for col, s in zip(cols, labels):
    with col:
        widgets.swatch(s, palette.SCHEDULER_COLORS.get(s, "#888"), row=labels)
        if s in refused:  # drawn once: it does not change while the others run
            widgets.badge("error")
            st.caption(plain(refused[s]))
            inputs.raise_budget_button(ps, refused[s], key=f"{PAGE}.raise_b.{s}", shared_by=len(labels),
                                       at_least=max(inputs.budget_need(m) or 0 for m in refused.values()))
        else:
            cards[s] = st.empty()
            fixes[s] = st.empty()  # a fix for a run that failed (drawn once, when the run has ended)


def _draw_cards(run: runs.LiveRun | None) -> None:
    for s in cards:
        with cards[s].container():
            if run is None:
                widgets.badge("running")
                st.caption(runs.running_note())
            elif s in run.errors:
                widgets.badge("error")
                st.caption(plain(run.errors[s]))
            elif s in run.outcomes:
                o = run.outcomes[s]
                widgets.badge(o.verdict.verdict)
                st.caption(o.verdict.explanation)
                if o.summary.get("stopped"):  # spent the demo's work budget: partial results
                    st.warning(o.summary["stopped"], icon=":material/timer_off:")
                widgets.evidence(o.verdict, [("throughput", widgets.fmt(o.summary["throughput_rps"], unit=" req/s"))],
                                 summary=o.summary, note=widgets.throughput_note(o.summary, o.verdict))
            else:
                widgets.badge("stopped" if run.stopped else "running")
                if not run.stopped:  # stopped, it said "Simulating…" under its Stopped badge (a new-user pass)
                    st.caption(runs.running_note())


_draw_cards(run)
if not jobs:  # it showed a Replay live that did nothing and empty chart controls
    with theory_box:
        _draw_theory()
    controls.nothing_ran(progress_slot, "every scheduler chosen is")

st.subheader("Queue-length trajectories")
st.caption(
    "How much is waiting, over simulated time, for each scheduler: **waiting requests** (not yet "
    "started), **backlog** (prompt and output tokens not yet processed) and **KV cache in use** "
    "(GPU memory). A line that keeps climbing is a queue that never drains; the backlog is the one to "
    "watch: with a large KV cache requests are started at once, and an engine that falls behind piles "
    "up work in its backlog while few requests wait. Once the run has ended, hover for values and click a "
    "legend entry to highlight one scheduler in that panel (shift-click for several).")
ctl1, ctl2 = st.columns([2, 5])
ctl1.radio("Vertical scale", ["linear", "log"], **ps.w("scale", ["linear", "log"]), horizontal=True,
                       help="Log scale shows a growing queue and a small bounded one on the same chart (the KV cache share stays linear).")
ctl2.toggle("Play live", **ps.w("live"), help="Draw the trajectories while the simulation runs.")
near_slot = controls.run_slot(st, key="phone-replay")  # the run's button again, on a phone only
chart_slots = phone_nav.chart_slots(len(METRICS))
scale_note = st.empty()
overlap_note = st.empty()
DWARFS = 5  # a backlog this many times the next one's leaves the others a fifth of a linear axis or less
kv = {j.label: charts.kv_capacity(j.scenario.engine) for j in jobs}  # a pool's: all its replicas'


def _draw_chart(run: runs.LiveRun, live: bool = False) -> None:
    trajs = run.trajectories()
    if not trajs:
        return
    parts = []
    for label, ts in trajs.items():
        long = charts.long_trajectories({label: ts}, METRICS, "scheduler", {"kv_tokens": 100.0 / kv[label]},
                                        charts.LIVE_POINTS if live else charts.MAX_POINTS)
        parts.append(long)
    df = pd.concat(parts, ignore_index=True)
    x_max = max([run.end] + [o.summary["horizon_seconds"] for o in run.outcomes.values()])
    specs = charts.trajectories(df, "scheduler", palette.colours(list(trajs), palette.SCHEDULER_COLORS),
                                list(METRICS.values()), x_max, log=ps.get("scale") != "linear",
                                formats=FORMATS, live=live)
    for slot, spec in zip(chart_slots, specs):
        slot.vega_lite_chart(spec=spec, width="stretch")
    if live:
        scale_note.empty()
        overlap_note.empty()
        return
    log = ps.get("scale") != "linear"
    same = charts.coinciding(df, "scheduler", log=log)
    if same:
        # on the linear scale, lines the log scale tells apart say so (a climbing line flattens
        # the others: vllm, unstable, was drawn over stable orca's and sarathi's)
        together = same if log else charts.coinciding(df, "scheduler", log=True)
        apart = {(tuple(g), x) for g, m in together for x in m}
        overlap_note.caption(" ".join(
            ("In every panel" if len(m) == len(METRICS) else "In " + widgets.and_list([f"*{x}*" for x in m]))
            + ", the lines of " + widgets.and_list([f"**{x}**" for x in g]) + " are drawn over one another: only "
            + f"**{g[-1]}**'s shows"
            + ("" if log or all((tuple(g), x) in apart for x in m) else " (the *log* scale tells them apart)") + "."
            for g, m in same) + " Click a legend entry to fade the other schedulers in that panel.")
    else:
        overlap_note.empty()
    if ps.get("scale") != "linear":
        scale_note.empty()
        return
    peak = df[df["metric"] == METRICS["backlog_tokens"]].groupby("scheduler")["value"].max().sort_values()
    if len(peak) > 1 and peak.iloc[-1] > DWARFS * max(peak.iloc[-2], 1.0):
        scale_note.info(f"{peak.index[-1]}'s backlog reaches {peak.iloc[-1]:,.0f} tokens, over {DWARFS} times any other "
                        "one's: on this linear scale the other lines look flat even where they climb. Switch "
                        "**Vertical scale** to *log* to compare them, or leave it out of *Schedulers to compare*.",
                        icon=":material/zoom_in:")
    else:
        scale_note.empty()


if run is None:
    if ps.get("live") and jobs:
        # empty axes first: the browser loads its chart code while the simulator warms up
        empty = pd.DataFrame({"time_s": [], "scheduler": [], "metric": [], "value": []})
        horizon = (base.num_requests or 1) / base.total_rate
        for slot, spec in zip(chart_slots, charts.trajectories(
                empty, "scheduler", palette.colours([j.label for j in jobs], palette.SCHEDULER_COLORS),
                list(METRICS.values()), horizon, log=ps.get("scale") != "linear", formats=FORMATS, live=True)):
            slot.vega_lite_chart(spec=spec, width="stretch")
    runs.timing("chart axes sent")
with theory_box:
    _draw_theory()
runs.timing("theory drawn")
if run is None:
    run = controls.start_run(PAGE, key, jobs, status_slot)  # waits for the numba warm-up
    _draw_cards(run)

controls.play_controls(PAGE, run, button_slot, progress_slot, lambda r: _draw_chart(r, live=True),
                       bool(ps.get("live")), on_end=_draw_cards, near_slot=near_slot)
_draw_chart(run)
for s, msg in run.errors.items():  # e.g. vllm froze: a preempted request's recompute above b
    if s in fixes:
        inputs.raise_budget_button(ps, msg, key=f"{PAGE}.raise_b_run.{s}", container=fixes[s], shared_by=len(labels))

if run.updates_per_second and runs.timing_on():  # for bench/bench_ui.py and the browser tests; a
    # visitor read it as noise (tried as a new user would)
    st.caption(f"Live view: {run.frames} chart updates in {run.play_seconds:.1f} s "
               f"({run.updates_per_second:.1f} per second).")

# ------------------------------------------------------------------- latencies
if run.outcomes:
    st.subheader("Latency percentiles")
    st.caption(
        "**TTFT**: time to first token (waiting + prompt). **TBT**: time between output tokens. "
        "**End-to-end**: arrival to last token. p50 is the median request, p99 the slowest 1%. "
        "For an unstable scheduler these only say how long the queue had grown when the run ended — "
        "a longer run would give larger numbers.")
    measures = [("TTFT p50", "ttft_p50_s"), ("TTFT p99", "ttft_p99_s"), ("TBT p50", "tbt_p50_s"),
                ("TBT p99", "tbt_p99_s"), ("end-to-end p50", "e2e_p50_s"), ("end-to-end p99", "e2e_p99_s")]
    rows = [{"scheduler": s, "measure": m, "seconds": o.summary.get(k)}
            for s, o in run.outcomes.items() for m, k in measures]
    lat = pd.DataFrame(rows)
    table = pd.DataFrame({s: {m: widgets.seconds(o.summary.get(k)) for m, k in measures}
                          for s, o in run.outcomes.items()})
    pos = lat[lat["seconds"].notna() & (lat["seconds"] > 0)]
    if not pos.empty:
        st.altair_chart(charts.latency(pos, "scheduler", palette.scale(list(run.outcomes), palette.SCHEDULER_COLORS)),
                        width="stretch")
    phone_nav.table(table, "latency", hide_index=False)

# -------------------------------------------------------------------- sharing
st.subheader("Share and save")
st.caption("The address bar always holds a link to this exact view. Save the scenario to run it with "
           "`python -m llmsim run` or to restore it here later (sidebar); the results as CSV.")
dl = st.container(horizontal=True)  # a row that wraps: in three columns a projector (1024 px) cut their texts
if jobs:
    dl.download_button("Download scenario (TOML)", inputs.toml_text(jobs[0].scenario, [j.label for j in jobs]),
                       file_name="llmsim-scenario.toml", mime="application/toml", icon=":material/download:")
if run.outcomes:
    summary = pd.DataFrame([{k: v for k, v in o.summary.items() if not isinstance(v, (list, dict))}
                            for o in run.outcomes.values()])
    dl.download_button("Download results (CSV)", summary.to_csv(index=False), file_name="llmsim-results.csv",
                       mime="text/csv", icon=":material/table:")
    ts = pd.concat([o.timeseries.assign(scheduler=s) for s, o in run.outcomes.items()], ignore_index=True)
    dl.download_button("Download trajectories (CSV)", ts.to_csv(index=False), file_name="llmsim-trajectories.csv",
                       mime="text/csv", icon=":material/show_chart:")
