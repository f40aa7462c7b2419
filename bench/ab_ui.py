"""A/B of the dashboard's start: two source trees, their servers started in turn (interleaved
rounds, a warm Numba cache each), the single-engine page opened in Debian's chromium, seconds
to the first trajectory drawn, to the sidebar's inputs drawn and to the run's end (every
verdict shown).

    python bench/ab_ui.py TREE_A TREE_B [ROUNDS] [VISIT_AFTER_S]

VISIT_AFTER_S = 0 (the default): the browser opens the page as soon as the server answers,
timed from ``streamlit run`` (bench_ui.py's "restart"); > 0: it opens the page that many
seconds after, timed from the page's opening (bench_ui.py's "visit"). Prints each start with
the server's stages (LLMSIM_UI_TIMING, seconds on the same clock) and the medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ui as B  # noqa: E402

# fills the tree's Numba cache (both kernels where the tree has two)
WARM = "from llmsim import _kernel_cache; _kernel_cache.compile_kernel()"
STAGES = ("app.py script starts", "chart axes sent", "first chunk drawn", "run finished after 30 chunks")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    trees = [Path(p).resolve() for p in argv[:2]]
    rounds = int(argv[2]) if len(argv) > 2 else 3
    delay = float(argv[3]) if len(argv) > 3 else 0.0
    out: dict = {t: [] for t in trees}
    done: dict = {t: [] for t in trees}
    inputs: dict = {t: [] for t in trees}
    logs = Path(B.ROOT) / "test-artifacts"
    logs.mkdir(exist_ok=True)
    for t in trees:  # each tree's own Numba cache, filled before the first start
        subprocess.run([sys.executable, "-c", WARM], cwd=t, check=True, env=dict(os.environ, PYTHONPATH=str(t)))
    with B.browser() as b:
        for r in range(rounds):
            for t in (trees if r % 2 == 0 else trees[::-1]):
                log = logs / f"ab-ui-{t.name}-{r}.log"
                with B.server(log_path=log, root=t) as (url, t0):
                    opened = B.server.launched_epoch
                    if delay > 0:
                        time.sleep(delay)
                        opened += time.perf_counter() - t0
                        t0 = time.perf_counter()
                    m = B.measure_start(url, t0, b)
                stages = B.server_stages(log, opened)
                out[t].append(m["first_trajectory_s"])
                done[t].append(m["run_finished_s"])
                inputs[t].append(m["inputs_drawn_s"] if m["inputs_drawn_s"] is not None else float("nan"))
                print(f"{t} round {r}: first trajectory {m['first_trajectory_s']:.2f} s, inputs drawn "
                      f"{inputs[t][-1]:.2f} s, run finished "
                      f"{m['run_finished_s']:.2f} s; server: "
                      + ", ".join(f"{k} {stages[k]:.2f}" for k in STAGES if k in stages)
                      + (f"; PROBLEMS {m['problems']}" if m["problems"] else ""), flush=True)
    for t, v in out.items():
        print(f"{t}: first trajectory median {statistics.median(v):.2f} s of {v}; inputs drawn median "
              f"{statistics.median(inputs[t]):.2f} s of {inputs[t]}; run finished median "
              f"{statistics.median(done[t]):.2f} s of {done[t]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
