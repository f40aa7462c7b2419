"""Stability map — over which region of two parameters does each scheduler keep up?"""

from __future__ import annotations

import dataclasses
import io
import time

import streamlit as st

from llmsim import SCHEDULERS, ConfigError
from llmsim.sweep import run_sweep, sweep_from_table
from llmsim_ui import entry, inputs, phone_nav, runs, uploads
from llmsim_ui import limits as L
from llmsim_ui import sweepmap as M
from llmsim_ui.state import Field, PageState
from llmsim_ui.markdown import plain

entry.require_app()

PAGE = "map"
AXIS_NAMES = tuple(M.AXES)
ps = PageState(PAGE, inputs.fields(with_rate=False) + [
    Field("src", "run", "str", choices=("run", "file"), label="source"),
    Field("sched", ["vllm", "orca", "sarathi"], "list", choices=tuple(SCHEDULERS), label="schedulers"),
    Field("x", "engine.token_budget", "str", choices=AXIS_NAMES, label="x axis"),
    Field("x_lo", 128.0, "float", 0.001, 1e9, label="x from"),
    Field("x_hi", 2048.0, "float", 0.001, 1e9, label="x to"),
    Field("x_n", 5, "int", 1, 30, label="x points"),
    Field("y", "load", "str", choices=AXIS_NAMES, label="y axis"),
    Field("y_lo", 0.5, "float", 0.001, 1e9, label="y from"),
    Field("y_hi", 1.5, "float", 0.001, 1e9, label="y to"),
    Field("y_n", 6, "int", 1, 30, label="y points"),
    Field("rho", 0.9, "float", 0.01, 5.0, label="load when it is not an axis"),
    Field("n", 5_000, "int", L.MIN_REQUESTS, 50_000, label="requests per point"),
    Field("metric", "verdict", "str", choices=tuple(M.METRICS), label="colour"),
])
# the value ranges an axis may span on this page (the CLI has the library's own bounds)
AXIS_BOUNDS = {"load": (0.01, 5.0), "engine.token_budget": (1, L.MAX_BUDGET),
               "engine.kv_cache_tokens": (L.MIN_KV, L.MAX_KV), "engine.max_batch_size": (1, L.MAX_BATCH),
               "workload.arrival.rate": (L.MIN_RATE, L.MAX_RATE)}


def _axis_changed(which: str) -> None:
    """A new axis starts from its own default range."""
    f = st.session_state[ps.key(which)]
    lo, hi = M.AXES[f][3]
    ps.set(f"{which}_lo", float(lo))
    ps.set(f"{which}_hi", float(hi))


ps.restore()
st.title("Stability map — where does each scheduler keep up?")
st.markdown(
    "Pick two parameters; every cell of the map is one simulation at that pair of values, coloured by its "
    "**stability verdict** (or its backlog growth, or its tail latency). The dashed line is **theory's "
    "boundary**: each scheduler's capacity from queueing theory. Bigger maps — thousands to a hundred thousand "
    "points on a Dask cluster — are a command away: `python -m llmsim sweep FILE` (docs/sweep.md); load its "
    "Parquet result here.")

with st.sidebar:
    src = st.radio("Map", ["run", "file"], **ps.w("src", ["run", "file"]), horizontal=True,
                   format_func={"run": "run here", "file": "load a sweep result"}.get)

