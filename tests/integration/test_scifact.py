"""Real-data checks on BEIR SciFact (skipped when ../shared/data is absent)."""

import pytest

from ragtune.data.beir import load_beir
from ragtune.data.validate import validate
from ragtune.evaluate import evaluate
from ragtune.retrieval.bm25 import BM25Config, BM25Retriever


def test_validate_scifact_counts(scifact):
    result = validate(scifact)
    assert result.ok, [str(p) for p in result.problems.problems]
    assert result.counts["docs"] == 5183 and result.counts["queries"] == 1109
    assert result.counts["train qrels rows"] == 919 and result.counts["test qrels rows"] == 339
    assert result.counts["train queries"] == 809 and result.counts["test queries"] == 300


def test_bm25_matches_pyserini_on_scifact_test(scifact):
    ds = load_beir(scifact, splits=["test"])
    r = BM25Retriever(BM25Config(k1=1.2, b=0.75))
    r.index(ds.corpus.values())
    m = evaluate(ds.qrels["test"], r.search(ds.split_queries("test"), k=1000), ["ndcg@10", "recall@100"]).metrics
    assert 0.674 <= m["ndcg@10"] <= 0.684, m  # Pyserini flat BM25: 0.6789
    assert m["recall@100"] > 0.90


@pytest.mark.slow
def test_minilm_zero_shot_on_scifact_test(scifact):
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    ds = load_beir(scifact, splits=["test"])
    r = DenseRetriever(DenseConfig(model="sentence-transformers/all-MiniLM-L6-v2", max_seq_length=256))
    r.index(ds.corpus.values())
    m = evaluate(ds.qrels["test"], r.search(ds.split_queries("test"), k=1000), ["ndcg@10", "recall@100"]).metrics
    assert 0.640 <= m["ndcg@10"] <= 0.650, m
