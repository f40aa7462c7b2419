"""The batch-forming schedulers of SPEC.md §2, built from two phases.

Every scheduler is one Numba function of the engine's state that returns its plan for
the next iteration: which of the two shared phases below run, in which order, and whether
prefill may be chunked (``form_batch`` runs them):

- ``decode_phase``: one decode token per decoding request, oldest admission first, up to
  the remaining budget and batch slots; under grow-on-demand memory it first frees KV
  memory by preempting the most recently admitted request (recompute preemption);
- ``prefill_phase``: prefill work, partly prefilled requests first (admission order), then
  admissions from the waiting buffers in the engine's policy order, chunked to the
  remaining budget or whole-prompt-only.

A batch is its prefill entries (explicit: call and tokens in ``batch_c``/``batch_t``) and
its decode tokens, which are implicit: decode service is always the first E_DEC_K
decoders in admission order, so a count is enough. That and the decode queue below make
an iteration cost O(1) plus its prefill entries when every decoder is served (one
vectorized pass over part of the queue when only some are), not O(decoding requests):
that is what lets the kernel simulate millions of requests per second.

Adding a scheduler: write one plan function like ``sarathi`` below (decorated like it: it
runs every iteration, so it is inlined), add one ``elif`` to ``form_batch`` and one line to
``SCHEDULERS``. A scheduler that serves decoders other than oldest-first needs explicit
decode entries (see ``decode_phase``).
"""

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numba import njit

from llmsim import state as S
from llmsim.errors import ConfigError


class Scheduler(IntEnum):
    FASTERTRANSFORMER = 0
    VLLM = 1
    ORCA = 2
    SARATHI = 3


@dataclass(frozen=True)
class SchedulerInfo:
    code: Scheduler
    work_conserving: bool   # fills every iteration as far as the work present allows
    chunked_prefill: bool   # may split a prompt over iterations
    reserve_full: bool      # reserves prompt+output memory at admission (no preemption)
    summary: str


SCHEDULERS = {
    "fastertransformer": SchedulerInfo(
        Scheduler.FASTERTRANSFORMER, False, False, True,
        "decode-first, never mixed: a prefill batch of whole prompts only when nothing decodes"),
    "vllm": SchedulerInfo(
        Scheduler.VLLM, False, False, False,
        "prefill-first, never mixed, never chunked (vanilla vLLM)"),
    "orca": SchedulerInfo(
        Scheduler.ORCA, True, True, False,
        "prefill-first mixed: prefill chunks fill the budget, decodes take the rest"),
    "sarathi": SchedulerInfo(
        Scheduler.SARATHI, True, True, False,
        "decode-first mixed with chunked prefill (Sarathi-Serve)"),
}


def scheduler_info(name: str) -> SchedulerInfo:
    """Look a scheduler up by name; unknown names list the valid ones."""
    try:
        return SCHEDULERS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"scheduler: unknown value {name!r}; allowed: {', '.join(SCHEDULERS)}") from None


# ------------------------------------------------------------------- running calls
#
# An engine's admitted calls live in two structures, each in admission order (C_ASEQ):
# - the prefill list: calls whose prefill is unfinished, linked through C_NEXT/C_PREV
#   (free while a call runs: they link waiting lists). Chunked prefill completes in
#   admission order, so it holds at most a batch's prefill entries plus one;
# - the decode queue: decoding calls, a dense segment of dec_call/dec_tgt (call id, int64;
#   target round, int32: see state.ROUND_REBASE) at E_DEC_HEAD within the engine's region
#   [E_RUN_OFF, E_RUN_OFF + E_RUN_CAP).
#   Dense and in order, because every iteration serves a prefix of it.
# Decode tokens are counted in rounds, not per call: a decoder's remaining tokens are its
# target - E_ROUND. An iteration serving every decoder just advances the round. One
# serving only the first k (budget or max_batch_size binds) shifts the smaller side: the
# served prefix's targets -1, or the round +1 and the unserved suffix's targets +1. E_DEC_LB
# is a lower bound of the targets, so the queue is scanned for finished calls only when
# one may have finished.
#
# The loops over the queue run over slices (``seg = dec_tgt[a:b]; seg[i]``): Numba
# vectorizes those, not loops indexing an array with a possibly negative int, and that
# makes them 5-10 times faster.


@njit(cache=True, _nrt=False, error_model='numpy')
def _shift(x, src, dst, cnt):
    """x[dst:dst + cnt] = x[src:src + cnt] for ranges that may overlap (copying in the
    safe direction; a slice assignment would need a temporary array)."""
    a = x[src:src + cnt]
    b = x[dst:dst + cnt]
    if dst > src:
        for j in range(cnt - 1, -1, -1):
            b[j] = a[j]
    else:
        for j in range(cnt):
            b[j] = a[j]


