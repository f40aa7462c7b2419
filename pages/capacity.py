"""Capacity — where does each scheduler break?"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pandas as pd
import streamlit as st

import llmsim
from llmsim import SCHEDULERS, ConfigError
from llmsim import budget
from llmsim.capacity import capacity_search
from llmsim_ui import entry
from llmsim_ui import charts, controls, inputs, jobs, palette, phone_nav, runs, widgets
from llmsim_ui import limits as L
from llmsim_ui.state import Field, PageState
from llmsim_ui.markdown import plain

entry.require_app()

PAGE = "cap"

ps = PageState(PAGE, inputs.fields(with_rate=False) + [
    Field("sched", list(SCHEDULERS), "list", choices=tuple(SCHEDULERS), label="schedulers"),
    Field("n", 20_000, "int", L.MIN_REQUESTS, L.MAX_REQUESTS, label="requests per probe"),
    Field("tol", 0.05, "float", 0.01, 0.5, label="relative precision"),
    Field("probes", 8, "int", 2, L.MAX_PROBES, label="probes per scheduler"),
    Field("points", 10, "int", 3, L.MAX_SWEEP, label="rates per curve"),
])


def _stop() -> None:
    st.session_state[f"{PAGE}.stopped"] = st.session_state.get(f"{PAGE}.key")


def _resume() -> None:
    st.session_state[f"{PAGE}.stopped"] = None


@st.cache_data(max_entries=512, show_spinner=False)
def _sweep_point(toml: str, extra_key: str, _scenario, _ex) -> dict:
    """Throughput of one (scheduler, rate) run (``jobs.throughput``), in the page's job ``_ex``."""
    with runs.hold(budget.check(_scenario, runs.PROBE_LIMITS)["bytes"]):
        return _ex.call(jobs.throughput, _scenario)


def _capacity(toml: str, extra_key: str, scheduler: str, n: int, tol: float, probes: int, scenario, progress,
              ex):
    """capacity_search for one scheduler, its probes one at a time in the page's job ``ex``
    (a worker process, under the capacity page's probe limits), remembered across sessions
    (runs.remember). The probes of one scheduler depend on each other."""
    key = repr((toml, extra_key, scheduler, n, tol, probes))
    res = runs.recall("capacity", key)
    if res is None:
        probe = budget.check(dataclasses.replace(scenario, num_requests=n), runs.PROBE_LIMITS)["bytes"]
        with runs.hold(probe):
            res = capacity_search(scenario, [scheduler], num_requests=n, rel_tol=tol, max_probes=probes,
                                  progress=progress, executor=ex)[0]
        runs.remember("capacity", key, res)
    return res


def falling_note(points: list[dict], token_capacity: float) -> str:
    """Why a scheduler's curve falls past its capacity instead of levelling off, with its
    figures at the highest rate: the chart counts requests *completed* per second of a
    finite run, and a prefill-first scheduler (orca, vllm) keeps starting requests while it
    finishes fewer; or the KV cache ran out and recomputed prefills took the iterations."""
    out, level = [], []
    for s in dict.fromkeys(p["scheduler"] for p in points):
        mine = [p for p in points if p["scheduler"] == s and "started" in p]
        if len(mine) < 2:
            continue
        last = max(mine, key=lambda p: p["rate"])
        if last["throughput"] >= 0.9 * max(p["throughput"] for p in mine):
            level.append(s)
            continue
        why = (f"recomputed {last['recomputed']:.0%} of its tokens after preemptions"
               if last["recomputed"] > 0.01 else
               f"processed {last['tokens']:,.0f} tokens/s ({last['tokens'] / token_capacity:.0%} of b/t(b))")
        out.append(f"**{s}** at {last['rate']:.3g} req/s finished {last['throughput']:.3g} requests/s but "
                   f"started {last['started']:.3g} and {why}")
    if not out:
        return ""
    return ("Falling curves: " + "; ".join(out) + ". The chart counts requests *completed* per second of a "
            "finite run. Past its capacity a scheduler that runs prefill first keeps starting new requests, and "
            "their decode tokens get what the prefills leave of the budget: the requests it holds grow and fewer "
            "finish within the run, though it may still process tokens at b/t(b). A scheduler that preempts "
            "spends iterations recomputing prefills when the KV cache runs out."
            + (f" {', '.join(level)}: level{'s' if len(level) == 1 else ''} off." if level else ""))


