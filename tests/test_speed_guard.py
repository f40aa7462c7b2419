"""Guards of the speed work (issue: speed end to end) that need no clock: a large run's
summary and verdict come from numpy arrays, never from pandas (a million-row DataFrame
costs more than the run); literal arguments do not make Numba compile a function twice."""

import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import llmsim
from llmsim import core, load_scenario
from llmsim import schedulers as SC

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_pandas(monkeypatch):
    """pandas cannot be imported, and building a DataFrame or Series fails loudly."""
    def refuse(self, *a, **k):
        raise AssertionError("a pandas object was built")

    monkeypatch.setattr(pd.DataFrame, "__init__", refuse)
    monkeypatch.setattr(pd.Series, "__init__", refuse)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError


@pytest.mark.parametrize("path", ["scenarios/w1.toml", "scenarios/agents/fork_join.toml"])
def test_simulate_summary_and_verdict_never_touch_pandas(no_pandas, path):
    sc = replace(load_scenario(ROOT / path), num_requests=100_000)
    res = llmsim.simulate(sc)
    assert res.summary["completed"] > 0
    assert res.verdict.verdict in ("stable", "unstable", "inconclusive")
    assert len(res.timeseries_column("time_s")) > 100
    with pytest.raises(ImportError):  # the guard works: the tables do need pandas
        res.requests


def test_verdict_is_the_same_from_columns_and_from_the_dataframe():
    sc = replace(load_scenario(ROOT / "scenarios/agents/fork_join.toml"), num_requests=3000)
    res = llmsim.simulate(sc)

    class Frame:  # a result that only has the DataFrames (the older interface)
        scenario, summary, timeseries = res.scenario, res.summary, res.timeseries
        workflows, requests = res.workflows, res.requests

    assert llmsim.verdict(Frame()) == res.verdict
    assert math.isfinite(res.verdict.window_arrival_rate_rps)


def test_each_kernel_function_is_compiled_once():
    """A literal True/False or 0 passed to a jitted callee makes Numba compile one
    specialisation per value (seconds of cold start); every function has one signature,
    but _shift, which moves the decode queue's int64 calls and int32 targets: two."""
    sc = replace(load_scenario(ROOT / "scenarios/w1.toml"), num_requests=500)
    sc = replace(sc, engines=(replace(sc.engine, token_budget=2048),))
    for sched in ("fastertransformer", "vllm", "orca", "sarathi"):
        llmsim.Simulation(sc.with_scheduler(sched)).advance()
    twice = {}
    for mod in (core, SC):
        for name, f in vars(mod).items():
            sigs = getattr(f, "signatures", None)
            if sigs is not None and len(sigs) > (2 if name == "_shift" else 1):
                twice[f"{mod.__name__}.{name}"] = [str(s) for s in sigs]
    assert not twice, twice
    shift = sorted(str(s[0]) for s in SC._shift.signatures)  # none when the kernel came from the cache
    assert shift in ([], ["array(int32, 1d, C)", "array(int64, 1d, C)"]), shift


def test_capacity_search_without_rounds_finds_what_rounds_find():
    """The pooled search submits a scheduler's next probes as soon as its own are back (no
    waiting for the slowest scheduler); every scheduler's probes, and so the result, are
    those of the one-process search, which goes round by round."""
    from llmsim.capacity import capacity_search
    sc = load_scenario(ROOT / "scenarios/quickstart.toml")
    sc = replace(sc, engines=(replace(sc.engine, token_budget=4096),))
    scheds = ["fastertransformer", "sarathi", "vllm"]
    serial = capacity_search(sc, scheds, num_requests=1000, max_probes=5, workers=1)
    pooled = capacity_search(sc, scheds, num_requests=1000, max_probes=5, workers=2)
    assert [r.as_dict() for r in pooled] == [r.as_dict() for r in serial]
    assert all(len(r.probes) >= 3 for r in serial)


