"""Kernel CPU time of two source trees, interleaved: the fair comparison on a shared machine.

    python bench/ab_kernel.py TREE_A TREE_B CASE N ROUNDS REPS

Starts one worker process per tree (PYTHONPATH=TREE, the tree's own Numba cache), warms
both, then alternates ROUNDS rounds (A first in even rounds, B first in odd ones) of REPS
kernel runs (``Simulation.advance()`` on CASE with N requests) and prints each tree's best
and median thread-CPU seconds and the B/A ratios. CASE: sarathi, orca, vllm-mem (the W1 cases
of bench_engine.py), ft (W1 under fastertransformer, b = 4096, 0.5 requests/s) or a scenario
file (N replaces num_requests / num_workflows). A file TREE/ab_env of NAME=VALUE lines adds
environment variables to that tree's worker (e.g. NUMBA_CPU_FEATURES).
"""
import subprocess, sys, statistics, os
a, b, case, n, rounds, reps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
PY = sys.executable
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_ab_worker.py')
procs = {}
for tree in (a, b):
    env = dict(os.environ, PYTHONPATH=tree)
    if os.path.exists(tree + '/ab_env'):
        for line in open(tree + '/ab_env'):
            k, v = line.strip().split('=', 1); env[k] = v
    procs[tree] = subprocess.Popen([PY, WORKER], cwd=tree, env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
def run(tree):
    p = procs[tree]; p.stdin.write(f"{case} {n}\n"); p.stdin.flush()
    return tuple(map(float, p.stdout.readline().split()))
for tree in (a, b): run(tree)  # warm
res = {a: [], b: []}
for r in range(rounds):
    for tree in ((a, b) if r % 2 == 0 else (b, a)):
        for _ in range(reps):
            res[tree].append(run(tree)[0])
for tree in (a, b):
    x = res[tree]
    print(f"{tree:20s} {case} {n}: cpu min {min(x):.4f} median {statistics.median(x):.4f}  ({float(n)/min(x):,.0f} req/cpu-s best)")
print(f"ratio B/A: min {min(res[b])/min(res[a]):.3f} median {statistics.median(res[b])/statistics.median(res[a]):.3f}")
for p in procs.values(): p.stdin.close()
