"""Theory beside simulation: load, capacities, fluid drift (SPEC.md §1, §3, §5).

- Token capacity (the paper's Theorem 2): no scheduler exceeds ``b / t(b)`` tokens/s;
  work-conserving schedulers (orca, sarathi) reach it. Exact for constant, staircase and
  piecewise batch times; for affine times t(b) uses the workload's prefill share and
  mean decode context (an approximation, flagged).
- Slot capacity: with ``max_batch_size`` k binding, each request occupies at least
  ``D + ceil(P/b)`` batch slots, so at most ``k / E[D + ceil(P/b)]`` requests per
  iteration (an upper bound; which compositions a scheduler makes decide the rest).
- Memory capacity (Nie, Si & Zhou): ``mu = M / (t(b) * E[g(P, D)])`` requests/s with
  ``g(s,o) = (1 + s/chunk) s/2 + s o + (1 + o) o/2`` token-iterations.
- orca with k binding: prefill-first batches are prefill-only (b tokens) or k-limited
  decode-only, so capacity ~ ``1 / (E[P] t(b)/b + E[D] t(k)/k)`` (approximate).
- fastertransformer: a prefill batch of n whole prompts (n = min(k, floor(b/P)) for a
  constant prompt P) then decode iterations until the longest output of the batch ends:
  capacity ``n / E[t_prefill + sum_j t(A_j)]`` with A_j ~ Binomial(n, P(D >= j)) the
  requests still decoding at step j. Exact for constant prompts with any output law;
  for random prompts n is the mean FCFS packing count (approximation, flagged).
- vllm: prefill-first without mixing; saturated, the running set is large and each decode
  iteration serves c = min(b, k) requests, but an iteration is a prefill whenever a
  request waits. With Poisson arrivals the number waiting at iteration starts is a
  Markov chain (prefills of up to n_p prompts), so decode token supply is
  ``c * pi_D / E[tau]``; the capacity is the lambda where it equals ``lambda * E[D]``.
  The waiting prompts at iteration starts form a Markov chain. Approximation: Poisson
  arrivals, prompt lengths replaced by their mean, a saturated running set.
"""

from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass, field

import numpy as np

from llmsim.config import Scenario, expected_visits, step_index
from llmsim.workload import Constant, Geometric, Poisson, TraceLengths


@dataclass(frozen=True)
class EngineTheory:
    name: str
    scheduler: str
    token_budget: int
    t_b_seconds: float              # full-budget iteration time t(b)
    token_capacity: float           # b / t(b), tokens/s
    offered_tokens_per_s: float     # lambda * E[P + D] summed over the engine's steps
    load: float                     # offered / binding capacity in tokens (rho)
    capacity_rps: float | None      # this scheduler's request capacity (single-step engines)
    capacity_kind: str              # which bound rules and whether it is exact
    memory_capacity_rps: float | None
    slot_capacity_rps: float | None
    notes: tuple = ()


@dataclass(frozen=True)
class Theory:
    """Per-scenario theory. ``load`` is the largest engine load; capacities in
    requests (or workflows) per second refer to the scenario's arrival mix."""
    load: float
    capacity_rps: float | None          # of the scenario's scheduler(s); None if unknown
    optimal_capacity_rps: float | None  # what a work-conserving scheduler reaches
    drift_tokens_per_s: float           # predicted backlog growth (0 when stable)
    drift_rps: float                    # predicted growth of requests in system
    engines: tuple = ()
    notes: tuple = ()

    @property
    def engine_load(self):
        return [e.load for e in self.engines]

    def as_dict(self):
        return {"load": self.load, "capacity_rps": self.capacity_rps,
                "optimal_capacity_rps": self.optimal_capacity_rps,
                "drift_tokens_per_s": self.drift_tokens_per_s, "drift_rps": self.drift_rps,
                "engines": [e.__dict__ for e in self.engines], "notes": list(self.notes)}


def _mean_ceil(dist, b: int) -> float:
    """E[ceil(P / b)] for a length distribution."""
    if isinstance(dist, Constant):
        return math.ceil(dist.value / b)
    if dist.max_value != math.inf and dist.max_value <= b:
        return 1.0
    x = dist.sample(np.random.default_rng(12345), 200_000)
    return float(np.ceil(x / b).mean())