errors: list[str] = []
df = None
sweep_file = None  # the map as a sweep file, for python -m llmsim sweep
if src == "file":
    with st.sidebar:
        up = st.file_uploader("Sweep result (Parquet, from python -m llmsim sweep)", type=["parquet"],
                              key=ps.key("parquet"))
    ps.publish(["src", "metric"])
    ps.show_url_errors()
    if up is None:
        st.info("Choose a `results.parquet` written by `python -m llmsim sweep` (its directory also holds the "
                "parts it was built from).", icon=":material/upload_file:")
        st.stop()
    try:  # size, rows, columns and decoded size checked from the footer before any column is read;
        # the read's copies held in the server's run memory (tabs uploading at once take turns)
        with runs.hold(M.PARQUET_READ_BYTES):
            df = M.read_parquet(up.getvalue(), up.name)
    except ValueError as exc:  # a ConfigError too: the server is busy
        st.error(plain(exc), icon=":material/block:")
        st.stop()
    bad = M.check_table(df)
    if bad:
        st.error(f"{plain(up.name)}: {plain(bad)}", icon=":material/block:")
        st.stop()
    axes = M.numeric_axes(df)
    with st.sidebar:
        x = st.selectbox("x axis", axes, index=0, key=ps.key("fx"), format_func=M.short_label)
        y = st.selectbox("y axis", [a for a in axes if a != x], index=0, key=ps.key("fy"), format_func=M.short_label)
        for a in axes:
            if a not in (x, y) and df[a].nunique() > 1:
                vals = sorted(df[a].dropna().unique())
                v = st.selectbox(f"{M.short_label(a)} (fixed)", vals, key=ps.key(f"fix.{a}"))
                df = df[df[a] == v]
    if len(df) > M.MAX_MAP_CELLS:
        st.error(f"{plain(up.name)}: {len(df):,} cells to draw with these axes; this demo draws at most "
                 f"{M.MAX_MAP_CELLS:,} (fix more axes, or plot the Parquet file with pandas)", icon=":material/block:")
        st.stop()
    held = int(df.memory_usage(deep=True).sum())
    if held > M.MAX_MAP_BYTES:
        st.error(f"{plain(up.name)}: {held / 1e6:,.1f} MB of figures and text to draw with these axes; this demo "
                 f"draws at most {M.MAX_MAP_BYTES / 1e6:,.0f} MB (fix more axes, or plot the Parquet file with "
                 "pandas)", icon=":material/block:")
        st.stop()
    schedulers = [s for s in dict.fromkeys(df["scheduler"].dropna()) if isinstance(s, str)]
    if not schedulers:
        st.error(f"{plain(up.name)}: no point of this sweep ran (every row has an error).", icon=":material/block:")
        st.stop()
    title = up.name
