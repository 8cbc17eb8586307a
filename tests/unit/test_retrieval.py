import json
import os
from pathlib import Path

import numpy as np
import pytest

from ragtune.data.beir import load_beir
from ragtune.data.records import Doc
from ragtune.retrieval.bm25 import BM25Config, BM25Retriever
from ragtune.retrieval.dense import DenseConfig, DenseRetriever
from ragtune.retrieval.encode_cache import cached_encode


def test_bm25_ranks_verbatim_query_document_first(tiny_beir):
    ds = load_beir(tiny_beir)
    r = BM25Retriever()
    r.index(ds.corpus.values())
    queries = {did: doc.text for did, doc in ds.corpus.items()}
    run = r.search(queries, k=3)
    for did, hits in run.items():
        assert max(hits, key=hits.get) == did


def test_bm25_stems_and_drops_stopwords_and_unmatched(tiny_beir):
    r = BM25Retriever(BM25Config(k1=0.9, b=0.4))
    r.index(load_beir(tiny_beir).corpus.values())
    run = r.search({"a": "orbiting comets", "b": "the of and", "c": "zzzz"}, k=10)
    assert next(iter(run["a"])) == "d1"  # "orbiting" stems to "orbit"
    assert run["b"] == {} and run["c"] == {}  # no matching term -> nothing retrieved
    assert len(r.search({"x": "bread"}, k=100)["x"]) <= 6  # k larger than corpus is clamped


def test_bm25_save_load_mmap(tiny_beir, tmp_path):
    r = BM25Retriever(BM25Config(k1=1.5, method="bm25+"))
    r.index(load_beir(tiny_beir).corpus.values())
    r.save(tmp_path / "idx")
    again = BM25Retriever.load(tmp_path / "idx")
    assert again.cfg.method == "bm25+" and again.cfg.k1 == 1.5
    q = {"q": "violin bow string instrument"}
    assert again.search(q, 3)["q"] == pytest.approx(r.search(q, 3)["q"])


def test_bm25_chinese_uses_jieba():
    docs = [Doc(_id="a", text="北京是中华人民共和国的首都。"),
            Doc(_id="b", text="上海是一座国际化大都市，位于长江入海口。")]
    r = BM25Retriever(BM25Config(language="zh"))
    r.index(docs)
    run = r.search({"q": "中国的首都是哪里"}, k=2)
    assert next(iter(run["q"])) == "a"


def test_bm25_errors():
    with pytest.raises(ValueError, match="index is empty"):
        BM25Retriever().search({"q": "x"})
    r = BM25Retriever()
    r.index([Doc(_id="a", text="alpha beta")])
    with pytest.raises(ValueError, match="pass k >= 1"):
        r.search({"q": "alpha"}, k=0)


def test_dense_search_save_load_and_cache(tiny_beir, tiny_bert, tmp_path):
    ds = load_beir(tiny_beir)
    cfg = DenseConfig(model=str(tiny_bert), batch_size=4)
    r = DenseRetriever(cfg)
    r.index(ds.corpus.values())
    run = r.search({d: doc.content for d, doc in ds.corpus.items()}, k=6)
    for did, hits in run.items():  # a document's own text scores cosine 1, the maximum
        assert hits[did] == pytest.approx(1.0, abs=1e-4) and hits[did] >= max(hits.values()) - 1e-5
    assert list(Path(os.environ["RAGTUNE_CACHE"]).glob("embeddings/*/emb.npy")), "embeddings were not cached"
    # a second retriever reuses the cache instead of encoding: make encoding fail to prove it
    r2 = DenseRetriever(cfg)
    r2.encode = lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-encoded"))
    r2.index(ds.corpus.values())
    np.testing.assert_allclose(r2.embeddings, r.embeddings)
    r.save(tmp_path / "dense")
    again = DenseRetriever.load(tmp_path / "dense")
    q = {"q": "comet tail"}
    assert again.search(q, 3)["q"] == pytest.approx(r.search(q, 3)["q"], rel=1e-5)
    assert json.loads((tmp_path / "dense" / "doc_ids.json").read_text()) == list(ds.corpus)


def test_dense_hnsw_matches_flat_on_small_corpus(tiny_beir, tiny_bert):
    docs = list(load_beir(tiny_beir).corpus.values())
    flat = DenseRetriever(DenseConfig(model=str(tiny_bert), cache=False))
    flat.index(docs)
    hnsw = DenseRetriever(DenseConfig(model=str(tiny_bert), index="hnsw", cache=False))
    hnsw.index(docs)
    q = {"q": "bread oven yeast"}
    assert list(hnsw.search(q, 3)["q"]) == list(flat.search(q, 3)["q"])


