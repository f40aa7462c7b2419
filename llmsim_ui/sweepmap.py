"""The stability map: a sweep's rows as a heatmap per scheduler, theory drawn over it.

Everything here works on a sweep's result table (``llmsim.sweep``): a run made on the
page or a Parquet file written by ``python -m llmsim sweep``. The theory boundary comes
from the rows' own theory columns, so a loaded file needs no scenario:

- an axis that is the load rho (``load``): each scheduler's critical load
  ``theory_capacity_rps / theory_optimal_capacity_rps`` at every value of the other axis;
- an axis that is the arrival rate (``workload.arrival.rate``): ``theory_capacity_rps``;
- neither: every cell where theory predicts growth (arrival rate above the scheduler's
  capacity) gets a mark.
"""

from __future__ import annotations

import math
import re
import textwrap

import altair as alt
import numpy as np
import pandas as pd

from llmsim_ui import palette

# what the page may ask for in one map (the hosted demo's bound; the CLI has none)
MAX_MAP_POINTS = 600            # cells x schedulers
MAX_MAP_REQUESTS = 6_000_000    # simulated arrivals over the whole map
MAX_PARQUET_BYTES = 50_000_000
MAX_PARQUET_ROWS = 500_000       # a 100,000-point sweep of up to five schedulers
MAX_PARQUET_COLUMNS = 200
# bytes once decoded (Parquet compresses well: bound it before reading). A map this page can
# draw (MAX_MAP_CELLS rows of ~40 columns) decodes to ~13 MB; 150 MB let a 148 kB file of
# 40,000 rows, each with a 3,500-character error, take ~900 MB of the server's memory and
# 5-6 s of its CPU per upload (found as a hostile visitor would)
MAX_PARQUET_MEMORY = 48_000_000
PARQUET_READ_BYTES = 6 * MAX_PARQUET_MEMORY  # the read's peak (Arrow, then pandas), held in the server's run memory
MAX_PARQUET_TEXT = 2_000         # characters in one text cell (an error message is a few hundred)
MAX_MAP_BYTES = 16_000_000       # the drawn table's memory (its chart data, the data table and downloads copy it)
MAX_MAP_SCHEDULERS = 8           # maps drawn from one table: one per scheduler (each ~60 ms of server CPU)
MAX_AXIS_VALUES = 200            # distinct values of one numeric axis (its cells and ticks)
MAX_MAP_CELLS = 40_000           # cells drawn in all maps together (~1 s of server CPU, ~10 MB to the browser)
MAX_AXIS_ABS = 1e15              # an axis value's size (±1e308 made the cells' edges infinite: a blank map)
# what an uploaded table's names and values may be: the sweep writes field paths, scheduler
# names and its own verdicts (anything else would end up in labels, tooltips and captions)
_COLUMN = re.compile(r"[A-Za-z0-9_.\[\]-]{1,100}")
_SCHEDULER = re.compile(r"[A-Za-z0-9_-]{1,64}")
# columns cells() adds for the chart: a file's own column of one of these names was overwritten
_WORKING = ("x", "y", "x0", "x1", "y0", "y1", "theory_unstable")
_NUMERIC = ("arrival_rate_rps", "theory_capacity_rps", "theory_optimal_capacity_rps", "load", "growth",
            "e2e_p99_s", "ttft_p99_s")

# the axes offered on the page: field -> (label, log scale, whole numbers, default range)
AXES = {
    "load": ("Load ρ (arrival rate ÷ best possible capacity)", False, False, (0.5, 1.5)),
    "engine.token_budget": ("Token budget b (tokens per iteration)", True, True, (128, 2048)),
    "engine.kv_cache_tokens": ("KV cache M (tokens)", True, True, (20_000, 400_000)),
    "engine.max_batch_size": ("Max batch size k (requests per iteration)", True, True, (16, 256)),
    "workload.arrival.rate": ("Arrival rate λ (requests per second)", False, False, (1.0, 20.0)),
}
RATE_AXES = ("load", "workload.arrival.rate")


def short_label(axis: str) -> str:
    """An axis's name for a sidebar select: its label without the parenthesis ("Token budget b";
    the whole label was cut to "Token budget b (tokens per iterat"), or a sweep file's own column
    name for an axis the page does not know."""
    return AXES[axis][0].split(" (")[0] if axis in AXES else axis


