"""Build a retriever from its name and config, and index a corpus with it."""

from __future__ import annotations

from collections.abc import Iterable

from ragtune.data.records import Doc
from ragtune.retrieval.base import Retriever
from ragtune.retrieval.bm25 import BM25Config, BM25Retriever
from ragtune.retrieval.colbert import ColbertConfig
from ragtune.retrieval.dense import DenseConfig

RETRIEVERS = ("bm25", "dense", "colbert")


def build_retriever(kind: str, bm25: BM25Config | None = None, dense: DenseConfig | None = None,
                    colbert: ColbertConfig | None = None) -> Retriever:
    if kind == "bm25":
        return BM25Retriever(bm25)
    if kind == "dense":
        from ragtune.retrieval.dense import DenseRetriever

        return DenseRetriever(dense)
    if kind == "colbert":  # late interaction (retrieval/colbert.py)
        from ragtune.retrieval.colbert import ColbertRetriever

        return ColbertRetriever(colbert)
    raise ValueError(f'unknown retriever "{kind}"; choose one of: {", ".join(RETRIEVERS)}')


def index_corpus(kind: str, docs: Iterable[Doc], bm25: BM25Config | None = None,
                 dense: DenseConfig | None = None, show_progress: bool = False,
                 colbert: ColbertConfig | None = None) -> Retriever:
    retriever = build_retriever(kind, bm25, dense, colbert)
    retriever.index(docs, show_progress=show_progress)
    return retriever
