"""Running a scenario: build the kernel's arrays, advance in chunks, wrap the result.

``Simulation`` holds a run in progress (the UI advances it chunk by chunk and draws the
trajectory as it grows); ``simulate`` runs one to its end.
"""

from __future__ import annotations

import math
import time
import weakref
from typing import TYPE_CHECKING

import numpy as np

from llmsim import _kernel_cache, _order, _python_tier, _single, budget, core
from llmsim._calls import (Background, finished_delays, finished_delays_split, in_parallel, prefault,
                           two_threads)
from llmsim import state as S
from llmsim.config import (POLICIES, Scenario, as_scenario, expected_visits, join_needs, longest_request,
                           routing_matrix, stochastic_steps, step_index, validate)
from llmsim.pool import ROUTERS, has_pool, physical_engines
from llmsim.schedulers import scheduler_info
from llmsim.workload import ConfigError, Deterministic, GammaArrivals, Poisson

if TYPE_CHECKING:
    import pandas as pd
# pandas is imported where a table is built, not with llmsim: `import llmsim`, the CLI and the
# dashboard's compile process start about 0.25 s sooner, and a summary never needs it

MAX_CALLS = 50_000_000


class Result:
    """What a run produced. Times in seconds, tokens in tokens.

    summary: dict (see ``Simulation.summary``), computed from the kernel's arrays.
    timeseries: one row per sample time: time_s, workflows_in_system; per engine waiting,
        running, backlog_tokens, kv_tokens (plain names for a single engine, prefixed
        ``<engine>.`` otherwise); per step (buffer) ``<workflow>.<step>.waiting`` and
        ``.in_buffer`` (waiting + running) for networks.
    requests: one row per LLM call (a request, for a single engine): request_id,
        arrival_s (entered its engine's buffer), admitted_s, first_token_s, finish_s (NaN
        while unfinished), prompt_tokens, output_tokens, preemptions; for networks also
        workflow_id, workflow, step, engine.
    workflows: one row per workflow arrival: workflow_id, workflow, arrival_s, finish_s.
    iterations: with ``record_iterations``: one row per batch entry: iteration, engine,
        start_s, end_s, request_id, tokens, phase ('prefill' | 'decode'), and one row per
        preemption, phase 'preempt': the iteration whose forming preempted the request,
        start_s = end_s = that moment, tokens = the computed tokens it lost (its prompt chunks
        done, or its prompt and output so far: what it recomputes beyond the work it had
        left; they sum to the summary's tokens_recomputed); else None.

    The four tables are DataFrames built on first access (a million-row table costs more
    to build than the run that produced it); each table argument may be a DataFrame or a
    function of no arguments that builds it.
    """
    _TABLES = ("timeseries", "requests", "workflows", "iterations")

    def __init__(self, scenario: Scenario, summary: dict, timeseries, requests, workflows,
                 iterations=None, verdict=None, timeseries_columns: dict | None = None,
                 arrival_times: np.ndarray | None = None):
        self.scenario = scenario
        self._arrival_times = arrival_times
        self.summary = summary
        self.verdict = verdict
        self._ts_columns = timeseries_columns
        self._tables = {"timeseries": timeseries, "requests": requests, "workflows": workflows,
                        "iterations": iterations}

    def _table(self, name):
        t = self._tables[name]
        if callable(t):
            t = self._tables[name] = t()
        return t

    def materialize(self) -> "Result":
        """Build every table now (before the arrays they read from change)."""
        for name in self._TABLES:
            self._table(name)
        return self

    timeseries = property(lambda self: self._table("timeseries"))

    def timeseries_column(self, name: str) -> np.ndarray:
        """One timeseries column as a float array, without building the DataFrame when the
        Result was made with its columns (a Simulation's results are)."""
        if self._ts_columns is not None:
            return self._ts_columns[name]
        return self.timeseries[name].to_numpy()
    def arrival_times(self) -> np.ndarray:
        """Arrival times (s) of the run's requests (a single engine) or workflows (a network),
        in time order, those still to come within the horizon included: the arrivals the run
        drew. Without building a table when the Result was made with them."""
        if self._arrival_times is not None:
            return self._arrival_times
        from llmsim.stability import arrivals_from_tables
        return arrivals_from_tables(self)
    requests = property(lambda self: self._table("requests"))
    workflows = property(lambda self: self._table("workflows"))
    iterations = property(lambda self: self._table("iterations"))

    def __repr__(self):
        return f"Result({self.summary.get('scheduler')}, completed={self.summary.get('completed')})"


def _streams(sc: Scenario):
    """One independent random stream per input: arrivals per workflow class; prompt,
    output and delay per step; routing. Independent of the scenario's form, so a
    single-engine file and its one-node network twin draw the same numbers."""
    arr_root, step_root, route_root = np.random.SeedSequence(sc.seed).spawn(3)
    arrivals = [np.random.default_rng(s) for s in arr_root.spawn(len(sc.workflows))]
    n_steps = sum(len(w.steps) for w in sc.workflows)
    steps = [[np.random.default_rng(x) for x in s.spawn(3)] for s in step_root.spawn(n_steps)]
    return arrivals, steps, np.random.default_rng(route_root)


def _arrivals(sc: Scenario, rngs, max_calls: int = MAX_CALLS):
    """Workflow arrival times and classes within the horizon, merged in time order."""
    times = []
    for w, rng in zip(sc.workflows, rngs):
        if sc.num_requests is not None:
            n = sc.num_requests
            t = w.arrival.times(rng, n)
            if sc.duration_seconds is not None:
                t = t[t <= sc.duration_seconds]
        else:
            chunks, last, n = [], 0.0, max(16, int(w.arrival.rate * sc.duration_seconds * 1.1) + 16)
            while last <= sc.duration_seconds:
                t = w.arrival.times(rng, n) + last
                chunks.append(t)
                last = t[-1]
                if len(chunks) * n > max_calls:
                    raise ConfigError(f"duration_seconds: {sc.duration_seconds} s at this rate means more "
                                      f"than {max_calls:,} arrivals; allowed: a shorter duration")
            t = np.concatenate(chunks)
            t = t[t <= sc.duration_seconds]
        times.append(t)
    if len(times) == 1:  # one class: already in time order unless its process is not
        t = times[0]
        c = np.zeros(len(t), dtype=np.int64)
        if not getattr(sc.workflows[0].arrival, "sorted_times", False) and not (t[1:] >= t[:-1]).all():
            order = np.lexsort((c, t))
            t = t[order]
    else:
        t = np.concatenate(times)
        c = np.repeat(np.arange(len(times), dtype=np.int64), [len(x) for x in times])
        order = np.lexsort((c, t))  # time, then class index: a deterministic tie-break
        t, c = t[order], c[order]
    if sc.num_requests is not None:
        t, c = t[:sc.num_requests], c[:sc.num_requests]
    return t, c


