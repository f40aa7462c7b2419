"""Small pieces of UI the pages share: a coloured series name, a verdict badge with its
evidence, numbers formatted for people."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from llmsim_ui.palette import VERDICT_BADGE
from llmsim.stability import fmt_load

VERDICT_MEANING = (
    "**What the verdict means.** *Stable*: the unfinished work (backlog) went up and down but "
    "did not trend upward over the second half of the run, so the engine keeps up with this load. "
    "*Unstable*: the backlog grew steadily, so the queue — and every request's waiting time — would "
    "grow without bound the longer the load lasts. *Inconclusive*: the trend cannot be told apart "
    "from noise over this run (typical close to capacity); run more requests."
)


def sentence(text: str) -> str:
    """A theory phrase (a capacity_kind) as a sentence: capital first letter (not of a
    scheduler's name, which is written as it is typed), full stop."""
    from llmsim.schedulers import SCHEDULERS
    if text.split(" ", 1)[0].rstrip(":'s,") in SCHEDULERS:
        return f"{text}."
    return f"{text[:1].upper()}{text[1:]}."


def capacity_help(kind: str | None, work_conserving_note: bool = True) -> str:
    """The help of a "Best possible capacity" metric; kind: the theory's capacity_kind of the
    binding capacity, or None to leave it out."""
    return ("The smaller of the stability region's capacity (a linear program over the batches b, k and the "
            "batch time allow) and the memory capacity"
            + (": what sarathi reaches, and orca too unless max_batch_size or the KV cache binds (its prefills "
               "then starve the decoders; each scheduler's own capacity is on its card)" if work_conserving_note
               else "")
            + "." + (f" Binding here: {sentence(kind)}" if kind else "")
            + (" The memory capacity is an approximation (the mean memory a request holds, over its whole "
               "life): with a binding KV cache a scheduler may keep up somewhat above it or break below it, and "
               "the verdicts come from the simulation." if kind and kind.startswith("memory capacity") else ""))


def capacity_gap_note(best_rps: float, e0, mean_work: float, max_batch_size: int | None) -> str | None:
    """Why the best possible capacity lies clearly below the token capacity b/t(b) over the
    mean request (quickstart.toml: 10,240 tok/s and 768 tokens a request, 13.3 req/s, beside a
    best capacity of 9.95 req/s, with nothing visible saying that max_batch_size binds; found
    as a new user would); None when they agree."""
    if not (mean_work and math.isfinite(mean_work) and best_rps and e0.token_capacity):
        return None
    token_rps = e0.token_capacity / mean_work
    if best_rps >= 0.99 * token_rps:
        return None
    if e0.memory_binds:
        why = ("the KV cache binds: it holds too few requests at once for full batches of b tokens "
               "(the memory capacity)")
    elif max_batch_size and max_batch_size < e0.token_budget:
        why = (f"max_batch_size = {max_batch_size:,} binds: a batch holds at most {max_batch_size:,} requests, "
               "so batches of decode tokens (one per request) stay below b tokens")
    else:
        why = "not every batch can be full (the stability region's linear program)"
    return (f"Best possible capacity {best_rps:.3g} req/s is below b/t(b) over the mean request "
            f"({e0.token_capacity:,.0f} tok/s ÷ {mean_work:,.0f} tokens = {token_rps:.3g} req/s): {why}.")


def and_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def fmt(x, digits: int = 3, unit: str = "", zeros: bool = False) -> str:
    """x to `digits` significant digits (whole numbers from 1,000 up, with commas); zeros:
    keep trailing zeros ("14.0" beside "16.7", not "14")."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    if abs(float(f"{x:.{digits}g}")) >= 1000:  # 999.96 too: "1e+03" read as an error
        return f"{x:,.0f}{unit}"
    return (f"{x:#.{digits}g}".rstrip(".") if zeros else f"{x:.{digits}g}") + unit


def seconds(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if x < 1:
        return f"{x * 1e3:.3g} ms"
    if x < 120:
        return f"{x:.3g} s"
    return f"{x / 60:,.1f} min"


def swatch(name: str, colour: str, row=()) -> None:
    """A card's title: its colour's square and its name on one line at any column width. On a
    projector (1024 px, four cards) "fastertransformer" wrapped under its square and its
    badge sat a line below the other cards' (tried as a new user would): the name's size
    now shrinks to fit its card (a container query: cqw is 1% of the card's width). `row`:
    the names of every card in the row, which then share the size of the longest (one name
    smaller than the rest read as another kind of heading)."""
    import html
    chars = max(1, len(name), *map(len, row))
    fit = f"calc((100cqw - 1.4rem) / {0.54 * chars:.2f})"  # bold sans: about 0.54 em a character
    st.markdown(f"<div class='llmsim-swatch' style='container-type:inline-size;white-space:nowrap'>"
                f"<span style='color:{colour};font-size:1.3em'>■</span> "
                f"<strong style='font-size:min(1em,{fit})'>{html.escape(name)}</strong></div>",
                unsafe_allow_html=True)


def badge(verdict: str) -> None:
    colour, icon = VERDICT_BADGE.get(verdict, ("gray", ":material/help:"))
    st.badge(verdict.capitalize(), color=colour, icon=icon)


def _pct(x) -> str:
    from llmsim.stability import signed_pct
    return signed_pct(x) if x is not None and math.isfinite(x) else "—"


def rule_text(threshold: float) -> str:
    """The classification rule of llmsim.stability.classify, in words."""
    from llmsim.stability import NOISE
    t, n = 100 * threshold, 100 * NOISE
    return (f"**Rule** (second half of the run, 95% interval of the growth): *unstable* if growth is above "
            f"{t:g}% of the arriving work **and** the whole interval lies above {n:g}%; *stable* if the whole "
            f"interval lies below {t:g}% and reaches below {n:g}%; otherwise *inconclusive*. One exception: when "
            "theory *proves* the engine cannot keep up (the arrival rate is at or above the stability region's "
            "capacity, or an exact batch cycle's), a run that shows no trend is *inconclusive*, not stable: just "
            "above that capacity the backlog grows too slowly for a finite run to show it.")


def near_boundary(v) -> str | None:
    """A caveat when the arrival rate is close to the capacity (the scheduler's own, else
    the load): there a finite run drifts too slowly to tell, either way."""
    from llmsim_ui.limits import NEAR_BOUNDARY
    ratio, what = None, ""
    if v.capacity_rps and math.isfinite(v.capacity_rps) and v.capacity_rps > 0:
        whose = "this network's" if v.parts else "this scheduler's"  # parts: a network's buffers
        ratio, what = v.arrival_rate_rps / v.capacity_rps, f"of {whose} theory capacity ({v.capacity_rps:.3g} req/s)"
    elif v.load and math.isfinite(v.load):
        ratio, what = v.load, "of the capacity (load ρ)"
    if ratio is None or abs(ratio - 1) >= NEAR_BOUNDARY:
        return None
    if getattr(v, "proven_load", 0.0) >= 1:  # "either way" contradicted the proof beside it
        return (f"Near the boundary, above a bound theory proves (load {v.proven_load:.3f} over it): no run here "
                "can come out stable, but its growth may be too slow for one run to show; more requests or "
                "replications (other seeds) show it.")
    return (f"Near the boundary: the arrival rate is {100 * ratio:.0f}% {what}. Here one run can land either "
            "way: try replications (other seeds) or a longer run (more requests).")


# how a prefill-first scheduler splits an iteration while prompts wait (llmsim.SCHEDULERS)
PREFILL_FIRST = {"vllm": "while any prompt waits, an iteration holds prompts only",
                 "orca": "waiting prompts fill the token budget and decodes get what is left"}


def zero_throughput(summary: dict, v) -> str | None:
    """Why a run's throughput (requests finished per simulated second) is 0 or next to it, or
    None when it is not. Far above its capacity a prefill-first scheduler (vllm, orca)
    spends nearly every iteration on new prompts: the engine is busy, yet (almost) no request
    gets all its output tokens before the run ends at the last arrival (at 100 req/s on the
    headline engine neither finishes one of 20,000; on an uploaded trace at load 1.84 orca
    finished 0.0102 req/s beside sarathi's 2.58, with no word why)."""
    arrived = summary.get("arrived") or 0
    done = summary.get("completed") or 0
    sched, cap = summary.get("scheduler"), v.capacity_rps
    prefill_first = sched in PREFILL_FIRST and cap and v.arrival_rate_rps > cap
    if not arrived or done * 20 >= arrived or (done and not prefill_first):
        return None
    got = "few requests got all their" if done else "no request got all its"
    why = (f" {sched} runs prefill first ({PREFILL_FIRST[sched]}): above its capacity of "
           f"{cap:.3g} req/s a new prompt is almost always waiting, so decodes seldom run and "
           f"{got} output tokens.") if prefill_first else ""
    t, horizon = summary.get("simulated_seconds", 0.0), summary.get("horizon_seconds", 0.0)
    end = "the run ended at the last arrival" if t >= horizon else "the run stopped"
    if done:
        return (f"Only {done:,} of {arrived:,} requests finished before {end} ({t:,.0f} s simulated): "
                f"throughput counts finished requests only. The engine was busy: "
                f"{summary.get('tokens_done', 0):,} tokens processed." + why)
    text = (f"No request finished before {end} ({t:,.0f} s simulated): throughput counts finished requests "
            f"only. The engine was busy: {summary.get('tokens_done', 0):,} tokens processed, "
            f"{arrived - summary.get('final_waiting', 0):,} of {arrived:,} requests started.")
    return text + (why or " Requests still in the engine when the run ends are not counted.")


def throughput_note(summary: dict, v) -> str | None:
    """A card's note on its throughput: ``zero_throughput``'s, or why a prefill-first
    scheduler above its capacity finishes clearly fewer requests per second than that
    capacity while the engine still processes tokens near it (the headline engine at load
    1.2: orca 12.9 req/s beside sarathi's 16.5, the same capacity, unexplained; found as a
    new user would); None when neither applies."""
    zero = zero_throughput(summary, v)
    if zero:
        return zero
    sched, cap = summary.get("scheduler"), v.capacity_rps
    thr, t = summary.get("throughput_rps") or 0.0, summary.get("simulated_seconds") or 0.0
    if (sched not in PREFILL_FIRST or not cap or v.arrival_rate_rps <= cap or thr >= 0.9 * cap or t <= 0
            or not v.offered_tokens_per_s):
        return None
    tok = summary.get("tokens_done", 0) / t
    need = cap * v.offered_tokens_per_s / v.arrival_rate_rps  # tokens/s that capacity takes
    return (f"Throughput counts finished requests only: {sched} finished {thr:.3g} req/s, below its capacity "
            f"of {cap:.3g} req/s, while the engine processed {tok:,.0f} tokens/s ({tok / need:.0%} of what "
            f"{cap:.3g} req/s takes). Above its capacity {sched} runs prefill first "
            f"({PREFILL_FIRST[sched]}): a new prompt is almost always waiting, so the iterations go to new "
            "requests, their decodes lag, and more requests are in progress and fewer finish within the run.")


def parts_table(v) -> pd.DataFrame | None:
    """Per buffer of a network: its own test (growth of calls waiting, as a share of the
    calls arriving there), the evidence that decides a network's verdict."""
    if not v.parts:
        return None
    rows = []
    for name, p in v.parts.items():
        rate = p.get("arrival_rate") or 0.0
        lo, hi = p.get("interval", (math.nan, math.nan))
        g = p.get("growth_per_s", math.nan)
        share = (lambda x: x / rate if rate > 0 and x is not None and math.isfinite(x) else math.nan)
        # a fall of the calls waiting over the test's window: a buffer that shrank by chance
        # ("-32%" beside "stable" read as a contradiction; tried as a new user would)
        growth = _pct(share(g))
        shrank = " (shrank)" if growth.startswith(("-", "−")) and p.get("verdict") != "unstable" else ""
        rows.append({"buffer": name, "verdict": p.get("verdict"), "growth": growth + shrank,
                     "95% interval": f"{_pct(share(lo))} to {_pct(share(hi))}",
                     "calls/s arriving": round(rate, 3)})
    order = {"unstable": 0, "inconclusive": 1, "stable": 2}
    return pd.DataFrame(rows).sort_values("verdict", key=lambda c: c.map(order), kind="stable")


def token_capacity_label(engine) -> tuple[str, str]:
    """The token-capacity metric's label and the start of its help for `engine` (an
    EngineConfig): a pool's figure is the sum over its replicas, and its label says so
    (3 replicas showed 3 x b/t(b) under the label "b/t(b)"; tried as a new user would)."""
    k = len(engine.replicas)
    if k <= 1:
        return "Token capacity b/t(b) (tok/s)", ""
    same = len({(r.token_budget, r.batch_time) for r in engine.replicas}) == 1
    label = f"Token capacity {k} × b/t(b) (tok/s)" if same else f"Token capacity Σ b/t(b), {k} replicas (tok/s)"
    return label, f"The sum over the pool's {k} replicas. "


def _drawn(e: dict) -> str:
    """The arrivals the run drew in the verdict's window, when they stray from the nominal rate
    (bursty arrivals: a throughput above "the" arrival rate is then no puzzle)."""
    from llmsim.stability import STRAY_SHARE
    nominal, drawn = e["arrival_rate_rps"], e.get("window_arrival_rate_rps", math.nan)
    if not (nominal and math.isfinite(nominal) and drawn is not None and math.isfinite(drawn)):
        return ""
    if abs(drawn / nominal - 1) < STRAY_SHARE:
        return ""
    a, b = e["window_s"]
    return f" (this run drew {fmt(drawn, unit=' /s')} from t = {a:,.0f} s to {b:,.0f} s, the stretch the verdict measures)"


def evidence(v, extra: list[tuple[str, str]] | None = None, summary: dict | None = None,
             parts: bool = True, note: str | None = None) -> None:
    """The numbers behind a verdict (Verdict.evidence()), preemptions and recomputed work
    from the run's summary, a note on them (e.g. zero_throughput), the rule that decided
    it, for a network the per-buffer tests, and a caveat near the boundary."""
    e = v.evidence()
    sload = e.get("scheduler_load") or 0.0
    from llmsim.stability import loads_differ
    if sload > 0 and math.isfinite(sload) and loads_differ(e["load"], sload):
        # this scheduler's own load first: the page's "Offered load ρ 0.93" (over the best capacity)
        # beside an Unstable badge read as a contradiction (tried as a new user would)
        rows = [("load on this scheduler", f"{fmt_load(sload)} (arrival rate over its own theory capacity)"),
                ("load ρ", f"{fmt_load(e['load'])} (over the best capacity any scheduler reaches)")]
    else:
        rows = [("load ρ", fmt_load(e['load']))]
    rows += [
        ("arrival rate", fmt(e["arrival_rate_rps"], unit=" /s") + _drawn(e)),
        ("theory capacity", fmt(e["capacity_rps"], unit=" /s")),
        ("measured growth", f"{_pct(e['growth'])} of arriving work "
                            f"(95% CI {_pct(e['growth_lo'])} to {_pct(e['growth_hi'])})"),
        ("growth theory predicts", fmt(e["theory_drift_tokens_per_s"], unit=" tokens/s")
         + (f" ({100 * e['theory_drift_tokens_per_s'] / e['offered_tokens_per_s']:.1f}% of arriving work; "
            + ("it would be 0 with every engine below its theory capacity)" if v.parts
               else "it would be 0 below this scheduler's theory capacity)") if e.get("offered_tokens_per_s") else "")),
    ]
    if summary is not None:
        pre = summary.get("preemptions")
        rec = summary.get("tokens_recomputed")
        done = summary.get("tokens_done") or 0
        if pre is not None:
            rows.append(("preemptions", f"{int(pre):,}"))
        if rec is not None:
            # the verdict's own share (recomputed over offered tokens), so both say the same figure
            share = (f" ({100 * v.recomputed_share:.1f}% of the offered work)" if rec and v.recomputed_share
                     else f" ({100 * rec / done:.1f}% of tokens processed)" if done and rec else "")
            rows.append(("recomputed work", f"{int(rec):,} tokens{share}"))
    rows += extra or []
    for name in v.unstable_parts:
        p = v.parts.get(name, {})
        rate, (lo, hi) = p.get("arrival_rate") or 0.0, p.get("interval", (math.nan, math.nan))
        if rate > 0:
            rows.append((f"decided by buffer {name}", f"growth {_pct(p.get('growth_per_s', math.nan) / rate)} "
                                                      f"(95% CI {_pct(lo / rate)} to {_pct(hi / rate)})"))
    st.markdown("\n".join(f"- {k}: **{val}**" for k, val in rows))
    if note:
        st.caption(note)
    caveat = near_boundary(v)
    if caveat:
        st.warning(caveat, icon=":material/warning:")
    if not parts:
        return
    with st.expander("Why this verdict", expanded=bool(v.parts) and v.verdict == "unstable"):
        st.markdown(rule_text(v.threshold))
        if v.capacity_kind and not v.parts:
            from llmsim_ui.markdown import plain
            st.markdown(f"**Theory's capacity for this scheduler** ({fmt(v.capacity_rps, unit=' req/s')}): "
                        + plain(sentence(v.capacity_kind)))
        table = parts_table(v)
        if table is not None:
            decided = [n for n in v.unstable_parts]
            if decided:
                st.markdown(f"A network is unstable as soon as **one buffer's own test** says so; here: "
                            f"**{', '.join(decided)}**. The network-wide growth above is shown for reference "
                            "(a growing buffer can hide in the total while others drain).")
            else:
                st.markdown("A network is stable when the total backlog and every buffer pass the test; a "
                            "buffer that cannot be told apart from noise makes it inconclusive.")
            st.dataframe(table, hide_index=True, width="stretch")
