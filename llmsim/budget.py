"""What one run may cost: memory estimated from the scenario before anything is allocated,
and a budget of kernel work.

``Limits()`` (the library's default) is generous: it only refuses runs that would not fit a
workstation's memory. ``Limits.demo()`` is what a hosted dashboard uses; a host can set its
own with the environment variable ``LLMSIM_DEMO_LIMITS`` (see ``Limits.from_env``). The
limits in force come from ``current()``: a context variable (so one thread, e.g. one
dashboard session, can use other limits than the rest of the process), defaulting to
``Limits()``.

``estimate(scenario)`` adds up the bytes of every array a run allocates, from the
scenario's numbers alone (arrivals, calls including forked copies, workflows and their
joins, engines' batch and decode regions, the trajectory); ``check(scenario, limits)``
refuses a scenario above a limit with a ConfigError that names the field to change.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from dataclasses import dataclass, replace

from llmsim.workload import ConfigError

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Bounds of one run.

    memory_bytes: estimated peak memory of one run (its arrays and result tables).
    max_calls: LLM calls one run may create (forked copies count).
    max_steps: steps (buffers) of all workflows together.
    max_work: kernel work units one run may spend (see ``llmsim.core.run_kernel``; about
        15 to 40 million per CPU second); None: no bound. A run that reaches it stops with
        partial results and ``summary["stopped"]`` saying why.
    slice_work: work units per kernel call; between calls a run checks ``should_stop``
        (a dashboard's Stop button) and the Python side runs.
    """
    memory_bytes: int = 4 * GiB
    max_calls: int = 50_000_000
    max_steps: int = 5_000
    max_work: float | None = None
    slice_work: int = 5_000_000

    @classmethod
    def demo(cls) -> "Limits":
        """A hosted demo's limits: one run stays well under a second of CPU per 10 M work
        units and a few hundred MiB (measured in bench/bench_demo_worst.py)."""
        return cls(memory_bytes=256 * MiB, max_calls=2_000_000, max_steps=200, max_work=4e8,
                   slice_work=2_000_000)

    # what LLMSIM_DEMO_LIMITS may set: (smallest, largest, whole numbers only). Values that
    # rounded to 0 (slice_work=0.5 left every live run stuck at 0%) or overflowed the kernel's
    # counters (slice_work=1e30) passed a check for "positive" and broke every page instead
    ENV_RANGES = {"memory_mib": (1, 1 << 20, False), "memory_bytes": (MiB, 1 << 40, True),
                  "max_calls": (1, 10**9, True), "max_steps": (1, 100_000, True),
                  "max_work": (1e4, 1e15, False), "slice_work": (1_000, 10**12, True)}

    @classmethod
    def from_env(cls, var: str = "LLMSIM_DEMO_LIMITS") -> "Limits":
        """Limits.demo() with the overrides in the environment variable var, a
        comma-separated list like ``memory_mib=512,max_work=1e9,max_calls=5e6``, each within
        ``ENV_RANGES``."""
        lim = cls.demo()
        raw = os.environ.get(var, "").strip()
        if not raw:
            return lim
        names = sorted(cls.ENV_RANGES)
        kw = {}
        for item in raw.split(","):
            if not item.strip():
                continue
            k, sep, v = item.partition("=")
            k = k.strip()
            if not sep or k not in cls.ENV_RANGES:
                what = "is not name=value" if not sep else f"names no limit ({_cut(k)!r})"
                raise ConfigError(f"{var}: {_cut(item.strip())!r} {what}; allowed names: {', '.join(names)}")
            lo, hi, whole = cls.ENV_RANGES[k]
            allowed = (f"allowed: {'a whole number' if whole else 'a number'} between {lo:,.0f} and {hi:,.0f}"
                       if lo >= 1 else f"allowed: a number between {lo:g} and {hi:g}")
            try:
                x = float(v)
            except ValueError:
                raise ConfigError(f"{var}: {k} = {_cut(v.strip())!r} is not a number; {allowed}") from None
            if not (math.isfinite(x) and lo <= x <= hi) or (whole and x != math.floor(x)):
                raise ConfigError(f"{var}: {k} = {_cut(v.strip())!r}; {allowed}")
            if k == "memory_mib":
                kw["memory_bytes"] = int(x * MiB)
            elif k == "max_work":
                kw[k] = x
            else:
                kw[k] = int(x)
        return replace(lim, **kw)


