"""Hard negatives from a BEIR split: the miner, the converters that use it, and `ragtune train mine`.

Hard negatives are mined with BM25 (default) or a dense encoder: each judged query is
searched, the ranking's slice `[neg_start, neg_end)` (0-based; `neg_start: 10` skips the
top 10) minus the query's positives is the candidate pool, and `neg_per_query` of them are
drawn with a per-query seeded RNG, so a query's negatives do not depend on the others.
Every conversion also writes `mined_negatives.jsonl` (`{query_id, positives, negatives,
ranks}`, ranks 1-based) so the choice can be audited.

    cfg = load_config(MineConfig, None, ["data=../shared/data/beir/scifact", "out=runs/mined"])
    result = mine(cfg)     # out/embedding.jsonl, out/mined_negatives.jsonl, out/mine.config.yaml

`ragtune data convert beir-embedding|beir-reranker` write `{query, pos, neg}` rows and reranker pairs or
groups from the mined window. `ragtune train mine` is the embedding conversion plus, with `rescore: MODEL`,
a cross-encoder (or LLM reranker) pass over the whole window: candidates the reranker scores at least
`false_negative_ratio` of the query's weakest positive are dropped as likely unjudged positives, and every
written row carries the reranker's `scores` (positives, then negatives), ready for score distillation. Its audit
also keeps the whole window in rank order with every score (`window`, `window_scores`, dropped candidates too),
so another filter or teacher mix can be tried on one scoring pass.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ragtune.atomic import write_jsonl
from ragtune.config import ConfigModel, dump_config
from ragtune.data.beir import BeirDataset, load_beir
from ragtune.data.convert_beir import BeirSource, positives
from ragtune.data.convert_result import ConvertResult
from ragtune.data.formats import write_records
from ragtune.data.records import Embedding, Hit, RerankerGroup, RerankerPoint
from ragtune.retrieval.bm25 import BM25Config
from ragtune.retrieval.dense import DenseConfig
from ragtune.retrieval.factory import index_corpus

MINED = "mined_negatives.jsonl"


class MiningSettings(ConfigModel):
    """How negatives are mined: everything but the BEIR folder, split and output folder."""

    min_score: int = 1
    """Qrels score from which a document counts as relevant."""
    miner: Literal["bm25", "dense"] = "bm25"
    bm25: BM25Config = Field(default_factory=BM25Config)
    dense: DenseConfig = Field(default_factory=DenseConfig)
    neg_start: int = Field(10, ge=0)
    """First ranking position (0-based) negatives may come from: the top `neg_start` are skipped."""
    neg_end: int = Field(100, ge=1)
    """Positions up to neg_end - 1 are candidates; also the retrieval depth."""
    neg_per_query: int = Field(8, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _range(self) -> MiningSettings:
        if self.neg_end <= self.neg_start:
            raise ValueError(f"neg_end ({self.neg_end}) must be larger than neg_start ({self.neg_start})")
        return self


class MiningConfig(MiningSettings, BeirSource):
    """Mine negatives for a BEIR folder's judged queries of one split."""


class BeirEmbeddingSettings(MiningSettings):
    """The embedding conversion but its paths (the loop's `mining:` overrides)."""

    query_prompt: str | None = None
    """Written as `prompt_for_query` on every row (e.g. "query: ")."""


class BeirEmbeddingConfig(BeirEmbeddingSettings, MiningConfig):
    """`{query, pos: [...], neg: [...]}` rows for bi-encoder training."""


class BeirRerankerConfig(MiningConfig):
    """Pointwise `{query, content, label}` and/or grouped `{query, hits}` rows for cross-encoder training."""

    layout: Literal["point", "group", "both"] = "both"


