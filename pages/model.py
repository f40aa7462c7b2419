"""The model — the queueing model and the paper's results, for a classroom."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from llmsim import SCHEDULERS
from llmsim.config import batch_time
from llmsim.presets import HARDWARE_PRESETS
from llmsim.stability import fmt_load
from llmsim_ui import entry, phone_nav, widgets
from llmsim_ui.state import Field, PageState


def load_caption(rho: float) -> str:
    """What the load says (ρ = 1 exactly: no drift, yet no scheduler settles; it read "grows
    without bound" beside a drift of 0, a hostile pass)."""
    if rho < 1:
        return "Stable for a work-conserving scheduler."
    if rho == 1:
        return ("Critically loaded (ρ = 1): the fluid drift is 0, yet no scheduler settles: the backlog "
                "wanders ever further, like a random walk, and its mean grows without bound.")
    return "Unstable for every scheduler: the backlog grows without bound."


entry.require_app()

PAGE = "model"
# section 1's staircase: the paper's own fit, CodeLlama-34B on one A100 (a hardware preset)
STAIRCASE = batch_time(HARDWARE_PRESETS["codellama-34b/a100-80gb"].batch_time, "codellama-34b/a100-80gb")
ps = PageState(PAGE, [
    Field("b", 512, "int", 1, 65_536, label="token budget b"),
    Field("tb", 153.16, "float", 0.01, 100_000.0, label="t(b) in ms"),
    Field("tb_auto", True, "bool", label="t(b) from the staircase"),
    Field("mp", 100.0, "float", 1.0, 1e6, label="mean prompt tokens"),
    Field("md", 100.0, "float", 1.0, 1e6, label="mean output tokens"),
    Field("lam", 14.0, "float", 0.0, 1e6, label="arrival rate"),
    # section 7, the stability region (the paper's section 6.2 example by default)
    Field("r_hw", "paper staircase", "str", choices=("paper staircase",) + tuple(HARDWARE_PRESETS),
          label="region: batch time"),
    Field("r_b", 1024, "int", 1, 16_384, label="region: token budget b"),
    Field("r_k", 100, "int", 0, 16_384, label="region: max batch size k (0: none)"),
    Field("r_p", 290, "int", 1, 65_536, label="region: prompt tokens"),
    Field("r_d", 990, "int", 1, 65_536, label="region: output tokens"),
    Field("r_lam", 1.6, "float", 0.0, 1e6, label="region: arrival rate"),
]).restore()

# the inputs' labels on this page: a value out of range is named as the reader sees it
LABELS = {"b": "b (tokens)", "tb": "t(b) (ms)", "mp": "mean prompt m_p", "md": "mean output m_d",
          "lam": "λ (requests/s)", "r_b": "b (tokens)", "r_k": "k (0: none)", "r_p": "prompt P",
          "r_d": "output D", "r_lam": "λ (req/s)"}


def in_range(name: str) -> bool:
    f = ps.by_name[name]
    return f.lo is None or f.lo <= ps.get(name) <= f.hi


def out_of_range(names) -> list[str]:
    """A message per input out of its field's range, in the page's words."""
    return [f"{LABELS[n]}: {widgets.fmt(ps.get(n), 6)} is outside the allowed range "
            f"{widgets.fmt(ps.by_name[n].lo, 6)} to {widgets.fmt(ps.by_name[n].hi, 6)}"
            for n in names if not in_range(n)]


def publish() -> None:
    """The inputs in the address bar, but those out of range (a link holding b = -5 later
    opened with "Link parameter b='-5'... Using 512 instead")."""
    ps.publish([f.name for f in ps.fields if f.name not in LABELS or in_range(f.name)])


st.title("The model")
ps.show_url_errors()
st.markdown(
    "llmsim simulates the queueing model of Li, Dai & Peng, *Throughput-Optimal Scheduling Algorithms for LLM "
    "Inference and AI Agents* (arXiv 2504.07347), with GPU memory added. This page explains it in five minutes.")

st.header("1. Requests, iterations, batches")
st.markdown(
    "A request brings a **prompt** of $P$ tokens and will produce an **output** of $D$ tokens. The engine works "
    "in **iterations**: each iteration processes one *batch* of tokens — some prompt tokens (*prefill*, which "
    "may be split into chunks) and at most one new output token per request already past its prefill "
    "(*decode*). Each iteration may hold at most $b$ tokens, the **token budget**. An iteration holding $n$ "
    "tokens takes time $t(n)$; the paper's fit for CodeLlama-34B on one A100 GPU is a staircase:")
st.latex(r"t(n) = c + a\left\lceil \frac{n}{b_0} \right\rceil,\qquad c = 11.28\,\mathrm{ms},\ "
         r"a = 35.47\,\mathrm{ms},\ b_0 = 128 \quad\Rightarrow\quad t(512) = 153.16\,\mathrm{ms}.")

st.header("2. How much can an engine serve?")
st.markdown("At best every iteration is full: $b$ tokens every $t(b)$ seconds. The paper's **Theorem 2**: no "
            "scheduler processes more than")
st.latex(r"\mu = \frac{b}{t(b)} \quad\text{tokens per second.}")
st.markdown("With requests arriving at rate $\\lambda$ (per second) and mean prompt and output lengths "
            "$m_p$ and $m_d$, the work arriving per second is $\\lambda (m_p + m_d)$ tokens, so the **load** is")
st.latex(r"\rho = \frac{\lambda\,(m_p + m_d)}{b / t(b)} = \frac{\lambda\,(m_p + m_d)\, t(b)}{b}.")
st.markdown(
    "- If $\\rho > 1$, **every** scheduler is unstable: unfinished work (the *backlog*) grows on average by "
    "the **fluid drift** $\\lambda (m_p + m_d) - b/t(b)$ tokens per second.\n"
    "- If $\\rho < 1$, every **work-conserving** scheduler is stable. Work-conserving means: fill each "
    "iteration up to the budget whenever the waiting work allows it.\n"
    "- Since $t(b)$ grows more slowly than $b$, a bigger budget buys capacity.")

with st.container(border=True):
    st.markdown("**Try it.** The load and the best possible capacity for your numbers:")
    auto = bool(ps.get("tb_auto"))
    if auto and 1 <= ps.get("b") <= 65_536:  # t(b) follows b along the staircase
        ps.set("tb", round(STAIRCASE.seconds(ps.get("b")) * 1e3, 2))
    c = st.columns(5)
    c[0].number_input(LABELS["b"], step=64, **ps.w("b"))
    c[1].number_input(LABELS["tb"], step=1.0, format="%.2f", disabled=auto, **ps.w("tb"),
                      help="From the staircase of section 1 while the switch below is on; switch it off "
                           "to enter another engine's t(b).")
    # "%g": a rate of 0.0001 read "0.00" beside a load of 2 (a hostile pass)
    c[2].number_input(LABELS["mp"], step=10.0, format="%g", **ps.w("mp"))
    c[3].number_input(LABELS["md"], step=10.0, format="%g", **ps.w("md"))
    c[4].number_input(LABELS["lam"], step=1.0, format="%g", **ps.w("lam"))
    st.toggle("t(b) from the staircase of section 1", **ps.w("tb_auto"),
              help="On: t(b) = c + a⌈b/b0⌉ (11.28 + 35.47⌈b/128⌉ ms), so a larger b also takes longer. "
                   "Off: type t(b) for another engine.")
    publish()
    b, tb, mp, md, lam = (ps.get(k) for k in ("b", "tb", "mp", "md", "lam"))
    errs = out_of_range(("b", "tb", "mp", "md", "lam"))
    if errs:
        for e in errs:
            st.error(e)
    else:
        mu = b / (tb / 1e3)
        rho = lam * (mp + md) / mu
        drift = max(0.0, lam * (mp + md) - mu)
        # four figures, each with three significant digits: "3,343 tok/s = 16.7 req/s" in one ran into the
        # load beside it at 1024 px, and a capacity of 5e-05 req/s read "0 tok/s" (a hostile pass)
        m = st.columns(4)
        m[0].metric("capacity b/t(b) (tok/s)", widgets.fmt(mu))
        m[1].metric("the same in requests/s", widgets.fmt(mu / (mp + md)),
                    help="b/t(b) over the mean tokens per request, m_p + m_d.")
        m[2].metric("load ρ", fmt_load(rho))
        m[3].metric("fluid drift (tok/s)", widgets.fmt(drift), help="How fast the backlog grows when ρ > 1.")
        st.caption(load_caption(rho))

st.header("3. Four schedulers")
st.markdown("They differ in how they fill an iteration. Two are work-conserving and reach $b/t(b)$; two "
            "are not, and break at lower loads.")
# the yes/no columns first and the rule last: at 1024 px the table was cut at "wo(rk-conserving)"
phone_nav.table(pd.DataFrame([
    {"scheduler": "fastertransformer", "work-conserving": "no", "mixes prefill and decode": "no",
     "chunks prompts": "no", "rule": "decode first; a batch of whole prompts only when nothing decodes"},
    {"scheduler": "vllm", "work-conserving": "no", "mixes prefill and decode": "no", "chunks prompts": "no",
     "rule": "prefill first: whole prompts whenever one fits; otherwise a decode iteration"},
    {"scheduler": "orca", "work-conserving": "yes", "mixes prefill and decode": "yes", "chunks prompts": "yes",
     "rule": "prefill chunks fill the budget first, decodes take the rest"},
    {"scheduler": "sarathi", "work-conserving": "yes", "mixes prefill and decode": "yes", "chunks prompts": "yes",
     "rule": "one decode token per running request first, then prefill chunks"},
] + [{"scheduler": k, "work-conserving": "yes" if v.work_conserving else "no", "mixes prefill and decode": "?",
      "chunks prompts": "yes" if v.chunked_prefill else "no", "rule": v.summary}
     for k, v in SCHEDULERS.items() if k not in ("fastertransformer", "vllm", "orca", "sarathi")]),
    "schedulers", hide_index=True)
st.markdown(
    "**The paper's worked example (Fig. 8).** Requests A, B, C are decoding with 2, 4 and 3 output tokens "
    "left; D and E (1 prompt token and 1 output token each) arrive during iteration 1. What each scheduler puts "
    "in each iteration (d: a decode token, p: a prefill token):")
st.table(pd.DataFrame({
    "vllm (b=4)": ["A,B,C d", "D,E p", "A,B,C,D d", "B,C,E d", "B d", "—"],
    "orca (b=5)": ["A,B,C d", "D,E p + A,B,C d", "B,C,D,E d", "B d", "—", "—"],
    "fastertransformer (b=4)": ["A,B,C d", "A,B,C d", "B,C d", "B d", "D,E p", "D,E d"],
    "sarathi (b=4)": ["A,B,C d", "A,B,C d + D p", "B,C,D d + E p", "B,E d", "—", "—"],
}, index=[f"iteration {i}" for i in range(1, 7)]))
st.markdown("orca is shown at $b = 5$, as in the paper's figure: its second iteration then holds both prompts "
            "and all three decodes (the others at $b = 4$). "
            "vllm idles decode slots while it prefills; fastertransformer makes D and E wait until every "
            "decode is done. Both waste capacity, which is why they break below $\\rho = 1$.")

st.header("4. GPU memory (our extension)")
st.markdown(
    "Each admitted request keeps its context — every token processed so far — in the GPU's **KV cache** of "
    "$M$ tokens. When memory runs out, the most recently admitted request is *preempted* and must redo its "
    "prefill later. Following Nie, Si & Zhou, a request with prompt $s$ and output $o$, its prompt read in "
    "chunks of *chunk* tokens (the token budget $b$ at most), occupies memory for")
st.latex(r"g(s,o) = \Bigl(1 + \frac{s}{\text{chunk}}\Bigr)\frac{s}{2} + s\,o + \frac{(1+o)\,o}{2}"
         r"\quad\text{token-iterations},\qquad \mu_{\text{mem}} = \frac{M}{\bar t\;\mathbb{E}[g]}.")
st.markdown("Here $\\bar t$ is the mean iteration time of the batches an engine runs at capacity. "
            "Every policy is unstable when $\\lambda > \\mu_{\\text{mem}}$. The binding capacity is the smaller "
            "of the token capacity and the memory capacity (and, with a maximum batch size, the stability "
            "region of section 7: then *which* batches a scheduler forms matters, not only whether they are full).")
st.markdown("$\\mu_{\\text{mem}}$ assumes every decoding request gets its token each iteration, as sarathi's "
            "decode-first batches do. orca and vllm serve prompts first: when the KV cache binds, their prompts "
            "starve the decoders, which then hold their memory longer, so fewer requests fit and they break "
            "below $\\mu_{\\text{mem}}$. Theory prices them with the decoders a full cache holds, "
            "$k_{\\text{mem}} = M\\,\\mathbb{E}[D]/\\mathbb{E}[g]$ (the benchmark workload W1 — prompts of 64 to 960 "
            "tokens, outputs of 256 on average, $b$ = 512, 20 ms iterations — with a KV cache of $M$ = 60,000 "
            "tokens: orca about 11.6 requests/s, sarathi 15.2; a scheduler's card gives its own formula under *Why this verdict*).")

st.header("5. Networks of LLM agents")
st.markdown(
    "An agent workflow makes several LLM calls, possibly on several engines, in sequence, in parallel (fork and "
    "join) or in loops. Each engine $k$ has a nominal load")
st.latex(r"\rho_k = \frac{\sum_c \lambda_c\,\mathbb{E}[\text{tokens of class } c \text{ at } k]}{b_k / t_k(b_k)},")
st.markdown(
    "and $\\rho_k < 1$ for every engine is **necessary**. For workflows without loops between engines, "
    "work-conserving FCFS-type scheduling is also sufficient. With loops it is not: in the **Rybko–Stolyar** "
    "network (page *Agents*, preset *cyclic*), class A makes a short call at engine 1 then a long one at "
    "engine 2, class B the mirror image. If each engine gives priority to the long call of the class that "
    "*leaves* through it, the two long calls are never served at the same time — together they behave like one "
    "station with load $2 \\times 0.6 = 1.2 > 1$ (each engine's load 0.7 is 0.1 from its short calls and 0.6 "
    "from its long ones) — and the network diverges although $\\rho_1 = \\rho_2 = 0.7$. "
    "The reversed priority, FCFS and max-pressure stay bounded.")

st.header("6. How llmsim reaches a verdict")
st.markdown(
    "Theory gives the load and the capacities; the simulation gives the evidence. Over the second half of the "
    "arrival window, the backlog trajectory is cut into 10 consecutive batches; the batch means are regressed on "
    "time, and the slope — as a share of the work arriving per second, the **growth** — gets a 95% confidence "
    "interval:")
st.markdown(
    "- **unstable**: growth above 2% of the arriving work, and the whole interval above 0.5%;\n"
    "- **stable**: the whole interval below 2%, reaching below 0.5%;\n"
    "- **inconclusive**: otherwise — typically close to $\\rho = 1$, where a longer run is needed.\n\n"
    "For a network the same test runs on every buffer; a policy is unstable as soon as one buffer grows, and "
    "the growing buffers are named. The *Capacity* page searches, for each scheduler, the arrival rate where the "
    "verdict turns from stable to unstable.")

# ---- 7. the stability region (issue 13): library computes, this block only draws ----
st.header("7. The stability region (Theorem 10)")
st.markdown(
    "With a cap $k$ on the batch size and a batch time that depends on the batch, one number $b/t(b)$ no longer "
    "says it all. A **batch type** holds $x$ prefill tokens in $c$ chunks and $y$ decode tokens "
    "($x + y \\le b$, $y + c \\le k$) and lasts $t(x, y)$. Run back to back it supplies $(x, y)/t(x, y)$ prefill "
    "and decode tokens per second; time-sharing between batch types reaches every point of their convex hull. "
    "That hull, made down-closed, is the **stability region**: a workload needing "
    "$\\lambda\\,(\\mathbb{E}[P], \\mathbb{E}[D])$ tokens per second can be served only inside it. Its capacity "
    "$\\lambda^*$ is where its ray leaves the region — a linear program over the time shares:")
# a constraint a line: on one line the program ran off a phone at "... >= λE[P], Σ s"
st.latex(r"\begin{aligned} \lambda^* = \max\ & \lambda \quad \text{subject to} \\ "
         r"& \textstyle\sum_j s_j \frac{x_j}{t_j} \ge \lambda\,\mathbb{E}[P],\quad "
         r"\sum_j s_j \frac{y_j}{t_j} \ge \lambda\,\mathbb{E}[D], \\ "
         r"& \textstyle\sum_j s_j \frac{c_j}{t_j} \ge \lambda\,\mathbb{E}\lceil P/b \rceil,\quad "
         r"\sum_j s_j \le 1,\quad s \ge 0. \end{aligned}")
with st.container(border=True):
    c = st.columns(6)
    c[0].selectbox("batch time", ps.by_name["r_hw"].choices, **ps.w("r_hw", ps.by_name["r_hw"].choices))
    c[1].number_input(LABELS["r_b"], step=64, **ps.w("r_b"))
    c[2].number_input(LABELS["r_k"], step=10, **ps.w("r_k"))
    c[3].number_input(LABELS["r_p"], step=10, **ps.w("r_p"))
    c[4].number_input(LABELS["r_d"], step=10, **ps.w("r_d"))
    c[5].number_input(LABELS["r_lam"], step=0.1, format="%g", **ps.w("r_lam"))
    publish()
    errs = out_of_range(("r_b", "r_k", "r_p", "r_d", "r_lam"))
    for e in errs:
        st.error(e)
    if not errs:
        from llmsim_ui import region_view
        region_view.show(ps.get("r_hw"), int(ps.get("r_b")), int(ps.get("r_k")), int(ps.get("r_p")),
                         int(ps.get("r_d")), float(ps.get("r_lam")))
