"""Text from outside (a file's description, a message echoing a value from a file or a
link) shown in Streamlit, which renders Markdown: links, images, `:material/…:` icons,
`$…$` LaTeX, even bare URLs (auto-linked). ``plain`` makes such text show as typed."""

from __future__ import annotations

import re

# CommonMark lets a backslash escape any ASCII punctuation (links, images, emphasis, and
# Streamlit's :icon: and :colour[…]: directives). GitHub-style autolinks (https://…, www.…,
# name@host) look through escapes (seen in Chromium: an escaped URL still became a link),
# so a zero-width space breaks them: the text reads the same, nothing is clickable.
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")
_AUTOLINK = re.compile(r"(?i)(://|www\.|@)")
ZWSP = "\u200b"


def _break(m) -> str:
    s = m.group(0)
    return ZWSP + s if s == "@" else s[0] + ZWSP + s[1:]


SHOWN_CHARS = 40  # of a value from outside echoed in a message (a 200 kB link value came back as 700 kB)


def shown(value) -> str:
    """repr of a value a visitor typed or linked (or a host set), cut to SHOWN_CHARS characters."""
    text = str(value)
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…")


def plain(text) -> str:
    """text, shown literally by st.markdown / st.caption / st.error and friends."""
    return _PUNCT.sub(r"\\\1", _AUTOLINK.sub(_break, str(text)))
