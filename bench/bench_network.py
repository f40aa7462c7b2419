"""Simulated LLM calls and workflow completions per wall second on agent networks.

    PYTHONPATH=. python bench/bench_network.py [--num-requests 200000]

Target: at least 300,000 LLM calls per wall second (after compilation).
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

from llmsim import Simulation, load_scenario

ROOT = Path(__file__).parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-requests", type=int, default=200_000)
    args = ap.parse_args()
    for name in ("cyclic", "fork_join", "react", "tandem"):
        sc = load_scenario(ROOT / f"scenarios/agents/{name}.toml")
        if name == "cyclic":  # the stable variant, so the run's size is the workload's
            sc = sc.with_policy("fcfs")
        Simulation(replace(sc, num_requests=500)).advance()  # compiled (cached on disk)
        sim = Simulation(replace(sc, num_requests=args.num_requests))
        t0 = time.perf_counter()
        sim.advance()
        wall = time.perf_counter() - t0
        calls = int(sim.gi[0])
        wf = sim.workflows()
        done = int(wf.finish_s.notna().sum())
        print(f"{name:10s} {calls:9d} calls {done:8d} workflows in {wall:6.2f} s: "
              f"{calls / wall:12,.0f} calls/s {done / wall:12,.0f} workflows/s")


if __name__ == "__main__":
    main()