@njit(cache=True, _nrt=False, error_model='numpy')
def _pf_append(ci, ei, e, c):
    t = ei[e * S.N_EI + S.E_PF_TAIL]
    ci[c * S.N_CI + S.C_PREV] = t
    ci[c * S.N_CI + S.C_NEXT] = -1
    if t >= 0:
        ci[t * S.N_CI + S.C_NEXT] = c
    else:
        ei[e * S.N_EI + S.E_PF_HEAD] = c
    ei[e * S.N_EI + S.E_PF_TAIL] = c


@njit(cache=True, _nrt=False, error_model='numpy')
def pf_unlink(ci, ei, e, c):
    p = ci[c * S.N_CI + S.C_PREV]
    n = ci[c * S.N_CI + S.C_NEXT]
    if p >= 0:
        ci[p * S.N_CI + S.C_NEXT] = n
    else:
        ei[e * S.N_EI + S.E_PF_HEAD] = n
    if n >= 0:
        ci[n * S.N_CI + S.C_PREV] = p
    else:
        ei[e * S.N_EI + S.E_PF_TAIL] = p
    ci[c * S.N_CI + S.C_NEXT] = -1
    ci[c * S.N_CI + S.C_PREV] = -1


@njit(cache=True, _nrt=False, error_model='numpy', forceinline=True)
def dq_push(ci, ei, e, dec_call, dec_tgt, c):
    """Call c (C_DEC_DONE up to date) starts decoding: insert it in admission order."""
    off = ei[e * S.N_EI + S.E_RUN_OFF]
    h = ei[e * S.N_EI + S.E_DEC_HEAD]
    n = ei[e * S.N_EI + S.E_NDEC]
    if h + n == ei[e * S.N_EI + S.E_RUN_CAP]:
        # the queue drifts right (appends at the tail, finished calls leave near the
        # head); slide it back to the region start. The region is kept at least twice
        # the queue (core._low_room), so this is amortized O(1)
        _shift(dec_call, off + h, off, n)
        _shift(dec_tgt, off + h, off, n)
        h = 0
        ei[e * S.N_EI + S.E_DEC_HEAD] = 0
    lo = off + h
    pos = lo + n
    seq = ci[c * S.N_CI + S.C_ASEQ]
    # prefills complete in admission order, so this normally appends without a shift
    while pos > lo and ci[(dec_call[pos - 1]) * S.N_CI + S.C_ASEQ] > seq:
        dec_call[pos] = dec_call[pos - 1]
        dec_tgt[pos] = dec_tgt[pos - 1]
        pos -= 1
    tgt = ei[e * S.N_EI + S.E_ROUND] + ci[c * S.N_CI + S.C_D] - ci[c * S.N_CI + S.C_DEC_DONE]
    dec_call[pos] = c
    dec_tgt[pos] = tgt
    ei[e * S.N_EI + S.E_NDEC] = n + 1
    ei[e * S.N_EI + S.E_CTX] += ci[c * S.N_CI + S.C_P] + ci[c * S.N_CI + S.C_DEC_DONE]
    if tgt < ei[e * S.N_EI + S.E_DEC_LB]:
        ei[e * S.N_EI + S.E_DEC_LB] = tgt


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def round_blocks(x, b):
    """x tokens rounded up to whole KV blocks of b tokens (paged attention allocates
    blocks; b = 1 is token granularity). b = 1 skips the division: a 64-bit division per
    admission and per finished call was a measurable part of a W1 run."""
    if b == 1:
        return x
    return (x + b - 1) // b * b


@njit(cache=True, _nrt=False, error_model='numpy')
def decoder_kv(ci, ei, e, c):
    """KV tokens held by a call leaving the decode queue (C_DEC_DONE up to date): its
    reservation, or, grown on demand, what its prefill allocated (prompt + tokens decoded
    before a preemption) plus one per decode step since: prompt + tokens decoded, rounded
    up to whole blocks."""
    if ei[e * S.N_EI + S.E_RESERVE_FULL] == 1:
        return ci[c * S.N_CI + S.C_KV]
    return round_blocks(ci[c * S.N_CI + S.C_P] + ci[c * S.N_CI + S.C_DEC_DONE], ei[e * S.N_EI + S.E_BLOCK])


@njit(cache=True, _nrt=False, error_model='numpy')
def _drop(ei, e, dec_call, dec_tgt, p, from_head):
    """Remove position p from engine e's decode queue, the part before it moving right
    (from_head) or the part after it moving left."""
    lo = ei[e * S.N_EI + S.E_RUN_OFF] + ei[e * S.N_EI + S.E_DEC_HEAD]
    n = ei[e * S.N_EI + S.E_NDEC]
    if from_head:
        _shift(dec_call, lo, lo + 1, p - lo)
        _shift(dec_tgt, lo, lo + 1, p - lo)
        ei[e * S.N_EI + S.E_DEC_HEAD] += 1
    else:
        _shift(dec_call, p + 1, p, lo + n - p - 1)
        _shift(dec_tgt, p + 1, p, lo + n - p - 1)
    ei[e * S.N_EI + S.E_NDEC] = n - 1


