"""`ragtune train mine`: hard negatives for bi-encoder / ColBERT / reranker training from a BEIR split.

    cfg = load_config(MineConfig, None, ["data=../shared/data/beir/scifact", "out=runs/mined"])
    result = mine(cfg)     # out/embedding.jsonl, out/mined_negatives.jsonl, out/mine.config.yaml

Retrieval (BM25 or dense), the rank window `[neg_start, neg_end)` and positive exclusion are
`ragtune.data.convert_beir`'s miner, reused as is. `rescore: MODEL` adds a cross-encoder (or LLM
reranker) pass over the whole window: candidates the reranker scores at least `false_negative_ratio`
of the query's weakest positive are dropped as likely unjudged positives, and every written row
carries the reranker's `scores` (positives, then negatives), ready for score distillation.
"""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import Field

from ragtune.atomic import write_jsonl
from ragtune.data.beir import load_beir
from ragtune.data.convert import ConvertResult
from ragtune.data.convert_beir import BeirEmbeddingConfig, beir_to_embedding, mine_negatives, positives
from ragtune.data.formats import write_records
from ragtune.data.records import Embedding

MINED = "mined_negatives.jsonl"


class MineConfig(BeirEmbeddingConfig):
    """Mine `{query, pos, neg}` (and `scores` with a rescorer) from a BEIR split's qrels."""

    rescore: str | None = None
    """A reranker folder (`ragtune train reranker` output) that scores the window and filters false negatives."""
    false_negative_ratio: float = Field(0.95, gt=0)
    """Drop a candidate whose sigmoid(reranker score) >= ratio x that of the query's weakest positive."""
    rescore_batch_size: int = Field(32, ge=1)
    rescore_max_length: int | None = Field(None, ge=8)


def mine(cfg: MineConfig) -> ConvertResult:
    """Mine hard negatives; with `rescore`, filter false negatives and attach reranker scores."""
    from ragtune.config import dump_config

    if cfg.rescore is None:
        result = beir_to_embedding(cfg)
        result.outputs.append(dump_config(cfg, Path(cfg.out) / "mine.config.yaml"))
        return result
    import math

    from ragtune.retrieval.rerank import load_reranker

    ds = load_beir(cfg.data, [cfg.split])
    pos = positives(ds, cfg.split, cfg.min_score)
    window = mine_negatives(ds, pos, cfg.model_copy(update={"neg_per_query": cfg.neg_end - cfg.neg_start}))
    reranker = load_reranker(cfg.rescore, max_length=cfg.rescore_max_length)
    pairs = [(ds.queries[q], ds.corpus[d].content) for q in pos for d in [*pos[q], *(d for d, _ in window[q])]]
    flat = reranker.compute_score(pairs, batch_size=cfg.rescore_batch_size, show_progress=True)
    records, audit = [], []
    dropped = i = 0
    for q in pos:
        n_pos, cands = len(pos[q]), window[q]
        pos_scores, cand_scores = flat[i:i + n_pos], flat[i + n_pos:i + n_pos + len(cands)]
        i += n_pos + len(cands)
        floor = min(1 / (1 + math.exp(-s)) for s in pos_scores)
        keep = [(d, r, s) for (d, r), s in zip(cands, cand_scores, strict=True)
                if 1 / (1 + math.exp(-s)) < cfg.false_negative_ratio * floor]
        dropped += len(cands) - len(keep)
        picked = sorted(random.Random(f"{cfg.seed}:{q}").sample(keep, min(cfg.neg_per_query, len(keep))),
                        key=lambda x: x[1])
        records.append(Embedding(query=ds.queries[q], pos=[ds.corpus[d].content for d in pos[q]],
                                 neg=[ds.corpus[d].content for d, _, _ in picked] or None,
                                 scores=[*pos_scores, *(s for _, _, s in picked)],
                                 prompt_for_query=cfg.query_prompt))
        audit.append({"query_id": q, "positives": list(pos[q]), "negatives": [d for d, _, _ in picked],
                      "ranks": [r for _, r, _ in picked], "scores": [s for _, _, s in picked],
                      "positive_scores": pos_scores})
    out = Path(cfg.out)
    n = write_records(out / "embedding.jsonl", records)
    write_jsonl(out / MINED, audit)
    counts = {"records": n, "queries": len(pos), "candidates scored": len(flat),
              "dropped as likely false negatives": dropped,
              "negatives": sum(len(a["negatives"]) for a in audit),
              "queries without negatives": sum(not a["negatives"] for a in audit)}
    return ConvertResult(counts, [out / "embedding.jsonl", out / MINED, dump_config(cfg, out / "mine.config.yaml")])
