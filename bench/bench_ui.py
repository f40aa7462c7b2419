"""Startup and live-update figures of the dashboard, measured in a real browser.

    python bench/bench_ui.py            # prints a table, writes bench/results-ui.json

- fresh start: ``streamlit run app.py`` with an empty numba cache (NUMBA_CACHE_DIR set to
  a new temporary directory), a browser opening the single-engine page: seconds until the
  first trajectory is drawn, until the sidebar's inputs are drawn (grey placeholders before),
  and until the live run has finished (every verdict shown);
- restart: the same with the numba cache that run filled (a server restart);
- visit: a restart again, the page opened VISIT_AFTER_S seconds after the server answers
  (a visitor arriving at a server that is up), timed from the moment the page is opened:
  what the server's start (llmsim_ui/server_start.py) already did is not waited for;
- live view: chart updates per second the browser received while the run played
  (counted with a MutationObserver on the chart elements) and the server's own count;
- ``--floor``: Streamlit's own floor on this machine, the same measure for an app that
  only draws one Vega-Lite chart (this repository's .streamlit/config.toml, no imports),
  from ``streamlit run`` and from a page opened VISIT_AFTER_S seconds after the start.

The helpers (free port, server process, browser launch, page checks) are shared with
tests/test_browser.py. The browser is Debian's chromium driven by Playwright; no browser
is ever downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1000}

# counts the moments (>= 40 ms apart) at which a chart's DOM changed: one per redraw; and
# when the sidebar's first number input was drawn (a grey placeholder until then)
UPDATE_COUNTER_JS = """
window.__chartUpdates = [];
window.__inputsAt = null;
const __obs = new MutationObserver((muts) => {
  if (window.__inputsAt === null && document.querySelector('[data-testid="stSidebar"] [data-testid="stNumberInput"]')) {
    window.__inputsAt = performance.now();
  }
  for (const m of muts) {
    const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
    if (el && el.closest && el.closest('[data-testid="stVegaLiteChart"]')) {
      const now = performance.now();
      const a = window.__chartUpdates;
      if (!a.length || now - a[a.length - 1] > 40) a.push(now);
      return;
    }
  }
});
const __start = () => __obs.observe(document.body, {subtree: true, childList: true, attributes: true,
                                                    characterData: true});
if (document.body) { __start(); } else { document.addEventListener('DOMContentLoaded', __start); }
"""

ERROR_TEXTS = ("Traceback", "This app has encountered an error", "Error:", "StreamlitAPIException")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(numba_cache_dir: str | None = None, log_path: Path | None = None, port: int | None = None,
           root: Path | None = None):
    """``streamlit run app.py`` (in root, this repository by default) on a free loopback port;
    yields (base_url, t_started). Always terminated (its process group) on exit."""
    port = port or free_port()
    env = dict(os.environ, LLMSIM_UI_TIMING="1")
    if numba_cache_dir:
        env["NUMBA_CACHE_DIR"] = numba_cache_dir
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    t0 = time.perf_counter()
    server.launched_epoch = time.time()
    proc = subprocess.Popen(cmd, cwd=root or ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode}; see {log_path}")
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("streamlit did not answer /_stcore/health within 60 s")
                time.sleep(0.1)
        server.ready_s = time.perf_counter() - t0
        yield url, t0
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if log_path:
            log.close()


@contextmanager
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(b):
    page = b.new_page(viewport=VIEWPORT)
    page.add_init_script(UPDATE_COUNTER_JS)
    return page


def page_problems(page) -> list[str]:
    """Exception boxes or traceback text on the page (st.exception, uncaught errors)."""
    out = []
    n = page.locator('[data-testid="stException"]').count()
    if n:
        out.append(f"{n} exception element(s): " + page.locator('[data-testid="stException"]').first.inner_text()[:500])
    body = page.inner_text("body")
    for t in ERROR_TEXTS:
        if t in body:
            i = body.index(t)
            out.append(f"page text contains {t!r}: …{body[max(0, i - 200):i + 300]}…")
    return out


def wait_text(page, text: str, timeout_s: float = 120) -> None:
    page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout_s * 1000)


def screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its own container, so grow the viewport."""
    h = page.evaluate("""() => { const m = document.querySelector('[data-testid="stMain"]') ||
                                 document.querySelector('section.main');
                                 return Math.max(document.body.scrollHeight, m ? m.scrollHeight : 0); }""")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": int(min(max(h, 900), 6000))})
    time.sleep(0.4)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)


