"""`generate_queries` with the tiny LM: BEIR output + provenance, adapters, and resume after an interrupt."""

from __future__ import annotations

import pytest

from generate_kit import check_complete, generate_cfg
from ragtune.config import ConfigError
from ragtune.generate.generator import generate_queries


def test_generate_writes_beir_andprovenance(tiny_lm, tiny_adapter, toy_doc2query, tmp_path):
    out = tmp_path / "gen"
    s = generate_queries(generate_cfg(tiny_lm, toy_doc2query, out, "sample_num=6", "query_per_document=2",
                              f"adapter_name_or_path={tiny_adapter}", "few_shot=2"))
    assert s["documents"] == 6 and s["queries"] + s["failed"] == 12
    rows = check_complete(out, 2, 6)
    assert all(r["adapter"] == str(tiny_adapter) and r["few_shot"] == 2 for r in rows)
    assert not {r["doc_id"] for r in rows} & {f"d{i}" for i in range(20)}  # judged train docs are skipped
    assert (out / "config.yaml").is_file() and (out / "generation_summary.json").is_file()
    # rerun: nothing left to do, the same outputs
    before = (out / "provenance.jsonl").read_bytes()
    again = generate_queries(generate_cfg(tiny_lm, toy_doc2query, out, "sample_num=6", "query_per_document=2",
                                  f"adapter_name_or_path={tiny_adapter}", "few_shot=2"))
    assert again["generated_docs"] == 0 and again["resumed_done"] == 6
    assert (out / "provenance.jsonl").read_bytes() == before
    with pytest.raises(ConfigError, match="different config.*sample_num"):
        generate_queries(generate_cfg(tiny_lm, toy_doc2query, out, "sample_num=5", "query_per_document=2"))


def test_interrupted_run_resumes_without_duplicates_or_losses(tiny_lm, toy_doc2query, tmp_path):
    out = tmp_path / "gen"
    args = ("exclude_splits=[]", "query_per_document=3", "batch_size=4")

    def stop_after_two(n_batches: int) -> None:
        if n_batches == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_queries(generate_cfg(tiny_lm, toy_doc2query, out, *args), on_batch=stop_after_two)
    shard = out / "shards" / "part-00000.jsonl"
    assert len(shard.read_text().splitlines()) == 8  # two durable batches of 4 documents
    assert not (out / "queries.jsonl").exists()  # no final artifact from a partial run
    s = generate_queries(generate_cfg(tiny_lm, toy_doc2query, out, *args))
    assert s["resumed_done"] == 8 and s["generated_docs"] == 32
    check_complete(out, 3, 40)
    assert len(shard.read_text().splitlines()) == 40
