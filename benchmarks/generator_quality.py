"""Does the fine-tuned generator write queries that find their document? SciFact, BM25 top-10 over the full corpus.

Three rates, each = the fraction of (query, source document) pairs whose document BM25 ranks in its top 10:
  1. LoRA-SFT SmolLM2 (trained on the SciFact train pairs) on 100 documents that have no train query;
  2. the no-training few-shot baseline (k labeled train pairs in the prompt) on the same 100 documents;
  3. the real SciFact test queries against their judged documents.
Failed generations (empty, duplicate or document-copying after all retries) count as misses.

    python benchmarks/generator_quality.py                     # convert, train (CPU config), generate, score
    python benchmarks/generator_quality.py --adapter runs/generator-scifact-lora   # reuse a trained adapter
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import generation_output  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def top10_rate(retriever, pairs: list[tuple[str, str, str]]) -> tuple[float, int]:
    """pairs = (query id, query text, source doc); returns (hit rate, hits)."""
    run = retriever.search({qid: text for qid, text, _ in pairs}, 10)
    hits = sum(doc in run.get(qid, {}) for qid, _, doc in pairs)
    return hits / len(pairs), hits


def generated_pairs(out: Path) -> tuple[list[tuple[str, str, str]], int, int]:
    """(kept pairs, failed slots, all slots) from a `ragtune generate` output folder."""
    queries, rows = generation_output(out)
    kept = [(r["query_id"], queries[r["query_id"]], r["doc_id"]) for r in rows if not r["failed"]]
    return kept, sum(r["failed"] for r in rows), len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="SciFact BEIR folder (default: shared data)")
    ap.add_argument("--work", default=str(REPO / "runs" / "generator-quality"))
    ap.add_argument("--train-config", default=str(REPO / "configs" / "generator-sft-scifact-cpu.yaml"))
    ap.add_argument("--adapter", default=None, help="skip training and use this LoRA adapter")
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--few-shot", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--stages", default="train,sft,fewshot,score",
                    help="comma list; generation stages resume, so e.g. `--stages fewshot` can run beside training")
    args = ap.parse_args()
    stages = set(args.stages.split(","))

    from ragtune.config import load_config
    from ragtune.data.beir import load_beir
    from ragtune.generate.config import GenerateConfig
    from ragtune.generate.generator import generate_queries
    from ragtune.generate.prompts import FEW_SHOT_SYSTEM
    from ragtune.paths import shared_data
    from ragtune.retrieval.bm25 import BM25Config, BM25Retriever

    data = Path(args.data) if args.data else shared_data("beir", "scifact")
    work = Path(args.work)
    timings: dict[str, float] = {}

    adapter = Path(args.adapter) if args.adapter else work / "generator-lora"
    if args.adapter is None and "train" in stages:
        from ragtune.pipeline.convert import run_convert
        from ragtune.train.generator.sft import train_generator
        from ragtune.train.generator.sft_config import GeneratorTrainConfig

        sft = work / "sft-data"
        if not (sft / "dataset_info.json").is_file():
            run_convert("beir-sft", None, [f"data={data}", f"out={sft}"])
        t0 = time.perf_counter()
        cfg = load_config(GeneratorTrainConfig, args.train_config,
                          [f"dataset_dir={sft}", f"output_dir={adapter}", "overwrite_output_dir=true",
                           f"threads={args.threads}"])
        summary = train_generator(cfg)
        timings["train"] = time.perf_counter() - t0
        print(f"trained {summary['train_examples']} examples, {summary['global_step']} steps: loss "
              f"{summary['first_logged_loss']:.3f} -> {summary['last_logged_loss']:.3f}, dev loss "
              f"{summary['eval_loss']}, plot {summary.get('loss_plot')}")

    common = [f"corpus={data}", "sample_num=" + str(args.docs), f"seed={args.seed}", "exclude_splits=[train]",
              "query_per_document=1", f"batch_size={args.batch_size}", f"threads={args.threads}",
              "max_doc_tokens=180", "sampling.max_new_tokens=48"]
    runs = {
        "sft": [f"output_dir={work / 'gen-sft'}", f"adapter_name_or_path={adapter}"],
        "fewshot": [f"output_dir={work / 'gen-fewshot'}", f"few_shot={args.few_shot}",
                                                     f"system={json.dumps(FEW_SHOT_SYSTEM)}",
                                                     "few_shot_doc_tokens=96"],
    }
    names = {"sft": "LoRA SFT (SmolLM2-135M)", "fewshot": f"few-shot k={args.few_shot}, no training"}
    outs = {}
    for stage, extra in runs.items():
        name = names[stage]
        outs[name] = work / f"gen-{stage}"
        if stage not in stages:
            continue
        t0 = time.perf_counter()
        generate_queries(load_config(GenerateConfig, None, common + extra))
        timings[name] = time.perf_counter() - t0
    if "score" not in stages:
        return

    ds = load_beir(data, ["test"])
    bm25 = BM25Retriever(BM25Config())
    bm25.index(ds.corpus.values())
    rows = []
    for name, out in outs.items():
        kept, failed, total = generated_pairs(out)
        _, hits = top10_rate(bm25, kept) if kept else (0.0, 0)
        rows.append((name, total, failed, hits / total))
    test_pairs = [(f"{q}#{d}", ds.queries[q], d) for q, docs in ds.qrels["test"].items() for d, s in docs.items()
                  if s > 0]
    rate, _ = top10_rate(bm25, test_pairs)
    rows.append(("real SciFact test queries", len(test_pairs), 0, rate))

    print(f"\nSciFact ({len(ds.corpus)} docs), BM25 (bm25s, k1=1.2 b=0.75) top-10 over the full corpus; "
          f"{args.docs} sampled documents without a train query (seed {args.seed})")
    print(f"| {'queries':<34} | {'pairs':>5} | {'failed':>6} | {'source doc in top-10':>20} |")
    print(f"|{'-' * 36}|{'-' * 7}|{'-' * 8}|{'-' * 22}|")
    for name, n, failed, r in rows:
        print(f"| {name:<34} | {n:>5} | {failed:>6} | {r:>20.1%} |")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    for name, out in outs.items():
        sample = [json.loads(x)["text"] for x in (out / "queries.jsonl").read_text().splitlines()[:3]]
        print(f"{name} examples: {sample}")


if __name__ == "__main__":
    main()