@njit(cache=True, _nrt=False, error_model='numpy', forceinline=True)
def _remove_finished(ei, e, dec_call, dec_tgt, first, last, nf, r, fin):
    """Move the nf decoders whose target is r (finished; at positions first..last) from
    engine e's queue into fin, in admission order, the gap closed from the queue's nearer
    end. One or two (the usual case): each dropped with a vectorized shift (the one-pass
    packing for those too ran orca's W1 2-3% slower: a scalar loop over the span). More: one pass
    over first..last packs the others together, then one shift closes the gap -- linear in
    the queue, where dropping them one by one was quadratic (65,536 decoders finishing at
    one instant, a trace of equal requests arriving together: minutes in the Python tier)."""
    lo = ei[e * S.N_EI + S.E_RUN_OFF] + ei[e * S.N_EI + S.E_DEC_HEAD]
    n = ei[e * S.N_EI + S.E_NDEC]
    from_head = last - lo <= lo + n - first
    if nf <= 2:
        fin[0] = first  # positions, then replaced by the calls
        fin[nf - 1] = last
        if from_head:  # last one first: each removal moves the earlier ones one right
            for j in range(nf - 1, -1, -1):
                p = fin[j] + nf - 1 - j
                fin[j] = dec_call[p]
                _drop(ei, e, dec_call, dec_tgt, p, from_head)
        else:  # first one first: each removal moves the later ones one left
            for j in range(nf):
                p = fin[j] - j
                fin[j] = dec_call[p]
                _drop(ei, e, dec_call, dec_tgt, p, from_head)
        return
    if from_head:
        # pack the others towards last (walking back), then move the head part right
        w = last
        j = nf - 1
        for i in range(last, first - 1, -1):
            if dec_tgt[i] == r:
                fin[j] = dec_call[i]
                j -= 1
            else:
                dec_call[w] = dec_call[i]
                dec_tgt[w] = dec_tgt[i]
                w -= 1
        _shift(dec_call, lo, lo + nf, first - lo)
        _shift(dec_tgt, lo, lo + nf, first - lo)
        ei[e * S.N_EI + S.E_DEC_HEAD] += nf
    else:
        # pack the others towards first, then move the tail part left
        w = first
        j = 0
        for i in range(first, last + 1):
            if dec_tgt[i] == r:
                fin[j] = dec_call[i]
                j += 1
            else:
                dec_call[w] = dec_call[i]
                dec_tgt[w] = dec_tgt[i]
                w += 1
        _shift(dec_call, last + 1, last + 1 - nf, lo + n - last - 1)
        _shift(dec_tgt, last + 1, last + 1 - nf, lo + n - last - 1)
    ei[e * S.N_EI + S.E_NDEC] = n - nf


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def serve_decoders(ei, e, dec_call, dec_tgt, fin):
    """The iteration's decode tokens (the first E_DEC_K decoders, one each) are done:
    advance their counts and move the calls that finished into fin, in admission order;
    returns how many. C_DEC_DONE of the finished calls is not yet updated. The vectorized
    pass that moves the targets also finds the first and last finished call; those between
    are counted after it. The pass keeps to int32, the queue's type (Numba widens int32
    arithmetic to int64, so targets are compared as stored and positions taken as
    np.int32): twice the targets per vector instruction."""
    k = ei[e * S.N_EI + S.E_DEC_K]
    if k == 0:
        return 0
    n = ei[e * S.N_EI + S.E_NDEC]
    lo = ei[e * S.N_EI + S.E_RUN_OFF] + ei[e * S.N_EI + S.E_DEC_HEAD]
    r = ei[e * S.N_EI + S.E_ROUND]
    ei[e * S.N_EI + S.E_CTX] += k
    none = np.int32(S.TGT_NONE32)
    if 2 * k <= n:
        # the served prefix is the smaller side: its targets come one round closer
        r32 = np.int32(r)
        k32 = np.int32(k)
        first = k32
        last = np.int32(-1)
        m = none
        seg = dec_tgt[lo:lo + k]
        for i in range(k):
            seg[i] = seg[i] - 1
            x = seg[i]
            hit = x == r32  # remaining 0: finished
            first = min(first, np.int32(i) if hit else k32)
            last = max(last, np.int32(i) if hit else np.int32(-1))
            m = min(m, x)
        # the suffix is unchanged and was >= the bound; m bounds the prefix (m = r when
        # a call finished: the next full scan makes the bound exact again)
        ei[e * S.N_EI + S.E_DEC_LB] = min(ei[e * S.N_EI + S.E_DEC_LB], m)
    else:
        # everyone served, or the unserved suffix is the smaller side: next round, and
        # the suffix's targets move one round later
        r += 1
        if r == S.ROUND_REBASE:
            r = _rebase_rounds(ei, e, dec_tgt, lo, n, r)
        ei[e * S.N_EI + S.E_ROUND] = r
        seg = dec_tgt[lo + k:lo + n]
        for i in range(n - k):
            seg[i] = seg[i] + 1
        if ei[e * S.N_EI + S.E_DEC_LB] > r:
            return 0
        # a call may have finished: scan the whole queue, which makes the bound exact
        r32 = np.int32(r)
        n32 = np.int32(n)
        first = n32
        last = np.int32(-1)
        m = none
        seg = dec_tgt[lo:lo + n]
        for i in range(n):
            x = seg[i]
            hit = x == r32
            first = min(first, np.int32(i) if hit else n32)
            last = max(last, np.int32(i) if hit else np.int32(-1))
            m = min(m, none if hit else x)
        ei[e * S.N_EI + S.E_DEC_LB] = m
    # how many finished: first and last, and those between them (the pass above keeps to three
    # int32 reductions: counting there too, an int64 sum, made it twice as slow)
    nf = n - n  # 0 typed int64: a literal 0 here made Numba compile _remove_finished twice
    if last >= 0:
        nf += 1
        if last > first:
            nf += 1
            mid = dec_tgt[lo + first + 1:lo + last]
            for i in range(last - first - 1):
                nf += mid[i] == r
        _remove_finished(ei, e, dec_call, dec_tgt, lo + first, lo + last, nf, r, fin)
    return nf


