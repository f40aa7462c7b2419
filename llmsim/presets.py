"""Published hardware and workload presets, each with its source.

Pure Python + NumPy: no Streamlit, no Numba, no imports from other ``llmsim`` modules,
so the presets can be read (and tested) without the simulator.

Two kinds of preset:

* :class:`HardwarePreset` -- a model on a GPU configuration: its KV-cache geometry
  (``kv_bytes_per_token``, ``kv_cache_tokens``, SPEC.md section 3) and its iteration
  batch-time table (SPEC.md section 1).
* :class:`WorkloadPreset` -- an arrival process and prompt/output length distributions
  fitted to a published trace's mean, p50 and p90.

All tables are in "TOML form": plain dicts with the exact keys listed in
:data:`BATCH_TIME_KEYS`, :data:`LENGTH_DIST_KEYS` and :data:`ARRIVAL_KEYS`, times in
**seconds**, lengths in **tokens**, rates in **requests per second**.  Treat the dicts of
a preset as read-only (``copy.deepcopy`` one before editing it).

Where a figure was derived rather than read from a source (e.g. A100 from an H100 fit),
the preset's ``notes`` say how; ``docs/presets.md`` tabulates everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ARRIVAL_KEYS",
    "BATCH_TIME_KEYS",
    "HARDWARE_PRESETS",
    "LENGTH_DIST_KEYS",
    "WORKLOAD_PRESETS",
    "HardwarePreset",
    "WorkloadPreset",
    "batch_time_seconds",
    "fitted_stats",
    "hardware_preset",
    "sample_lengths",
    "validate_arrival",
    "validate_batch_time",
    "validate_length_dist",
    "workload_preset",
]

# ---------------------------------------------------------------------------
# TOML-form tables: the exact keys each kind of table has
# ---------------------------------------------------------------------------

#: Batch-time models -> the exact set of keys of their table (times in seconds).
BATCH_TIME_KEYS: dict[str, frozenset[str]] = {
    "constant": frozenset({"model", "seconds"}),
    "staircase": frozenset({"model", "c_seconds", "a_seconds", "b0"}),
    "piecewise": frozenset({"model", "c_seconds", "a_seconds", "b0"}),
    "affine": frozenset({"model", "c0_seconds", "prefill_seconds_per_token",
                         "decode_seconds_per_token", "context_seconds_per_token"}),
}

#: A piecewise table may instead carry attention terms on top of its linear layers
#: (issue 10): exactly these keys (see :func:`batch_time_seconds`).
PIECEWISE_ATTENTION_KEYS: frozenset[str] = BATCH_TIME_KEYS["piecewise"] | frozenset({
    "prefill_seconds_per_token", "decode_seconds_per_token", "context_seconds_per_token",
    "prefill_attention_seconds_per_pair"})

#: Length distributions (integer tokens >= 1) -> the exact set of keys of their table.
LENGTH_DIST_KEYS: dict[str, frozenset[str]] = {
    "constant": frozenset({"dist", "value"}),
    "uniform": frozenset({"dist", "low", "high"}),
    "geometric": frozenset({"dist", "mean"}),
    "lognormal": frozenset({"dist", "mean", "cv", "max"}),
}

#: Arrival processes -> the exact set of keys of their table (rate in requests/second).
ARRIVAL_KEYS: dict[str, frozenset[str]] = {
    "poisson": frozenset({"process", "rate"}),
    "gamma": frozenset({"process", "rate", "cv"}),
}


def _check_keys(table: dict, kind_key: str, spec: dict[str, frozenset[str]], what: str) -> str:
    if not isinstance(table, dict):
        raise ValueError(f"{what} must be a table (dict), got {type(table).__name__}")
    kind = table.get(kind_key)
    if kind not in spec:
        raise ValueError(f"{what}: {kind_key} = {kind!r} is not one of {sorted(spec)}")
    keys = set(table)
    if keys != spec[kind]:
        missing = sorted(spec[kind] - keys)
        extra = sorted(keys - spec[kind])
        raise ValueError(f"{what} ({kind_key} = {kind!r}) must have exactly the keys "
                         f"{sorted(spec[kind])}; missing {missing}, unexpected {extra}")
    return kind


def _positive(table: dict, key: str, what: str, allow_zero: bool = False) -> None:
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what}: {key} must be a finite number, got {v!r}")
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{what}: {key} must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")


def _int_at_least(table: dict, key: str, lo: int, what: str) -> None:
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{what}: {key} must be an integer >= {lo}, got {v!r}")


def validate_batch_time(table: dict) -> dict:
    """Check a batch-time table; return it unchanged or raise ``ValueError`` saying why.

    Every time value must be finite and > 0, except the affine per-token coefficients,
    which may be 0 (a source that has no such term) but not all three at once; ``b0`` is
    an integer number of tokens >= 1.
    """
    what = "batch_time"
    if isinstance(table, dict) and table.get("model") == "piecewise" and set(table) == PIECEWISE_ATTENTION_KEYS:
        for k in ("c_seconds", "a_seconds"):
            _positive(table, k, what)
        _int_at_least(table, "b0", 1, what)
        for k in PIECEWISE_ATTENTION_KEYS - BATCH_TIME_KEYS["piecewise"]:
            _positive(table, k, what, allow_zero=True)
        return table
    model = _check_keys(table, "model", BATCH_TIME_KEYS, what)
    if model == "constant":
        _positive(table, "seconds", what)
    elif model in ("staircase", "piecewise"):
        _positive(table, "c_seconds", what)
        _positive(table, "a_seconds", what)
        _int_at_least(table, "b0", 1, what)
    else:
        _positive(table, "c0_seconds", what)
        per_token = ("prefill_seconds_per_token", "decode_seconds_per_token",
                     "context_seconds_per_token")
        for k in per_token:
            _positive(table, k, what, allow_zero=True)
        if not (table["prefill_seconds_per_token"] > 0 and table["decode_seconds_per_token"] > 0):
            raise ValueError(f"{what}: affine prefill and decode seconds per token must be > 0")
    return table


def validate_length_dist(dist: dict) -> dict:
    """Check a length-distribution table; return it unchanged or raise ``ValueError``."""
    what = "length distribution"
    kind = _check_keys(dist, "dist", LENGTH_DIST_KEYS, what)
    if kind == "constant":
        _int_at_least(dist, "value", 1, what)
    elif kind == "uniform":
        _int_at_least(dist, "low", 1, what)
        _int_at_least(dist, "high", 1, what)
        if dist["high"] < dist["low"]:
            raise ValueError(f"{what}: uniform needs low <= high, got {dist['low']} > {dist['high']}")
    elif kind == "geometric":
        _positive(dist, "mean", what)
        if dist["mean"] < 1:
            raise ValueError(f"{what}: geometric mean must be >= 1 (support 1, 2, ...), "
                             f"got {dist['mean']}")
    else:
        _positive(dist, "mean", what)
        _positive(dist, "cv", what)
        _int_at_least(dist, "max", 1, what)
    return dist


def validate_arrival(arrival: dict) -> dict:
    """Check an arrival-process table; return it unchanged or raise ``ValueError``."""
    what = "arrival"
    kind = _check_keys(arrival, "process", ARRIVAL_KEYS, what)
    _positive(arrival, "rate", what)
    if kind == "gamma":
        _positive(arrival, "cv", what)
    return arrival


# ---------------------------------------------------------------------------
# Reference semantics of the tables (the simulator core has its own compiled copy)
# ---------------------------------------------------------------------------

def batch_time_seconds(table: dict, prefill_tokens: int, decode_tokens: int,
                       decode_context_tokens: int = 0, prefill_pairs: int = 0) -> float:
    """Duration in seconds of one iteration with this token load.

    ``decode_context_tokens`` is the sum, over the decoding requests in the batch, of
    their context lengths (tokens already in their KV cache); only ``affine`` uses it.
    The other models depend on the total load ``n = prefill_tokens + decode_tokens``:
    ``constant`` t, ``staircase`` c + a*ceil(n/b0), ``piecewise`` c + a*max(0, n - b0).
    A piecewise table with attention terms (:data:`PIECEWISE_ATTENTION_KEYS`) adds
    prefill_seconds_per_token * prefill + decode_seconds_per_token * decode +
    context_seconds_per_token * decode context + prefill_attention_seconds_per_pair *
    ``prefill_pairs`` (a prefill chunk of k tokens after d prefilled ones has k*d + k(k+1)/2).
    """
    model = validate_batch_time(table)["model"]
    n = prefill_tokens + decode_tokens
    if model == "constant":
        return float(table["seconds"])
    if model == "staircase":
        return table["c_seconds"] + table["a_seconds"] * math.ceil(n / table["b0"])
    if model == "piecewise":
        t = table["c_seconds"] + table["a_seconds"] * max(0, n - table["b0"])
        if "context_seconds_per_token" in table:
            t += (table["prefill_seconds_per_token"] * prefill_tokens
                  + table["decode_seconds_per_token"] * decode_tokens
                  + table["context_seconds_per_token"] * decode_context_tokens
                  + table["prefill_attention_seconds_per_pair"] * prefill_pairs)
        return t
    return (table["c0_seconds"] + table["prefill_seconds_per_token"] * prefill_tokens
            + table.get("prefill_attention_seconds_per_pair", 0.0) * prefill_pairs
            + table["decode_seconds_per_token"] * decode_tokens
            + table["context_seconds_per_token"] * decode_context_tokens)


def sample_lengths(dist: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``size`` integer lengths (int64, all >= 1) from a length-distribution table.

    This is the reference definition of each distribution:

    * ``constant``: always ``value``;
    * ``uniform``: integers ``low..high`` inclusive, equally likely;
    * ``geometric``: support 1, 2, ... with success probability ``p = 1/mean``;
    * ``lognormal``: ``sigma2 = ln(1 + cv^2)``, ``mu = ln(mean) - sigma2/2``,
      ``x = clip(rint(rng.lognormal(mu, sqrt(sigma2))), 1, max)`` -- ``mean`` and ``cv``
      are those of the continuous lognormal before rounding and clipping.
    """
    kind = validate_length_dist(dist)["dist"]
    if kind == "constant":
        return np.full(size, int(dist["value"]), dtype=np.int64)
    if kind == "uniform":
        return rng.integers(dist["low"], dist["high"], size=size, endpoint=True, dtype=np.int64)
    if kind == "geometric":
        return rng.geometric(1.0 / dist["mean"], size=size).astype(np.int64)
    sigma2 = math.log1p(dist["cv"] ** 2)
    mu = math.log(dist["mean"]) - sigma2 / 2.0
    x = rng.lognormal(mu, math.sqrt(sigma2), size=size)
    return np.clip(np.rint(x), 1, dist["max"]).astype(np.int64)


