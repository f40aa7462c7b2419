"""Replicas behind a router: an engine (or a network node) served by K engines.

Real services run K copies of a model behind a load balancer. In a scenario an engine
table takes ``replicas = K`` (K identical copies) or ``replicas = [{...}, {...}]`` (one
table of overrides per replica, e.g. a different ``preset``: heterogeneous pools) and a
``router``:

- ``round_robin``: replicas in turn;
- ``random``: a uniformly random replica (the router's own seeded stream);
- ``jsq_tokens``: join the shortest queue by unprocessed tokens (prompt + output tokens
  not yet processed, recomputation included), ties to the lowest index;
- ``least_requests``: least outstanding requests (waiting + running), as Vidur's LOR;
- ``power_of_two``: two distinct random replicas, the one with fewer unprocessed tokens.

The kernel routes a call when it becomes ready at the pool (after any tool-call delay);
each replica is a full engine with its own batches, KV cache and trajectory. Lengths are
drawn per workflow step as without a pool, so a pool of one replica is the engine itself.

Theory (docs/model.md, "Pools"): a state-aware router that never leaves a replica idle
while another has work (JSQ by tokens; least_requests and power_of_two approximately)
reaches the sum of the replicas' capacities (the paper's Proposition 3 / Remark 4:
K work-conserving engines fed by JSQ reach K*b/(t(b)*E[P+D])). Round robin and random
send each replica 1/K of the traffic whatever its speed, so the pool saturates when its
slowest replica does: capacity K * min_i capacity_i, less than the sum as soon as the
replicas differ (and random also loses under high variance, through imbalance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from llmsim import state as S
from llmsim.errors import ConfigError

ROUTERS = {
    "round_robin": S.R_ROUND_ROBIN,
    "random": S.R_RANDOM,
    "jsq_tokens": S.R_JSQ_TOKENS,
    "least_requests": S.R_LEAST_REQUESTS,
    "power_of_two": S.R_POWER_OF_TWO,
}
STATE_AWARE = ("jsq_tokens", "least_requests", "power_of_two")
MAX_REPLICAS = 256
_REPLICA_KEYS = {"scheduler", "token_budget", "max_batch_size", "kv_cache_tokens", "batch_time",
                 "preset", "max_running_requests", "block_size", "watermark"}


def replica_name(pool: str, i: int) -> str:
    return f"{pool}[{i}]"


def parse_replicas(base, table: dict, where: str):
    """The engine `base` (parsed from `table` without its pool keys) as a pool."""
    from llmsim.config import engine_config
    router = table.get("router", "jsq_tokens")
    if router not in ROUTERS:
        raise ConfigError(f"{where}.router: unknown value {router!r}; allowed: {', '.join(ROUTERS)}")
    reps = table.get("replicas", 1)
    own = {k: v for k, v in table.items() if k in _REPLICA_KEYS}
    if isinstance(reps, bool) or not isinstance(reps, (int, list)):
        raise ConfigError(f"{where}.replicas: {reps!r} must be a whole number in [1, {MAX_REPLICAS}] "
                          "or a list of replica tables like [{ preset = \"h100-llama2-7b\" }, {}]")
    if isinstance(reps, int):
        if not 1 <= reps <= MAX_REPLICAS:
            raise ConfigError(f"{where}.replicas: {reps} must be a whole number in [1, {MAX_REPLICAS}]")
        tables = [{} for _ in range(reps)]
    else:
        if not 1 <= len(reps) <= MAX_REPLICAS:
            raise ConfigError(f"{where}.replicas: a list of 1 to {MAX_REPLICAS} replica tables")
        tables = reps
    out = []
    for i, t in enumerate(tables):
        w = f"{where}.replicas[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(f"{w}: expected a table of engine keys ({', '.join(sorted(_REPLICA_KEYS))})")
        bad = set(t) - _REPLICA_KEYS
        if bad:
            raise ConfigError(f"{w}: unknown key(s) {sorted(bad)}; allowed: {sorted(_REPLICA_KEYS)}")
        merged = dict(own)
        if "preset" in t:  # a replica's preset replaces the pool's cache and batch time
            merged.pop("kv_cache_tokens", None)
            merged.pop("batch_time", None)
        merged.update(t)
        merged.pop("name", None)  # a replica is named after its pool (engine[i]), not checked as a user's name
        out.append(replace(engine_config(merged, w), name=replica_name(base.name, i)))
    return make_pool(base, out, router)


def make_pool(base, replicas, router: str = "jsq_tokens"):
    """`base` served by the engine configs `replicas` (renamed name[i]) behind `router`."""
    if router not in ROUTERS:
        raise ConfigError(f"router: unknown value {router!r}; allowed: {', '.join(ROUTERS)}")
    reps = tuple(replace(r, name=replica_name(base.name, i), replicas=(), policy=base.policy)
                 for i, r in enumerate(replicas))
    return replace(base, replicas=reps, router=router)


def with_replicas(sc, k, router: str = "jsq_tokens", engine: int = 0, presets=None):
    """Scenario `sc` with engine `engine` served by k replicas (of preset names `presets`
    when given, one per replica) behind `router`."""
    from llmsim.config import engine_config, validate
    base = sc.engines[engine]
    base = replace(base, replicas=())
    if presets:
        reps = []
        for i, p in enumerate(presets):
            t = base.to_table()
            for key in ("name", "policy", "kv_cache_tokens", "batch_time"):
                t.pop(key, None)
            t["preset"] = p
            reps.append(engine_config(t, f"replicas[{i}]"))
    else:
        if not isinstance(k, int) or not 1 <= k <= MAX_REPLICAS:
            raise ConfigError(f"replicas: {k!r} must be a whole number in [1, {MAX_REPLICAS}]")
        reps = [base] * k
    engines = list(sc.engines)
    engines[engine] = make_pool(base, reps, router)
    out = replace(sc, engines=tuple(engines))
    validate(out)
    return out


def replicas_to_table(e):
    reps = e.replicas
    plain = replace(e, replicas=(), name="x")
    if all(replace(r, name="x", policy=e.policy) == plain for r in reps):
        return len(reps)
    out = []
    for r in reps:
        t = replace(r, name="x", replicas=()).to_table()
        t.pop("name", None)
        t.pop("policy", None)
        out.append(t)
    return out


def validate_pool(e, where: str):
    from llmsim.config import validate  # noqa: F401  (the replicas are checked as engines)
    if e.router not in ROUTERS:
        raise ConfigError(f"{where}.router: unknown value {e.router!r}; allowed: {', '.join(ROUTERS)}")
    if not 1 <= len(e.replicas) <= MAX_REPLICAS:
        raise ConfigError(f"{where}.replicas: 1 to {MAX_REPLICAS} replicas")
    for i, r in enumerate(e.replicas):
        w = f"{where}.replicas[{i}]"
        for k, v, hi in (("token_budget", r.token_budget, 1 << 20), ("kv_cache_tokens", r.kv_cache_tokens, 200_000_000)):
            if not isinstance(v, int) or v <= 0 or v > hi:
                raise ConfigError(f"{w}.{k}: {v!r} must be a whole number in [1, {hi}]")
        if r.replicas:
            raise ConfigError(f"{w}: a replica cannot itself have replicas")


def physical_engines(sc):
    """The engines the kernel runs: each pool expanded into its replicas. Returns a list of
    (logical engine index, replica index, EngineConfig)."""
    out = []
    for li, e in enumerate(sc.engines):
        if e.replicas:  # replicas follow the pool's policy (set per engine, e.g. by with_policy)
            out.extend((li, i, r if r.policy == e.policy else replace(r, policy=e.policy))
                       for i, r in enumerate(e.replicas))
        else:
            out.append((li, 0, e))
    return out


def has_pool(sc) -> bool:
    return any(e.replicas for e in sc.engines)


# ------------------------------------------------------------------------ theory


@dataclass(frozen=True)
class PoolTheory:
    router: str
    replica_capacity: tuple    # per replica, in the unit of the engine theory's capacity
    capacity: float            # the pool's, same unit
    sum_capacity: float        # what a state-aware router reaches
    split: tuple               # the router's share of the traffic per replica (nominal)
    note: str


def combined_capacity(caps, router: str) -> float:
    """A pool's capacity from its replicas' (each as if it took all the pool's traffic): the
    sum under a state-aware router, K x the smallest under round robin and random (each
    replica gets 1/K of the traffic)."""
    return float(sum(caps)) if router in STATE_AWARE else len(caps) * float(min(caps))


def pool_theory(replica_theories, router: str) -> PoolTheory:
    """Pool capacity from its replicas' capacities (each computed as if it took all the
    pool's traffic): the sum under a state-aware router, K x the smallest under round
    robin and random."""
    caps = [t.capacity_rps if t.capacity_rps is not None else t.token_capacity
            for t in replica_theories]
    k = len(caps)
    total = float(sum(caps))
    cap = combined_capacity(caps, router)
    if router in STATE_AWARE:
        split = tuple(c / total for c in caps)
        note = (f"pool of {k} behind {router}: capacity = the sum of the replicas' capacities "
                "(state-aware routing keeps every replica busy while work waits)")
    else:
        split = tuple(1.0 / k for _ in caps)
        note = (f"pool of {k} behind {router}: each replica gets 1/{k} of the traffic, so the pool "
                f"saturates with its slowest replica: {k} x min = {cap:.4g}"
                + (f" < sum {total:.4g}" if cap < total * (1 - 1e-9) else ""))
    return PoolTheory(router, tuple(caps), cap, total, split, note)


def engine_theory(sc, e_idx, visits, lam_steps, single_theory):
    """The engine theory of pool `e_idx` (see llmsim.theory): per replica with the pool's
    whole traffic, combined by the router."""
    from llmsim.theory import EngineTheory
    pool = sc.engines[e_idx]
    per, seen = [], {}
    for r in pool.replicas:
        alone = replace(r, name=pool.name)
        if alone not in seen:  # identical replicas share one analysis (a pool of 64 is one)
            engines = list(sc.engines)
            engines[e_idx] = alone
            seen[alone] = single_theory(replace(sc, engines=tuple(engines)), e_idx, visits, lam_steps)
        per.append(seen[alone])
    pt = pool_theory(per, pool.router)
    ref = per[0]
    ref_cap = pt.replica_capacity[0]
    scale = ref_cap / pt.capacity if pt.capacity > 0 else math.inf
    load = ref.load * scale
    tok_cap = combined_capacity([t.token_capacity for t in per], pool.router)
    cap_rps = pt.capacity if ref.capacity_rps is not None else None
    notes = tuple(ref.notes) + (f"{pool.name}: {pt.note}",)
    return EngineTheory(pool.name, pool.scheduler, pool.token_budget, ref.t_b_seconds, tok_cap,
                        ref.offered_tokens_per_s, load, cap_rps, f"pool ({pool.router}) of: {ref.capacity_kind}",
                        None, None, notes, scheduler_load=ref.scheduler_load * scale,
                        memory_binds=any(t.memory_binds for t in per), calls_per_s=ref.calls_per_s,
                        optimal_kind=f"pool ({pool.router}) of: {ref.optimal_kind}" if ref.optimal_kind else "",
                        proven_load=_proven_pool_load(per, pool.router),
                        proven_kind=f"pool ({pool.router}) of: {ref.proven_kind}" if ref.proven_kind else "",
                        even_split_capacities=(() if pool.router in STATE_AWARE or ref.capacity_rps is None
                                               else tuple(pt.replica_capacity)))


def _proven_pool_load(per, router: str) -> float:
    """The pool's load against what provably bounds it (see EngineTheory.proven_load): its
    replicas' proven bounds (each one's whole traffic over its proven load) combined by the
    router (``combined_capacity``). 0 when a replica has no proven bound."""
    if any(t.proven_load <= 0 for t in per):
        return 0.0
    cap = combined_capacity([t.calls_per_s / t.proven_load for t in per], router)
    return per[0].calls_per_s / cap if cap > 0 else math.inf


# ------------------------------------------------------------------------ verdicts


def replica_verdicts(result, window: float = 0.5, threshold: float = 0.02, batches: int = 10) -> dict:
    """A verdict per replica of every pool: the growth of its backlog over the last
    `window` of the horizon, relative to the tokens the router sends it (nominal split).
    Returns {replica name: {"verdict", "growth_per_s", "interval", "offered_tokens_per_s"}}."""
    from llmsim import theory as th
    from llmsim.stability import classify, trend
    sc = result.scenario
    theo = th.analyze(sc)
    ts = result.timeseries
    t = ts["time_s"].to_numpy()
    horizon = result.summary["horizon_seconds"]
    start, end = horizon * (1 - window), horizon
    out = {}
    for li, e in enumerate(sc.engines):
        if not e.replicas:
            continue
        offered = theo.engines[li].offered_tokens_per_s
        per = []
        for r in e.replicas:
            engines = list(sc.engines)
            engines[li] = replace(r, name=e.name)
            per.append(th._engine_theory(replace(sc, engines=tuple(engines)), li,
                                         *_visits_and_rates(sc)))
        split = pool_theory(per, e.router).split
        for i, r in enumerate(e.replicas):
            col = f"{r.name}.backlog_tokens"
            f = trend(t, ts[col].to_numpy(), start, end, batches)
            off = offered * split[i]
            if f is None or off <= 0:
                out[r.name] = {"verdict": "inconclusive", "growth_per_s": math.nan,
                               "interval": (-math.inf, math.inf), "offered_tokens_per_s": off}
                continue
            v = classify(f.slope / off, f.lo / off, f.hi / off, threshold)
            out[r.name] = {"verdict": v, "growth_per_s": f.slope, "interval": (f.lo, f.hi),
                           "offered_tokens_per_s": off}
    return out


def _visits_and_rates(sc):
    import numpy as np
    from llmsim.config import expected_visits
    visits = expected_visits(sc)
    steps = [(wi, s) for wi, w in enumerate(sc.workflows) for s in w.steps]
    lam = np.array([sc.workflows[wi].arrival.rate * visits[k] for k, (wi, _) in enumerate(steps)])
    return visits, lam


def with_replica_verdicts(v, result):
    """The whole's verdict `v` combined with the replicas': a pool is unstable when any
    replica is (round robin can overload a slow replica while the total backlog grows by
    less than the threshold share of the pool's work), inconclusive when a replica is and
    the whole looked stable. The replicas' evidence joins `v.parts`."""
    per = replica_verdicts(result, threshold=v.threshold)
    if not per:
        return v
    bad = tuple(n for n, p in per.items() if p["verdict"] == "unstable")
    parts = dict(v.parts)
    parts.update({n: {"verdict": p["verdict"], "growth_per_s": p["growth_per_s"],
                      "interval": p["interval"], "offered_tokens_per_s": p["offered_tokens_per_s"]}
                  for n, p in per.items()})
    verdict, expl = v.verdict, v.explanation
    if bad and verdict != "unstable":
        verdict = "unstable"
        expl = (f"Unstable (growing: {', '.join(bad)}): the router sends these replicas more work than "
                "they can serve, so their queues grow without bound even though the pool as a whole "
                "has capacity to spare. " + v.explanation)
    elif verdict == "stable" and any(p["verdict"] == "inconclusive" for p in per.values()):
        verdict = "inconclusive"
        expl = ("Inconclusive: a replica's backlog trend cannot be told apart from noise over this "
                "horizon. " + v.explanation)
    return replace(v, verdict=verdict, explanation=expl,
                   unstable_parts=tuple(dict.fromkeys(v.unstable_parts + bad)), parts=parts)
