"""Sparse filter: keep a pseudo query when BM25 ranks its source document within top-k."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ragtune.data.records import Doc
from ragtune.filters.base import Candidate, Verdict, register
from ragtune.filters.rank import RankFilterSettings, doc_pool, source_ranks
from ragtune.retrieval.bm25 import BM25Config, BM25Retriever


class BM25FilterConfig(RankFilterSettings):
    name: Literal["bm25"] = "bm25"
    k: int = Field(70, ge=1)
    """Keep when the source document ranks within top-k (reference: 70 on FiQA, 30 on MS MARCO)."""
    bm25: BM25Config = Field(default_factory=BM25Config)


class BM25Filter:
    name = "bm25"

    def __init__(self, cfg: BM25FilterConfig, corpus: dict[str, Doc]):
        self.cfg, self.corpus = cfg, corpus

    def __call__(self, candidates: list[Candidate]) -> list[Verdict]:
        if not candidates:
            return []
        pool = doc_pool(list(self.corpus), candidates, self.cfg.sample_doc_num, self.cfg.seed)
        retriever = BM25Retriever(self.cfg.bm25)
        retriever.index(self.corpus[d] for d in pool)
        depth = min(max(self.cfg.k, self.cfg.record_depth), len(pool))
        run = retriever.search({c.query_id: c.text for c in candidates}, k=depth)
        ranks = source_ranks(run, candidates)
        return [Verdict(r is not None and r <= self.cfg.k, {"bm25_rank": r}) for r in ranks]


@register("bm25")
def build(cfg: BM25FilterConfig, corpus: dict[str, Doc], **_) -> BM25Filter:
    return BM25Filter(cfg, corpus)