def fitted_stats(dist: dict, n: int = 400_000, seed: int = 0) -> dict:
    """Mean, p50 and p90 of a length distribution, estimated from ``n`` draws.

    Draws come from :func:`sample_lengths` with ``np.random.default_rng(seed)``;
    percentiles are ``np.percentile`` (linear interpolation) of the integer draws.
    Returns ``{"mean": float, "p50": float, "p90": float}``.
    """
    x = sample_lengths(dist, n, np.random.default_rng(seed))
    p50, p90 = np.percentile(x, [50, 90])
    return {"mean": float(x.mean()), "p50": float(p50), "p90": float(p90)}


# ---------------------------------------------------------------------------
# Hardware presets
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class HardwarePreset:
    """A model served on one GPU configuration.

    ``gpu_memory_bytes`` is per GPU; ``weight_bytes`` is the whole model (all GPUs
    together); ``memory_utilization`` is the fraction of GPU memory the engine may use
    (vLLM's ``gpu_memory_utilization``, default 0.9).  ``batch_time`` is a TOML-form
    table (:data:`BATCH_TIME_KEYS`), times in seconds.
    """

    name: str
    model: str
    gpu: str
    tensor_parallel: int
    gpu_memory_bytes: int
    memory_utilization: float
    weight_bytes: int
    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int
    batch_time: dict
    source: str
    notes: str = ""

    # Hash by name: the dict field would make the generated hash fail, and two presets
    # that compare equal necessarily share a name.
    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token occupies, summed over layers (and GPUs): K and V."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def kv_cache_tokens(self) -> int:
        """Tokens of KV cache that fit: (memory * TP * utilization - weights) / bytes per token.

        Ignores activation, CUDA-graph and fragmentation overheads, so it is an upper
        bound on what a real engine reports (a few per cent above, see docs/presets.md).
        """
        free = self.gpu_memory_bytes * self.tensor_parallel * self.memory_utilization - self.weight_bytes
        return max(0, math.floor(free / self.kv_bytes_per_token))


