"""Long jobs — stability maps, capacity searches, the Model page's boundary search — run in
worker processes, never in the server's own.

Why: a long job computing in the server's process slowed every other visitor's page. With
one map running, another visitor's smallest run took ~15 s to its verdict instead of 2.3 s
(``python bench/bench_long_jobs.py --pin``). A job is mostly Python between the kernel's
calls (building scenarios, verdicts, theory), so its thread holds the GIL most of the time,
and the server's event loop, which serves every page and websocket, waits for it. A worker
process has a GIL of its own; the server's thread waits for its result without holding one.

How:

- ``job(limits, gone)`` is a context manager giving an executor (``Job``, the same protocol
  as ``llmsim.sweep.InProcess``: ``map``, ``as_completed``, and ``call``) whose tasks run in
  the server's pool of ``SLOTS`` worker processes, one task of a job at a time. The pages
  take one of the server's batch slots (``runs.batch_slot``) before a job, so there are never
  more tasks than workers;
- the workers are started by ``spawn`` (forking the server's threads is not safe), at the
  first job, with a lower CPU priority (``NICE``) than the server, so that a page's script and
  its websocket come first on a busy core; each loads the compiled kernel from Numba's cache
  as it starts (about a second). They stop when no job has used them for ``IDLE_S`` seconds
  (each holds 210-235 MiB resident once its imports are done, ~120 MiB of it its own: the
  rest is shared library pages), and start again at the next job; a worker whose server has
  gone (killed outright: SIGKILL, out of memory) exits too;
- each task runs under the page's limits (``llmsim.budget.use``) and gives its freed memory
  back to the system when it ends (glibc's ``malloc_trim``);
- a waiting page polls its task every ``POLL_S`` and leaves as soon as its browser session
  has gone or it has asked for a new run (``gone``: ``runs.session_gone``): the task in
  flight still ends in its worker (a task is one map point or one capacity probe, bounded by
  the demo's limits), and its result is dropped;
- a worker that dies (killed for memory, say) fails its job with a ConfigError saying so,
  and the next job starts a fresh pool.

This module imports no Streamlit: the workers import it to run their tasks.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from llmsim import _kernel_cache
from llmsim.errors import ConfigError
from llmsim.sweep import InProcess

ROOT = str(Path(__file__).resolve().parent.parent)
SLOTS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
NICE = 10           # the workers' CPU priority below the server's (os.nice)
IDLE_S = 300.0      # the pool stops after this long without a job
POLL_S = 0.2        # a waiting page checks that its session is still there this often

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_busy = 0           # jobs holding the pool now
_last_used = 0.0    # when the last job ended (time.monotonic)


# ------------------------------------------------------------------ in the workers


def _worker_start(root: str) -> None:
    """Each worker, once: the project importable, a lower priority, the kernel loaded, and
    a watch on the server that ends the worker when the server has gone."""
    _watch_server()
    if root not in sys.path:
        sys.path.insert(0, root)
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICE)
    from llmsim._kernel_cache import compile_kernel
    compile_kernel()


def _watch_server() -> None:
    """A worker outlives a server killed outright (SIGKILL, the kernel's OOM killer: the
    likeliest process to be killed for memory is the server) unless it watches: the pool's
    queue to the worker has a writer in the worker itself, so the worker would wait on it
    forever, ~200 MiB per worker per restart of a supervised server. multiprocessing's parent
    sentinel becomes readable when the server's end of the start-up pipe closes, that is when
    the server has gone; the worker then exits at once, its task in flight dropped."""
    from multiprocessing.connection import wait
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="llmsim-server-watch", daemon=True).start()


def _run(limits, fn, args):
    """One task: fn(*args) under the page's limits; the freed memory goes back after it."""
    from llmsim import budget
    try:
        with budget.use(limits):
            return fn(*args)
    finally:
        from llmsim_ui.server_start import _glibc
        libc = _glibc()
        if libc is not None:
            libc.malloc_trim(0)


