"""Empirical stability verdicts: does the backlog stay bounded?

The test looks at the later part of the arrival window (the second half by default):
the backlog trajectory there is cut into K consecutive batches, the batch means are
regressed on time, and the slope's confidence interval (Student t, K-2 degrees of
freedom; batch means tame the autocorrelation of a queue's path) is compared with the
work arriving per second. A slope is *growth*: the share of offered work that piles up.

- unstable: the estimate exceeds ``threshold`` (2% of offered work accumulating) and the
  whole interval lies above NOISE (0.5%);
- stable: the whole interval lies below ``threshold`` and it reaches below NOISE;
- inconclusive: otherwise (typically near load 1, or a horizon too short).

The verdict carries its evidence (slope, interval, theory drift, load, capacity) and a
sentence a student can read. Networks get one test per buffer and per engine; the
unstable ones are named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from llmsim import theory as th

# two-sided 95% Student t quantiles by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 12: 2.179, 14: 2.145, 16: 2.12, 18: 2.101, 20: 2.086, 30: 2.042}


def _t975(df: int) -> float:
    if df in _T975:
        return _T975[df]
    keys = sorted(k for k in _T975 if k <= df)
    return _T975[keys[-1]] if keys else 12.706


@dataclass(frozen=True)
class Trend:
    slope: float        # units per second
    lo: float           # 95% interval
    hi: float
    n_batches: int


def trend(t: np.ndarray, y: np.ndarray, start: float, end: float, batches: int = 10) -> Trend | None:
    """Slope of y(t) over [start, end] from batch means; None if too few samples."""
    m = (t >= start) & (t <= end)
    t, y = t[m], y[m]
    if len(t) < 2 * batches:
        batches = max(3, len(t) // 2)
    if len(t) < 6:
        return None
    idx = np.array_split(np.arange(len(t)), batches)
    bt = np.array([t[i].mean() for i in idx])
    by = np.array([y[i].mean() for i in idx])
    x = bt - bt.mean()
    sxx = float((x * x).sum())
    if sxx <= 0:
        return None
    slope = float((x * (by - by.mean())).sum() / sxx)
    resid = by - by.mean() - slope * x
    df = len(bt) - 2
    se = math.sqrt(float((resid * resid).sum()) / df / sxx) if df > 0 else math.inf
    h = _t975(df) * se
    return Trend(slope, slope - h, slope + h, len(bt))


NOISE = 0.005  # growth below 0.5% of offered work is indistinguishable from a filling queue


def classify(growth: float, lo: float, hi: float, threshold: float) -> str:
    """unstable: growth above `threshold` and significantly above NOISE; stable: growth
    significantly below `threshold` and not significantly above NOISE; else inconclusive."""
    if lo > NOISE and growth > threshold:
        return "unstable"
    if hi < threshold and lo < NOISE:
        return "stable"
    return "inconclusive"


@dataclass(frozen=True)
class Verdict:
    """A stability verdict with the numbers behind it.

    growth: measured backlog growth as a share of the offered work (tokens/s over
    tokens/s); growth_lo/hi its 95% interval; backlog_growth_tokens_per_s the measured
    slope; theory_* what the fluid model predicts; unstable_parts names growing buffers.
    """
    verdict: str
    explanation: str
    load: float
    capacity_rps: float | None
    arrival_rate_rps: float
    backlog_growth_tokens_per_s: float
    backlog_growth_interval: tuple
    growth: float
    growth_lo: float
    growth_hi: float
    theory_drift_tokens_per_s: float
    window_s: tuple
    threshold: float
    replications: int = 1
    unstable_parts: tuple = ()
    parts: dict = field(default_factory=dict)

    def summary_fields(self) -> dict:
        return {"verdict": self.verdict, "capacity_rps": self.capacity_rps,
                "backlog_growth_tokens_per_s": self.backlog_growth_tokens_per_s,
                "theory_drift_tokens_per_s": self.theory_drift_tokens_per_s,
                "verdict_explanation": self.explanation,
                "unstable_parts": list(self.unstable_parts)}

    def evidence(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "parts"} | {"parts": self.parts}


def _explain(v: str, load: float, growth: float, drift_share: float, parts=(), network=False) -> str:
    where = f" (growing: {', '.join(parts)})" if parts else ""
    if v == "unstable":
        return (f"Unstable{where}: unfinished work kept growing by about {100 * growth:.0f}% of the "
                f"work arriving (theory predicts {100 * drift_share:.0f}% at load {load:.2f}), so "
                "the queue would grow without bound.")
    if v == "stable":
        return (f"Stable: at load {load:.2f} the unfinished work went up and down but did not "
                "trend upward in the second half of the run, so " + ("every engine of the network keeps up." if network else "this engine keeps up."))
    return (f"Inconclusive: at load {load:.2f} the backlog's trend ({100 * growth:+.1f}% of arriving "
            "work) cannot be told apart from noise over this horizon; run longer or add replications.")


def verdict(result, window: float = 0.5, threshold: float = 0.02, batches: int = 10) -> Verdict:
    """Verdict of one run from its backlog trajectory over the last `window` share of
    the arrival horizon."""
    return verdict_from_runs([result], window, threshold, batches)


def verdict_from_runs(results, window: float = 0.5, threshold: float = 0.02, batches: int = 10) -> Verdict:
    """Verdict over independent replications (same scenario, different seeds): the
    growth estimates are pooled (mean and its t interval across runs); with one run the
    batch-means interval is used."""
    sc = results[0].scenario
    theory = th.analyze(sc)
    horizon = min(r.summary["horizon_seconds"] for r in results)
    start, end = horizon * (1 - window), horizon
    offered = sum(e.offered_tokens_per_s for e in theory.engines)
    cols = _backlog_columns(sc)
    fits = []
    parts = {}
    for r in results:
        col = _column_reader(r)
        t = col("time_s")
        y = sum(col(c) for c in cols)
        fits.append(trend(t, y, start, end, batches))
        if not sc.single:
            for name, c, rate in _part_columns(sc, theory):
                f = trend(t, col(c), start, end, batches)
                parts.setdefault(name, []).append((f, rate))
    slope, lo, hi = _pool(fits)
    g, glo, ghi = slope / offered, lo / offered, hi / offered
    v = classify(g, glo, ghi, threshold)
    unstable = []
    part_ev = {}
    for name, fl in parts.items():
        rate = fl[0][1]
        ps, pl, ph = _pool([f for f, _ in fl])
        if rate > 0 and math.isfinite(ps):
            pv = classify(ps / rate, pl / rate, ph / rate, threshold)
        else:
            pv = "inconclusive"
        part_ev[name] = {"verdict": pv, "growth_per_s": ps, "interval": (pl, ph), "arrival_rate": rate}
        if pv == "unstable":
            unstable.append(name)
    if unstable:
        v = "unstable"
    elif parts and v == "stable" and any(p["verdict"] == "inconclusive" for p in part_ev.values()):
        v = "inconclusive"
    drift_share = theory.drift_tokens_per_s / offered if offered > 0 else 0.0
    return Verdict(v, _explain(v, theory.load, g, drift_share, tuple(unstable), not sc.single), theory.load,
                   theory.capacity_rps, sc.total_rate, slope, (lo, hi), g, glo, ghi,
                   theory.drift_tokens_per_s, (start, end), threshold, len(results),
                   tuple(unstable), part_ev)


def _column_reader(result):
    """name -> float array of a result's timeseries; numpy only when the result can (so
    llmsim.simulate never imports pandas), else through its DataFrame."""
    if hasattr(result, "timeseries_column"):
        return result.timeseries_column
    ts = result.timeseries
    return lambda name: ts[name].to_numpy()


def _pool(fits):
    fits = [f for f in fits if f is not None]
    if not fits:
        return math.nan, -math.inf, math.inf
    if len(fits) == 1:
        f = fits[0]
        return f.slope, f.lo, f.hi
    s = np.array([f.slope for f in fits])
    m = float(s.mean())
    h = _t975(len(s) - 1) * float(s.std(ddof=1)) / math.sqrt(len(s))
    return m, m - h, m + h


def _backlog_columns(sc):
    if sc.single:
        return ["backlog_tokens"]
    return [f"{e.name}.backlog_tokens" for e in sc.engines]


def _part_columns(sc, theory):
    """(name, timeseries column, arrival rate of calls to it) per buffer."""
    from llmsim.config import expected_visits
    visits = expected_visits(sc)
    out = []
    k = 0
    for w in sc.workflows:
        for s in w.steps:
            out.append((f"{w.name}.{s.name}", f"{w.name}.{s.name}.in_buffer", w.arrival.rate * visits[k]))
            k += 1
    return out


def replicate(scenario, seeds=5, record=False):
    """Run independent replications (seeds scenario.seed, +1, ...) and pool the verdict."""
    from dataclasses import replace
    from llmsim.simulate import simulate
    n = seeds if isinstance(seeds, int) else len(seeds)
    seed_list = [scenario.seed + i for i in range(n)] if isinstance(seeds, int) else list(seeds)
    results = [simulate(replace(scenario, seed=s)) for s in seed_list]
    return verdict_from_runs(results), results