def _llama_params(*, vocab: int, hidden: int, intermediate: int, layers: int,
                  heads: int, kv_heads: int) -> int:
    """Parameter count of a Llama-architecture decoder from its config.json fields.

    Untied input embedding and LM head, q/k/v/o projections without bias (k and v
    sized for grouped-query attention), a gated (SwiGLU) MLP, two RMSNorms per layer
    plus the final one.  Reproduces the published counts exactly, e.g. Llama-2-7B
    6,738,415,616 and Llama-3-70B 70,553,706,496.
    """
    head_dim = hidden // heads
    attn = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2   # q, o, k, v
    mlp = 3 * hidden * intermediate
    return vocab * hidden * 2 + layers * (attn + mlp + 2 * hidden) + hidden


# config.json values (Hugging Face), cross-checked against Vidur's model configs.
_MODELS = {
    "llama2-7b": dict(vocab=32000, hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=32),
    "llama2-70b": dict(vocab=32000, hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8),
    "llama3-8b": dict(vocab=128256, hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8),
    "llama3-70b": dict(vocab=128256, hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8),
    "codellama-34b": dict(vocab=32000, hidden=8192, intermediate=22016, layers=48, heads=64, kv_heads=8),
    "yi-34b": dict(vocab=64000, hidden=7168, intermediate=20480, layers=60, heads=56, kv_heads=8),
}

_MODEL_NAMES = {
    "llama2-7b": "Llama-2-7B",
    "llama2-70b": "Llama-2-70B",
    "llama3-8b": "Llama-3-8B",
    "llama3-70b": "Llama-3-70B",
    "codellama-34b": "CodeLlama-34B",
    "yi-34b": "Yi-34B",
}

_VIDUR_CONFIGS = "https://github.com/microsoft/vidur/blob/main/data/model_configs/"

_MODEL_SOURCES = {
    "llama2-7b": "https://huggingface.co/meta-llama/Llama-2-7b-hf (config.json); "
                 f"{_VIDUR_CONFIGS}meta-llama/Llama-2-7b-hf.yml",
    "llama2-70b": "https://huggingface.co/meta-llama/Llama-2-70b-hf (config.json); "
                  f"{_VIDUR_CONFIGS}meta-llama/Llama-2-70b-hf.yml",
    "llama3-8b": "https://huggingface.co/meta-llama/Meta-Llama-3-8B (config.json); "
                 f"{_VIDUR_CONFIGS}meta-llama/Meta-Llama-3-8B.yml",
    "llama3-70b": "https://huggingface.co/meta-llama/Meta-Llama-3-70B (config.json); "
                  f"{_VIDUR_CONFIGS}meta-llama/Meta-Llama-3-70B.yml",
    "codellama-34b": "https://huggingface.co/codellama/CodeLlama-34b-hf (config.json); "
                     f"{_VIDUR_CONFIGS}codellama/CodeLlama-34b-Instruct-hf.yml",
    "yi-34b": "https://huggingface.co/01-ai/Yi-34B (config.json)",
}

#: 80 GiB per GPU, for both the A100-SXM4-80GB and the H100-SXM5-80GB.  This is the
#: convention BLIS uses: with it (and utilization 0.9) our kv_cache_tokens reproduces
#: BLIS's published total_kv_blocks exactly (see docs/presets.md).  The driver reports
#: slightly less usable memory (nvidia-smi shows 81559 MiB on an H100 80GB HBM3).
_GPU_MEMORY_BYTES = 80 * 1024**3
_FP16_BYTES = 2
_VLLM_UTILIZATION = 0.9

# NVIDIA datasheet peaks (SXM parts), used only to derive A100 figures from H100 fits.
_A100_HBM_GBPS, _H100_HBM_GBPS = 2039.0, 3350.0          # HBM bandwidth, GB/s
_A100_BF16_TFLOPS, _H100_BF16_TFLOPS = 312.0, 989.4      # dense BF16 tensor, TFLOPS
_BW_RATIO = _H100_HBM_GBPS / _A100_HBM_GBPS              # 1.643: A100 slower for memory-bound work
_FLOPS_RATIO = _H100_BF16_TFLOPS / _A100_BF16_TFLOPS     # 3.171: A100 slower for compute-bound work

_GPU_SPEC_SOURCE = ("NVIDIA A100 datasheet (80GB SXM: 2,039 GB/s, 312 dense BF16 TFLOPS) "
                    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
                    "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf ; NVIDIA H100 datasheet "
                    "(SXM: 3.35 TB/s, 989.4 dense BF16 TFLOPS) as tabulated at "
                    "https://glennklockwood.com/garden/processors/h100")

_VIDUR_PAPER = ("Agrawal et al., 'Vidur: A Large-Scale Simulation Framework for LLM Inference', "
                "MLSys 2024, https://arxiv.org/abs/2405.05465")
