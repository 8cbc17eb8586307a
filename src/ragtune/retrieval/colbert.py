"""Late-interaction (ColBERT) retrieval: MaxSim scoring, a token-embedding index, BM25-candidate re-ranking.

    retriever = ColbertRetriever(ColbertConfig(model="runs/scifact/colbert"))
    retriever.index(docs)               # token embeddings (float16 optional) + a faiss index over tokens
    run = retriever.search({"q1": "..."}, k=100)   # faiss candidates, then exact MaxSim over their tokens
    ColbertRetriever(ColbertConfig(model=..., index="plaid"))   # compressed: centroid ids + PQ residuals
    run = retriever.rerank(bm25_run, queries, corpus, top=100)    # cheap mode: MaxSim over BM25's candidates

The model is a sentence-transformers `MultiVectorEncoder` (train/retriever/colbert.py builds and trains one):
`encode_query` / `encode_document` give one normalized vector per token (query marker and mask-token
expansion included), and the score of a (query, document) pair is MaxSim:
`sum over query tokens of max over document tokens of q_i . d_j`.

Two indexes: `flat` keeps every token vector and searches them exactly with faiss for candidates; `plaid`
(retrieval/colbert_plaid.py) keeps a centroid id and a product-quantized residual per token, generates
candidates from centroid lists and re-scores them exactly (decompressed, or from the full vectors on disk).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ragtune.atomic import atomic_open, write_json
from ragtune.config import CommaList, ConfigModel
from ragtune.data.records import Doc
from ragtune.hardware import auto_dtype
from ragtune.models import fingerprint, resolve_model
from ragtune.paths import cache_dir, mark_used
from ragtune.retrieval.base import DocIndex, Run
from ragtune.retrieval.colbert_plaid import PlaidIndex, PlaidSettings
from ragtune.retrieval.dense import precision
from ragtune.retrieval.encode_cache import corpus_key

META = "ragtune_colbert.json"


# ---------------------------------------------------------------- scoring (pure functions)


def maxsim(q: np.ndarray, d: np.ndarray) -> float:
    """MaxSim of one query (Tq x dim) against one document (Td x dim).

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> d = np.array([[0.6, 0.8], [1.0, 0.0]])
    >>> maxsim(q, d)          # max(0.6, 1.0) + max(0.8, 0.0)
    1.8
    """
    if len(q) == 0 or len(d) == 0:
        return 0.0
    return float(np.round((q @ d.T).max(axis=1).sum(), 6))


def maxsim_many(q: np.ndarray, docs: np.ndarray, offsets: np.ndarray, ids: Iterable[int]) -> np.ndarray:
    """MaxSim of one query against several documents stored back to back in `docs`.

    Document i's tokens are `docs[offsets[i]:offsets[i + 1]]`.

    >>> q = np.array([[1.0, 0.0]])
    >>> docs = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    >>> [round(float(s), 2) for s in maxsim_many(q, docs, np.array([0, 2, 3]), [0, 1])]
    [0.9, 0.2]
    """
    ids = list(ids)
    out = np.zeros(len(ids), dtype=np.float32)
    if not ids:
        return out
    qf = np.asarray(q, dtype=np.float32)
    for j, i in enumerate(ids):
        block = np.asarray(docs[offsets[i]:offsets[i + 1]], dtype=np.float32)
        out[j] = (qf @ block.T).max(axis=1).sum() if len(block) else 0.0
    return out


# ---------------------------------------------------------------- index


class ColbertConfig(ConfigModel):
    model: str = "runs/colbert"
    """A MultiVectorEncoder folder (`ragtune train colbert` output)."""
    batch_size: int = Field(32, ge=1)
    dtype: Literal["float32", "float16"] = "float16"
    """Storage of token embeddings on disk and in memory; float16 halves it (scores are computed in float32)."""
    index: Literal["flat", "plaid"] = "flat"
    """flat: every token vector in a faiss flat index (exact candidates, dim x 4 bytes per token in RAM); plaid:
    the compressed index (a centroid id + `plaid.pq_m` bytes per token), settings under `plaid`."""
    plaid: PlaidSettings = Field(default_factory=PlaidSettings)
    candidate_tokens: int = Field(64, ge=1)
    """flat: faiss neighbours fetched per query token; their documents are the candidates for exact MaxSim."""
    max_candidates: int = Field(2000, ge=1)
    """flat: cap on documents re-scored per query (the ones hit by the most query tokens first)."""
    document_length: int | None = Field(None, ge=1)
    """Override the model's document token limit."""
    encode_dtype: Literal["float32", "bfloat16", "auto"] = "float32"
    """Encoding precision (torch autocast); auto = bfloat16 on CPUs with native bf16 and on GPUs."""
    cache: bool = True
    """Reuse the corpus token embeddings from ~/.cache/ragtune (or $RAGTUNE_CACHE), keyed by model and corpus."""
    device: str = "auto"
    threads: int = 0
    encode_devices: Annotated[list[str], CommaList] = Field(default_factory=list)
    """Encode the corpus's token vectors in one worker process per device (e.g. cuda:0,cuda:1 or cpu,cpu);
    empty = in this process. The merged index is the one a single process builds."""