def throughput(scenario) -> dict:
    """The capacity page's throughput point: completed requests per simulated second of
    one (scheduler, rate) run, with what it started, processed and recomputed. Simulation
    only: the stability verdicts come from the capacity search, whose theory and trend tests
    would double the cost of every point."""
    from llmsim import budget
    from llmsim import state as S
    from llmsim.simulate import Simulation
    sim = Simulation(scenario, limits=budget.current()).advance()
    reqs = sim.requests()
    done = int(reqs["finish_s"].notna().sum())
    started = int(reqs["admitted_s"].notna().sum())
    processed = int(sim.gi[S.G_TOK_DONE])
    recomputed = int(sim.gi[S.G_TOK_RECOMPUTE]) / processed if processed else 0.0
    per_s = 1.0 / sim.now if sim.now > 0 else 0.0
    return {"throughput_rps": done * per_s, "completed": done, "started_rps": started * per_s,
            "tokens_per_s": processed * per_s, "recomputed": recomputed}


# ------------------------------------------------------------------- in the server


def _start_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=SLOTS, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_start, initargs=(ROOT,))


def _reaper() -> None:
    """Stops the pool once no job has used it for IDLE_S (then ends; the next pool starts another)."""
    global _pool
    while True:
        time.sleep(min(30.0, IDLE_S / 4))
        with _lock:
            if _pool is None:
                return
            if _busy == 0 and time.monotonic() - _last_used > IDLE_S:
                _pool.shutdown(wait=False, cancel_futures=True)
                _pool = None
                return


def running() -> bool:
    """True while the pool's workers are up (started, and not yet stopped for idleness)."""
    return _pool is not None


def shutdown(wait: bool = True) -> bool:
    """Stop the workers: after their tasks in flight (tests), or at once, their tasks
    dropped (``wait=False``: the server's stop). True if there were any."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is None:
        return False
    if not wait:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                proc.terminate()
    pool.shutdown(wait=wait, cancel_futures=True)
    return True


def _broken(pool) -> None:
    """A worker died: drop the pool, so that the next job starts a fresh one."""
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


class Job(InProcess):
    """An executor whose tasks run, one at a time, in the server's worker processes."""
    workers = 1
    description = "a worker process"

    def __init__(self, pool: ProcessPoolExecutor, limits, gone=None):
        self.pool, self.limits, self.gone = pool, limits, gone

    def call(self, fn, *args):
        """fn(*args) in a worker: its result, or its exception raised here."""
        try:
            fut = self.pool.submit(_run, self.limits, fn, args)
        except (BrokenProcessPool, RuntimeError):  # died, or stopped meanwhile
            _broken(self.pool)
            raise ConfigError("the server's worker processes stopped while this job ran; try again") from None
        while True:
            try:
                return fut.result(timeout=POLL_S)
            except TimeoutError:
                if self.gone is not None and self.gone():
                    fut.cancel()
                    raise ConfigError("the page was closed, or asked for a new run, while its job ran") from None
            except BrokenProcessPool:
                _broken(self.pool)
                raise ConfigError("a worker process of the server stopped while it ran this job (out of "
                                  "memory, or killed); try again, or make the job smaller") from None

    def map(self, fn, args: list) -> list:
        return [self.call(fn, *a) for a in args]

    def as_completed(self, fn, args: list):
        for k, a in enumerate(args):
            yield k, self.call(fn, *a)


@contextlib.contextmanager
def job(limits, gone=None):
    """``with job(limits, gone) as ex:`` an executor for one long job (see the module's text)."""
    global _pool, _busy, _last_used
    # a cold server: its workers load both kernels from Numba's cache as they start; the compile
    # process writes the single-engine one ~6 s after the general one, and a worker started before
    # that would compile it itself (~6 s of a core each). At once on a warm server.
    # A page closed meanwhile stops waiting (it held a batch slot for the rest of the compile).
    if not _kernel_cache.wait_precompile(_kernel_cache.SINGLE_READY, gone=gone) and gone is not None and gone():
        raise ConfigError("the page was closed, or asked for a new run, while this job waited for the "
                          "simulator to compile")
    with _lock:
        if _pool is None:
            _pool = _start_pool()
            threading.Thread(target=_reaper, name="llmsim-job-reaper", daemon=True).start()
        pool = _pool
        _busy += 1
    try:
        yield Job(pool, limits, gone)
    finally:
        with _lock:
            _busy -= 1
            _last_used = time.monotonic()
