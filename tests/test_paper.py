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


def _headline_vllm(kv: int, n: int, rate: float = 15.5):
    from dataclasses import replace
    sc = load_scenario(PAPER / "headline.toml").with_scheduler("vllm")
    eng = replace(sc.engines[0], kv_cache_tokens=kv)
    wf = replace(sc.workflows[0], arrival=replace(sc.workflows[0].arrival, rate=rate))
    return replace(sc, engines=(eng,), workflows=(wf,), num_requests=n)


def test_vllm_kv_fill_time_is_the_backlog_drift_filling_the_cache():
    """Above vllm's chain capacity the running requests pile up at the chain's drift until
    they fill the KV cache: theory gives that time; below capacity and for other schedulers
    there is none."""
    e = analyze(_headline_vllm(1_000_000, 20_000)).engines[0]
    assert e.capacity_rps == pytest.approx(14.26, abs=0.01)
    assert e.kv_fill_seconds == pytest.approx(1_000_000 / ((15.5 - e.capacity_rps) * 200), rel=1e-12)
    assert 3_900 < e.kv_fill_seconds < 4_100  # measured: 97% full at 3,400 s (docs/model.md)
    assert analyze(_headline_vllm(1_000_000, 20_000, rate=14.0)).engines[0].kv_fill_seconds is None
    assert analyze(load_scenario(PAPER / "headline.toml")).engines[0].kv_fill_seconds is None  # sarathi


def test_headline_keeps_memory_out_of_every_run_the_dashboard_makes():
    """The paper leaves memory out: the headline's KV cache must not fill within the page's
    longest run (200,000 requests), or a long run would show vllm levelling off."""
    from llmsim_ui.limits import MAX_REQUESTS
    sc = load_scenario(PAPER / "headline.toml").with_scheduler("vllm")
    horizon = MAX_REQUESTS / sc.total_rate
    assert analyze(sc).engines[0].kv_fill_seconds > 5 * horizon


@pytest.mark.parametrize("kv, n, want, words", [
    # the cache would fill long after this run: growth, with the time it lasts
    (1_000_000, 20_000, "unstable", "it keeps growing while vllm's running requests have room in the KV cache: "
                                    "about 4,"),
    # it filled in the first half: memory gated the prefills and the backlog levelled off
    (1_000_000, 150_000, "stable", "the assumption that broke: KV cache not binding"),
    # it filled in the first half and vllm still falls behind (preemptions)
    (100_000, 40_000, "unstable", "even with memory gating the prefills vllm did not keep up"),
])
def test_vllm_verdict_says_where_the_kv_cache_fills(kv, n, want, words):
    v = simulate(_headline_vllm(kv, n)).verdict
    assert v.verdict == want
    assert words in v.explanation
    if want == "stable":
        assert v.assumption_broken.startswith("KV cache not binding")
    # only a run whose measured window is past the fill time backs "without bound"
    assert ("would grow without bound" in v.explanation) == (kv == 100_000)