@njit(cache=True, _nrt=False, error_model='numpy')
def _rebase_rounds(ei, e, dec_tgt, lo, n, r):
    """Engine e's round reached S.ROUND_REBASE: count rounds from 0 again (every target
    and the bound less r; remaining tokens, target - round, are unchanged), so the int32
    targets never overflow. Returns the new round, 0."""
    seg = dec_tgt[lo:lo + n]
    for i in range(n):
        seg[i] = seg[i] - r
    ei[e * S.N_EI + S.E_DEC_LB] -= r
    return r - r


@njit(cache=True, _nrt=False, error_model='numpy')
def _decode_context(ci, ei, e, dec_call, dec_tgt):
    """Context tokens (prompt + tokens decoded: the KV cache) of this batch's decoders, for the affine
    batch time: the running total when all decode, else summed over the smaller side."""
    k = ei[e * S.N_EI + S.E_DEC_K]
    n = ei[e * S.N_EI + S.E_NDEC]
    if k == n:
        return ei[e * S.N_EI + S.E_CTX]
    lo = ei[e * S.N_EI + S.E_RUN_OFF] + ei[e * S.N_EI + S.E_DEC_HEAD]
    r = ei[e * S.N_EI + S.E_ROUND]
    a, b = (lo, lo + k) if 2 * k <= n else (lo + k, lo + n)
    part = 0
    for i in range(a, b):
        c = dec_call[i]
        part += ci[c * S.N_CI + S.C_P] + ci[c * S.N_CI + S.C_D] - (dec_tgt[i] - r)
    return part if 2 * k <= n else ei[e * S.N_EI + S.E_CTX] - part


# --------------------------------------------------------------------------- helpers


@njit(cache=True, _nrt=False, error_model='numpy')
def _pairs(done, k):
    """Causal attention pairs of a prefill chunk of k tokens after `done` prefilled ones:
    token i of the chunk attends to done + i + 1 tokens. Over a whole prompt of P tokens,
    however chunked, the chunks' pairs add up to P(P+1)/2."""
    return k * done + k * (k + 1) // 2


@njit(cache=True, _nrt=False, error_model='numpy')
def _add(ci, batch_c, batch_t, ei, e, c, tokens):
    """Append a prefill entry to engine e's batch."""
    ei[e * S.N_EI + S.E_PF_PAIRS] += _pairs(ci[c * S.N_CI + S.C_PREF_DONE], tokens)
    k = ei[e * S.N_EI + S.E_BATCH_OFF] + ei[e * S.N_EI + S.E_NPE]
    batch_c[k] = c
    batch_t[k] = tokens
    ei[e * S.N_EI + S.E_NPE] += 1
    ei[e * S.N_EI + S.E_BATCH_N] += 1
    ei[e * S.N_EI + S.E_BATCH_TOK] += tokens
    ei[e * S.N_EI + S.E_BATCH_PREF] += tokens