LIVE_RE = re.compile(r"Live view: (\d+) chart updates in ([\d.]+) s \(([\d.]+) per second\)")


def measure_start(url: str, t0: float, b, query: str = "") -> dict:
    """Open the single-engine page; seconds (from the server's start) to the first drawn
    trajectory and to the finished run; chart updates per second seen by the browser."""
    page = new_page(b)
    t_nav = time.perf_counter() - t0
    page.goto(url + "/" + query)
    page.locator('[data-testid="stVegaLiteChart"] g.mark-line path').first.wait_for(state="attached", timeout=180_000)
    first = time.perf_counter() - t0
    wait_text(page, "Live view:", 180)
    done = time.perf_counter() - t0
    caption = page.get_by_text("Live view:").first.inner_text()
    m = LIVE_RE.search(caption)
    ts = page.evaluate("window.__chartUpdates")
    inputs_at = page.evaluate("window.__inputsAt")
    # the browser's rate while the run played: from the typical gap between redraws (the
    # verdicts computed after the animation leave one long gap that must not count)
    gaps = sorted(b - a for a, b in zip(ts, ts[1:]))
    median_gap = gaps[len(gaps) // 2] / 1000 if gaps else 0.0
    res = {"server_ready_s": round(getattr(server, "ready_s", float("nan")), 2),
           "first_trajectory_s": round(first, 2), "run_finished_s": round(done, 2),
           "inputs_drawn_s": round(t_nav + inputs_at / 1000, 2) if inputs_at is not None else None,
           "server_updates": int(m.group(1)) if m else None,
           "server_updates_per_s": float(m.group(3)) if m else None,
           "browser_updates": len(ts), "browser_updates_per_s": round(1 / median_gap, 2) if median_gap > 0 else None,
           "problems": page_problems(page)}
    page.close()
    return res


FLOOR_APP = """import streamlit as st
st.vega_lite_chart({"data": {"values": [{"t": 0, "v": 1}, {"t": 1, "v": 2}]}, "mark": "line",
                    "encoding": {"x": {"field": "t", "type": "quantitative"},
                                 "y": {"field": "v", "type": "quantitative"}}})
"""


VISIT_AFTER_S = 5.0


def measure_floor(b, repeat: int, visit: bool = False) -> list[float]:
    """Seconds from ``streamlit run`` to the line drawn by an app that draws one Vega-Lite
    chart first thing: what any Streamlit page with a chart costs here (server start, the
    browser loading Streamlit's page and its chart code)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="llmsim-floor-") as d:
        (Path(d) / "app.py").write_text(FLOOR_APP)
        (Path(d) / ".streamlit").mkdir()
        shutil.copy(ROOT / ".streamlit" / "config.toml", Path(d) / ".streamlit" / "config.toml")
        for _ in range(repeat):
            with server(root=Path(d)) as (url, t0):
                if visit:
                    time.sleep(VISIT_AFTER_S)
                    t0 = time.perf_counter()
                page = new_page(b)
                page.goto(url + "/")
                page.locator('[data-testid="stVegaLiteChart"] g.mark-line path').first.wait_for(
                    state="attached", timeout=60_000)
                out.append(round(time.perf_counter() - t0, 2))
                page.close()
    return out


STAGE_RE = re.compile(r"\[llmsim-ui +[\d.]+ s @([\d.]+)(?: cpu ([\d.]+))?\] (.*)")


def wait_stage(log_path: Path, text: str, timeout_s: float) -> bool:
    """Wait until the server's log (LLMSIM_UI_TIMING lines) has a stage line containing text."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if any(text in line for line in log_path.read_text(errors="replace").splitlines()
               if line.startswith("[llmsim-ui")):
            return True
        time.sleep(0.2)
    return False


