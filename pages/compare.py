"""Compare — two engine configurations on the same arrivals."""

from __future__ import annotations

import re
from dataclasses import replace

import pandas as pd
import streamlit as st

import llmsim
from llmsim import SCHEDULERS, ConfigError
from llmsim.presets import HARDWARE_PRESETS
from llmsim_ui import entry
from llmsim_ui import charts, controls, inputs, palette, phone_nav, runs, widgets
from llmsim_ui import limits as L
from llmsim_ui.state import Field, PageState
from llmsim_ui.markdown import plain

entry.require_app()

PAGE = "cmp"
SAME = "same as A"
METRICS = {"waiting": "Waiting requests", "backlog_tokens": "Backlog (tokens)",
           "kv_tokens": "KV cache in use (%)"}
FORMATS = {"Backlog (tokens)": "~s"}
# A and B: colours no scheduler has (B in orange read as vllm's or fastertransformer's on the
# other pages, tried as a new user would); two different schedulers keep their own
SAME_SCHEDULER_COLOURS = {"A": "#CC79A7", "B": "#56B4E9"}

ps = PageState(PAGE, inputs.fields(with_rate=True) + [
    Field("sched", "sarathi", "str", choices=tuple(SCHEDULERS), label="scheduler of A"),
    Field("n", 20_000, "int", L.MIN_REQUESTS, L.MAX_REQUESTS, label="requests per configuration"),
    # configuration B: what differs from A (by default a KV cache of 25,000 tokens: memory binds, requests are preempted)
    Field("b_sched", "sarathi", "str", choices=tuple(SCHEDULERS), label="scheduler of B"),
    Field("b_hw", SAME, "str", choices=(SAME,) + tuple(HARDWARE_PRESETS), label="GPU / model of B"),
    Field("b_budget", 512, "int", 1, L.MAX_BUDGET, label="token budget of B"),
    Field("b_kv", 25_000, "int", L.MIN_KV, L.MAX_KV, label="KV cache of B (tokens)"),
    Field("b_kmax", 0, "int", 0, L.MAX_BATCH, label="max batch size of B"),
    Field("scale", "linear", "str", choices=("log", "linear"), label="y scale"),
    Field("live", True, "bool", label="play live"),
])
ps.restore()


def _b_hw_changed() -> None:
    """B's GPU/model brings its KV cache, as choosing a GPU/model for A does (B kept its
    25,000 tokens beside a preset of 121,750 and the capacity gap went unexplained; tried as
    a new user would); the KV field stays editable."""
    hw = ps.get("b_hw")
    if hw in HARDWARE_PRESETS:
        ps.set("b_kv", inputs.preset_kv(hw))


if "b_hw" in ps.from_url and "b_kv" not in ps.from_url:  # a link's preset: as on the page
    _b_hw_changed()
    if ps.get("b_hw") in HARDWARE_PRESETS:
        ps.used_instead("b_kv", f"the preset's {ps.get('b_kv'):,}")

st.title("Compare — two configurations, same arrivals")
status_slot = st.empty()
st.markdown(
    "Configuration **A** is the engine in the sidebar; **B** changes what you choose under *Configuration B*, "
    "at the end of the sidebar (KV cache, token budget, GPU/model, scheduler). Both get exactly the same requests at the same times (same workload, same seed), "
    "so every difference below comes from the configuration.")

upload = controls.engine_inputs(ps, with_rate=True, sched_label="Scheduler of A", multi=False)
with st.sidebar:
    st.subheader("Configuration B", divider="gray")
    st.selectbox("Scheduler of B", list(SCHEDULERS), **ps.w("b_sched", list(SCHEDULERS)),
                 help=controls.SCHEDULER_HELP)
    b_hw_opts = list(ps.by_name["b_hw"].choices)
    st.selectbox("GPU / model of B", b_hw_opts, **ps.w("b_hw", b_hw_opts), on_change=_b_hw_changed,
                 help="'same as A': A's batch time; a preset: its published batch-time fit, and its KV cache "
                      "(set below, editable).")
    inputs._num(ps, "b_budget", "Token budget of B", 64)
    inputs._num(ps, "b_kv", "KV cache of B (tokens)", 10_000)
    inputs._num(ps, "b_kmax", "Max batch size of B (0 = no limit)", 8)
    inputs._num(ps, "n", f"Requests per configuration (up to {L.MAX_REQUESTS:,})", 5_000)
