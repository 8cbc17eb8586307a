"""How close ragtune's hot paths already run to this CPU's matrix-multiply peak: the ceiling on what any backend or
engine can still gain here in the same precision.

    python benchmarks/cpu_roofline.py                 # GEMM peak, MiniLM encoding, the demo's SFT step
    python benchmarks/cpu_roofline.py --docs 64 --skip-sft

1. **Peak**: torch GEMM (2048 x 2048) in float32, and in bfloat16 where the CPU has it, on torch's threads; the best
   of five. This is what a tuned kernel reaches here, not the datasheet number.
2. **Encoder**: all-MiniLM-L6-v2 encoding SciFact abstracts as `ragtune eval` does (max_seq_length 256, batch 32,
   float32). FLOPs are counted from each batch's padded length n: per layer 12 n d^2 + 2 n^2 d multiply-adds
   (projections, feed-forward 4d, attention), d = 384, 6 layers.
3. **SFT step**: the demo's LoRA step as the budget's calibration times it (`pipeline/budget.time_sft_step`: batch 4,
   every position scored); FLOPs = forward (2 x matmul parameters x tokens + attention) x 2, since the frozen
   weights need activation gradients but no weight gradients.

Achieved GFLOPS / peak GFLOPS is how much faster the same precision could possibly go.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import hardware_line, print_table

REPO = Path(__file__).resolve().parents[1]


def gemm_gflops(dtype_name: str, n: int = 2048, repeats: int = 5) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def encoder(docs: int, batch: int) -> tuple[float, float]:
    """(documents per second, achieved GFLOPS) of float32 MiniLM encoding, length-sorted batches as ragtune's."""
    from itertools import islice

    import torch
    from sentence_transformers import SentenceTransformer

    from ragtune.data.beir import iter_corpus
    from ragtune.models import DEFAULT_ENCODER, resolve_model
    from ragtune.paths import shared_data

    texts = [d.content for d in islice(iter_corpus(shared_data("beir", "scifact")), docs)]
    model = SentenceTransformer(str(resolve_model(DEFAULT_ENCODER)), device="cpu", local_files_only=True)
    model.max_seq_length = 256
    cfg = model[0].auto_model.config
    d, layers = cfg.hidden_size, cfg.num_hidden_layers
    tok = model.tokenizer
    lengths = sorted((min(len(tok(t)["input_ids"]), 256) for t in texts), reverse=True)
    macs = 0
    for s in range(0, len(lengths), batch):
        n = lengths[s]  # padded to the batch's longest
        macs += len(lengths[s:s + batch]) * layers * (12 * n * d * d + 2 * n * n * d)
    model.encode(texts[:batch], batch_size=batch)  # warm-up
    with torch.inference_mode():
        sec = _timed(lambda: model.encode(texts, batch_size=batch))
    return len(texts) / sec, 2 * macs / sec / 1e9


def sft_step() -> tuple[float, float]:
    """(seconds per step, achieved GFLOPS) of the demo's calibration step."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ragtune.config import load_config
    from ragtune.models import resolve_causal_lm
    from ragtune.pipeline.budget import time_sft_step
    from ragtune.pipeline.loop import RunConfig

    cfg = load_config(RunConfig, REPO / "src" / "ragtune" / "configs" / "demo.yaml")
    seconds, _ = time_sft_step(cfg)
    c = AutoConfig.from_pretrained(resolve_causal_lm(cfg.generator))
    with torch.device("meta"):  # the module shapes without loading the weights a second time
        model = AutoModelForCausalLM.from_config(c)
    params = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    half = min(cfg.sft.cutoff_len, 512) // 2
    tokens = cfg.sft.per_device_train_batch_size * half
    attn = cfg.sft.per_device_train_batch_size * c.num_hidden_layers * 2 * half * half * c.hidden_size
    forward = 2 * (params * tokens + attn)
    return seconds, 2 * 2 * forward / seconds / 1e9  # the step is timed at half length and doubled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--skip-sft", action="store_true")
    args = ap.parse_args()
    print(hardware_line(), file=sys.stderr)
    from ragtune.hardware import cpu_has_fast_bf16

    peak = gemm_gflops("float32")
    rows = [["GEMM 2048^3, float32 (the peak)", f"{peak:.1f}", "100%", ""]]
    if cpu_has_fast_bf16():
        bf = gemm_gflops("bfloat16")
        rows.append(["GEMM 2048^3, bfloat16", f"{bf:.1f}", f"{100 * bf / peak:.0f}%", ""])
    rate, gf = encoder(args.docs, args.batch)
    rows.append([f"MiniLM encoding, float32, {args.docs} SciFact abstracts", f"{gf:.1f}", f"{100 * gf / peak:.0f}%",
                 f"{rate:.1f} docs/s"])
    if not args.skip_sft:
        sec, gf = sft_step()
        rows.append(["SmolLM2-135M LoRA SFT step, float32 (demo calibration)", f"{gf:.1f}", f"{100 * gf / peak:.0f}%",
                     f"{sec:.2f} s/step"])
    print_table(["path", "GFLOPS", "of the float32 GEMM peak", "throughput"], rows)


if __name__ == "__main__":
    main()
