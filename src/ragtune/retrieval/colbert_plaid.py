"""A compressed ColBERT token index, PLAID-style (Santhanam et al., 2022), on faiss's k-means and product quantizer.

Every token vector is stored as the id of its nearest centroid (IVF) plus a product-quantized residual
(`pq_m` bytes), instead of `dim` floats. A query is answered in three steps:

1. candidates: each query token probes its `nprobe` nearest centroids; the documents owning a token in those
   centroids' lists are the candidates (the lists hold document ids, once per centroid and document);
2. approximate scores: MaxSim with every document token replaced by its centroid (`S = Q @ C.T`, gathered by
   the tokens' centroid ids; centroids whose best score stays below `centroid_score_threshold` count 0), which
   keeps the `ndocs` most promising candidates;
3. exact re-scoring: MaxSim over those candidates' vectors, decompressed (centroid + decoded residual,
   re-normalized), or read from the full float16 vectors memory-mapped from disk (`rescore: full`).

    index = PlaidIndex.build(token_vectors, offsets, PlaidSettings())
    doc_idx, scores = index.search(query_tokens, k=100)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ragtune.atomic import atomic_open
from ragtune.config import ConfigModel

ARRAYS = ("centroids", "codes", "residuals", "offsets", "ivf_offsets", "ivf_docs", "pq_centroids")


class PlaidSettings(ConfigModel):
    """The compressed index (`index: plaid`): how it is built and searched."""

    centroids: int | None = Field(None, ge=2)
    """IVF centroids; default PLAID's rule, the power of two nearest below 16 * sqrt(token count)."""
    pq_m: int = Field(32, ge=1)
    """Product-quantizer sub-vectors per residual: bytes per token at 8 bits (must divide dim)."""
    pq_bits: int = Field(8, ge=1, le=16)
    nprobe: int = Field(4, ge=1)
    """Centroids probed per query token for candidate generation."""
    centroid_score_threshold: float | None = 0.4
    """Centroids whose best score against the query stays below this count 0 in the approximate scores."""
    ndocs: int = Field(512, ge=1)
    """Candidates re-scored exactly per query (the best by approximate score)."""
    rescore: Literal["decompress", "full"] = "decompress"
    """decompress: exact MaxSim over the decompressed vectors (nothing else kept); full: over the full float16
    vectors (memory-mapped from disk once the index is saved)."""
    train_tokens: int = Field(262_144, ge=256)
    """Token vectors sampled to train the k-means and the quantizer."""
    kmeans_iterations: int = Field(10, ge=1)
    seed: int = 0


def default_centroids(n_tokens: int) -> int:
    """PLAID's rule: 2 ** floor(log2(16 * sqrt(n))).

    >>> default_centroids(1_300_000)
    16384
    """
    return 2 ** int(math.floor(math.log2(16 * math.sqrt(max(n_tokens, 1)))))


