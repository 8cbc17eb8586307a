"""`ragtune filter CONFIG.yaml`: apply the configured filters in order to a pseudo-query folder.

Writes the kept queries as a BEIR folder (queries.jsonl, qrels/train.tsv), provenance.jsonl
with every candidate's measurements and verdict (`kept`, `dropped_by`), filter_report.json
and filter_report.md, and the resolved config.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from pydantic import Field

from ragtune.atomic import write_jsonl
from ragtune.config import ConfigModel, dump_config
from ragtune.data.beir import load_corpus, write_beir
from ragtune.filters import bm25, dense, difficulty, lossnet, score  # noqa: F401  (register the filters)
from ragtune.filters.base import FILTERS, load_pseudo_queries
from ragtune.filters.bm25 import BM25FilterConfig
from ragtune.filters.dense import DenseFilterConfig
from ragtune.filters.difficulty import DifficultyFilterConfig
from ragtune.filters.lossnet import LossNetFilterConfig
from ragtune.filters.report import build_report, write_report
from ragtune.filters.score import ScoreFilterConfig

FilterSpec = Annotated[BM25FilterConfig | DenseFilterConfig | LossNetFilterConfig | ScoreFilterConfig
                       | DifficultyFilterConfig, Field(discriminator="name")]


class FilterConfig(ConfigModel):
    queries: Path
    """Pseudo-query folder written by `ragtune generate` (or any BEIR folder whose train qrels link one doc each)."""
    corpus: Path
    """BEIR folder (or corpus.jsonl) holding the source documents."""
    out: Path
    filters: list[FilterSpec] = Field(default_factory=lambda: [BM25FilterConfig()])
    """Applied in this order; each sees only the queries the previous ones kept."""
    examples: int = Field(5, ge=0)
    """Dropped queries shown per filter in the report."""
    show_progress: bool = True


def _settings(spec: ConfigModel) -> str:
    d = spec.model_dump(exclude={"name"})
    shown = ("k", "sample_doc_num", "keep_fraction", "keep_top", "drop_tail", "threshold", "scorer",
             *getattr(spec, "report_keys", ()))
    keys = [k for k in shown if d.get(k) is not None]
    model = d.get("model") or (d.get("dense") or {}).get("model")
    parts = [f"{k}={d[k]}" for k in keys] + ([f"model={model_label(model)}"] if model else [])
    return ", ".join(parts)


def model_label(model: str) -> str:
    """A model's name for the report: the folder's, or with its parents when the folder is a stage's `model`.

    >>> model_label("sentence-transformers/all-MiniLM-L6-v2"), model_label("runs/x/round-0/retriever/model")
    ('all-MiniLM-L6-v2', 'round-0/retriever/model')
    """
    path = Path(str(model))
    return path.name if path.name != "model" else "/".join(path.parts[-3:])


def run_filter(cfg: FilterConfig) -> dict:
    pseudo = load_pseudo_queries(cfg.queries)
    corpus_path = cfg.corpus / "corpus.jsonl" if cfg.corpus.is_dir() else cfg.corpus
    corpus = load_corpus(corpus_path)
    missing = sorted({c.doc_id for c in pseudo.candidates} - set(corpus))
    if missing:
        raise ValueError(f"{len(missing)} pseudo queries name documents missing from {corpus_path} "
                         f"(first: {missing[:3]}); filter against the corpus they were generated from")
    alive = list(pseudo.candidates)
    values: dict[str, dict] = {c.query_id: {} for c in alive}
    dropped_by: dict[str, str] = {}
    stages = []
    for spec in cfg.filters:
        start = time.perf_counter()
        f = FILTERS[spec.name](spec, corpus=corpus, corpus_folder=corpus_path.parent, show_progress=cfg.show_progress)
        verdicts = f(alive)
        survivors, examples = [], []
        for c, v in zip(alive, verdicts, strict=True):
            values[c.query_id].update(v.values)
            if v.kept:
                survivors.append(c)
            else:
                dropped_by[c.query_id] = spec.name
                if len(examples) < cfg.examples:
                    examples.append({"query_id": c.query_id, "doc_id": c.doc_id, "text": c.text, "values": v.values})
        stages.append({"name": spec.name, "settings": _settings(spec), "in": len(alive), "out": len(survivors),
                       "seconds": round(time.perf_counter() - start, 2), "dropped_examples": examples})
        alive = survivors

    kept = {c.query_id for c in alive}
    rows = []
    for row in pseudo.provenance:
        qid = row["query_id"]
        if qid in values:
            row = {**row, "filters": {**(row.get("filters") or {}), **values[qid], "kept": qid in kept,
                                      "dropped_by": dropped_by.get(qid)}}
        rows.append(row)
    qrels = {"train": {c.query_id: {c.doc_id: 1} for c in alive}}
    write_beir(cfg.out, None, {c.query_id: c.text for c in alive}, qrels)
    write_jsonl(cfg.out / "provenance.jsonl", rows)
    failed = sum(1 for r in pseudo.provenance if r.get("failed"))
    report = build_report(stages, len(pseudo.candidates), failed)
    write_report(cfg.out, report)
    dump_config(cfg, cfg.out / "config.yaml")
    return report