def mine_negatives(ds: BeirDataset, pos: dict[str, dict[str, int]], cfg: MiningConfig
                   ) -> dict[str, list[tuple[str, int]]]:
    """qid -> [(docid, 1-based rank)] sampled from the configured rank window, positives excluded."""
    retriever = index_corpus(cfg.miner, ds.corpus.values(), cfg.bm25, cfg.dense)
    run = retriever.search({q: ds.queries[q] for q in pos}, k=cfg.neg_end)
    mined: dict[str, list[tuple[str, int]]] = {}
    for qid in pos:
        ranking = sorted(run.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        window = [(d, r + 1) for r, (d, _) in enumerate(ranking)
                  if cfg.neg_start <= r < cfg.neg_end and d not in pos[qid]]
        rng = random.Random(f"{cfg.seed}:{qid}")
        picked = rng.sample(window, min(cfg.neg_per_query, len(window)))
        mined[qid] = sorted(picked, key=lambda dr: dr[1])
    return mined


def _write_mined(out: Path, pos: dict[str, dict[str, int]], mined: dict[str, list[tuple[str, int]]]) -> Path:
    rows = ({"query_id": q, "positives": list(pos[q]), "negatives": [d for d, _ in mined[q]],
             "ranks": [r for _, r in mined[q]]} for q in pos)
    write_jsonl(out / MINED, rows)
    return out / MINED


def _mining_counts(pos: dict[str, dict[str, int]], mined: dict[str, list[tuple[str, int]]],
                   cfg: MiningConfig) -> dict[str, float]:
    n = len(pos)
    return {"queries": n,
            "positives": sum(len(p) for p in pos.values()),
            "negatives": sum(len(m) for m in mined.values()),
            "queries without negatives": sum(not m for m in mined.values()),
            f"queries with < {cfg.neg_per_query} negatives": sum(len(m) < cfg.neg_per_query for m in mined.values())}


def beir_to_embedding(cfg: BeirEmbeddingConfig) -> ConvertResult:
    """`{query, pos, neg}` per judged query, negatives mined from the rank window."""
    ds = load_beir(cfg.data, [cfg.split])
    pos = positives(ds, cfg.split, cfg.min_score)
    mined = mine_negatives(ds, pos, cfg)
    records = [Embedding(query=ds.queries[q], pos=[ds.corpus[d].content for d in pos[q]],
                         neg=[ds.corpus[d].content for d, _ in mined[q]] or None,
                         prompt_for_query=cfg.query_prompt) for q in pos]
    out = Path(cfg.out)
    n = write_records(out / "embedding.jsonl", records)
    outputs = [out / "embedding.jsonl", _write_mined(out, pos, mined),
               dump_config(cfg, out / "beir-embedding.config.yaml")]
    return ConvertResult({"records": n, **_mining_counts(pos, mined, cfg)}, outputs)


def beir_to_reranker(cfg: BeirRerankerConfig) -> ConvertResult:
    """Positives labelled with their qrels score, mined negatives labelled 0."""
    ds = load_beir(cfg.data, [cfg.split])
    pos = positives(ds, cfg.split, cfg.min_score)
    mined = mine_negatives(ds, pos, cfg)
    out = Path(cfg.out)
    counts: dict[str, float] = {}
    outputs: list[Path] = []

    def labelled(q: str) -> list[tuple[str, float]]:
        return [(d, float(s)) for d, s in pos[q].items()] + [(d, 0.0) for d, _ in mined[q]]

    if cfg.layout in {"point", "both"}:
        points = (RerankerPoint(query=ds.queries[q], content=ds.corpus[d].content, label=lab)
                  for q in pos for d, lab in labelled(q))
        counts["point records"] = write_records(out / "reranker_point.jsonl", points)
        outputs.append(out / "reranker_point.jsonl")
    if cfg.layout in {"group", "both"}:
        groups = (RerankerGroup(query=ds.queries[q], hits=[Hit(content=ds.corpus[d].content, label=lab)
                                                           for d, lab in labelled(q)]) for q in pos)
        counts["group records"] = write_records(out / "reranker_group.jsonl", groups)
        outputs.append(out / "reranker_group.jsonl")
    outputs += [_write_mined(out, pos, mined), dump_config(cfg, out / "beir-reranker.config.yaml")]
    return ConvertResult(counts | _mining_counts(pos, mined, cfg), outputs)


class MineConfig(BeirEmbeddingConfig):
    """Mine `{query, pos, neg}` (and `scores` with a rescorer) from a BEIR split's qrels."""

    rescore: str | None = None
    """A reranker folder (`ragtune train reranker` output) that scores the window and filters false negatives."""
    false_negative_ratio: float = Field(0.95, gt=0)
    """Drop a candidate whose sigmoid(reranker score) >= ratio x that of the query's weakest positive."""
    rescore_batch_size: int = Field(32, ge=1)
    rescore_max_length: int | None = Field(None, ge=8)


def mine(cfg: MineConfig) -> ConvertResult:
    """Mine hard negatives; with `rescore`, filter false negatives and attach reranker scores."""
    if cfg.rescore is None:
        result = beir_to_embedding(cfg)
        result.outputs.append(dump_config(cfg, Path(cfg.out) / "mine.config.yaml"))
        return result
    import math

    from ragtune.retrieval.rerank import load_reranker

    ds = load_beir(cfg.data, [cfg.split])
    pos = positives(ds, cfg.split, cfg.min_score)
    window = mine_negatives(ds, pos, cfg.model_copy(update={"neg_per_query": cfg.neg_end - cfg.neg_start}))
    reranker = load_reranker(cfg.rescore, max_length=cfg.rescore_max_length)
    pairs = [(ds.queries[q], ds.corpus[d].content) for q in pos for d in [*pos[q], *(d for d, _ in window[q])]]
    flat = reranker.compute_score(pairs, batch_size=cfg.rescore_batch_size, show_progress=True)
    records, audit = [], []
    dropped = i = 0
    for q in pos:
        n_pos, cands = len(pos[q]), window[q]
        pos_scores, cand_scores = flat[i:i + n_pos], flat[i + n_pos:i + n_pos + len(cands)]
        i += n_pos + len(cands)
        floor = min(1 / (1 + math.exp(-s)) for s in pos_scores)
        keep = [(d, r, s) for (d, r), s in zip(cands, cand_scores, strict=True)
                if 1 / (1 + math.exp(-s)) < cfg.false_negative_ratio * floor]
        dropped += len(cands) - len(keep)
        picked = sorted(random.Random(f"{cfg.seed}:{q}").sample(keep, min(cfg.neg_per_query, len(keep))),
                        key=lambda x: x[1])
        records.append(Embedding(query=ds.queries[q], pos=[ds.corpus[d].content for d in pos[q]],
                                 neg=[ds.corpus[d].content for d, _, _ in picked] or None,
                                 scores=[*pos_scores, *(s for _, _, s in picked)],
                                 prompt_for_query=cfg.query_prompt))
        audit.append({"query_id": q, "positives": list(pos[q]), "negatives": [d for d, _, _ in picked],
                      "ranks": [r for _, r, _ in picked], "scores": [s for _, _, s in picked],
                      "positive_scores": pos_scores, "window": [d for d, _ in cands],
                      "window_scores": list(cand_scores)})
    out = Path(cfg.out)
    n = write_records(out / "embedding.jsonl", records)
    write_jsonl(out / MINED, audit)
    counts = {"records": n, "queries": len(pos), "candidates scored": len(flat),
              "dropped as likely false negatives": dropped,
              "negatives": sum(len(a["negatives"]) for a in audit),
              "queries without negatives": sum(not a["negatives"] for a in audit)}
    return ConvertResult(counts, [out / "embedding.jsonl", out / MINED, dump_config(cfg, out / "mine.config.yaml")])