b_fields = ["sched", "b_sched", "b_hw", "b_budget", "b_kv", "b_kmax", "n", "scale", "live"]
ps.publish(ps.visible + b_fields)
ps.show_url_errors()

errors = inputs.check(ps)
for name in ("b_budget", "b_kv", "b_kmax", "n"):
    f = ps.by_name[name]
    m = L.check(f.label[:1].upper() + f.label[1:], ps.get(name), f.lo, f.hi, why=L.CLI_HINT if name == "n" else "")
    if m:
        errors.append(m)
controls.show_errors(errors)

try:
    base, extra = inputs.build(ps, ps.get("n"), ps.get("rate"), upload, speed=ps.get("speed"))
except ConfigError as exc:
    st.error(f"Cannot run this scenario — {plain(exc)}", icon=":material/block:")
    st.stop()

sc_a = base.with_scheduler(ps.get("sched"))
changes = {"scheduler": ps.get("b_sched"), "token_budget": int(ps.get("b_budget")),
           "kv_cache_tokens": int(ps.get("b_kv")), "max_batch_size": int(ps.get("b_kmax")) or None}
if ps.get("b_hw") != SAME:
    hp = HARDWARE_PRESETS[ps.get("b_hw")]
    changes.update(batch_time=llmsim.config.batch_time(hp.batch_time, ps.get("b_hw")), preset=ps.get("b_hw"))
eng_b = replace(sc_a.engine, **changes)
if eng_b.replicas:  # a pool (replicas in the sidebar): B's changes apply to every replica
    eng_b = replace(eng_b, replicas=tuple(replace(r, **changes) for r in eng_b.replicas))
sc_b = replace(sc_a, engines=(eng_b,))  # validated below


def _describe(sc) -> str:
    e = sc.engine
    kmax = f", at most {e.max_batch_size} per batch" if e.max_batch_size else ""
    pool = f"{len(e.replicas)} replicas ({e.router}) of " if e.replicas else ""
    return f"{pool}{e.scheduler}, b = {e.token_budget:,}, KV {e.kv_cache_tokens:,} tokens{kmax}; t(n) = {e.batch_time.describe()}"


configs = {"A": sc_a, "B": sc_b}
COLOURS = ({k: palette.SCHEDULER_COLORS[sc.engine.scheduler] for k, sc in configs.items()}
           if sc_a.engine.scheduler != sc_b.engine.scheduler else SAME_SCHEDULER_COLOURS)
jobs, refused, theories = [], {}, {}
for label, sc in configs.items():
    try:
        llmsim.validate(sc)
        j = runs.job(label, sc, extra)
        jobs.append(j)
        theories[label] = runs.theory(j)
    except ConfigError as exc:
        refused[label] = str(exc)

# ------------------------------------------------------------- the two configurations
cols = st.columns(2)
for col, (label, sc) in zip(cols, configs.items()):
    with col:
        widgets.swatch(f"Configuration {label}", COLOURS[label])
        st.caption(_describe(sc))
        th = theories.get(label)
        if th is not None:
            sched = sc.engine.scheduler
            # values on one line: labels of one, two and three lines had them at three heights (at 1024 px)
            m1, m2, m3 = st.columns(3, vertical_alignment="bottom")
            m1.metric("Load ρ", f"{th.load:.3g}",  # as the sidebar writes it (0.93 beside its 0.927)
                      help=f"Arriving work over the best possible capacity. The load over {sched}'s own "
                           f"capacity: {th.scheduler_load:.2f}.")
            m2.metric("Best capacity (req/s)", widgets.fmt(th.optimal_capacity_rps, zeros=True),
                      help=widgets.capacity_help(None))
            m3.metric(f"{sched}'s capacity (req/s)",
                      widgets.fmt(th.capacity_rps, zeros=True) if th.capacity_rps else "—",
                      help=f"What {sched} itself sustains by theory: {widgets.sentence(th.engines[0].capacity_kind)}")