@njit(cache=True, _nrt=False, error_model='numpy', forceinline=True)
def pick_step(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route):
    """The buffer at engine e whose head is admitted next, by the engine's policy
    (e_steps lists each engine's steps in priority-rank order); -1 if none waits."""
    a = e_steps_ptr[e]
    b = e_steps_ptr[e + 1]
    if b - a == 1:
        s = e_steps[a]
        return s if si[s * S.N_SI + S.S_NWAIT] > 0 else -1
    pol = ei[e * S.N_EI + S.E_POLICY]
    best = -1
    if pol == S.POL_PRIORITY or pol == S.POL_STRICT:
        for k in range(a, b):
            s = e_steps[k]
            if si[s * S.N_SI + S.S_NWAIT] > 0:
                return s
    elif pol == S.POL_FCFS:
        best_seq = -1
        for k in range(a, b):
            s = e_steps[k]
            if si[s * S.N_SI + S.S_NWAIT] > 0:
                seq = ci[(si[s * S.N_SI + S.S_HEAD]) * S.N_CI + S.C_SEQ]
                if best < 0 or seq < best_seq:
                    best = s
                    best_seq = seq
    else:  # max-pressure (Dai & Lin): mu_s * (Q_s - sum_j R[s, j] Q_j)
        best_w = 0.0
        n_s = si.shape[0] // S.N_SI
        for k in range(a, b):
            s = e_steps[k]
            if si[s * S.N_SI + S.S_NWAIT] > 0:
                w = float(si[s * S.N_SI + S.S_NCOUNT])
                for j in range(n_s):
                    r = mp_route[s, j]
                    if r != 0.0:
                        w -= r * si[j * S.N_SI + S.S_NCOUNT]
                w *= sf[s * S.N_SF + S.SF_MU]
                if best < 0 or w > best_w:
                    best = s
                    best_w = w
    return best


@njit(cache=True, _nrt=False, error_model='numpy')
def _admit(ci, cf, si, ei, e, s, t, mem):
    c = si[s * S.N_SI + S.S_HEAD]
    nxt = ci[c * S.N_CI + S.C_NEXT]
    si[s * S.N_SI + S.S_HEAD] = nxt
    if nxt >= 0:
        ci[nxt * S.N_CI + S.C_PREV] = -1
    else:
        si[s * S.N_SI + S.S_TAIL] = -1
    si[s * S.N_SI + S.S_NWAIT] -= 1
    ei[e * S.N_EI + S.E_NWAIT] -= 1
    ci[c * S.N_CI + S.C_STATE] = S.ST_PREFILL
    ci[c * S.N_CI + S.C_KV] += mem
    ei[e * S.N_EI + S.E_KV_USED] += mem
    if cf[c * S.N_CF + S.F_ADMIT] < 0.0:
        cf[c * S.N_CF + S.F_ADMIT] = t
    ci[c * S.N_CI + S.C_ASEQ] = ei[e * S.N_EI + S.E_ADMITS]
    if ei[e * S.N_EI + S.E_POLICY] == S.POL_STRICT:
        # strict class priority: the decode queue (ordered by C_ASEQ) serves the highest
        # class first, and preemption takes the lowest class's newest request first
        ci[c * S.N_CI + S.C_ASEQ] += si[s * S.N_SI + S.S_RANK] << S.STRICT_SHIFT
    ei[e * S.N_EI + S.E_ADMITS] += 1
    _pf_append(ci, ei, e, c)
    ei[e * S.N_EI + S.E_NRUN] += 1
    return c


@njit(cache=True, _nrt=False, error_model='numpy')
def _log_preempt(gi, ei, e, c, lost, t, logi, logf):
    """The iteration log's row for a preemption: a call, not inlined into the decode phase
    (it runs only with a log; W1's instructions per request stay as they were, bench/README.md
    round 26). Room: core._log_low counts every running request as a possible preemption."""
    r = gi[S.G_LOG_N]
    logi[r, 0] = ei[e * S.N_EI + S.E_ITERS]
    logi[r, 1] = e
    logi[r, 2] = c
    logi[r, 3] = lost
    logi[r, 4] = S.PH_PREEMPT
    logf[r, 0] = t
    logf[r, 1] = t
    gi[S.G_LOG_N] = r + 1


