"""Tests for llmsim.presets: arithmetic by hand, table shapes, and the documented fits."""

import dataclasses
import math

import numpy as np
import pytest

from llmsim.presets import (
    HARDWARE_PRESETS,
    WORKLOAD_PRESETS,
    batch_time_seconds,
    fitted_stats,
    hardware_preset,
    sample_lengths,
    validate_batch_time,
    validate_length_dist,
    workload_preset,
)

# The TOML-form keys, written out here rather than imported, so the test pins the spec.
BATCH_TIME_KEYS = {
    "constant": {"model", "seconds"},
    "staircase": {"model", "c_seconds", "a_seconds", "b0"},
    "piecewise": {"model", "c_seconds", "a_seconds", "b0"},
    "affine": {"model", "c0_seconds", "prefill_seconds_per_token",
               "decode_seconds_per_token", "context_seconds_per_token"},
}


# --- KV-cache arithmetic, by hand -------------------------------------------------------

def test_kv_arithmetic_llama2_7b_a100_by_hand():
    p = HARDWARE_PRESETS["llama2-7b/a100-80gb"]
    # 2 (K and V) * 32 layers * 32 kv heads * 128 head_dim * 2 bytes (fp16)
    assert p.kv_bytes_per_token == 2 * 32 * 32 * 128 * 2 == 524_288
    # 6,738,415,616 parameters * 2 bytes
    assert p.weight_bytes == 13_476_831_232
    # 80 GiB = 85,899,345,920 B; * 1 GPU * 0.9 = 77,309,411,328 B
    # minus weights = 63,832,580,096 B; / 524,288 = 121,750.98 -> 121,750 tokens
    assert p.gpu_memory_bytes == 85_899_345_920
    assert p.kv_cache_tokens == 121_750


def test_kv_arithmetic_llama3_70b_h100_tp4_by_hand():
    p = HARDWARE_PRESETS["llama3-70b/h100-80gb-tp4"]
    # GQA: 2 * 80 layers * 8 kv heads * 128 * 2 bytes
    assert p.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 327_680
    # 70,553,706,496 parameters * 2 bytes
    assert p.weight_bytes == 141_107_412_992
    # 4 GPUs * 85,899,345,920 B * 0.9 = 309,237,645,312 B; minus weights = 168,130,232,320 B;
    # / 327,680 = 513,092.75 -> 513,092 tokens
    assert p.kv_cache_tokens == 513_092


@pytest.mark.parametrize("name, params", [
    ("llama2-7b/a100-80gb", 6_738_415_616),
    ("llama3-8b/h100-80gb", 8_030_261_248),
    ("llama3-70b/a100-80gb-tp8", 70_553_706_496),
    ("codellama-34b/a100-80gb", 33_743_970_304),
    ("yi-34b/a100-80gb-tp2", 34_388_917_248),
])
def test_weight_bytes_are_fp16_published_parameter_counts(name, params):
    assert HARDWARE_PRESETS[name].weight_bytes == 2 * params


@pytest.mark.parametrize("name, blis_total_kv_blocks", [
    ("llama3-8b/a100-80gb", 29_205),
    ("llama3-8b/h100-80gb", 29_205),
    ("llama3-70b/h100-80gb-tp4", 128_273),
    ("llama3-70b/h100-80gb-tp8", 728_405),
])
def test_kv_cache_tokens_reproduce_blis_block_counts(name, blis_total_kv_blocks):
    # BLIS's defaults.yaml total_kv_blocks counts 16-token blocks summed over the TP GPUs
    # (each GPU holds 1/TP of every token's KV); 80 GiB at 0.9 reproduces it exactly.
    p = HARDWARE_PRESETS[name]
    assert p.kv_cache_tokens * p.tensor_parallel // 16 == blis_total_kv_blocks


def test_kv_cache_tokens_floor_and_nonnegative():
    p = dataclasses.replace(HARDWARE_PRESETS["codellama-34b/a100-80gb"], tensor_parallel=1,
                            weight_bytes=10**12)
    assert p.kv_cache_tokens == 0


# --- Every preset has the right shape -----------------------------------------------------

