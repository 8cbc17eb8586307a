"""The dev slice the retriever and reranker trainers select checkpoints on (embedding, colbert, reranker).

    dev = build_devset(cfg.dev)                 # dev queries carved from a BEIR *train* split, seeded
    is_dev_query(text, dev)                     # the dev queries never reach training
    evaluator = make_run_evaluator(dev, cfg.dev, run_fn)   # ragtune's metrics as a sentence-transformers evaluator

Model selection runs on `DevSet`, a slice of the train qrels held out from training, never on
the test split: `DevConfig` refuses `split: test`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ragtune.config import ConfigError, ConfigModel
from ragtune.data.trec import Run


class DevConfig(ConfigModel):
    """A dev slice carved from a BEIR split's judged queries, for evaluation during training."""

    data: Path | None = None
    """BEIR folder; none = no evaluation during training (the last checkpoint is kept)."""
    split: str = "train"
    """The qrels split the dev queries are carved from. Never `test`: selection on test labels is leakage."""
    fraction: float = Field(0.1, gt=0.0, le=1.0)
    """Share of the split's judged queries held out as dev (and removed from training); 1.0 = the whole split, for a
    folder written to be a dev slice (e.g. the loop guard's held-out pseudo queries)."""
    max_queries: int | None = Field(None, ge=2)
    """Cap on the dev queries (after carving), to keep evaluation cheap on CPU."""
    seed: int = 0
    candidates: int = Field(30, ge=1)
    """BM25 candidates per dev query. Rerankers re-rank them; bi-encoders and ColBERT search the union of
    every dev query's candidates and positives (a NanoBEIR-style sub-corpus), so evaluation costs minutes."""
    metrics: list[str] = Field(default_factory=lambda: ["ndcg@10", "recall@100", "mrr@10"])
    metric_for_best: str = "ndcg@10"

    @field_validator("split")
    @classmethod
    def _not_test(cls, v: str) -> str:
        if v.lower().startswith("test"):
            raise ValueError(f'the dev slice is carved from "{v}": model selection on the test split leaks its '
                             'labels; carve it from the train split (split: train)')
        return v

    @model_validator(mode="after")
    def _metric_listed(self) -> DevConfig:
        from ragtune.evaluate.metrics import parse_metric

        for m in self.metrics:
            parse_metric(m)
        if self.metric_for_best not in self.metrics:
            raise ValueError(f'metric_for_best "{self.metric_for_best}" must be one of metrics ({self.metrics})')
        return self


# ---------------------------------------------------------------- dev slice


@dataclass
class DevSet:
    """Dev queries carved from a BEIR split, their qrels, BM25 candidates and the sub-corpus they span."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    candidates: dict[str, list[str]]
    corpus: dict[str, str]
    excluded_queries: set[str] = field(default_factory=set)
    """Texts of every dev query: training records with these queries are dropped."""


def carve_dev(qids: list[str], fraction: float, seed: int, max_queries: int | None = None) -> tuple[list[str],
                                                                                                 list[str]]:
    """(dev, rest): a seeded `fraction` of the query ids, independent of their order in the file.

    >>> dev, rest = carve_dev([f"q{i}" for i in range(10)], 0.2, seed=0)
    >>> len(dev), len(rest), set(dev) & set(rest)
    (2, 8, set())
    """
    ordered = sorted(set(qids))
    random.Random(seed).shuffle(ordered)
    n = max(1, round(len(ordered) * fraction))
    if max_queries is not None:
        n = min(n, max_queries)
    if fraction >= 1.0:
        return sorted(ordered[:n]), sorted(ordered[n:])
    if n >= len(ordered):
        raise ConfigError(f'key "dev.fraction": carving {n} dev queries leaves none of the {len(ordered)} for '
                          "training; lower dev.fraction")
    return sorted(ordered[:n]), sorted(ordered[n:])


def build_devset(cfg: DevConfig, show_progress: bool = False) -> DevSet | None:
    """Load the BEIR folder, carve the dev queries, collect BM25 candidates (None when cfg.data is unset)."""
    if cfg.data is None:
        return None
    from ragtune.data.beir import load_beir
    from ragtune.retrieval.bm25 import BM25Retriever

    ds = load_beir(cfg.data, [cfg.split])
    judged = {q: {d: s for d, s in docs.items() if s > 0} for q, docs in ds.qrels[cfg.split].items()}
    judged = {q: d for q, d in judged.items() if d and q in ds.queries}
    dev_ids, _ = carve_dev(list(judged), cfg.fraction, cfg.seed, cfg.max_queries)
    queries = {q: ds.queries[q] for q in dev_ids}
    bm25 = BM25Retriever()
    bm25.index(ds.corpus.values(), show_progress=show_progress)
    run = bm25.search(queries, k=min(cfg.candidates, len(bm25)))
    candidates = {q: [d for d, _ in sorted(run.get(q, {}).items(), key=lambda kv: -kv[1])] for q in dev_ids}
    doc_ids = {d for c in candidates.values() for d in c} | {d for q in dev_ids for d in judged[q]}
    corpus = {d: ds.corpus[d].content for d in sorted(doc_ids)}
    return DevSet(queries, {q: judged[q] for q in dev_ids}, candidates, corpus,
                  excluded_queries={_norm(t) for t in queries.values()})


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def is_dev_query(text: str, dev: DevSet | None, prompt: str | None = None) -> bool:
    """True when `text` (with its prompt, if any, removed) is one of the dev queries."""
    if dev is None:
        return False
    if prompt and text.startswith(prompt):
        text = text[len(prompt):]
    return _norm(text) in dev.excluded_queries


def dev_metrics(dev: DevSet, run: Run, metrics: list[str]) -> dict[str, float]:
    from ragtune.evaluate.metrics import evaluate

    return evaluate(dev.qrels, run, metrics).metrics


def make_run_evaluator(dev: DevSet, cfg: DevConfig, run_fn, name: str = "dev"):
    """A sentence-transformers evaluator whose score is ragtune's `evaluate` of `run_fn(model) -> Run`."""
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

    class RunEvaluator(BaseEvaluator):
        def __init__(self) -> None:
            super().__init__()
            self.name = name
            self.primary_metric = cfg.metric_for_best
            self.history: list[dict[str, Any]] = []

        def __call__(self, model, output_path: str | None = None, epoch: float = -1, steps: int = -1):
            t0 = time.perf_counter()
            was_training = model.training
            model.eval()
            try:
                metrics = dev_metrics(dev, run_fn(model), cfg.metrics)
            finally:
                model.train(was_training)
            self.history.append({"steps": steps, "epoch": epoch, **metrics,
                                 "seconds": round(time.perf_counter() - t0, 1)})
            metrics = self.prefix_name_to_metrics(metrics, self.name)
            self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
            return metrics

    return RunEvaluator()
