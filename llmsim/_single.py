"""The kernel of one engine running sarathi or orca: ``run_kernel``'s single-engine case,
with the engine's, its buffer's and the run's counters in local variables.

``core.run_kernel`` simulates any network: every counter lives in a row of a state array
(``ei``, ``si``, ``gi``, ...), and every instant loops over engines and steps, checks the
heap of delayed calls, the router and the room left. For the case users run most -- one
engine, one step, one call per request, no delays, no iteration log -- this kernel does the
same work with none of that: the counters are loaded into local variables when it starts
(where the compiler keeps them in registers: a store to a call's row can no longer alias
them) and written back whenever it returns.

It computes exactly what ``run_kernel`` computes and leaves exactly the state
``run_kernel`` would leave: every call's row, every counter, sample, time integral and work
unit, at every return (the same return codes at the same instants). So either kernel can
resume a run the other paused, and ``Simulation.advance`` picks this one whenever
``eligible`` says the run's configuration allows it (tests/test_single_kernel.py checks
both kernels bit for bit, on runs sliced at random between them). The code mirrors
``core.run_kernel`` and ``llmsim.schedulers`` step by step, in the same order of
operations (floating-point sums included), with the single-engine cases of their
branches folded: block size 1, memory grown on demand (sarathi and orca never reserve),
chunked prefill, a policy with nothing to choose among one buffer.
"""

import numpy as np
from numba import njit

from llmsim import state as S
from llmsim.core import DONE, NEED_ROOM, PAUSED, STALLED, WORK_LIMIT, INF, _batch_seconds
from llmsim.schedulers import _shift as _shift_call, Scheduler

# schedulers._shift, inlined by LLVM here (a call passes each array as a struct of 7 words)
_shift = njit(_nrt=False, error_model='numpy', forceinline=True)(_shift_call.py_func)

_SARATHI = int(Scheduler.SARATHI)  # a plain int: Numba freezes it as a constant


def eligible(sim) -> bool:
    """Whether this kernel can run ``sim`` (a ``llmsim.Simulation``): one engine and one step
    (no replicas, joins, delays or routing), sarathi or orca, KV blocks of one token, a batch
    time that needs no context (constant, staircase, piecewise without attention), no strict
    class priority, no iteration log, the compiled tier."""
    ei, si = sim.ei, sim.si
    if ei.shape[0] != 1 or si.shape[0] != 1 or sim.python_kernel:
        return False
    e = ei[0]
    return bool(
        e[S.E_SCHED] in (Scheduler.ORCA, Scheduler.SARATHI)
        and e[S.E_RESERVE_FULL] == 0 and e[S.E_BLOCK] == 1
        and e[S.E_POLICY] != S.POL_STRICT
        and e[S.E_BT_MODEL] in (S.BT_CONSTANT, S.BT_STAIRCASE, S.BT_PIECEWISE) and e[S.E_BT_ATTN] == 0
        and si[0, S.S_NREP] <= 1 and si[0, S.S_DELAY_KIND] == 0 and si[0, S.S_JOIN_NEED] <= 1
        and sim.gi[S.G_LOG_CAP] == 0 and sim.gi[S.G_HEAP_N] == 0
        # the step's calls end their workflow: one routing option, no children
        and len(sim.opt_ptr) == 2 and sim.opt_ptr[1] - sim.opt_ptr[0] == 1
        and sim.child_ptr[sim.opt_ptr[0] + 1] == sim.child_ptr[sim.opt_ptr[0]]
        and np.all(sim.class_root == 0))


# Rows are indexed unsigned (``ci[_U(c * S.N_CI + S.C_STATE)]``): Numba then indexes without
# the wraparound of a negative index (three instructions and a load of the array's length per
# access; every index here is a row's, never negative). Orca's W1 run: 2,369 -> 1,958
# instructions per request (bench/instr_kernel.py), about the same time: the kernel waits on
# memory more than it computes (bench/README.md, Round 28).
_U = np.uint64