class ColbertRetriever(DocIndex):
    """Token embeddings of a corpus, faiss over the tokens for candidates, exact MaxSim for the ranking."""

    name, label = "colbert", "ColBERT"

    def __init__(self, cfg: ColbertConfig | None = None, model=None):
        self.cfg = cfg or ColbertConfig()
        self._own_model = model is None  # only a model loaded from cfg.model can be loaded again by workers
        self.model = model if model is not None else load_colbert(self.cfg)
        self.cache_model = None if model is not None else Path(resolve_model(self.cfg.model))
        device = self.model.device.type
        self.encode_dtype = auto_dtype(device) if self.cfg.encode_dtype == "auto" else self.cfg.encode_dtype
        self.doc_ids: list[str] = []
        self.embeddings: np.ndarray | None = None  # (total tokens, dim)
        self.offsets: np.ndarray | None = None     # (docs + 1,)
        self.token_doc: np.ndarray | None = None   # (total tokens,) document index of each token
        self._index = None
        self.plaid: PlaidIndex | None = None

    # -- encoding
    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        with precision(self.encode_dtype, self.model.device.type):
            embs = self.model.encode_query(texts, batch_size=self.cfg.batch_size, convert_to_numpy=True,
                                           show_progress_bar=False)
        return [np.asarray(e, dtype=np.float32) for e in embs]

    def encode_documents(self, texts: list[str], show_progress: bool = False) -> list[np.ndarray]:
        with precision(self.encode_dtype, self.model.device.type):
            embs = self.model.encode_document(texts, batch_size=self.cfg.batch_size, convert_to_numpy=True,
                                              show_progress_bar=show_progress)
        return [np.asarray(e, dtype=self.cfg.dtype) for e in embs]

    def _encode_corpus(self, ids: list[str], texts: list[str], show_progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """(token vectors back to back, offsets), from the cache when this model already encoded this corpus."""
        folder = None
        if self.cfg.cache and self.cache_model is not None:
            settings = f"colbert|{self.model[0].document_length}|{self.cfg.dtype}|{self.encode_dtype}"
            folder = cache_dir("colbert-tokens", corpus_key(fingerprint(self.cache_model), settings, ids, texts))
            if (folder / "offsets.npy").exists():
                mark_used(folder)
                return np.load(folder / "tokens.npy"), np.load(folder / "offsets.npy")
        if self.cfg.encode_devices and self._own_model:
            from ragtune.retrieval.workers import WorkerPool, chunks_of

            cfg = self.cfg.model_dump(mode="json") | {"encode_devices": []}
            with WorkerPool(partial(colbert_worker, cfg), self.cfg.encode_devices) as pool:
                embs = [e for part in pool.imap(chunks_of(texts, 512)) for e in part]
        else:
            embs = self.encode_documents(texts, show_progress=show_progress)
        offsets = np.concatenate([[0], np.cumsum([len(e) for e in embs])]).astype(np.int64)
        tokens = np.concatenate(embs).astype(self.cfg.dtype, copy=False)
        if folder is not None:
            for name, arr in (("tokens", tokens), ("offsets", offsets)):  # offsets last: it marks a whole entry
                with atomic_open(folder / f"{name}.npy", "wb") as f:
                    np.save(f, arr)
        return tokens, offsets

    # -- index
    def index(self, docs: Iterable[Doc], show_progress: bool = False) -> None:
        pairs = [(d.id, d.content) for d in docs]
        if not pairs:
            raise ValueError("no documents to index")
        self.doc_ids = [p[0] for p in pairs]
        self.embeddings, self.offsets = self._encode_corpus(self.doc_ids, [p[1] for p in pairs], show_progress)
        self._build_index()

    def _build_index(self) -> None:
        import faiss

        if self.cfg.index == "plaid":
            self.plaid = PlaidIndex.build(self.embeddings, self.offsets, self.cfg.plaid)
            self._keep_full_vectors()
            return
        self.token_doc = np.repeat(np.arange(len(self.doc_ids)), np.diff(self.offsets))
        index = faiss.IndexFlatIP(self.embeddings.shape[1])
        chunk = 200_000
        for start in range(0, len(self.embeddings), chunk):
            index.add(np.ascontiguousarray(self.embeddings[start:start + chunk], dtype=np.float32))
        self._index = index

    # -- search
    def candidates(self, q: np.ndarray) -> list[int]:
        """Documents owning the nearest tokens of any query token, most hits first."""
        return self.candidates_many([q])[0]

    def candidates_many(self, queries: list[np.ndarray], chunk_tokens: int = 4096) -> list[list[int]]:
        """`candidates` for many queries, the tokens of up to `chunk_tokens` of them searched together: one faiss
        call per group is a matrix product, where one call per query was a matrix-vector loop (the difficulty
        stage searches thousands of pseudo queries)."""
        kk = min(self.cfg.candidate_tokens, len(self.embeddings))
        out: list[list[int]] = []
        group: list[np.ndarray] = []
        size = 0
        for i, q in enumerate(queries):
            group.append(q)
            size += len(q)
            if i + 1 < len(queries) and size + len(queries[i + 1]) <= chunk_tokens:
                continue
            _, idx = self._index.search(np.ascontiguousarray(np.concatenate(group), dtype=np.float32), kk)
            start = 0
            for g in group:
                hits = idx[start:start + len(g)]
                start += len(g)
                docs = self.token_doc[hits[hits >= 0]]
                uniq, counts = np.unique(docs, return_counts=True)
                order = np.argsort(-counts, kind="stable")
                out.append(uniq[order][: self.cfg.max_candidates].tolist())
            group, size = [], 0
        return out

    def _keep_full_vectors(self) -> None:
        """plaid keeps the full vectors only to re-score from them (memory-mapped once saved)."""
        if self.cfg.plaid.rescore == "full":
            self.plaid.full = self.embeddings
        else:
            self.embeddings = None

    def search(self, queries: Mapping[str, str], k: int = 100, show_progress: bool = False) -> Run:
        from tqdm.auto import tqdm

        qids, k = self._plan(self._index is not None or self.plaid is not None, queries, k)
        embs = self.encode_queries([queries[q] for q in qids])
        run: Run = {}
        if self.plaid is not None:
            for qid, q in tqdm(list(zip(qids, embs, strict=True)), desc="plaid", disable=not show_progress):
                docs, scores = self.plaid.search(q, k)
                run[qid] = {self.doc_ids[i]: float(s) for i, s in zip(docs, scores, strict=True)}
            return run
        cands = self.candidates_many(embs)
        for qid, q, cand in tqdm(list(zip(qids, embs, cands, strict=True)), desc="maxsim",
                                 disable=not show_progress):
            scores = maxsim_many(q, self.embeddings, self.offsets, cand)
            top = np.argsort(-scores, kind="stable")[:k]
            run[qid] = {self.doc_ids[cand[i]]: float(scores[i]) for i in top}
        return run

    def rerank(self, run: Run, queries: Mapping[str, str], corpus: Mapping[str, str], top: int = 100) -> Run:
        """Cheap mode: MaxSim over the first stage's top documents only (no corpus index needed)."""
        heads = {q: [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
                 for q, docs in run.items() if q in queries}
        needed = sorted({d for ds in heads.values() for d in ds})
        embs = self.encode_documents([corpus[d] for d in needed])
        pos = {d: i for i, d in enumerate(needed)}
        offsets = np.concatenate([[0], np.cumsum([len(e) for e in embs])]).astype(np.int64)
        flat = np.concatenate(embs) if embs else np.zeros((0, 1), dtype=np.float32)
        qids = list(heads)
        qembs = self.encode_queries([queries[q] for q in qids])
        out: Run = {}
        for qid, q in zip(qids, qembs, strict=True):
            scores = maxsim_many(q, flat, offsets, [pos[d] for d in heads[qid]])
            out[qid] = {d: float(s) for d, s in zip(heads[qid], scores, strict=True)}
        return out

    # -- persistence
    def save(self, path: str | Path) -> None:
        """flat: the token vectors; plaid: the compressed arrays, plus the full vectors when it re-scores from them."""
        path = Path(path)
        if self.plaid is not None:
            self.plaid.save(path)
        if self.embeddings is not None:
            with atomic_open(path / "token_embeddings.npy", "wb") as f:
                np.save(f, self.embeddings)
        with atomic_open(path / "offsets.npy", "wb") as f:
            np.save(f, self.offsets)
        write_json(path / "doc_ids.json", self.doc_ids)
        write_json(path / META, self.cfg.model_dump(mode="json"))

    @classmethod
    def load(cls, path: str | Path, model=None) -> ColbertRetriever:
        path = Path(path)
        cfg = ColbertConfig(**json.loads((path / META).read_text()))
        self = cls(cfg, model=model)
        self.doc_ids = json.loads((path / "doc_ids.json").read_text())
        self.offsets = np.load(path / "offsets.npy")
        if cfg.index == "plaid":
            self.plaid = PlaidIndex.load(path, cfg.plaid)
            if cfg.plaid.rescore == "full":
                self.embeddings = self.plaid.full = np.load(path / "token_embeddings.npy", mmap_mode="r")
            return self
        self.embeddings = np.load(path / "token_embeddings.npy", mmap_mode="r")
        self._build_index()
        return self


def load_colbert(cfg: ColbertConfig):
    """The MultiVectorEncoder at cfg.model, on the configured device and threads."""
    from sentence_transformers import MultiVectorEncoder

    from ragtune.hardware import pick_device, set_threads
    from ragtune.models import resolve_model

    set_threads(cfg.threads)
    model = MultiVectorEncoder(str(resolve_model(cfg.model)), device=pick_device(cfg.device), local_files_only=True)
    if cfg.document_length:
        model[0].document_length = cfg.document_length
    return model


def colbert_worker(cfg: dict, device: str, threads: int):
    """A worker process's document encoder (retrieval/workers.py), on its own device."""
    return ColbertRetriever(ColbertConfig(**cfg | {"device": device, "threads": threads})).encode_documents
