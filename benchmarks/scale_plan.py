"""The scale plan of SCALING.md: per-item costs measured on this machine multiplied out to FiQA, MS MARCO and NQ.

    python benchmarks/scale_costs.py --docs 1024 --json runs/scale_costs.json    # under /work/notes/heavy
    python benchmarks/scale_plan.py runs/scale_costs.json > runs/scale_plan.md

Inputs, all measured: scale_costs.json (tokens per word of the MiniLM tokenizer; bi-encoder tokens/s in bfloat16;
ColBERT passages/s and token vectors per passage; BM25 build words/s and index bytes per word), and the figures
below from BENCHMARKS.md (query generation, retriever training, PPO). Collection sizes and mean passage lengths in
words are BEIR's published statistics (Thakur et al. 2021, table 1); the query counts, sequence limits, batch
sizes and PPO updates are those of configs/loop-{fiqa,msmarco,nq}.yaml. What is derived, not measured: a
collection's tokens per passage (its words x SciFact's tokens per word, capped at the configured limit), and the
compressed ColBERT size (2-bit residuals of 128 dims + a 4-byte centroid id per vector, PLAID's format).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BEIR = {"fiqa": (57_638, 132.32), "msmarco": (8_841_823, 55.98), "nq": (2_681_468, 78.88)}  # passages, words

# BENCHMARKS.md, "Query generation": SmolLM2-135M batched in bfloat16, 32 SciFact documents cut at 192 tokens,
# 24 new tokens: 3.53 queries/s.
GEN_QUERIES_PER_S, GEN_TOKENS = 3.53, 192 + 24
# BENCHMARKS.md, "Training throughput": MiniLM embedding training in bfloat16, (query, pos, hard neg) at 128
# tokens: 12.63 examples/s.
EMB_EXAMPLES_PER_S, EMB_SEQ = 12.63, 128
# BENCHMARKS.md, "The loop on all of SciFact": BM25 k=10 kept 631 of 800 generated queries, BM25 + dense 583;
# PPO (configs/loop-scifact-cpu.yaml): 8 updates of 8 rollouts, 2 PPO epochs, 24 new tokens, in 329 s (model loading
# included); scaled linearly in PPO epochs, which overstates it (the rollouts do not repeat).
KEEP = {1: 631 / 800, 2: 583 / 800}
LABELED = {"fiqa": 5_500, "msmarco": None, "nq": 0}  # train queries the retriever also learns from (None: config)
PPO_S_PER_ROLLOUT = 329 / 64


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def hours(s: float) -> str:
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.0f} min" if s >= 60 else f"{s:.0f} s"


def plan(costs: dict, name: str) -> dict:
    cfg = yaml.safe_load((REPO / "configs" / f"loop-{name}.yaml").read_text())
    passages, words = BEIR[name]
    tok_per_word = costs["tokens_per_passage_uncut"] / costs["words_per_passage"]
    tokens = words * tok_per_word
    bf16 = next(b for b in costs["bi_encoder"] if b["dtype"] == "bfloat16")
    dense_tok = min(tokens, 256)  # `ragtune eval` encodes at max_seq_length 256
    col = costs["colbert"]
    sci_col_tok = min(costs["tokens_per_passage_uncut"], col["document_length"])
    vectors = col["token_vectors_per_passage"] * min(tokens, col["document_length"]) / sci_col_tok
    bm = costs["bm25"]
    bm_words_per_s = bm["passages_per_s"] * costs["words_per_passage"]
    bm_bytes_per_word = bm["index_bytes_per_passage"] / costs["words_per_passage"]
    gen = cfg["generate"]
    queries = gen["sample_num"] * gen.get("query_per_document", 1)
    gen_tokens = gen["max_doc_tokens"] + gen["sampling"]["max_new_tokens"]
    kept = queries * KEEP[len(cfg["filters"])]
    labeled = LABELED[name] if LABELED[name] is not None else cfg["subset"]["train_queries"]
    ret = cfg["retriever"]
    seq = ret["max_seq_length"]
    examples = (kept + labeled) * ret["num_train_epochs"]
    emb_s = examples * (2 + ret["neg_nums"]) / 3 * seq / EMB_SEQ / EMB_EXAMPLES_PER_S  # texts x tokens per example
    ppo = cfg["ppo"]
    return {
        "passages": passages, "tokens": tokens, "dim": bf16["dim"],
        "bm25_s": passages * words / bm_words_per_s, "bm25_bytes": passages * words * bm_bytes_per_word,
        "dense_s": passages * dense_tok / bf16["tokens_per_s"],
        "flat_bytes": passages * bf16["bytes_per_passage"], "ivfpq_bytes": passages * (48 + 8),
        "colbert_s": passages / col["passages_per_s"] * min(tokens, col["document_length"]) / sci_col_tok,
        "colbert_vectors": passages * vectors, "colbert_f16_bytes": passages * vectors * col["bytes_per_token_float16"],
        "colbert_2bit_bytes": passages * vectors * (128 * 2 / 8 + 4),
        "queries": queries, "gen_s": queries / GEN_QUERIES_PER_S * gen_tokens / GEN_TOKENS, "kept": kept,
        "labeled": labeled, "retriever_steps": examples / ret["per_device_train_batch_size"], "retriever_s": emb_s,
        "ppo_updates": ppo["steps"], "ppo_s": ppo["steps"] * ppo["batch_size"] * PPO_S_PER_ROLLOUT
        * (ppo["max_new_tokens"] / 24) * (ppo["ppo_epochs"] / 2),
    }


def table(plans: dict[str, dict]) -> str:
    rows = [
        ("passages", lambda p: f"{p['passages']:,}"),
        ("MiniLM tokens per passage (derived)", lambda p: f"{p['tokens']:.0f}"),
        ("BM25 build, 2 cores", lambda p: hours(p["bm25_s"])),
        ("BM25 index on disk", lambda p: human_bytes(p["bm25_bytes"])),
        ("dense encode (MiniLM bf16), 2 cores", lambda p: hours(p["dense_s"])),
        ("flat index (float32, RAM and disk)", lambda p: human_bytes(p["flat_bytes"])),
        ("IVF-PQ index (48 B codes + 8 B id)", lambda p: human_bytes(p["ivfpq_bytes"])),
        ("ColBERT encode (dim 128, 180 tokens), 2 cores", lambda p: hours(p["colbert_s"])),
        ("ColBERT token vectors", lambda p: f"{p['colbert_vectors'] / 1e6:,.0f} M"),
        ("ColBERT index, float16 (ragtune's)", lambda p: human_bytes(p["colbert_f16_bytes"])),
        ("ColBERT index, 2-bit residual (PLAID)", lambda p: human_bytes(p["colbert_2bit_bytes"])),
        ("generated queries (config)", lambda p: f"{p['queries']:,}"),
        ("generation (SmolLM2-135M bf16), 2 cores", lambda p: hours(p["gen_s"])),
        ("kept after filters (SciFact keep rate)", lambda p: f"{p['kept']:,.0f}"),
        ("labeled train queries", lambda p: f"{p['labeled']:,}"),
        ("retriever training steps (config batch)", lambda p: f"{p['retriever_steps']:,.0f}"),
        ("retriever training, 2 cores", lambda p: hours(p["retriever_s"])),
        ("PPO updates (config)", lambda p: f"{p['ppo_updates']}"),
        ("PPO, 2 cores", lambda p: hours(p["ppo_s"])),
    ]
    names = list(plans)
    out = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    out += [f"| {label} | " + " | ".join(f(plans[n]) for n in names) + " |" for label, f in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("costs", type=Path, help="scale_costs.py --json output")
    args = ap.parse_args()
    costs = json.loads(args.costs.read_text())
    print(f"Per-item costs: {costs['hardware']}\n")
    print(table({name: plan(costs, name) for name in BEIR}))


if __name__ == "__main__":
    main()
