"""The batch-forming schedulers of SPEC.md §2, built from two phases.

Every scheduler is one Numba function ``(state, engine, now) -> None`` that fills the
engine's batch arrays, written with the shared phases below:

- ``decode_phase``: one decode token per decoding request, oldest admission first, up to
  the remaining budget and batch slots; under grow-on-demand memory it first frees KV
  memory by preempting the most recently admitted request (recompute preemption);
- ``prefill_phase``: prefill work, partly prefilled requests first (admission order), then
  admissions from the waiting buffers in the engine's policy order, chunked to the
  remaining budget or whole-prompt-only.

Adding a scheduler: write one function like ``sarathi`` below, add one ``elif`` to
``form_batch`` and one line to ``SCHEDULERS``.
"""

from dataclasses import dataclass
from enum import IntEnum

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


# --------------------------------------------------------------------------- helpers


@njit(cache=True)
def _add(batch_c, batch_t, batch_ph, ei, e, c, tokens, phase):
    k = ei[e, S.E_BATCH_OFF] + ei[e, S.E_BATCH_N]
    batch_c[k] = c
    batch_t[k] = tokens
    batch_ph[k] = phase
    ei[e, S.E_BATCH_N] += 1


@njit(cache=True)
def pick_step(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route):
    """The buffer at engine e whose head is admitted next, by the engine's policy
    (e_steps lists each engine's steps in priority-rank order); -1 if none waits."""
    a = e_steps_ptr[e]
    b = e_steps_ptr[e + 1]
    if b - a == 1:
        s = e_steps[a]
        return s if si[s, S.S_NWAIT] > 0 else -1
    pol = ei[e, S.E_POLICY]
    best = -1
    if pol == S.POL_PRIORITY:
        for k in range(a, b):
            s = e_steps[k]
            if si[s, S.S_NWAIT] > 0:
                return s
    elif pol == S.POL_FCFS:
        best_seq = -1
        for k in range(a, b):
            s = e_steps[k]
            if si[s, S.S_NWAIT] > 0:
                seq = ci[si[s, S.S_HEAD], S.C_SEQ]
                if best < 0 or seq < best_seq:
                    best = s
                    best_seq = seq
    else:  # max-pressure (Dai & Lin): mu_s * (Q_s - sum_j R[s, j] Q_j)
        best_w = 0.0
        n_s = si.shape[0]
        for k in range(a, b):
            s = e_steps[k]
            if si[s, S.S_NWAIT] > 0:
                w = float(si[s, S.S_NCOUNT])
                for j in range(n_s):
                    r = mp_route[s, j]
                    if r != 0.0:
                        w -= r * si[j, S.S_NCOUNT]
                w *= sf[s, S.SF_MU]
                if best < 0 or w > best_w:
                    best = s
                    best_w = w
    return best


@njit(cache=True)
def _admit(ci, cf, si, ei, e, s, t, run, mem):
    c = si[s, S.S_HEAD]
    nxt = ci[c, S.C_NEXT]
    si[s, S.S_HEAD] = nxt
    if nxt >= 0:
        ci[nxt, S.C_PREV] = -1
    else:
        si[s, S.S_TAIL] = -1
    si[s, S.S_NWAIT] -= 1
    ei[e, S.E_NWAIT] -= 1
    ci[c, S.C_STATE] = S.ST_PREFILL
    ci[c, S.C_KV] += mem
    ei[e, S.E_KV_USED] += mem
    if cf[c, S.F_ADMIT] < 0.0:
        cf[c, S.F_ADMIT] = t
    run[ei[e, S.E_RUN_OFF] + ei[e, S.E_NRUN]] = c
    ei[e, S.E_NRUN] += 1
    return c


