"""The paper's worked example (SPEC.md §2, the paper's Fig. 8), iteration by iteration.

Requests A, B, C arrive at t=0 with 1 prompt token and 2, 4, 3 decode tokens; iteration 0
prefills them (every scheduler does the same there), so from iteration 1 on A, B, C are
decoding with 2, 4, 3 tokens left, as in the paper. D and E (1 prompt + 1 decode token)
arrive during iteration 1 (t = 1.5; iterations take 1 s).
"""

import pytest

from llmsim import loads_scenario, simulate


def example(scheduler, budget):
    text = f"""
seed = 0
[workload]
num_requests = 5
drain = true
arrival = {{ process = "trace", path = "{TRACE}" }}
[engine]
scheduler = "{scheduler}"
token_budget = {budget}
kv_cache_tokens = 1000
batch_time = {{ model = "constant", seconds = 1.0 }}
"""
    return loads_scenario(text)


TRACE = None


@pytest.fixture(autouse=True)
def trace_file(tmp_path):
    global TRACE
    p = tmp_path / "fig8.csv"
    p.write_text("arrival_time_s,prompt_tokens,output_tokens\n"
                 "0,1,2\n0,1,4\n0,1,3\n1.5,1,1\n1.5,1,1\n")
    TRACE = str(p)


def log_of(scheduler, budget):
    res = simulate(example(scheduler, budget), record_iterations=True)
    it = res.iterations
    names = "ABCDE"
    out = []
    for i, g in it.groupby("iteration"):
        d = sorted(names[r] for r, ph in zip(g.request_id, g.phase) if ph == "decode")
        p = sorted(names[r] for r, ph in zip(g.request_id, g.phase) if ph == "prefill")
        parts = []
        if p:
            parts.append(",".join(p) + " p")
        if d:
            parts.append(",".join(d) + " d")
        out.append(" + ".join(parts))
    return out


# the table of SPEC.md §2; the leading "A,B,C p" is iteration 0 (the warm-up prefill)
EXPECTED = {
    ("vllm", 4): ["A,B,C d", "D,E p", "A,B,C,D d", "B,C,E d", "B d"],
    ("orca", 5): ["A,B,C d", "D,E p + A,B,C d", "B,C,D,E d", "B d"],
    ("fastertransformer", 4): ["A,B,C d", "A,B,C d", "B,C d", "B d", "D,E p", "D,E d"],
    ("sarathi", 4): ["A,B,C d", "D p + A,B,C d", "E p + B,C,D d", "B,E d"],
}


@pytest.mark.parametrize("scheduler,budget", list(EXPECTED))
def test_paper_fig8(scheduler, budget):
    log = log_of(scheduler, budget)
    assert log[0] == "A,B,C p"
    assert log[1:] == EXPECTED[(scheduler, budget)]
