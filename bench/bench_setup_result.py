"""The parts of an end-to-end run outside the kernel, old tree against new, interleaved:
Simulation(scenario) (setup), result() and verdict() on W1 (a bench_engine.py case,
sarathi by default) at 1e4, 1e5, 1e6 requests, best of the repeats, in wall seconds (perf_counter) and CPU seconds
(process_time). Child processes alternate between the two trees, so a busy machine
weighs on both alike.

    git archive <old commit> llmsim | tar -x -C /tmp/old
    PYTHONPATH=. python bench/bench_setup_result.py --old /tmp/old [--rounds 3] [--sizes 1e4,1e6] [--case orca]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
sys.path.insert(1, {bench!r})
import bench_engine as B
import llmsim
sizes, reps, case = {sizes!r}, {reps!r}, {case!r}
for _ in range(3):
    B.run_once(case, 2000)
out = {{}}
for n in sizes:
    rows = []
    for _ in range(reps[str(n)]):
        sc = B.scenario(case, n)
        w0, c0 = time.perf_counter(), time.process_time()
        sim = llmsim.Simulation(sc)
        w1, c1 = time.perf_counter(), time.process_time()
        sim.advance()
        w2, c2 = time.perf_counter(), time.process_time()
        res = sim.result()
        w3, c3 = time.perf_counter(), time.process_time()
        llmsim.verdict(res)
        w4, c4 = time.perf_counter(), time.process_time()
        rows.append([w1 - w0, w2 - w1, w3 - w2, w4 - w3, c1 - c0, c2 - c1, c3 - c2, c4 - c3])
        del sim, res
    out[str(n)] = rows
print(json.dumps({{"file": llmsim.__file__, "runs": out}}))
"""

PARTS = ("setup", "kernel", "result", "verdict")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="a folder holding the old llmsim package")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="1e4,1e5,1e6")
    ap.add_argument("--case", default="sarathi", help="sarathi, orca or vllm-mem (bench_engine.py's cases)")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    reps = {str(n): max(5, min(30, 200_000 // n)) for n in sizes}
    trees = {"old": str(Path(args.old).resolve()), "new": str(ROOT)}
    code = CHILD.format(bench=str(ROOT / "bench"), sizes=sizes, reps=reps, case=args.case)
    runs = {k: {str(n): [] for n in sizes} for k in trees}
    print(f"uptime: {os.popen('uptime').read().strip()}")
    for r in range(args.rounds):
        for name, path in trees.items():
            env = dict(os.environ, PYTHONPATH=path)
            p = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True,
                               text=True, check=True)
            d = json.loads(p.stdout.strip().splitlines()[-1])
            assert d["file"].startswith(path), (d["file"], path)
            for n, rows in d["runs"].items():
                runs[name][n].extend(rows)
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print(f"{args.case}: best of {args.rounds} rounds x {reps} repeats; ms; wall (perf_counter) / cpu (process_time)")
    print(f"{'requests':>9s} {'part':8s} {'old wall':>9s} {'new wall':>9s} {'new/old':>7s} "
          f"{'old cpu':>9s} {'new cpu':>9s} {'new/old':>7s}")
    for n in sizes:
        best = {}
        for name in trees:
            rows = runs[name][str(n)]
            best[name] = [min(r[i] for r in rows) for i in range(8)]
            # outside the kernel: best of the per-run sums
            best[name].append(min(r[0] + r[2] + r[3] for r in rows))
            best[name].append(min(r[4] + r[6] + r[7] for r in rows))
        for i, part in enumerate(PARTS + ("outside",)):
            wi, ci = (i, i + 4) if i < 4 else (8, 9)
            o, nw = best["old"], best["new"]
            print(f"{n:9,d} {part:8s} {1e3 * o[wi]:9.3f} {1e3 * nw[wi]:9.3f} {nw[wi] / o[wi]:7.2f} "
                  f"{1e3 * o[ci]:9.3f} {1e3 * nw[ci]:9.3f} {nw[ci] / o[ci]:7.2f}")
        for name in trees:
            rows = runs[name][str(n)]
            e2e = min(sum(r[:4]) for r in rows)
            print(f"{'':9s} {name}: end to end {n / e2e:,.0f} req/s (best run {1e3 * e2e:.1f} ms)")


if __name__ == "__main__":
    main()
