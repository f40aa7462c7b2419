"""How fast could a kernel for W1 alone be? A bound for issue 12's kernel target.

    python bench/limit_kernel.py              # 1e6 requests, 5 interleaved rounds
    python bench/limit_kernel.py --n 200000 --rounds 3

``w1_kernel`` below simulates one engine running sarathi (or orca) on W1's kind of workload
(Poisson arrivals, one LLM call per request, a constant batch time, a KV cache that never
binds) with the same algorithms as ``llmsim.core.run_kernel`` -- the same event order, the
same chunked prefill and decode phases, the same decode queue of int32 targets with its
vectorized passes and its removal of finished calls from the nearer end -- but with
everything a general network needs taken out: its state lives in local variables, not in
rows of state arrays; no loops over engines and steps, no linked lists of waiting calls
(one FCFS buffer is a range of request ids), no router, join, heap or workflow routing, no
room checks (its arrays are sized for the whole run), no work units, no iteration log, no
pause and resume. Of what the real kernel writes, it writes the request times the results
are built from (created, ready, admitted, first token, finished; the workflow's finish), the
time integrals and the samples; not the rest of a call's row (its state, links, sequence
numbers, KV and token counts), which the real kernel keeps so that a run can pause, resume,
preempt and route. So it is a bound: a W1-only kernel that could replace the general one
would have to write some of that too.

It is checked against ``llmsim`` first: on a 20,000-request W1 run, every time it writes,
every sample and every time integral must be bit-identical to the real kernel's, and the
iteration count the same; then both run the 1e6-request W1 interleaved, and the script
prints each one's simulated requests per wall second and their ratio. The ratio says how
much of the kernel's time is the price of its generality, on this machine, today.
"""
import argparse
import os
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
from numba import njit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
W1 = Path(ROOT) / 'scenarios' / 'w1.toml'

# out_f columns (the real kernel's cf columns it checks against) and scalar results
O_CREATED, O_READY, O_ADMIT, O_FIRST, O_FINISH, O_JOB_FINISH = range(6)
R_ITERS, R_AREA_JOBS, R_AREA_WAIT, R_AREA_RUN, R_AREA_BACKLOG, R_BUSY, R_TOK_DONE, R_REC_N, \
    R_STATUS = range(9)


@njit(cache=True, _nrt=False, error_model='numpy', forceinline=True)
def _shift(x, src, dst, cnt):
    """x[dst:dst + cnt] = x[src:src + cnt], overlapping, in the safe direction (vectorized)."""
    a = x[src:src + cnt]
    b = x[dst:dst + cnt]
    if dst > src:
        for j in range(cnt - 1, -1, -1):
            b[j] = a[j]
    else:
        for j in range(cnt):
            b[j] = a[j]


