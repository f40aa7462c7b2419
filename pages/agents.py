"""Agent workflows — is my workflow stable?"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

import llmsim
from llmsim import SCHEDULERS, ConfigError
from llmsim import budget
from llmsim.config import POLICIES
from llmsim.pool import ROUTERS, make_pool
from llmsim_ui import entry, inputs
from llmsim_ui import charts, controls, network, palette, phone_nav, runs, uploads, widgets
from llmsim_ui import limits as L
from llmsim_ui.markdown import plain
from llmsim_ui.state import Field, PageState

entry.require_app()

PAGE = "agents"
AGENTS_DIR = Path(__file__).resolve().parent.parent / "scenarios" / "agents"
ORDER = ["cyclic", "tandem", "fork_join", "react", "two_class"]
PRESETS = sorted((p.stem for p in AGENTS_DIR.glob("*.toml")), key=lambda n: (ORDER.index(n) if n in ORDER else 99, n))
UPLOADED = "uploaded"
VARIANTS = ("fcfs", "priority", "reversed priority", "max-pressure")
AS_CONFIGURED = "as configured"
MAX_LINK_TOML = 4000  # characters of compressed TOML a link may carry

ps = PageState(PAGE, [
    Field("preset", "cyclic" if "cyclic" in PRESETS else PRESETS[0], "str", choices=tuple(PRESETS) + (UPLOADED,),
          label="workflow"),
    Field("pol", list(VARIANTS), "list", choices=VARIANTS + (AS_CONFIGURED,), label="policies"),
    Field("seed", 1, "int", 0, L.MAX_SEED, label="seed"),
    Field("scale", "linear", "str", choices=("linear", "log"), label="y scale"),
    Field("live", True, "bool", label="play live"),
])


def _encode(text: str) -> str:
    return uploads.encode_link_toml(text)


def _decode(s: str) -> str:
    return uploads.decode_link_toml(s)


def _upload_cb() -> None:
    f = st.session_state.get(f"{PAGE}.toml_file")
    if f is None:
        return
    from llmsim_ui import inputs
    try:
        sc, text = inputs.read_upload(f)
        if sc.single:
            raise ConfigError(f"{f.name}: this is a single-engine scenario ([workload] + [engine]); open it on the "
                              "'Single engine' page. This page needs [[engines]] and [[workflows]]")
    except ConfigError as exc:
        st.session_state[f"{PAGE}.upload_msg"] = ("error", str(exc))
        return
    st.session_state[f"{PAGE}.uploaded"] = text
    st.session_state[ps.key("preset")] = UPLOADED
    if 0 <= sc.seed <= L.MAX_SEED:  # the file's own seed, not the one the sidebar held before
        st.session_state[ps.key("seed")] = int(sc.seed)
    st.session_state[f"{PAGE}.ignore_url"] = True
    st.session_state[f"{PAGE}.upload_msg"] = ("ok", f"Loaded {f.name}.")


def _preset_cb() -> None:
    # the URL's per-engine values belong to the previous workflow
    st.session_state[f"{PAGE}.ignore_url"] = True


ps.restore()
link_file = False  # a file first read from this visit's link: its seed applies, as an upload's does
if "toml" in st.query_params and f"{PAGE}.uploaded" not in st.session_state:
    try:
        st.session_state[f"{PAGE}.uploaded"] = _decode(st.query_params["toml"])
        link_file = True
        if "preset" not in st.query_params:  # a link with a file and no preset= showed the default preset
            st.session_state[ps.key("preset")] = UPLOADED
    except ConfigError as exc:
        ps.url_errors.append(str(exc))

st.title("Agent workflows — is my workflow stable?")
status_slot = st.empty()
st.markdown(
    "An **agent workflow** is a chain (or graph) of LLM calls: a planner call, then tools, then an executor "
    "call, possibly in parallel or in loops. Several engines serve several workflow classes, and each engine "
    "picks which waiting call (which **buffer**) to serve next by a **policy**: first come first served "
    "(*fcfs*), a fixed *priority* order, or *max-pressure*. Every engine below capacity (load ρ < 1) is "
    "necessary for stability but, with loops between engines, not enough: the policy decides.")

# ------------------------------------------------------------------- inputs
with st.sidebar:
    st.selectbox("Workflow", ps.by_name["preset"].choices, **ps.w("preset", ps.by_name["preset"].choices),
                 on_change=_preset_cb,
                 format_func=lambda p: "uploaded file" if p == UPLOADED else f"preset: {p}")
    st.file_uploader("…or upload a network scenario (TOML)", type=["toml"], key=f"{PAGE}.toml_file",
                     on_change=_upload_cb)
    kind, msg = st.session_state.pop(f"{PAGE}.upload_msg", ("", ""))
    if msg:
        (st.success if kind == "ok" else st.error)(plain(msg))

preset = ps.get("preset")
try:
    if preset == UPLOADED:
        text = st.session_state.get(f"{PAGE}.uploaded")
        if text is None:
            raise ConfigError("workflow: 'uploaded file' chosen but no file is loaded in this session; "
                              "upload a scenario TOML (sidebar) or choose a preset")
        file_sc = uploads.scenario_from_text(text)
        if file_sc.single:  # a link's file too (an upload is refused in _upload_cb): the page drew nothing
            raise ConfigError("this is a single-engine scenario ([workload] + [engine]); open it on the "
                              "'Single engine' page. This page needs [[engines]] and [[workflows]]")
    else:
        text = (AGENTS_DIR / f"{preset}.toml").read_text()
        file_sc = llmsim.load_scenario(AGENTS_DIR / f"{preset}.toml")
except ConfigError as exc:
    ps.publish(["preset"])
    ps.show_url_errors()
    st.error(f"Cannot load this workflow — {plain(exc)}", icon=":material/block:")
    st.stop()

if preset == UPLOADED and link_file and "seed" not in ps.from_url and 0 <= file_sc.seed <= L.MAX_SEED:
    st.session_state[ps.key("seed")] = int(file_sc.seed)
    ps.used_instead("seed", f"the file's seed {file_sc.seed}")
file_notes = []  # what of the file this page does not run as written (it ran silently otherwise)
if preset == UPLOADED:
    if file_sc.duration_seconds:
        file_notes.append(f"The file's duration_seconds = {file_sc.duration_seconds:,g} is not used here: this page "
                          f"runs a number of workflows (below); the command line runs a file as written: "
                          "python -m llmsim run scenario.toml")
    if not 0 <= file_sc.seed <= L.MAX_SEED:
        file_notes.append(f"The file's seed = {file_sc.seed:,} is outside this page's 0 to {L.MAX_SEED:,}: the "
                          "sidebar's seed is used.")
    if file_sc.num_requests and not L.MIN_REQUESTS <= file_sc.num_requests <= L.MAX_REQUESTS:
        file_notes.append(f"The file's num_requests = {file_sc.num_requests:,} is outside this page's "
                          f"{L.MIN_REQUESTS:,} to {L.MAX_REQUESTS:,} workflows per run: the nearest is used; the "
                          "command line runs a file as written: python -m llmsim run scenario.toml")
desc = file_sc.description or ""
desc_slot = st.empty()  # filled once the sidebar's values are known (a changed rate outdates the description)
for m in file_notes:
    st.info(plain(m), icon=":material/info:")

# per-file fields: the workflow's own arrival rates, engines and step priorities
rank = network.ranks(file_sc)
file_n = file_sc.num_requests or 20_000
dyn = [Field("n", int(min(max(file_n, L.MIN_REQUESTS), L.MAX_REQUESTS)), "int", L.MIN_REQUESTS, L.MAX_REQUESTS,
             label="workflows per run")]
dyn += [Field(f"rate{i}", float(w.arrival.rate), "float", L.MIN_RATE, L.MAX_RATE, label=f"{w.name} arrival rate")
        for i, w in enumerate(file_sc.workflows)]
for i, e in enumerate(file_sc.engines):
    dyn += [Field(f"e{i}_sched", e.scheduler, "str", choices=tuple(SCHEDULERS), label=f"{e.name} scheduler"),
            Field(f"e{i}_budget", e.token_budget, "int", 1, L.MAX_BUDGET, label=f"{e.name} token budget"),
            Field(f"e{i}_policy", e.policy, "str", choices=tuple(POLICIES), label=f"{e.name} policy"),
            Field(f"e{i}_reps", max(1, len(e.replicas)), "int", 1, inputs.MAX_UI_REPLICAS,
                  label=f"{e.name} replicas"),
            Field(f"e{i}_router", e.router, "str", choices=tuple(ROUTERS), label=f"{e.name} router")]
steps = [(w, s) for w in file_sc.workflows for s in w.steps]
dyn += [Field(f"prio_{w.name}.{s.name}", rank[f"{w.name}.{s.name}"], "int", 0, L.MAX_PRIORITY,
              label=f"priority of {w.name}.{s.name}") for w, s in steps]
file_key = preset if preset != UPLOADED else "up" + hashlib.sha256(text.encode()).hexdigest()[:8]
dps = PageState(f"{PAGE}.{file_key}", dyn)
dps.restore(use_url=not st.session_state.get(f"{PAGE}.ignore_url"))
st.session_state[f"{PAGE}.ignore_url"] = False
if desc:
    changed = [f.label for f in dyn if f.name != "n" and dps.get(f.name) != f.default]
    desc_slot.caption(f"**{plain(preset)}**: {plain(desc)}"
                      + (f" — as the file has it; changed here: {plain(', '.join(changed[:3]))}"
                         f"{' …' if len(changed) > 3 else ''}, so the loads below are yours" if changed else ""))

with st.sidebar:
    st.subheader("Arrivals", divider="gray")
    for i, w in enumerate(file_sc.workflows):
        st.number_input(f"{w.name}: workflows per second", step=0.1, format="%.3f",
                        **dps.w(f"rate{i}"))
    st.subheader("Engines", divider="gray")
    for i, e in enumerate(file_sc.engines):
        with st.expander(f"{e.name}", expanded=len(file_sc.engines) <= 2):
            st.selectbox("Scheduler", list(SCHEDULERS), **dps.w(f"e{i}_sched", list(SCHEDULERS)))
            st.number_input("Token budget b", step=64, **dps.w(f"e{i}_budget"))
            st.selectbox("Policy (as configured)", list(POLICIES), **dps.w(f"e{i}_policy", list(POLICIES)),
                         help="Used by the 'as configured' run; the comparison below applies each policy "
                              "to every engine.")
            inputs.replicas_panel(dps, f"e{i}_reps", f"e{i}_router", st)
    st.subheader("Step priorities", divider="gray",
                 help="Used by the 'priority' policy: at each engine, the buffer with the smallest number is "
                      "served first (strict, non-preemptive); equal numbers are served in the order the steps "
                      "appear in the file. 'reversed priority' flips the order at every engine.")
    for w, s in steps:
        st.number_input(f"{w.name}.{s.name} (at {s.engine})", step=1,
                        **dps.w(f"prio_{w.name}.{s.name}"))
    st.subheader("Run", divider="gray")
    st.multiselect("Policies to compare", list(VARIANTS) + [AS_CONFIGURED], **ps.w("pol"))
    st.number_input(f"Workflows per run (up to {L.MAX_REQUESTS:,})", step=5_000, **dps.w("n"))
    st.number_input("Random seed", step=1, **ps.w("seed"))

extra_qp = {}
if preset == UPLOADED:
    enc = _encode(text)
    if len(enc) <= MAX_LINK_TOML:
        extra_qp["toml"] = enc
ps.publish(["preset", "pol", "seed", "scale", "live"], extra=extra_qp | {
    f.name: f.encode(dps.get(f.name)) for f in dyn})
ps.show_url_errors()
dps.show_url_errors()
if preset == UPLOADED and "toml" not in extra_qp:
    st.info("This uploaded scenario is too large to carry in a link; share the TOML file instead.")

# ------------------------------------------------------------------ checks
errors = []
for f in dyn:
    if f.kind in ("int", "float"):
        m = L.check(f.label[:1].upper() + f.label[1:], dps.get(f.name), f.lo, f.hi,
                    why=L.CLI_HINT if f.name == "n" else "")
        if m:
            errors.append(m)
seed_msg = L.check("Random seed", ps.get("seed"), 0, L.MAX_SEED)
if seed_msg:
    errors.append(seed_msg)
if not ps.get("pol"):
    errors.append("Policies to compare: choose at least one.")
if errors:
    for e in errors:
        st.error(e, icon=":material/block:")
    st.stop()

# ------------------------------------------------------------------ build
def _pooled(base, file_engine, k, router):
    """The engine `base` (the page's scheduler, budget, policy) as a pool of k replicas: the
    file's own replicas when their number is kept (with the page's scheduler and budget),
    else k copies of base; k = 1 is the engine alone."""
    base = replace(base, replicas=())
    if k <= 1:
        return base
    if len(file_engine.replicas) == k:
        reps = [replace(r, scheduler=base.scheduler, token_budget=base.token_budget) for r in file_engine.replicas]
    else:
        reps = [base] * k
    return make_pool(base, reps, router)


try:
    sc = replace(file_sc, num_requests=int(dps.get("n")), duration_seconds=None, drain=False, seed=int(ps.get("seed")),
                 name=file_sc.name or preset)
    for i in range(len(sc.workflows)):
        sc = sc.with_rate(float(dps.get(f"rate{i}")), workflow=i)
    engines = tuple(_pooled(replace(e, scheduler=dps.get(f"e{i}_sched"), token_budget=int(dps.get(f"e{i}_budget")),
                                    policy=dps.get(f"e{i}_policy")), e, int(dps.get(f"e{i}_reps")),
                            dps.get(f"e{i}_router")) for i, e in enumerate(sc.engines))
    prios = {f"{w.name}.{s.name}": int(dps.get(f"prio_{w.name}.{s.name}")) for w, s in steps}
    wfs = tuple(replace(w, steps=tuple(replace(s, priority=prios[f"{w.name}.{s.name}"]) for s in w.steps))
                for w in sc.workflows)
    sc = replace(sc, engines=engines, workflows=wfs)
    llmsim.validate(sc)
    # before the theory and the drawing: a huge network costs there too
    budget.check(sc, runs.LIMITS, min_requests=L.MIN_REQUESTS)
except ConfigError as exc:
    st.error(f"Cannot run this workflow — {plain(exc)}", icon=":material/block:")
    # a scheduler that never chunks a prompt on an engine whose budget is below its longest
    # prompt: the fix, as on the single-engine page (the page offered none)
    for i, e in enumerate(file_sc.engines):  # the library names a network's engine's field "engine1.token_budget"
        if re.search(rf"(?<![\w.-]){re.escape(e.name)}(?: replica \d+)?\.token_budget\b", str(exc)):
            inputs.raise_budget_button(dps, str(exc), key=f"{PAGE}.raise_b.{i}", field=f"e{i}_budget", owner=e.name)
            break
    st.stop()

# reversed priority: flip each engine's order
order = network.ranks(sc)
reversed_prios = {}
for e in sc.engines:
    mine = [name for name in order if name in {f"{w.name}.{s.name}" for w in sc.workflows for s in w.steps
                                               if s.engine == e.name}]
    n_e = len(mine)
    for name in mine:
        reversed_prios[name] = n_e - 1 - order[name]

chosen = list(ps.get("pol"))
configured = {e.policy for e in sc.engines}
if AS_CONFIGURED not in chosen and not (len(configured) == 1 and next(iter(configured)) in chosen):
    chosen.append(AS_CONFIGURED)  # the engines' own (edited) policies differ from every run above
variants = {}
for v in chosen:
    if v == "reversed priority":
        variants[v] = sc.with_policy("priority", reversed_prios)
    elif v == AS_CONFIGURED:
        variants[v] = sc
    else:
        variants[v] = sc.with_policy(v)
jobs = [runs.job(v, s) for v, s in variants.items()]

# -------------------------------------------------------------- the network
try:
    th = runs.theory(runs.job("configured", sc))
except ConfigError as exc:  # theory's LP defeated by costs many decades apart: say which input
    st.error(f"Cannot analyse this workflow — {plain(exc)}", icon=":material/block:")
    st.stop()
loads = {e.name: e.load for e in th.engines}
# the diagram gets the page's full width: in a column its text shrank to ~7 px at 1400 px
a, b = st.container(), st.container()
with a:
    st.subheader("The network")
    wide = network.side_by_side(sc)
    phone_nav.graph(network.dot(sc, loads), wide, network.drawing_px(sc, loads) if wide else 0, "the network")
    st.caption("Each grey panel is an engine. Inside it, each coloured box is a buffer: the calls of one workflow "
               "step waiting at that engine, drawn in the colour of its line in the charts of waiting calls "
               "below. Arrows give the order of a workflow's calls, each in the colour of the buffer it leaves "
               "(p: routing probability; ×k: k parallel calls; double border: a join that waits for all its "
               "parents).")
with b:
    st.subheader("Load per engine")
    phone_nav.table(pd.DataFrame([{"engine": e.name, "capacity b/t(b), tok/s": round(e.token_capacity),
                                   "arriving, tok/s": round(e.offered_tokens_per_s), "load ρ": round(e.load, 3)}
                                  for e in th.engines]), "engine-load", hide_index=True,
                    column_config={"capacity b/t(b), tok/s": st.column_config.NumberColumn(format="localized"),
                                   "arriving, tok/s": st.column_config.NumberColumn(format="localized"),
                                   "load ρ": st.column_config.NumberColumn(format="%.3f")})
    st.caption("Load ρ = calls arriving per second at the engine ÷ the most calls per second it can serve of its "
               "mix of steps (its stability region, which prices every batch at its own time, and its memory bound). "
               "The table gives the same in tokens: without a batch-size cap or a binding memory, ρ is about "
               "arriving tok/s ÷ b/t(b). "
               "Every ρ < 1 is necessary; whether it is enough depends on the policy (see below).")

# ---------------------------------------------------------------- the runs
key = tuple((j.toml, j.extra_key) for j in jobs)
run = controls.start_run(PAGE, key, jobs, status_slot)

labels = [j.label for j in jobs]
cols = phone_nav.card_columns(
    len(labels), "Verdict per policy", help=widgets.VERDICT_MEANING,
    caption="The same arrivals, run once per policy applied to every engine. *priority*: the step priorities "
            "(sidebar; equal numbers go in the file's step order); *reversed priority*: the opposite order at every "
            "engine. A policy is unstable when some buffer keeps growing — it is named.")
cards = {}
for col, v in zip(cols, labels):
    with col:
        # a neutral square: the page's colours are its buffers' (a policy's own colour matched a
        # buffer's line below it; tried as a new user would)
        widgets.swatch(v, palette.NEUTRAL, row=labels)
        cards[v] = st.empty()


def _draw_cards(run: runs.LiveRun) -> None:
    for v in labels:
        with cards[v].container():
            if v in run.errors:
                widgets.badge("error")
                st.caption(plain(run.errors[v]))
            elif v in run.outcomes:
                o = run.outcomes[v]
                widgets.badge(o.verdict.verdict)
                st.caption(o.verdict.explanation)
                if o.summary.get("stopped"):  # spent the demo's work budget: partial results
                    st.warning(o.summary["stopped"], icon=":material/timer_off:")
                s = o.summary
                widgets.evidence(o.verdict, summary=s, parts=False, extra=[
                    ("workflows done", f"{s.get('workflows_completed', 0):,} of {s.get('workflows_arrived', 0):,}"),
                    ("workflow latency p50 / p99", f"{widgets.seconds(s.get('workflow_e2e_p50_s'))} / "
                                                   f"{widgets.seconds(s.get('workflow_e2e_p99_s'))}")])
            else:
                widgets.badge("stopped" if run.stopped else "running")


_draw_cards(run)


ALIKE = 0.01  # policies whose runs' figures lie within 1% of each other ran alike


def _alike_runs(outcomes: dict) -> bool:
    """Every policy's run within ALIKE of the others in calls completed, mean calls in the
    system and the 99th percentile of a call's end-to-end time, with the same verdict."""
    if len(outcomes) < 2 or len({o.verdict.verdict for o in outcomes.values()}) > 1:
        return False
    for k in ("completed", "mean_in_system", "e2e_p99_s"):
        xs = [o.summary.get(k) for o in outcomes.values()]
        if any(x is None or not math.isfinite(x) for x in xs) or max(xs) > (1 + ALIKE) * min(xs):
            return False
    return True


