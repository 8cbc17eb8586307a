"""Difficulty of pseudo queries, from a trained retriever's results, and curriculum tools.

For each pseudo query: the rank and score of its source document, and the margin between
that score and the best other document's. Difficulty in [0, 1] mixes the two:

    difficulty = 0.5 * (1 - 1/rank) + 0.5 * sigmoid(-margin / temperature)

so an easy query (source ranked first by a wide margin) is near 0, and a query whose
source is not retrieved at all (rank = depth + 1, margin very negative) is near 1.

`curriculum`, `example_weights` and `plan_curriculum` turn difficulties into a training plan: an easy-to-hard
order, a difficulty band, or per-example loss weights (the loop's `retriever.curriculum`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ragtune.data.trec import Run


@dataclass(frozen=True)
class Difficulty:
    query_id: str
    rank: int | None
    """1-based rank of the source document; None when it is not in the results."""
    score: float | None
    margin: float
    """source score minus the best other document's score (negative: another document wins)."""
    difficulty: float

    def as_dict(self) -> dict:
        return asdict(self)


def bm25_gap(bm25_rank: int | None, rank: int | None) -> float:
    """How much higher BM25 ranks a query's source document than a retriever does: max(0, 1/BM25 rank - 1/rank),
    an absent rank counting as 1/rank = 0. The loop reward's gap part and the difficulty filter's gap selection.

    >>> bm25_gap(1, 2), bm25_gap(2, 1), bm25_gap(1, None), bm25_gap(None, 3)
    (0.5, 0.0, 1.0, 0.0)
    """
    return max(0.0, (1.0 / bm25_rank if bm25_rank else 0.0) - (1.0 / rank if rank else 0.0))


def score_difficulty(run: Run, sources: dict[str, str], depth: int | None = None,
                     temperature: float = 0.1) -> dict[str, Difficulty]:
    """`sources`: pseudo query id -> source doc id. Queries missing from the run are maximally hard."""
    out = {}
    for qid, doc in sources.items():
        hits = sorted(run.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        d = depth or max(len(hits), 1)
        rank = next((i for i, (h, _) in enumerate(hits, 1) if h == doc), None)
        score = dict(hits).get(doc)
        best_other = next((s for h, s in hits if h != doc), None)
        if score is None:  # not retrieved: below everything in the list
            margin = (hits[-1][1] - best_other) if hits and best_other is not None else -1.0
            margin = min(margin, -1e-6) - 1.0
        else:
            margin = score - best_other if best_other is not None else 1.0
        r = rank if rank is not None else d + 1
        z = max(-50.0, min(50.0, -margin / temperature))
        value = 0.5 * (1 - 1 / r) + 0.5 / (1 + math.exp(-z))
        out[qid] = Difficulty(qid, rank, score, float(margin), float(value))
    return out


def curriculum(difficulties: dict[str, Difficulty], mode: Literal["easy_to_hard", "hard_to_easy", "band"],
               band: tuple[float, float] = (0.2, 0.8)) -> list[str]:
    """Query ids in training order: sorted by difficulty, or only those inside `band` (sorted)."""
    items = sorted(difficulties.values(), key=lambda d: (d.difficulty, d.query_id))
    if mode == "hard_to_easy":
        items = items[::-1]
    elif mode == "band":
        lo, hi = band
        items = [d for d in items if lo <= d.difficulty <= hi]
    return [d.query_id for d in items]


def example_weights(difficulties: dict[str, Difficulty], target: float = 0.5, width: float = 0.25,
                    floor: float = 0.1) -> dict[str, float]:
    """Per-example weights peaking at the target difficulty (a Gaussian bump), never below `floor`,
    normalised to mean 1 so the loss scale is unchanged."""
    raw = {q: max(floor, math.exp(-((d.difficulty - target) ** 2) / (2 * width**2)))
           for q, d in difficulties.items()}
    mean = float(np.mean(list(raw.values()))) if raw else 1.0
    return {q: w / mean for q, w in raw.items()}


CurriculumMode = Literal["none", "easy_to_hard", "band", "weighted"]


@dataclass(frozen=True)
class CurriculumPlan:
    """How a retriever's training follows difficulty: the examples in training order (`ordered`: the trainer
    must keep it), or per-example loss weights (the trainer shuffles as usual)."""

    ids: list[str]
    ordered: bool
    weights: dict[str, float] | None = None


def plan_curriculum(difficulties: dict[str, Difficulty], mode: CurriculumMode, band: tuple[float, float] = (0.2, 0.8),
                    target: float = 0.5, width: float = 0.25, keep: frozenset[str] = frozenset()) -> CurriculumPlan:
    """easy_to_hard: every example, easiest first; band: only the examples inside `band` (plus those in `keep`,
    e.g. the labeled pairs, which a curriculum never drops), easiest first; weighted: every example, weighted by
    `example_weights` (a bump at `target`); none: every example as it is.

    >>> d = {q: Difficulty(q, 1, 1.0, 0.0, v) for q, v in (("a", 0.9), ("b", 0.1), ("c", 0.5))}
    >>> plan_curriculum(d, "easy_to_hard").ids
    ['b', 'c', 'a']
    >>> plan_curriculum(d, "band", band=(0.3, 0.95), keep=frozenset({"b"})).ids
    ['b', 'c', 'a']
    >>> plan_curriculum(d, "band", band=(0.3, 0.6)).ids
    ['c']
    """
    if mode == "easy_to_hard":
        return CurriculumPlan(curriculum(difficulties, "easy_to_hard"), ordered=True)
    if mode == "band":
        inside = set(curriculum(difficulties, "band", band)) | (keep & set(difficulties))
        return CurriculumPlan([q for q in curriculum(difficulties, "easy_to_hard") if q in inside], ordered=True)
    if mode == "weighted":
        return CurriculumPlan(sorted(difficulties), ordered=False,
                              weights=example_weights(difficulties, target=target, width=width))
    return CurriculumPlan(sorted(difficulties), ordered=False)