@njit(cache=True, _nrt=False, error_model='numpy', forceinline=True)
def preempt_newest(ci, si, ei, gi, e, t, dec_call, dec_tgt, batch_c, batch_t, logi, logf):
    """Recompute preemption: drop the most recently admitted request's KV cache and put
    it back at the front of its buffer; it must prefill its prompt plus the tokens it had
    generated again. A batch entry it already had this iteration is voided (only prefill
    entries can exist: decode_phase preempts before it serves). With an iteration log, the
    preemption is a row of its own (phase PH_PREEMPT, at t, the iteration being formed, the
    computed tokens it loses: what it must recompute beyond the work it had left)."""
    pf = ei[e * S.N_EI + S.E_PF_TAIL]
    if ei[e * S.N_EI + S.E_POLICY] == S.POL_STRICT:  # the prefilling request of the lowest class, newest
        x = ei[e * S.N_EI + S.E_PF_HEAD]
        while x >= 0:
            if ci[x * S.N_CI + S.C_ASEQ] > ci[pf * S.N_CI + S.C_ASEQ]:
                pf = x
            x = ci[x * S.N_CI + S.C_NEXT]
    n = ei[e * S.N_EI + S.E_NDEC]
    last = ei[e * S.N_EI + S.E_RUN_OFF] + ei[e * S.N_EI + S.E_DEC_HEAD] + n - 1
    if pf >= 0 and (n == 0 or ci[pf * S.N_CI + S.C_ASEQ] > ci[(dec_call[last]) * S.N_CI + S.C_ASEQ]):
        c = pf
        pf_unlink(ci, ei, e, c)
        bo = ei[e * S.N_EI + S.E_BATCH_OFF]
        for k in range(ei[e * S.N_EI + S.E_NPE]):
            if batch_c[bo + k] == c:
                ei[e * S.N_EI + S.E_PF_PAIRS] -= _pairs(ci[c * S.N_CI + S.C_PREF_DONE], batch_t[bo + k])
                ei[e * S.N_EI + S.E_BATCH_TOK] -= batch_t[bo + k]
                ei[e * S.N_EI + S.E_BATCH_PREF] -= batch_t[bo + k]
                batch_t[bo + k] = 0
        kv = ci[c * S.N_CI + S.C_KV]
    else:
        c = dec_call[last]
        ei[e * S.N_EI + S.E_NDEC] = n - 1
        ci[c * S.N_CI + S.C_DEC_DONE] = ci[c * S.N_CI + S.C_D] - (dec_tgt[last] - ei[e * S.N_EI + S.E_ROUND])
        ei[e * S.N_EI + S.E_CTX] -= ci[c * S.N_CI + S.C_P] + ci[c * S.N_CI + S.C_DEC_DONE]
        kv = decoder_kv(ci, ei, e, c)
    ei[e * S.N_EI + S.E_NRUN] -= 1
    ei[e * S.N_EI + S.E_KV_USED] -= kv
    ci[c * S.N_CI + S.C_KV] = 0
    before = ci[c * S.N_CI + S.C_PREF_NEED] - ci[c * S.N_CI + S.C_PREF_DONE]
    ci[c * S.N_CI + S.C_PREF_NEED] = ci[c * S.N_CI + S.C_P] + ci[c * S.N_CI + S.C_DEC_DONE]
    ci[c * S.N_CI + S.C_PREF_DONE] = 0
    extra = ci[c * S.N_CI + S.C_PREF_NEED] - before
    ei[e * S.N_EI + S.E_BACKLOG] += extra
    gi[S.G_TOK_RECOMPUTE] += extra
    if gi[S.G_LOG_CAP] > 0:
        _log_preempt(gi, ei, e, c, extra, t, logi, logf)
    ci[c * S.N_CI + S.C_PREEMPT] += 1
    ei[e * S.N_EI + S.E_PREEMPTS] += 1
    ci[c * S.N_CI + S.C_STATE] = S.ST_WAITING
    s = ci[c * S.N_CI + S.C_STEP]
    head = si[s * S.N_SI + S.S_HEAD]
    ci[c * S.N_CI + S.C_PREV] = -1
    ci[c * S.N_CI + S.C_NEXT] = head
    if head >= 0:
        ci[head * S.N_CI + S.C_PREV] = c
    else:
        si[s * S.N_SI + S.S_TAIL] = c
    si[s * S.N_SI + S.S_HEAD] = c
    si[s * S.N_SI + S.S_NWAIT] += 1
    ei[e * S.N_EI + S.E_NWAIT] += 1


@njit(cache=True, _nrt=False, error_model='numpy')
def _decode_kv_need(ci, ei, e, dec_call, dec_tgt, want):
    """KV tokens the first `want` decoders' next tokens take: one each at token
    granularity; with blocks of B > 1 tokens, a new block for each decoder whose KV
    (prompt + tokens decoded) fills its last block exactly (a pass over the served
    decoders: only with block_size > 1)."""
    b = ei[e * S.N_EI + S.E_BLOCK]
    if b == 1 or want <= 0:
        return want
    lo = ei[e * S.N_EI + S.E_RUN_OFF] + ei[e * S.N_EI + S.E_DEC_HEAD]
    r = ei[e * S.N_EI + S.E_ROUND]
    need = 0
    for i in range(lo, lo + want):
        c = dec_call[i]
        kv = ci[c * S.N_CI + S.C_P] + ci[c * S.N_CI + S.C_D] - (dec_tgt[i] - r)
        if kv % b == 0:
            need += b
    return need


