"""Scenario configuration: frozen dataclasses, TOML in and out, one validation point.

A scenario is a network of engines and workflow classes. The single-engine format
(``[workload]`` + ``[engine]``) is read as the one-engine, one-step network. See
docs/scenario-format.md for every key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from llmsim import state as S
from llmsim.schedulers import SCHEDULERS, scheduler_info
from llmsim.workload import (ConfigError, _check_keys, _num, arrival_process, length_dist,
                             TraceArrivals, TraceSource, read_capped, utf8_text, with_rate)

POLICIES = {"fcfs": S.POL_FCFS, "priority": S.POL_PRIORITY, "max-pressure": S.POL_MAX_PRESSURE,
            "strict-priority": S.POL_STRICT}
BATCH_TIME_MODELS = ("constant", "staircase", "piecewise", "affine")
MAX_BUDGET = 1 << 20
MAX_KV_TOKENS = 200_000_000
MAX_REQUESTS = 20_000_000
# the longest simulated time a run may reach (run.duration_seconds, a trace's last arrival): up
# to it a double still resolves a microsecond-long iteration (at 1e17 s an iteration of 0.05 s
# no longer moved the clock: every latency came out 0)
MAX_SIM_SECONDS = 1e9


# -------------------------------------------------------------------- batch time


@dataclass(frozen=True)
class BatchTime:
    """Seconds one iteration takes, as a function of its token load (SPEC.md §1).

    constant: t; staircase: c + a*ceil(n/b0); piecewise: c + a*max(0, n-b0);
    affine: c0 + cp*prefill + cd*decode + ckv*context tokens of the decoding requests
    + cpa*prefill attention pairs (a chunk of k tokens after `done` prefilled ones has
    k*done + k(k+1)/2: the quadratic attention of prefill).
    A piecewise model may carry the same attention terms (linear layers as a floor and a
    line, attention on top): c + a*max(0, n-b0) + cp*prefill + cd*decode + ckv*context
    + cpa*pairs; its params are then (c, a, b0, ckv, cpa, cd, cp).
    """
    model: str
    params: tuple  # model-specific, in the order of `to_table`
    preset: str = ""

    def seconds(self, n_prefill: float, n_decode: float = 0.0, context: float = 0.0,
                pairs: float = 0.0) -> float:
        """One iteration's seconds (``seconds_many`` of one batch: float64 arithmetic either way)."""
        return float(self.seconds_many(n_prefill, n_decode, context, pairs))

    def seconds_many(self, n_prefill, n_decode, context=0.0, pairs=0.0) -> np.ndarray:
        """Seconds of many batches at once (arrays, or scalars: a 0-d array): theory prices
        every batch size up to b, 65,536 per engine (one call at a time took 0.33 s; 16 engines
        of an agents link, 5.3 s)."""
        x = np.asarray(n_prefill, dtype=float)
        y = np.asarray(n_decode, dtype=float)
        n = x + y
        p = self.params
        if self.model == "constant":
            return np.full(n.shape, float(p[0]))
        if self.model == "staircase":
            return p[0] + p[1] * np.ceil(n / p[2])
        if self.model == "piecewise":
            if len(p) == 3:
                return p[0] + p[1] * np.maximum(0.0, n - p[2])
            return (p[0] + p[1] * np.maximum(0.0, n - p[2]) + p[6] * x + p[5] * y
                    + p[3] * np.asarray(context, dtype=float) + p[4] * np.asarray(pairs, dtype=float))
        pa = p[4] if len(p) > 4 else 0.0
        return (p[0] + p[1] * x + p[2] * y + p[3] * np.asarray(context, dtype=float)
                + pa * np.asarray(pairs, dtype=float))

    @property
    def attention_pair_seconds(self) -> float:
        return self.params[4] if self.model in ("affine", "piecewise") and len(self.params) > 4 else 0.0

    @property
    def context_aware(self) -> bool:
        """Whether the time depends on the prefill/decode split and the contexts."""
        return self.model == "affine" or (self.model == "piecewise" and len(self.params) > 3)

    @property
    def prices_means(self) -> bool:
        """Whether theory prices this time with the workload's mean context or mean attention
        pairs (an approximation: the time of a batch depends on which requests it holds).
        An affine time without context and pairs terms is linear in the batch's prefill and
        decode tokens: its stability region, and the bound it proves, are exact."""
        return self.context_aware and (self.model != "affine" or any(self.params[3:]))

    def full_budget_seconds(self, budget: int, prefill_share: float = 1.0,
                            mean_context: float = 0.0, pairs_per_prefill_token: float = 0.0) -> float:
        """t(b): the time of an iteration holding a full budget of tokens. For the affine
        model the budget is split into prefill and decode tokens by the workload's share of
        prefill work, each decode token carries the workload's mean context, and each
        prefill token its mean attention pairs (E[P(P+1)/2] / E[P]: however a prompt is
        chunked, its chunks' pairs add up to P(P+1)/2)."""
        if not self.context_aware:
            return self.seconds(budget)
        n_p = budget * prefill_share
        n_d = budget - n_p
        return self.seconds(n_p, n_d, n_d * mean_context, n_p * pairs_per_prefill_token)

    def kernel_params(self):
        code = {"constant": S.BT_CONSTANT, "staircase": S.BT_STAIRCASE,
                "piecewise": S.BT_PIECEWISE, "affine": S.BT_AFFINE}[self.model]
        return code, tuple(self.params) + (0.0,) * (7 - len(self.params))

    def to_table(self):
        if self.preset:
            return {"model": "preset", "name": self.preset}
        p = self.params
        if self.model == "constant":
            return {"model": "constant", "seconds": p[0]}
        if self.model in ("staircase", "piecewise"):
            t = {"model": self.model, "c_seconds": p[0], "a_seconds": p[1], "b0": int(p[2])}
            if len(p) > 3:
                for k, v in zip(_PIECEWISE_EXTRA, (p[6], p[5], p[3], p[4])):
                    if v:
                        t[k] = v
            return t
        t = {"model": "affine", "c0_seconds": p[0], "prefill_seconds_per_token": p[1],
             "decode_seconds_per_token": p[2], "context_seconds_per_token": p[3]}
        if self.attention_pair_seconds:
            t["prefill_attention_seconds_per_pair"] = self.attention_pair_seconds
        return t

    def describe(self):
        p = self.params
        if self.model == "constant":
            return f"{p[0] * 1e3:g} ms per iteration"
        if self.model == "staircase":
            return f"{p[0] * 1e3:g} ms + {p[1] * 1e3:g} ms x ceil(n/{int(p[2])})"
        if self.model == "piecewise":
            extra = ""
            if len(p) > 3:
                extra = "".join(f" + {v * f:g} {u}" for v, f, u in (
                    (p[6], 1e6, "us/prefill tok"), (p[5], 1e6, "us/decode tok"),
                    (p[3], 1e9, "ns/context tok"), (p[4], 1e12, "ps/prefill pair")) if v)
            return f"{p[0] * 1e3:g} ms + {p[1] * 1e3:g} ms x max(0, n-{int(p[2])})" + extra
        return (f"{p[0] * 1e3:g} ms + {p[1] * 1e6:g} us/prefill tok + {p[2] * 1e6:g} us/decode tok"
                + (f" + {p[3] * 1e9:g} ns/context tok" if p[3] else "")
                + (f" + {self.attention_pair_seconds * 1e12:g} ps/prefill pair"
                   if self.attention_pair_seconds else ""))


_PIECEWISE_EXTRA = ("prefill_seconds_per_token", "decode_seconds_per_token",
                    "context_seconds_per_token", "prefill_attention_seconds_per_pair")


MIN_ITERATION_S = 1e-6  # the shortest iteration (its fixed part): far below any GPU's, far above 1/inf


