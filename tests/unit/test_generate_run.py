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


def test_every_query_of_a_shot_file_is_an_example_to_avoid(tiny_lm, toy_doc2query, tmp_path, monkeypatch):
    import json

    from ragtune.generate.checks import normalize
    from ragtune.generate.query_generator import QueryGenerator

    shots = tmp_path / "shots.jsonl"
    pairs = [("doc one", "What is A?"), ("doc two", "Where is B?"), ("doc three", "Who made C?")]
    shots.write_text("".join(json.dumps({"document": d, "query": q}) + "\n" for d, q in pairs))
    seen, real = [], QueryGenerator.generate

    def spy(self, batch, k, max_retries=3, copy_min_words=8, seed=0, examples=frozenset()):
        seen.append(examples)
        return real(self, batch, k, max_retries, copy_min_words, seed, examples)

    monkeypatch.setattr(QueryGenerator, "generate", spy)
    generate_queries(generate_cfg(tiny_lm, toy_doc2query, tmp_path / "gen", "sample_num=2", "few_shot=1",
                                  f"few_shot_file={shots}"))
    assert seen and all(e == {normalize(q) for _, q in pairs} for e in seen)  # 3 avoided, 1 in the prompt
