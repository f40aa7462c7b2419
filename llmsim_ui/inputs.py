"""The engine + workload input panel shared by the single-engine and capacity pages, and
scenario files in and out.

The panel's widgets produce a scenario *table* in TOML form (the dicts
``llmsim.scenario_from_table`` reads), so the library's one validation point checks
every value and names the field when one is wrong. Defaults are the paper's headline
setting (scenarios/paper/headline.toml) on the paper's own hardware fit.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

import numpy as np
import streamlit as st

import llmsim
from llmsim import ConfigError, SCHEDULERS
from llmsim.pool import ROUTERS
from llmsim.presets import HARDWARE_PRESETS, WORKLOAD_PRESETS
from llmsim.workload import TraceArrivals, TraceLengths, parse_trace
from llmsim_ui import limits as L
from llmsim_ui import phone_nav
from llmsim_ui.state import Field, PageState, published

CUSTOM = "custom"
TRACE = "trace"
# The defaults are scenarios/paper/headline.toml: the paper's staircase t(n) for CodeLlama-34B
# on one A100 (a custom batch time: c = 11.28 ms, a = 35.47 ms, b0 = 128), b = 512, a KV cache
# of 20,000,000 tokens (memory does not bind in any run the page makes, as in the paper: with
# 1,000,000 vllm's running requests fill it after ~4,000 s and memory gates its prefills), 100 + 100 tokens per request
# at 15.5 req/s (load 0.93). tests/test_app_dashboard.py checks they match the file.
_HW_DEFAULT = CUSTOM
_KV_DEFAULT = 20_000_000
_RATE_DEFAULT = 15.5
BATCH_MODELS = ("constant", "staircase", "piecewise", "affine")
ARRIVALS = ("poisson", "gamma", "deterministic")
DISTS = ("constant", "uniform", "geometric", "lognormal")
MAX_UI_REPLICAS = 64  # the library allows 256; the dashboard keeps runs short
ROUTER_HELP = ("How a request picks its replica: round_robin in turn; random; jsq_tokens the one with the "
               "fewest unprocessed tokens; least_requests the fewest waiting + running requests; "
               "power_of_two the better of two random ones. State-aware routers reach the sum of the "
               "replicas' capacities; round robin and random lose when replicas differ (docs/model.md, Pools).")
DIST_LABELS = {"constant": "constant", "uniform": "uniform (low..high)", "geometric": "geometric (mean)",
               "lognormal": "lognormal (mean, cv, max)"}


def _length_fields(p: str, what: str, default: int) -> list[Field]:
    return [
        Field(f"{p}_dist", "constant", "str", choices=DISTS, label=f"{what} distribution"),
        Field(f"{p}_value", default, "int", 1, L.MAX_LENGTH, label=f"{what} tokens"),
        Field(f"{p}_low", max(1, default // 2), "int", 1, L.MAX_LENGTH, label=f"{what} low"),
        Field(f"{p}_high", default * 3 // 2, "int", 1, L.MAX_LENGTH, label=f"{what} high"),
        Field(f"{p}_mean", float(default), "float", 1, L.MAX_LENGTH, label=f"{what} mean"),
        Field(f"{p}_cv", 1.0, "float", 0.01, 20, label=f"{what} cv"),
        Field(f"{p}_max", 8192, "int", 1, L.MAX_LENGTH, label=f"{what} max"),
    ]


def fields(with_rate: bool = True) -> list[Field]:
    """The panel's fields; with_rate=False leaves the arrival rate out (the capacity page
    sweeps it)."""
    f = [
        Field("hw", _HW_DEFAULT, "str", choices=(CUSTOM,) + tuple(HARDWARE_PRESETS), label="GPU / model"),
        Field("bt", "staircase", "str", choices=BATCH_MODELS, label="batch-time model"),
        Field("bt_ms", 50.0, "float", 0.001, L.MAX_ITER_MS, label="iteration time (ms)"),
        Field("st_c", 11.28, "float", 0.0, L.MAX_ITER_MS, label="staircase c (ms)"),
        Field("st_a", 35.47, "float", 0.0, L.MAX_ITER_MS, label="staircase a (ms)"),
        Field("st_b0", 128, "int", 1, L.MAX_BUDGET, label="staircase b0 (tokens)"),
        Field("pw_c", 9.3, "float", 0.001, L.MAX_ITER_MS, label="piecewise c (ms)"),
        Field("pw_a", 64.0, "float", 0.0, 1e6, label="piecewise a (µs per token)"),
        Field("pw_b0", 109, "int", 1, L.MAX_BUDGET, label="piecewise b0 (tokens)"),
        Field("af_c0", 16.44, "float", 0.001, L.MAX_ITER_MS, label="affine c0 (ms)"),
        Field("af_p", 47.84, "float", 0.0, 1e6, label="affine prefill (µs per token)"),
        Field("af_d", 18.21, "float", 0.0, 1e6, label="affine decode (µs per token)"),
        Field("kv", _KV_DEFAULT, "int", L.MIN_KV, L.MAX_KV, label="KV cache (tokens)"),
        Field("budget", 512, "int", 1, L.MAX_BUDGET, label="token budget"),
        Field("kmax", 0, "int", 0, L.MAX_BATCH, label="max batch size"),
        Field("reps", 1, "int", 1, MAX_UI_REPLICAS, label="replicas"),
        Field("router", "jsq_tokens", "str", choices=tuple(ROUTERS), label="router"),
        Field("wl", CUSTOM, "str", choices=(CUSTOM,) + tuple(WORKLOAD_PRESETS) + (TRACE,), label="workload"),
        Field("arr", "poisson", "str", choices=ARRIVALS, label="arrival process"),
        Field("cv", 2.0, "float", 0.01, 100.0, label="inter-arrival cv"),
    ]
    if with_rate:
        f += [Field("rate", _RATE_DEFAULT, "float", L.MIN_RATE, L.MAX_RATE, label="arrival rate (requests/s)"),
              Field("rho", 0.93, "float", L.MIN_LOAD, L.MAX_LOAD, label="load ρ"),
              Field("speed", 1.0, "float", 0.001, 1000.0, label="trace speed-up")]
    f += _length_fields("p", "prompt", 100) + _length_fields("o", "output", 100)
    f += [Field("seed", 1, "int", 0, L.MAX_SEED, label="seed")]
    return f


# ------------------------------------------------------------- one setup, several pages

# the pages with this engine and workload panel, as their page lists name them
SETUP_PAGES = {"single": "Single engine", "cmp": "Compare", "cap": "Capacity", "tl": "Timeline",
               "map": "Stability map"}
_VISITS = "llmsim.setup_visits"  # session key: those pages, the most recently drawn last


def _setup_names(ps: PageState) -> list[str]:
    """The engine and workload fields a page shares with the others (the load follows the rate)."""
    return [f.name for f in fields(with_rate=True) if f.name in ps.by_name and f.name != "rho"]


def setup_from(ps: PageState) -> tuple[str, dict] | None:
    """The engine and workload of another page (of SETUP_PAGES) to offer on this one: (its
    title, {field: value}), or None. Each page keeps its own inputs; a new user set a GPU and a
    workload on one page, opened the capacity page and searched the default engine's capacity
    without a word (found as a new user would).

    The page is the one drawn last before this one, passing over those left at their defaults
    (a page passed through kept the setup from being offered). Its values are those its panel
    showed (a value hidden by another law is not compared: the button came with nothing visible to
    copy). None when they equal this page's, when one is out of its field's range (the other page
    shows its error: copying it broke a working page), or when its workload is an uploaded trace
    (an upload belongs to its page)."""
    visits = st.session_state.setdefault(_VISITS, [])
    if ps.page in visits:
        visits.remove(ps.page)
    visits.append(ps.page)
    names = set(_setup_names(ps))
    for other in reversed(visits[:-1]):
        shown = published(other)
        values = {n: v for n, v in shown.items() if n in names}
        if not values or all(v == ps.by_name[n].default for n, v in values.items()):
            continue  # left at its defaults: look further back
        if shown.get("wl") == TRACE or all(ps.get(n) == v for n, v in values.items()):
            return None
        try:
            for n, v in values.items():
                ps.by_name[n].check(v)
        except (ValueError, TypeError):
            return None
        return SETUP_PAGES.get(other, other), values
    return None


def _take_setup(ps: PageState, title: str, values: dict) -> None:
    for name, v in values.items():
        ps.set(name, v)
    st.session_state.pop(ps.key("_target_rho"), None)  # the rate taken decides the load
    st.toast(f"This page now has the {title} page's engine and workload.", icon=":material/input:")


def setup_button(ps: PageState, container) -> None:
    """A button in `container` (the sidebar) that takes the engine and workload of the page
    drawn before this one (``setup_from``), when they differ from this page's; and a line saying
    so shown on a phone only, where the sidebar is folded away (the offer was out of sight there;
    a recheck as a new user would): at the top of the page, under the line that says the inputs
    are in the sidebar (``phone_nav.offer_slot``)."""
    found = setup_from(ps)
    if found is None:
        return
    title, values = found
    (phone_nav.offer_slot() or st).container(key="phone-setup").caption(
        f"This page runs its own engine and workload, not those of the {title} page: the sidebar (») "
        "has a button that takes them.")
    container.button(f"Use the {title} page's engine and workload", key=ps.key("take_setup"),
                     icon=":material/input:", on_click=_take_setup, args=(ps, title, values),
                     help=f"Each page keeps its own inputs. This copies those set on the {title} page: GPU / "
                          "model, batch time, KV cache, token budget, batch size, replicas, workload"
                          + (" and arrival rate" if "rate" in values else "") + ".")


# ---------------------------------------------------------------------- callbacks


def preset_kv(hw: str) -> int:
    """A GPU/model preset's KV cache, within the dashboard's KV field range."""
    return int(min(max(HARDWARE_PRESETS[hw].kv_cache_tokens, L.MIN_KV), L.MAX_KV))


def _hw_changed(ps: PageState) -> None:
    st.session_state[ps.key("_hw_moved")] = True  # sync_load says where the kept rate now lies
    hw = ps.get("hw")
    if hw in HARDWARE_PRESETS:  # a preset brings its own memory; the user may still edit it
        ps.set("kv", preset_kv(hw))


def _wl_changed(ps: PageState) -> None:
    # a preset's published rate belongs to the hardware it was measured on (on the default
    # engine azure-conv's is at load 5): start at a sensible load instead
    if ps.get("wl") in WORKLOAD_PRESETS and "rate" in ps.by_name:
        st.session_state[ps.key("_target_rho")] = L.PRESET_LOAD


def link_presets(ps: PageState) -> None:
    """A link's presets bring what choosing them on the page brings (``_hw_changed``,
    ``_wl_changed``) unless the link sets that too: a GPU preset its KV cache, a workload
    preset its starting load (a link with hw=llama3-8b/h100-80gb kept 20,000,000 KV tokens
    where the same choice on the page sets 467,291; found as a new user would)."""
    if "hw" in ps.from_url and "kv" not in ps.from_url and "kv" in ps.by_name:
        _hw_changed(ps)
        st.session_state.pop(ps.key("_hw_moved"), None)  # the link's own rate: nothing moved
        ps.used_instead("kv", f"the preset's {ps.get('kv'):,}")
    # (a link's wl=custom, as every shared link of a custom workload has, brings no starting load:
    # a bad rate= beside it was said to give "the preset's starting load" while the page kept
    # its rate; found as a new user would)
    if "wl" in ps.from_url and ps.get("wl") in WORKLOAD_PRESETS and not {"rate", "rho"} & ps.from_url \
            and "rate" in ps.by_name:
        _wl_changed(ps)
        ps.used_instead("rate", f"the preset's starting load ρ = {L.PRESET_LOAD:g}")


def _rate_changed(ps: PageState) -> None:
    st.session_state.pop(ps.key("_target_rho"), None)


def _rho_changed(ps: PageState) -> None:
    st.session_state[ps.key("_target_rho")] = ps.get("rho")


def capacity_rps(ps: PageState) -> float | None:
    """The best possible capacity (requests/s) of the panel's engine and workload: what
    a load ρ = 1 means. None when the inputs do not make a scenario (their messages come
    later) or for a trace (its own arrivals)."""
    if ps.get("wl") == TRACE:
        return None
    try:
        sc = llmsim.scenario_from_table(scenario_table(ps, 1000, 1.0))
    except (ConfigError, ValueError, ZeroDivisionError):
        return None
    return _optimal_capacity(sc.to_toml(), sc)


@st.cache_data(max_entries=64, show_spinner=False)
def _optimal_capacity(toml: str, _sc) -> float | None:
    """The region LPs behind ``capacity_rps``, once per engine and workload (every rerun of
    a page asks again; the scenario's TOML is the key)."""
    try:
        cap = llmsim.analyze(_sc).optimal_capacity_rps
    except (ConfigError, ValueError, ZeroDivisionError):
        return None
    return cap if cap and cap > 0 else None


def sync_load(ps: PageState) -> float | None:
    """Before the panel is drawn: the rate follows a load ρ just typed (or a preset's
    starting load), and the ρ shown follows the rate. Returns the capacity used."""
    if "rho" not in ps.by_name:
        return None
    cap = capacity_rps(ps)
    ps.capacity = cap
    ps.load_error = None
    if cap is None:
        return None
    if "rho" in ps.from_url:  # a link's load: the rate follows it, unless the link sets the rate too
        rate, rho = float(ps.get("rate")), float(ps.get("rho"))
        if "rate" not in ps.from_url:
            st.session_state[ps.key("_target_rho")] = rho
            ps.used_instead("rate", f"the link's load rho={rho:g} (a rate of {rho * cap:.4g} req/s)")
        elif abs(rate / cap - rho) > 0.005 * rho:
            ps.url_errors.append(f"Link parameters rate={rate:g} and rho={rho:g} disagree (at {rate:g} req/s this "
                                 f"engine's load ρ is {rate / cap:.3g}); using the rate. Leave out rate= to set "
                                 "the load by ρ.")
    target = st.session_state.get(ps.key("_target_rho"))
    if target is not None and not (isinstance(target, (int, float)) and L.MIN_LOAD <= target <= L.MAX_LOAD):
        # kept as typed, the rate unchanged: check() names the allowed range until it is changed
        ps.load_error = L.check("Load ρ", target, L.MIN_LOAD, L.MAX_LOAD)
        return cap
    st.session_state.pop(ps.key("_target_rho"), None)
    if target is not None:
        ps.set("rate", float(f"{target * cap:.4g}"))
    rate = ps.get("rate")
    ps.load_note = None
    if isinstance(rate, (int, float)) and rate > 0:
        ps.set("rho", float(f"{float(rate) / cap:.3g}"))
        # a new GPU keeps the arrival rate: say so when that moves the load far from where
        # schedulers differ (an H100 preset at the default 15.5 req/s: load 0.07, unexplained)
        if st.session_state.pop(ps.key("_hw_moved"), False) and not 0.5 <= rate / cap <= 1.5:
            ps.load_note = (f"The arrival rate stays at {rate:g} req/s on this GPU: load ρ {rate / cap:.2g} "
                            f"(its best possible capacity is {cap:.3g} req/s). Set the load ρ to compare the "
                            "schedulers near it.")
    return cap


# -------------------------------------------------------------------------- panel


def _num(ps: PageState, name: str, label: str, step, help: str | None = None, fmt: str | None = None,
         container=None, **kw):
    """A number input without bounds: a value beyond a limit, above or below, reaches
    ``check`` and gets a message saying why (a browser silently refuses a value below a
    widget's min_value and keeps showing the old results)."""
    return (container or st.sidebar).number_input(label, step=step, help=help, format=fmt, **ps.w(name), **kw)


def _length_panel(ps: PageState, p: str, what: str, container) -> None:
    d = container.selectbox(f"{what} length", DISTS, **ps.w(f"{p}_dist", DISTS),
                            format_func=DIST_LABELS.get)
    if d == "constant":
        _num(ps, f"{p}_value", f"{what} tokens", 1, container=container)
    elif d == "uniform":
        a, b = container.columns(2)
        _num(ps, f"{p}_low", "low", 1, container=a)
        _num(ps, f"{p}_high", "high", 1, container=b)
    elif d == "geometric":
        _num(ps, f"{p}_mean", f"mean {what.lower()} tokens", 1.0, container=container, fmt="%.1f")
    else:
        a, b, c = container.columns(3)
        _num(ps, f"{p}_mean", "mean", 1.0, container=a, fmt="%.0f")
        _num(ps, f"{p}_cv", "cv", 0.1, container=b, fmt="%.2f")
        _num(ps, f"{p}_max", "max", 1, container=c)
        note = capped_mean_note(ps, p, what)
        if note:
            container.caption(note)


def capped_mean_note(ps: PageState, p: str, what: str) -> str | None:
    """The lognormal's mean is that of the law before rounding and the cap at max: with a
    large cv the lengths' own mean is far lower (mean 5,000, cv 20, max 8,192: 1,397), and the
    panel showed 5,000 without a word (found as a hostile visitor would)."""
    try:
        m, cv, top = (ps.by_name[f"{p}_{k}"].check(ps.get(f"{p}_{k}")) for k in ("mean", "cv", "max"))
        from llmsim.workload import Lognormal
        real = Lognormal(float(m), float(cv), int(top)).mean
    except (ValueError, TypeError, KeyError, OverflowError, ZeroDivisionError):
        return None  # the field's own message names the bad value
    shown = (lambda x: f"{x:,.0f}" if x >= 100 else f"{x:.3g}")
    if abs(real - m) <= 0.02 * m or shown(real) == shown(m):
        return None
    return (f"{what} lengths average {shown(real)} tokens: the mean above ({shown(m)}) is the lognormal's before "
            f"rounding and the cap at 1 to {int(top):,}.")


def panel(ps: PageState, with_rate: bool = True, container=None):
    """Draw the engine and workload inputs; returns the uploaded trace file (or None).
    The names of the fields drawn are collected in ``ps.visible`` for ``publish``."""
    c = container or st.sidebar
    c.subheader("Engine", divider="gray")
    hw_opts = list(ps.by_name["hw"].choices)
    hw = c.selectbox("GPU / model", hw_opts, **ps.w("hw", hw_opts), on_change=_hw_changed, args=(ps,),
                     format_func=lambda x: "custom batch time" if x == CUSTOM else x,
                     help="A published fit of iteration time and KV-cache size for a model on a GPU "
                          "(see docs/presets.md), or your own batch-time model.")
    vis = ["hw", "budget", "kmax", "kv"]
    if hw == CUSTOM:
        bt = c.selectbox("Batch time t(n) of an iteration holding n tokens", BATCH_MODELS,
                         **ps.w("bt", BATCH_MODELS),
                         format_func={"constant": "constant: t", "staircase": "staircase: c + a·⌈n/b0⌉",
                                      "piecewise": "piecewise: c + a·max(0, n−b0)",
                                      "affine": "affine: c0 + cp·prefill + cd·decode"}.get)
        vis.append("bt")
        if bt == "constant":
            _num(ps, "bt_ms", "t (ms per iteration)", 1.0, container=c, fmt="%.3f")
            vis.append("bt_ms")
        elif bt == "staircase":
            a, b, d = c.columns(3)
            _num(ps, "st_c", "c (ms)", 1.0, container=a, fmt="%.2f",
                 help="Fixed time of every iteration, in milliseconds (t(n) = c + a·⌈n/b0⌉).")
            _num(ps, "st_a", "a (ms)", 1.0, container=b, fmt="%.2f",
                 help="Time added per step of b0 tokens, in milliseconds.")
            _num(ps, "st_b0", "b0", 1, container=d,
                 help="Tokens per step: an iteration of n tokens takes ⌈n/b0⌉ steps of a ms "
                      "(the GPU's tile of work; 128 in the paper's CodeLlama-34B fit).")
            vis += ["st_c", "st_a", "st_b0"]
        elif bt == "piecewise":
            a, b, d = c.columns(3)
            _num(ps, "pw_c", "c (ms)", 1.0, container=a, fmt="%.2f",
                 help="Time of an iteration of up to b0 tokens, in milliseconds (t(n) = c + a·max(0, n − b0)).")
            _num(ps, "pw_a", "a (µs/tok)", 1.0, container=b, fmt="%.2f",
                 help="Time added per token beyond b0, in microseconds.")
            _num(ps, "pw_b0", "b0", 1, container=d,
                 help="Tokens an iteration holds at the fixed time c (below it the GPU is memory-bound).")
            vis += ["pw_c", "pw_a", "pw_b0"]
        else:
            a, b, d = c.columns(3)
            _num(ps, "af_c0", "c0 (ms)", 1.0, container=a, fmt="%.2f")
            _num(ps, "af_p", "cp (µs/tok)", 1.0, container=b, fmt="%.2f")
            _num(ps, "af_d", "cd (µs/tok)", 1.0, container=d, fmt="%.2f")
            vis += ["af_c0", "af_p", "af_d"]
    else:
        hp = HARDWARE_PRESETS[hw]
        bt = llmsim.config.batch_time(hp.batch_time, hw)
        kv = ps.get("kv") if "kv" in ps.by_name else None
        # a KV cache edited, or set by a file, is the run's: the caption said only the preset's
        # (49,954 beside a field of 1,000,000; found as a new user would)
        own = (f" (the run uses the KV cache below, {kv:,} tokens)"
               if isinstance(kv, int) and kv != preset_kv(hw) else "")
        c.caption(f"{hp.model} on {hp.tensor_parallel}× {hp.gpu}: t(n) = {bt.describe()}; "
                  f"memory for {hp.kv_cache_tokens:,} KV-cache tokens{own}.")
        with c.expander("Source of this preset"):
            st.caption(hp.source)
            if hp.notes:
                st.caption(hp.notes)
    _num(ps, "budget", "Token budget b (tokens per iteration)", 64, container=c,
         help="The most prompt + output tokens one iteration (batch) may hold.")
    _num(ps, "kmax", "Max batch size (requests per iteration; 0 = no limit)", 8, container=c)
    _num(ps, "kv", "KV cache (tokens of GPU memory)", 10_000, container=c,
         help="How many tokens of context the GPU can hold for admitted requests: each holds its prompt and the "
              "tokens decoded so far (The model page, section 4).")
    replicas_panel(ps, "reps", "router", c)
    vis += ["reps", "router"] if int(ps.get("reps") or 1) > 1 else ["reps"]

    c.subheader("Workload", divider="gray")
    wl = c.selectbox("Requests", ps.by_name["wl"].choices, **ps.w("wl", ps.by_name["wl"].choices),
                     on_change=_wl_changed, args=(ps,),
                     format_func=lambda x: {"custom": "custom arrivals and lengths",
                                            "trace": "upload a trace (CSV)"}.get(x, f"preset: {x}"))
    vis.append("wl")
    upload = None
    if wl in WORKLOAD_PRESETS:
        wp = WORKLOAD_PRESETS[wl]
        c.caption(f"{wp.description}. Prompt ≈ {wp.prompt_tokens['mean']:,.0f} tokens, output ≈ "
                  f"{wp.output_tokens['mean']:,.0f} tokens on average; {wp.arrival['process']} arrivals.")
        with c.expander("Source of this preset"):
            st.caption(wp.source)
    elif wl == TRACE:
        upload = c.file_uploader("Trace CSV (header arrival_time_s,prompt_tokens,output_tokens)",
                                 type=["csv"], key=ps.key("trace_file"))
        if with_rate:
            _num(ps, "speed", "Speed-up (× the trace's own arrival rate)", 0.1, container=c, fmt="%.3f")
            vis.append("speed")
    else:
        arr = c.selectbox("Arrival process", ARRIVALS, **ps.w("arr", ARRIVALS),
                          help="poisson: memoryless; gamma: renewal with a chosen coefficient of "
                               "variation (cv > 1 is bursty); deterministic: evenly spaced.")
        vis.append("arr")
        if arr == "gamma":
            _num(ps, "cv", "Inter-arrival cv", 0.1, container=c, fmt="%.2f")
            vis.append("cv")
        for p, what in (("p", "Prompt"), ("o", "Output")):
            _length_panel(ps, p, what, c)
            d = ps.get(f"{p}_dist")
            vis += [f"{p}_dist"] + {"constant": [f"{p}_value"], "uniform": [f"{p}_low", f"{p}_high"],
                                    "geometric": [f"{p}_mean"],
                                    "lognormal": [f"{p}_mean", f"{p}_cv", f"{p}_max"]}[d]
    if with_rate and wl != TRACE:
        cap = getattr(ps, "capacity", None)
        r1, r2 = c.columns(2)
        _num(ps, "rate", "Arrival rate λ (req/s)", 0.5, container=r1, fmt="%.3f", on_change=_rate_changed,
             args=(ps,), help="Requests per second. The load ρ beside it follows.")
        if cap:
            _num(ps, "rho", "… or load ρ", 0.05, container=r2, fmt="%.3g", on_change=_rho_changed, args=(ps,),
                 help=f"Arriving work ÷ the best possible capacity ({cap:.3g} req/s for this engine and "
                      f"workload); the rate follows (ρ × {cap:.3g}). Below 1 a work-conserving scheduler keeps up.")
        if getattr(ps, "load_note", None):
            c.info(ps.load_note, icon=":material/speed:")
        vis.append("rate")
    _num(ps, "seed", "Random seed", 1, container=c, help="Same seed, same result — bit for bit.")
    vis.append("seed")
    ps.visible = vis
    return upload


def replicas_panel(ps: PageState, reps: str, router: str, container) -> None:
    """Replicas of the engine and their router (a small block of its own), one above the
    other: in a third of a sidebar expander (Agent workflows) the label broke as "Replica s"."""
    _num(ps, reps, "Replicas", 1, container=container,
         help="Copies of this engine behind a load balancer (1 = one engine).")
    if int(ps.get(reps) or 1) > 1:
        opts = list(ROUTERS)
        container.selectbox("Router", opts, **ps.w(router, opts), help=ROUTER_HELP)


# --------------------------------------------------------------- checks and build


def check(ps: PageState, with_rate: bool = True) -> list[str]:
    """Messages for values beyond the demo's limits (the widgets bound them only below)."""
    errs = [ps.load_error] if getattr(ps, "load_error", None) else []
    for name in getattr(ps, "visible", []):
        f = ps.by_name[name]
        if f.kind in ("int", "float"):
            msg = L.check(f.label[:1].upper() + f.label[1:], ps.get(name), f.lo, f.hi)
            if msg:
                errs.append(msg)
    return errs


def _length_table(ps: PageState, p: str) -> dict:
    d = ps.get(f"{p}_dist")
    if d == "constant":
        return {"dist": "constant", "value": int(ps.get(f"{p}_value"))}
    if d == "uniform":
        return {"dist": "uniform", "low": int(ps.get(f"{p}_low")), "high": int(ps.get(f"{p}_high"))}
    if d == "geometric":
        return {"dist": "geometric", "mean": float(ps.get(f"{p}_mean"))}
    return {"dist": "lognormal", "mean": float(ps.get(f"{p}_mean")), "cv": float(ps.get(f"{p}_cv")),
            "max": int(ps.get(f"{p}_max"))}


def _batch_time_table(ps: PageState) -> dict:
    m = ps.get("bt")
    if m == "constant":
        return {"model": "constant", "seconds": ps.get("bt_ms") / 1e3}
    if m == "staircase":
        return {"model": "staircase", "c_seconds": ps.get("st_c") / 1e3, "a_seconds": ps.get("st_a") / 1e3,
                "b0": int(ps.get("st_b0"))}
    if m == "piecewise":
        return {"model": "piecewise", "c_seconds": ps.get("pw_c") / 1e3, "a_seconds": ps.get("pw_a") / 1e6,
                "b0": int(ps.get("pw_b0"))}
    return {"model": "affine", "c0_seconds": ps.get("af_c0") / 1e3, "prefill_seconds_per_token": ps.get("af_p") / 1e6,
            "decode_seconds_per_token": ps.get("af_d") / 1e6, "context_seconds_per_token": 0.0}


RESTORED_META = "_restored_meta"  # session state (page key): the name and description of the file restored last


def name_from_file(file_name: str) -> str:
    """A scenario name from an uploaded file's name (a file without `name` is named after
    itself, as llmsim.load_scenario names it): its stem with anything but letters, digits,
    '_', '-', '.' and spaces replaced by '-', at most 80 characters; "" if nothing is left."""
    stem = re.sub(r"\.toml$", "", str(file_name), flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9_\-. ]", "-", stem).lstrip("-. ")[:80].rstrip()


def scenario_table(ps: PageState, num_requests: int, rate: float | None, scheduler: str = "sarathi") -> dict:
    """The TOML-form table of the panel's scenario (not for a trace workload). Its name and
    description are those of the scenario file the visitor restored last, if any (a
    download after a restore keeps them), else "dashboard"."""
    eng = {"scheduler": scheduler, "token_budget": int(ps.get("budget")), "kv_cache_tokens": int(ps.get("kv"))}
    if ps.get("kmax"):
        eng["max_batch_size"] = int(ps.get("kmax"))
    if int(ps.get("reps") or 1) > 1:
        eng["replicas"] = int(ps.get("reps"))
        eng["router"] = ps.get("router")
    hw = ps.get("hw")
    if hw in HARDWARE_PRESETS:
        eng["preset"] = hw
    else:
        eng["batch_time"] = _batch_time_table(ps)
    wl = ps.get("wl")
    w = {"num_requests": int(num_requests)}
    if wl in WORKLOAD_PRESETS:
        wp = WORKLOAD_PRESETS[wl]
        w["preset"] = wl
        w["arrival"] = dict(wp.arrival, rate=float(rate if rate is not None else wp.arrival["rate"]))
    else:
        arr = {"process": ps.get("arr"), "rate": float(rate if rate is not None else 1.0)}
        if arr["process"] == "gamma":
            arr["cv"] = float(ps.get("cv"))
        w["arrival"] = arr
        w["prompt_tokens"] = _length_table(ps, "p")
        w["output_tokens"] = _length_table(ps, "o")
    meta = st.session_state.get(ps.key(RESTORED_META)) or {}
    out = {"seed": int(ps.get("seed")), "name": meta.get("name") or "dashboard", "workload": w, "engine": eng}
    if meta.get("description"):
        out["description"] = meta["description"]
    return out


TRACE_CACHE_BYTES = 48 * 2**20  # parsed uploaded traces kept for every session (a 5 MB CSV: ~21 MB parsed)
# the parse's peak memory per byte of CSV, held in the server's run memory meanwhile: for a 5 MB
# trace of 831,660 rows (tracemalloc) 9.6 by NumPy's reader, 16 by the row reader that refusals
# and unusual texts take (Python's lists of the rows' numbers, then the arrays)
TRACE_PARSE_PEAK = 20


@st.cache_resource
def _trace_cache():
    from llmsim_ui.runs import ByteLRU
    return ByteLRU(TRACE_CACHE_BYTES)


def _parse_trace(data: bytes, name: str):
    """The parsed trace of an uploaded CSV, kept (by its bytes' digest and name) in a cache
    bounded by bytes and shared by the sessions, which only read it. It was a cache of 8
    entries, each session getting its own copy: 8 different 5 MB traces held 160 MB beside
    the server's memory cap (found as a hostile visitor would).

    A file the parser refuses is kept too, as its message: the refused file stays in its
    upload widget, and every rerun of the page (each click) parsed it again, ~2 s of the
    server's CPU with the GIL held and ~80 MB outside the run memory for a 5 MB file; four
    tabs doing so held the server at a core for minutes (found as a hostile visitor would).
    The parse runs inside the server's run memory (``runs.hold``), as a sweep file's read does."""
    from llmsim_ui import runs
    key = (hashlib.sha256(data).hexdigest(), name)
    cached = _trace_cache().get(key)
    if isinstance(cached, str):  # the message it was refused with
        raise ConfigError(cached)
    if cached is not None:
        return cached
    with runs.hold(TRACE_PARSE_PEAK * len(data)):  # a busy server's refusal is not kept
        try:
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ConfigError(f"{name}: not a text (UTF-8) file; expected CSV with header "
                                  "arrival_time_s,prompt_tokens,output_tokens") from None
            with st.spinner("Reading the trace…"):
                trace = parse_trace(text, name)
        except ConfigError as exc:
            _trace_cache().put(key, str(exc), len(str(exc)))
            raise
    _trace_cache().put(key, trace, trace.times.nbytes + trace.prompt.nbytes + trace.output.nbytes)
    return trace


def build(ps: PageState, num_requests: int, rate: float | None, upload=None, scheduler: str = "sarathi",
          speed: float | None = None):
    """(Scenario, extra cache key). rate: requests/s (None: the workload's own); speed: a
    trace's speed-up factor. Raises ConfigError naming the field for bad input."""
    if ps.get("wl") != TRACE:
        sc = llmsim.scenario_from_table(scenario_table(ps, num_requests, rate, scheduler))
        return sc, ""
    if upload is None:
        raise ConfigError("workload: choose a trace CSV file to upload (header "
                          "arrival_time_s,prompt_tokens,output_tokens), or another workload")
    from llmsim_ui import uploads
    data = uploads.read_trace_upload(upload)
    trace = _parse_trace(data, upload.name)
    for col, lengths in (("prompt_tokens", trace.prompt), ("output_tokens", trace.output)):
        i = int(np.argmax(lengths > L.MAX_LENGTH))
        if lengths[i] > L.MAX_LENGTH:  # the bound of the page's own length inputs
            raise ConfigError(f"{upload.name}: {col} {int(lengths[i]):,} in request {i + 1:,} (the rows after the "
                              f"header, blank lines left out) is above this "
                              f"demo's limit of {L.MAX_LENGTH:,} tokens; allowed: 1 to {L.MAX_LENGTH:,} "
                              f"({L.CLI_HINT})")
    if len(trace.times) < 2:
        raise ConfigError(f"{upload.name}: a trace needs at least 2 requests to have an arrival rate")
    # the placeholder workload is replaced by the trace; validate() checks the result
    table = scenario_table(ps, num_requests, 1.0, scheduler)
    table["workload"] = {"num_requests": int(num_requests), "arrival": {"process": "poisson", "rate": 1.0},
                         "prompt_tokens": {"dist": "constant", "value": 1},
                         "output_tokens": {"dist": "constant", "value": 1}}
    sc = llmsim.scenario_from_table(table)
    wf = sc.workflow
    step = replace(wf.steps[0], prompt_tokens=TraceLengths(trace, "prompt_tokens"),
                   output_tokens=TraceLengths(trace, "output_tokens"))
    arrival = TraceArrivals(trace, float(speed or 1.0))
    sc = replace(sc, workflows=(replace(wf, arrival=arrival, steps=(step,)),))
    llmsim.validate(sc)
    st.sidebar.caption(trace_note(upload.name, len(trace.times), float(trace.times[-1]), int(num_requests)))
    return sc, hashlib.sha256(data).hexdigest()[:16]


def trace_note(name: str, rows: int, span_s: float, num_requests: int) -> str:
    """What a run makes of an uploaded trace: its first rows, or the trace looped end to end
    (a new user saw a 1,289-row trace become 20,000 requests without a word)."""
    held = f"{name}: {rows:,} requests over {span_s:,.0f} s."
    if num_requests <= rows:
        return f"{held} Each run replays its first {num_requests:,}."
    return (f"{held} Each run replays it {num_requests / rows:.1f} times end to end (the next copy one "
            f"mean gap after the last) to reach {num_requests:,} requests; set the requests to "
            f"{rows:,} to replay it once.")


# --------------------------------------------------------------- files in and out

_SCHED_COMMENT = re.compile(r"^#\s*schedulers compared:\s*(.+)$", re.M)


def toml_text(sc, schedulers=None) -> str:
    """The scenario as TOML; the schedulers compared are noted in a comment the upload
    reads back."""
    head = "# llmsim scenario saved by the dashboard (python -m llmsim run this.toml)\n"
    if schedulers:
        head += f"# schedulers compared: {', '.join(schedulers)}\n"
    return head + sc.to_toml()


def read_upload(uploaded) -> tuple:
    """(Scenario, text) of an uploaded TOML file; ConfigError for anything wrong. Its
    traces may only be the shipped ones (never a path on the server)."""
    from llmsim_ui import uploads
    text = uploads.read_toml_upload(uploaded)
    return uploads.scenario_from_text(text, name=uploaded.name), text


def schedulers_in(text: str) -> list[str]:
    m = _SCHED_COMMENT.search(text)
    if not m:
        return []
    return [s.strip() for s in m.group(1).split(",") if s.strip() in SCHEDULERS]


def values_from_scenario(sc) -> dict:
    """Panel field values that reproduce a single-engine scenario; ConfigError for what
    the panel cannot show (the message names the field and the way out)."""
    if not sc.single:
        raise ConfigError("scenario: this file describes a network of engines ([[engines]], [[workflows]]); "
                          "open it on the 'Agents' page")
    t = sc.to_table()
    eng, wl = t["engine"], t["workload"]
    v = {"budget": eng["token_budget"], "kmax": eng.get("max_batch_size", 0), "kv": eng["kv_cache_tokens"],
         "seed": int(t.get("seed", 0))}
    reps = eng.get("replicas", 1)
    if not isinstance(reps, int):
        raise ConfigError("engine.replicas: the dashboard edits pools of identical replicas; allowed here: a "
                          "number (use the command line for a list of different replicas)")
    for key in ("max_running_requests", "block_size", "watermark"):
        if key in eng:
            raise ConfigError(f"engine.{key}: not editable on this page yet; run this file from the command "
                              "line (python -m llmsim run file.toml)")
    v["reps"] = reps
    v["router"] = eng.get("router", "jsq_tokens")
    if eng.get("preset") and eng.get("batch_time", {}).get("model") == "preset":
        v["hw"] = eng["preset"]
    else:
        v["hw"] = CUSTOM
        bt = eng["batch_time"]
        m = bt["model"]
        # terms the panel has no input for: refused by name rather than dropped silently
        edits = {"constant": {"seconds"}, "staircase": {"c_seconds", "a_seconds", "b0"},
                 "piecewise": {"c_seconds", "a_seconds", "b0"},
                 "affine": {"c0_seconds", "prefill_seconds_per_token", "decode_seconds_per_token"}}
        extra = [k for k, x in bt.items() if k not in edits.get(m, set()) | {"model", "name"} and x]
        if extra:
            raise ConfigError(f"engine.batch_time.{extra[0]}: the dashboard edits {m} batch times without this "
                              f"term; allowed here: 0 or absent (use the command line otherwise)")
        if m == "preset":
            v["hw"] = bt["name"]
        elif m == "constant":
            v.update(bt="constant", bt_ms=bt["seconds"] * 1e3)
        elif m == "staircase":
            v.update(bt="staircase", st_c=bt["c_seconds"] * 1e3, st_a=bt["a_seconds"] * 1e3, st_b0=int(bt["b0"]))
        elif m == "piecewise":
            v.update(bt="piecewise", pw_c=bt["c_seconds"] * 1e3, pw_a=bt["a_seconds"] * 1e6, pw_b0=int(bt["b0"]))
        else:
            v.update(bt="affine", af_c0=bt["c0_seconds"] * 1e3, af_p=bt["prefill_seconds_per_token"] * 1e6,
                     af_d=bt["decode_seconds_per_token"] * 1e6)
    if "num_requests" not in wl or "duration_seconds" in wl:
        raise ConfigError("workload.duration_seconds: the dashboard runs a number of requests; allowed: "
                          "workload.num_requests (use the command line for a fixed duration)")
    v["n"] = int(wl["num_requests"])
    arr = wl["arrival"]
    if arr["process"] == "trace":
        raise ConfigError("workload.arrival.process: 'trace' files are replayed from the 'upload a trace (CSV)' "
                          "workload option here; allowed in a TOML upload: poisson, gamma, deterministic")
    v["wl"] = CUSTOM
    v["arr"] = arr["process"]
    v["rate"] = float(arr["rate"])
    if "cv" in arr:
        v["cv"] = float(arr["cv"])
    for p, key in (("p", "prompt_tokens"), ("o", "output_tokens")):
        d = wl[key]
        kind = d["dist"]
        if kind not in DISTS:
            raise ConfigError(f"workload.{key}.dist: {kind!r} cannot be edited here; allowed: {', '.join(DISTS)} "
                              "(use the command line for others)")
        v[f"{p}_dist"] = kind
        if kind == "constant":
            v[f"{p}_value"] = int(d["value"])
        elif kind == "uniform":
            v[f"{p}_low"], v[f"{p}_high"] = int(d["low"]), int(d["high"])
        elif kind == "geometric":
            v[f"{p}_mean"] = float(d["mean"])
        else:
            v[f"{p}_mean"], v[f"{p}_cv"], v[f"{p}_max"] = float(d["mean"]), float(d["cv"]), int(d["max"])
    v["sched"] = [eng["scheduler"]]
    return v


def apply_values(ps: PageState, values: dict) -> list[str]:
    """Set the fields the page has, all or none: returns messages for values beyond the
    page's limits, and then sets nothing (a half-restored file runs a scenario that is
    neither the file's nor the page's previous one)."""
    errs, checked = [], {}
    for name, val in values.items():
        f = ps.by_name.get(name)
        if f is None:
            continue
        try:
            checked[name] = f.check(val)
        except ValueError as exc:
            errs.append(f"{f.label or name} = {val!r} from the file: {exc}. Nothing from the file was applied; "
                        f"the page keeps its inputs. ({L.CLI_HINT})")
    if not errs:
        for name, val in checked.items():
            ps.set(name, val)
    return errs


# "allowed: token_budget >= P (>= P + D, ...)" (config: a scheduler that never chunks) or
# "Allowed: token_budget >= P + D (the largest prompt + output)" (a run that froze); numbers with commas
_NEEDS_B = re.compile(r"allowed: token_budget >= ([\d,]+)(?: \(>= ([\d,]+))?", re.IGNORECASE)


def budget_need(message: str) -> int | None:
    """The token budget a 'prompts can never run' or 'froze' message asks for (the largest prompt
    + output where preemption can happen, else the largest prompt), or None."""
    m = _NEEDS_B.search(message)
    return int((m.group(2) or m.group(1)).replace(",", "")) if m else None


def raise_budget_button(ps: PageState, message: str, key: str, container=None, field: str = "budget",
                        shared_by: int = 1, at_least: int = 0, owner: str = "") -> bool:
    """Under a 'prompts can never run under <scheduler>' message (a scheduler that never
    chunks a prompt, with b below the longest prompt) or a vllm run that froze (a preempted
    request's recompute above b): a button that raises b (the page's field `field`) to the
    largest prompt + output where preemption can happen, else to the largest prompt, or to
    `at_least` (what the page's other refused schedulers need: fastertransformer's button gave
    8,192 and vllm then froze at 8,192, needing 16,384; tried as a new user would). `shared_by`:
    the schedulers the page runs with this b (the button says it changes b for all of them).
    `owner`: the engine whose b it raises, on a page of several (the button then names it).
    Returns whether it drew one."""
    own = budget_need(message)
    if own is None or field not in ps.by_name:
        return False
    need = max(own, at_least)
    if need > L.MAX_BUDGET:
        return False
    whole = "(>= " in message or "prompt + output" in message or need > own
    what = "the largest prompt + output" if whole else "the largest prompt"
    label = f"Raise {owner}'s b to {need:,}" if owner else f"Raise b to {need:,}"  # owner: an engine of several
    label += f" for all {shared_by} schedulers" if shared_by > 1 else ""
    (container or st).button(label, key=key, icon=":material/expand:",
                             on_click=ps.set, args=(field, need),
                             help=f"b = {need:,} tokens, {what}, lets every prompt into one iteration"
                                  + (" and a preempted request recompute its prompt and output in one prefill"
                                     if what.endswith("output") else "")
                                  + ". A larger token budget also changes t(b) and every capacity, and so the "
                                    "load at this arrival rate"
                                  + (" of every scheduler on the page" if shared_by > 1 else "")
                                  + " (the chunking schedulers need no change).")
    return True
