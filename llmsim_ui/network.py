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
WIDE_SCALE = 0.75  # engines side by side: fonts, gaps and lines of the one-engine drawing times this


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


def _engine_label(e, loads: dict | None) -> str:
    load = f"\nload ρ = {loads[e.name]:.2f}" if loads and e.name in loads else ""
    return f"{e.name}\n{e.scheduler} · b = {e.token_budget} · {e.policy}{load}"


def _step_label(e, w, s, rank: dict) -> str:
    name = f"{w.name}.{s.name}"
    extra = []
    # the rank, said as an order ("priority 0" read both ways)
    if e.policy in ("priority", "strict-priority"):
        r = rank.get(name)
        extra.append(f"served {_ordinal(r + 1)}" if r is not None else "priority ?")
    if s.join:
        extra.append("join")
    label = f"{name}\nprompt ≈ {_mean(s.prompt_tokens)} · output ≈ {_mean(s.output_tokens)}"
    return label + ("\n" + " · ".join(extra) if extra else "")


def _arrival_label(w) -> str:
    return f"{w.name} arrives\n{w.arrival.rate:.3g} per s"


def _text_pt(label: str, size: float) -> float:
    """About how wide Helvetica sets the longest line of `label` at `size` points."""
    return max(len(line) for line in label.split("\n")) * size * 0.48


def _levels(nodes, succ) -> dict:
    """Longest-path level of every node, from the sources (nodes in their given order start
    the depth-first search), the back edges that close a cycle left out."""
    order, seen = [], set()
    for root in nodes:  # depth-first, post-order, without recursion (a chain of thousands of steps)
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(succ.get(root, ())))]
        while stack:
            n, it = stack[-1]
            m = next((m for m in it if m not in seen), None)
            if m is None:
                stack.pop()
                order.append(n)
            else:
                seen.add(m)
                stack.append((m, iter(succ.get(m, ()))))
    pos = {n: i for i, n in enumerate(reversed(order))}
    level = dict.fromkeys(nodes, 0)
    for n in reversed(order):
        for m in succ.get(n, ()):
            if pos[m] > pos[n]:  # a forward edge
                level[m] = max(level[m], level[n] + 1)
    return level


def drawing_px(sc: Scenario, loads: dict | None = None) -> int:
    """About how wide (CSS px) the browser draws ``dot(sc, loads)`` of engines side by side, at
    its own size. As Graphviz's dot ranks a graph with clusters: each engine's buffers by the
    calls between them alone, then the engine as one node of the network, left to right by the
    longest path from the arrivals (back edges of a cycle left out); a column is as wide as its
    widest node. Measured in Chromium: within 3% of the drawn width on chains of 2 to 8 engines
    and three of the four 2-engine presets; 15% under on fork_join (dot draws its exit a column
    further right). The page says the drawing scrolls when the column is narrower than this."""
    k = WIDE_SCALE
    sep = 72 * 0.7 * k  # ranksep
    rank_of = ranks(sc)
    engines = {e.name: e for e in sc.engines}
    width, succ, cluster = {}, {}, {}
    for wi, w in enumerate(sc.workflows):
        src, done = ("in", wi), ("out", wi)
        width[src], width[done] = _text_pt(_arrival_label(w), 16 * k), _text_pt(f"{w.name} done", 16 * k)
        succ[src] = [(wi, n) for n in w.start]
        for s in w.steps:
            width[(wi, s.name)] = _text_pt(_step_label(engines[s.engine], w, s, rank_of), 16 * k) + 2 * 72 * 0.15 * k
            succ[(wi, s.name)] = [(wi, n) if n else done for r in s.routes for n in (r.to or (None,))]
            cluster[(wi, s.name)] = s.engine
    # each engine's panel: its buffers ranked by the calls between them
    panel, members = {}, {}
    for n, name in cluster.items():
        members.setdefault(name, []).append(n)
    for name, inner in members.items():
        e = engines[name]
        lv = _levels(inner, {n: [m for m in succ[n] if cluster.get(m) == name] for n in inner})
        cols = {}
        for n, x in lv.items():
            cols[x] = max(cols.get(x, 0.0), width[n])
        panel[name] = max(sum(cols.values()) + sep * (len(cols) - 1), _text_pt(_engine_label(e, loads), 15 * k)) + 16 * k
    # the network of engines (each one node) and arrivals and exits
    top = lambda n: ("engine", cluster[n]) if n in cluster else n  # noqa: E731
    nodes = list(dict.fromkeys([top(n) for n in width if n[0] == "in"] + [top(n) for n in width]))
    tsucc: dict = {}
    for n, ms in succ.items():
        for m in ms:
            if top(m) != top(n):
                tsucc.setdefault(top(n), []).append(top(m))
    cols = {}
    for n, x in _levels(nodes, tsucc).items():
        cols[x] = max(cols.get(x, 0.0), panel[n[1]] if n[0] == "engine" else width[n])
    return int(round((sum(cols.values()) + sep * (len(cols) - 1)) * 4 / 3))


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
    # one engine: its steps top to bottom, scaled to about a page column (size "...!": Graphviz
    # draws small). Engines side by side: drawn at their own size, WIDE_SCALE of the one-engine
    # figures (a 2-engine chain then looks as it did scaled to a column), and the page scrolls
    # a wider one sideways: scaled to fit, a chain of 4 engines had 9 px labels, of 8 engines 5 px
    wide = side_by_side(sc)
    k = WIDE_SCALE if wide else 1.0
    size = "" if wide else ' size="8,4.5!";'
    lines = ["digraph llmsim {", f"  rankdir={'LR' if wide else 'TB'}; splines=true; nodesep={0.4 * k:g}; "
             f"ranksep={0.7 * k:g};{size}",
             f'  node [fontname="Helvetica", fontsize={16 * k:g}, shape=box, style="rounded,filled", '
             f'penwidth={1.4 * k:g}, margin="{0.15 * k:g},{0.08 * k:g}"];',
             f'  edge [fontname="Helvetica", fontsize={14 * k:g}, color="#555555", arrowsize={0.8 * k:g}, '
             f'penwidth={k:g}];']
    ids = {}
    for wi, w in enumerate(sc.workflows):
        for si, s in enumerate(w.steps):
            ids[(wi, s.name)] = f"s{wi}_{si}"
    for ei, e in enumerate(sc.engines):
        lines.append(f"  subgraph cluster_{ei} {{")
        lines.append(f'    label={_q(_engine_label(e, loads))}; labeljust="l"; fontname="Helvetica"; '
                     f'fontsize={15 * k:g}; style="rounded,filled"; fillcolor="#F3F5F8"; color="#8A94A6";')
        for wi, w in enumerate(sc.workflows):
            for s in w.steps:
                if s.engine != e.name:
                    continue
                name = f"{w.name}.{s.name}"
                col = bcol[name]
                lines.append(f"    {ids[(wi, s.name)]} [label={_q(_step_label(e, w, s, rank))}, "
                             f"fillcolor={_q(col + '40')}, color={_q(col)}, penwidth={2.4 * k:g}"
                             f"{', peripheries=2' if s.join else ''}];")
        lines.append("  }")
    for wi, w in enumerate(sc.workflows):
        src, done = f"in{wi}", f"out{wi}"
        lines.append(f'  {src} [label={_q(_arrival_label(w))}, shape=plaintext, style="", fontcolor="#333333"];')
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
                                 f"label={_q(', '.join(parts))}{f', penwidth={2.2 * k:g}' if count > 1 else ''}];")
    lines.append("}")
    return "\n".join(lines)
