"""Checks for the shipped real-trace excerpts in llmsim/data/traces/.

Stdlib only. Each CSV must parse, have the expected header, arrival times that
start at 0 and never decrease, positive integer token counts, and must match
the figures recorded in llmsim/data/traces/README.md (rows, mean prompt/output
tokens, token sums, SHA-256), so any edit to a file makes this test fail.
"""

import csv
import hashlib
import math
import re
from pathlib import Path

import pytest

TRACES_DIR = Path(__file__).resolve().parents[1] / "llmsim" / "data" / "traces"
README = TRACES_DIR / "README.md"
HEADER = ["arrival_time_s", "prompt_tokens", "output_tokens"]
FILES = ["azure_conv_2023_head.csv", "azure_code_2023_head.csv"]
INT_RE = re.compile(r"^[1-9][0-9]*$")
TIME_RE = re.compile(r"^[0-9]+\.[0-9]{6}$")


def _readme_table():
    """Return {file: {column: value}} from the summary table in README.md."""
    text = README.read_text(encoding="utf-8")
    columns = None
    table = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == "file" and "rows" in cells:
            columns = cells
            continue
        if columns and len(cells) == len(columns):
            name = cells[0].strip("`")
            if name in FILES:
                table[name] = dict(zip(columns, cells))
    return table


def _readme_sha256():
    text = README.read_text(encoding="utf-8")
    found = dict(re.findall(r"^- `([^`]+\.csv)`: `([0-9a-f]{64})`$", text, re.M))
    return found


def _load(name):
    with open(TRACES_DIR / name, newline="", encoding="ascii") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.mark.parametrize("name", FILES)
def test_csv_format(name):
    header, rows = _load(name)
    assert header == HEADER
    assert len(rows) >= 1000
    prev = None
    for i, row in enumerate(rows):
        assert len(row) == 3, (i, row)
        t, p, o = row
        assert TIME_RE.match(t), (i, t)
        assert INT_RE.match(p) and INT_RE.match(o), (i, row)
        tv = float(t)
        if prev is None:
            assert tv == 0.0
        else:
            assert tv >= prev, (i, prev, tv)
        prev = tv
        assert int(p) > 0 and int(o) > 0


@pytest.mark.parametrize("name", FILES)
def test_matches_readme_figures(name):
    table = _readme_table()
    assert name in table, "README.md summary table has no row for %s" % name
    fig = table[name]
    _, rows = _load(name)
    prompts = [int(r[1]) for r in rows]
    outputs = [int(r[2]) for r in rows]
    times = [float(r[0]) for r in rows]

    assert len(rows) == int(fig["rows"])
    assert sum(prompts) == int(fig["prompt_sum"])
    assert sum(outputs) == int(fig["output_sum"])
    assert round(sum(prompts) / len(prompts), 4) == pytest.approx(
        float(fig["prompt_mean"]), abs=1e-9
    )
    assert round(sum(outputs) / len(outputs), 4) == pytest.approx(
        float(fig["output_mean"]), abs=1e-9
    )
    assert times[-1] == pytest.approx(float(fig["span_s"]), abs=5e-7)

    gaps = [b - a for a, b in zip(times, times[1:])]
    rate = (len(rows) - 1) / (times[-1] - times[0])
    assert round(rate, 4) == pytest.approx(float(fig["rate_req_per_s"]), abs=1e-9)
    mean_gap = sum(gaps) / len(gaps)
    std_gap = math.sqrt(sum((g - mean_gap) ** 2 for g in gaps) / len(gaps))
    assert round(std_gap / mean_gap, 4) == pytest.approx(
        float(fig["interarrival_cv"]), abs=1e-9
    )


@pytest.mark.parametrize("name", FILES)
def test_sha256_matches_readme(name):
    expected = _readme_sha256()
    assert name in expected, "README.md lists no SHA-256 for %s" % name
    digest = hashlib.sha256((TRACES_DIR / name).read_bytes()).hexdigest()
    assert digest == expected[name]
