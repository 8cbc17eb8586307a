"""Shared by the query-generation tests: a `GenerateConfig` on the tiny LM, and the check that a run's BEIR output
and provenance are complete."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ragtune.config import load_config
from ragtune.data.beir import load_qrels, load_queries
from ragtune.generate.config import GenerateConfig


def generate_cfg(tiny_lm: Path, corpus: Path, out: Path, *overrides: str) -> GenerateConfig:
    base = [f"model_name_or_path={tiny_lm}", f"corpus={corpus}", f"output_dir={out}", "sampling.max_new_tokens=6",
            "batch_size=4", "progress=false", "threads=1"]
    return load_config(GenerateConfig, None, base + list(overrides))


def provenance(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "provenance.jsonl").read_text().splitlines()]


def check_complete(out: Path, k: int, n_docs: int) -> list[dict]:
    """Every selected document has exactly k provenance rows; kept queries are in queries.jsonl and qrels."""
    rows = provenance(out)
    per_doc = Counter(r["doc_id"] for r in rows)
    assert len(per_doc) == n_docs and set(per_doc.values()) == {k}
    assert len({r["query_id"] for r in rows}) == len(rows)
    queries, qrels = load_queries(out), load_qrels(out / "qrels" / "train.tsv")
    kept = [r for r in rows if not r["failed"]]
    assert set(queries) == {r["query_id"] for r in kept} == set(qrels)
    assert all(qrels[r["query_id"]] == {r["doc_id"]: 1} for r in kept)
    for r in rows:
        assert r["filters"] == {} and r["difficulty"] is None and r["round"] == 0 and "sampling" in r
        if r["failed"]:
            assert r["reason"] in {"empty", "duplicate", "copies document", "copies an example"}
    return rows
