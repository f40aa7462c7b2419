"""Worker of ab_kernel.py: runs kernel cases read from stdin, prints thread-CPU and wall seconds."""
import sys, time
sys.path.insert(0, 'bench')
import bench_engine as B, llmsim
cache = {}
for line in sys.stdin:
    case, n = line.split(); n = int(float(n))
    if (case, n) not in cache:
        if case.endswith('.toml'):
            import tomllib
            d = tomllib.load(open(case, 'rb'))
            for key in ('workload', 'run'):
                if key in d and 'num_requests' in d[key]: d[key]['num_requests'] = n
                if key in d and 'num_workflows' in d[key]: d[key]['num_workflows'] = n
            cache[(case, n)] = llmsim.scenario_from_table(d)
        elif case == 'ft':
            sc = B.scenario('sarathi', n)
            import dataclasses, tomllib, copy
            d = tomllib.load(open('scenarios/w1.toml', 'rb')); d['workload']['num_requests'] = n
            d['engine']['scheduler'] = 'fastertransformer'; d['engine']['token_budget'] = 4096
            d['workload']['arrival']['rate'] = 0.5
            cache[(case, n)] = llmsim.scenario_from_table(d)
        else:
            cache[(case, n)] = B.scenario(case, n)
    sc = cache[(case, n)]
    sim = llmsim.Simulation(sc)
    t0 = time.thread_time(); w0 = time.perf_counter()
    sim.advance()
    t1 = time.thread_time(); w1 = time.perf_counter()
    del sim
    print(f"{t1 - t0:.6f} {w1 - w0:.6f}", flush=True)
