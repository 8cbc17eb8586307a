"""The label-free guard: never ship a retriever worse than the zero-shot encoder it started from.

Without target labels, the only queries with known answers are the pseudo queries themselves. The guard holds out
the kept pseudo queries of a seeded sample of documents (`holdout`, round 0): no query of these documents, in any
round, reaches retriever training. The held-out queries (BM25 and the zero-shot encoder both found their source
document: that is what the consistency filters kept) are split in two:

- `select`: the retriever's dev slice when the run has no labels, so the trainer picks its checkpoint on them;
- `decide`: after training, the round's retriever and the zero-shot encoder are scored on them over the whole corpus
  (NDCG@10, the source document as the one relevant one). The trained retriever ships only when it is better with a
  one-sided paired t-test p < `alpha`; otherwise the zero-shot encoder ships, and the report says so.

Selecting a checkpoint and deciding on different queries keeps the decision free of the selection's optimism.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pydantic import Field

from ragtune.atomic import write_json
from ragtune.config import ConfigModel
from ragtune.data.beir import load_corpus, load_qrels, load_queries, write_beir

SELECT, DECIDE, DOCS = "select", "decide", "documents.txt"


class GuardConfig(ConfigModel):
    enabled: bool = False
    """Hold out pseudo queries and ship the zero-shot encoder unless a trained retriever beats it on them."""
    documents: int = Field(200, ge=4)
    """Documents whose kept pseudo queries are held out (a seeded sample of round 0's kept ones)."""
    select_fraction: float = Field(0.5, ge=0, lt=1)
    """Share of the held-out queries that form the retriever's dev slice in a run without labels (the rest decide)."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """The trained retriever ships when it beats zero-shot on the decide queries with one-sided p below this."""
    metric: str = "ndcg@10"
    candidates: int = Field(10, ge=1)
    """BM25 candidates per select query for the dev slice's sub-corpus (dev.candidates)."""
    seed: int = 0


def holdout(kept: Path, data: Path, out: Path, cfg: GuardConfig) -> dict[str, Any]:
    """Split round 0's kept pseudo queries into guard documents' queries (select / decide) and the rest."""
    queries = load_queries(kept / "queries.jsonl")
    qrels = load_qrels(kept / "qrels" / "train.tsv")
    by_doc: dict[str, list[str]] = {}
    for q in sorted(qrels):
        by_doc.setdefault(next(iter(qrels[q])), []).append(q)
    docs = sorted(by_doc)
    if len(docs) < 4:
        raise ValueError(f"guard: only {len(docs)} documents have kept pseudo queries; the guard needs at least 4 "
                         "(generate more, or turn guard.enabled off)")
    rng = random.Random(cfg.seed)
    held = sorted(rng.sample(docs, min(cfg.documents, len(docs) // 2)))
    rng.shuffle(held)
    n_select = round(len(held) * cfg.select_fraction)
    parts = {SELECT: held[:n_select], DECIDE: held[n_select:]}
    corpus = load_corpus(data / "corpus.jsonl")
    counts: dict[str, Any] = {"documents": len(held)}
    for name, part in parts.items():
        qs = {q: queries[q] for d in part for q in by_doc[d]}
        write_beir(out / name, corpus.values() if name == SELECT else None, qs,
                   {"train": {q: qrels[q] for q in qs}})
        counts[f"{name}_queries"] = len(qs)
    (out / DOCS).write_text("\n".join(sorted(held)) + "\n", encoding="utf-8")
    return counts


def held_documents(holdout_dir: Path | None) -> set[str]:
    if holdout_dir is None:
        return set()
    return {line.strip() for line in (holdout_dir / DOCS).read_text(encoding="utf-8").splitlines() if line.strip()}


def select_dev(holdout_dir: Path, cfg: GuardConfig) -> dict[str, Any]:
    """The retriever's dev slice for a run without labels: every select query (fraction 1.0 of its folder)."""
    return {"data": str(holdout_dir / SELECT), "split": "train", "fraction": 1.0, "candidates": cfg.candidates}


def guard(data: Path, holdout_dir: Path, trained: Path, zero_shot: str, out: Path, cfg: GuardConfig,
          dense_dtype: str = "float32") -> dict[str, Any]:
    """Score the trained retriever and the zero-shot encoder on the decide queries; decide which ships."""
    from scipy.stats import ttest_rel

    from ragtune.evaluate.metrics import evaluate
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    queries = load_queries(holdout_dir / DECIDE / "queries.jsonl")
    qrels = load_qrels(holdout_dir / DECIDE / "qrels" / "train.tsv")
    corpus = load_corpus(data / "corpus.jsonl")
    per_query: dict[str, dict[str, float]] = {}
    means: dict[str, float] = {}
    for name, model in (("zero_shot", zero_shot), ("trained", str(trained))):
        r = DenseRetriever(DenseConfig(model=model, dtype=dense_dtype))
        r.index(corpus.values())  # the cache shares these embeddings with the evaluate and difficulty stages
        res = evaluate(qrels, r.search(queries, k=min(100, len(corpus))), [cfg.metric])
        per_query[name], means[name] = res.per_query[cfg.metric], res.metrics[cfg.metric]
    qids = sorted(per_query["zero_shot"])
    a = [per_query["trained"][q] for q in qids]
    b = [per_query["zero_shot"][q] for q in qids]
    differs = any(x != y for x, y in zip(a, b, strict=True))
    p = float(ttest_rel(a, b, alternative="greater").pvalue) if differs and len(qids) > 1 else 1.0
    p = 1.0 if p != p else p
    ship = means["trained"] > means["zero_shot"] and p < cfg.alpha
    decision = {"queries": len(qids), "metric": cfg.metric, "trained": means["trained"],
                "zero_shot": means["zero_shot"], "delta": means["trained"] - means["zero_shot"],
                "p_one_sided": p, "alpha": cfg.alpha, "ships": "trained" if ship else "zero_shot",
                "shipped_model": str(trained) if ship else zero_shot}
    write_json(out / "guard.json", decision)
    return decision
