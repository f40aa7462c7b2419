"""Empirical stability verdicts: does the backlog stay bounded?

The test looks at the later part of the arrival window (the second half by default):
the backlog trajectory there is cut into K consecutive batches, the batch means are
regressed on time, and the slope's confidence interval (Student t, K-2 degrees of
freedom; batch means tame the autocorrelation of a queue's path) is compared with the
work arriving per second. A slope is *growth*: the share of offered work that piles up.

- unstable: the estimate exceeds ``threshold`` (2% of offered work accumulating) and the
  whole interval lies above NOISE (0.5%);
- stable: the whole interval lies below ``threshold`` and it reaches below NOISE;
- inconclusive: otherwise (typically near load 1, or a horizon too short); and a run that
  would be stable by these rules while its load over a capacity theory *proves* (the
  stability region, an exact batch cycle: ``Theory.proven_load``) is 1 or more: just above
  load 1 the growth is a share of a percent, too slow for a finite run to show, and calling
  it stable would contradict the theorem.

The verdict carries its evidence (slope, interval, theory drift, load, capacity) and a
sentence a student can read. Networks get one test per buffer and per engine; the
unstable ones are named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from llmsim import theory as th

@lru_cache(maxsize=128)
def _t975(df: int) -> float:
    """Two-sided 95% Student t quantile with `df` degrees of freedom (memoized: a verdict
    asks for the same few df every run)."""
    if df < 1:
        return math.inf
    # scipy.special's inverse of Student's t CDF is what scipy.stats.t.ppf computes (bit for
    # bit, tested), without importing scipy.stats (~0.2-0.7 s, the dashboard's first verdict);
    # imported here: the theory's scipy.optimize already brings scipy.special along
    from scipy.special import stdtrit
    return float(stdtrit(df, 0.975))


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


def signed_pct(share: float) -> str:
    """A share as a signed percentage with one decimal: "+0.0%", never "-0.0%" (a share
    that rounds to zero has no sign to show)."""
    return f"{round(100 * share, 1) + 0.0:+.1f}%"


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
    For a network the backlog includes the unstarted calls of workflows in the system.
    Memory: preemptions and the work they made the engine redo (recomputed tokens per
    second and as a share of the offered work), whether theory's memory bound binds.
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
    scheduler_load: float = 0.0
    capacity_kind: str = ""
    preemptions: float = 0.0
    recomputed_tokens_per_s: float = 0.0
    recomputed_share: float = 0.0
    memory_binds: bool = False
    assumption_broken: str = ""
    burst_load: float = 0.0   # a replayed trace: the load of its busiest stretch (0: not a trace)
    offered_tokens_per_s: float = 0.0  # the work arriving (growth's denominator)
    proven_load: float = 0.0  # Theory.proven_load: at 1 or above no run is stable
    # the arrivals the run drew inside its measured window, per second (mean over the runs):
    # bursty arrivals can stray far from arrival_rate_rps over a finite run
    window_arrival_rate_rps: float = math.nan

    def summary_fields(self) -> dict:
        return {"verdict": self.verdict, "capacity_rps": self.capacity_rps,
                "scheduler_load": self.scheduler_load, "capacity_kind": self.capacity_kind,
                "backlog_growth_tokens_per_s": self.backlog_growth_tokens_per_s,
                "theory_drift_tokens_per_s": self.theory_drift_tokens_per_s,
                "recomputed_tokens_per_s": self.recomputed_tokens_per_s,
                "recomputed_share": self.recomputed_share, "memory_binds": self.memory_binds,
                "assumption_broken": self.assumption_broken,
                "verdict_explanation": self.explanation,
                "unstable_parts": list(self.unstable_parts)}

    def evidence(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "parts"} | {"parts": self.parts}


RECOMPUTE_NOTABLE = 0.01  # recomputation above 1% of the offered work is worth a sentence


def _kv_fill(theory, window) -> tuple[str, float]:
    """Where vllm's KV cache fills (theory's kv_fill_seconds) against the measured window
    (start, end): "" (not vllm above its chain capacity), "after" the run, "inside" the
    window, or "before" it; and the fill time."""
    fills = [e.kv_fill_seconds for e in theory.engines if e.kv_fill_seconds is not None]
    if len(theory.engines) != 1 or not fills or window is None:
        return "", 0.0
    fill, (start, end) = fills[0], window
    return ("after" if fill > end else "before" if fill <= start else "inside"), fill


def _within_reach(drift_share: float, growth_hi: float) -> bool:
    """Theory's estimate predicts growth (drift_share > 0) and the run's 95% interval reaches it:
    the run cannot tell that growth from none."""
    return drift_share > 0 and growth_hi >= drift_share


def fmt_load(x: float) -> str:
    """A load with two decimals, or three where two would read 1.00 for a load that is not 1
    (0.996 or 1.003: the side of 1 is what the verdict turns on)."""
    two = f"{x:.2f}"
    return f"{x:.3f}" if two == "1.00" and f"{x:.3f}" != "1.000" else two


def loads_differ(load: float, scheduler_load: float) -> bool:
    """True when a scheduler's own load is worth giving beside the load (over the best capacity)."""
    return abs(scheduler_load - load) > 0.005 * max(load, 1e-12)


