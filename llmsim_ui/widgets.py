"""Small pieces of UI the pages share: a coloured series name, a verdict badge with its
evidence, numbers formatted for people."""

from __future__ import annotations

import math

import streamlit as st

from llmsim_ui.palette import VERDICT_BADGE

VERDICT_MEANING = (
    "**What the verdict means.** *Stable*: the unfinished work (backlog) went up and down but "
    "did not trend upward over the second half of the run, so the engine keeps up with this load. "
    "*Unstable*: the backlog grew steadily, so the queue — and every request's waiting time — would "
    "grow without bound the longer the load lasts. *Inconclusive*: the trend cannot be told apart "
    "from noise over this run (typical close to capacity); run more requests."
)


def fmt(x, digits: int = 3, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    if abs(x) >= 1000:
        return f"{x:,.0f}{unit}"
    return f"{x:.{digits}g}{unit}"


def seconds(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if x < 1:
        return f"{x * 1e3:.3g} ms"
    if x < 120:
        return f"{x:.3g} s"
    return f"{x / 60:,.1f} min"


def swatch(name: str, colour: str) -> None:
    st.markdown(f"<span style='color:{colour};font-size:1.3em'>■</span> **{name}**",
                unsafe_allow_html=True)


def badge(verdict: str) -> None:
    colour, icon = VERDICT_BADGE.get(verdict, ("gray", ":material/help:"))
    st.badge(verdict.capitalize(), color=colour, icon=icon)


def evidence(v, extra: list[tuple[str, str]] | None = None) -> None:
    """The numbers behind a verdict, as a short list (Verdict.evidence())."""
    e = v.evidence()
    rows = [
        ("load ρ", f"{e['load']:.2f}"),
        ("arrival rate", fmt(e["arrival_rate_rps"], unit=" /s")),
        ("theory capacity", fmt(e["capacity_rps"], unit=" /s")),
        ("measured growth", f"{100 * e['growth']:+.1f}% of arriving work "
                            f"(95% CI {100 * e['growth_lo']:+.1f}% to {100 * e['growth_hi']:+.1f}%)"),
        ("theory drift", fmt(e["theory_drift_tokens_per_s"], unit=" tokens/s")),
    ]
    rows += extra or []
    st.markdown("\n".join(f"- {k}: **{val}**" for k, val in rows))
