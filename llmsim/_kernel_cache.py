"""Keep Numba's on-disk cache honest, and fill it in another process on a cold start.

Numba checks only the source file of the function it caches, but the kernels (core.py's
general one, _single.py's single-engine one) inline code from schedulers.py, state.py and
core.py: after those change (a `git pull`, an edit), a stale compiled kernel would be loaded
silently. So a stamp of the four sources sits beside the cache; when it differs, llmsim's
cached kernels are dropped before Numba looks at them.

A cold start (a fresh clone, a new Numba cache) compiles the kernel for about 10 s of
pure-Python work that holds the GIL. ``precompile()`` does that in a child process, which
writes Numba's cache while the caller goes on (the dashboard imports its UI and draws its
first page meanwhile, on the other core); ``wait_precompile()`` then waits for it, and the
caller's own first run loads the compiled kernel from the cache in a fraction of a second.
The process writes the general kernel first (it runs every scenario) and says so, then the
single-engine one (~6 s more): until the caller has loaded that one too, runs that could take
it take the general one (``single_ready``), so a cold dashboard's first run goes compiled
~8 s sooner (bench/README.md, Round 30).
The command line compiles in its own process instead (``compile_here()``), only the kernel
its run takes (``llmsim run``), the general one with a child that compiles the functions it
calls meanwhile. (The dashboard does not: there the server
and the browser already use the second core during a cold start, and measured, the first
trajectory came no sooner with that child.)
"""

from __future__ import annotations

import hashlib
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from llmsim import _order

_HERE = Path(__file__).parent
_SOURCES = ("core.py", "schedulers.py", "state.py", "_single.py")


def numba_cache_dir() -> Path:
    """The directory where Numba keeps the cached functions of llmsim's modules: the one its
    own locators pick (``NUMBA_CACHE_DIR``'s ``llmsim_<hash>`` subdirectory when that is set,
    else ``llmsim/__pycache__`` when writable, else the user's cache directory). A guard
    that looked only in ``__pycache__`` kept a stale kernel under ``NUMBA_CACHE_DIR`` after a
    source change (found as a hostile visitor would). Internals of Numba: on any surprise,
    ``__pycache__`` as before."""
    try:
        from numba.core.caching import FunctionCache  # what a cache=True dispatcher uses
        return Path(FunctionCache(ensure_fresh_cache)._cache_path)
    except Exception:  # noqa: BLE001 - another Numba version
        return _HERE / "__pycache__"


def ensure_fresh_cache() -> None:
    """Drop llmsim's compiled functions from Numba's cache when the kernels' sources differ
    from those they were compiled from (the module's text says why)."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((_HERE / name).read_bytes())
    stamp = digest.hexdigest()
    cache = numba_cache_dir()
    mark = cache / "kernel-sources.sha256"
    try:
        if mark.is_file() and mark.read_text() == stamp:
            return
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        mark.write_text(stamp)
    except OSError:
        pass  # a read-only install: Numba then compiles in memory or uses its own dir


def in_cache(dispatcher, surprise: bool) -> bool:
    """Whether Numba's on-disk cache holds a compiled version of dispatcher (a cache=True
    function). Reads Numba's cache index: internals, so any surprise (another Numba version)
    answers ``surprise``."""
    try:
        return len(dispatcher._cache._cache_file._load_index()) > 0
    except Exception:  # noqa: BLE001 - another Numba version: the caller's safe answer
        return surprise


def kernel_on_disk() -> bool:
    """Whether Numba's cache holds both compiled kernels for the current sources (then the
    first run loads them, about 0.2 s each, instead of compiling them, about 10 s and 5 s).
    A surprise counts as "yes", so callers compile as before."""
    from llmsim import _single, core
    return in_cache(core.run_kernel, True) and in_cache(_single.run_single, True)


def compile_kernel() -> float:
    """Compile (or load) both kernels by running a tiny scenario with each; returns the
    seconds spent. ``core.run_kernel`` serves every scheduler, policy and network,
    ``_single.run_single`` the single engines it can run (``tiny_runs``)."""
    import llmsim
    t0 = time.perf_counter()
    for sim in tiny_runs():
        sim.advance()
    llmsim.verdict(sim.result())
    return time.perf_counter() - t0


def tiny_runs(limits=None) -> list:
    """TINY_SCENARIO's Simulation twice, not yet run: by the general kernel, then by the
    single-engine one (advancing each compiles or loads its kernel)."""
    import llmsim
    sc = llmsim.loads_scenario(TINY_SCENARIO)
    sims = [llmsim.Simulation(sc, limits=limits) for _ in range(2)]
    sims[0].single_kernel = False
    return sims


# the warm-up run of the library, the dashboard and sweep workers
TINY_SCENARIO = """
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

