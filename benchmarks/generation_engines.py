"""Generation engines side by side: transformers (float32, bfloat16) against CTranslate2 (float32, int8).

Each engine writes one query for the same N SciFact documents that have no train query (seeded sample), with
the same prompts and sampling settings, through `ragtune generate`. Reported per engine: wall time, queries/s,
speed-up over transformers float32, failed slots, and quality = the share of documents whose query finds the
source document in BM25's top 10 over the full corpus (a failed slot is a miss), with a paired exact McNemar
p-value against the first engine. The CTranslate2 conversion is timed separately (once per model + adapter).

    python benchmarks/generation_engines.py --adapter runs/generator-quality/generator-lora --docs 300
    python benchmarks/generation_engines.py --engines transformers:float32,ctranslate2:float32,ctranslate2:int8 \
        --docs 64 --work runs/generation-engines-avx2      # under an AVX2-only CPU (or its emulation)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import generation_output, hardware_line, print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def per_doc_hits(out: Path, bm25) -> dict[str, bool]:
    """doc_id -> its (first) query finds it in BM25's top 10; failed slots are misses."""
    queries, rows = generation_output(out)
    kept = {r["query_id"]: r["doc_id"] for r in rows if not r["failed"]}
    run = bm25.search({q: queries[q] for q in kept}, 10)
    hits = {r["doc_id"]: False for r in rows}
    for q, d in kept.items():
        hits[d] = hits[d] or d in run.get(q, {})
    return hits


def mcnemar_p(a: dict[str, bool], b: dict[str, bool]) -> float:
    from scipy.stats import binomtest

    only_a = sum(a[d] and not b[d] for d in a)
    only_b = sum(b[d] and not a[d] for d in a)
    return 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="SciFact BEIR folder (default: shared data)")
    ap.add_argument("--adapter", default=str(REPO / "runs" / "generator-quality" / "generator-lora"),
                    help="LoRA adapter of the generator (generator_quality.py --stages train writes the default)")
    ap.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    ap.add_argument("--work", default=str(REPO / "runs" / "generation-engines"))
    ap.add_argument("--engines",
                    default="transformers:float32,transformers:bfloat16,ctranslate2:float32,ctranslate2:int8",
                    help="comma list of engine:dtype (transformers: float32|bfloat16; ctranslate2: float32|int8)")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    from ragtune.config import load_config
    from ragtune.data.beir import load_beir
    from ragtune.generate.config import GenerateConfig
    from ragtune.generate.generator import generate_queries
    from ragtune.paths import shared_data
    from ragtune.retrieval.bm25 import BM25Config, BM25Retriever

    print(hardware_line())
    data = Path(args.data) if args.data else shared_data("beir", "scifact")
    adapter = Path(args.adapter) if args.adapter else None
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        raise SystemExit(f"{adapter}: no LoRA adapter there; run `python benchmarks/generator_quality.py --stages "
                         "train` first, or pass --adapter")
    work = Path(args.work)
    common = [f"corpus={data}", f"model_name_or_path={args.model}", f"sample_num={args.docs}", f"seed={args.seed}",
              "exclude_splits=[train]", "query_per_document=1", f"batch_size={args.batch_size}",
              f"threads={args.threads}", "max_doc_tokens=180", "sampling.max_new_tokens=48", "progress=false"]
    if adapter is not None:
        common.append(f"adapter_name_or_path={adapter}")

    conversion = None
    results = []
    for spec in args.engines.split(","):
        engine, dtype = spec.split(":")
        if engine == "ctranslate2" and conversion is None:
            from ragtune.generate.ct2_engine import converted_model

            t0 = time.perf_counter()
            converted_model(args.model, adapter, dtype)
            conversion = time.perf_counter() - t0
        out = work / f"gen-{engine}-{dtype}"
        extra = [f"engine={engine}", f"output_dir={out}",
                 f"ct2_compute_type={dtype}" if engine == "ctranslate2" else f"dtype={dtype}"]
        summary = json.loads((out / "generation_summary.json").read_text()) \
            if (out / "generation_summary.json").is_file() else generate_queries(
                load_config(GenerateConfig, None, common + extra))
        if not summary.get("generated_docs"):
            print(f"{spec}: reused the finished run in {out} (its wall time is from that run)")
        results.append((spec, out, summary))

    ds = load_beir(data, [])
    bm25 = BM25Retriever(BM25Config())
    bm25.index(ds.corpus.values())
    hits = {spec: per_doc_hits(out, bm25) for spec, out, _ in results}
    ref_spec, _, ref = results[0]
    rows = []
    for spec, _, s in results:
        h = hits[spec]
        n = len(h)
        rows.append([spec, n, s["failed"], f"{s['wall_s']:.0f}", f"{n / s['wall_s']:.2f}",
                     f"{ref['wall_s'] / s['wall_s']:.2f}x", f"{sum(h.values()) / n:.1%}",
                     "-" if spec == ref_spec else f"{mcnemar_p(hits[ref_spec], h):.3f}"])
    print(f"\nSciFact: one query for each of {args.docs} sampled documents without a train query (seed {args.seed}), "
          f"generator {args.model}" + (f" + {adapter}" if adapter else "") +
          ", t=0.7 top_p=0.9, 48 new tokens at most; quality = source document in BM25's top 10 (full corpus)")
    print_table(["engine:dtype", "docs", "failed", "wall s", "queries/s", f"vs {ref_spec}", "in BM25 top-10",
                 f"McNemar p vs {ref_spec}"], rows)
    if conversion is not None:
        print(f"CTranslate2 conversion (merge + convert, once per model + adapter; ~0 s when cached): "
              f"{conversion:.0f} s")
    for spec, out, _ in results:
        sample = [json.loads(x)["text"] for x in (out / "queries.jsonl").read_text().splitlines()[:3]]
        print(f"{spec} examples: {sample}")


if __name__ == "__main__":
    main()
