"""The theory's slowest inputs a dashboard visitor can send: CPU seconds and memory of
llmsim.analyze on each (a fresh process per case, so its peak RSS is its own).

    python bench/bench_theory_worst.py          # this tree
    python bench/bench_theory_worst.py /tmp/A   # another tree (a git worktree)

Each case was found by a hostile visitor's pass (bench/README.md, Round 19): the theory runs
in the server's own process on the compare, single-engine and capacity pages, and once per
point of a stability map in a worker.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT

STAIRCASE = {"model": "staircase", "c_seconds": 0.01128, "a_seconds": 0.03547, "b0": 128}
SLOW_PREFILL = {"model": "affine", "c0_seconds": 1e-6, "prefill_seconds_per_token": 1.0,
                "decode_seconds_per_token": 0.0, "context_seconds_per_token": 0.0}
CASES = {
    # a compare-page link: 1-token prompts, the largest budget, lognormal outputs up to 20,000
    "fastertransformer, b = 65,536, lognormal outputs (cv 20, max 20,000)": {
        "seed": 1, "engine": {"scheduler": "fastertransformer", "token_budget": 65_536, "kv_cache_tokens": 50_000_000,
                              "batch_time": STAIRCASE},
        "workload": {"num_requests": 1000, "arrival": {"process": "poisson", "rate": 1.0},
                     "prompt_tokens": {"dist": "constant", "value": 1},
                     "output_tokens": {"dist": "lognormal", "mean": 101, "cv": 20, "max": 20_000}}},
    # an uploaded trace: 2,000 rows, one of them with 10,000,000 output tokens
    "fastertransformer, b = 65,536, a trace with one 10,000,000-token output": "trace",
    # a single-engine link: 1 s per prompt token, k = 1, prompts uniform in 1..65,536 (the chunk
    # row binds: the region's LP over its 131,000 candidate batches)
    "sarathi, b = 65,536, k = 1, 1 s per prompt token": {
        "seed": 1, "engine": {"scheduler": "sarathi", "token_budget": 65_536, "max_batch_size": 1,
                              "kv_cache_tokens": 200_000_000, "batch_time": SLOW_PREFILL},
        "workload": {"num_requests": 1000, "arrival": {"process": "poisson", "rate": 1.0},
                     "prompt_tokens": {"dist": "uniform", "low": 1, "high": 65_536},
                     "output_tokens": {"dist": "constant", "value": 1}}},
    # a later single-engine link: the same with c0 = 1.1e-5 s and geometric outputs (the LP's
    # figures near 3e-5, under the solver's tolerance: 60 pricing rounds, then the whole LP)
    "sarathi, b = 65,536, k = 1, 1 s per prompt token, c0 = 1.1e-5 s": {
        "seed": 1, "engine": {"scheduler": "sarathi", "token_budget": 65_536, "max_batch_size": 1,
                              "kv_cache_tokens": 200_000_000, "batch_time": dict(SLOW_PREFILL, c0_seconds=1.1e-5)},
        "workload": {"num_requests": 1000, "arrival": {"process": "poisson", "rate": 1.0},
                     "prompt_tokens": {"dist": "uniform", "low": 1, "high": 65_536},
                     "output_tokens": {"dist": "geometric", "mean": 100}}},
    # the same behind a 64-replica pool
    "sarathi, the same as a pool of 64 replicas": "pool",
    # a compare-page link whose vllm chain's capacity lies far below its decode bound
    "vllm, b = 65,536, 1 s per prompt token, geometric outputs of mean 1": {
        "seed": 1, "engine": {"scheduler": "vllm", "token_budget": 65_536, "kv_cache_tokens": 200_000_000,
                              "batch_time": SLOW_PREFILL},
        "workload": {"num_requests": 1000, "arrival": {"process": "poisson", "rate": 1.0},
                     "prompt_tokens": {"dist": "uniform", "low": 1, "high": 65_536},
                     "output_tokens": {"dist": "geometric", "mean": 1.0}}},
}


def _chain(engines, rate, prompt, output):
    """A one-workflow network TOML: engine i (its TOML lines, after its name) serves step i,
    step i calls step i + 1."""
    lines = ["seed = 1", "[run]", "num_requests = 1000"]
    for i, body in enumerate(engines):
        lines += ["[[engines]]", f'name = "e{i}"'] + body
    lines += ["[[workflows]]", 'name = "w"', f'arrival = {{ process = "poisson", rate = {rate} }}', 'start = ["s0"]']
    for i in range(len(engines)):
        nxt = f'"s{i + 1}"' if i + 1 < len(engines) else ""
        lines += ["[[workflows.steps]]", f'name = "s{i}"', f'engine = "e{i}"', f"prompt_tokens = {prompt}",
                  f"output_tokens = {output}", f"routes = [{{ p = 1.0, to = [{nxt}] }}]"]
    return {"toml": "\n".join(lines) + "\n"}


def _orca_network(n_engines, replicas=None):
    """The agents-page visitor's network: orca engines (or pools of `replicas`, TOML inline
    tables) at b = 65,536 with a staircase of 1-token steps, one step each, 65,536-token prompts."""
    engines = [['scheduler = "orca"', "token_budget = 65536", "kv_cache_tokens = 50000000",
                f'batch_time = {{ model = "staircase", c_seconds = 0.01128, a_seconds = {0.03547 + i * 1e-5:.5f}, b0 = 1 }}']
               + ([f"replicas = [{', '.join(replicas)}]"] if replicas else ["max_batch_size = 32"])
               for i in range(n_engines)]
    return _chain(engines, "0.01", '{ dist = "constant", value = 65536 }', '{ dist = "constant", value = 100 }')


def _sarathi_network(n_engines):
    """The agents-page visitor's network of the c0 = 1.1e-5 s case: one sarathi engine per step
    (each a different c0, so no two share a cached region), k = 1, prompts uniform 1..65,536."""
    engines = [['scheduler = "sarathi"', "token_budget = 65536", "max_batch_size = 1", "kv_cache_tokens = 200000000",
                f'batch_time = {{ model = "affine", c0_seconds = {1.1e-5 + i * 1e-7:.7f}, prefill_seconds_per_token = 1.0, '
                'decode_seconds_per_token = 0.0 }'] for i in range(n_engines)]
    return _chain(engines, "0.00001", '{ dist = "uniform", low = 1, high = 65536 }', '{ dist = "geometric", mean = 100 }')


def _ft_network(n_engines):
    """A hostile pass's agents link: fastertransformer engines at b = 65,536 with 1-token prompts
    (decode batches of every size up to 65,536), each a different piecewise time."""
    engines = [['scheduler = "fastertransformer"', "token_budget = 65536", "kv_cache_tokens = 50000000",
                f'batch_time = {{ model = "piecewise", c_seconds = 0.01, a_seconds = {1e-4 + i * 1e-7:.7f}, b0 = 128, '
                'context_seconds_per_token = 1e-9 }'] for i in range(n_engines)]
    return _chain(engines, "0.001", '{ dist = "constant", value = 1 }',
                  '{ dist = "lognormal", mean = 101, cv = 20, max = 65536 }')


DIFFERENT = [f"{{ max_batch_size = {32 + j} }}" for j in range(64)]
CASES["agents page: 16 fastertransformer engines, b = 65,536, 1-token prompts, piecewise times"] = _ft_network(16)
CASES["agents page: 16 sarathi engines, k = 1, 1 s per prompt token, c0 near 1.1e-5 s"] = _sarathi_network(16)
CASES["agents page: 16 orca engines, b = 65,536, 1-token staircase steps, k = 32"] = _orca_network(16)
CASES["agents page: 3 pools x 64 different replicas (refused by the dashboard)"] = _orca_network(3, DIFFERENT)
CASES["agents page: 1 pool x 16 different replicas (the most the dashboard takes)"] = _orca_network(1, DIFFERENT[:16])
CASES["sarathi, the same as a pool of 64 replicas"] = json.loads(json.dumps(
    CASES["sarathi, b = 65,536, k = 1, 1 s per prompt token"]))
CASES["sarathi, the same as a pool of 64 replicas"]["engine"].update(replicas=64, router="jsq_tokens")

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import llmsim
case = json.loads(sys.argv[2])
if case == "trace":
    rows = ["arrival_time_s,prompt_tokens,output_tokens"] + [f"{i * 0.1},1,{10_000_000 if i == 0 else 1}" for i in range(2000)]
    case = {"seed": 1, "engine": {"scheduler": "fastertransformer", "token_budget": 65_536,
                                  "kv_cache_tokens": 50_000_000,
                                  "batch_time": {"model": "staircase", "c_seconds": 0.01128, "a_seconds": 0.03547, "b0": 128}},
            "workload": {"arrival": {"process": "trace", "path": "t.csv"}}}
    sc = llmsim.scenario_from_table(case, traces={"t.csv": "\n".join(rows) + "\n"})
elif "toml" in case:
    sc = llmsim.loads_scenario(case["toml"])
else:
    sc = llmsim.scenario_from_table(case)
llmsim.validate(sc)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.process_time()
th = llmsim.analyze(sc)
print(json.dumps({"cpu_s": time.process_time() - t0, "grew_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024,
                  "capacity_rps": th.capacity_rps}))
"""

