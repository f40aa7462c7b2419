"""The one simulation core: a network of LLM engines, iteration by iteration.

A single engine is the one-node, one-step case of this network. Everything here is
Numba-compiled (``cache=True``) and takes only arrays and integers; ``llmsim.simulate``
validates the configuration and builds these arrays.

Three compilation choices keep the kernel and the calls between its functions cheap; they made it
about 5 times faster and do not change what it computes:
- the kernel never allocates, so it is compiled without Numba's reference counting
  (``_nrt=False``, here and in ``llmsim.schedulers``): with it, every call increments and
  decrements the count of each array argument, atomic operations that LLVM fails to
  prune and that took three quarters of the run time;
- NumPy's error model (``error_model='numpy'``): no zero check before each integer
  division or modulo (every divisor here is a validated positive number: block sizes,
  replica counts, staircase steps); orca's W1 run about 9% faster;
- the functions run at every instant, iteration or finished call, from one or two
  places each, are inlined (``inline='always'`` here; ``forceinline=True``, inlined by
  LLVM, for the scheduler phases: see ``llmsim.schedulers``): a call passes each array
  as a struct of 7 to 9 words, and with 8 to 30 array arguments that cost more than the
  work.

Numba's cache checks only the source file of the function it caches: after editing
``llmsim/schedulers.py`` or ``llmsim/state.py`` (compiled into ``run_kernel``), delete
``llmsim/__pycache__/*.nb?`` or the cached kernel stays the old one; llmsim/_kernel_cache.py
does that at import when their contents change.

State is struct-of-arrays, grouped into a few 2-D arrays whose columns are named by the
constants of ``llmsim.state`` (``C_*`` call columns, ``E_*`` engine columns, ...), so a
kernel call passes a handful of arrays instead of sixty. The kernel takes them flat
(``state.flat``) and indexes ``row * N_X + column``: a constant row width (see llmsim/state.py).

Event order at one instant (deterministic tie-break, tested): iteration ends (engine
index order), then delayed calls becoming ready (time, then call id), then workflow
arrivals (arrival order); only then do idle engines form their next batch. So a request
arriving exactly at an iteration boundary joins the next batch.
"""

import numpy as np
from numba import njit

from llmsim._kernel_cache import ensure_fresh_cache

ensure_fresh_cache()

from llmsim.schedulers import decoder_kv, dq_push, form_batch, pf_unlink, serve_decoders
from llmsim import state as S

INF = np.inf

# kernel return codes
DONE = 0        # no work left and no arrivals to come
PAUSED = 1      # reached t_stop; call again to resume
NEED_ROOM = 2   # a capacity (calls, pools, iteration log) is low; grow and call again
STALLED = 3     # an engine had work but formed an empty batch (a configuration the
                # validator should have refused); reported, never looped on
WORK_LIMIT = 4  # reached work_stop work units; call again (with a higher work_stop) to resume


@njit(cache=True, _nrt=False, error_model='numpy')
def _heap_push(heap_t, heap_c, n, t, c):
    i = n
    heap_t[i] = t
    heap_c[i] = c
    while i > 0:
        p = (i - 1) // 2
        if heap_t[p] < heap_t[i] or (heap_t[p] == heap_t[i] and heap_c[p] < heap_c[i]):
            break
        heap_t[p], heap_t[i] = heap_t[i], heap_t[p]
        heap_c[p], heap_c[i] = heap_c[i], heap_c[p]
        i = p
    return n + 1


