"""Query checks, shard durability and document selection for `ragtune generate`."""

from __future__ import annotations

import json

import pytest

from ragtune.config import ConfigError
from ragtune.data.beir import load_corpus
from ragtune.data.errors import DataFormatError
from ragtune.generate.checks import clean_query, normalize, rejection
from ragtune.generate.selection import few_shot_pairs, select_documents
from ragtune.generate.shards import ShardWriter, read_shards, shard_path


def test_clean_and_reject():
    assert clean_query('\n Query: "heart signal"\nmore') == "heart signal"
    doc = normalize("The small virus damages the tissue of the lung in patients with asthma.")
    assert rejection("   ", doc, set(), 8) == "empty"
    assert rejection("Virus tissue?", doc, {"virus tissue"}, 8) == "duplicate"
    assert rejection("the small virus damages the tissue of the lung", doc, set(), 8) == "copies document"
    assert rejection("small virus damages", doc, set(), 8) is None  # short overlap is a fine query
    assert rejection("does the virus damage lung tissue", doc, set(), 8) is None


def test_shard_torn_tail_is_ignored_then_cut(tmp_path):
    path = shard_path(tmp_path, 0)
    with ShardWriter(path) as w:
        w.write([{"doc_id": "a", "queries": ["x"]}, {"doc_id": "b", "queries": ["y"]}])
    with path.open("ab") as f:
        f.write(b'{"doc_id": "c", "quer')  # a SIGKILL mid-write
    assert set(read_shards(tmp_path)) == {"a", "b"}
    with ShardWriter(path) as w:
        w.write([{"doc_id": "c", "queries": ["z"]}])
    lines = path.read_text().splitlines()
    assert [json.loads(x)["doc_id"] for x in lines] == ["a", "b", "c"]


def test_corrupt_shard_line_is_an_error(tmp_path):
    path = shard_path(tmp_path, 1)
    path.parent.mkdir(parents=True)
    path.write_text('{"doc_id": "a", "queries": []}\nnot json\n{"doc_id": "b"}\n')
    with pytest.raises(DataFormatError, match=r"part-00001.jsonl:2"):
        read_shards(tmp_path)


def test_selection_is_seeded_and_skips_judged_docs(toy_doc2query):
    corpus = load_corpus(toy_doc2query)
    judged = {f"d{i}" for i in range(20)}  # toy_doc2query labels the first 20 documents in train
    a = select_documents(corpus, toy_doc2query, 10, seed=3, exclude_splits=["train"])
    assert a == select_documents(corpus, toy_doc2query, 10, seed=3, exclude_splits=["train"])
    assert len(a) == 10 and not set(a) & judged
    assert a != select_documents(corpus, toy_doc2query, 10, seed=4, exclude_splits=["train"])
    assert len(select_documents(corpus, toy_doc2query, None, 0, exclude_splits=[])) == 40
    with pytest.raises(ConfigError, match=r"sample_num<=20"):
        select_documents(corpus, toy_doc2query, 21, seed=0, exclude_splits=["train"])


def test_id_file(toy_doc2query, tmp_path):
    corpus = load_corpus(toy_doc2query)
    ids = tmp_path / "ids.txt"
    ids.write_text("d3\nd1\n")
    assert select_documents(corpus, toy_doc2query, None, 0, id_file=ids, exclude_splits=["train"]) == ["d3", "d1"]
    ids.write_text("d3\nnope\n")
    with pytest.raises(DataFormatError, match=r'ids.txt:2: unknown document id "nope"'):
        select_documents(corpus, toy_doc2query, None, 0, id_file=ids)


def test_few_shot_examples_avoid_target_docs(toy_doc2query):
    corpus = load_corpus(toy_doc2query)
    shots = few_shot_pairs(corpus, toy_doc2query, "train", 3, seed=0, avoid={"d0", "d1"})
    assert len(shots) == 3 and not {d.id for d, _ in shots} & {"d0", "d1"}
    with pytest.raises(ConfigError, match="few_shot"):
        few_shot_pairs(corpus, toy_doc2query, "train", 25, seed=0, avoid=set())