def near_boundary_notes(found: dict, tol: float) -> list[str]:
    """One caveat naming the schedulers judged stable above their theory capacity (the
    ceiling): near ρ = 1 a finite probe's queue drifts too slowly to detect, so such a
    "stable" is noise, not a contradiction of theory."""
    above = []
    for s, r in found.items():
        cap, (lo, _hi) = r.theory_capacity_rps, r.interval
        if cap and lo is not None and np.isfinite(lo) and lo > cap * 1.001:
            above.append(f"{s} (stable at {lo:.3g} req/s, theory capacity {cap:.3g})")
    if not above:
        return []
    return [f"Judged stable above the theory capacity: {'; '.join(above)}. Within a few per cent of a "
            "capacity a probe's queue grows too slowly to show in a finite run: use more requests per probe (or "
            "replications, `python -m llmsim capacity`) before reading the last digit. And where theory's "
            "formula says it is approximate (listed under the table), its figure can be a few per cent off."]


MEMORY_SHORT = 0.05  # a critical rate this far below a memory capacity gets a note


def memory_notes(found: dict, points: list[dict]) -> list[str]:
    """Why a search breaks well below a memory capacity M / (t E[g]): with the KV cache full, a
    scheduler preempts and recomputes, which the formula leaves out. Tried as a new user would:
    llama2-7b on an A100 with ShareGPT lengths, sarathi's critical rate 3.83 req/s beside a
    theory capacity of 4.79 (and "best possible capacity" 4.79 above the page), not a word on why."""
    short = []
    for s, r in found.items():
        cap, crit = r.theory_capacity_rps, r.critical_rate_rps
        if not (cap and crit and r.theory_kind.startswith("memory capacity") and crit < (1 - MEMORY_SHORT) * cap):
            continue
        redo = max((p["recomputed"] for p in points if p["scheduler"] == s and p["rate"] >= crit), default=0.0)
        short.append(f"{s} (critical rate {crit:.3g} req/s, {1 - crit / cap:.0%} under its memory capacity "
                     f"{cap:.3g}" + (f"; past it, runs recomputed up to {redo:.0%} of their tokens" if redo > 0.01
                                     else "") + ")")
    if not short:
        return []
    return [f"Below the memory capacity: {'; '.join(short)}. The KV cache binds here, and the memory capacity is "
            "an approximation: the mean memory a request holds over its life. A full cache makes a scheduler "
            "preempt requests and recompute their lost work, and requests waiting for decode slots hold memory "
            "longer: neither is in the formula, so a scheduler can break below it. The search is the check."]


def undecided_notes(found: dict) -> list[str]:
    """Why a search found no critical rate: no probe was judged stable or unstable. A token
    budget of 1 and 200,000 requests per probe made every probe spend the demo's work budget
    and stop, 46 s of worker CPU, and the table showed None for all four schedulers without
    a word (a hostile pass)."""
    none = [s for s, r in found.items()
            if r.critical_rate_rps is None and r.probes and all(v == "inconclusive" for _, v, _ in r.probes)]
    if not none:
        return []
    return [f"No critical rate for {', '.join(none)}: every probe was inconclusive, so the search had nothing "
            "to bracket. A probe that spends this demo's work budget (one unit per iteration and per request) "
            "stops early and cannot be judged: use fewer requests per probe or a larger token budget (fewer, "
            "fuller iterations), or `python -m llmsim capacity` without the demo's limits."]


