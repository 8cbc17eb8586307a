"""Rank of a pseudo query's source document, shared by the BM25 and dense filters.

With `sample_doc_num`, ranks are taken inside one seeded random sample of the corpus that
always contains every candidate's source document (SPTAR's cheap setting); otherwise
inside the whole corpus.
"""

from __future__ import annotations

import random

from pydantic import Field

from ragtune.config import ConfigModel
from ragtune.data.trec import Run
from ragtune.filters.base import Candidate


class RankFilterSettings(ConfigModel):
    """Where the BM25 and dense filters rank a query's source document."""

    sample_doc_num: int | None = Field(None, ge=1)
    """Rank inside a seeded sample of this many documents (always holding the sources); None = whole corpus."""
    record_depth: int = Field(100, ge=1)
    """Ranks are measured (and recorded in provenance) down to max(k, record_depth)."""
    seed: int = 0


def doc_pool(all_ids: list[str], candidates: list[Candidate], sample_doc_num: int | None, seed: int) -> list[str]:
    if not sample_doc_num or sample_doc_num >= len(all_ids):
        return all_ids
    sources = {c.doc_id for c in candidates}
    others = [d for d in all_ids if d not in sources]
    rng = random.Random(seed)
    extra = rng.sample(others, max(0, min(len(others), sample_doc_num - len(sources))))
    keep = sources | set(extra)
    return [d for d in all_ids if d in keep]


def source_ranks(run: Run, candidates: list[Candidate]) -> list[int | None]:
    """1-based rank of each candidate's source document in its query's results; None when absent."""
    ranks: list[int | None] = []
    for c in candidates:
        hits = run.get(c.query_id, {})
        order = sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))
        ranks.append(next((i for i, (d, _) in enumerate(order, 1) if d == c.doc_id), None))
    return ranks
