"""Open a knowledge base and search it: dense (the KB's vectors, or a Qdrant server) + BM25, fused with RRF.

    kb = KnowledgeBase.open("kb")                                   # or store=StoreConfig(url=...) for a server
    hits = kb.search("who founded the Yuan dynasty?", k_dense=20, k_bm25=20, top=5)
    kb.excerpt(hits[0].chunk_id)     # the chunk inside its document: {"text", "start", "end", "source"}

Opening reads JSON, JSONL and `.npy` (allow_pickle=False) only, and holds the KB's shared lock until close(), so
an ingest cannot change it underneath. The server and its API key come from the caller's StoreConfig, never from
the KB folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ragtune.config import ConfigError, ConfigModel
from ragtune.rag.kb_files import CHUNK_FIELDS, DOCUMENT_FIELDS, generation_dir, read_info, read_rows
from ragtune.rag.kb_lock import KbLock
from ragtune.rag.store import StoreConfig
from ragtune.retrieval.fusion import rrf


class SearchConfig(ConfigModel):
    """How a knowledge base is searched: dense and BM25 candidates, fused by reciprocal rank fusion."""

    k_dense: int = Field(20, ge=0)
    """Dense candidates; 0 = BM25 only (e.g. an English embedder over a Chinese knowledge base)."""
    k_bm25: int = Field(20, ge=0)
    """BM25 candidates; 0 = dense only."""
    rrf_k: int = Field(60, ge=0)
    """Reciprocal rank fusion constant."""

    @model_validator(mode="after")
    def _one_side(self) -> SearchConfig:
        if self.k_dense == 0 and self.k_bm25 == 0:
            raise ValueError("k_dense and k_bm25 are both 0: nothing would be searched")
        return self


@dataclass
class Hit:
    chunk_id: str
    score: float
    """RRF score (or the reranker's score after reranking)."""
    chunk: dict[str, Any]
    ranks: dict[str, int] = field(default_factory=dict)
    """1-based rank of the chunk in each first-stage run ("dense", "bm25")."""


class KnowledgeBase:
    def __init__(self, path: Path, info: dict[str, Any], chunks: dict[str, dict[str, Any]],
                 documents: dict[str, str], encoder, store, bm25, lock: KbLock | None = None):
        self.path, self.info, self.chunks, self.documents = path, info, chunks, documents
        self.encoder, self.store, self.bm25, self._lock = encoder, store, bm25, lock

    @classmethod
    def open(cls, path: str | Path, device: str = "auto", threads: int = 0,
             store: StoreConfig | None = None) -> KnowledgeBase:
        path = Path(path)
        if not path.is_dir() or not (path / "kb.json").exists():
            raise FileNotFoundError(f"{path}: not a knowledge base (no kb.json); build one with "
                                    f"`ragtune rag ingest FOLDER -o {path}`")
        lock = KbLock(path, exclusive=False, what="rag ask/serve").acquire()
        try:
            return cls._open(path, device, threads, store or StoreConfig(), lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open(cls, path: Path, device: str, threads: int, store_cfg: StoreConfig, lock: KbLock) -> KnowledgeBase:
        from ragtune.hardware import pick_device
        from ragtune.rag.store import ChunkStore
        from ragtune.rag.vectors import LocalVectors
        from ragtune.retrieval.dense import DenseConfig, load_encoder

        info = read_info(path)
        gen = generation_dir(path, info)
        s = info["settings"]
        chunk_rows = read_rows(gen / "chunks.jsonl", CHUNK_FIELDS)
        chunks = {c["chunk_id"]: c for c in chunk_rows}
        documents = {d["source"]: d["text"] for d in read_rows(gen / "documents.jsonl", DOCUMENT_FIELDS)}
        bm25 = _load_bm25(gen / "bm25")
        if s.get("url") and not store_cfg.url:
            raise ConfigError(f"{path} keeps its vectors on a Qdrant server (it was built with {s['url']}); pass "
                              "the server yourself: --set store.url=URL (and store.api_key_env=VAR); ragtune never "
                              "connects to a server named only by a knowledge base")
        if store_cfg.url:
            store = ChunkStore.connect(store_cfg.url, s.get("collection", "chunks"), api_key=store_cfg.api_key())
        else:
            store = LocalVectors.load(gen / "vectors.npy", [c["chunk_id"] for c in chunk_rows], int(info["dim"]))
        encoder, _ = load_encoder(DenseConfig(model=s["model"], max_seq_length=s["max_seq_length"], threads=threads,
                                              cache=False), pick_device(device))
        return cls(path, info, chunks, documents, encoder, store, bm25, lock)

    def __len__(self) -> int:
        return len(self.chunks)

    def search(self, query: str, k_dense: int = 20, k_bm25: int = 20, rrf_k: int = 60, top: int = 5,
               exclude: set[str] | None = None) -> list[Hit]:
        """The `top` chunks by RRF of the dense and BM25 runs (k 0 = that side off); `exclude`: files whose
        chunks are left out."""
        if not self.chunks:
            return []
        if k_dense == 0 and (k_bm25 == 0 or self.bm25 is None):
            raise ValueError("nothing to search: k_dense is 0 and there is no BM25 side (k_bm25 0 or no index)")
        s = self.info["settings"]
        extra = 0 if not exclude else min(len(self.chunks), 4 * max(k_dense, k_bm25))
        runs = {}
        if k_dense > 0:
            vec = self.encoder.encode([query], prompt=s.get("query_prompt") or None, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)[0]
            # a server may hold points of chunks this generation no longer has (an interrupted ingest): skip them
            runs["dense"] = {cid: score for cid, score in self.store.search(vec, k_dense + extra)
                             if cid in self.chunks}
        if self.bm25 is not None and k_bm25 > 0:
            run = self.bm25.search({"q": query}, k=min(k_bm25 + extra, len(self.bm25))).get("q", {})
            runs["bm25"] = {cid: score for cid, score in run.items() if cid in self.chunks}
        if exclude:
            runs = {name: {c: v for c, v in run.items() if self.chunks[c]["file"] not in exclude}
                    for name, run in runs.items()}
        fused = rrf([{"q": run} for run in runs.values()], k=rrf_k).get("q", {})
        ranks = {name: {c: i for i, c in enumerate(sorted(run, key=lambda c: (-run[c], c)), 1)}
                 for name, run in runs.items()}
        return [Hit(cid, score, self.chunks[cid], {n: r[cid] for n, r in ranks.items() if cid in r})
                for cid, score in list(fused.items())[:top]]

    def excerpt(self, chunk_id: str, margin: int = 300) -> dict[str, Any]:
        """The chunk inside up to `margin` characters of its document on each side, with its offsets there."""
        c = self.chunks[chunk_id]
        doc = self.documents.get(c["source"], c["text"])
        a, b = max(0, c["start"] - margin), min(len(doc), c["end"] + margin)
        return {"text": doc[a:b], "start": c["start"] - a, "end": c["end"] - a, "clipped_left": a > 0,
                "clipped_right": b < len(doc)}

    def close(self) -> None:
        self.store.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _load_bm25(folder: Path):
    """The BM25 side index, or None when the KB has none; a damaged one is an error naming the folder."""
    from ragtune.retrieval.bm25 import BM25Retriever

    if not folder.is_dir():
        return None
    try:
        return BM25Retriever.load(folder)
    except Exception as e:  # noqa: BLE001 - bm25s/numpy/json raise many types for damaged files
        raise ConfigError(f"{folder}: the BM25 index cannot be read ({type(e).__name__}: {e}); rebuild the "
                          "knowledge base with `ragtune rag ingest FOLDER -o KB --set rebuild=true`") from None