@njit(cache=True, _nrt=False, error_model='numpy')
def w1_kernel(t_stop, arr, P, D, budget, kmax, kv_cap, kv_admit, bt, decode_first, rec, sample_dt,
              out_f, pdone, dq_call, dq_tgt, fin, bc, btk, res):
    """Simulate one engine (decode_first: sarathi; else orca) until t_stop or until no work
    is left. A decode phase that would need a preemption stops it (status 1): not modelled."""
    n = arr.shape[0]
    cap_rec = rec.shape[0]
    none = np.int32(2 ** 31 - 1)
    t_last = 0.0
    next_sample = 0.0
    rec_n = 0
    nxt = 0       # next arrival; the buffer is [adm, nxt)
    adm = 0       # next request to admit
    pf_lo = 0     # admitted requests still prefilling: [pf_lo, adm)
    busy = False
    iter_end = np.inf
    dlo = 0       # the decode queue: dq_call[dlo:dlo + ndec], in admission order
    ndec = 0
    r = 0         # the round: a decoder with target x has x - r tokens left
    lb = none     # a lower bound of the targets
    kv = 0
    backlog = 0
    nrun = 0
    jobs_in = 0
    iters = 0
    tok_done = 0
    batch_tok = 0
    dec_k = 0
    npe = 0
    a_jobs = a_wait = a_run = a_back = busy_t = 0.0
    while True:
        t = np.inf
        if busy:
            t = iter_end
        if nxt < n and arr[nxt] < t:
            t = arr[nxt]
        if t == np.inf:
            break
        paused = t > t_stop
        ts = t_stop if paused else t
        # samples of the piecewise-constant state, the grid halved when the buffer fills
        while next_sample <= ts:
            if rec_n == cap_rec:
                half = (cap_rec + 1) // 2
                for i in range(half):
                    for j in range(rec.shape[1]):
                        rec[i, j] = rec[2 * i, j]
                rec_n = half
                sample_dt *= 2.0
                next_sample = rec[half - 1, 0] + sample_dt
                if next_sample > ts:
                    break
            rec[rec_n, 0] = next_sample
            rec[rec_n, 1] = jobs_in
            rec[rec_n, 2] = nxt - adm
            rec[rec_n, 3] = nrun
            rec[rec_n, 4] = backlog
            rec[rec_n, 5] = kv
            rec[rec_n, 6] = nxt - adm
            rec[rec_n, 7] = jobs_in
            rec_n += 1
            next_sample += sample_dt
        if paused:
            break
        dt = t - t_last
        if dt > 0.0:
            a_jobs += jobs_in * dt
            a_wait += (nxt - adm) * dt
            a_run += nrun * dt
            a_back += backlog * dt
            if busy:
                busy_t += dt
            t_last = t
        # 1. the iteration ends: decode tokens, finished calls, prefill credits
        if busy and iter_end == t:
            backlog -= batch_tok
            tok_done += batch_tok
            nf = 0
            k = dec_k
            if k > 0:
                first = np.int32(-1)
                last = np.int32(-1)
                if 2 * k <= ndec:
                    r32 = np.int32(r)
                    k32 = np.int32(k)
                    first = k32
                    m = none
                    seg = dq_tgt[dlo:dlo + k]
                    for i in range(k):
                        seg[i] = seg[i] - 1
                        x = seg[i]
                        hit = x == r32
                        first = min(first, np.int32(i) if hit else k32)
                        last = max(last, np.int32(i) if hit else np.int32(-1))
                        m = min(m, x)
                    lb = min(lb, m)
                else:
                    r += 1
                    seg = dq_tgt[dlo + k:dlo + ndec]
                    for i in range(ndec - k):
                        seg[i] = seg[i] + 1
                    if lb <= r:
                        r32 = np.int32(r)
                        n32 = np.int32(ndec)
                        first = n32
                        m = none
                        seg = dq_tgt[dlo:dlo + ndec]
                        for i in range(ndec):
                            x = seg[i]
                            hit = x == r32
                            first = min(first, np.int32(i) if hit else n32)
                            last = max(last, np.int32(i) if hit else np.int32(-1))
                            m = min(m, none if hit else x)
                        lb = m
                if last >= 0:
                    # take the finished ones out of first..last (as llmsim.schedulers does: one or
                    # two dropped each with a vectorized shift, more packed in one pass), the gap
                    # closed from the queue's nearer end; fin in admission order
                    lo_f = dlo + first
                    hi_f = dlo + last
                    nf = 1
                    if last > first:
                        nf += 1
                        mid = dq_tgt[lo_f + 1:hi_f]
                        for i in range(last - first - 1):
                            nf += mid[i] == r
                    from_head = hi_f - dlo <= dlo + ndec - lo_f
                    if nf <= 2:
                        fin[0] = lo_f
                        fin[nf - 1] = hi_f
                        if from_head:
                            for j in range(nf - 1, -1, -1):
                                p = fin[j] + nf - 1 - j
                                fin[j] = dq_call[p]
                                _shift(dq_call, dlo, dlo + 1, p - dlo)
                                _shift(dq_tgt, dlo, dlo + 1, p - dlo)
                                dlo += 1
                        else:
                            for j in range(nf):
                                p = fin[j] - j
                                fin[j] = dq_call[p]
                                _shift(dq_call, p + 1, p, dlo + ndec - j - p - 1)
                                _shift(dq_tgt, p + 1, p, dlo + ndec - j - p - 1)
                    elif from_head:
                        w = hi_f
                        j = nf - 1
                        for i in range(hi_f, lo_f - 1, -1):
                            if dq_tgt[i] == r:
                                fin[j] = dq_call[i]
                                j -= 1
                            else:
                                dq_call[w] = dq_call[i]
                                dq_tgt[w] = dq_tgt[i]
                                w -= 1
                        _shift(dq_call, dlo, dlo + nf, lo_f - dlo)
                        _shift(dq_tgt, dlo, dlo + nf, lo_f - dlo)
                        dlo += nf
                    else:
                        w = lo_f
                        j = 0
                        for i in range(lo_f, hi_f + 1):
                            if dq_tgt[i] == r:
                                fin[j] = dq_call[i]
                                j += 1
                            else:
                                dq_call[w] = dq_call[i]
                                dq_tgt[w] = dq_tgt[i]
                                w += 1
                        _shift(dq_call, hi_f + 1, hi_f + 1 - nf, dlo + ndec - hi_f - 1)
                        _shift(dq_tgt, hi_f + 1, hi_f + 1 - nf, dlo + ndec - hi_f - 1)
                    ndec -= nf
            for i in range(nf):
                c = fin[i]
                out_f[c, O_FINISH] = t
                kv -= P[c] + D[c]
                nrun -= 1
            for j in range(npe):
                c = bc[j]
                pdone[c] += btk[j]
                if pdone[c] == P[c]:
                    if out_f[c, O_FIRST] < 0.0:
                        out_f[c, O_FIRST] = t
                    pf_lo += 1  # prefills complete in admission order
                    dq_call[dlo + ndec] = c
                    x = r + D[c]
                    dq_tgt[dlo + ndec] = x
                    ndec += 1
                    if x < lb:
                        lb = np.int32(x)
            busy = False
            iters += 1
            for i in range(nf):
                out_f[fin[i], O_JOB_FINISH] = t
                jobs_in -= 1
        # 3. arrivals
        while nxt < n and arr[nxt] == t:
            out_f[nxt, O_CREATED] = t
            out_f[nxt, O_READY] = t
            backlog += P[nxt] + D[nxt]
            jobs_in += 1
            nxt += 1
        # 4. an idle engine with work forms its batch
        if not busy and (nxt > adm or nrun > 0):
            bud = budget
            slots = kmax
            npe = 0
            dec_k = 0
            batch_tok = 0
            for phase in range(2):
                if (phase == 0) == decode_first:
                    want = min(ndec, bud, slots)
                    if want > 0:
                        if kv + want > kv_cap:
                            res[R_STATUS] = 1  # would preempt: not modelled here
                            return
                        kv += want
                        dec_k = want
                        bud -= want
                        slots -= want
                        batch_tok += want
                else:
                    stop = False
                    for c in range(pf_lo, adm):
                        if bud == 0 or slots == 0:
                            stop = True
                            break
                        k = min(P[c] - pdone[c], bud)
                        bc[npe] = c
                        btk[npe] = k
                        npe += 1
                        bud -= k
                        slots -= 1
                        batch_tok += k
                    while not stop and bud > 0 and slots > 0 and adm < nxt:
                        c = adm
                        need = P[c]
                        if kv + need + ndec > kv_admit:
                            break
                        out_f[c, O_ADMIT] = t
                        kv += need
                        nrun += 1
                        adm += 1
                        k = min(need, bud)
                        bc[npe] = c
                        btk[npe] = k
                        npe += 1
                        bud -= k
                        slots -= 1
                        batch_tok += k
            if batch_tok == 0:
                res[R_STATUS] = 2
                return
            busy = True
            iter_end = t + bt
    res[R_ITERS] = iters
    res[R_AREA_JOBS] = a_jobs
    res[R_AREA_WAIT] = a_wait
    res[R_AREA_RUN] = a_run
    res[R_AREA_BACKLOG] = a_back
    res[R_BUSY] = busy_t
    res[R_TOK_DONE] = tok_done
    res[R_REC_N] = rec_n
    res[R_STATUS] = 0


