"""Parse, check and analyze a network whose lengths need million-value tables.

    python bench/bench_length_tables.py          # this tree
    python bench/bench_length_tables.py /tmp/A   # another tree (a git worktree)

64 steps, each with lognormal prompt and output lengths (mean 10, cv 20, max 1,000,000: the
largest the scenario format allows): what a 591-character shared link of the agents page asks
of the server on every rerun. The length laws' exact moments come from a table over 1..max;
they are computed once per law (llmsim.workload._pmf_moments), and the theory's E[ceil(P/b)]
once per law and budget (llmsim.theory._mean_ceil). Before that, each read rebuilt the table
(bench/README.md, Round 18: 236 s here, against 0.4 s).
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ROOT)

import llmsim  # noqa: E402
from llmsim import scenario_from_table, validate  # noqa: E402

LOGN = {"dist": "lognormal", "mean": 10, "cv": 20, "max": 1_000_000}


def table(n_steps=64):
    steps = [{"name": f"s{i}", "engine": "e", "prompt_tokens": LOGN, "output_tokens": LOGN,
              "next": [f"s{i + 1}"] if i < n_steps - 1 else []} for i in range(n_steps)]
    return {"seed": 1, "run": {"num_requests": 10},
            "engines": [{"name": "e", "scheduler": "sarathi", "token_budget": 64, "kv_cache_tokens": 2_000_000,
                         "batch_time": {"model": "constant", "seconds": 0.01}}],
            "workflows": [{"name": "w", "arrival": {"process": "poisson", "rate": 1.0}, "steps": steps,
                           "start": ["s0"]}]}


def main():
    t = time.perf_counter()
    sc = scenario_from_table(table())
    validate(sc)
    t1 = time.perf_counter()
    llmsim.analyze(sc)
    t2 = time.perf_counter()
    print(f"llmsim from {os.path.dirname(llmsim.__file__)}")
    print(f"64 lognormal steps (max 1e6): parse and check {t1 - t:.2f} s, analyze {t2 - t1:.2f} s "
          f"[previous recorded figure: 0.31 s, 0.13 s; before round 18: 44.6 s, 191.8 s]")


if __name__ == "__main__":
    main()
