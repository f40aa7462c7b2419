"""Points per second of a 1,000-point sweep (20,000 requests a point) on Dask.

    PYTHONPATH=. python bench/bench_sweep.py [--workers 1,2] [--points 1000]

The sweep is scenarios/sweeps/bench_1000.toml (four schedulers x five budgets x 50 loads
on the quickstart engine). For each worker count an embedded Dask LocalCluster is started
(its start-up, including each worker compiling or loading the kernel, is timed apart),
the sweep runs to Parquet parts in a temporary directory, and the rate is the points
finished per wall second of the run itself. ``--points N`` runs the first N points only
(a quicker look; the per-point cost varies along the load axis, so use whole multiples
of 50).
"""

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from llmsim.sweep import DaskExecutor, InProcess, load_sweep, run_sweep

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--points", type=int, default=None, help="run only the first N points")
    ap.add_argument("--in-process", action="store_true", dest="in_process",
                    help="also time the in-process executor (no Dask)")
    args = ap.parse_args()
    sweep = load_sweep(ROOT / "scenarios/sweeps/bench_1000.toml")
    if args.points:
        # fewer loads per (scheduler, budget): the grid keeps its shape
        n_load = args.points // 20 or 1
        axes = list(sweep.axes)
        axes[-1] = replace(axes[-1], num=n_load)
        sweep = replace(sweep, axes=tuple(axes))
    print(f"sweep: {sweep.size} points x {sweep.num_requests} requests "
          f"({', '.join(a.field for a in sweep.axes)}); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores", flush=True)
    rows = []
    configs = [("in-process", None)] if args.in_process else []
    configs += [("LocalCluster", int(w)) for w in args.workers.split(",")]
    for label, w in configs:
        t0 = time.perf_counter()
        ex = InProcess() if w is None else DaskExecutor(workers=w)
        if w is None:
            from llmsim.sweep import warm_up
            warm_up()
        start = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as d:
            t1 = time.perf_counter()
            df = run_sweep(sweep, Path(d) / "out", executor=ex)
            wall = time.perf_counter() - t1
        ex.close()
        per_point = df["wall_seconds"]
        rate = len(df) / wall
        rows.append((label, w or 1, start, wall, rate, per_point.median(), per_point.max()))
        print(f"{label:13s} workers {w or 1}: start-up {start:5.1f} s, {len(df)} points in {wall:6.1f} s "
              f"= {rate:6.2f} points/s ({rate / (w or 1):.2f} per worker); a point: median "
              f"{per_point.median():.3f} s, max {per_point.max():.3f} s", flush=True)
        counts = df["verdict"].fillna("error").value_counts().to_dict()
        print(f"{'':13s} verdicts {counts}; load average {os.getloadavg()[0]:.1f}", flush=True)
    dask_rows = [r for r in rows if r[0] == "LocalCluster"] or rows
    best = max(r[4] / r[1] for r in dask_rows)
    for target_min in (10, 5):
        need = 100_000 / (best * target_min * 60)
        print(f"100,000 points in {target_min} minutes needs ~{need:.0f} workers at "
              f"{best:.2f} points/s per worker")


if __name__ == "__main__":
    main()