run_row = st.columns([2, 5], vertical_alignment="top")
button_slot, progress_slot = controls.run_slot(run_row[0]), run_row[1].empty()

key = tuple((j.toml, j.extra_key) for j in jobs)
run = None if controls.wants_new_run(PAGE, key) else runs.session_run(PAGE)

card_cols = phone_nav.card_columns(2, "Verdicts", help=widgets.VERDICT_MEANING)
cards = {label: c.empty() for label, c in zip(configs, card_cols)}
fixes = {label: c.empty() for label, c in zip(configs, card_cols)}  # drawn once: buttons need unique keys
BUDGET_FIELD = {"A": "budget", "B": "b_budget"}
for label in refused:  # a scheduler that never chunks, below the longest prompt: raise that b to fit
    inputs.raise_budget_button(ps, refused[label], key=f"{PAGE}.raise_b.{label}", container=fixes[label],
                               field=BUDGET_FIELD[label])


FIELD_NAMES = {"token_budget": "token budget", "kv_cache_tokens": "KV cache", "max_batch_size": "max batch size",
               "scheduler": "scheduler"}


def _on_card(label: str, message: str) -> str:
    """A refusal in the card's words: "engine.token_budget = 16" on B's card read as A's engine,
    or as the sidebar's (tried as a new user would): the configuration's own field names, for
    one engine or a pool's replica ("engine replica 0.token_budget", "engine: kv_cache_tokens")."""
    for field, name in FIELD_NAMES.items():
        message = re.sub(rf"engine(?: replica \d+)?(?:\.|: ){field}\b", f"{label}'s {name}", message)
        message = re.sub(rf"\b{field}\b", name, message)
    return message.replace(">=", "≥")


def _draw_cards(run: runs.LiveRun | None) -> None:
    for label in configs:
        with cards[label].container():
            widgets.swatch(label, COLOURS[label])
            if label in refused:
                widgets.badge("error")
                st.caption(plain(_on_card(label, refused[label])))
            elif run is not None and label in run.errors:
                widgets.badge("error")
                st.caption(plain(run.errors[label]))
            elif run is not None and label in run.outcomes:
                o = run.outcomes[label]
                widgets.badge(o.verdict.verdict)
                st.caption(o.verdict.explanation)
                if o.summary.get("stopped"):  # spent the demo's work budget: partial results
                    st.warning(o.summary["stopped"], icon=":material/timer_off:")
                widgets.evidence(o.verdict, [("throughput", widgets.fmt(o.summary["throughput_rps"],
                                                                        unit=" req/s"))], summary=o.summary,
                                 note=widgets.throughput_note(o.summary, o.verdict))
            else:
                widgets.badge("stopped" if run is not None and run.stopped else "running")
                if run is None or not run.stopped:
                    st.caption(runs.running_note())


_draw_cards(run)
if not jobs:
    controls.nothing_ran(progress_slot, "both configurations are")

st.subheader("Queue-length trajectories")
st.caption("The same arrivals into A and B: waiting requests, backlog (tokens not yet processed) and the KV "
           "cache in use, over simulated time. Once the run has ended, hover for values and click a legend entry to "
           "highlight one in that panel.")
