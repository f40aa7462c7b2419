"""The page list, and the navigation a phone gets.

Streamlit's top navigation (``st.navigation(position="top")``) has no room on a narrow
screen and the page links end up out of sight; ``links()`` draws the same pages as a row
of links at the top of each page, shown by CSS only below ``PHONE_PX`` of width. ``style()``
also lets a metric's figure wrap instead of being cut ("16.7 r…") in a narrow column, and
keeps a network drawing legible on a phone (it scrolls sideways, ``GRAPH_MIN_PX`` wide).
"""

from __future__ import annotations

import streamlit as st

PHONE_PX = 640
# a network drawing is never drawn narrower than this: scaled to a phone's width its text was
# ~5 px tall (a 576 pt drawing in 358 px); the drawing scrolls sideways instead
GRAPH_MIN_PX = 760
# a drawing of engines side by side (a network of two or more) is drawn at its own size
# (``network.dot``) and scrolls sideways in a narrower column: scaled to the column, its text was
# ~7 px tall at 1024 px, and a chain of 8 engines had 5 px text at 1400 px. Its hint shows while
# the column is narrower than HINT_MARGIN times the drawing's estimated width
# (``network.drawing_px``, up to 15% under)
HINT_MARGIN = 1.15
# one engine's steps top to bottom (react): stretched to a wide column it ran taller than a
# screen (923 px at 1400 px, its text 22 px); it keeps at most this width
GRAPH_TALL_MAX_PX = 640
# a row of verdict cards wraps two to a row below this window width (with the sidebar open, a
# 1024 px projector gave four cards of ~130 px: one card ran two screens tall and
# "fastertransformer" shrank to 11 px; tried as a new user would)
CARDS_WRAP_PX = 1100
CHART_SLOTS_MIN_PX = 1000  # three trajectory panels: 1,055 px drawn (1,145 on a phone); see chart_slots
# a phone's column (a 375 px window less the page's margins)
PHONE_COLUMN_PX = 343
# a grid of charts two to a row (``.st-key-chart-grid``) wraps to one a row when two would be
# narrower than this each: at 1024 px the agents page's charts were 274 px, plots of ~180 px
# under a legend of four rows (tried as a new user would)
CHART_MIN_PX = 420

# (file, title, icon, url_path): app.py builds st.navigation from this list
PAGES = [
    ("pages/single_engine.py", "Single engine", ":material/memory:", ""),
    ("pages/compare.py", "Compare", ":material/compare_arrows:", "compare"),
    ("pages/capacity.py", "Capacity", ":material/speed:", "capacity"),
    ("pages/timeline.py", "Timeline", ":material/view_timeline:", "timeline"),
    ("pages/agents.py", "Agents", ":material/account_tree:", "agents"),
    ("pages/sweep.py", "Stability map", ":material/grid_on:", "sweep"),
    ("pages/model.py", "The model", ":material/school:", "model"),
]

