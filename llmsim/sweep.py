"""Parameter sweeps: a base scenario, axes over its fields, one row of results per point.

A sweep file is a scenario file with a ``[sweep]`` table (docs/scenario-format.md):

    [sweep]
    design = "grid"                  # grid | random | latin-hypercube
    replications = 1
    [sweep.axes]
    load = [0.6, 0.9, 1.1]           # the load rho: sets the arrival rate from theory
    "engine.scheduler" = ["orca", "sarathi"]
    "engine.token_budget" = { low = 128, high = 2048, num = 5, scale = "log", integer = true }

Every point is the base scenario's TOML table with the axes' values set by their dotted
names, parsed and validated as a scenario file is, so every field a scenario file has can
be an axis and a bad value fails the way it would in a file. A point whose combination of
values is invalid (say a budget too small for a non-chunking scheduler's prompts) is
recorded with its error message, not run.

Seeds: replication r of point i runs with a seed drawn from
``SeedSequence([sweep seed, i, r])``, so a point's result does not depend on which
worker runs it, in which batch or in which order: in-process, an embedded Dask
LocalCluster and a remote Dask cluster give bit-identical results (``wall_seconds``
aside). ``common_random_numbers = true`` gives every point the seeds of point 0 instead
(neighbouring cells see the same arrivals: a smoother map, correlated errors).

Execution (``run_sweep``): points are grouped into batches (tasks), sent to an executor
(``InProcess`` or ``DaskExecutor``), and each finished batch is written at once as a
Parquet part under ``OUT/parts/``; ``resume=True`` runs only the points no part holds.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from llmsim.workload import ConfigError

DESIGNS = ("grid", "random", "latin-hypercube")
SCALES = ("linear", "log")
MAX_POINTS = 10_000_000
MAX_REPLICATIONS = 20
LOAD = "load"  # the special axis: the load rho (arrival rate = rho x the rate at load 1)

# what every row holds besides the axes and the recorded summary fields
SUMMARY_DEFAULT = ("throughput_rps", "token_throughput", "ttft_p50_s", "ttft_p99_s", "tbt_p99_s",
                   "e2e_p50_s", "e2e_p99_s", "completed", "preemptions", "final_backlog_tokens")
VERDICT_COLUMNS = ("verdict", "growth", "growth_lo", "growth_hi", "backlog_growth_tokens_per_s",
                   "theory_drift_tokens_per_s")
THEORY_COLUMNS = ("arrival_rate_rps", "load", "theory_capacity_rps", "theory_optimal_capacity_rps")
CAPACITY_COLUMNS = ("critical_rate_rps", "critical_lo_rps", "critical_hi_rps")
# columns that differ between identical runs (not part of a sweep's result proper)
VOLATILE_COLUMNS = ("wall_seconds",)


# ------------------------------------------------------------------------- axes


@dataclass(frozen=True)
class Axis:
    """One swept field. Either explicit ``values`` or a range ``low``..``high`` (``num``
    points in a grid, sampled in random / latin-hypercube designs)."""
    field: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    num: int | None = None
    scale: str = "linear"
    integer: bool = False

    @property
    def categorical(self) -> bool:
        return bool(self.values)

    def grid(self) -> list:
        if self.values:
            return list(self.values)
        n = self.num
        if n == 1:
            return [self._cast(self.low)]
        u = np.linspace(0.0, 1.0, n)
        return [self._from_unit(x) for x in u]

    def sample(self, u: float):
        """The axis value at a quantile u in [0, 1)."""
        if self.values:
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        return self._from_unit(u)

    def _from_unit(self, u: float):
        lo, hi = self.low, self.high
        if self.scale == "log":
            x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            x = lo + u * (hi - lo)
        return self._cast(min(max(x, lo), hi))

    def _cast(self, x):
        return int(round(x)) if self.integer else float(x)

    def dtype(self) -> str:
        if self.values:
            kinds = {type(v) for v in self.values}
            if kinds <= {int}:
                return "int64"
            if kinds <= {int, float}:
                return "float64"
            if kinds <= {bool}:
                return "bool"
            return "string"
        return "int64" if self.integer else "float64"


def _axis(name: str, spec, design: str) -> Axis:
    where = f"sweep.axes.{name}"
    if not isinstance(name, str) or not name or any(not seg for seg in name.split(".")):
        raise ConfigError(f"sweep.axes: {name!r} is not a dotted field name like \"engine.token_budget\"")
    if name in ("seed", "name", "description") or name.startswith("sweep"):
        raise ConfigError(f"{where}: {name!r} cannot be swept (seeds are derived per point from "
                          "sweep.seed); allowed: any field of [workload]/[engine]/[run]/[[engines]]/"
                          "[[workflows]], or load")
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: an empty list of values; give at least one")
        for v in spec:
            if isinstance(v, (dict, list)) and name != LOAD:
                continue  # a whole table (e.g. a batch_time) is a value like any other
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{where}: {v!r} must be finite")
        if name == LOAD:
            for v in spec:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 100):
                    raise ConfigError(f"{where}: {v!r} must be a load in (0, 100]")
        return Axis(name, tuple(spec))
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a list of values or a table "
                          "{ low = ..., high = ..., num = ..., scale = \"linear\" | \"log\", integer = false }")
    allowed = {"low", "high", "num", "scale", "integer"}
    extra = set(spec) - allowed
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    lo, hi = spec.get("low"), spec.get("high")
    for k, v in (("low", lo), ("high", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{where}.{k}: {v!r} must be a finite number (required for a range)")
    if not lo <= hi:
        raise ConfigError(f"{where}: low = {lo} must be <= high = {hi}")
    scale = spec.get("scale", "linear")
    if scale not in SCALES:
        raise ConfigError(f"{where}.scale: unknown value {scale!r}; allowed: {', '.join(SCALES)}")
    if scale == "log" and lo <= 0:
        raise ConfigError(f"{where}.low: {lo} must be > 0 on a log scale")
    if name == LOAD and not (0 < lo and hi <= 100):
        raise ConfigError(f"{where}: loads must lie in (0, 100], got {lo}..{hi}")
    integer = spec.get("integer", False)
    if not isinstance(integer, bool):
        raise ConfigError(f"{where}.integer: {integer!r} must be true or false")
    num = spec.get("num")
    if design == "grid":
        if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= 100_000:
            raise ConfigError(f"{where}.num: {num!r} must be a whole number in [1, 100000] "
                              "(the grid's points along this axis)")
    elif num is not None:
        raise ConfigError(f"{where}.num: only a grid has points per axis; a {design} design draws "
                          "sweep.samples points")
    return Axis(name, (), float(lo), float(hi), num, scale, integer)


# ------------------------------------------------------------------------ sweep


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep: the base scenario's TOML table and how to vary it."""
    base: dict = field(hash=False, compare=False)  # raw TOML table of the base scenario
    base_dir: str
    name: str
    axes: tuple
    design: str = "grid"
    samples: int | None = None
    seed: int = 0
    replications: int = 1
    num_requests: int | None = None
    record: tuple = SUMMARY_DEFAULT
    capacity: bool = False
    capacity_num_requests: int = 20_000
    common_random_numbers: bool = False
    batch: int = 0  # points per task; 0: automatic

    # ---------------------------------------------------------------- points
    def points(self) -> list[dict]:
        """Every point's axis values, in point order (index = position)."""
        if self.design == "grid":
            grids = [a.grid() for a in self.axes]
            return [dict(zip(self.fields, combo)) for combo in itertools.product(*grids)]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x5EE9]))
        n, d = self.samples, len(self.axes)
        if self.design == "random":
            u = rng.random((n, d))
        else:  # latin hypercube: one point per stratum of every axis, strata paired at random
            u = np.empty((n, d))
            for j in range(d):
                u[:, j] = (rng.permutation(n) + rng.random(n)) / n
        return [{a.field: a.sample(float(u[i, j])) for j, a in enumerate(self.axes)} for i in range(n)]

    @property
    def fields(self) -> list[str]:
        return [a.field for a in self.axes]

    @property
    def size(self) -> int:
        if self.design == "grid":
            return math.prod(len(a.values) if a.values else a.num for a in self.axes)
        return self.samples

    def seeds(self, point: int) -> list[int]:
        """The seeds of a point's replications (independent of batching and workers)."""
        i = 0 if self.common_random_numbers else point
        out = []
        for r in range(self.replications):
            w = np.random.SeedSequence([self.seed, i, r]).generate_state(2, np.uint32)
            out.append(int((int(w[0]) << 31) ^ int(w[1])))  # < 2**63
        return out

    def scenario(self, values: dict, seed: int | None = None):
        """The scenario of one point (validated; ConfigError naming the field)."""
        from llmsim.config import scenario_from_table
        t = copy.deepcopy(self.base)
        # a preset first, so that other axes (kv_cache_tokens, batch_time, ...) override it
        order = sorted(values, key=lambda f: (f.rsplit(".", 1)[-1] != "preset", f == LOAD))
        for f in order:
            if f != LOAD:
                _set_field(t, f, values[f], set(values))
        if self.num_requests is not None:
            run = t.setdefault("run", {}) if ("engines" in t or "workflows" in t) else t.setdefault("workload", {})
            run["num_requests"] = self.num_requests
        if seed is not None:
            t["seed"] = seed
        sc = scenario_from_table(t, Path(self.base_dir))
        sc = replace(sc, name=self.name)
        if LOAD in values:
            from llmsim.theory import analyze
            th = analyze(sc)
            if not (th.load > 0 and math.isfinite(th.load)):
                raise ConfigError("sweep.axes.load: the base scenario's load is not a positive number, "
                                  "so no rate gives a load")
            sc = sc.with_rate(values[LOAD] * sc.total_rate / th.load)
        return sc

    def fingerprint(self) -> str:
        """Identifies the sweep's results: same fingerprint, same rows."""
        d = {"base": self.base, "axes": [a.__dict__ for a in self.axes]}
        d.update({k: getattr(self, k) for k in ("design", "samples", "seed", "replications", "num_requests",
                                                "record", "capacity", "capacity_num_requests",
                                                "common_random_numbers")})
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def columns(self) -> dict:
        """Column name -> dtype of the result table, in order."""
        cols = {"point": "int64", "seed": "int64", "replications": "int64"}
        for a in self.axes:
            cols[a.field] = a.dtype()
        cols["scheduler"] = "string"
        for c in THEORY_COLUMNS + VERDICT_COLUMNS:
            cols[c] = "string" if c == "verdict" else "float64"
        for c in self.record:
            cols.setdefault(c, "float64")
        if self.capacity:
            for c in CAPACITY_COLUMNS:
                cols[c] = "float64"
        cols["error"] = "string"
        cols["wall_seconds"] = "float64"
        return cols


