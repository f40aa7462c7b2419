"""The context-aware presets beside the published measurements they were fitted to
(docs/preset-fit.md is this script's output plus the discussion).

    PYTHONPATH=. python bench/preset_fit.py

For every source point (Vidur's attention profile of Llama-2-7B on an A100: decode
batches by size and context, prefill chunks by size and prior context; per-layer
medians, here x 32 layers) it prints the measured time, the preset's attention part
and the relative error; then the whole iteration of the preset beside the figures of
Vidur's linear-layer profile and of a Vidur run quoted in the issue.
"""

from __future__ import annotations

import csv
from pathlib import Path

_DIR = Path(__file__).with_name("data")
DATA = _DIR / "vidur_attention_llama2_7b_a100.csv"
LAYERS = 32
PRESET = "llama2-7b/a100-80gb-attn"

#: Every fitted context-aware preset: its source points, layers (the per-layer medians are
#: multiplied by them) and the c_seconds of its linear layers alone (the rest of c_seconds
#: is the intercept of decode attention).
FITS = [
    dict(preset=PRESET, data=DATA, layers=LAYERS, linear_c=0.0093),
    dict(preset="codellama-34b/a100-80gb-tp2-attn", data=_DIR / "vidur_attention_8192_64q_8kv_tp2_a100.csv",
         layers=48, linear_c=48 * 0.465e-3),
    dict(preset="llama2-70b/a100-80gb-tp2-attn", data=_DIR / "vidur_attention_8192_64q_8kv_tp2_a100.csv",
         layers=80, linear_c=80 * 0.563e-3),
]


def source_points(data: Path = DATA, layers: int = LAYERS):
    """(kind, batch, context, measured seconds per iteration: the per-layer median x layers)."""
    lines = [ln for ln in data.read_text().splitlines() if ln and not ln.startswith("#")]
    return [(r["kind"], int(r["batch"]), int(r["context"]), float(r["median_ms"]) * 1e-3 * layers)
            for r in csv.DictReader(lines)]


def attention_seconds(table: dict, kind: str, batch: int, context: int, linear_c: float = 0.0093) -> float:
    """The preset's attention part for one source point: a decode batch of `batch`
    decoders with `context` tokens each, or one prefill chunk of `batch` tokens after
    `context` prefilled ones. The intercept of decode attention is the part of c_seconds
    above the linear-layer floor (c_seconds - linear_c; 9.3 ms for Llama-2-7B)."""
    if kind == "decode":
        return (table["c_seconds"] - linear_c + table["decode_seconds_per_token"] * batch
                + table["context_seconds_per_token"] * batch * context)
    pairs = batch * context + batch * (batch + 1) // 2
    return (table["prefill_seconds_per_token"] * batch
            + table["prefill_attention_seconds_per_pair"] * pairs)


def rows(preset: str = PRESET):
    """(kind, batch, context, measured s, preset s, relative error) for every source point."""
    from llmsim.presets import HARDWARE_PRESETS
    fit = next(f for f in FITS if f["preset"] == preset)
    table = HARDWARE_PRESETS[preset].batch_time
    out = []
    for kind, b, ctx, measured in source_points(fit["data"], fit["layers"]):
        model = attention_seconds(table, kind, b, ctx, fit["linear_c"])
        out.append((kind, b, ctx, measured, model, (model - measured) / measured))
    return out


def iteration_rows():
    """Whole iterations: (what, source ms, preset ms)."""
    from llmsim.config import batch_time
    from llmsim.presets import HARDWARE_PRESETS
    bt = batch_time(HARDWARE_PRESETS[PRESET].batch_time, PRESET)
    lin = batch_time(HARDWARE_PRESETS["llama2-7b/a100-80gb"].batch_time, "linear")
    return [
        ("linear layers, 1 token (Vidur MLP profile)", 9.28, lin.seconds(1) * 1e3),
        ("linear layers, 4096 tokens (Vidur MLP profile)", 261.7, lin.seconds(4096) * 1e3),
        ("decode-only batch of 122 at context 640 (Vidur run, issue 10)", 44.1,
         bt.seconds(0, 122, 122 * 640) * 1e3),
        ("  the linear-layers-only preset on the same batch (issue 10: 10.1 ms)", 44.1,
         lin.seconds(0, 122) * 1e3),
        ("mixed 512 tokens: 122 decoders at context 640 + a 390-token chunk after 0 (Vidur run, issue 10)",
         67.4, bt.seconds(390, 122, 122 * 640, 390 * 391 // 2) * 1e3),
        ("  the linear-layers-only preset on the same batch (issue 10: 35.1 ms)", 67.4,
         lin.seconds(390, 122) * 1e3),
    ]


def print_fit(preset: str, layers: int):
    print(f"## {preset}: attention part against Vidur's profile (x {layers} layers)\n")
    print("| kind | batch (decoders or chunk tokens) | context | Vidur ms | preset ms | error |")
    print("|---|---|---|---|---|---|")
    errs = {"decode": [], "prefill": []}
    for kind, b, ctx, m, p, e in rows(preset):
        errs[kind].append(abs(e))
        print(f"| {kind} | {b} | {ctx} | {m * 1e3:.2f} | {p * 1e3:.2f} | {100 * e:+.1f}% |")
    for k, v in errs.items():
        v = sorted(v)
        print(f"\n{k}: median |error| {100 * v[len(v) // 2]:.1f}%, max {100 * v[-1]:.1f}% over {len(v)} points")


def main():
    print_fit(PRESET, LAYERS)
    print("\n## whole iterations\n")
    print("| iteration | source ms | preset ms | preset / source |")
    print("|---|---|---|---|")
    for what, src, mine in iteration_rows():
        print(f"| {what} | {src:.1f} | {mine:.1f} | {mine / src:.2f} |")
    for fit in FITS[1:]:
        print()
        print_fit(fit["preset"], fit["layers"])


if __name__ == "__main__":
    main()
