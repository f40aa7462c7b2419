"""The radix selection behind the summary's percentiles of a long run (llmsim/_order.py), on
its own: each case reaches one of its paths; the ranks are every order statistic the summary
asks for, and the ends. Then where it is compiled: never in the dashboard's server, whose
compile process writes it to Numba's cache for it."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmsim._order import order_stats

ROOT = Path(__file__).resolve().parent.parent


def _ranks(n):
    k50, k99 = (int(k) for k in np.floor((n - 1) * np.array([0.5, 0.99])))
    return np.array(sorted({min(k, n - 1) for k in (0, k50, k50 + 1, k99, k99 + 1, n - 1)}), dtype=np.int64)


def _same_order(x):
    ks = _ranks(len(x))
    xc = x.copy()
    got = order_stats(x, ks, np.empty(len(ks)))
    assert np.array_equal(x, xc), "x was modified"
    want = np.sort(x)[ks]
    assert [v.hex() for v in map(float, got)] == [v.hex() for v in map(float, want)], (got, want)


N = 200_003
_rng = np.random.default_rng(12)
ULP = np.spacing(0.02)


@pytest.mark.parametrize("x", [
    _rng.random(N),                                            # few per first-level bin: narrowed, then sorted
    _rng.exponential(size=N) * 1e-3,                           # many binades
    _rng.normal(size=N),                                       # negative and positive
    _rng.integers(0, 3, N) * 0.5,                              # a third per bin, each one value
    0.02 + _rng.integers(0, 3, N) * ULP,                       # one first-level bin: every digit down to the last
    0.02 + _rng.integers(0, 40_000, N) * ULP,                  # one first-level bin, the last digits differ
    np.full(N, 2.5),                                           # every bit alike
    np.where(_rng.random(N) < 0.9, 0.02, _rng.random(N)),      # most in one bin, the p99 elsewhere
    np.concatenate([[-np.inf, np.inf, -0.0, 0.0], _rng.normal(size=N)]),
    np.concatenate([np.full(N // 2, -1.0), _rng.random(N // 2) * 1e300]),
], ids=["uniform", "exponential", "normal", "three-values", "ulps", "ulps-wide", "constant",
        "tbt-like", "infinities", "huge"])
def test_radix_selection_is_the_sorted_arrays_order_statistics(x):
    _same_order(x)


def test_radix_selection_of_short_and_single_value_arrays():
    for n in (1, 2, 3, 7, 1025):
        _same_order(np.random.default_rng(n).random(n))
    _same_order(np.array([5.0]))


# the dashboard's process (llmsim_ui.runs turns compile_here off): a 50,000-value summary's
# percentiles, and whether the radix selection was ready, compiled, or loaded from the cache
DASHBOARD = """
import numpy as np
import llmsim_ui.runs  # noqa: F401
from llmsim import _order
from llmsim.simulate import _p50_p99
ready = _order.ready()
x = np.random.default_rng(0).exponential(size=50_000)
same = [float(v).hex() for v in _p50_p99(x)] == [float(v).hex() for v in np.percentile(x, [50, 99])]
st = _order.order_stats.stats
print(_order.compile_here, ready, same, sum(st.cache_hits.values()), sum(st.cache_misses.values()))
"""


def test_the_dashboard_never_compiles_the_selection_its_compile_process_writes_it(tmp_path):
    """The radix selection costs about 2 s of compiling, holding the GIL: never in the
    dashboard's server. On an empty Numba cache the server selects with numpy's partitions
    and compiles nothing; the compile process a cold server starts says when the kernel is in
    the cache (the server waits for that line only) and then writes the selection; the
    server's next summary loads it from the cache."""
    from llmsim import _kernel_cache

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path)}

    def dashboard():
        out = subprocess.run([sys.executable, "-c", DASHBOARD], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert dashboard() == ["False", "False", "True", "0", "0"]  # partitions; nothing compiled
    proc = subprocess.Popen([sys.executable, "-m", "llmsim._kernel_cache"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == _kernel_cache.KERNEL_READY
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert dashboard() == ["False", "True", "True", "1", "0"]   # loaded from the cache


def test_the_server_waits_for_the_kernels_line_not_for_the_selection(monkeypatch):
    """wait_precompile returns at the compile process's line, while the process goes on
    (compiling the selection); stopping the server stops it and a selection-only process."""
    from llmsim import _kernel_cache
    talk = ("import sys, time; sys.stdout.buffer.write(%r); sys.stdout.flush(); time.sleep(60)"
            % _kernel_cache.KERNEL_READY)
    proc = subprocess.Popen([sys.executable, "-c", talk], stdout=subprocess.PIPE)
    extra = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(_kernel_cache, "_child", [proc])
    monkeypatch.setattr(_kernel_cache, "_extra", [extra])
    monkeypatch.setattr(_kernel_cache, "_lines_read", [])
    try:
        _kernel_cache.wait_precompile(timeout_s=40)  # waiting for the process's end: 40 s, then killed
        assert proc.poll() is None, "wait_precompile waited for the process to end"
        _kernel_cache.wait_precompile(timeout_s=40)  # a second caller: at once
        assert _kernel_cache.stop_precompile()
        assert proc.poll() is not None and extra.poll() is not None
    finally:
        proc.kill()
        extra.kill()


def test_the_server_reads_the_general_kernels_line_then_the_single_engine_ones(monkeypatch):
    """The compile process writes the general kernel, says so, then the single-engine one
    and says so: wait_precompile() returns at the first line, wait_precompile(SINGLE_READY)
    at the second, each while the process goes on; a process that ends without a line ends
    the wait for it."""
    from llmsim import _kernel_cache
    talk = ("import sys, time; w = sys.stdout.buffer.write; w(%r); sys.stdout.flush(); time.sleep(2); "
            "w(%r); sys.stdout.flush(); time.sleep(60)" % (_kernel_cache.KERNEL_READY, _kernel_cache.SINGLE_READY))
    proc = subprocess.Popen([sys.executable, "-c", talk], stdout=subprocess.PIPE)
    monkeypatch.setattr(_kernel_cache, "_child", [proc])
    monkeypatch.setattr(_kernel_cache, "_extra", [])
    monkeypatch.setattr(_kernel_cache, "_lines_read", [])
    try:
        _kernel_cache.wait_precompile(timeout_s=40)
        assert _kernel_cache._lines_read == [_kernel_cache.KERNEL_READY] and proc.poll() is None
        _kernel_cache.wait_precompile(_kernel_cache.SINGLE_READY, timeout_s=40)
        assert _kernel_cache._lines_read[-1] == _kernel_cache.SINGLE_READY and proc.poll() is None
        _kernel_cache.wait_precompile(_kernel_cache.SINGLE_READY, timeout_s=40)  # at once
        assert _kernel_cache.stop_precompile()
    finally:
        proc.kill()
    silent = subprocess.Popen([sys.executable, "-c", "pass"], stdout=subprocess.PIPE)
    monkeypatch.setattr(_kernel_cache, "_child", [silent])
    monkeypatch.setattr(_kernel_cache, "_lines_read", [])
    assert not _kernel_cache.wait_precompile(_kernel_cache.SINGLE_READY, timeout_s=40)
    assert _kernel_cache._lines_read == [b""]  # its stdout closed: it ends
    assert not _kernel_cache.wait_precompile(timeout_s=40)  # and wrote neither line
    silent.wait(timeout=40)


def test_a_wait_for_the_second_line_does_not_hold_up_a_wait_for_the_first(monkeypatch):
    """A job waits for the single-engine kernel's line, the page's warm-up for the general
    kernel's: the warm-up returns at the first line while the job still waits (one reader held
    the process's output until the second line, ~9 s later on a cold server; a hostile pass).
    A caller that is gone stops waiting; the process goes on."""
    import threading
    from llmsim import _kernel_cache
    talk = ("import sys, time; w = sys.stdout.buffer.write; time.sleep(1); w(%r); sys.stdout.flush(); "
            "time.sleep(60); w(%r); sys.stdout.flush()" % (_kernel_cache.KERNEL_READY, _kernel_cache.SINGLE_READY))
    proc = subprocess.Popen([sys.executable, "-c", talk], stdout=subprocess.PIPE)
    monkeypatch.setattr(_kernel_cache, "_child", [proc])
    monkeypatch.setattr(_kernel_cache, "_lines_read", [])
    left = threading.Event()
    job = threading.Thread(target=lambda: _kernel_cache.wait_precompile(
        _kernel_cache.SINGLE_READY, timeout_s=120, gone=left.is_set))
    try:
        job.start()  # reads first
        assert _kernel_cache.wait_precompile(timeout_s=40)
        assert _kernel_cache._lines_read == [_kernel_cache.KERNEL_READY] and job.is_alive()
        left.set()  # the job's page closed
        job.join(10)
        assert not job.is_alive() and proc.poll() is None
        assert not _kernel_cache.wait_precompile(_kernel_cache.SINGLE_READY, gone=lambda: True)
    finally:
        proc.kill()
        left.set()
