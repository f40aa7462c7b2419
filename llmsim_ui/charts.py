"""The dashboard's Altair charts: hover tooltips everywhere, click a legend entry to
highlight that series (shift-click for several), colours from ``palette``.

Altair (~0.2-0.45 s to import, and ~55 ms to build and validate a chart) is imported by
the functions that build charts with it, not with this module. The trajectories' panels, the
first chart a page sends and the one it redraws several times a second, are written out as
Vega-Lite (``_written_panel_spec``; tests/test_app_dashboard.py checks it against the spec
Altair builds), so the browser gets its empty axes and starts loading its chart code that much
sooner, and a run's end draws its hover layers without Altair.
"""

from __future__ import annotations

import functools
import json
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llmsim_ui import palette

if TYPE_CHECKING:
    import altair as alt

HEIGHT = 210  # px of plot area: a stable queue's fluctuation is visible, three charts fit a screen
Y_AXIS_PX = 56  # fixed width of every y axis (labels + title), so stacked charts' x axes line up
MAX_POINTS = 320  # per series drawn; trajectories have up to 2000 samples
LIVE_POINTS = 160  # per series in a frame of the live view


def kv_capacity(engine) -> int:
    """KV-cache tokens behind an engine's ``kv_tokens`` trajectory: a pool's column is the
    total over its replicas, so its per cent is of all their memory."""
    reps = getattr(engine, "replicas", ())
    return sum(r.kv_cache_tokens for r in reps) if reps else engine.kv_cache_tokens


