"""The loop's reward for a generated query, computed online: what the loop wants from the generator, in order.

1. **filter outcome**: the source document is in BM25's top `bm25_k` and the zero-shot encoder's top `dense_k`
   (the consistency filters the loop's queries must pass to reach the retriever at all);
2. **difficulty band**: the query's difficulty under the round's retriever (`evaluate.difficulty`) is inside `band`
   (not trivial, not hopeless): 1 inside, falling linearly outside to 0 at `band_falloff` from the band (the
   default 1.0 is 1 - distance, under which a trivial query still scores 0.7-0.8);
3. **rank**: the reciprocal rank of the source document under the round's retriever;
4. **gap** (off by default, `gap_weight`): how much higher BM25 ranks the source document than the round's retriever
   does, max(0, 1/BM25 rank - 1/retriever rank). It pays for a query the retriever misses while a judge that does
   not share its blind spots finds the right document: a hard query whose label is still likely right, the kind a
   retriever has something to learn from, where the rank part pays for queries it already answers.

The scalar is `w_filter * kept + w_band * band_score + w_rank * rr + gap_weight * gap`. With the default weights
(1, 0.5, 0.1) and no gap part a kept query always outscores a dropped one and a band difference of more than 0.2
outweighs any rank difference, which is the lexicographic order of the preference pairs
(`preferences.criterion: [filter, difficulty_band, rank]`) in one number, so GRPO, PPO (`reward_source: retrieval`)
and the RL evaluation score what the reward model learns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.config import Band, ConfigModel
from ragtune.data.records import Doc
from ragtune.evaluate.difficulty import bm25_gap, score_difficulty
from ragtune.models import DEFAULT_ENCODER


class LoopRewardSettings(ConfigModel):
    bm25_k: int | None = Field(10, ge=1)
    """Filter part: the source document within BM25's top-k (null: no BM25 part)."""
    dense_k: int | None = Field(10, ge=1)
    """Filter part: the source document within the zero-shot encoder's top-k (null: no dense part)."""
    filter_encoder: str = DEFAULT_ENCODER
    """The encoder of the dense filter part (the loop's zero-shot `encoder`)."""
    band: Band | None = (0.3, 0.7)
    """Target difficulty band under the round's retriever (null: no band part)."""
    band_falloff: float = Field(1.0, gt=0, le=1)
    """How far outside the band the band part reaches 0 (1.0: 1 - distance; 0.1: only near-band queries score)."""
    weights: tuple[float, float, float] = (1.0, 0.5, 0.1)
    """Weights of (filter, band, rank)."""
    gap_weight: float = Field(0.0, ge=0)
    """Weight of the gap part, max(0, 1/BM25 rank - 1/retriever rank) with BM25 searched to `depth` (0: off)."""
    depth: int = Field(100, ge=1)
    temperature: float = Field(0.1, gt=0)
    """Difficulty's margin temperature (the loop's `difficulty_temperature`)."""
    dtype: str = "float32"
    """Encoding precision of both encoders (the loop's `dense_dtype`)."""
    kind: Literal["bi_encoder", "colbert"] = "bi_encoder"
    """The round's retriever kind (the loop's `retriever.kind`)."""
    index: Literal["flat", "plaid"] = "flat"
    """kind colbert: the token index the round's retriever searches with."""


def band_score(difficulty: float, band: tuple[float, float], falloff: float = 1.0) -> float:
    """1 inside the band, falling linearly outside it to 0 at `falloff` from it (1.0: 1 - distance).

    >>> band_score(0.5, (0.3, 0.7)), band_score(0.1, (0.3, 0.7)), band_score(0.9, (0.3, 0.7))
    (1.0, 0.8, 0.8)
    >>> band_score(0.25, (0.3, 0.7), falloff=0.1), band_score(0.1, (0.3, 0.7), falloff=0.1)
    (0.5, 0.0)
    """
    lo, hi = band
    return round(max(0.0, 1.0 - max(lo - difficulty, 0.0, difficulty - hi) / falloff), 12)


def _rank(hits: dict[str, float], doc: str) -> int | None:
    order = sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))
    return next((i for i, (d, _) in enumerate(order, 1) if d == doc), None)