def batch_time(table, where: str) -> BatchTime:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table like {{ model = \"constant\", seconds = 0.05 }}, got {table!r}")
    m = table.get("model")
    if m == "constant":
        _check_keys(table, {"model", "seconds"}, where)
        return BatchTime("constant", (_num(table, "seconds", where, minimum=MIN_ITERATION_S, maximum=3600),))
    if m in ("staircase", "piecewise"):
        _check_keys(table, {"model", "c_seconds", "a_seconds", "b0"}
                    | (set(_PIECEWISE_EXTRA) if m == "piecewise" else set()), where)
        c = _num(table, "c_seconds", where, positive=False, minimum=0, maximum=3600)
        a = _num(table, "a_seconds", where, positive=False, minimum=0, maximum=3600)
        b0 = _num(table, "b0", where, integer=True, maximum=MAX_BUDGET)
        if m == "staircase" and c + a < MIN_ITERATION_S:
            raise ConfigError(f"{where}: c_seconds + a_seconds (a one-token iteration) must be >= "
                              f"{MIN_ITERATION_S:g} s")
        if m == "piecewise" and c < MIN_ITERATION_S:
            raise ConfigError(f"{where}.c_seconds: {c} must be >= {MIN_ITERATION_S:g} (an iteration below b0 "
                              "tokens takes c)")
        if m == "piecewise" and any(k in table for k in _PIECEWISE_EXTRA):
            cp, cd, ckv, cpa = (_num(table, k, where, positive=False, minimum=0,
                                     maximum=1e-3 if k.endswith("pair") else 1) if k in table else 0.0
                                for k in _PIECEWISE_EXTRA)
            return BatchTime(m, (c, a, float(b0), ckv, cpa, cd, cp))
        return BatchTime(m, (c, a, float(b0)))
    if m == "affine":
        _check_keys(table, {"model", "c0_seconds", "prefill_seconds_per_token",
                            "decode_seconds_per_token", "context_seconds_per_token",
                            "prefill_attention_seconds_per_pair"}, where)
        c0 = _num(table, "c0_seconds", where, minimum=MIN_ITERATION_S, maximum=3600)
        cp = _num(table, "prefill_seconds_per_token", where, positive=False, minimum=0, maximum=1)
        cd = _num(table, "decode_seconds_per_token", where, positive=False, minimum=0, maximum=1)
        ckv = _num(table, "context_seconds_per_token", where, positive=False, minimum=0, maximum=1) \
            if "context_seconds_per_token" in table else 0.0
        cpa = _num(table, "prefill_attention_seconds_per_pair", where, positive=False, minimum=0,
                   maximum=1e-3) if "prefill_attention_seconds_per_pair" in table else 0.0
        return BatchTime("affine", (c0, cp, cd, ckv, cpa) if cpa else (c0, cp, cd, ckv))
    if m == "preset":
        _check_keys(table, {"model", "name"}, where)
        hp = hardware_preset(table.get("name"), f"{where}.name")
        bt = batch_time(hp.batch_time, f"preset {hp.name}")
        return replace(bt, preset=hp.name)
    raise ConfigError(f"{where}.model: unknown value {m!r}; allowed: {', '.join(BATCH_TIME_MODELS + ('preset',))}")


def hardware_preset(name, where: str):
    from llmsim.presets import HARDWARE_PRESETS
    if name not in HARDWARE_PRESETS:
        raise ConfigError(f"{where}: unknown preset {name!r}; allowed: {', '.join(HARDWARE_PRESETS)}")
    return HARDWARE_PRESETS[name]


def workload_preset(name, where: str):
    from llmsim.presets import WORKLOAD_PRESETS
    if name not in WORKLOAD_PRESETS:
        raise ConfigError(f"{where}: unknown preset {name!r}; allowed: {', '.join(WORKLOAD_PRESETS)}")
    return WORKLOAD_PRESETS[name]


# ----------------------------------------------------------------------- engines


@dataclass(frozen=True)
class EngineConfig:
    """One LLM engine. Token counts in tokens; max_batch_size None means no limit."""
    name: str = "engine"
    scheduler: str = "sarathi"
    token_budget: int = 512
    max_batch_size: int | None = None
    kv_cache_tokens: int = 400_000
    batch_time: BatchTime = BatchTime("constant", (0.05,))
    policy: str = "fcfs"
    preset: str = ""
    max_running_requests: int | None = None  # vLLM max_num_seqs: admitted (running) cap
    block_size: int = 1                       # KV block size, tokens (vLLM: 16)
    watermark: float = 0.0                    # KV fraction an admission leaves free (vLLM: 0.01)
    replicas: tuple = ()                      # pool: engine configs of the replicas (see llmsim.pool)
    router: str = "jsq_tokens"                # pool router

    @property
    def info(self):
        return scheduler_info(self.scheduler)

    @property
    def slots(self) -> int:
        """Batch slots per iteration (each contributor uses at least one token)."""
        return self.token_budget if self.max_batch_size is None else min(self.max_batch_size, self.token_budget)

    def to_table(self):
        t = {"name": self.name, "scheduler": self.scheduler, "token_budget": self.token_budget}
        if self.max_batch_size is not None:
            t["max_batch_size"] = self.max_batch_size
        if self.preset:
            t["preset"] = self.preset
        t["kv_cache_tokens"] = self.kv_cache_tokens
        t["batch_time"] = self.batch_time.to_table()
        if self.policy != "fcfs":
            t["policy"] = self.policy
        if self.max_running_requests is not None:
            t["max_running_requests"] = self.max_running_requests
        if self.block_size != 1:
            t["block_size"] = self.block_size
        if self.watermark:
            t["watermark"] = self.watermark
        if self.replicas:
            from llmsim.pool import replicas_to_table
            t["replicas"] = replicas_to_table(self)
            t["router"] = self.router
        return t

    @property
    def kv_blocks_tokens(self) -> int:
        """KV capacity usable at block granularity: whole blocks only."""
        return self.kv_cache_tokens // self.block_size * self.block_size

    @property
    def watermark_tokens(self) -> int:
        """vLLM's watermark in tokens: int(watermark x blocks) blocks."""
        return int(self.watermark * (self.kv_cache_tokens // self.block_size)) * self.block_size


def engine_config(table, where: str) -> EngineConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    _check_keys(table, {"name", "scheduler", "token_budget", "max_batch_size", "kv_cache_tokens",
                        "batch_time", "policy", "preset", "max_running_requests", "block_size",
                        "watermark", "replicas", "router"}, where)
    kw = {}
    if "preset" in table:
        hp = hardware_preset(table["preset"], f"{where}.preset")
        kw["preset"] = hp.name
        kw["kv_cache_tokens"] = hp.kv_cache_tokens
        kw["batch_time"] = replace(batch_time(hp.batch_time, f"preset {hp.name}"), preset=hp.name)
    if "name" in table:
        kw["name"] = check_name(table["name"], f"{where}.name")
    if "scheduler" in table:
        name = table["scheduler"]
        try:
            scheduler_info(name)
        except ValueError as exc:
            raise ConfigError(f"{where}.{exc}") from None
        kw["scheduler"] = name
    if "token_budget" in table:
        kw["token_budget"] = _num(table, "token_budget", where, integer=True, maximum=MAX_BUDGET)
    if "max_batch_size" in table:
        kw["max_batch_size"] = _num(table, "max_batch_size", where, integer=True, maximum=MAX_BUDGET)
    if "kv_cache_tokens" in table:
        kw["kv_cache_tokens"] = _num(table, "kv_cache_tokens", where, integer=True, maximum=MAX_KV_TOKENS)
    if "batch_time" in table:
        kw["batch_time"] = batch_time(table["batch_time"], f"{where}.batch_time")
    if "policy" in table:
        if table["policy"] not in POLICIES:
            raise ConfigError(f"{where}.policy: unknown value {table['policy']!r}; allowed: {', '.join(POLICIES)}")
        kw["policy"] = table["policy"]
    if "max_running_requests" in table:
        kw["max_running_requests"] = _num(table, "max_running_requests", where, integer=True,
                                          maximum=MAX_BUDGET)
    if "block_size" in table:
        kw["block_size"] = _num(table, "block_size", where, integer=True, maximum=4096)
    if "watermark" in table:
        kw["watermark"] = _num(table, "watermark", where, positive=False, minimum=0, maximum=0.5)
    eng = EngineConfig(**kw)
    if "replicas" in table or "router" in table:
        from llmsim.pool import parse_replicas
        eng = parse_replicas(eng, table, where)
    return eng


# --------------------------------------------------------------------- workflows


@dataclass(frozen=True)
class Route:
    prob: float
    to: tuple  # step names started together (a fork when more than one; empty = exit)


@dataclass(frozen=True)
class Step:
    """One LLM call of a workflow, at `engine`, with its own length distributions; on
    completion one route is chosen by probability and all its steps start. A join step
    starts once every incoming edge of its parents has delivered."""
    name: str
    engine: str
    prompt_tokens: object
    output_tokens: object
    routes: tuple = (Route(1.0, ()),)
    join: bool = False
    delay_seconds: float = 0.0      # fixed tool-call delay before the step
    delay_dist: str = "constant"    # "constant" or "exponential" (mean delay_seconds)
    priority: int | None = None     # static priority at its engine (smaller = first)

    def to_table(self):
        t = {"name": self.name, "engine": self.engine, "prompt_tokens": self.prompt_tokens.to_table(),
             "output_tokens": self.output_tokens.to_table()}
        if len(self.routes) == 1 and self.routes[0].prob == 1.0:
            if self.routes[0].to:
                t["next"] = list(self.routes[0].to)
        else:
            t["routes"] = [{"p": r.prob, "to": list(r.to)} for r in self.routes]
        if self.join:
            t["join"] = True
        if self.delay_seconds:
            t["delay"] = {"dist": self.delay_dist, "seconds": self.delay_seconds}
        if self.priority is not None:
            t["priority"] = self.priority
        return t


@dataclass(frozen=True)
class Workflow:
    name: str
    arrival: object
    steps: tuple
    start: tuple  # root step names

    def to_table(self):
        return {"name": self.name, "arrival": self.arrival.to_table(), "start": list(self.start),
                "steps": [s.to_table() for s in self.steps]}


# ---------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Scenario:
    """What to simulate: engines, workflow classes, the run's bounds and its seed.

    num_requests bounds the number of workflow arrivals (requests, for a single engine);
    duration_seconds bounds the arrival window; the run ends at the horizon (the last
    arrival, or duration_seconds) unless drain is true, when it continues until empty.
    """
    engines: tuple
    workflows: tuple
    seed: int = 0
    num_requests: int | None = 20_000
    duration_seconds: float | None = None
    drain: bool = False
    timeseries_points: int = 2000
    name: str = ""
    description: str = ""
    workload_preset: str = ""
    single: bool = True

    def __post_init__(self):
        # a replayed trace's rate is that of the rows a run replays: its first num_requests
        wfs = tuple(replace(w, arrival=replace(w.arrival, replay=self.num_requests))
                    if isinstance(w.arrival, TraceArrivals) and w.arrival.replay != self.num_requests else w
                    for w in self.workflows)
        if any(a is not b for a, b in zip(wfs, self.workflows)):
            object.__setattr__(self, "workflows", wfs)

    # ---------------------------------------------------------- convenience views
    @property
    def engine(self) -> EngineConfig:
        return self.engines[0]

    @property
    def workflow(self) -> Workflow:
        return self.workflows[0]

    def with_scheduler(self, name: str) -> "Scenario":
        scheduler_info(name)
        return replace(self, engines=tuple(
            replace(e, scheduler=name, replicas=tuple(replace(r, scheduler=name) for r in e.replicas))
            for e in self.engines))

    def with_rate(self, rate: float, workflow: int | None = None) -> "Scenario":
        """Set the arrival rate (requests or workflows per second); for several workflow
        classes without `workflow`, scale all so that the total is `rate`."""
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and 0 < rate <= 1e6):
            raise ConfigError(f"rate: {rate!r} must be a number in (0, 1e6] requests per second")
        wfs = list(self.workflows)
        if workflow is not None:
            wfs[workflow] = replace(wfs[workflow], arrival=with_rate(wfs[workflow].arrival, rate))
        else:
            total = sum(w.arrival.rate for w in wfs)
            wfs = [replace(w, arrival=with_rate(w.arrival, rate * w.arrival.rate / total)) for w in wfs]
        return replace(self, workflows=tuple(wfs))

    def with_policy(self, policy: str, priorities: dict | None = None) -> "Scenario":
        """Every engine chooses among its buffers by `policy` (fcfs | priority |
        max-pressure); `priorities` maps "workflow.step" to a rank (smaller first)."""
        if policy not in POLICIES:
            raise ConfigError(f"policy: unknown value {policy!r}; allowed: {', '.join(POLICIES)}")
        engines = tuple(replace(e, policy=policy) for e in self.engines)
        wfs = self.workflows
        if priorities:
            known = {f"{w.name}.{s.name}" for w in wfs for s in w.steps}
            for k, v in priorities.items():
                if k not in known:
                    raise ConfigError(f"priorities: unknown step {k!r}; steps: {', '.join(sorted(known))}")
                # as a step's priority in a file (a string was accepted here and failed in the run)
                if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1000):
                    raise ConfigError(f"priorities[{k!r}]: {v!r} must be a whole number in [0, 1000] "
                                      "(smaller is served first)")
            wfs = tuple(replace(w, steps=tuple(
                replace(s, priority=priorities.get(f"{w.name}.{s.name}", s.priority)) for s in w.steps))
                for w in wfs)
        return replace(self, engines=engines, workflows=wfs)

    def step_priorities(self) -> dict:
        """Current static priorities, "workflow.step" -> rank (None: file order)."""
        return {f"{w.name}.{s.name}": s.priority for w in self.workflows for s in w.steps}

    def with_engine(self, index: int = 0, **changes) -> "Scenario":
        engines = list(self.engines)
        if not (isinstance(index, int) and 0 <= index < len(engines)):
            raise ConfigError(f"engine index: {index!r} must be a whole number in [0, {len(engines) - 1}]")
        fields = {f.name for f in dataclasses.fields(engines[index])}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ConfigError(f"with_engine: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(fields))}")
        engines[index] = replace(engines[index], **changes)
        sc = replace(self, engines=tuple(engines))
        validate(sc)
        return sc

    @property
    def total_rate(self) -> float:
        return sum(w.arrival.rate for w in self.workflows)

    def to_table(self) -> dict:
        t = {"seed": self.seed}
        if self.name:
            t["name"] = self.name
        if self.description:
            t["description"] = self.description
        run = {}
        if self.num_requests is not None:
            run["num_requests"] = self.num_requests
        if self.duration_seconds is not None:
            run["duration_seconds"] = self.duration_seconds
        if self.drain:
            run["drain"] = True
        if self.timeseries_points != 2000:
            run["timeseries_points"] = self.timeseries_points
        if self.single:
            wf = self.workflow
            st = wf.steps[0]
            w = dict(run)
            w["arrival"] = wf.arrival.to_table()
            w["prompt_tokens"] = st.prompt_tokens.to_table()
            w["output_tokens"] = st.output_tokens.to_table()
            eng = self.engine.to_table()
            eng.pop("name", None)
            eng.pop("policy", None)
            t["workload"] = w
            t["engine"] = eng
        else:
            t["run"] = run
            t["engines"] = [e.to_table() for e in self.engines]
            t["workflows"] = [w.to_table() for w in self.workflows]
        return t

    def to_toml(self) -> str:
        import tomli_w
        return tomli_w.dumps(_drop_none(self.to_table()))


def _drop_none(x):
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_none(v) for v in x]
    return x