SPREAD_NOTABLE = 0.03  # a probe's drawn arrival rate strays this far (one sd) from the nominal one


def bursty_notes(found: dict, arrival, n: int) -> list[str]:
    """Why throughput points sit off the diagonal and probes come out inconclusive with
    bursty random arrivals: a probe of n renewal arrivals of inter-arrival cv c draws its
    mean rate within about c/sqrt(n) of the nominal one (one standard deviation). Tried as a
    new user would: azure-code-2023 (gamma, cv 13.2), 20,000 requests per probe: points ~12%
    above the diagonal, 7 of 9 probes inconclusive, sarathi's critical rate 2.93 in [1.41,
    4.45] beside an exact 4.57, and not a word on why."""
    if getattr(arrival, "name", "") not in ("poisson", "gamma") or n < 1:
        return []  # a replayed trace draws nothing; deterministic arrivals do not stray
    cv = float(arrival.cv)
    spread = cv / np.sqrt(n)
    if spread < SPREAD_NOTABLE:
        return []
    probes = [v for r in found.values() for _, v, _ in r.probes]
    undecided = sum(v == "inconclusive" for v in probes)
    wide = [f"{s} [{r.interval[0]:.3g}, {r.interval[1]:.3g}]" for s, r in found.items()
            if r.interval[0] is not None and r.interval[1] is not None and np.isfinite(r.interval[1])
            and r.interval[1] > 1.5 * r.interval[0]]
    need = int(np.ceil((cv / 0.02) ** 2))
    return [f"Bursty arrivals (inter-arrival cv {cv:.3g}): a probe of {n:,} requests draws its arrivals at a rate "
            f"within only about ±{100 * spread:.0f}% of the nominal one (one standard deviation, cv/√n), so "
            "throughput points can sit that far off the diagonal, and a probe's backlog rises and falls with its "
            "bursts"
            + (f": {undecided} of {len(probes)} probes were inconclusive" if probes else "")
            + (f", and the search could not narrow {'; '.join(wide)} (stable, unstable)" if wide else "")
            + f". Read the critical rates as rough. For ±2%, about {need:,} requests per probe "
            "(`python -m llmsim capacity --num-requests-per-probe`, without the demo's limits)."]


ps.restore()

st.title("Capacity — where does each scheduler break?")
st.markdown(
    "Raise the arrival rate and, at some point, a scheduler stops keeping up: its **throughput** (requests "
    "completed per second) stops following the arrival rate: it flattens out, or falls for a scheduler that runs "
    "prefill first (it keeps starting requests and finishes fewer; a note under the chart says why). That rate "
    "is its **capacity**. "
    "Theory says no scheduler can beat the dashed line **b/t(b)** — a full batch of b tokens every t(b) "
    "seconds — and that work-conserving schedulers (orca, sarathi) reach it in tokens per second, as long as "
    "the KV cache and max_batch_size leave room (when they bind, the best capacity is lower, and orca's "
    "prefills starve its decoders below it).")

status_slot = st.empty()
upload = controls.engine_inputs(ps, with_rate=False, sched_label="Schedulers", keep_n=False,
                                upload_help="Any single-engine scenario file; its arrival rate is ignored "
                                            "(this page sweeps it).")
with st.sidebar:
    st.subheader("Search", divider="gray")
    inputs._num(ps, "n", f"Requests per probe (up to {L.MAX_REQUESTS:,})", 5_000,
                help="Each probe simulates this many arrivals at one rate and judges stability.")
    inputs._num(ps, "tol", "Relative precision of the critical rate", 0.01, fmt="%.3f",
                help="The search stops when the bracket [stable, unstable] is this narrow.")
    inputs._num(ps, "probes", "Probes per scheduler (at most)", 1)
    inputs._num(ps, "points", "Arrival rates per throughput curve", 1)
ps.publish(ps.visible + ["sched", "n", "tol", "probes", "points"])
ps.show_url_errors()