_lock = threading.Lock()
_child: list = []  # the compile process of this process, once started
_extra: list = []  # a process compiling only the summary's selection (nobody waits for it)
# the compile process's lines: the general kernel is in the cache, then the single-engine one
KERNEL_READY = b"kernel in the cache\n"
SINGLE_READY = b"single-engine kernel in the cache\n"
_lines_cond = threading.Condition()  # guards the two lists below; notified at each line read
_reading: list = []  # [True] while a thread reads the compile process's next line
_lines_read: list = []  # its lines read so far (b"": it ended)
_POLL_S = 0.25  # a reader reads for at most this long before it checks its caller is still there
_single_loaded = threading.Event()  # see single_ready


def precompile() -> bool:
    """If Numba's cache lacks the kernel, start a process that compiles it into the cache
    and return at once (True); False when the cache already has it. Once per process. The
    process compiles the summary's selection (llmsim/_order.py) after the kernel; with the
    kernel on disk but not the selection, a process compiles only that, and nobody waits."""
    with _lock:
        if _child:
            return _child[0] is not None
        # no child (or it cannot start): the caller compiles in its own process, as before
        proc = None if kernel_on_disk() else _start_child()
        _child.append(proc)
        if proc is None and not _order.on_disk():
            _extra.append(_start_child("order"))
        return proc is not None


def stop_precompile(timeout_s: float = 5.0) -> bool:
    """Stop the compile processes that still run (the server is shutting down: a compile
    left running would burn a core for seconds after the server is gone). Numba writes
    its cache files whole (a temporary file, then a rename), so a stopped compile leaves
    none half-written. True if a process was stopped."""
    with _lock:
        procs = [p for p in _child[:1] + _extra if p is not None and p.poll() is None]
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return bool(procs)


def _start_child(*args):
    """``python -m llmsim._kernel_cache ARGS`` on this llmsim, silent; None if it cannot start."""
    env = dict(os.environ)
    root = str(_HERE.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "llmsim._kernel_cache", *args], env=env,
                                stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL if args else subprocess.PIPE)
    except OSError:
        return None
    # reaped when it ends: nobody else waits for it once the kernel's line is read, and it stayed
    # a zombie (<defunct>) for the server's life (found as a hostile visitor would)
    threading.Thread(target=proc.wait, name="llmsim-compile-reaper", daemon=True).start()
    return proc


def wait_precompile(line: bytes = KERNEL_READY, timeout_s: float = 300.0, gone=None) -> bool:
    """Wait until the compile process started by ``precompile()`` (if any) has written
    ``line`` (``KERNEL_READY``: the general kernel is in the cache; ``SINGLE_READY``: the
    single-engine one too), or has ended. True when it wrote the line (or there is no such
    process: the cache had the kernels); False when it ended without it, was stopped after
    ``timeout_s``, or ``gone()`` (checked every ``_POLL_S``) said the caller no longer waits.
    Whatever it did, the caller's next run is right: it loads the kernel from the cache, or
    compiles it itself when the child could not write the cache. The summary's selection,
    which the process compiles last, is not waited for (``_order.ready()``).

    Callers waiting for different lines do not wait for each other: one at a time reads a
    line and all see it (a job waiting for the second line held the reading, so the page's
    warm-up, waiting for the first, went on in the Python tier 6-9 s after the general kernel
    was written; found as a hostile visitor would; bench/bench_cold_job.py)."""
    with _lock:
        proc = _child[0] if _child else None
    if proc is None:
        return True
    end = time.monotonic() + timeout_s
    while True:
        with _lines_cond:
            while True:
                if line in _lines_read:
                    return True
                if b"" in _lines_read or (gone is not None and gone()):
                    return False
                if not _reading:
                    _reading.append(True)  # this thread reads the next line
                    break
                _lines_cond.wait(_POLL_S)
        got = None
        try:
            left = end - time.monotonic()
            if proc.stdout is None:
                proc.wait(max(0.0, left))
                got = b""
            elif left > 0 and select.select([proc.stdout], [], [], min(_POLL_S, left))[0]:
                got = proc.stdout.readline()  # a line, or nothing: the process ended
            elif left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout_s)
        except subprocess.TimeoutExpired:  # no line in time: stopped
            proc.kill()
            proc.wait()
            got = b""
        finally:
            with _lines_cond:
                _reading.clear()
                if got is not None:
                    _lines_read.append(got)
                _lines_cond.notify_all()


def single_ready() -> bool:
    """Whether a run that may take the single-engine kernel (``Simulation.single_kernel``
    None) takes it now. Yes, unless this process started a compile process that has not yet
    written it to the cache and had it loaded (``single_loaded``): such runs take the general
    kernel meanwhile (the same results, bit for bit), instead of compiling the single-engine
    one in this process (~6 s holding the GIL) or waiting for it. So a cold dashboard runs
    compiled as soon as the general kernel is in the cache."""
    if _single_loaded.is_set():
        return True
    with _lock:
        return not _child or _child[0] is None