@njit(cache=True)
def preempt_newest(ci, si, ei, gi, e, run, batch_c, batch_t):
    """Recompute preemption: drop the most recently admitted request's KV cache and put
    it back at the front of its buffer; it must prefill its prompt plus the tokens it had
    generated again. A batch entry it already had this iteration is voided."""
    ro = ei[e, S.E_RUN_OFF]
    n = ei[e, S.E_NRUN] - 1
    c = run[ro + n]
    ei[e, S.E_NRUN] = n
    bo = ei[e, S.E_BATCH_OFF]
    for k in range(ei[e, S.E_BATCH_N]):
        if batch_c[bo + k] == c:
            batch_t[bo + k] = 0
    if ci[c, S.C_STATE] == S.ST_DECODE:
        ei[e, S.E_NDEC] -= 1
    ei[e, S.E_KV_USED] -= ci[c, S.C_KV]
    ci[c, S.C_KV] = 0
    before = ci[c, S.C_PREF_NEED] - ci[c, S.C_PREF_DONE]
    ci[c, S.C_PREF_NEED] = ci[c, S.C_P] + ci[c, S.C_DEC_DONE]
    ci[c, S.C_PREF_DONE] = 0
    extra = ci[c, S.C_PREF_NEED] - before
    ei[e, S.E_BACKLOG] += extra
    gi[S.G_TOK_RECOMPUTE] += extra
    ci[c, S.C_PREEMPT] += 1
    ei[e, S.E_PREEMPTS] += 1
    ci[c, S.C_STATE] = S.ST_WAITING
    s = ci[c, S.C_STEP]
    head = si[s, S.S_HEAD]
    ci[c, S.C_PREV] = -1
    ci[c, S.C_NEXT] = head
    if head >= 0:
        ci[head, S.C_PREV] = c
    else:
        si[s, S.S_TAIL] = c
    si[s, S.S_HEAD] = c
    si[s, S.S_NWAIT] += 1
    ei[e, S.E_NWAIT] += 1


@njit(cache=True)
def _budget_left(ei, batch_t, e):
    used = 0
    bo = ei[e, S.E_BATCH_OFF]
    for k in range(ei[e, S.E_BATCH_N]):
        used += batch_t[bo + k]
    return ei[e, S.E_BUDGET] - used


@njit(cache=True)
def decode_phase(ci, si, ei, gi, e, run, batch_c, batch_t, batch_ph):
    """One decode token for each decoding request, oldest admission first, within the
    budget and batch slots left."""
    budget = _budget_left(ei, batch_t, e)
    slots = ei[e, S.E_KMAX] - ei[e, S.E_BATCH_N]
    want = min(ei[e, S.E_NDEC], budget, slots)
    grow = ei[e, S.E_RESERVE_FULL] == 0
    if grow:
        while want > 0 and ei[e, S.E_KV_USED] + want > ei[e, S.E_KV_CAP]:
            preempt_newest(ci, si, ei, gi, e, run, batch_c, batch_t)
            want = min(ei[e, S.E_NDEC], budget, slots)
    if want <= 0:
        return
    ro = ei[e, S.E_RUN_OFF]
    got = 0
    for i in range(ei[e, S.E_NRUN]):
        c = run[ro + i]
        if ci[c, S.C_STATE] == S.ST_DECODE:
            _add(batch_c, batch_t, batch_ph, ei, e, c, 1, S.PH_DECODE)
            if grow:
                ci[c, S.C_KV] += 1
                ei[e, S.E_KV_USED] += 1
            got += 1
            if got == want:
                break


@njit(cache=True)
def prefill_phase(ci, cf, si, sf, ei, e, t, run, batch_c, batch_t, batch_ph, e_steps_ptr,
                  e_steps, mp_route, chunked):
    """Prefill work within the budget and slots left: partly prefilled requests first,
    then admissions in policy order while memory allows. Without chunking a prompt must
    fit whole, and the first one that does not stops admission (FCFS, no skipping)."""
    budget = _budget_left(ei, batch_t, e)
    slots = ei[e, S.E_KMAX] - ei[e, S.E_BATCH_N]
    ro = ei[e, S.E_RUN_OFF]
    if chunked:
        for i in range(ei[e, S.E_NRUN]):
            if budget == 0 or slots == 0:
                return
            c = run[ro + i]
            if ci[c, S.C_STATE] == S.ST_PREFILL:
                k = min(ci[c, S.C_PREF_NEED] - ci[c, S.C_PREF_DONE], budget)
                _add(batch_c, batch_t, batch_ph, ei, e, c, k, S.PH_PREFILL)
                budget -= k
                slots -= 1
    reserve_full = ei[e, S.E_RESERVE_FULL] == 1
    while budget > 0 and slots > 0:
        s = pick_step(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route)
        if s < 0:
            return
        c = si[s, S.S_HEAD]
        need = ci[c, S.C_PREF_NEED]
        if not chunked and need > budget:
            return
        if reserve_full:
            mem = ci[c, S.C_P] + ci[c, S.C_D]
            if ei[e, S.E_KV_USED] + mem > ei[e, S.E_KV_CAP]:
                return
        else:
            # admit only with one free token left per decoding request (their next step)
            mem = need
            if ei[e, S.E_KV_USED] + mem + ei[e, S.E_NDEC] > ei[e, S.E_KV_CAP]:
                return
        _admit(ci, cf, si, ei, e, s, t, run, mem)
        k = min(need, budget)
        _add(batch_c, batch_t, batch_ph, ei, e, c, k, S.PH_PREFILL)
        budget -= k
        slots -= 1


