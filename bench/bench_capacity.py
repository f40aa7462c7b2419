"""Wall time of a full four-scheduler capacity search on W1-sized scenarios.

    PYTHONPATH=. python bench/bench_capacity.py [--num-requests 100000] [--workers 2]

W1's workload (prompt uniform 64..960, output geometric mean 256, b = 512, B = 256,
M = 1e6, 20 ms iterations) with the non-chunking schedulers given the budget they need
(b = 4096 for vllm and fastertransformer, which never chunk a prompt). All four
searches share the worker pool. Target: at most 10 s with 100,000 requests per
probe on this 2-core machine.
"""

import argparse
import sys
import time
from pathlib import Path

from llmsim import scenario_from_table
from llmsim.capacity import capacity_search_scenarios

sys.path.insert(0, str(Path(__file__).parent))
from _recorded import cpu_model, fmt, previous, record, recorded_on  # noqa: E402


def w1(budget=512):
    return scenario_from_table({
        "seed": 1,
        "workload": {"num_requests": 100_000, "arrival": {"process": "poisson", "rate": 30.0},
                     "prompt_tokens": {"dist": "uniform", "low": 64, "high": 960},
                     "output_tokens": {"dist": "geometric", "mean": 256}},
        "engine": {"scheduler": "sarathi", "token_budget": budget, "max_batch_size": 256,
                   "kv_cache_tokens": 1_000_000, "batch_time": {"model": "constant", "seconds": 0.02}}})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-requests", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--record", action="store_true", help="save the figures as the previous ones")
    args = ap.parse_args()
    # warm the compiled kernel (cached on disk) so the figure is the search itself
    from llmsim import simulate
    from dataclasses import replace
    simulate(replace(w1(), num_requests=200))
    t0 = time.perf_counter()
    scenarios = {"orca": w1().with_scheduler("orca"), "sarathi": w1(),
                 "fastertransformer": w1(4096).with_scheduler("fastertransformer"),
                 "vllm": w1(4096).with_scheduler("vllm")}
    out = capacity_search_scenarios(scenarios, num_requests=args.num_requests, workers=args.workers)
    wall = time.perf_counter() - t0
    probes = sum(len(r.probes) for r in out)
    for r in out:
        print(f"{r.scheduler:18s} critical {r.critical_rate_rps or float('nan'):8.3f}/s  "
              f"interval {r.interval}  theory {r.theory_capacity_rps or float('nan'):8.3f}/s  "
              f"probes {len(r.probes)}")
    key = f"search s ({args.num_requests} requests per probe, {args.workers} workers)"
    prev = previous("capacity").get(key)
    print(f"four-scheduler capacity search: {wall:.1f} s wall [previous {fmt(prev, '.1f')} s], {probes} probes x "
          f"{args.num_requests} requests = {probes * args.num_requests / wall:,.0f} simulated requests/s")
    print(f"this machine: {cpu_model()}; {recorded_on('capacity') or 'no previous figures'}")
    print("target (issue: speed end to end): <= 10 s")
    if args.record:
        record("capacity", {key: round(wall, 1), "probes": probes})


if __name__ == "__main__":
    main()
