"""Difficulty filter: keep pseudo queries that a trained retriever finds neither trivial nor hopeless.

Each candidate's difficulty is `evaluate.difficulty`'s (the retriever's rank of the source document and its score
margin over the best other document, in [0, 1]); a candidate is kept when it lies inside `band`. With
`per_document`, at most that many are kept per source document, those nearest the band's centre first: generate
several queries per document, keep the ones in the band (best-of-n selection toward the target the loop's RL
rewards, without training the generator).

`select: gap` keeps instead, per source document, up to `per_document` candidates that BM25 ranks the source document
higher for than the retriever does, the largest gap first (the loop reward's gap part, max(0, 1/BM25 rank -
1/retriever rank), BM25 searched to `depth`): best-of-n toward what the retriever misses and BM25 finds.

`select: random` is the control for either claim: per source document it keeps as many candidates as `count_like`
(`band` or `gap`) would, drawn at random (seeded) from all of that document's candidates, so the two differ only in
*which* queries are kept.

In `ragtune run` a difficulty filter that names no model judges with the previous round's retriever and applies
from round 1 on, in the preferences' band unless it names one (pipeline/loop_rounds.run_filters); alone
(`ragtune filter`) it needs `model`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Literal

from pydantic import Field

from ragtune.config import Band, ConfigModel
from ragtune.data.records import Doc
from ragtune.evaluate.difficulty import bm25_gap, score_difficulty
from ragtune.filters.base import Candidate, Verdict, register


class DifficultyFilterConfig(ConfigModel):
    name: Literal["difficulty"] = "difficulty"
    model: str | None = None
    """The retriever that judges (a bi-encoder or ColBERT folder); in `ragtune run`, unset = the previous round's."""
    kind: Literal["bi_encoder", "colbert"] = "bi_encoder"
    band: Band = (0.3, 0.7)
    """Keep candidates whose difficulty lies inside this band; in `ragtune run`, unset = `preferences.band`."""
    per_document: int | None = Field(None, ge=1)
    """At most this many kept per source document (nearest the band's centre first, or the largest gaps); None =
    every one in the band (with a gap)."""
    select: Literal["band", "gap", "random"] = "band"
    """gap: per document up to `per_document` with a BM25 gap, largest first; random: the control, per document as
    many as `count_like` keeps, drawn at random from all its candidates."""
    count_like: Literal["band", "gap"] = "band"
    """select random: the selection whose per-document counts the random draw matches."""
    depth: int = Field(100, ge=1)
    temperature: float = Field(0.1, gt=0)
    """Difficulty's margin temperature (the loop's `difficulty_temperature`)."""
    dtype: str = "float32"
    index: Literal["flat", "plaid"] = "flat"
    """kind colbert: the token index to search with."""
    seed: int = 0

    @property
    def by_gap(self) -> bool:
        """Whether the BM25 gap selects or counts (and must be measured)."""
        return self.select == "gap" or (self.select == "random" and self.count_like == "gap")

    @property
    def report_keys(self) -> list[str]:
        """The settings the filter report shows: what the selection reads."""
        keys = ["band", "per_document", "select"] + (["count_like"] if self.select == "random" else [])
        return [k for k in keys if k != "band" or not self.by_gap]


class DifficultyFilter:
    name = "difficulty"

    def __init__(self, cfg: DifficultyFilterConfig, corpus: dict[str, Doc], show_progress: bool = False):
        if not cfg.model:
            raise ValueError("the difficulty filter needs `model`: the retriever whose difficulty it keeps a band of")
        self.cfg, self.corpus, self.show_progress = cfg, corpus, show_progress

    def difficulties(self, candidates: list[Candidate]) -> tuple[list[float], list[int | None]]:
        """Each candidate's difficulty and the retriever's rank of its source document (None below `depth`)."""
        from ragtune.retrieval.factory import index_trained

        cfg, docs = self.cfg, list(self.corpus.values())
        r = index_trained(cfg.kind, str(cfg.model), docs, cfg.dtype, cfg.index, self.show_progress)
        depth = min(cfg.depth, len(docs))
        run = r.search({c.query_id: c.text for c in candidates}, k=depth, show_progress=self.show_progress)
        diff = score_difficulty(run, {c.query_id: c.doc_id for c in candidates}, depth=depth,
                                temperature=cfg.temperature)
        return [diff[c.query_id].difficulty for c in candidates], [diff[c.query_id].rank for c in candidates]

    def gaps(self, candidates: list[Candidate], ranks: list[int | None]) -> list[float]:
        """max(0, 1/BM25 rank - 1/retriever rank) per candidate, both searched to `depth` (absent: 1/rank = 0)."""
        from ragtune.filters.rank import source_ranks
        from ragtune.retrieval.bm25 import BM25Retriever

        bm25 = BM25Retriever()
        bm25.index(self.corpus.values())
        run = bm25.search({c.query_id: c.text for c in candidates}, k=min(self.cfg.depth, len(self.corpus)))
        return [bm25_gap(b, r) for b, r in zip(source_ranks(run, candidates), ranks, strict=True)]

    def __call__(self, candidates: list[Candidate]) -> list[Verdict]:
        if not candidates:
            return []
        values, ranks = self.difficulties(candidates)
        gaps = self.gaps(candidates, ranks) if self.cfg.by_gap else None
        keep = select(candidates, values, self.cfg, gaps)
        return [Verdict(i in keep, {"difficulty": round(v, 6), **({"gap": round(gaps[i], 6)} if gaps else {})})
                for i, v in enumerate(values)]


def select(candidates: list[Candidate], values: list[float], cfg: DifficultyFilterConfig,
           gaps: list[float] | None = None) -> set[int]:
    """Indices of the kept candidates; `gaps` (per candidate) is needed when `gap` selects or counts.

    >>> cs = [Candidate(q, d, q) for q, d in (("a", "x"), ("b", "x"), ("c", "x"), ("d", "y"))]
    >>> sorted(select(cs, [0.5, 0.35, 0.9, 0.1], DifficultyFilterConfig(model="m")))
    [0, 1]
    >>> sorted(select(cs, [0.5, 0.35, 0.9, 0.1], DifficultyFilterConfig(model="m", per_document=1)))
    [0]
    >>> sorted(select(cs, [0.5, 0.35, 0.9, 0.1], DifficultyFilterConfig(model="m", select="gap"), [0, .5, .2, 0]))
    [1, 2]
    """
    if cfg.by_gap and (gaps is None or len(gaps) != len(candidates)):
        raise ValueError("selecting or counting by `gap` needs one gap per candidate")
    lo, hi = cfg.band
    centre = (lo + hi) / 2
    by_doc: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(candidates):
        by_doc[c.doc_id].append(i)
    rng = random.Random(cfg.seed)
    kept: set[int] = set()
    for doc in sorted(by_doc):
        ids = by_doc[doc]
        if cfg.by_gap:
            inside = sorted((i for i in ids if gaps[i] > 0), key=lambda i: (-gaps[i], candidates[i].query_id))
        else:
            inside = sorted((i for i in ids if lo <= values[i] <= hi),
                            key=lambda i: (abs(values[i] - centre), candidates[i].query_id))
        n = len(inside) if cfg.per_document is None else min(len(inside), cfg.per_document)
        kept |= set(rng.sample(sorted(ids), n)) if cfg.select == "random" else set(inside[:n])
    return kept


@register("difficulty")
def build(cfg: DifficultyFilterConfig, corpus: dict[str, Doc], show_progress: bool = False,
          **_) -> DifficultyFilter:
    return DifficultyFilter(cfg, corpus, show_progress)
