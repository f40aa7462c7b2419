"""Hypothesis over scenario files (issue 8): bad values, extreme legal values and random
agent graphs, written as TOML and given to the command line. Every file ends in exit 0 or
exit 2 with a one-line message — never a traceback (an exception escaping ``cli.main``
fails the test with it), never a hang (a generous per-file bound), never a runaway in
memory (the process's peak resident size grows by less than a bound).

About half the examples draw only legal values, so a good share of files load and run;
the rest mix in bad ones. The default budget is small for CI; raise it by hand with
LLMSIM_FUZZ_EXAMPLES=2000. Runs are kept short (few requests, bounded work) since the
point is the input layer; the work and memory budgets of a run are tested elsewhere.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
tomli_w = pytest.importorskip("tomli_w")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from llmsim import cli  # noqa: E402
from llmsim.config import MAX_BUDGET, MAX_KV_TOKENS, MAX_REQUESTS, load_scenario  # noqa: E402
from llmsim.workload import MAX_TOKENS  # noqa: E402

EXAMPLES = int(os.environ.get("LLMSIM_FUZZ_EXAMPLES", "40"))
PER_FILE_SECONDS = 60      # a hang guard (the slowest legal file here takes about a second)
RSS_GROWTH_BYTES = 1.5e9   # peak resident size may grow by less than this over the test


def pick(ok: st.SearchStrategy, bad: list, valid: bool) -> st.SearchStrategy:
    """A legal value, or (when not in valid mode) sometimes a bad one."""
    return ok if valid else st.one_of(ok, ok, st.sampled_from(bad))


NUM_BAD = [0, -1, -1e300, 1e300, float("nan"), float("inf"), "x", True, [1]]


@st.composite
def length(draw, valid, small):
    hi = 500 if small else MAX_TOKENS
    kind = draw(st.sampled_from(["constant", "uniform", "geometric", "lognormal", "empirical"]
                                + ([] if valid else ["zipf", 5])))
    if kind == "constant":
        return {"dist": kind, "value": draw(pick(st.sampled_from([1, 7, 512, hi]), [0, -3, hi + 1, 2.5, "a"],
                                                 valid))}
    if kind == "uniform":
        lo = draw(pick(st.integers(1, hi), [0, -1], valid))
        return {"dist": kind, "low": lo, "high": draw(pick(st.integers(max(1, lo), hi), [lo - 1], valid))}
    if kind == "geometric":
        return {"dist": kind, "mean": draw(pick(st.floats(1, min(hi, MAX_TOKENS / 100)), [0.5, 0, -2], valid))}
    if kind == "lognormal":
        return {"dist": kind, "mean": draw(pick(st.floats(1, hi), [0, -1], valid)),
                "cv": draw(pick(st.floats(0.01, 20), [0, 21, float("nan")], valid)),
                "max": draw(pick(st.sampled_from([1, 100, hi if small else 1_000_000]), [0, 2_000_000], valid))}
    if kind == "empirical":
        vals = draw(st.lists(pick(st.integers(1, hi), [0, -1, MAX_TOKENS + 1], valid), min_size=1, max_size=5))
        return {"dist": kind, "values": vals}
    return {"dist": kind}


@st.composite
def arrival(draw, valid):
    kind = draw(st.sampled_from(["poisson", "deterministic", "gamma", "trace"] + ([] if valid else ["weibull"])))
    rate = pick(st.sampled_from([1e-9, 0.01, 1.0, 20.0, 1e6]), [0, -1, 5e-324, 1e7, float("nan")], valid)
    if kind == "trace":
        path = draw(pick(st.sampled_from(["azure_conv_2023_head.csv", "azure_code_2023_head.csv"]),
                         ["/etc/passwd", "/proc/self/environ", "nope.csv", "", "../../etc/passwd"], valid))
        t = {"process": kind, "path": path}
        if draw(st.booleans()):
            t["speedup"] = draw(pick(st.sampled_from([1e-6, 0.5, 10.0, 1e4]), [0, 1e5, -1], valid))
        return t
    t = {"process": kind, "rate": draw(rate)}
    if kind == "gamma":
        t["cv"] = draw(pick(st.sampled_from([0.01, 1.0, 100.0]), [0, 101, -1], valid))
    return t


@st.composite
def engine(draw, valid, small, name=None):
    t = {"scheduler": draw(pick(st.sampled_from(["fastertransformer", "vllm", "orca", "sarathi"]), ["fifo", 3],
                                valid)),
         "token_budget": draw(pick(st.sampled_from([512, 4096] if small else [1, 16, 512, MAX_BUDGET]),
                                   [0, -5, MAX_BUDGET + 1, 1.5], valid)),
         "kv_cache_tokens": draw(pick(st.sampled_from([400_000, 1_000_000] if small
                                                      else [1, 5_000, 400_000, MAX_KV_TOKENS]),
                                      [0, MAX_KV_TOKENS + 1], valid))}
    if name:
        t["name"] = name
    if draw(st.booleans()):
        t["max_batch_size"] = draw(pick(st.sampled_from([1, 8, 256]), [0, -1], valid))
    bt = draw(st.sampled_from(["constant", "staircase", "affine", "preset"]))
    if bt == "constant":
        t["batch_time"] = {"model": bt, "seconds": draw(pick(st.sampled_from([1e-6, 0.01, 0.05]), NUM_BAD, valid))}
    elif bt == "staircase":
        t["batch_time"] = {"model": bt, "c_seconds": draw(pick(st.sampled_from([0.0, 0.01]), [-1], valid)),
                           "a_seconds": draw(pick(st.sampled_from([0.005, 0.03]), [-1, float("inf")], valid)),
                           "b0": draw(pick(st.sampled_from([1, 128]), [0], valid))}
    elif bt == "affine":
        t["batch_time"] = {"model": bt, "c0_seconds": draw(pick(st.sampled_from([0.001, 0.02]), [0, -1], valid)),
                           "prefill_seconds_per_token": 1e-5, "decode_seconds_per_token": 1e-4}
    else:
        t["preset"] = draw(pick(st.sampled_from(["llama2-7b/a100-80gb"]), ["gpu9"], valid))
    return t


@st.composite
def workflow(draw, valid, small, engines, index):
    n = draw(st.integers(1, 6))
    names = [f"s{i}" for i in range(n)]
    steps = []
    for i, nm in enumerate(names):
        s = {"name": nm, "engine": draw(st.sampled_from(engines + ([] if valid else ["gpu9"]))),
             "prompt_tokens": draw(length(valid, small)), "output_tokens": draw(length(valid, small))}
        later = names[i + 1:]
        shape = draw(st.sampled_from(["exit", "next", "fork", "routes", "loop"]))
        if shape == "next" and later:
            s["next"] = [draw(st.sampled_from(later))]
        elif shape == "fork" and later:
            s["next"] = draw(st.lists(st.sampled_from(later), min_size=2, max_size=4))
        elif shape == "routes":
            p = draw(st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0]))
            to = draw(st.lists(st.sampled_from(names), max_size=2))
            s["routes"] = [{"p": p, "to": to}, {"p": round(1 - p, 10), "to": []}]
        elif shape == "loop":  # back to an earlier step or itself, sometimes without an exit
            back = draw(st.sampled_from(names[: i + 1]))
            s["routes"] = ([{"p": 0.5, "to": [back]}, {"p": 0.5, "to": []}] if draw(st.booleans())
                           else [{"p": 1.0, "to": [back]}])
        targeted = any(nm in r for t in steps for r in [t.get("next", [])] + [x["to"] for x in t.get("routes", [])])
        if i and draw(st.integers(0, 4 if targeted else 20)) == 0:
            s["join"] = True
        if draw(st.integers(0, 5)) == 0:
            s["delay"] = {"dist": draw(st.sampled_from(["constant", "exponential"])),
                          "seconds": draw(pick(st.sampled_from([0.0, 0.5, 1e6]), [-1], valid))}
        if draw(st.integers(0, 5)) == 0:
            s["priority"] = draw(pick(st.integers(0, 1000), [-1, 1001], valid))
        steps.append(s)
    return {"name": f"w{index}", "arrival": draw(arrival(valid)), "steps": steps, "start": [names[0]]}


@st.composite
def scenario_file(draw):
    # legal and runnable; legal at the extremes; a mix with bad values
    mode = draw(st.sampled_from(["valid", "extreme", "bad", "valid"]))
    valid, small = mode != "bad", mode == "valid"
    event(f"mode {mode}")
    run = {"num_requests": draw(pick(st.integers(1, 60) if small else st.sampled_from([1, 100, MAX_REQUESTS]),
                                     [0, -1, MAX_REQUESTS + 1, 2.5, "ten"], valid))}
    if draw(st.integers(0, 3)) == 0:
        run["duration_seconds"] = draw(pick(st.sampled_from([0.5, 100.0] if small else [1e-9, 1e9]),
                                            [0, -1, 1e10], valid))
    if draw(st.booleans()):
        run["timeseries_points"] = draw(pick(st.sampled_from([10, 2000] if small else [10, 200_000]),
                                             [9, 200_001], valid))
    data = {"seed": draw(pick(st.sampled_from([0, 1, 2**63 - 1]), [-1, 2**63, 1.5], valid))}
    if draw(st.integers(0, 2)) == 0:  # the single-engine form
        w = dict(run, arrival=draw(arrival(valid)))
        if w["arrival"]["process"] != "trace" or draw(st.booleans()):
            w["prompt_tokens"] = draw(length(valid, small))
            w["output_tokens"] = draw(length(valid, small))
        data.update(workload=w, engine=draw(engine(valid, small)))
    else:
        names = [f"e{i}" for i in range(draw(st.integers(1, 3)))]
        data.update(run=run, engines=[draw(engine(valid, small, n)) for n in names],
                    workflows=[draw(workflow(valid, small, names, i)) for i in range(draw(st.integers(1, 2)))])
    return data, small


def _runnable(path) -> bool:
    """Files whose run is short: few requests of bounded size (the load check, theory and
    validation run on every file)."""
    sc = load_scenario(path)
    if sc.num_requests is None or sc.num_requests > 60 or sum(e.token_budget for e in sc.engines) > 20_000:
        return False
    biggest = max(max(s.prompt_tokens.mean, s.output_tokens.mean) for w in sc.workflows for s in w.steps)
    return biggest <= 5_000 and all(w.arrival.rate >= 1e-3 for w in sc.workflows)


START_RSS = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(scenario_file())
def test_any_scenario_file_exits_0_or_2(tmp_path_factory, drawn):
    data, small = drawn
    path = Path(tmp_path_factory.mktemp("fuzz")) / "s.toml"
    path.write_text(tomli_w.dumps(data))
    t = time.perf_counter()
    rc = cli.main(["theory", str(path), "--json", str(path.with_suffix(".json"))])
    assert rc in (0, 2)
    event(f"theory exit {rc}")
    if rc == 0 and _runnable(path):
        rc = cli.main(["run", str(path), "--json", str(path.with_suffix(".run.json"))])
        assert rc in (0, 2)
        event(f"run exit {rc}")
    elapsed = time.perf_counter() - t
    assert elapsed < PER_FILE_SECONDS, f"{elapsed:.0f} s for one file"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - START_RSS
    assert grown < RSS_GROWTH_BYTES, f"peak resident size grew by {grown / 1e9:.2f} GB"


def test_the_generator_makes_valid_files_too():
    """The fuzz is worth little if every file is refused: a fair share loads."""
    from llmsim import ConfigError, scenario_from_table
    outcomes = []

    @settings(max_examples=60, derandomize=True, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenario_file())
    def collect(drawn):
        try:
            scenario_from_table(drawn[0])
            outcomes.append(True)
        except ConfigError:
            outcomes.append(False)

    collect()
    assert sum(outcomes) >= 0.2 * len(outcomes), f"only {sum(outcomes)} of {len(outcomes)} files are valid"