METRICS = {
    "verdict": "Verdict (simulation)",
    "growth": "Backlog growth (share of arriving work)",
    "e2e_p99_s": "End-to-end latency p99 (s)",
    "ttft_p99_s": "Time to first token p99 (s)",
}
VERDICTS = ["stable", "inconclusive", "unstable", "error"]
VERDICT_COLORS = ["#009E73", "#E69F00", "#D55E00", "#BBBBBB"]


def axis_values(lo: float, hi: float, num: int, log: bool, integer: bool) -> list:
    """num values from lo to hi (geometric on a log axis), rounded on a whole-number axis; values
    that round to the same one are one value (a load from 1 to 1.0000001 in 30 points ran 30
    simulations drawn over each other in one cell)."""
    if num == 1:
        xs = [lo]
    elif log:
        # each value kept within a quarter of the step between two (and 2%): no two merge
        within = min(0.02, abs((hi / lo) ** (1.0 / (num - 1)) - 1.0) / 4)
        xs = [lo] + [_round_inner(x, within * abs(x)) for x in np.geomspace(lo, hi, num)[1:-1]] + [hi]
    else:
        # within a tenth of the step: 1 to 20 in 4 points is 1, 7, 14, 20 (not 7.33 and 13.7)
        step = abs(hi - lo) / (num - 1)
        xs = [lo] + [_round_inner(x, step / 10) for x in np.linspace(lo, hi, num)[1:-1]] + [hi]
    if integer:
        return sorted(dict.fromkeys(int(round(x)) for x in xs))
    return list(dict.fromkeys(float(f"{x:.6g}") for x in xs))


def _round_inner(x: float, within: float) -> float:
    """An axis's inner value as a reader would write it: a whole number stays (256, 512, 1024
    from 256 to 4096), others are cut to the fewest significant digits (1 to 6) that stay within
    `within` of it: KV caches from 20,000 to 400,000 in 5 geometric steps are 42,000 and 89,000,
    not 42,295 and 89,443; rates from 1 to 20 in 4 are 7 and 14, not 7.33 and 13.7 (ticks that
    read as arbitrary; tried as a new user would)."""
    if abs(x - round(x)) <= 1e-9 * abs(x):
        return float(round(x))
    for digits in range(1, 7):
        r = float(f"{x:.{digits - 1}e}")
        if abs(r - x) <= within:
            return r
    return x


def tick_format(values) -> str:
    """A d3 format for the ticks: whole numbers as they are, with thousands separators
    (token budgets 1,024 and 2,048, KV caches 42,295 and 89,443, not 1.02e+3 and 4.23e+4);
    others in decimal notation with the fewest significant digits (3 to 6) that still tell
    every tick apart: 8 loads from 0.5 to 1.5 read 0.643, 0.786, ... rather than 0.642857."""
    if all(float(v).is_integer() for v in values):
        return ",d"
    for digits in range(3, 7):
        if len({f"{v:.{digits}g}" for v in values}) == len(values):
            return f",.{digits}~r"
    return ",.6~r"


def _ticks(values) -> alt.Axis:
    return alt.Axis(values=values, format=tick_format(values))


def sweep_axes(df: pd.DataFrame) -> list[str]:
    """The axis columns of a result table (they sit between `replications` and `scheduler`)."""
    cols = list(df.columns)
    try:
        return cols[cols.index("replications") + 1:cols.index("scheduler")]
    except ValueError:
        return []


class _Refused(ValueError):
    """A readable Parquet file beyond this demo's bounds (pyarrow's own errors are
    ValueErrors too: they say the file is unreadable)."""


