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
also keeps the whole window in rank order with every reranker score (`window`, `window_scores`, dropped candidates
too), so another filter or teacher mix can be tried on one scoring pass. `rescore_fusion: true` grades with the
reranker fused with the miner's ranking at the reranker's dev-chosen weight (RRF values; a candidate fused at or
above the weakest positive is dropped).
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


def rankings(ds: BeirDataset, pos: dict[str, dict[str, int]], cfg: MiningSettings, depth: int
             ) -> dict[str, list[tuple[str, float]]]:
    """qid -> the miner's top `depth` [(docid, score)], best first (ties by id)."""
    retriever = index_corpus(cfg.miner, ds.corpus.values(), cfg.bm25, cfg.dense)
    run = retriever.search({q: ds.queries[q] for q in pos}, k=depth)
    return {q: sorted(run.get(q, {}).items(), key=lambda kv: (-kv[1], kv[0])) for q in pos}


def rank_window(ranking: list[tuple[str, float]], positives: dict[str, int], cfg: MiningSettings
                ) -> list[tuple[str, int]]:
    """[(docid, 1-based rank)] of the ranking's slice [neg_start, neg_end), positives excluded."""
    return [(d, r + 1) for r, (d, _) in enumerate(ranking) if cfg.neg_start <= r < cfg.neg_end and d not in positives]


def mine_negatives(ds: BeirDataset, pos: dict[str, dict[str, int]], cfg: MiningConfig
                   ) -> dict[str, list[tuple[str, int]]]:
    """qid -> [(docid, 1-based rank)] sampled from the configured rank window, positives excluded."""
    mined: dict[str, list[tuple[str, int]]] = {}
    for qid, ranking in rankings(ds, pos, cfg, cfg.neg_end).items():
        window = rank_window(ranking, pos[qid], cfg)
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
    rescore_cache: bool = True
    """Reuse the reranker's scores of pairs it already graded (~/.cache/ragtune/pair-scores, or $RAGTUNE_CACHE;
    keyed by the reranker's files and rescore_max_length): a loop round or seed rerun grades only new pairs."""
    rescore_fusion: bool = False
    """Grade with the reranker fused with the miner's ranking by weighted RRF, at the weight the reranker's dev
    slice chose (its `ragtune_fusion.json`, written by `ragtune train reranker`): rows carry the RRF values, and a
    candidate the fusion ranks at or above the query's weakest positive is dropped. The better teacher where the
    reranker alone does not beat BM25 (BENCHMARKS.md, margin distillation)."""


FUSION_DEPTH = 100
"""The miner's depth a fused grade reads: a positive below it ranks last on the miner's side."""


def mine(cfg: MineConfig) -> ConvertResult:
    """Mine hard negatives; with `rescore`, filter false negatives and attach reranker (or fused) scores."""
    if cfg.rescore is None:
        result = beir_to_embedding(cfg)
        result.outputs.append(dump_config(cfg, Path(cfg.out) / "mine.config.yaml"))
        return result
    from ragtune.retrieval.rerank import read_dev_fusion

    fusion = read_dev_fusion(cfg.rescore, "rescore_fusion", "or set rescore_fusion=false") if cfg.rescore_fusion \
        else None
    ds = load_beir(cfg.data, [cfg.split])
    pos = positives(ds, cfg.split, cfg.min_score)
    ranked = rankings(ds, pos, cfg, max(cfg.neg_end, FUSION_DEPTH) if fusion else cfg.neg_end)
    window = {q: rank_window(ranked[q], pos[q], cfg) for q in pos}
    pairs = [(ds.queries[q], ds.corpus[d].content) for q in pos for d in [*pos[q], *(d for d, _ in window[q])]]
    flat, fresh = _grade(cfg, pairs)
    records, audit = [], []
    dropped = i = 0
    for q in pos:
        n_pos, cands = len(pos[q]), window[q]
        raw = flat[i:i + n_pos + len(cands)]
        i += n_pos + len(cands)
        grade = fused_grades(dict(ranked[q]), [*pos[q], *(d for d, _ in cands)], raw, fusion) if fusion \
            else list(raw)
        pos_scores, cand_scores = grade[:n_pos], grade[n_pos:]
        keep = [(d, r, s) for (d, r), s in zip(cands, cand_scores, strict=True)
                if not likely_positive(s, pos_scores, cfg.false_negative_ratio, fused=fusion is not None)]
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
                      "window_scores": list(raw[n_pos:])})
    out = Path(cfg.out)
    n = write_records(out / "embedding.jsonl", records)
    write_jsonl(out / MINED, audit)
    counts = {"records": n, "queries": len(pos), "candidates scored": len(flat), "scored anew (not cached)": fresh,
              "dropped as likely false negatives": dropped,
              "negatives": sum(len(a["negatives"]) for a in audit),
              "queries without negatives": sum(not a["negatives"] for a in audit)}
    return ConvertResult(counts, [out / "embedding.jsonl", out / MINED, dump_config(cfg, out / "mine.config.yaml")])


def _grade(cfg: MineConfig, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
    """The rescorer's score of each pair (through the pair-score cache unless `rescore_cache: false`), and how many
    pairs it scored anew."""
    from ragtune.models import fingerprint, resolve_model
    from ragtune.paths import cache_dir
    from ragtune.retrieval.rerank import load_reranker, reranker_kind
    from ragtune.retrieval.score_cache import cached_scores, scores_key

    if not cfg.rescore_cache:
        reranker = load_reranker(cfg.rescore, max_length=cfg.rescore_max_length)
        return list(reranker.compute_score(pairs, batch_size=cfg.rescore_batch_size, show_progress=True)), len(pairs)
    path = resolve_model(cfg.rescore)
    key = scores_key(fingerprint(path), f"{reranker_kind(path)}|max_length={cfg.rescore_max_length}")
    loaded: list = []

    def score(ps: list[tuple[str, str]]) -> list[float]:
        if not loaded:  # loaded only when some pair is not cached yet
            loaded.append(load_reranker(cfg.rescore, max_length=cfg.rescore_max_length))
        return list(loaded[0].compute_score(ps, batch_size=cfg.rescore_batch_size))

    return cached_scores(cache_dir("pair-scores") / f"{key}.jsonl", pairs, score, show_progress=True)


def fused_grades(first: dict[str, float], docs: list[str], reranker_scores: list[float],
                 fusion: dict[str, float]) -> list[float]:
    """Each of `docs`' weighted-RRF value over the reranker's ranks and the miner's (`first`: docid -> score; a
    document missing there ranks last on that side)."""
    from ragtune.retrieval.rerank import fuse_with_first_stage

    first_stage = {"q": {d: first.get(d, float("-inf")) for d in docs}}
    fused = fuse_with_first_stage(first_stage, {"q": dict(zip(docs, reranker_scores, strict=True))},
                                  fusion["weight"], top=len(docs), k=int(fusion["k"]))["q"]
    return [fused[d] for d in docs]


def likely_positive(score: float, positive_scores: list[float], ratio: float, fused: bool) -> bool:
    """A candidate graded like a positive: fused, at or above the weakest positive's RRF value; else at least
    `ratio` x the weakest positive's sigmoid(reranker score)."""
    if fused:
        return score >= min(positive_scores)
    import math

    return 1 / (1 + math.exp(-score)) >= ratio * min(1 / (1 + math.exp(-s)) for s in positive_scores)
