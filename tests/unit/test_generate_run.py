"""`generate_queries` with the tiny LM: BEIR output + provenance, adapters, and resume after an interrupt."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ragtune.config import ConfigError, load_config
from ragtune.data.beir import load_qrels, load_queries
from ragtune.generate.config import GenerateConfig
from ragtune.generate.generator import generate_queries


def _cfg(tiny_lm: Path, corpus: Path, out: Path, *overrides: str) -> GenerateConfig:
    base = [f"model_name_or_path={tiny_lm}", f"corpus={corpus}", f"output_dir={out}", "sampling.max_new_tokens=6",
            "batch_size=4", "progress=false", "threads=1"]
    return load_config(GenerateConfig, None, base + list(overrides))


def _provenance(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "provenance.jsonl").read_text().splitlines()]


def check_complete(out: Path, k: int, n_docs: int) -> list[dict]:
    """Every selected document has exactly k provenance rows; kept queries are in queries.jsonl and qrels."""
    rows = _provenance(out)
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
            assert r["reason"] in {"empty", "duplicate", "copies document"}
    return rows


def test_generate_writes_beir_and_provenance(tiny_lm, tiny_adapter, toy_doc2query, tmp_path):
    out = tmp_path / "gen"
    s = generate_queries(_cfg(tiny_lm, toy_doc2query, out, "sample_num=6", "query_per_document=2",
                              f"adapter_name_or_path={tiny_adapter}", "few_shot=2"))
    assert s["documents"] == 6 and s["queries"] + s["failed"] == 12
    rows = check_complete(out, 2, 6)
    assert all(r["adapter"] == str(tiny_adapter) and r["few_shot"] == 2 for r in rows)
    assert not {r["doc_id"] for r in rows} & {f"d{i}" for i in range(20)}  # judged train docs are skipped
    assert (out / "config.yaml").is_file() and (out / "generation_summary.json").is_file()
    # rerun: nothing left to do, the same outputs
    before = (out / "provenance.jsonl").read_bytes()
    again = generate_queries(_cfg(tiny_lm, toy_doc2query, out, "sample_num=6", "query_per_document=2",
                                  f"adapter_name_or_path={tiny_adapter}", "few_shot=2"))
    assert again["generated_docs"] == 0 and again["resumed_done"] == 6
    assert (out / "provenance.jsonl").read_bytes() == before
    with pytest.raises(ConfigError, match="different config.*sample_num"):
        generate_queries(_cfg(tiny_lm, toy_doc2query, out, "sample_num=5", "query_per_document=2"))


def test_interrupted_run_resumes_without_duplicates_or_losses(tiny_lm, toy_doc2query, tmp_path):
    out = tmp_path / "gen"
    args = ("exclude_splits=[]", "query_per_document=3", "batch_size=4")

    def stop_after_two(n_batches: int) -> None:
        if n_batches == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_queries(_cfg(tiny_lm, toy_doc2query, out, *args), on_batch=stop_after_two)
    shard = out / "shards" / "part-00000.jsonl"
    assert len(shard.read_text().splitlines()) == 8  # two durable batches of 4 documents
    assert not (out / "queries.jsonl").exists()  # no final artifact from a partial run
    s = generate_queries(_cfg(tiny_lm, toy_doc2query, out, *args))
    assert s["resumed_done"] == 8 and s["generated_docs"] == 32
    check_complete(out, 3, 40)
    assert len(shard.read_text().splitlines()) == 40