else:
    # the engine and workload of the page shown before (a new user set them on the single-engine
    # page, then mapped the default engine: found as a new user would)
    inputs.setup_button(ps, st.sidebar)
    with st.sidebar:
        st.multiselect("Schedulers", list(SCHEDULERS), **ps.w("sched"),
                       help="\n".join(f"- **{k}**: {v.summary}" for k, v in SCHEDULERS.items()))
        st.subheader("Axes", divider="gray")
        for which in ("x", "y"):
            st.selectbox(f"{which} axis", AXIS_NAMES, **ps.w(which, AXIS_NAMES),
                         format_func=M.short_label, on_change=_axis_changed, args=(which,))
            c1, c2, c3 = st.columns([2, 2, 1.3])
            inputs._num(ps, f"{which}_lo", "from", 1.0, container=c1, fmt="%g")
            inputs._num(ps, f"{which}_hi", "to", 1.0, container=c2, fmt="%g")
            inputs._num(ps, f"{which}_n", "points", 1, container=c3)
        x, y = ps.get("x"), ps.get("y")
        if "load" not in (x, y) and "workload.arrival.rate" not in (x, y):
            inputs._num(ps, "rho", "Load ρ (fixed: neither axis sets the rate)", 0.05, fmt="%.2f")
        inputs._num(ps, "n", "Requests per point", 1_000,
                    help="Arrivals simulated in each cell; more gives sharper verdicts near the boundary."
                    + ("" if runs.MAP_WORK is None else
                       f" This demo's map may spend {runs.MAP_WORK:,.0f} kernel work units, shared equally by "
                       "its points: a point sure to need more is not run, one that reaches its share stops "
                       "with an inconclusive verdict."))
    inputs.link_presets(ps)
    upload = inputs.panel(ps, with_rate=False)
    own = ["src", "sched", "x", "x_lo", "x_hi", "x_n", "y", "y_lo", "y_hi", "y_n", "n", "metric"]
    if "load" not in (x, y) and "workload.arrival.rate" not in (x, y):
        own.append("rho")
    ps.publish(ps.visible + own)
    ps.show_url_errors()

    errors = inputs.check(ps, with_rate=False)
    schedulers = ps.get("sched")
    if not schedulers:
        errors.append("Schedulers: choose at least one.")
    if x == y:
        errors.append(f"Axes: x and y are both {M.AXES[x][0]}; choose two different parameters.")
    elif {x, y} == set(M.RATE_AXES):
        errors.append("Axes: load ρ and arrival rate λ both set the arrival rate (ρ is λ over the capacity), "
                      "so one would overwrite the other at every point; choose one of them and another "
                      "parameter.")
    for name in ("n", "x_n", "y_n", "rho"):
        f = ps.by_name[name]
        m = L.check(f.label[:1].upper() + f.label[1:], ps.get(name), f.lo, f.hi)
        if m:
            errors.append(m)
    for which in ("x", "y"):
        f = ps.get(which)
        lo_b, hi_b = AXIS_BOUNDS[f]
        lo, hi = ps.get(f"{which}_lo"), ps.get(f"{which}_hi")
        for label, v in (("from", lo), ("to", hi)):
            m = L.check(f"{which} axis ({M.AXES[f][0]}) {label}", v, lo_b, hi_b)
            if m:
                errors.append(m)
        if lo > hi:
            errors.append(f"{which} axis ({M.AXES[f][0]}): from {lo:g} must not exceed to {hi:g}.")
    if ps.get("wl") == inputs.TRACE:
        errors.append("Workload: a trace replays its own arrival times, so it has no rate or load to map; "
                      "choose a preset or custom workload (or sweep a trace with python -m llmsim sweep).")
    cells_n = len(schedulers) * ps.get("x_n") * ps.get("y_n")
    if cells_n > M.MAX_MAP_POINTS:
        errors.append(f"Map size: {len(schedulers)} schedulers × {ps.get('x_n')} × {ps.get('y_n')} = "
                      f"{cells_n:,} points is above this demo's limit of {M.MAX_MAP_POINTS:,}; "
                      "use python -m llmsim sweep for bigger maps.")
    elif cells_n * ps.get("n") > M.MAX_MAP_REQUESTS:
        errors.append(f"Map size: {cells_n:,} points × {ps.get('n'):,} requests is above this demo's limit of "
                      f"{M.MAX_MAP_REQUESTS:,} simulated requests per map; use fewer points or requests "
                      "(or python -m llmsim sweep).")
    if errors:
        for e in errors:
            st.error(e, icon=":material/block:")
        st.stop()

    axes = {"engine.scheduler": list(schedulers)}
    for which in ("x", "y"):
        f = ps.get(which)
        _, log, integer, _ = M.AXES[f]
        axes[f] = M.axis_values(ps.get(f"{which}_lo"), ps.get(f"{which}_hi"), int(ps.get(f"{which}_n")),
                                log, integer)
    if "load" not in axes and "workload.arrival.rate" not in axes:
        axes["load"] = [float(ps.get("rho"))]
    table = inputs.scenario_table(ps, int(ps.get("n")), None)
    table["sweep"] = {"seed": int(ps.get("seed")), "axes": axes, "name": "dashboard map",
                      "record": ["throughput_rps", "ttft_p99_s", "e2e_p99_s", "preemptions"]}
    try:
        sweep = sweep_from_table(table, ".")
    except ConfigError as exc:
        st.error(f"Cannot map this scenario — {plain(exc)}", icon=":material/block:")
        st.stop()
    key = sweep.fingerprint()
    df = runs.recall("sweep", key)
    if df is None:
        runs.warm_up()
        bar = st.progress(0.0, text=f"Simulating {sweep.size} points…")

        shown_at = [0.0]

        def _progress(done, total):  # at most ~4 redraws a second: each costs the browser
            if done >= total or time.monotonic() - shown_at[0] >= 0.25:
                shown_at[0] = time.monotonic()
                bar.progress(done / total if total else 1.0, text=f"Simulated {done} of {total} points")

        try:
            # its points run one at a time, in one of the server's worker processes
            with runs.long_job(runs.map_limits(sweep.size), st.empty()) as ex, runs.hold(runs.sweep_bytes(sweep)):
                # the same map may have been computed while this one waited (a class opening one link)
                df = runs.recall("sweep", key)
                if df is None:
                    # one point per task: a Stop, a changed input or a closed tab waits for one point
                    # at most, and a closed tab's task left running in its worker is one point
                    df = run_sweep(dataclasses.replace(sweep, batch=1), executor=ex, progress=_progress)
        except ConfigError as exc:  # the server is busy, or the page was closed meanwhile
            bar.empty()
            st.error(plain(exc), icon=":material/hourglass_disabled:")
            st.stop()
        runs.remember("sweep", key, df)
        bar.empty()
    title = "dashboard map"
    sweep_file = table