def server_stages(log_path: Path, launched_epoch: float, cpu: bool = False) -> dict:
    """Seconds from the server's launch to each stage the app logged (LLMSIM_UI_TIMING):
    where a start's time goes on the server's side (the browser's drawing comes after).
    cpu: the server process's CPU seconds (all threads, since it started) at each stage
    instead, which other jobs on the machine change much less than the wall clock."""
    out = {}
    for line in log_path.read_text(errors="replace").splitlines():
        m = STAGE_RE.search(line)
        if m and (m.group(2) or not cpu):
            name = re.sub(r"[\d.]+ s$", "", m.group(3)).strip().rstrip(":")
            out.setdefault(name, float(m.group(2)) if cpu else round(float(m.group(1)) - launched_epoch, 2))
    return out


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="fresh starts and restarts to measure (medians reported)")
    ap.add_argument("--floor", action="store_true", help="only Streamlit's floor: a one-chart app, --repeat times")
    args = ap.parse_args(argv)
    if args.floor:
        with browser() as b:
            floor = measure_floor(b, args.repeat)
            visit = measure_floor(b, args.repeat, visit=True)
        print(f"one-chart Streamlit app, streamlit run to its line drawn: {floor} s; page opened "
              f"{VISIT_AFTER_S:.0f} s after the start to its line drawn: {visit} s; "
              f"load average {os.getloadavg()[0]:.1f}")
        return 0
    runs: dict = {"fresh": [], "restart": [], "visit": []}
    logs = ROOT / "test-artifacts"
    logs.mkdir(exist_ok=True)
    with browser() as b:
        for i in range(args.repeat):
            cache = tempfile.mkdtemp(prefix="llmsim-numba-")
            try:
                for label in ("fresh", "restart", "visit"):
                    log = logs / f"bench-{label}-{i}.log"
                    with server(cache, log) as (url, t0):
                        opened = server.launched_epoch
                        if label == "visit":  # timed from the page's opening
                            time.sleep(VISIT_AFTER_S)
                            opened += time.perf_counter() - t0
                            t0 = time.perf_counter()
                        runs[label].append(measure_start(url, t0, b))
                        if label == "fresh":
                            # a cold server writes the single-engine kernel after the run may have
                            # ended (the run goes on with the general one meanwhile): the restart
                            # measures a full cache, as a server that ran a while leaves it
                            wait_stage(log, "single-engine kernel", 120)
                    runs[label][-1]["server_stages_s"] = server_stages(log, opened)
                    cpu = runs[label][-1]["server_cpu_s"] = server_stages(log, opened, cpu=True)
                    if "app.py script starts" in cpu and "first chunk drawn" in cpu:
                        runs[label][-1]["script_cpu_to_first_chunk_s"] = round(
                            cpu["first chunk drawn"] - cpu["app.py script starts"], 2)
                    print(label, i, runs[label][-1], flush=True)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    out = {}
    for label, rs in runs.items():
        med = {}
        for k in ("server_ready_s", "first_trajectory_s", "inputs_drawn_s", "run_finished_s", "browser_updates_per_s",
                  "server_updates_per_s", "script_cpu_to_first_chunk_s"):
            vals = sorted(r[k] for r in rs if r.get(k) is not None)
            med[k] = vals[len(vals) // 2] if vals else None
            med[k + "_range"] = [vals[0], vals[-1]] if vals else None
        med["problems"] = sum((r["problems"] for r in rs), [])
        out[label] = med
    out["load_average"] = os.getloadavg()
    out["runs"] = runs
    (ROOT / "bench" / "results-ui.json").write_text(json.dumps(out, indent=2))
    print(f"medians of {args.repeat}; load average {out['load_average'][0]:.1f}")
    print(f"{'':10s} {'server up':>10s} {'first trajectory':>17s} {'inputs drawn':>13s} {'run finished':>13s} "
          f"{'updates/s (browser, server)':>28s}")
    for k in ("fresh", "restart", "visit"):
        v = out[k]
        print(f"{k:10s} {v['server_ready_s']:>8.1f} s {v['first_trajectory_s']:>15.1f} s "
              f"{v['inputs_drawn_s'] or float('nan'):>11.1f} s {v['run_finished_s']:>11.1f} s "
              f"{v['browser_updates_per_s'] or 0:>15.1f} {v['server_updates_per_s'] or 0:>10.1f}")
    print("server CPU seconds (all its threads) from app.py's start to the first chunk drawn: "
          + ", ".join(f"{k} {out[k]['script_cpu_to_first_chunk_s']}" for k in ("fresh", "restart", "visit")))
    print(f"(visit: a restart, the page opened {VISIT_AFTER_S:.0f} s after the server answered; seconds from the page's opening)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
