"""Command line: ``python -m llmsim run|capacity|theory SCENARIO.toml``, ``python -m llmsim sweep SWEEP.toml``.

Bad input exits with code 2 and a one-line message naming the field; no traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from dataclasses import replace

from llmsim import _kernel_cache
from llmsim.workload import ConfigError


def _json_default(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    return str(x)


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):
        return _clean(x.item())
    return x


def _write_json(path, data):
    text = json.dumps(_clean(data), indent=2, default=_json_default)
    if path == "-":
        print(text)
    else:
        try:
            with open(path, "w") as f:
                f.write(text + "\n")
        except OSError as exc:
            raise ConfigError(f"--json: cannot write {path!r} ({exc.strerror or exc})") from None


def _flag(args, attr: str, flag: str, lo, hi, unit: str = ""):
    """A command-line override checked like the file's value: ConfigError (exit 2) naming
    the flag and its range."""
    v = getattr(args, attr, None)
    if v is None:
        return None
    if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
        kind = "a whole number" if isinstance(v, int) else "a number"
        fmt = (lambda x: f"{x:,}") if isinstance(lo, int) and isinstance(hi, int) else (lambda x: f"{x:g}")
        raise ConfigError(f"{flag}: {v!r} must be {kind} in [{fmt(lo)}, {fmt(hi)}]{unit}")
    return v


def _load(args):
    from llmsim.capacity import MAX_PROBE_REQUESTS, MIN_PROBE_REQUESTS
    from llmsim.config import MAX_REQUESTS, load_scenario, validate
    from llmsim.workload import MAX_RATE, MIN_RATE
    # every override is checked before the file is read, with the flag's name
    _flag(args, "seed", "--seed", 0, 2**63 - 1)
    _flag(args, "num_requests", "--num-requests", 1, MAX_REQUESTS)
    _flag(args, "rate", "--rate", MIN_RATE, MAX_RATE, " requests per second")
    _flag(args, "replications", "--replications", 1, 100)
    _flag(args, "num_requests_per_probe", "--num-requests-per-probe", MIN_PROBE_REQUESTS, MAX_PROBE_REQUESTS)
    _flag(args, "rel_tol", "--rel-tol", 0.001, 0.5)
    _flag(args, "workers", "--workers", 1, 256)
    sc = load_scenario(args.scenario)
    if getattr(args, "scheduler", None):
        sc = sc.with_scheduler(args.scheduler)
    if getattr(args, "rate", None) is not None:
        sc = sc.with_rate(args.rate)
    if getattr(args, "seed", None) is not None:
        sc = replace(sc, seed=args.seed)
    if getattr(args, "num_requests", None) is not None:
        sc = replace(sc, num_requests=args.num_requests)
    validate(sc)
    return sc


def _fmt(v, unit="", digits=4):
    """v for a reader: 4 significant digits, or a whole number with thousands separators
    from 10,000 on (30,180 tokens/s, not 3.018e+04)."""
    if v is None:
        return "-"
    if isinstance(v, float) and math.isfinite(v) and abs(v) >= 1e4:
        return f"{v:,.0f}{unit}"
    if isinstance(v, float):
        return f"{v:.{digits}g}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def _load_line(sc, s) -> str:
    """Arrivals and load: a single engine's load rho is over the best any scheduler reaches;
    its scheduler's own capacity (and own load) follow when they differ."""
    from llmsim.stability import loads_differ
    from llmsim.theory import analyze
    th = analyze(sc)
    if not sc.single:
        return (f"arrivals      {_fmt(s['arrival_rate_rps'], ' workflows/s')}   load rho {_fmt(s['load'])} "
                f"(the busiest engine)   theory capacity {_fmt(s['capacity_rps'], ' workflows/s')}")
    line = f"arrivals      {_fmt(s['arrival_rate_rps'], ' req/s')}   load rho {_fmt(s['load'])}"
    if th.optimal_capacity_rps and th.capacity_rps and loads_differ(th.load, th.scheduler_load):
        return (f"{line} (over the best scheduler's capacity {_fmt(th.optimal_capacity_rps, ' req/s')})\n"
                f"              {s['scheduler']}'s own capacity {_fmt(th.capacity_rps, ' req/s')}, "
                f"own load {_fmt(th.scheduler_load)}")
    return f"{line}   theory capacity {_fmt(s['capacity_rps'], ' req/s')}"