def read_parquet(data: bytes, name: str) -> pd.DataFrame:
    """A sweep result uploaded as Parquet, its size checked from the file's footer before
    any column is decompressed. ValueError says what is wrong, naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    if len(data) > MAX_PARQUET_BYTES:
        raise ValueError(f"{name}: {len(data):,} bytes is above this demo's limit of {MAX_PARQUET_BYTES:,} bytes")
    try:
        f = pq.ParquetFile(pa.BufferReader(data))
        meta = f.metadata
    except Exception as exc:  # pyarrow's errors for a file that is not Parquet vary by version
        raise ValueError(f"{name}: not a readable Parquet file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if meta.num_rows > MAX_PARQUET_ROWS:
        raise ValueError(f"{name}: {meta.num_rows:,} rows is above this demo's limit of {MAX_PARQUET_ROWS:,}")
    if meta.num_columns > MAX_PARQUET_COLUMNS:
        raise ValueError(f"{name}: {meta.num_columns:,} columns is above this demo's limit of {MAX_PARQUET_COLUMNS}")
    # decoded, not just decompressed: run-length and dictionary encodings keep a column of
    # repeated values tiny in the footer's sizes, so count at least 8 bytes per value too
    size = max(sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)),
               8 * meta.num_rows * meta.num_columns)
    if size > MAX_PARQUET_MEMORY:
        raise ValueError(f"{name}: {size:,} bytes once decompressed is above this demo's limit of "
                         f"{MAX_PARQUET_MEMORY:,}")
    # numbers and text only: a nested column (a list of dictionary-encoded strings) decodes
    # before anything can count it (a 4 kB file asked for 100 GB)
    for fld in f.schema_arrow:
        t = fld.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_null(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise _Refused(f"{name}: column {str(fld.name)[:60]!r} is of type {str(t)[:60]}; a sweep result "
                           "holds numbers and text only")
    # text columns: a dictionary-encoded column of one long string repeated is tiny in the
    # footer (3.7 kB for 400 MB), so read text as dictionaries (what the file holds) and
    # count what they would decode to before decoding anything
    import pyarrow.compute as pc
    text = [fld.name for fld in f.schema_arrow if pa.types.is_string(fld.type) or pa.types.is_large_string(fld.type)]
    try:
        table = pq.ParquetFile(pa.BufferReader(data), read_dictionary=text).read()
        decoded = 0
        for col_name in table.column_names:
            col = table[col_name]
            if not pa.types.is_dictionary(col.type):
                decoded += col.nbytes
                continue
            for chunk in col.chunks:
                lengths = pc.binary_length(chunk.dictionary)
                longest = pc.max(lengths).as_py() or 0
                if longest > MAX_PARQUET_TEXT:
                    raise _Refused(f"{name}: column {col_name!r} holds text of {longest:,} characters; this "
                                     f"demo reads at most {MAX_PARQUET_TEXT:,} per cell")
                decoded += int(pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0) + 8 * len(chunk)
        if decoded > MAX_PARQUET_MEMORY:
            raise _Refused(f"{name}: {decoded:,} bytes once decoded is above this demo's limit of "
                             f"{MAX_PARQUET_MEMORY:,}")
        table = pa.table({c: (pa.chunked_array([ch.dictionary_decode() for ch in table[c].chunks],
                                               type=table[c].type.value_type)
                              if pa.types.is_dictionary(table[c].type) else table[c])
                          for c in table.column_names})
        return table.to_pandas()
    except _Refused:
        raise
    except Exception as exc:
        raise ValueError(f"{name}: not a readable Parquet file ({type(exc).__name__}: {str(exc)[:200]})") from None


def _text_values(col: pd.Series) -> list | None:
    """The distinct non-missing values of a text column, or None if any is not text."""
    vals = col.dropna().unique()
    return None if any(not isinstance(v, str) for v in vals) else list(vals)


def check_table(df: pd.DataFrame) -> str | None:
    """None if df is a sweep result table with two numeric axes that this page can draw,
    else what is wrong: missing columns, names or values a sweep does not write (they would
    reach labels and tooltips), more maps, axis values or infinities than it draws."""
    bad = [c for c in df.columns if not isinstance(c, str) or not _COLUMN.fullmatch(c)]
    if bad:
        return (f"column name {str(bad[0])[:60]!r}: a sweep result's columns are field names (letters, digits, "
                "'_', '.', '[', ']', '-')")
    clash = [c for c in df.columns if c in _WORKING]
    if clash:
        return (f"column {clash[0]!r}: a name this page uses for its own working columns "
                f"({', '.join(_WORKING)}); a sweep result never has one")
    need = {"point", "scheduler", "verdict", "error", "arrival_rate_rps", "theory_capacity_rps"}
    if "load" in df.columns:  # the load axis's boundary is capacity over the best scheduler's
        need.add("theory_optimal_capacity_rps")
    miss = sorted(need - set(df.columns))
    if miss:
        return (f"not an llmsim sweep result: column(s) {', '.join(miss)} missing "
                "(write one with python -m llmsim sweep FILE)")
    for c in _NUMERIC:
        if c in df and not pd.api.types.is_numeric_dtype(df[c]):
            return f"column {c}: expected numbers"
    texts = {c: _text_values(df[c]) for c in ("scheduler", "verdict", "error")}
    for c, vals in texts.items():
        if vals is None:
            return f"column {c}: expected text"
    if len(texts["scheduler"]) > MAX_MAP_SCHEDULERS:
        return (f"{len(texts['scheduler']):,} schedulers in the table; this demo draws at most "
                f"{MAX_MAP_SCHEDULERS} maps (one per scheduler)")
    if any(not _SCHEDULER.fullmatch(v) for v in texts["scheduler"]):
        return "column scheduler: scheduler names are letters, digits, '_' and '-'"
    if set(texts["verdict"]) - set(VERDICTS) - {""}:
        return f"column verdict: expected {', '.join(VERDICTS)}"
    for c in METRICS:  # a latency's colour scale is taken from its values: an infinity broke the spec
        if c in df and c not in ("verdict", "growth") and np.isinf(df[c].to_numpy(dtype=float, na_value=np.nan)).any():
            return f"column {c}: infinite values (a sweep writes a finite figure, or none where nothing was measured)"
    num = numeric_axes(df)
    for a in num:
        v = df[a].to_numpy(dtype=float, na_value=np.nan)
        if np.isinf(v).any():
            return f"axis {a}: infinite values cannot be placed on a map"
        if (np.abs(v[np.isfinite(v)]) > MAX_AXIS_ABS).any():
            return (f"axis {a}: values beyond ±{MAX_AXIS_ABS:g} cannot be placed on a map (the cells' edges "
                    "overflow); a sweep's axes are token counts, rates and loads")
        if a in AXES and AXES[a][1] and (v[np.isfinite(v)] <= 0).any():
            return f"axis {a}: values must be above 0 (it is drawn on a log scale)"
        k = df[a].nunique()
        if k == 0:
            return f"axis {a}: no values (every row's {a} is empty), nothing to place on a map"
        if k > MAX_AXIS_VALUES:
            return (f"axis {a}: {k:,} distinct values; this demo draws at most {MAX_AXIS_VALUES} per axis "
                    "(plot bigger sweeps from the Parquet file with pandas)")
    if len(num) < 2:
        return (f"a map needs two numeric axes; this sweep has {', '.join(sweep_axes(df)) or 'none'} "
                "(engine.scheduler and text axes are not drawn as axes)")
    return None


def numeric_axes(df: pd.DataFrame) -> list[str]:
    return [a for a in sweep_axes(df) if a != "engine.scheduler" and pd.api.types.is_numeric_dtype(df[a])]


def _edges(values: list, log: bool) -> dict:
    """value -> (low edge, high edge) of its cell: halfway to its neighbours."""
    v = sorted(values)
    t = np.log(v) if log else np.asarray(v, float)
    if len(v) == 1:
        w = abs(t[0]) * 0.1 or 0.5
        lo, hi = np.array([t[0] - w]), np.array([t[0] + w])
    else:
        mid = (t[1:] + t[:-1]) / 2
        lo = np.concatenate([[t[0] - (mid[0] - t[0])], mid])
        hi = np.concatenate([mid, [t[-1] + (t[-1] - mid[-1])]])
    if log:
        lo, hi = np.exp(lo), np.exp(hi)
    return {x: (float(a), float(b)) for x, a, b in zip(v, lo, hi)}


def is_log(field: str, values) -> bool:
    if field in AXES:
        return AXES[field][1]
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return bool(v) and min(v) > 0 and max(v) / min(v) > 20


def cells(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """One row per (scheduler, x, y) with its cell's edges and what the map shows."""
    d = df.copy()
    d["verdict"] = d["verdict"].astype("object").where(d["error"].fillna("") == "", "error").fillna("error")
    d["theory_unstable"] = d["arrival_rate_rps"] > d["theory_capacity_rps"] * (1 + 1e-9)
    lx, ly = is_log(x, d[x]), is_log(y, d[y])
    ex, ey = _edges(list(d[x].dropna().unique()), lx), _edges(list(d[y].dropna().unique()), ly)
    d = d[d[x].notna() & d[y].notna()].copy()
    d["x0"] = d[x].map(lambda v: ex[v][0])
    d["x1"] = d[x].map(lambda v: ex[v][1])
    d["y0"] = d[y].map(lambda v: ey[v][0])
    d["y1"] = d[y].map(lambda v: ey[v][1])
    d["scheduler"] = d["scheduler"].astype("object").fillna(d.get("engine.scheduler", "?"))
    d["x"], d["y"] = d[x], d[y]
    return d


