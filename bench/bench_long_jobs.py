"""Long jobs beside a small run: N stability-map tabs, then a bystander's small run.

    python bench/bench_long_jobs.py                      # this tree, 8 maps
    python bench/bench_long_jobs.py --root /tmp/A        # another source tree (git archive)
    python bench/bench_long_jobs.py --pin                # server on core 1, browser on core 0

A real server (``streamlit run app.py``) and Debian's chromium. After a warm-up page, N tabs
open the stability map (3 schedulers x 20 budgets x 10 loads x 10,000 requests); 10 s later a
ninth tab opens the single-engine page (1,000 requests, sarathi, no live view). Prints the
seconds until the bystander's verdict shows, the server's CPU seconds meanwhile and how many
map tabs wait for one of the server's batch slots (``llmsim_ui.runs.batch_slot``).

With the browser on the same two cores its tabs take much of the CPU: ``--pin`` keeps the
server and the browser to one core each, so the server's share is its own (round 12 in
bench/README.md: the bystander's time was the browser's there, not the server's).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sessions import _server_pid  # noqa: E402
from bench_ui import CHROMIUM, CHROMIUM_ARGS, new_page, server  # noqa: E402

MAP = "/sweep?x_n=20&y_n=10&n=10000&seed={seed}"
BYSTANDER = "/?n=1000&sched=sarathi&live=0&seed={seed}"


def _cpu(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended meanwhile
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> dict[int, int]:
    """Every process's parent, by pid."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    return out


def _descendants(pid: int) -> set[int]:
    parent = _children(pid)
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in found:
                found.add(c)
                todo.append(c)
    return found


def _cpu_of(pids) -> float:
    return sum(_cpu(p) for p in pids)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", type=int, default=8)
    ap.add_argument("--root", type=Path, default=None, help="source tree to serve (default: this one)")
    ap.add_argument("--pin", action="store_true", help="server on core 1, this process and its browser on core 0")
    ap.add_argument("--own-browser", action="store_true",
                    help="the bystander in a browser of its own, the map tabs' browser at nice 19 (as visitors "
                         "on other machines: the server's share, not the map tabs' rendering)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--log", type=Path, default=None, help="the server's log (its LLMSIM_UI_TIMING stages)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright
    with server(root=args.root, log_path=args.log) as (url, _t0):
        pid = _server_pid(url.rsplit(":", 1)[1])
        if args.pin:
            for task in os.listdir(f"/proc/{pid}/task"):  # every thread of the server
                os.sched_setaffinity(int(task), {1})
            os.sched_setaffinity(0, {0})  # the browsers started below inherit it
        server_side = {pid} | _descendants(pid)
        with sync_playwright() as pw:
            launch = lambda: pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)  # noqa: E731
            before = _descendants(os.getpid())
            b = launch()
            map_browser = _descendants(os.getpid()) - before - server_side
            by_b, by_browser = b, map_browser
            if args.own_browser:
                for q in map_browser:  # its tabs' renderers fork from these, and inherit it
                    os.setpriority(os.PRIO_PROCESS, q, 19)
                before = _descendants(os.getpid())
                by_b = launch()
                by_browser = _descendants(os.getpid()) - before - server_side - {pid}
            try:
                warm = new_page(by_b)
                warm.goto(url + "/?n=1000&sched=sarathi&live=0")
                warm.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=300_000)
                warm.close()
                seed = int(time.time()) % 100_000
                maps = [new_page(b) for _ in range(args.maps)]
                for i, p in enumerate(maps):
                    p.goto(url + MAP.format(seed=seed + i), wait_until="commit")
                time.sleep(10)
                waiting = sum("Waiting for the server" in p.inner_text("body") for p in maps)
                workers = _descendants(pid)  # the server's worker processes (long jobs)
                mine = _descendants(os.getpid()) - {pid} - workers  # the browsers (and their driver)
                if args.own_browser:
                    by_procs = _descendants(os.getpid()) & (by_browser | {c for q in by_browser for c in
                                                                          _descendants(q)})
                    map_procs = mine - by_procs
                else:
                    by_procs, map_procs = mine, set()
                cpu0, t0 = _cpu(pid), time.perf_counter()
                w0, b0, m0 = _cpu_of(workers), _cpu_of(by_procs), _cpu_of(map_procs)
                print(f"bystander opened @{time.time():.3f}")
                by = new_page(by_b)
                by.goto(url + BYSTANDER.format(seed=seed), wait_until="commit")
                by.get_by_text("Latency percentiles", exact=False).first.wait_for(timeout=args.timeout * 1000)
                took, cpu = time.perf_counter() - t0, _cpu(pid) - cpu0
                wcpu, bcpu, mcpu = _cpu_of(workers) - w0, _cpu_of(by_procs) - b0, _cpu_of(map_procs) - m0
            finally:
                for x in {b, by_b}:
                    x.close()
    print(f"{args.maps} map tabs ({waiting} waiting for a batch slot 10 s in), then a small single-engine run"
          f"{' (server and browser pinned to one core each)' if args.pin else ''}"
          f"{'; the bystander in its own browser, the map tabs in one at nice 19' if args.own_browser else ''}:")
    print(f"  its verdict after {took:.1f} s; meanwhile the server used {cpu:.1f} CPU s ({cpu / took:.2f} cores), "
          f"its {len(workers)} worker process(es) {wcpu:.1f}, "
          + (f"the bystander's browser {bcpu:.1f}, the map tabs' browser {mcpu:.1f}" if args.own_browser
             else f"the browser {bcpu:.1f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
