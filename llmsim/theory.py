"""Theory beside simulation: load, capacities, fluid drift (SPEC.md §1, §3, §5, §6; docs/model.md).

- The stability region (the paper's Theorem 10, llmsim/region.py): an LP over the feasible
  batch types (x prefill tokens in c chunks, y decode tokens; x + y <= b, y + c <= k), each
  priced at its own batch time. Its capacity lambda* for the engine's call mix bounds every
  scheduler; without a binding k and with b a multiple of the staircase step it is the
  token capacity ``b / t(b)`` (Theorem 2). Affine batch times with a context term charge
  each decode token the mean context (approximate, flagged).
- Memory capacity (Nie, Si & Zhou): ``mu = M / (t_bar * E[g(P, D)])`` requests/s with
  ``g(s,o) = (1 + s/chunk) s/2 + s o + (1 + o) o/2`` token-iterations and t_bar the mean
  iteration time of the batch mix at the region's capacity.
- ``load`` = rate / min(lambda*, mu): above 1 every scheduler is unstable.
  ``scheduler_load`` = rate / the engine's own scheduler's capacity, priced at the
  batches it runs:
  - sarathi: the LP over its decode-first batches (y decodes, prefill filling the budget
    in the k - y free slots);
  - orca: the region without a binding k; with k binding a Markov chain of waiting
    prefill tokens (each iteration takes min(W, b) prefill tokens, decodes fill the slots
    and budget left), approximate;
  - fastertransformer: a prefill batch of n whole prompts (n = min(k, floor(b/P)) for a
    constant prompt P) then decode iterations until the longest output of the batch ends:
    ``n / E[t_prefill + sum_j t(A_j)]`` with A_j ~ Binomial(n, P(D >= j)) the requests
    still decoding at step j, each iteration priced at its own batch. Exact for constant
    prompts; for random prompts the cycle is averaged over the batch sizes of sampled FCFS
    packings (approximation, flagged);
  - vllm: prefill-first without mixing; saturated, each decode iteration serves
    c = min(b, k) requests (priced at t of that batch), but an iteration is a prefill
    whenever a prompt waits. With Poisson arrivals the number waiting at iteration starts
    is a Markov chain (prefills of up to n_p prompts), so decode token supply is
    ``c * pi_D / E[tau]``; the capacity is the lambda where it equals ``lambda * E[D]``.
    Approximation: Poisson arrivals, prompt lengths replaced by their mean, a saturated
    running set.
  - orca and vllm with a binding KV cache (one step): the same chains, with the decoders
    an iteration can serve limited to those a full cache holds, ``k_mem = M E[D] / E[g]``
    (decoders the prefills starve hold their cache longer, so both fall short of mu; vllm
    only where mu caps it before its chain, where the chain is conservative).
  Each is capped by the region and the memory capacity.
- Networks: the same per engine over the mix of steps it serves (expected visits from the
  routing matrix); the network's capacity is the rate scaling at which the busiest
  engine's scheduler load reaches 1.
"""

from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass, field

import numpy as np

from llmsim.config import Scenario, as_scenario, expected_visits, step_index
from llmsim.workload import (Constant, Empirical, Geometric, Poisson, TraceArrivals, TraceLengths, poisson_cdf,
                             poisson_pmf)


@dataclass(frozen=True)
class EngineTheory:
    """Theory of one engine over the mix of calls it serves (one step or several).

    ``load`` is the arrival rate over the best capacity any scheduler reaches (the
    stability region's, or the memory capacity if smaller): above 1 every scheduler is
    unstable. ``scheduler_load`` is the rate over this engine's own scheduler's capacity."""
    name: str
    scheduler: str
    token_budget: int
    t_b_seconds: float              # full-budget iteration time t(b)
    token_capacity: float           # b / t(b), tokens/s
    offered_tokens_per_s: float     # lambda * E[P + D] summed over the engine's steps
    load: float                     # rate / optimal capacity (region and memory): rho
    capacity_rps: float | None      # this scheduler's capacity in calls/s of its mix (requests/s alone)
    capacity_kind: str              # which bound rules and whether it is exact
    memory_capacity_rps: float | None
    slot_capacity_rps: float | None  # kept for callers: the region's capacity when k binds
    notes: tuple = ()
    scheduler_load: float = 0.0     # rate / capacity_rps
    region_capacity_rps: float | None = None   # the region's lambda* (calls/s of the mix)
    region_binding: str = ""        # the batch mix that attains it
    memory_binds: bool = False      # the memory capacity is below the region's
    calls_per_s: float = 0.0        # calls arriving at this engine per second
    mean_iteration_seconds: float = 0.0  # of the batch mix an optimal engine runs at capacity
    # vllm above its chain capacity: seconds until the running requests, piling up at the
    # chain's drift, fill the KV cache; from then on memory gates the prefills and the
    # chain's capacity no longer holds (None otherwise)
    kv_fill_seconds: float | None = None
    optimal_kind: str = ""          # which bound gives the best capacity any scheduler reaches (load)
    # the arrival rate over a capacity that provably bounds this engine's scheduler (the
    # stability region of all batches or of the scheduler's own, fastertransformer's exact
    # batch cycle; never an approximate formula, the memory capacity or a context-aware
    # batch time): at 1 or above no run of this scheduler keeps up. 0 when none is known
    proven_load: float = 0.0
    proven_kind: str = ""           # which bound proven_load is over
    # a pool behind a router that splits its traffic evenly (round robin, random): each
    # replica's capacity in calls/s of the pool's mix; only the replicas the split overloads grow
    even_split_capacities: tuple = ()

    def excess_calls_per_s(self, rate: float) -> float:
        """Calls per second that pile up at this engine at `rate`: each replica's excess over
        its capacity under an even split, else the excess over the engine's capacity."""
        if self.even_split_capacities:
            k = len(self.even_split_capacities)
            return float(sum(max(0.0, rate / k - c) for c in self.even_split_capacities))
        return max(0.0, rate - self.capacity_rps) if self.capacity_rps is not None else 0.0


