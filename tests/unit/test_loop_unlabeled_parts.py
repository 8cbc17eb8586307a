"""The unlabeled mode's pieces without models: example queries, example pairs from a file, the guard's hold-out."""

import json
from pathlib import Path

import pytest

from ragtune.config import ConfigError
from ragtune.data.beir import load_qrels, write_beir
from ragtune.data.errors import DataFormatError
from ragtune.generate.selection import read_shots
from ragtune.pipeline.guard import DECIDE, SELECT, GuardConfig, held_documents, holdout
from ragtune.pipeline.style import read_examples
from ragtune.train.retriever.dev import carve_dev


def test_example_queries_file_takes_2_to_16_and_names_the_file(tmp_path):
    ok = tmp_path / "ok.txt"
    ok.write_text("what is rain\n\n  how do cats purr  \n")
    assert read_examples(ok) == ["what is rain", "how do cats purr"]
    one = tmp_path / "one.txt"
    one.write_text("only one\n")
    with pytest.raises(DataFormatError, match="one.txt.*1 example queries"):
        read_examples(one)
    many = tmp_path / "many.txt"
    many.write_text("".join(f"q{i}\n" for i in range(17)))
    with pytest.raises(DataFormatError, match="17 example queries"):
        read_examples(many)


def test_shot_pairs_file_errors_name_the_line_and_count(tmp_path):
    path = tmp_path / "shots.jsonl"
    path.write_text(json.dumps({"document": "d1", "query": "q1"}) + "\n" + json.dumps({"document": "d2"}) + "\n")
    assert read_shots(path, 1) == [("d1", "q1")]
    with pytest.raises(DataFormatError, match=r"shots.jsonl:2.*query"):
        read_shots(path, None)  # all of them: the bad line too
    with pytest.raises(DataFormatError, match=r"shots.jsonl:2.*query"):
        read_shots(path, 2)
    path.write_text(json.dumps({"document": "d1", "query": "q1"}) + "\n")
    with pytest.raises(ConfigError, match="2 examples requested"):
        read_shots(path, 2)


def test_a_dev_folder_is_used_whole_at_fraction_one():
    dev, rest = carve_dev([f"q{i}" for i in range(7)], 1.0, seed=3)
    assert dev == sorted(f"q{i}" for i in range(7)) and rest == []
    dev, rest = carve_dev([f"q{i}" for i in range(7)], 1.0, seed=3, max_queries=4)
    assert len(dev) == 4 and len(rest) == 3


def test_guard_holdout_splits_documents_not_queries(tmp_path):
    corpus = [{"_id": f"d{i}", "text": f"document {i}"} for i in range(20)]
    queries = {f"q{i}-{j}": f"query {i} {j}" for i in range(12) for j in range(2)}  # two kept queries a document
    qrels = {q: {f"d{q[1:].split('-')[0]}": 1} for q in queries}
    write_beir(tmp_path / "kept", None, queries, {"train": qrels})
    write_beir(tmp_path / "data", corpus, {}, {})
    counts = holdout(tmp_path / "kept", tmp_path / "data", tmp_path / "out", GuardConfig(documents=8, seed=1))
    held = held_documents(tmp_path / "out")
    assert counts["documents"] == len(held) == 6  # at most half the documents with kept queries
    parts = {name: load_qrels(tmp_path / "out" / name / "qrels" / "train.tsv") for name in (SELECT, DECIDE)}
    docs = {name: {next(iter(d)) for d in q.values()} for name, q in parts.items()}
    assert not docs[SELECT] & docs[DECIDE] and docs[SELECT] | docs[DECIDE] == held
    assert counts["select_queries"] + counts["decide_queries"] == 2 * len(held)  # both queries of each held document
    again = holdout(tmp_path / "kept", tmp_path / "data", tmp_path / "again", GuardConfig(documents=8, seed=1))
    assert again == counts and held_documents(tmp_path / "again") == held


def test_other_generator_writes_for_the_decide_documents_with_shots_from_other_documents(tmp_path, monkeypatch):
    from ragtune.pipeline import guard, stages

    corpus = [{"_id": f"d{i}", "title": f"title {i}", "text": f"document {i}"} for i in range(10)]
    # judged train pairs on d0-d5: the decide documents d0 and d1 must never be an example
    train = {f"t{i}": {f"d{i}": 1} for i in range(6)}
    write_beir(tmp_path / "labeled", corpus, {q: f"train query {q}" for q in train}, {"train": train})
    write_beir(tmp_path / "hold" / DECIDE, None, {"p0": "a", "p1": "b", "p2": "c"},
               {"train": {"p0": {"d0": 1}, "p1": {"d0": 1}, "p2": {"d1": 1}}})
    calls = []
    monkeypatch.setattr(stages, "generate", lambda *a: calls.append(a) or {"queries": 4})
    cfg = GuardConfig(decide_on="other_generator", other_queries=3, other_shots=2, seed=5)
    settings = {"sample_num": 1000, "batch_size": 16, "max_doc_tokens": 192}
    res = guard.other_generator_queries(tmp_path / "data", tmp_path / "hold", tmp_path / "out", cfg, "org/base",
                                        "auto", settings, (tmp_path / "labeled", "train"))
    assert res == {"queries": 4}
    [(data, out, model, adapter, template, round_, over)] = calls
    assert (model, adapter, out) == ("org/base", None, tmp_path / "out" / "generate")
    assert (tmp_path / "out" / guard.DOCS).read_text().split() == ["d0", "d1"]
    assert over["unlabeled_corpus_id"] == str(tmp_path / "out" / guard.DOCS) and over["sample_num"] is None
    assert over["exclude_splits"] == [] and over["query_per_document"] == 3 and over["few_shot"] == 2
    assert over["batch_size"] == 16 and over["max_doc_tokens"] == 192
    shots = read_shots(Path(over["few_shot_file"]), None)
    assert len(shots) == 2 and all(q.startswith("train query t") for _, q in shots)
    assert not {q for _, q in shots} & {"train query t0", "train query t1"}  # never a decide document's pair
    # a given shot file (the style stage's) is used as it is
    calls.clear()
    given = tmp_path / "style.jsonl"
    given.write_text('{"document": "a page", "query": "what is it"}\n')
    guard.other_generator_queries(tmp_path / "data", tmp_path / "hold", tmp_path / "out2", cfg.model_copy(
        update={"other_shots": 1}), "org/base", "auto", settings, given)
    assert calls[0][-1]["few_shot_file"] == str(given) and calls[0][-1]["few_shot"] == 1
