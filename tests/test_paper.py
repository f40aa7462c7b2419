"""The shipped paper scenario set (scenarios/paper/) says what the paper says."""

from pathlib import Path

import pytest

from llmsim import analyze, load_scenario, simulate

PAPER = Path(__file__).parents[1] / "scenarios" / "paper"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_headline_work_conserving_keep_up_others_do_not(seed):
    sc = load_scenario(PAPER / "headline.toml")
    from dataclasses import replace
    sc = replace(sc, seed=seed)
    want = {"fastertransformer": "unstable", "vllm": "unstable", "orca": "stable", "sarathi": "stable"}
    for s, v in want.items():
        assert simulate(sc.with_scheduler(s)).verdict.verdict == v, s


def test_staircase_critical_rate_16_71():
    sc = load_scenario(PAPER / "staircase_0.9.toml")
    t = analyze(sc)
    assert t.engines[0].t_b_seconds == pytest.approx(0.15316, rel=1e-12)
    assert t.capacity_rps == pytest.approx(16.714, abs=1e-3)
    assert t.load == pytest.approx(0.9, rel=1e-3)
    assert analyze(load_scenario(PAPER / "staircase_1.1.toml")).load == pytest.approx(1.1, rel=1e-3)


@pytest.mark.slow
def test_staircase_either_side():
    for name, want in (("staircase_0.9", "stable"), ("staircase_1.1", "unstable")):
        sc = load_scenario(PAPER / f"{name}.toml")
        for s in ("orca", "sarathi"):
            assert simulate(sc.with_scheduler(s)).verdict.verdict == want, (name, s)


@pytest.mark.slow
def test_kmax_composition_decides():
    """Same token load 0.9, same k: sarathi keeps up, orca does not."""
    sc = load_scenario(PAPER / "kmax_composition.toml")
    assert analyze(sc).load == pytest.approx(0.9, rel=1e-3)
    assert simulate(sc.with_scheduler("sarathi")).verdict.verdict == "stable"
    r = simulate(sc.with_scheduler("orca"))
    assert r.verdict.verdict == "unstable"
    assert analyze(sc.with_scheduler("orca")).capacity_rps < 30 < analyze(sc).capacity_rps