def single_loaded() -> None:
    """Say that this process has the single-engine kernel loaded (see ``single_ready``)."""
    _single_loaded.set()


def _compile_general() -> None:
    """Run the general kernel once, which compiles it and writes Numba's cache, and compile
    the summary's pass over the calls. The result, the verdict and the theory behind them
    (scipy's imports, about 0.5 s) are left to the caller (the server waits for the compile
    process's line that this is done)."""
    sim = tiny_runs()[0]
    sim.advance()
    sim._finished_delays()  # the summary's pass over the calls (compiled on its own)


def warm_single() -> None:
    """Run the single-engine kernel once, which compiles it into Numba's cache, or loads it
    from there (the server's ``runs._load_single``)."""
    sim = tiny_runs()[1]
    sim.single_kernel = True
    sim.advance()


def _compile_order() -> None:
    """Compile the summary's selection of a long run's percentiles into the cache."""
    import numpy as np
    _order.order_stats(np.arange(8.0), np.arange(2), np.empty(2))


# The functions run_kernel calls that Numba compiles on their own (each cached on its own;
# not those inlined by Numba, which are typed inside run_kernel), in the order run_kernel's
# typing meets them; what each calls is compiled with it.
_CALLEES = ("_snapshot", "_log_batch", "_remove_finished", "decoder_kv", "pf_unlink", "dq_push",
            "_heap_push", "_route_replica", "_enqueue_back", "_heap_pop", "prefill_phase",
            "decode_phase", "_decode_context")
# their scalar arguments are int64 but for these (the kernel's names are the same everywhere)
_SCALARS = {"t": 0.0, "chunked": True, "from_head": True}


def kernel_callees():
    """The kernel's functions compiled on their own, as (name, dispatcher), _CALLEES first."""
    from numba.core.registry import CPUDispatcher

    from llmsim import core, schedulers
    found = {}
    for mod in (core, schedulers):
        for name, f in vars(mod).items():
            if isinstance(f, CPUDispatcher) and f is not core.run_kernel \
                    and f.targetoptions.get("inline") != "always":
                found.setdefault(name, f)
    order = [n for n in _CALLEES if n in found] + sorted(set(found) - set(_CALLEES))
    return [(n, found[n]) for n in order]


def _compile_callees() -> None:
    """Compile the functions run_kernel calls, with the types run_kernel passes (its arrays,
    from a tiny Simulation, by parameter name), into Numba's cache. Run in a second process
    while the first types run_kernel itself, the first then loads them from the cache
    instead of compiling them. A function whose parameters it cannot type is left to the
    first process."""
    import inspect

    import numba
    import numpy as np

    import llmsim
    from llmsim import state as S
    sim = llmsim.Simulation(llmsim.loads_scenario(TINY_SCENARIO))
    for _, f in kernel_callees():
        params = inspect.signature(f.py_func).parameters
        # x: _shift's array, the decode queue's calls (int64) and its targets (int32)
        for x in (sim.dec_call, sim.dec_tgt) if "x" in params else (None,):
            values = [x if p == "x" else getattr(sim, p, None) for p in params]  # the arrays
            values = [S.flat(v) if p in S.FLAT else v for p, v in zip(params, values)]  # as the kernel takes them
            values = [v if isinstance(v, np.ndarray) else _SCALARS.get(p, 0) for p, v in zip(params, values)]
            try:
                f.compile(tuple(numba.typeof(v) for v in values))
            except Exception:  # noqa: BLE001 - the first process compiles it as it needs it
                pass
    # then the single-engine kernel, while the first process still compiles the general one
    warm_single()


def compile_here(general: bool = True, single: bool = True) -> None:
    """Make the kernels a command needs ready in this process: ``general``, core.run_kernel
    (it runs every scenario), and ``single``, _single.run_single (the runs _single.eligible
    accepts). On a cold cache the general one is compiled here while a child process compiles
    the functions it calls (about 11.5 s -> 9 s on two cores) and then the single-engine one;
    a command that needs only the single-engine one compiles just that (about 6 s). With the
    kernels on disk, it just loads them."""
    from llmsim import core
    helper = None
    if general and not in_cache(core.run_kernel, True):
        helper = _start_child("callees")
    try:
        if general:
            _compile_general()
        if single:
            warm_single()
    finally:
        if helper is not None and helper.poll() is None:
            helper.kill()  # what it compiled is in the kernel now (Numba writes cache files atomically)
            helper.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["callees"]:
        _compile_callees()
    elif sys.argv[1:] == ["order"]:
        _compile_order()
    else:
        # the general kernel first: it runs every scenario, so the server's runs go compiled as
        # soon as it is written; the single-engine kernel (~6 s more) only speeds some of them up
        _compile_general()
        sys.stdout.buffer.write(KERNEL_READY)
        sys.stdout.flush()
        warm_single()
        sys.stdout.buffer.write(SINGLE_READY)
        sys.stdout.flush()
        _compile_order()