def test_required_hardware_presets_exist():
    names = set(HARDWARE_PRESETS)
    for required in ["llama2-7b/a100-80gb", "llama2-7b/h100-80gb", "llama3-8b/a100-80gb",
                     "llama3-8b/h100-80gb", "llama3-70b/a100-80gb-tp4", "llama3-70b/a100-80gb-tp8",
                     "llama3-70b/h100-80gb-tp4", "llama3-70b/h100-80gb-tp8",
                     "codellama-34b/a100-80gb", "yi-34b/a100-80gb-tp2"]:
        assert required in names
    assert set(WORKLOAD_PRESETS) == {"azure-conv-2023", "azure-code-2023", "sharegpt-sarathi",
                                     "arxiv-summarization"}


@pytest.mark.parametrize("preset", list(HARDWARE_PRESETS.values()) + list(WORKLOAD_PRESETS.values()),
                         ids=lambda p: p.name)
def test_every_preset_has_a_source_with_a_url(preset):
    assert preset.source.strip()
    assert "https://" in preset.source


@pytest.mark.parametrize("name", list(HARDWARE_PRESETS))
def test_hardware_preset_fields(name):
    p = HARDWARE_PRESETS[name]
    assert p.name == name
    gpu_part = name.split("/")[1].removesuffix("-attn")
    assert gpu_part.endswith("" if p.tensor_parallel == 1 else f"-tp{p.tensor_parallel}")
    assert p.dtype_bytes == 2 and p.head_dim == 128 and p.memory_utilization == 0.9
    assert p.kv_cache_tokens > 10_000


@pytest.mark.parametrize("name", list(HARDWARE_PRESETS))
def test_batch_time_table_has_exact_keys_and_positive_values(name):
    table = HARDWARE_PRESETS[name].batch_time
    model = table["model"]
    if name.endswith("-attn"):  # linear layers + attention (issue 10)
        assert model == "piecewise" and set(table) == BATCH_TIME_KEYS[model] | {
            "prefill_seconds_per_token", "decode_seconds_per_token", "context_seconds_per_token",
            "prefill_attention_seconds_per_pair"}
    else:
        assert set(table) == BATCH_TIME_KEYS[model]
    for key, value in table.items():
        if key == "model":
            continue
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
        assert math.isfinite(value)
        if key == "context_seconds_per_token":
            assert value >= 0   # 0 where the source has no context term (documented)
        else:
            assert value > 0, key
    if model in ("staircase", "piecewise"):
        assert isinstance(table["b0"], int)
    assert validate_batch_time(table) is table
    # seconds, not milliseconds: every preset's one-token iteration is 1 ms .. 100 ms
    assert 1e-3 < batch_time_seconds(table, 1, 0) < 0.1


@pytest.mark.parametrize("name", list(WORKLOAD_PRESETS))
def test_workload_tables_are_valid(name):
    w = WORKLOAD_PRESETS[name]
    assert w.name == name and w.description
    assert set(w.prompt_tokens) == {"dist", "mean", "cv", "max"}
    assert set(w.output_tokens) == {"dist", "mean", "cv", "max"}
    assert w.arrival["process"] in ("poisson", "gamma")
    assert set(w.arrival) == ({"process", "rate"} if w.arrival["process"] == "poisson"
                              else {"process", "rate", "cv"})
    assert set(w.targets) == {"prompt", "output"}
    for part in ("prompt", "output"):
        assert set(w.targets[part]) == {"mean", "p50", "p90"}


def test_azure_arrivals():
    conv, code = WORKLOAD_PRESETS["azure-conv-2023"], WORKLOAD_PRESETS["azure-code-2023"]
    assert conv.arrival == {"process": "gamma", "rate": 5.53, "cv": 1.09}
    assert code.arrival == {"process": "gamma", "rate": 2.57, "cv": 13.2}
    # rates from the trace notebook: (requests - 1) / (last - first timestamp)
    assert conv.arrival["rate"] == pytest.approx(19_365 / 3501.722, abs=0.005)
    assert code.arrival["rate"] == pytest.approx(8_818 / 3435.948, abs=0.005)


# --- Batch-time semantics ---------------------------------------------------------------