class LoopReward:
    """Scores (query, source doc) pairs with the round's retriever and the loop's filter judges."""

    __name__ = "loop_reward"  # trl logs reward functions by name

    def __init__(self, corpus: dict[str, Doc], retriever_model: str | Path, cfg: LoopRewardSettings | None = None):
        from ragtune.retrieval.bm25 import BM25Retriever
        from ragtune.retrieval.dense import DenseConfig, DenseRetriever
        from ragtune.retrieval.factory import index_trained

        self.cfg = cfg = cfg or LoopRewardSettings()
        docs = list(corpus.values())
        self.retriever = index_trained(cfg.kind, str(retriever_model), docs, cfg.dtype, cfg.index)
        self.bm25 = self.zero_shot = None
        if cfg.bm25_k or cfg.gap_weight:
            self.bm25 = BM25Retriever()
            self.bm25.index(docs)
        if cfg.dense_k:
            self.zero_shot = DenseRetriever(DenseConfig(model=cfg.filter_encoder, dtype=cfg.dtype))
            self.zero_shot.index(docs)

    def parts(self, queries: list[str], doc_ids: list[str]) -> list[dict[str, Any]]:
        """Per query: {kept, bm25_rank, dense_rank, rank, difficulty, band, rr, gap, reward}; bm25_rank is the
        rank within BM25's top `bm25_k` (None below it), the gap part's judge sees BM25 to `depth`."""
        cfg = self.cfg
        qs = {str(i): q if q.strip() else "-" for i, q in enumerate(queries)}
        n_docs = len(self.retriever.doc_ids)
        run = self.retriever.search(qs, k=min(cfg.depth, n_docs))
        diff = score_difficulty(run, {str(i): d for i, d in enumerate(doc_ids)}, depth=cfg.depth,
                                temperature=cfg.temperature)
        bm25_depth = min(max(cfg.bm25_k or 0, cfg.depth if cfg.gap_weight else 0), n_docs)
        bm25 = self.bm25.search(qs, k=bm25_depth) if self.bm25 is not None and bm25_depth else None
        dense = self.zero_shot.search(qs, k=cfg.dense_k) if self.zero_shot is not None and cfg.dense_k else None
        w_filter, w_band, w_rank = cfg.weights
        out = []
        for i, doc in enumerate(doc_ids):
            q = str(i)
            judge = _rank(bm25.get(q, {}), doc) if bm25 is not None else None
            b_rank = judge if judge is not None and cfg.bm25_k and judge <= cfg.bm25_k else None
            d_rank = _rank(dense.get(q, {}), doc) if dense is not None else None
            kept = (not cfg.bm25_k or b_rank is not None) and (dense is None or d_rank is not None)
            d = diff[q]
            rr = 1.0 / d.rank if d.rank else 0.0
            band = band_score(d.difficulty, cfg.band, cfg.band_falloff) if cfg.band else 0.0
            gap = bm25_gap(judge, d.rank) if cfg.gap_weight else 0.0
            out.append({"kept": kept, "bm25_rank": b_rank, "dense_rank": d_rank, "rank": d.rank,
                        "difficulty": d.difficulty, "band": band, "rr": rr, "gap": gap,
                        "reward": w_filter * kept + w_band * band + w_rank * rr + cfg.gap_weight * gap})
        return out

    def __call__(self, prompts: list, completions: list, doc_id: list[str], **_: Any) -> list[float]:
        """trl's reward-function signature (GRPO): one score per completion."""
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return [p["reward"] for p in self.parts(texts, doc_id)]


def ppo_reward_fn(cfg, raw: dict[str, Any], source: dict[str, str], corpus: dict[str, Doc] | None, device: str):
    """PPO's scorer, (rendered prompts, responses) -> scores: the loop reward online (`cfg.reward_source ==
    "retrieval"`, documents from `source`) or the trained reward model (reading `raw`'s user turn or chat)."""
    if cfg.reward_source == "retrieval":
        reward = LoopReward(corpus or {}, cfg.retriever_model, cfg.retrieval_reward)
        return lambda prompts, resp: [p["reward"] for p in reward.parts(resp, [source[x] for x in prompts])]
    from ragtune.train.generator.reward import RewardScorer

    scorer = RewardScorer(cfg.reward_base or cfg.model_name_or_path, cfg.reward_model, device=device)
    return lambda prompts, resp: scorer([raw[x] for x in prompts], resp)