# ------------------------------------------------------------------------ parsing


def _run_bounds(table: dict, where: str) -> dict:
    kw = {}
    if "num_requests" in table:
        kw["num_requests"] = _num(table, "num_requests", where, integer=True, maximum=MAX_REQUESTS)
    if "duration_seconds" in table:
        kw["duration_seconds"] = _num(table, "duration_seconds", where, maximum=MAX_SIM_SECONDS)
        kw.setdefault("num_requests", None)
    if "drain" in table:
        if not isinstance(table["drain"], bool):
            raise ConfigError(f"{where}.drain: {table['drain']!r} must be true or false")
        kw["drain"] = table["drain"]
    if "timeseries_points" in table:
        kw["timeseries_points"] = _num(table, "timeseries_points", where, integer=True,
                                       minimum=10, maximum=200_000)
    return kw


def scenario_from_table(data: dict, base_dir: Path | None = None, *, traces: dict | None = None,
                        trace_policy: str = "any") -> Scenario:
    """Build and validate a Scenario from parsed TOML (single-engine or network form).

    Trace paths resolve as ``llmsim.workload.TraceSource`` says: relative to `base_dir`
    (the scenario file's folder), `traces` (name -> CSV bytes/text) first; with
    trace_policy="shipped+uploaded" (a hosted dashboard) only `traces` and the traces
    shipped with llmsim, never a path on the server."""
    base_dir = TraceSource.make(base_dir, traces, trace_policy)
    if not isinstance(data, dict):
        raise ConfigError("scenario: expected a TOML table")
    top = {"seed", "name", "description", "workload", "engine", "run", "engines", "workflows"}
    _check_keys(data, top, "scenario")
    kw = {}
    if "seed" in data:
        kw["seed"] = _num(data, "seed", "scenario", positive=False, integer=True, minimum=0,
                          maximum=2**63 - 1)
    if "name" in data:
        kw["name"] = check_name(data["name"], "scenario.name", scenario=True)
    if "description" in data:
        d = data["description"]
        if not isinstance(d, str) or len(d) > MAX_DESCRIPTION:
            raise ConfigError(f"scenario.description: must be text of at most {MAX_DESCRIPTION:,} characters")
        kw["description"] = d
    if "engines" in data or "workflows" in data:
        if "workload" in data or "engine" in data:
            raise ConfigError("scenario: use either [workload]+[engine] (one engine) or "
                              "[[engines]]+[[workflows]] (a network), not both")
        sc = _network_from_table(data, base_dir, kw)
    else:
        sc = _single_from_table(data, base_dir, kw)
    validate(sc)
    return sc