def _draw_why(run: runs.LiveRun) -> None:
    if run.outcomes:
        box = why_slot.container()
        alike = _alike_runs(run.outcomes) and not run.errors
        buffers_at = Counter(s.engine for w in sc.workflows for s in w.steps)
        if alike and max(buffers_at.values()) == 1:
            box.info(f"All {len(run.outcomes)} policies ran alike: every engine here serves a single buffer, so "
                     "no policy has an order to decide.", icon=":material/info:")
        elif alike:
            # two_class: four cards and charts alike to the eye, and nothing said why (tried as a new user would)
            box.info(f"All {len(run.outcomes)} policies ran alike (calls completed, mean calls in the system and "
                     f"the 99th-percentile call time within {100 * ALIKE:.0f}% of each other). A policy decides only "
                     "the order in which an engine admits calls waiting in several buffers at once; at these loads "
                     "the waiting calls mostly fit into the engine's next batches together, so that order seldom "
                     "changed what ran. Raise the workflows' rates, or lower an engine's token budget or KV cache, "
                     "to see the policies part.", icon=":material/info:")
        with box, st.expander("Why these verdicts: the test of every buffer", expanded=any(
                o.verdict.unstable_parts for o in run.outcomes.values())):
            st.markdown(widgets.rule_text(next(iter(run.outcomes.values())).verdict.threshold))
            st.markdown("A policy is **unstable as soon as one buffer's own test** says so (the growing buffers are "
                        "named on its card), whatever the network-wide growth on the card: a growing buffer can hide "
                        "in the total while others drain. Growth here is the trend of the calls waiting, in calls per "
                        "second, as a share of the calls arriving at that buffer; below zero (*shrank*), the buffer "
                        "happened to hold fewer calls at the end of the test's window than at its start.")
            tables = []
            for v, o in run.outcomes.items():
                t = widgets.parts_table(o.verdict)
                if t is not None:
                    tables.append(t.assign(policy=v)[["policy"] + list(t.columns)])
            if tables:
                # every row in sight: at ten rows the table scrolled and hid the last policies' buffers
                phone_nav.table(pd.concat(tables, ignore_index=True), "buffers", hide_index=True, height="content")