def boundary(d: pd.DataFrame, x: str, y: str) -> tuple[pd.DataFrame, str]:
    """(points of the theory boundary per scheduler, kind): kind "line" (a curve in the
    x-y plane) or "cells" (the cells theory calls unstable)."""
    ok = d[d["error"].fillna("") == ""]
    rows = []
    for axis, other in ((y, x), (x, y)):
        if axis not in RATE_AXES:
            continue
        for (s, v), g in ok.groupby(["scheduler", other]):
            cap = g["theory_capacity_rps"]
            if axis == "load":
                crit = (cap / g["theory_optimal_capacity_rps"]).mean()
            else:
                crit = cap.mean()
            if np.isfinite(crit):
                rows.append({"scheduler": s, "x": crit if axis == x else v, "y": crit if axis == y else v,
                             "order": v})
        return pd.DataFrame(rows, columns=["scheduler", "x", "y", "order"]), "line"
    cellsd = ok[ok["theory_unstable"]][["scheduler", "x", "y"]].assign(order=0)
    return cellsd, "cells"


def title_lines(title: str, width: int = 28):
    """An axis title as one line if it has at most `width` characters, else as lines: the
    name, then the bracketed unit (each wrapped at 40 characters). Two maps side by side at
    1,024 px are ~270 px wide, and Vega clipped a longer one-line title at the chart's edge."""
    if len(title) <= width:
        return title
    head, sep, unit = title.partition(" (")
    parts = [head, "(" + unit] if sep else [title]
    return [line for part in parts for line in textwrap.wrap(part, 40)]