@dataclass(frozen=True)
class Theory:
    """Per-scenario theory. ``load`` is the largest engine load against the best any
    scheduler can do (the stability region and the memory bound); ``scheduler_load``
    against the scenario's own schedulers. Capacities in requests (or workflows) per
    second refer to the scenario's arrival mix."""
    load: float
    capacity_rps: float | None          # of the scenario's scheduler(s); None if unknown
    optimal_capacity_rps: float | None  # the best any scheduler reaches (sarathi does; see optimal_kind)
    drift_tokens_per_s: float           # predicted backlog growth (0 when stable)
    drift_rps: float                    # predicted growth of requests in system
    engines: tuple = ()
    notes: tuple = ()
    scheduler_load: float = 0.0         # arrival rate over the scheduler's capacity (max over engines)

    @property
    def engine_load(self):
        return [e.load for e in self.engines]

    @property
    def proven_load(self) -> float:
        """The largest engine load against a capacity that provably bounds its scheduler
        (``EngineTheory.proven_load``): at 1 or above the scenario cannot be stable, whatever
        a finite run shows. 0 when no engine has such a bound."""
        return max((e.proven_load for e in self.engines), default=0.0)

    @property
    def proven_kind(self) -> str:
        """Which bound ``proven_load`` is over (that of the engine with the largest)."""
        return max(self.engines, key=lambda e: e.proven_load).proven_kind if self.engines else ""

    def as_dict(self):
        return {"load": self.load, "scheduler_load": self.scheduler_load, "capacity_rps": self.capacity_rps,
                "optimal_capacity_rps": self.optimal_capacity_rps,
                "drift_tokens_per_s": self.drift_tokens_per_s, "drift_rps": self.drift_rps,
                "engines": [e.__dict__ for e in self.engines], "notes": list(self.notes)}


# Memos keyed on laws that hold a trace's arrays (an uploaded CSV: megabytes each) keep only
# the few most recent: the general memos' hundreds of entries, each keeping its key alive,
# let a visitor's 23 different uploads hold +383 MiB of a server for good (a hostile pass)
HEAVY_VALUES = 10_000    # an empirical law with more values than this counts as a trace
HEAVY_MEMO = 4           # entries per memo for such keys


def _heavy(x) -> bool:
    """True for a law or arrival process holding a trace's arrays."""
    if isinstance(x, (TraceLengths, TraceArrivals)):
        return True
    return isinstance(x, Empirical) and len(x.values) > HEAVY_VALUES


def _holds_trace(sc: Scenario) -> bool:
    return any(_heavy(w.arrival) or any(_heavy(s.prompt_tokens) or _heavy(s.output_tokens) for s in w.steps)
               for w in sc.workflows)


def _mean_ceil(dist, b: int) -> float:
    """E[ceil(P / b)] for a length distribution, memoized (few entries for a trace's law)."""
    return (_mean_ceil_heavy if _heavy(dist) else _mean_ceil_light)(dist, b)


@lru_cache(maxsize=HEAVY_MEMO)
def _mean_ceil_heavy(dist, b: int) -> float:
    return _mean_ceil_of(dist, b)


@lru_cache(maxsize=1024)
def _mean_ceil_light(dist, b: int) -> float:
    return _mean_ceil_of(dist, b)


def _mean_ceil_of(dist, b: int) -> float:
    """E[ceil(P / b)] for a length distribution (estimated from a fixed-seed sample of 200,000:
    ~0.1 s for a million-value table, so once per law and budget)."""
    if isinstance(dist, Constant):
        return math.ceil(dist.value / b)
    if dist.max_value != math.inf and dist.max_value <= b:
        return 1.0
    x = dist.sample(np.random.default_rng(12345), 200_000)
    return float(np.ceil(x / b).mean())


def _pairs_per_token(prompt) -> float:
    """Mean prefill attention pairs per prompt token: a prompt of P tokens has P(P+1)/2
    pairs however it is chunked (context-aware batch times; 0 cost otherwise)."""
    m = prompt.mean
    return (prompt.var + m * m + m) / 2 / m if m > 0 else 0.0


def _moments(dist):
    return dist.mean, dist.var + dist.mean ** 2


def memory_capacity_rps(M: int, chunk: int, t_bar: float, prompt, output) -> float:
    """mu = M / (t_bar * E[g(P, D)]), P and D independent (SPEC.md §3)."""
    ms, ms2 = _moments(prompt)
    mo, mo2 = _moments(output)
    eg = ms / 2 + ms2 / (2 * chunk) + ms * mo + (mo + mo2) / 2
    return M / (t_bar * eg)


def _survival(output, j_max: int) -> tuple[np.ndarray, np.ndarray]:
    """P(D >= j) for j = 1..j_max as runs: the value S[i] on m[i] consecutive j, in order,
    zeros left out. A law known by a sample (400,000 draws) changes value only past a drawn
    length, so its runs are at most its distinct draws, whatever j_max (a trace row of
    10,000,000 output tokens made three 10,000,000-entry arrays, +285 MiB)."""
    if isinstance(output, Constant):
        return np.ones(1), np.array([min(output.value, j_max)])
    if isinstance(output, Geometric):
        p = 1.0 / output.mean_value
        return (1 - p) ** np.arange(j_max), np.ones(j_max, dtype=np.int64)
    # draws clipped to j_max keep P(D >= j) for every j <= j_max
    x = np.minimum(np.sort(output.sample(np.random.default_rng(12345), 400_000)), j_max)
    u = np.unique(x)  # j in (u[i-1], u[i]] has P(D >= j) = P(D >= u[i])
    S = 1.0 - np.searchsorted(x, u, side="left") / len(x)
    return S, np.diff(u, prepend=0)