def _cut(text: str, n: int = 40) -> str:
    """A value from outside echoed in a message: at most n characters."""
    return text if len(text) <= n else text[:n] + "…"


_CURRENT: contextvars.ContextVar = contextvars.ContextVar("llmsim_limits", default=None)


def current() -> Limits:
    """The limits in force in this thread (context): set by ``use``, else ``Limits()``."""
    lim = _CURRENT.get()
    return Limits() if lim is None else lim


def set_current(limits: Limits | None) -> None:
    """Make limits the default of this thread (context) from now on."""
    _CURRENT.set(limits)


@contextlib.contextmanager
def use(limits: Limits):
    """``with use(Limits.demo()): ...``: the limits in force inside the block."""
    token = _CURRENT.set(limits)
    try:
        yield limits
    finally:
        _CURRENT.reset(token)


# ----------------------------------------------------------------------- estimate

# bytes per item of the kernel's arrays (see llmsim.simulate and llmsim.state)
_CALL = (14 + 5 + 2) * 8 + 16   # ci, cf, heap_t/heap_c, prompt/output pools
_CALL_TABLE = 10 * 8            # the requests table, if built (8 numeric columns + index)
_JOB = 4 * 8 + 2 * 8            # ji, jf, and the workflows table
_ARRIVAL = 4 * 8                # arrival times, classes, the sort order, merged copies


def _fmt_bytes(b: float) -> str:
    if b >= GiB:
        return f"{b / GiB:,.1f} GiB"
    return f"{b / MiB:,.0f} MiB"


