"""A stronger teacher for margin_distill.py: the cross-encoder fused with BM25 at the weight its dev slice chose.

`ragtune train reranker` writes `ragtune_fusion.json` beside the model: the weighted-RRF weight of the reranker's
ranks against BM25's that scored best on the dev slice (0.7 for the twenty-fourth session's teacher: dev NDCG@10
0.735, against 0.702 for the cross-encoder alone and 0.7065 for BM25). That fused ranker is the best teacher
ragtune can build offline, and its per-pair score is its RRF value, so it can grade candidates like a cross-encoder:

    mine_fused(mix, teacher, out)   # out/embedding.jsonl {query, pos, neg, scores}, out/mined_negatives.jsonl

Each query's candidates are BM25's top `depth` and its positives (a positive beyond BM25's top 100 ranks last
there). A candidate the fusion scores at or above the query's weakest positive is dropped as a likely unjudged
positive, and `per_query` of the rest are kept (seeded per query), with the fused scores of positives and negatives.
"""

from __future__ import annotations

import random
from pathlib import Path


def mine_fused(mix: Path, teacher: Path, out: Path, depth: int = 20, per_query: int = 4, seed: int = 0) -> dict:
    """Write teacher-scored rows for every judged train query of the BEIR folder `mix` (see the module doc).

    The library's pieces (`ragtune train mine rescore_fusion=true` is this grading), with one difference kept so
    the committed table reruns to its figures: the picked negatives stay in the draw's order (the library sorts
    them by rank)."""
    from ragtune.atomic import write_jsonl
    from ragtune.data.beir import load_beir
    from ragtune.data.convert_beir import positives
    from ragtune.data.formats import write_records
    from ragtune.data.records import Embedding
    from ragtune.retrieval import mining
    from ragtune.retrieval.rerank import load_reranker, read_dev_fusion

    fusion = read_dev_fusion(teacher, "--teacher", "train the teacher with a dev slice")
    ds = load_beir(mix, ["train"])
    pos = positives(ds, "train", 1)
    window_cfg = mining.MiningSettings(neg_start=0, neg_end=depth)
    ranked = mining.rankings(ds, pos, window_cfg, mining.FUSION_DEPTH)
    cands = {q: [*pos[q], *(d for d, _ in mining.rank_window(ranked[q], pos[q], window_cfg))] for q in pos}
    pairs = [(ds.queries[q], ds.corpus[d].content) for q in pos for d in cands[q]]
    flat = load_reranker(teacher, max_length=160).compute_score(pairs, batch_size=32, show_progress=True)
    records, audit, dropped, i = [], [], 0, 0
    for q in pos:
        grades = mining.fused_grades(dict(ranked[q]), cands[q], flat[i:i + len(cands[q])], fusion)
        i += len(cands[q])
        fused = dict(zip(cands[q], grades, strict=True))
        floor = [fused[d] for d in pos[q]]
        keep = [d for d in cands[q][len(pos[q]):] if not mining.likely_positive(fused[d], floor, 1.0, fused=True)]
        dropped += len(cands[q]) - len(pos[q]) - len(keep)
        picked = random.Random(f"{seed}:{q}").sample(keep, min(per_query, len(keep)))
        records.append(Embedding(query=ds.queries[q], pos=[ds.corpus[d].content for d in pos[q]],
                                 neg=[ds.corpus[d].content for d in picked] or None,
                                 scores=[*(fused[d] for d in pos[q]), *(fused[d] for d in picked)]))
        audit.append({"query_id": q, "positives": list(pos[q]), "negatives": picked})
    write_jsonl(out / mining.MINED, audit)
    write_records(out / "embedding.jsonl", records)  # last: its presence says the mining finished
    return {"queries": len(pos), "candidates scored": len(pairs), "dropped as likely false negatives": dropped,
            "fusion weight": fusion["weight"]}
