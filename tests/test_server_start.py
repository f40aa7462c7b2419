"""What the dashboard's server does as it starts (llmsim_ui/server_start.py), without a
browser: a bad setting in the environment stops it then, with a message naming the
setting; and the memory finished runs free goes back to the system."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_ui import free_port  # noqa: E402
from llmsim_ui import server_start  # noqa: E402


def test_a_bad_setting_stops_the_server_as_it_starts():
    """Each of the server's settings, set wrong, stops `streamlit run app.py` within
    seconds, before any visitor: the last two used to be found only by the first page view
    (app.py serves an st.App whose start imports the modules that read them on a thread)."""
    bad = {
        "LLMSIM_MEMORY_TRIM_S": ("soon", "LLMSIM_MEMORY_TRIM_S = 'soon' is not a number; allowed: 0 (never) "
                                         "or seconds between 1 and 86,400. The server stops."),
        "LLMSIM_DEMO_LIMITS": ("memory=512", "LLMSIM_DEMO_LIMITS: 'memory=512' names no limit ('memory'); "
                                             "allowed names: max_calls"),
        "LLMSIM_SERVER_MEMORY_MIB": ("5", "LLMSIM_SERVER_MEMORY_MIB = '5'; allowed: MiB between 64 and 1,048,576. "
                                          "The server stops."),
    }
    procs = {}
    for var, (value, _) in bad.items():
        env = dict(os.environ, **{var: value})
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(free_port()), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false"]
        procs[var] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
    try:
        for var, p in procs.items():
            out, _ = p.communicate(timeout=120)
            assert p.returncode != 0, out
            assert f"llmsim: {bad[var][1]}" in out, out
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()


def test_a_bad_trim_period_names_the_setting(monkeypatch):
    for raw in ("-1", "1e9", "nan", "inf", "every minute", "1e-9", "0.5"):  # below 1 s: a spinning thread
        monkeypatch.setenv("LLMSIM_MEMORY_TRIM_S", raw)
        with pytest.raises(ValueError, match=f"LLMSIM_MEMORY_TRIM_S = '{raw}'.*allowed: 0 .never. or seconds "
                                             "between 1 and 86,400"):
            server_start.trim_every_s()
    monkeypatch.setenv("LLMSIM_MEMORY_TRIM_S", " 0 ")
    assert server_start.trim_every_s() == 0.0
    monkeypatch.delenv("LLMSIM_MEMORY_TRIM_S")
    assert server_start.trim_every_s() == server_start.TRIM_EVERY_S


# Threads (a server's sessions) allocate and free arrays of 1 MiB after a 4 MiB one was
# freed: glibc then serves them from per-thread heaps, which keep the freed memory.
_ALLOC = textwrap.dedent("""
    import sys, threading, time
    import numpy as np
    sys.path.insert(0, {root!r})
    from llmsim_ui import server_start

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    if sys.argv[1] == "tuned":
        print(server_start.allocator(0.2), file=sys.stderr)
    big = np.ones(1 << 19)  # 4 MiB, its own mapping: freeing it raises glibc's mmap threshold
    del big
    base = rss_mib()

    def session(keep):
        arrays = [np.ones(1 << 17) for _ in range(60)]  # 60 x 1 MiB, written
        keep.append(arrays[-1])  # the newest stays: its heap cannot shrink from the top
        del arrays

    keep = []
    threads = [threading.Thread(target=session, args=(keep,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.0)  # five trims (tuned)
    print(round(rss_mib() - base))
""")


def _held_after_frees(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _ALLOC.format(root=str(ROOT)), mode], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, MALLOC_ARENA_MAX=""))
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(server_start._glibc() is None, reason="the allocator tuning is glibc's")
def test_memory_freed_by_finished_runs_goes_back_to_the_system():
    """A hosted server's resident memory used to stay at its high-water mark (1,485 MiB
    after a hostile visitor's runs had ended, 345 MiB at start): glibc kept what the runs
    freed. With the server's allocator tuning it returns it within a trim period."""
    untuned = _held_after_frees("default")
    if untuned < 100:
        pytest.skip(f"this C library gave the memory back by itself ({untuned} MiB held)")
    tuned = _held_after_frees("tuned")
    assert tuned < 20, (untuned, tuned)


_ALTAIR = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, {root!r})
    from llmsim import _kernel_cache
    _kernel_cache.precompile = lambda: True  # as on a cold cache: no kernel to load here
    from llmsim_ui import runs, server_start as S
    S.ALTAIR_AFTER_FRAME_S = 0.0
    reached = threading.Event()

    class FirstFrame(threading.Event):
        def wait(self, timeout=None):
            reached.set()
            return super().wait(timeout)

    runs.first_frame_drawn = FirstFrame()
    th = threading.Thread(target=S.preload, daemon=True)
    th.start()
    assert reached.wait(120), "the preload never waited for a first frame"
    before = "altair" in sys.modules
    runs.first_frame_drawn.set()
    th.join(120)
    print(before, "altair" in sys.modules, th.is_alive())
""")


def test_the_server_start_imports_altair_after_a_first_frame():
    """The charts a run's end draws are built with Altair, whose import (0.3-0.45 s) the first
    run of each server waited for; the server's start now imports it in the background, but
    only once a first frame has been drawn: holding the GIL that long earlier delayed the
    first trajectory (bench/README.md, Round 16). Until then Altair is not loaded: neither the
    preload's other imports nor Streamlit bring it along."""
    out = subprocess.run([sys.executable, "-c", _ALTAIR.format(root=str(ROOT))], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "False"], out.stdout + out.stderr