# ------------------------------------------------------------------------ schedulers


@njit(cache=True)
def fastertransformer(ci, cf, si, sf, ei, gi, e, t, run, batch_c, batch_t, batch_ph,
                      e_steps_ptr, e_steps, mp_route):
    if ei[e, S.E_NDEC] > 0:
        decode_phase(ci, si, ei, gi, e, run, batch_c, batch_t, batch_ph)
    else:
        prefill_phase(ci, cf, si, sf, ei, e, t, run, batch_c, batch_t, batch_ph,
                      e_steps_ptr, e_steps, mp_route, False)


@njit(cache=True)
def vllm(ci, cf, si, sf, ei, gi, e, t, run, batch_c, batch_t, batch_ph, e_steps_ptr,
         e_steps, mp_route):
    s = pick_step(ci, si, sf, ei, e, e_steps_ptr, e_steps, mp_route)
    if s >= 0:
        need = ci[si[s, S.S_HEAD], S.C_PREF_NEED]
        if need <= ei[e, S.E_BUDGET] and \
                ei[e, S.E_KV_USED] + need + ei[e, S.E_NDEC] <= ei[e, S.E_KV_CAP]:
            prefill_phase(ci, cf, si, sf, ei, e, t, run, batch_c, batch_t, batch_ph,
                          e_steps_ptr, e_steps, mp_route, False)
            return
    decode_phase(ci, si, ei, gi, e, run, batch_c, batch_t, batch_ph)


@njit(cache=True)
def orca(ci, cf, si, sf, ei, gi, e, t, run, batch_c, batch_t, batch_ph, e_steps_ptr,
         e_steps, mp_route):
    prefill_phase(ci, cf, si, sf, ei, e, t, run, batch_c, batch_t, batch_ph,
                  e_steps_ptr, e_steps, mp_route, True)
    decode_phase(ci, si, ei, gi, e, run, batch_c, batch_t, batch_ph)


@njit(cache=True)
def sarathi(ci, cf, si, sf, ei, gi, e, t, run, batch_c, batch_t, batch_ph, e_steps_ptr,
            e_steps, mp_route):
    decode_phase(ci, si, ei, gi, e, run, batch_c, batch_t, batch_ph)
    prefill_phase(ci, cf, si, sf, ei, e, t, run, batch_c, batch_t, batch_ph,
                  e_steps_ptr, e_steps, mp_route, True)


@njit(cache=True)
def form_batch(ci, cf, si, sf, ei, ef, gi, e, t, run, batch_c, batch_t, batch_ph,
               e_steps_ptr, e_steps, mp_route):
    """Fill engine e's batch for the iteration starting at t; returns the iteration's
    (prefill tokens, decode tokens, context tokens of the decoding requests)."""
    ei[e, S.E_BATCH_N] = 0
    code = ei[e, S.E_SCHED]
    if code == 0:
        fastertransformer(ci, cf, si, sf, ei, gi, e, t, run, batch_c, batch_t, batch_ph,
                          e_steps_ptr, e_steps, mp_route)
    elif code == 1:
        vllm(ci, cf, si, sf, ei, gi, e, t, run, batch_c, batch_t, batch_ph, e_steps_ptr,
             e_steps, mp_route)
    elif code == 2:
        orca(ci, cf, si, sf, ei, gi, e, t, run, batch_c, batch_t, batch_ph, e_steps_ptr,
             e_steps, mp_route)
    else:
        sarathi(ci, cf, si, sf, ei, gi, e, t, run, batch_c, batch_t, batch_ph,
                e_steps_ptr, e_steps, mp_route)
    n_pref = 0
    n_dec = 0
    ctx = 0
    bo = ei[e, S.E_BATCH_OFF]
    for k in range(ei[e, S.E_BATCH_N]):
        tok = batch_t[bo + k]
        if batch_ph[bo + k] == S.PH_PREFILL:
            n_pref += tok
        elif tok > 0:
            n_dec += tok
            c = batch_c[bo + k]
            ctx += ci[c, S.C_PREF_DONE] + ci[c, S.C_DEC_DONE]
    return n_pref, n_dec, ctx
