"""Long jobs in the server's worker processes (llmsim_ui/jobs.py): the stability map, the
capacity page and the Model page's boundary search run there, so that the server's own
process (whose event loop serves every page) never computes them."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from llmsim import ConfigError, budget
from llmsim.capacity import capacity_search
from llmsim.sweep import InProcess, loads_sweep, result_columns, run_sweep
from llmsim_ui import jobs
from test_sweep import SWEEP  # vllm and orca x two budgets x loads 0.7 and 1.3

LIMITS = budget.Limits.demo()


@pytest.fixture(autouse=True)
def _fresh_pool():
    jobs.shutdown()
    yield
    jobs.shutdown()


def test_a_jobs_tasks_run_in_a_worker_below_the_servers_priority_under_its_limits():
    small = budget.Limits(max_calls=1234)
    with jobs.job(small) as ex:
        pid = ex.call(os.getpid)
        assert pid != os.getpid()
        assert ex.call(os.nice, 0) == os.nice(0) + jobs.NICE
        assert ex.call(budget.current) == small
    assert jobs.running()


def test_a_cold_servers_workers_start_once_the_single_engine_kernel_is_written(monkeypatch):
    """On a cold server a job waits for the compile process's second line (the single-engine
    kernel in the cache) before its workers start, so that they load both kernels rather than
    each compile the second one."""
    from llmsim import _kernel_cache
    seen = []
    monkeypatch.setattr(_kernel_cache, "wait_precompile", lambda line=None, **k: seen.append((line, jobs._pool)))
    with jobs.job(LIMITS) as ex:
        assert ex.call(os.getpid) != os.getpid()
    assert seen == [(_kernel_cache.SINGLE_READY, None)]  # before the pool started


def test_a_map_and_a_capacity_search_in_a_worker_equal_the_in_process_ones():
    sweep = loads_sweep(SWEEP, ".", name="t")
    here = run_sweep(sweep, executor=InProcess())
    done = []
    with jobs.job(LIMITS) as ex:
        there = run_sweep(sweep, executor=ex, progress=lambda d, t: done.append(d))
        sc = sweep.scenario({"engine.scheduler": "orca", "engine.token_budget": 512, "load": 0.9})
        cap_there = capacity_search(sc, ["orca"], num_requests=2000, max_probes=4, executor=ex)[0]
    cols = result_columns(here)
    assert here[cols].equals(there[cols])
    assert set(there["verdict"].dropna()) == {"stable", "unstable"}  # (vllm cannot run prompts over b = 256)
    assert done[-1] == 8
    cap_here = capacity_search(sc, ["orca"], num_requests=2000, max_probes=4, workers=1)[0]
    assert cap_there.probes == cap_here.probes and cap_there.interval == cap_here.interval


def test_a_task_s_error_comes_back_as_itself():
    sc = loads_sweep(SWEEP, ".", name="t").scenario({"engine.scheduler": "orca", "engine.token_budget": 512,
                                                     "load": 0.9})
    with jobs.job(LIMITS) as ex, pytest.raises(ConfigError, match=r"rel_tol: 5\.0 must be in"):
        ex.call(capacity_search, sc, None, 2000, 5.0)  # the library's own check, raised in the worker


def test_a_page_closed_while_its_task_runs_leaves_at_once():
    with jobs.job(LIMITS, gone=lambda: True) as ex:
        t0 = time.monotonic()
        with pytest.raises(ConfigError, match="the page was closed"):
            ex.call(time.sleep, 5)
        assert time.monotonic() - t0 < 2


def test_a_dead_worker_fails_its_job_and_the_next_job_starts_a_fresh_pool():
    with jobs.job(LIMITS) as ex, pytest.raises(ConfigError, match="worker process of the server stopped"):
        ex.call(os._exit, 3)
    with jobs.job(LIMITS) as ex:
        assert ex.call(os.getpid) != os.getpid()


def test_idle_workers_stop(monkeypatch):
    monkeypatch.setattr(jobs, "IDLE_S", 0.4)
    with jobs.job(LIMITS) as ex:
        ex.call(os.getpid)
        time.sleep(0.8)
        assert jobs.running()  # not while a job holds the pool
    t0 = time.monotonic()
    while jobs.running() and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert not jobs.running()
    with jobs.job(LIMITS) as ex:  # and start again at the next job
        assert ex.call(os.getpid) != os.getpid()


def test_workers_end_when_their_server_is_killed_outright(tmp_path):
    """SIGKILL (or the OOM killer) gives the server no stop to run: its workers must still
    end, or each restart of a supervised server leaves ~200 MiB per worker behind."""
    import signal
    import subprocess
    import sys
    script = ("import os, sys, time; sys.path.insert(0, sys.argv[1]); from llmsim import budget; "
              "from llmsim_ui import jobs\n"
              "with jobs.job(budget.Limits.demo()) as ex:\n"
              "    print(ex.call(os.getpid), flush=True)\n"
              "    time.sleep(600)\n")
    server = subprocess.Popen([sys.executable, "-c", script, jobs.ROOT], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        worker = int(server.stdout.readline())
        assert Path(f"/proc/{worker}").exists()
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        t0 = time.monotonic()
        while _alive(worker) and time.monotonic() - t0 < 15:
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (a zombie, or a pid gone, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_job_whose_page_closed_while_the_kernel_compiled_starts_no_workers(monkeypatch):
    """A cold server: a job waits for the single-engine kernel's line inside its batch slot; a
    page closed meanwhile stops waiting (it held the slot for the rest of the compile: a hostile
    pass) and starts no worker."""
    from llmsim import _kernel_cache
    monkeypatch.setattr(jobs, "_pool", None)
    monkeypatch.setattr(_kernel_cache, "wait_precompile", lambda line=None, gone=None, **k: not gone())
    with pytest.raises(ConfigError, match="page was closed"):
        with jobs.job(LIMITS, gone=lambda: True):
            pass
    assert jobs._pool is None