def test_staircase_paper_fit():
    table = HARDWARE_PRESETS["codellama-34b/a100-80gb"].batch_time
    # 11.28 ms + 35.47 ms * ceil(512/128) = 11.28 + 4 * 35.47 = 153.16 ms
    t512 = batch_time_seconds(table, 512, 0)
    assert t512 == pytest.approx(0.15316, rel=1e-12)
    assert 512 / (t512 * 1e3) == pytest.approx(3.343, abs=5e-4)
    # the step: 128 tokens cost the same as 1, 129 one more stair
    assert batch_time_seconds(table, 1, 0) == batch_time_seconds(table, 0, 128)
    assert batch_time_seconds(table, 129, 0) == pytest.approx(0.01128 + 2 * 0.03547)


def test_piecewise_vidur_floor_and_slope():
    table = HARDWARE_PRESETS["llama2-7b/a100-80gb"].batch_time
    assert batch_time_seconds(table, 1, 0) == pytest.approx(9.3e-3)
    assert batch_time_seconds(table, 109, 0) == pytest.approx(9.3e-3)
    # 9.3 ms + 64 us * (4096 - 109) = 264.468 ms  (= 2.3 ms + 64 us * 4096, to 0.1 ms)
    assert batch_time_seconds(table, 2048, 2048) == pytest.approx(0.264468)


def test_affine_uses_each_term():
    table = {"model": "affine", "c0_seconds": 0.01, "prefill_seconds_per_token": 1e-4,
             "decode_seconds_per_token": 2e-4, "context_seconds_per_token": 1e-7}
    # 10 ms + 100 * 0.1 ms + 10 * 0.2 ms + 5000 * 0.0001 ms = 22.5 ms
    assert batch_time_seconds(table, 100, 10, 5000) == pytest.approx(0.0225)
    blis = HARDWARE_PRESETS["llama3-8b/h100-80gb"].batch_time
    # BLIS H100 TP1: 5752.705 us + 17.2509 us * 256 + 5.9991 us * 256
    assert batch_time_seconds(blis, 256, 256) == pytest.approx(
        (5752.705191348184 + 256 * 17.25086436834028 + 256 * 5.999143920128404) * 1e-6)


def test_derived_a100_70b_uses_datasheet_ratios():
    a100 = HARDWARE_PRESETS["llama3-70b/a100-80gb-tp4"].batch_time
    h100 = HARDWARE_PRESETS["llama3-70b/h100-80gb-tp4"].batch_time
    assert a100["c0_seconds"] / h100["c0_seconds"] == pytest.approx(3350 / 2039)
    assert a100["decode_seconds_per_token"] / h100["decode_seconds_per_token"] == pytest.approx(3350 / 2039)
    assert a100["prefill_seconds_per_token"] / h100["prefill_seconds_per_token"] == pytest.approx(989.4 / 312)
    assert "DERIVED" in HARDWARE_PRESETS["llama3-70b/a100-80gb-tp4"].notes


# --- Length distributions -----------------------------------------------------------------

def test_fitted_stats_simple_distributions():
    assert fitted_stats({"dist": "constant", "value": 7}, n=1000) == {"mean": 7.0, "p50": 7.0, "p90": 7.0}
    u = fitted_stats({"dist": "uniform", "low": 1, "high": 9})
    assert u["mean"] == pytest.approx(5.0, abs=0.02) and u["p50"] == 5.0 and u["p90"] == 9.0
    g = fitted_stats({"dist": "geometric", "mean": 4})
    # support 1, 2, ...: P(X <= k) = 1 - 0.75^k -> median 3, p90 = 9 (0.75^8 = 0.100 > 0.1)
    assert g["mean"] == pytest.approx(4.0, rel=0.01) and g["p50"] == 3.0 and g["p90"] == 9.0


def test_lognormal_parameters_are_of_the_continuous_distribution():
    # sigma2 = ln(1 + 0.25), mu = ln(1000) - sigma2/2 -> median exp(mu) = 894.4, mean 1000
    st = fitted_stats({"dist": "lognormal", "mean": 1000, "cv": 0.5, "max": 10**9})
    assert st["mean"] == pytest.approx(1000, rel=0.005)
    assert st["p50"] == pytest.approx(1000 / math.sqrt(1.25), abs=2)
    assert st["p90"] == pytest.approx(math.exp(math.log(1000 / math.sqrt(1.25))
                                               + 1.2815516 * math.sqrt(math.log(1.25))), rel=0.005)