def estimate(sc) -> dict:
    """Expected size of a run of scenario sc, before anything is drawn or allocated.

    Returns a dict: 'bytes' (total), 'calls', 'jobs', 'parts' (bytes per part, each named
    by the scenario field that drives it). Uses the expected number of calls per workflow
    (forked copies and loops included); stochastic pools get the simulator's 20 % slack.
    Assumes sc has passed ``llmsim.config.validate``.
    """
    import numpy as np

    from llmsim.config import expected_visits, stochastic_steps

    n_cls = len(sc.workflows)
    arrivals_drawn = 0.0   # arrival times drawn (every class draws num_requests)
    jobs = []              # expected workflows per class
    for w in sc.workflows:
        if sc.num_requests is not None:
            n = float(sc.num_requests)
            if sc.duration_seconds is not None:
                rate = float(getattr(w.arrival, "rate", math.inf))
                n = min(n, rate * sc.duration_seconds + 16) if math.isfinite(rate) else n
            drawn = float(sc.num_requests)
        else:
            rate = float(getattr(w.arrival, "rate", math.inf))
            if not math.isfinite(rate):
                rate = 1e300
            n = rate * float(sc.duration_seconds)
            drawn = n * 1.1 + 32
        jobs.append(n)
        arrivals_drawn += drawn
    total_jobs = sum(jobs)
    if sc.num_requests is not None:
        total_jobs = min(total_jobs, float(sc.num_requests))
        jobs = [j * total_jobs / max(sum(jobs), 1.0) for j in jobs]
    visits = np.asarray(expected_visits(sc), dtype=float)
    visits = np.where(np.isfinite(visits) & (visits > 0), visits, 0.0)
    calls = 0.0
    k = 0
    n_joins = 0
    max_fan = 1
    for wi, w in enumerate(sc.workflows):
        for s in w.steps:
            calls += float(visits[k]) * jobs[wi] * 1.2
            k += 1
            n_joins += int(bool(s.join))
            for r in s.routes:
                max_fan = max(max_fan, len(r.to))
    # the kernel runs physical engines: a pool (engine with replicas) is one engine per
    # replica, and each step at a pool one buffer per replica
    reps = [list(e.replicas) or [e] for e in sc.engines]
    slots = sum(r.slots for rs in reps for r in rs)
    margin = float(slots) * max_fan + 2
    e_pos = {e.name: i for i, e in enumerate(sc.engines)}
    n_e = sum(len(rs) for rs in reps)
    n_s = sum(len(reps[e_pos[s.engine]]) for w in sc.workflows for s in w.steps)
    n_stoch = int(np.count_nonzero(stochastic_steps(sc)))
    parts = {
        "arrivals": arrivals_drawn * _ARRIVAL,
        # + routing draws; a network's requests table adds workflow/step/engine columns
        "calls": calls * (_CALL + _CALL_TABLE + 8 + (0 if sc.single else 48)),
        # spare call rows: a margin (one instant's most new calls: batch slots x the largest
        # fork), and 4 margins more in the pool of each step whose call count is random (a loop,
        # a probabilistic route); the call arrays are sized to the pools (simulate.py): 16
        # looping steps at a margin of 131,072 were 8.5 M rows (914 MiB of `ci` alone)
        "spare": margin * (1 + 4 * n_stoch) * _CALL + margin * _CALL_TABLE,
        "workflows": total_jobs * (_JOB + 8 * max(n_joins, 1)),
        # decode regions (an int64 call and an int32 target per entry), batch entries
        "engines": n_e * (4 * margin + 1024) * 12 + slots * 16,
        "trajectory": 3.0 * sc.timeseries_points * (2 + 4 * n_e + 2 * n_s) * 8,
        "steps": 8.0 * n_s * n_s + 2000.0 * n_s,  # routing matrix, per-step streams
    }
    # kernel work: a lower bound on each engine's iterations. An engine that keeps up
    # processes all its tokens, at most token_budget per iteration; one that does not is
    # busy until the horizon, at most t(b) seconds per iteration. Each iteration costs at
    # least 2 work units (its instant and its batch).
    rate = sum(float(getattr(w.arrival, "rate", math.inf)) for w in sc.workflows)
    horizon = math.inf if sc.drain else (
        float(sc.duration_seconds) if sc.num_requests is None else
        min(total_jobs / rate if 0 < rate < math.inf else math.inf,
            float(sc.duration_seconds) if sc.duration_seconds is not None else math.inf))
    e_index = {e.name: i for i, e in enumerate(sc.engines)}
    tokens = [0.0] * len(sc.engines)
    k = 0
    for wi, w in enumerate(sc.workflows):
        for s in w.steps:
            tokens[e_index[s.engine]] += float(visits[k]) * jobs[wi] * (s.prompt_tokens.mean + s.output_tokens.mean)
            k += 1
    iters = []
    for rs, tok in zip(reps, tokens):
        b = max(1, max(r.token_budget for r in rs))
        t_b = max(_batch_seconds_upper(r) for r in rs)
        iters.append(min(tok / b, horizon / t_b if t_b > 0 else math.inf))
    return {"bytes": sum(parts.values()), "calls": calls / 1.2, "jobs": total_jobs,
            "parts": parts, "classes": n_cls, "steps": n_s, "iterations": sum(iters),
            "work": 2.0 * sum(iters), "engine_iterations": iters}


def _batch_seconds_upper(e) -> float:
    """An upper bound of engine e's iteration time (a full batch of token_budget tokens)."""
    code, p = e.batch_time.kernel_params()
    b = e.token_budget
    m = e.batch_time.model
    if m == "constant":
        return p[0]
    if m == "staircase":
        return p[0] + p[1] * math.ceil(b / max(p[2], 1))
    kv = e.kv_cache_tokens
    pairs = b * kv + b * (b + 1) / 2  # prefill attention pairs of a chunk of b after kv tokens
    if m == "piecewise":  # (the attention terms are 0 for a plain piecewise model)
        return p[0] + p[1] * max(0.0, b - p[2]) + max(p[5], p[6]) * b + p[3] * kv + p[4] * pairs
    return p[0] + max(p[1], p[2]) * b + p[3] * kv + p[4] * pairs


def _length_field(sc) -> str:
    return "duration_seconds" if sc.num_requests is None else "num_requests"


