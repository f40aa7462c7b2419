"""Pool speed: W1 (scenarios/w1.toml) served by 4 replicas behind jsq_tokens, the
arrival rate scaled by 4 (120 requests/s: load 0.9 on each replica), and the same for
the other routers. Prints simulated requests per wall second of the kernel (Simulation
.advance) and end to end (simulate(), with the summary and the verdicts), and the
kernel's requests per CPU second of the process (time.process_time: the kernel is single
threaded, so this is what it achieves when the machine is not shared; on a busy machine
the wall figure is lower by the share of the core the process got).

    PYTHONPATH=. python bench/bench_pool.py [--requests 1000000] [--replicas 4]

The target (issue 10): W1 with 4 replicas under JSQ >= 1,000,000 simulated requests per
wall second. See bench/README.md for the recorded figures.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--routers", default="jsq_tokens,round_robin,random,least_requests,power_of_two")
    a = ap.parse_args()
    import llmsim
    from llmsim.pool import with_replicas
    from llmsim.simulate import Simulation
    w1 = llmsim.load_scenario(ROOT / "scenarios" / "w1.toml")
    base = replace(w1, num_requests=a.requests).with_rate(30.0 * a.replicas)
    # compile once (not timed)
    Simulation(with_replicas(replace(base, num_requests=2000), a.replicas, "jsq_tokens")).advance()
    print(f"W1 x {a.replicas} replicas, {a.requests:,} requests at {30.0 * a.replicas:g} requests/s")
    print(f"{'router':>15} {'kernel req/s':>14} {'kernel req/CPU-s':>17} {'end-to-end req/s':>17} "
          f"{'verdict':>9} {'throughput':>11}")
    for router in a.routers.split(","):
        sc = with_replicas(base, a.replicas, router)
        sim = Simulation(sc)
        t0, c0 = time.perf_counter(), time.process_time()
        sim.advance()
        kernel, cpu = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        res = llmsim.simulate(sc)
        e2e = time.perf_counter() - t0
        print(f"{router:>15} {a.requests / kernel:>14,.0f} {a.requests / cpu:>17,.0f} {a.requests / e2e:>17,.0f} "
              f"{res.verdict.verdict:>9} {res.summary['throughput_rps']:>11.2f}")


if __name__ == "__main__":
    main()
