"""BEIR folder -> training records: doc->query SFT pairs, embedding triples, reranker pairs and groups.

Hard negatives are mined with BM25 (default) or a dense encoder: each judged query is
searched, the ranking's slice `[neg_start, neg_end)` (0-based; `neg_start: 10` skips the
top 10) minus the query's positives is the candidate pool, and `neg_per_query` of them are
drawn with a per-query seeded RNG, so a query's negatives do not depend on the others.
Every conversion also writes `mined_negatives.jsonl` (`{query_id, positives, negatives,
ranks}`, ranks 1-based) so the choice can be audited.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ragtune.atomic import write_jsonl
from ragtune.config import ConfigModel, dump_config
from ragtune.data.beir import BeirDataset, load_beir
from ragtune.data.convert import ConvertResult
from ragtune.data.dataset_info import register_dataset
from ragtune.data.formats import write_records
from ragtune.data.records import Alpaca, Embedding, Hit, RerankerGroup, RerankerPoint
from ragtune.retrieval.bm25 import BM25Config
from ragtune.retrieval.dense import DenseConfig

MINED = "mined_negatives.jsonl"


class BeirSource(ConfigModel):
    data: Path
    """BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""
    split: str = "train"
    out: Path
    """Output folder."""
    min_score: int = 1
    """Qrels score from which a document counts as relevant."""


class BeirSFTConfig(BeirSource):
    """Document -> query pairs for teaching an LLM to write queries (doc2query)."""

    name: str | None = None
    """dataset_info.json entry and file stem; default `<data folder>_<split>_doc2query`."""
    instruction_prefix: str = ""
    """Fixed text put before the document in `instruction`, e.g. "Write a question this passage answers:\\n"."""
    system: str | None = None


class MiningConfig(BeirSource):
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
    def _range(self) -> MiningConfig:
        if self.neg_end <= self.neg_start:
            raise ValueError(f"neg_end ({self.neg_end}) must be larger than neg_start ({self.neg_start})")
        return self


class BeirEmbeddingConfig(MiningConfig):
    """`{query, pos: [...], neg: [...]}` rows for bi-encoder training."""

    query_prompt: str | None = None
    """Written as `prompt_for_query` on every row (e.g. "query: ")."""


class BeirRerankerConfig(MiningConfig):
    """Pointwise `{query, content, label}` and/or grouped `{query, hits}` rows for cross-encoder training."""

    layout: Literal["point", "group", "both"] = "both"


def positives(ds: BeirDataset, split: str, min_score: int) -> dict[str, dict[str, int]]:
    """qid -> {docid: score} of relevant documents, best first; queries without any are left out."""
    out: dict[str, dict[str, int]] = {}
    for qid, judged in ds.qrels[split].items():
        rel = {d: s for d, s in sorted(judged.items(), key=lambda kv: (-kv[1], kv[0])) if s >= min_score}
        if rel:
            out[qid] = rel
    return out


def mine_negatives(ds: BeirDataset, pos: dict[str, dict[str, int]], cfg: MiningConfig
                   ) -> dict[str, list[tuple[str, int]]]:
    """qid -> [(docid, 1-based rank)] sampled from the configured rank window, positives excluded."""
    from ragtune.retrieval.factory import index_corpus

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


def beir_to_sft(cfg: BeirSFTConfig) -> ConvertResult:
    """One alpaca record per (relevant document, query): instruction = prefix + document, output = query."""
    ds = load_beir(cfg.data, [cfg.split])
    name = cfg.name or f"{Path(cfg.data).name}_{cfg.split}_doc2query"
    pos = positives(ds, cfg.split, cfg.min_score)
    records = [Alpaca(instruction=cfg.instruction_prefix + ds.corpus[d].content, output=ds.queries[q],
                      system=cfg.system) for q, docs in pos.items() for d in docs]
    out = Path(cfg.out)
    data_file = out / f"{name}.jsonl"
    n = write_records(data_file, records)
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    if cfg.system is not None:
        columns["system"] = "system"
    register_dataset(out, name, data_file.name, "alpaca", columns=columns)
    config = dump_config(cfg, out / "beir-sft.config.yaml")
    return ConvertResult({"queries": len(pos), "records": n, "documents": len({d for p in pos.values() for d in p})},
                         [data_file, out / "dataset_info.json", config])


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
