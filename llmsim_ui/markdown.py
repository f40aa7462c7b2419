"""Text from outside (a file's description, a message echoing a value from a file or a
link) shown in Streamlit, which renders Markdown: links, images, `:material/…:` icons,
`$…$` LaTeX, even bare URLs (auto-linked). ``plain`` makes such text show as typed."""

from __future__ import annotations

import re

# CommonMark lets a backslash escape any ASCII punctuation; escaping ':' and '.' also stops
# GitHub-style autolinks (https://…, www.…) and Streamlit's :icon: and :colour[…]: directives
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text) -> str:
    """text, shown literally by st.markdown / st.caption / st.error and friends."""
    return _PUNCT.sub(r"\\\1", str(text))
