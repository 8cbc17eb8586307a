"""The compressed (PLAID-style) ColBERT index: candidates from centroid lists, approximate centroid scores,
exact re-scoring from decompressed or full vectors, bytes, save/load, and the retriever wiring."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.retrieval.colbert import maxsim
from ragtune.retrieval.colbert_plaid import PlaidIndex, PlaidSettings


def _clustered_docs(n_docs: int = 60, dim: int = 16, seed: int = 0):
    """Documents of 5-20 unit token vectors drawn around 12 topic directions, like contextual token embeddings."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(12, dim))
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(5, 21))
        v = topics[rng.integers(0, 12, size=n)] + 0.35 * rng.normal(size=(n, dim))
        docs.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return docs, np.concatenate(docs), offsets, topics


def _queries(topics: np.ndarray, n: int = 8, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = topics[rng.integers(0, 12, size=6)] + 0.35 * rng.normal(size=(6, topics.shape[1]))
        out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return out


def test_probing_every_centroid_with_full_vectors_is_exact_maxsim():
    docs, flat, offsets, topics = _clustered_docs()
    s = PlaidSettings(centroids=16, pq_m=4, nprobe=16, centroid_score_threshold=None, ndocs=len(docs),
                      rescore="full", train_tokens=256)
    index = PlaidIndex.build(flat, offsets, s)
    index.full = flat
    for q in _queries(topics):
        ids, scores = index.search(q, k=10)
        exact = np.array([maxsim(q, d) for d in docs])
        assert list(ids) == list(np.argsort(-exact, kind="stable")[:10])
        np.testing.assert_allclose(scores, exact[ids], atol=1e-4)


def test_compressed_scores_stay_close_and_the_index_is_smaller():
    docs, flat, offsets, topics = _clustered_docs()
    index = PlaidIndex.build(flat, offsets, PlaidSettings(centroids=16, pq_m=8, nprobe=4, ndocs=30,
                                                          train_tokens=256))
    per_token = index.codes.itemsize + index.residuals.shape[1]  # a centroid id + the residual code
    assert per_token == 2 + 8 < flat.shape[1] * 2  # below even float16 storage of the vectors
    overlap = []
    for q in _queries(topics):
        ids, scores = index.search(q, k=5)
        exact = np.array([maxsim(q, d) for d in docs])
        # decompressed vectors: scores within a few percent of the true MaxSim of the same documents
        np.testing.assert_allclose(scores, exact[ids], rtol=0.08)
        overlap.append(len(set(ids) & set(np.argsort(-exact)[:5])))
    assert np.mean(overlap) >= 4.0  # the true top 5 mostly survives candidate generation and pruning


def test_candidates_come_from_the_probed_centroid_lists():
    _, flat, offsets, topics = _clustered_docs()
    index = PlaidIndex.build(flat, offsets, PlaidSettings(centroids=16, pq_m=4, nprobe=1, train_tokens=256))
    q = _queries(topics, n=1)[0]
    scores = q @ index.centroids.T
    probed = set(np.argmax(scores, axis=1))
    owners = {int(np.searchsorted(offsets, t, side="right") - 1) for t in range(len(flat))
              if index.codes[t] in probed}
    assert set(index.candidates(scores)) == owners


def test_approximate_scores_equal_maxsim_over_centroids():
    docs, flat, offsets, topics = _clustered_docs(n_docs=30)
    index = PlaidIndex.build(flat, offsets, PlaidSettings(centroids=8, pq_m=4, centroid_score_threshold=None,
                                                          train_tokens=256))
    q = _queries(topics, n=1)[0]
    approx = index.approximate(q @ index.centroids.T, np.arange(30))
    by_centroid = [maxsim(q, index.centroids[index.codes[offsets[i]:offsets[i + 1]]]) for i in range(30)]
    np.testing.assert_allclose(approx, by_centroid, atol=1e-4)


def test_save_load_round_trip(tmp_path):
    _, flat, offsets, topics = _clustered_docs()
    index = PlaidIndex.build(flat, offsets, PlaidSettings(centroids=16, pq_m=4, train_tokens=256))
    index.save(tmp_path)
    loaded = PlaidIndex.load(tmp_path, index.s)
    for q in _queries(topics, n=3):
        a, b = index.search(q, 5), loaded.search(q, 5)
        assert list(a[0]) == list(b[0]) and np.allclose(a[1], b[1])
    assert loaded.nbytes() == index.nbytes()


def test_pq_m_must_divide_the_dimension():
    _, flat, offsets, _ = _clustered_docs(n_docs=30)
    with pytest.raises(ValueError, match="pq_m=5 must divide the token dimension 16"):
        PlaidIndex.build(flat, offsets, PlaidSettings(centroids=4, pq_m=5))
