"""Instructions the kernel executes per request, counted by valgrind: the same count on every
run of the same tree, whatever else the machine is doing (timings here move by 10-20%).

    python bench/instr_kernel.py                       # this tree, sarathi, 100,000 requests
    python bench/instr_kernel.py --case orca --n 50000
    python bench/instr_kernel.py --tree /tmp/A --tree .   # two trees side by side

For each tree, two runs of ``Simulation.advance()`` under ``valgrind --tool=callgrind
--dump-instr=yes`` (N and 3N requests of a bench_engine.py case, or a scenario file): the
instructions counted in the compiled kernel's code (the kernel the run used, ``core.run_kernel``
or ``_single.run_single``, with what it inlines),
their difference divided by 2N (so setup, compilation and interpreter costs cancel out), and
how they split by how often each instruction runs per request: an instruction run once per
simulated instant (an arrival or an iteration's end) counts ~2.7 times per W1 request, once
per iteration ~1.7 times, once per call 1.0 times.

Under valgrind the kernel is compiled for the CPU valgrind presents (AVX2, no AVX-512), into a
cache of its own (NUMBA_CACHE_DIR under the system's temporary directory), so the counts are
not those of the native code, but two trees compare exactly. A tree's first run compiles under
valgrind: a few minutes.
"""
import argparse, collections, hashlib, os, re, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = r"""
import sys, tomllib
sys.path.insert(0, {bench!r})
import bench_engine as B, llmsim, llmsim.core as core
case, n = {case!r}, {n}
if case.endswith('.toml'):
    d = tomllib.load(open(case, 'rb'))
    for key in ('workload', 'run'):
        for k in ('num_requests', 'num_workflows'):
            if key in d and k in d[key]: d[key][k] = n
    sc = llmsim.scenario_from_table(d)
else:
    sc = B.scenario(case, n)
sim = llmsim.Simulation(sc)
sim.advance()
kern = sim._kernel()  # the kernel the run used: core.run_kernel, or _single.run_single where it applies
cres = kern.overloads[kern.signatures[0]]
entry = cres.library.get_pointer_to_function(cres.fndesc.mangled_name)
if {code_file!r}:
    import os
    fd, code = os.open('/proc/self/mem', os.O_RDONLY), b''
    while len(code) < {span}:  # page by page, up to the end of the kernel's mapping
        try:
            code += os.pread(fd, 4096 - (entry + len(code)) % 4096, entry + len(code))
        except OSError:
            break
    open({code_file!r}, 'wb').write(code)
print('KERNEL', hex(entry), flush=True)
"""
KERNEL_SPAN = 0x40000  # bytes of code from the kernel's entry counted as the kernel (it is ~40 KB)


def _pos(tok, cur):
    if tok.startswith('0x'):
        return int(tok, 16)
    if tok[0] in '+-':
        return cur + int(tok)
    return cur  # '*': the same position


def kernel_costs(path, entry, events=(0,)):
    """Per event, the count at each address in [entry, entry + KERNEL_SPAN), from a callgrind
    file written with --dump-instr=yes (positions: address, line; then the events: Ir, and
    with --branch-sim=yes Bc Bcm Bi Bim; trailing zeros are left out). Event 0 is Ir, the
    instructions executed; 2 is Bcm, the mispredicted conditional branches. One pass."""
    costs = [collections.Counter() for _ in events]
    addr, skip = 0, False
    with open(path) as f:
        for line in f:
            c = line[:1]
            if c not in '0+-*':
                skip = skip or line.startswith('calls=')
                continue
            parts = line.split()
            addr = _pos(parts[0], addr)
            if skip:  # the line after calls= is the call's inclusive cost: not this code's own
                skip = False
                continue
            if entry <= addr < entry + KERNEL_SPAN:
                for cost, e in zip(costs, events):
                    if len(parts) > 2 + e:
                        cost[addr] += int(parts[2 + e])
    return costs


