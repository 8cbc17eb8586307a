"""Open a knowledge base and search it: dense (Qdrant) + BM25, fused with reciprocal rank fusion.

    kb = KnowledgeBase.open("kb")
    hits = kb.search("who founded the Yuan dynasty?", k_dense=20, k_bm25=20, top=5)
    kb.excerpt(hits[0].chunk_id)     # the chunk inside its document: {"text", "start", "end", "source"}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ragtune.config import ConfigModel
from ragtune.rag.kb_files import kb_info, read_jsonl
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
                 documents: dict[str, str], encoder, store, bm25):
        self.path, self.info, self.chunks, self.documents = path, info, chunks, documents
        self.encoder, self.store, self.bm25 = encoder, store, bm25

    @classmethod
    def open(cls, path: str | Path, device: str = "auto", threads: int = 0) -> KnowledgeBase:
        from ragtune.hardware import pick_device
        from ragtune.rag.store import ChunkStore
        from ragtune.retrieval.bm25 import BM25Retriever
        from ragtune.retrieval.dense import DenseConfig, load_encoder

        path = Path(path)
        info = kb_info(path)
        if info is None:
            raise FileNotFoundError(f"{path}: not a knowledge base (no kb.json); build one with "
                                    f"`ragtune rag ingest FOLDER -o {path}`")
        s = info["settings"]
        encoder, _ = load_encoder(DenseConfig(model=s["model"], max_seq_length=s["max_seq_length"], threads=threads,
                                              cache=False), pick_device(device))
        chunks = {c["chunk_id"]: c for c in read_jsonl(path / "chunks.jsonl")}
        documents = {d["source"]: d["text"] for d in read_jsonl(path / "documents.jsonl")}
        bm25 = BM25Retriever.load(path / "bm25") if (path / "bm25").is_dir() else None
        key_env = None
        try:
            import yaml

            key_env = yaml.safe_load((path / "ingest.config.yaml").read_text()).get("api_key_env")
        except (OSError, AttributeError):
            pass
        store = ChunkStore.open(None if s.get("url") else path / "qdrant", s.get("url"), s["collection"],
                                api_key=os.environ.get(key_env) if key_env else None)
        return cls(path, info, chunks, documents, encoder, store, bm25)

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
            runs["dense"] = {cid: score for cid, score, _ in self.store.search(vec, k_dense + extra)}
        if self.bm25 is not None and k_bm25 > 0:
            runs["bm25"] = self.bm25.search({"q": query}, k=min(k_bm25 + extra, len(self.bm25))).get("q", {})
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

