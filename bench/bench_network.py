"""Simulated LLM calls and workflow completions per wall second on agent networks.

    PYTHONPATH=. python bench/bench_network.py [--num-requests 200000]

Target: at least 3,000,000 LLM calls per wall second (after compilation).
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from llmsim import Simulation, load_scenario, verdict
from llmsim import state as S

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _recorded import cpu_model, fmt, previous, record, recorded_on  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-requests", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per preset (the best is shown)")
    ap.add_argument("--record", action="store_true", help="save the figures as the previous ones")
    args = ap.parse_args()
    prev, now = previous("network"), {}
    print(f"this machine: {cpu_model()}; {recorded_on('network') or 'no previous figures'}")
    print(f"{args.num_requests:,} workflows per preset, best of {args.repeat}: kernel (advance()) and end to "
          "end (Simulation() + advance() + result() + verdict(), what llmsim.simulate does) LLM calls per wall "
          "second [previous recorded figure]")
    print(f"{'preset':10s} {'calls':>9s} {'workflows':>9s} {'kernel calls/s':>15s} {'[prev]':>11s} "
          f"{'e2e calls/s':>12s} {'[prev]':>11s} {'workflows/s':>12s}")
    for name in ("cyclic", "fork_join", "react", "tandem"):
        sc = load_scenario(ROOT / f"scenarios/agents/{name}.toml")
        if name == "cyclic":  # the stable variant, so the run's size is the workload's
            sc = sc.with_policy("fcfs")
        Simulation(replace(sc, num_requests=500)).advance()  # compiled (cached on disk)
        kernel, e2e = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            sim = Simulation(replace(sc, num_requests=args.num_requests))
            t1 = time.perf_counter()
            sim.advance()
            t2 = time.perf_counter()
            verdict(sim.result())
            t3 = time.perf_counter()
            kernel.append(t2 - t1)
            e2e.append(t3 - t0)
        calls = int(sim.gi[S.G_NCALLS])
        done = int(np.count_nonzero(~np.isnan(sim.jf[:int(sim.gi[S.G_NEXT_JOB]), S.JF_FINISH])))
        k, e = calls / min(kernel), calls / min(e2e)
        now[f"{name} kernel calls/s"], now[f"{name} end-to-end calls/s"] = round(k), round(e)
        print(f"{name:10s} {calls:9,d} {done:9,d} {k:15,.0f} {fmt(prev.get(f'{name} kernel calls/s')):>11s} "
              f"{e:12,.0f} {fmt(prev.get(f'{name} end-to-end calls/s')):>11s} {done / min(kernel):12,.0f}")
    print("target (issue: speed end to end): >= 3,000,000 LLM calls per second")
    if args.record:
        record("network", now)


if __name__ == "__main__":
    main()