def _where_engine(sc) -> str:
    i = max(range(len(sc.engines)), key=lambda i: sum(r.slots for r in sc.engines[i].replicas or (sc.engines[i],)))
    e = sc.engines[i]
    pool = f" (or its {len(e.replicas)} replicas)" if e.replicas else ""
    if sc.single and not pool:
        return "engine.token_budget (or max_batch_size)"
    where = "engine" if sc.single else f"engines[{i}] ({e.name})"
    return (f"{where}.token_budget (or max_batch_size){pool}, or the number of "
            f"engines ({len(sc.engines)})")


def check(sc, limits: Limits | None = None, min_requests: int = 1) -> dict:
    """Refuse scenario sc (ConfigError naming the field to change) if a run of it would
    exceed limits (default: ``current()``); else return ``estimate(sc)``. A refusal for
    memory suggests a num_requests that fits when one of at least `min_requests` (the
    smallest the caller accepts) does."""
    lim = current() if limits is None else limits
    n_s = sum(len(w.steps) for w in sc.workflows)
    if n_s > lim.max_steps:
        raise ConfigError(f"workflows: {len(sc.workflows):,} workflow(s) with {n_s:,} steps in all; "
                          f"allowed: at most {lim.max_steps:,} steps in one scenario here")
    est = estimate(sc)
    length = _length_field(sc)
    if est["calls"] > lim.max_calls:
        per_job = est["calls"] / max(est["jobs"], 1.0)
        why = (f" (each workflow makes about {per_job:,.0f} LLM calls: forked copies and loops count)"
               if per_job > 1.5 else "")
        raise ConfigError(f"{length}: a run would create about {est['calls']:,.0f} LLM calls{why}; "
                          f"allowed: at most {lim.max_calls:,} calls per run here — lower {length}"
                          + (" or the fork's copies" if per_job > 1.5 else ""))
    if lim.max_work is not None and est["work"] > 2 * lim.max_work:
        iters = est["engine_iterations"]
        i = max(range(len(iters)), key=iters.__getitem__)
        e = sc.engines[i]
        where = "engine" if sc.single else f"engines[{i}] ({e.name})"
        raise ConfigError(
            f"{where}.token_budget: at {e.token_budget:,} tokens per iteration a run would take at least "
            f"{est['iterations']:,.0f} iterations, more than this server's work budget "
            f"({lim.max_work:,.0f} units, about {lim.max_work / 2:,.0f} iterations) allows; allowed: a larger "
            f"token_budget, fewer {length}, shorter prompts and outputs, or a run on the command line")
    if est["bytes"] > lim.memory_bytes:
        parts = est["parts"]
        big = max(parts, key=parts.get)
        field = {"arrivals": length if est["classes"] == 1 else f"{length} (drawn for each of the "
                 f"{est['classes']:,} workflow classes) or the number of workflows",
                 "calls": length,
                 "workflows": length if est["classes"] == 1 else f"{length} or the number of workflows "
                 "with a join",
                 "engines": _where_engine(sc),
                 "spare": f"{_where_engine(sc)} (call rows are kept spare for one instant's new calls: "
                          "batch slots x the largest fork, again for each step reached by a loop or a "
                          "probabilistic route)",
                 "trajectory": "timeseries_points",
                 "steps": "workflows (the number of steps)"}[big]
        detail = ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in sorted(parts.items(), key=lambda x: -x[1])
                           if v >= 0.05 * est["bytes"])
        hint = ""
        if big in ("arrivals", "calls", "workflows") and sc.num_requests is not None:
            grows = parts["arrivals"] + parts["calls"] + parts["workflows"]
            fits = sc.num_requests * (lim.memory_bytes - (est["bytes"] - grows)) / grows
            if int(fits * 0.9) >= max(min_requests, 1):
                hint = f" (about num_requests = {int(fits * 0.9):,} fits)"
            elif min_requests > 1:
                hint = (f" (not even num_requests = {min_requests:,}, the fewest allowed here, fits: fewer "
                        "workflow classes, steps or forked copies, or a run on the command line)")
        raise ConfigError(f"{field}: a run would need about {_fmt_bytes(est['bytes'])} of memory "
                          f"({detail}); allowed: at most {_fmt_bytes(lim.memory_bytes)} per run here{hint}")
    return est
