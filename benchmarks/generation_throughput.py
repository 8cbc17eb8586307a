"""Pseudo-query generation throughput: ragtune's batched generator vs one document at a time.

The reference pipelines (InPars, SPTAR, GPL's doc2query loop) call `generate` once per document. ragtune sorts
prompts by length and decodes `batch_size` documents together with left padding and the KV cache. Same model,
same prompts, same sampling parameters; queries/s (and generated tokens/s) are printed as a table.

    python benchmarks/generation_throughput.py                      # SmolLM2-135M-Instruct on SciFact, CPU
    python benchmarks/generation_throughput.py --docs 64 --batch-size 32 --device cuda
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import hardware_line  # noqa: E402


def run(gen, prompts, k: int, batch_size: int) -> tuple[float, int, int]:
    """(seconds, queries, generated tokens) for decoding all prompts in batches of `batch_size`."""
    t0 = time.perf_counter()
    n_q = n_tok = 0
    for i in range(0, len(prompts), batch_size):
        outs = gen.raw([p.text for p in prompts[i:i + batch_size]], k, seed=i)
        for texts in outs:
            n_q += len(texts)
            n_tok += sum(len(gen.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return time.perf_counter() - t0, n_q, n_tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--corpus", default=None, help="BEIR folder (default: shared SciFact)")
    ap.add_argument("--docs", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--query-per-document", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--max-doc-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtypes", default="float32,auto",
                    help="comma list; each gets a one-at-a-time and a batched row (auto = what ragtune picks)")
    args = ap.parse_args()

    import torch

    from ragtune.data.beir import load_corpus
    from ragtune.generate.config import SamplingConfig
    from ragtune.generate.prompts import DEFAULT_INSTRUCTION, document_text
    from ragtune.generate.query_generator import QueryGenerator
    from ragtune.hardware import pick_device, set_threads
    from ragtune.paths import shared_data

    device = pick_device(args.device)
    if device == "cpu":
        set_threads(args.threads)
    corpus = load_corpus(args.corpus or shared_data("beir", "scifact"))
    ids = random.Random(args.seed).sample(sorted(corpus), args.docs)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    from ragtune.hardware import auto_dtype

    k = args.query_per_document
    rows = []
    dtypes = dict.fromkeys(auto_dtype(device) if d == "auto" else d for d in args.dtypes.split(","))
    for dtype in dtypes:
        gen = QueryGenerator.load(args.model, args.adapter, sampling=sampling, device=device, dtype=dtype)
        prompts = [gen.prompt(d, document_text(corpus[d]), DEFAULT_INSTRUCTION, None, [], args.max_doc_tokens)
                   for d in ids]
        gen.raw([prompts[0].text], 1)  # warm-up: first-call allocations are not throughput
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        seq = run(gen, prompts, k, 1)
        rows.append((f"one document at a time, {dtype}", 1, *seq))
        batched = sorted(prompts, key=lambda p: -p.n_tokens)
        bat = run(gen, batched, k, args.batch_size)
        rows.append((f"ragtune batched (sorted, KV cache), {dtype}", args.batch_size, *bat))
        del gen

    print(f"\n{args.model}: {args.docs} documents x {k} queries, max_new_tokens {args.max_new_tokens}, "
          f"sampling t={sampling.temperature} top_p={sampling.top_p}, prompts {min(p.n_tokens for p in prompts)}-"
          f"{max(p.n_tokens for p in prompts)} tokens")
    print(f"{hardware_line()}, device {device}")
    header = (f"| {'mode':<48} | {'batch':>5} | {'seconds':>8} | {'queries/s':>9} | {'new tokens/s':>12} | "
              f"{'speed-up':>8} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    base = rows[0][3] / rows[0][2]
    for mode, bs, secs, n_q, n_tok in rows:
        qps = n_q / secs
        print(f"| {mode:<48} | {bs:>5} | {secs:>8.1f} | {qps:>9.2f} | {n_tok / secs:>12.1f} | {qps / base:>7.1f}x |")
    if device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
