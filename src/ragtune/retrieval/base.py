"""The Retriever protocol and the Run type every stage exchanges."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from ragtune.data.records import Doc
from ragtune.data.trec import Run

__all__ = ["DocIndex", "Retriever", "Run", "top_k", "check_k"]


@runtime_checkable
class Retriever(Protocol):
    """Index documents once, then answer batches of queries.

    `search` returns `{qid: {docid: score}}` with at most k documents per query,
    higher scores better. Implementations save to and load from a folder.
    """

    name: str

    def index(self, docs: Iterable[Doc]) -> None: ...

    def search(self, queries: Mapping[str, str], k: int = 100) -> Run: ...

    def save(self, path: str | Path) -> None: ...


class DocIndex:
    """What the in-memory retrievers (BM25, dense, ColBERT) share: their document ids and the checks before a search."""

    label = "document"
    doc_ids: list[str]

    def __len__(self) -> int:
        return len(self.doc_ids)

    def _plan(self, built: bool, queries: Mapping[str, str], k: int) -> tuple[list[str], int]:
        """(query ids, k capped at the index size), or a ValueError when nothing was indexed or loaded."""
        if not built:
            raise ValueError(f"the {self.label} index is empty: call index(docs) or {type(self).__name__}.load(path) "
                             "first")
        return list(queries), check_k(k, len(self.doc_ids))


def check_k(k: int, num_docs: int) -> int:
    if k < 1:
        raise ValueError(f"k={k}: pass k >= 1")
    if num_docs == 0:
        raise ValueError("the index is empty: call index(docs) with at least one document first")
    return min(k, num_docs)


def top_k(run: Run, k: int) -> Run:
    """Keep each query's k best documents."""
    return {q: dict(sorted(d.items(), key=lambda kv: -kv[1])[:k]) for q, d in run.items()}