st.subheader("Calls waiting in each buffer")
st.caption("For each policy: how many calls of each workflow step are at their engine (waiting or running), "
           "over simulated time. A bounded network keeps every line flat; a diverging one has lines that climb. "
           "Once the run has ended, hover for values and click a legend entry to highlight a buffer in that chart.")
c1, c2, c3 = st.columns([2, 2, 3])
c1.radio("Vertical scale", ["linear", "log"], **ps.w("scale", ["linear", "log"]), horizontal=True)
c2.toggle("Play live", **ps.w("live"))
button_slot = controls.run_slot(c3)
progress_slot = st.empty()
grid = []
with st.container(key="chart-grid"):  # two to a row where each gets phone_nav.CHART_MIN_PX, else one
    for i in range(0, len(labels), 2):
        row = st.columns(2)
        grid += [row[0].empty(), row[1].empty()]
# the verdicts' test of every buffer, once they are in: under the charts, which it took ~1,000 px
# down when a run ended above them (tried as a new user would: the charts watched left the screen)
why_slot = st.empty()
buffers = network.buffer_names(file_sc)
buffer_colours = network.buffer_scale(file_sc)  # the drawing's boxes take these lines' colours


def _draw_chart(run: runs.LiveRun, live: bool = False) -> None:
    trajs = run.trajectories()
    if not trajs:
        return
    parts = []
    for v, ts in trajs.items():
        ts = charts.thin(ts, charts.LIVE_POINTS if live else charts.MAX_POINTS)
        for bname in buffers:
            col = f"{bname}.in_buffer"
            if col in ts:
                parts.append(pd.DataFrame({"time_s": ts["time_s"].to_numpy(), "buffer": bname, "metric": v,
                                           "value": ts[col].to_numpy()}))
    df = pd.concat(parts, ignore_index=True)
    x_max = max([run.end] + [o.summary["horizon_seconds"] for o in run.outcomes.values()])
    specs = charts.trajectories(df, "buffer", buffer_colours, list(trajs), x_max,
                                log=ps.get("scale") == "log", y_title="calls in buffer", titles=True,
                                live=live)
    for slot, spec in zip(grid, specs):
        slot.vega_lite_chart(spec=spec, width="stretch")