def test_cached_encode_resumes_after_interrupt(tmp_path):
    texts = [f"t{i}" for i in range(10)]
    calls: list[list[str]] = []
    crash_on_call = [3]

    def encode(chunk):
        calls.append(list(chunk))
        if len(calls) in crash_on_call:
            raise KeyboardInterrupt
        return np.array([[float(t[1:]), 1.0] for t in chunk], dtype=np.float32)

    with pytest.raises(KeyboardInterrupt):
        cached_encode(tmp_path / "c", texts, texts, encode, dim=2, chunk=3)
    assert not (tmp_path / "c" / "emb.npy").exists()  # no half-written final artifact
    calls.clear()
    crash_on_call.clear()
    emb = cached_encode(tmp_path / "c", texts, texts, encode, dim=2, chunk=3)
    np.testing.assert_array_equal(emb[:, 0], np.arange(10))
    assert calls == [["t6", "t7", "t8"], ["t9"]]  # rows 0..5 were on disk and are not encoded again


def test_dense_bf16_encoding_is_close_to_float32_and_cached_apart(tiny_beir, tiny_bert, monkeypatch):
    docs = list(load_beir(tiny_beir).corpus.values())
    fp32 = DenseRetriever(DenseConfig(model=str(tiny_bert)))
    bf16 = DenseRetriever(DenseConfig(model=str(tiny_bert), dtype="bfloat16"))
    texts = [d.content for d in docs]
    a, b = fp32.encode(texts), bf16.encode(texts)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)
    assert not np.array_equal(a, b) and (a * b).sum(axis=1).min() > 0.99  # really bf16, and still the same vectors
    assert fp32._cache_folder(["x"], ["y"]) != bf16._cache_folder(["x"], ["y"])
    assert bf16.encode([]).shape == (0, bf16.dim)
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "1")
    assert DenseRetriever(DenseConfig(model=str(tiny_bert), dtype="auto")).dtype == "bfloat16"
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")
    auto = DenseRetriever(DenseConfig(model=str(tiny_bert), dtype="auto"))
    assert auto.dtype == "float32" and auto._cache_folder(["x"], ["y"]) == fp32._cache_folder(["x"], ["y"])


def test_model_fingerprint_covers_weights_configs_and_tokenizer_files_but_not_training_logs(tmp_path):
    from ragtune.models import fingerprint

    names = ["config.json", "model.safetensors", "vocab.txt", "merges.txt", "tokenizer.model", "qwen.tiktoken",
             "tokenizer.json", "trainer_state.json", "checkpoint-2/model.safetensors", "runs/events.txt"]
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("v1")
    for name in names:
        before = fingerprint(tmp_path)
        (tmp_path / name).write_text("v2 longer")  # another size: the fingerprint reads size and mtime
        ignored = name in {"trainer_state.json", "checkpoint-2/model.safetensors", "runs/events.txt"}
        assert (fingerprint(tmp_path) == before) == ignored, name


def test_model_fingerprint_follows_a_copy_that_keeps_file_times_and_tells_hub_names_apart(tmp_path):
    import shutil

    from ragtune.models import fingerprint

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.safetensors").write_text("weights")
    shutil.copytree(tmp_path / "a", tmp_path / "copy")  # copy2: the files keep their times
    assert fingerprint(tmp_path / "copy") == fingerprint(tmp_path / "a")
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "model.safetensors", tmp_path / "b")  # new times: not provably the same
    os.utime(tmp_path / "b" / "model.safetensors", ns=(1, 1))
    assert fingerprint(tmp_path / "b") != fingerprint(tmp_path / "a")
    assert fingerprint("org/model-one") != fingerprint("org/model-two")


ENCODE_SLOWLY = """
import sys, time
from pathlib import Path
import numpy as np
from ragtune.retrieval.encode_cache import cached_encode

def encode(chunk):
    Path(sys.argv[2]).touch()  # the other process may start now
    time.sleep(0.5)
    return np.array([[float(t[1:]), 2.0] for t in chunk], dtype=np.float32)

texts = [f"t{i}" for i in range(6)]
cached_encode(Path(sys.argv[1]), texts, texts, encode, dim=2, chunk=2)
"""


def test_a_second_process_waits_for_the_encode_in_progress_and_reuses_it(tmp_path):
    import subprocess
    import sys
    import time

    started = tmp_path / "started"
    other = subprocess.Popen([sys.executable, "-c", ENCODE_SLOWLY, str(tmp_path / "c"), str(started)])
    try:
        while not started.exists():
            assert other.poll() is None, "the encoding process ended before encoding"
            time.sleep(0.05)
        calls = []
        texts = [f"t{i}" for i in range(6)]
        emb = cached_encode(tmp_path / "c", texts, texts, lambda c: calls.append(c) or np.ones((len(c), 2), "f4"),
                            dim=2, chunk=2)
    finally:
        other.wait(timeout=60)
    assert calls == [] and other.returncode == 0  # nothing encoded twice, nothing written over the other's rows
    np.testing.assert_array_equal(emb, [[i, 2.0] for i in range(6)])
