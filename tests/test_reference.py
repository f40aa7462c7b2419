"""The kernel against the plain-Python reference engine, exactly, on small seeded cases
covering every scheduler, chunking, max_batch_size, memory pressure with preemption,
and each batch-time model."""

import numpy as np
import pytest

from llmsim import scenario_from_table, simulate
from reference_engine import run_reference

CASES = []
for sched in ("fastertransformer", "vllm", "orca", "sarathi"):
    CASES += [
        (sched, dict(budget=64, kmax=None, kv=100_000, bt={"model": "constant", "seconds": 0.02}), 3.0),
        (sched, dict(budget=64, kmax=5, kv=100_000, bt={"model": "staircase", "c_seconds": 0.01, "a_seconds": 0.004, "b0": 16}), 4.0),
        # memory pressure: a few requests fill the KV cache, preemptions happen
        (sched, dict(budget=100, kmax=None, kv=150, bt={"model": "affine", "c0_seconds": 0.005,
                     "prefill_seconds_per_token": 1e-4, "decode_seconds_per_token": 2e-4,
                     "context_seconds_per_token": 1e-6}), 40.0),
        (sched, dict(budget=100, kmax=8, kv=120, bt={"model": "piecewise", "c_seconds": 0.01, "a_seconds": 0.001, "b0": 24}), 30.0),
    ]


def scenario(sched, p, rate, seed):
    eng = {"scheduler": sched, "token_budget": p["budget"], "kv_cache_tokens": p["kv"], "batch_time": p["bt"]}
    if p["kmax"]:
        eng["max_batch_size"] = p["kmax"]
    return scenario_from_table({
        "seed": seed,
        "workload": {"num_requests": 60, "drain": True, "arrival": {"process": "poisson", "rate": rate},
                     "prompt_tokens": {"dist": "uniform", "low": 1, "high": 40},
                     "output_tokens": {"dist": "uniform", "low": 1, "high": 60}},
        "engine": eng})


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("seed", [1, 2])
def test_kernel_matches_reference(case, seed):
    sched, p, rate = CASES[case]
    sc = scenario(sched, p, rate, seed)
    res = simulate(sc, record_iterations=True)
    rq = res.requests
    reqs = list(zip(rq.arrival_s, rq.prompt_tokens, rq.output_tokens))
    ref, log = run_reference(reqs, sched, p["budget"], p["kmax"] or 10**9, p["kv"], sc.engine.batch_time.seconds)
    assert len(log) == len(res.iterations)
    it = res.iterations
    kernel_log = list(zip(it.iteration, it.start_s, it.end_s, it.request_id, it.tokens, it.phase))
    assert kernel_log == [tuple(x) for x in log]
    np.testing.assert_array_equal(rq.admitted_s.to_numpy(), [r.admit for r in ref])
    np.testing.assert_array_equal(rq.first_token_s.to_numpy(), [r.first for r in ref])
    np.testing.assert_array_equal(rq.finish_s.to_numpy(), [r.finish for r in ref])
    np.testing.assert_array_equal(rq.preemptions.to_numpy(), [r.preempt for r in ref])
    assert res.summary["completed"] == 60


def test_memory_cases_do_preempt():
    """The memory cases above must actually exercise preemption (else they prove little)."""
    total = 0
    for sched in ("vllm", "orca", "sarathi"):
        sched_, p, rate = [c for c in CASES if c[0] == sched][2]
        total += simulate(scenario(sched, p, rate, 1)).summary["preemptions"]
    assert total > 0


@pytest.mark.parametrize("sched", ["vllm", "orca", "sarathi"])
def test_the_iteration_log_has_a_row_per_preemption(sched):
    """Each preemption is a row of the log at the moment the iteration that preempted it was
    formed (it starts then), with the computed tokens it loses (they sum to the recomputed
    tokens); the request's next entry is a
    prefill (its recomputation). Without these rows the wait after a preemption was a gap
    the timeline could not explain."""
    _, p, rate = [c for c in CASES if c[0] == sched][2]
    res = simulate(scenario(sched, p, rate, 1), record_iterations=True)
    it = res.iterations
    pre = it[it["phase"] == "preempt"]
    assert len(pre) == res.summary["preemptions"] == res.requests["preemptions"].sum() > 0
    assert (pre["start_s"] == pre["end_s"]).all() and (pre["tokens"] >= 0).all()
    assert pre["tokens"].sum() == res.summary["tokens_recomputed"] > 0
    batches = it[it["phase"] != "preempt"]
    starts = batches.groupby("iteration")["start_s"].first()
    assert (starts.reindex(pre["iteration"]).to_numpy() == pre["start_s"].to_numpy()).all()
    for _, row in pre.iterrows():
        later = batches[(batches["request_id"] == row["request_id"]) & (batches["start_s"] >= row["start_s"])]
        assert later["phase"].iloc[0] == "prefill"


def _burst_trace() -> str:
    """Groups of equal requests arriving together, so that many decoders finish in the same
    iteration: some groups behind older decoders (removed from the queue's tail side), some
    ahead of newer ones (removed from its head side)."""
    rows = ["arrival_time_s,prompt_tokens,output_tokens"]
    groups = [(0.0, 24, 3, 40), (0.05, 16, 2, 6), (0.3, 30, 4, 25), (0.31, 10, 1, 3), (1.0, 40, 2, 12),
              (1.02, 6, 5, 50), (2.5, 1, 3, 2)]
    for t, n, p, d in groups:
        rows += [f"{t},{p},{d}"] * n
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("sched", ["fastertransformer", "vllm", "orca", "sarathi"])
@pytest.mark.parametrize("kmax", [None, 40])
def test_bursts_finishing_together(sched, kmax):
    # several decoders finish at once: the kernel packs the queue in one pass (three or more)
    # or drops them one by one (one or two); both must keep the admission order exactly
    eng = {"scheduler": sched, "token_budget": 256, "kv_cache_tokens": 100_000,
           "batch_time": {"model": "constant", "seconds": 0.02}}
    if kmax:
        eng["max_batch_size"] = kmax
    sc = scenario_from_table({"seed": 1, "engine": eng,
                              "workload": {"drain": True, "arrival": {"process": "trace", "path": "b.csv"}}},
                             traces={"b.csv": _burst_trace()})
    res = simulate(sc, record_iterations=True)
    rq = res.requests
    reqs = list(zip(rq.arrival_s, rq.prompt_tokens, rq.output_tokens))
    ref, log = run_reference(reqs, sched, 256, kmax or 10**9, 100_000, sc.engine.batch_time.seconds)
    it = res.iterations
    assert list(zip(it.iteration, it.start_s, it.end_s, it.request_id, it.tokens, it.phase)) == [tuple(x) for x in log]
    np.testing.assert_array_equal(rq.finish_s.to_numpy(), [r.finish for r in ref])
    finishes = np.unique(rq.finish_s.to_numpy(), return_counts=True)[1]
    assert finishes.max() >= 10  # many at one instant: the one-pass packing ran
