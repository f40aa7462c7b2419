"""Timeline — what a scheduler puts in each batch, and one request's life."""

from __future__ import annotations

from dataclasses import replace

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import llmsim
from llmsim import SCHEDULERS, ConfigError, budget
from llmsim_ui import entry
from llmsim_ui import controls, inputs, phone_nav, runs, widgets
from llmsim_ui import limits as L
from llmsim_ui.state import Field, PageState
from llmsim_ui.markdown import plain

entry.require_app()

PAGE = "tl"
PHASES = ["waiting", "prefill", "decode"]
PHASE_COLOURS = ["#BBBBBB", "#E69F00", "#0072B2"]

ps = PageState(PAGE, inputs.fields(with_rate=True) + [
    Field("sched", "sarathi", "str", choices=tuple(SCHEDULERS), label="scheduler"),
    Field("n", 30, "int", L.MIN_TIMELINE, L.MAX_TIMELINE, label="requests in the run"),
    Field("req", 0, "int", 0, L.MAX_TIMELINE - 1, label="request to follow"),
])
ps.restore()

st.title("Timeline — what goes into each batch")
status_slot = st.empty()
st.markdown(
    "A short run with every iteration recorded (the paper's Fig. 8, at any size): each row is a request, each "
    "box one iteration it took part in — **prefill** (prompt tokens, possibly in chunks) or **decode** (one "
    "output token) — and grey while it **waits** to be admitted. Switch the scheduler to see how vllm "
    "idles decodes while it prefills, how fastertransformer makes new prompts wait, and how orca and sarathi "
    "mix both in one batch, up to the token budget when enough work waits (below capacity most batches are "
    "not full: there is not that much work). A red tick is a **preemption**: the request's KV cache is dropped, it "
    "waits again and recomputes its context in a later prefill.")

upload = controls.engine_inputs(ps, with_rate=True, sched_label="Scheduler", multi=False,
                                keep_n=False)  # a file's run length is not a timeline's (2 to 300 requests)
with st.sidebar:
    inputs._num(ps, "n", f"Requests in the run ({L.MIN_TIMELINE} to {L.MAX_TIMELINE})", 10,
                help="A timeline is for looking at: a few dozen requests show every pattern.")
ps.publish(ps.visible + ["sched", "n", "req"])
ps.show_url_errors()

errors = inputs.check(ps)
m = L.check("Requests in the run", ps.get("n"), L.MIN_TIMELINE, L.MAX_TIMELINE,
            why="the Single engine page runs up to " f"{L.MAX_REQUESTS:,}")
if m:
    errors.append(m)
controls.show_errors(errors)

try:
    base, extra = inputs.build(ps, int(ps.get("n")), ps.get("rate"), upload, speed=ps.get("speed"))
    sc = replace(base.with_scheduler(ps.get("sched")), drain=True)  # every request finishes
    llmsim.validate(sc)
except ConfigError as exc:
    st.error(f"Cannot run this scenario — {plain(exc)}", icon=":material/block:")
    inputs.raise_budget_button(ps, str(exc), key=f"{PAGE}.raise_b")
    st.stop()
# the iteration log has a row per decode token and prefill chunk, and the charts draw every
# row: 300 requests of 16,384 output tokens were a 227 MB message and 3.9 GB of server memory.
# Counted from the run's own draws (a Simulation draws them without running: ~1 ms for 300
# requests), not from the laws' means: a heavy-tailed law's draws for a chosen seed overran an
# estimate from the mean three times over.
try:
    _draws = llmsim.Simulation(sc)
except ConfigError as exc:
    st.error(f"Cannot run this scenario — {plain(exc)}", icon=":material/block:")
    st.stop()
