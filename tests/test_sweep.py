"""Sweeps: the same rows on every executor, resume after a kill, named-field errors.

The executors: in-process, the embedded Dask LocalCluster, and a real ``dask scheduler``
with two ``dask worker`` processes started here through their command line. Runs are
small (2,000 requests a point) so that the file stays well under a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmsim import ConfigError
from llmsim.capacity import capacity_search
from llmsim.config import load_scenario
from llmsim.sweep import (DaskExecutor, InProcess, loads_sweep, read_results, result_columns,
                          run_sweep)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")

BASE = """
seed = 3
[workload]
num_requests = 2000
arrival = { process = "poisson", rate = 3.0 }
prompt_tokens = { dist = "uniform", low = 50, high = 400 }
output_tokens = { dist = "geometric", mean = 60 }
[engine]
scheduler = "sarathi"
token_budget = 512
kv_cache_tokens = 200000
batch_time = { model = "constant", seconds = 0.05 }
"""

SWEEP = BASE + """
[sweep]
seed = 5
record = ["throughput_rps", "ttft_p99_s", "e2e_p99_s", "preemptions"]
[sweep.axes]
"engine.scheduler" = ["vllm", "orca"]
"engine.token_budget" = [256, 1024]
load = [0.7, 1.3]
"""


def summary(df: pd.DataFrame) -> pd.DataFrame:
    return df[result_columns(df)].sort_values("point").reset_index(drop=True)


@pytest.fixture(scope="module")
def sweep():
    return loads_sweep(SWEEP, ROOT, name="t")


@pytest.fixture(scope="module")
def in_process(sweep):
    return run_sweep(sweep, executor=InProcess())


def test_in_process_rows(sweep, in_process):
    df = in_process
    assert list(df["point"]) == list(range(8)) and sweep.size == 8
    # vllm never chunks: a 256-token budget cannot hold a 400-token prompt -> an error row
    bad = df[(df["engine.scheduler"] == "vllm") & (df["engine.token_budget"] == 256)]
    assert len(bad) == 2 and bad["verdict"].isna().all()
    assert bad["error"].str.contains("token_budget").all()
    ok = df[df["error"] == ""]
    assert sorted(set(df["load"])) == [0.7, 1.3]  # the axis's own values, not recomputed ones
    np.testing.assert_allclose(ok["arrival_rate_rps"] * ok["load"].map({0.7: 1 / 0.7, 1.3: 1 / 1.3}),
                               ok["theory_optimal_capacity_rps"], rtol=1e-9)
    assert set(ok.loc[ok["load"] > 1.2, "verdict"]) == {"unstable"}
    assert set(ok.loc[(ok["load"] < 0.8) & (ok["scheduler"] == "orca"), "verdict"]) == {"stable"}
    # every point its own seeds, reproducibly
    assert df["seed"].nunique() == 8


def test_load_axis_is_the_theory_load(sweep):
    for rho in (0.5, 1.2):
        sc = sweep.scenario({"load": rho, "engine.token_budget": 1024})
        from llmsim.theory import analyze
        assert analyze(sc).load == pytest.approx(rho, rel=1e-9)


def test_batching_does_not_change_results(sweep, in_process):
    from dataclasses import replace
    df = run_sweep(replace(sweep, batch=3), executor=InProcess())
    pd.testing.assert_frame_equal(summary(df), summary(in_process), check_exact=True)


def test_local_cluster_is_bit_identical(sweep, in_process):
    with DaskExecutor(workers=2) as ex:
        assert ex.workers == 2
        df = run_sweep(sweep, executor=ex)
    pd.testing.assert_frame_equal(summary(df), summary(in_process), check_exact=True)


@pytest.fixture()
def dask_cli_cluster(tmp_path):
    """A scheduler and two workers started through the `dask` command line."""
    dask = str(Path(PY).parent / "dask")
    if not Path(dask).exists():
        pytest.skip("the dask command line is not installed")
    sfile = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(sfile)],
                              env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not sfile.is_file() and time.time() < deadline:
            time.sleep(0.2)
        assert sfile.is_file(), "dask scheduler did not start"
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(sfile), "--nthreads", "1",
                                           "--no-nanny", "--no-dashboard", "--name", f"w{len(procs)}"],
                                          env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        from distributed import Client
        address = json.loads(sfile.read_text())["address"]
        with Client(address, timeout=30) as c:
            c.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for p in procs[1:]:  # workers without a nanny: one process each, nothing left behind
            p.kill()
        procs[0].terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_dask_cli_cluster_is_bit_identical(sweep, in_process, dask_cli_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSIM_DASK_ADDRESS", dask_cli_cluster)
    from llmsim.sweep import make_executor
    with make_executor() as ex:  # the address from the environment
        assert dask_cli_cluster in ex.description and ex.workers == 2
        df = run_sweep(sweep, tmp_path / "out", executor=ex)
        # the capacity search runs its probes on the same executor, with the same answer
        sc = load_scenario_text(BASE)
        remote = capacity_search(sc, ["sarathi"], num_requests=1000, rel_tol=0.1, max_probes=4, executor=ex)
    pd.testing.assert_frame_equal(summary(df), summary(in_process), check_exact=True)
    local = capacity_search(sc, ["sarathi"], num_requests=1000, rel_tol=0.1, max_probes=4, workers=1)
    assert remote[0].probes == local[0].probes


def load_scenario_text(text):
    from llmsim import loads_scenario
    return loads_scenario(text)


class Counting(InProcess):
    def __init__(self):
        self.points = []

    def as_completed(self, fn, args):
        for a in args:
            self.points.extend(i for i, _ in a[1])
        yield from super().as_completed(fn, args)


def test_resume_after_a_killed_run_does_only_the_missing_points(tmp_path, sweep, in_process):
    f = tmp_path / "s.toml"
    f.write_text(SWEEP.replace("[sweep]\n", "[sweep]\nbatch = 1\nname = \"t\"\n"))
    out = tmp_path / "out"
    p = subprocess.Popen([PY, "-m", "llmsim", "sweep", str(f), "--out", str(out), "--in-process", "--quiet"],
                         env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and len(list((out / "parts").glob("*.parquet"))) < 3:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    parts = sorted((out / "parts").glob("*.parquet"))
    done = set(read_results(out)["point"])
    assert 3 <= len(done) and len(parts) == len(done)  # batch = 1: one part per point
    if len(done) == 8:
        pytest.skip("the run finished before it could be killed")
    before = {q.name: q.stat().st_mtime_ns for q in parts}
    s2 = loads_sweep(f.read_text(), tmp_path, name="t")
    with pytest.raises(ConfigError, match="--resume"):
        run_sweep(s2, out, executor=InProcess())
    ex = Counting()
    df = run_sweep(s2, out, executor=ex, resume=True)
    assert sorted(ex.points) == sorted(set(range(8)) - done)
    assert {q.name: q.stat().st_mtime_ns for q in parts} == before  # finished parts untouched
    pd.testing.assert_frame_equal(summary(df), summary(in_process), check_exact=True)
    # a second resume has nothing left to do
    ex = Counting()
    run_sweep(s2, out, executor=ex, resume=True)
    assert ex.points == []


def test_out_dir_of_another_sweep_is_refused(tmp_path, sweep):
    from dataclasses import replace
    small = replace(sweep, axes=sweep.axes[:1])
    run_sweep(small, tmp_path, executor=InProcess())
    with pytest.raises(ConfigError, match="different sweep"):
        run_sweep(replace(sweep, seed=99), tmp_path, executor=InProcess(), resume=True)


def test_random_and_latin_hypercube_designs():
    text = BASE + """
