"""The stability region of one engine as a linear program (SPEC.md §6, the paper's Theorem 10).

A *batch type* is (x prefill tokens in c chunks, y decode tokens) with ``x + y <= b`` and
``y + c <= k``; it lasts ``t(x, y)`` seconds. Run for a share ``s_j`` of the time, batch
type j supplies ``s_j x_j / t_j`` prefill tokens, ``s_j y_j / t_j`` decode tokens and
``s_j c_j / t_j`` prefill chunks per second. The fluid region of sustainable token rates
(lambda_p, lambda_d) is every pair dominated by such a time-share mix (``sum s_j <= 1``).

A workload needing ``(p, d)`` tokens and ``q`` chunks per request (``q = E[ceil(P / b)]``:
a chunk never exceeds the budget) has capacity

    lambda* = max lambda  s.t.  sum_j s_j x_j/t_j >= lambda p,  sum_j s_j y_j/t_j >= lambda d,
                                sum_j s_j c_j/t_j >= lambda q,  sum_j s_j <= 1,  s >= 0,

solved with ``scipy.optimize.linprog`` (HiGHS) by column generation (``capacity``): over
the vertices of the rate vectors' hull first, then adding the candidates the LP's dual
prices name until none would raise lambda (the optimum over every candidate, by LP
duality; a budget of 65,536 has 131,000 candidates, and one LP over all of them took 9 s). The binding batch mix
is the LP's solution; its time-weighted batch is what an optimal engine runs at capacity.

Candidates. A chunk holds at most ``max_chunk = min(b, largest prompt)`` tokens, so ``x``
prefill tokens need ``c = ceil(x / max_chunk)`` chunks; a batch may split its prefill into
more chunks, up to its free slots ``k - y`` (the chunk supply in the LP). For batch times that depend on
the token load ``n = x + y`` only (constant, staircase, piecewise) and for the affine model
(linear in x and y along ``x + y = n``), the rate vectors of the batches with ``n`` tokens
lie on a segment whose ends are the batch with the fewest and the most decode tokens;
the candidates are these two ends for every n in 1..b (the region is their convex hull,
made down-closed). Exact for batch times of the token load; for the affine model every
decode token is charged the workload's mean context (an approximation, stated).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """One batch type: prefill tokens in chunks, decode tokens, and its duration."""
    prefill: int
    chunks: int
    decode: int
    seconds: float

    @property
    def tokens(self) -> int:
        return self.prefill + self.decode

    @property
    def rates(self) -> tuple:
        """(prefill tokens/s, decode tokens/s) while this batch type runs back to back."""
        return self.prefill / self.seconds, self.decode / self.seconds

    def describe(self) -> str:
        parts = []
        if self.prefill:
            parts.append(f"{self.prefill} prefill tokens" + (f" in {self.chunks} chunks" if self.chunks > 1 else ""))
        if self.decode:
            parts.append(f"{self.decode} decode tokens")
        return " + ".join(parts) + f" every {self.seconds * 1e3:.2f} ms"


@dataclass(frozen=True)
class RegionCapacity:
    """Where a workload's ray leaves the region."""
    rate: float               # lambda*: requests (or workload units) per second
    mix: tuple                # ((Batch, time share), ...), shares summing to <= 1
    demand: tuple             # (prefill, decode, chunks) per request

    @property
    def binding(self) -> Batch:
        """The batch type with the largest time share at capacity."""
        return max(self.mix, key=lambda bs: bs[1])[0]

    @property
    def iterations_per_s(self) -> float:
        return sum(s / b.seconds for b, s in self.mix)

    @property
    def mean_iteration_seconds(self) -> float:
        """Mean duration of the iterations an optimal engine runs at capacity."""
        ips = self.iterations_per_s
        return sum(s for _, s in self.mix) / ips if ips > 0 else math.nan

    @property
    def point(self) -> tuple:
        """(prefill tokens/s, decode tokens/s) at capacity."""
        return self.rate * self.demand[0], self.rate * self.demand[1]

    def describe(self) -> str:
        mix = sorted(self.mix, key=lambda bs: -bs[1])
        # a share that rounds to 0% is left out ("0% batches of 256 prefill tokens" read as noise)
        mix = [bs for bs in mix if round(100 * bs[1]) > 0] or mix[:1]
        if len(mix) == 1:
            return f"batches of {mix[0][0].describe()}"
        return "time-sharing " + "; ".join(f"{100 * s:.0f}% batches of {b.describe()}" for b, s in mix)


