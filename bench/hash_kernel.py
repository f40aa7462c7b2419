"""Fingerprint of the kernel's own arrays over 99 runs, to check that a kernel change keeps
every number identical: every scenario file (agents, deploy, paper, quickstart, W1) and 36 W1
variants (the four schedulers; memory pressure; block_size, watermark,
max_running_requests; small budgets and max_batch_size; three rates), each without and with
the iteration log. Per run a hash of the call rows (list links excluded), the engine rows
(E_DEC_LB, a bound, excluded), the trajectory, the time integrals, the log and the summary.

    PYTHONPATH=. python bench/hash_kernel.py 3000 > /tmp/new.txt     # requests per run
    PYTHONPATH=/path/to/old/tree python bench/hash_kernel.py 3000 > /tmp/old.txt  (from that tree)
    diff /tmp/old.txt /tmp/new.txt

See also bench/hash_outputs.py (the result tables, verdicts, setup arrays).
"""
import copy, glob, hashlib, sys, tomllib
import numpy as np
import llmsim
from llmsim import core
from llmsim import state as S

def variants():
    files = sorted(glob.glob('scenarios/*.toml') + glob.glob('scenarios/agents/*.toml')
                   + glob.glob('scenarios/deploy/*.toml') + glob.glob('scenarios/paper/*.toml'))
    for f in files:
        d = tomllib.load(open(f, 'rb'))
        yield f, d, {}
    w1 = tomllib.load(open('scenarios/w1.toml', 'rb'))
    extra = [
        dict(scheduler='orca'), dict(scheduler='vllm', token_budget=8192, kv_cache_tokens=60000),
        dict(scheduler='sarathi', kv_cache_tokens=60000), dict(scheduler='orca', kv_cache_tokens=60000),
        dict(scheduler='fastertransformer', token_budget=4096), dict(scheduler='vllm', token_budget=8192),
        dict(scheduler='sarathi', token_budget=128), dict(scheduler='orca', max_batch_size=32),
        dict(scheduler='sarathi', max_batch_size=64), dict(scheduler='vllm', token_budget=8192, kv_cache_tokens=60000, block_size=16),
        dict(scheduler='vllm', token_budget=8192, kv_cache_tokens=60000, block_size=16, max_running_requests=64),
        dict(scheduler='sarathi', kv_cache_tokens=40000, block_size=16, watermark=0.01),
    ]
    for i, ch in enumerate(extra):
        d = copy.deepcopy(w1)
        d['engine'].update(ch)
        for rate in (20.0, 30.0, 45.0):
            dd = copy.deepcopy(d)
            dd['workload']['arrival']['rate'] = rate
            yield f'w1 {ch} rate {rate}', dd, {}

def cap(d, n):
    for key in ('workload', 'run'):
        if key in d and isinstance(d[key], dict) and 'num_requests' in d[key]:
            d[key]['num_requests'] = min(d[key]['num_requests'], n)
        if key in d and isinstance(d[key], dict) and 'num_workflows' in d[key]:
            d[key]['num_workflows'] = min(d[key]['num_workflows'], n)

def integrals_to_now(sim):
    """gf and ef with the time integrals carried up to now, by the kernel's own _accumulate
    (run as Python): since round 4 a paused kernel leaves them at its last instant (the
    summary adds the rest); before, it added the stretch to the pause itself. Either tree
    hashes the same."""
    gf, ef = sim.gf.copy(), sim.ef.copy()
    core._accumulate.py_func(gf, sim.gi, S.flat(sim.ei), S.flat(ef), gf[S.GF_NOW])
    return gf, ef

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
tot = hashlib.sha256()
for name, d, _ in variants():
    d = copy.deepcopy(d); cap(d, n)
    try:
        sc = llmsim.scenario_from_table(d)
    except Exception as ex:
        print('SKIP', name, type(ex).__name__, str(ex)[:80]); continue
    for rec in (False, True):
        sim = llmsim.Simulation(sc, record_iterations=rec)
        sim.advance()
        h = hashlib.sha256()
        nc = sim.gi[S.G_NCALLS]
        ci = sim.ci[:nc]
        keep = [c for c in range(14) if c not in (S.C_NEXT, S.C_PREV)]
        gf, ef = integrals_to_now(sim)
        for a in (ci[:, keep], sim.cf[:nc], ef, sim.rec[:sim.gi[S.G_REC_N]], gf):
            h.update(np.ascontiguousarray(a).tobytes())
        # ei without the columns the new kernel adds
        h.update(np.ascontiguousarray(sim.ei[:, [c for c in range(36) if c != S.E_DEC_LB]]).tobytes())
        if rec:
            ln = sim.gi[S.G_LOG_N]
            h.update(sim.logi[:ln].tobytes()); h.update(sim.logf[:ln].tobytes())
        res = sim.result()
        h.update(repr(sorted((k, v) for k, v in res.summary.items() if not isinstance(v, (dict, list)) and k != "wall_seconds")).encode())
        print(f'{h.hexdigest()[:16]} rec={int(rec)} {name}')
        tot.update(h.digest())
print('TOTAL', tot.hexdigest())