class W1Run:
    """The inputs of a llmsim W1 Simulation (the same draws) and the arrays w1_kernel writes."""

    def __init__(self, sim):
        import llmsim.state as S
        self.n = n = len(sim.jf)
        self.arr = np.ascontiguousarray(sim.jf[:, S.JF_ARRIVAL])
        self.P = sim.pool_p[:n].copy()
        self.D = sim.pool_d[:n].copy()
        self.budget, self.kmax = int(sim.ei[0, S.E_BUDGET]), int(sim.ei[0, S.E_KMAX])
        self.kv_cap = int(sim.ei[0, S.E_KV_CAP])
        self.kv_admit = self.kv_cap - int(sim.ei[0, S.E_WATERMARK])  # an admission leaves the watermark free
        self.t_stop = float(sim.end_time)
        self.bt = float(sim.ef[0, S.EF_BT0])
        self.decode_first = int(sim.ei[0, S.E_SCHED]) == 3
        self.rec_shape = sim.rec.shape
        self.sample_dt = float(sim.gf[S.GF_SAMPLE_DT])
        self.alloc()

    def alloc(self):
        n = self.n
        self.rec = np.zeros(self.rec_shape)
        self.out_f = np.full((n, 6), -1.0)
        self.out_f[:, O_JOB_FINISH] = np.nan  # as llmsim's workflow table starts
        self.pdone = np.zeros(n, np.int64)
        self.dq_call = np.zeros(n + 1, np.int64)
        self.dq_tgt = np.zeros(n + 1, np.int32)
        self.fin = np.zeros(n + 1, np.int64)
        self.bc = np.zeros(self.kmax + 1, np.int64)
        self.btk = np.zeros(self.kmax + 1, np.int64)
        self.res = np.zeros(9)
        for a in (self.out_f, self.pdone, self.dq_call, self.dq_tgt, self.fin):
            a.reshape(-1)[::512] = a.reshape(-1)[::512]  # touched: page faults outside the timing

    def run(self):
        w1_kernel(self.t_stop, self.arr, self.P, self.D, self.budget, self.kmax, self.kv_cap, self.kv_admit, self.bt,
                  self.decode_first, self.rec, self.sample_dt, self.out_f, self.pdone,
                  self.dq_call, self.dq_tgt, self.fin, self.bc, self.btk, self.res)
        if self.res[R_STATUS] != 0:
            raise RuntimeError(f'w1_kernel stopped with status {self.res[R_STATUS]:.0f}')