# --------------------------------------------------------------------------- map
metric = st.radio("Colour by", list(M.METRICS), **ps.w("metric", list(M.METRICS)), horizontal=True,
                  format_func=M.METRICS.get)
d = M.cells(df, x, y)
maps = M.charts(d, x, y, metric, schedulers)
for row in range(0, len(maps), 2):
    for col, m in zip(st.columns(2), maps[row:row + 2]):
        col.altair_chart(m, width="stretch", height=480)
agree = M.agreement(d)
notes = "; ".join(f"**{s}** {a} of {n}" for s, (a, n) in agree.items())
kind = M.boundary(d, x, y)[1]
st.caption(
    ("Dashed line: where theory puts each scheduler's capacity (above it the queue grows without bound). "
     "Where the token budget binds it is exact for orca and sarathi (b/t(b)); where max_batch_size binds "
     "first, orca's prefill-first batches leave its decodes at most that many slots and its line lies lower "
     "(hover a cell for each scheduler's capacity); where the KV cache binds it is "
     "the memory capacity, an approximation the simulation may beat or miss by some percent. "
     if kind == "line" else
     "Crosses: cells where theory predicts growth (the arrival rate exceeds the scheduler's capacity). ")
    + "Grey cells could not run (hover for the reason, e.g. a prompt longer than the budget of a scheduler "
    "that never chunks, or a point needing more than its share of the map's work budget). Near the boundary "
    "a single run is often *inconclusive*: the backlog's trend cannot be told apart from noise. "
    + (f"Simulation and theory agree on the decided cells: {notes}. " if notes else "")
    # a load axis beside one that moves the capacity: one ρ is a different rate in each column
    # (a vllm map read stable at 20,000 KV tokens and ρ 0.9 but unstable at 42,000 and ρ 0.7:
    # 10.1 against 11.7 req/s; tried as a new user would)
    + (f"ρ is the arrival rate over each {'column' if y == 'load' else 'row'}'s own best capacity: one ρ is a "
       f"different arrival rate in each {'column' if y == 'load' else 'row'} (hover a cell for its rate)."
       if "load" in (x, y) and not {x, y} <= {"load", "workload.arrival.rate"} else ""))

n_err = int((df["error"].fillna("") != "").sum())
c1, c2, c3, c4 = st.columns(4)
vc = d["verdict"].value_counts()
c1.metric("Points", f"{len(df):,}")
c2.metric("Stable", int(vc.get("stable", 0)))
c3.metric("Unstable", int(vc.get("unstable", 0)))
c4.metric("Inconclusive / not run", f"{int(vc.get('inconclusive', 0))} / {n_err}")

with st.expander("The data"):
    phone_nav.table(df, "map-data", hide_index=True)
dl = st.container(horizontal=True)  # a row that wraps: in three columns a projector (1024 px) cut their texts
dl.download_button("Download the map (CSV)", df.to_csv(index=False), file_name="llmsim-map.csv",
                   mime="text/csv", icon=":material/table:")
buf = io.BytesIO()
df.to_parquet(buf, index=False)
dl.download_button("Download the map (Parquet)", buf.getvalue(), file_name="llmsim-map.parquet",
                   mime="application/octet-stream", icon=":material/download:")
if sweep_file is not None:
    dl.download_button("Download as a sweep file (TOML)", M.sweep_file_text(sweep_file), file_name="llmsim-map.toml",
                       mime="application/toml", icon=":material/grid_on:")
