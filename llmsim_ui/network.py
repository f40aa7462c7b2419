"""A workflow network as Graphviz DOT text (drawn by st.graphviz_chart in the browser; no
graphviz Python package needed).

Engines are boxes (clusters) holding their buffers, one per workflow step; arrows follow
the calls of each workflow class from its arrivals to its exit, labelled with routing
probabilities, fan-out (×4: a fork of four parallel calls) and tool delays.
"""

from __future__ import annotations

from collections import Counter

from llmsim import Scenario
from llmsim_ui import palette


def _q(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _mean(d) -> str:
    try:
        return f"{d.mean:,.0f}"
    except Exception:  # a length law without a mean (never in validated scenarios)
        return "?"


def ranks(sc: Scenario) -> dict:
    """Effective static priority rank of every step at its engine, "workflow.step" -> rank
    (0 first), as the simulator orders them: explicit priority, then file order."""
    out = {}
    for e in sc.engines:
        steps = [(s.priority if s.priority is not None else 10**6, k, f"{w.name}.{s.name}")
                 for k, (w, s) in enumerate((w, s) for w in sc.workflows for s in w.steps) if s.engine == e.name]
        for r, (_, _, name) in enumerate(sorted(steps)):
            out[name] = r
    return out


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


MAX_ROUTES_DRAWN = 32  # a step with more routes gets one edge per target (5,000 froze a tab ~25 s)


def _merged_routes(s, steps, ids, wi, done, col) -> list[str]:
    """One edge per target of a step with many routes: the probability that a call of it is
    made (summed over the routes naming it) and how many routes name it."""
    prob, n = Counter(), Counter()
    for r in s.routes:
        for child in (dict.fromkeys(r.to) if r.to else [None]):
            prob[child] += r.prob
            n[child] += 1
    out = []
    for child in prob:
        label = _q(f"p = {min(prob[child], 1.0):.3g} ({n[child]:,} routes)")
        dst = done if child is None else ids[(wi, child)]
        out.append(f"  {ids[(wi, s.name)]} -> {dst} [color={_q(col)}, label={label}];")
    return out


def buffer_names(sc: Scenario) -> list[str]:
    """Every buffer (workflow.step), in the order the agents page charts them."""
    return [f"{w.name}.{s.name}" for w in sc.workflows for s in w.steps]


def buffer_scale(sc: Scenario):
    """The buffers' colours: the drawing's boxes and the page's lines of waiting calls."""
    return palette.categorical(buffer_names(sc))


def side_by_side(sc: Scenario) -> bool:
    """Whether the drawing puts engines side by side (wide and short), not one engine's steps
    top to bottom."""
    return len(sc.engines) > 1


def dot(sc: Scenario, loads: dict | None = None) -> str:
    """DOT text of the network; loads: engine name -> nominal load (shown in its box)."""
    # a buffer takes its line's colour in the page's chart of buffers (the same palette, in the
    # same order), and an arrow the colour of the buffer it leaves (an arrival's: the buffer it
    # enters): a drawing coloured by workflow beside lines coloured by buffer matched nothing,
    # and workflow-coloured arrows beside buffer-coloured boxes gave one colour two meanings
    # (tried as a new user would)
    fills = buffer_scale(sc)
    bcol = dict(zip(fills.domain, fills.range))
    rank = ranks(sc)
    # size "...!" scales the drawing up to fill about a page column (Graphviz draws small)
    # one engine: its steps top to bottom, else the engines side by side
    rankdir = "LR" if side_by_side(sc) else "TB"
    lines = ["digraph llmsim {", f'  rankdir={rankdir}; splines=true; nodesep=0.4; ranksep=0.7; size="8,4.5!";',
             '  node [fontname="Helvetica", fontsize=16, shape=box, style="rounded,filled", penwidth=1.4, '
             'margin="0.15,0.08"];',
             '  edge [fontname="Helvetica", fontsize=14, color="#555555", arrowsize=0.8];']
    ids = {}
    for wi, w in enumerate(sc.workflows):
        for si, s in enumerate(w.steps):
            ids[(wi, s.name)] = f"s{wi}_{si}"
    for ei, e in enumerate(sc.engines):
        load = f"\nload ρ = {loads[e.name]:.2f}" if loads and e.name in loads else ""
        label = f"{e.name}\n{e.scheduler} · b = {e.token_budget} · {e.policy}{load}"
        lines.append(f"  subgraph cluster_{ei} {{")
        lines.append(f'    label={_q(label)}; labeljust="l"; fontname="Helvetica"; fontsize=15; '
                     f'style="rounded,filled"; fillcolor="#F3F5F8"; color="#8A94A6";')
        for wi, w in enumerate(sc.workflows):
            for s in w.steps:
                if s.engine != e.name:
                    continue
                name = f"{w.name}.{s.name}"
                extra = []
                # the rank, said as an order ("priority 0" read both ways)
                if e.policy in ("priority", "strict-priority"):
                    r = rank.get(name)
                    extra.append(f"served {_ordinal(r + 1)}" if r is not None else "priority ?")
                if s.join:
                    extra.append("join")
                label = f"{name}\nprompt ≈ {_mean(s.prompt_tokens)} · output ≈ {_mean(s.output_tokens)}"
                if extra:
                    label += "\n" + " · ".join(extra)
                col = bcol[name]
                lines.append(f"    {ids[(wi, s.name)]} [label={_q(label)}, fillcolor={_q(col + '40')}, "
                             f"color={_q(col)}, penwidth=2.4{', peripheries=2' if s.join else ''}];")
        lines.append("  }")
    for wi, w in enumerate(sc.workflows):
        src, done = f"in{wi}", f"out{wi}"
        arrive = _q(f"{w.name} arrives" + "\n" + f"{w.arrival.rate:.3g} per s")
        lines.append(f'  {src} [label={arrive}, shape=plaintext, style="", fontcolor="#333333"];')
        lines.append(f'  {done} [label={_q(w.name + " done")}, shape=plaintext, style="", fontcolor="#333333"];')
        for st in w.start:
            lines.append(f"  {src} -> {ids[(wi, st)]} [color={_q(bcol[f'{w.name}.{st}'])}];")
        steps = {s.name: s for s in w.steps}
        for s in w.steps:
            col = bcol[f"{w.name}.{s.name}"]
            if len(s.routes) > MAX_ROUTES_DRAWN:
                lines += _merged_routes(s, steps, ids, wi, done, col)
                continue
            for r in s.routes:
                p = f"p = {r.prob:g}" if r.prob < 1 else ""
                if not r.to:
                    lines.append(f"  {ids[(wi, s.name)]} -> {done} [color={_q(col)}, label={_q(p)}];")
                    continue
                for child, count in Counter(r.to).items():
                    parts = [p] if p else []
                    if count > 1:
                        parts.append(f"×{count} in parallel")
                    c = steps[child]
                    if c.delay_seconds:
                        kind = " (exp.)" if c.delay_dist == "exponential" else ""
                        parts.append(f"tool {c.delay_seconds:g} s{kind}")
                    lines.append(f"  {ids[(wi, s.name)]} -> {ids[(wi, child)]} [color={_q(col)}, "
                                 f"label={_q(', '.join(parts))}{', penwidth=2.2' if count > 1 else ''}];")
    lines.append("}")
    return "\n".join(lines)