controls.play_controls(PAGE, run, button_slot, progress_slot, lambda r: _draw_chart(r, live=True),
                       bool(ps.get("live")), on_end=_draw_cards)
_draw_chart(run)

_draw_why(run)

# ------------------------------------------------------------------ sharing
st.subheader("Share and save")
st.caption("The address bar holds a link to this view. The scenario file is the workflow as configured here "
           "(run it with `python -m llmsim run`); the CSVs hold the verdict per policy and buffer, and the "
           "trajectories.")
dl = st.container(horizontal=True)  # a row that wraps: in three columns a projector (1024 px) cut their texts
from llmsim_ui.inputs import toml_text  # noqa: E402

dl.download_button("Download scenario (TOML)", toml_text(sc), file_name=f"llmsim-{preset}.toml",
                   mime="application/toml", icon=":material/download:")
if run.outcomes:
    rows = []
    for v, o in run.outcomes.items():
        rows.append({"policy": v, "part": "network", "verdict": o.verdict.verdict, "load": o.verdict.load,
                     "growth": o.verdict.growth, "explanation": o.verdict.explanation})
        for part, ev in o.verdict.parts.items():
            rows.append({"policy": v, "part": part, "verdict": ev["verdict"], "growth_per_s": ev["growth_per_s"],
                         "arrival_rate": ev["arrival_rate"]})
    dl.download_button("Download verdicts (CSV)", pd.DataFrame(rows).to_csv(index=False),
                       file_name=f"llmsim-{preset}-verdicts.csv", mime="text/csv", icon=":material/table:")
    ts = pd.concat([o.timeseries.assign(policy=v) for v, o in run.outcomes.items()], ignore_index=True)
    dl.download_button("Download trajectories (CSV)", ts.to_csv(index=False),
                       file_name=f"llmsim-{preset}-trajectories.csv", mime="text/csv", icon=":material/show_chart:")
