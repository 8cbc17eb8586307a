"""A documented, seeded subset of a BEIR folder, so a CPU demo finishes in minutes.

Kept: every document judged in any kept query's qrels, plus a random sample of the
others up to `corpus_docs`; `test_queries` judged test queries (seeded); all train queries.
"""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import Field

from ragtune.config import ConfigModel
from ragtune.data.beir import load_beir, write_beir


class SubsetConfig(ConfigModel):
    corpus_docs: int | None = Field(None, ge=1)
    """Documents kept (judged ones always included); null = the whole corpus."""
    test_queries: int | None = Field(None, ge=1)
    """Test queries kept; null = all."""
    train_queries: int | None = Field(None, ge=1)
    """Train queries kept (the labeled pairs); null = all."""
    seed: int = 0


def make_subset(src: Path, out: Path, cfg: SubsetConfig, test_split: str = "test",
                splits: list[str] | None = None) -> dict[str, int]:
    """`splits`: the qrels splits kept (default all; the loop's unlabeled mode keeps only the test split, so no
    labeled pair exists downstream)."""
    ds = load_beir(src)
    rng = random.Random(cfg.seed)
    qrels = {}
    for split, q in ds.qrels.items():
        if splits is not None and split not in splits:
            continue
        ids = sorted(q)
        limit = cfg.test_queries if split == test_split else cfg.train_queries if split == "train" else None
        if limit is not None and limit < len(ids):
            ids = sorted(rng.sample(ids, limit))
        qrels[split] = {qid: q[qid] for qid in ids}
    judged = {d for q in qrels.values() for docs in q.values() for d in docs}
    others = sorted(set(ds.corpus) - judged)
    n_extra = len(others) if cfg.corpus_docs is None else max(0, cfg.corpus_docs - len(judged))
    keep = judged | set(rng.sample(others, min(n_extra, len(others))))
    corpus = [d for d in ds.corpus.values() if d.id in keep]
    queries = {qid: ds.queries[qid] for q in qrels.values() for qid in q}
    write_beir(out, corpus, queries, qrels)
    return {"docs": len(corpus), **{f"{s} queries": len(q) for s, q in qrels.items()}}