def thin(df: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Every k-th row (and the last), so a series has at most about max_points rows."""
    n = len(df)
    if n <= max_points:
        return df
    idx = np.unique(np.append(np.arange(0, n, math.ceil(n / max_points)), n - 1))
    return df.iloc[idx]


def long_trajectories(trajs: dict, columns: dict, series: str, scale: dict | None = None,
                      max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Long table (time_s, <series>, metric, value) from label -> timeseries frames.

    columns: timeseries column -> metric title; scale: column -> factor (e.g. KV tokens to
    per cent of the cache)."""
    parts = []
    scale = scale or {}
    for label, ts in trajs.items():
        ts = thin(ts, max_points)
        for col, title in columns.items():
            if col not in ts:
                continue
            parts.append(pd.DataFrame({"time_s": ts["time_s"].to_numpy(), series: label, "metric": title,
                                       "value": ts[col].to_numpy() * scale.get(col, 1.0)}))
    if not parts:
        return pd.DataFrame({"time_s": [], series: [], "metric": [], "value": []})
    return pd.concat(parts, ignore_index=True)


def coinciding(df: pd.DataFrame, series: str, log: bool = False, within: float = 0.005) -> list[tuple[list, list]]:
    """Series whose lines coincide on a panel, so that one hides another, from the long table
    the panels draw: (the series, in series order; the metrics where they do), each group of two
    or more. Two lines coincide when, at every drawn time of the first, the second
    (interpolated) is within `within` of the panel's largest value: at ~210 px of plot, about a
    pixel (work-conserving schedulers below capacity run the same queues; tried as a new user
    would, orca's line could not be seen under sarathi's and nothing said so). log: compared as
    the log view draws them (symlog, constant 1), a share (a metric in per cent) as drawn, linear."""
    labels = list(dict.fromkeys(df[series]))
    groups: dict = {}
    for metric, panel in df.groupby("metric", sort=False):
        if log and not str(metric).endswith("(%)"):
            panel = panel.assign(value=np.sign(panel["value"]) * np.log1p(np.abs(panel["value"])))
        tol = within * max(float(panel["value"].abs().max()), 1e-12)
        lines = {k: (g["time_s"].to_numpy(), g["value"].to_numpy()) for k, g in panel.groupby(series, sort=False)}
        first = {k: k for k in labels}  # each series' group, named by its first member
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                if (first[a] == a and first[b] == b and a in lines and b in lines and len(lines[a][0])
                        and len(lines[b][0])):  # each within a pixel of its group's first line
                    (ta, va), (tb, vb) = lines[a], lines[b]
                    if ta[-1] == tb[-1] and np.all(np.abs(np.interp(ta, tb, vb) - va) <= tol):
                        first[b] = first[a]
        for root in dict.fromkeys(first.values()):
            group = tuple(k for k in labels if first[k] == root)
            if len(group) > 1:
                groups.setdefault(group, []).append(metric)
    return [(list(g), m) for g, m in groups.items()]


# The log view's ticks: 0 and the powers of ten from 10 (1 would sit on 0; Vega drops those outside the axis). Vega's
# symlog scale picks its ticks as a linear one would (vega/vega#2914): a backlog of 400k
# tokens got two, "0k" and "400k", and a bounded queue could not be read off at all
LOG_TICKS = [0] + [10 ** k for k in range(1, 16)]


def log_ticks(log: bool, value_format: str) -> dict:
    """Axis properties of the y scale: explicit ticks on the log view, each label formatted
    on its own (Vega's axis format takes one SI prefix for the whole axis: "0M" for 10, and
    on a linear view "0M" for 0 beside "0.2M")."""
    own = {"labelExpr": f"format(datum.value, {value_format!r})"}
    if log:
        return {"values": LOG_TICKS} | own | {"labelOverlap": "greedy"}
    return own if "s" in value_format else {}


DATASET = "trajectories"
# a panel's legend sits on top, in as many columns as its width holds (a legend on the right took
# half of a phone's width: ~110 px of plot at 375 px), each label cut to its column. A column is
# as wide as the longest label at LEGEND_CHAR_PX a character ("fastertransformer" is 89 px at
# 12 px) and LEGEND_ENTRY_PX for the symbol and the gap: short buffer names ("A.short") take two
# columns in a plot of 180 px (two charts to a row at 1024 px), where a fixed 112 px took one
LEGEND_CHAR_PX = 5.4
LEGEND_ENTRY_PX = 26


def legend_layout(labels) -> dict:
    """The top legend's columns and label limit, as Vega expressions of the plot's width: as
    many columns as entries while each gets its longest label's width, each label cut to its
    column."""
    labels = [str(x) for x in labels] or [""]
    col = max(48, math.ceil(LEGEND_CHAR_PX * max(len(x) for x in labels) + LEGEND_ENTRY_PX))
    columns = f"max(1, min({len(labels)}, floor(width / {col})))"
    return {"columns": {"expr": columns}, "labelLimit": {"expr": f"min(220, width / {columns} - {LEGEND_ENTRY_PX})"}}


def altair_legend_layout(labels) -> dict:
    """``legend_layout`` as keyword arguments of an ``alt.Legend``."""
    import altair as alt
    return {k: alt.ExprRef(v["expr"]) for k, v in legend_layout(labels).items()}


def _written_panel_spec(series: str, domain: tuple, colours: tuple, metric: str, log: bool, height: int,
                        value_format: str, x_title: str, y_title: str | None, chart_title: str | None,
                        interactive: bool) -> dict:
    """A trajectory panel as Altair builds it, written out: the same Vega-Lite but for the
    views' names and the schema URL (tests/test_app_dashboard.py builds it with Altair and
    compares, interactive or not). Built with Altair it took ~55 ms a panel (a run's end drew
    three for each new layout), after Altair's import, 0.2-0.45 s. interactive: with the hover
    layers (nearest point, tooltip, rule) and the legend that highlights a series, drawn when a
    run ends; else a live frame's lines alone. A live frame without the legend's selection is
    cheaper for the browser to build (its signals and a per-point test, which Streamlit's Vega
    interprets): the first trajectory of a visit is drawn ~0.5 s sooner (bench/README.md,
    Round 17)."""
    line_view, point_view = "view_panel_0", "view_panel_1"
    x = {"field": "time_s", "type": "quantitative", "title": x_title, "scale": {"domain": [0, 1.0], "nice": False}}
    y_label = y_title or metric
    base = {
        "color": {"field": series, "type": "nominal",
                  "scale": {"domain": list(domain), "range": list(colours)},
                  "legend": legend_layout(domain) | {"labelFontSize": 12, "orient": "top",
                                                          "symbolStrokeWidth": 4, "title": None}},
        "x": x,
        "y": {"field": "value", "type": "quantitative", "title": y_label,
              "scale": {"type": "symlog", "constant": 1} if log else {"type": "linear", "zero": True},
              "axis": {"format": value_format, "labelLimit": Y_AXIS_PX - 16, "maxExtent": Y_AXIS_PX,
                       "minExtent": Y_AXIS_PX, "tickMinStep": 1, "titleLimit": 400} | log_ticks(log, value_format)},
    }
    # Altair writes a string into an expression with Python's repr
    only_metric = {"filter": f"(datum.metric === {metric!r})"}
    layers = [{"mark": {"type": "line", "interpolate": "linear", "strokeWidth": 2},
               "encoding": base, "transform": [only_metric]}]
    params = []
    if interactive:
        layers[0]["encoding"] = base | {"opacity": {"condition": {"param": "pick", "value": 1.0}, "value": 0.12}}
        layers[0]["name"] = line_view
        params.append({"name": "pick", "select": {"type": "point", "fields": [series]}, "bind": "legend",
                       "views": [line_view]})
        hover = "hover_0"
        layers.append({
            "mark": {"type": "circle", "size": 50},
            "encoding": base | {
                "opacity": {"condition": {"param": hover, "value": 1.0, "empty": False}, "value": 0.0},
                "tooltip": [{"field": series, "type": "nominal"},
                            {"field": "time_s", "format": ",.6~r", "title": x_title, "type": "quantitative"},
                            {"field": "value", "format": ",.6~r", "title": y_label, "type": "quantitative"}]},
            "name": point_view, "transform": [only_metric]})
        layers.append({
            "mark": {"type": "rule", "color": "#888888", "strokeDash": [3, 3]},
            "encoding": {"color": {"value": "#888888"}, "x": x, "y": {"value": 0}, "y2": {"value": height}},
            "transform": [only_metric, {"filter": {"param": hover, "empty": False}}]})
        params.insert(0, {"name": hover, "select": {"type": "point", "clear": "pointerout", "fields": ["time_s"],
                                                    "nearest": True, "on": "pointerover"},
                          "views": [point_view]})
    spec = {"config": {"view": {"continuousWidth": 300, "continuousHeight": 300}}, "layer": layers,
            "data": {"name": DATASET}, "height": height,
            # the width fits the column; the height is the plot's, the legend's rows on top of it
            "autosize": {"type": "fit-x", "contains": "padding"}}
    if params:
        spec["params"] = params
    if chart_title:
        spec["title"] = {"text": chart_title, "anchor": "start", "fontSize": 14}
    return spec


@functools.lru_cache(maxsize=128)
def _panel_spec(series: str, domain: tuple, colours: tuple, metric: str, log: bool,
                height: int, value_format: str, x_title: str, y_title: str | None, chart_title: str | None,
                interactive: bool) -> str:
    """One panel's spec with a placeholder time axis (``_set_x_max`` fills it in), so a
    layout is built once whatever the run's horizon. interactive: with the hover layers;
    else the live frame's lines."""
    return json.dumps(_written_panel_spec(series, domain, colours, metric, log, height, value_format, x_title,
                                          y_title, chart_title, interactive))


def _set_x_max(spec: dict, x_max: float) -> None:
    for layer in spec.get("layer", []):
        x = layer.get("encoding", {}).get("x", {})
        if "scale" in x:
            x["scale"]["domain"] = [0, max(float(x_max), 1e-9)]


TIME_UNITS = ((2 * 86400, 86400.0, "days"), (2 * 3600, 3600.0, "hours"), (0, 1.0, "s"))


def time_unit(x_max: float) -> tuple[float, str]:
    """(seconds per unit, unit name) for a time axis reaching x_max seconds: a run at a
    very low rate lasts months of simulated time, which reads better in days."""
    for above, factor, name in TIME_UNITS:
        if x_max > above:
            return factor, name
    return 1.0, "s"


def _set_y_domain(spec: dict, vmax: float) -> None:
    """A queue that stayed (nearly) empty, e.g. at a very low rate, gets the axis 0..1
    instead of Vega's degenerate [0, 0] (drawn as NaN ticks) or a run of "0" labels."""
    if vmax >= 1 and math.isfinite(vmax):
        return
    for layer in spec.get("layer", []):
        y = layer.get("encoding", {}).get("y", {})
        if "scale" in y:
            y["scale"]["domain"] = [0, 1]


def trajectories(df: pd.DataFrame, series: str, cscale: alt.Scale | palette.Colours, metrics: list, x_max: float,
                 log: bool = True, height: int = HEIGHT, formats: dict | None = None,
                 x_title: str = "simulated time (s)", y_title: str | None = None,
                 titles: bool = False, default_format: str = ",.0f", live: bool = False) -> list[dict]:
    """Vega-Lite specs, one per metric, one line per series; click a legend entry to
    highlight a series. df from ``long_trajectories``; cscale: the colours (an ``alt.Scale``
    or a ``palette.Colours``: its domain and range).

    The live view redraws these several times a second: each panel's spec is built once
    per layout (cached, written out without Altair) and a frame only swaps in the new data,
    which keeps a frame at a few milliseconds. live: frames without the hover layer (drawn
    again, interactive, when the run ends).
    (One chart per metric rather than a vconcat: Vega-Lite drops a concatenated chart
    that has both a legend-bound and a hover selection.)"""
    formats = formats or {}
    factor, unit = time_unit(x_max)
    if factor != 1.0:
        df = df.assign(time_s=df["time_s"] / factor)
        x_title = x_title.replace("(s)", f"({unit})")
    specs = []
    for m in metrics:
        # a share (a percentage) stays linear: a log view of 0-100% shows nothing more
        spec = json.loads(_panel_spec(series, tuple(cscale.domain), tuple(cscale.range), m,
                                      bool(log) and not m.endswith("(%)"), int(height), formats.get(m, default_format), x_title, y_title,
                                      m if titles else None, not live))
        _set_x_max(spec, x_max / factor)
        data = df[df["metric"] == m]
        _set_y_domain(spec, float(data["value"].max()) if len(data) else 0.0)
        spec["datasets"] = {DATASET: data}
        specs.append(spec)
    return specs


def throughput(points: pd.DataFrame, theory: float, critical: pd.DataFrame, cscale: alt.Scale,
               x_max: float, probes: pd.DataFrame | None = None) -> alt.LayerChart:
    """Throughput (requests/s) against arrival rate, one line per scheduler; the theory
    line b/t(b); the diagonal (all offered work served); each scheduler's critical rate
    (a vertical rule) and the interval the search bracketed (a band); the search's probes
    (scheduler, rate, throughput, verdict), shaped by their verdict."""
    import altair as alt
    legend_sel = alt.selection_point(name="pick", fields=["scheduler"], bind="legend")
    x = alt.X("rate:Q", title="arrival rate (requests/s)", scale=alt.Scale(domain=[0, x_max], nice=False))
    shown = theory and math.isfinite(theory)
    # b/t(b) far above the rates searched (memory or max_batch_size bind long before it): the
    # axis keeps to the curves, and the line's label says where it is
    above = shown and theory > 1.5 * x_max
    y_max = x_max if above else max(x_max, theory * 1.1 if shown else 0)
    y = alt.Y("throughput:Q", title="throughput (completed requests/s)",
              scale=alt.Scale(domain=[0, y_max], nice=False))
    # in columns as the trajectory panels' legend: one row ran off a phone ("sa...")
    color = alt.Color("scheduler:N", scale=cscale, legend=alt.Legend(
        orient="top", title=None, symbolStrokeWidth=4, **altair_legend_layout(cscale.domain)))
    layers = []
    diag = pd.DataFrame({"rate": [0.0, x_max], "throughput": [0.0, x_max]})
    layers.append(alt.Chart(diag).mark_line(color="#bbbbbb", strokeDash=[2, 2]).encode(x=x, y=y))
    if above:
        th = pd.DataFrame({"throughput": [y_max], "label": [
            f"theory b/t(b) = {theory:.3g} req/s, far above this chart: memory or max_batch_size binds first"]})
        layers.append(alt.Chart(th).mark_text(align="left", dx=4, dy=9, color=palette.THEORY_COLOR)
                      .encode(x=alt.value(4), y="throughput:Q", text="label:N"))
    elif shown:
        th = pd.DataFrame({"throughput": [theory], "label": [f"theory b/t(b) = {theory:.3g} req/s"]})
        layers.append(alt.Chart(th).mark_rule(color=palette.THEORY_COLOR, strokeDash=[6, 4], strokeWidth=2)
                      .encode(y="throughput:Q", tooltip=[alt.Tooltip("label:N", title="theory")]))
        layers.append(alt.Chart(th).mark_text(align="left", dx=4, dy=-7, color=palette.THEORY_COLOR)
                      .encode(x=alt.value(4), y="throughput:Q", text="label:N"))
    # the scheduler lines come first: the shared legend takes its symbols from them
    base = alt.Chart(points if not points.empty else pd.DataFrame(columns=["scheduler", "rate", "throughput"])
                     ).encode(x=x, y=y, color=color)
    layers.append(base.mark_line(strokeWidth=2.5).encode(
        opacity=alt.condition(legend_sel, alt.value(1.0), alt.value(0.12))).add_params(legend_sel))
    layers.append(base.mark_point(filled=True, size=60).encode(
        opacity=alt.condition(legend_sel, alt.value(1.0), alt.value(0.12)),
        tooltip=[alt.Tooltip("scheduler:N"), alt.Tooltip("rate:Q", title="arrival rate (req/s)", format=".3g"),
                 alt.Tooltip("throughput:Q", title="throughput (req/s)", format=".3g")]))
    if probes is not None and not probes.empty:
        layers.append(alt.Chart(probes).mark_point(size=90, strokeWidth=2, filled=False, clip=True).encode(
            x=x, y=y, color=alt.Color("scheduler:N", scale=cscale, legend=None),
            shape=alt.Shape("verdict:N", scale=alt.Scale(domain=["stable", "inconclusive", "unstable"],
                                                          range=["circle", "diamond", "triangle-up"]),
                            # below the chart: beside the schedulers' at the top, 1024 px cut "unstable"
                            legend=alt.Legend(orient="bottom", title="search probes", direction="horizontal",
                                              labelLimit=0)),
            opacity=alt.condition(legend_sel, alt.value(0.9), alt.value(0.1)),
            tooltip=[alt.Tooltip("scheduler:N"), alt.Tooltip("rate:Q", title="probe rate (req/s)", format=".3g"),
                     alt.Tooltip("throughput:Q", title="throughput (req/s)", format=".3g"),
                     alt.Tooltip("verdict:N")]))
    band = critical.dropna(subset=["low", "high"])
    if not band.empty:
        layers.append(alt.Chart(band).mark_rect(opacity=0.12).encode(
            x="low:Q", x2="high:Q", color=color,
            tooltip=[alt.Tooltip("scheduler:N"), alt.Tooltip("low:Q", title="highest stable rate", format=".3g"),
                     alt.Tooltip("high:Q", title="lowest unstable rate", format=".3g")]))
    crit = critical.dropna(subset=["critical"])
    if not crit.empty:
        layers.append(alt.Chart(crit).mark_rule(strokeWidth=2, strokeDash=[8, 3]).encode(
            x="critical:Q", color=color, opacity=alt.condition(legend_sel, alt.value(0.9), alt.value(0.1)),
            tooltip=[alt.Tooltip("scheduler:N"),
                     alt.Tooltip("critical:Q", title="critical rate (req/s)", format=".3g")]))
    return alt.layer(*layers).properties(height=420)


def latency(df: pd.DataFrame, series: str, cscale: alt.Scale) -> alt.Chart:
    """One dot per scheduler for each latency measure, on a log scale (unstable runs
    reach minutes while stable ones stay at milliseconds; a log axis cannot start bars at 0).

    The measures are rows, their names horizontal beside them: as columns, a phone's width
    (375 px) left room for every other name and Vega dropped the p99s (tried as a new user
    would). The legend wraps in rows of two under the chart (one row cut "sarathi" short)."""
    import altair as alt
    legend_sel = alt.selection_point(name="pick", fields=[series], bind="legend")
    # a rule between rows and a gap inside each (a row's dots spread over most of the space to
    # the next one's, with nothing between: which row a dot was in was a guess); grid lines at
    # powers of ten only (a log axis drew nine a decade)
    sec = df["seconds"].to_numpy(dtype=float)
    decades = [10.0 ** k for k in range(math.floor(math.log10(sec.min())), math.ceil(math.log10(sec.max())) + 1)]
    base = alt.Chart(df).encode(
        y=alt.Y("measure:N", title=None, sort=list(dict.fromkeys(df["measure"])),
                scale=alt.Scale(paddingInner=0.35, paddingOuter=0.2),
                axis=alt.Axis(labelLimit=0, labelFontSize=12, grid=True, bandPosition=1, gridColor="#C8CCD4",
                              ticks=False)),
        yOffset=alt.YOffset(f"{series}:N", scale=alt.Scale(domain=list(cscale.domain))),
        x=alt.X("seconds:Q", title="seconds (log scale)", scale=alt.Scale(type="log"),
                axis=alt.Axis(values=decades, format="~g")),
        # labels uncut (a phone's legend read "sara")
        color=alt.Color(f"{series}:N", scale=cscale,
                        legend=alt.Legend(orient="bottom", title=None, labelLimit=0, columns=2)),
        opacity=alt.condition(legend_sel, alt.value(1.0), alt.value(0.15)),
        tooltip=[alt.Tooltip(f"{series}:N"), alt.Tooltip("measure:N"),
                 alt.Tooltip("seconds:Q", format=",.6~r")],
    )
    rows = df["measure"].nunique() * max(1, len(cscale.domain))
    return base.mark_circle(size=110).add_params(legend_sel).properties(height=max(200, 13 * rows))
