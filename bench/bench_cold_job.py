"""A cold server, a long job asked for at once, and a visitor's run: how long the compiled kernel
waits (round 31).

    python bench/bench_cold_job.py [--tree TREE] [--repeat N]

Starts ``streamlit run app.py`` from TREE (default: this one) with an empty Numba cache
(a fresh NUMBA_CACHE_DIR) and LLMSIM_UI_TIMING=1. Session A opens The model page and switches
on "Measure each scheduler's boundary point" as soon as the page is drawn (a long job: it
waits for the compile process's second line, the single-engine kernel); session B opens the
single-engine page 4 s after the start and runs its default scenario. Both are browser-free
Streamlit sessions (its websocket protocol), so the browser's CPU does not blur the figures.

Prints, per start: when the compile process wrote the general kernel's file, how long after
that the server noticed it (its "general kernel written" line: then every run goes compiled),
when the single-engine kernel was loaded, and when B's script run ended. Before round 31 a job
waiting for the second line held the reading of the first, and the server noticed the general
kernel ~6 s late. Seconds from the server's start.
"""
import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parent.parent
B_AFTER_S = 4.0
HOLD_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def messages(ws, t0: float):
    """The server's messages to a session, parsed, until HOLD_S after t0."""
    while time.time() - t0 < HOLD_S:
        try:
            data = await asyncio.wait_for(ws.recv(), timeout=1)
        except asyncio.TimeoutError:
            continue
        fm = ForwardMsg()
        fm.ParseFromString(data)
        yield fm


async def model_session(url: str, t0: float) -> None:
    """Session A: The model page, its boundary-search toggle switched on once it is drawn."""
    async with websockets.connect(url, subprotocols=["streamlit"], max_size=2**27) as ws:
        bm = BackMsg()
        bm.rerun_script.page_name = "model"
        await ws.send(bm.SerializeToString())
        toggle, sent = None, False
        async for fm in messages(ws, t0):
            if fm.WhichOneof("type") == "delta" and fm.delta.WhichOneof("type") == "new_element":
                el = fm.delta.new_element
                if el.WhichOneof("type") == "checkbox" and "region_search" in el.checkbox.id:
                    toggle = toggle or el.checkbox.id
            if fm.WhichOneof("type") == "script_finished" and toggle and not sent:
                bm = BackMsg()
                bm.rerun_script.page_name = "model"
                w = bm.rerun_script.widget_states.widgets.add()
                w.id, w.bool_value = toggle, True
                await ws.send(bm.SerializeToString())
                sent = True


async def single_session(url: str, t0: float, out: dict) -> None:
    """Session B: the single-engine page's default run, B_AFTER_S after the start."""
    await asyncio.sleep(max(0.0, t0 + B_AFTER_S - time.time()))
    async with websockets.connect(url, subprotocols=["streamlit"], max_size=2**27) as ws:
        bm = BackMsg()
        bm.rerun_script.SetInParent()
        await ws.send(bm.SerializeToString())
        async for fm in messages(ws, t0):
            if fm.WhichOneof("type") == "script_finished":
                out["b_finished"] = time.time() - t0
                return


def one_start(tree: Path) -> dict:
    cache = Path(tempfile.mkdtemp(prefix="llmsim-cold-job-"))
    log = cache / "server.log"
    port = free_port()
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache / "numba"), LLMSIM_UI_TIMING="1")
    t0 = time.time()
    with open(log, "w") as f:
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                   "--server.headless", "true"], cwd=tree, env=env, stdout=f, stderr=subprocess.STDOUT)
    out: dict = {}
    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        url = f"ws://127.0.0.1:{port}/_stcore/stream"

        async def both():
            await asyncio.gather(model_session(url, t0), single_session(url, t0, out))
        asyncio.run(both())
        time.sleep(1.0)
    finally:
        server.terminate()
        server.wait(20)
    text = log.read_text()

    def stamp(what: str):  # the epoch of the server's timing line saying `what`
        m = re.search(r"@(\d+\.\d+)[^\]]*\] " + re.escape(what), text)
        return float(m.group(1)) - t0 if m else None
    files = list((cache / "numba").glob("*/core.run_kernel*.nbi"))
    out["general_file"] = files[0].stat().st_mtime - t0 if files else None
    out["general_noticed"] = stamp("compile process: general kernel written")
    out["single_loaded"] = stamp("single-engine kernel loaded")
    shutil.rmtree(cache, ignore_errors=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default=str(ROOT), help="the source tree whose app.py the server runs")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args(argv)
    print(f"cold server from {a.tree}; session A: The model's boundary search at once; B: single-engine page at "
          f"{B_AFTER_S:.0f} s (seconds from the server's start)")
    for _ in range(a.repeat):
        o = one_start(Path(a.tree))
        f = lambda x: "-" if x is None else f"{x:5.1f}"  # noqa: E731
        late = (o["general_noticed"] - o["general_file"]
                if o.get("general_noticed") is not None and o.get("general_file") is not None else None)
        print(f"general kernel file {f(o.get('general_file'))}, noticed by the server {f(o.get('general_noticed'))} "
              f"({'-' if late is None else f'{late:.2f}'} s later); single-engine kernel loaded "
              f"{f(o.get('single_loaded'))}; B's run ended {f(o.get('b_finished'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
