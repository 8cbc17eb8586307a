"""Dense filter: the BM25 test with a bi-encoder; k=1 is Promptagator's round-trip consistency.

The corpus is encoded once per model (DenseRetriever's on-disk cache), so running the
filter again, or on another round's queries, only encodes the queries.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ragtune.data.records import Doc
from ragtune.filters.base import Candidate, Verdict, register
from ragtune.filters.rank import RankFilterSettings, doc_pool
from ragtune.retrieval.dense import DenseConfig, DenseRetriever


class DenseFilterConfig(RankFilterSettings):
    name: Literal["dense"] = "dense"
    k: int = Field(1, ge=1)
    """Keep when the source document ranks within top-k; 1 = round-trip consistency."""
    dense: DenseConfig = Field(default_factory=DenseConfig)
    """Any sentence-transformers model, or one ragtune trained (e.g. on the few labeled pairs)."""


class DenseFilter:
    name = "dense"

    def __init__(self, cfg: DenseFilterConfig, corpus: dict[str, Doc], show_progress: bool = False):
        self.cfg, self.corpus = cfg, corpus
        self.retriever = DenseRetriever(cfg.dense)
        self.retriever.index(corpus.values(), show_progress=show_progress)

    def __call__(self, candidates: list[Candidate]) -> list[Verdict]:
        if not candidates:
            return []
        pool = doc_pool(list(self.corpus), candidates, self.cfg.sample_doc_num, self.cfg.seed)
        row = {d: i for i, d in enumerate(self.retriever.doc_ids)}
        pool_rows = np.array([row[d] for d in pool])
        pool_pos = {d: i for i, d in enumerate(pool)}
        emb = np.asarray(self.retriever.embeddings)[pool_rows]
        q = self.retriever.encode([c.text for c in candidates], self.cfg.dense.query_prompt)
        depth = min(max(self.cfg.k, self.cfg.record_depth), len(pool))
        verdicts = []
        for start in range(0, len(candidates), 1024):  # bounded memory: 1024 x |pool| scores at a time
            scores = q[start:start + 1024] @ emb.T
            for c, s in zip(candidates[start:start + 1024], scores, strict=True):
                own = s[pool_pos[c.doc_id]]
                rank = int((s > own).sum()) + 1  # ties resolved in the query's favour
                rank_or_none = rank if rank <= depth else None
                verdicts.append(Verdict(rank <= self.cfg.k, {"dense_rank": rank_or_none}))
        return verdicts


@register("dense")
def build(cfg: DenseFilterConfig, corpus: dict[str, Doc], show_progress: bool = False, **_) -> DenseFilter:
    return DenseFilter(cfg, corpus, show_progress)
