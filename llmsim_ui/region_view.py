"""The stability-region chart of the model page: the region, its vertices, the workload's ray
and operating point, and each scheduler's boundary point (theory, and measured by a small
capacity search on demand). All figures come from llmsim (region.py, theory.py, capacity.py)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import llmsim
from llmsim.region import engine_region, picture
from llmsim_ui import charts, palette, widgets
from llmsim_ui.markdown import plain

PAPER = {"model": "staircase", "c_seconds": 0.01128, "a_seconds": 0.03547, "b0": 128}
SCHEDS = ("fastertransformer", "vllm", "orca", "sarathi")
SEARCH_REQUESTS = 3000


def scenario(hw: str, b: int, k: int, p: int, d: int, rate: float, sched: str = "sarathi"):
    bt = PAPER if hw == "paper staircase" else {"model": "preset", "name": hw}
    eng = {"scheduler": sched, "token_budget": b, "kv_cache_tokens": max(10_000_000, 4 * (p + d)),
           "batch_time": bt}
    if k:
        eng["max_batch_size"] = k
    return llmsim.scenario_from_table({"seed": 1, "workload": {
        "num_requests": SEARCH_REQUESTS, "arrival": {"process": "poisson", "rate": max(rate, 1e-3)},
        "prompt_tokens": {"dist": "constant", "value": p}, "output_tokens": {"dist": "constant", "value": d}},
        "engine": eng})


@st.cache_data(max_entries=64, show_spinner=False)
def _figures(hw, b, k, p, d, rate):
    sc = scenario(hw, b, k, p, d, rate)
    e = sc.engine
    reg = engine_region(e, p)
    pic = picture(reg, p, d, -(-p // b), rate)
    theory = {}
    for s in SCHEDS:
        if p > b and s in ("fastertransformer", "vllm"):
            continue  # whole prompts never fit: a configuration error for these schedulers
        th = llmsim.analyze(sc.with_scheduler(s))
        theory[s] = (th.capacity_rps, th.engines[0].capacity_kind)
    return pic, theory


def _measured(hw, b, k, p, d, box=None):
    """Each scheduler's critical rate by a small capacity search, remembered across sessions
    (runs.remember; computed outside st.cache_data so that the wait for a batch slot can say
    so in ``box``): (found, refused) with refused[s] the reason s could not be measured."""
    from llmsim_ui import runs
    key = repr((hw, b, k, p, d))
    res = runs.recall("region", key)
    if res is not None:
        return res
    from llmsim.capacity import capacity_search
    sc = scenario(hw, b, k, p, d, 1.0)
    scheds = [s for s in SCHEDS if not (p > b and s in ("fastertransformer", "vllm"))]
    from dataclasses import replace
    from llmsim import budget
    # every probe under the capacity page's probe limits (1/8 of a run's work budget: a probe
    # of b = 1 and 65,536-token outputs ran for 77 s of server CPU under a whole run's budget),
    # one at a time in a worker process: a long job (runs.long_job).
    # One scheduler after another: a scheduler that cannot run this workload (vllm freezing on
    # a recompute above b) is told apart instead of blanking every scheduler's measurement
    found, refused = {}, {}
    with runs.long_job(runs.PROBE_LIMITS, box) as ex, \
            runs.hold(budget.estimate(replace(sc, num_requests=SEARCH_REQUESTS))["bytes"]):
        for s in scheds:
            try:
                r = capacity_search(sc, [s], num_requests=SEARCH_REQUESTS, rel_tol=0.03, max_probes=8,
                                    executor=ex)[0]
            except llmsim.ConfigError as exc:
                if runs.session_gone():  # nobody waits for the rest (page closed or rerun)
                    raise
                refused[s] = str(exc)
                continue
            found[s] = (r.critical_rate_rps, r.interval)
    runs.remember("region", key, (found, refused))
    return found, refused


def show(hw: str, b: int, k: int, p: int, d: int, rate: float) -> None:
    try:
        pic, theory = _figures(hw, b, k, p, d, rate)
    except (llmsim.ConfigError, ValueError) as exc:
        st.error(plain(exc))
        return
    cap = pic["capacity"]
    m = st.columns(3)
    m[0].metric("region capacity λ*", f"{cap['rate']:.4g} req/s",
                help="Where the workload's ray leaves the region: no scheduler sustains more.")
    m[1].metric("load λ/λ*", f"{pic['operating']['load']:.2f}")
    # it showed the region's vertex count ("6 vertices") under "batches at capacity"
    m[2].metric("batch types at capacity", f"{cap['batch_types']}", help=cap["mix"])
    st.caption(f"At capacity an optimal engine runs {cap['mix']}. The region has {len(pic['vertices'])} "
               "vertices, one per batch type that is best for some mix of prefill and decode.")

    measured = {}
    if st.toggle("Measure each scheduler's boundary point (capacity search, "
                 f"{SEARCH_REQUESTS:,} requests per probe)", key="model.region_search"):
        box = st.empty()  # says so while the search waits for one of the server's batch slots
        with st.spinner("Searching each scheduler's critical rate…"):
            try:
                measured, refused = _measured(hw, b, k, p, d, box)
                for s, why in refused.items():
                    st.warning(f"{s} could not be measured here: {plain(why)}", icon=":material/block:")
            except llmsim.ConfigError as exc:  # the server is busy, or the page was closed meanwhile
                st.warning(plain(exc), icon=":material/hourglass_disabled:")

    # the boundary's ends repeat a vertex on an axis: an area stacks repeated x values, so
    # they go, and the area is drawn unstacked
    bound = pd.DataFrame(pic["boundary"]).drop_duplicates()
    verts = pd.DataFrame(pic["vertices"])
    ray = pd.DataFrame(pic["ray"])
    op = pd.DataFrame([{"prefill_tps": pic["operating"]["prefill_tps"], "decode_tps": pic["operating"]["decode_tps"],
                        "rate": rate}])
    pts = []
    for s, (c, _) in theory.items():
        if c:
            pts.append({"what": "theory", "scheduler": s, "prefill_tps": c * p, "decode_tps": c * d, "rate": c})
    for s, (c, _) in measured.items():
        if c:
            pts.append({"what": "measured", "scheduler": s, "prefill_tps": c * p, "decode_tps": c * d, "rate": c})
    pts = pd.DataFrame(pts, columns=["what", "scheduler", "prefill_tps", "decode_tps", "rate"])
    x = alt.X("prefill_tps:Q", title="prefill tokens per second (λ_p)")
    y = alt.Y("decode_tps:Q", title="decode tokens per second (λ_d)", stack=None)
    area = alt.Chart(bound).mark_area(opacity=0.25, line=True).encode(x=x, y=y)
    vx = alt.Chart(verts).mark_point(size=90, filled=True, color="black").encode(
        x=x, y=y, tooltip=["batch", "prefill_tokens", "decode_tokens", "chunks"])
    rl = alt.Chart(ray).mark_line(strokeDash=[6, 4], color="gray").encode(x=x, y=y)
    opm = alt.Chart(op).mark_point(size=160, filled=True, shape="diamond", color="black").encode(
        x=x, y=y, tooltip=[alt.Tooltip("rate:Q", format=".4g", title="operating point, req/s")])
    # the same shape for the same meaning whether or not the measured points are there
    # the legends on top, in columns (on the right they left a phone ~80 px of plot)
    names = list(dict.fromkeys(list(theory) + list(measured)))
    pt = alt.Chart(pts).mark_point(size=140, filled=True).encode(
        x=x, y=y, shape=alt.Shape("what:N", title=None, scale=alt.Scale(domain=["theory", "measured"],
                                                                         range=["square", "circle"]),
                                  legend=alt.Legend(orient="top", direction="vertical")),
        color=alt.Color("scheduler:N", title=None, legend=alt.Legend(orient="top", **charts.altair_legend_layout(names)),
                        scale=palette.scale(names, palette.SCHEDULER_COLORS)),
        tooltip=["what", "scheduler", alt.Tooltip("rate:Q", format=".4g", title="req/s")])
    st.altair_chart(area + rl + vx + opm + pt, width="stretch")
    # four significant digits ("0.0002" for a capacity of 0.000213)
    rows = [{"scheduler": s, "theory capacity (req/s)": float(f"{c:.4g}") if c else None,
             **({"measured (req/s)": float(f"{measured[s][0]:.4g}") if measured.get(s, (None,))[0] else None}
                if measured else {}),
             "theory's bound": kind} for s, (c, kind) in theory.items()]
    # a static table: its cells wrap (a dataframe cut the bound's sentence at the column's edge)
    table = pd.DataFrame(rows).set_index("scheduler")
    rates = [c for c in table.columns if c.endswith("(req/s)")]
    # significant digits: a table shows 4 decimals, and a capacity of 0.000213 read "0.0002"
    st.table(table.style.format(lambda v: "—" if v is None or v != v else widgets.fmt(v, 4), subset=rates))
    st.caption("Shaded: the region. Black dots: its vertices (hover for the batch). Black diamond: the workload at "
               "the chosen arrival rate. Dashed: the workload's ray λ·(P, D). Squares: each scheduler's capacity by "
               "theory; circles: measured (the switch above). Sarathi fills the budget decode-first, orca "
               "prefill-first: their points sit on or inside the boundary depending on the batches they actually "
               "form.")