def _memory_note(v: str, preemptions: float, recompute_share: float, drift_share: float) -> str:
    if not (preemptions > 0 and recompute_share >= RECOMPUTE_NOTABLE):
        return ""
    return (f" Memory: {preemptions:,.0f} preemptions made the engine redo {100 * recompute_share:.1f}% "
            "of the offered work"
            # compare's vllm at load 1.10: +18% measured beside "theory predicts 9%", unexplained
            + (f", work that theory's {100 * drift_share:.0f}% leaves out" if v == "unstable" and drift_share > 0
               else "") + ".")


def _explain(v: str, theory, growth: float, drift_share: float, parts=(), network=False,
             part_growth=None, recompute_share=0.0, preemptions=0.0, window=None, proven=0.0,
             interval=(-math.inf, math.inf), threshold=0.02):
    """The verdict's sentence, and which of theory's assumptions broke (or "").
    `interval` is the 95% interval of `growth` (shares of the arriving work).

    vllm above its chain capacity piles up running requests until they fill the KV cache;
    from then on memory gates its prefills and the chain's capacity no longer holds. The
    sentence says where that time falls against the measured window (`window`, seconds)."""
    load, sload = theory.load, theory.scheduler_load
    fill_at, fill = _kv_fill(theory, window)
    where = f" (growing: {', '.join(parts)})" if parts else ""
    sched = " and ".join(dict.fromkeys(e.scheduler for e in theory.engines))
    # the scheduler's own load first when the two differ: theory's drift and the verdict follow it
    loads = (f"load {fmt_load(load)}" if not loads_differ(load, sload)
             else f"{sched}'s own load {fmt_load(sload)} (arrival rate over its own capacity; load {fmt_load(load)} over "
                  "the best scheduler's capacity)")
    mem = _memory_note(v, preemptions, recompute_share, drift_share)
    broken = ""
    if v == "unstable":
        if part_growth is not None and growth <= 0.02:
            amount = (f"{', '.join(parts)} kept piling up (about {100 * part_growth:.0f}% of what arrives "
                      "there stays)")
        else:
            amount = f"unfinished work kept growing by about {100 * max(growth, 0.0):.0f}% of the work arriving"
        if fill_at == "after":
            bound = (f", and it keeps growing while vllm's running requests have room in the KV cache: about "
                     f"{fill:,.0f} s at this rate, {fill / window[1]:,.1f} times this run. Then memory gates the "
                     "prefills; whether the backlog levels off there, theory cannot say (run past that time to see).")
        elif fill_at == "inside":
            bound = (f". The KV cache fills after about {fill:,.0f} s, inside this run's second half, and from then on "
                     "memory gates the prefills: the trend mixes the two regimes (run longer to see the second).")
        elif fill_at == "before":
            bound = (f", so the queue would grow without bound: the KV cache filled after about {fill:,.0f} s, and "
                     "even with memory gating the prefills vllm did not keep up.")
        else:
            bound = ", so the queue would grow without bound."
        share_of = (" of the network's arriving work (the calls made before its busiest engine keep up)"
                    if network and drift_share > 0 else "")
        text = (f"Unstable{where}: {amount}; theory predicts {100 * drift_share:.0f}%{share_of} at {loads}" + bound
                + mem)
        if sload < 1:
            why = ""  # what the broken assumption did, where the sentence needs it
            if preemptions > 0 and recompute_share >= RECOMPUTE_NOTABLE:
                broken = ("no recomputation: theory's capacity assumes preempted work is not redone, but the KV "
                          f"cache thrashed ({100 * recompute_share:.1f}% of the offered work recomputed)")
            elif preemptions > 0 and network:
                # orca on one engine of a three-step network: the KV cache full for the whole run, 564
                # preemptions, and the sentence blamed the policy of a one-engine FCFS network
                broken = (f"memory: the KV cache ran full ({preemptions:,.0f} preemptions), and theory's capacity "
                          f"for {sched} on several steps leaves out how a full cache slows it (its memory-bound "
                          "formulas are for one step)")
            elif network and len(theory.engines) > 1:
                broken = ("policy: every engine's load is below 1, but the network's policy does not keep them "
                          "all busy (a load below 1 is necessary, not sufficient)")
                # the cyclic preset: the chart shows backlog moving between buffers while the
                # sentence named only the ones that grew over the measured window (tried as a
                # new user would)
                why = (" Under such a policy the backlog moves between buffers in waves (an engine idles "
                       "while work piles up in front of another), so which buffers grew depends on the part "
                       "of the run measured (its later part).")
            elif network:
                broken = (f"capacity formula: theory's figure for {sched} on this engine's mix of steps is "
                          "approximate; the simulation finds less")
            else:
                broken = (f"capacity formula: theory's figure for {sched} is approximate "
                          f"({theory.engines[0].capacity_kind}); the simulation finds less")
            text += f" Theory says it should keep up; the assumption that broke: {broken}.{why}"
        return text, broken
    if v == "stable":
        text = (f"Stable: at {loads}, the unfinished work went up and down but did not trend upward in the "
                "second half of the run, so " + ("every engine of the network keeps up." if network
                                                  else "this engine keeps up.") + mem)
        if drift_share > 0 and fill_at in ("before", "inside"):
            broken = (f"KV cache not binding: theory's capacity for {sched} holds while the KV cache has room, but "
                      f"at this rate the running requests fill it after about {fill:,.0f} s; from then on memory "
                      "gates the prefills, vllm runs full decode batches between them, and the backlog levels off "
                      "near the cache's size")
            text += f" Theory's {sched} capacity predicts growth; the assumption that broke: {broken}."
        elif drift_share > 0:
            # stable only when the run's interval lies below the growth theory predicts (verdict_from_runs)
            broken = (f"horizon or capacity formula: theory predicts about {100 * drift_share:.1f}% of the arriving "
                      f"work piling up, and this run's 95% interval ({signed_pct(interval[0])} to "
                      f"{signed_pct(interval[1])}) lies below that. Run longer; or theory's capacity is "
                      f"approximate here. Its formula: {theory.engines[0].capacity_kind}")
            text += f" Theory disagrees — {broken}."
        return text, broken
    regime = (f" vllm's KV cache fills after about {fill:,.0f} s at this rate; from then on memory gates its "
              "prefills." if fill_at in ("before", "inside") else "")
    if proven >= 1:
        # theory proves the queue unbounded (Theory.proven_load): a run that shows no trend is too short
        who = "the network" if network else f"{sched}"
        if interval[0] > NOISE:
            # a clear trend below the rule's threshold (orca with cheap prefills at proven load 1.10: its
            # backlog grew +1.7%, interval +1.7% to +1.8%, and the sentence called that noise)
            return (f"Inconclusive: at {loads}, theory proves that {who} cannot keep up ({theory.proven_kind} "
                    f"bounds it, and the load over that bound is {proven:.3f}, at least 1). This run's backlog "
                    f"does grow, {signed_pct(growth)} of arriving work (95% interval {signed_pct(interval[0])} to "
                    f"{signed_pct(interval[1])}), but less than the {100 * drift_share:.1f}% theory predicts and "
                    f"the {100 * threshold:.0f}% the rule needs: work can pile up more slowly for a while"
                    + (f" ({sched} runs prefill first: it keeps prompts moving and holds the decode work back "
                       "until its KV cache is full)" if sched in ("orca", "vllm") else "")
                    + ". A longer run shows the full growth." + regime + mem), ""
        slow = ("at a load of exactly 1 the backlog wanders like a random walk, with no trend a run can measure"
                if drift_share < 0.0005 else
                f"the growth theory predicts, about {100 * drift_share:.1f}% of the arriving work, is too slow to "
                "tell from noise over this horizon")
        return (f"Inconclusive: at {loads}, theory proves that {who} cannot keep up ({theory.proven_kind} bounds "
                f"it, and the load over that bound is {proven:.3f}, at least 1). But {slow} (this run: "
                f"{signed_pct(growth)} of arriving work). Run longer or add replications to see the backlog grow."
                + regime + mem), ""
    if _within_reach(drift_share, interval[1]):
        return (f"Inconclusive: at {loads}, theory's estimate ({theory.engines[0].capacity_kind}) puts "
                f"{sched} above its capacity: about {100 * drift_share:.1f}% of the arriving work would pile up. "
                f"This run's trend, {signed_pct(growth)} (95% interval {signed_pct(interval[0])} to "
                f"{signed_pct(interval[1])}), cannot tell that growth from none, so it does not show that "
                f"{'the network keeps' if network else 'this engine keeps'} up. Run longer or add replications."
                + regime + mem), ""
    return (f"Inconclusive: at {loads}, the backlog's trend ({signed_pct(growth)} of arriving "
            "work) cannot be told apart from noise over this horizon; run longer or add replications." + regime
            + mem), ""