def _set_field(table: dict, dotted: str, value, swept: set) -> None:
    """Set a dotted field ("engine.token_budget", "engines[1].scheduler",
    "engines.planner.scheduler", "workflows.task.steps.plan.output_tokens.mean")."""
    where = f"sweep.axes.{dotted}"
    segs = []
    for seg in dotted.split("."):
        while "[" in seg and seg.endswith("]"):
            head, idx = seg[:seg.index("[")], seg[seg.index("[") + 1:-1]
            if head:
                segs.append(head)
            seg = ""
            if not idx.isdigit():
                raise ConfigError(f"{where}: [{idx}] is not a list index")
            segs.append(int(idx))
            break
        if seg:
            segs.append(seg)
    cur = table
    path = []
    for s in segs[:-1]:
        path.append(str(s))
        if isinstance(cur, list):
            if isinstance(s, int):
                if s >= len(cur):
                    raise ConfigError(f"{where}: index {s} is out of range (the base scenario has {len(cur)})")
                cur = cur[s]
                continue
            named = [x for x in cur if isinstance(x, dict) and x.get("name") == s]
            if not named:
                have = [x.get("name") for x in cur if isinstance(x, dict)]
                raise ConfigError(f"{where}: no element named {s!r} in {'.'.join(path[:-1])}; names: {have}")
            cur = named[0]
            continue
        if not isinstance(cur, dict) or s not in cur:
            raise ConfigError(f"{where}: the base scenario has no {'.'.join(path)!r} to vary "
                              "(give it in the base scenario first)")
        cur = cur[s]
    last = segs[-1]
    if isinstance(cur, list) and isinstance(last, int):
        if last >= len(cur):
            raise ConfigError(f"{where}: index {last} is out of range")
        cur[last] = value
        return
    if not isinstance(cur, dict):
        raise ConfigError(f"{where}: {'.'.join(map(str, segs[:-1]))!r} is not a table")
    cur[last] = value
    if last == "preset":
        # a preset sets these; the base scenario's own values would override the swept preset
        prefix = dotted.rsplit(".", 1)[0]
        for k in ("kv_cache_tokens", "batch_time", "arrival", "prompt_tokens", "output_tokens"):
            if k in cur and f"{prefix}.{k}" not in swept and k not in ("arrival",):
                cur.pop(k)