rows_each = _draws.pool_d + -(-_draws.pool_p // sc.engine.token_budget) + 1  # per request, in draw order
log_rows = int(rows_each.sum())
del _draws
if log_rows > L.MAX_TIMELINE_ROWS:
    # the requests that fit: a shorter run of the same seed draws the same first requests (it said
    # "about 4 requests fit" of a heavy-tailed law whose first 4 did not, and "about 2" where 2, the
    # fewest, did not fit either; a hostile pass)
    fit = int(np.searchsorted(np.cumsum(rows_each), L.MAX_TIMELINE_ROWS, side="right"))
    advice = (f"about {fit:,} requests fit: the first {fit:,} of these draws" if fit >= L.MIN_TIMELINE else
              f"even {L.MIN_TIMELINE} requests are too many at these lengths: outputs of at most about "
              f"{L.MAX_TIMELINE_ROWS // L.MIN_TIMELINE:,} tokens each fit")
    st.error(f"Requests in the run × output tokens: about {log_rows:,} batch entries to draw, above this demo's "
             f"limit of {L.MAX_TIMELINE_ROWS:,}; allowed: fewer requests or shorter outputs ({advice})",
             icon=":material/block:")
    st.stop()


@st.cache_data(max_entries=16, show_spinner=False)
def _run(toml: str, extra_key: str, _sc):
    with runs.hold(budget.check(_sc, runs.LIMITS)["bytes"]):
        # under the dashboard's limits; preemptions' recomputed chunks can pass the estimate above
        res = runs.simulate_small(_sc, record_iterations=True, max_log_rows=L.MAX_TIMELINE_ROWS)
    return res.iterations, res.requests, res.summary


with status_slot.container():
    runs.warm_up(wait=not runs.compiling())  # a cold start: the run goes on in the Python tier
    with st.spinner("Simulating with every iteration recorded…"):
        j = runs.job(sc.engine.scheduler, sc, extra)
        try:
            iters, reqs, summary = _run(j.toml, j.extra_key, sc)
        except ConfigError as exc:  # too big for the demo's limits
            st.error(f"Cannot run this scenario — {plain(exc)}", icon=":material/block:")
            st.stop()
status_slot.empty()
log = iters  # the whole log for the download; the charts draw the batch entries
preempts = iters[iters["phase"] == "preempt"]
iters = iters[iters["phase"] != "preempt"]
if summary.get("stopped"):
    st.warning(summary["stopped"], icon=":material/timer_off:")

e = sc.engine
# a pool's replicas each run their own iterations, numbered from 0 each: a batch is an
# (engine, iteration) pair (grouped by iteration alone, three replicas' batches were summed
# into bars three times the budget; tried as a new user would)
n_reps = max(1, len(e.replicas))
c1, c2, c3, c4 = st.columns(4)
c1.metric("Iterations" if n_reps == 1 else f"Iterations ({n_reps} replicas)", f"{summary['iterations']:,}",
          help=None if n_reps == 1 else "Summed over the replicas: each runs its own iterations, side by side.")
c2.metric("Mean tokens per batch", f"{iters.groupby(['engine', 'iteration'])['tokens'].sum().mean():.0f}",
          help=f"The token budget is b = {e.token_budget}: a work-conserving scheduler fills it whenever "
               "enough work waits." + ("" if n_reps == 1 else " Per batch of one replica."))
c3.metric("Preemptions", f"{summary['preemptions']:,}")
c4.metric("Recomputed tokens", f"{summary['tokens_recomputed']:,}")
SHOWN_PREEMPTED = 12  # preempted requests named, most preempted first
if summary["preemptions"]:  # which requests to follow (260 preemptions and no way to find one; tried as a new user would)
    counts = reqs["preemptions"].to_numpy()
    hit = sorted(np.flatnonzero(counts > 0), key=lambda i: (-counts[i], i))
    st.caption(f"Preempted: request{'s' if len(hit) > 1 else ''} "
               + ", ".join(f"{i} (×{counts[i]})" for i in hit[:SHOWN_PREEMPTED])
               + (f" and {len(hit) - SHOWN_PREEMPTED:,} more" if len(hit) > SHOWN_PREEMPTED else "")
               + " — enter one as the *request to follow* (below, under *Every request's life*) to see its "
               "recomputation.")

# ------------------------------------------------------------------- batches
st.subheader("What each batch holds")
SHOWN_REPLICAS = 8  # one row of batches per replica, at most this many
st.caption(f"Tokens per iteration, prefill and decode stacked, against the iteration's start time; the dashed "
           f"line is the token budget b = {e.token_budget}. Hover for the iteration."
           + ("" if n_reps == 1 else f" One chart per replica, tokens on the vertical axis (each runs its own batches)"
              + (f"; the first {SHOWN_REPLICAS} of {n_reps} are drawn." if n_reps > SHOWN_REPLICAS else ".")))
batch = (iters.groupby(["engine", "iteration", "phase"], as_index=False)
         .agg(start_s=("start_s", "first"), end_s=("end_s", "first"), tokens=("tokens", "sum"),
              requests=("request_id", "nunique")))
if n_reps > SHOWN_REPLICAS:
    batch = batch[batch["engine"].isin([r.name for r in e.replicas[:SHOWN_REPLICAS]])]
# stacked by hand (a bar spanning start..end on x takes its y as a position, not a height):
# prefill from 0, decode on top of it
batch["phase"] = pd.Categorical(batch["phase"], ["prefill", "decode"])
batch = batch.sort_values(["engine", "iteration", "phase"], kind="stable")
batch["y1"] = batch.groupby(["engine", "iteration"])["tokens"].cumsum()
batch["y0"] = batch["y1"] - batch["tokens"]
batch["phase"] = batch["phase"].astype(str)
x_max = float(max(iters["end_s"].max(), reqs["finish_s"].max())) if len(iters) else 1.0
x = alt.X("start_s:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, x_max], nice=False))
colour = alt.Color("phase:N", scale=alt.Scale(domain=PHASES, range=PHASE_COLOURS),
                   legend=alt.Legend(orient="top", title=None))
batch_colour = alt.Color("phase:N", scale=alt.Scale(domain=PHASES[1:], range=PHASE_COLOURS[1:]),
                         legend=alt.Legend(orient="top", title=None))
tips = ([alt.Tooltip("engine:N", title="replica")] if n_reps > 1 else []) + [
    alt.Tooltip("iteration:Q"), alt.Tooltip("phase:N"), alt.Tooltip("tokens:Q"),
    alt.Tooltip("requests:Q", title="requests"), alt.Tooltip("start_s:Q", title="start (s)", format=".3f")]
budget = alt.Chart(pd.DataFrame({"b": [e.token_budget]})).mark_rule(strokeDash=[6, 4], color="#555").encode(y="b:Q")
if n_reps == 1:
    bars = alt.Chart(batch).mark_rect().encode(
        x=x, x2="end_s:Q", y=alt.Y("y0:Q", title="tokens in the batch"), y2="y1:Q", color=batch_colour, tooltip=tips)
    st.altair_chart((bars + budget).properties(height=210), width="stretch")
else:  # one chart per replica, each the page's width (a faceted chart keeps a fixed width)
    names = [r.name for r in e.replicas[:SHOWN_REPLICAS]]
    for i, name in enumerate(names):
        legend = batch_colour if i == 0 else alt.Color(
            "phase:N", scale=alt.Scale(domain=PHASES[1:], range=PHASE_COLOURS[1:]), legend=None)
        bars = alt.Chart(batch[batch["engine"] == name]).mark_rect().encode(
            x=x, x2="end_s:Q", y=alt.Y("y0:Q", title=name), y2="y1:Q", color=legend, tooltip=tips)
        # the height holds the axes (and the first chart's legend): ~90 px of plot each
        st.altair_chart((bars + budget).properties(height=190 if i == 0 else 160), width="stretch")

# -------------------------------------------------------------------- gantt
st.subheader("Every request's life")
n_req = len(reqs)
st.number_input(f"Request to follow (0 to {n_req - 1})", step=1, **ps.w("req"),
                help="Its row is highlighted below, and its events listed.")
req = int(ps.get("req"))
if not 0 <= req < n_req:  # the run's own last request, not a limit of the demo
    st.error(f"Request to follow: {req:,} is not a request of this run; allowed: 0 to {n_req - 1:,}",
             icon=":material/block:")
    req = None

wait = reqs.assign(start_s=reqs["arrival_s"], end_s=reqs["admitted_s"].fillna(x_max), phase="waiting",
                   tokens=0)[["request_id", "start_s", "end_s", "phase", "tokens"]]
# the wait after each preemption: to the request's next batch entry, its readmission (a run that
# ends first: to the chart's end)
rewait = pd.merge_asof(
    preempts[["request_id", "start_s", "tokens"]].sort_values("start_s", kind="stable"),
    iters[["request_id", "start_s"]].rename(columns={"start_s": "end_s"}).sort_values("end_s", kind="stable"),
    left_on="start_s", right_on="end_s", by="request_id", direction="forward")
rewait["end_s"] = rewait["end_s"].fillna(x_max)
boxes = pd.concat([wait, rewait.assign(phase="waiting", tokens=0)[wait.columns],
                   iters[["request_id", "start_s", "end_s", "phase", "tokens"]]], ignore_index=True)
followed = req if req is not None else -1
fade = alt.condition(alt.datum.followed, alt.value(1.0), alt.value(0.4 if req is not None else 1.0))
boxes["followed"] = boxes["request_id"] == followed
height = int(min(900, max(210, 14 * n_req)))
y = alt.Y("request_id:O", title="request", sort="ascending", axis=alt.Axis(labelOverlap=True),
          scale=alt.Scale(domain=list(range(n_req))))
bar_px = max(3, min(12, height // max(n_req, 1) - 2))
gantt = alt.Chart(boxes).mark_bar(height=bar_px).encode(
    x=alt.X("start_s:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, x_max], nice=False)),
    x2="end_s:Q", y=y, color=colour, opacity=fade,
    tooltip=[alt.Tooltip("request_id:O", title="request"), alt.Tooltip("phase:N"), alt.Tooltip("tokens:Q"),
             alt.Tooltip("start_s:Q", title="from (s)", format=".3f"),
             alt.Tooltip("end_s:Q", title="to (s)", format=".3f")],
)
if len(rewait):  # each preemption's moment, a tick across its row
    # a little taller than its row's boxes, never into the next rows (300 rows of 3 px: slashes)
    tick_px = max(bar_px, min(bar_px + 4, height // max(n_req, 1)))
    ticks = alt.Chart(rewait.assign(followed=rewait["request_id"] == followed)).mark_tick(
        color="#C00000", thickness=2, size=tick_px).encode(
        x="start_s:Q", y=y, opacity=fade,
        tooltip=[alt.Tooltip("request_id:O", title="request"), alt.Tooltip("start_s:Q", title="preempted at (s)",
                                                                           format=".3f"),
                 alt.Tooltip("tokens:Q", title="computed tokens lost"),
                 alt.Tooltip("end_s:Q", title="readmitted at (s)", format=".3f")])
if req is not None:
    # the followed row on a band behind it, its boxes in their own colours (a black outline on every
    # box drew a short one all black, hiding the recomputation it was followed for; a hostile pass)
    band = alt.Chart(pd.DataFrame({"request_id": [req]})).mark_rect(color="#FFE08A", opacity=0.6).encode(y=y)
layers = ([band] if req is not None else []) + [gantt] + ([ticks] if len(rewait) else [])
st.altair_chart(alt.layer(*layers).properties(height=height), width="stretch")
st.caption("Grey: waiting to be admitted — the first time, or again after a **preemption** (a red tick: its KV "
           "cache is dropped and it waits at the front of the queue). A gap in a row is an iteration that left the "
           "request out: it is admitted and holds its memory, but the batch went to others (vllm's prefill-only "
           "iterations, a full budget).")

if req is not None:
    r = reqs.iloc[req]
    mine = iters[iters["request_id"] == req]
    pre = mine[mine["phase"] == "prefill"]
    dec = mine[mine["phase"] == "decode"]
    first_dec = dec["start_s"].min() if len(dec) else np.inf
    hits = rewait[rewait["request_id"] == req]
    st.markdown(f"**Request {req}**: {int(r['prompt_tokens'])} prompt tokens, {int(r['output_tokens'])} output "
                f"tokens, " + {0: "never preempted.", 1: "preempted once."}.get(
                    int(r["preemptions"]), f"preempted {int(r['preemptions'])} times."))
    events = [("arrived", r["arrival_s"], "enters the queue"),
              ("admitted", r["admitted_s"], f"waited {widgets.seconds(r['admitted_s'] - r['arrival_s'])}")]
    for _, h in hits.iterrows():
        lost = int(h["tokens"])
        events.append(("preempted", h["start_s"], f"loses {lost:,} computed token{'' if lost == 1 else 's'} (its KV "
                       f"cache); waits {widgets.seconds(h['end_s'] - h['start_s'])}, first in line"))
    # a prompt's chunks as one event, and each recomputation as one (a budget of 1 listed 19,000
    # one-token chunks, a row each; a hostile pass): chunks between the same two decodes or
    # preemptions go together
    marks = np.sort(np.concatenate([dec["start_s"].to_numpy(), hits["start_s"].to_numpy()]))
    for _, g in pre.groupby(np.searchsorted(marks, pre["start_s"].to_numpy()), sort=True):
        after = (hits["start_s"] <= g["start_s"].iloc[0]).any()
        what = "recomputation after a preemption" if after else "prefill"
        tok, its = int(g["tokens"].sum()), g["iteration"].astype(int)
        where = (f"iteration {its.iloc[0]:,}" if len(g) == 1 else
                 f"{len(g):,} iterations ({its.min():,} to {its.max():,})")
        events.append((what, g["start_s"].iloc[0], f"{tok:,} token{'' if tok == 1 else 's'} in {where}"))
    events.append(("first token", r["first_token_s"], f"TTFT {widgets.seconds(r['first_token_s'] - r['arrival_s'])}"))
    events.append(("decoding", first_dec if np.isfinite(first_dec) else np.nan,
                   f"{len(dec):,} decode iteration{'' if len(dec) == 1 else 's'}, one token each"))
    events.append(("finished", r["finish_s"], f"end-to-end {widgets.seconds(r['finish_s'] - r['arrival_s'])}"))
    table = pd.DataFrame([{"event": a, "time (s)": round(float(t), 4) if pd.notna(t) else None, "detail": d}
                          for a, t, d in events])
    phone_nav.table(table.sort_values("time (s)", kind="stable"), "events", hide_index=True)
    if len(hits):
        st.caption("The KV cache ran out: the request was preempted (its cache dropped), waited again, and "
                   "recomputed its context — its prompt and the tokens it had generated — before decoding on.")

st.download_button("Download the iteration log (CSV)", log.to_csv(index=False), file_name="llmsim-iterations.csv",
                   mime="text/csv", icon=":material/table:")
