"""SPTAR's query_generate arguments and files: `--checkpoint_dir`, `--corpus_file`, `--unlabeled_corpus_id` as a
JSON list of ids, and `--generate_path pseudo_query.json` (a JSON list of {doc_id, query}) beside the BEIR folder."""

from __future__ import annotations

import json

import pytest

from ragtune.config import load_config
from ragtune.data.beir import load_qrels, load_queries
from ragtune.data.errors import DataFormatError
from ragtune.generate.config import GenerateConfig
from ragtune.generate.generator import generate_queries


def _cfg(tiny_lm, tiny_adapter, corpus, out, ids):
    # their names: checkpoint_dir, corpus_file, unlabeled_corpus_id, generate_path, query_per_document, sample_num
    return load_config(GenerateConfig, None, [
        f"model_name_or_path={tiny_lm}", f"checkpoint_dir={tiny_adapter}", "template=default",
        "query_per_document=2", "sample_num=3", "generate_path=pseudo_query.json", f"unlabeled_corpus_id={ids}",
        f"corpus_file={corpus / 'corpus.jsonl'}", f"output_dir={out}", "sampling.max_new_tokens=6", "progress=false",
        "threads=1"])


def test_json_id_list_in_pseudo_query_json_out(tiny_lm, tiny_adapter, toy_doc2query, tmp_path):
    ids = tmp_path / "unlabeled_corpus_id.json"
    ids.write_text(json.dumps(["d30", "d31", "d32", "d33"]))
    cfg = _cfg(tiny_lm, tiny_adapter, toy_doc2query, tmp_path / "gen", ids)
    assert cfg.adapter_name_or_path == tiny_adapter and cfg.corpus.name == "corpus.jsonl"
    summary = generate_queries(cfg)
    pseudo = json.loads((tmp_path / "gen" / "pseudo_query.json").read_text())
    queries, qrels = load_queries(tmp_path / "gen"), load_qrels(tmp_path / "gen" / "qrels" / "train.tsv")
    assert summary["generate_path"] == str(tmp_path / "gen" / "pseudo_query.json")
    assert len(pseudo) == len(queries) == summary["queries"] > 0
    assert {d["doc_id"] for d in pseudo} <= {"d30", "d31", "d32", "d33"} and len({d["doc_id"] for d in pseudo}) <= 3
    by_text = {(next(iter(qrels[q])), text) for q, text in queries.items()}
    assert {(d["doc_id"], d["query"]) for d in pseudo} == by_text  # the same pairs as the BEIR folder


def test_bad_json_id_list_names_the_item(tiny_lm, tiny_adapter, toy_doc2query, tmp_path):
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(["d1", "nope"]))
    with pytest.raises(DataFormatError, match='ids.json: item 1: unknown document id "nope"'):
        generate_queries(_cfg(tiny_lm, tiny_adapter, toy_doc2query, tmp_path / "gen", ids))