def load_sweep(path) -> Sweep:
    """Read a sweep file. Raises ConfigError naming the field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep file {str(path)!r}: not found")
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"sweep file {str(path)!r}: not a text file") from None
    from llmsim.config import parse_toml
    data = parse_toml(text, f"sweep file {str(path)!r}")
    return sweep_from_table(data, p.parent, default_name=p.stem)


def loads_sweep(text: str, base_dir=None, name: str = "sweep") -> Sweep:
    from llmsim.config import parse_toml
    data = parse_toml(text, "sweep")
    return sweep_from_table(data, Path(base_dir or "."), default_name=name)


def sweep_from_table(data: dict, base_dir: Path, default_name: str = "sweep") -> Sweep:
    from llmsim.config import parse_toml, scenario_from_table
    from llmsim.schedulers import SCHEDULERS  # noqa: F401  (registry loaded before workers fork)
    if not isinstance(data.get("sweep"), dict):
        raise ConfigError("sweep: missing table [sweep] (axes, design, replications, ...)")
    sw = dict(data["sweep"])
    allowed = {"scenario", "design", "samples", "seed", "replications", "num_requests", "record",
               "capacity", "capacity_num_requests", "common_random_numbers", "batch", "axes", "name"}
    extra = set(sw) - allowed
    if extra:
        raise ConfigError(f"sweep: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    base = {k: v for k, v in data.items() if k != "sweep"}
    base_dir = Path(base_dir)
    name = str(sw.get("name", default_name))
    if "scenario" in sw:
        if base.keys() - {"seed", "name", "description"}:
            raise ConfigError("sweep.scenario: give the base scenario either as a file (sweep.scenario) "
                              "or in this file ([workload]+[engine] ...), not both")
        sp = sw["scenario"]
        if not isinstance(sp, str):
            raise ConfigError(f"sweep.scenario: {sp!r} must be a path to a scenario file")
        f = (base_dir / sp) if not Path(sp).is_absolute() else Path(sp)
        if not f.is_file():
            raise ConfigError(f"sweep.scenario: {sp!r} not found (relative to {base_dir})")
        extra_top = {k: v for k, v in base.items()}
        try:
            text = f.read_text()
        except UnicodeDecodeError:
            raise ConfigError(f"sweep.scenario: {sp!r} is not a text file") from None
        base = parse_toml(text, f"sweep.scenario {sp!r}")
        base.update(extra_top)
        base_dir = f.parent
    if not base:
        raise ConfigError("sweep: no base scenario; give sweep.scenario = \"file.toml\" or the "
                          "[workload]+[engine] tables in this file")
    try:
        base_sc = scenario_from_table(copy.deepcopy(base), base_dir)
    except ConfigError as exc:
        raise ConfigError(f"base scenario: {exc}") from None

    design = sw.get("design", "grid")
    if design not in DESIGNS:
        raise ConfigError(f"sweep.design: unknown value {design!r}; allowed: {', '.join(DESIGNS)}")
    samples = None
    if design != "grid":
        samples = sw.get("samples")
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_POINTS:
            raise ConfigError(f"sweep.samples: {samples!r} must be a whole number in [1, {MAX_POINTS}] "
                              f"(the points a {design} design draws)")
    elif "samples" in sw:
        raise ConfigError("sweep.samples: a grid's size is the product of its axes; samples is for "
                          "design = \"random\" or \"latin-hypercube\"")
    axes_t = sw.get("axes")
    if not isinstance(axes_t, dict) or not axes_t:
        raise ConfigError("sweep.axes: missing or empty; e.g. [sweep.axes] load = [0.5, 0.9, 1.1]")
    axes = tuple(_axis(k, v, design) for k, v in axes_t.items())
    rates = [k for k in axes_t if k == LOAD or k.endswith("arrival.rate")]
    if LOAD in rates and len(rates) > 1:
        # the load sets every arrival rate (rho x the rate at load 1): a rate axis beside it
        # would be overwritten at every point, its values drawn but without effect
        raise ConfigError(f"sweep.axes: load and {', '.join(r for r in rates if r != LOAD)} both set the "
                          "arrival rate (the load is the rate over the capacity); allowed: one of them")

    def whole(key, lo, hi, default):
        v = sw.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"sweep.{key}: {v!r} must be a whole number in [{lo}, {hi}]")
        return v

    def flag(key):
        v = sw.get(key, False)
        if not isinstance(v, bool):
            raise ConfigError(f"sweep.{key}: {v!r} must be true or false")
        return v

    seed = whole("seed", 0, 2**63 - 1, base_sc.seed)
    reps = whole("replications", 1, MAX_REPLICATIONS, 1)
    from llmsim.config import MAX_REQUESTS
    nreq = whole("num_requests", 1000, MAX_REQUESTS, None)
    cap_n = whole("capacity_num_requests", 1000, 5_000_000, 20_000)
    batch = whole("batch", 0, 10_000, 0)
    record = sw.get("record", list(SUMMARY_DEFAULT))
    if not isinstance(record, list) or not all(isinstance(r, str) for r in record):
        raise ConfigError("sweep.record: expected a list of summary field names, e.g. [\"ttft_p99_s\"]")
    known = set(_summary_fields(base_sc))
    bad = [r for r in record if r not in known]
    if bad:
        raise ConfigError(f"sweep.record: unknown summary field(s) {bad}; allowed: {', '.join(sorted(known))}")
    sweep = Sweep(base=base, base_dir=str(base_dir.resolve()), name=name, axes=axes, design=design,
                  samples=samples, seed=seed, replications=reps, num_requests=nreq, record=tuple(record),
                  capacity=flag("capacity"), capacity_num_requests=cap_n,
                  common_random_numbers=flag("common_random_numbers"), batch=batch)
    if sweep.size > MAX_POINTS:
        raise ConfigError(f"sweep.axes: {sweep.size:,} points; at most {MAX_POINTS:,}")
    # each axis's values on the base scenario alone, so that a bad value fails now and names
    # its field; combinations that fail only together are recorded per point
    for a in axes:
        probe = a.values if a.values else [a.low, a.high] if not a.integer else [int(round(a.low)), int(round(a.high))]
        for v in dict.fromkeys(map(_freeze, probe)):
            try:
                sweep.scenario({a.field: _thaw(v)})
            except ConfigError as exc:
                msg = str(exc)
                raise ConfigError(msg if msg.startswith(f"sweep.axes.{a.field}")
                                  else f"sweep.axes.{a.field} = {_thaw(v)!r}: {msg}") from None
    return sweep


def _freeze(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def _thaw(v):
    return json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v


def _summary_fields(sc) -> list[str]:
    """The numeric summary fields a run of this scenario has (what `record` may name)."""
    names = ["arrival_rate_rps", "load", "arrived", "completed", "simulated_seconds", "horizon_seconds",
             "throughput_rps", "token_throughput", "goodput_tokens_per_s", "ttft_p50_s", "ttft_p99_s",
             "tbt_p50_s", "tbt_p99_s", "e2e_p50_s", "e2e_p99_s", "preemptions", "iterations", "tokens_in",
             "tokens_done", "tokens_recomputed", "final_backlog_tokens", "final_waiting", "mean_in_system",
             "capacity_rps", "backlog_growth_tokens_per_s", "theory_drift_tokens_per_s", "work_units",
             "scheduler_load", "recomputed_tokens_per_s", "recomputed_share"]
    if not sc.single:
        names += ["workflows_arrived", "workflows_completed", "workflow_e2e_p50_s", "workflow_e2e_p99_s"]
    return names


# --------------------------------------------------------------- running points


def run_point(sweep: Sweep, point: int, values: dict) -> dict:
    """One row: the point's scenario run `replications` times, its pooled verdict, the
    mean of each recorded field over the replications; or the error that stopped it."""
    from llmsim.simulate import simulate
    from llmsim.stability import verdict_from_runs
    from llmsim.theory import analyze
    t0 = time.perf_counter()
    seeds = sweep.seeds(point)
    row = {"point": point, "seed": seeds[0], "replications": sweep.replications}
    row.update({f: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
                for f, v in values.items()})
    eng = sweep.base.get("engine")
    row["scheduler"] = values.get("engine.scheduler",
                                  eng.get("scheduler", "sarathi") if isinstance(eng, dict) else None)
    try:
        scs = [sweep.scenario(values, s) for s in seeds]
        results = [simulate(sc) for sc in scs]
    except ConfigError as exc:
        row["error"] = str(exc)
        row["wall_seconds"] = time.perf_counter() - t0
        return row
    except Exception as exc:  # a run that cannot proceed (e.g. a stalled engine): say so, go on
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["wall_seconds"] = time.perf_counter() - t0
        return row
    v = results[0].verdict if len(results) == 1 else verdict_from_runs(results)
    th = analyze(scs[0])
    got = {"scheduler": results[0].summary["scheduler"], "arrival_rate_rps": scs[0].total_rate,
           "load": th.load, "theory_capacity_rps": th.capacity_rps,
           "theory_optimal_capacity_rps": th.optimal_capacity_rps,
           "verdict": v.verdict, "growth": v.growth, "growth_lo": v.growth_lo, "growth_hi": v.growth_hi,
           "backlog_growth_tokens_per_s": v.backlog_growth_tokens_per_s,
           "theory_drift_tokens_per_s": v.theory_drift_tokens_per_s, "error": ""}
    if LOAD in values:  # the load column keeps the axis value (theory's load equals it to rounding)
        got.pop("load")
    row.update(got)
    for c in sweep.record:
        xs = [r.summary.get(c) for r in results]
        xs = [float(x) for x in xs if x is not None]
        row.setdefault(c, float(np.mean(xs)) if xs else None)
    if sweep.capacity:
        from llmsim.capacity import capacity_search
        sc = scs[0]
        scheds = [sc.engine.scheduler] if sc.single else None
        cap = capacity_search(sc, scheds, num_requests=sweep.capacity_num_requests, workers=1)[0]
        row.update({"critical_rate_rps": cap.critical_rate_rps, "critical_lo_rps": cap.interval[0],
                    "critical_hi_rps": cap.interval[1]})
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def run_batch(sweep: Sweep, items: list) -> list[dict]:
    """Rows of a batch of (point index, values) pairs: the unit of work of a task."""
    return [run_point(sweep, i, v) for i, v in items]


def warm_up() -> float:
    """Compile (or load from Numba's cache) the kernel in this process: once per worker."""
    from llmsim._kernel_cache import compile_kernel
    return compile_kernel()


# --------------------------------------------------------------------- executors


class InProcess:
    """Runs tasks one after another in this process (tests, small sweeps, the dashboard)."""
    workers = 1
    description = "in-process executor (no Dask)"

    def map(self, fn, args: list) -> list:
        return [fn(*a) for a in args]

    def as_completed(self, fn, args: list):
        """Yield (position in args, result) as tasks finish."""
        for k, a in enumerate(args):
            yield k, fn(*a)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DaskExecutor(InProcess):
    """Tasks on a Dask cluster: an existing one (``address`` = "tcp://host:8786") or an
    embedded LocalCluster of ``workers`` single-threaded worker processes (default: one
    per core this process may use). Each worker compiles the kernel once, at start."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - dask[distributed] is a requirement
            raise ConfigError("--dask: dask.distributed is not installed (pip install 'dask[distributed]')") from None
        self.cluster = None
        if workers is not None and not (isinstance(workers, int) and 1 <= workers <= 1024):
            raise ConfigError(f"--workers: {workers!r} must be a whole number in [1, 1024]")
        if address:
            if not isinstance(address, str) or "://" not in address:
                raise ConfigError(f"--dask: {address!r} is not a scheduler address like tcp://host:8786")
            try:
                self.client = Client(address, timeout=20)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"--dask: cannot reach the Dask scheduler at {address}: {exc}") from None
            self.description = f"Dask cluster at {address}"
        else:
            n = workers or len(os.sched_getaffinity(0))
            root = str(Path(__file__).resolve().parent.parent)
            env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")]))}
            import logging
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                        silence_logs=logging.ERROR, env=env)
            self.client = Client(self.cluster)
            self.description = f"embedded Dask LocalCluster, {n} worker(s)"
        self.workers = max(1, len(self.client.scheduler_info(n_workers=-1)["workers"])) \
            if _takes_n_workers(self.client) else max(1, len(self.client.scheduler_info()["workers"]))
        self.client.run(warm_up)

    def map(self, fn, args: list) -> list:
        futs = [self.client.submit(fn, *a, pure=False) for a in args]
        return self.client.gather(futs)

    def as_completed(self, fn, args: list):
        from distributed import as_completed
        futs = [self.client.submit(fn, *a, pure=False) for a in args]
        pos = {f.key: k for k, f in enumerate(futs)}
        for fut in as_completed(futs):
            yield pos[fut.key], fut.result()
            fut.release()

    def close(self):
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _takes_n_workers(client) -> bool:
    import inspect
    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


def make_executor(dask: str | None = None, workers: int | None = None, in_process: bool = False):
    """The executor a command asks for: in-process, the Dask cluster at ``dask`` (or at
    $LLMSIM_DASK_ADDRESS), else an embedded LocalCluster."""
    if in_process:
        return InProcess()
    address = dask or os.environ.get("LLMSIM_DASK_ADDRESS") or None
    return DaskExecutor(address, workers)


# ----------------------------------------------------------------- results on disk


def _frame(rows: list, columns: dict):
    import pandas as pd
    df = pd.DataFrame(rows)
    for c, dt in columns.items():
        if c not in df:
            df[c] = None
        if dt == "string":
            df[c] = df[c].astype("string")
        elif dt == "int64":
            df[c] = df[c].astype("int64")
        elif dt == "bool":
            df[c] = df[c].astype("boolean")
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df[list(columns)]


def _write_part(out: Path, rows: list, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    df = _frame(rows, columns)
    first = int(df["point"].min())
    path = out / "parts" / f"part-{first:08d}.parquet"
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
    os.replace(tmp, path)  # a part exists whole or not at all, even if the run is killed
    return path


def read_results(out) -> "pd.DataFrame":
    """Every finished point of a sweep directory (or one Parquet file), by point."""
    import pandas as pd
    out = Path(out)
    if out.is_file():
        return pd.read_parquet(out)
    parts = sorted((out / "parts").glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame()
    df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return df.sort_values("point", kind="stable").drop_duplicates("point").reset_index(drop=True)


def run_sweep(sweep: Sweep, out=None, executor=None, resume: bool = False, csv: bool = False,
              progress=None) -> "pd.DataFrame":
    """Run every point (the missing ones with ``resume``) and return the table, by point.

    out: a directory for Parquet parts (written as batches finish), ``results.parquet``
    and, with ``csv``, ``results.csv``; None keeps everything in memory. executor:
    InProcess() (default) or DaskExecutor. progress: callable(done, total) per batch."""
    executor = executor or InProcess()
    columns = sweep.columns()
    points = sweep.points()
    todo = list(range(len(points)))
    outp = Path(out) if out is not None else None
    if outp is not None:
        meta = outp / "sweep.json"
        (outp / "parts").mkdir(parents=True, exist_ok=True)
        if meta.is_file():
            old = json.loads(meta.read_text())
            if old.get("fingerprint") != sweep.fingerprint():
                raise ConfigError(f"--out: {outp} holds the results of a different sweep "
                                  f"({old.get('name')!r}); choose another directory")
            done = read_results(outp)
            if len(done) and not resume:
                raise ConfigError(f"--out: {outp} already holds {len(done)} of {len(points)} points of "
                                  "this sweep; pass --resume to finish it, or choose another directory")
            have = set(done["point"].tolist()) if len(done) else set()
            todo = [i for i in todo if i not in have]
        else:
            if any((outp / "parts").iterdir()):
                raise ConfigError(f"--out: {outp} holds Parquet parts but no sweep.json; choose another directory")
            meta.write_text(json.dumps({"name": sweep.name, "fingerprint": sweep.fingerprint(),
                                        "points": len(points), "axes": sweep.fields}, indent=2) + "\n")
    size = sweep.batch or max(1, min(32, math.ceil(len(todo) / (8 * max(1, executor.workers)))))
    batches = [todo[k:k + size] for k in range(0, len(todo), size)]
    rows_mem = []
    done_n = len(points) - len(todo)
    if progress:
        progress(done_n, len(points))
    args = [(sweep, [(i, points[i]) for i in b]) for b in batches]
    for _, rows in executor.as_completed(run_batch, args):
        if outp is not None:
            _write_part(outp, rows, columns)
        else:
            rows_mem.extend(rows)
        done_n += len(rows)
        if progress:
            progress(done_n, len(points))
    if outp is None:
        df = _frame(rows_mem, columns) if rows_mem else _frame([], columns)
        return df.sort_values("point", kind="stable").reset_index(drop=True)
    df = read_results(outp)
    df.to_parquet(outp / "results.parquet", index=False)
    if csv:
        df.to_csv(outp / "results.csv", index=False)
    return df


def result_columns(df) -> list[str]:
    """The columns that are the sweep's result proper (the same on every executor)."""
    return [c for c in df.columns if c not in VOLATILE_COLUMNS]