BURST_MIN_ARRIVALS = 20   # a trace's busiest stretch: at least this many arrivals ...
BURST_SHARE = 0.01        # ... or this share of the replay, whichever is more
BURST_INSTANT_S = 1e-6    # a stretch shorter than this is told as arrivals at one instant


def _burst(sc, load: float):
    """A replayed trace's busiest stretch: (its load, its sentence) when that load is above 1,
    else (its load, ""); (0.0, "") for anything but a single engine replaying a trace.

    The verdict's load is the replay's mean rate over its span: a burst then a long gap (999
    requests at 100/s, one more 10^6 s later) has a load near 0 and is stable over the whole
    replay, while the burst itself overloads the engine. The stretch is the k consecutive
    arrivals (k = max(20, 1% of the replay)) that come closest together."""
    if not sc.single:
        return 0.0, ""
    arr = sc.workflows[0].arrival
    if not hasattr(arr, "replayed_times") or not (sc.total_rate > 0 and math.isfinite(sc.total_rate)):
        return 0.0, ""
    t = np.asarray(arr.replayed_times, dtype=float) / arr.rate_scale
    k = max(BURST_MIN_ARRIVALS, int(len(t) * BURST_SHARE))
    if len(t) <= k:
        return 0.0, ""
    span = t[k:] - t[:-k]
    i = int(np.argmin(span))
    rate = k / span[i] if span[i] > 0 else math.inf
    peak = load * rate / sc.total_rate
    if not peak > 1:
        return peak, ""
    if span[i] < BURST_INSTANT_S:  # as good as one instant: say how many, not an absurd rate
        m = int(np.searchsorted(t, t[i] + BURST_INSTANT_S, side="right")) - i
        what = (f"{m:,} of its arrivals come within a microsecond of t = {t[i]:,.4g} s, a burst no engine "
                "serves as it comes")
    else:
        shown = f"{peak:,.2f}" if peak < 1e4 else f"{peak:.3g}"
        what = (f"its busiest {k} arrivals (t = {t[i]:,.4g} to {t[i + k]:,.4g} s) come at {rate:,.3g} "
                f"requests/s, a load of {shown}")
    return peak, (f" The trace is bursty: {what}; the queue builds there and drains afterwards. This "
                  f"verdict is about the whole replay (load {load:.2f}), not the burst.")


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
    part_cols = None if sc.single else _part_columns(sc, theory)
    for r in results:
        col = _column_reader(r)
        t = col("time_s")
        y = sum(col(c) for c in cols)
        if not sc.single:
            y = y + unstarted_work(sc, col, len(t))
        fits.append(trend(t, y, start, end, batches))
        if not sc.single:
            for name, c, rate in part_cols:
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
        part_ev[name] = {"verdict": pv, "growth_per_s": ps, "interval": (pl, ph), "arrival_rate": rate,
                         "growth": ps / rate if rate > 0 else math.nan}
        if pv == "unstable":
            unstable.append(name)
    if unstable:
        v = "unstable"
    elif parts and v == "stable" and any(p["verdict"] == "inconclusive" for p in part_ev.values()):
        v = "inconclusive"
    proven = theory.proven_load
    drift_share = theory.drift_tokens_per_s / offered if offered > 0 else 0.0
    if v == "stable" and proven >= 1:
        # no scheduler keeps up above a bound theory proves (the stability region is exact):
        # a finite run that shows no trend there is too short, not stable
        v = "inconclusive"
    elif v == "stable" and _within_reach(drift_share, ghi):
        # so it does not show the engine keeps up
        v = "inconclusive"
    part_growth = max((part_ev[n]["growth"] for n in unstable), default=None)
    secs = [max(r.summary["simulated_seconds"], 1e-12) for r in results]
    preempt = float(np.mean([r.summary.get("preemptions", 0) for r in results]))
    recomputed = float(np.mean([r.summary.get("tokens_recomputed", 0) / s for r, s in zip(results, secs)]))
    share = recomputed / offered if offered > 0 else 0.0
    drawn = _window_rate(results, start, end)
    strayed = _strayed(results, v, theory, g, drawn, start, end, threshold, batches)
    if strayed:
        v = "inconclusive"
    text, broken = _explain(v, theory, g, drift_share, tuple(unstable), not sc.single, part_growth, share, preempt,
                            (start, end), proven, (glo, ghi), threshold)
    if strayed:
        text = strayed + _memory_note(v, preempt, share, drift_share)
    burst_load, burst = _burst(sc, theory.load)
    if v != "unstable":
        text += burst
    kind = "; ".join(f"{e.name}: {e.capacity_kind}" for e in theory.engines) if not sc.single \
        else theory.engines[0].capacity_kind
    return Verdict(v, text, theory.load, theory.capacity_rps, sc.total_rate, slope, (lo, hi), g, glo, ghi,
                   theory.drift_tokens_per_s, (start, end), threshold, len(results),
                   tuple(unstable), part_ev, theory.scheduler_load, kind, preempt, recomputed, share,
                   any(e.memory_binds for e in theory.engines), broken, burst_load=burst_load,
                   offered_tokens_per_s=offered, proven_load=proven, window_arrival_rate_rps=drawn)


