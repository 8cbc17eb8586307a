"""The label-free guard: never ship a retriever worse than the zero-shot encoder it started from.

Without target labels, the only queries with known answers are the pseudo queries themselves. The guard holds out
the kept pseudo queries of a seeded sample of documents (`holdout`, round 0): no query of these documents, in any
round, reaches retriever training. The held-out queries (BM25 and the zero-shot encoder both found their source
document: that is what the consistency filters kept) are split in two:

- `select`: the retriever's dev slice when the run has no labels, so the trainer picks its checkpoint on them;
- `decide`: after training, the round's retriever and the zero-shot encoder are scored over the whole corpus
  (NDCG@10, the source document as the one relevant one) on queries for these documents. The trained retriever
  ships only when it is better with a one-sided paired t-test p < `alpha`; otherwise the zero-shot encoder ships,
  and the report says so.

Selecting a checkpoint and deciding on different queries keeps the decision free of the selection's optimism.

Which queries: the decide documents' own kept pseudo queries (`decide_on: pseudo`) are chosen by one of the two
systems they compare (the dense filter keeps a query only when the zero-shot encoder already ranks its source in its
top k), and written in the style the trained retriever learned. By default (`other_generator`) the decision is
scored instead on queries another generator writes for the decide documents (the base model, no adapter, a few
example pairs in the prompt), every one unfiltered (benchmarks/guard_bias.py compares the sets).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.atomic import write_json, write_jsonl
from ragtune.config import ConfigModel
from ragtune.data.beir import load_corpus, load_qrels, load_queries, write_beir

SELECT, DECIDE, DOCS, SHOTS = "select", "decide", "documents.txt", "shots.jsonl"
DECIDE_FIELDS = {"decide_on", "other_generator", "other_queries", "other_shots"}


class GuardConfig(ConfigModel):
    enabled: bool = False
    """Hold out pseudo queries and ship the zero-shot encoder unless a trained retriever beats it on them."""
    documents: int = Field(200, ge=4)
    """Documents whose kept pseudo queries are held out (a seeded sample of round 0's kept ones)."""
    select_fraction: float = Field(0.5, ge=0, lt=1)
    """Share of the held-out queries that form the retriever's dev slice in a run without labels (the rest decide)."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """The trained retriever ships when it beats zero-shot on the decide queries with one-sided p below this."""
    metric: str = "ndcg@10"
    candidates: int = Field(10, ge=1)
    """BM25 candidates per select query for the dev slice's sub-corpus (dev.candidates)."""
    seed: int = 0
    decide_on: Literal["pseudo", "other_generator"] = "other_generator"
    """What the decision is scored on: `other_generator`, queries another generator writes for the decide documents
    (`other_*`), unfiltered; `pseudo`, the decide documents' kept pseudo queries (no extra generation, but selected
    by the dense filter: on SciFact and MS MARCO they picked against test where `other_generator` did not,
    BENCHMARKS.md)."""
    other_generator: str | None = None
    """The generator for `decide_on: other_generator`, with no adapter; unset = the run's `generator` as it was
    before any SFT, style adaptation or RL."""
    other_queries: int = Field(2, ge=1)
    """Queries per decide document for `decide_on: other_generator`."""
    other_shots: int = Field(2, ge=0, le=16)
    """Example (document, query) pairs in its prompt: the style stage's pairs when the run has target examples,
    else judged train pairs of `sft_data` (or of the data)."""


def holdout_key(cfg: GuardConfig) -> dict[str, Any]:
    """What keys the hold-out: not how the decision is scored (runs before `decide_on` existed keep their keys)."""
    return cfg.model_dump(mode="json", exclude=DECIDE_FIELDS)


def decision_key(cfg: GuardConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json", exclude=DECIDE_FIELDS if cfg.decide_on == "pseudo" else None)


def holdout(kept: Path, data: Path, out: Path, cfg: GuardConfig) -> dict[str, Any]:
    """Split round 0's kept pseudo queries into guard documents' queries (select / decide) and the rest."""
    queries = load_queries(kept / "queries.jsonl")
    qrels = load_qrels(kept / "qrels" / "train.tsv")
    by_doc: dict[str, list[str]] = {}
    for q in sorted(qrels):
        by_doc.setdefault(next(iter(qrels[q])), []).append(q)
    docs = sorted(by_doc)
    if len(docs) < 4:
        raise ValueError(f"guard: only {len(docs)} documents have kept pseudo queries; the guard needs at least 4 "
                         "(generate more, or turn guard.enabled off)")
    rng = random.Random(cfg.seed)
    held = sorted(rng.sample(docs, min(cfg.documents, len(docs) // 2)))
    rng.shuffle(held)
    n_select = round(len(held) * cfg.select_fraction)
    parts = {SELECT: held[:n_select], DECIDE: held[n_select:]}
    corpus = load_corpus(data / "corpus.jsonl")
    counts: dict[str, Any] = {"documents": len(held)}
    for name, part in parts.items():
        qs = {q: queries[q] for d in part for q in by_doc[d]}
        write_beir(out / name, corpus.values() if name == SELECT else None, qs,
                   {"train": {q: qrels[q] for q in qs}})
        counts[f"{name}_queries"] = len(qs)
    (out / DOCS).write_text("\n".join(sorted(held)) + "\n", encoding="utf-8")
    return counts


def held_documents(holdout_dir: Path | None) -> set[str]:
    if holdout_dir is None:
        return set()
    return {line.strip() for line in (holdout_dir / DOCS).read_text(encoding="utf-8").splitlines() if line.strip()}


def select_dev(holdout_dir: Path, cfg: GuardConfig) -> dict[str, Any]:
    """The retriever's dev slice for a run without labels: every select query (fraction 1.0 of its folder)."""
    return {"data": str(holdout_dir / SELECT), "split": "train", "fraction": 1.0, "candidates": cfg.candidates}


def decide_documents(holdout_dir: Path) -> list[str]:
    return sorted({d for judged in load_qrels(holdout_dir / DECIDE / "qrels" / "train.tsv").values() for d in judged})


def other_generator_queries(data: Path, holdout_dir: Path, out: Path, cfg: GuardConfig, model: str, template: str,
                            generate_settings: dict[str, Any], shots: Path | tuple[Path, str]) -> dict[str, Any]:
    """Queries for the decide documents from `model` (no adapter) with `cfg.other_shots` example
    pairs: `shots` is a JSONL shot file (the style stage's) or (BEIR folder, split) whose judged pairs are sampled
    (never a decide document); `generate_settings` carry no few-shot keys of their own (the loop drops the run's).
    Writes a `ragtune generate` output folder (queries.jsonl, qrels/train.tsv)."""
    from ragtune.generate.prompts import document_text
    from ragtune.generate.selection import few_shot_pairs
    from ragtune.pipeline.stages import generate

    docs = decide_documents(holdout_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / DOCS).write_text("".join(f"{d}\n" for d in docs), encoding="utf-8")
    over = dict(generate_settings)
    if cfg.other_shots and isinstance(shots, tuple):
        folder, split = shots
        pairs = few_shot_pairs(load_corpus(folder / "corpus.jsonl"), folder, split, cfg.other_shots, cfg.seed,
                               set(docs))
        write_jsonl(out / SHOTS, [{"document": document_text(d), "query": q} for d, q in pairs])
        shots = out / SHOTS
    over |= {"unlabeled_corpus_id": str(out / DOCS), "exclude_splits": [], "sample_num": None,
             "query_per_document": cfg.other_queries, "few_shot": cfg.other_shots,
             **({"few_shot_file": str(shots)} if cfg.other_shots else {})}
    return generate(data, out / "generate", model, None, template, 0, over)


def guard(data: Path, holdout_dir: Path, trained: Path, zero_shot: str, out: Path, cfg: GuardConfig,
          dense_dtype: str = "float32", decide_dir: Path | None = None) -> dict[str, Any]:
    """Score the trained retriever and the zero-shot encoder on the decide queries (the hold-out's, or those of
    `decide_dir`, a generate output folder); decide which ships."""
    from scipy.stats import ttest_rel

    from ragtune.evaluate.metrics import evaluate
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    decide = decide_dir or holdout_dir / DECIDE
    queries = load_queries(decide / "queries.jsonl")
    qrels = load_qrels(decide / "qrels" / "train.tsv")
    corpus = load_corpus(data / "corpus.jsonl")
    per_query: dict[str, dict[str, float]] = {}
    means: dict[str, float] = {}
    for name, model in (("zero_shot", zero_shot), ("trained", str(trained))):
        r = DenseRetriever(DenseConfig(model=model, dtype=dense_dtype))
        r.index(corpus.values())  # the cache shares these embeddings with the evaluate and difficulty stages
        res = evaluate(qrels, r.search(queries, k=min(100, len(corpus))), [cfg.metric])
        per_query[name], means[name] = res.per_query[cfg.metric], res.metrics[cfg.metric]
    qids = sorted(per_query["zero_shot"])
    a = [per_query["trained"][q] for q in qids]
    b = [per_query["zero_shot"][q] for q in qids]
    differs = any(x != y for x, y in zip(a, b, strict=True))
    p = float(ttest_rel(a, b, alternative="greater").pvalue) if differs and len(qids) > 1 else 1.0
    p = 1.0 if p != p else p
    ship = means["trained"] > means["zero_shot"] and p < cfg.alpha
    decision = {"queries": len(qids), "decide_on": cfg.decide_on, "metric": cfg.metric, "trained": means["trained"],
                "zero_shot": means["zero_shot"], "delta": means["trained"] - means["zero_shot"],
                "p_one_sided": p, "alpha": cfg.alpha, "ships": "trained" if ship else "zero_shot",
                "shipped_model": str(trained) if ship else zero_shot}
    write_json(out / "guard.json", decision)
    return decision
