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
- tunes the C allocator so that memory freed by finished runs goes back to the system
  (``allocator``, on glibc): at most ``ARENAS`` malloc arenas, and a thread (``trimmer``)
  that returns the free pages every ``LLMSIM_MEMORY_TRIM_S`` seconds (default 30; 0: never; else 1 to 86,400);
- when the server stops (Ctrl-C, SIGTERM: uvicorn shuts down, then exits by the signal,
  code 130 or 143), stops a compile process that still runs and the long jobs' worker
  processes (``jobs.shutdown``).

``HideMetrics`` (its middleware) keeps Streamlit's public metrics endpoint to itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
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


# glibc's mallopt parameter (malloc.h) and the server's setting
M_ARENA_MAX = -8
ARENAS = 2
TRIM_EVERY_S = 30.0
# the preload imports Altair this long after a first frame has been sent (the browser draws it
# 1-1.5 s later on two cores), or ALTAIR_AFTER_S after the start if no visitor came
ALTAIR_AFTER_FRAME_S = 2.0
ALTAIR_AFTER_S = 20.0


def _glibc():
    """The process's C library if it is glibc (whose allocator this tunes), else None."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version, libc.mallopt, libc.malloc_trim  # glibc's names
        return libc
    except (OSError, AttributeError):
        return None


def trim_every_s() -> float:
    """LLMSIM_MEMORY_TRIM_S: seconds between two returns of free memory (0: never)."""
    raw = os.environ.get("LLMSIM_MEMORY_TRIM_S", "").strip()
    allowed = "allowed: 0 (never) or seconds between 1 and 86,400"
    if not raw:
        return TRIM_EVERY_S
    from llmsim_ui.markdown import shown
    try:
        every = float(raw)
    except ValueError:
        raise ValueError(f"LLMSIM_MEMORY_TRIM_S = {shown(raw)} is not a number; {allowed}") from None
    if not (every == 0 or 1 <= every <= 86_400):  # below 1 s the trim thread would spin
        raise ValueError(f"LLMSIM_MEMORY_TRIM_S = {shown(raw)}; {allowed}")
    return every


def allocator(every_s: float) -> str:
    """Make the memory finished runs free go back to the system; returns what it did.

    Without it the server's resident memory stayed at its high-water mark: 1,485 MiB after
    a hostile visitor's runs had all ended, against 345 MiB at start. glibc's malloc keeps
    freed memory for reuse: arrays up to 32 MiB come from its heaps once a larger one was
    freed (its mmap threshold grows), each thread that allocates gets a heap of its own (up
    to 8 per core), and a heap gives back only its top. So: at most ``ARENAS`` heaps (the
    host's MALLOC_ARENA_MAX wins), and ``malloc_trim(0)`` every ``every_s`` seconds, which
    returns every free page of every heap (8 ms for 220 MiB here, 0.25 ms with nothing to
    return; the kernel does not allocate while it runs, so it waits on no lock of it).
    A fixed mmap threshold (every large array its own mapping) returned as much but made
    the dashboard's runs ~25% slower: each fresh mapping faults its pages in again."""
    libc = _glibc()
    if libc is None:
        return "allocator left as it is (not glibc)"
    done = []
    if not os.environ.get("MALLOC_ARENA_MAX") and libc.mallopt(M_ARENA_MAX, ARENAS) == 1:
        done.append(f"{ARENAS} malloc arenas")
    if every_s > 0:
        threading.Thread(target=trimmer, args=(libc, every_s), name="llmsim-trim", daemon=True).start()
        done.append(f"free memory returned every {every_s:g} s")
    return ", ".join(done) or "allocator left as it is"


def trimmer(libc, every_s: float) -> None:
    while True:
        time.sleep(every_s)
        libc.malloc_trim(0)


def refuse_to_start(problem: str) -> None:
    """A bad setting in the environment: say which and stop the server (SIGTERM, uvicorn's
    graceful stop), as the server starts rather than at a visitor's first page."""
    print(f"llmsim: {problem}. The server stops.", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


def middleware() -> list:
    """The middleware app.py's st.App adds to Streamlit's server."""
    from starlette.middleware import Middleware
    return [Middleware(HideMetrics)]


@contextlib.asynccontextmanager
async def lifespan(app):
    blas_threads()
    try:
        every = trim_every_s()
    except ValueError as exc:
        refuse_to_start(str(exc))
        every = 0.0
    tuned = allocator(every)
    from llmsim_ui import upload_guard
    guarded = upload_guard.install()
    if os.environ.get("LLMSIM_UI_TIMING"):  # bench/bench_ui.py and tests/test_health.py read this
        print(f"[llmsim-ui server start @{time.time():.3f}] upload guard {'installed' if guarded else 'NOT installed'}; "
              f"{tuned}", file=sys.stderr, flush=True)
    threading.Thread(target=preload, name="llmsim-preload", daemon=True).start()
    try:
        yield
    finally:  # the server stops (Ctrl-C, SIGTERM): a compile still running stops with it
        from llmsim import _kernel_cache
        if _kernel_cache.stop_precompile() and os.environ.get("LLMSIM_UI_TIMING"):
            print("[llmsim-ui server stop] compile process stopped", file=sys.stderr, flush=True)
        from llmsim_ui import jobs  # and so do the long jobs' worker processes
        if jobs.shutdown(wait=False) and os.environ.get("LLMSIM_UI_TIMING"):
            print("[llmsim-ui server stop] worker processes stopped", file=sys.stderr, flush=True)


def preload() -> None:
    """Start the compile (cold cache), check the server's settings (a bad one stops the
    server), import the first page's modules and load the kernel (warm cache). Whatever
    else fails here is left to the page, which does the same and says why."""
    try:
        from llmsim import _kernel_cache
        cold = _kernel_cache.precompile()
        import llmsim
        from llmsim.errors import ConfigError
        try:
            from llmsim_ui import runs  # reads LLMSIM_DEMO_LIMITS and LLMSIM_SERVER_MEMORY_MIB
        except ConfigError as exc:
            refuse_to_start(str(exc))
            return
        runs.timing("preload: compile process started" if cold else "preload: starts")
        import pandas  # noqa: F401
        import scipy.optimize  # noqa: F401  (the theory's linear programs)
        import scipy.sparse  # noqa: F401  (the configuration's routing checks)
        from llmsim_ui import charts, controls, inputs, palette, widgets  # noqa: F401
        runs.timing("preload: imported")
        if not cold:  # a warm cache: load the kernels (a cold one is compiled by the child process)
            for sim in _kernel_cache.tiny_runs():
                sim.advance()
            runs.timing("preload: kernel loaded")
        # Altair builds the charts drawn when a run ends (the trajectories with their hover
        # layer, the latencies): its import, 0.3-0.45 s, was the first run's end's to wait for.
        # Imported while the first run plays, once its first frame is drawn in the browser:
        # holding the GIL for that long right after the frame was sent delayed the frame itself
        # (the server's event loop sends it), by ~0.3 s (bench/README.md, Round 16)
        if runs.first_frame_drawn.wait(ALTAIR_AFTER_S):
            time.sleep(ALTAIR_AFTER_FRAME_S)
        import altair  # noqa: F401
        runs.timing("preload: altair imported")
    except Exception:  # the first page imports and loads the same, and shows what fails
        pass