schedulers = ps.get("sched")
errors = inputs.check(ps, with_rate=False)
for name, label in (("n", "Requests per probe"), ("tol", "Relative precision"), ("probes", "Probes per scheduler"),
                    ("points", "Arrival rates per curve")):
    f = ps.by_name[name]
    m = L.check(label, ps.get(name), f.lo, f.hi, why=L.CLI_HINT if name == "n" else "")
    if m:
        errors.append(m)
if not schedulers:
    errors.append("Schedulers: choose at least one.")
controls.show_errors(errors)

n = int(ps.get("n"))
try:
    base, extra = inputs.build(ps, n, None, upload)
except ConfigError as exc:
    st.error(f"Cannot run this scenario — {plain(exc)}", icon=":material/block:")
    st.stop()

scen, refused = {}, {}
for s in schedulers:
    sc = base.with_scheduler(s)
    try:
        llmsim.validate(sc)
        scen[s] = sc
    except ConfigError as exc:
        refused[s] = str(exc)
for s, msg in refused.items():
    st.warning(f"{s}: {plain(msg)}", icon=":material/block:")
    inputs.raise_budget_button(ps, msg, key=f"{PAGE}.raise_b.{s}")
if not scen:
    st.stop()

# ----------------------------------------------------------------------- theory
first = runs.job("theory", next(iter(scen.values())), extra)
try:
    th = runs.theory(first)
    theory_caps = {s: runs.theory(runs.job(s, sc, extra)).capacity_rps for s, sc in scen.items()}
except ConfigError as exc:  # theory's LP defeated by costs many decades apart: say which input
    st.error(plain(str(exc)), icon=":material/error:")
    st.stop()
e0 = th.engines[0]
mean_work = e0.offered_tokens_per_s / base.total_rate
token_rps = e0.token_capacity / mean_work
c1, c2, c3 = st.columns(3)
cap_label, cap_help = widgets.token_capacity_label(base.engine)
c1.metric(cap_label, f"{e0.token_capacity:,.0f}",
          help=f"{cap_help}b = {e0.token_budget} tokens per iteration, "
               f"t(b) = {e0.t_b_seconds * 1e3:.4g} ms per full iteration.")
c2.metric("… in requests (req/s)", f"{token_rps:.3g}",
          help=f"Divided by {mean_work:,.0f} tokens per request (prompt + output).")
c3.metric("Best possible capacity (req/s)", f"{th.optimal_capacity_rps:.3g}",
          help=widgets.capacity_help(e0.optimal_kind, work_conserving_note=False))
gap = widgets.capacity_gap_note(th.optimal_capacity_rps, e0, mean_work, base.engine.max_batch_size)
if gap:
    st.caption(gap)

# ------------------------------------------------------------------------ work
key = (tuple(sorted(scen)), base.to_toml(), extra, n, ps.get("tol"), ps.get("probes"), ps.get("points"))
st.session_state[f"{PAGE}.key"] = key
stopped = st.session_state.get(f"{PAGE}.stopped") == key
top = max([th.optimal_capacity_rps] + [c for c in theory_caps.values() if c])
x_max = 1.3 * top
if x_max > L.MAX_RATE:  # its rates would reach past what a run accepts (an uncaught ConfigError; found as a hostile visitor would)
    st.error(f"Theory puts the capacity at {top:,.4g} req/s: the curve would run to {x_max:,.4g} req/s, above this "
             f"demo's limit of {L.MAX_RATE:,.0f} requests per second. Make iterations slower (batch time) or requests "
             "longer (prompt and output tokens).", icon=":material/block:")
    st.stop()
rates = [float(r) for r in np.linspace(x_max / ps.get("points"), x_max, int(ps.get("points")))]
total = len(rates) * len(scen) + len(scen)

