"""A visitor clicking number steppers as fast as a script can, and what the server's other
visitors see meanwhile: the latency of the server's health endpoint, polled every 0.2 s from
another client, during the clicks and until the server is idle again, and the server's CPU
seconds (a hostile pass found one tab clicking ~19 times a second stall the server for 10 to
48 s). Optionally two source trees, one after the other on the same machine.

    python bench/bench_clicks.py [--seconds 10] [--old /tmp/old_tree]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ui import CHROMIUM, ROOT, server  # noqa: E402

QUERY = "/?n=200000&seed=777&live=1&rate=16.5"  # a large live run restarts on each rerun
# the i-th click: the (i // 2)-th stepper of the page, its "+" on even i and its "-" on odd i
# (the value comes back, the rerun happens each time); 1 if a stepper was clicked
CLICK_JS = """(i) => {
  const ups = document.querySelectorAll('button[data-testid=stNumberInputStepUp]');
  const downs = document.querySelectorAll('button[data-testid=stNumberInputStepDown]');
  if (!ups.length) return 0;
  const k = Math.floor(i / 2) % ups.length;
  const b = (i % 2 === 0 ? ups : downs)[k];
  if (!b || b.disabled) return 0;
  b.click();
  return 1;
}"""


def _cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) of the server's process group so far."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(f[2]) == pgid:  # field 5 of stat: the process group
            total += (int(f[11]) + int(f[12])) / tick
    return total


def poll_health(url: str, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=120).read()
        except OSError:
            pass
        out.append(time.perf_counter() - t)
        time.sleep(0.2)


def measure(root: Path, seconds: float, rate: float = 20.0) -> dict:
    """A server of the tree at root and a browser of their own: ``clicks_against``."""
    from playwright.sync_api import sync_playwright
    with server(root=root) as (url, _):
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM)
            try:
                return clicks_against(url, b, seconds, rate)
            finally:
                b.close()


def clicks_against(url: str, b, seconds: float, rate: float = 20.0) -> dict:
    """One tab of browser b on the single-engine page of the server at url clicks its number
    steppers in turn, rate clicks a second, for the given seconds while another client polls
    the health endpoint; then waits until the server is idle. Figures as a dict."""
    pgid = server_pgid(url)
    page = b.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url + QUERY)
        page.wait_for_selector("[data-testid=stNumberInput]", timeout=60_000)
        # from the first run's end, as before the inputs were drawn during it (runs.FIRST_PAINT_PAUSE_S)
        page.get_by_text("Live view:").first.wait_for(timeout=180_000)
        page.wait_for_timeout(1000)
        lat: list = []
        stop = threading.Event()
        th = threading.Thread(target=poll_health, args=(url, stop, lat), daemon=True)
        cpu0 = _cpu_seconds(pgid)
        th.start()
        # clicks from the page's own script, one stepper every 1/rate s in turn (up, then down):
        # an autoclicker's pace, whatever the page is drawing (Playwright's clicks wait for it; each
        # evaluate waits for the page's main thread: 6-12 clicks a second came on a busy VM, and a
        # timer in the page, tried, came 2-3 a second)
        t0, clicks = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            clicks += page.evaluate(CLICK_JS, clicks)
            time.sleep(1.0 / rate)
        click_s = time.perf_counter() - t0
        # until the server is idle: its CPU grows by under 0.1 s in a second
        last, idle_at = _cpu_seconds(pgid), None
        while time.perf_counter() - t0 < seconds + 120:
            time.sleep(1.0)
            now = _cpu_seconds(pgid)
            if now - last < 0.1:
                idle_at = time.perf_counter() - t0
                break
            last = now
        stop.set()
        th.join(130)
    finally:
        page.close()
    return {"clicks": clicks, "click_s": round(click_s, 1), "clicks_per_s": round(clicks / click_s, 1),
            "worst_health_s": round(max(lat), 2) if lat else None,
            "health_over_1s": sum(x > 1 for x in lat), "server_cpu_s": round(_cpu_seconds(pgid) - cpu0, 1),
            "idle_after_s": None if idle_at is None else round(idle_at, 1)}


def server_pgid(url: str) -> int:
    """The process group of the server listening on url's port (bench_ui.server starts it in
    a session of its own)."""
    port = url.rsplit(":", 1)[1]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(cmd) and port.encode() in cmd:
                return os.getpgid(int(d.name))
    raise RuntimeError("server process not found")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to click")
    ap.add_argument("--rate", type=float, default=20.0, help="clicks per second")
    ap.add_argument("--old", type=Path, help="another source tree, measured first")
    args = ap.parse_args()
    trees = ([("old", args.old)] if args.old else []) + [("new", ROOT)]
    for label, root in trees:
        print(label, measure(root, args.seconds, args.rate), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