def chart(d: pd.DataFrame, x: str, y: str, metric: str, scheduler: str, log_domain=alt.Undefined) -> alt.LayerChart:
    """The heatmap of one scheduler with the theory boundary over it, as wide as the column it
    is drawn in; log_domain fixes a latency metric's colour scale (see ``charts``)."""
    keep = ["x", "y", "x0", "x1", "y0", "y1", "verdict", "growth", "arrival_rate_rps", "theory_capacity_rps", "error",
            metric]
    sub = d.loc[d["scheduler"] == scheduler, [c for c in dict.fromkeys(keep) if c in d]]  # what the chart reads
    xs, ys = (alt.Scale(type="log" if is_log(x, d[x]) else "linear", zero=False, nice=False),
              alt.Scale(type="log" if is_log(y, d[y]) else "linear", zero=False, nice=False))
    xt = title_lines(AXES.get(x, (x,))[0])
    yt = title_lines(AXES.get(y, (y,))[0])
    if metric == "verdict":
        color = alt.Color("verdict:N", scale=alt.Scale(domain=VERDICTS, range=VERDICT_COLORS),
                          legend=alt.Legend(title="verdict", orient="bottom", columns=2))
    elif metric == "growth":
        color = alt.Color("growth:Q", scale=alt.Scale(scheme="redblue", reverse=True, domainMid=0,
                                                      domain=[-0.5, 0.5], clamp=True),
                          legend=alt.Legend(title="backlog growth", orient="bottom", format="+.0%", columns=2))
    else:
        color = alt.Color(f"{metric}:Q", scale=alt.Scale(type="log", scheme="viridis", domain=log_domain),
                          legend=alt.Legend(title=METRICS.get(metric, metric), orient="bottom", columns=2))
    tips = [alt.Tooltip("x:Q", title=x, format=".4g"), alt.Tooltip("y:Q", title=y, format=".4g"),
            alt.Tooltip("verdict:N"), alt.Tooltip("growth:Q", format="+.1%"),
            alt.Tooltip("arrival_rate_rps:Q", title="arrival rate (req/s)", format=".4g"),
            alt.Tooltip("theory_capacity_rps:Q", title="theory capacity (req/s)", format=".4g")]
    if metric not in ("verdict", "growth"):
        tips.append(alt.Tooltip(f"{metric}:Q", format=".4g"))
    if "error" in sub:
        tips.append(alt.Tooltip("error:N"))
    # a tick at each swept value, the centre of its cell (Vega's round ticks fell between cells)
    xa, ya = (_ticks(sorted(float(v) for v in d[c].dropna().unique())) for c in ("x", "y"))
    base = alt.Chart(sub).mark_rect(stroke="white", strokeWidth=0.5).encode(
        x=alt.X("x0:Q", scale=xs, title=xt, axis=xa), x2="x1:Q",
        y=alt.Y("y0:Q", scale=ys, title=yt, axis=ya), y2="y1:Q",
        color=color, tooltip=tips)
    bd, kind = boundary(d[d["scheduler"] == scheduler], x, y)
    layers = [base]
    if len(bd):
        bd = bd.assign(what="theory: capacity of this scheduler")
        if kind == "line":
            lo_x, hi_x = sub["x0"].min(), sub["x1"].max()
            lo_y, hi_y = sub["y0"].min(), sub["y1"].max()
            bd = bd[(bd["x"] >= lo_x) & (bd["x"] <= hi_x) & (bd["y"] >= lo_y) & (bd["y"] <= hi_y)]
            layers.append(alt.Chart(bd).mark_line(color=palette.THEORY_COLOR, strokeDash=[6, 3], strokeWidth=2.5,
                                                  point=alt.OverlayMarkDef(color=palette.THEORY_COLOR, size=25))
                          .encode(x=alt.X("x:Q", scale=xs), y=alt.Y("y:Q", scale=ys), order="order:Q",
                                  tooltip=[alt.Tooltip("what:N", title=""),
                                           alt.Tooltip("x:Q", title=x, format=".4g"),
                                           alt.Tooltip("y:Q", title=y, format=".4g")]))
        else:
            layers.append(alt.Chart(bd).mark_point(shape="cross", color=palette.THEORY_COLOR, size=40, filled=True)
                          .encode(x=alt.X("x:Q", scale=xs), y=alt.Y("y:Q", scale=ys),
                                  tooltip=[alt.Tooltip("what:N", title="")]))
    return alt.layer(*layers).properties(title=scheduler, width="container", height=260)