# Names of engines, workflows and steps appear in labels, messages and table columns (a
# dashboard renders them as Markdown): plain words only. Steps are addressed as
# "workflow.step", so no dots there; a scenario's name may also hold dots and spaces.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}")
_SCENARIO_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-. ]{0,79}")
MAX_DESCRIPTION = 2_000


def check_name(value, where: str, scenario: bool = False) -> str:
    """value if it is a valid name, else a ConfigError naming the field and what is allowed
    (without echoing the value: it may be anything)."""
    pattern, n, extra = (_SCENARIO_NAME, 80, ", '.' or spaces") if scenario else (_NAME, 64, "")
    if not isinstance(value, str) or not pattern.fullmatch(value):
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise ConfigError(f"{where}: must be 1 to {n} letters, digits, '_' or '-'{extra}, not starting with "
                          f"'-' (got {got})")
    return value


def _single_from_table(data, base_dir, kw) -> Scenario:
    if "run" in data:  # silently ignoring it ran the default size instead of the one asked for
        raise ConfigError("run: a single-engine scenario takes num_requests, duration_seconds, drain and "
                          "timeseries_points in [workload]; [run] is for networks of [[engines]]")
    w = data.get("workload")
    if not isinstance(w, dict):
        raise ConfigError("workload: missing table [workload] (arrival, prompt_tokens, output_tokens, num_requests)")
    _check_keys(w, {"preset", "arrival", "prompt_tokens", "output_tokens", "num_requests",
                    "duration_seconds", "drain", "timeseries_points"}, "workload")
    kw.update(_run_bounds(w, "workload"))
    arrival = prompt = output = None
    if "preset" in w:
        wp = workload_preset(w["preset"], "workload.preset")
        kw["workload_preset"] = wp.name
        arrival = arrival_process(wp.arrival, f"preset {wp.name}.arrival")
        prompt = length_dist(wp.prompt_tokens, f"preset {wp.name}.prompt_tokens")
        output = length_dist(wp.output_tokens, f"preset {wp.name}.output_tokens")
    if "arrival" in w:
        arrival = arrival_process(w["arrival"], "workload.arrival", base_dir)
    if arrival is None:
        raise ConfigError("workload.arrival: missing (e.g. { process = \"poisson\", rate = 3.0 })")
    replay = isinstance(arrival, TraceArrivals)
    if "prompt_tokens" in w:
        prompt = length_dist(w["prompt_tokens"], "workload.prompt_tokens", base_dir)
    if "output_tokens" in w:
        output = length_dist(w["output_tokens"], "workload.output_tokens", base_dir)
    if prompt is None or output is None:
        if not replay:
            missing = "prompt_tokens" if prompt is None else "output_tokens"
            raise ConfigError(f"workload.{missing}: missing (e.g. {{ dist = \"constant\", value = 512 }})")
        # a replayed trace brings its own lengths, in its own order
        from llmsim.workload import TraceLengths
        prompt = prompt or TraceLengths(arrival.trace, "prompt_tokens")
        output = output or TraceLengths(arrival.trace, "output_tokens")
    if replay and "num_requests" not in w and "duration_seconds" not in w:
        kw["num_requests"] = len(arrival.trace.times)
    e = data.get("engine")
    if not isinstance(e, dict):
        raise ConfigError("engine: missing table [engine] (scheduler, token_budget, kv_cache_tokens, batch_time)")
    if "name" in e or "policy" in e:
        raise ConfigError("engine: 'name' and 'policy' belong to [[engines]] of a network scenario")
    eng = engine_config(e, "engine")
    step = Step("call", eng.name, prompt, output)
    wf = Workflow("requests", arrival, (step,), ("call",))
    return Scenario(engines=(eng,), workflows=(wf,), single=True, **kw)


def _network_from_table(data, base_dir, kw) -> Scenario:
    run = data.get("run", {})
    if not isinstance(run, dict):
        raise ConfigError("run: expected a table")
    _check_keys(run, {"num_requests", "duration_seconds", "drain", "timeseries_points"}, "run")
    kw.update(_run_bounds(run, "run"))
    engs = data.get("engines")
    if not isinstance(engs, list) or not engs:
        raise ConfigError("engines: expected one or more [[engines]] tables")
    engines = tuple(engine_config(t, f"engines[{i}]") for i, t in enumerate(engs))
    wfs = data.get("workflows")
    if not isinstance(wfs, list) or not wfs:
        raise ConfigError("workflows: expected one or more [[workflows]] tables")
    workflows = []
    for i, w in enumerate(wfs):
        where = f"workflows[{i}]"
        if not isinstance(w, dict):
            raise ConfigError(f"{where}: expected a table")
        _check_keys(w, {"name", "arrival", "steps", "start"}, where)
        name = check_name(w.get("name", f"class{i}"), f"{where}.name")
        arrival = arrival_process(w.get("arrival"), f"{where}.arrival", base_dir)
        steps_t = w.get("steps")
        if not isinstance(steps_t, list) or not steps_t:
            raise ConfigError(f"{where}.steps: expected one or more [[workflows.steps]] tables")
        steps = tuple(_step(t, f"{where}.steps[{j}]", base_dir) for j, t in enumerate(steps_t))
        names = [s.name for s in steps]
        if "start" in w:
            start = w["start"]
            if isinstance(start, str):
                start = [start]
            if not isinstance(start, list) or not start:
                raise ConfigError(f"{where}.start: expected a list of step names")
        else:
            targets = {n for s in steps for r in s.routes for n in r.to}
            start = [n for n in names if n not in targets]
            if not start:
                start = [names[0]]
        workflows.append(Workflow(name, arrival, steps, tuple(start)))
    return Scenario(engines=engines, workflows=tuple(workflows), single=False, **kw)


