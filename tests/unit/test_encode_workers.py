"""Corpus encoding across worker processes (retrieval/workers.py): the pool itself, and dense, ColBERT and BM25
indexes built by two processes equal the one-process ones (the dense cache is one file under the same key)."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ragtune.data.records import Doc
from ragtune.retrieval.workers import WorkerPool


def _tagging_worker(delay: float, started: str, device: str, threads: int):
    (Path(started) / str(os.getpid())).touch()

    def encode(texts: list[str]):
        deadline = time.monotonic() + 120
        while len(list(Path(started).iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # hold the first chunk until both workers are up (a busy machine starts them slowly)
        time.sleep(delay)
        return texts[0], os.getpid(), threads
    return encode


def _broken_worker(device: str, threads: int):
    raise OSError("no such model")


def test_pool_returns_every_chunk_in_order_from_both_workers(tmp_path):
    with WorkerPool(partial(_tagging_worker, 0.05, str(tmp_path)), ["cpu", "cpu"], threads=1) as pool:
        out = list(pool.imap([str(i)] for i in range(12)))
    assert [o[0] for o in out] == [str(i) for i in range(12)]
    assert len({o[1] for o in out}) == 2 and os.getpid() not in {o[1] for o in out}
    assert {o[2] for o in out} == {1}


def test_pool_reports_a_failing_worker():
    with pytest.raises(RuntimeError, match="no such model"), WorkerPool(_broken_worker, ["cpu"]) as pool:
        list(pool.imap([["a"]]))


def _docs(n: int = 40) -> list[Doc]:
    from tiny_bert import fixture_sentences

    s = fixture_sentences(3 * n, seed=4)
    return [Doc(_id=f"d{i}", title=f"doc {i}", text=" ".join(s[3 * i:3 * i + 1 + i % 3])) for i in range(n)]


@pytest.fixture
def chunks_through_pool(monkeypatch) -> list:
    seen: list = []
    imap = WorkerPool.imap

    def counting(self, chunks):
        for out in imap(self, chunks):
            seen.append(out)
            yield out

    monkeypatch.setattr(WorkerPool, "imap", counting)
    return seen


def test_dense_corpus_encoded_by_two_workers_is_the_one_process_cache_file(tiny_bert, tmp_path, monkeypatch,
                                                                             chunks_through_pool):
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    docs = _docs()
    cfg = DenseConfig(model=str(tiny_bert), max_seq_length=64, batch_size=4, chunk_size=8, threads=1)
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "one"))
    one = DenseRetriever(cfg)
    one.index(docs)

    # the pooled run starts from a killed one-process run that finished 2 of the 5 chunks
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "two"))
    killed = DenseRetriever(cfg, model=one.model, model_path=tiny_bert)
    encode, done = killed.encode, []

    def killed_after_two(texts, prompt=""):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(len(texts))
        return encode(texts, prompt)

    killed.encode = killed_after_two
    with pytest.raises(KeyboardInterrupt):
        killed.index(docs)
    two = DenseRetriever(cfg.model_copy(update={"encode_devices": ["cpu", "cpu"]}))
    two.index(docs)
    assert len(chunks_through_pool) == 3  # 40 passages in chunks of 8: 2 resumed, 3 encoded by the workers

    [f1] = (tmp_path / "one").glob("embeddings/*/emb.npy")
    [f2] = (tmp_path / "two").glob("embeddings/*/emb.npy")
    assert f1.parent.name == f2.parent.name  # the same cache key: where it was encoded is not an input
    assert sorted(p.name for p in f2.parent.iterdir()) == ["emb.npy", "ids.json"]
    a, b = np.load(f1), np.load(f2)
    assert a.shape == (40, 32) and np.abs(a - b).max() < 1e-5
    queries = {"q1": "star planet orbit", "q2": "bread oven flour", "q3": "gene protein"}
    r1, r2 = one.search(queries, k=5), two.search(queries, k=5)
    assert {q: list(r) for q, r in r1.items()} == {q: list(r) for q, r in r2.items()}


def test_colbert_token_vectors_from_two_workers_equal_one_process(tiny_bert, tmp_path, chunks_through_pool):
    from ragtune.config import load_config
    from ragtune.retrieval.colbert import ColbertConfig, ColbertRetriever
    from ragtune.retrieval.colbert_model import build_colbert_model
    from ragtune.train.retriever.colbert import ColbertTrainConfig

    train_cfg = load_config(ColbertTrainConfig, None, [f"model_name_or_path={tiny_bert}", "train_data=x.jsonl",
                                                       "output_dir=x", "dim=16", "document_length=24"])
    docs = _docs(600)  # chunks of 512: both workers get one
    build_colbert_model(tiny_bert, train_cfg, "cpu", init_texts=[d.text for d in docs[:50]]).save(
        str(tmp_path / "colbert"))
    cfg = ColbertConfig(model=str(tmp_path / "colbert"), dtype="float32", batch_size=16, threads=1,
                        cache=False)  # both encode: the second would read the first's cached token vectors
    one, two = ColbertRetriever(cfg), ColbertRetriever(cfg.model_copy(update={"encode_devices": ["cpu", "cpu"]}))
    one.index(docs)
    two.index(docs)
    assert len(chunks_through_pool) == 2
    assert np.array_equal(one.offsets, two.offsets) and one.offsets[-1] > 600
    assert np.abs(np.asarray(one.embeddings) - np.asarray(two.embeddings)).max() < 1e-5
    queries = {"q1": "star planet orbit", "q2": "bread oven flour"}
    assert {q: list(r) for q, r in one.search(queries, 5).items()} == \
        {q: list(r) for q, r in two.search(queries, 5).items()}
    one.save(tmp_path / "one")
    two.save(tmp_path / "two")
    assert (Path(tmp_path / "one" / "offsets.npy").read_bytes() == Path(tmp_path / "two" / "offsets.npy").read_bytes())


def test_bm25_tokenized_by_two_workers_builds_the_same_index(tmp_path, chunks_through_pool):
    from ragtune.retrieval.bm25 import BM25Config, BM25Retriever

    docs = _docs()
    one, two = BM25Retriever(), BM25Retriever(BM25Config(processes=2))
    one.index(docs, chunk=7)
    two.index(docs, chunk=7)
    assert len(chunks_through_pool) == 6 and one.doc_ids == two.doc_ids
    one.save(tmp_path / "one")
    two.save(tmp_path / "two")
    for f in sorted((tmp_path / "one").iterdir()):
        if f.name == "ragtune_bm25.json":  # the settings: processes differs
            continue
        assert f.read_bytes() == (tmp_path / "two" / f.name).read_bytes(), f.name
