"""A run that stops to grow its arrays (the kernel's NEED_ROOM) resumes exactly where it
stopped: growing never changes a result. Here the arrays grow by as little as they can, so
the kernel stops after nearly every call it creates -- between the arrivals of one instant
too, the case that needs care (docs/model.md: at one instant the iteration ends, then the
arrivals, then the batches are formed)."""

from pathlib import Path

import numba
import numpy as np
import pytest

import llmsim
from llmsim import Simulation
from llmsim import state as S

ROOT = Path(__file__).resolve().parent.parent


class TightSimulation(Simulation):
    """Starts with room for one call beyond the margin and grows the call arrays by just
    what the kernel asks for: a NEED_ROOM after nearly every call created."""

    def __init__(self, sc):
        super().__init__(sc)
        cap = self._margin + 1
        self.ci, self.cf = self.ci[:cap].copy(), self.cf[:cap].copy()
        self.heap_t, self.heap_c = self.heap_t[:cap].copy(), self.heap_c[:cap].copy()
        self.grows = 0

    def _grow(self):
        self.grows += 1
        k = int(self.gi[S.G_NCALLS]) + self._margin - len(self.ci)
        if k > 0:
            self.ci = np.concatenate([self.ci, np.zeros((k, S.N_CI), dtype=np.int64)])
            self.cf = np.concatenate([self.cf, np.empty((k, S.N_CF))])
            self.heap_t = np.concatenate([self.heap_t, np.zeros(k)])
            self.heap_c = np.concatenate([self.heap_c, np.zeros(k, dtype=np.int64)])
        super()._grow()  # the other capacities, as usual


def _trace(n: int, group: int, gap: float) -> str:
    """n requests arriving `group` at a time (the same timestamp, as a trace with whole
    seconds has), a group every `gap` seconds."""
    rng = np.random.default_rng(7)
    rows = ["arrival_time_s,prompt_tokens,output_tokens"]
    for i in range(n):
        rows.append(f"{(i // group) * gap:.3f},{rng.integers(64, 961)},{rng.integers(1, 200)}")
    return "\n".join(rows) + "\n"


def _scenario_with_trace(scheduler: str, group: int, gap: float):
    table = {
        "name": "groups", "seed": 3,
        "engine": {"scheduler": scheduler, "token_budget": 2048, "kv_cache_tokens": 1_000_000,
                   "batch_time": {"model": "constant", "seconds": 0.02}},
        "workload": {"arrival": {"process": "trace", "path": "groups.csv"}},
    }
    return llmsim.scenario_from_table(table, traces={"groups.csv": _trace(600, group, gap)})


def _assert_same_run(a: Simulation, b: Simulation) -> None:
    n = int(a.gi[S.G_NCALLS])
    assert int(b.gi[S.G_NCALLS]) == n
    for name, x, y in [("ci", a.ci[:n], b.ci[:n]), ("cf", a.cf[:n], b.cf[:n]), ("jf", a.jf, b.jf),
                       ("ji", a.ji, b.ji), ("rec", a.rec[:a.gi[S.G_REC_N]], b.rec[:b.gi[S.G_REC_N]])]:
        assert x.tobytes() == y.tobytes(), f"{name} differs"
    sa, sb = a.summary(), b.summary()
    sa.pop("wall_seconds", None)
    sb.pop("wall_seconds", None)
    assert repr(sa) == repr(sb)


@pytest.mark.parametrize("scheduler", ["sarathi", "orca", "vllm", "fastertransformer"])
@pytest.mark.parametrize("group,gap", [(3, 2.0), (40, 1.0)])
def test_arrivals_sharing_an_instant(scheduler, group, gap):
    # light load (the engine is often idle when a group arrives): before the fix, a stop
    # right after a group's last arrival left the idle engine without a batch until the next
    # group, 2 s later
    sc = _scenario_with_trace(scheduler, group, gap)
    whole, tight = Simulation(sc).advance(), TightSimulation(sc).advance()
    assert tight.grows > 100  # the case is really exercised
    _assert_same_run(whole, tight)


@pytest.mark.parametrize("path", ["scenarios/agents/react.toml", "scenarios/agents/fork_join.toml",
                                  "scenarios/agents/cyclic.toml"])
def test_agent_networks(path):
    from dataclasses import replace
    sc = llmsim.load_scenario(ROOT / path)
    sc = replace(sc, num_requests=400)
    whole, tight = Simulation(sc).advance(), TightSimulation(sc).advance()
    assert tight.grows > 100
    _assert_same_run(whole, tight)


def _w1_small(scheduler: str, **engine):
    table = {
        "name": "w1-small", "seed": 5,
        "engine": {"scheduler": scheduler, "token_budget": 512, "max_batch_size": 256,
                   "kv_cache_tokens": 1_000_000, "batch_time": {"model": "constant", "seconds": 0.02},
                   **engine},
        "workload": {"num_requests": 1500, "arrival": {"process": "poisson", "rate": 30.0},
                     "prompt_tokens": {"dist": "uniform", "low": 64, "high": 960},
                     "output_tokens": {"dist": "geometric", "mean": 256}},
    }
    if scheduler == "vllm":  # W1 under memory pressure: decoders are preempted and readmitted
        table["engine"].update(token_budget=8192, kv_cache_tokens=60_000)
        table["workload"]["arrival"]["rate"] = 13.7
    return llmsim.scenario_from_table(table)


