"""What a filter sees and returns, and the registry that builds filters from config.

A filter gets the candidates still alive and returns, per candidate, whether it is kept
and the values it measured (written into provenance under `filters`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ragtune.data.beir import load_qrels, load_queries
from ragtune.data.errors import DataFormatError
from ragtune.data.jsonl import iter_jsonl


@dataclass(frozen=True)
class Candidate:
    query_id: str
    doc_id: str
    text: str


@dataclass
class Verdict:
    kept: bool
    values: dict[str, Any] = field(default_factory=dict)
    """Measurements recorded in provenance, e.g. {"bm25_rank": 3}."""


class Filter(Protocol):
    name: str

    def __call__(self, candidates: list[Candidate]) -> list[Verdict]: ...


FILTERS: dict[str, Callable[..., Filter]] = {}


def register(name: str):
    def deco(builder):
        FILTERS[name] = builder
        return builder

    return deco


@dataclass
class PseudoQueries:
    """A generated pseudo-query folder: BEIR queries + qrels/train.tsv + provenance.jsonl."""

    folder: Path
    candidates: list[Candidate]
    provenance: list[dict[str, Any]]


def load_pseudo_queries(folder: str | Path) -> PseudoQueries:
    """Read a pseudo-query folder; each query must link to exactly one source document."""
    folder = Path(folder)
    queries = load_queries(folder / "queries.jsonl")
    qrels = load_qrels(folder / "qrels" / "train.tsv", query_ids=queries)
    prov_path = folder / "provenance.jsonl"
    provenance = [row for _, row in iter_jsonl(prov_path)] if prov_path.exists() else []
    candidates = []
    for qid, text in queries.items():
        docs = qrels.get(qid, {})
        if len(docs) != 1:
            raise DataFormatError(folder / "qrels" / "train.tsv", None,
                                  f'pseudo query "{qid}" links to {len(docs)} documents',
                                  hint="each pseudo query needs exactly one source document in qrels/train.tsv")
        candidates.append(Candidate(qid, next(iter(docs)), text))
    if not provenance:  # a plain BEIR query set: make provenance rows so every candidate is accounted for
        provenance = [{"query_id": c.query_id, "doc_id": c.doc_id, "filters": {}, "failed": False}
                      for c in candidates]
    return PseudoQueries(folder, candidates, provenance)