@njit(cache=True, _nrt=False, error_model='numpy')
def _heap_pop(heap_t, heap_c, n):
    c = heap_c[0]
    n -= 1
    heap_t[0] = heap_t[n]
    heap_c[0] = heap_c[n]
    i = 0
    while True:
        l = 2 * i + 1
        if l >= n:
            break
        m = l
        r = l + 1
        if r < n and (heap_t[r] < heap_t[l] or (heap_t[r] == heap_t[l] and heap_c[r] < heap_c[l])):
            m = r
        if heap_t[i] < heap_t[m] or (heap_t[i] == heap_t[m] and heap_c[i] <= heap_c[m]):
            break
        heap_t[m], heap_t[i] = heap_t[i], heap_t[m]
        heap_c[m], heap_c[i] = heap_c[i], heap_c[m]
        i = m
    return c, n


@njit(cache=True, _nrt=False, error_model='numpy')
def _enqueue_back(ci, si, ei, s, c):
    """Append call c to the waiting list of step (buffer) s."""
    ci[c * S.N_CI + S.C_NEXT] = -1
    ci[c * S.N_CI + S.C_PREV] = si[s * S.N_SI + S.S_TAIL]
    if si[s * S.N_SI + S.S_TAIL] >= 0:
        ci[(si[s * S.N_SI + S.S_TAIL]) * S.N_CI + S.C_NEXT] = c
    else:
        si[s * S.N_SI + S.S_HEAD] = c
    si[s * S.N_SI + S.S_TAIL] = c
    si[s * S.N_SI + S.S_NWAIT] += 1
    ei[(si[s * S.N_SI + S.S_ENGINE]) * S.N_EI + S.E_NWAIT] += 1


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def _spawn(ci, cf, si, sf, ei, ef, gi, job, step, t, pool_p, pool_d, delay_pool,
           heap_t, heap_c):
    """Create the call of `step` for workflow `job` at time t (after the step's delay)."""
    c = gi[S.G_NCALLS]
    gi[S.G_NCALLS] = c + 1
    k = si[step * S.N_SI + S.S_POOL_POS]
    si[step * S.N_SI + S.S_POOL_POS] = k + 1
    p = pool_p[k]
    d = pool_d[k]
    ci[c * S.N_CI + S.C_JOB] = job
    ci[c * S.N_CI + S.C_STEP] = step
    ci[c * S.N_CI + S.C_P] = p
    ci[c * S.N_CI + S.C_D] = d
    ci[c * S.N_CI + S.C_PREF_NEED] = p
    ci[c * S.N_CI + S.C_PREF_DONE] = 0
    ci[c * S.N_CI + S.C_DEC_DONE] = 0
    ci[c * S.N_CI + S.C_KV] = 0
    ci[c * S.N_CI + S.C_PREEMPT] = 0
    ci[c * S.N_CI + S.C_NEXT] = -1
    ci[c * S.N_CI + S.C_PREV] = -1
    cf[c * S.N_CF + S.F_ADMIT] = -1.0
    cf[c * S.N_CF + S.F_FIRST] = -1.0
    cf[c * S.N_CF + S.F_FINISH] = -1.0
    delay = 0.0
    if si[step * S.N_SI + S.S_DELAY_KIND] == 1:
        delay = sf[step * S.N_SF + S.SF_DELAY]
    elif si[step * S.N_SI + S.S_DELAY_KIND] == 2:
        kd = si[step * S.N_SI + S.S_DPOOL_POS]
        si[step * S.N_SI + S.S_DPOOL_POS] = kd + 1
        delay = delay_pool[kd]
    cf[c * S.N_CF + S.F_CREATED] = t
    if delay > 0.0:
        ci[c * S.N_CI + S.C_STATE] = S.ST_DELAYED
        cf[c * S.N_CF + S.F_READY] = t + delay
        gi[S.G_HEAP_N] = _heap_push(heap_t, heap_c, gi[S.G_HEAP_N], t + delay, c)
    else:
        _make_ready(ci, cf, si, ei, gi, c, t)
    return c


@njit(cache=True, _nrt=False, error_model='numpy')
def _rand(si, s):
    """The next uniform in [0, 1) of step s's router stream (MINSTD: no int64 overflow)."""
    x = si[s * S.N_SI + S.S_RNG] * 48271 % 2147483647
    si[s * S.N_SI + S.S_RNG] = x
    return (x - 1) / 2147483646.0