@pytest.mark.parametrize("scheduler", ["sarathi", "orca", "vllm"])
def test_decode_rounds_rebase(scheduler):
    """The decode queue's targets are int32 (state.ROUND_REBASE): an engine's rounds count
    from 0 again when they reach 2**30. A run whose rounds start 100 below that crosses it
    and gives the run's results exactly (preempted decoders' progress included)."""
    sc = _w1_small(scheduler)
    plain = Simulation(sc).advance()
    high = Simulation(sc)
    high.ei[:, S.E_ROUND] = S.ROUND_REBASE - 100
    high.advance()
    rounds = int(plain.ei[0, S.E_ROUND])
    assert rounds > 500  # the run crosses the rebase with many rounds to go
    assert int(high.ei[0, S.E_ROUND]) == rounds - 100  # counted from 0 after the rebase
    if scheduler == "vllm":
        assert int(plain.ei[0, S.E_PREEMPTS]) > 50
    _assert_same_run(plain, high)


class TightQueueSimulation(Simulation):
    """Starts each decode queue's region at the least the kernel's room check allows
    (twice the margin, plus two) and grows it by as little as the kernel asks."""

    def __init__(self, sc):
        super().__init__(sc)
        self._size_run([2 * self._margin + 2] * len(self.ei))
        self.grows = 0

    def _grow(self):
        ei, m = self.ei, self._margin
        short = 2 * (ei[:, S.E_NDEC] + m) > ei[:, S.E_RUN_CAP]
        if short.any():
            self.grows += 1
            self._size_run([int(2 * (n + m) + 2) if s else int(c)
                            for s, n, c in zip(short, ei[:, S.E_NDEC], ei[:, S.E_RUN_CAP])])
        super()._grow()  # the other capacities, as usual (and the queues' flag cleared)


@pytest.mark.parametrize("python_kernel", [
    True,
    # compiled without bounds checks an overrun writes past the array (a crash, not a failure):
    # .ci/run's bounds-checked pass runs this file with NUMBA_BOUNDSCHECK=1
    pytest.param(False, marks=pytest.mark.skipif(not numba.config.BOUNDSCHECK,
                                                 reason="needs NUMBA_BOUNDSCHECK=1"))])
def test_decode_queues_grow_before_they_overflow(python_kernel):
    """A decode queue outgrows its region many times (orca on W1 at 30 requests/s: its
    queue grows past max_batch_size). The kernel asks for room before an instant whose
    pushes could overrun a region (_low_room, flagged by _apply_batch); a missed request
    overruns the region: an IndexError in the Python tier or the bounds-checked kernel."""
    sc = _w1_small("orca")
    whole = Simulation(sc).advance()
    tight = TightQueueSimulation(sc)
    tight.python_kernel = python_kernel
    tight.advance()
    assert tight.grows > 50  # the case is really exercised
    assert int(tight.ei[0, S.E_NDEC]) > 2 * tight._margin + 2  # it outgrew its first region
    _assert_same_run(whole, tight)


class TightLogSimulation(Simulation):
    """Starts its iteration log with one row and grows it by just what the kernel's room
    check asks for (core._low_room: the instant's margin of batch entries, and a row for each
    running request that may be preempted)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, record_iterations=True, **kwargs)
        self.logi, self.logf = self.logi[:1].copy(), self.logf[:1].copy()
        self.grows = 0

    def _grow(self):
        gi = self.gi
        need = int(gi[S.G_LOG_N] + gi[S.G_LOG_MARGIN] + self.ei[:, S.E_NRUN].sum())
        if need > len(self.logi):
            self.grows += 1
            add = need - len(self.logi)
            self.logi = np.concatenate([self.logi, np.zeros((add, self.logi.shape[1]), dtype=self.logi.dtype)])
            self.logf = np.concatenate([self.logf, np.zeros((add, self.logf.shape[1]))])
        super()._grow()


@pytest.mark.parametrize("scheduler", ["vllm", "orca"])
@pytest.mark.parametrize("python_kernel", [
    True,
    pytest.param(False, marks=pytest.mark.skipif(not numba.config.BOUNDSCHECK,
                                                 reason="needs NUMBA_BOUNDSCHECK=1"))])
def test_the_iteration_log_grows_before_preemptions_overflow_it(scheduler, python_kernel):
    """Preemptions write log rows while a batch forms, beyond the instant's batch entries: the
    room check counts each running request as a possible preemption. A log grown by just that
    much is never overrun (an IndexError in the Python tier or the bounds-checked kernel) and
    logs exactly what a roomy one does."""
    # one-token prompts in a 120-token cache: the newest requests hold a few tokens each, and
    # a batch of 8 decode tokens preempts up to 6 of them at once, after a full batch's 8 rows
    sc = llmsim.scenario_from_table({
        "name": "preemption-bursts", "seed": 3,
        "engine": {"scheduler": scheduler, "token_budget": 256, "max_batch_size": 8, "kv_cache_tokens": 120,
                   "batch_time": {"model": "constant", "seconds": 0.02}},
        "workload": {"num_requests": 400, "arrival": {"process": "poisson", "rate": 200.0},
                     "prompt_tokens": {"dist": "uniform", "low": 1, "high": 2},
                     "output_tokens": {"dist": "uniform", "low": 20, "high": 60}}})
    whole = Simulation(sc, record_iterations=True).advance()
    tight = TightLogSimulation(sc)
    tight.python_kernel = python_kernel
    tight.advance()
    it = whole.result().iterations
    bursts = it[it["phase"] == "preempt"].groupby("iteration").size()
    assert tight.grows > 20 and bursts.max() >= 5  # the case is really exercised
    _assert_same_run(whole, tight)
    n = int(whole.gi[S.G_LOG_N])
    assert int(tight.gi[S.G_LOG_N]) == n
    np.testing.assert_array_equal(tight.logi[:n], whole.logi[:n])
    np.testing.assert_array_equal(tight.logf[:n], whole.logf[:n])