STRAY_SHARE = 0.05  # a run's window drew arrivals 5% or more away from the nominal rate: worth saying


def arrivals_from_tables(result) -> np.ndarray | None:
    """A run's arrival times, sorted, from its workflows (else requests) table; None when it
    has neither."""
    for name in ("workflows", "requests"):
        t = getattr(result, name, None)
        if t is not None and len(t) and "arrival_s" in t:
            a = t["arrival_s"].to_numpy(dtype=float)
            return np.sort(a[~np.isnan(a)])
    return None


def _arrival_times(result) -> np.ndarray | None:
    """A run's arrival times: a Result's own (no table built), else from its tables."""
    return result.arrival_times() if hasattr(result, "arrival_times") else arrivals_from_tables(result)


def _window_rate(results, start: float, end: float) -> float:
    """Arrivals per second the runs drew inside [start, end] (mean over the runs)."""
    if not end > start:
        return math.nan
    rates = []
    for r in results:
        t = _arrival_times(r)
        if t is None:
            return math.nan
        n = int(np.searchsorted(t, end, side="right")) - int(np.searchsorted(t, start, side="left"))
        rates.append(n / (end - start))
    return float(np.mean(rates))


def reference_backlog(arrivals: np.ndarray, capacity_rps: float, at: np.ndarray) -> np.ndarray:
    """Requests a server working without pause at `capacity_rps` would hold at times `at`,
    fed `arrivals` (sorted times): its unfinished work V(t) = X(t) - min over s <= t of X(s),
    X(t) = N(t)/mu - t (Lindley's recursion in closed form), times mu. Vectorized: X falls
    between arrivals, so its running minimum is over the instants just before each arrival."""
    w = 1.0 / capacity_rps
    k = np.arange(len(arrivals), dtype=float)
    before = np.minimum.accumulate(w * k - arrivals) if len(arrivals) else np.zeros(0)  # X(t_k-)
    n = np.searchsorted(arrivals, at, side="right")  # arrivals up to each time
    low = np.where(n > 0, before[np.maximum(n - 1, 0)] if len(arrivals) else 0.0, 0.0)
    x = w * n - at
    return np.maximum(x - np.minimum(np.minimum(low, 0.0), x), 0.0) * capacity_rps