_VIDUR_A100_7B = ("https://github.com/microsoft/vidur/blob/bee57dafa1eb2dc422dcaec46a66975599a6a242/"
                  "data/profiling/compute/a100/meta-llama/Llama-2-7b-hf/mlp.csv")
_VIDUR_H100_7B = ("https://github.com/microsoft/vidur/blob/e26eb8f79fa9a6a7c38eac0f5291302402b20364/"
                  "data/profiling/compute/h100/meta-llama/Llama-2-7b-hf/mlp.csv")
_BLIS = ("BLIS (inference-sim) blackbox step-time fits, beta_coeffs in microseconds, vLLM v0.8.4: "
         "https://github.com/inference-sim/inference-sim/blob/"
         "1a6eb353412e981dba604fccd5096da4e8aee6da/defaults.yaml")
_PAPER = ("Dai, Deng, Li & Peng, 'Throughput-Optimal Scheduling Algorithms for LLM Inference and "
          "AI Agents', arXiv 2504.07347 v3, Eq. 4, https://arxiv.org/abs/2504.07347")
_SARATHI = ("Agrawal et al., 'Taming Throughput-Latency Tradeoff in LLM Inference with Sarathi-Serve', "
            "OSDI 2024, https://arxiv.org/abs/2403.02310")


def _us(x: float) -> float:
    """Microseconds -> seconds (BLIS publishes its coefficients in microseconds)."""
    return x / 1e6


def _affine(c0: float, prefill: float, decode: float, context: float = 0.0) -> dict:
    return {"model": "affine", "c0_seconds": c0, "prefill_seconds_per_token": prefill,
            "decode_seconds_per_token": decode, "context_seconds_per_token": context}


def _hw(key: str, gpu: str, tp: int, batch_time: dict, timing_source: str, notes: str = "",
        variant: str = "") -> HardwarePreset:
    cfg = _MODELS[key]
    suffix = ("" if tp == 1 else f"-tp{tp}") + variant
    gpu_key = {"A100-SXM4-80GB": "a100-80gb", "H100-SXM5-80GB": "h100-80gb"}[gpu]
    return HardwarePreset(
        name=f"{key}/{gpu_key}{suffix}",
        model=_MODEL_NAMES[key],
        gpu=gpu,
        tensor_parallel=tp,
        gpu_memory_bytes=_GPU_MEMORY_BYTES,
        memory_utilization=_VLLM_UTILIZATION,
        weight_bytes=_llama_params(**cfg) * _FP16_BYTES,
        layers=cfg["layers"],
        kv_heads=cfg["kv_heads"],
        head_dim=cfg["hidden"] // cfg["heads"],
        dtype_bytes=_FP16_BYTES,
        batch_time=validate_batch_time(batch_time),
        source=f"timing: {timing_source} | model config: {_MODEL_SOURCES[key]}",
        notes=notes,
    )


# BLIS coefficients (microseconds): beta0 per iteration, beta1 per prefill token,
# beta2 per decode token.  Llama-3.1-8B / Llama-3.3-70B share the architecture of
# Llama-3-8B / Llama-3-70B (same layers, heads, hidden and MLP sizes, vocab).
_BLIS_L31_8B_A100_TP1 = (16441.531547147923, 47.837412108198656, 18.20560632171683)
_BLIS_L31_8B_H100_TP1 = (5752.705191348184, 17.25086436834028, 5.999143920128404)
_BLIS_L33_70B_H100_TP4 = (12601.271149123822, 76.42284100369776, 66.84396200500741)
_BLIS_L33_70B_H100_TP8 = (14140.825207623911, 10.025593497696502, 19.401640879612657)


def _blis(beta: tuple[float, float, float]) -> dict:
    return _affine(_us(beta[0]), _us(beta[1]), _us(beta[2]))


def _a100_from_h100(beta: tuple[float, float, float]) -> dict:
    """Derive an A100 table from an H100 BLIS fit by datasheet ratios.

    The per-iteration intercept (dominated by streaming the weights) and the per-decode
    -token cost (KV and weight reads) scale with HBM bandwidth; the per-prefill-token
    cost (GEMMs) scales with dense BF16 tensor throughput.
    """
    return _affine(_us(beta[0]) * _BW_RATIO, _us(beta[1]) * _FLOPS_RATIO, _us(beta[2]) * _BW_RATIO)


_A100, _H100 = "A100-SXM4-80GB", "H100-SXM5-80GB"

_BLIS_NOTE = ("BLIS fits iteration time only; its per-request alpha overheads (API/tokenisation, "
              "outside the engine's iterations) are left out.  No context-length term "
              "(context_seconds_per_token = 0): attention cost is folded into the per-token terms "
              "at the context lengths of BLIS's training workloads.")

_DERIVED_A100_NOTE = (
    "DERIVED, not measured: no published A100 fit for Llama-3-70B at this TP was found.  "
    "Taken from the BLIS H100 fit for the same TP (Llama-3.3-70B-Instruct, vLLM v0.8.4) with "
    f"c0 and the decode coefficient multiplied by the HBM-bandwidth ratio H100/A100 = "
    f"{_H100_HBM_GBPS:.0f}/{_A100_HBM_GBPS:.0f} = {_BW_RATIO:.3f}, and the prefill coefficient "
    f"by the dense-BF16 ratio {_H100_BF16_TFLOPS}/{_A100_BF16_TFLOPS:.0f} = {_FLOPS_RATIO:.3f} "
    "(NVLink 600 vs 900 GB/s, ratio 1.5, is close to the bandwidth ratio, so the all-reduce "
    "share of c0 scales about the same).  The error of this transfer is not quantified.  ")