@njit(cache=True, _nrt=False, error_model='numpy')
def _route_replica(si, ei, s):
    """The replica (0..NREP-1) of pool step s (its first row) a ready call joins."""
    k = si[s * S.N_SI + S.S_NREP]
    r = si[s * S.N_SI + S.S_ROUTER]
    if r == S.R_ROUND_ROBIN:
        i = si[s * S.N_SI + S.S_RR]
        si[s * S.N_SI + S.S_RR] = (i + 1) % k
        return i
    if r == S.R_RANDOM:
        return min(int(_rand(si, s) * k), k - 1)
    if r == S.R_POWER_OF_TWO:
        i = min(int(_rand(si, s) * k), k - 1)
        j = (i + 1 + min(int(_rand(si, s) * (k - 1)), k - 2)) % k
        bi = ei[(si[(s + i) * S.N_SI + S.S_ENGINE]) * S.N_EI + S.E_BACKLOG]
        bj = ei[(si[(s + j) * S.N_SI + S.S_ENGINE]) * S.N_EI + S.E_BACKLOG]
        return j if bj < bi or (bj == bi and j < i) else i
    best = 0
    best_v = -1
    for i in range(k):
        e = si[(s + i) * S.N_SI + S.S_ENGINE]
        if r == S.R_JSQ_TOKENS:
            v = ei[e * S.N_EI + S.E_BACKLOG]
        else:
            v = ei[e * S.N_EI + S.E_NWAIT] + ei[e * S.N_EI + S.E_NRUN]
        if best_v < 0 or v < best_v:
            best = i
            best_v = v
    return best


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def _make_ready(ci, cf, si, ei, gi, c, t):
    s = ci[c * S.N_CI + S.C_STEP]
    if si[s * S.N_SI + S.S_NREP] > 1:  # a pool: the router picks the replica now
        s += _route_replica(si, ei, s)
        ci[c * S.N_CI + S.C_STEP] = s
    e = si[s * S.N_SI + S.S_ENGINE]
    ci[c * S.N_CI + S.C_STATE] = S.ST_WAITING
    cf[c * S.N_CF + S.F_READY] = t
    ci[c * S.N_CI + S.C_SEQ] = gi[S.G_SEQ]
    gi[S.G_SEQ] += 1
    si[s * S.N_SI + S.S_NCOUNT] += 1
    work = ci[c * S.N_CI + S.C_P] + ci[c * S.N_CI + S.C_D]
    ei[e * S.N_EI + S.E_BACKLOG] += work
    gi[S.G_TOK_IN] += work
    _enqueue_back(ci, si, ei, s, c)


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def _job_arrival(ci, cf, si, sf, ei, ef, gi, ji, jf, j, t, class_root_ptr, class_root,
                 pool_p, pool_d, delay_pool, heap_t, heap_c):
    cl = ji[j * S.N_JI + S.J_CLASS]
    gi[S.G_JOBS_IN] += 1
    for r in range(class_root_ptr[cl], class_root_ptr[cl + 1]):
        ji[j * S.N_JI + S.J_ACTIVE] += 1
        _spawn(ci, cf, si, sf, ei, ef, gi, j, class_root[r], t, pool_p, pool_d,
               delay_pool, heap_t, heap_c)


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def _finish_call(ci, cf, si, sf, ei, ef, gi, ji, jf, jjoin, c, t, opt_ptr, opt_cum,
                 child_ptr, child_step, route_u, pool_p, pool_d, delay_pool, heap_t, heap_c):
    """Call c has produced its last token at time t: route its workflow onward."""
    s = ci[c * S.N_CI + S.C_STEP]
    j = ci[c * S.N_CI + S.C_JOB]
    si[s * S.N_SI + S.S_NCOUNT] -= 1
    gi[S.G_CALLS_DONE] += 1
    o0 = opt_ptr[s]
    o1 = opt_ptr[s + 1]
    o = o0
    if o1 - o0 > 1:
        u = route_u[gi[S.G_ROUTE_POS]]
        gi[S.G_ROUTE_POS] += 1
        while o < o1 - 1 and u >= opt_cum[o]:
            o += 1
    for k in range(child_ptr[o], child_ptr[o + 1]):
        ch = child_step[k]
        need = si[ch * S.N_SI + S.S_JOIN_NEED]
        if need > 1:
            jx = si[ch * S.N_SI + S.S_JOIN_IDX]
            jjoin[j, jx] += 1
            if jjoin[j, jx] < need:
                continue
            jjoin[j, jx] = 0
        ji[j * S.N_JI + S.J_ACTIVE] += 1
        _spawn(ci, cf, si, sf, ei, ef, gi, j, ch, t, pool_p, pool_d, delay_pool,
               heap_t, heap_c)
    ji[j * S.N_JI + S.J_ACTIVE] -= 1
    if ji[j * S.N_JI + S.J_ACTIVE] == 0:
        jf[j * S.N_JF + S.JF_FINISH] = t
        gi[S.G_JOBS_IN] -= 1
        gi[S.G_JOBS_DONE] += 1