def measure(tree, case, n, code_file='', branches=False):
    """Per kernel address, instructions per request, and with `branches` mispredicted
    conditional branches per request by callgrind's simple predictor model (else None)."""
    cache = os.path.join(tempfile.gettempdir(), 'llmsim-valgrind-cache',
                         hashlib.sha1(os.path.abspath(tree).encode()).hexdigest()[:12])
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), NUMBA_CACHE_DIR=cache)
    out = {}
    for m in (0, n, 3 * n):  # 0: a warm-up of 200 requests, which compiles on a new cache
        with tempfile.NamedTemporaryFile(suffix='.cg') as tmp:
            code = CHILD.format(bench=os.path.join(ROOT, 'bench'), case=case, n=max(m, 200),
                                code_file=code_file if m == 3 * n else '', span=KERNEL_SPAN)
            tool = ['--tool=none'] if m == 0 else [  # the warm-up needs no counting: faster
                '--tool=callgrind', '--dump-instr=yes', f'--callgrind-out-file={tmp.name}',
                *(['--branch-sim=yes'] if branches else [])]
            r = subprocess.run(['valgrind', *tool, sys.executable, '-c', code],
                               env=env, cwd=tree, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f'{tree}: the run under valgrind failed:\n{r.stderr[-2000:]}')
            if m == 0:
                continue
            entry = int(re.search(r'KERNEL (0x[0-9a-f]+)', r.stdout).group(1), 16)
            out[m] = [{a - entry: c for a, c in cost.items()}
                      for cost in kernel_costs(tmp.name, entry, (0, 2) if branches else (0,))]

    def per_request(small, big):
        return {a: (big.get(a, 0) - small.get(a, 0)) / (2 * n) for a in set(small) | set(big)}
    per_event = [per_request(small, big) for small, big in zip(out[n], out[3 * n])]
    return per_event[0], (per_event[1] if branches else None)


def annotate(per_addr, code_file, out, missed=None):
    """Write the kernel's disassembly (objdump) with each instruction's runs per request (and,
    given `missed`, its mispredictions per request in a second column)."""
    asm = subprocess.run(['objdump', '-D', '-b', 'binary', '-m', 'i386:x86-64', code_file],
                         capture_output=True, text=True, check=True).stdout
    with open(out, 'w') as f:
        for line in asm.splitlines():
            m = re.match(r'\s*([0-9a-f]+):\t', line)
            if m:
                a = int(m.group(1), 16)
                miss = f' {missed.get(a, 0):6.3f}' if missed is not None else ''
                f.write(f'{per_addr.get(a, 0):8.2f}{miss} {a:6x} {line.split(chr(9))[-1]}\n')


def report(tree, per_addr):
    total = sum(per_addr.values())
    groups = collections.Counter()
    for a, x in per_addr.items():
        if x > 0:
            groups[round(x, 2)] += x
    print(f'{tree}: {total:,.0f} kernel instructions per request')
    print('  runs per request   instructions per request   share')
    for f, x in sorted(groups.items(), key=lambda g: -g[1])[:8]:
        print(f'  {f:16.2f}   {x:24.1f}   {100 * x / total:5.1f}%')
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--tree', action='append', help='source tree (default: this one); twice to compare')
    ap.add_argument('--case', default='sarathi', help='sarathi, orca, vllm-mem or a scenario file')
    ap.add_argument('--n', type=int, default=100_000, help='requests (or workflows) of the smaller run')
    ap.add_argument('--branches', action='store_true', help='simulate the branch predictor too '
                    '(callgrind --branch-sim=yes): mispredicted conditional branches per request, '
                    'the costliest branches, and a second column in --annotate')
    ap.add_argument('--annotate', metavar='FILE', help='write the (last) tree\'s kernel disassembly '
                    'with each instruction\'s runs per request to FILE (needs objdump)')
    a = ap.parse_args()
    trees = a.tree or [ROOT]
    totals = []
    for t in trees:
        with tempfile.NamedTemporaryFile(suffix='.bin') as code:
            per_addr, missed = measure(t, a.case, a.n, code.name if a.annotate else '', a.branches)
            if a.annotate:
                annotate(per_addr, code.name, a.annotate, missed)
        totals.append(report(t, per_addr))
        if missed is not None:
            top = sorted(missed.items(), key=lambda m: -m[1])
            print(f'  mispredicted conditional branches per request: {sum(missed.values()):.2f}; '
                  'the costliest (kernel offset: per request): '
                  + ', '.join(f'{a:x}: {x:.2f}' for a, x in top[:8]))
    if len(totals) == 2:
        print(f'ratio second / first: {totals[1] / totals[0]:.4f}')


if __name__ == '__main__':
    main()