# orca on W1 preempts (its decode queue grows without bound: W1 is above orca's capacity), which
# w1_kernel does not model; with a KV cache no run here can fill, it never does
CASES = {'sarathi': {}, 'orca': {'scheduler': 'orca', 'kv_cache_tokens': 200_000_000}}


def w1_scenario(case, n):
    """W1 (scenarios/w1.toml) with n requests and the case's engine settings."""
    import llmsim
    d = tomllib.loads(W1.read_text())
    d['workload']['num_requests'] = n
    d['engine'].update(CASES[case])
    return llmsim.scenario_from_table(d)


def differences(sim, w):
    """What differs between a llmsim Simulation run to its end and a W1Run of it: a list of
    messages, empty when every time, iteration count, time integral and sample is identical."""
    import llmsim.state as S
    n, out = w.n, []
    for o, f in ((O_CREATED, S.F_CREATED), (O_READY, S.F_READY), (O_ADMIT, S.F_ADMIT),
                 (O_FIRST, S.F_FIRST), (O_FINISH, S.F_FINISH)):
        bad = np.flatnonzero(w.out_f[:, o] != sim.cf[:n, f])
        if len(bad):
            out.append(f'call column {f}: {len(bad)} requests differ, the first {bad[:5]}')
    if not np.array_equal(w.out_f[:, O_JOB_FINISH], sim.jf[:n, S.JF_FINISH], equal_nan=True):
        out.append('workflow finish times differ')
    if int(w.res[R_ITERS]) != int(sim.ei[0, S.E_ITERS]):
        out.append(f'{w.res[R_ITERS]:.0f} iterations against {sim.ei[0, S.E_ITERS]}')
    for k, v in ((R_AREA_JOBS, sim.gf[S.GF_AREA_JOBS]), (R_AREA_WAIT, sim.ef[0, S.EF_AREA_WAIT]),
                 (R_AREA_RUN, sim.ef[0, S.EF_AREA_RUN]), (R_AREA_BACKLOG, sim.ef[0, S.EF_AREA_BACKLOG]),
                 (R_BUSY, sim.ef[0, S.EF_BUSY_TIME]), (R_TOK_DONE, sim.gi[S.G_TOK_DONE])):
        if w.res[k] != v:
            out.append(f'result {k}: {w.res[k]!r} against {v!r}')
    m = int(w.res[R_REC_N])
    if m != int(sim.gi[S.G_REC_N]) or not np.array_equal(w.rec[:m], sim.rec[:m]):
        out.append('samples differ')
    return out


