"""Where the generator's LoRA SFT step spends its time on this CPU, and what each cut buys (issue 17 item 4).

    python benchmarks/sft_speed.py                          # step time of every variant (about 10 minutes)
    python benchmarks/sft_speed.py --variants base,fast --steps 6
    python benchmarks/sft_speed.py --quality base,fast      # train both for the demo's 30 steps, then the
                                                            # generator quality check of issue 17 item 2

Every variant runs the real `ragtune train generator` path (trl SFTTrainer + peft LoRA, SmolLM2-135M, the demo's
SFT settings: batch 4, cutoff_len 256, rank 8 on every linear layer, float32) on SciFact's train doc -> query pairs.
A trainer callback times each optimizer step; the table gives the median of steps 2..N (the first step warms
up), the mean tokens per example, and the ratio against the first variant measured in the same run. `trl-head` is
the naive reference, trl's fused LM head as it runs on CPU by default (every position scored); every other variant
scores the labelled positions only (`compact_fused_head`, train/generator/lm_head.py), as SFT, DPO and GRPO run.

--quality trains each named variant for --quality-steps steps, writes one query for each of --docs SciFact
documents that have no train query (the demo's sampling, each variant's own max_doc_tokens), and gives the share
whose source document BM25 ranks in its top 10 over the full corpus, with the paired t-test p-value (over the same
documents) of each variant against the first. Failed generations count as misses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))
from _common import generation_output, hardware_line, print_table, timed_steps  # noqa: E402

BASE = ["per_device_train_batch_size=4", "cutoff_len=256", "lora_rank=8", "learning_rate=3.0e-4"]
"""The demo's `sft:` block (src/ragtune/configs/demo.yaml)."""
VARIANTS: dict[str, tuple[list[str], int]] = {
    # name: (overrides on top of BASE, max_doc_tokens the generator reads)
    "trl-head": ([], 192),  # the naive reference: trl's fused LM head on every position (its CPU default)
    "base": ([], 192),
    "prompt192": (["max_prompt_tokens=192"], 192),
    "prompt128": (["max_prompt_tokens=128"], 128),
    "attn-only": (["lora_target=q_proj,k_proj,v_proj,o_proj"], 192),
    "layers15": (["lora_layers=15"], 192),
    "layers10": (["lora_layers=10"], 192),
    "fast": (["max_prompt_tokens=192", "lora_layers=10"], 192),
    "fast128": (["max_prompt_tokens=128", "lora_layers=10"], 128),
}


def sft_data(data: Path, work: Path) -> Path:
    from ragtune.data.convert_beir import BeirSFTConfig, beir_to_sft

    out = work / "sft-data"
    if not (out / "dataset_info.json").is_file():
        beir_to_sft(BeirSFTConfig(data=data, split="train", out=out, name="doc2query"))
    return out


def train(variant: str, steps: int, data_dir: Path, out: Path, threads: int) -> tuple[dict, list[float]]:
    """(train summary, step seconds) of `variant` trained for `steps` steps into `out`."""
    import trl

    from ragtune.config import load_config
    from ragtune.train.generator import sft
    from ragtune.train.generator.sft import train_generator
    from ragtune.train.generator.sft_config import GeneratorTrainConfig

    overrides = [*BASE, *VARIANTS[variant][0], "dataset=doc2query", f"dataset_dir={data_dir}",
                 f"output_dir={out}", f"max_steps={steps}", "overwrite_output_dir=true", "save_steps=100000",
                 "plot_loss=false", f"threads={threads}", "logging_steps=5"]
    compact = sft.compact_fused_head
    if variant == "trl-head":
        sft.compact_fused_head = lambda: nullcontext(False)
    try:
        return timed_steps(trl.SFTTrainer, lambda: train_generator(load_config(GeneratorTrainConfig, None, overrides)))
    finally:
        sft.compact_fused_head = compact


def mean_tokens(variant: str, data_dir: Path) -> float:
    from ragtune.config import load_config
    from ragtune.generate.prompts import use_template
    from ragtune.models import load_tokenizer, resolve_causal_lm
    from ragtune.train.generator.sft_config import GeneratorTrainConfig
    from ragtune.train.generator.sft_data import encode_all, load_sft_messages

    cfg = load_config(GeneratorTrainConfig, None, [*BASE, *VARIANTS[variant][0], "dataset=doc2query",
                                                   f"dataset_dir={data_dir}", "output_dir=unused"])
    tok = load_tokenizer(resolve_causal_lm(cfg.model_name_or_path))
    use_template(tok, cfg.template)
    items = load_sft_messages(cfg.dataset, cfg.dataset_dir, cfg.formatting, 200, cfg.seed)
    examples, _ = encode_all(tok, items, cfg.cutoff_len, cfg.max_prompt_tokens)
    return statistics.mean(len(e.input_ids) for e in examples)