def cmd_run(args):
    from llmsim import _single
    from llmsim.simulate import Simulation, result_with_verdict
    sc = _load(args)
    if not 1 <= args.replications <= 100:
        raise ConfigError(f"--replications: {args.replications} must be in [1, 100]")
    sim = Simulation(sc)
    # a cold cache: only the kernel this run takes is compiled (the general one with a helper
    # process); its replications take the same one
    single = _single.eligible(sim)
    _kernel_cache.compile_here(general=not single, single=single)
    res = result_with_verdict(sim.advance())
    if args.replications > 1:
        from llmsim.simulate import replicate
        v, _ = replicate(sc, args.replications)
        res.verdict = v
        res.summary.update(v.summary_fields())
        res.summary["replications"] = args.replications
    s = res.summary
    # with --json - the JSON alone goes to stdout (it was printed after this text: unparseable)
    out = sys.stderr if args.json == "-" else sys.stdout
    say = functools.partial(print, file=out)
    say(f"scenario      {s['scenario'] or args.scenario}   scheduler {s['scheduler']}   seed {s['seed']}")
    calls = "requests" if sc.single else "LLM calls"
    say(_load_line(sc, s))
    say(f"completed     {_fmt(s['completed'])} of {_fmt(s['arrived'])} {calls} in "
        f"{_fmt(s['simulated_seconds'], ' s')} simulated")
    say(f"throughput    {_fmt(s['throughput_rps'], ' req/s' if sc.single else ' calls/s')}   "
        f"{_fmt(s['token_throughput'], ' tokens/s')}")
    say(f"TTFT          p50 {_fmt(s['ttft_p50_s'], ' s')}   p99 {_fmt(s['ttft_p99_s'], ' s')}")
    say(f"TBT           p50 {_fmt(s['tbt_p50_s'], ' s')}   p99 {_fmt(s['tbt_p99_s'], ' s')}")
    say(f"end-to-end    p50 {_fmt(s['e2e_p50_s'], ' s')}   p99 {_fmt(s['e2e_p99_s'], ' s')}")
    say(f"preemptions   {_fmt(s['preemptions'])}   final backlog {_fmt(s['final_backlog_tokens'], ' tokens')}")
    if not sc.single:
        say(f"workflows     {_fmt(s['workflows_completed'])} of {_fmt(s['workflows_arrived'])} done; e2e p50 "
            f"{_fmt(s['workflow_e2e_p50_s'], ' s')}, p99 {_fmt(s['workflow_e2e_p99_s'], ' s')}")
        for name, load in s["engine_load"].items():
            say(f"  engine {name:12s} load {load:.3f}")
    parts = getattr(res.verdict, "parts", {}) or {}
    for name, r in (s.get("replicas") or {}).items():
        v = parts.get(name, {}).get("verdict", "")
        say(f"  replica {name:12s} routed {r['routed']}  completed {r['completed']}  "
            f"{_fmt(r['throughput_rps'], ' req/s')}  busy {100 * r['busy_share']:.0f}%  {v}")
    if args.replications > 1:
        last = s["seed"] + args.replications - 1
        say(f"replications  {args.replications} seeds ({s['seed']} to {last}): the verdict and the growth pool them; "
            f"the figures above are seed {s['seed']}'s")
    say(f"verdict       {s['verdict_explanation']}")
    say(f"              backlog growth {_fmt(s['backlog_growth_tokens_per_s'], ' tokens/s')} "
        f"(theory {_fmt(s['theory_drift_tokens_per_s'], ' tokens/s')})")
    say(f"wall          {_fmt(s['wall_seconds'], ' s', digits=2)}")
    if args.json:
        _write_json(args.json, s)
    return 0