@njit(cache=True, _nrt=False, error_model='numpy')
def _log_batch(ei, ef, gi, e, t, dec_call, batch_c, batch_t, logi, logf):
    """Write engine e's batch to the iteration log, entry by entry in batch order: the
    prefill entries formed before the decode phase, the decode tokens (implicit in the
    kernel: the first E_DEC_K decoders), the prefill entries formed after."""
    bo = ei[e * S.N_EI + S.E_BATCH_OFF]
    npe = ei[e * S.N_EI + S.E_NPE]
    pos = ei[e * S.N_EI + S.E_DEC_POS]
    lo = ei[e * S.N_EI + S.E_RUN_OFF] + ei[e * S.N_EI + S.E_DEC_HEAD]
    n_dec = ei[e * S.N_EI + S.E_DEC_K]
    for j in range(npe + n_dec):
        if j < pos:
            c, tok, ph = batch_c[bo + j], batch_t[bo + j], S.PH_PREFILL
        elif j < pos + n_dec:
            c, tok, ph = dec_call[lo + j - pos], 1, S.PH_DECODE
        else:
            c, tok, ph = batch_c[bo + j - n_dec], batch_t[bo + j - n_dec], S.PH_PREFILL
        if tok == 0:  # voided by a preemption
            continue
        r = gi[S.G_LOG_N]
        logi[r, 0] = ei[e * S.N_EI + S.E_ITERS]
        logi[r, 1] = e
        logi[r, 2] = c
        logi[r, 3] = tok
        logi[r, 4] = ph
        logf[r, 0] = ef[e * S.N_EF + S.EF_ITER_START]
        logf[r, 1] = t
        gi[S.G_LOG_N] = r + 1


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def _apply_batch(ci, cf, si, sf, ei, ef, gi, ji, jf, jjoin, e, t, dec_call, dec_tgt, fin,
                 batch_c, batch_t, logi, logf, opt_ptr, opt_cum, child_ptr, child_step,
                 route_u, pool_p, pool_d, delay_pool, heap_t, heap_c):
    """Iteration of engine e ends at t: credit its tokens, finish calls, route them."""
    if gi[S.G_LOG_CAP] > 0:
        _log_batch(ei, ef, gi, e, t, dec_call, batch_c, batch_t, logi, logf)
    tok = ei[e * S.N_EI + S.E_BATCH_TOK]
    ei[e * S.N_EI + S.E_BACKLOG] -= tok
    gi[S.G_TOK_DONE] += tok
    # decode tokens first (a call completing its prefill now decodes from the next round)
    nf = serve_decoders(ei, e, dec_call, dec_tgt, fin)
    for i in range(nf):
        c = fin[i]
        ci[c * S.N_CI + S.C_STATE] = S.ST_DONE
        ci[c * S.N_CI + S.C_DEC_DONE] = ci[c * S.N_CI + S.C_D]
        cf[c * S.N_CF + S.F_FINISH] = t
        ei[e * S.N_EI + S.E_KV_USED] -= decoder_kv(ci, ei, e, c)
        ci[c * S.N_CI + S.C_KV] = 0
        ei[e * S.N_EI + S.E_CTX] -= ci[c * S.N_CI + S.C_P] + ci[c * S.N_CI + S.C_D]
        ei[e * S.N_EI + S.E_NRUN] -= 1
    bo = ei[e * S.N_EI + S.E_BATCH_OFF]
    for j in range(ei[e * S.N_EI + S.E_NPE]):
        tok = batch_t[bo + j]
        if tok == 0:
            continue
        c = batch_c[bo + j]
        ci[c * S.N_CI + S.C_PREF_DONE] += tok
        if ci[c * S.N_CI + S.C_PREF_DONE] == ci[c * S.N_CI + S.C_PREF_NEED]:
            ci[c * S.N_CI + S.C_STATE] = S.ST_DECODE
            if cf[c * S.N_CF + S.F_FIRST] < 0.0:
                cf[c * S.N_CF + S.F_FIRST] = t
            pf_unlink(ci, ei, e, c)
            dq_push(ci, ei, e, dec_call, dec_tgt, c)
            if 2 * (ei[e * S.N_EI + S.E_NDEC] + gi[S.G_MARGIN]) > ei[e * S.N_EI + S.E_RUN_CAP]:
                gi[S.G_DQ_LOW] = 1  # _low_room: the region is grown before the next instant
    ei[e * S.N_EI + S.E_BATCH_N] = 0
    ei[e * S.N_EI + S.E_BUSY] = 0
    ei[e * S.N_EI + S.E_ITERS] += 1
    # route in admission order (deterministic: fin lists the finished calls in that order)
    for i in range(nf):
        _finish_call(ci, cf, si, sf, ei, ef, gi, ji, jf, jjoin, fin[i], t, opt_ptr, opt_cum,
                     child_ptr, child_step, route_u, pool_p, pool_d, delay_pool, heap_t,
                     heap_c)


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def _batch_seconds(ei, ef, e, n_pref, n_dec, ctx):
    model = ei[e * S.N_EI + S.E_BT_MODEL]
    n = n_pref + n_dec
    if model == S.BT_CONSTANT:
        return ef[e * S.N_EF + S.EF_BT0]
    elif model == S.BT_STAIRCASE:
        b0 = ef[e * S.N_EF + S.EF_BT2]
        return ef[e * S.N_EF + S.EF_BT0] + ef[e * S.N_EF + S.EF_BT1] * np.ceil(n / b0)
    elif model == S.BT_PIECEWISE:
        b0 = ef[e * S.N_EF + S.EF_BT2]
        t = ef[e * S.N_EF + S.EF_BT0] + ef[e * S.N_EF + S.EF_BT1] * max(0.0, n - b0)
        if ei[e * S.N_EI + S.E_BT_ATTN] == 1:  # linear layers + attention (see config.BatchTime)
            t = (t + ef[e * S.N_EF + S.EF_BT6] * n_pref + ef[e * S.N_EF + S.EF_BT5] * n_dec + ef[e * S.N_EF + S.EF_BT3] * ctx
                 + ef[e * S.N_EF + S.EF_BT4] * ei[e * S.N_EI + S.E_PF_PAIRS])
        return t
    else:  # affine
        return (ef[e * S.N_EF + S.EF_BT0] + ef[e * S.N_EF + S.EF_BT1] * n_pref + ef[e * S.N_EF + S.EF_BT2] * n_dec
                + ef[e * S.N_EF + S.EF_BT3] * ctx + ef[e * S.N_EF + S.EF_BT4] * ei[e * S.N_EI + S.E_PF_PAIRS])