def _step(t, where, base_dir) -> Step:
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: expected a table")
    _check_keys(t, {"name", "engine", "prompt_tokens", "output_tokens", "next", "routes", "join",
                    "delay", "priority"}, where)
    if "name" not in t:
        raise ConfigError(f"{where}.name: missing")
    check_name(t["name"], f"{where}.name")
    if not isinstance(t.get("engine"), str):
        raise ConfigError(f"{where}.engine: missing (the name of one of the [[engines]])")
    for k in ("prompt_tokens", "output_tokens"):
        if k not in t:
            raise ConfigError(f"{where}.{k}: missing")
    if "next" in t and "routes" in t:
        raise ConfigError(f"{where}: give either 'next' (always) or 'routes' (by probability), not both")
    if "routes" in t:
        rs = t["routes"]
        if not isinstance(rs, list) or not rs:
            raise ConfigError(f"{where}.routes: expected a list like [{{ p = 0.7, to = [\"act\"] }}, {{ p = 0.3, to = [] }}]")
        routes = []
        for k, r in enumerate(rs):
            if not isinstance(r, dict):
                raise ConfigError(f"{where}.routes[{k}]: expected {{ p = ..., to = [...] }}")
            _check_keys(r, {"p", "to"}, f"{where}.routes[{k}]")
            p = _num(r, "p", f"{where}.routes[{k}]", positive=False, minimum=0, maximum=1)
            to = r.get("to", [])
            if not isinstance(to, list) or not all(isinstance(x, str) for x in to):
                raise ConfigError(f"{where}.routes[{k}].to: expected a list of step names")
            routes.append(Route(p, tuple(to)))
        total = sum(r.prob for r in routes)
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(f"{where}.routes: probabilities sum to {total:g}; they must sum to 1")
    else:
        nxt = t.get("next", [])
        if isinstance(nxt, str):
            nxt = [nxt]
        if not isinstance(nxt, list) or not all(isinstance(x, str) for x in nxt):
            raise ConfigError(f"{where}.next: expected a list of step names")
        routes = [Route(1.0, tuple(nxt))]
    join = t.get("join", False)
    if not isinstance(join, bool):
        raise ConfigError(f"{where}.join: {join!r} must be true or false")
    delay_s, delay_d = 0.0, "constant"
    if "delay" in t:
        d = t["delay"]
        if not isinstance(d, dict):
            raise ConfigError(f"{where}.delay: expected {{ dist = \"constant\" | \"exponential\", seconds = ... }}")
        _check_keys(d, {"dist", "seconds"}, f"{where}.delay")
        delay_d = d.get("dist", "constant")
        if delay_d not in ("constant", "exponential"):
            raise ConfigError(f"{where}.delay.dist: unknown value {delay_d!r}; allowed: constant, exponential")
        delay_s = _num(d, "seconds", f"{where}.delay", positive=False, minimum=0, maximum=1e6)
    prio = None
    if "priority" in t:
        prio = _num(t, "priority", where, positive=False, integer=True, minimum=0, maximum=1000)
    return Step(t["name"], t["engine"], length_dist(t["prompt_tokens"], f"{where}.prompt_tokens", base_dir),
                length_dist(t["output_tokens"], f"{where}.output_tokens", base_dir), tuple(routes),
                join, delay_s, delay_d, prio)


MAX_SCENARIO_BYTES = 64 * 1024 * 1024  # a scenario file read by path


def as_scenario(x) -> "Scenario":
    """x itself if it is a Scenario, the scenario of a TOML file if it is a path (a str or a
    Path: ``llmsim.simulate("scenarios/quickstart.toml")`` raised AttributeError deep inside),
    else ConfigError saying what is expected."""
    if isinstance(x, Scenario):
        return x
    if isinstance(x, (str, Path)):
        return load_scenario(x)
    raise ConfigError(f"scenario: expected a Scenario (llmsim.load_scenario(path) or "
                      f"llmsim.scenario_from_table(dict)) or the path of a scenario TOML; got {type(x).__name__}")