st.subheader("Throughput against arrival rate")
st.caption(
    "Each point is one simulation of the same workload at that arrival rate. Along the grey diagonal every "
    "request is served; a scheduler past its capacity falls below it and levels off. Dashed vertical lines: "
    "the **critical rate** each scheduler's capacity search found (the shaded band is the bracket between the "
    "highest rate judged stable and the lowest judged unstable); hollow marks: the search's probes, shaped by "
    "their verdict (○ stable, ◇ inconclusive, △ unstable). Hover for "
    "values; click a legend entry to highlight a scheduler.")
b1, b2 = st.columns([1, 4])
button_slot = controls.run_slot(b1)
progress_slot = b2.empty()
chart_slot = st.empty()

# what this session computed for this key so far (drawn as is after a Stop)
partial = st.session_state.get(f"{PAGE}.partial")
if partial is None or partial[0] != key:
    partial = (key, [], {})
    st.session_state[f"{PAGE}.partial"] = partial
_, points, found = partial


def _draw() -> None:
    pts = pd.DataFrame(points, columns=["scheduler", "rate", "throughput"])
    crit = pd.DataFrame([{"scheduler": s, "critical": r.critical_rate_rps, "low": r.interval[0],
                          "high": r.interval[1]} for s, r in found.items()],
                        columns=["scheduler", "critical", "low", "high"])
    probes = pd.DataFrame([{"scheduler": s, "rate": rate, "verdict": v, "throughput": t}
                           for s, r in found.items()
                           for (rate, v, _g), t in zip(r.probes, getattr(r, "throughputs", []))],
                          columns=["scheduler", "rate", "verdict", "throughput"])
    ch = charts.throughput(pts, token_rps, crit, palette.scale(list(scen), palette.SCHEDULER_COLORS), x_max,
                           probes)
    chart_slot.altair_chart(ch, width="stretch")


def _progress(done: int, what: str) -> None:
    progress_slot.progress(min(1.0, done / total), text=f"{what} ({done} of {total} steps)")


with status_slot.container():
    runs.warm_up()
status_slot.empty()
run_button = controls.RunButton(PAGE, [button_slot])
if stopped:
    run_button("Resume", ":material/play_circle:", _resume)
    progress_slot.info("Stopped. What was computed so far is shown; press Resume to finish.",
                       icon=":material/pause_circle:")
else:
    run_button("Stop", ":material/stop_circle:", _stop)
    have = {(p["scheduler"], p["rate"]) for p in points}
    done = len(have)
    too_big: set = set()  # schedulers whose runs the demo's limits refuse: warned once
    # a long job: one of the server's batch slots and its worker process (runs.long_job)
    todo = len(have) < len(rates) * len(scen) or len(found) < len(scen)
    slot = contextlib.ExitStack()
    ex = None
    if todo:
        try:
            ex = slot.enter_context(runs.long_job(runs.PROBE_LIMITS, progress_slot))
        except ConfigError as exc:  # the server is busy, or the page was closed meanwhile
            progress_slot.error(plain(exc), icon=":material/hourglass_disabled:")
            button_slot.empty()
            st.stop()
    with slot:
        for rate in rates:
            for s, sc in scen.items():
                if (s, rate) in have or s in too_big:
                    continue
                j = runs.job(s, sc.with_rate(rate), extra)
                _progress(done, f"Throughput of {s} at {rate:.3g} req/s")
                try:
                    p = _sweep_point(j.toml, j.extra_key, j.scenario, ex)
                except ConfigError as exc:
                    st.warning(f"{s} at {rate:.3g} req/s: {plain(exc)}")
                    too_big.add(s)
                    continue
                points.append({"scheduler": s, "rate": rate, "throughput": p["throughput_rps"],
                               "started": p["started_rps"], "tokens": p["tokens_per_s"],
                               "recomputed": p["recomputed"]})
                done += 1
            _draw()  # once per rate: building the chart costs more than a small simulation
        for s, sc in scen.items():
            if s in found or s in too_big:
                continue
            j = runs.job(s, sc, extra)
            _progress(done, f"Searching the critical rate of {s}")
            try:
                found[s] = _capacity(j.toml, j.extra_key, s, n, float(ps.get("tol")), int(ps.get("probes")), sc,
                                     lambda d, t, msg, base=done: _progress(base, f"Searching: {msg}"), ex)
            except ConfigError as exc:  # a probe over the demo's limits
                st.warning(f"{s}: capacity search refused — {plain(exc)}", icon=":material/block:")
            done += 1
            _draw()
    progress_slot.empty()
    button_slot.empty()