_TP8_NOTE = ("The TP8 prefill coefficient ({p:.1f} us/token) is below the dense-BF16 compute "
             "floor of a 70.6B-parameter model on 8 GPUs ({floor:.1f} us/token at 100% MFU); the "
             "fit stays above that floor only while the intercept dominates, i.e. for iterations "
             "of up to {n:.0f} prefill tokens.  Use it for budgets below that, or prefer TP4.")


def _tp8_note(table: dict, tflops: float) -> str:
    floor = 2 * _llama_params(**_MODELS["llama3-70b"]) / (8 * tflops * 1e12)
    p = table["prefill_seconds_per_token"]
    n = table["c0_seconds"] / (floor - p)
    return _TP8_NOTE.format(p=p * 1e6, floor=floor * 1e6, n=n)


_L70_A100_TP8 = _a100_from_h100(_BLIS_L33_70B_H100_TP8)
_L70_H100_TP8 = _blis(_BLIS_L33_70B_H100_TP8)

_HARDWARE_LIST = [
    _hw("llama2-7b", _A100, 1,
        {"model": "piecewise", "c_seconds": 0.0093, "a_seconds": 0.000064, "b0": 109},
        f"Vidur operator profile {_VIDUR_A100_7B} ; {_VIDUR_PAPER}",
        "Linear layers only (QKV/O projections, MLP, norms, rope, residual): no attention kernel, "
        "no CPU/scheduling overhead, so real iterations are longer, increasingly so with context "
        "length.  Vidur's per-layer medians x 32 layers are summarised (project brief) as "
        "2.3 ms + 64 us/token above a 9.3 ms floor (the weight-read time); the floor meets the "
        "line at b0 = (9.3-2.3)/0.064 = 109 tokens, which is the paper-v1 piecewise form.  "
        "Spot checks against the CSV: n=1 -> 9.28 ms, n=4096 -> 261.7 ms (formula 264.5 ms)."),
    _hw("llama2-7b", _H100, 1,
        {"model": "piecewise", "c_seconds": 0.0056, "a_seconds": 0.000020, "b0": 120},
        f"Vidur operator profile {_VIDUR_H100_7B} ; {_VIDUR_PAPER}",
        "Linear layers only, as for the A100 preset: summarised (project brief) as 3.2 ms + "
        "20 us/token above a 5.6 ms floor, "
        "b0 = (5.6-3.2)/0.020 = 120 tokens.  Spot checks against the CSV: n=1 -> 5.60 ms, "
        "n=4096 -> 83.1 ms (formula 85.1 ms)."),
    _hw("llama3-8b", _A100, 1, _blis(_BLIS_L31_8B_A100_TP1),
        f"{_BLIS}, entry meta-llama/llama-3.1-8b-instruct, GPU A100-80, TP1",
        "Fit for Llama-3.1-8B-Instruct (same architecture as Llama-3-8B).  " + _BLIS_NOTE),
    _hw("llama3-8b", _H100, 1, _blis(_BLIS_L31_8B_H100_TP1),
        f"{_BLIS}, entry meta-llama/llama-3.1-8b-instruct, GPU H100, TP1",
        "Fit for Llama-3.1-8B-Instruct (same architecture as Llama-3-8B).  " + _BLIS_NOTE),
    _hw("llama3-70b", _A100, 4, _a100_from_h100(_BLIS_L33_70B_H100_TP4),
        f"derived from {_BLIS}, entry meta-llama/llama-3.3-70b-instruct, GPU H100, TP4 ; {_GPU_SPEC_SOURCE}",
        _DERIVED_A100_NOTE + _BLIS_NOTE),
    _hw("llama3-70b", _A100, 8, _L70_A100_TP8,
        f"derived from {_BLIS}, entry meta-llama/llama-3.3-70b-instruct, GPU H100, TP8 ; {_GPU_SPEC_SOURCE}",
        _DERIVED_A100_NOTE + _tp8_note(_L70_A100_TP8, _A100_BF16_TFLOPS) + "  " + _BLIS_NOTE),
    _hw("llama3-70b", _H100, 4, _blis(_BLIS_L33_70B_H100_TP4),
        f"{_BLIS}, entry meta-llama/llama-3.3-70b-instruct, GPU H100, TP4",
        "Fit for Llama-3.3-70B-Instruct (same architecture as Llama-3-70B).  " + _BLIS_NOTE),
    _hw("llama3-70b", _H100, 8, _L70_H100_TP8,
        f"{_BLIS}, entry meta-llama/llama-3.3-70b-instruct, GPU H100, TP8",
        "Fit for Llama-3.3-70B-Instruct (same architecture as Llama-3-70B).  "
        + _tp8_note(_L70_H100_TP8, _H100_BF16_TFLOPS) + "  " + _BLIS_NOTE),
    _hw("codellama-34b", _A100, 1,
        {"model": "staircase", "c_seconds": 0.01128, "a_seconds": 0.03547, "b0": 128},
        _PAPER,
        "The paper's own fit (vLLM on one A100-80GB): t(512) = 153.16 ms, b/t(b) = 3.343 tokens/ms "
        "at b = 512.  A step every 128 tokens (tile quantisation)."),
    _hw("yi-34b", _A100, 2,
        _affine(0.047 - 0.142 / 127, 0.0002, 0.142 / 127),
        f"{_SARATHI} (Yi-34B, TP2 on A100-80GB, measured iteration latencies)",
        "From two read-offs, as given in the project brief and NOT re-verified against the paper "
        "text (the search corpus did not expose it): decode-only iterations take 47 ms at 1 "
        "request and 189 ms at 128, so decode_seconds_per_token = (189-47)/127 = 1.118 ms and "
        "c0 = 47 - 1.118 = 45.88 ms; prefill about 0.2 ms/token.  The decode slope includes "
        "attention over the (unstated) context lengths of that measurement, so no separate "
        "context term is set."),
]