def speed(names: list[str], steps: int, data: Path, work: Path, threads: int) -> None:
    data_dir = sft_data(data, work)
    rows, base = [], None
    for name in names:
        summary, seconds = train(name, steps, data_dir, work / f"speed-{name}", threads)
        step = statistics.median(seconds[1:])
        base = base or step
        rows.append([name, " ".join(VARIANTS[name][0]) or "(demo defaults)", f"{mean_tokens(name, data_dir):.0f}",
                     f"{summary['trainable_params'] / 1e6:.2f}M", f"{step:.2f}", f"{1 / step:.3f}",
                     f"{base / step:.2f}x"])
        print(f"{name}: steps {[round(s, 2) for s in seconds]}", flush=True)
    print(f"\nLoRA SFT step, SmolLM2-135M, batch 4, median of steps 2..{steps}; {hardware_line()}")
    print_table(["variant", "overrides", "tokens/example", "trainable", "s/step", "steps/s", "vs first"], rows)


def as_float(hits: dict[str, bool]) -> dict[str, float]:
    return {d: float(h) for d, h in hits.items()}


def quality(names: list[str], steps: int, docs: int, data: Path, work: Path, threads: int) -> None:
    from ragtune.config import load_config
    from ragtune.data.beir import load_beir
    from ragtune.evaluate.significance import paired_ttest
    from ragtune.generate.config import GenerateConfig
    from ragtune.generate.generator import generate_queries
    from ragtune.retrieval.bm25 import BM25Config, BM25Retriever

    data_dir = sft_data(data, work)
    ds = load_beir(data, ["test"])
    bm25 = BM25Retriever(BM25Config())
    bm25.index(ds.corpus.values())
    hits: dict[str, dict[str, bool]] = {}
    rows = []
    for name in names:
        adapter = work / f"quality-{name}"
        t0 = time.perf_counter()
        summary, seconds = train(name, steps, data_dir, adapter, threads)
        train_s = time.perf_counter() - t0
        out = work / f"quality-{name}-queries"
        t0 = time.perf_counter()
        # the demo's generate block, on documents that have no train query
        generate_queries(load_config(GenerateConfig, None, [
            f"corpus={data}", f"output_dir={out}", f"adapter_name_or_path={adapter}", f"sample_num={docs}",
            "exclude_splits=[train]", "query_per_document=1", "batch_size=16", f"threads={threads}", "seed=0",
            f"max_doc_tokens={VARIANTS[name][1]}", "sampling.temperature=0.8", "sampling.top_p=0.95",
            "sampling.max_new_tokens=24"]))
        gen_s = time.perf_counter() - t0
        queries, provenance = generation_output(out)
        kept = {r["doc_id"]: queries[r["query_id"]] for r in provenance if not r["failed"]}
        run = bm25.search({d: q for d, q in kept.items()}, 10)
        hits[name] = {r["doc_id"]: r["doc_id"] in run.get(r["doc_id"], {}) for r in provenance}
        rate = sum(hits[name].values()) / len(hits[name])
        first = names[0]
        p = "" if name == first else f"{paired_ttest(as_float(hits[first]), as_float(hits[name])):.3f}"
        rows.append([name, f"{len(hits[name])}", f"{sum(r['failed'] for r in provenance)}", f"{rate:.1%}", p,
                     f"{summary['train_loss']:.3f}", f"{statistics.median(seconds[1:]):.2f}", f"{train_s:.0f}",
                     f"{gen_s:.0f}"])
        print(f"{name}: {list(kept.values())[:3]}", flush=True)
    print(f"\nGenerator quality after {steps} SFT steps: one query per SciFact document without a train query "
          f"({docs} documents, seed 0), source document in BM25's top 10 over the full corpus; {hardware_line()}")
    print_table(["variant", "queries", "failed", "source doc in top 10", "paired p vs first", "train loss",
                 "s/step", "train s", "generate s"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="SciFact BEIR folder (default: shared data)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--variants", default="trl-head,base,prompt192,prompt128,attn-only,layers15,layers10,fast,fast128")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--quality", default=None, help="comma list of variants for the quality check")
    ap.add_argument("--quality-steps", type=int, default=30)
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    from ragtune.paths import shared_data

    data = Path(args.data) if args.data else shared_data("beir", "scifact")
    unknown = [v for v in (args.quality or args.variants).split(",") if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        if args.quality:
            quality(args.quality.split(","), args.quality_steps, args.docs, data, work, args.threads)
        else:
            speed(args.variants.split(","), args.steps, data, work, args.threads)


if __name__ == "__main__":
    main()