def _known_arrivals(sc: Scenario) -> int | None:
    """The number of workflows ``_arrivals`` returns, when it is known without drawing them:
    one class of a process that draws exactly the count asked for, no duration to cut at."""
    if sc.num_requests is None or sc.duration_seconds is not None or len(sc.workflows) != 1:
        return None
    if type(sc.workflows[0].arrival) not in (Poisson, Deterministic, GammaArrivals):
        return None
    return sc.num_requests


def _workflow_table(job_t, job_c):
    """(times, classes, the kernel's workflow float rows: arrival time, finish time NaN)."""
    jf = np.empty((len(job_t), S.N_JF))
    jf[:, S.JF_ARRIVAL] = job_t
    jf[:, S.JF_FINISH] = np.nan
    assert S.N_JF == 2
    return job_t, job_c, jf


class Simulation:
    """A run in progress. ``advance(until_s)`` moves simulated time forward; ``result()``
    reads out what has happened so far. Chunking never changes the outcome.

    limits (default ``llmsim.budget.current()``): the scenario is refused (ConfigError
    naming the field) before anything is allocated if its estimated memory or calls exceed
    them; a run that spends limits.max_work work units stops there, with ``stopped`` (and
    ``summary()["stopped"]``) saying so, and keeps its partial results."""

    def __init__(self, scenario: Scenario, record_iterations: bool = False,
                 limits: budget.Limits | None = None, max_log_rows: int | None = None):
        """max_log_rows: with ``record_iterations``, the most rows (batch entries and
        preemptions) the iteration log may reach; a run that would pass it raises ConfigError (a caller's
        estimate from the draws cannot count a preemption's recomputed chunks)."""
        scenario = as_scenario(scenario)
        validate(scenario)
        self.limits = lim = budget.current() if limits is None else limits
        budget.check(scenario, lim)
        self.scenario = sc = scenario
        self.wall = 0.0
        self.stopped: str | None = None
        # run the kernel as plain Python (llmsim._python_tier: same results, no compile, about
        # 1,000 times slower); the dashboard sets it for a live run's first chunks while Numba compiles
        self.python_kernel = False
        # which compiled kernel runs: None picks llmsim._single's single-engine kernel when it
        # can run this scenario (and is ready: _kernel_cache.single_ready), else core.run_kernel;
        # False always core.run_kernel; True always the single-engine one (the two compute the
        # same, bit for bit, and may take turns: tests/test_single_kernel.py). The first slice
        # turns None into whether it can.
        self.single_kernel: bool | None = None
        self._single_picked = False  # single_kernel was None at the first slice
        self.wk = np.zeros(2, dtype=np.int64)  # kernel work units so far; an instant part-done (core.run_kernel)
        t0 = time.perf_counter()
        arr_rngs, self._step_rngs, self._route_rng = _streams(sc)
        n_known = _known_arrivals(sc)
        if n_known is not None and two_threads(n_known):
            # the number of workflows is known before their times are drawn: the times (their
            # own stream) and the workflow table come from a second thread while this one
            # draws the steps' lengths below; the same numbers
            arrivals = Background(lambda: _workflow_table(*_arrivals(sc, arr_rngs, lim.max_calls)))
            n_jobs = n_known
        else:
            arrivals = None
            job_t, job_c = _arrivals(sc, arr_rngs, lim.max_calls)
            n_jobs = len(job_t)
        self.n_jobs = n_jobs
        if n_jobs == 0:
            raise ConfigError("workload: no arrival falls within the horizon; allowed: a longer "
                              "duration_seconds or a higher rate")

        # the kernel runs physical engines: a pool (engine with replicas) is one engine per
        # replica, and each step at a pool one row (buffer) per replica, contiguous; the
        # router picks the row when a call becomes ready (core._route_replica)
        self._phys = physical_engines(sc)
        engines = [cfg for _, _, cfg in self._phys]
        self._peng = engines
        phys_of = [[] for _ in sc.engines]
        for pe, (li, _, _) in enumerate(self._phys):
            phys_of[li].append(pe)
        self._phys_of = phys_of
        e_index = {e.name: i for i, e in enumerate(sc.engines)}
        sidx = step_index(sc)
        lsteps = [(wi, s) for wi, w in enumerate(sc.workflows) for s in w.steps]
        rows, first_row = [], []
        for k, (wi, s) in enumerate(lsteps):
            first_row.append(len(rows))
            for r, pe in enumerate(phys_of[e_index[s.engine]]):
                rows.append((k, r, pe))
        self._rows = rows
        self._first_row = first_row
        self._lstep = [k for k, _, _ in rows]
        steps = [lsteps[k] for k, _, _ in rows]
        self._steps = steps
        n_s = len(rows)
        n_e = len(engines)
        visits = expected_visits(sc)
        q = routing_matrix(sc)
        jobs_per_class = np.bincount(job_c, minlength=len(sc.workflows)) if len(sc.workflows) > 1 \
            else np.array([n_jobs], dtype=np.intp)

        # ---- routing arrays
        opt_ptr, opt_cum, child_ptr, child_step = [0], [], [0], []
        max_fan = 1
        for wi, s in steps:
            acc = 0.0
            for r in s.routes:
                acc += r.prob
                opt_cum.append(acc)
                child_step.extend(first_row[sidx[(wi, ch)]] for ch in r.to)
                child_ptr.append(len(child_step))
                max_fan = max(max_fan, len(r.to))
            opt_ptr.append(len(opt_cum))
        class_root_ptr, class_root = [0], []
        for wi, w in enumerate(sc.workflows):
            class_root.extend(first_row[sidx[(wi, st)]] for st in w.start)
            class_root_ptr.append(len(class_root))
        max_roots = max(class_root_ptr[i + 1] - class_root_ptr[i] for i in range(len(sc.workflows)))
        self._margin = int(sum(e.slots for e in engines) * max_fan + max_roots + 1)

        # ---- steps: pools sized exactly where the number of calls is certain
        stochastic = stochastic_steps(sc)
        si = np.zeros((n_s, S.N_SI), dtype=np.int64)
        sf = np.zeros((n_s, S.N_SF))
        self._pool_p, self._pool_d, self._delay = [], [], []
        pool_p, pool_d, delay_pool = [], [], []
        self._final = np.zeros(n_s, dtype=bool)
        pool_start, dpool_start = 0, 0
        join_idx = 0
        e_steps = [[] for _ in range(n_e)]
        router_seed = np.random.SeedSequence([sc.seed, 10]).generate_state(n_s)
        for k, (wi, s) in enumerate(steps):
            lk, rep, e = rows[k]
            e_steps[e].append(k)
            si[k, S.S_ENGINE] = e
            si[k, S.S_HEAD] = si[k, S.S_TAIL] = -1
            pool = sc.engines[e_index[s.engine]]
            si[k, S.S_NREP] = len(phys_of[e_index[s.engine]]) if rep == 0 else 1
            si[k, S.S_ROUTER] = ROUTERS[pool.router]
            si[k, S.S_RNG] = 1 + int(router_seed[k]) % 2147483646
            if s.delay_seconds > 0:
                si[k, S.S_DELAY_KIND] = 1 if s.delay_dist == "constant" else 2
                sf[k, S.SF_DELAY] = s.delay_seconds
            sf[k, S.SF_MU] = 1.0 / (s.prompt_tokens.mean + s.output_tokens.mean)
            if rep > 0:  # a replica's row: calls are drawn on the step's first row
                si[k, S.S_POOL_FINAL] = 1
                si[k, S.S_POOL_POS] = si[k, S.S_POOL_END] = 0
                si[k, S.S_DPOOL_POS] = si[k, S.S_DPOOL_END] = 0
                si[k, S.S_JOIN_NEED] = si[k - rep, S.S_JOIN_NEED]
                si[k, S.S_JOIN_IDX] = si[k - rep, S.S_JOIN_IDX]
                continue
            exact = not stochastic[lk]
            n_calls = int(round(visits[lk] * jobs_per_class[wi]))
            size = n_calls if exact else int(visits[lk] * jobs_per_class[wi] * 1.2) + 4 * self._margin
            self._final[k] = exact
            pp, dd, dl = self._draw(k, size)
            pool_p.append(pp)
            pool_d.append(dd)
            delay_pool.append(dl)
            si[k, S.S_POOL_POS] = pool_start
            pool_start += size
            si[k, S.S_POOL_END] = pool_start
            si[k, S.S_POOL_FINAL] = int(exact)
            si[k, S.S_DPOOL_POS] = dpool_start
            dpool_start += len(dl)
            si[k, S.S_DPOOL_END] = dpool_start
            need = join_needs(sc.workflows[wi]).get(s.name, 0)
            if s.join:
                si[k, S.S_JOIN_NEED] = need
                si[k, S.S_JOIN_IDX] = join_idx
                join_idx += 1
        self.n_joins = max(join_idx, 1)
        # static priority: explicit `priority` (smaller first), else the order of steps
        for e in range(n_e):
            e_steps[e].sort(key=lambda k: (steps[k][1].priority if steps[k][1].priority is not None else 10**6,
                                           self._lstep[k]))
            for r, k in enumerate(e_steps[e]):
                si[k, S.S_RANK] = r
        self.si, self.sf = si, sf
        # one step: its draws as they are (fresh int64 arrays); else one concatenation
        self.pool_p = _joined(pool_p).astype(np.int64, copy=False)
        self.pool_d = _joined(pool_d).astype(np.int64, copy=False)
        self.delay_pool = np.concatenate(delay_pool) if dpool_start else np.zeros(1)
        self._check_pools(0, len(self.pool_p))

        self.e_steps_ptr = np.array([0] + list(np.cumsum([len(x) for x in e_steps])), dtype=np.int64)
        self.e_steps = np.array([k for x in e_steps for k in x], dtype=np.int64)
        self.opt_ptr = np.array(opt_ptr, dtype=np.int64)
        self.opt_cum = np.array(opt_cum, dtype=float)
        self.child_ptr = np.array(child_ptr, dtype=np.int64)
        self.child_step = np.array(child_step if child_step else [0], dtype=np.int64)
        self.class_root_ptr = np.array(class_root_ptr, dtype=np.int64)
        self.class_root = np.array(class_root, dtype=np.int64)
        # max-pressure weights: a downstream step counts its calls at every replica
        lk = np.array(self._lstep, dtype=np.int64)
        self.mp_route = np.ascontiguousarray(q[np.ix_(lk, lk)]) if n_s != len(lsteps) else q
        needs_routing = any(len(s.routes) > 1 for _, s in steps)
        if needs_routing:
            n_route = int(sum(visits[k] * jobs_per_class[wi] for k, (wi, _) in enumerate(lsteps)) * 1.2) + 4 * self._margin
            self.route_u = self._route_rng.random(n_route)
        else:
            self.route_u = np.zeros(1)

        # ---- engines
        ei = np.zeros((n_e, S.N_EI), dtype=np.int64)
        ef = np.zeros((n_e, S.N_EF))
        boff = 0
        for e, cfg in enumerate(engines):
            ei[e, S.E_BUDGET] = cfg.token_budget
            ei[e, S.E_KMAX] = cfg.slots
            ei[e, S.E_KV_CAP] = cfg.kv_blocks_tokens
            ei[e, S.E_MAXRUN] = cfg.max_running_requests or (1 << 62)
            ei[e, S.E_BLOCK] = cfg.block_size
            ei[e, S.E_WATERMARK] = cfg.watermark_tokens
            ei[e, S.E_SCHED] = int(scheduler_info(cfg.scheduler).code)
            ei[e, S.E_POLICY] = POLICIES[cfg.policy]
            ei[e, S.E_RESERVE_FULL] = int(scheduler_info(cfg.scheduler).reserve_full)
            code, params = cfg.batch_time.kernel_params()
            ei[e, S.E_BT_MODEL] = code
            ef[e, S.EF_BT0:S.EF_BT3 + 1] = params[:4]
            ef[e, S.EF_BT4] = params[4]
            ef[e, S.EF_BT5] = params[5]
            ef[e, S.EF_BT6] = params[6]
            ei[e, S.E_BT_ATTN] = int(cfg.batch_time.model == "piecewise" and cfg.batch_time.context_aware)
            ei[e, S.E_BATCH_OFF] = boff
            boff += cfg.slots
            ei[e, S.E_PF_HEAD] = ei[e, S.E_PF_TAIL] = -1
            ei[e, S.E_DEC_LB] = S.NO_TARGET
        self.ei, self.ef = ei, ef
        # prefill entries of the current batches (decode tokens are implicit)
        self.batch_c = np.zeros(boff, dtype=np.int64)
        self.batch_t = np.zeros(boff, dtype=np.int64)
        # calls finishing in one iteration: at most one engine's batch slots
        self.fin = np.zeros(max(e.slots for e in engines), dtype=np.int64)

        # ---- calls, workflows, global scalars
        cap = int(pool_start + self._margin)
        self.ci = np.zeros((cap, S.N_CI), dtype=np.int64)
        self.cf = np.empty((cap, S.N_CF))  # every field is written when the call is created
        self._prefault = False  # the call rows' pages: mapped on a second thread from the first advance()
        self._scratch = None
        self._size_run([4 * self._margin + 1024] * n_e)
        self.heap_t = np.zeros(cap)
        self.heap_c = np.zeros(cap, dtype=np.int64)
        self.ji = np.zeros((n_jobs, S.N_JI), dtype=np.int64)
        job_t, job_c, self.jf = arrivals.result() if arrivals is not None else _workflow_table(job_t, job_c)
        assert len(job_t) == n_jobs
        if len(sc.workflows) > 1:  # one class: its index is 0
            self.ji[:, S.J_CLASS] = job_c
        self.horizon = float(sc.duration_seconds) if sc.num_requests is None else float(job_t[-1])
        if sc.duration_seconds is not None:
            self.horizon = float(sc.duration_seconds) if n_jobs < (sc.num_requests or math.inf) else float(job_t[-1])
        self.jjoin = np.zeros((n_jobs, self.n_joins), dtype=np.int64)
        self.gi = np.zeros(S.N_GI, dtype=np.int64)
        self.gf = np.zeros(S.N_GF)
        self.gi[S.G_MARGIN] = self._margin
        self.gi[S.G_POOLS_OPEN] = int(np.count_nonzero(self.si[:, S.S_POOL_FINAL] == 0))
        self.gi[S.G_ROUTE_FINAL] = 0 if needs_routing else 1
        n_pts = sc.timeseries_points
        self.rec = np.zeros((n_pts, 2 + 4 * n_e + 2 * n_s))
        self.gf[S.GF_SAMPLE_DT] = max(self.horizon, 1e-9) / (n_pts - 1)
        self.record_iterations = record_iterations
        self.max_log_rows = max_log_rows
        if record_iterations:
            self.gi[S.G_LOG_CAP] = 1
            # an instant's batch entries and the admissions that may be preempted at once
            # (core._log_low adds the running requests)
            self.gi[S.G_LOG_MARGIN] = 2 * int(sum(e.slots for e in engines)) + 1
            self.logi = np.zeros((4096 + self.gi[S.G_LOG_MARGIN], 5), dtype=np.int64)
            self.logf = np.zeros((len(self.logi), 2))
        else:
            self.logi = np.zeros((1, 5), dtype=np.int64)
            self.logf = np.zeros((1, 2))
        self.status = core.PAUSED
        self._pending: list = []  # weak references to Results whose tables are not built yet
        self.wall += time.perf_counter() - t0

    # ------------------------------------------------------------------ internals
    def _draw(self, k, n):
        wi, s = self._steps[k]
        rp, rd, rdl = self._step_rngs[self._lstep[k]]
        if two_threads(n):  # independent streams: the same numbers on two threads
            pp, dd = in_parallel(lambda: s.prompt_tokens.sample(rp, n), lambda: s.output_tokens.sample(rd, n))
        else:
            pp = s.prompt_tokens.sample(rp, n)
            dd = s.output_tokens.sample(rd, n)
        if s.delay_seconds > 0 and s.delay_dist == "exponential":
            dl = rdl.exponential(s.delay_seconds, n)
        else:
            dl = np.zeros(0)
        return pp, dd, dl

    def _check_pools(self, a, b):
        """Drawn requests that could never fit their engine are refused before they run."""
        if b <= a:
            return
        for k, (wi, s) in enumerate(self._steps):
            lo, hi = max(a, self.si[k, S.S_POOL_POS]), min(b, self.si[k, S.S_POOL_END])
            if lo >= hi:
                continue
            e = min((self._peng[self.si[k + r, S.S_ENGINE]] for r in range(self.si[k, S.S_NREP])),
                    key=lambda x: x.kv_cache_tokens)
            if int(self.pool_p[lo:hi].max()) + int(self.pool_d[lo:hi].max()) <= e.kv_cache_tokens:
                continue  # a bound of the sums, without adding the pools up
            worst = int((self.pool_p[lo:hi] + self.pool_d[lo:hi]).max())
            if worst > e.kv_cache_tokens:
                raise ConfigError(
                    f"a drawn request needs {worst:,} KV-cache tokens (prompt + output) but "
                    f"kv_cache_tokens of engine {e.name!r} is {e.kv_cache_tokens:,}; allowed: "
                    f"kv_cache_tokens >= {worst:,} or shorter length distributions")

    def _size_run(self, caps):
        """(Re)allocate the engines' decode-queue regions with capacities caps, keeping
        each queue (moved to its region's start)."""
        ei = self.ei
        old_c, old_t = getattr(self, "dec_call", None), getattr(self, "dec_tgt", None)
        offs = np.concatenate([[0], np.cumsum(caps)]).astype(np.int64)
        self.dec_call = np.zeros(int(offs[-1]), dtype=np.int64)
        self.dec_tgt = np.zeros(int(offs[-1]), dtype=np.int32)  # int32: see state.ROUND_REBASE
        for e in range(len(caps)):
            if old_c is not None:
                a = int(ei[e, S.E_RUN_OFF] + ei[e, S.E_DEC_HEAD])
                n = int(ei[e, S.E_NDEC])
                self.dec_call[offs[e]:offs[e] + n] = old_c[a:a + n]
                self.dec_tgt[offs[e]:offs[e] + n] = old_t[a:a + n]
            ei[e, S.E_RUN_OFF] = offs[e]
            ei[e, S.E_RUN_CAP] = caps[e]
            ei[e, S.E_DEC_HEAD] = 0

    def _grow(self):
        gi, m = self.gi, self._margin
        cap = len(self.ci)
        if gi[S.G_NCALLS] + m > cap:
            new = max(2 * cap, gi[S.G_NCALLS] + 4 * m)
            if new > self.limits.max_calls:
                raise ConfigError(f"the run would create more than {self.limits.max_calls:,} LLM calls; "
                                  "allowed: fewer num_requests or a shorter duration")
            self.ci = np.concatenate([self.ci, np.zeros((new - cap, S.N_CI), dtype=np.int64)])
            self.cf = np.concatenate([self.cf, np.empty((new - cap, S.N_CF))])
            self.heap_t = np.concatenate([self.heap_t, np.zeros(new - cap)])
            self.heap_c = np.concatenate([self.heap_c, np.zeros(new - cap, dtype=np.int64)])
        ei = self.ei
        if np.any(2 * (ei[:, S.E_NDEC] + m) > ei[:, S.E_RUN_CAP]):  # the room core._apply_batch checks
            self._size_run([int(max(cap, 4 * (n + m)))
                            for cap, n in zip(ei[:, S.E_RUN_CAP], ei[:, S.E_NDEC])])
        gi[S.G_DQ_LOW] = 0  # every region has room again (a queue may have shrunk since its flag)
        if gi[S.G_ROUTE_FINAL] == 0 and gi[S.G_ROUTE_POS] + m > len(self.route_u):
            self.route_u = np.concatenate([self.route_u, self._route_rng.random(len(self.route_u))])
        log_need = (int(gi[S.G_LOG_N] + gi[S.G_LOG_MARGIN] + self.ei[:, S.E_NRUN].sum())  # as core._log_low
                    if gi[S.G_LOG_CAP] > 0 else 0)
        if log_need > len(self.logi):
            add = max(len(self.logi), log_need - len(self.logi))
            if self.max_log_rows is not None:
                if gi[S.G_LOG_N] > self.max_log_rows:
                    raise ConfigError(
                        f"record_iterations: the iteration log passed {self.max_log_rows:,} rows (batch entries, "
                        f"preemptions) at {self.gf[S.GF_NOW]:,.4g} s simulated; allowed: at most "
                        f"{self.max_log_rows:,} here (each preemption adds a row, and rows for the chunks it "
                        "recomputes) — fewer requests, shorter outputs, a larger KV cache or a larger token budget")
                add = min(add, max(log_need, self.max_log_rows + gi[S.G_LOG_MARGIN] + 1) - len(self.logi))
            self.logi = np.concatenate([self.logi, np.zeros((add, self.logi.shape[1]), dtype=self.logi.dtype)])
            self.logf = np.concatenate([self.logf, np.zeros((add, self.logf.shape[1]))])
        si = self.si
        for k in range(len(si)):
            if si[k, S.S_POOL_FINAL]:
                continue
            low_p = si[k, S.S_POOL_POS] + m > si[k, S.S_POOL_END]
            low_d = si[k, S.S_DELAY_KIND] == 2 and si[k, S.S_DPOOL_POS] + m > si[k, S.S_DPOOL_END]
            if low_p or low_d:
                self._refill(k)

    def _refill(self, k):
        """Append fresh draws for step k (continuing its own streams) at the pools' end."""
        si = self.si
        size = max(1024, int(si[k, S.S_POOL_END] - si[k, S.S_POOL_POS]) + 4 * self._margin,
                   int(0.5 * (si[k, S.S_POOL_END])))
        size = min(size, 4 * 1024 * 1024)
        pp, dd, dl = self._draw(k, size)
        # move the step's unread pool to the end, then the new draws
        a, b = si[k, S.S_POOL_POS], si[k, S.S_POOL_END]
        start = len(self.pool_p)
        self.pool_p = np.concatenate([self.pool_p, self.pool_p[a:b], pp])
        self.pool_d = np.concatenate([self.pool_d, self.pool_d[a:b], dd])
        si[k, S.S_POOL_POS] = start
        si[k, S.S_POOL_END] = len(self.pool_p)
        self._check_pools(start, len(self.pool_p))
        if len(dl):
            a, b = si[k, S.S_DPOOL_POS], si[k, S.S_DPOOL_END]
            start = len(self.delay_pool)
            self.delay_pool = np.concatenate([self.delay_pool, self.delay_pool[a:b], dl])
            si[k, S.S_DPOOL_POS] = start
            si[k, S.S_DPOOL_END] = len(self.delay_pool)
        self._compact_pools()

    def _compact_pools(self):
        """Drop consumed pool entries once they dominate, keeping memory bounded."""
        si = self.si
        if len(self.pool_p) < 8 * 1024 * 1024:
            return
        parts_p, parts_d, pos = [], [], 0
        for k in range(len(si)):
            a, b = si[k, S.S_POOL_POS], si[k, S.S_POOL_END]
            parts_p.append(self.pool_p[a:b])
            parts_d.append(self.pool_d[a:b])
            si[k, S.S_POOL_POS] = pos
            pos += b - a
            si[k, S.S_POOL_END] = pos
        self.pool_p = np.concatenate(parts_p)
        self.pool_d = np.concatenate(parts_d)

    # -------------------------------------------------------------------- running
    @property
    def now(self) -> float:
        return float(self.gf[S.GF_NOW])

    @property
    def done(self) -> bool:
        """Nothing more to simulate: the run ended, or it was stopped at its work budget."""
        return (self.status == core.DONE or (not self.scenario.drain and self.now >= self.horizon)
                or self.stopped is not None)

    @property
    def work_units(self) -> int:
        """Kernel work units spent so far (see ``llmsim.core.run_kernel``)."""
        return int(self.wk[0])

    @property
    def end_time(self) -> float:
        return math.inf if self.scenario.drain else self.horizon

    def advance(self, until_s: float | None = None, max_work: float | None = None,
                should_stop=None) -> "Simulation":
        """Simulate up to time until_s (default: the end of the run).

        Returns early (resumable: call again) after max_work more work units, or when
        should_stop() -- asked every ``limits.slice_work`` units -- returns true. Stops for
        good (``self.stopped`` says why) when the run's work budget ``limits.max_work`` is
        spent. The kernel releases the GIL, so other threads run meanwhile."""
        if self._pending:
            self._settle_results()
        if self.stopped is not None:
            return self
        t0 = time.perf_counter()
        stop = self.end_time if until_s is None else min(until_s, self.end_time)
        lim = self.limits
        # whole units: the kernel stops at a whole work_stop, and a fractional bound (a map's
        # points share MAP_WORK / points) was never reached when a slice ended exactly on its
        # floor: each call returned at once, for ever
        total = math.inf if lim.max_work is None else float(math.ceil(lim.max_work))
        mine = math.inf if max_work is None else self.wk[0] + float(max(1, math.ceil(max_work)))
        kernel = self._kernel()
        if self._prefault is False:
            # started here, not at allocation: during the setup both cores are busy already.
            # A large run's summary scratch (three delays per call) is mapped meanwhile too
            n = len(self.ci)
            scratch = [np.empty((3, n))] if not self.python_kernel and two_threads(n) else []
            self._prefault = prefault(n, self.ci, self.cf, self.ji, *scratch)
            self._scratch = scratch[0] if scratch and self._prefault is not None else None
        while True:
            flat_state = [S.flat(getattr(self, name)) for name in S.FLAT]  # ci ... jf, as the kernel takes them
            ws = min(total, mine, float(self.wk[0] + max(1, lim.slice_work)))
            ws = int(min(ws, 2.0**62))
            st = kernel(
                stop, ws, self.wk, self.gi, self.gf, *flat_state, self.jjoin, self.dec_call, self.dec_tgt, self.fin, self.batch_c,
                self.batch_t, self.e_steps_ptr, self.e_steps, self.opt_ptr, self.opt_cum,
                self.child_ptr, self.child_step, self.class_root_ptr, self.class_root, self.route_u,
                self.pool_p, self.pool_d, self.delay_pool, self.mp_route, self.heap_t, self.heap_c,
                self.rec, self.logi, self.logf)
            if st == core.NEED_ROOM:
                self._grow()
                continue
            if st == core.STALLED:
                raise self._stalled()
            if st == core.WORK_LIMIT:
                if self.wk[0] >= total:
                    self.stopped = (
                        f"stopped at t = {self.now:,.1f} s of {self.horizon:,.1f} s: the run spent its "
                        f"work budget of {total:,.0f} units (max_work); the results are partial. "
                        "Allowed: fewer requests, a larger token_budget, or a run on the command line")
                    break
                if self.wk[0] >= mine or (should_stop is not None and should_stop()):
                    break
                continue
            self.status = st
            break
        self.wall += time.perf_counter() - t0
        return self

    def _kernel(self):
        """The kernel the next slice runs: the Python tier, the single-engine kernel or the
        general one (the same results; see ``single_kernel``)."""
        if self.python_kernel:
            return _python_tier.python_version(core.run_kernel)
        if self.single_kernel is None:
            self.single_kernel = _single.eligible(self)
            self._single_picked = True
        if self.single_kernel and (not self._single_picked or _kernel_cache.single_ready()):
            return _single.run_single
        return core.run_kernel

    def _stalled(self) -> Exception:
        """Explain an engine that has work but can form no batch."""
        sc = self.scenario
        for e, eng in enumerate(self._peng):
            for k in self.e_steps[self.e_steps_ptr[e]:self.e_steps_ptr[e + 1]]:
                c = self.si[k, S.S_HEAD]
                if c >= 0 and self.ci[c, S.C_PREF_NEED] > eng.token_budget:
                    need = int(math.ceil(sum(longest_request(self._steps[k][1]))))
                    who = "the engine" if sc.single else f"engine {eng.name!r}"
                    g = int(self.ci[c, S.C_DEC_DONE])
                    return ConfigError(
                        f"{who} ({eng.scheduler}) froze at t = {self.now:.3f} s: request {c} was "
                        f"preempted after generating {g:,} token{'' if g == 1 else 's'} and must recompute "
                        f"{int(self.ci[c, S.C_PREF_NEED]):,} tokens in one prefill, more than token_budget = "
                        f"{eng.token_budget:,}; {eng.scheduler} never chunks (vLLM requires "
                        f"max_num_batched_tokens >= max_model_len). Allowed: token_budget >= {need:,} (the "
                        "largest prompt + output), more kv_cache_tokens, or a chunking scheduler "
                        "(orca, sarathi)")
        return RuntimeError("an engine had work but could form no batch; please report this scenario")

    @property
    def progress(self) -> float:
        """Fraction of the run's horizon simulated so far (0..1)."""
        if self.done:
            return 1.0
        return min(1.0, self.now / self.horizon) if self.horizon > 0 else 0.0

    # -------------------------------------------------------------------- outputs
    def timeseries_columns(self) -> dict[str, np.ndarray]:
        """The timeseries as numpy arrays by column name (copies: at most
        ``timeseries_points`` rows each); what the verdict reads, without pandas."""
        sc = self.scenario
        n = int(self.gi[S.G_REC_N])
        rec = self.rec[:n]
        cols = {"time_s": rec[:, 0].copy(), "workflows_in_system": rec[:, 1].copy()}
        names = ("waiting", "running", "backlog_tokens", "kv_tokens")
        for li, eng in enumerate(sc.engines):
            p = "" if sc.single else f"{eng.name}."
            phys = self._phys_of[li]
            for j, name in enumerate(names):  # a pool: the sum over its replicas (a new array)
                cols[p + name] = sum(rec[:, 2 + 4 * e + j] for e in phys) + 0.0
            if eng.replicas:
                for e in phys:
                    for j, name in enumerate(names):
                        cols[f"{self._peng[e].name}.{name}"] = rec[:, 2 + 4 * e + j].copy()
        if not sc.single:
            b = 2 + 4 * len(self._peng)
            for lk, (wi, s) in enumerate(_logical_steps(sc)):
                p = f"{sc.workflows[wi].name}.{s.name}."
                r0 = self._first_row[lk]
                nrep = int(self.si[r0, S.S_NREP])
                cols[p + "waiting"] = sum(rec[:, b + 2 * k] for k in range(r0, r0 + nrep)) + 0.0
                cols[p + "in_buffer"] = sum(rec[:, b + 2 * k + 1] for k in range(r0, r0 + nrep)) + 0.0
        return cols

    def timeseries(self) -> pd.DataFrame:
        import pandas as pd
        return pd.DataFrame(self.timeseries_columns())

    def requests(self) -> pd.DataFrame:
        import pandas as pd
        sc = self.scenario
        n = int(self.gi[S.G_NCALLS])
        ci, cf = self.ci[:n], self.cf[:n]
        fin = np.where(ci[:, S.C_STATE] == S.ST_DONE, cf[:, S.F_FINISH], np.nan)
        df = pd.DataFrame({
            "request_id": np.arange(n),
            "arrival_s": cf[:, S.F_READY],
            "admitted_s": np.where(cf[:, S.F_ADMIT] >= 0, cf[:, S.F_ADMIT], np.nan),
            "first_token_s": np.where(cf[:, S.F_FIRST] >= 0, cf[:, S.F_FIRST], np.nan),
            "finish_s": fin,
            "prompt_tokens": ci[:, S.C_P],
            "output_tokens": ci[:, S.C_D],
            "preemptions": ci[:, S.C_PREEMPT],
        })
        df.loc[ci[:, S.C_STATE] == S.ST_DELAYED, "arrival_s"] = np.nan
        if not sc.single:
            steps = self._steps
            df["workflow_id"] = ci[:, S.C_JOB]
            df["workflow"] = [sc.workflows[steps[k][0]].name for k in ci[:, S.C_STEP]]
            df["step"] = [steps[k][1].name for k in ci[:, S.C_STEP]]
            df["engine"] = [steps[k][1].engine for k in ci[:, S.C_STEP]]
        if has_pool(sc):
            df["replica"] = np.array([r for _, r, _ in self._rows], dtype=np.int64)[ci[:, S.C_STEP]] \
                if n else np.zeros(0, dtype=np.int64)
        return df

    def workflows(self) -> pd.DataFrame:
        import pandas as pd
        sc = self.scenario
        n = int(self.gi[S.G_NEXT_JOB])
        return pd.DataFrame({
            "workflow_id": np.arange(n),
            "workflow": [sc.workflows[c].name for c in self.ji[:n, S.J_CLASS]] if not sc.single
            else np.full(n, sc.workflows[0].name),
            "arrival_s": self.jf[:n, S.JF_ARRIVAL],
            "finish_s": self.jf[:n, S.JF_FINISH],
        })

    def iterations(self) -> pd.DataFrame | None:
        if not self.record_iterations:
            return None
        import pandas as pd
        n = int(self.gi[S.G_LOG_N])
        li, lf = self.logi[:n], self.logf[:n]
        return pd.DataFrame({
            "iteration": li[:, 0], "engine": [self._peng[e].name for e in li[:, 1]],
            "start_s": lf[:, 0], "end_s": lf[:, 1], "request_id": li[:, 2], "tokens": li[:, 3],
            "phase": np.array(["prefill", "decode", "preempt"])[li[:, 4]],
        })

    def summary(self) -> dict:
        """The run's figures so far, from the kernel's arrays (numpy only: it never builds
        the per-request tables)."""
        from llmsim import theory
        sc = self.scenario
        T = self.now
        n_done, tokens, ttft, tbt, e2e = self._finished_delays()
        th = theory.analyze(sc)
        gi = self.gi
        per_s = (lambda x: x / T) if T > 0 else (lambda x: 0.0)
        s = {
            "scenario": sc.name,
            "scheduler": ",".join(dict.fromkeys(e.scheduler for e in sc.engines)),
            "seed": sc.seed,
            "arrival_rate_rps": sc.total_rate,
            "load": th.load,
            "arrived": int(gi[S.G_NEXT_JOB]) if sc.single else int(gi[S.G_NCALLS]),
            "completed": n_done,
            "simulated_seconds": T,
            "horizon_seconds": self.horizon,
            "throughput_rps": per_s(n_done),
            "token_throughput": per_s(float(gi[S.G_TOK_DONE])),
            "goodput_tokens_per_s": per_s(float(tokens)),
        }
        # the delays of the finished calls, each reordered in place by its percentiles (a
        # large run's on two threads: numpy's partitions release the GIL)
        delays = [("ttft", ttft[:n_done]), ("tbt", tbt[:n_done]), ("e2e", e2e[:n_done])]
        if two_threads(n_done):
            first, rest = in_parallel(lambda: _percentiles(*delays[0], scratch=True),
                                      lambda: [_percentiles(*d, scratch=True) for d in delays[1:]])
            s.update(first)
            for r in rest:
                s.update(r)
        else:
            for d in delays:
                s.update(_percentiles(*d, scratch=True))
        s.update({
            "preemptions": int(self.ei[:, S.E_PREEMPTS].sum()),
            "iterations": int(self.ei[:, S.E_ITERS].sum()),
            "tokens_in": int(gi[S.G_TOK_IN]),
            "tokens_done": int(gi[S.G_TOK_DONE]),
            "tokens_recomputed": int(gi[S.G_TOK_RECOMPUTE]),
            "final_backlog_tokens": int(self.ei[:, S.E_BACKLOG].sum()),
            "final_waiting": int(self.ei[:, S.E_NWAIT].sum()),
            "mean_in_system": float(self._integrals()[0] / T) if T > 0 else 0.0,
            "wall_seconds": self.wall,
            "work_units": self.work_units,
            "stopped": self.stopped,
        })
        if not sc.single:
            nj = int(gi[S.G_NEXT_JOB])
            arr, fin = self.jf[:nj, S.JF_ARRIVAL], self.jf[:nj, S.JF_FINISH]
            ok = ~np.isnan(fin)
            s.update({"workflows_arrived": nj, "workflows_completed": int(ok.sum())})
            s.update(_percentiles("workflow_e2e", fin[ok] - arr[ok]))
            s["engine_load"] = {e.name: th.engine_load[i] for i, e in enumerate(sc.engines)}
        if has_pool(sc):
            s["replicas"] = self.replica_summary()
        return s

    def _finished_delays(self):
        """(finished calls, their tokens, ttft, tbt, e2e): the delays of the finished calls at
        the front of three scratch arrays, in one compiled pass over the call rows
        (llmsim/_calls.py: two threads for a large run; in the Python tier with the kernel)."""
        n = int(self.gi[S.G_NCALLS])
        scratch, self._scratch = self._scratch, None  # mapped during the run; used once
        if scratch is not None and scratch.shape[1] >= n:
            ttft, tbt, e2e = scratch[0, :n], scratch[1, :n], scratch[2, :n]
        else:
            ttft, tbt, e2e = np.empty(n), np.empty(n), np.empty(n)
        delays = _python_tier.python_version(finished_delays) if self.python_kernel else finished_delays_split
        n_done, tokens = delays(self.ci[:n], self.cf[:n], S.C_STATE, S.ST_DONE, S.C_P, S.C_D,
                                S.F_READY, S.F_FIRST, S.F_FINISH, ttft, tbt, e2e)
        return n_done, tokens, ttft, tbt, e2e

    def _integrals(self):
        """Time integrals up to now: workflows in the system, and per engine its busy time and
        token backlog. The kernel integrates up to its last instant; the stretch since (the
        state is constant there) is added here, with the kernel's arithmetic."""
        dt = self.gf[S.GF_NOW] - self.gf[S.GF_T_LAST]
        jobs, busy, backlog = self.gf[S.GF_AREA_JOBS], self.ef[:, S.EF_BUSY_TIME], self.ef[:, S.EF_AREA_BACKLOG]
        if dt > 0.0:
            jobs = jobs + self.gi[S.G_JOBS_IN] * dt
            busy = np.where(self.ei[:, S.E_BUSY] == 1, busy + dt, busy)
            backlog = backlog + self.ei[:, S.E_BACKLOG] * dt
        return jobs, busy, backlog

    def replica_summary(self) -> dict:
        """Per replica of every pool: calls routed to it and completed, iterations,
        preemptions, busy share and mean backlog (tokens) so far."""
        n = int(self.gi[S.G_NCALLS])
        ci = self.ci[:n]
        row_eng = self.si[:, S.S_ENGINE]
        eng = row_eng[ci[:, S.C_STEP]]
        done = ci[:, S.C_STATE] == S.ST_DONE
        routed = np.bincount(eng, minlength=len(self._peng))
        completed = np.bincount(eng[done], minlength=len(self._peng))
        T = self.now
        _, busy, backlog = self._integrals()
        out = {}
        for li, e in enumerate(self.scenario.engines):
            if not e.replicas:
                continue
            for pe in self._phys_of[li]:
                out[self._peng[pe].name] = {
                    "routed": int(routed[pe]), "completed": int(completed[pe]),
                    "throughput_rps": float(completed[pe] / T) if T > 0 else 0.0,
                    "iterations": int(self.ei[pe, S.E_ITERS]),
                    "preemptions": int(self.ei[pe, S.E_PREEMPTS]),
                    "busy_share": float(busy[pe] / T) if T > 0 else 0.0,
                    "mean_backlog_tokens": float(backlog[pe] / T) if T > 0 else 0.0,
                }
        return out

    def result(self) -> Result:
        """The run so far. Its tables are built on first access; advancing this
        simulation again first builds those still pending, so a Result never changes."""
        cols = self.timeseries_columns()  # small copies: the verdict reads them without pandas

        def timeseries():
            import pandas as pd
            return pd.DataFrame(cols)

        res = Result(self.scenario, self.summary(), timeseries, self.requests, self.workflows,
                     self.iterations, timeseries_columns=cols,
                     arrival_times=self.jf[:, S.JF_ARRIVAL])  # drawn before the run; never changed
        self._pending.append(weakref.ref(res))
        return res

    def _settle_results(self):
        """Build the pending tables of earlier Results before the arrays change."""
        for ref in self._pending:
            res = ref()
            if res is not None:
                res.materialize()
        self._pending.clear()


