"""What the server does once, as it starts, before any visitor's page runs.

``streamlit run app.py`` finds ``app = st.App(...)`` in app.py and serves it (Streamlit's
own server, Starlette and uvicorn), with ``lifespan`` below run once when the server
starts; every page view still runs app.py as the page script. Without it nothing of app.py
ran before a browser session did: the imports, the compile of a cold Numba cache and the
load of a warm one all waited for the first visitor's browser to load Streamlit's page
(about a second here). ``lifespan``

- installs the upload guard (``upload_guard.install``), so that the bounds on uploaded
  files hold from the server's first request, not from its first page view;
- starts a thread (``preload``) that starts the compile process on a cold Numba cache and
  imports what the first page needs (llmsim, NumPy, pandas, SciPy's LP solver, the UI
  modules) and, on a warm cache, loads the compiled kernel: the first page view finds them
  done instead of doing them;
- when the server stops (Ctrl-C, SIGTERM: uvicorn shuts down, then exits by the signal,
  code 130 or 143), stops a compile process that still runs.

``HideMetrics`` (its middleware) keeps Streamlit's public metrics endpoint to itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time


def blas_threads() -> None:
    """One BLAS thread per server process, set before NumPy is first imported (Streamlit
    itself does not import it): a server runs many sessions at once, and OpenBLAS's spinning
    worker threads on a busy 2-core machine turned vllm's 0.4 s theory (a least-squares
    solve in a loop) into 20 s and more."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


class HideMetrics:
    """ASGI middleware: ``/_stcore/metrics`` answers 404. Streamlit serves it to anyone, with
    no setting to turn it off: the cache functions' names and hit counts and the bytes of
    uploaded files (a hostile visitor watched that figure to keep the upload store exactly
    full). A host that wants it sets LLMSIM_PUBLIC_METRICS=1."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path", "").rstrip("/").endswith("/_stcore/metrics") \
                and os.environ.get("LLMSIM_PUBLIC_METRICS") != "1":
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"Not Found"})
            return
        await self.app(scope, receive, send)


def middleware() -> list:
    """The middleware app.py's st.App adds to Streamlit's server."""
    from starlette.middleware import Middleware
    return [Middleware(HideMetrics)]


@contextlib.asynccontextmanager
async def lifespan(app):
    blas_threads()
    from llmsim_ui import upload_guard
    guarded = upload_guard.install()
    if os.environ.get("LLMSIM_UI_TIMING"):  # bench/bench_ui.py and tests/test_health.py read this
        print(f"[llmsim-ui server start @{time.time():.3f}] upload guard {'installed' if guarded else 'NOT installed'}",
              file=sys.stderr, flush=True)
    threading.Thread(target=preload, name="llmsim-preload", daemon=True).start()
    try:
        yield
    finally:  # the server stops (Ctrl-C, SIGTERM): a compile still running stops with it
        from llmsim import _kernel_cache
        if _kernel_cache.stop_precompile() and os.environ.get("LLMSIM_UI_TIMING"):
            print("[llmsim-ui server stop] compile process stopped", file=sys.stderr, flush=True)


def preload() -> None:
    """Start the compile (cold cache), import the first page's modules and load the kernel
    (warm cache). Whatever fails here is left to the page, which does the same and says why."""
    try:
        from llmsim import _kernel_cache
        cold = _kernel_cache.precompile()
        import llmsim
        from llmsim_ui import runs
        runs.timing("preload: compile process started" if cold else "preload: starts")
        import pandas  # noqa: F401
        import scipy.optimize  # noqa: F401  (the theory's linear programs)
        import scipy.sparse  # noqa: F401  (the configuration's routing checks)
        from llmsim_ui import charts, controls, inputs, palette, widgets  # noqa: F401
        runs.timing("preload: imported")
        if not cold:  # a warm cache: load the kernel (a cold one is compiled by the child process)
            llmsim.Simulation(llmsim.loads_scenario(_kernel_cache.TINY_SCENARIO)).advance()
            runs.timing("preload: kernel loaded")
    except Exception:  # the first page imports and loads the same, and shows what fails
        pass