# (on a wide screen the main column's top padding is 5rem: Streamlit's 128 px under its 60 px top
# navigation left an empty band of ~100 px above every page's title; tried as a new user would)
_CSS = f"""
<style>
@media (min-width: {PHONE_PX + 1}px) {{ .st-key-phone-nav, .st-key-phone-nav-inputs, .st-key-phone-replay, .st-key-phone-setup {{ display: none; }} }}
.st-key-phone-nav {{ gap: 0.1rem; }}
@media (min-width: {PHONE_PX + 1}px) {{ [data-testid="stMainBlockContainer"] {{ padding-top: 5rem; }} }}
.st-key-run-slot {{ min-height: 2.5rem; }}
.st-key-chart-slots {{ min-height: {CHART_SLOTS_MIN_PX}px; }}
[data-testid="stLayoutWrapper"]:has(> .st-key-cards), .st-key-cards {{ overflow-anchor: none; }}
[data-testid="stMetricValue"] > div {{ white-space: normal; overflow: visible; text-overflow: clip; }}
[data-testid="stMetricLabel"] p {{ white-space: normal; }}
@media (min-width: {PHONE_PX + 1}px) {{ .st-key-graph-hint {{ display: none; }} }}
.st-key-graph-wide {{ container-type: inline-size; }}
.st-key-graph-hint-wide {{ display: none; }}
[class*="st-key-tbl-"]:not([class*="st-key-tbl-hint-"]) {{ container-type: inline-size; }}
[class*="st-key-tbl-hint-"] {{ display: none; }}
.st-key-graph-wide [data-testid="stGraphVizChart"] {{ overflow-x: auto; }}
@media (min-width: {PHONE_PX + 1}px) and (max-width: {CARDS_WRAP_PX}px) {{
  .st-key-cards [data-testid="stHorizontalBlock"] {{ flex-wrap: wrap; row-gap: 1.5rem; }}
  .st-key-cards [data-testid="stHorizontalBlock"] > [data-testid="stColumn"] {{
    flex: 1 1 calc(50% - 1rem) !important; min-width: calc(50% - 1rem) !important; }}
}}
.st-key-chart-grid [data-testid="stHorizontalBlock"] {{ flex-wrap: wrap; }}
.st-key-chart-grid [data-testid="stHorizontalBlock"] > [data-testid="stColumn"] {{
  flex: 1 1 {CHART_MIN_PX}px !important; min-width: min({CHART_MIN_PX}px, 100%) !important; }}
.st-key-graph [data-testid="stGraphVizChart"] > svg {{ max-width: {GRAPH_TALL_MAX_PX}px; height: auto; }}
.st-key-cards [data-testid="stColumn"] [data-testid="stCaptionContainer"] {{ color: inherit; }}
.katex-display {{ overflow-x: auto; overflow-y: hidden; }}
.st-key-graph-wide [data-testid="stGraphVizChart"] > svg {{ max-width: none !important; height: auto; }}
.st-key-graph-wide [data-testid="stGraphVizChart"]::-webkit-scrollbar {{ height: 8px; }}
.st-key-graph-wide [data-testid="stGraphVizChart"]::-webkit-scrollbar-thumb {{ background: #888; border-radius: 4px; }}
@media (max-width: {PHONE_PX}px) {{
  .st-key-graph [data-testid="stGraphVizChart"] {{ overflow-x: auto; }}
  .st-key-graph [data-testid="stGraphVizChart"] > svg {{ min-width: {GRAPH_MIN_PX}px; height: auto; }}
  .st-key-graph [data-testid="stGraphVizChart"]::-webkit-scrollbar {{ height: 8px; }}
  .st-key-graph [data-testid="stGraphVizChart"]::-webkit-scrollbar-thumb {{ background: #888; border-radius: 4px; }}
}}
</style>
"""


def style() -> None:
    st.html(_CSS)


def card_columns(n: int, heading: str, help: str | None = None, caption: str | None = None) -> list:
    """The columns of a page's row of verdict cards (one row per page), under their heading:
    side by side on a wide screen, two to a row below CARDS_WRAP_PX, stacked on a phone. Their
    captions (the verdict's sentence) are in the body's colour: in a caption's grey, about 4.2:1
    on white, the one sentence that explains the verdict washed out on a projector (tried as a
    new user would).

    The heading and the cards (their container and its wrapper) are no scroll anchor for the
    browser (_CSS): when a run ends they grow by up to ~1,900 px, and a visitor scrolled to the
    charts under them, a strip of "running" cards at the top of the window, saw the charts
    pushed off the screen (tried as a new user would). The browser now keeps in place the first
    thing in view after them (the charts); with anything above them in view (the run's button,
    the page's top), that stays in place and the cards grow downward. (Excluded only while a
    card waited for its verdict, the browser picked its anchor again as the last card filled
    in, and the charts moved.)"""
    with st.container(key="cards"):
        st.subheader(heading, help=help)
        if caption:
            st.caption(caption)
        return st.columns(max(1, n))


def chart_slots(n: int) -> list:
    """The places of a page's trajectory panels, in a container that keeps about their height
    while they are redrawn: a script run empties them at its start, and on a phone a Replay live
    pressed beside the charts (scrolled to them) once left the page ~1,100 px shorter for a
    moment, the browser moved the scroll position up, and the charts and the button ended off
    the screen (a new-user pass, 1 of 5 tries)."""
    with st.container(key="chart-slots"):
        return [st.empty() for _ in range(n)]