class PlaidIndex:
    def __init__(self, arrays: dict[str, np.ndarray], settings: PlaidSettings):
        self.s = settings
        for name in ARRAYS:
            setattr(self, name, arrays[name])
        self.pq = self._quantizer(self.centroids.shape[1], self.pq_centroids)
        self.full: np.ndarray | None = None
        """Full token vectors for `rescore: full` (memory-mapped after `load`)."""

    def _quantizer(self, dim: int, centroids: np.ndarray):
        import faiss

        pq = faiss.ProductQuantizer(dim, self.s.pq_m, self.s.pq_bits)
        faiss.copy_array_to_vector(np.ascontiguousarray(centroids, dtype=np.float32), pq.centroids)
        return pq

    # -- build
    @classmethod
    def build(cls, vectors: np.ndarray, offsets: np.ndarray, settings: PlaidSettings | None = None) -> PlaidIndex:
        """Compress `vectors` (tokens x dim, documents back to back, document i = offsets[i]:offsets[i+1])."""
        import faiss

        s = settings or PlaidSettings()
        n, dim = vectors.shape
        if dim % s.pq_m:
            raise ValueError(f"pq_m={s.pq_m} must divide the token dimension {dim}")
        k = min(s.centroids or default_centroids(n), n)
        rng = np.random.default_rng(s.seed)
        sample = np.asarray(vectors[np.sort(rng.choice(n, min(n, s.train_tokens), replace=False))], np.float32)
        kmeans = faiss.Kmeans(dim, k, niter=s.kmeans_iterations, seed=s.seed, max_points_per_centroid=1 << 30)
        kmeans.train(sample)
        centroids = kmeans.centroids.astype(np.float32)
        coarse = faiss.IndexFlatL2(dim)
        coarse.add(centroids)
        pq = faiss.ProductQuantizer(dim, s.pq_m, s.pq_bits)
        _, sample_ids = coarse.search(sample, 1)
        pq.train(np.ascontiguousarray(sample - centroids[sample_ids[:, 0]]))
        codes = np.empty(n, dtype=np.uint16 if k <= 1 << 16 else np.int32)
        residuals = np.empty((n, pq.code_size), dtype=np.uint8)
        for start in range(0, n, 65_536):
            block = np.asarray(vectors[start:start + 65_536], np.float32)
            _, ids = coarse.search(block, 1)
            codes[start:start + len(block)] = ids[:, 0]
            residuals[start:start + len(block)] = pq.compute_codes(np.ascontiguousarray(block - centroids[ids[:, 0]]))
        token_doc = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
        pairs = np.unique(codes.astype(np.int64) * (len(offsets) - 1) + token_doc)  # (centroid, doc), sorted
        pair_centroid = pairs // (len(offsets) - 1)
        ivf_offsets = np.searchsorted(pair_centroid, np.arange(k + 1)).astype(np.int64)
        arrays = {"centroids": centroids, "codes": codes, "residuals": residuals,
                  "offsets": np.asarray(offsets, np.int64), "ivf_offsets": ivf_offsets,
                  "ivf_docs": (pairs % (len(offsets) - 1)).astype(np.int32),
                  "pq_centroids": faiss.vector_to_array(pq.centroids).astype(np.float32)}
        return cls(arrays, s)

    # -- search
    def candidates(self, scores: np.ndarray) -> np.ndarray:
        """Documents in the lists of each query token's `nprobe` best centroids (`scores`: query x centroids)."""
        probe = min(self.s.nprobe, scores.shape[1])
        top = np.argpartition(-scores, probe - 1, axis=1)[:, :probe]
        lists = np.unique(top)
        return np.unique(np.concatenate([self.ivf_docs[self.ivf_offsets[c]:self.ivf_offsets[c + 1]] for c in lists]))

    def _token_ranges(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(token indices of `docs`, back to back; start of each document's run in them)."""
        starts, ends = self.offsets[docs], self.offsets[docs + 1]
        lengths = ends - starts
        runs = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        idx = np.repeat(starts - runs, lengths) + np.arange(int(lengths.sum()))
        return idx, runs

    def approximate(self, scores: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """Centroid-interaction MaxSim of each document in `docs` (no document may be empty)."""
        if self.s.centroid_score_threshold is not None:
            scores = np.where(scores.max(axis=0) >= self.s.centroid_score_threshold, scores, 0.0)
        idx, runs = self._token_ranges(docs)
        per_token = scores[:, self.codes[idx]]                   # query tokens x candidate tokens
        return np.maximum.reduceat(per_token, runs, axis=1).sum(axis=0)

    def decompress(self, token_idx: np.ndarray) -> np.ndarray:
        vecs = self.centroids[self.codes[token_idx]] + self.pq.decode(np.ascontiguousarray(self.residuals[token_idx]))
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True).clip(1e-12)

    def exact(self, q: np.ndarray, docs: np.ndarray) -> np.ndarray:
        idx, runs = self._token_ranges(docs)
        if self.s.rescore == "full":
            if self.full is None:
                raise ValueError('rescore "full" needs the full token vectors: save the index with them, or use '
                                 'rescore "decompress"')
            vecs = np.asarray(self.full[idx], np.float32)
        else:
            vecs = self.decompress(idx)
        return np.maximum.reduceat(q @ vecs.T, runs, axis=1).sum(axis=0)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(document indices, exact MaxSim scores), best first, at most k."""
        q = np.asarray(q, np.float32)
        scores = q @ self.centroids.T
        cand = self.candidates(scores)
        cand = cand[np.diff(self.offsets)[cand] > 0]
        if len(cand) > self.s.ndocs:
            approx = self.approximate(scores, cand)
            cand = cand[np.argpartition(-approx, self.s.ndocs - 1)[:self.s.ndocs]]
        if not len(cand):
            return cand, np.zeros(0, np.float32)
        exact = self.exact(q, cand)
        order = np.argsort(-exact, kind="stable")[:k]
        return cand[order], exact[order]

    # -- bytes and persistence
    def nbytes(self) -> dict[str, int]:
        """Bytes held in RAM by the compressed index (the full vectors, if any, are counted apart)."""
        return {name: int(getattr(self, name).nbytes) for name in ARRAYS}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        for name in ARRAYS:
            with atomic_open(path / f"plaid_{name}.npy", "wb") as f:
                np.save(f, getattr(self, name))

    @classmethod
    def load(cls, path: str | Path, settings: PlaidSettings) -> PlaidIndex:
        path = Path(path)
        return cls({name: np.load(path / f"plaid_{name}.npy") for name in ARRAYS}, settings)