def test_import_llmsim_leaves_out_the_heavy_libraries():
    """`import llmsim` (the CLI, the dashboard's compile process) loads numba and numpy but
    not pandas or scipy.stats (~0.3 s and ~0.7 s): they are imported where used."""
    import subprocess
    code = ("import sys, llmsim; print(sorted(m for m in ('pandas', 'scipy.stats', 'dask', 'pyarrow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]", out.stdout


def test_a_verdict_leaves_out_scipy_stats():
    """No verdict costs a scipy.stats import (0.3-0.7 s, paid by the first run of each server
    process that needed it: the dashboard's default page, four schedulers, waited ~0.35 s for
    vLLM's): the t quantile and the Poisson laws of vLLM's and orca's theory chains come from
    scipy.special. The warm-up's run (sarathi, uniform and geometric lengths), then every
    scheduler on it, then Poisson prompt and output lengths."""
    import subprocess
    code = ("import sys, llmsim; from llmsim import _kernel_cache as K; "
            "sc = llmsim.loads_scenario(K.TINY_SCENARIO); "
            "r = llmsim.simulate(sc); "
            "assert r.verdict.verdict in ('stable', 'unstable', 'inconclusive'); "
            "[llmsim.simulate(sc.with_scheduler(s)).verdict for s in llmsim.SCHEDULERS]; "
            "t = llmsim.scenario_from_table({'seed': 1, 'workload': {'num_requests': 300, "
            "'arrival': {'process': 'poisson', 'rate': 5.0}, 'prompt_tokens': {'dist': 'poisson', 'mean': 300}, "
            "'output_tokens': {'dist': 'poisson', 'mean': 50}}, 'engine': {'scheduler': 'orca'}}); "
            "[llmsim.simulate(t.with_scheduler(s)).verdict for s in llmsim.SCHEDULERS]; "
            "print('scipy.stats' in sys.modules, 'scipy.special' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr


def test_the_callee_compile_types_what_the_kernel_calls(tmp_path):
    """On a cold cache the command line compiles the kernel while a helper process compiles
    the functions run_kernel calls, which the kernel's compile then loads from the cache:
    that helps only if the helper compiled exactly the signatures the kernel needs. In a
    fresh Numba cache: the callees first, then the kernel; the kernel's compile must not add
    a signature to any callee (it would if one had been typed differently), and every callee
    must have been compiled (its parameters were all typed): once, or twice for _shift,
    which moves the decode queue's int64 calls and int32 targets."""
    import os
    import subprocess
    code = (
        "from llmsim import _kernel_cache as K\n"
        "K._compile_callees()\n"
        "before = {n: [str(s) for s in f.signatures] for n, f in K.kernel_callees()}\n"
        "K._compile_general()\n"
        "K.warm_single()\n"
        "after = {n: [str(s) for s in f.signatures] for n, f in K.kernel_callees()}\n"
        "print(len(before), [n for n in before\n"
        "                    if len(before[n]) != (2 if n == '_shift' else 1) or before[n] != after[n]])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    n, rest = out.stdout.split(" ", 1)
    assert int(n) >= 20 and rest.strip() == "[]", out.stdout


@pytest.mark.parametrize("scheduler,compiled", [("sarathi", "run_single"), ("vllm", "run_kernel")])
def test_a_cold_command_line_run_gives_the_warm_ones_result(tmp_path, scheduler, compiled):
    """`llmsim run` on an empty Numba cache prints what a run with the cache filled prints,
    wall time aside. It compiles the kernel its run takes (the single-engine one for sarathi,
    about 6 s; the general one for vllm, with its callees compiled by a helper process), not
    both: a cold run of the quickstart took 19 s when it compiled both, 9 s now."""
    import os
    import subprocess
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "llmsim", "run", str(ROOT / "scenarios/quickstart.toml"),
           "--scheduler", scheduler, "--num-requests", "2000"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    cached = sorted(f.name.split("-")[0] for f in tmp_path.rglob("*.nbi"))
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    outs = [first, second]
    assert [o.returncode for o in outs] == [0, 0], outs[0].stderr
    lines = [[x for x in o.stdout.splitlines() if not x.startswith("wall")] for o in outs]
    assert lines[0] == lines[1] and "verdict" in outs[0].stdout
    assert f"{'_single' if compiled == 'run_single' else 'core'}.{compiled}" in cached, cached
    if compiled == "run_single":  # and not the general kernel, ~9-12 s of compiling
        assert "core.run_kernel" not in cached, cached


def _summary(sc, until_s=None):
    sim = llmsim.Simulation(sc)
    arrays = [sim.pool_p.copy(), sim.pool_d.copy(), sim.jf.copy(), np.array([sim.horizon])]
    sim.advance(until_s)
    s = dict(sim.summary())
    s.pop("wall_seconds")
    return s, arrays


@pytest.mark.parametrize("path,until_s", [("scenarios/w1.toml", None), ("scenarios/w1.toml", 40.0),
                                          ("scenarios/agents/fork_join.toml", 30.0)])
def test_two_threads_give_the_same_numbers(monkeypatch, path, until_s):
    """Large runs draw arrival times (when their number is known: W1), prompts and outputs
    and read the finished calls on two threads (llmsim._calls); the threshold lowered, a
    small run takes those paths (part-way through, with unfinished calls in both halves of
    the call rows) and must give exactly what one thread gives."""
    from llmsim import _calls
    sim_mod = sys.modules["llmsim.simulate"]  # (llmsim.simulate is also the function)
    sc = replace(load_scenario(ROOT / path), num_requests=3_000)
    calls = []
    real = _calls.finished_delays

    def counting(ci, *a):
        calls.append(ci.shape[0])
        return real(ci, *a)

    monkeypatch.setattr(_calls, "finished_delays", counting)
    monkeypatch.setattr(_calls, "cores", lambda: 1)
    one, arrays_one = _summary(sc, until_s)
    assert len(calls) == 1
    monkeypatch.setattr(_calls, "cores", lambda: 2)
    monkeypatch.setattr(_calls, "PARALLEL_MIN", 64)
    started = []
    monkeypatch.setattr(sim_mod, "prefault", lambda *a: started.append(_calls.prefault(*a)) or started[-1])
    two, arrays_two = _summary(sc, until_s)
    assert len(started) == 1  # the call rows' pages mapped on a second thread, racing the kernel
    if started[0] is not None:
        started[0].result()
    assert len(calls) == 3 and calls[1] + calls[2] == calls[0]  # the rows in two halves
    assert one["completed"] < one["arrived"] or until_s is None
    assert two == one
    for a, b in zip(arrays_one, arrays_two):
        np.testing.assert_array_equal(a, b)
    assert sim_mod._known_arrivals(sc) == 3_000  # one Poisson class: the background arrivals ran


def test_a_summary_part_way_and_at_the_end_on_two_threads(monkeypatch):
    """A large run's first summary writes its delays into scratch mapped during the run;
    a later one (the run resumed) gets fresh arrays: both equal one thread's."""
    from llmsim import _calls
    sc = replace(load_scenario(ROOT / "scenarios/w1.toml"), num_requests=3_000)
    got = {}
    for n_cores, threshold in ((1, _calls.PARALLEL_MIN), (2, 64)):
        monkeypatch.setattr(_calls, "cores", lambda n=n_cores: n)
        monkeypatch.setattr(_calls, "PARALLEL_MIN", threshold)
        sim = llmsim.Simulation(sc)
        sim.advance(40.0)
        assert (sim._scratch is not None) == (n_cores == 2)
        first = dict(sim.summary())
        assert sim._scratch is None
        sim.advance()
        got[n_cores] = [first, dict(sim.summary())]
        for s in got[n_cores]:
            s.pop("wall_seconds")
    assert got[2] == got[1]
    assert got[1][0]["completed"] < got[1][1]["completed"]


def test_prefault_maps_pages_and_leaves_their_contents(monkeypatch):
    """prefault (madvise MADV_POPULATE_WRITE on a second thread) maps an array's untouched
    pages, so the process's resident memory grows by about its size, and changes nothing
    in it: rows written before it keep their values, untouched ones stay zero."""
    from llmsim import _calls
    if _calls._MADVISE is None:
        pytest.skip("no madvise here (not Linux)")
    monkeypatch.setattr(_calls, "cores", lambda: 2)
    import mmap
    # 14 MiB of fresh private pages from the OS (numpy's zeros may reuse freed, resident ones)
    buf = mmap.mmap(-1, 14 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    a = np.frombuffer(buf, dtype=np.int64).reshape(-1, 14)
    a[[0, -1]] = np.arange(14)  # two pages touched (two huge pages, where numpy asks for them)
    want = a.copy()

    def resident():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = resident()
    b = _calls.prefault(len(a), a)
    mapped = b.result()
    if mapped == 0:
        pytest.skip("MADV_POPULATE_WRITE refused here (Linux older than 5.14)")
    assert mapped >= a.nbytes - 2 * os.sysconf("SC_PAGE_SIZE")
    assert resident() - before >= 0.5 * a.nbytes
    np.testing.assert_array_equal(a, want)
    assert _calls.prefault(_calls.PARALLEL_MIN - 1, a) is None  # too small to be worth a thread
    del a
    buf.close()


def test_in_parallel_raises_a_threads_error():
    from llmsim._calls import in_parallel
    assert in_parallel(lambda: 1, lambda: 2, lambda: 3) == [1, 2, 3]
    with pytest.raises(ZeroDivisionError):
        in_parallel(lambda: 1, lambda: 1 / 0)


@pytest.mark.parametrize("user_dir", [False, True])
def test_a_source_change_drops_the_cached_kernels_wherever_numba_keeps_them(tmp_path, user_dir):
    """The stale-kernel guard (``_kernel_cache.ensure_fresh_cache``, run when llmsim.core is
    imported) looks where Numba's own locator puts llmsim's cache: ``llmsim/__pycache__``, or
    a subdirectory of ``NUMBA_CACHE_DIR`` when that is set (there it looked in __pycache__
    only, and a kernel compiled before an edit of schedulers.py stayed in use; found as a
    hostile visitor would). A copy of the package; compiled files stood in by empty ones."""
    import shutil, subprocess
    pkg = tmp_path / "tree" / "llmsim"
    shutil.copytree(ROOT / "llmsim", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(pkg.parent))
    env.pop("NUMBA_CACHE_DIR", None)
    if user_dir:
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")

    def import_core() -> Path:
        out = subprocess.run([sys.executable, "-c", "import llmsim.core, llmsim._kernel_cache as k; "
                              "print(k.numba_cache_dir())"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())

    cache = import_core()
    if user_dir:
        assert cache.parent == tmp_path / "numba" and cache.name.startswith("llmsim_")
    else:
        assert cache == pkg / "__pycache__"
    assert (cache / "kernel-sources.sha256").is_file()
    kernels = [cache / "core.run_kernel-1.py311.nbi", cache / "core.run_kernel-1.py311.0.nbc",
               cache / "_single.run_single-1.py311.nbi"]
    for f in kernels:
        f.write_bytes(b"")
    import_core()  # the same sources: kept
    assert all(f.exists() for f in kernels)
    with open(pkg / "schedulers.py", "a") as f:
        f.write("\n# an edit\n")
    assert import_core() == cache
    assert not any(f.exists() for f in kernels)  # an inlined source changed: dropped