def cmd_capacity(args):
    from llmsim.capacity import capacity_search
    sc = _load(args)
    scheds = args.schedulers.split(",") if args.schedulers else None
    if scheds is None and sc.single:
        scheds = [sc.engine.scheduler]

    def progress(done, total, msg):
        # total: the probe budget (max_probes per scheduler); a search stops sooner once
        # its bracket is within --rel-tol
        print(f"  [probe {done}, at most {total}] {msg}", file=sys.stderr)

    if scheds and not sc.single:
        raise ConfigError("--schedulers: a network scenario is searched under its own engines' "
                          "schedulers; use --scheduler to set them all")
    executor = None
    address = args.dask or os.environ.get("LLMSIM_DASK_ADDRESS")
    if not address or address == "local":
        _kernel_cache.compile_here()  # a cold cache: compiled once here, the workers load it
    if address:  # otherwise the local process pool, as before
        from llmsim.sweep import DaskExecutor
        executor = DaskExecutor(None if address == "local" else address, args.workers)
        print(f"  probes run on the {executor.description}", file=sys.stderr)
    try:
        out = capacity_search(sc, scheds, num_requests=args.num_requests_per_probe,
                              rel_tol=args.rel_tol, workers=args.workers, progress=progress,
                              executor=executor)
    finally:
        if executor is not None:
            executor.close()
    say = functools.partial(print, file=sys.stderr if args.json == "-" else sys.stdout)  # JSON alone on stdout
    say(f"{'scheduler':18s} {'critical rate':>14s} {'interval':>22s} {'theory':>12s}")
    for r in out:
        lo, hi = r.interval
        iv = f"[{_fmt(lo)}, {_fmt(hi)}]"
        say(f"{r.scheduler:18s} {_fmt(r.critical_rate_rps, '/s'):>14s} {iv:>22s} {_fmt(r.theory_capacity_rps, '/s'):>12s}")
    if args.json:
        _write_json(args.json, {"scenario": sc.name, "results": [r.as_dict() for r in out]})
    return 0