_draw()
note = falling_note(points, e0.token_capacity)
if note:
    st.caption(note)

# ----------------------------------------------------------------------- results
if found:
    st.subheader("Critical rates")
    st.caption("The capacity search keeps the highest rate judged stable and the lowest judged unstable and "
               "probes between them; where theory proves a bound (the stability region, an exact batch cycle), "
               "the lowest unstable rate starts there, probed or not, so the critical rate never lies above it. "
               "Where theory only estimates a capacity (its formula, listed under the table, says "
               "\"approximate\"), the critical rate may lie above or below that estimate: the search is the "
               "check. Near the boundary single runs are noisy: more requests per probe give sharper brackets.")
    rows = []
    for s, r in found.items():
        lo, hi = r.interval
        rows.append({"scheduler": s, "critical rate (req/s)": r.critical_rate_rps,
                     "highest stable (req/s)": lo, "lowest unstable (req/s)": hi,
                     "theory capacity (req/s)": r.theory_capacity_rps, "probes": len(r.probes)})
    table = pd.DataFrame(rows)
    helps = {"theory capacity (req/s)": "Its formula for each scheduler is listed under the table.",
             "lowest unstable (req/s)": "The lowest rate a probe found unstable, or the rate from which theory "
                                        "proves every run unstable, whichever is lower."}
    phone_nav.table(table, "capacity", hide_index=True,
                    column_config={c: st.column_config.NumberColumn(format="%.3g", help=helps.get(c))
                                   for c in table.columns if "req/s" in c})
    # the formulas run to a few lines each: in a table cell they were cut to their first words
    st.caption("Theory capacity, by scheduler (the formula, exact or approximate as noted):\n"
               + "\n".join(f"- **{s}**: {r.theory_kind}." for s, r in found.items()))
    for msg in (near_boundary_notes(found, float(ps.get("tol"))) + memory_notes(found, points) + undecided_notes(found)
                + bursty_notes(found, base.workflows[0].arrival, n)):
        st.warning(msg, icon=":material/warning:")

st.subheader("Share and save")
st.caption("The address bar holds a link to this view. The scenario file runs at 80% of the best possible "
           "capacity (this page sweeps the rate); the CSVs hold every point and every probe.")
dl = st.container(horizontal=True)  # a row that wraps: in three columns a projector (1024 px) cut their texts
save = base.with_scheduler(next(iter(scen))).with_rate(0.8 * th.optimal_capacity_rps)
dl.download_button("Download scenario (TOML)", inputs.toml_text(save, list(scen)),
                   file_name="llmsim-scenario.toml", mime="application/toml", icon=":material/download:")
if points:
    dl.download_button("Download throughput points (CSV)", pd.DataFrame(points).to_csv(index=False),
                       file_name="llmsim-throughput.csv", mime="text/csv", icon=":material/table:")
if found:
    probes = pd.DataFrame([{"scheduler": s, "rate_rps": rate, "verdict": v, "growth": g,
                            "throughput_rps": t}
                           for s, r in found.items()
                           for (rate, v, g), t in zip(r.probes, list(getattr(r, "throughputs", []))
                                                      + [None] * len(r.probes))])
    dl.download_button("Download capacity probes (CSV)", probes.to_csv(index=False),
                       file_name="llmsim-capacity-probes.csv", mime="text/csv", icon=":material/show_chart:")