# --- context-aware presets (issue 10): linear layers + attention -------------------------
#
# Vidur's attention profile of Llama-2-7B on an A100 (FlashAttention backend, block 16,
# TP1): per-layer medians of attn_decode (batch_size decoders, kv_cache_size context each)
# and attn_prefill (one chunk of prefill_chunk_size tokens after kv_cache_size prefilled).
# The points used (bench/preset_fit.py lists them; docs/preset-fit.md compares) were read
# from a copy of Vidur's data/profiling/compute/a100/meta-llama/Llama-2-7b-hf/attention.csv
# and fitted by least squares on relative error, per layer, then x 32 layers:
#   decode:  7.630e-3 ms + 1.0328e-3 ms/decoder + 8.602e-6 ms/context token   (per layer)
#   prefill: 3.8439e-2 ms per chunk + 1.5508e-7 ms/attention pair             (per layer)
_VIDUR_A100_7B_ATTN = ("https://github.com/microsoft/vidur/blob/main/data/profiling/compute/a100/"
                       "meta-llama/Llama-2-7b-hf/attention.csv (read from the copy at "
                       "https://github.com/sw5sh/cs378-assignment3/blob/"
                       "7ac2fe9fb6cea9d4630659a10c5cccfc9fbdd776/data/profiling/compute/a100/"
                       "meta-llama/Llama-2-7b-hf/attention.csv)")
_L7_LAYERS = 32
_ATTN_7B_A100 = {
    "decode_intercept": _L7_LAYERS * 7.630e-6,        # s per iteration with decoders
    "decode_per_request": _L7_LAYERS * 1.0328e-6,     # s per decoder
    "context": _L7_LAYERS * 8.602e-9,                 # s per context token of a decoder
    "chunk": _L7_LAYERS * 3.8439e-5,                  # s per prefill chunk
    "pair": _L7_LAYERS * 1.5508e-10,                  # s per prefill attention pair
}
_CHUNK_TOKENS = 256  # the per-chunk cost is charged per prefill token at 256-token chunks


def _with_attention(linear: dict, attn: dict, mem_scale: float = 1.0, flops_scale: float = 1.0) -> dict:
    """A piecewise linear-layer table plus attention terms; the memory-bound decode terms
    divided by mem_scale and the compute-bound prefill terms by flops_scale.  The prefill
    per-token term is attn["prefill_per_token"] if given, else the per-chunk cost
    attn["chunk"] charged per token at _CHUNK_TOKENS-token chunks."""
    return {"model": "piecewise",
            "c_seconds": linear["c_seconds"] + attn["decode_intercept"] / mem_scale,
            "a_seconds": linear["a_seconds"], "b0": linear["b0"],
            "prefill_seconds_per_token": attn.get("prefill_per_token", attn.get("chunk", 0.0) / _CHUNK_TOKENS)
            / flops_scale,
            "decode_seconds_per_token": attn["decode_per_request"] / mem_scale,
            "context_seconds_per_token": attn["context"] / mem_scale,
            "prefill_attention_seconds_per_pair": attn["pair"] / flops_scale}


_L7_A100_LINEAR = _HARDWARE_LIST[0].batch_time
_L7_H100_LINEAR = _HARDWARE_LIST[1].batch_time
_ATTN_NOTE = (
    "Linear layers as in the linear-layers-only preset of the same pair (Vidur's MLP profile), "
    "plus attention fitted to Vidur's attention profile: decode attention 0.244 ms per iteration "
    "with decoders + 33.05 us per decoder + 0.2753 us per token of each decoder's context (the "
    "KV it reads: 512 KiB per token at fp16, so 0.2753 us is 1.90 TB/s, 93% of the A100's "
    "2,039 GB/s); prefill attention 1.230 ms per chunk (charged as 4.80 us per prefill token at "
    "256-token chunks) + 4.96 ns per attention pair (0.52 MFLOP per pair: 106 TFLOPS, 34% of "
    "the dense BF16 peak).  Not in the model: Vidur's CPU overheads (scheduling, sampling, "
    "input preparation) and the per-iteration all-reduce (TP1: none).  docs/preset-fit.md "
    "compares the preset with every source point, per batch size and context length.")

_HARDWARE_LIST += [
    _hw("llama2-7b", _A100, 1, _with_attention(_L7_A100_LINEAR, _ATTN_7B_A100),
        f"Vidur operator profiles {_VIDUR_A100_7B} and {_VIDUR_A100_7B_ATTN} ; {_VIDUR_PAPER}",
        _ATTN_NOTE, variant="-attn"),
    _hw("llama2-7b", _H100, 1, _with_attention(_L7_H100_LINEAR, _ATTN_7B_A100, _BW_RATIO, _FLOPS_RATIO),
        f"Vidur operator profile {_VIDUR_H100_7B} (linear layers); attention DERIVED from "
        f"{_VIDUR_A100_7B_ATTN} ; {_GPU_SPEC_SOURCE}",
        "DERIVED attention, not measured: the A100 attention fit with the memory-bound decode "
        f"terms divided by the HBM-bandwidth ratio H100/A100 = {_BW_RATIO:.3f} and the "
        f"compute-bound prefill terms by the dense-BF16 ratio {_FLOPS_RATIO:.3f}; the error of "
        "this transfer is not quantified.  Linear layers measured (Vidur's H100 MLP profile).  "
        + _ATTN_NOTE, variant="-attn"),
]

# Vidur's older attention profile data/profiling/a100/attention.csv holds one head
# configuration only: n_embd 8192, 64 query / 8 KV heads at TP2 (32 / 4 per GPU), i.e.
# CodeLlama-34B and Llama-2-70B, which differ only in layer count.  No TP1 rows, and no
# Llama-3-8B (4096, 32, 8) rows, so no -attn preset is fitted for Llama-3-8B.  51 points
# (bench/data/vidur_attention_8192_64q_8kv_tp2_a100.csv) fitted by least squares on
# relative error, per layer (per GPU, both GPUs in parallel), then x layers:
#   decode:  1.3871e-2 ms + 5.6126e-6 ms/decoder + 1.30136e-6 ms/context token  (per layer)
#   prefill: 1.11573e-4 ms/prefill token + 1.37193e-7 ms/attention pair          (per layer)
_VIDUR_A100_TP2_ATTN = ("https://github.com/microsoft/vidur/blob/e2d00e9afba96cec9f0e7ea560bbfc4a539fae6a/"
                        "data/profiling/a100/attention.csv (n_embd 8192, 64 q / 8 kv heads, TP2)")
