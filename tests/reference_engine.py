"""A plain-Python reference of one engine, written straight from SPEC.md §1–3 for
clarity, not speed: lists of request objects, no shared state with llmsim's kernel.
Tests match the kernel against it exactly on small seeded scenarios.

Modelling choices it shares with the kernel (documented in docs/model.md):
- at one instant: the iteration end, then arrivals, then the next batch is formed;
- decode order is the order requests entered decode (= admission order);
- admission under grow-on-demand memory allocates the prompt (or recompute) and leaves one
  free KV token per decoding request; a decode token needs one more KV token; when
  memory runs short the most recently admitted request is preempted (recompute: its
  prompt plus generated tokens are prefilled again; it returns to the queue's front);
- fastertransformer reserves prompt + output at admission;
- vLLM's knobs (issue 10): no admission while max_running requests are admitted; KV is
  allocated in blocks of `block` tokens (a request holding L tokens holds ceil(L/block)
  blocks, so a decode step takes a new block when L is a multiple of block); an admission
  must leave `watermark_tokens` free;
- the batch time also gets the prefill attention pairs: a chunk of k tokens after `done`
  prefilled ones has k*done + k(k+1)/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Req:
    rid: int
    arrival: float
    P: int
    D: int
    pref_need: int = 0
    pref_done: int = 0
    dec_done: int = 0
    kv: int = 0
    state: str = "future"   # future, waiting, prefill, decode, done
    admit: float = math.nan
    first: float = math.nan
    finish: float = math.nan
    preempt: int = 0


def run_reference(requests, scheduler, budget, kmax, kv_cap, bt, horizon=math.inf,
                  max_running=None, block=1, watermark_tokens=0, trace=None):
    """requests: list of (arrival_s, P, D) in arrival order; bt(n_prefill, n_decode, ctx,
    pairs) -> seconds. Returns (reqs, log) with log rows (iteration, start, end, rid, tokens,
    phase): a batch entry's row when its iteration ends; a preemption's row (the iteration
    being formed, now, now, rid, the computed tokens it loses, "preempt") when it happens. trace: an optional dict that gets "running", the running set's size at each
    batch formation."""
    reqs = [Req(i, a, p, d, pref_need=p) for i, (a, p, d) in enumerate(requests)]
    waiting: list[Req] = []
    running: list[Req] = []        # admission order
    log = []
    t = 0.0
    nxt = 0
    it = 0
    chunked = scheduler in ("orca", "sarathi")
    reserve = scheduler == "fastertransformer"
    slots_max = min(kmax, budget)
    max_running = math.inf if max_running is None else max_running
    kv_cap = kv_cap // block * block          # whole blocks only
    admit_cap = kv_cap - watermark_tokens     # what an admission may fill

    def blocks(x):
        return -(-x // block) * block

    def decoders():
        return [r for r in running if r.state == "decode"]

    def kv_used():
        return sum(r.kv for r in running)

    def preempt(batch, now):
        v = running.pop()
        for e in batch:
            if e[0] is v:
                e[1] = 0
        lost = v.P + v.dec_done - (v.pref_need - v.pref_done)  # computed work it redoes
        log.append((it, now, now, v.rid, lost, "preempt"))
        v.kv = 0
        v.pref_need = v.P + v.dec_done
        v.pref_done = 0
        v.state = "waiting"
        v.preempt += 1
        waiting.insert(0, v)

    def used(batch):
        return sum(e[1] for e in batch)

    def decode_phase(batch, now):
        budget_left = budget - used(batch)
        slots = slots_max - len(batch)
        want = min(len(decoders()), budget_left, slots)

        def step_kv(r):  # KV a decode step takes: a new block when the last one is full
            return block if (r.P + r.dec_done) % block == 0 else 0

        if not reserve:
            while want > 0 and kv_used() + sum(step_kv(r) for r in decoders()[:want]) > kv_cap:
                preempt(batch, now)
                want = min(len(decoders()), budget_left, slots)
        for r in decoders()[:max(want, 0)]:
            batch.append([r, 1, "decode"])
            if not reserve:
                r.kv += step_kv(r)

    def prefill_phase(batch, now):
        budget_left = budget - used(batch)
        slots = slots_max - len(batch)
        if chunked:
            for r in running:
                if budget_left == 0 or slots == 0:
                    return
                if r.state == "prefill":
                    k = min(r.pref_need - r.pref_done, budget_left)
                    batch.append([r, k, "prefill"])
                    budget_left -= k
                    slots -= 1
        while budget_left > 0 and slots > 0 and waiting:
            if len(running) >= max_running:
                return
            r = waiting[0]
            if not chunked and r.pref_need > budget_left:
                return
            if reserve:
                mem = blocks(r.P + r.D)
                if kv_used() + mem > admit_cap:
                    return
            else:
                mem = blocks(r.pref_need)
                if kv_used() + mem + len(decoders()) > admit_cap:
                    return
            waiting.pop(0)
            r.state = "prefill"
            r.kv += mem
            if math.isnan(r.admit):
                r.admit = now
            running.append(r)
            k = min(r.pref_need, budget_left)
            batch.append([r, k, "prefill"])
            budget_left -= k
            slots -= 1

    def form(now):
        batch = []
        if scheduler == "fastertransformer":
            if decoders():
                decode_phase(batch, now)
            else:
                prefill_phase(batch, now)
        elif scheduler == "vllm":
            if len(running) < max_running and waiting and waiting[0].pref_need <= budget and \
                    kv_used() + blocks(waiting[0].pref_need) + len(decoders()) <= admit_cap:
                prefill_phase(batch, now)
            else:
                decode_phase(batch, now)
        elif scheduler == "orca":
            prefill_phase(batch, now)
            decode_phase(batch, now)
        else:
            decode_phase(batch, now)
            prefill_phase(batch, now)
        return batch

    busy_until = None
    batch = None
    start = 0.0
    while True:
        cand = []
        if busy_until is not None:
            cand.append(busy_until)
        if nxt < len(reqs):
            cand.append(reqs[nxt].arrival)
        if not cand:
            break
        t = min(cand)
        if t > horizon:
            break
        if busy_until is not None and busy_until == t:
            finished = []
            for r, k, ph in batch:
                if k == 0:
                    continue
                log.append((it, start, t, r.rid, k, ph))
                if ph == "prefill":
                    r.pref_done += k
                    if r.pref_done == r.pref_need:
                        r.state = "decode"
                        if math.isnan(r.first):
                            r.first = t
                else:
                    r.dec_done += 1
                    if r.dec_done == r.D:
                        r.state = "done"
                        r.finish = t
                        r.kv = 0
                        finished.append(r)
            for r in finished:
                running.remove(r)
            it += 1
            busy_until = None
        while nxt < len(reqs) and reqs[nxt].arrival == t:
            reqs[nxt].state = "waiting"
            waiting.append(reqs[nxt])
            nxt += 1
        if busy_until is None and (waiting or running):
            batch = form(t)
            n_p = sum(k for _, k, ph in batch if ph == "prefill")
            n_d = sum(k for _, k, ph in batch if ph == "decode")
            ctx = sum(r.P + r.dec_done for r, k, ph in batch if ph == "decode" and k > 0)
            pairs = sum(k * r.pref_done + k * (k + 1) // 2 for r, k, ph in batch if ph == "prefill")
            assert n_p + n_d > 0, "stalled"
            if trace is not None:
                trace.setdefault("running", []).append(len(running))
            start = t
            busy_until = t + bt(n_p, n_d, ctx, pairs)
    return reqs, log
