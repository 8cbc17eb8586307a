"""What the generator wrote and what RL changed, as loop stages.

- `quality`: every pseudo query of a round (kept or not), measured with `evaluate.generator_quality` (BM25 and the
  round's retriever ranks, difficulty histogram, band share, copy rate, length, duplicates; style against the target
  examples when the run has them).
- `rl_eval`: the RL stage's effect on the generator, measured on documents it never trained on: the generator before
  and after the RL stage each write queries for the same held-out documents with the same sampling seeds, and the
  loop's reward (`train.generator.loop_reward`) scores both; the paired difference per document, its p-value and the
  RL stage's CPU time say how far the method moved the generator per CPU minute.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ragtune.atomic import write_json, write_jsonl
from ragtune.data.beir import load_corpus, load_queries
from ragtune.data.jsonl import iter_jsonl


def quality(data: Path, difficulty_provenance: Path, queries: Path, out: Path, band: tuple[float, float],
            examples: list[str] | None = None) -> dict[str, Any]:
    from ragtune.evaluate.generator_quality import round_quality, style_stats
    from ragtune.filters.base import Candidate
    from ragtune.filters.rank import source_ranks
    from ragtune.retrieval.bm25 import BM25Retriever

    texts = load_queries(queries / "queries.jsonl")
    corpus = load_corpus(data / "corpus.jsonl")
    rows = []
    for _, row in iter_jsonl(difficulty_provenance):
        if row.get("failed") or row["query_id"] not in texts:
            continue
        d = row.get("difficulty") if isinstance(row.get("difficulty"), dict) else {}
        rows.append({"query_id": row["query_id"], "doc_id": row["doc_id"], "text": texts[row["query_id"]],
                     "rank": d.get("rank"), "difficulty": d.get("difficulty"),
                     "kept": (row.get("filters") or {}).get("kept")})
    bm25 = BM25Retriever()
    bm25.index(corpus.values())
    run = bm25.search({r["query_id"]: r["text"] for r in rows}, k=min(10, len(corpus)))
    ranks = source_ranks(run, [Candidate(r["query_id"], r["doc_id"], r["text"]) for r in rows])
    result = round_quality(rows, {d: doc.content for d, doc in corpus.items()}, band,
                           {r["query_id"]: rank for r, rank in zip(rows, ranks, strict=True)})
    kept = [r for r in rows if r["kept"]]
    result["kept_fraction"] = len(kept) / len(rows) if rows else 0.0
    if examples:
        result["style"] = style_stats([r["text"] for r in rows], examples)
    write_json(out / "quality.json", result)
    return result


def eval_documents(corpus_ids: list[str], exclude: set[str], n: int, seed: int) -> list[str]:
    """A seeded sample of `n` documents outside `exclude` (the RL stage's prompts)."""
    pool = sorted(set(corpus_ids) - exclude)
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


def rl_eval_docs(data: Path, generated: Path, held: set[str], n: int, seed: int) -> list[str]:
    """Documents the round neither generated for nor held out for the guard."""
    seen = {row["doc_id"] for _, row in iter_jsonl(generated / "provenance.jsonl")}
    return eval_documents(list(load_corpus(data / "corpus.jsonl")), seen | held, n, seed)


def rl_eval(data: Path, docs: list[str], retriever_model: Path, out: Path, before: tuple[str, Path | None],
            after: tuple[str, Path | None], template: str, gen_over: dict[str, Any], reward_cfg,
            rl_cpu_seconds: float | None) -> dict[str, Any]:
    """Queries for `docs` from the generator `before` and `after` the RL stage ((model, adapter) each), scored by the
    loop's reward under the round's retriever."""
    from scipy.stats import ttest_rel

    from ragtune.config import build_config
    from ragtune.evaluate.generator_quality import copy_rate, words
    from ragtune.generate.config import GenerateConfig
    from ragtune.generate.generator import generate_queries
    from ragtune.train.generator.loop_reward import LoopReward

    corpus = load_corpus(data / "corpus.jsonl")
    ids = out / "documents.txt"
    ids.write_text("\n".join(docs) + "\n", encoding="utf-8")
    keep = {k: v for k, v in gen_over.items() if k not in ("sample_num", "round", "unlabeled_corpus_id", "progress")}
    reward = LoopReward(corpus, retriever_model, reward_cfg)
    sides: dict[str, dict[str, list[dict]]] = {}
    for name, (model, adapter) in (("before", before), ("after", after)):
        folder = out / name
        build = {"corpus": str(data), "output_dir": str(folder), "model_name_or_path": model,
                 "adapter_name_or_path": str(adapter) if adapter else None, "template": template,
                 **keep, "unlabeled_corpus_id": str(ids), "sample_num": None, "progress": False}
        generate_queries(build_config(GenerateConfig, build, "generate"))
        texts = load_queries(folder / "queries.jsonl")
        prov = [row for _, row in iter_jsonl(folder / "provenance.jsonl") if not row.get("failed")]
        parts = reward.parts([texts[r["query_id"]] for r in prov], [r["doc_id"] for r in prov])
        per_doc: dict[str, list[dict]] = {}
        for r, p in zip(prov, parts, strict=True):
            q = texts[r["query_id"]]
            per_doc.setdefault(r["doc_id"], []).append({**p, "query": q, "copy": copy_rate(q, corpus[r["doc_id"]]
                                                                                         .content),
                                                        "words": len(words(q))})
        sides[name] = per_doc
    shared = sorted(set(sides["before"]) & set(sides["after"]))

    def mean_of(name: str, key: str) -> list[float]:
        return [sum(float(x[key]) for x in sides[name][d]) / len(sides[name][d]) for d in shared]

    result: dict[str, Any] = {"documents": len(shared)}
    for key in ("reward", "kept", "band", "rr", "gap", "copy", "words"):
        b, a = mean_of("before", key), mean_of("after", key)
        result[key] = {"before": sum(b) / len(b), "after": sum(a) / len(a), "delta": (sum(a) - sum(b)) / len(b)}
    b, a = mean_of("before", "reward"), mean_of("after", "reward")
    p = float(ttest_rel(a, b).pvalue) if len(shared) > 1 and any(x != y for x, y in zip(a, b, strict=True)) else 1.0
    result["reward"]["p_value"] = p if p == p else 1.0
    result["rl_cpu_seconds"] = rl_cpu_seconds
    if rl_cpu_seconds:
        result["reward_delta_per_cpu_minute"] = result["reward"]["delta"] / (rl_cpu_seconds / 60)
    write_jsonl(out / "per_document.jsonl", ({"doc_id": d, "before": sides["before"][d], "after": sides["after"][d]}
                                             for d in shared))
    write_json(out / "rl_eval.json", result)
    return result
