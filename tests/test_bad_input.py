"""Every invalid value fails before the run, naming the field, the value and what is
allowed — through the API and the CLI (exit code 2, no traceback)."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from llmsim import ConfigError, load_scenario, loads_scenario, simulate
from llmsim.workload import parse_trace

BASE = """
seed = 1
[workload]
num_requests = 100
arrival = {{ process = "poisson", rate = {rate} }}
prompt_tokens = {prompt}
output_tokens = {{ dist = "geometric", mean = 16 }}
[engine]
scheduler = "{sched}"
token_budget = {budget}
kv_cache_tokens = {kv}
batch_time = {bt}
"""


def make(rate="3.0", prompt='{ dist = "constant", value = 64 }', sched="sarathi", budget="512",
         kv="100000", bt='{ model = "constant", seconds = 0.05 }'):
    return BASE.format(rate=rate, prompt=prompt, sched=sched, budget=budget, kv=kv, bt=bt)


@pytest.mark.parametrize("text,field,allowed", [
    (make(rate="-1"), "workload.arrival.rate", "> 0"),
    (make(rate="0"), "workload.arrival.rate", "> 0"),
    (make(budget="0"), "engine.token_budget", "> 0"),
    (make(budget="12.5"), "engine.token_budget", "whole number"),
    (make(kv="-5"), "engine.kv_cache_tokens", "> 0"),
    (make(sched="fifo"), "engine.scheduler", "fastertransformer, vllm, orca, sarathi"),
    (make(bt='{ model = "cubic", seconds = 1 }'), "engine.batch_time.model", "constant, staircase"),
    (make(bt='{ model = "constant", seconds = -1 }'), "engine.batch_time.seconds", "> 0"),
    (make(prompt='{ dist = "cauchy", a = 2 }'), "workload.prompt_tokens.dist", "constant, uniform"),
    (make(prompt='{ dist = "uniform", low = 10, high = 5 }'), "workload.prompt_tokens.high", ">= low"),
    (make(prompt='{ dist = "lognormal", mean = 100, cv = 1 }'), "workload.prompt_tokens.max", "missing"),
    (make(kv="100", prompt='{ dist = "constant", value = 64 }'), "kv_cache_tokens = 100", "kv_cache_tokens >="),
    (make(sched="vllm", prompt='{ dist = "constant", value = 600 }'), "token_budget = 512", "token_budget >= 600"),
    (make(sched="fastertransformer", prompt='{ dist = "constant", value = 600 }'), "never chunks", "orca, sarathi"),
    (make().replace("[engine]", "[engine]\npreset = \"no-such-gpu\""), "engine.preset", "llama2-7b/a100-80gb"),
    (make().replace("num_requests = 100", "num_requests = 100\npreset = \"nope\""), "workload.preset", "azure-conv-2023"),
    (make().replace("seed = 1", "seed = 1\nfoo = 2"), "scenario", "allowed"),
    ("seed = = 1", "malformed TOML", "TOML"),
    # an integer beyond Python's 4,300-digit conversion limit: tomllib raises ValueError
    ("seed = " + "9" * 5000, "malformed TOML", "cannot be read"),
    # within it, but beyond a float (OverflowError) or an int64: refused by name, not echoed
    (make().replace("seed = 1", "seed = " + "9" * 400), "seed: a whole number of 400 digits", "out of range"),
    (make().replace("seed = 1", "seed = " + str(2 ** 63)), "seed: a whole number of 19 digits",
     "at most 9,223,372,036,854,775,807"),  # it read "at most 9.22337e+18"
    (make(rate="9" * 400), "workload.arrival.rate: a whole number of 400 digits", "allowed: at most 1e+06"),
    (make(budget="9" * 25), "engine.token_budget: a whole number of 25 digits", "out of range"),
    # a subnormal iteration time: 1 / t overflows in the theory's linear program
    (make(bt='{ model = "constant", seconds = 1e-320 }'), "engine.batch_time.seconds", ">= 1e-06"),
    (make(bt='{ model = "staircase", c_seconds = 0, a_seconds = 1e-320, b0 = 128 }'), "engine.batch_time",
     "must be >= 1e-06 s"),
    (make(bt='{ model = "affine", c0_seconds = 1e-320, prefill_seconds_per_token = 1e-4, '
             'decode_seconds_per_token = 1e-4 }'), "engine.batch_time.c0_seconds", ">= 1e-06"),
])
def test_api_errors_name_field_and_allowed(text, field, allowed):
    with pytest.raises(ConfigError) as e:
        loads_scenario(text)
    msg = str(e.value)
    assert field in msg and allowed in msg, msg


@pytest.mark.parametrize("csv,needle", [
    ("time,p,o\n0,1,1\n", "header"),
    ("arrival_time_s,prompt_tokens,output_tokens\n0,1\n", "line 2: expected 3 fields"),
    ("arrival_time_s,prompt_tokens,output_tokens\n0,1,x\n", "line 2: not numbers"),
    ("arrival_time_s,prompt_tokens,output_tokens\n0,0,5\n", "line 2: token counts"),
    # Python's int() and float() read these; a CSV's numbers are ASCII digits without separators
    ("arrival_time_s,prompt_tokens,output_tokens\n0,1_000,5\n", "line 2: not numbers"),
    ("arrival_time_s,prompt_tokens,output_tokens\n0,\u0661\u0662,5\n", "line 2: not numbers"),
    ("arrival_time_s,prompt_tokens,output_tokens\n0,12,\uff15\n", "line 2: not numbers"),
    ("arrival_time_s,prompt_tokens,output_tokens\n1_0,12,5\n", "line 2: not numbers"),
    ("arrival_time_s,prompt_tokens,output_tokens\n0,7.0,5\n", "line 2: not numbers"),
    # rows end at a line break only (str.splitlines() made two requests of '1,7,5\x1c3,8,5') and
    # a quoted field's line break is kept in it (its digits were glued: "1\n0" read as 10)
    ("arrival_time_s,prompt_tokens,output_tokens\n1,7,5\x1c3,8,5\n", "line 2: expected 3 fields, got 5"),
    ("arrival_time_s,prompt_tokens,output_tokens\n1,7,5\u20283,8,5\n", "line 2: expected 3 fields, got 5"),
    ("arrival_time_s,prompt_tokens,output_tokens\n0,\"1\n0\",5\n", "line 2: not numbers"),
    ("arrival_time_s,prompt_tokens,output_tokens\n0,1,1\n\"1\n2\",7,5\n", "line 3: not numbers"),
    ("arrival_time_s,prompt_tokens,output_tokens\r\n0,1,1\r\n1,2,x\r\n", "line 3: not numbers"),
    ("arrival_time_s,prompt_tokens,output_tokens\n5,1,5\n2,1,5\n", "line 3: arrival_time_s 2.0 is before"),
    ("arrival_time_s,prompt_tokens,output_tokens\n", "no request rows"),
    ("", "empty file"),
])
def test_malformed_trace(csv, needle):
    with pytest.raises(ConfigError) as e:
        parse_trace(csv, "t.csv")
    assert needle in str(e.value)


def test_a_trace_error_quotes_a_long_row_cut():
    """A 130 KB field was quoted back whole (found as a hostile visitor would)."""
    with pytest.raises(ConfigError) as e:
        parse_trace("arrival_time_s,prompt_tokens,output_tokens\n0," + "9" * 130_000 + ",x\n", "t.csv")
    assert "line 2: not numbers: '0,999" in str(e.value) and len(str(e.value)) < 300
    with pytest.raises(ConfigError) as e:  # cut after its escapes: a row of \u2028 came out ~720 characters
        parse_trace("arrival_time_s,prompt_tokens,output_tokens\n0,1," + "\u2028" * 1000 + "\n", "t.csv")
    assert len(str(e.value)) < 300


def test_trace_line_endings():
    text = "arrival_time_s,prompt_tokens,output_tokens\r\n0,1,2\r\n0.5,3,4\r1,5,6\n"
    assert list(parse_trace(text, "t.csv").prompt) == [1, 3, 5]


def test_shipped_trace_replays():
    sc = loads_scenario(make().replace('arrival = { process = "poisson", rate = 3.0 }',
                                       'arrival = { process = "trace", path = "azure_conv_2023_head.csv" }')
                        .replace('prompt_tokens = { dist = "constant", value = 64 }\n', "")
                        .replace('output_tokens = { dist = "geometric", mean = 16 }\n', "")
                        .replace("kv_cache_tokens = 100000", "kv_cache_tokens = 400000"))
    res = simulate(sc)
    assert res.summary["arrived"] == 100
    from llmsim.workload import load_trace
    tr = load_trace("azure_conv_2023_head.csv")
    assert list(res.requests.prompt_tokens) == list(tr.prompt[:100])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "llmsim", *args], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])


def test_cli_bad_input_exit_2(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(make(budget="-3"))
    r = run_cli("run", str(p))
    assert r.returncode == 2
    assert "engine.token_budget" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "not found" in r.stderr
    good = tmp_path / "good.toml"
    good.write_text(make())
    r = run_cli("run", str(good), "--scheduler", "fifo")
    assert r.returncode == 2 and "allowed: fastertransformer" in r.stderr
    r = run_cli("run", str(good), "--rate", "-2")
    assert r.returncode == 2 and "rate" in r.stderr and "Traceback" not in r.stderr
    huge = tmp_path / "huge.toml"
    huge.write_text(make().replace("seed = 1", "seed = " + "9" * 5000))
    r = run_cli("run", str(huge))
    assert r.returncode == 2 and "malformed TOML" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("sweep", str(huge))
    assert r.returncode == 2 and "malformed TOML" in r.stderr and "Traceback" not in r.stderr
    big = tmp_path / "big.toml"
    big.write_text(make().replace("seed = 1", "seed = " + "9" * 400))
    r = run_cli("run", str(big))
    assert r.returncode == 2 and "400 digits" in r.stderr and "Traceback" not in r.stderr


def test_cli_run_json(tmp_path):
    import json
    good = tmp_path / "good.toml"
    good.write_text(make())
    out = tmp_path / "o.json"
    r = run_cli("run", str(good), "--scheduler", "orca", "--rate", "2", "--json", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    for k in ("scheduler", "load", "throughput_rps", "token_throughput", "completed", "ttft_p50_s",
              "ttft_p99_s", "e2e_p50_s", "preemptions", "wall_seconds", "final_backlog_tokens",
              "verdict", "capacity_rps", "backlog_growth_tokens_per_s"):
        assert k in d, k
    assert d["scheduler"] == "orca" and d["arrival_rate_rps"] == 2.0
    assert "verdict" in r.stdout.lower()
    # an output that cannot be written is refused before the run, naming the flag (it was
    # "[Errno 2] No such file or directory" after the run; found as a hostile visitor would)
    for bad in (tmp_path / "no" / "such" / "x.json", tmp_path):
        r = run_cli("run", str(good), "--json", str(bad))
        assert r.returncode == 2 and r.stderr.startswith("error: --json:") and "existing directory" in r.stderr, r.stderr
        assert "verdict" not in r.stdout.lower()


def test_cli_run_reads_as_the_dashboard_does():
    """Tried as a new user would: `run quickstart --scheduler vllm --rate 5` printed "load rho
    0.5026   theory capacity 6.667 req/s" (5 / 6.667 is 0.75: the load was over the best
    scheduler's capacity, the capacity vllm's own), "3.018e+04 tokens/s", and a network's
    workflows per second beside its LLM calls per second, both called requests."""
    r = run_cli("run", "scenarios/quickstart.toml", "--scheduler", "vllm", "--rate", "5")
    assert r.returncode == 0, r.stderr
    assert "load rho 0.5026 (over the best scheduler's capacity 9.948 req/s)" in r.stdout
    assert "vllm's own capacity 6.667 req/s, own load 0.75" in r.stdout
    assert "completed     19,914 of 20,000 requests" in r.stdout
    r = run_cli("run", "scenarios/agents/cyclic.toml", "--num-requests", "20000")
    assert r.returncode == 0, r.stderr
    assert "arrivals      7.68 workflows/s" in r.stdout and " calls/s " in r.stdout and "LLM calls" in r.stdout
    assert "tokens/s" in r.stdout and "e+0" not in r.stdout, r.stdout
    r = run_cli("theory", "scenarios/quickstart.toml", "--scheduler", "vllm")  # it printed raw JSON
    assert r.returncode == 0, r.stderr
    assert "load rho      0.3016 (over the best any scheduler reaches: 9.948 req/s)" in r.stdout
    assert "own load      0.45" in r.stdout and "{" not in r.stdout, r.stdout
    r = run_cli("theory", "scenarios/quickstart.toml", "--json", "-")
    assert r.returncode == 0 and __import__("json").loads(r.stdout)["load"] == pytest.approx(0.3016, abs=1e-4)


def test_cli_json_on_stdout_is_json_alone_and_replications_are_said():
    """`run ... --json -` and `capacity ... --json -` printed their text before the JSON, so
    a pipe to a JSON reader failed; `--replications 3` printed what one seed prints; `| head`
    ended in "error: [Errno 32] Broken pipe" (tried as a new user would)."""
    import json
    r = run_cli("run", "scenarios/quickstart.toml", "--json", "-")
    assert r.returncode == 0 and json.loads(r.stdout)["scheduler"] == "sarathi"
    assert r.stderr.startswith("scenario      quickstart")  # the text, on stderr
    r = run_cli("capacity", "scenarios/quickstart.toml", "--schedulers", "sarathi", "--num-requests-per-probe", "2000",
                "--json", "-")
    assert r.returncode == 0 and json.loads(r.stdout)["results"][0]["scheduler"] == "sarathi"
    r = run_cli("run", "scenarios/quickstart.toml", "--replications", "3", "--num-requests", "2000")
    assert r.returncode == 0
    assert "replications  3 seeds (7 to 9): the verdict and the growth pool them; the figures above are seed 7's" \
        in r.stdout
    r = subprocess.run(f"{sys.executable} -m llmsim run scenarios/quickstart.toml | head -1", shell=True,
                       capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.stdout.startswith("scenario") and "Broken pipe" not in r.stderr and "Traceback" not in r.stderr


def test_every_shipped_scenario_loads():
    root = Path(__file__).parents[1] / "scenarios"
    # sweep files (a [sweep] table over a base scenario) load through llmsim.sweep: tests/test_sweep.py
    files = sorted(f for f in root.rglob("*.toml") if "sweeps" not in f.relative_to(root).parts)
    assert len(files) >= 8
    for f in files:
        sc = load_scenario(f)
        assert sc.engines and sc.workflows
        # and survives a round trip through TOML
        assert loads_scenario(sc.to_toml()).to_table() == sc.to_table()


def test_run_table_in_a_single_engine_scenario_is_refused():
    """[run] belongs to networks; in a single-engine file it was ignored (20,000 requests ran
    where 500 were asked for)."""
    text = (Path(__file__).parents[1] / "scenarios" / "quickstart.toml").read_text() + "\n[run]\nnum_requests = 500\n"
    with pytest.raises(ConfigError, match=r"^run: .*\[workload\]"):
        loads_scenario(text)



def test_the_library_names_what_it_expects():
    """Tried as a new user would: simulate("x.toml") raised AttributeError deep inside;
    replicate(sc, 0) an IndexError; with_policy accepted a priority "high" that failed in the
    run; capacity_search(sc, "orca") searched 'o', 'r', 'c', 'a'; max_probes=0 and workers=0
    passed; with_engine(tokn_budget=5) raised a bare TypeError."""
    import llmsim
    from llmsim.capacity import capacity_search
    path = Path(__file__).parents[1] / "scenarios" / "quickstart.toml"
    sc = llmsim.load_scenario(path)
    small = replace(sc, num_requests=500)
    assert llmsim.analyze(str(path)).load == llmsim.analyze(sc).load  # a path is read
    assert llmsim.Simulation(path).scenario == sc
    for bad in (None, {"engine": {}}, 3):
        with pytest.raises(ConfigError, match="scenario: expected a Scenario"):
            llmsim.simulate(bad)
    with pytest.raises(ConfigError, match=r"seeds: 0 must be a number of replications in \[1, 1000\]"):
        llmsim.replicate(small, 0)
    with pytest.raises(ConfigError, match="seeds"):
        llmsim.replicate(small, [])
    net = llmsim.load_scenario(Path(__file__).parents[1] / "scenarios" / "agents" / "cyclic.toml")
    with pytest.raises(ConfigError, match=r"priorities\['A.short'\]: 'high' must be a whole number in \[0, 1000\]"):
        net.with_policy("priority", {"A.short": "high"})
    with pytest.raises(ConfigError, match="max_probes: 0 must be"):
        capacity_search(sc, ["orca"], max_probes=0)
    with pytest.raises(ConfigError, match="workers: 0 must be"):
        capacity_search(sc, ["orca"], workers=0)
    with pytest.raises(ConfigError, match="num_requests: 100 must be a whole number in \\[1000, 5000000\\]"):
        capacity_search(sc, "orca", num_requests=100)
    with pytest.raises(ConfigError, match="with_engine: unknown field 'tokn_budget'; allowed: .*token_budget"):
        sc.with_engine(tokn_budget=5)
    with pytest.raises(ConfigError, match=r"engine index: 3 must be a whole number in \[0, 0\]"):
        sc.with_engine(3, token_budget=5)
    r = run_cli("capacity", "scenarios/quickstart.toml", "--num-requests-per-probe", "100")
    assert r.returncode == 2 and "--num-requests-per-probe: 100 must be a whole number in [1,000, 5,000,000]" in r.stderr


# ---- the plain-CSV reader (NumPy's) against the row-by-row reader of record -----------------
from hypothesis import event, given, settings, strategies as hs  # noqa: E402

from llmsim.workload import _parse_plain_trace, _read_trace_rows  # noqa: E402

_HEADER = "arrival_time_s,prompt_tokens,output_tokens\n"
_SPACE = hs.sampled_from(["", "", "", "", " ", " ", "\t", "  ", "\x0b", "\x1c"])


def _same_or_declined(text: str) -> bool:
    """The plain reader either declines (None) or gives exactly what the reader of record
    gives; returns whether it read the text."""
    plain = _parse_plain_trace(text, "t.csv")
    if plain is None:
        return False
    ref = _read_trace_rows(text, "t.csv", True)  # raises if the plain reader took a bad text
    assert plain == ref and plain.times.dtype == ref.times.dtype and plain.prompt.dtype == ref.prompt.dtype
    return True


@settings(max_examples=400, deadline=None, derandomize=True)
@given(hs.text(alphabet=list("0123456789.,+-eEinfa _\t\n\r\"\x0b\x0c\x1c\x00x") + ["\u0661", "\xa0"], max_size=60))
def test_the_plain_trace_reader_never_reads_what_the_reader_of_record_refuses(body):
    """Any text after the header: NumPy's reader gives the same trace or leaves it to the row
    reader (which then says which line is wrong)."""
    _same_or_declined(_HEADER + body)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(hs.lists(hs.tuples(
    hs.one_of(hs.floats(0, 1e6, allow_nan=False), hs.integers(0, 10**6)),
    hs.integers(0, 10_000_001), hs.integers(0, 10_000_001),
    _SPACE, _SPACE, hs.sampled_from(["{}", "{!r}", "{:.3f}", "{:e}", "+{}", "00{}"]),
    hs.booleans()), min_size=1, max_size=12), hs.booleans(), hs.sampled_from(["\n", "\r\n"]))
def test_the_plain_trace_reader_reads_valid_rows_as_the_reader_of_record(rows, sort, end):
    """Rows as CSV writers write them (floats in several notations, whole token counts with
    signs, leading zeros and spaces, blank lines, Unix or Windows line ends): the same trace, bit for bit, whichever
    reader reads it; most such texts go the fast way."""
    if sort:
        rows = sorted(rows, key=lambda r: r[0])
    lines = []
    for t, p, o, pad_a, pad_b, fmt, blank in rows:
        ts = fmt.format(float(t)) if fmt != "+{}" else f"+{t}"
        if fmt == "00{}":
            ts = f"00{t}"
        lines.append(f"{pad_a}{ts}{pad_b},{pad_a}{p},{o}{pad_b}")
        if blank:
            lines.append("")
    text = (_HEADER + "\n".join(lines) + ("\n" if sort else "")).replace("\n", end)
    try:
        ref = _read_trace_rows(text, "t.csv", True)
    except ConfigError:
        assert _parse_plain_trace(text, "t.csv") is None
        return
    plain = _parse_plain_trace(text, "t.csv")
    event(f"valid text, plain reader: {'declined' if plain is None else 'read'}")
    assert plain is None or plain == ref


def test_a_plain_trace_goes_the_fast_way():
    text = _HEADER + "".join(f"{i * 0.25:.6f},{100 + i},{7 + i % 5}\n" for i in range(1000))
    assert _same_or_declined(text)
    assert _same_or_declined(text.replace(",", " , "))  # spaces around fields
    assert _same_or_declined(text + "\n\n")  # blank lines at the end
    assert _same_or_declined(text.replace("\n", "\r\n"))  # Windows line ends (a spreadsheet's export)
    assert not _same_or_declined(text.replace("\n", "\r"))  # old Mac ones: the row reader's own
