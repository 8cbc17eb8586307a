"""Chunk vectors in Qdrant: embedded (local, a folder inside the KB) by default, a Qdrant server when `url` is set.

    with ChunkStore.open(kb / "qdrant", collection="chunks", dim=384) as store:
        store.upsert(chunks, vectors)              # chunks: [{"chunk_id", "file", "source", "start", "end", "text"}]
        store.delete_files(["old.pdf"])
        hits = store.search(query_vector, k=20)    # [(chunk_id, cosine, payload)]

Point ids are UUID5 of the chunk id, so re-upserting a chunk replaces it. The local mode locks its folder:
one process at a time (the server holds it for its lifetime).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np


def point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragtune:{chunk_id}"))


class ChunkStore(AbstractContextManager):
    def __init__(self, client, collection: str):
        self.client, self.collection = client, collection

    @classmethod
    def open(cls, path: str | Path | None = None, url: str | None = None, collection: str = "chunks",
             dim: int | None = None, api_key: str | None = None) -> ChunkStore:
        """A local store in `path`, or the server at `url`; creates the collection when `dim` is given."""
        from qdrant_client import QdrantClient

        if url:
            client = QdrantClient(url=url, api_key=api_key)
        elif path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            try:
                client = QdrantClient(path=str(path))
            except RuntimeError as e:  # the folder is locked by another client
                raise ValueError(f"{path}: the knowledge base is open in another process ({e}); stop it "
                                 "(e.g. `ragtune rag serve`) or use a Qdrant server (url=...)") from None
        else:
            raise ValueError("give a local path or a Qdrant url for the chunk store")
        store = cls(client, collection)
        if dim is not None:
            store.ensure(dim)
        return store

    def ensure(self, dim: int) -> None:
        from qdrant_client import models

        if self.client.collection_exists(self.collection):
            have = self.client.get_collection(self.collection).config.params.vectors.size
            if have != dim:
                raise ValueError(f'collection "{self.collection}" holds {have}-d vectors but the embedder makes '
                                 f"{dim}-d ones; ingest into a new KB (or another collection)")
            return
        self.client.create_collection(self.collection, vectors_config=models.VectorParams(
            size=dim, distance=models.Distance.COSINE))
        if not self._local:  # the local mode filters without indexes (and warns about them)
            self.client.create_payload_index(self.collection, "file", models.PayloadSchemaType.KEYWORD)

    @property
    def _local(self) -> bool:
        return type(getattr(self.client, "_client", None)).__name__ == "QdrantLocal"

    def upsert(self, chunks: Sequence[dict[str, Any]], vectors: np.ndarray, batch: int = 256) -> int:
        from qdrant_client import models

        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        for i in range(0, len(chunks), batch):
            points = [models.PointStruct(id=point_id(c["chunk_id"]), vector=v.astype(float).tolist(), payload=dict(c))
                      for c, v in zip(chunks[i:i + batch], vectors[i:i + batch], strict=True)]
            self.client.upsert(self.collection, points=points, wait=True)
        return len(chunks)

    def delete_files(self, files: Sequence[str]) -> None:
        """Remove every chunk of these files (paths relative to the ingested folder)."""
        from qdrant_client import models

        if not files or not self.client.collection_exists(self.collection):
            return
        flt = models.Filter(should=[models.FieldCondition(key="file", match=models.MatchAny(any=list(files)))])
        self.client.delete(self.collection, points_selector=models.FilterSelector(filter=flt), wait=True)

    def search(self, vector: np.ndarray, k: int = 20) -> list[tuple[str, float, dict[str, Any]]]:
        res = self.client.query_points(self.collection, query=np.asarray(vector, dtype=np.float32).tolist(),
                                       limit=k, with_payload=True)
        return [(p.payload["chunk_id"], float(p.score), p.payload) for p in res.points]

    def count(self) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        return int(self.client.count(self.collection, exact=True).count)

    def close(self) -> None:
        self.client.close()

    def __exit__(self, *exc) -> None:
        self.close()