_ATTN_8192_64_8_TP2_PER_LAYER = {   # seconds per layer
    "decode_intercept": 1.3871e-5, "decode_per_request": 5.6126e-9, "context": 1.30136e-9,
    "prefill_per_token": 1.11573e-7, "pair": 1.37193e-10}


def _per_layer_x(attn: dict, layers: int) -> dict:
    return {k: v * layers for k, v in attn.items()}


# Linear layers of CodeLlama-34B at TP2 from Vidur's MLP profile (per-layer sums of the
# operator medians, bench/data/vidur_mlp_codellama34b_tp2_a100.csv): a floor of 0.465 ms
# per layer (n = 1) and, above, 0.3477 ms + 3.1098 us/token per layer (least squares on
# relative error over n = 552..1952), meeting the floor at b0 = 38 tokens; x 48 layers.
_VIDUR_A100_34B_MLP = ("https://github.com/microsoft/vidur/blob/bee57dafa1eb2dc422dcaec46a66975599a6a242/"
                       "data/profiling/compute/a100/codellama/CodeLlama-34b-Instruct-hf/mlp.csv")
_CL34_LAYERS = 48
_CL34_A100_TP2_LINEAR = {"model": "piecewise", "c_seconds": _CL34_LAYERS * 0.465e-3,
                         "a_seconds": _CL34_LAYERS * 3.1098e-6, "b0": 38}

_ATTN_TP2_NOTE = (
    "Linear layers from Vidur's MLP profile at TP2 (per-layer operator medians summed: "
    "floor 0.465 ms per layer, 3.11 us per token per layer above 38 tokens).  Attention fitted "
    "to 51 points of Vidur's A100 attention profile for this head configuration at TP2 "
    "(n_embd 8192, 64 q / 8 kv heads): per layer 13.87 us per iteration with decoders + "
    "5.61 ns per decoder + 1.301 ns per context token (the KV read: 2 KiB per token per layer "
    "per GPU, 1.57 TB/s), 111.6 ns per prefill token + 0.1372 ns per attention pair.  "
    "How close (docs/preset-fit.md): decode attention median |error| 12 %, worst 34 % (few "
    "decoders at ~1.5k context, and the kernel's steps at 55 and 109 decoders); prefill "
    "attention median 14 %, worst 31 % (whole 2k-4k-token chunks with no prior context, "
    "under-predicted: the causal self-attention pairs cost more than context pairs, which one "
    "pair coefficient cannot follow).  Not in the model: the two all-reduces per layer at "
    "TP2, the LM head and Vidur's CPU overheads, so real iterations are longer.  KV cache at "
    "TP2: what 2 x 80 GiB x 0.9 leaves after the weights.")

# Llama-2-70B at TP2: the same attention per layer (same head configuration and TP), 80
# layers; linear layers from Vidur's MLP profile at TP2 (bench/data/vidur_mlp_llama2_70b_tp2_a100.csv):
# floor 0.563 ms per layer, above it 0.2549 ms + 3.8922 us/token per layer (least squares on
# relative error over n = 512..1792), meeting the floor at b0 = 79 tokens; x 80 layers.
_VIDUR_A100_70B_MLP = ("https://github.com/microsoft/vidur/blob/25e529deb1f90ffa53d6777622b8e2a1ef78a0f0/"
                       "data/profiling/compute/a100/meta-llama/Llama-2-70b-hf/mlp.csv")
_L70_LAYERS = 80
_L2_70B_A100_TP2_LINEAR = {"model": "piecewise", "c_seconds": _L70_LAYERS * 0.563e-3,
                           "a_seconds": _L70_LAYERS * 3.8922e-6, "b0": 79}

_HARDWARE_LIST += [
    _hw("llama2-70b", _A100, 2,
        _with_attention(_L2_70B_A100_TP2_LINEAR, _per_layer_x(_ATTN_8192_64_8_TP2_PER_LAYER, _L70_LAYERS)),
        f"Vidur operator profiles {_VIDUR_A100_70B_MLP} (linear layers, TP2) and "
        f"{_VIDUR_A100_TP2_ATTN} ; {_VIDUR_PAPER}",
        _ATTN_TP2_NOTE.replace("floor 0.465 ms per layer, 3.11 us per token per layer above 38 tokens",
                               "floor 0.563 ms per layer, 3.89 us per token per layer above 79 tokens")
        + "  Weights 138 GB leave about 50k tokens of KV cache at TP2: a small cache (TP4 is the "
        "usual deployment, but the attention profile has TP2 rows only).", variant="-attn"),
    _hw("codellama-34b", _A100, 2,
        _with_attention(_CL34_A100_TP2_LINEAR, _per_layer_x(_ATTN_8192_64_8_TP2_PER_LAYER, _CL34_LAYERS)),
        f"Vidur operator profiles {_VIDUR_A100_34B_MLP} (linear layers, TP2) and "
        f"{_VIDUR_A100_TP2_ATTN} ; {_VIDUR_PAPER}",
        _ATTN_TP2_NOTE, variant="-attn"),
]

#: Hardware presets by name (``model/gpu`` or ``model/gpu-tpN``).
HARDWARE_PRESETS: dict[str, HardwarePreset] = {p.name: p for p in _HARDWARE_LIST}