def load_scenario(path, *, traces: dict | None = None, trace_policy: str = "any") -> Scenario:
    """Read and validate a scenario TOML file (UTF-8, a byte-order mark accepted); trace
    paths relative to the file's folder. Raises ConfigError naming the field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"scenario file {str(path)!r}: not found")
    label = f"scenario file {str(path)!r}"
    text = utf8_text(read_capped(p, MAX_SCENARIO_BYTES, label), label)
    data = parse_toml(text, label)
    sc = scenario_from_table(data, p.parent, traces=traces, trace_policy=trace_policy)
    if not sc.name:
        sc = replace(sc, name=p.stem)
    return sc


def loads_scenario(text: str, base_dir: Path | None = None, *, traces: dict | None = None,
                   trace_policy: str = "any") -> Scenario:
    """A scenario from TOML text; see scenario_from_table for traces and trace_policy."""
    if not isinstance(text, str):
        raise ConfigError(f"scenario: expected TOML text, got {type(text).__name__}")
    if text.startswith("\ufeff"):
        text = text[1:]
    return scenario_from_table(parse_toml(text, "scenario"), base_dir, traces=traces, trace_policy=trace_policy)


MAX_KEY_PARTS = 32  # parts of one dotted key (`a.b.c = 1` has 3); scenarios use at most 4

# A key part as tomllib reads it (bare, "basic" with escapes, 'literal'), with possessive
# quantifiers; a chain starts only where a key can (not after a key character, a quote, a
# dot or a backslash), so each character is scanned from a bounded number of starts.
_KEY_PART = r"""(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')"""
_DEEP_KEY = re.compile(rf"""(?<![A-Za-z0-9_\-"'.\\])(?:{_KEY_PART}[ \t]*+\.[ \t]*+){{{MAX_KEY_PARTS}}}{_KEY_PART}""")


def _check_key_depth(text: str, label: str) -> None:
    """Refuse a dotted key of more than MAX_KEY_PARTS parts before tomllib sees it: tomllib
    keeps a tuple for every prefix of a dotted key on the key side of `=`, so its time and
    memory grow with the square of the key's length (32 kB of `x.x.x...x = 1` take 1 GB).
    The scan is a regular expression with bounded look-ahead, linear in the text; it may
    also refuse such a run inside a string value, which no scenario has."""
    m = _DEEP_KEY.search(text)
    if m is not None:
        line = text.count("\n", 0, m.start()) + 1
        raise ConfigError(f"{label}: line {line}: a dotted key may have at most {MAX_KEY_PARTS} parts "
                          f"(allowed: 1 to {MAX_KEY_PARTS}); this one has more")


def parse_toml(text: str, label: str) -> dict:
    """tomllib.loads with every way it fails on bad text as a ConfigError naming `label`:
    malformed TOML, nesting too deep, an integer beyond Python's 4,300-digit conversion
    limit (a ValueError, not a TOMLDecodeError), a dotted key long enough to make the
    parser quadratic (_check_key_depth) and, should memory still run out, MemoryError."""
    _check_key_depth(text, label)
    try:
        return tomllib.loads(text)
    except MemoryError:
        raise ConfigError(f"{label}: the TOML text needs more memory to read than this server has") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: malformed TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{label}: malformed TOML: nested too deeply") from None
    except ValueError as exc:
        raise ConfigError(f"{label}: malformed TOML: a value cannot be read ({exc})") from None


# --------------------------------------------------------------------- validation


def step_index(sc: Scenario):
    """Global step numbering: (workflow index, step name) -> step id, in order."""
    idx = {}
    for wi, w in enumerate(sc.workflows):
        for s in w.steps:
            idx[(wi, s.name)] = len(idx)
    return idx


MAX_CALLS_PER_WORKFLOW = 1_000_000  # calls one workflow may make (forks multiply them)


def routing_sparse(sc: Scenario):
    """Q as a scipy.sparse CSR matrix (n_steps x n_steps): Q[s, j] is the expected number
    of calls of step j started by one completion of step s (join steps count 1/need per
    incoming edge delivery). Sparse so that a large network costs memory and time near
    linear in its number of edges."""
    from scipy import sparse
    idx = step_index(sc)
    rows, cols, vals = [], [], []
    for wi, w in enumerate(sc.workflows):
        need = join_needs(w)
        for s in w.steps:
            i = idx[(wi, s.name)]
            for r in s.routes:
                for ch in r.to:
                    rows.append(i)
                    cols.append(idx[(wi, ch)])
                    vals.append(r.prob / need.get(ch, 1))
    n = len(idx)
    return sparse.csr_matrix((np.asarray(vals, dtype=float), (np.asarray(rows, dtype=np.int64),
                              np.asarray(cols, dtype=np.int64))), shape=(n, n))


def routing_matrix(sc: Scenario) -> np.ndarray:
    """Q[s, j]: expected number of calls of step j started by one completion of step s
    (join steps count 1/need per incoming edge delivery), dense."""
    if not _has_edges(sc):
        n = sum(len(w.steps) for w in sc.workflows)
        return np.zeros((n, n))
    return routing_sparse(sc).toarray()


def _has_edges(sc: Scenario) -> bool:
    """Whether any route leads to a step (else Q is zero: every call exits)."""
    return any(r.to for w in sc.workflows for s in w.steps for r in s.routes)


def step_children(w: "Workflow") -> dict:
    """Step name -> the names of the steps its routes can call next (every route)."""
    return {s.name: [c for r in s.routes for c in r.to] for s in w.steps}


def _downstream(kids: dict, seeds) -> set:
    """The steps in `seeds` and every step reachable from them along `kids` (name -> child
    names), in one pass over the edges."""
    out = set()
    stack = list(seeds)
    while stack:
        x = stack.pop()
        if x in out:
            continue
        out.add(x)
        stack.extend(kids.get(x, ()))
    return out


def _random_steps(w: Workflow) -> set:
    """Steps whose number of calls per workflow is random: reached through a route taken
    with probability strictly between 0 and 1, or downstream of such a step."""
    kids = {s.name: [c for r in s.routes if r.prob > 0 for c in r.to] for s in w.steps}
    return _downstream(kids, (c for s in w.steps for r in s.routes if 0 < r.prob < 1 for c in r.to))


def _fixed_calls(w: Workflow, where: str):
    """(calls, need): exact calls per workflow of every step that runs a fixed number of
    times (Python integers: no overflow, no rounding), and each join's need (deliveries
    per workflow). A join starts once per workflow when all its deliveries arrived.
    Raises ConfigError for more than MAX_CALLS_PER_WORKFLOW calls of a step, for a loop
    that never exits, and for a join whose parents run a random number of times."""
    names = [s.name for s in w.steps]
    by_name = {s.name: s for s in w.steps}
    rand = _random_steps(w)
    fixed = [n for n in names if n not in rand]
    # edges of the fixed part: routes taken with probability 1
    indeg = dict.fromkeys(fixed, 0)
    kids = {}
    for n in fixed:
        es = [c for r in by_name[n].routes if r.prob == 1.0 for c in r.to if c in indeg]
        kids[n] = es
        for c in es:
            indeg[c] += 1
    calls = dict.fromkeys(fixed, 0)
    for st in w.start:
        if st in calls:
            calls[st] += 1
    deliveries = {n: 0 for n in fixed if by_name[n].join}
    ready = [n for n in fixed if indeg[n] == 0]
    done = 0
    while ready:
        n = ready.pop()
        done += 1
        if by_name[n].join and deliveries[n] > 0:
            calls[n] += 1
        if calls[n] > MAX_CALLS_PER_WORKFLOW:
            raise ConfigError(
                f"{where}.steps.{n}: each workflow would make {_big(calls[n])} calls of this step (forks "
                f"multiply); allowed: at most {MAX_CALLS_PER_WORKFLOW:,} calls of a step per workflow")
        for c in kids[n]:
            if by_name[c].join:
                deliveries[c] += calls[n]
            else:
                calls[c] += calls[n]
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if done < len(fixed):
        loop = [n for n in fixed if indeg[n] > 0]
        raise ConfigError(
            f"{where}: a loop has no exit probability, so a workflow would never finish: steps "
            f"{_names(loop)}; give a loop a route with p > 0 that leaves it")
    # every edge into a join, once, ordered by the join (the first join in file order is named)
    pos = {n: i for i, n in enumerate(names)}
    join_edges = sorted(((pos[j], k, j, s, r) for k, (s, r) in enumerate((s, r) for s in w.steps for r in s.routes)
                         for j in dict.fromkeys(r.to) if j in by_name and by_name[j].join),
                        key=lambda e: (e[0], e[1]))
    for _, _, j, s, r in join_edges:
        if r.prob < 1.0:
            raise ConfigError(
                f"{where}.steps.{j}: join parent {s.name!r} reaches it only with probability "
                f"{r.prob:g}, so the join could wait forever; a join's parents must route to it "
                "with probability 1")
        if s.name in rand:
            raise ConfigError(
                f"{where}.steps.{j}: join parent {s.name!r} runs a random number of times per "
                "workflow (it follows a probabilistic route), so the join could wait forever; a "
                "join's parents must run a fixed number of times")
    # a join no call reaches is never started; its need stays 1 as before
    return calls, {j: max(1, d) for j, d in deliveries.items()}


def _big(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"about 10^{len(str(n)) - 1}"


def _names(names, k: int = 8) -> str:
    names = list(names)
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def join_needs(w: Workflow) -> dict:
    """For each join step, how many deliveries (parent call completions routed to it,
    counting forked copies) start it: the parents' calls per workflow times the edge
    multiplicity, computed exactly with integers in one topological pass."""
    if not any(s.join for s in w.steps):
        return {}
    return _fixed_calls(w, f"workflow {w.name}")[1]


def stochastic_steps(sc: "Scenario") -> np.ndarray:
    """True for steps whose number of calls per workflow is random (reached through a
    probabilistic route, a loop, or downstream of such a step)."""
    sidx = step_index(sc)
    out = np.zeros(len(sidx), dtype=bool)
    for wi, w in enumerate(sc.workflows):
        for x in _downstream(step_children(w), (c for s in w.steps if len(s.routes) > 1 for r in s.routes
                                                for c in r.to)):
            out[sidx[(wi, x)]] = True
    return out


def _start_vector(sc: Scenario, idx) -> np.ndarray:
    r = np.zeros(len(idx))
    for wi, w in enumerate(sc.workflows):
        for st in w.start:
            r[idx[(wi, st)]] += 1
    return r


def _solve_visits(q, r) -> np.ndarray:
    """x = r + Q^T x by a sparse LU (near-linear for workflow graphs); nan when singular."""
    import warnings
    from scipy import sparse
    from scipy.sparse.linalg import spsolve
    n = q.shape[0]
    if n == 0:
        return np.zeros(0)
    a = (sparse.identity(n, format="csc") - q.T.tocsc()).tocsc()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            x = spsolve(a, r)
        except RuntimeError:  # exactly singular
            return np.full(n, np.nan)
    return np.atleast_1d(np.asarray(x, dtype=float))


def expected_visits(sc: Scenario) -> np.ndarray:
    """Mean number of calls of each step per workflow arrival of its class."""
    idx = step_index(sc)
    if not _has_edges(sc):  # Q = 0: x = r (what the solve of I x = r returns, without scipy)
        return _start_vector(sc, idx)
    return _solve_visits(routing_sparse(sc), _start_vector(sc, idx))


def _check_int(v, where: str, lo: int, hi: int):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise ConfigError(f"{where}: {v!r} must be a whole number in [{lo:,}, {hi:,}]")


def _check_run(sc: Scenario, run: str):
    """The run's bounds, also when set through the API or a command-line override."""
    _check_int(sc.seed, "seed", 0, 2**63 - 1)
    if sc.num_requests is not None:
        _check_int(sc.num_requests, f"{run}.num_requests", 1, MAX_REQUESTS)
    d = sc.duration_seconds
    if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float))
                          or not math.isfinite(d) or not 0 < d <= MAX_SIM_SECONDS):
        raise ConfigError(f"{run}.duration_seconds: {d!r} must be a number in (0, {MAX_SIM_SECONDS:g}] seconds")
    if not isinstance(sc.drain, bool):
        raise ConfigError(f"{run}.drain: {sc.drain!r} must be true or false")
    _check_int(sc.timeseries_points, f"{run}.timeseries_points", 10, 200_000)


def _check_length(d, where: str):
    """A token-length law built through the API: lengths are whole numbers >= 1."""
    from llmsim import workload as W
    bad = None
    if isinstance(d, W.Constant):
        if isinstance(d.value, bool) or not isinstance(d.value, (int, np.integer)) or not 1 <= d.value <= W.MAX_TOKENS:
            bad = f"value {d.value!r}"
    elif isinstance(d, W.Uniform):
        if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and 1 <= x <= W.MAX_TOKENS
                   for x in (d.low, d.high)) or d.high < d.low:
            bad = f"low {d.low!r}, high {d.high!r}"
    elif isinstance(d, W.Geometric):
        if not (isinstance(d.mean_value, (int, float)) and 1 <= d.mean_value <= W.MAX_TOKENS / 100):
            bad = f"mean {d.mean_value!r}"
    elif isinstance(d, W.Lognormal):
        if not (isinstance(d.mean_x, (int, float)) and 1 <= d.mean_x <= W.MAX_TOKENS
                and isinstance(d.cv, (int, float)) and 0 < d.cv <= 20
                and isinstance(d.max_tokens, (int, np.integer)) and 1 <= d.max_tokens <= 1_000_000):
            bad = f"mean {d.mean_x!r}, cv {d.cv!r}, max {d.max_tokens!r}"
    elif isinstance(d, W.Empirical):
        v = np.asarray(d.values)
        if v.size == 0 or v.dtype.kind not in "iu" or v.min() < 1 or v.max() > W.MAX_TOKENS:
            bad = "values (empty, not whole numbers, or outside the range)"
    elif isinstance(d, W.TraceLengths):
        return  # parse_trace checked every row
    if bad is None:
        try:
            m = float(d.mean)
        except Exception:  # an unknown object: refuse it rather than guess
            raise ConfigError(f"{where}: {d!r} is not a length distribution") from None
        if not (math.isfinite(m) and m >= 1):
            bad = f"mean {m!r}"
    if bad is not None:
        raise ConfigError(f"{where}: {bad} is not allowed; token lengths are whole numbers in "
                          f"[1, {W.MAX_TOKENS:,}]")