def cmd_sweep(args):
    from llmsim.sweep import load_sweep, make_executor, run_sweep
    import time
    sweep = load_sweep(args.sweep)
    out = args.out or f"{sweep.name}.sweep"
    if args.workers is not None and not 1 <= args.workers <= 1024:
        raise ConfigError(f"--workers: {args.workers} must be in [1, 1024]")
    bar = None
    try:
        from tqdm import tqdm
        bar = tqdm(total=sweep.size, unit="point", file=sys.stderr, disable=args.quiet or None,
                   desc=sweep.name, smoothing=0.1)
    except ImportError:  # pragma: no cover - tqdm is a requirement
        pass
    state = {"first": None}

    def progress(done, total):
        if bar is not None:
            if state["first"] is None:
                state["first"] = done
                bar.initial = done
                bar.n = done
                bar.refresh()
            else:
                bar.update(done - bar.n)

    t0 = time.perf_counter()
    if not args.in_process and not (args.dask or os.environ.get("LLMSIM_DASK_ADDRESS")):
        # a cold cache: compiled once here (the general kernel with a helper process), and the
        # embedded cluster's workers load it, rather than each compiling both kernels
        _kernel_cache.compile_here()
    executor = make_executor(args.dask, args.workers, in_process=args.in_process)
    try:
        if not args.quiet:
            print(f"{sweep.size} points x {sweep.replications} replication(s) on the {executor.description}; "
                  f"results in {out}/", file=sys.stderr)
        df = run_sweep(sweep, out, executor, resume=args.resume, csv=args.csv, progress=progress)
    finally:
        if bar is not None:
            bar.close()
        executor.close()
    wall = time.perf_counter() - t0
    ran = sweep.size - (state["first"] or 0)
    print(f"sweep {sweep.name}: {len(df)} of {sweep.size} points done ({ran} run now in {wall:.1f} s"
          f"{f', {ran / wall:.2f} points/s' if wall > 0 and ran else ''})")
    if len(df) and "verdict" in df:
        errs = int((df["error"].fillna("") != "").sum())
        counts = df["verdict"].fillna("error").value_counts()
        by = df.assign(v=df["verdict"].fillna("error")).groupby(["scheduler", "v"], dropna=False).size()
        print("verdicts      " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
        for (sch, v), n in by.items():
            if isinstance(sch, str):
                print(f"  {sch:18s} {v:12s} {n}")
        if errs:
            first = df.loc[df["error"].fillna("") != "", "error"].iloc[0]
            print(f"errors        {errs} point(s) not run; first: {first}")
    print(f"results       {out}/results.parquet" + (f", {out}/results.csv" if args.csv else ""))
    return 0


def cmd_theory(args):
    from llmsim.theory import analyze
    sc = _load(args)
    t = analyze(sc)
    if args.json:
        _write_json(args.json, t.as_dict())
        if args.json == "-":
            return 0
    unit = "req/s" if sc.single else "workflows/s"
    print(f"scenario      {sc.name or args.scenario}   arrivals {_fmt(sc.total_rate, ' ' + unit)}")
    print(f"load rho      {_fmt(t.load)} (over the best any scheduler reaches: "
          f"{_fmt(t.optimal_capacity_rps, ' ' + unit)})")
    print(f"own load      {_fmt(t.scheduler_load)} (over the scenario's schedulers' capacity: "
          f"{_fmt(t.capacity_rps, ' ' + unit)})")
    if t.drift_tokens_per_s > 0:
        print(f"growth        {_fmt(t.drift_tokens_per_s, ' tokens/s')} predicted "
              f"({_fmt(t.drift_rps, ' ' + unit)} more in the system every second)")
    else:
        print("growth        none predicted (every engine below its scheduler's capacity)")
    for e in t.engines:
        print(f"  engine {e.name:12s} {e.scheduler:17s} b {_fmt(e.token_budget)}  t(b) "
              f"{_fmt(e.t_b_seconds, ' s')}  load {_fmt(e.load)}  own load {_fmt(e.scheduler_load)}  "
              f"capacity {_fmt(e.capacity_rps, ' calls/s')}")
        print(f"         {'':12s} {e.capacity_kind}")
    for n in t.notes:
        print(f"note          {n}")
    print("(every figure: --json OUT, '-' for stdout)")
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="python -m llmsim", description="LLM serving stability simulator")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="simulate a scenario and print its summary and verdict")
    r.add_argument("scenario")
    r.add_argument("--scheduler", help="override the scheduler (fastertransformer|vllm|orca|sarathi)")
    r.add_argument("--rate", type=float, help="override the arrival rate, requests per second")
    r.add_argument("--seed", type=int)
    r.add_argument("--num-requests", type=int, dest="num_requests")
    r.add_argument("--replications", type=int, default=1,
                   help="independent seeds (seed, seed+1, ...) pooled into one verdict")
    r.add_argument("--json", metavar="OUT", help="write the summary as JSON ('-' for stdout)")
    r.set_defaults(fn=cmd_run)
    c = sub.add_parser("capacity", help="find each scheduler's critical arrival rate by search")
    c.add_argument("scenario")
    c.add_argument("--schedulers", help="comma-separated, e.g. orca,sarathi (default: the scenario's)")
    c.add_argument("--scheduler", help="set every engine's scheduler first")
    c.add_argument("--num-requests-per-probe", type=int, default=100_000)
    c.add_argument("--rel-tol", type=float, default=0.02)
    c.add_argument("--workers", type=int, default=None)
    c.add_argument("--dask", metavar="ADDR",
                   help="run the probes on a Dask cluster (tcp://host:8786, or 'local' for an embedded "
                        "LocalCluster; default: $LLMSIM_DASK_ADDRESS, else local processes)")
    c.add_argument("--json", metavar="OUT")
    c.set_defaults(fn=cmd_capacity)
    w = sub.add_parser("sweep", help="run a parameter sweep ([sweep] file) and write Parquet results")
    w.add_argument("sweep", help="a sweep file: a scenario plus a [sweep] table (docs/scenario-format.md)")
    w.add_argument("--out", metavar="DIR", help="results directory (default: NAME.sweep)")
    w.add_argument("--dask", metavar="ADDR", help="an existing Dask scheduler, tcp://host:8786 "
                   "(default: $LLMSIM_DASK_ADDRESS, else an embedded LocalCluster)")
    w.add_argument("--in-process", action="store_true", dest="in_process",
                   help="run in this process, no Dask (small sweeps, debugging)")
    w.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: one per core)")
    w.add_argument("--resume", action="store_true", help="run only the points DIR does not hold yet")
    w.add_argument("--csv", action="store_true", help="also write DIR/results.csv")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(fn=cmd_sweep)
    t = sub.add_parser("theory", help="print load, capacities and predicted growth (--json OUT: every figure)")
    t.add_argument("scenario")
    t.add_argument("--scheduler")
    t.add_argument("--rate", type=float)
    t.add_argument("--json", metavar="OUT")
    t.set_defaults(fn=cmd_theory)
    return p


def _check_out(path) -> None:
    """--json OUT is checked before the run (a missing directory was reported after it, without
    naming the flag)."""
    if not path or path == "-":
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(parent):
        raise ConfigError(f"--json: {path!r} is not a file in an existing directory; allowed: a file path whose "
                          "directory exists, or '-' for stdout")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_out(getattr(args, "json", None))
        return args.fn(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader left; no traceback, no error line
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: this scenario needs more memory than the machine has; allowed: fewer requests "
              "(num_requests, --num-requests), a shorter duration_seconds, fewer timeseries_points, or "
              "smaller token budgets", file=sys.stderr)
        return 2
