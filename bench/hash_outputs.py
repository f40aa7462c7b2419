"""Fingerprint of what runs produce, to check a speed change keeps every number identical:
per scenario (every file under scenarios/ except sweeps, W1 and variants, with seeds) a hash
of the summary (wall_seconds dropped), the verdict, the timeseries columns and the requests /
workflows / iterations tables, and of the Simulation's arrays right after setup.

    PYTHONPATH=. python bench/hash_outputs.py > /tmp/new.txt   # then diff against the old tree's
"""
import dataclasses
import hashlib
import sys
from pathlib import Path

import numpy as np

import llmsim

ROOT = Path(__file__).resolve().parent.parent


def h(obj) -> str:
    m = hashlib.sha256()

    def feed(x):
        if isinstance(x, np.ndarray) and x.dtype == object:  # its bytes are pointers
            m.update(repr(x.tolist()).encode())
        elif isinstance(x, np.ndarray):
            m.update(str((x.dtype, x.shape)).encode())
            m.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                m.update(repr(k).encode())
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            m.update(b"[")
            for v in x:
                feed(v)
            m.update(b"]")
        elif isinstance(x, float):
            m.update(x.hex().encode() if x == x else b"nan")
        else:
            m.update(repr((type(x).__name__, x)).encode())
    feed(obj)
    return m.hexdigest()[:16]


SETUP_ARRAYS = ("pool_p", "pool_d", "delay_pool", "route_u", "ci", "jf", "ji", "si", "sf", "ei", "ef",
                "e_steps_ptr", "e_steps", "opt_ptr", "opt_cum", "child_ptr", "child_step",
                "class_root_ptr", "class_root", "mp_route", "rec", "gi", "gf", "jjoin")


def cases():
    for p in sorted((ROOT / "scenarios").rglob("*.toml")):
        if "sweeps" in p.parts:
            continue
        sc = llmsim.load_scenario(p)
        if sc.num_requests is not None and sc.num_requests > 20_000:
            sc = dataclasses.replace(sc, num_requests=20_000)
        for seed in (sc.seed, sc.seed + 7):
            yield f"{p.relative_to(ROOT)} seed {seed}", dataclasses.replace(sc, seed=seed), {}
    w1 = llmsim.load_scenario(ROOT / "scenarios/w1.toml")
    w1 = dataclasses.replace(w1, num_requests=30_000)
    import tomllib
    d = tomllib.loads((ROOT / "scenarios/w1.toml").read_text())
    variants = {
        "orca": {"engine": {"scheduler": "orca"}},
        "vllm-mem": {"engine": {"scheduler": "vllm", "token_budget": 8192, "kv_cache_tokens": 60_000},
                     "arrival": {"process": "poisson", "rate": 13.7}},
        "gamma-lognormal": {"arrival": {"process": "gamma", "rate": 25.0, "cv": 2.0},
                            "prompt_tokens": {"dist": "lognormal", "mean": 500, "cv": 1.0, "max": 4000}},
        "duration": {"duration_seconds": 300.0},
        "duration+num": {"duration_seconds": 200.0, "num_requests": 100_000},
        "drain": {"drain": True},
        "deterministic-zipf": {"arrival": {"process": "deterministic", "rate": 20.0},
                               "output_tokens": {"dist": "zipf", "s": 1.1, "max": 2000}},
    }
    for name, ch in variants.items():
        dd = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
        dd["workload"]["num_requests"] = 30_000
        for k, v in ch.items():
            if k == "engine":
                dd["engine"].update(v)
            elif k == "duration_seconds":
                dd["workload"].pop("num_requests", None)
                dd["workload"]["duration_seconds"] = v
                if "num_requests" in ch:
                    dd["workload"]["num_requests"] = ch["num_requests"]
            elif k == "num_requests":
                pass
            elif k == "drain":
                dd["workload"]["drain"] = v
            else:
                dd["workload"][k] = v
        for seed in (1, 5):
            dd["seed"] = seed
            yield f"w1 {name} seed {seed}", llmsim.scenario_from_table(dd), {}
    yield "w1 record_iterations", dataclasses.replace(w1, num_requests=3000), {"record_iterations": True}


def fingerprint(name, sc, kw):
    sim = llmsim.Simulation(sc, **kw)
    setup = h({a: getattr(sim, a) for a in SETUP_ARRAYS})
    # a partial result halfway, then the whole run (as llmsim.simulate)
    sim.advance(until_s=sim.horizon / 2)
    mid = sim.result()
    mid_s = {k: v for k, v in mid.summary.items() if k != "wall_seconds"}
    mid_h = h([mid_s, mid._ts_columns, llmsim.verdict(mid).__dict__])
    res = llmsim.simulate(sc, **kw)
    s = {k: v for k, v in res.summary.items() if k != "wall_seconds"}
    ts = {c: res.timeseries_column(c) for c in res.timeseries.columns}
    tables = {}
    for t in ("requests", "workflows", "iterations"):
        df = getattr(res, t)
        if df is not None:
            tables[t] = {c: df[c].to_numpy() for c in df.columns}
    v = {k: val for k, val in res.verdict.__dict__.items()}
    return f"{name}: setup {setup} mid {mid_h} summary {h(s)} verdict {h(v)} ts {h(ts)} tables {h(tables)}"


if __name__ == "__main__":
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    for name, sc, kw in cases():
        if only in name:
            print(fingerprint(name, sc, kw), flush=True)
