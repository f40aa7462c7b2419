"""llmsim dashboard: does an LLM serving engine, or a network of LLM agents, keep up?

Run with ``streamlit run app.py``. This file only wires the pages; each page in pages/
answers one question, and the shared UI code is in llmsim_ui/.

``streamlit run`` reads this file twice over: it imports it once to find the server it
serves (``app``, below: Streamlit's own server with what it does once at its start, see
llmsim_ui/server_start.py), and every page view runs it as the page script, with
``__name__ == "__main__"`` (``main``).
"""

import os
import sys
import time

import streamlit as st


def main() -> None:
    """The page script: wire the pages and run the one the visitor asked for."""
    if os.environ.get("LLMSIM_UI_TIMING"):  # bench/bench_ui.py: when the script started, before its imports
        print(f"[llmsim-ui    0.00 s @{time.time():.3f} cpu {time.process_time():.2f}] app.py script starts",
              file=sys.stderr, flush=True)

    # one BLAS thread per server process, before NumPy is first imported (see there; the
    # server's start has set it already, AppTest has not)
    from llmsim_ui import server_start
    server_start.blas_threads()

    # a cold Numba cache: start compiling the kernel in a child process now, before the UI's
    # imports, so it runs on the other core while this process imports and draws the first
    # page (once per process: the server's start has usually started it already)
    from llmsim import _kernel_cache
    _kernel_cache.precompile()

    from llmsim import budget
    from llmsim_ui import entry, runs

    runs.timing("app.py starts")
    # the kernel is loaded (or, on a cold cache, waited for) by the first page that runs a
    # simulation, once it has drawn its inputs: see runs.warm_up

    # an emoji favicon is drawn locally; a Material-icon favicon would be fetched from fonts.gstatic.com
    st.set_page_config(page_title="llmsim — does it keep up?", page_icon="📈", layout="wide")

    from llmsim_ui import upload_guard
    upload_guard.install()  # bounds the files Streamlit's upload endpoint keeps (done at the server's start)

    from llmsim_ui import phone_nav

    pages = [
        # url_path = file name, as the legacy pages/ scheme would have it (see llmsim_ui/entry.py)
        st.Page(path, title=title, icon=icon, **({"url_path": url} if url else {"default": True}))
        for path, title, icon, url in phone_nav.PAGES
    ]
    page = st.navigation(pages, position="top")

    phone_nav.style()
    phone_nav.links(page.url_path)  # every page's links at its top on a phone (hidden on wider screens)
    entry.enter()
    runs.pause_other_pages(page.url_path)  # a run left behind by a page switch stops (and may give its memory up)
    try:
        # every run a page makes (llmsim.simulate, capacity and sweep runs included) is under the
        # demo limits; the context variable is this script run's own, reset when the page ends
        with budget.use(runs.LIMITS):
            page.run()
    finally:
        entry.leave()


if __name__ == "__main__":
    main()
else:  # imported by `streamlit run app.py`: the server it serves
    from llmsim_ui import server_start
    app = st.App(__file__, lifespan=server_start.lifespan, middleware=server_start.middleware())
