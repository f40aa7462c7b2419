"""llmsim dashboard: does an LLM serving engine, or a network of LLM agents, keep up?

Run with ``streamlit run app.py``. This file only wires the pages; each page in pages/
answers one question, and the shared UI code is in llmsim_ui/.
"""

import os
import sys
import time

if os.environ.get("LLMSIM_UI_TIMING"):  # bench/bench_ui.py: when the script started, before its imports
    print(f"[llmsim-ui    0.00 s @{time.time():.3f} cpu {time.process_time():.2f}] app.py script starts",
          file=sys.stderr, flush=True)

# One BLAS thread per server process, set before numpy is first imported (Streamlit itself
# does not import it): a server runs many sessions at once, and OpenBLAS's spinning worker
# threads on a busy 2-core machine turned vllm's 0.4 s theory (a least-squares solve in a
# loop) into 20 s and more.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# a cold Numba cache: start compiling the kernel in a child process now, before the UI's
# imports, so it runs on the other core while this process imports and draws the first page
from llmsim import _kernel_cache  # noqa: E402

_kernel_cache.precompile()

import streamlit as st  # noqa: E402

from llmsim import budget  # noqa: E402
from llmsim_ui import entry, runs  # noqa: E402

runs.timing("app.py starts")
# the kernel is loaded (or, on a cold cache, waited for) by the first page that runs a
# simulation, once it has drawn its inputs: see runs.warm_up

# an emoji favicon is drawn locally; a Material-icon favicon would be fetched from fonts.gstatic.com
st.set_page_config(page_title="llmsim — does it keep up?", page_icon="📈", layout="wide")

from llmsim_ui import upload_guard  # noqa: E402

upload_guard.install()  # bounds the files Streamlit's upload endpoint keeps (once per server process)

from llmsim_ui import phone_nav  # noqa: E402

pages = [
    # url_path = file name, as the legacy pages/ scheme would have it (see llmsim_ui/entry.py)
    st.Page(path, title=title, icon=icon, **({"url_path": url} if url else {"default": True}))
    for path, title, icon, url in phone_nav.PAGES
]
page = st.navigation(pages, position="top")

phone_nav.style()
phone_nav.links()  # every page's links at its top on a phone (hidden on wider screens)
entry.enter()
runs.pause_other_pages(page.url_path)  # a run left behind by a page switch stops (and may give its memory up)
try:
    # every run a page makes (llmsim.simulate, capacity and sweep runs included) is under the
    # demo limits; the context variable is this script run's own, reset when the page ends
    with budget.use(runs.LIMITS):
        page.run()
finally:
    entry.leave()
