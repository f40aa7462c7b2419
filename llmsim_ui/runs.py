"""Running simulations for the UI: warm-up, bounded caches, and the chunked live runner.

- ``warm_up`` compiles the numba kernel once per server process (``st.cache_resource``)
  by running a tiny scenario, in a background thread that app.py starts first thing, so
  the first page draws while numba compiles; every session after the first finds it
  compiled.
- Finished runs are cached with ``st.cache_data(max_entries=...)`` keyed on the scenario's
  TOML text (plus the digest of an uploaded trace, which the TOML names but does not
  contain), so a shared link or a second visitor gets the result at once.
- ``LiveRun`` advances several simulations together in chunks of simulated time; the page
  redraws after every chunk, so a long run never freezes the app and a Stop button (any
  widget, in fact) interrupts it between chunks. It lives in the page's session state, so
  an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

import llmsim
from llmsim import ConfigError, Scenario, Simulation, _kernel_cache

MAX_CACHED_RUNS = 64      # finished runs kept (each: a summary and a <= 2000-row trajectory)
_REGISTRY_SIZE = 48       # below the caches' sizes, so a key listed here is almost surely cached
TARGET_FRAMES = 30        # chart updates over one run when computing is fast
FRAME_COMPUTE_S = 0.12    # wall seconds of computing per chunk we aim for on slow runs
MIN_FRAME_S = 0.1         # pace of the animation: at most ~10 chart updates per second

_TINY = """
seed = 1
[workload]
num_requests = 200
arrival = { process = "poisson", rate = 5.0 }
prompt_tokens = { dist = "uniform", low = 20, high = 200 }
output_tokens = { dist = "geometric", mean = 20 }
[engine]
scheduler = "sarathi"
token_budget = 256
max_batch_size = 64
kv_cache_tokens = 20000
batch_time = { model = "constant", seconds = 0.02 }
"""


def _compile() -> float:
    """Compile the kernel (one kernel serves every scheduler, policy and network) by
    running a tiny scenario chunked, as the pages do. Returns the seconds it took."""
    t0 = time.perf_counter()
    sim = Simulation(llmsim.loads_scenario(_TINY))
    sim.advance(1.0)
    sim.advance()
    llmsim.verdict(sim.result())
    spent = time.perf_counter() - t0
    timing(f"numba warm-up {spent:.2f} s")
    return spent


@st.cache_resource(show_spinner=False)
def _warm_up_thread():
    """Once per server process: compile in a background thread, so the first page draws
    its inputs and theory while numba works (or loads its on-disk cache)."""
    result: dict = {}

    def work():
        try:
            # a cold Numba cache: compile in a child process (app.py may have started it
            # already), which leaves this process's GIL to the page; then load from the cache
            if _kernel_cache.precompile():
                _kernel_cache.wait_precompile()
                timing("compile process finished")
            result["seconds"] = _compile()
        except BaseException as exc:  # reported to the page that waits for it
            result["error"] = exc

    th = threading.Thread(target=work, name="llmsim-warm-up", daemon=True)
    th.start()
    return th, result


def start_warm_up() -> None:
    """Called by app.py first thing: starts the compile if this process has not."""
    _warm_up_thread()


def warm_up() -> float:
    """Wait for the compile (with a spinner if it is still running); call before the
    first simulation of a script run. Returns the seconds the compile took."""
    th, result = _warm_up_thread()
    if th.is_alive():
        with st.spinner("Compiling the simulator (once per server start, about 10 s)…"):
            th.join()
    if "error" in result:
        raise result["error"]
    return result["seconds"]


_T0 = time.perf_counter()


def timing(msg: str) -> None:
    """With LLMSIM_UI_TIMING=1, report a stage (seconds since this module was imported)
    on stderr: how bench/bench_ui.py explains its startup figures."""
    if os.environ.get("LLMSIM_UI_TIMING"):
        print(f"[llmsim-ui {time.perf_counter() - _T0:7.2f} s @{time.time():.3f}] {msg}", file=sys.stderr,
              flush=True)


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
    summary = dict(result.summary)
    summary.update(v.summary_fields())
    return Outcome(summary, result.timeseries, v)


@st.cache_data(max_entries=MAX_CACHED_RUNS, show_spinner=False)
def _cached_outcome(toml: str, extra_key: str, _job: Job | None = None,
                    _done: Outcome | None = None) -> Outcome:
    """Cache of finished runs keyed on (TOML text, extra key). Called with ``_done`` to
    store a run finished by the live runner; otherwise simulates in one go."""
    if _done is not None:
        return _done
    warm_up()
    sim = Simulation(_job.scenario)
    sim.advance()
    return outcome_of(sim.result())


class _KeySet:
    """A bounded, thread-safe LRU set: which runs have finished (and so are cached)."""

    def __init__(self, size: int):
        self.size = size
        self._keys: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key) -> None:
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)

    def __contains__(self, key) -> bool:
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return True
            return False


@st.cache_resource
def _finished() -> _KeySet:
    return _KeySet(_REGISTRY_SIZE)


def cached(j: Job) -> Outcome | None:
    """The finished outcome of a job if some session has run it, else None."""
    if (j.toml, j.extra_key) in _finished():
        return _cached_outcome(j.toml, j.extra_key, _job=j)
    return None


def store(j: Job, o: Outcome) -> Outcome:
    out = _cached_outcome(j.toml, j.extra_key, _done=o)
    _finished().add((j.toml, j.extra_key))
    return out


@st.cache_data(max_entries=256, show_spinner=False)
def _stored(kind: str, key: str, _value=None):
    return _value


def recall(kind: str, key: str):
    """A value some session computed and ``remember``-ed under (kind, key), or None.
    For results computed with progress updates on the page, which a cached function may
    not draw (Streamlit would replay the drawing)."""
    if (kind, key) not in _finished():
        return None
    v = _stored(kind, key)
    if v is None:  # evicted from the cache meanwhile
        _stored.clear(kind, key)
    return v


def remember(kind: str, key: str, value) -> None:
    _stored(kind, key, _value=value)
    _finished().add((kind, key))


@st.cache_data(max_entries=MAX_CACHED_RUNS, show_spinner=False)
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

    @classmethod
    def start(cls, key, jobs: list[Job], use_cache: bool = True) -> "LiveRun":
        warm_up()
        run = cls(key, {j.label: j for j in jobs})
        for j in jobs:
            o = cached(j) if use_cache else None
            if o is not None:
                run.outcomes[j.label] = o
                continue
            try:
                run.sims[j.label] = Simulation(j.scenario)
            except ConfigError as exc:
                run.errors[j.label] = str(exc)
        if run.sims:
            run.end = max(s.end_time for s in run.sims.values())
            run.dt = run.end / TARGET_FRAMES
        return run

    @property
    def done(self) -> bool:
        return not self.sims

    @property
    def progress(self) -> float:
        running = [s for label, s in self.sims.items() if label not in self.ended]
        return min(s.progress for s in running) if running else 1.0

    @property
    def simulating(self) -> bool:
        return len(self.ended) < len(self.sims)

    def step(self) -> None:
        """Advance every unfinished simulation by one chunk of simulated time; once all
        have reached the end, compute the verdicts (the theory behind them can take a
        second per run), one run per step so the page can say so in between."""
        t0 = time.perf_counter()
        if not self.simulating:
            label = self.ended.pop(0)
            sim = self.sims.pop(label)
            try:
                self.outcomes[label] = store(self.jobs[label], outcome_of(sim.result()))
            except (ConfigError, RuntimeError, MemoryError, ValueError) as exc:
                self.errors[label] = str(exc)
            timing(f"verdict of {label}: {time.perf_counter() - t0:.2f} s")
            return
        self.t = min(self.t + self.dt, self.end)
        for label, sim in list(self.sims.items()):
            if label in self.ended:
                continue
            try:
                sim.advance(self.t)
                if sim.done or self.t >= self.end:
                    self.ended.append(label)
            except (ConfigError, RuntimeError, MemoryError) as exc:
                self.errors[label] = str(exc)
                del self.sims[label]
        spent = time.perf_counter() - t0
        full = self.end / TARGET_FRAMES
        if spent > FRAME_COMPUTE_S and self.dt > 0:
            # a slow run: smaller chunks keep the page responsive -- but never so small that
            # the run stops progressing (at least 1/20 of a normal chunk)
            self.dt = max(full / 20, self.dt * max(0.25, FRAME_COMPUTE_S / spent))
        elif spent < FRAME_COMPUTE_S / 2 and self.dt < full:
            self.dt = min(full, self.dt * 1.5)  # fast again: grow back

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
    done. pace: at most one chunk per MIN_FRAME_S, so the animation can be watched. A click
    on any widget (the Stop button) interrupts it between chunks. ``run.frames`` and
    ``run.play_seconds`` count the animation (not the verdicts computed after it)."""
    while not run.done and not run.stopped:
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
        progress_slot.progress(pct, text=f"{label}: {pct:.0%} of simulated time "
                                         f"(t = {run.t:,.0f} s of {run.end:,.0f} s)")
        run.frames += 1
        if run.frames == 1:
            timing("first chunk drawn")
        pause = MIN_FRAME_S - (time.perf_counter() - t0)
        if pace and pause > 0 and run.simulating:
            time.sleep(pause)
        run.play_seconds += time.perf_counter() - t0
    progress_slot.empty()
    if run.done:
        timing(f"run finished after {run.frames} chunks")


def session_run(page: str) -> LiveRun | None:
    return st.session_state.get(f"{page}.run")


def set_session_run(page: str, run: LiveRun | None) -> None:
    st.session_state[f"{page}.run"] = run


def stop_cb(page: str) -> None:
    run = session_run(page)
    if run is not None:
        run.stopped = True


def resume_cb(page: str) -> None:
    run = session_run(page)
    if run is not None:
        run.stopped = False


def replay_cb(page: str) -> None:
    st.session_state[f"{page}.replay"] = True