def test_lognormal_rounds_and_clips():
    x = sample_lengths({"dist": "lognormal", "mean": 3, "cv": 3.0, "max": 20}, 100_000,
                       np.random.default_rng(1))
    assert x.dtype == np.int64 and x.min() == 1 and x.max() == 20
    x2 = sample_lengths({"dist": "lognormal", "mean": 3, "cv": 3.0, "max": 20}, 100_000,
                        np.random.default_rng(1))
    assert np.array_equal(x, x2)   # same seed, same draws


def test_validation_messages_say_what_is_allowed():
    with pytest.raises(ValueError, match="exactly the keys"):
        validate_batch_time({"model": "staircase", "c_seconds": 0.01, "a_seconds": 0.03})
    with pytest.raises(ValueError, match="not one of"):
        validate_batch_time({"model": "quadratic"})
    with pytest.raises(ValueError, match="> 0"):
        validate_batch_time({"model": "constant", "seconds": 0.0})
    with pytest.raises(ValueError, match="exactly the keys"):
        validate_length_dist({"dist": "lognormal", "mean": 100, "cv": 1.0})
    with pytest.raises(ValueError, match="low <= high"):
        validate_length_dist({"dist": "uniform", "low": 5, "high": 2})
    with pytest.raises(KeyError, match="known: .*codellama-34b/a100-80gb"):
        hardware_preset("gpt-5/tpu")
    with pytest.raises(KeyError, match="azure-conv-2023"):
        workload_preset("nope")


