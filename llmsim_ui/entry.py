"""Every page runs through app.py.

Streamlit decides once per server process whether the app uses the legacy ``pages/``
directory: until some script has called ``st.navigation``, a ``pages/`` folder next to
the entry point makes a session's script run a page file directly (without app.py's page
config, warm-up and navigation) when it opens a deep link such as ``/capacity`` -- and
since app.py then never runs, it stays that way. A page that finds it was not started by
app.py switches the process to the navigation API (the flag ``st.navigation`` itself
clears) and asks for a rerun, which goes through app.py and lands on the same page
(its url_path is its file name, as in the legacy scheme).
"""

import streamlit as st

_FLAG = "_llmsim_entry"


def enter() -> None:
    """Called by app.py just before it runs the selected page."""
    st.session_state[_FLAG] = True


def leave() -> None:
    st.session_state[_FLAG] = False


def require_app() -> None:
    """Called first by every page: rerun through app.py if it did not start this run."""
    if not st.session_state.get(_FLAG):
        try:
            from streamlit.runtime.pages_manager import PagesManager
            PagesManager.uses_pages_directory = False
        except ImportError:  # a future Streamlit without the legacy switch
            pass
        st.rerun()