def _check_arrival(a, where: str):
    from llmsim.workload import MAX_RATE, MIN_RATE
    if isinstance(a, TraceArrivals):
        t = a.trace.times
        n = len(t)
        if n < 2:
            raise ConfigError(f"{where}.path: the trace {a.trace.path!r} has {n} request row(s); a replayed "
                              "trace needs at least 2 rows at different times (its arrival rate is "
                              "(rows - 1) / time span)")
        span = float(t[-1] - t[0])
        if not (isinstance(a.rate_scale, (int, float)) and math.isfinite(a.rate_scale) and 1e-6 <= a.rate_scale <= 1e4):
            raise ConfigError(f"{where}.speedup: {a.rate_scale!r} must be in [1e-06, 10000]")
        part = a.replayed_times
        if span > 0 and len(part) < n and (len(part) < 2 or part[-1] <= part[0]):
            later = int(np.searchsorted(t, t[0], side="right"))  # rows at the first instant
            raise ConfigError(
                f"num_requests: a run replays the first {len(part):,} rows of the trace {a.trace.path!r}, which "
                f"all arrive at t = {float(t[0]):g} s: there is no time to measure stability over; allowed: "
                f"num_requests >= {later + 1:,} (row {later + 1:,} is the first later arrival), or a duration, or a "
                f"trace whose first rows arrive at different times")
        if span <= 0 or not math.isfinite(a.rate) or a.rate > MAX_RATE:
            m, span_m = len(part), float(part[-1] - part[0])
            rows = f"{m} rows" if m == n else f"the {m:,} rows a run replays"
            raise ConfigError(
                f"{where}.path: the trace {a.trace.path!r} spans {span_m:g} s for {rows}, an arrival rate of "
                f"{(m - 1) / span_m * a.rate_scale if span_m > 0 else math.inf:g} per second; allowed: at most "
                f"{MAX_RATE:g} per second (rows spread over a longer time, or a smaller speedup)")
        last = a.last_time(a.replay) if a.replay else float(t[-1]) / a.rate_scale
        if last > MAX_SIM_SECONDS:
            what = f"the {a.replay:,} arrivals a run replays end" if a.replay else "its last arrival is"
            raise ConfigError(
                f"{where}.path: in the trace {a.trace.path!r} {what} at t = {last:g} s; allowed: at most "
                f"{MAX_SIM_SECONDS:g} s of simulated time (arrival times from 0 to {MAX_SIM_SECONDS:g} s, fewer "
                f"requests, or a larger speedup)")
        return
    r = getattr(a, "rate", None)
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or not MIN_RATE <= r <= MAX_RATE:
        raise ConfigError(f"{where}.rate: {r!r} must be in [{MIN_RATE:g}, {MAX_RATE:g}] per second")
    cv = getattr(a, "cv", 1.0)
    if isinstance(cv, bool) or not isinstance(cv, (int, float)) or not math.isfinite(cv) or cv < 0 or cv > 100:
        raise ConfigError(f"{where}.cv: {cv!r} must be in [0.01, 100]")


