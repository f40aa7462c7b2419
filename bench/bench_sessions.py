"""Many visitors at once: the server's peak memory with and without its cap on run memory.

    python bench/bench_sessions.py                        # 8 sessions, the default cap (1,024 MiB)
    python bench/bench_sessions.py --cap-mib 1048576      # the same with no effective cap
    python bench/bench_sessions.py --sessions 4 --n 100000

A real server (``streamlit run app.py``, numba cache warm) and Debian's chromium: one page
loads the kernel, then N tabs open the single-engine page at once, each asking for the
heaviest run it accepts (four schedulers, ``--n`` requests each, default 200,000). Prints
the server's resident memory before the tabs, its peak (VmHWM of the server process), the
seconds until every tab shows its verdicts, and how many tabs showed "Waiting for the
server" (runs queued by ``llmsim_ui.runs.MemoryLedger``) — with the cap given by
``--cap-mib`` (LLMSIM_SERVER_MEMORY_MIB; default: the app's default).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ui import browser, new_page, page_problems, server  # noqa: E402


def _server_pid(port: str) -> int:
    out = subprocess.run(["pgrep", "-f", f"server.port {port}"], capture_output=True, text=True).stdout.split()
    return int(out[0])


def _status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MiB
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--n", type=int, default=200_000, help="requests per scheduler")
    ap.add_argument("--cap-mib", type=float, default=None, help="LLMSIM_SERVER_MEMORY_MIB (default: the app's)")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--settle", type=float, default=180, help="seconds to watch the memory after the tabs close")
    ap.add_argument("--root", type=Path, default=None, help="source tree to serve (default: this one)")
    args = ap.parse_args(argv)
    if args.cap_mib is not None:
        os.environ["LLMSIM_SERVER_MEMORY_MIB"] = str(args.cap_mib)
    query = f"?sched=fastertransformer,vllm,orca,sarathi&n={args.n}"
    settled = []
    with server(root=args.root) as (url, _t0), browser() as b:
        pid = _server_pid(url.rsplit(":", 1)[1])
        warm = new_page(b)
        warm.goto(url + "/?n=1000&sched=sarathi&live=0")
        warm.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=300_000)
        time.sleep(2)
        warm.close()
        base = _status(pid, "VmRSS")
        pages = [new_page(b) for _ in range(args.sessions)]
        t0 = time.perf_counter()
        for p in pages:
            p.goto(url + "/" + query, wait_until="commit")
        waited, finished, problems = set(), {}, []
        while len(finished) < len(pages) and time.perf_counter() - t0 < args.timeout:
            for i, p in enumerate(pages):
                if i in finished:
                    continue
                body = p.inner_text("body")
                if "Waiting for the server" in body:
                    waited.add(i)
                if "Live view:" in body or "server is busy" in body:
                    finished[i] = time.perf_counter() - t0
                    problems += page_problems(p)
            time.sleep(0.25)
        peak = _status(pid, "VmHWM")
        busy = sum("server is busy" in p.inner_text("body") for p in pages)
        for p in pages:
            p.close()
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < args.settle:
            time.sleep(min(30.0, args.settle - (time.perf_counter() - t1)))
            settled.append((time.perf_counter() - t1, _status(pid, "VmRSS")))
    cap = os.environ.get("LLMSIM_SERVER_MEMORY_MIB", "default (1024)")
    print(f"sessions {args.sessions} x 4 schedulers x {args.n:,} requests; LLMSIM_SERVER_MEMORY_MIB = {cap}")
    print(f"  server RSS before the tabs: {base:,.0f} MiB; peak (VmHWM): {peak:,.0f} MiB")
    print(f"  every tab finished after {max(finished.values(), default=float('nan')):.1f} s "
          f"({len(finished)} of {len(pages)}); tabs that waited for memory: {len(waited)}; refused as busy: {busy}")
    if settled:
        print("  server RSS after the tabs closed: " + ", ".join(f"{m:,.0f} MiB at {s:.0f} s" for s, m in settled))
    if problems:
        print("  problems:", *problems, sep="\n    ")
    return 0 if len(finished) == len(pages) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