def _binomial_window(n: int, s: float) -> tuple[int, int]:
    """1 <= a <= n where Binomial(n, s) has all but a negligible part of its mass at a >= 1:
    20 standard deviations and 20 either side of the mean (beyond, below 1e-60 of it)."""
    half = 20.0 * math.sqrt(n * s * (1 - s)) + 20.0
    return max(1, int(n * s - half)), min(n, int(math.ceil(n * s + half)))


FT_EXACT_STEPS = 20_000  # decode steps summed one by one in fastertransformer's cycle; beyond, tabulated


FT_BATCHES = 20_000  # FCFS packings of sampled prompts that give the batch sizes of random prompts
FT_CELLS = 1 << 21  # binomial probabilities computed at once (rows of steps x batch sizes)
FT_SIZE_BINS = 16  # batch sizes a cycle of random prompts is averaged over (neighbours grouped)
# above this mean batch size a batch time other than constant takes the cycle at the mean size:
# every size's binomial sums cost steps x size each, and the spread of sizes (relative to the
# mean, ~1/sqrt(n)) matters less and less
FT_SIZES_MAX_N = 64


def _ft_batches(engine, prompt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fastertransformer's prefill batches of random prompts, saturated: sampled prompts
    packed in FCFS order, as many whole prompts as fit the budget (at least one, at most k);
    returns each batch's size, prompt tokens and attention pairs."""
    b, k = engine.token_budget, engine.slots
    x = prompt.sample(np.random.default_rng(54321), 400_000)
    cs = np.cumsum(x)
    cp = np.cumsum(x * (x + 1.0) / 2)
    counts, tokens, pairs = [], [], []
    start, base, base_p = 0, 0, 0.0
    while start < len(x) - k - 1 and len(counts) < FT_BATCHES:
        idx = np.searchsorted(cs, base + b, side="right")
        c = max(1, min(k, idx - start))
        counts.append(c)
        tokens.append(cs[start + c - 1] - base)
        pairs.append(cp[start + c - 1] - base_p)
        base, base_p = cs[start + c - 1], cp[start + c - 1]
        start += c
    return np.array(counts), np.array(tokens, dtype=float), np.array(pairs)


def _ft_sizes(counts: np.ndarray, spread: bool) -> dict:
    """Batch size -> its share of the cycles: at most FT_SIZE_BINS sizes (neighbouring sizes
    grouped at equal shares, each group at its mean size), or (spread False) the mean size."""
    if not spread:
        return {max(1, int(round(float(np.mean(counts))))): 1.0}
    vals, freq = np.unique(counts, return_counts=True)
    if len(vals) > FT_SIZE_BINS:
        group = np.minimum((np.cumsum(freq) - freq) * FT_SIZE_BINS // len(counts), FT_SIZE_BINS - 1)
        mass = np.bincount(group, weights=freq)
        keep = mass > 0
        vals = np.rint(np.bincount(group, weights=freq * vals)[keep] / mass[keep]).astype(int)
        freq = mass[keep]
    out: dict = {}
    for c, m in zip(vals.tolist(), freq.tolist()):
        out[int(c)] = out.get(int(c), 0.0) + m / len(counts)
    return out


FT_KINKS = 16  # kinks of t(a) up to which E[t(A) 1{A >= 1}] is summed in closed form


def _binomial_mean_times_kinked(n: int, s: np.ndarray, t_dec: np.ndarray) -> np.ndarray | None:
    """E[t(A) 1{A >= 1}] for A ~ Binomial(n, s) at every s (t_dec[a - 1] = t(a)) in closed
    form, when t is piecewise linear in a with at most FT_KINKS kinks (every batch time but a
    staircase of many steps: constant, affine, piecewise; the decode context is linear in a);
    else None. With t(0) = 0 and d2(j) = t(j) - 2 t(j-1) + t(j-2) (t(-1) = t(0) = 0),
    E[t(A) 1{A >= 1}] = sum_j d2(j) E[(A - j + 1)^+], and E[(A - m)^+] = n s P(A' >= m) -
    m P(A > m), A' ~ Binomial(n - 1, s): two binomial tails (scipy's bdtrc) per kink and step,
    where the windowed sum takes an exp and a log per batch size near the mean (40 standard
    deviations of them: ~2,600 at n = 65,536, for each of thousands of steps)."""
    from scipy.special import bdtrc
    d2 = np.diff(np.diff(t_dec, prepend=0.0), prepend=0.0)
    # rounding leaves ~1e-16 of t between the kinks of a linear piece; a kink is far above that
    kinks = np.flatnonzero(np.abs(d2) > 1e-12 * float(np.abs(t_dec).max()))
    if len(kinks) > FT_KINKS:
        return None
    s = np.asarray(s, dtype=float)
    ns = n * s
    out = np.zeros(len(s))
    for m in kinks.tolist():  # d2 at j = m + 1: E[(A - m)^+]
        tail = ns * bdtrc(m - 1, n - 1, s) - m * bdtrc(m, n, s)
        out += d2[m] * np.maximum(tail, 0.0)  # the difference of two tails: a rounding below 0 is 0
    return out


def _binomial_mean_times(n: int, s: np.ndarray, t_dec: np.ndarray) -> np.ndarray:
    """E[t(A) 1{A >= 1}] for A ~ Binomial(n, s) at every s (t_dec[a - 1] = t(a)), every
    batch size summed (in blocks of at most FT_CELLS probabilities); _ft_decode_seconds
    tries the closed form (_binomial_mean_times_kinked) first."""
    a = np.arange(1, n + 1)
    logc = np.array([math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) for x in a])
    out = np.zeros(len(s))
    inner = (s > 0) & (s < 1)
    out[s >= 1] = t_dec[n - 1]
    idx = np.flatnonzero(inner)
    rows = max(1, FT_CELLS // n)
    for i in range(0, len(idx), rows):
        j = idx[i:i + rows]
        lp = logc + np.log(s[j])[:, None] * a + np.log1p(-s[j])[:, None] * (n - a)
        out[j] = np.exp(lp) @ t_dec[:n]
    return out


def fastertransformer_capacity(engine, prompt, output) -> tuple[float, bool]:
    """Requests/s that fastertransformer sustains, and whether the formula is exact.

    A cycle is one prefill batch of n whole prompts, then decode iterations until the batch's
    longest output ends: n / E[t_prefill + sum_j t(A_j)], A_j ~ Binomial(n, P(D >= j)) the
    requests still decoding at step j. Constant prompts give one n, and the formula is exact
    (constant or geometric outputs). Random prompts give a batch size that varies from cycle
    to cycle: the cycle's time is averaged over the sizes (and prefill times) of sampled FCFS
    packings -- E[n] over E[cycle], renewal-reward -- rather than taken at the mean size
    (which put azure-conv's cycle ~6% too long: a decode of n outputs lasts as long as the
    longest, a concave function of n)."""
    b = engine.token_budget
    k = engine.slots
    exact = isinstance(prompt, Constant)
    bt = engine.batch_time
    per_req = prompt.mean + output.mean  # memory: prompt + output reserved for each request
    t_pre = None
    if exact:
        n = min(k, b // prompt.value)
        sizes = {n: 1.0}
    else:
        counts, tokens, pairs = _ft_batches(engine, prompt)
        n = float(np.mean(counts))
        if n * per_req <= engine.kv_cache_tokens:
            sizes = _ft_sizes(counts, bt.model == "constant" or n <= FT_SIZES_MAX_N)
            t_pre = float(np.mean(bt.seconds_many(tokens, 0, 0, pairs))) \
                if bt.model != "constant" else bt.params[0]
    if n * per_req > engine.kv_cache_tokens:
        n = max(1.0, math.floor(engine.kv_cache_tokens / per_req))
        sizes = {int(n): 1.0}
        exact = False
        t_pre = None
    if t_pre is None:  # one batch size: n prompts of the mean length
        t_pre = bt.seconds(n * prompt.mean, 0, 0, n * prompt.mean * _pairs_per_token(prompt))
    d_max = output.max_value if output.max_value != math.inf else output.quantile(1 - 1e-12)
    d_max = int(min(d_max, 10_000_000))
    surv, runs = _survival(output, d_max)
    dec = 0.0
    for n_int, weight in sizes.items():
        dec += weight * _ft_decode_seconds(bt, max(1, int(round(n_int))), surv, runs, prompt, output,
                                           random_sizes=len(sizes) > 1)
    return n / (t_pre + dec), exact and isinstance(output, (Constant, Geometric))


def _ft_decode_seconds(bt, n_int: int, surv, runs, prompt, output, random_sizes: bool) -> float:
    """E[sum_j t(A_j) 1{A_j >= 1}], A_j ~ Binomial(n_int, S_j); equal S_j summed once, times
    their count (runs)."""
    if bt.model == "constant":
        p_any = 1 - (1 - surv) ** n_int
        return float(bt.params[0] * (runs * p_any).sum())
    a = np.arange(1, n_int + 1)
    t_dec = bt.seconds_many(0, a, a * (prompt.mean + output.mean / 2))
    kinked = _binomial_mean_times_kinked(n_int, surv, t_dec)
    if kinked is not None:  # every step in closed form (no table needed for long outputs)
        return float((runs * kinked).sum())
    if random_sizes:  # many sizes: every batch size of every step at once
        if len(surv) <= FT_EXACT_STEPS:
            return float((runs * _binomial_mean_times(n_int, surv, t_dec)).sum())
        grid = np.linspace(0.0, 1.0, 4097)
        return float((runs * np.interp(surv, grid, _binomial_mean_times(n_int, grid, t_dec))).sum())
    from scipy.special import gammaln
    logc = gammaln(n_int + 1) - gammaln(a + 1.0) - gammaln(n_int - a + 1.0)  # log C(n_int, a)

    def mean_time(s):  # E[t(A) 1{A >= 1}], A ~ Binomial(n_int, s), over the mass's window
        if s <= 0:
            return 0.0
        if s >= 1:
            return float(t_dec[-1])
        lo, hi = _binomial_window(n_int, s)
        w = slice(lo - 1, hi)
        lp = logc[w] + a[w] * math.log(s) + (n_int - a[w]) * math.log1p(-s)
        return float((np.exp(lp) * t_dec[w]).sum())

    if len(surv) <= FT_EXACT_STEPS:
        return sum(float(m) * mean_time(s) for s, m in zip(surv, runs))
    # very long outputs (a geometric mean of 60,000 tokens: ~1.7 M decode steps, a minute of
    # CPU): E[t(A)] is a polynomial in s, tabulated on a fine grid and interpolated (error
    # ~ 1e-5 of a step's time)
    grid = np.linspace(0.0, 1.0, 4097)
    f = np.array([mean_time(g) for g in grid])
    return float((runs * np.interp(surv, grid, f)).sum())


def _stationary(n: int, rows, cols, probs) -> np.ndarray:
    """Stationary law of a chain on 0..n-1 with the given transition probabilities, the
    mass beyond the last state kept in it: (T' - I) pi = 0 with one equation replaced by
    sum(pi) = 1."""
    T = np.zeros((n, n))
    T[rows, cols] = probs
    T[:, -1] += np.maximum(0.0, 1.0 - T.sum(axis=1))
    A = T.T - np.eye(n)
    A[-1, :] = 1.0
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    return np.linalg.solve(A, rhs)


def vllm_capacity(engine, prompt, output, slots: int | None = None) -> float:
    """Requests/s at which vanilla vLLM's decode supply meets demand (module docstring).

    Saturated, each decode iteration serves c = min(b, k) requests and lasts tau_d (k: the
    engine's slots, or ``slots``, the decoders a full KV cache holds when memory binds); an
    iteration is a prefill of the N requests that arrived during the previous one
    (N ~ Poisson(lambda * tau), at most n_p = min(k, b // P) of them, lasting t(N P)).
    The number of prompts waiting at each iteration start is a Markov chain (a decode
    iteration when none waits, else a prefill of up to n_p); its stationary law gives the
    share of iterations that decode.
    """
    b = engine.token_budget
    k = engine.slots if slots is None else slots
    c = k
    bt = engine.batch_time
    p_mean = prompt.mean
    n_p = max(1, min(k, int(b // max(p_mean, 1))))
    ctx = p_mean + output.mean / 2
    tau_d = bt.seconds(0, c, c * ctx)
    ppt = _pairs_per_token(prompt)
    x = np.minimum(np.arange(1, n_p + 1) * p_mean, b)  # prefill tokens of n whole prompts, n = 1..n_p
    taus = np.concatenate([[tau_d], bt.seconds_many(x, 0, 0, x * ppt)])

    q_max = int(min(400, max(60, 20 * n_p)))
    served = np.minimum(np.arange(q_max + 1), n_p)
    tau_q = np.where(served == 0, tau_d, taus[np.maximum(served, 1)])

    m = q_max + 1
    j = np.arange(m)
    base = np.arange(m) - served              # prompts still waiting after this iteration
    cols = base[:, None] + j[None, :]
    inside = cols < m
    rows = np.broadcast_to(np.arange(m)[:, None], cols.shape)

    def supply(lam):
        # Markov chain on the prompts waiting at an iteration start (capped at q_max):
        # from q, serve served[q] and add Poisson(lam * tau_q) arrivals
        pa = poisson_pmf(j[None, :], lam * tau_q[:, None])
        pi = _stationary(m, rows[inside], cols[inside], pa[inside])
        return c * pi[0] / float(pi @ tau_q)

    from scipy.optimize import brentq
    hi = c / (tau_d * output.mean)
    gap = lambda lam: supply(lam) - lam * output.mean
    try:
        if gap(hi) >= 0:
            return hi
        # the bracket's low end: where supply still meets demand. Prefills far longer than a
        # decode iteration (1 s per prompt token against 1 us per decode) put it many decades
        # below the decode bound; step down until it holds
        lo = hi * 1e-9
        while gap(lo) < 0:
            if lo < hi * 1e-290:
                return 0.0
            lo *= 1e-6
        return brentq(gap, lo, hi, xtol=lo * 1e-6, rtol=1e-12)
    except np.linalg.LinAlgError:
        # transition probabilities that underflow leave no unique stationary law: no bound
        # from the chain (the caller keeps the region's)
        return math.inf


def _mean_g(prompt, output, chunk: int) -> float:
    """E[g(P, D)] token-iterations of KV memory per request (SPEC.md §3)."""
    ms, ms2 = _moments(prompt)
    mo, mo2 = _moments(output)
    return ms / 2 + ms2 / (2 * chunk) + ms * mo + (mo + mo2) / 2


_MEMO: dict = {}


@lru_cache(maxsize=HEAVY_MEMO)
def _memo_heavy(fn, *args):
    """fn(*args) for arguments holding a trace's law: the HEAVY_MEMO most recent kept."""
    return fn(*args)


def _memo(fn, *args):
    """fn(*args), remembered: a scheduler's capacity does not depend on the arrival rate,
    so the probes of a capacity search share it (unhashable arguments: computed afresh)."""
    try:
        key = (fn.__name__,) + args
        hash(key)
    except TypeError:
        return fn(*args)
    if any(_heavy(a) for a in args):
        return _memo_heavy(fn, *args)
    if key not in _MEMO:
        if len(_MEMO) > 512:
            _MEMO.clear()
        _MEMO[key] = fn(*args)
    return _MEMO[key]


UNMIXED = ("vllm", "fastertransformer")  # never a batch of prefill and decode together (SPEC.md §4)


def _scheduler_batches(name: str) -> str:
    """Which of the region's batch sets a scheduler runs when it is saturated."""
    if name == "sarathi":
        return "decode_first"
    if name in ("orca", "fastertransformer", "vllm"):
        return "prefill_first"  # never mixed (ft, vllm) or prefill fills the budget (orca)
    from llmsim.schedulers import scheduler_info
    return "all" if scheduler_info(name).work_conserving else "prefill_first"


def _engine_theory(sc: Scenario, e_idx: int, visits, lam_steps) -> EngineTheory:
    from llmsim.region import engine_region
    eng = sc.engines[e_idx]
    if eng.replicas:  # a pool: its replicas' theories combined by its router
        from llmsim.pool import engine_theory
        return engine_theory(sc, e_idx, visits, lam_steps, _engine_theory)
    steps = [(k, wi, s) for k, (wi, s) in enumerate(_steps(sc)) if s.engine == eng.name]
    b = eng.token_budget
    rate = float(sum(lam_steps[k] for k, _, _ in steps))
    tok_p = float(sum(lam_steps[k] * s.prompt_tokens.mean for k, _, s in steps))
    tok_d = float(sum(lam_steps[k] * s.output_tokens.mean for k, _, s in steps))
    chunks = float(sum(lam_steps[k] * _mean_ceil(s.prompt_tokens, b) for k, _, s in steps))
    offered = tok_p + tok_d
    share = tok_p / offered if offered > 0 else 0.5
    # mean context of a decode token: the prompt plus half the output, weighted by decode tokens
    mean_ctx = (sum(lam_steps[k] * s.output_tokens.mean * (s.prompt_tokens.mean + s.output_tokens.mean / 2)
                    for k, _, s in steps) / tok_d) if tok_d > 0 else 0.0
    # prefill attention: a prompt of P tokens has P(P+1)/2 pairs however it is chunked
    pairs = (sum(lam_steps[k] * (s.prompt_tokens.var + s.prompt_tokens.mean ** 2 + s.prompt_tokens.mean) / 2
                 for k, _, s in steps) / tok_p) if tok_p > 0 else 0.0
    t_b = eng.batch_time.full_budget_seconds(b, share, mean_ctx, pairs)
    cap_tok = b / t_b
    notes = []
    if rate <= 0 or offered <= 0:
        return EngineTheory(eng.name, eng.scheduler, b, t_b, cap_tok, 0.0, 0.0, None,
                            "no calls reach this engine", None, None, (), 0.0)
    if eng.batch_time.prices_means:
        notes.append(f"{eng.name}: the context-aware batch time charges every decode token the mean context "
                     f"({mean_ctx:.0f} tokens) and every prefill token the mean attention pairs ({pairs:.0f}); "
                     f"t(b) uses the workload's prefill share ({share:.2f}): approximate")
    p_max = max(s.prompt_tokens.max_value for _, _, s in steps)
    # per call of the engine's mix
    dp, dd, dq = tok_p / rate, tok_d / rate, chunks / rate
    reg = engine_region(eng, p_max, mean_ctx, "all", pairs)
    opt = reg.capacity(dp, dd, dq)
    region_rps = opt.rate
    t_bar = opt.mean_iteration_seconds
    eg = sum(lam_steps[k] * _mean_g(s.prompt_tokens, s.output_tokens, b) for k, _, s in steps) / rate
    # SPEC.md §3: mu = M / (t_bar E[g]). When memory binds, a work-conserving engine runs
    # the tokens the KV cache can hold: by Little's law (memory = rate x E[g] x t_bar and
    # tokens per iteration = rate x E[P + D] x t_bar) an iteration then holds
    # n_mem = M E[P + D] / E[g] tokens, so t_bar is the time of such a batch, not of the
    # region's (larger) batches — pricing it at t(b) understated mu by up to t(b)/t(n_mem)
    # (b = 2048, codellama-34b/a100-80gb, 100 + 100 tokens: 5.71 req/s where a capacity
    # search finds 14.86; this gives 14.86).
    n_mem = eng.kv_cache_tokens * (offered / rate) / eg
    n_region = region_rps * t_bar * (offered / rate)  # tokens per iteration at the region's capacity
    t_mem = eng.batch_time.full_budget_seconds(n_mem, share, mean_ctx, pairs) if n_mem < n_region else t_bar
    mem_rps = eng.kv_cache_tokens / (t_mem * eg)
    memory_binds = mem_rps < region_rps
    # decoders a full KV cache holds: E[g] token-iterations per request over its E[D] decode
    # iterations is what a decoder holds on average (orca: the decoders an iteration can serve)
    dec_mem = eng.kv_cache_tokens * (tok_d / rate) / eg if eg > 0 else math.inf
    k_dec = eng.slots if dec_mem >= eng.slots else max(1, int(dec_mem))
    wc_rps = min(region_rps, mem_rps)
    k_binds = eng.max_batch_size is not None and eng.max_batch_size < b
    slot_rps = region_rps if k_binds else None
    if memory_binds:
        kind = ("memory capacity M / (t E[g]) (binds before the stability region; t is the time of a batch "
                f"of the {n_mem:.0f} tokens the KV cache holds at that rate; approximate: the mean memory a "
                "request holds over its life, leaving out preemptions' recomputed work)")
    elif k_binds:
        kind = f"stability region with max_batch_size {eng.max_batch_size} (LP): {opt.describe()}"
    else:
        kind = "token capacity b/t(b) (the stability region: exact for work-conserving schedulers)"
    optimal_kind = kind
    # the scheduler's own capacity: the region of the batches it runs, or its own formula.
    # Saturated, its chunks hold what the waiting prompts give: the workload's mean chunk
    # (dp / dq tokens), not the largest prompt (which priced a k-limited batch at a full
    # budget of prefill its slots never hold: sarathi at k = 1, prompts uniform in
    # 1..65,536, got half its capacity)
    sched_set = _scheduler_batches(eng.scheduler)
    mean_chunk = dp / dq if dq > 0 else p_max
    own = (engine_region(eng, mean_chunk, mean_ctx, sched_set, pairs).capacity(dp, dd, dq)
           if sched_set != "all" else opt)
    cap_rps = min(own.rate, mem_rps)
    # what provably bounds this scheduler: the region of every batch, and for a scheduler that
    # never mixes prefill and decode, the region of every unmixed batch (LPs: exact unless
    # the batch time prices a mean context or mean attention pairs). The mean-chunk batches
    # above are an estimate, not a bound
    bound = (engine_region(eng, p_max, mean_ctx, "unmixed", pairs).capacity(dp, dd, dq).rate
             if eng.scheduler in UNMIXED else region_rps)
    proven_rps = math.inf if eng.batch_time.prices_means else min(region_rps, bound)
    proven_kind = ("" if eng.batch_time.prices_means else
                   "the stability region of every batch the engine can run" if bound >= region_rps * (1 - 1e-9)
                   else f"the stability region of batches that never mix prefill and decode ({eng.scheduler} never mixes)")
    if own.rate < wc_rps * (1 - 1e-9):
        kind = (f"{eng.scheduler}'s batches ({'decode first, prefill in the free slots up to the budget' if sched_set == 'decode_first' else 'prefill-only batches up to the budget or k-limited decode-only batches'}, "
                f"chunks of the workload's mean {mean_chunk:,.0f} tokens; LP): {own.describe()}")
    kv_fill = None
    if len(steps) == 1:
        k, wi, s = steps[0]
        if eng.scheduler == "fastertransformer":
            ft, exact = _memo(fastertransformer_capacity, eng, s.prompt_tokens, s.output_tokens)
            if exact and not eng.batch_time.prices_means and ft < proven_rps:
                proven_rps = ft
                proven_kind = "fastertransformer's batch cycle (exact: constant prompts)"
            if ft < cap_rps:
                cap_rps = ft
                kind = ("fastertransformer batch-cycle capacity, each iteration priced at its own batch"
                        + ("" if exact else " (approximate: random prompt lengths or memory-bound batch)"))
        elif eng.scheduler == "orca" and (k_binds or dec_mem < b):
            # the decoders an iteration can serve: its slots, or the decoders the KV cache holds
            # when it is full (each holds E[g] / E[D] tokens on average over its decode)
            oc = _memo(orca_capacity, eng, s.prompt_tokens, s.output_tokens, mean_ctx, k_dec)
            oc = cap_rps if oc is None else min(oc, wc_rps)
            if abs(oc - cap_rps) > 1e-12 * cap_rps:
                cap_rps = oc
                held = (f"the {k_dec} decoders its KV cache holds when full" if k_dec < eng.slots
                        else "the slots")
                kind = (f"orca{' under max_batch_size' if k_dec == eng.slots else ' with a binding KV cache'}: "
                        f"prefill-first batches, decodes in {held} and the budget the waiting prompts leave "
                        "(a Markov chain of waiting prefill tokens, each iteration priced at its own batch; "
                        "approximate: Poisson arrivals, mean prompt length)")
        elif eng.scheduler == "vllm":
            vl = _memo(vllm_capacity, eng, s.prompt_tokens, s.output_tokens)
            if mem_rps < vl and k_dec < eng.slots:
                # memory caps vllm before its chain does, and a full KV cache holds fewer
                # decoders than a decode iteration's slots: the chain with those decoders.
                # Conservative: memory also gates the prefills, which helps vllm (docs/model.md)
                vm = _memo(vllm_capacity, eng, s.prompt_tokens, s.output_tokens, k_dec)
                if vm < cap_rps:
                    cap_rps = vm
                    kind = (f"vllm with a binding KV cache: its prefill-first chain with decode iterations of the "
                            f"{k_dec} decoders the cache holds when full, each iteration priced at its own batch "
                            "(approximate: Poisson arrivals, mean prompt length; memory gating the prefills "
                            "makes it conservative)")
            elif vl < cap_rps:
                cap_rps = vl
                kind = ("vllm prefill-first chain, each iteration priced at its own batch (approximate: "
                        "Poisson arrivals, mean prompt length, KV cache not binding)")
                if rate > vl:
                    # the backlog grows at the drift until the running requests fill the KV cache;
                    # then memory gates the prefills and the chain no longer holds
                    fill_s = kv_fill = eng.kv_cache_tokens / ((rate - vl) * offered / rate)
                    kind += (f". Above it the running requests pile up until the KV cache's "
                             f"{eng.kv_cache_tokens:,} tokens are full (after roughly {fill_s:,.0f} s at this "
                             "rate); from then on memory gates the prefills and a run long enough may level off "
                             "with a backlog near the cache's size")
    elif eng.scheduler in ("fastertransformer", "vllm"):
        notes.append(f"{eng.name}: {eng.scheduler} on several steps: the region of unmixed batches "
                     "(an upper bound; its batch-cycle formula is for one step)")
    return EngineTheory(eng.name, eng.scheduler, b, t_b, cap_tok, offered, rate / wc_rps, cap_rps, kind,
                        mem_rps, slot_rps, tuple(notes), rate / cap_rps, region_rps, opt.describe(),
                        bool(memory_binds), rate, t_bar, kv_fill, optimal_kind,
                        rate / proven_rps if proven_rps > 0 else math.inf, proven_kind)


def _steps(sc):
    return [(wi, s) for wi, w in enumerate(sc.workflows) for s in w.steps]


def analyze(sc: Scenario) -> Theory:
    """Load, capacities and fluid drift of a scenario (memoized: scenarios are frozen)."""
    sc = as_scenario(sc)
    try:
        return (_analyze_heavy if _holds_trace(sc) else _analyze_cached)(sc)
    except TypeError:  # an unhashable field (should not happen): compute afresh
        return _analyze(sc)


@lru_cache(maxsize=256)
def _analyze_cached(sc: Scenario) -> Theory:
    return _analyze(sc)


@lru_cache(maxsize=HEAVY_MEMO)
def _analyze_heavy(sc: Scenario) -> Theory:
    return _analyze(sc)


def _analyze(sc: Scenario) -> Theory:
    # one BLAS thread: the theory's dense algebra is small (chains of at most ORCA_CHAIN_STATES
    # states, least squares), and OpenBLAS's worker threads spin: on 2 cores two of them made
    # the theory of a pool of 16 orca replicas take 2.45 s of CPU instead of 1.1 (the dashboard's
    # server runs one BLAS thread already; this holds for the library and the command line)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        return _analyze_one_thread(sc)


def _analyze_one_thread(sc: Scenario) -> Theory:
    visits = expected_visits(sc)
    steps = _steps(sc)
    lam_steps = np.array([sc.workflows[wi].arrival.rate * visits[k] for k, (wi, _) in enumerate(steps)])
    engines = tuple(_engine_theory(sc, i, visits, lam_steps) for i in range(len(sc.engines)))
    load = max(e.load for e in engines)
    sched_load = max(e.scheduler_load for e in engines)
    notes = sum((list(e.notes) for e in engines), [])
    lam = sc.total_rate
    if sc.single:
        e = engines[0]
        s = steps[0][1]
        m = s.prompt_tokens.mean + s.output_tokens.mean
        wc = e.calls_per_s / e.load if e.load > 0 else None
        cap = e.capacity_rps
        # round robin to unequal replicas: only the slow ones grow (the pool's lambda - K min c
        # predicted twice the growth measured on scenarios/deploy/heterogeneous.toml)
        drift_rps = e.excess_calls_per_s(lam)
        return Theory(load, cap, wc, drift_rps * m, drift_rps, engines, tuple(notes), sched_load)
    # network: every engine's region and memory bound over the mix of steps it serves; the
    # capacity is the total-rate scaling at which the busiest engine reaches load 1
    # (necessary; sufficient for FCFS-type policies on acyclic workflows, not for every
    # policy on cyclic routing)
    cap = lam / sched_load if sched_load > 0 else None
    opt = lam / load if load > 0 else None
    drift_tok = _network_drift(sc, engines, steps, lam_steps, sched_load)
    drift_rps = max(0.0, lam - cap) if cap else 0.0
    notes.append("network capacity = the arrival-rate scaling at which the busiest engine (its stability "
                 "region and memory bound over the steps it serves) reaches load 1: necessary for "
                 "stability; the policy decides whether it is enough")
    return Theory(load, cap, opt, drift_tok, drift_rps, engines, tuple(notes), sched_load)


def _network_drift(sc: Scenario, engines, steps, lam_steps, sched_load: float) -> float:
    """Fluid growth of a network's backlog (tokens/s; the verdict's backlog counts the calls
    workflows will still make). An engine above load 1 passes calls on at 1/load of their
    arrival rate: its steps and every step reachable from them (calls made after one of its
    calls) complete at that rate and pile up at 1 - 1/load of their work; a step behind
    several such engines is held back by the busiest of them, and steps only upstream of
    them, or on branches beside them, keep up. Summing each engine's own excess missed the
    work held back behind the bottleneck for engines after it (tandem at own load 1.17: 8.5%
    of the arriving work predicted, 14.5% measured; now 14.5%). Approximate where engines
    above 1 share classes (each step is given its busiest engine's factor) and under a
    priority policy, which can hold one class's later work back more than another's."""
    if sched_load <= 1:
        return 0.0
    from llmsim.config import _downstream, step_children
    kids = [step_children(w) for w in sc.workflows]
    worst = [1.0] * len(steps)  # per step: the largest load above 1 it is held back by
    for e in engines:
        if e.scheduler_load <= 1:
            continue
        k = 0
        for w, wk in zip(sc.workflows, kids):
            down = _downstream(wk, [s.name for s in w.steps if s.engine == e.name])
            for s in w.steps:
                if s.name in down:
                    worst[k] = max(worst[k], e.scheduler_load)
                k += 1
    return float(sum(lam_steps[k] * (s.prompt_tokens.mean + s.output_tokens.mean) * (1.0 - 1.0 / worst[k])
                     for k, (_, s) in enumerate(steps)))


ORCA_CHAIN_STATES = 400  # states of orca's chain of waiting prefill tokens at most (a dense solve each)


def orca_capacity(engine, prompt, output, context: float, slots: int | None = None) -> float | None:
    """Requests/s at which orca's prefill-first mixed batches supply the decode tokens.

    Each iteration takes x = min(W, b) of the W waiting prefill tokens (chunked), and the
    remaining slots and budget go to decodes: y = min(k - c, b - x) with c the chunks (a
    saturated running set). k is the engine's slots, or ``slots``: the decoders a full KV
    cache holds, when memory binds before the slots do (decoders starved by the prompts'
    chunks hold their cache longer, which is what makes orca fall short of the memory
    capacity there: docs/model.md). W at iteration starts is a Markov chain: W' = max(W - b, 0) +
    P * Poisson(lambda t(x, y)), on a grid of u = P/m tokens; the capacity is the lambda
    where E[y] / E[t] equals lambda E[D]. Approximation: Poisson arrivals, prompts of the
    mean length. Between the time-sharing bound (prefill-only or decode-only batches) and
    the stability region: orca mixes only with the prompts that are left."""
    from scipy.optimize import brentq
    b, k = engine.token_budget, engine.slots if slots is None else slots
    bt = engine.batch_time
    p_mean = max(1.0, prompt.mean)
    w_max = max(12 * b, 30 * p_mean)
    m = int(max(1, min(8, math.floor(160 * p_mean / w_max))))
    u = p_mean / m
    n = int(math.ceil(w_max / u)) + 1
    # a budget far above the prompt length would make the grid huge (b = 65,536 with 1-token
    # prompts: 786,433 states, a 4.5 TiB matrix): above ORCA_CHAIN_STATES the grid is coarser
    # than a prompt, and a cell's arrival probability is the Poisson mass of the counts whose
    # tokens round to it
    coarse = n > ORCA_CHAIN_STATES
    if coarse:
        n = ORCA_CHAIN_STATES
        u = w_max / (n - 1)
    W = np.arange(n) * u
    x = np.minimum(W, b)
    c = np.ceil(x / min(p_mean, b))
    y = np.where(x > 0, np.maximum(0.0, np.minimum(k - c, b - x)), min(k, b))
    ppt = _pairs_per_token(prompt)
    t = bt.seconds_many(x, y, y * context, x * ppt)
    base = np.maximum(0, np.round((W - b) / u)).astype(int)
    j = np.arange(n)

    if coarse:
        inc = np.arange(n)  # cells of arriving tokens: counts N with N p / u rounding to inc
        hi_n = np.ceil((inc + 0.5) * u / p_mean) - 1
        lo_n = np.ceil((inc - 0.5) * u / p_mean) - 1
        cols = base[:, None] + inc[None, :]
    else:
        arr = np.arange(n // m + 1)
        cols = base[:, None] + m * arr[None, :]
    ok = cols < n
    rows = np.broadcast_to(j[:, None], cols.shape)

    def supply(lam):
        if coarse:
            mu = lam * t[:, None]
            a = poisson_cdf(hi_n[None, :], mu) - poisson_cdf(lo_n[None, :], mu)
        else:
            a = poisson_pmf(arr[None, :], lam * t[:, None])  # prompts arriving during the iteration
        pi = _stationary(n, rows[ok], cols[ok], a[ok])
        return float(pi @ y) / float(pi @ t), float(pi[-1])

    def gap(lam):
        s, tail = supply(lam)
        return s - lam * output.mean if tail < 1e-3 else -lam * output.mean
    hi = k / (t[0] * output.mean) if t[0] > 0 else 1e6
    hi = min(hi, b / bt.seconds(b, 0, 0, b * ppt) / p_mean)
    try:
        if gap(hi) >= 0:
            return hi
        if gap(hi * 1e-6) < 0:  # no crossing (a degenerate chain): the caller keeps the LP over orca's batches
            return None
        return brentq(gap, hi * 1e-6, hi, xtol=hi * 1e-9)
    except np.linalg.LinAlgError:
        # transition probabilities that underflow (prefills ~1 s per token against ~1 us per
        # decode) leave no unique stationary law: the caller keeps the LP over orca's batches
        return None