def check(case, n, single=False):
    """Run llmsim (its general kernel; with `single`, the single-engine kernel of
    llmsim/_single.py) and w1_kernel on the same draws; raise if anything differs. Returns the
    iteration count."""
    import llmsim
    sim = llmsim.Simulation(w1_scenario(case, n))
    sim.single_kernel = None if single else False
    w = W1Run(sim)
    sim.advance()
    assert sim.single_kernel == single
    w.run()
    diff = differences(sim, w)
    if diff:
        raise AssertionError(f'{case}, {n:,} requests: ' + '; '.join(diff))
    return int(w.res[R_ITERS])


KERNELS = {False: 'general', True: 'single-engine'}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--n', type=int, default=1_000_000)
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--check-n', type=int, default=20_000)
    a = ap.parse_args()
    import llmsim
    t = time.perf_counter()
    for case in CASES:
        for single in (False, True):
            it = check(case, a.check_n, single)
            print(f'{case}: w1_kernel matches llmsim\'s {KERNELS[single]} kernel bit for bit on '
                  f'{a.check_n:,} requests ({it:,} iterations; every time written, sample and time integral)')
    print(f'(compile and check {time.perf_counter() - t:.1f} s)')
    for case in CASES:
        real = {False: [], True: []}
        lim = []
        for _ in range(a.rounds):
            for single in (False, True):
                sim = llmsim.Simulation(w1_scenario(case, a.n))
                sim.single_kernel = single
                t = time.perf_counter()
                sim.advance()
                real[single].append(time.perf_counter() - t)
                del sim
            w = W1Run(llmsim.Simulation(w1_scenario(case, a.n)))
            t = time.perf_counter()
            w.run()
            lim.append(time.perf_counter() - t)
            del w
        bl = min(lim)
        parts = []
        for single in (False, True):
            br = min(real[single])
            ratios = sorted(x / y for x, y in zip(real[single], lim))
            parts.append(f'{KERNELS[single]} {a.n / br / 1e6:5.2f} M (x {br / bl:.2f} / {ratios[len(ratios) // 2]:.2f})')
        print(f'{case:8s} {a.n:>10,}: w1_kernel {a.n / bl / 1e6:5.2f} M requests/s; llmsim: ' + ', '.join(parts)
              + f'  (time / w1_kernel\'s: best / median of {a.rounds})')


if __name__ == '__main__':
    main()