BATCH_SETS = ("all", "decode_first", "prefill_first", "unmixed")
MEAN_CHUNK_SETS = ("decode_first", "prefill_first")  # a saturated scheduler's batches, at the mean chunk


class Region:
    """The fluid stability region of one engine (module docstring).

    batches: "all" — every feasible batch (the region no scheduler can leave: the optimal
    capacity); "decode_first" — the batches a decode-first mixed scheduler (sarathi) runs
    when prompts wait: y decode tokens, then prefill filling the budget in the k - y
    remaining slots; "prefill_first" — those of a prefill-first scheduler (orca): a
    prefill batch filling the budget, or a decode-only batch of up to k tokens. Both
    describe a saturated engine whose chunks hold ``max_chunk`` tokens each (the theory
    passes the workload's mean chunk: an estimate, not a bound); "unmixed" — every batch
    that never mixes prefill and decode (prefill-only batches of any size up to the budget
    and k chunks, decode-only batches of up to k tokens): a true bound on the schedulers
    that never mix (vllm, fastertransformer)."""

    def __init__(self, batch_time, budget: int, max_batch_size: int | None = None,
                 max_chunk: int | None = None, context: float = 0.0, batches: str = "all",
                 pairs: float = 0.0):
        if batches not in BATCH_SETS:
            raise ValueError(f"batches: {batches!r}; allowed: {', '.join(BATCH_SETS)}")
        b = int(budget)
        k = b if max_batch_size is None else int(min(max_batch_size, b))
        if batches in MEAN_CHUNK_SETS:  # a mean chunk: any size of at least one token
            pc = float(b) if max_chunk is None else float(max(1.0, min(max_chunk, b)))
        else:
            pc = b if max_chunk is None else int(max(1, min(max_chunk, b)))
        self.batch_time, self.budget, self.max_batch_size, self.max_chunk = batch_time, b, k, pc
        self.context = float(context)
        self.pairs = float(pairs)  # mean attention pairs per prefill token (context-aware times)
        self.kind = batches
        self.approximate = batch_time.prices_means
        x, y = self._candidates()
        c = np.ceil(x / pc - 1e-9)
        t = self._seconds(x.astype(float), y.astype(float))
        keep = (t > 0) & (x + y > 0)
        self._x, self._y, self._c, self._t = x[keep], y[keep], c[keep].astype(np.int64), t[keep]
        # a batch may split its prefill into more chunks than it needs, up to its free slots
        c_max = np.where(self._x > 0, np.minimum(self._x, k - self._y), 0)
        self._rates = np.column_stack([self._x / self._t, self._y / self._t, c_max / self._t])
        self._hull = self._hull_indices()
        self._start_idx = None

    @property
    def nbytes(self) -> int:
        """Bytes of its candidate arrays (what a cache of regions holds)."""
        return sum(a.nbytes for a in (self._x, self._y, self._c, self._t, self._rates))

    def batch(self, i: int) -> Batch:
        return Batch(int(round(self._x[i])), int(self._c[i]), int(self._y[i]), float(self._t[i]))

    @property
    def batches(self) -> list:
        return [self.batch(i) for i in range(len(self._x))]

    # -------------------------------------------------------------- candidates
    def _seconds(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        bt = self.batch_time
        p = bt.params
        n = x + y
        if bt.model == "constant":
            return np.full(len(n), float(p[0]))
        if bt.model == "staircase":
            return p[0] + p[1] * np.ceil(n / p[2])
        if bt.model == "piecewise":
            base = p[0] + p[1] * np.maximum(0.0, n - p[2])
            if len(p) <= 3:
                return base
            # linear layers as a floor and a line, attention on top (params c, a, b0, ckv, cpa, cd, cp)
            return base + p[6] * x + p[5] * y + p[3] * y * self.context + p[4] * x * self.pairs
        pa = p[4] if len(p) > 4 else 0.0
        return p[0] + p[1] * x + p[2] * y + p[3] * y * self.context + pa * x * self.pairs

    def _candidates(self):
        b, k, pc = self.budget, self.max_batch_size, self.max_chunk
        i64 = np.int64
        if self.kind == "decode_first":
            y = np.arange(0, k + 1, dtype=i64)
            return np.minimum(b - y, (k - y) * pc).astype(float), y
        if self.kind == "prefill_first":
            return np.array([min(b, k * pc), 0.0]), np.array([0, k], dtype=i64)
        if self.kind == "unmixed":
            x = np.arange(1, min(b, k * pc) + 1, dtype=i64)
            y = np.arange(1, k + 1, dtype=i64)
            return np.concatenate([x, np.zeros(len(y), dtype=i64)]), np.concatenate([np.zeros(len(x), dtype=i64), y])
        n = np.arange(1, b + 1, dtype=i64)
        xs, ys = [], []
        # decode-only batches: n decode tokens, one slot each
        m = n <= k
        xs.append(np.zeros(int(m.sum()), dtype=i64))
        ys.append(n[m])
        # prefill-only batches: n prefill tokens in ceil(n / pc) chunks
        m = np.ceil(n / pc) <= k
        xs.append(n[m])
        ys.append(np.zeros(int(m.sum()), dtype=i64))
        # mixed batches with the most decode tokens when n > k: the fewest prefill tokens
        # x >= 1 with (n - x) + ceil(x / pc) <= k (the left side falls as x grows)
        big = n[n > k]
        if len(big) and pc > 1:
            need = big - k  # x - ceil(x / pc) >= need
            x0 = np.ceil(need * pc / (pc - 1)).astype(i64)
            best = np.full(len(big), -1, dtype=i64)
            for d in range(3, -4, -1):
                x = np.maximum(1, x0 + d)
                ok = (x - np.ceil(x / pc) >= need) & (x <= big)
                best = np.where(ok, x, best)
            m = best >= 1
            xs.append(best[m])
            ys.append(big[m] - best[m])
        return np.concatenate(xs), np.concatenate(ys)

    def _hull_indices(self) -> list:
        """Indices of the batches whose (prefill, decode) rate vectors are the vertices of
        the region's upper boundary, from the prefill axis to the decode axis."""
        R = self._rates[:, :2]
        order = np.lexsort((-R[:, 1], -R[:, 0]))  # prefill rate descending, then decode
        # dominated points (no more decode than one before them, which has more prefill) are
        # never vertices: dropped at once, so the loop below sees the Pareto front only
        d = R[order, 1]
        before = np.concatenate([[-np.inf], np.maximum.accumulate(d)[:-1]])
        order = order[d > before * (1 + 1e-12)]
        if len(order) > 256:
            # only the convex hull's vertices can be the upper boundary's (the loop below then
            # sees a few hundred points, not 131,000 on a concave front)
            v = _hull_vertices(R[order])
            if v is not None:
                order = order[v]
        hull = []
        for i in order:
            p = R[i]
            if hull and p[1] <= R[hull[-1]][1] * (1 + 1e-12):
                continue  # dominated: no more decode for less prefill
            while len(hull) >= 2:
                a, q = R[hull[-2]], R[hull[-1]]
                cross = (q[0] - a[0]) * (p[1] - a[1]) - (q[1] - a[1]) * (p[0] - a[0])
                if cross <= 1e-12 * (abs(a[0]) + abs(a[1]) + abs(p[0]) + abs(p[1])) ** 2:
                    hull.pop()  # q lies on or inside the chord a-p: not a vertex
                else:
                    break
            hull.append(int(i))
        return hull

    # -------------------------------------------------------------- the LP
    def capacity(self, prefill: float, decode: float, chunks: float = 0.0) -> RegionCapacity:
        """lambda* for a workload needing (prefill, decode) tokens and `chunks` prefill
        chunks per unit (a request, or one unit of a step mix)."""
        if not (prefill >= 0 and decode >= 0 and prefill + decode > 0):
            raise ValueError(f"demand: prefill {prefill} and decode {decode} tokens must be >= 0, not both 0")
        # column generation: the hull's vertices (``_start``) carry the optimum; the LP's
        # prices name any batches that would raise lambda, which join the candidates until
        # none would (LP duality: the optimum over every batch)
        idx = self._start()
        lam_before = -math.inf
        flat = 0  # rounds in a row that did not raise lambda
        for _ in range(self.PRICING_ROUNDS):
            lam, s, u = self._lp(idx, prefill, decode, chunks)
            priced = self._rates @ u[:3]
            gain = priced - u[3]
            gain[idx] = -np.inf
            scale = max(u[3], float(np.max(np.abs(priced))), 1e-300)
            better = np.nonzero(gain > 1e-9 * scale)[0]
            if len(better) == 0:
                break
            if lam <= lam_before * (1 + 1e-12):
                # u3 + max gain bounds the LP over every candidate (a dual-feasible point): when
                # that is within STALL_GAP of lambda, the gains are the solver's tolerance
                # (degenerate regions: a batch time linear in the token load puts every
                # candidate on one plane), not better batches
                if float(gain.max()) <= self.STALL_GAP * u[3]:
                    break
                flat += 1
                if flat >= self.FLAT_ROUNDS:
                    break  # stalled: the whole LP below, at once (not a round per 64 batches)
            else:
                flat = 0
            lam_before = lam
            best = better[np.argsort(-gain[better])[:self.PRICED_PER_ROUND]]
            idx = np.concatenate([idx, best])
        else:
            flat = self.FLAT_ROUNDS
        if flat >= self.FLAT_ROUNDS:  # not expected; the whole LP is exact at any size
            idx = np.arange(len(self._x))
            lam, s, _ = self._lp(idx, prefill, decode, chunks)
        on = np.nonzero(s > 1e-9)[0]
        mix = tuple((self.batch(int(idx[j])), float(s[j])) for j in on)
        return RegionCapacity(lam, mix, (float(prefill), float(decode), float(chunks)))

    def _start(self) -> np.ndarray:
        """The first columns: the vertices of the 3-D hull of the rate vectors and the origin
        (the LP's optimum is a mix of them; Qhull, on columns scaled to 1), with the 2-D
        hull's. Pricing then checks (and repairs) optimality, so a hull Qhull cannot build
        (flat or degenerate points) only costs rounds."""
        if self._start_idx is None:
            idx = np.array(self._hull, dtype=np.int64)
            v = _hull_vertices(self._rates) if len(self._rates) > 64 else None
            self._start_idx = idx if v is None else np.union1d(idx, v).astype(np.int64)
        return self._start_idx

    PRICING_ROUNDS = 60      # column-generation rounds before the whole LP is solved
    FLAT_ROUNDS = 3          # rounds in a row that do not raise lambda before the whole LP is solved
    STALL_GAP = 1e-5         # relative gap to the certified bound at which a stalled pricing stops
    PRICED_PER_ROUND = 64    # candidate batches joining per round (the most promising)

    def _lp(self, idx, prefill, decode, chunks):
        """The LP over the batches ``idx``: (lambda, their time shares, the prices
        (prefill, decode, chunk, time) of its rows, >= 0).

        Solved scaled: each row by its largest rate, lambda by a bound on it (the rate one row
        alone would allow), so the solver works on figures near 1. Unscaled, a region of
        1 s per prefill token puts lambda and every price near 3e-5 and the solver's absolute
        tolerance (1e-7) calls a basis 1e-5 short of the optimum optimal: pricing then named
        the better batches round after round and the LP never took them."""
        from scipy.optimize import linprog
        R = self._rates[idx]
        nb = len(idx)
        demand = np.array([prefill, decode, chunks], dtype=float)
        top = R.max(axis=0) if nb else np.ones(3)
        top = np.where(top > 0, top, 1.0)
        need = demand > 0
        with np.errstate(over="ignore"):
            scale = float(np.min(top[need] / demand[need]))  # lambda <= scale: mu = lambda / scale <= 1
        if not 0 < scale < math.inf:
            scale = 1.0  # a demand near 0 on every row (1e-310 tokens): unscaled
        cost = np.zeros(nb + 1)
        cost[-1] = -1.0  # maximize mu
        A = np.zeros((4, nb + 1))
        A[:3, :nb] = -(R / top).T
        A[:3, -1] = demand * scale / top
        A[3, :nb] = 1.0
        res = linprog(cost, A_ub=A, b_ub=np.array([0.0, 0.0, 0.0, 1.0]), bounds=(0, None), method="highs")
        if res.status != 0:
            # finite rates make the LP bounded and feasible; a batch time whose costs differ by
            # many decades can still defeat the solver's tolerances: say which input, not a crash
            from llmsim.workload import ConfigError
            raise ConfigError(
                f"engine.batch_time: theory's stability region cannot be solved for these costs "
                f"({res.message}); allowed: costs fewer decades apart (e.g. a per-token cost nearer the fixed time)")
        v = -np.asarray(res.ineqlin.marginals, dtype=float)
        return float(res.x[-1]) * scale, res.x[:nb], np.concatenate([v[:3] / top, v[3:]])

    # -------------------------------------------------------------- the picture
    def vertices(self) -> list:
        """The batches at the vertices of the region's upper boundary, from the prefill
        axis to the decode axis (the region is their convex hull with the origin, made
        down-closed)."""
        return [self.batch(i) for i in self._hull]


def _hull_vertices(points: np.ndarray) -> np.ndarray | None:
    """Sorted indices of the points that are vertices of the convex hull of them and the
    origin (Qhull, on coordinates scaled to 1); None when Qhull cannot build it (flat or
    degenerate input), and the caller keeps every point."""
    from scipy.spatial import ConvexHull
    top = points.max(axis=0)
    try:
        v = ConvexHull(np.vstack([points / np.where(top > 0, top, 1.0), np.zeros(points.shape[1])])).vertices
    except Exception:  # scipy.spatial.QhullError
        return None
    return np.sort(v[v < len(points)])


def engine_region(engine, max_prompt: float, context: float = 0.0, batches: str = "all",
                  pairs: float = 0.0) -> Region:
    """The region of an EngineConfig: chunks hold at most min(b, largest prompt) tokens
    (for the MEAN_CHUNK_SETS, `max_prompt` is the workload's mean chunk, tokens);
    `context` is the mean decode context and `pairs` the mean prefill attention pairs per
    prefill token (context-aware batch times only)."""
    b = engine.token_budget
    if not math.isfinite(max_prompt):
        pc = b
    elif batches in MEAN_CHUNK_SETS:
        pc = round(float(max(1.0, min(max_prompt, b))), 9)
    else:
        pc = int(max(1, min(math.ceil(max_prompt), b)))
    aware = engine.batch_time.context_aware
    ctx = round(float(context), 6) if aware else 0.0
    prs = round(float(pairs), 6) if aware else 0.0
    return _cached_region(engine.batch_time, b, engine.max_batch_size, pc, ctx, batches, prs)


REGION_CACHE_BYTES = 96 << 20  # a region of b = 65,536 holds ~7 MiB of candidate arrays
_REGIONS: OrderedDict = OrderedDict()
_REGIONS_LOCK = threading.Lock()


def _cached_region(bt, b, k, pc, ctx, batches, pairs=0.0) -> Region:
    """Regions recently used, least recent dropped first, bounded by their arrays' bytes (a
    count bound let 128 regions of b = 65,536 hold 906 MiB of a server's memory for good)."""
    key = (bt, b, k, pc, ctx, batches, pairs)
    with _REGIONS_LOCK:
        r = _REGIONS.get(key)
        if r is not None:
            _REGIONS.move_to_end(key)
            return r
    r = Region(bt, b, k, pc, ctx, batches, pairs)
    with _REGIONS_LOCK:
        _REGIONS[key] = r
        while len(_REGIONS) > 1 and sum(x.nbytes for x in _REGIONS.values()) > REGION_CACHE_BYTES:
            _REGIONS.popitem(last=False)
    return r


def picture(region: Region, prefill: float, decode: float, chunks: float = 0.0, rate: float | None = None) -> dict:
    """What a lecture on the region draws, as plain rows (tokens per second):
    ``boundary`` (the region's upper boundary from the decode axis to the prefill axis),
    ``vertices`` (with the batch each one runs), ``ray`` (the workload's direction up to
    1.25 x its capacity), ``capacity`` (where the ray leaves the region) and ``operating``
    (the workload at `rate`, if given)."""
    verts = region.vertices()
    cap = region.capacity(prefill, decode, chunks)
    pts = [v.rates for v in verts]
    boundary = [{"prefill_tps": 0.0, "decode_tps": pts[-1][1]}] + \
        [{"prefill_tps": p, "decode_tps": d} for p, d in reversed(pts)] + \
        [{"prefill_tps": pts[0][0], "decode_tps": 0.0}]
    vertices = [{"prefill_tps": v.rates[0], "decode_tps": v.rates[1], "batch": v.describe(),
                 "prefill_tokens": v.prefill, "decode_tokens": v.decode, "chunks": v.chunks,
                 "seconds": v.seconds} for v in verts]
    top = 1.25 * cap.rate
    ray = [{"prefill_tps": 0.0, "decode_tps": 0.0}, {"prefill_tps": top * prefill, "decode_tps": top * decode}]
    out = {"boundary": boundary, "vertices": vertices, "ray": ray,
           "capacity": {"rate": cap.rate, "prefill_tps": cap.point[0], "decode_tps": cap.point[1],
                        "mix": cap.describe(),
                        "batch_types": sum(round(100 * s) > 0 for _, s in cap.mix) or 1}}
    if rate is not None:
        out["operating"] = {"rate": rate, "prefill_tps": rate * prefill, "decode_tps": rate * decode,
                            "load": rate / cap.rate if cap.rate > 0 else math.inf}
    return out
