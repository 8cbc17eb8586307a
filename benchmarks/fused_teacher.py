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

import json
import random
from pathlib import Path


def fused_scores(bm25: dict[str, float], ce: dict[str, float], weight: float, k: int) -> dict[str, float]:
    """One query's candidates -> weighted-RRF score of the cross-encoder's ranks (weight) and BM25's (1 - weight);
    a candidate without a BM25 score ranks last there.

    >>> s = fused_scores({"a": 3.0, "b": 1.0}, {"a": 0.0, "b": 5.0, "c": 9.0}, 1.0, 60)
    >>> sorted(s, key=s.get, reverse=True)
    ['c', 'b', 'a']
    """
    from ragtune.retrieval.rerank import fuse_with_first_stage

    first = {"q": {d: bm25.get(d, float("-inf")) for d in ce}}
    return fuse_with_first_stage(first, {"q": ce}, weight, top=len(ce), k=k)["q"]


def mine_fused(mix: Path, teacher: Path, out: Path, depth: int = 20, per_query: int = 4, seed: int = 0) -> dict:
    """Write teacher-scored rows for every judged train query of the BEIR folder `mix` (see the module doc)."""
    from ragtune.atomic import write_jsonl
    from ragtune.data.beir import load_beir
    from ragtune.data.convert_beir import positives
    from ragtune.data.formats import write_records
    from ragtune.data.records import Embedding
    from ragtune.retrieval.bm25 import BM25Config
    from ragtune.retrieval.factory import index_corpus
    from ragtune.retrieval.mining import MINED
    from ragtune.retrieval.rerank import FUSION_FILE, load_reranker

    fusion = json.loads((teacher / FUSION_FILE).read_text())
    ds = load_beir(mix, ["train"])
    pos = positives(ds, "train", 1)
    bm25 = index_corpus("bm25", ds.corpus.values(), BM25Config()).search({q: ds.queries[q] for q in pos}, k=100)
    cands = {}
    for q in pos:
        ranked = [d for d, _ in sorted(bm25.get(q, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:depth]]
        cands[q] = list(dict.fromkeys([*pos[q], *ranked]))
    pairs = [(ds.queries[q], ds.corpus[d].content) for q in pos for d in cands[q]]
    flat = iter(load_reranker(teacher, max_length=160).compute_score(pairs, batch_size=32, show_progress=True))
    records, audit, dropped = [], [], 0
    for q in pos:
        fused = fused_scores(bm25.get(q, {}), {d: next(flat) for d in cands[q]}, fusion["weight"], fusion["k"])
        floor = min(fused[d] for d in pos[q])
        keep = [d for d in cands[q] if d not in pos[q] and fused[d] < floor]
        dropped += sum(d not in pos[q] for d in cands[q]) - len(keep)
        picked = random.Random(f"{seed}:{q}").sample(keep, min(per_query, len(keep)))
        records.append(Embedding(query=ds.queries[q], pos=[ds.corpus[d].content for d in pos[q]],
                                 neg=[ds.corpus[d].content for d in picked] or None,
                                 scores=[*(fused[d] for d in pos[q]), *(fused[d] for d in picked)]))
        audit.append({"query_id": q, "positives": list(pos[q]), "negatives": picked})
    write_jsonl(out / MINED, audit)
    write_records(out / "embedding.jsonl", records)  # last: its presence says the mining finished
    return {"queries": len(pos), "candidates scored": len(pairs), "dropped as likely false negatives": dropped,
            "fusion weight": fusion["weight"]}