def test_presets_are_frozen_and_hashable():
    p = HARDWARE_PRESETS["llama2-7b/h100-80gb"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.tensor_parallel = 2
    assert len({p, HARDWARE_PRESETS["llama2-7b/h100-80gb"], WORKLOAD_PRESETS["azure-conv-2023"]}) == 2


# --- The workload fits, as documented in docs/presets.md ----------------------------------

# (preset, lengths) -> documented relative error of (mean, p50, p90), in per cent, of
# fitted_stats() (n = 400,000, seed 0) against the published target.  Tolerance: the
# recomputed error must lie within 1 percentage point of the documented one.
DOCUMENTED_ERRORS_PCT = {
    ("azure-conv-2023", "prompt"): (+10.6, -5.7, -7.0),
    ("azure-conv-2023", "output"): (-3.7, +1.6, +2.8),
    ("azure-code-2023", "prompt"): (+4.7, -2.2, -2.1),
    ("azure-code-2023", "output"): (-7.1, +7.7, +7.3),
    ("sharegpt-sarathi", "prompt"): (+3.2, -1.7, -1.0),
    ("sharegpt-sarathi", "output"): (+6.0, -3.9, -2.6),
    ("arxiv-summarization", "prompt"): (+4.3, -3.7, -0.2),
    ("arxiv-summarization", "output"): (-24.4, +8.4, +8.3),
}
TOLERANCE_PP = 1.0


@pytest.mark.parametrize("key", list(DOCUMENTED_ERRORS_PCT), ids=lambda k: f"{k[0]}-{k[1]}")
def test_workload_fit_matches_documented_errors(key):
    name, part = key
    w = WORKLOAD_PRESETS[name]
    dist = w.prompt_tokens if part == "prompt" else w.output_tokens
    stats = fitted_stats(dist)
    target = w.targets[part]
    for stat, documented in zip(("mean", "p50", "p90"), DOCUMENTED_ERRORS_PCT[key]):
        err = (stats[stat] - target[stat]) / target[stat] * 100
        assert abs(err - documented) <= TOLERANCE_PP, (name, part, stat, err, documented)


def test_documented_errors_cover_every_workload():
    assert {k[0] for k in DOCUMENTED_ERRORS_PCT} == set(WORKLOAD_PRESETS)


def test_targets_are_the_published_figures():
    t = {n: w.targets for n, w in WORKLOAD_PRESETS.items()}
    assert t["azure-conv-2023"] == {"prompt": {"mean": 1155, "p50": 1020, "p90": 2734},
                                    "output": {"mean": 211, "p50": 129, "p90": 424}}
    assert t["azure-code-2023"] == {"prompt": {"mean": 2048, "p50": 1469, "p90": 5188},
                                    "output": {"mean": 28, "p50": 13, "p90": 55}}
    assert t["sharegpt-sarathi"] == {"prompt": {"mean": 2340, "p50": 1730, "p90": 5696},
                                     "output": {"mean": 439, "p50": 415, "p90": 834}}
    assert t["arxiv-summarization"] == {"prompt": {"mean": 2588, "p50": 2730, "p90": 3702},
                                        "output": {"mean": 291, "p50": 167, "p90": 372}}


# ------------------------------------------ context-aware presets fitted to Vidur (issue 10)

def _preset_fit():
    import sys
    from pathlib import Path
    bench = str(Path(__file__).resolve().parent.parent / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import preset_fit
    return preset_fit


# preset -> (decode median, decode worst, prefill median, prefill worst): docs/preset-fit.md
_ATTN_TOLERANCE = {
    "codellama-34b/a100-80gb-tp2-attn": (0.15, 0.35, 0.15, 0.35),
    "llama2-70b/a100-80gb-tp2-attn": (0.15, 0.35, 0.15, 0.35),
}


@pytest.mark.parametrize("name", list(_ATTN_TOLERANCE))
def test_tp2_attention_preset_reproduces_its_source_points(name):
    """Every point of Vidur's A100 attention profile (n_embd 8192, 64 q / 8 kv heads, TP2)
    read into bench/data/, per-layer median x layers, against the preset's attention part:
    the tolerance stated in docs/preset-fit.md."""
    rows = _preset_fit().rows(name)
    dmed, dworst, pmed, pworst = _ATTN_TOLERANCE[name]
    for kind, med, worst in (("decode", dmed, dworst), ("prefill", pmed, pworst)):
        errs = sorted(abs(r[5]) for r in rows if r[0] == kind)
        assert len(errs) >= 20, kind
        assert errs[len(errs) // 2] <= med and errs[-1] <= worst, (kind, errs[len(errs) // 2], errs[-1])


@pytest.mark.parametrize("name, data, layers, floor_ms, worst", [
    ("codellama-34b/a100-80gb-tp2-attn", "vidur_mlp_codellama34b_tp2_a100.csv", 48, 0.465, 0.12),
    ("llama2-70b/a100-80gb-tp2-attn", "vidur_mlp_llama2_70b_tp2_a100.csv", 80, 0.563, 0.22),
])
def test_tp2_linear_part_reproduces_vidur_mlp_points(name, data, layers, floor_ms, worst):
    """The linear layers of the TP2 -attn presets (c, a, b0 with no attention load) against
    the per-layer sums of Vidur's MLP profile at TP2 x layers: median within 5%, every
    point within `worst` (docs/presets.md: CodeLlama-34B -5..+11%, worst just above the knee;
    Llama-2-70B within 11% except the kernel step at 72 tokens, -22%)."""
    import csv
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "bench" / "data" / data
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    t = HARDWARE_PRESETS[name].batch_time
    errs = []
    for r in csv.DictReader(lines):
        n, measured = int(r["tokens"]), float(r["median_ms"]) * 1e-3 * layers
        # c_seconds minus the intercept of decode attention = the linear floor
        linear = layers * floor_ms * 1e-3 + t["a_seconds"] * max(0, n - t["b0"])
        errs.append(abs(linear / measured - 1))
    errs.sort()
    assert len(errs) > 5 and errs[len(errs) // 2] <= 0.05 and errs[-1] <= worst, errs


def test_llama3_8b_has_no_attn_preset_its_head_configuration_is_not_in_the_source():
    # Vidur's a100/attention.csv holds only n_embd 8192 / 64 q / 8 kv heads at TP2
    assert not [n for n in HARDWARE_PRESETS if n.startswith("llama3-8b/") and n.endswith("-attn")]


@pytest.mark.parametrize("name", list(_ATTN_TOLERANCE))
def test_tp2_attention_preset_loads_and_runs_in_a_scenario(name):
    from llmsim import loads_scenario, simulate
    sc = loads_scenario(f"""
seed = 3
[workload]
num_requests = 200
drain = true
arrival = {{ process = "poisson", rate = 2.0 }}
prompt_tokens = {{ dist = "constant", value = 512 }}
output_tokens = {{ dist = "constant", value = 64 }}
[engine]
scheduler = "sarathi"
token_budget = 512
preset = "{name}"
""")
    p = HARDWARE_PRESETS[name]
    assert sc.engine.kv_cache_tokens == p.kv_cache_tokens
    res = simulate(sc)
    assert res.summary["completed"] == 200