@njit(cache=True, _nrt=False, error_model='numpy', forceinline=True)
def _pf_unlink(ci, c, head, tail):
    """schedulers.pf_unlink with the prefill list's ends in the caller's variables: returns
    them (head, tail) after taking call c out."""
    p = ci[_U(c * S.N_CI + S.C_PREV)]
    n = ci[_U(c * S.N_CI + S.C_NEXT)]
    if p >= 0:
        ci[_U(p * S.N_CI + S.C_NEXT)] = n
    else:
        head = n
    if n >= 0:
        ci[_U(n * S.N_CI + S.C_PREV)] = p
    else:
        tail = p
    ci[_U(c * S.N_CI + S.C_NEXT)] = -1
    ci[_U(c * S.N_CI + S.C_PREV)] = -1
    return head, tail


@njit(cache=True, _nrt=False, error_model='numpy', nogil=True)
def run_single(t_stop, work_stop, wk, gi, gf, ci, cf, ei, ef, si, sf, ji, jf, jjoin, dec_call, dec_tgt,
               fin, batch_c, batch_t, e_steps_ptr, e_steps, opt_ptr, opt_cum, child_ptr,
               child_step, class_root_ptr, class_root, route_u, pool_p, pool_d,
               delay_pool, mp_route, heap_t, heap_c, rec, logi, logf):
    """``core.run_kernel`` for a run ``eligible`` accepts: the same arguments, results,
    state and return codes."""
    n_jobs = ji.shape[0] // S.N_JI
    n_rows = ci.shape[0] // S.N_CI
    cap_rec = rec.shape[0]
    none = np.int32(S.TGT_NONE32)
    decode_first = ei[S.E_SCHED] == _SARATHI
    # --- load: constants of this call, then the counters ------------------------------------
    budget_e = ei[S.E_BUDGET]
    kmax = ei[S.E_KMAX]
    kv_cap = ei[S.E_KV_CAP]
    kv_admit = kv_cap - ei[S.E_WATERMARK]  # an admission leaves the watermark free
    maxrun = ei[S.E_MAXRUN]
    bo = ei[S.E_BATCH_OFF]
    off = ei[S.E_RUN_OFF]
    run_cap = ei[S.E_RUN_CAP]
    margin = gi[S.G_MARGIN]
    pools_open = gi[S.G_POOLS_OPEN] > 0 and si[S.S_POOL_FINAL] == 0
    pool_end = si[S.S_POOL_END]
    route_low = gi[S.G_ROUTE_FINAL] == 0 and gi[S.G_ROUTE_POS] + margin > route_u.shape[0]
    nrun = ei[S.E_NRUN]
    kv_used = ei[S.E_KV_USED]
    e_nwait = ei[S.E_NWAIT]
    ndec = ei[S.E_NDEC]
    busy = ei[S.E_BUSY]
    batch_n = ei[S.E_BATCH_N]
    iters = ei[S.E_ITERS]
    backlog = ei[S.E_BACKLOG]
    preempts = ei[S.E_PREEMPTS]
    dec_head = ei[S.E_DEC_HEAD]
    rnd = ei[S.E_ROUND]
    dec_lb = ei[S.E_DEC_LB]
    pf_head = ei[S.E_PF_HEAD]
    pf_tail = ei[S.E_PF_TAIL]
    admits = ei[S.E_ADMITS]
    ctx = ei[S.E_CTX]
    npe = ei[S.E_NPE]
    dec_k = ei[S.E_DEC_K]
    dec_pos = ei[S.E_DEC_POS]
    batch_tok = ei[S.E_BATCH_TOK]
    batch_pref = ei[S.E_BATCH_PREF]
    pf_pairs = ei[S.E_PF_PAIRS]
    iter_start = ef[S.EF_ITER_START]
    iter_end = ef[S.EF_ITER_END]
    area_wait = ef[S.EF_AREA_WAIT]
    area_run = ef[S.EF_AREA_RUN]
    area_backlog = ef[S.EF_AREA_BACKLOG]
    busy_time = ef[S.EF_BUSY_TIME]
    s_head = si[S.S_HEAD]
    s_tail = si[S.S_TAIL]
    s_nwait = si[S.S_NWAIT]
    s_ncount = si[S.S_NCOUNT]
    pool_pos = si[S.S_POOL_POS]
    ncalls = gi[S.G_NCALLS]
    next_job = gi[S.G_NEXT_JOB]
    seq = gi[S.G_SEQ]
    rec_n = gi[S.G_REC_N]
    tok_in = gi[S.G_TOK_IN]
    tok_done = gi[S.G_TOK_DONE]
    tok_recompute = gi[S.G_TOK_RECOMPUTE]
    jobs_in = gi[S.G_JOBS_IN]
    jobs_done = gi[S.G_JOBS_DONE]
    calls_done = gi[S.G_CALLS_DONE]
    dq_low = gi[S.G_DQ_LOW]
    now = gf[S.GF_NOW]
    t_last = gf[S.GF_T_LAST]
    next_sample = gf[S.GF_NEXT_SAMPLE]
    sample_dt = gf[S.GF_SAMPLE_DT]
    area_jobs = gf[S.GF_AREA_JOBS]
    wk0 = wk[0]
    wk1 = wk[1]
    status = DONE
    while True:
        if wk0 >= work_stop and wk1 == 0:
            status = WORK_LIMIT
            break
        # core._low_room (no log: this kernel never runs with one)
        if ncalls + margin > n_rows or route_low or dq_low == 1 \
                or (pools_open and pool_pos + margin > pool_end):
            status = NEED_ROOM
            break
        # --- next instant --------------------------------------------------------------------
        t = INF
        if busy == 1 and iter_end < t:
            t = iter_end
        if next_job < n_jobs and jf[_U(next_job * S.N_JF + S.JF_ARRIVAL)] < t:
            t = jf[_U(next_job * S.N_JF + S.JF_ARRIVAL)]
        if t == INF:
            status = DONE
            break
        paused = t > t_stop
        ts = t_stop if paused else t
        # core._record_until: samples at every grid time <= ts (core._snapshot's columns)
        while next_sample <= ts:
            n = rec_n
            if n == cap_rec:
                half = (cap_rec + 1) // 2
                for i in range(half):
                    for j in range(rec.shape[1]):
                        rec[i, j] = rec[2 * i, j]
                rec_n = half
                n = half
                sample_dt *= 2.0
                next_sample = rec[half - 1, 0] + sample_dt
                if next_sample > ts:
                    break
            rec[n, 0] = next_sample
            rec[n, 1] = jobs_in
            rec[n, 2] = e_nwait
            rec[n, 3] = nrun
            rec[n, 4] = backlog
            rec[n, 5] = kv_used
            rec[n, 6] = s_nwait
            rec[n, 7] = s_ncount
            rec_n = n + 1
            next_sample += sample_dt
        if paused:
            now = t_stop
            status = PAUSED
            break
        # core._accumulate
        dt = t - t_last
        if dt > 0.0:
            area_jobs += jobs_in * dt
            area_wait += e_nwait * dt
            area_run += nrun * dt
            area_backlog += backlog * dt
            if busy == 1:
                busy_time += dt
            t_last = t
        now = t
        calls0 = ncalls
        units = 3  # 1 + engines + steps
        if wk1 == 1:
            units = 0
            wk1 = 0
        # 1. the iteration ends (core._apply_batch, without a log)
        if busy == 1 and iter_end == t:
            backlog -= batch_tok
            tok_done += batch_tok
            # schedulers.serve_decoders
            nf = 0
            k = dec_k
            if k > 0:
                n = ndec
                lo = off + dec_head
                r = rnd
                ctx += k
                first = np.int32(-1)
                last = np.int32(-1)
                scan = True
                if 2 * k <= n:
                    r32 = np.int32(r)
                    k32 = np.int32(k)
                    first = k32
                    m = none
                    seg = dec_tgt[lo:lo + k]
                    for i in range(k):
                        seg[i] = seg[i] - 1
                        x = seg[i]
                        hit = x == r32
                        first = min(first, np.int32(i) if hit else k32)
                        last = max(last, np.int32(i) if hit else np.int32(-1))
                        m = min(m, x)
                    dec_lb = min(dec_lb, m)
                else:
                    r += 1
                    if r == S.ROUND_REBASE:  # schedulers._rebase_rounds
                        seg = dec_tgt[lo:lo + n]
                        for i in range(n):
                            seg[i] = seg[i] - r
                        dec_lb -= r
                        r = r - r
                    rnd = r
                    seg = dec_tgt[lo + k:lo + n]
                    for i in range(n - k):
                        seg[i] = seg[i] + 1
                    if dec_lb > r:
                        scan = False
                    else:
                        r32 = np.int32(r)
                        n32 = np.int32(n)
                        first = n32
                        m = none
                        seg = dec_tgt[lo:lo + n]
                        for i in range(n):
                            x = seg[i]
                            hit = x == r32
                            first = min(first, np.int32(i) if hit else n32)
                            last = max(last, np.int32(i) if hit else np.int32(-1))
                            m = min(m, none if hit else x)
                        dec_lb = m
                if scan and last >= 0:
                    nf += 1
                    if last > first:
                        nf += 1
                        mid = dec_tgt[lo + first + 1:lo + last]
                        for i in range(last - first - 1):
                            nf += mid[i] == r
                    # schedulers._remove_finished (and _drop): positions lo_f..hi_f
                    lo_f = lo + first
                    hi_f = lo + last
                    from_head = hi_f - lo <= lo + n - lo_f
                    if nf <= 2:
                        fin[_U(0)] = lo_f
                        fin[_U(nf - 1)] = hi_f
                        if from_head:
                            for j in range(nf - 1, -1, -1):
                                p = fin[_U(j)] + nf - 1 - j
                                fin[_U(j)] = dec_call[_U(p)]
                                ql = off + dec_head
                                _shift(dec_call, ql, ql + 1, p - ql)
                                _shift(dec_tgt, ql, ql + 1, p - ql)
                                dec_head += 1
                                ndec -= 1
                        else:
                            for j in range(nf):
                                p = fin[_U(j)] - j
                                fin[_U(j)] = dec_call[_U(p)]
                                ql = off + dec_head
                                _shift(dec_call, p + 1, p, ql + ndec - p - 1)
                                _shift(dec_tgt, p + 1, p, ql + ndec - p - 1)
                                ndec -= 1
                    else:
                        if from_head:
                            w = hi_f
                            j = nf - 1
                            for i in range(hi_f, lo_f - 1, -1):
                                if dec_tgt[_U(i)] == r:
                                    fin[_U(j)] = dec_call[_U(i)]
                                    j -= 1
                                else:
                                    dec_call[_U(w)] = dec_call[_U(i)]
                                    dec_tgt[_U(w)] = dec_tgt[_U(i)]
                                    w -= 1
                            _shift(dec_call, lo, lo + nf, lo_f - lo)
                            _shift(dec_tgt, lo, lo + nf, lo_f - lo)
                            dec_head += nf
                        else:
                            w = lo_f
                            j = 0
                            for i in range(lo_f, hi_f + 1):
                                if dec_tgt[_U(i)] == r:
                                    fin[_U(j)] = dec_call[_U(i)]
                                    j += 1
                                else:
                                    dec_call[_U(w)] = dec_call[_U(i)]
                                    dec_tgt[_U(w)] = dec_tgt[_U(i)]
                                    w += 1
                            _shift(dec_call, hi_f + 1, hi_f + 1 - nf, lo + n - hi_f - 1)
                            _shift(dec_tgt, hi_f + 1, hi_f + 1 - nf, lo + n - hi_f - 1)
                        ndec = n - nf
            for i in range(nf):
                c = fin[_U(i)]
                ci[_U(c * S.N_CI + S.C_STATE)] = S.ST_DONE
                d = ci[_U(c * S.N_CI + S.C_D)]
                ci[_U(c * S.N_CI + S.C_DEC_DONE)] = d
                cf[_U(c * S.N_CF + S.F_FINISH)] = t
                p_c = ci[_U(c * S.N_CI + S.C_P)]
                kv_used -= p_c + d  # schedulers.decoder_kv: prompt + tokens decoded, blocks of 1
                ci[_U(c * S.N_CI + S.C_KV)] = 0
                ctx -= p_c + d
                nrun -= 1
            for j in range(npe):
                tok = batch_t[_U(bo + j)]
                if tok == 0:
                    continue
                c = batch_c[_U(bo + j)]
                done = ci[_U(c * S.N_CI + S.C_PREF_DONE)] + tok
                ci[_U(c * S.N_CI + S.C_PREF_DONE)] = done
                if done == ci[_U(c * S.N_CI + S.C_PREF_NEED)]:
                    ci[_U(c * S.N_CI + S.C_STATE)] = S.ST_DECODE
                    if cf[_U(c * S.N_CF + S.F_FIRST)] < 0.0:
                        cf[_U(c * S.N_CF + S.F_FIRST)] = t
                    pf_head, pf_tail = _pf_unlink(ci, c, pf_head, pf_tail)
                    # schedulers.dq_push
                    h = dec_head
                    n = ndec
                    if h + n == run_cap:
                        _shift(dec_call, off + h, off, n)
                        _shift(dec_tgt, off + h, off, n)
                        h = 0
                        dec_head = 0
                    lo = off + h
                    pos = lo + n
                    aseq = ci[_U(c * S.N_CI + S.C_ASEQ)]
                    while pos > lo and ci[_U((dec_call[_U(pos - 1)]) * S.N_CI + S.C_ASEQ)] > aseq:
                        dec_call[_U(pos)] = dec_call[_U(pos - 1)]
                        dec_tgt[_U(pos)] = dec_tgt[_U(pos - 1)]
                        pos -= 1
                    dd = ci[_U(c * S.N_CI + S.C_DEC_DONE)]
                    tgt = rnd + ci[_U(c * S.N_CI + S.C_D)] - dd
                    dec_call[_U(pos)] = c
                    dec_tgt[_U(pos)] = tgt
                    ndec = n + 1
                    ctx += ci[_U(c * S.N_CI + S.C_P)] + dd
                    if tgt < dec_lb:
                        dec_lb = tgt
                    if 2 * (ndec + margin) > run_cap:
                        dq_low = 1
            batch_n = 0
            busy = 0
            iters += 1
            # core._finish_call: the workflow ends with its one call
            for i in range(nf):
                c = fin[_U(i)]
                s_ncount -= 1
                calls_done += 1
                j = ci[_U(c * S.N_CI + S.C_JOB)]
                a = ji[_U(j * S.N_JI + S.J_ACTIVE)] - 1
                ji[_U(j * S.N_JI + S.J_ACTIVE)] = a
                if a == 0:
                    jf[_U(j * S.N_JF + S.JF_FINISH)] = t
                    jobs_in -= 1
                    jobs_done += 1
        # 2. (no delayed calls)
        # 3. workflow arrivals (core._job_arrival, _spawn, _make_ready, _enqueue_back)
        room = False
        while next_job < n_jobs and jf[_U(next_job * S.N_JF + S.JF_ARRIVAL)] == t:
            j = next_job
            next_job = j + 1
            cl = ji[_U(j * S.N_JI + S.J_CLASS)]
            jobs_in += 1
            for _ in range(class_root_ptr[cl], class_root_ptr[cl + 1]):
                ji[_U(j * S.N_JI + S.J_ACTIVE)] += 1
                c = ncalls
                ncalls = c + 1
                k = pool_pos
                pool_pos = k + 1
                p_c = pool_p[_U(k)]
                d = pool_d[_U(k)]
                ci[_U(c * S.N_CI + S.C_JOB)] = j
                ci[_U(c * S.N_CI + S.C_STEP)] = 0
                ci[_U(c * S.N_CI + S.C_P)] = p_c
                ci[_U(c * S.N_CI + S.C_D)] = d
                ci[_U(c * S.N_CI + S.C_PREF_NEED)] = p_c
                ci[_U(c * S.N_CI + S.C_PREF_DONE)] = 0
                ci[_U(c * S.N_CI + S.C_DEC_DONE)] = 0
                ci[_U(c * S.N_CI + S.C_KV)] = 0
                ci[_U(c * S.N_CI + S.C_PREEMPT)] = 0
                cf[_U(c * S.N_CF + S.F_ADMIT)] = -1.0
                cf[_U(c * S.N_CF + S.F_FIRST)] = -1.0
                cf[_U(c * S.N_CF + S.F_FINISH)] = -1.0
                cf[_U(c * S.N_CF + S.F_CREATED)] = t
                ci[_U(c * S.N_CI + S.C_STATE)] = S.ST_WAITING
                cf[_U(c * S.N_CF + S.F_READY)] = t
                ci[_U(c * S.N_CI + S.C_SEQ)] = seq
                seq += 1
                s_ncount += 1
                work = p_c + d
                backlog += work
                tok_in += work
                ci[_U(c * S.N_CI + S.C_NEXT)] = -1
                ci[_U(c * S.N_CI + S.C_PREV)] = s_tail
                if s_tail >= 0:
                    ci[_U(s_tail * S.N_CI + S.C_NEXT)] = c
                else:
                    s_head = c
                s_tail = c
                s_nwait += 1
                e_nwait += 1
            if next_job < n_jobs and jf[_U(next_job * S.N_JF + S.JF_ARRIVAL)] == t and (
                    ncalls + margin > n_rows or route_low or dq_low == 1
                    or (pools_open and pool_pos + margin > pool_end)):
                wk0 += units + ncalls - calls0
                wk1 = 1
                room = True
                break
        if room:
            status = NEED_ROOM
            break
        # 4. an idle engine with work starts an iteration (schedulers.form_batch)
        if busy == 0 and (e_nwait > 0 or nrun > 0):
            batch_n = 0
            npe = 0
            dec_k = 0
            dec_pos = 0
            batch_tok = 0
            batch_pref = 0
            pf_pairs = 0
            for phase in range(2):
                if (phase == 0) == decode_first:
                    # schedulers.decode_phase (grown on demand, blocks of 1 token)
                    budget = budget_e - batch_tok
                    slots = kmax - batch_n
                    want = min(ndec, budget, slots)
                    while want > 0 and kv_used + want > kv_cap:
                        # schedulers.preempt_newest: the newest admission of the prefill
                        # list's tail and the decode queue's tail
                        pf = pf_tail
                        n = ndec
                        last_q = off + dec_head + n - 1
                        if pf >= 0 and (n == 0 or ci[_U(pf * S.N_CI + S.C_ASEQ)] > ci[_U((dec_call[_U(last_q)]) * S.N_CI + S.C_ASEQ)]):
                            c = pf
                            pf_head, pf_tail = _pf_unlink(ci, c, pf_head, pf_tail)
                            for q in range(npe):
                                if batch_c[_U(bo + q)] == c:
                                    kq = batch_t[_U(bo + q)]
                                    done = ci[_U(c * S.N_CI + S.C_PREF_DONE)]
                                    pf_pairs -= kq * done + kq * (kq + 1) // 2
                                    batch_tok -= kq
                                    batch_pref -= kq
                                    batch_t[_U(bo + q)] = 0
                            kv = ci[_U(c * S.N_CI + S.C_KV)]
                        else:
                            c = dec_call[_U(last_q)]
                            ndec = n - 1
                            dd = ci[_U(c * S.N_CI + S.C_D)] - (dec_tgt[_U(last_q)] - rnd)
                            ci[_U(c * S.N_CI + S.C_DEC_DONE)] = dd
                            ctx -= ci[_U(c * S.N_CI + S.C_P)] + dd
                            kv = ci[_U(c * S.N_CI + S.C_P)] + dd
                        nrun -= 1
                        kv_used -= kv
                        ci[_U(c * S.N_CI + S.C_KV)] = 0
                        before = ci[_U(c * S.N_CI + S.C_PREF_NEED)] - ci[_U(c * S.N_CI + S.C_PREF_DONE)]
                        need = ci[_U(c * S.N_CI + S.C_P)] + ci[_U(c * S.N_CI + S.C_DEC_DONE)]
                        ci[_U(c * S.N_CI + S.C_PREF_NEED)] = need
                        ci[_U(c * S.N_CI + S.C_PREF_DONE)] = 0
                        extra = need - before
                        backlog += extra
                        tok_recompute += extra
                        ci[_U(c * S.N_CI + S.C_PREEMPT)] += 1
                        preempts += 1
                        ci[_U(c * S.N_CI + S.C_STATE)] = S.ST_WAITING
                        ci[_U(c * S.N_CI + S.C_PREV)] = -1
                        ci[_U(c * S.N_CI + S.C_NEXT)] = s_head
                        if s_head >= 0:
                            ci[_U(s_head * S.N_CI + S.C_PREV)] = c
                        else:
                            s_tail = c
                        s_head = c
                        s_nwait += 1
                        e_nwait += 1
                        want = min(ndec, budget, slots)
                    if want > 0:
                        dec_k = want
                        dec_pos = npe
                        batch_n += want
                        batch_tok += want
                        kv_used += want
                else:
                    # schedulers.prefill_phase, chunked: partly prefilled requests first
                    budget0 = budget_e - batch_tok
                    budget = budget0
                    slots = kmax - batch_n
                    full = False
                    c = pf_head
                    while c >= 0:
                        if budget == 0 or slots == 0:
                            full = True
                            break
                        done = ci[_U(c * S.N_CI + S.C_PREF_DONE)]
                        k = min(ci[_U(c * S.N_CI + S.C_PREF_NEED)] - done, budget)
                        pf_pairs += k * done + k * (k + 1) // 2
                        batch_c[_U(bo + npe)] = c
                        batch_t[_U(bo + npe)] = k
                        npe += 1
                        budget -= k
                        slots -= 1
                        c = ci[_U(c * S.N_CI + S.C_NEXT)]
                    # then admissions, first come first served, while memory allows
                    while not full and budget > 0 and slots > 0:
                        if nrun >= maxrun or s_nwait == 0:
                            break
                        c = s_head
                        need = ci[_U(c * S.N_CI + S.C_PREF_NEED)]
                        # admit only with one free token left per decoding request
                        if kv_used + need + ndec > kv_admit:
                            break
                        # schedulers._admit
                        nn = ci[_U(c * S.N_CI + S.C_NEXT)]
                        s_head = nn
                        if nn >= 0:
                            ci[_U(nn * S.N_CI + S.C_PREV)] = -1
                        else:
                            s_tail = -1
                        s_nwait -= 1
                        e_nwait -= 1
                        ci[_U(c * S.N_CI + S.C_STATE)] = S.ST_PREFILL
                        ci[_U(c * S.N_CI + S.C_KV)] += need
                        kv_used += need
                        if cf[_U(c * S.N_CF + S.F_ADMIT)] < 0.0:
                            cf[_U(c * S.N_CF + S.F_ADMIT)] = t
                        ci[_U(c * S.N_CI + S.C_ASEQ)] = admits
                        admits += 1
                        ci[_U(c * S.N_CI + S.C_PREV)] = pf_tail
                        ci[_U(c * S.N_CI + S.C_NEXT)] = -1
                        if pf_tail >= 0:
                            ci[_U(pf_tail * S.N_CI + S.C_NEXT)] = c
                        else:
                            pf_head = c
                        pf_tail = c
                        nrun += 1
                        k = min(need, budget)
                        # none of its prompt is prefilled yet (an arrival and a preemption
                        # both leave C_PREF_DONE at 0)
                        pf_pairs += k * (k + 1) // 2
                        batch_c[_U(bo + npe)] = c
                        batch_t[_U(bo + npe)] = k
                        npe += 1
                        budget -= k
                        slots -= 1
                    # the phase's chunks counted once: one slot and their tokens each
                    batch_n = kmax - slots
                    batch_tok = budget_e - budget
                    batch_pref += budget0 - budget
            if batch_pref + dec_k == 0:
                status = STALLED
                break
            busy = 1
            iter_start = t
            iter_end = t + _batch_seconds(ei, ef, 0, batch_pref, dec_k, 0)
            units += 1 + npe
        wk0 += units + ncalls - calls0
    # --- store: every counter back in its row ------------------------------------------------
    ei[S.E_NRUN] = nrun
    ei[S.E_KV_USED] = kv_used
    ei[S.E_NWAIT] = e_nwait
    ei[S.E_NDEC] = ndec
    ei[S.E_BUSY] = busy
    ei[S.E_BATCH_N] = batch_n
    ei[S.E_ITERS] = iters
    ei[S.E_BACKLOG] = backlog
    ei[S.E_PREEMPTS] = preempts
    ei[S.E_DEC_HEAD] = dec_head
    ei[S.E_ROUND] = rnd
    ei[S.E_DEC_LB] = dec_lb
    ei[S.E_PF_HEAD] = pf_head
    ei[S.E_PF_TAIL] = pf_tail
    ei[S.E_ADMITS] = admits
    ei[S.E_CTX] = ctx
    ei[S.E_NPE] = npe
    ei[S.E_DEC_K] = dec_k
    ei[S.E_DEC_POS] = dec_pos
    ei[S.E_BATCH_TOK] = batch_tok
    ei[S.E_BATCH_PREF] = batch_pref
    ei[S.E_PF_PAIRS] = pf_pairs
    ef[S.EF_ITER_START] = iter_start
    ef[S.EF_ITER_END] = iter_end
    ef[S.EF_AREA_WAIT] = area_wait
    ef[S.EF_AREA_RUN] = area_run
    ef[S.EF_AREA_BACKLOG] = area_backlog
    ef[S.EF_BUSY_TIME] = busy_time
    si[S.S_HEAD] = s_head
    si[S.S_TAIL] = s_tail
    si[S.S_NWAIT] = s_nwait
    si[S.S_NCOUNT] = s_ncount
    si[S.S_POOL_POS] = pool_pos
    gi[S.G_NCALLS] = ncalls
    gi[S.G_NEXT_JOB] = next_job
    gi[S.G_SEQ] = seq
    gi[S.G_REC_N] = rec_n
    gi[S.G_TOK_IN] = tok_in
    gi[S.G_TOK_DONE] = tok_done
    gi[S.G_TOK_RECOMPUTE] = tok_recompute
    gi[S.G_JOBS_IN] = jobs_in
    gi[S.G_JOBS_DONE] = jobs_done
    gi[S.G_CALLS_DONE] = calls_done
    gi[S.G_DQ_LOW] = dq_low
    gf[S.GF_NOW] = now
    gf[S.GF_T_LAST] = t_last
    gf[S.GF_NEXT_SAMPLE] = next_sample
    gf[S.GF_SAMPLE_DT] = sample_dt
    gf[S.GF_AREA_JOBS] = area_jobs
    wk[0] = wk0
    wk[1] = wk1
    return status