[sweep]
design = "latin-hypercube"
samples = 10
[sweep.axes]
load = { low = 0.5, high = 1.5 }
"engine.token_budget" = { low = 128, high = 2048, scale = "log", integer = true }
"engine.scheduler" = ["orca", "sarathi"]
"""
    s = loads_sweep(text, ROOT)
    pts = s.points()
    assert len(pts) == 10 and pts == loads_sweep(text, ROOT).points()  # reproducible
    strata = sorted(int((p["load"] - 0.5) / 0.1) for p in pts)
    assert strata == list(range(10))  # one point per tenth of the load range
    assert all(isinstance(p["engine.token_budget"], int) and 128 <= p["engine.token_budget"] <= 2048 for p in pts)
    assert {p["engine.scheduler"] for p in pts} == {"orca", "sarathi"}  # 5 and 5
    r = loads_sweep(text.replace("latin-hypercube", "random"), ROOT)
    assert len(r.points()) == 10 and r.points() != pts


def test_network_fields_by_name_and_index():
    text = (ROOT / "scenarios/agents/tandem.toml").read_text() + """
[sweep]
[sweep.axes]
"engines[0].token_budget" = [256, 512]
"""
    s = loads_sweep(text, ROOT / "scenarios/agents")
    name = s.base["engines"][1]["name"]
    sc = s.scenario({"engines[0].token_budget": 256, f"engines.{name}.scheduler": "orca"})
    assert sc.engines[0].token_budget == 256 and sc.engines[1].scheduler == "orca"


def test_a_preset_axis_replaces_the_base_memory_and_batch_time():
    from llmsim.presets import HARDWARE_PRESETS
    name = next(iter(HARDWARE_PRESETS))
    s = loads_sweep(BASE + f'[sweep]\n[sweep.axes]\n"engine.preset" = ["{name}"]\n', ROOT)
    sc = s.scenario({"engine.preset": name})
    assert sc.engine.kv_cache_tokens == HARDWARE_PRESETS[name].kv_cache_tokens
    assert sc.engine.batch_time.preset == name


BAD = [
    ("", "sweep: missing table [sweep]"),
    ("[sweep]\n", "sweep.axes: missing or empty"),
    ("[sweep]\ndesign = \"sobol\"\n[sweep.axes]\nload = [1]\n", "sweep.design: unknown value 'sobol'"),
    ("[sweep]\nreplications = 0\n[sweep.axes]\nload = [1]\n", "sweep.replications: 0 must be"),
    ("[sweep]\nfoo = 1\n[sweep.axes]\nload = [1]\n", "sweep: unknown key(s) ['foo']"),
    ("[sweep]\n[sweep.axes]\nload = [0]\n", "sweep.axes.load: 0 must be a load"),
    ("[sweep]\n[sweep.axes]\nload = []\n", "sweep.axes.load: an empty list"),
    ("[sweep]\n[sweep.axes]\nload = { low = 2, high = 1, num = 3 }\n", "sweep.axes.load: low = 2 must be <= high"),
    ("[sweep]\n[sweep.axes]\nload = { low = 0.5, high = 1 }\n", "sweep.axes.load.num: None must be"),
    ("[sweep]\ndesign = \"random\"\n[sweep.axes]\nload = { low = 0.5, high = 1 }\n", "sweep.samples: None"),
    ("[sweep]\n[sweep.axes]\n\"engine.token_budget\" = { low = 0, high = 9, num = 2, scale = \"log\" }\n",
     "sweep.axes.engine.token_budget.low: 0 must be > 0 on a log scale"),
    ("[sweep]\n[sweep.axes]\n\"engine.token_budget\" = [512, -1]\n",
     "sweep.axes.engine.token_budget = -1: engine.token_budget: -1 must be > 0"),
    ("[sweep]\n[sweep.axes]\n\"engine.scheduler\" = [\"orca\", \"fifo\"]\n",
     "sweep.axes.engine.scheduler = 'fifo': engine.scheduler"),
    ("[sweep]\n[sweep.axes]\n\"engine.tokens\" = [1]\n", "engine: unknown key(s) ['tokens']"),
    ("[sweep]\n[sweep.axes]\n\"gpu.memory\" = [1]\n", "sweep.axes.gpu.memory: the base scenario has no 'gpu'"),
    ("[sweep]\n[sweep.axes]\nseed = [1, 2]\n", "sweep.axes.seed: 'seed' cannot be swept"),
    ("[sweep]\nrecord = [\"p99\"]\n[sweep.axes]\nload = [1]\n", "sweep.record: unknown summary field(s) ['p99']"),
    ("[sweep]\nscenario = \"nope.toml\"\n[sweep.axes]\nload = [1]\n", "sweep.scenario: 'nope.toml' not found"),
    # the load overwrote the rate at every point (a hostile pass on the stability map)
    ("[sweep]\n[sweep.axes]\nload = [1]\n\"workload.arrival.rate\" = [1, 20]\n",
     "sweep.axes: load and workload.arrival.rate both set the arrival rate"),
]


@pytest.mark.parametrize("tail,message", BAD)
def test_bad_sweep_files_name_the_field(tail, message):
    text = tail if tail.startswith("[sweep]\nscenario") else BASE + tail
    with pytest.raises(ConfigError) as exc:
        loads_sweep(text, ROOT)
    assert message in str(exc.value)


def test_cli_bad_sweep_exits_2_with_one_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(BASE + "[sweep]\n[sweep.axes]\nload = [-1]\n")
    p = subprocess.run([PY, "-m", "llmsim", "sweep", str(f), "--in-process"], env=ENV, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: sweep.axes.load: -1 must be a load in (0, 100]"]


def test_cli_sweep_writes_parquet_and_csv(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(BASE + "[sweep]\nnum_requests = 1000\n[sweep.axes]\nload = [0.5, 1.5]\n")
    p = subprocess.run([PY, "-m", "llmsim", "sweep", str(f), "--in-process", "--csv", "--out", "o"],
                       env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "2 of 2 points done" in p.stdout
    df = pd.read_parquet(tmp_path / "o/results.parquet")
    assert list(df["verdict"]) == ["stable", "unstable"]
    assert len(pd.read_csv(tmp_path / "o/results.csv")) == 2


@pytest.mark.parametrize("flags,address,compiled", [
    ([], None, True),                                   # the embedded cluster: compiled here once
    (["--workers", "3"], None, True),
    (["--in-process"], None, False),                    # the run compiles what it takes
    (["--dask", "tcp://127.0.0.1:1"], None, False),     # remote workers: their own caches
    ([], "tcp://127.0.0.1:1", False),
])
def test_cli_sweep_compiles_once_before_its_local_workers_start(tmp_path, monkeypatch, flags, address, compiled):
    """`llmsim sweep` on the embedded cluster compiles the kernels in its own process before the
    workers start (they then load them from the cache: a cold quick.toml took 21.6 s when each
    of two workers compiled both kernels, 18.1 s now); not for an in-process run or a remote
    cluster."""
    from llmsim import _kernel_cache, cli, sweep as sweep_mod
    calls = []

    class Stop(Exception):
        pass

    def executor(*a, **k):
        calls.append("executor")
        raise Stop
    monkeypatch.setattr(_kernel_cache, "compile_here", lambda *a, **k: calls.append("compile"))
    monkeypatch.setattr(sweep_mod, "make_executor", executor)
    if address:
        monkeypatch.setenv("LLMSIM_DASK_ADDRESS", address)
    else:
        monkeypatch.delenv("LLMSIM_DASK_ADDRESS", raising=False)
    f = tmp_path / "s.toml"
    f.write_text(BASE + "[sweep]\nnum_requests = 1000\n[sweep.axes]\nload = [0.5, 1.5]\n")
    with pytest.raises(Stop):
        cli.cmd_sweep(cli.build_parser().parse_args(["sweep", str(f), "--quiet", *flags]))
    assert calls == (["compile", "executor"] if compiled else ["executor"])


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios/sweeps").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_sweep_files_load(path):
    from llmsim.sweep import load_sweep
    s = load_sweep(path)
    assert s.name == path.stem and s.size == len(s.points()) >= 10


@pytest.mark.parametrize("path", ["scenarios/quickstart.toml", "scenarios/agents/react.toml"])
def test_record_offers_every_numeric_summary_field(path):
    """`record` is checked against a list; a summary field added later must join it."""
    from dataclasses import replace
    from llmsim import simulate
    from llmsim.sweep import _summary_fields
    sc = replace(load_scenario(ROOT / path), num_requests=1000)
    s = simulate(sc).summary
    numeric = {k for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numeric - {"seed", "wall_seconds"} == set(_summary_fields(sc))


def test_replicas_and_router_are_axes_like_any_field():
    """Pools (SPEC §7): `engine.replicas` and `engine.router` vary by their dotted names, and
    the load axis scales the rate with the pool's capacity."""
    from llmsim.sweep import load_sweep
    from llmsim.theory import analyze
    s = load_sweep(ROOT / "scenarios/sweeps/routers.toml")
    assert s.size == 40
    rr = s.scenario({"engine.router": "round_robin", "workload.arrival.rate": 30.0})
    assert rr.engine.router == "round_robin" and rr.total_rate == 30.0
    # a pool's load is against its capacity under its own router (llmsim.analyze)
    rr = s.scenario({"engine.router": "round_robin", "load": 0.6})
    jsq = s.scenario({"engine.router": "jsq_tokens", "load": 0.6})
    assert jsq.total_rate == pytest.approx(0.6 * 50.14, rel=1e-3)
    assert rr.total_rate == pytest.approx(0.6 * 2 * 16.71, rel=1e-3)
    two = loads_sweep((ROOT / "scenarios/deploy/jsq_two_replicas.toml").read_text()
                      + "[sweep]\n[sweep.axes]\n\"engine.replicas\" = [1, 2, 4]\nload = [0.9]\n",
                      ROOT / "scenarios/deploy")
    rates = [two.scenario(p).total_rate for p in two.points()]
    assert rates[1] == pytest.approx(2 * rates[0], rel=1e-6) and rates[2] == pytest.approx(4 * rates[0], rel=1e-6)
    assert analyze(two.scenario(two.points()[2])).load == pytest.approx(0.9, rel=1e-9)
