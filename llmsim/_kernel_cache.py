"""Keep Numba's on-disk cache honest, and fill it in another process on a cold start.

Numba checks only the source file of the function it caches, but the kernel in core.py
inlines code from schedulers.py and state.py: after those change (a `git pull`, an
edit), a stale compiled kernel would be loaded silently. So a stamp of the three sources
sits beside the cache; when it differs, llmsim's cached kernels are dropped before Numba
looks at them.

A cold start (a fresh clone, a new Numba cache) compiles the kernel for about 10 s of
pure-Python work that holds the GIL. ``precompile()`` does that in a child process, which
writes Numba's cache while the caller goes on (the dashboard imports its UI and draws its
first page meanwhile, on the other core); ``wait_precompile()`` then waits for it, and the
caller's own first run loads the compiled kernel from the cache in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

_HERE = Path(__file__).parent
_SOURCES = ("core.py", "schedulers.py", "state.py")


def ensure_fresh_cache() -> None:
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((_HERE / name).read_bytes())
    stamp = digest.hexdigest()
    cache = _HERE / "__pycache__"
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


def kernel_on_disk() -> bool:
    """Whether Numba's cache holds a compiled kernel for the current sources (then the
    first run loads it, about 0.3 s, instead of compiling it, about 10 s). Reads Numba's
    cache index (internals: any surprise counts as "yes", so callers compile as before)."""
    from llmsim import core
    try:
        return len(core.run_kernel._cache._cache_file._load_index()) > 0
    except Exception:  # noqa: BLE001 - another Numba version: behave as without this check
        return True


def compile_kernel() -> float:
    """Compile (or load) the kernel by running a tiny scenario; returns the seconds spent.
    One kernel serves every scheduler, policy and network."""
    import llmsim
    t0 = time.perf_counter()
    sc = llmsim.loads_scenario(TINY_SCENARIO)
    llmsim.simulate(sc)
    return time.perf_counter() - t0


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


def precompile() -> bool:
    """If Numba's cache lacks the kernel, start a process that compiles it into the cache
    and return at once (True); False when the cache already has it. Once per process."""
    with _lock:
        if _child:
            return _child[0] is not None
        proc = None
        if not kernel_on_disk():
            env = dict(os.environ)
            root = str(_HERE.parent)
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            try:
                proc = subprocess.Popen([sys.executable, "-m", "llmsim._kernel_cache"], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            except OSError:
                proc = None  # no child: the caller compiles in its own process, as before
        _child.append(proc)
        return proc is not None


def wait_precompile(timeout_s: float = 300.0) -> None:
    """Wait for the compile process started by ``precompile()`` (if any). Whatever it
    did, the caller's next run is right: it loads the kernel from the cache, or compiles
    it itself when the child could not write the cache."""
    with _lock:
        proc = _child[0] if _child else None
    if proc is None:
        return
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _compile_into_cache() -> None:
    """The child of precompile(): run the kernel once, which compiles it and writes Numba's
    cache, and stop there. The result, the verdict and the theory behind them (scipy's
    imports, about 0.5 s) are left to the server, which waits for this process to end."""
    import llmsim
    llmsim.Simulation(llmsim.loads_scenario(TINY_SCENARIO)).advance()


if __name__ == "__main__":
    _compile_into_cache()
