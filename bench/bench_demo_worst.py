"""Worst case of one visitor's page under the demo limits: CPU seconds and peak memory.

Each case opens one dashboard page with Streamlit's AppTest in a fresh Python process
(so its peak RSS is its own), with the heaviest inputs the page accepts, and reports that
process's CPU time (user + system, all threads, and its worker processes': the capacity page's
long jobs run there, llmsim_ui/jobs.py) and peak resident memory (a worker's apart). A baseline
case (the smallest run) shows what the server costs before any big run; docs/ui.md
("Demo mode") quotes these figures.

    python bench/bench_demo_worst.py             # every case (capacity cases take minutes)
    python bench/bench_demo_worst.py single      # cases whose name contains "single"

Limits: llmsim.Limits.demo(), or LLMSIM_DEMO_LIMITS as the server would use it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORK = {"n": "200000", "rate": "0.001", "hw": "custom", "bt": "constant", "bt_ms": "50", "kv": "50000000",
        "budget": "1", "kmax": "0", "wl": "custom", "p_dist": "constant", "p_value": "750",
        "o_dist": "constant", "o_value": "750"}
ALL = "fastertransformer,vllm,orca,sarathi"
MAP_AXES = {"x": "engine.kv_cache_tokens", "x_lo": "1000000", "x_hi": "50000000", "x_n": "30",
            "y": "load", "y_lo": "0.5", "y_hi": "1.5", "y_n": "20", "bt_ms": "0.001"}

CASES = {
    "baseline: single, 1 scheduler, 1,000 requests": ("pages/single_engine.py", {"sched": "sarathi", "n": "1000"}),
    "single: 4 schedulers x 200,000 requests (default workload)": ("pages/single_engine.py", {"sched": ALL, "n": "200000"}),
    "single: 4 schedulers, work-bound (token budget 1, 750 + 750 tokens)": ("pages/single_engine.py", WORK | {"sched": ALL}),
    # the largest n each network's runs fit in the demo's memory limit (the page says so beyond)
    "agents: cyclic, 4 policies x 200,000 workflows": ("pages/agents.py", {"preset": "cyclic", "n": "200000"}),
    "agents: react, 160,000 workflows": ("pages/agents.py", {"preset": "react", "n": "160000"}),
    "agents: fork_join, 100,000 workflows": ("pages/agents.py", {"preset": "fork_join", "n": "100000"}),
    "capacity: 4 schedulers, 16 probes + 16 rates of 200,000 requests": (
        "pages/capacity.py", {"sched": ALL, "n": "200000", "probes": "16", "points": "16"}),
    "capacity: 4 schedulers, work-bound, 16 probes + 16 rates": (
        "pages/capacity.py", WORK | {"sched": ALL, "probes": "16", "points": "16"}),
    # just inside the up-front refusal of a probe (its iterations' lower bound, 2.4e7, is
    # within twice the 5e7-unit probe budget): every run spends its whole budget
    "capacity: orca + sarathi, work-bound at the probe budget's edge (120 + 120 tokens)": (
        "pages/capacity.py", WORK | {"sched": "orca,sarathi", "probes": "16", "points": "16",
                                     "p_value": "120", "o_value": "120"}),
    # the stability map: 600 points (its limit), their work shared (runs.MAP_WORK = 16 runs' worth)
    "map: 4 schedulers, 600 points x 10,000 requests (default workload)": (
        "pages/sweep.py", {"sched": ALL, "x_n": "15", "y_n": "10", "n": "10000"}),
    "map: 600 work-bound points (token budget 1, 20,000 + 20,000 tokens; refused up front)": (
        "pages/sweep.py", MAP_AXES | WORK | {"sched": "sarathi", "n": "10000", "p_value": "20000", "o_value": "20000"}),
    # just inside a point's up-front refusal (1e7 iterations against 2 x its share): each spends its share
    "map: 600 work-bound points at the edge of a point's share (1,000 requests of 5,000 + 5,000 tokens)": (
        "pages/sweep.py", MAP_AXES | WORK | {"sched": "sarathi", "n": "1000", "p_value": "5000", "o_value": "5000"}),
}

CHILD = r"""
import json, resource, sys, time
from streamlit.testing.v1 import AppTest
page, params = sys.argv[1], json.loads(sys.argv[2])
at = AppTest.from_file("app.py", default_timeout=3600)
at.query_params.update(params)
at.switch_page(page)
t0 = time.perf_counter()
at.run()
wall = time.perf_counter() - t0
from llmsim_ui import jobs
jobs.shutdown()  # the long jobs' worker processes end here, so that their CPU and peak count below
ru = resource.getrusage(resource.RUSAGE_SELF)
ch = resource.getrusage(resource.RUSAGE_CHILDREN)
msgs = [x.value for k in ("error", "warning") for x in getattr(at, k)]
msgs += [x.value for x in at.caption if "allowed" in x.value or "stopped" in x.value]
print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime + ch.ru_utime + ch.ru_stime, "peak_mib": ru.ru_maxrss / 1024,
                  "worker_peak_mib": ch.ru_maxrss / 1024, "wall_s": wall,
                  "exceptions": [str(e.value)[:200] for e in at.exception], "messages": [m[:160] for m in msgs]}))
"""


def run_case(page: str, params: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, page, json.dumps(params)], cwd=ROOT,
                         capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        return {"error": out.stderr[-800:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(ROOT))
    from llmsim_ui.runs import LIMITS
    print(f"limits: {LIMITS}")
    # compile (or load) the kernel once, so no case pays for it
    run_case(*CASES["baseline: single, 1 scheduler, 1,000 requests"])
    results = {}
    for name, (page, params) in CASES.items():
        if argv and not any(a in name for a in argv):
            continue
        t0 = time.perf_counter()
        r = run_case(page, params)
        results[name] = r
        if "error" in r:
            print(f"{name}: FAILED\n{r['error']}")
            continue
        print(f"{name}: {r['cpu_s']:.1f} s CPU, peak {r['peak_mib']:.0f} MiB"
              + (f" (a worker process: {r['worker_peak_mib']:.0f} MiB)" if r.get("worker_peak_mib", 0) > 50 else "")
              + f", {r['wall_s']:.1f} s wall"
              f" ({time.perf_counter() - t0:.0f} s with start-up)")
        for m in r["messages"][:3]:
            print(f"    message: {m}")
        for e in r["exceptions"]:
            print(f"    EXCEPTION: {e}")
    out = ROOT / "test-artifacts" / "demo-worst.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