def _joined(parts: list) -> np.ndarray:
    """The arrays of parts end to end: the array itself when there is one."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _logical_steps(sc):
    return [(wi, s) for wi, w in enumerate(sc.workflows) for s in w.steps]


def _percentiles(name: str, x: np.ndarray, scratch: bool = False) -> dict:
    """p50 and p99 of x (None when empty): bit for bit ``np.percentile(x, [50, 99])``.
    scratch: x may be reordered (saves a copy)."""
    if len(x) == 0:
        return {f"{name}_p50_s": None, f"{name}_p99_s": None}
    p50, p99 = _p50_p99(x, scratch)
    return {f"{name}_p50_s": float(p50), f"{name}_p99_s": float(p99)}


_Q = np.true_divide(np.array([50, 99]), 100)  # as np.percentile turns [50, 99] into quantiles


def _p50_p99(x: np.ndarray, scratch: bool = False) -> np.ndarray:
    """np.percentile(x, [50, 99]) (method "linear") for a 1-D float array, bit for bit: the
    order statistics around each virtual index (n - 1) q, interpolated as numpy's _lerp
    does, selected by ``_order_stats`` (numpy partitions for all of them at once, with
    kth = 0 and -1 too, which costs up to 8x more on a long array). scratch: x may be
    reordered."""
    n = len(x)
    if n < 2 or np.isnan(x).any():
        return np.percentile(x, [50, 99])
    virt = (n - 1) * _Q
    prev = np.floor(virt)
    gamma = virt - prev
    k50, k99 = (int(k) for k in prev)  # k + 1 <= n - 1: 0.99 (n - 1) < n - 1
    v = _order_stats(x, [k50, k50 + 1, k99, k99 + 1], scratch)
    a = np.array([v[k50], v[k99]])
    b = np.array([v[k50 + 1], v[k99 + 1]])
    diff = b - a
    res = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), res)


def _order_stats(x: np.ndarray, ks, scratch: bool = False) -> dict:
    """{k: sorted(x)[k]} for the ranks ks, x (1-D, no NaN) left as it is unless scratch. A selection
    slows down badly on a long run of equal values (a summary's tbt is often one value for
    most calls: one token per iteration; the radix selection of ``_select`` would pass over
    the run once per 16 bits of its values), so values that fill 1/16 of a sample of x are
    counted instead: ranks inside such a run are that value; the others are selected among
    the values strictly between two such values."""
    n = len(x)
    ks = sorted(set(int(k) for k in ks))
    if n < 16384:  # short: a sort costs less than the Python around the partitions
        a = x if scratch else x.copy()
        a.sort()
        return {k: a[k] for k in ks}
    smp = np.sort(x[::n // 512])
    u, c = np.unique(smp, return_counts=True)
    ties = u[c * 16 >= len(smp)]
    if len(ties) == 0:
        return dict(zip(ks, _select(x, ks)))
    # rank bounds of the segments: below ties[0], ties[0], between ties[0] and ties[1], ...
    out = {}
    start, lo = 0, None
    for v in list(ties) + [None]:
        if v is None:
            end_lt = end_le = n
        else:
            end_lt = int(np.count_nonzero(x < v))
            end_le = int(np.count_nonzero(x <= v))
        inside = [k for k in ks if start <= k < end_lt]
        if inside:  # between the previous tied value and this one
            m = np.ones(n, dtype=bool) if lo is None else x > lo
            if v is not None:
                m &= x < v
            sub = x[m]
            out.update(zip(inside, _select(sub, [k - start for k in inside])))
        for k in ks:
            if end_lt <= k < end_le:
                out[k] = v
        start, lo = end_le, v
    return out


def _select(a: np.ndarray, ks: list) -> list:
    """sorted(a)[k] for ascending distinct ranks ks, a left as it is: radix selection on the
    values' bits (llmsim/_order.py, about 2.5 ms at 1e6 values where numpy's partitions take
    about 15 ms), or those partitions where it may not be compiled here yet."""
    if not _order.ready():
        return _select_partitions(a.copy(), ks)
    out = _order.order_stats(np.ascontiguousarray(a, dtype=np.float64), np.asarray(ks, dtype=np.int64),
                             np.empty(len(ks)))
    return list(out)


def _select_partitions(a: np.ndarray, ks: list) -> list:
    """_select with numpy's partitions; a is scratch (reordered in place). One partition per
    rank on the part above the last one; a rank right after the last one is the minimum of
    that part (moved to its front)."""
    out, off = [], 0  # a[off:] holds the values of rank >= off
    for k in ks:
        rest = a[off:]
        j = k - off
        if j == 0:
            i = int(rest.argmin())
            rest[0], rest[i] = rest[i], rest[0]
        else:
            rest.partition(j)
        out.append(rest[j])
        off = k + 1
    return out


def simulate(scenario: Scenario, record_iterations: bool = False,
             limits: budget.Limits | None = None) -> Result:
    """Run a scenario to its end and return its Result (with its stability verdict).
    A run that spends its work budget (limits.max_work) ends there: its Result is partial
    and ``summary["stopped"]`` says so."""
    sim = Simulation(scenario, record_iterations=record_iterations, limits=limits)
    sim.advance()
    return result_with_verdict(sim)


def result_with_verdict(sim: Simulation) -> Result:
    """The Result of a finished Simulation with its stability verdict, as ``simulate``
    returns it."""
    from llmsim.stability import verdict
    res = sim.result()
    v = verdict(res)
    if has_pool(sim.scenario):  # a pool is unstable when any replica is
        from llmsim.pool import with_replica_verdicts
        v = with_replica_verdicts(v, res)
    res.verdict = partial_verdict(v, res.summary)
    res.summary.update(res.verdict.summary_fields())
    return res


def partial_verdict(v, summary: dict):
    """The verdict v, or for a run stopped at its work budget an inconclusive one saying
    so: a trend measured over the part of the horizon that ran says nothing reliable."""
    if not summary.get("stopped"):
        return v
    import dataclasses
    done = summary["simulated_seconds"] / summary["horizon_seconds"] if summary["horizon_seconds"] else 0.0
    return dataclasses.replace(v, verdict="inconclusive", explanation=(
        f"Inconclusive: the run was stopped at its work budget after {done:.1%} of its horizon, "
        "and a verdict needs the whole run (fewer requests, a larger token budget, or the command line)."))


def replicate(scenario: Scenario, seeds=5, record=False):
    """Run independent replications (seeds scenario.seed, +1, ... or the given list) and
    pool their verdict; returns (Verdict, [Result, ...])."""
    from dataclasses import replace
    from llmsim.stability import verdict_from_runs
    scenario = as_scenario(scenario)
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and 1 <= seeds <= 1000 or
                                       not isinstance(seeds, int) and hasattr(seeds, "__iter__")):
        raise ConfigError(f"seeds: {seeds!r} must be a number of replications in [1, 1000] or a list of seeds")
    seed_list = [scenario.seed + i for i in range(seeds)] if isinstance(seeds, int) else list(seeds)
    if not seed_list or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seed_list):
        raise ConfigError(f"seeds: {seeds!r} must hold at least one whole number >= 0")
    results = [simulate(replace(scenario, seed=s), record_iterations=record) for s in seed_list]
    return verdict_from_runs(results), results