PREVIOUS = {  # bench/README.md, Round 19: before -> after, this VM
    "fastertransformer, b = 65,536, lognormal outputs (cv 20, max 20,000)": "23.1 s -> 0.7 s",
    "fastertransformer, b = 65,536, a trace with one 10,000,000-token output": "1.9 s, +285 MiB -> 0.7 s, +56 MiB",
    "sarathi, b = 65,536, k = 1, 1 s per prompt token": "27.3 s -> 0.55 s",
    "sarathi, the same as a pool of 64 replicas": "over 600 s (64 x 27 s) -> 0.64 s",
    "sarathi, b = 65,536, k = 1, 1 s per prompt token, c0 = 1.1e-5 s": "1.73 s, +203 MiB (60 rounds, then the whole LP) -> 0.31 s (Round 23)",
    "agents page: 16 sarathi engines, k = 1, 1 s per prompt token, c0 near 1.1e-5 s": "21.9 s, +277 MiB -> 0.73 s, +133 MiB (Round 23)",
    "agents page: 16 fastertransformer engines, b = 65,536, 1-token prompts, piecewise times": "5.2 s -> 1.5 s (Round 23)",
    "vllm, b = 65,536, 1 s per prompt token, geometric outputs of mean 1": "ValueError (scipy's bracket) -> 0.63 s",
    "agents page: 16 orca engines, b = 65,536, 1-token staircase steps, k = 32": "26.4 s, +315 MiB -> 2.7 s, +134 MiB; 0.87 s on one BLAS thread (Round 24)",
    "agents page: 3 pools x 64 different replicas (refused by the dashboard)": "314.6 s -> 35.5 s",
    "agents page: 1 pool x 16 different replicas (the most the dashboard takes)": "3.2 s; 1.10 s on one BLAS thread (Round 24)",
}


def main() -> int:
    print(f"llmsim from {TREE}")
    for name, case in CASES.items():
        try:
            out = subprocess.run([sys.executable, "-c", CHILD, str(TREE), json.dumps(case)], capture_output=True,
                                 text=True, timeout=600)
        except subprocess.TimeoutExpired:
            print(f"{name}: over 600 s (stopped)  [recorded: {PREVIOUS[name]}]")
            continue
        if out.returncode != 0:
            print(f"{name}: FAILED: {out.stderr.strip().splitlines()[-1][:300]}  [recorded: {PREVIOUS[name]}]")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name}: analyze {r['cpu_s']:.2f} s CPU, peak RSS +{r['grew_mib']:.0f} MiB, "
              f"capacity {r['capacity_rps']:.6g} req/s  [recorded: {PREVIOUS[name]}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