def _moments(dist):
    return dist.mean, dist.var + dist.mean ** 2


def memory_capacity_rps(M: int, chunk: int, t_bar: float, prompt, output) -> float:
    """mu = M / (t_bar * E[g(P, D)]), P and D independent (SPEC.md §3)."""
    ms, ms2 = _moments(prompt)
    mo, mo2 = _moments(output)
    eg = ms / 2 + ms2 / (2 * chunk) + ms * mo + (mo + mo2) / 2
    return M / (t_bar * eg)


def _survival(output, j_max: int) -> np.ndarray:
    """S[j-1] = P(D >= j) for j = 1..j_max."""
    j = np.arange(1, j_max + 1)
    if isinstance(output, Constant):
        return (j <= output.value).astype(float)
    if isinstance(output, Geometric):
        p = 1.0 / output.mean_value
        return (1 - p) ** (j - 1)
    x = np.sort(output.sample(np.random.default_rng(12345), 400_000))
    return 1.0 - np.searchsorted(x, j, side="left") / len(x)


def fastertransformer_capacity(engine, prompt, output) -> tuple[float, bool]:
    """Requests/s that fastertransformer sustains, and whether the formula is exact."""
    b = engine.token_budget
    k = engine.slots
    exact = isinstance(prompt, Constant)
    if exact:
        n = min(k, b // prompt.value)
    else:
        # mean number of iid prompts that fit b whole, in FCFS order
        x = prompt.sample(np.random.default_rng(54321), 400_000)
        cs = np.cumsum(x)
        counts, start, base, total = [], 0, 0, 0
        while start < len(x) - k - 1 and len(counts) < 20_000:
            idx = np.searchsorted(cs, base + b, side="right")
            c = max(1, min(k, idx - start))
            counts.append(c)
            base = cs[start + c - 1]
            start += c
        n = float(np.mean(counts))
    # memory: reserve prompt + output for each request of the batch
    per_req = prompt.mean + output.mean
    if n * per_req > engine.kv_cache_tokens:
        n = max(1.0, math.floor(engine.kv_cache_tokens / per_req))
        exact = False
    n_int = max(1, int(round(n)))
    d_max = output.max_value if output.max_value != math.inf else output.quantile(1 - 1e-12)
    d_max = int(min(d_max, 10_000_000))
    surv = _survival(output, d_max)
    bt = engine.batch_time
    # E[sum_j t(A_j) 1{A_j >= 1}], A_j ~ Binomial(n, S_j)
    a = np.arange(1, n_int + 1)
    t_dec = np.array([bt.seconds(0, x, x * (prompt.mean + output.mean / 2)) for x in a])
    if bt.model == "constant":
        p_any = 1 - (1 - surv) ** n_int
        dec = float(bt.params[0] * p_any.sum())
    else:
        from math import comb, log
        logc = np.array([math.lgamma(n_int + 1) - math.lgamma(x + 1) - math.lgamma(n_int - x + 1) for x in a])
        dec = 0.0
        for s in surv:
            if s <= 0:
                break
            if s >= 1:
                dec += t_dec[-1]
                continue
            lp = logc + a * math.log(s) + (n_int - a) * math.log1p(-s)
            dec += float((np.exp(lp) * t_dec).sum())
    t_pre = bt.seconds(n * prompt.mean, 0, 0)
    return n / (t_pre + dec), exact and isinstance(output, (Constant, Geometric))


def vllm_capacity(engine, prompt, output) -> float:
    """Requests/s at which vanilla vLLM's decode supply meets demand (module docstring).

    Saturated, each decode iteration serves c = min(b, k) requests and lasts tau_d; an
    iteration is a prefill of the N requests that arrived during the previous one
    (N ~ Poisson(lambda * tau), at most n_p = min(k, b // P) of them, lasting t(N P)).
    The number of prompts waiting at each iteration start is a Markov chain (a decode
    iteration when none waits, else a prefill of up to n_p); its stationary law gives the
    share of iterations that decode.
    """
    b = engine.token_budget
    k = engine.slots
    c = k
    bt = engine.batch_time
    p_mean = prompt.mean
    n_p = max(1, min(k, int(b // max(p_mean, 1))))
    ctx = p_mean + output.mean / 2
    tau_d = bt.seconds(0, c, c * ctx)
    taus = np.array([tau_d] + [bt.seconds(min(n * p_mean, b), 0, 0) for n in range(1, n_p + 1)])

    q_max = int(min(400, max(60, 20 * n_p)))
    served = np.minimum(np.arange(q_max + 1), n_p)
    tau_q = np.where(served == 0, tau_d, taus[np.maximum(served, 1)])

    def supply(lam):
        # Markov chain on the prompts waiting at an iteration start (capped at q_max)
        m = q_max + 1
        T = np.zeros((m, m))
        k = np.arange(m)
        lg = np.array([math.lgamma(x + 1) for x in k])
        for q in range(m):
            mu = lam * tau_q[q]
            pa = np.exp(-mu + k * math.log(mu) - lg) if mu > 0 else (k == 0).astype(float)
            base = q - served[q]
            T[q, base:] = pa[:m - base]
            T[q, -1] += max(0.0, 1.0 - T[q].sum())
        # stationary law: (T' - I) pi = 0 with one equation replaced by sum(pi) = 1
        A = T.T - np.eye(m)
        A[-1, :] = 1.0
        rhs = np.zeros(m)
        rhs[-1] = 1.0
        pi = np.linalg.solve(A, rhs)
        return c * pi[0] / float(pi @ tau_q)

    hi = c / (tau_d * output.mean)
    lo = 0.0
    for _ in range(40):  # 2^-40 of the bracket
        mid = (lo + hi) / 2
        if supply(mid) > mid * output.mean:
            lo = mid
        else:
            hi = mid
    tcap = b / bt.full_budget_seconds(b, p_mean / (p_mean + output.mean), ctx)
    return min(lo, tcap / (p_mean + output.mean))


def _engine_theory(sc: Scenario, e_idx: int, visits, lam_steps) -> EngineTheory:
    eng = sc.engines[e_idx]
    if eng.replicas:  # a pool: its replicas' theories combined by its router
        from llmsim.pool import engine_theory
        return engine_theory(sc, e_idx, visits, lam_steps, _engine_theory)
    steps = [(k, wi, s) for k, (wi, s) in enumerate(_steps(sc)) if s.engine == eng.name]
    offered = sum(lam_steps[k] * (s.prompt_tokens.mean + s.output_tokens.mean) for k, _, s in steps)
    tok_p = sum(lam_steps[k] * s.prompt_tokens.mean for k, _, s in steps)
    rate = sum(lam_steps[k] for k, _, _ in steps)
    share = tok_p / offered if offered > 0 else 0.5
    mean_ctx = (sum(lam_steps[k] * (s.prompt_tokens.mean + s.output_tokens.mean / 2) for k, _, s in steps)
                / rate) if rate > 0 else 0.0
    b = eng.token_budget
    # prefill attention: a prompt of P tokens has P(P+1)/2 pairs however it is chunked
    pairs = (sum(lam_steps[k] * (s.prompt_tokens.var + s.prompt_tokens.mean ** 2 + s.prompt_tokens.mean) / 2
                 for k, _, s in steps) / tok_p) if tok_p > 0 else 0.0
    t_b = eng.batch_time.full_budget_seconds(b, share, mean_ctx, pairs)
    cap_tok = b / t_b
    notes = []
    if eng.batch_time.context_aware:
        notes.append(f"{eng.name}: t(b) for the context-aware batch time uses the workload's prefill share "
                     f"({share:.2f}) and mean decode context ({mean_ctx:.0f} tokens): approximate")
    mem_rps = slot_rps = cap_rps = None
    kind = "token capacity b/t(b) (exact for work-conserving schedulers)"
    load_tok = offered / cap_tok
    binding_load = load_tok
    if len(steps) == 1:
        k, wi, s = steps[0]
        m = s.prompt_tokens.mean + s.output_tokens.mean
        tok_rps = cap_tok / m
        mem_rps = memory_capacity_rps(eng.kv_cache_tokens, b, t_b, s.prompt_tokens, s.output_tokens)
        if eng.max_batch_size is not None and eng.max_batch_size < b:
            slots = s.output_tokens.mean + _mean_ceil(s.prompt_tokens, b)
            slot_rps = eng.max_batch_size / slots / t_b
        bounds = {"token": tok_rps, "memory": mem_rps}
        if slot_rps is not None:
            bounds["batch-size"] = slot_rps
        which = min(bounds, key=bounds.get)
        wc_rps = bounds[which]
        if which != "token":
            kind = f"{which} capacity (binds before the token capacity; approximate)"
        per_visit = visits[k] if visits[k] > 0 else 1.0
        if eng.scheduler == "fastertransformer":
            ft, exact = fastertransformer_capacity(eng, s.prompt_tokens, s.output_tokens)
            cap_rps = min(ft, wc_rps)
            kind = ("fastertransformer batch-cycle capacity" + ("" if exact else " (approximate: random prompt "
                    "lengths or memory-bound batch)")) if ft <= wc_rps else kind
        elif eng.scheduler == "vllm":
            vl = vllm_capacity(eng, s.prompt_tokens, s.output_tokens)
            cap_rps = min(vl, wc_rps)
            kind = ("vllm prefill-first capacity (approximate: Poisson arrivals, mean prompt length, "
                    "KV cache not binding; a binding KV cache throttles prefills and can raise it)") \
                if vl <= wc_rps else kind
        elif eng.scheduler == "orca" and slot_rps is not None:
            # prefill-first under a binding k: batches are prefill-only (b tokens) or
            # k-limited decode-only, so the engine time-shares between the two
            kk = eng.max_batch_size
            t_k = eng.batch_time.seconds(0, kk, kk * mean_ctx)
            comp = 1.0 / (s.prompt_tokens.mean * eng.batch_time.seconds(b, 0, 0) / b
                          + s.output_tokens.mean * t_k / kk)
            cap_rps = min(comp, wc_rps)
            if comp < wc_rps:
                kind = ("orca under max_batch_size: time-sharing between prefill-only and k-limited "
                        "decode-only batches (approximate)")
        else:
            cap_rps = wc_rps
        cap_rps = cap_rps / per_visit
        binding_load = rate / (wc_rps) if wc_rps > 0 else math.inf
    return EngineTheory(eng.name, eng.scheduler, b, t_b, cap_tok, offered, max(load_tok, binding_load),
                        cap_rps, kind, mem_rps, slot_rps, tuple(notes))


def _steps(sc):
    return [(wi, s) for wi, w in enumerate(sc.workflows) for s in w.steps]


def analyze(sc: Scenario) -> Theory:
    """Load, capacities and fluid drift of a scenario (memoized: scenarios are frozen)."""
    try:
        return _analyze_cached(sc)
    except TypeError:  # an unhashable field (should not happen): compute afresh
        return _analyze(sc)


@lru_cache(maxsize=256)
def _analyze_cached(sc: Scenario) -> Theory:
    return _analyze(sc)


def _analyze(sc: Scenario) -> Theory:
    visits = expected_visits(sc)
    steps = _steps(sc)
    lam_steps = np.array([sc.workflows[wi].arrival.rate * visits[k] for k, (wi, _) in enumerate(steps)])
    engines = tuple(_engine_theory(sc, i, visits, lam_steps) for i in range(len(sc.engines)))
    load = max(e.load for e in engines)
    notes = sum((list(e.notes) for e in engines), [])
    lam = sc.total_rate
    if sc.single:
        e = engines[0]
        s = steps[0][1]
        m = s.prompt_tokens.mean + s.output_tokens.mean
        wc = min(x for x in (e.token_capacity / m, e.memory_capacity_rps, e.slot_capacity_rps) if x is not None)
        cap = e.capacity_rps
        drift_rps = max(0.0, lam - cap) if cap is not None else 0.0
        drift_tok = drift_rps * m
        return Theory(load, cap, wc, drift_tok, drift_rps, engines, tuple(notes))
    # network: the nominal loads; capacity = the total rate scaling at which the busiest
    # engine reaches load 1 (necessary condition; sufficient for FCFS-type policies on
    # acyclic workflows, not for every policy on cyclic routing)
    cap = lam / load if load > 0 else None
    drift_tok = sum(max(0.0, e.offered_tokens_per_s - e.token_capacity) for e in engines)
    drift_rps = max(0.0, lam - cap) if cap else 0.0
    notes.append("network capacity = the arrival-rate scaling at which the busiest engine's nominal "
                 "load reaches 1: necessary for stability; the policy decides whether it is enough")
    return Theory(load, cap, cap, drift_tok, drift_rps, engines, tuple(notes))
