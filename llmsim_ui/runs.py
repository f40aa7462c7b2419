"""Running simulations for the UI: warm-up, bounded caches, and the chunked live runner.

- ``warm_up`` loads the numba kernel once per server process (``st.cache_resource``) by
  running a tiny scenario in a thread, started when a page first needs the kernel (after
  drawing its inputs); on a cold cache that thread waits for the compile process app.py
  started first thing. Every session after the first finds the kernel loaded. A live run
  does not wait for it: until the kernel is loaded, its chunks run the kernel's own source
  as plain Python (``llmsim._python_tier``: the same numbers, about 1,000 times slower), so
  a cold start draws its first trajectory while Numba compiles on the other core.
- Finished runs are cached in a ``ByteLRU`` (bounded by bytes, not entries: one run's
  trajectory can be 100 times another's) keyed on the scenario's TOML text (plus the
  digest of an uploaded trace, which the TOML names but does not contain), so a shared
  link or a second visitor gets the result at once.
- ``LiveRun`` advances several simulations together in chunks of simulated time, each
  chunk also bounded in kernel work; the page redraws after every chunk, so a long run
  never freezes the app and a Stop button (any widget, in fact) interrupts it between
  chunks. It lives in the page's session state, so an interrupted run resumes where it
  stopped.
- Across sessions, the runs in progress share ``SERVER_MEMORY_BYTES`` (the environment
  variable LLMSIM_SERVER_MEMORY_MIB, default 1,024 MiB) through a ``MemoryLedger``: a run
  reserves its estimated arrays before allocating them and, when they do not fit beside
  other visitors' runs, waits its turn (first come, first served) with a message saying so;
  it releases them when it finishes or is dropped (a new run, a closed session).
- Every run of the dashboard uses ``LIMITS``: ``llmsim.Limits.demo()``, or what the host
  set in the environment variable LLMSIM_DEMO_LIMITS (docs/ui.md, "Demo mode"). A run too
  big for them is refused before it allocates; one that spends its work budget stops
  with partial results and says so. The kernel releases the GIL, so one session's run
  never stalls another session or the server's health endpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pickle
import sys
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

import llmsim
from llmsim import ConfigError, Scenario, Simulation, _kernel_cache, _order, budget
from llmsim.budget import MiB, Limits
from llmsim.simulate import partial_verdict, result_with_verdict

from llmsim_ui import jobs

LIMITS = Limits.from_env()          # every dashboard run (see docs/ui.md, "Demo mode")
# the summary's selection is never compiled in the server (about 2 s holding the GIL: every
# session would stall); its compile process writes it to the cache, numpy selects until then
_order.compile_here = False
# the capacity page makes up to 2 x 16 runs per scheduler: each gets 1/8 of a run's work
PROBE_LIMITS = dataclasses.replace(LIMITS, max_work=None if LIMITS.max_work is None else LIMITS.max_work / 8)
# a stability map's work, shared equally by its points: the same total as the capacity page's
# largest search (4 schedulers x 32 runs x max_work / 8). Each point had a whole run's
# max_work, so a 600-point map of work-bound points held a worker core for 30 minutes and more.
MAP_WORK = None if LIMITS.max_work is None else 16 * LIMITS.max_work


def map_limits(points: int) -> Limits:
    """The limits of each point of a stability map of `points` points: MAP_WORK / points
    kernel work units (never more than a single run's max_work). A point sure to need more is
    refused up front (a grey cell saying so); one that reaches it stops inconclusive."""
    if MAP_WORK is None:
        return LIMITS
    return dataclasses.replace(LIMITS, max_work=min(LIMITS.max_work, MAP_WORK / max(1, points)))


def _server_memory_bytes(var: str = "LLMSIM_SERVER_MEMORY_MIB", default_mib: int = 1024) -> int:
    """The estimated bytes of run arrays all sessions together may hold (see MemoryLedger)."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default_mib * MiB
    from llmsim_ui.markdown import shown
    try:
        mib = float(raw)
    except ValueError:
        raise ConfigError(f"{var} = {shown(raw)} is not a number; allowed: MiB between 64 and 1,048,576") from None
    if not 64 <= mib <= 1 << 20:
        raise ConfigError(f"{var} = {shown(raw)}; allowed: MiB between 64 and 1,048,576")
    return int(mib * MiB)


SERVER_MEMORY_BYTES = _server_memory_bytes()
# long jobs (a stability map, a capacity page's curves and searches, the Model page's boundary
# search) running at once, server wide: each keeps a core busy for up to minutes, and the memory
# cap did not queue them (a map holds only its largest point's memory), so one visitor's eight
# map tabs ran eight at once. Live runs do not take one. Each slot's job runs in one of the
# server's worker processes (llmsim_ui/jobs.py), never in the server's own.
BATCH_SLOTS = jobs.SLOTS
WAIT_POLL_S = 0.5                   # a run waiting for memory asks again this often
MAX_WAIT_S = 120.0                  # ... and gives up after this long, saying why
RUN_CACHE_BYTES = 192 * MiB         # finished runs kept for every session (trajectories)
REMEMBERED_BYTES = 32 * MiB         # other results kept (capacity searches)
CHUNK_WORK = 2 * LIMITS.slice_work  # kernel work units per live chunk (demo: ~0.05-0.1 s of CPU)
# the Python tier (a cold start), per run: at most PY_CHUNK_WORK work units per chunk, fewer
# (down to 20) when a chunk took longer than PY_CHUNK_S -- a work unit does not count the
# loops over a batch's decoders, which compiled cost little and in Python ~0.2 us per decoder
# (8,192-request batches: 2,000 units took 1.8 s)
PY_CHUNK_WORK = 2_000
PY_CHUNK_S = 0.05
PY_RUN_WORK = 100_000     # a small run (timeline page) in the Python tier, in chunks of PY_CHUNK_WORK
PY_RUN_S = 3.0            # ... and for at most this many seconds; then it waits for the compile
TARGET_FRAMES = 30        # chart updates over one run when computing is fast
FRAME_COMPUTE_S = 0.12    # wall seconds of computing per chunk we aim for on slow runs
MIN_FRAME_S = 0.1         # pace of the animation: at most ~10 chart updates per second
# in the Python tier (a cold start): at most 2 chart updates per second, so the Python chunks,
# the redraws and the browser leave most of the two cores to the compile that ends it
MIN_FRAME_PYTHON_S = 0.5
# ... and a pause after its first chart update: the browser draws a widget or metric only once
# its lazily loaded code is in, as a low-priority render that a stream of chart updates keeps
# postponing (on a slow 2-core machine the sidebar's inputs and the theory figures stayed grey
# placeholders for the whole 40 s the Python tier played, and appeared ~2 s into a pause)
FIRST_PYTHON_PAUSE_S = 2.0
# The compiled kernel's ten chart updates a second do the same on a page's first run in a
# session: opened on a warm server, the single-engine page's sidebar inputs and theory figures
# stayed grey placeholders for the whole live run (5.4-6.0 s after the page opened) while the
# first trajectory was drawn at 2.3-2.6 s; with this pause after the first chart update they
# are drawn at 1.8-2.1 s, the first trajectory at 2.1-2.3 s and the run ends ~0.9 s later
# (a pause of 0.5 or 0.8 s was too short here). Once per page and session: later runs find
# the widgets drawn.
FIRST_PAINT_PAUSE_S = 1.5



def _compile() -> float:
    """Compile (or load) both kernels (the general one and the single-engine one) by running
    a tiny scenario chunked with each, as the pages do; the general one only while the
    compile process has not yet written the single-engine one (``_load_single`` loads it
    then). Returns the seconds it took."""
    t0 = time.perf_counter()
    for sim in _kernel_cache.tiny_runs(LIMITS):
        sim.advance(1.0)
        sim.advance()
    timing("kernel loaded")
    llmsim.verdict(sim.result())
    spent = time.perf_counter() - t0
    timing(f"numba warm-up {spent:.2f} s")
    return spent


@st.cache_resource(show_spinner=False)
def _warm_up_thread():
    """Once per server process, a thread that loads the kernel (sessions arriving
    meanwhile wait for the same thread). Started by the first page that needs the kernel,
    not earlier: loading it from Numba's cache is ~0.2 s of CPU but hundreds of short calls
    into LLVM that release the GIL, and each waits up to a switch interval (5 ms) for it
    while a page draws in the script thread: beside the drawing page the load took 0.4 to
    0.6 s (up to 1.4 s beside a busy thread) and slowed the page's first draw."""
    result: dict = {}

    def work():
        try:
            # a cold Numba cache: compile in a child process (app.py may have started it
            # already), which leaves this process's GIL to the page; then load from the cache
            if _kernel_cache.precompile():
                if _kernel_cache.wait_precompile():
                    timing("compile process: general kernel written")
                    threading.Thread(target=_load_single, name="llmsim-single-load", daemon=True).start()
                else:  # it died or was stopped: this process loads the general kernel, or compiles it
                    timing("compile process ended before its general kernel's line")
            result["seconds"] = _compile()
        except BaseException as exc:  # reported to the page that waits for it
            result["error"] = exc

    th = threading.Thread(target=work, name="llmsim-warm-up", daemon=True)
    th.start()
    return th, result


def _load_single() -> None:
    """On a cold start, once the compile process has written the single-engine kernel (~6 s
    after the general one): load it, then let runs take it (``_kernel_cache.single_ready``).
    Until then they run on the general kernel, which computes the same: a fresh server's first
    run went compiled at 15-18 s instead of 25-26 s here (bench/README.md, Round 30). If the
    process ends without writing it, or it cannot be loaded, runs stay on the general kernel
    (compiling it here instead held Numba's compiler for ~9 s, and the page's warm-up, which
    loads the general kernel, waited for it: found as a hostile visitor would); the next server
    start compiles it."""
    try:
        if not _kernel_cache.wait_precompile(_kernel_cache.SINGLE_READY):
            timing("compile process ended before it wrote the single-engine kernel; runs keep the general one")
            return
        _kernel_cache.warm_single()
    except Exception as exc:  # noqa: BLE001 - the general kernel serves every run
        timing(f"single-engine kernel not loaded: {exc!r}")
        return
    _kernel_cache.single_loaded()
    timing("single-engine kernel loaded")


def warm_up(wait: bool = True) -> float | None:
    """Wait for the compile (with a spinner if it is still running); call before the
    first simulation of a script run. Returns the seconds the compile took. With
    wait=False only start it (a live run goes on in the Python tier meanwhile: see
    ``kernel_ready``) and return None."""
    th, result = _warm_up_thread()
    if not wait:
        return None
    if th.is_alive():
        # (shown after half a second: loading a compiled kernel is usually done by then)
        text = ("Compiling the simulator (once per server start, 10 to 30 s)…" if compiling()
                else "Loading the simulator…")
        with st.spinner(text):
            th.join()
    if "error" in result:
        raise result["error"]
    return result["seconds"]


def simulate_small(sc: Scenario, record_iterations: bool = False,
                   max_log_rows: int | None = None) -> llmsim.Result:
    """``llmsim.simulate`` under LIMITS, for a page's one small run (the timeline's, at most
    300 requests). On a cold start it does not wait for the compile: it runs in the Python
    tier for up to PY_RUN_WORK work units and PY_RUN_S seconds, which finishes most such runs; a
    longer one waits for the compiled kernel (with its spinner) and finishes with it. Same result
    either way."""
    sim = Simulation(sc, record_iterations=record_iterations, limits=LIMITS, max_log_rows=max_log_rows)
    t_end = time.perf_counter() + PY_RUN_S
    while not sim.done and sim.work_units < PY_RUN_WORK and time.perf_counter() < t_end \
            and not kernel_ready():
        sim.python_kernel = True
        sim.advance(max_work=PY_CHUNK_WORK)
    if not sim.done:
        warm_up()
        sim.python_kernel = False
        sim.advance()
    return result_with_verdict(sim)


def running_note() -> str:
    """A running run's card: what it waits for, and on a cold start why it is slow (the cards
    are above the fold; the progress line that says so sits below the charts). Reads the
    warm-up thread itself: a failed warm-up is kernel_ready's to raise, where the run meets it."""
    if compiling() and _warm_up_thread()[0].is_alive():
        return ("Simulating, slower at first: the simulator compiles once per server start (10 to "
                "30 s) and runs uncompiled meanwhile. The verdict and its evidence appear when the "
                "run ends.")
    return "Simulating; the verdict and its evidence appear when the run ends."


def percent(p: float) -> str:
    """A share of a run, rounded down: a run stopped at 99.6% read "Stopped at 100% of the run.
    Verdicts need the whole run" (found as a new user would)."""
    return f"{int(max(0.0, min(p, 1.0)) * 100 + 1e-9)}%"  # (0.29 * 100 is 28.999...)


def compiling() -> bool:
    """Whether this server process started with a cold Numba cache (a compile process was
    started for it): then the kernel takes 10 to 30 s to be ready instead of a fraction of
    a second."""
    return _kernel_cache.precompile()


def kernel_ready() -> bool:
    """Whether the compiled kernel is loaded in this process (the warm-up is done); a
    warm-up that failed raises its error here, for the page to show."""
    th, result = _warm_up_thread()
    if th.is_alive():
        return False
    if "error" in result:
        raise result["error"]
    return True


_T0 = time.perf_counter()
# set when a live run has sent its first frame to the browser (any session): the server's start
# then imports what a run's end needs (llmsim_ui/server_start.py), once that frame is drawn
first_frame_drawn = threading.Event()


def timing_on() -> bool:
    """Whether the server reports its stages and the live view's pace (LLMSIM_UI_TIMING=1:
    bench/bench_ui.py and the browser tests)."""
    return bool(os.environ.get("LLMSIM_UI_TIMING"))


def timing(msg: str) -> None:
    """With LLMSIM_UI_TIMING=1, report a stage (seconds since this module was imported, the
    wall clock, and the CPU seconds of the server process so far, all its threads) on stderr:
    how bench/bench_ui.py explains its startup figures."""
    if timing_on():
        print(f"[llmsim-ui {time.perf_counter() - _T0:7.2f} s @{time.time():.3f} cpu {time.process_time():.2f}] {msg}",
              file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ outcomes


@dataclass(frozen=True)
class Job:
    """One simulation a page asks for. extra_key: what the TOML leaves out (an uploaded
    trace's digest), so that two different traces never share a cache entry."""
    label: str
    scenario: Scenario
    toml: str
    extra_key: str = ""


@dataclass(frozen=True)
class Outcome:
    """What the pages show of a finished run: the summary dict of llmsim (with the
    verdict fields), its trajectory (Result.timeseries) and its verdict."""
    summary: dict
    timeseries: pd.DataFrame
    verdict: llmsim.Verdict


def job(label: str, scenario: Scenario, extra_key: str = "") -> Job:
    return Job(label, scenario, scenario.to_toml(), extra_key)


def outcome_of(result: llmsim.Result) -> Outcome:
    v = result.verdict if result.verdict is not None else llmsim.verdict(result)
    v = partial_verdict(v, result.summary)
    summary = dict(result.summary)
    summary.update(v.summary_fields())
    return Outcome(summary, result.timeseries, v)


class ByteLRU:
    """A thread-safe least-recently-used map bounded by the bytes of its values (and of
    its keys). A value larger than the whole bound is not kept. Values are shared between
    sessions as they are: store only values nobody mutates (frozen dataclasses,
    DataFrames that pages only read)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict = OrderedDict()  # key -> (value, nbytes)
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key, value, nbytes: int) -> None:
        nbytes = int(nbytes) + _key_bytes(key)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes)
            self.bytes += nbytes
            while self.bytes > self.max_bytes:
                _, (_, b) = self._items.popitem(last=False)
                self.bytes -= b

    def __len__(self) -> int:
        return len(self._items)


def _key_bytes(key) -> int:
    if isinstance(key, tuple):
        return sum(_key_bytes(k) for k in key)
    return len(key) if isinstance(key, (str, bytes)) else 64


def outcome_bytes(o: Outcome) -> int:
    """Memory held by an outcome: its trajectory, plus a few kB of summary and verdict."""
    return int(o.timeseries.memory_usage(index=True, deep=True).sum()) + 16_384


def value_bytes(value) -> int:
    """Memory of a plain value (a capacity search's result), by its pickled size."""
    try:
        return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # an unpicklable value: count it as large, never skip the bound
        return 1 * MiB


class MemoryLedger:
    """Estimated bytes of the runs in progress in every session of this server, capped.

    A run asks ``try_reserve(ticket, nbytes)`` before allocating its arrays. It gets them if
    no run asked before it is still waiting and they fit beside what is held; else it is
    queued and asks again later. A run larger than the whole cap is refused before it asks
    (``over_cap``): the held bytes never exceed the cap. ``release``
    gives the bytes back (a finished or dropped run). A queued run that stops asking for
    STALE_S seconds (its tab was closed mid-wait) loses its place, so it cannot block the
    queue. A run its visitor stopped is *evictable* (``set_evictable``): when the first in
    line does not fit, stopped runs are asked to give their memory up, oldest stop first
    (their callback drops the arrays and releases; Resume then starts them again), so a
    tab left open on a stopped run never blocks the other visitors."""

    STALE_S = 5.0

    def __init__(self, cap_bytes: int):
        self.cap = int(cap_bytes)
        self._held: dict = {}                # ticket -> bytes
        self._queue: OrderedDict = OrderedDict()  # ticket -> last time it asked, first come first
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._evictable: OrderedDict = OrderedDict()  # ticket -> callback() -> bool, oldest stop first

    def ticket(self) -> int:
        return next(self._ids)

    @property
    def held(self) -> int:
        with self._lock:
            return sum(self._held.values())

    def try_reserve(self, ticket: int, nbytes: int, now: float | None = None) -> bool:
        if nbytes > self.cap:  # it would wait for ever: callers refuse it first (over_cap)
            raise ValueError(f"{nbytes} bytes asked of a ledger capped at {self.cap}")
        now = time.monotonic() if now is None else now
        for attempt in range(2):
            with self._lock:
                if ticket in self._held:
                    return True
                self._queue[ticket] = now  # keeps its place if it was queued already
                for t, seen in list(self._queue.items()):
                    if now - seen > self.STALE_S:
                        del self._queue[t]
                if next(iter(self._queue)) != ticket:
                    return False
                held = sum(self._held.values())
                if held + nbytes <= self.cap:
                    del self._queue[ticket]
                    self._held[ticket] = int(nbytes)
                    return True
                # the first in line does not fit: the stopped runs that would make room
                victims, freed = [], 0
                for t, callback in self._evictable.items():
                    if held - freed + nbytes <= self.cap:
                        break
                    victims.append(callback)
                    freed += self._held.get(t, 0)
            if attempt or not victims:
                return False
            for callback in victims:  # outside the lock: each releases its own reservation
                callback()
        return False

    def set_evictable(self, ticket: int, callback=None) -> None:
        """Mark a stopped run's reservation as one to give up when others wait (callback:
        drops its arrays and calls release; returns False if it could not), or unmark it."""
        with self._lock:
            self._evictable.pop(ticket, None)
            if callback is not None and ticket in self._held:
                self._evictable[ticket] = callback

    def ahead(self, ticket: int) -> int:
        """Runs queued before this one."""
        with self._lock:
            return list(self._queue).index(ticket) if ticket in self._queue else 0

    def release(self, ticket: int) -> None:
        with self._lock:
            self._held.pop(ticket, None)
            self._queue.pop(ticket, None)
            self._evictable.pop(ticket, None)


@st.cache_resource
def ledger() -> MemoryLedger:
    """The server's one ledger of run memory (shared by every session)."""
    return MemoryLedger(SERVER_MEMORY_BYTES)


def _held_text(verb: str) -> str:
    led = ledger()
    return f"runs in other sessions {verb} {led.held / MiB:,.0f} MiB of the {led.cap / MiB:,.0f} MiB it gives to simulations"


def over_cap(need: int, runs: int = 1) -> str | None:
    """Why a run (or a page's `runs` runs, which hold their arrays together) cannot have
    `need` bytes of the server's run memory at all, or None if it can wait its turn."""
    cap = ledger().cap
    if need <= cap:
        return None
    what = "this run needs" if runs == 1 else f"these {runs} runs together need"
    fewer = "make the run smaller (fewer requests)" if runs == 1 else \
        "compare fewer at once, or make each run smaller (fewer requests)"
    return (f"{what} about {need / MiB:,.0f} MiB, and this server gives at most {cap / MiB:,.0f} MiB to "
            f"simulations at once (LLMSIM_SERVER_MEMORY_MIB): {fewer}")


def busy_message(need: int, waited: float) -> str:
    return (f"The server is busy: {_held_text('held')} for {waited:,.0f} s, and this needs {need / MiB:,.0f} MiB. "
            "Try again in a minute, or make the run smaller (fewer requests).")


def session_gone() -> bool:
    """True when nobody will see this script run's result: its browser session has closed
    (the tab was closed or lost), or the page has asked for a new run (an input changed, a
    toggle, Stop, another page). A wait for memory or for a batch slot then ends at once
    instead of keeping its place in the queue, and a long job stops at its next poll. The
    script thread sleeps while it waits, so Streamlit cannot interrupt it there: a page that
    changed an input every 1.5 s left each boundary search running to its end, both long-job
    slots taken for minutes."""
    try:
        from streamlit.runtime import Runtime
        from streamlit.runtime.scriptrunner import get_script_run_ctx
        ctx = get_script_run_ctx(suppress_warning=True)
        if ctx is None or not Runtime.exists():
            return False
        if not Runtime.instance().is_active_session(ctx.session_id):
            return True
        # a STOP or RERUN the script run has not yet met at a yield point (Streamlit's
        # ScriptRequests; the pages use no fragments, whose reruns would not preempt it)
        state = getattr(getattr(ctx, "script_requests", None), "_state", None)
        return getattr(state, "name", "") in ("STOP", "RERUN")
    except Exception:  # another Streamlit's internals: never end a wait by mistake
        return False


def sweep_bytes(sweep) -> int:
    """What a map run in this process holds at most: its points run one at a time, so the
    largest point's estimate (a point's load only sets its rate, which does not change its
    arrays: points that differ only in load are estimated once), at most LIMITS.memory_bytes."""
    from llmsim.sweep import LOAD
    seen, most = set(), 0
    for values in sweep.points():
        other = tuple(sorted((k, repr(v)) for k, v in values.items() if k != LOAD))
        if other in seen:
            continue
        seen.add(other)
        try:
            sc = sweep.scenario({k: v for k, v in values.items() if k != LOAD})
            most = max(most, int(budget.estimate(sc)["bytes"]))
        except ConfigError:  # a point that cannot run allocates nothing
            continue
    return min(most, LIMITS.memory_bytes) if most else LIMITS.memory_bytes


@contextlib.contextmanager
def hold(nbytes: int):
    """Reserve nbytes of the server's run memory for the block (waiting for its turn, at
    most MAX_WAIT_S, then a ConfigError saying the server is busy): for the pages whose
    runs are not LiveRuns (capacity search, stability map, timeline)."""
    led = ledger()
    refused = over_cap(nbytes)
    if refused:
        raise ConfigError(refused)
    ticket = led.ticket()
    t0 = time.monotonic()
    try:
        while not led.try_reserve(ticket, nbytes):
            if time.monotonic() - t0 > MAX_WAIT_S:
                raise ConfigError(busy_message(nbytes, time.monotonic() - t0))
            if session_gone():
                raise ConfigError("the page was closed, or asked for a new run, while this run waited for the server's memory")
            time.sleep(WAIT_POLL_S)
        yield
    finally:
        led.release(ticket)


@st.cache_resource
def batch_ledger() -> MemoryLedger:
    """The server's long jobs running at once (``batch_slot``): a ledger of unit reservations
    capped at BATCH_SLOTS, first come first served."""
    return MemoryLedger(BATCH_SLOTS)


def batch_busy_message(waited: float) -> str:
    return (f"The server is busy: it runs at most {BATCH_SLOTS} stability maps and capacity pages at once, "
            f"and they have all been taken for {waited:,.0f} s. Try again in a few minutes, or make the job "
            "smaller (fewer points or requests).")


@contextlib.contextmanager
def batch_slot(box=None):
    """Run the block as one of the server's BATCH_SLOTS long jobs: wait for a slot first
    (saying so in ``box``, an st.empty(); first come, first served), at most MAX_WAIT_S, then
    a ConfigError saying the server is busy. A closed page leaves the queue at once."""
    led = batch_ledger()
    ticket = led.ticket()
    t0 = time.monotonic()
    said = None
    try:
        while not led.try_reserve(ticket, 1):
            waited = time.monotonic() - t0
            if waited > MAX_WAIT_S:
                raise ConfigError(batch_busy_message(waited))
            if session_gone():
                raise ConfigError("the page was closed, or asked for a new run, while this job waited for the server")
            ahead = led.ahead(ticket)
            if box is not None and ahead != said:  # redrawn only when it changes: each redraw costs the browser
                said = ahead
                box.info(f"Waiting for the server: it runs at most {BATCH_SLOTS} stability maps and capacity "
                         f"pages at once, all taken{f', and {ahead} more wait before this one' if ahead else ''}. "
                         "This one starts as soon as one finishes.", icon=":material/hourglass_top:")
            time.sleep(WAIT_POLL_S)
        if box is not None:
            box.empty()
        yield
    finally:
        led.release(ticket)


@contextlib.contextmanager
def long_job(limits: Limits, box=None):
    """``with long_job(limits, box) as ex:`` one of the server's batch slots (``batch_slot``),
    then an executor whose tasks run in the server's worker processes under ``limits``
    (``jobs.job``): the block's work leaves the server's process, whose event loop serves
    every visitor's page."""
    with batch_slot(box), jobs.job(limits, session_gone) as ex:
        yield ex


@st.cache_resource
def _run_cache() -> ByteLRU:
    return ByteLRU(RUN_CACHE_BYTES)


@st.cache_resource
def _remembered() -> ByteLRU:
    return ByteLRU(REMEMBERED_BYTES)


def cached(j: Job) -> Outcome | None:
    """The finished outcome of a job if some session has run it (and it is still kept)."""
    return _run_cache().get((j.toml, j.extra_key))


def store(j: Job, o: Outcome) -> Outcome:
    _run_cache().put((j.toml, j.extra_key), o, outcome_bytes(o))
    return o


def recall(kind: str, key: str):
    """A value some session computed and ``remember``-ed under (kind, key), or None.
    For results computed with progress updates on the page, which a cached function may
    not draw (Streamlit would replay the drawing)."""
    return _remembered().get((kind, key))


def remember(kind: str, key: str, value) -> None:
    _remembered().put((kind, key), value, value_bytes(value))


def simulation(scenario: Scenario, limits: Limits | None = None) -> Simulation:
    """A Simulation under the dashboard's limits (refused before allocating if too big)."""
    return Simulation(scenario, limits=LIMITS if limits is None else limits)


@st.cache_data(max_entries=64, show_spinner=False)
def _theory(toml: str, extra_key: str, _scenario: Scenario):
    return llmsim.analyze(_scenario)


def theory(j: Job):
    """llmsim.analyze of a job's scenario, cached on its TOML."""
    return _theory(j.toml, j.extra_key, j.scenario)


# --------------------------------------------------------------------- live runner


@dataclass
class LiveRun:
    """Simulations of several jobs advanced together, chunk by chunk.

    key identifies what was asked for (a page compares it with its current inputs);
    outcomes and errors fill in as runs finish; ``frames`` and ``play_seconds`` measure
    how many chart updates per second the live view got.
    """
    key: tuple
    jobs: dict
    outcomes: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    sims: dict = field(default_factory=dict)
    ended: list = field(default_factory=list)  # simulated to the end; verdict not computed yet
    t: float = 0.0
    end: float = 0.0
    dt: float = 0.0
    frames: int = 0
    play_seconds: float = 0.0
    stopped: bool = False

    pending: list = field(default_factory=list)  # jobs waiting for memory (MemoryLedger)
    need: int = 0           # their estimated bytes
    waited: float = 0.0     # seconds spent waiting for it
    evicted: bool = False   # stopped, its memory given to another visitor: Resume starts it again
    page: str = ""          # url path of the page that started it (see pause_other_pages)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # step() against evict()
    ticket: int = 0         # this run's place in the server's ledger
    python_frames: int = 0  # chunks run in the Python tier (the kernel was still compiling)
    last_python: bool = False
    python_work: dict = field(default_factory=dict)  # label -> work units of its next Python chunk

    @classmethod
    def start(cls, key, jobs: list[Job], use_cache: bool = True) -> "LiveRun":
        warm_up(wait=False)  # the chunks run in the Python tier until the kernel is loaded
        run = cls(key, {j.label: j for j in jobs}, page=st.session_state.get(PAGE_KEY, ""))
        for j in jobs:
            o = cached(j) if use_cache else None
            if o is not None:
                run.outcomes[j.label] = o
                continue
            try:
                run.need += int(budget.check(j.scenario, LIMITS)["bytes"])  # refused before it queues
                run.pending.append(j)
            except ConfigError as exc:
                run.errors[j.label] = str(exc)
        refused = over_cap(run.need, len(run.pending))
        if refused:
            for j in run.pending:
                run.errors[j.label] = refused
            run.pending, run.need = [], 0
        if run.pending:
            run.ticket = ledger().ticket()
            weakref.finalize(run, ledger().release, run.ticket)  # a dropped run gives its memory back
            run.admit()
        return run

    def admit(self) -> bool:
        """Allocate the pending simulations once the server's ledger has room for them;
        False while they wait."""
        if not self.pending:
            return True
        if not ledger().try_reserve(self.ticket, self.need):
            return False
        for j in self.pending:
            try:
                self.sims[j.label] = simulation(j.scenario)
            except ConfigError as exc:
                self.errors[j.label] = str(exc)
        self.pending = []
        self.evicted = False
        if self.sims:
            self.end = max(s.end_time for s in self.sims.values())
            self.dt = self.end / TARGET_FRAMES
        self._release_if_idle()
        return True

    def _release_if_idle(self) -> None:
        """No simulation left to hold arrays: the run's reservation goes back to the ledger."""
        if not self.sims and not self.pending:
            ledger().release(self.ticket)

    def evict(self) -> bool:
        """Give a stopped run's memory to another visitor (MemoryLedger, from that
        visitor's thread): the unfinished simulations are dropped and wait again, from
        the start, for Resume. False if the run was resumed or finished meanwhile."""
        with self.lock:
            if not self.stopped or not self.sims:
                return False
            self.pending = [self.jobs[label] for label in self.sims]
            self.sims = {}
            self.ended = []
            self.t = 0.0
            self.waited = 0.0
            self.evicted = True
            ledger().release(self.ticket)
            return True

    def give_up(self) -> None:
        """Stop waiting for memory: every pending job gets the busy message as its error."""
        msg = busy_message(self.need, self.waited)
        for j in self.pending:
            self.errors[j.label] = msg
        self.pending = []
        self._release_if_idle()

    @property
    def waiting(self) -> bool:
        return bool(self.pending)

    def waiting_text(self) -> str:
        ahead = ledger().ahead(self.ticket)
        queue = f"; {ahead} run{'s' if ahead != 1 else ''} asked before this one" if ahead else ""
        return (f"Waiting for the server: {_held_text('hold')}, and this run needs {self.need / MiB:,.0f} MiB"
                f"{queue}. It starts as soon as they finish (Stop cancels).")

    @property
    def done(self) -> bool:
        return not self.sims and not self.pending

    @property
    def progress(self) -> float:
        if self.pending:
            return 0.0
        running = [s for label, s in self.sims.items() if label not in self.ended]
        return min(s.progress for s in running) if running else 1.0

    @property
    def simulating(self) -> bool:
        return len(self.ended) < len(self.sims)

    def step(self) -> None:
        """Advance every unfinished simulation by one chunk of simulated time; once all
        have reached the end, compute the verdicts (the theory behind them can take a
        second per run), one run per step so the page can say so in between."""
        with self.lock:
            self._step()

    def _step(self) -> None:
        if not self.admit():
            return
        t0 = time.perf_counter()
        python = not kernel_ready()
        if not self.simulating:
            label = self.ended.pop(0)
            sim = self.sims.pop(label)
            sim.python_kernel = python
            try:
                self.outcomes[label] = store(self.jobs[label], outcome_of(sim.result()))
            except (ConfigError, RuntimeError, MemoryError, ValueError) as exc:
                self.errors[label] = str(exc)
            self._release_if_idle()
            timing(f"verdict of {label}: {time.perf_counter() - t0:.2f} s")
            return
        self.t = min(self.t + self.dt, self.end)
        if self.last_python and not python:
            timing(f"compiled kernel takes over after {self.python_frames} chunks in Python")
        self.python_frames += python
        self.last_python = python
        for label, sim in list(self.sims.items()):
            if label in self.ended:
                continue
            try:
                # bounded in work too: a chunk of simulated time can hold minutes of CPU
                # (a token budget of 1 makes one iteration per token); a run behind self.t
                # catches up in the next chunks
                sim.python_kernel = python
                if python:
                    self._python_chunk(label, sim)
                else:
                    sim.advance(self.t, max_work=CHUNK_WORK, should_stop=lambda: self.stopped)
                if sim.done or (self.t >= self.end and sim.now >= self.t):
                    self.ended.append(label)
            except (ConfigError, RuntimeError, MemoryError) as exc:
                self.errors[label] = str(exc)
                del self.sims[label]
                self._release_if_idle()
        spent = time.perf_counter() - t0
        full = self.end / TARGET_FRAMES
        if spent > FRAME_COMPUTE_S and self.dt > 0:
            # a slow run: smaller chunks keep the page responsive -- but never so small that
            # the run stops progressing (at least 1/20 of a normal chunk)
            self.dt = max(full / 20, self.dt * max(0.25, FRAME_COMPUTE_S / spent))
        elif spent < FRAME_COMPUTE_S / 2 and self.dt < full:
            self.dt = min(full, self.dt * 1.5)  # fast again: grow back

    def _python_chunk(self, label: str, sim: Simulation) -> None:
        """One chunk of `sim` in the Python tier, its work adapted so that it takes about
        PY_CHUNK_S seconds (never more than PY_CHUNK_WORK units, never fewer than 20)."""
        work = self.python_work.get(label, PY_CHUNK_WORK)
        t0 = time.perf_counter()
        sim.advance(self.t, max_work=work)
        spent = time.perf_counter() - t0
        if spent > PY_CHUNK_S:
            work = max(20, int(work * PY_CHUNK_S / spent))
        elif spent < PY_CHUNK_S / 2:
            work = min(PY_CHUNK_WORK, 2 * work)
        self.python_work[label] = work

    def trajectories(self) -> dict[str, pd.DataFrame]:
        """Label -> the trajectory so far (finished runs: their whole trajectory)."""
        out = {label: o.timeseries for label, o in self.outcomes.items()}
        for label, sim in self.sims.items():
            out[label] = sim.timeseries()
        return {label: out[label] for label in self.jobs if label in out}

    @property
    def updates_per_second(self) -> float | None:
        return self.frames / self.play_seconds if self.play_seconds > 0 and self.frames > 1 else None


def play(run: LiveRun, draw, progress_slot, label: str = "Simulating", pace: bool = True) -> None:
    """Advance `run` chunk by chunk, calling draw(run) after each; returns when the run is
    done. pace: at most one chunk per MIN_FRAME_S, so the animation can be watched (in the
    Python tier, paced or not, one per MIN_FRAME_PYTHON_S: see there). A click
    on any widget (the Stop button) interrupts it between chunks. ``run.frames`` and
    ``run.play_seconds`` count the animation (not the verdicts computed after it).

    Streamlit's own Stop (in the page header) ends the script at its next drawing call with
    a StopException, and every later call raises it again, so nothing more can be drawn:
    the run is then marked stopped, as the page's Stop would, and the next interaction
    shows it stopped with Resume (before, it carried on as if nothing had been pressed)."""
    try:
        _play(run, draw, progress_slot, label, pace)
    except BaseException as exc:
        if type(exc).__name__ == "StopException":  # streamlit's (its module moved between versions)
            stop(run)
        raise


def _play(run: LiveRun, draw, progress_slot, label: str, pace: bool) -> None:
    while not run.done and not run.stopped:
        if run.waiting:
            with run.lock:
                admitted = run.admit()
            if admitted:
                progress_slot.empty()
            elif run.waited > MAX_WAIT_S or session_gone():
                run.give_up()
            else:
                progress_slot.info(run.waiting_text(), icon=":material/hourglass_top:")
                time.sleep(WAIT_POLL_S)
                run.waited += WAIT_POLL_S
            continue
        t0 = time.perf_counter()
        animating = run.simulating
        if not animating:
            progress_slot.progress(1.0, text=f"Computing the verdicts: theory and trend test "
                                             f"({len(run.ended)} to go)…")
        run.step()
        if not animating:
            continue
        draw(run)
        pct = run.progress
        slow = " — uncompiled, slower, while the simulator compiles (once per server start)" \
            if run.last_python else ""
        progress_slot.progress(pct, text=f"{label}: {percent(pct)} of simulated time "
                                         f"(t = {run.t:,.0f} s of {run.end:,.0f} s){slow}")
        run.frames += 1
        if run.frames == 1:
            timing("first chunk drawn")
            first_frame_drawn.set()
            if run.simulating:
                held = FIRST_PYTHON_PAUSE_S if run.last_python else _first_paint_pause()
                time.sleep(held)
                t0 += held  # not animation: the live view's "updates per second" leaves it out
        pause = (MIN_FRAME_PYTHON_S if run.last_python else MIN_FRAME_S) - (time.perf_counter() - t0)
        if (pace or run.last_python) and pause > 0 and run.simulating:
            time.sleep(pause)
        run.play_seconds += time.perf_counter() - t0
    progress_slot.empty()
    if run.done:
        timing(f"run finished after {run.frames} chunks")


def _first_paint_pause() -> float:
    """FIRST_PAINT_PAUSE_S on the first live run of this page in this session, else 0."""
    try:
        painted = st.session_state.setdefault("llmsim.painted", set())
        page = st.session_state.get(PAGE_KEY, "")
    except Exception:  # no session (a bare call outside a page)
        return 0.0
    if page in painted:
        return 0.0
    painted.add(page)
    return FIRST_PAINT_PAUSE_S


def session_run(page: str) -> LiveRun | None:
    return st.session_state.get(f"{page}.run")


def set_session_run(page: str, run: LiveRun | None) -> None:
    st.session_state[f"{page}.run"] = run


PAGE_KEY = "llmsim.page"  # session state: url path of the page this script run draws


def pause_other_pages(url_path: str) -> None:
    """Called by app.py before a page runs: the session's live runs on *other* pages stop
    (their page shows them stopped, with Resume, when the visitor comes back), so a run
    left behind by a page switch neither holds the server's memory for good nor keeps it
    from a waiting visitor (MemoryLedger)."""
    st.session_state[PAGE_KEY] = url_path
    for value in list(st.session_state.values()):
        if isinstance(value, LiveRun) and value.page != url_path and not value.done and not value.stopped:
            stop(value)


def _evict_callback(run: LiveRun):
    """run.evict, without keeping the run alive (a dropped run releases at collection)."""
    ref = weakref.ref(run)

    def evict() -> bool:
        r = ref()
        return r.evict() if r is not None else False
    return evict


def stop(run: LiveRun) -> None:
    run.stopped = True
    if run.sims:  # its memory goes to another visitor if one waits (MemoryLedger)
        ledger().set_evictable(run.ticket, _evict_callback(run))
    elif run.pending:  # stopped while it waited: it leaves the queue (Resume asks again)
        ledger().release(run.ticket)


def stop_cb(page: str) -> None:
    run = session_run(page)
    if run is not None:
        stop(run)


def resume_cb(page: str) -> None:
    run = session_run(page)
    if run is not None:
        with run.lock:
            run.stopped = False
            ledger().set_evictable(run.ticket)


def replay_cb(page: str) -> None:
    st.session_state[f"{page}.replay"] = True