# ---------------------------------------------------------------------------
# Workload presets
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkloadPreset:
    """An arrival process and prompt/output length distributions fitted to a trace.

    ``arrival``, ``prompt_tokens`` and ``output_tokens`` are TOML-form tables
    (:data:`ARRIVAL_KEYS`, :data:`LENGTH_DIST_KEYS`); ``targets`` holds the published
    statistics the lengths were fitted to: ``{"prompt": {"mean", "p50", "p90"},
    "output": {...}}``.  What the fit achieves is :func:`fitted_stats`; the errors are
    tabulated in docs/presets.md and pinned by tests/test_presets.py.
    """

    name: str
    description: str
    arrival: dict
    prompt_tokens: dict
    output_tokens: dict
    targets: dict
    source: str

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))


def _lognormal(mean: float, cv: float, max_tokens: int) -> dict:
    return {"dist": "lognormal", "mean": mean, "cv": cv, "max": max_tokens}


def _wl(name: str, description: str, arrival: dict, prompt: dict, output: dict,
        targets: dict, source: str) -> WorkloadPreset:
    return WorkloadPreset(name=name, description=description, arrival=validate_arrival(arrival),
                          prompt_tokens=validate_length_dist(prompt),
                          output_tokens=validate_length_dist(output), targets=targets, source=source)


_AZURE_2023 = ("Azure LLM inference trace 2023 (Patel et al., 'Splitwise', ISCA 2024, "
               "https://arxiv.org/abs/2311.18677): "
               "https://github.com/Azure/AzurePublicDataset/blob/master/AzureLLMInferenceDataset2023.md ; "
               "request counts and first/last timestamps from "
               "https://github.com/Azure/AzurePublicDataset/blob/master/analysis/"
               "AzureLLMInferenceDataset2023.ipynb")

# Lognormal parameters below were fitted (off-line, by the procedure in docs/presets.md)
# to minimise the sum of squared relative errors of mean, p50 and p90 as computed by
# fitted_stats() with its defaults (n = 400,000, seed 0).
_WORKLOAD_LIST = [
    _wl("azure-conv-2023",
        "Azure conversation service, 16 Nov 2023, one hour (19,366 requests)",
        {"process": "gamma", "rate": 5.53, "cv": 1.09},
        _lognormal(1282.0, 0.88, 8192),
        _lognormal(203.0, 1.19, 8192),
        {"prompt": {"mean": 1155, "p50": 1020, "p90": 2734},
         "output": {"mean": 211, "p50": 129, "p90": 424}},
        f"{_AZURE_2023}.  Rate 5.53 req/s = 19,365 inter-arrivals over 3,501.7 s "
        "(18:15:46.68 to 19:14:08.40); inter-arrival CV 1.09 and the length statistics as given "
        "in the project brief (not recomputed from the trace here)."),
    _wl("azure-code-2023",
        "Azure coding service, 16 Nov 2023, one hour (8,819 requests): long prompts, "
        "very short outputs, very bursty arrivals",
        {"process": "gamma", "rate": 2.57, "cv": 13.2},
        _lognormal(2333.0, 1.28, 8192),
        _lognormal(26.0, 1.64, 8192),
        {"prompt": {"mean": 2048, "p50": 1469, "p90": 5188},
         "output": {"mean": 28, "p50": 13, "p90": 55}},
        f"{_AZURE_2023}.  Rate 2.57 req/s = 8,818 inter-arrivals over 3,435.9 s "
        "(18:17:03.98 to 19:14:19.93); inter-arrival CV 13.2 and the length statistics as given "
        "in the project brief (not recomputed from the trace here)."),
    _wl("sharegpt-sarathi",
        "openchat_sharegpt4 conversations as used by Sarathi-Serve; Poisson arrivals",
        {"process": "poisson", "rate": 1.0},
        _lognormal(2632.0, 1.18, 8192),
        _lognormal(465.0, 0.60, 8192),
        {"prompt": {"mean": 2340, "p50": 1730, "p90": 5696},
         "output": {"mean": 439, "p50": 415, "p90": 834}},
        f"{_SARATHI}, Table 2 (openchat_sharegpt4).  Statistics as given in the project brief; "
        "only the 1,730-token median prompt was confirmed (via a secondary summary).  The paper "
        "sweeps the arrival rate; 1.0 req/s is our choice (docs/presets.md gives the load it "
        "implies)."),
    _wl("arxiv-summarization",
        "arXiv summarisation, filtered to prompt + output <= 4096 tokens (Llama-2 tokenizer); "
        "Poisson arrivals",
        {"process": "poisson", "rate": 1.0},
        _lognormal(2722.0, 0.27, 4096),
        _lognormal(220.0, 0.69, 4096),
        {"prompt": {"mean": 2588, "p50": 2730, "p90": 3702},
         "output": {"mean": 291, "p50": 167, "p90": 372}},
        f"{_VIDUR_PAPER}; its 4k-filtered trace "
        "https://github.com/microsoft/vidur/blob/main/data/processed_traces/"
        "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv .  Statistics as given in the "
        "project brief (not recomputed); they are those of this filtered set, not of "
        "Sarathi-Serve's unfiltered arxiv_summarization (median prompt 7,059).  Rate 1.0 req/s "
        "is our choice (the trace has no timestamps)."),
]

#: Workload presets by name.
WORKLOAD_PRESETS: dict[str, WorkloadPreset] = {w.name: w for w in _WORKLOAD_LIST}


def _lookup(presets: dict, name: str, what: str):
    try:
        return presets[name]
    except KeyError:
        raise KeyError(f"unknown {what} preset {name!r}; known: {', '.join(sorted(presets))}") from None


def hardware_preset(name: str) -> HardwarePreset:
    """The hardware preset called ``name``; a ``KeyError`` lists the valid names."""
    return _lookup(HARDWARE_PRESETS, name, "hardware")


def workload_preset(name: str) -> WorkloadPreset:
    """The workload preset called ``name``; a ``KeyError`` lists the valid names."""
    return _lookup(WORKLOAD_PRESETS, name, "workload")