ctl1, ctl2 = st.columns([2, 5])
ctl1.radio("Vertical scale", ["linear", "log"], **ps.w("scale", ["linear", "log"]), horizontal=True)
ctl2.toggle("Play live", **ps.w("live"))
near_slot = controls.run_slot(st, key="phone-replay")  # the run's button again, on a phone only
chart_slots = phone_nav.chart_slots(len(METRICS))
kv = {j.label: charts.kv_capacity(j.scenario.engine) for j in jobs}  # a pool's: all its replicas'
cscale = palette.scale(list(COLOURS), COLOURS)


def _draw_chart(run: runs.LiveRun, live: bool = False) -> None:
    trajs = run.trajectories()
    if not trajs:
        return
    df = pd.concat([charts.long_trajectories({label: ts}, METRICS, "configuration",
                                             {"kv_tokens": 100.0 / kv[label]},
                                             charts.LIVE_POINTS if live else charts.MAX_POINTS)
                    for label, ts in trajs.items()], ignore_index=True)
    x_max = max([run.end] + [o.summary["horizon_seconds"] for o in run.outcomes.values()])
    specs = charts.trajectories(df, "configuration", cscale, list(METRICS.values()), x_max,
                                log=ps.get("scale") != "linear", formats=FORMATS, live=live)
    for slot, spec in zip(chart_slots, specs):
        slot.vega_lite_chart(spec=spec, width="stretch")


if run is None:
    run = controls.start_run(PAGE, key, jobs, status_slot)
    _draw_cards(run)
controls.play_controls(PAGE, run, button_slot, progress_slot, lambda r: _draw_chart(r, live=True),
                       bool(ps.get("live")), on_end=_draw_cards, near_slot=near_slot)
_draw_chart(run)
for label, msg in run.errors.items():  # e.g. vllm froze: a preempted request's recompute above b
    inputs.raise_budget_button(ps, msg, key=f"{PAGE}.raise_b_run.{label}", container=fixes[label],
                               field=BUDGET_FIELD[label])

# ---------------------------------------------------------------- side by side
if run.outcomes:
    st.subheader("Side by side")
    rows = [("verdict", lambda o: o.verdict.verdict), ("throughput (req/s)", lambda o: widgets.fmt(o.summary["throughput_rps"])),
            ("TTFT p50", lambda o: widgets.seconds(o.summary.get("ttft_p50_s"))),
            ("TTFT p99", lambda o: widgets.seconds(o.summary.get("ttft_p99_s"))),
            ("TBT p50", lambda o: widgets.seconds(o.summary.get("tbt_p50_s"))),
            ("end-to-end p99", lambda o: widgets.seconds(o.summary.get("e2e_p99_s"))),
            ("preemptions", lambda o: f"{o.summary.get('preemptions', 0):,}"),
            ("recomputed tokens", lambda o: f"{o.summary.get('tokens_recomputed', 0):,}"),
            ("completed", lambda o: f"{o.summary.get('completed', 0):,} of {o.summary.get('arrived', 0):,}")]
    table = pd.DataFrame({label: {name: f(o) for name, f in rows} for label, o in run.outcomes.items()})
    phone_nav.table(table, "side-by-side", hide_index=False)
    for label, o in run.outcomes.items():
        if widgets.zero_throughput(o.summary, o.verdict):
            st.caption(f"**{label}**: {'few requests' if o.summary.get('completed') else 'no request'} "
                       f"finished before the run ended, so its throughput is "
                       f"{'near ' if o.summary.get('completed') else ''}0; why is under its verdict above.")
    # one file per configuration: the two in one file declared [workload] twice, and
    # `python -m llmsim run` refused it ("Cannot declare ('workload',) twice")
    dl = st.columns(len(COLOURS))
    for col, label in zip(dl, COLOURS):
        job = next((j for j in jobs if j.label == label), None)
        if job is None:
            col.caption(f"Configuration {label} has an error (above): no scenario file to download.")
            continue
        col.download_button(f"Download configuration {label} (TOML)", inputs.toml_text(job.scenario),
                            file_name=f"llmsim-compare-{label}.toml", mime="application/toml",
                            icon=":material/download:", key=f"{PAGE}.dl.{label}")