@njit(cache=True, _nrt=False, error_model='numpy')
def _snapshot(rec, row, t, gi, ei, si):
    rec[row, 0] = t
    rec[row, 1] = gi[S.G_JOBS_IN]
    n_e = ei.shape[0] // S.N_EI
    for e in range(n_e):
        b = 2 + 4 * e
        rec[row, b] = ei[e * S.N_EI + S.E_NWAIT]
        rec[row, b + 1] = ei[e * S.N_EI + S.E_NRUN]
        rec[row, b + 2] = ei[e * S.N_EI + S.E_BACKLOG]
        rec[row, b + 3] = ei[e * S.N_EI + S.E_KV_USED]
    b = 2 + 4 * n_e
    for s in range(si.shape[0] // S.N_SI):
        rec[row, b + 2 * s] = si[s * S.N_SI + S.S_NWAIT]
        rec[row, b + 2 * s + 1] = si[s * S.N_SI + S.S_NCOUNT]


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def _record_until(rec, gi, gf, ei, si, t):
    """Sample the (piecewise-constant) state at every grid time <= t.

    The grid starts at spacing SAMPLE_DT; when the buffer fills, every other row is
    dropped and the spacing doubles, so any run length fits in a bounded buffer.
    """
    cap = rec.shape[0]
    while gf[S.GF_NEXT_SAMPLE] <= t:
        n = gi[S.G_REC_N]
        if n == cap:
            half = (cap + 1) // 2
            for i in range(half):
                for j in range(rec.shape[1]):  # (a row slice copy would need NRT)
                    rec[i, j] = rec[2 * i, j]
            gi[S.G_REC_N] = half
            n = half
            gf[S.GF_SAMPLE_DT] *= 2.0
            gf[S.GF_NEXT_SAMPLE] = rec[half - 1, 0] + gf[S.GF_SAMPLE_DT]
            if gf[S.GF_NEXT_SAMPLE] > t:
                break
        _snapshot(rec, n, gf[S.GF_NEXT_SAMPLE], gi, ei, si)
        gi[S.G_REC_N] = n + 1
        gf[S.GF_NEXT_SAMPLE] += gf[S.GF_SAMPLE_DT]


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def _accumulate(gf, gi, ei, ef, t):
    dt = t - gf[S.GF_T_LAST]
    if dt > 0.0:
        gf[S.GF_AREA_JOBS] += gi[S.G_JOBS_IN] * dt
        for e in range(ei.shape[0] // S.N_EI):
            ef[e * S.N_EF + S.EF_AREA_WAIT] += ei[e * S.N_EI + S.E_NWAIT] * dt
            ef[e * S.N_EF + S.EF_AREA_RUN] += ei[e * S.N_EI + S.E_NRUN] * dt
            ef[e * S.N_EF + S.EF_AREA_BACKLOG] += ei[e * S.N_EI + S.E_BACKLOG] * dt
            if ei[e * S.N_EI + S.E_BUSY] == 1:
                ef[e * S.N_EF + S.EF_BUSY_TIME] += dt
        gf[S.GF_T_LAST] = t


@njit(cache=True, _nrt=False, error_model='numpy')
def _log_low(gi, ei, logi):
    """True when the iteration log might overrun in one more instant: its margin covers the
    instant's batch entries (G_LOG_MARGIN), and each running request may be preempted, a row
    each. (A call of its own, made only with a log, as schedulers._log_preempt.)"""
    n = gi[S.G_LOG_N] + gi[S.G_LOG_MARGIN]
    for e in range(ei.shape[0] // S.N_EI):
        n += ei[e * S.N_EI + S.E_NRUN]
    return n > logi.shape[0]


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def _low_room(gi, ci, si, ei, route_u, logi):
    """True when one more instant might overrun a capacity (calls, pools, log, decode queues).
    The log's margin covers the batch entries of an instant (G_LOG_MARGIN); each running
    request may be preempted as well, a row each."""
    margin = gi[S.G_MARGIN]
    if gi[S.G_NCALLS] + margin > ci.shape[0] // S.N_CI:
        return True
    if gi[S.G_ROUTE_FINAL] == 0 and gi[S.G_ROUTE_POS] + margin > route_u.shape[0]:
        return True
    if gi[S.G_LOG_CAP] > 0 and _log_low(gi, ei, logi):
        return True
    if gi[S.G_POOLS_OPEN] > 0:
        for s in range(si.shape[0] // S.N_SI):
            if si[s * S.N_SI + S.S_POOL_FINAL] == 0:
                if si[s * S.N_SI + S.S_POOL_POS] + margin > si[s * S.N_SI + S.S_POOL_END]:
                    return True
                if si[s * S.N_SI + S.S_DELAY_KIND] == 2 and si[s * S.N_SI + S.S_DPOOL_POS] + margin > si[s * S.N_SI + S.S_DPOOL_END]:
                    return True
    # each decode queue's region stays at least twice the queue plus the margin: _apply_batch
    # flags the push that breaks that (only dq_push grows a queue); _grow grows the region
    return gi[S.G_DQ_LOW] == 1


@njit(cache=True, _nrt=False, error_model='numpy', nogil=True)
def run_kernel(t_stop, work_stop, wk, gi, gf, ci, cf, ei, ef, si, sf, ji, jf, jjoin, dec_call, dec_tgt,
               fin, batch_c, batch_t, e_steps_ptr, e_steps, opt_ptr, opt_cum, child_ptr,
               child_step, class_root_ptr, class_root, route_u, pool_p, pool_d,
               delay_pool, mp_route, heap_t, heap_c, rec, logi, logf):
    """Advance the network until simulated time t_stop (inclusive), until no work is
    left, or until the work done reaches work_stop. Returns DONE, PAUSED, NEED_ROOM,
    WORK_LIMIT or STALLED; all state lives in the arrays, so a PAUSED, NEED_ROOM or
    WORK_LIMIT run resumes exactly where it stopped (chunking never changes a result).

    wk[0] counts work units, a measure of the kernel's CPU time that simulated time does
    not give (a token budget of 1 makes one iteration per token): per instant, one plus
    the engines and steps it scans, plus one per prefill entry formed and per call created.
    wk[1] is 1 while an instant is left part-done by a NEED_ROOM between two of its
    arrivals (its units so far already counted).
    The kernel runs without the GIL (``nogil``): other threads of the process (a
    dashboard's other sessions, its health endpoint) keep running meanwhile."""
    n_e = ei.shape[0] // S.N_EI
    n_s = si.shape[0] // S.N_SI
    n_jobs = ji.shape[0] // S.N_JI
    while True:
        # wk[1] == 1: an instant stopped between two of its arrivals (NEED_ROOM) is resumed
        # and finished before any other stop, as a run in one go would
        if wk[0] >= work_stop and wk[1] == 0:
            return WORK_LIMIT
        if _low_room(gi, ci, si, ei, route_u, logi):
            return NEED_ROOM
        # --- next instant ---------------------------------------------------------------
        t = INF
        for e in range(n_e):
            if ei[e * S.N_EI + S.E_BUSY] == 1 and ef[e * S.N_EF + S.EF_ITER_END] < t:
                t = ef[e * S.N_EF + S.EF_ITER_END]
        if gi[S.G_HEAP_N] > 0 and heap_t[0] < t:
            t = heap_t[0]
        nj = gi[S.G_NEXT_JOB]
        if nj < n_jobs and jf[nj * S.N_JF + S.JF_ARRIVAL] < t:
            t = jf[nj * S.N_JF + S.JF_ARRIVAL]
        if t == INF:
            return DONE
        if t > t_stop:
            # the time integrals stay at the last instant (the summary adds the stretch to
            # t_stop): a run paused part-way then sums exactly what a run in one go sums
            _record_until(rec, gi, gf, ei, si, t_stop)
            gf[S.GF_NOW] = t_stop
            return PAUSED
        _record_until(rec, gi, gf, ei, si, t)
        _accumulate(gf, gi, ei, ef, t)
        gf[S.GF_NOW] = t
        calls0 = gi[S.G_NCALLS]
        units = 1 + n_e + n_s
        if wk[1] == 1:  # the rest of an instant whose units were counted when it stopped
            units = 0
            wk[1] = 0
        # 1. iteration ends, in engine order
        for e in range(n_e):
            if ei[e * S.N_EI + S.E_BUSY] == 1 and ef[e * S.N_EF + S.EF_ITER_END] == t:
                _apply_batch(ci, cf, si, sf, ei, ef, gi, ji, jf, jjoin, e, t, dec_call,
                             dec_tgt, fin, batch_c, batch_t, logi, logf, opt_ptr, opt_cum,
                             child_ptr, child_step, route_u, pool_p, pool_d, delay_pool,
                             heap_t, heap_c)
        # 2. delayed calls (tool calls) become ready
        while gi[S.G_HEAP_N] > 0 and heap_t[0] == t:
            c, hn = _heap_pop(heap_t, heap_c, gi[S.G_HEAP_N])
            gi[S.G_HEAP_N] = hn
            _make_ready(ci, cf, si, ei, gi, c, t)
        # 3. workflow arrivals
        while gi[S.G_NEXT_JOB] < n_jobs and jf[(gi[S.G_NEXT_JOB]) * S.N_JF + S.JF_ARRIVAL] == t:
            j = gi[S.G_NEXT_JOB]
            gi[S.G_NEXT_JOB] = j + 1
            _job_arrival(ci, cf, si, sf, ei, ef, gi, ji, jf, j, t, class_root_ptr,
                         class_root, pool_p, pool_d, delay_pool, heap_t, heap_c)
            # several arrivals can share an instant (traces, deterministic rates): room is
            # checked before each further one. Resuming then is exact: the next instant is
            # this one again (its arrivals are left), steps 1 and 2 find nothing left to do
            # and step 4 forms the batches. Returning after the instant's last arrival would
            # lose step 4: an idle engine would start its batch only at the next event
            nj = gi[S.G_NEXT_JOB]
            if nj < n_jobs and jf[nj * S.N_JF + S.JF_ARRIVAL] == t and _low_room(gi, ci, si, ei, route_u, logi):
                wk[0] += units + gi[S.G_NCALLS] - calls0
                wk[1] = 1
                return NEED_ROOM
        # 4. idle engines with work start an iteration
        for e in range(n_e):
            if ei[e * S.N_EI + S.E_BUSY] == 0 and (ei[e * S.N_EI + S.E_NWAIT] > 0 or ei[e * S.N_EI + S.E_NRUN] > 0):
                n_pref, n_dec, ctx = form_batch(ci, cf, si, sf, ei, ef, gi, e, t, dec_call,
                                                dec_tgt, batch_c, batch_t, e_steps_ptr,
                                                e_steps, mp_route, logi, logf)
                if n_pref + n_dec == 0:
                    return STALLED
                ei[e * S.N_EI + S.E_BUSY] = 1
                ef[e * S.N_EF + S.EF_ITER_START] = t
                ef[e * S.N_EF + S.EF_ITER_END] = t + _batch_seconds(ei, ef, e, n_pref, n_dec, ctx)
                units += 1 + ei[e * S.N_EI + S.E_NPE]
        wk[0] += units + gi[S.G_NCALLS] - calls0
