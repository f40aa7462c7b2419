"""Theory against a capacity search where a batch has few slots (k = 2 or 8, budget 2,048)
and prompts are far shorter than the budget on average: the case where the theory priced a
scheduler's batches at the largest prompt (bench/README.md, Round 19).

    python bench/bench_few_slots.py          # this tree
    python bench/bench_few_slots.py /tmp/A   # another tree (a git worktree)

Prints, per batch time x prompt law x k: the optimal capacity (the region of every batch),
then per scheduler its theory capacity and the critical rate a capacity search finds
(15,000 requests per probe, 3% tolerance; the search never goes above the bound theory
calls proven). About 4 minutes on 2 cores.
"""
import sys
from pathlib import Path

TREE = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TREE))

import llmsim  # noqa: E402
from llmsim.capacity import capacity_search  # noqa: E402

TIMES = {"staircase 11.28 + 35.47 ceil(n/128) ms": {"model": "staircase", "c_seconds": 0.01128, "a_seconds": 0.03547,
                                                      "b0": 128},
         "piecewise 10 ms + 20 us/token past 64": {"model": "piecewise", "c_seconds": 0.01, "a_seconds": 2e-5, "b0": 64},
         "constant 20 ms": {"model": "constant", "seconds": 0.02}}
PROMPTS = {"lognormal mean 200 cv 3 max 2048": {"dist": "lognormal", "mean": 200, "cv": 3, "max": 2048},
           "uniform 1..2048": {"dist": "uniform", "low": 1, "high": 2048}}


def scenario(k, bt, prompt):
    return llmsim.scenario_from_table(
        {"seed": 5, "engine": {"scheduler": "sarathi", "token_budget": 2048, "max_batch_size": k,
                               "kv_cache_tokens": 10_000_000, "batch_time": bt},
         "workload": {"num_requests": 20000, "arrival": {"process": "poisson", "rate": 1.0},
                      "prompt_tokens": prompt, "output_tokens": {"dist": "geometric", "mean": 20}}})


def main() -> int:
    print(f"llmsim from {TREE}")
    print("batch time | prompts | k | optimal | sarathi theory / search | orca theory / search")
    for tn, bt in TIMES.items():
        for pn, p in PROMPTS.items():
            for k in (2, 8):
                sc = scenario(k, bt, p)
                opt = llmsim.analyze(sc).optimal_capacity_rps
                res = capacity_search(sc, schedulers=["sarathi", "orca"], num_requests=15_000, rel_tol=0.03,
                                      max_probes=8, workers=2)
                cells = " | ".join(f"{r.theory_capacity_rps:.3f} / {r.critical_rate_rps:.3f}" for r in res)
                print(f"{tn} | {pn} | {k} | {opt:.3f} | {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
