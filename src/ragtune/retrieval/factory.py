"""Build a retriever from its name and config, and index a corpus with it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


def trained_settings(kind: str, model: str, dtype: str = "float32", index: str = "flat") -> dict[str, Any]:
    """The retriever name and config of a trained retriever of the loop's kind (`bi_encoder` or `colbert`), as
    `index_corpus` and `ragtune eval`'s EvalConfig take them: {"retriever": name, name: config}."""
    if kind == "colbert":
        return {"retriever": "colbert", "colbert": ColbertConfig(model=model, index=index)}
    if kind == "bi_encoder":
        return {"retriever": "dense", "dense": DenseConfig(model=model, dtype=dtype)}
    raise ValueError(f'unknown trained retriever kind "{kind}"; choose bi_encoder or colbert')


def index_trained(kind: str, model: str, docs: Iterable[Doc], dtype: str = "float32", index: str = "flat",
                  show_progress: bool = False) -> Retriever:
    """A trained retriever of the loop's kind with `docs` indexed: what the difficulty filter, the loop reward and
    the retriever stage all judge queries with."""
    settings = trained_settings(kind, model, dtype, index)
    return index_corpus(settings.pop("retriever"), docs, show_progress=show_progress, **settings)
