"""Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): combine runs by rank, not by score.

    >>> rrf([{"q": {"a": 9.0, "b": 1.0}}, {"q": {"b": 0.9, "c": 0.8}}], k=60)["q"]
    {'b': 0.03252247488101534, 'a': 0.01639344262295082, 'c': 0.016129032258064516}

Each document scores sum over runs of 1 / (k + rank), rank starting at 1; a document missing from a run gets
nothing from it. Scores of different retrievers (BM25 vs cosine) are never compared, so no normalisation is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragtune.data.trec import Run


def rrf(runs: Sequence[Run], k: int = 60, weights: Sequence[float] | None = None) -> Run:
    """Fuse `runs` ({qid: {docid: score}}, higher better); returns every query's documents sorted best first.

    Ties inside a run are broken by document id, so the fusion is deterministic.
    """
    if k < 0:
        raise ValueError(f"k={k}: the RRF constant must be >= 0 (60 is the usual choice)")
    if weights is not None and len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} runs; give one weight per run")
    fused: dict[str, dict[str, float]] = {}
    for i, run in enumerate(runs):
        w = 1.0 if weights is None else float(weights[i])
        for qid, docs in run.items():
            acc = fused.setdefault(qid, {})
            ranked = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
            for rank, (doc, _score) in enumerate(ranked, start=1):
                acc[doc] = acc.get(doc, 0.0) + w / (k + rank)
    return {q: dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))) for q, d in fused.items()}