def charts(d: pd.DataFrame, x: str, y: str, metric: str, schedulers: list) -> list:
    """One map per scheduler, on one colour scale. Drawn in columns that fill the page (a
    Vega-Lite concat has a fixed width: at 1,024 px the second map was cut off)."""
    dom = alt.Undefined  # verdict and growth have fixed domains; a latency spans every map's cells
    if metric not in ("verdict", "growth") and metric in d:
        v = d[metric][(d[metric] > 0) & np.isfinite(d[metric])]
        dom = [float(v.min()), float(v.max())] if len(v) else alt.Undefined
    return [chart(d, x, y, metric, s, dom) for s in schedulers]


def agreement(d: pd.DataFrame) -> dict:
    """How often simulation and theory agree, per scheduler (decided cells only)."""
    ok = d[d["verdict"].isin(["stable", "unstable"])]
    out = {}
    for s, g in ok.groupby("scheduler"):
        sim_unstable = g["verdict"] == "unstable"
        out[s] = (int((sim_unstable == g["theory_unstable"]).sum()), len(g))
    return out


def sweep_file_text(table: dict) -> str:
    """A map's scenario-plus-[sweep] table as a sweep file for ``python -m llmsim sweep``."""
    import tomli_w
    return ("# The Stability map page's map as a sweep file: python -m llmsim sweep llmsim-map.toml --csv\n"
            "# (more points or requests: edit [sweep.axes] and sweep.num_requests; docs/sweep.md)\n"
            + tomli_w.dumps(table))