@njit(cache=True, _nrt=False, error_model='numpy', forceinline=True)
def decode_phase(ci, si, ei, gi, e, t, dec_call, dec_tgt, batch_c, batch_t, logi, logf):
    """One decode token for each decoding request, oldest admission first, within the
    budget and batch slots left: the first E_DEC_K decoders of the decode queue (their
    counts advance when the iteration ends: ``serve_decoders``)."""
    budget = ei[e * S.N_EI + S.E_BUDGET] - ei[e * S.N_EI + S.E_BATCH_TOK]
    slots = ei[e * S.N_EI + S.E_KMAX] - ei[e * S.N_EI + S.E_BATCH_N]
    want = min(ei[e * S.N_EI + S.E_NDEC], budget, slots)
    grow = ei[e * S.N_EI + S.E_RESERVE_FULL] == 0
    need = want
    if grow:
        # block_size 1 (the default): one KV token per decode step, no call (the call
        # alone, with its array arguments, cost more than the rest of the decode phase)
        blocks = ei[e * S.N_EI + S.E_BLOCK] > 1
        if blocks:
            need = _decode_kv_need(ci, ei, e, dec_call, dec_tgt, want)
        while want > 0 and ei[e * S.N_EI + S.E_KV_USED] + need > ei[e * S.N_EI + S.E_KV_CAP]:
            preempt_newest(ci, si, ei, gi, e, t, dec_call, dec_tgt, batch_c, batch_t, logi, logf)
            want = min(ei[e * S.N_EI + S.E_NDEC], budget, slots)
            need = want
            if blocks:
                need = _decode_kv_need(ci, ei, e, dec_call, dec_tgt, want)
    if want <= 0:
        return
    ei[e * S.N_EI + S.E_DEC_K] = want
    ei[e * S.N_EI + S.E_DEC_POS] = ei[e * S.N_EI + S.E_NPE]
    ei[e * S.N_EI + S.E_BATCH_N] += want
    ei[e * S.N_EI + S.E_BATCH_TOK] += want
    if grow:
        ei[e * S.N_EI + S.E_KV_USED] += need  # the decode steps' KV (blocks), taken when scheduled


@njit(cache=True, _nrt=False, error_model='numpy', forceinline=True)
def prefill_phase(ci, cf, si, sf, ei, e, t, batch_c, batch_t, e_steps_ptr, e_steps, mp_route,
                  chunked):
    """Prefill work within the budget and slots left: partly prefilled requests first,
    then admissions in policy order while memory allows. Without chunking a prompt must
    fit whole, and the first one that does not stops admission (FCFS, no skipping)."""
    budget = ei[e * S.N_EI + S.E_BUDGET] - ei[e * S.N_EI + S.E_BATCH_TOK]
    slots = ei[e * S.N_EI + S.E_KMAX] - ei[e * S.N_EI + S.E_BATCH_N]
    if chunked:
        c = ei[e * S.N_EI + S.E_PF_HEAD]
        while c >= 0:
            if budget == 0 or slots == 0:
                return
            k = min(ci[c * S.N_CI + S.C_PREF_NEED] - ci[c * S.N_CI + S.C_PREF_DONE], budget)
            _add(ci, batch_c, batch_t, ei, e, c, k)
            budget -= k
            slots -= 1
            c = ci[c * S.N_CI + S.C_NEXT]
    reserve_full = ei[e * S.N_EI + S.E_RESERVE_FULL] == 1
    blk = ei[e * S.N_EI + S.E_BLOCK]
    # memory an admission must leave free: vLLM's watermark
    cap = ei[e * S.N_EI + S.E_KV_CAP] - ei[e * S.N_EI + S.E_WATERMARK]
    while budget > 0 and slots > 0:
        if ei[e * S.N_EI + S.E_NRUN] >= ei[e * S.N_EI + S.E_MAXRUN]:
            return  # max_running_requests: no admission while that many run
        s = pick_step(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route)
        if s < 0:
            return
        c = si[s * S.N_SI + S.S_HEAD]
        need = ci[c * S.N_CI + S.C_PREF_NEED]
        if not chunked and need > budget:
            return
        if reserve_full:
            mem = round_blocks(ci[c * S.N_CI + S.C_P] + ci[c * S.N_CI + S.C_D], blk)
            if ei[e * S.N_EI + S.E_KV_USED] + mem > cap:
                return
        else:
            # admit only with one free token left per decoding request (their next step)
            mem = round_blocks(need, blk)
            if ei[e * S.N_EI + S.E_KV_USED] + mem + ei[e * S.N_EI + S.E_NDEC] > cap:
                return
        _admit(ci, cf, si, ei, e, s, t, mem)
        k = min(need, budget)
        _add(ci, batch_c, batch_t, ei, e, c, k)
        budget -= k
        slots -= 1


