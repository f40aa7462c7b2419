"""One colour per scheduler, per policy and per verdict, used by every page.

Colours come from the Okabe-Ito palette (distinguishable with the common forms of
colour blindness). Scheduler and policy colours deliberately avoid meaning "good" or
"bad": the verdict badges carry that, in their own colours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from llmsim import SCHEDULERS

if TYPE_CHECKING:
    import altair as alt

_OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

SCHEDULER_COLORS: dict[str, str] = {
    "fastertransformer": "#D55E00",  # vermillion
    "vllm": "#E69F00",               # orange
    "orca": "#0072B2",               # blue
    "sarathi": "#009E73",            # bluish green
}
# schedulers added to the library later get the remaining colours, in registry order
for _name, _colour in zip([s for s in SCHEDULERS if s not in SCHEDULER_COLORS],
                          ["#CC79A7", "#56B4E9", "#F0E442", "#000000"]):
    SCHEDULER_COLORS[_name] = _colour

_CATEGORICAL = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000",
                "#882255", "#44AA99", "#332288", "#999999", "#117733", "#DDCC77", "#F0E442"]  # see categorical()
NEUTRAL = "#5A6270"  # a card's square where colours mean something else on the page (agents: buffers)

# st.badge colour names
VERDICT_BADGE: dict[str, tuple[str, str]] = {
    "stable": ("green", ":material/check_circle:"),
    "unstable": ("red", ":material/trending_up:"),
    "inconclusive": ("orange", ":material/help:"),
    "stopped": ("gray", ":material/pause_circle:"),
    "running": ("blue", ":material/hourglass_top:"),
    "error": ("red", ":material/error:"),
}

THEORY_COLOR = "#555555"


class Colours(NamedTuple):
    """A colour scale as two lists, as ``alt.Scale`` has them (``domain``, ``range``): what
    the trajectory charts need, without importing Altair."""
    domain: list
    range: list


def colours(names, mapping: dict[str, str]) -> Colours:
    """Each present name with its fixed colour (names without one get the spare colours)."""
    names = list(dict.fromkeys(names))
    extra = iter(_OKABE_ITO[::-1])
    return Colours(names, [mapping.get(n) or next(extra, "#888888") for n in names])


def scale(names, mapping: dict[str, str]) -> alt.Scale:
    """An Altair colour scale giving each present name its fixed colour."""
    import altair as alt
    c = colours(names, mapping)
    return alt.Scale(domain=c.domain, range=c.range)


def categorical(names) -> alt.Scale:
    """Colours for names without a fixed mapping (workflow buffers), in order: the first four
    far apart in hue (Okabe-Ito's orange second, beside its vermilion fourth, read as one colour
    in a busy chart of cyclic's four buffers; tried as a new user would), yellow last (faint on
    white)."""
    import altair as alt
    names = list(dict.fromkeys(names))
    pal = _CATEGORICAL
    return alt.Scale(domain=names, range=[pal[i % len(pal)] for i in range(len(names))])
