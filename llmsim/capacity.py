"""Capacity search: the critical arrival rate of each scheduler, found by simulation.

For every scheduler the search keeps the highest rate judged *stable* (lo) and the lowest
judged *unstable* (hi; from the start the rate where theory's proven bound is reached,
``Theory.proven_load`` = 1, when there is one), starting from the theory's capacity, widening the bracket until
it holds, then probing inside it (the midpoint; both quarter points after an
*inconclusive* probe) until it is narrower than ``rel_tol`` or the probe budget is
spent. The estimate is the bracket's midpoint and the bracket is its interval. Probes of
all schedulers of one round run in parallel across the machine's cores, or, given an
``executor`` (``llmsim.sweep.DaskExecutor``), on a Dask cluster.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace

from llmsim import theory as th
from llmsim.config import Scenario, as_scenario
from llmsim.schedulers import SCHEDULERS
from llmsim.workload import ConfigError


MIN_PROBE_REQUESTS, MAX_PROBE_REQUESTS = 1000, 5_000_000  # arrivals per probe


@dataclass
class CapacityResult:
    scheduler: str
    critical_rate_rps: float | None
    interval: tuple                 # (highest stable rate, lowest unstable rate: probed, or theory's proven bound)
    theory_capacity_rps: float | None
    theory_kind: str
    probes: list = field(default_factory=list)  # (rate, verdict, growth) in probe order
    throughputs: list = field(default_factory=list)  # completions/s of each probe, same order

    def as_dict(self):
        return {"scheduler": self.scheduler, "critical_rate_rps": self.critical_rate_rps,
                "interval_rps": list(self.interval), "theory_capacity_rps": self.theory_capacity_rps,
                "theory_kind": self.theory_kind,
                "probes": [{"rate_rps": r, "verdict": v, "growth": g, "throughput_rps": t}
                           for (r, v, g), t in zip(self.probes, self.throughputs)]}


def _probe(args):
    sc, rate = args
    from llmsim.simulate import simulate
    r = simulate(sc.with_rate(rate))
    return rate, r.verdict.verdict, r.verdict.growth, r.summary["throughput_rps"]


def _pool(workers):
    import multiprocessing as mp
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))


def capacity_search(scenario: Scenario, schedulers=None, num_requests: int = 100_000,
                    rel_tol: float = 0.02, max_probes: int = 12, workers: int | None = None,
                    progress=None, executor=None) -> list[CapacityResult]:
    """Critical arrival rate (requests or workflows per second) per scheduler.

    schedulers: names (default: the scenario's own); num_requests: arrivals per probe;
    progress: optional callable(done_probes, total_probes_estimate, message); executor:
    None (a local process pool of ``workers``) or an llmsim.sweep executor (e.g. Dask)."""
    scenario = as_scenario(scenario)
    if isinstance(schedulers, str):  # one name ("orca" was read as the schedulers 'o', 'r', 'c', 'a')
        schedulers = [schedulers]
    if not scenario.single:
        return capacity_search_network(scenario, num_requests, rel_tol, max_probes, workers, progress,
                                       executor)
    if schedulers is None:
        schedulers = [scenario.engine.scheduler]
    for s in schedulers:
        if s not in SCHEDULERS:
            raise ConfigError(f"schedulers: unknown value {s!r}; allowed: {', '.join(SCHEDULERS)}")
    if not (0.001 <= rel_tol <= 0.5):
        raise ConfigError(f"rel_tol: {rel_tol!r} must be in [0.001, 0.5]")
    scenarios = {s: scenario.with_scheduler(s) for s in schedulers}
    return _search(scenarios, num_requests, rel_tol, max_probes, workers, progress, executor)


def capacity_search_network(scenario: Scenario, num_requests: int = 50_000, rel_tol: float = 0.02,
                            max_probes: int = 12, workers: int | None = None,
                            progress=None, executor=None) -> list[CapacityResult]:
    """Critical total arrival rate of a network scenario (all workflow classes scaled
    together, keeping their mix), under its own schedulers and policies."""
    label = "network (" + ",".join(dict.fromkeys(e.policy for e in scenario.engines)) + ")"
    return _search({label: scenario}, num_requests, rel_tol, max_probes, workers, progress, executor)


def capacity_search_scenarios(scenarios: dict, num_requests: int = 100_000, rel_tol: float = 0.02,
                              max_probes: int = 12, workers: int | None = None,
                              progress=None, executor=None) -> list[CapacityResult]:
    """Capacity search over several labelled scenarios at once (e.g. each scheduler with
    the budget it needs); their probes share the worker pool round by round."""
    if not (0.001 <= rel_tol <= 0.5):
        raise ConfigError(f"rel_tol: {rel_tol!r} must be in [0.001, 0.5]")
    return _search(dict(scenarios), num_requests, rel_tol, max_probes, workers, progress, executor)


def _search(scenarios: dict, num_requests, rel_tol, max_probes, workers, progress, executor=None):
    if not (isinstance(num_requests, int) and MIN_PROBE_REQUESTS <= num_requests <= MAX_PROBE_REQUESTS):
        raise ConfigError(f"num_requests: {num_requests!r} must be a whole number in "
                          f"[{MIN_PROBE_REQUESTS}, {MAX_PROBE_REQUESTS}]")
    if isinstance(max_probes, bool) or not (isinstance(max_probes, int) and 1 <= max_probes <= 100):
        raise ConfigError(f"max_probes: {max_probes!r} must be a whole number in [1, 100]")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256):
        raise ConfigError(f"workers: {workers!r} must be a whole number in [1, 256] (or None: one per core)")
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    states = {}
    for s, base in scenarios.items():
        sc = replace(base, num_requests=num_requests, duration_seconds=None, drain=False)
        t = th.analyze(sc)
        guess = t.capacity_rps or t.optimal_capacity_rps or sc.total_rate
        kind = t.engines[0].capacity_kind if sc.single else "nominal network load = 1"
        # the rate from which theory proves every run unstable (Theory.proven_load): the
        # bracket's upper end from the start, so the estimate never lies above it (a probe
        # just above it shows too little growth to be judged unstable: inconclusive)
        bound = sc.total_rate / t.proven_load if 0 < t.proven_load < math.inf else None
        states[s] = {"sc": sc, "lo": None, "hi": bound, "res": CapacityResult(s, None, (None, None), t.capacity_rps, kind),
                     "pending": [guess * 0.9, guess * 1.1], "guess": guess,
                     "rel_tol": rel_tol}
    done = 0
    total = max_probes * len(scenarios)

    def batch(s):
        """The next rates of scenario s (none once its probe budget is spent)."""
        st = states[s]
        rates = [] if len(st["res"].probes) >= max_probes else st["pending"]
        st["pending"] = []
        return rates

    def absorb(s, outs):
        """Record one batch of s's probes (in the order they were asked for) and plan the next."""
        nonlocal done
        st = states[s]
        for rate, verdict, growth, thr in outs:
            st["res"].probes.append((rate, verdict, growth))
            st["res"].throughputs.append(thr)
            if verdict == "stable":
                st["lo"] = rate if st["lo"] is None else max(st["lo"], rate)
            elif verdict == "unstable":
                st["hi"] = rate if st["hi"] is None else min(st["hi"], rate)
            done += 1
            if progress:
                progress(done, total, f"{s}: {rate:.3g}/s {verdict}")
        st["pending"] = _next_rates(st)

    if executor is not None:
        # on a sweep executor (Dask): in rounds, each probe of a round one task
        while True:
            jobs = {s: batch(s) for s in states}
            if not any(jobs.values()):
                break
            flat = [(s, r) for s, rates in jobs.items() for r in rates]
            outs = list(executor.map(_probe, [((states[s]["sc"], r),) for s, r in flat]))
            i = 0
            for s, rates in jobs.items():
                if rates:
                    absorb(s, outs[i:i + len(rates)])
                    i += len(rates)
    elif workers <= 1:
        while True:
            jobs = {s: batch(s) for s in states}
            if not any(jobs.values()):
                break
            for s, rates in jobs.items():
                if rates:
                    absorb(s, [_probe((states[s]["sc"], r)) for r in rates])
    else:
        # No rounds: a scenario's next batch is submitted as soon as its own batch is back,
        # so fast scenarios do not wait for a slow one (fastertransformer's probes simulate
        # ~60x more iterations than sarathi's). Each scenario's probes, and so the result,
        # are the same as with rounds: its next rates depend only on its own verdicts.
        pool = _pool(workers)
        try:
            running = {}  # future -> (scenario, index in its batch)
            waiting = {}  # scenario -> [outcome or None] of its batch in flight

            def submit(s):
                rates = batch(s)
                if rates:
                    waiting[s] = [None] * len(rates)
                    for i, r in enumerate(rates):
                        running[pool.submit(_probe, (states[s]["sc"], r))] = (s, i)

            # the longest simulations first (simulated time ~ requests / rate): the slowest
            # scenario's chain of probes is the search's critical path
            for s in sorted(states, key=lambda s: -1 / max(states[s]["guess"], 1e-12)):
                submit(s)
            while running:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for f in finished:
                    s, i = running.pop(f)
                    waiting[s][i] = f.result()
                    if all(o is not None for o in waiting[s]):
                        absorb(s, waiting.pop(s))
                        submit(s)
        finally:
            pool.shutdown(cancel_futures=True)
    out = []
    for s, st in states.items():
        res = st["res"]
        lo, hi = st["lo"], st["hi"]
        res.interval = (lo, hi)
        if lo is not None and hi is not None:
            res.critical_rate_rps = (lo + hi) / 2
        out.append(res)
    return out


def _next_rates(st) -> list:
    lo, hi = st["lo"], st["hi"]
    probes = st["res"].probes
    tried = [r for r, _, _ in probes]
    if lo is None and hi is None:
        # only inconclusive so far: widen both ways
        return [min(tried) * 0.75, max(tried) * 1.33]
    if lo is None:
        return [min(tried) * 0.7]
    if hi is None:
        return [max(tried) * 1.4]
    if lo >= hi:  # contradictory verdicts (noise near the boundary): stop here
        st["lo"], st["hi"] = min(lo, hi), max(lo, hi)
        return []
    if (hi - lo) / ((hi + lo) / 2) <= st["rel_tol"]:
        return []
    inside = [(r, v) for r, v, _ in probes if lo < r < hi]
    if inside:  # inconclusive probes inside the bracket: look on both sides of them
        a = min(r for r, _ in inside)
        b = max(r for r, _ in inside)
        cand = []
        if (a - lo) / a > st["rel_tol"] / 2:
            cand.append((lo + a) / 2)
        if (hi - b) / b > st["rel_tol"] / 2:
            cand.append((b + hi) / 2)
        return cand
    return [(lo + hi) / 2]