def graph(dot: str, wide: bool, width_px: int = 0, what: str = "the drawing") -> None:
    """A network drawing and the hint under it that it scrolls sideways (a phone's scrollbars
    stay hidden until touched: only the first engine showed, and nothing said there was more;
    tried as a new user would). `wide` (engines side by side): drawn at its own size, about
    `width_px` wide, scrolling in a narrower column, its hint shown while the column is narrower
    (a container query: the column's width, sidebar open or not). Otherwise (one engine's steps)
    at most GRAPH_TALL_MAX_PX wide, GRAPH_MIN_PX on a phone, its hint shown on a phone."""
    with st.container(key="graph-wide" if wide else "graph"):
        st.graphviz_chart(dot, width="content" if wide else "stretch")
        if wide:
            _scroll_hint("graph-hint-wide", round(width_px * HINT_MARGIN), what)
    if not wide:
        with st.container(key="graph-hint"):
            st.caption(f"↔ Swipe {what} sideways to see all of it.")


TABLE_ROWS_MEASURED = 500  # a table's first rows measured for its width (a map's data: 40,000 rows)


def table_px(df, index: bool) -> int:
    """About how wide Streamlit's data grid draws `df` (and its index, if shown): each column as
    wide as its header or its longest cell (of the first TABLE_ROWS_MEASURED rows) at ~7 px a
    character, plus 16 px, at least 50 px (the grid's sizes at 375 px: "fastertransformer"
    119 px, "164 ms" 57 px)."""
    df = df.head(TABLE_ROWS_MEASURED)
    cols = [(df.index.name or "", df.index)] if index else []
    cols += [(str(c), df[c]) for c in df.columns]
    width = 0
    for head, values in cols:
        chars = max([len(head)] + [len(str(v)) for v in values])
        width += max(50, 7 * chars + 16)
    return width


def table(df, key: str, *, hide_index: bool, **kwargs) -> None:
    """A data table across the column, and under it a hint that it scrolls sideways, shown while
    the column is narrower than the table (``table_px``; a container query: the column's width,
    sidebar open or not). A table wider than its column scrolls, and a phone hides the scrollbar
    until touched: the latency table's fourth scheduler was out of sight on a phone, and the
    capacity table's last two columns at 1024 px, with nothing saying so (tried as a new user
    would). `key` names the table's containers (unique on the page)."""
    with st.container(key=f"tbl-{key}"):
        st.dataframe(df, hide_index=hide_index, width="stretch", **kwargs)
        _scroll_hint(f"tbl-hint-{key}", table_px(df, not hide_index), "the table")


def _scroll_hint(key: str, width_px: int, what: str) -> None:
    """A caption (container `key`, hidden by the page's CSS) that something `width_px` wide
    scrolls sideways, shown while the enclosing container (a CSS size container) is narrower."""
    st.html(f"<style>@container (max-width: {width_px}px) {{ .st-key-{key} {{ display: flex; }} }}</style>")
    with st.container(key=key):
        st.caption(f"↔ Scroll {what} sideways (swipe it on a phone) to see all of it.")


NO_SIDEBAR = ("model",)  # pages (url paths) whose inputs are on the page itself


def links(url_path: str = "") -> None:
    """The page links for a phone (hidden on wider screens), and on a page with inputs in the
    sidebar, a line saying where they are: a phone folds the sidebar away behind », and nothing
    on the page said so (tried as a new user would)."""
    with st.container(key="phone-nav", horizontal=True):
        for path, title, icon, _ in PAGES:
            st.page_link(path, label=title, icon=icon)
    if url_path not in NO_SIDEBAR:
        with st.container(key="phone-nav-inputs"):
            st.caption("This page's inputs are in the sidebar: open it with » at the top left.")
            # filled by the page once it knows (inputs.setup_button): drawn here, at the top, the
            # line about the setup offer sat under the page's introduction
            st.session_state[OFFER_SLOT] = st.empty()
    else:
        st.session_state.pop(OFFER_SLOT, None)


OFFER_SLOT = "llmsim.phone_offer_slot"  # session key: this script run's place for that line


def offer_slot():
    """The place at the top of the page, under the line saying the inputs are in the sidebar,
    for a line a phone needs about them (None on a page without it)."""
    return st.session_state.get(OFFER_SLOT)