def _reference_growth(results, theory, start: float, end: float, batches: int) -> float:
    """Growth (share of the nominal arrival rate) of reference_backlog over the verdict's
    window, for the arrivals each run drew, at the scheduler's own theory capacity; the
    mean over the runs (NaN without a capacity)."""
    sc = results[0].scenario
    sload = theory.scheduler_load
    if not (sload > 0 and math.isfinite(sload) and sc.total_rate > 0):
        return math.nan
    mu = sc.total_rate / sload
    slopes = []
    for r in results:
        arrivals = _arrival_times(r)
        if arrivals is None:
            return math.nan
        t = _column_reader(r)("time_s")
        f = trend(t, reference_backlog(arrivals, mu, t), start, end, batches)
        if f is not None:
            slopes.append(f.slope)
    return float(np.mean(slopes)) / sc.total_rate if slopes else math.nan


def _strayed(results, v: str, theory, g: float, drawn: float, start: float, end: float, threshold: float,
             batches: int) -> str:
    """The sentence of an inconclusive verdict when the run's own arrivals, not the engine,
    explain an unstable-looking trend (else ""): theory puts the scheduler below its
    capacity, the backlog grew, and a server working without pause at that capacity, fed
    the arrivals this run drew, grows by at least the rule's threshold over the same window.

    Bursty arrivals make this common: azure-code-2023's gamma inter-arrivals (cv 13.2) over
    a run of 20,000 requests drew its second half at 1.14 times the nominal rate, in bursts,
    and orca and sarathi at load 0.80 were called unstable (+10%) with their exact capacity
    formula blamed."""
    sc = results[0].scenario
    sload = theory.scheduler_load
    if not (v == "unstable" and sc.single and sload < 1):
        return ""
    ref = _reference_growth(results, theory, start, end, batches)
    if not (math.isfinite(ref) and ref >= threshold and g - ref < threshold):
        return ""  # (growth beyond the ideal server's by the threshold is the engine's own)
    sched = theory.engines[0].scheduler
    nominal = sc.total_rate
    rate = (f"; its second half drew {drawn:,.3g} arrivals/s, {drawn / nominal:.2f} times the nominal "
            f"{nominal:,.3g}/s" if math.isfinite(drawn) and abs(drawn / nominal - 1) >= STRAY_SHARE else "")
    return (f"Inconclusive: at load {fmt_load(sload)} theory says {sched} keeps up, and the backlog grew "
            f"{signed_pct(g)} of the arriving work — but an ideal server working without pause at {sched}'s theory "
            f"capacity, fed the arrivals this run drew, grows {signed_pct(ref)} over the same stretch: the growth "
            f"comes from how this run's arrivals fell, not from the engine (bursts{rate}). The run is too short "
            "for its arrivals to settle near their mean rate; run longer or add replications.")