def validate(sc: Scenario) -> None:
    """Every check that can be made before a run; raises ConfigError naming the field."""
    if sc.num_requests is None and sc.duration_seconds is None:
        raise ConfigError("workload: give num_requests or duration_seconds (the run's horizon)")
    _check_run(sc, "workload" if sc.single else "run")
    if not sc.engines:
        raise ConfigError("engines: expected one or more engines")
    if not sc.workflows:
        raise ConfigError("workflows: expected one or more workflow classes")
    names = [e.name for e in sc.engines]
    if len(set(names)) != len(names):
        raise ConfigError(f"engines: names must be unique, got {names}")
    for ei, e in enumerate(sc.engines):
        where = "engine" if sc.single else f"engines[{ei}] ({e.name})"
        if e.scheduler not in SCHEDULERS:
            raise ConfigError(f"{where}.scheduler: unknown value {e.scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
        for k, v, hi in (("token_budget", e.token_budget, MAX_BUDGET), ("kv_cache_tokens", e.kv_cache_tokens, MAX_KV_TOKENS)):
            if not isinstance(v, int) or v <= 0 or v > hi:
                raise ConfigError(f"{where}.{k}: {v!r} must be a whole number in [1, {hi}]")
        if e.max_batch_size is not None and (not isinstance(e.max_batch_size, int) or e.max_batch_size <= 0):
            raise ConfigError(f"{where}.max_batch_size: {e.max_batch_size!r} must be a whole number >= 1")
        if e.policy not in POLICIES:
            raise ConfigError(f"{where}.policy: unknown value {e.policy!r}; allowed: {', '.join(POLICIES)}")
        if e.max_running_requests is not None and (
                not isinstance(e.max_running_requests, int) or not 1 <= e.max_running_requests <= MAX_BUDGET):
            raise ConfigError(f"{where}.max_running_requests: {e.max_running_requests!r} must be a whole "
                              f"number in [1, {MAX_BUDGET}]")
        if not isinstance(e.block_size, int) or not 1 <= e.block_size <= 4096:
            raise ConfigError(f"{where}.block_size: {e.block_size!r} must be a whole number in [1, 4096]")
        if not isinstance(e.watermark, (int, float)) or not 0 <= e.watermark <= 0.5:
            raise ConfigError(f"{where}.watermark: {e.watermark!r} must be a number in [0, 0.5]")
        if e.replicas:
            from llmsim.pool import validate_pool
            validate_pool(e, where)
        if e.batch_time.full_budget_seconds(e.token_budget) <= 0 or e.batch_time.seconds(1) <= 0:
            raise ConfigError(f"{where}.batch_time: an iteration must take a positive time ({e.batch_time.describe()})")
    for wi, w in enumerate(sc.workflows):
        where = f"workflows[{wi}] ({w.name})" if not sc.single else "workload"
        _check_arrival(w.arrival, f"{where}.arrival")
        if not w.steps:
            raise ConfigError(f"{where}.steps: expected one or more steps")
        snames = [s.name for s in w.steps]
        known = set(snames)
        if len(known) != len(snames):
            dup = sorted({n for n in snames if snames.count(n) > 1}) if len(snames) < 2000 else ["..."]
            raise ConfigError(f"{where}.steps: step names must be unique; repeated: {_names(dup)}")
        for st in w.start:
            if st not in known:
                raise ConfigError(f"{where}.start: unknown step {st!r}; steps: {_names(snames, 20)}")
        for s in w.steps:
            sw = f"{where}.steps.{s.name}" if not sc.single else "workload"
            _check_length(s.prompt_tokens, f"{sw}.prompt_tokens")
            _check_length(s.output_tokens, f"{sw}.output_tokens")
            if s.engine not in names:
                raise ConfigError(f"{sw}.engine: unknown engine {s.engine!r}; engines: {', '.join(names)}")
            if not s.routes:
                raise ConfigError(f"{sw}.routes: expected one or more routes (a route to [] exits)")
            for r in s.routes:
                if isinstance(r.prob, bool) or not isinstance(r.prob, (int, float)) or not 0 <= r.prob <= 1:
                    raise ConfigError(f"{sw}.routes: probability {r.prob!r} must be in [0, 1]")
            total = sum(r.prob for r in s.routes)
            if abs(total - 1.0) > 1e-9:
                raise ConfigError(f"{sw}.routes: probabilities sum to {total:g}; they must sum to 1")
            for r in s.routes:
                for ch in r.to:
                    if ch not in known:
                        raise ConfigError(f"{sw}: routes to unknown step {ch!r}; steps: {_names(snames, 20)}")
            _check_fits(sc.engines[names.index(s.engine)], s, sw, "engine" if sc.single else s.engine,
                        lambda e=s.engine: _served_longest(sc, e))
        _check_joins(w, where)
    _check_cycles(sc)


def longest_request(s: Step) -> tuple:
    """(prompt, output) tokens of the longest request step s may draw: the distributions'
    maxima, or their 1 - 1e-12 quantiles where unbounded (geometric, lognormal)."""
    p_max, d_max = s.prompt_tokens.max_value, s.output_tokens.max_value
    if isinstance(d_max, float) and math.isinf(d_max):
        d_max = s.output_tokens.quantile(1 - 1e-12)
    if isinstance(p_max, float) and math.isinf(p_max):
        p_max = s.prompt_tokens.quantile(1 - 1e-12)
    return p_max, d_max


def _served_longest(sc, engine: str) -> tuple:
    """(longest prompt, longest prompt + output) over every step engine `engine` serves:
    what its token budget must allow, not just the first step found too long (the agents
    page advised b >= 667 for an engine that also serves 3,900-token prompts)."""
    p_all, pd_all = 0, 0
    for w in sc.workflows:
        for s in w.steps:
            if s.engine == engine:
                try:
                    p, d = longest_request(s)
                except (ConfigError, ValueError, TypeError):  # a step not validated yet
                    continue
                p_all, pd_all = max(p_all, p), max(pd_all, p + d)
    return p_all, pd_all


def _check_fits(e: EngineConfig, s: Step, where: str, ewhere: str, served=None):
    """`served`: a function giving _served_longest of the step's engine (for the message)."""
    p_max, d_max = longest_request(s)
    if e.replicas:
        for i, r in enumerate(e.replicas):
            _check_fits(r, s, where, f"{ewhere} replica {i}", served)
        return
    info = e.info
    _check_kv_fits(e, p_max + d_max, where, ewhere)
    if p_max + d_max > e.kv_cache_tokens:
        raise ConfigError(
            f"{where}: a request of up to {p_max:,} prompt + {d_max:,} output tokens can never fit "
            f"{ewhere}.kv_cache_tokens = {e.kv_cache_tokens:,}; allowed: kv_cache_tokens >= {p_max + d_max:,} "
            "or shorter requests")
    if not info.chunked_prefill and p_max > e.token_budget:
        # a recompute preemption prefills the prompt and the tokens generated in one go:
        # below prompt + output, a preempted request may never run again (vLLM itself requires
        # max_num_batched_tokens >= max_model_len without chunked prefill)
        p_all, pd_all = served() if served is not None else (p_max, p_max + d_max)
        p_all, pd_all = max(p_all, p_max), max(pd_all, p_max + d_max)
        # the engine's other steps first: the bound named after "allowed" read as unexplained
        other = f" (and up to {p_all:,} at other steps this engine serves)" if p_all > p_max else ""
        safe = "" if info.reserve_full else (
            f" (>= {pd_all:,}, the largest prompt + output, so that a preempted request's "
            "recompute fits too)")
        raise ConfigError(
            f"{where}: prompts of up to {p_max:,} tokens{other} can never run under {e.scheduler}, which never "
            f"chunks a prompt: {ewhere}.token_budget = {e.token_budget:,}; allowed: token_budget >= {p_all:,}"
            f"{safe}, or a chunking scheduler (orca, sarathi)")


def _check_kv_fits(e: EngineConfig, tokens, where: str, ewhere: str):
    """A request of `tokens` (prompt + output) KV tokens, rounded up to blocks, must fit
    the cache less the watermark, or it could never run."""
    if not math.isfinite(tokens):
        return
    b = e.block_size
    need = -(-int(tokens) // b) * b
    usable = e.kv_blocks_tokens - e.watermark_tokens
    if need > usable:
        # blocks and watermark named only where they count (a page without either input said
        # "(1,700 in blocks of 1)" and "less the watermark (0 tokens)": a new-user pass)
        w = e.watermark_tokens
        cap = f"kv_cache_tokens = {e.kv_cache_tokens:,}"
        if e.kv_blocks_tokens != e.kv_cache_tokens:
            cap += f" ({e.kv_blocks_tokens:,} in whole blocks)"
        if w:
            cap += f" less the watermark ({w:,} tokens) leaves {usable:,}"
        raise ConfigError(
            f"{where}: a request of up to {int(tokens):,} KV tokens"
            f"{f' ({need:,} in blocks of {b})' if b > 1 else ''} can never fit {ewhere}: {cap}; allowed: "
            f"kv_cache_tokens >= {need + w:,}{', a smaller watermark,' if w else ''} or shorter requests")


def _check_joins(w: Workflow, where: str):
    # exact call counts of the fixed part, joins' needs, loops that never exit: one pass
    _fixed_calls(w, where)
    if not any(s.join for s in w.steps):
        return
    # a join must not sit on a cycle (its count would mix visits): its strong component
    # (found in one pass) is itself alone, without a self-loop
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components
    pos = {s.name: i for i, s in enumerate(w.steps)}
    rows = [pos[s.name] for s in w.steps for r in s.routes for c in r.to]
    cols = [pos[c] for s in w.steps for r in s.routes for c in r.to]
    n = len(pos)
    g = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, comp = connected_components(g, directed=True, connection="strong")
    size = np.bincount(comp, minlength=n)
    for s in w.steps:
        i = pos[s.name]
        if s.join and (size[comp[i]] > 1 or s.name in (c for r in s.routes for c in r.to)):
            raise ConfigError(f"{where}.steps.{s.name}: a join step cannot be part of a loop")


def _check_cycles(sc: Scenario):
    """Every workflow finishes with probability 1 and makes a finite mean number of calls.

    For a nonnegative Q, x = r + Q^T x has a nonnegative finite solution for r > 0 exactly
    when Q's spectral radius is below 1 (Perron-Frobenius), so two sparse solves replace
    eigenvalues and matrix powers: r = 1 on every step (no loop anywhere keeps going) and
    r = the workflows' starts (the mean calls per workflow, capped)."""
    idx = step_index(sc)
    n = len(idx)
    if n == 0 or not _has_edges(sc):
        return
    q = routing_sparse(sc)
    if q.nnz == 0:
        return
    inv = {v: k for k, v in idx.items()}
    x_all = _solve_visits(q, np.ones(n))
    x = _solve_visits(q, _start_vector(sc, idx))
    tol = 1e-9

    def bad_at(v):
        return ~np.isfinite(v) | (v < -tol * max(1.0, float(np.nanmax(np.abs(v)) if np.isfinite(v).any() else 1.0)))

    bad = bad_at(x_all) | bad_at(x)
    if bad.any() and not np.isnan(x_all).any() and not (x_all < 0).any() and not np.isnan(x).any() \
            and not (x < 0).any():
        bad = np.zeros(n, dtype=bool)  # only overflow (+inf): forks beyond any count, caught below
        x = np.where(np.isfinite(x), x, np.inf)
    if bad.any():
        from scipy.sparse.csgraph import connected_components
        _, comp = connected_components(q, directed=True, connection="strong")
        size = np.bincount(comp, minlength=n)
        diag = q.diagonal() > 0
        cyc = [k for k in range(n) if (size[comp[k]] > 1 or diag[k])]
        on = [k for k in cyc if bad[k]] or cyc
        raise ConfigError(
            f"workflows: a loop has no exit probability (or forks faster than it exits), so a workflow "
            f"would never finish: steps {_names(f'{sc.workflows[inv[k][0]].name}.{inv[k][1]}' for k in on) or 'in a cycle'}; "
            "give a loop a route with p > 0 that leaves it")
    for wi, w in enumerate(sc.workflows):
        ks = [idx[(wi, s.name)] for s in w.steps]
        total = float(x[ks].sum())
        if not total <= MAX_CALLS_PER_WORKFLOW:
            where = f"workflows[{wi}] ({w.name})" if not sc.single else "workload"
            many = f"{total:,.4g}" if math.isfinite(total) else "more than can be counted"
            raise ConfigError(
                f"{where}: each workflow would make {many} calls on average (its loops exit too rarely or "
                f"fork too much); allowed: at most {MAX_CALLS_PER_WORKFLOW:,} calls per workflow")