# ------------------------------------------------------------------------ schedulers
#
# A scheduler is a plan: which of the two phases its iteration runs, in which order, and
# whether prefill may be chunked. ``form_batch`` then runs the phases, each from one call
# site. The phases, and the functions they call at every admission, finished or preempted
# call (``pick_step``, ``dq_push``, ``_remove_finished``, ``preempt_newest``), are inlined
# by LLVM (``forceinline=True``: compiled once, inlined into run_kernel's machine code).
# As calls they passed 8 to 10 arrays (7 to 9 words each) per call: W1 runs 1.25 to 1.85
# times faster inlined, agent networks up to 1.9 (bench/README.md, "Round 3: the kernel").
# Numba's own inlining (``inline='always'``) gave about the same speed but compiled 10-20%
# slower, and a call site per scheduler (four inlined copies of each phase) ran slower.

PLAN_PREFILL = 0          # prefill phase only
PLAN_DECODE = 1           # decode phase only
PLAN_PREFILL_DECODE = 2   # prefill, then decode with what is left of the budget
PLAN_DECODE_PREFILL = 3   # decode, then prefill with what is left


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def fastertransformer(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route):
    """Static batching: decode the batch to its end; only then admit a new batch (whole
    prompts)."""
    if ei[e * S.N_EI + S.E_NDEC] > 0:
        return PLAN_DECODE, False
    return PLAN_PREFILL, False


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def vllm(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route):
    """Vanilla vLLM: a prefill-only iteration (whole prompts) whenever the next prompt fits
    the budget and memory, else a decode-only iteration."""
    if ei[e * S.N_EI + S.E_NRUN] < ei[e * S.N_EI + S.E_MAXRUN]:
        s = pick_step(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route)
        if s >= 0:
            need = ci[(si[s * S.N_SI + S.S_HEAD]) * S.N_CI + S.C_PREF_NEED]
            if need <= ei[e * S.N_EI + S.E_BUDGET] and \
                    ei[e * S.N_EI + S.E_KV_USED] + round_blocks(need, ei[e * S.N_EI + S.E_BLOCK]) + ei[e * S.N_EI + S.E_NDEC] \
                    <= ei[e * S.N_EI + S.E_KV_CAP] - ei[e * S.N_EI + S.E_WATERMARK]:
                return PLAN_PREFILL, False
    return PLAN_DECODE, False


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def orca(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route):
    """Orca: prefill first (chunked to the budget), then decode with what is left."""
    return PLAN_PREFILL_DECODE, True


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def sarathi(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route):
    """Sarathi-Serve: decode first (stall-free), then chunked prefill with what is left."""
    return PLAN_DECODE_PREFILL, True


@njit(cache=True, _nrt=False, error_model='numpy', inline='always')
def form_batch(ci, cf, si, sf, ei, ef, gi, e, t, dec_call, dec_tgt, batch_c, batch_t,
               e_steps_ptr, e_steps, mp_route, logi, logf):
    """Fill engine e's batch for the iteration starting at t; returns the iteration's
    (prefill tokens, decode tokens, context tokens of the decoding requests; the context
    only for the affine batch time, the one model that uses it)."""
    ei[e * S.N_EI + S.E_BATCH_N] = 0
    ei[e * S.N_EI + S.E_NPE] = 0
    ei[e * S.N_EI + S.E_DEC_K] = 0
    ei[e * S.N_EI + S.E_DEC_POS] = 0
    ei[e * S.N_EI + S.E_BATCH_TOK] = 0
    ei[e * S.N_EI + S.E_BATCH_PREF] = 0
    ei[e * S.N_EI + S.E_PF_PAIRS] = 0
    code = ei[e * S.N_EI + S.E_SCHED]
    if code == 0:
        plan, chunked = fastertransformer(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route)
    elif code == 1:
        plan, chunked = vllm(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route)
    elif code == 2:
        plan, chunked = orca(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route)
    else:
        plan, chunked = sarathi(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route)
    prefill_first = plan == PLAN_PREFILL or plan == PLAN_PREFILL_DECODE
    # two passes, one call site per phase: the plan's first phase, then its second
    for phase in range(2):
        if (phase == 0) == prefill_first:
            if plan != PLAN_DECODE:
                prefill_phase(ci, cf, si, sf, ei, e, t, batch_c, batch_t, e_steps_ptr, e_steps,
                              mp_route, chunked)
        elif plan != PLAN_PREFILL:
            decode_phase(ci, si, ei, gi, e, t, dec_call, dec_tgt, batch_c, batch_t, logi, logf)
    n_dec = ei[e * S.N_EI + S.E_DEC_K]
    ctx = 0
    if n_dec > 0 and (ei[e * S.N_EI + S.E_BT_MODEL] == S.BT_AFFINE or ei[e * S.N_EI + S.E_BT_ATTN] == 1):
        ctx = _decode_context(ci, ei, e, dec_call, dec_tgt)
    return ei[e * S.N_EI + S.E_BATCH_PREF], n_dec, ctx