def future_work(sc) -> np.ndarray:
    """Per step: the expected tokens of the calls a workflow still makes after one call of
    that step completes (routing, loops and forks included; a join's work is shared among
    the deliveries it needs). Solved as (I - Q) F = Q w over the sparse routing matrix."""
    from scipy.sparse import csr_matrix, identity
    from scipy.sparse.linalg import spsolve
    from llmsim.config import routing_matrix
    w = np.array([s.prompt_tokens.mean + s.output_tokens.mean for wf in sc.workflows for s in wf.steps])
    q = csr_matrix(routing_matrix(sc))
    a = (identity(len(w), format="csc") - q.tocsc())
    rhs = q @ w
    f = spsolve(a, rhs) if len(w) > 1 else np.atleast_1d(rhs / a.toarray()[0, 0])
    return np.asarray(f, dtype=float).reshape(-1)


def unstarted_work(sc, col, n: int) -> np.ndarray:
    """Tokens of the calls that workflows now in the system will still make: for every
    call at an engine, the expected work its workflow does after it (SPEC.md §5; without
    this a long chain's backlog hides in calls not yet made). Calls in a tool delay are
    not counted (their workflows' growth shows in the workflows-in-system test).
    `col` reads a timeseries column by name (see _column_reader); n is its length."""
    f = future_work(sc)
    out = np.zeros(n)
    k = 0
    for w in sc.workflows:
        for s in w.steps:
            if f[k] != 0:
                out = out + f[k] * col(f"{w.name}.{s.name}.in_buffer")
            k += 1
    return out


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
    # workflows in the system grow with any buffer, delay or unstarted call that piles up
    out.append(("workflows in system", "workflows_in_system", sc.total_rate))
    return out
