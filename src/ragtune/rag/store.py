"""Chunk vectors on a Qdrant server (`store.url`), the way to share one store between processes and machines.

    with ChunkStore.connect("http://localhost:6333", collection="chunks", dim=384) as store:
        store.upsert(chunks, vectors)              # chunks: [{"chunk_id", "file", "source", "start", "end", "text"}]
        store.delete_ids(["old.pdf::0"])
        hits = store.search(query_vector, k=20)    # [(chunk_id, cosine)]

Point ids are UUID5 of the chunk id, so re-upserting a chunk replaces it. Where the server is and which
environment variable holds its API key come from the user's command or config (StoreConfig), never from a
knowledge base folder: a KB handed to you must not be able to send your key elsewhere. Without a server the
vectors live in the KB itself (ragtune.rag.vectors); qdrant-client's embedded mode is not used because it
stores pickles that are unpickled on open.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np

from ragtune.config import ConfigError, ConfigModel


class StoreConfig(ConfigModel):
    """Where chunk vectors live: inside the knowledge base (default), or on a Qdrant server."""

    url: str | None = None
    """A Qdrant server, e.g. http://localhost:6333 (None = vectors inside the KB folder)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the server's API key (never the key itself)."""

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        if self.api_key_env not in os.environ:
            raise ConfigError(f'key "store.api_key_env": the environment variable {self.api_key_env} is not set')
        return os.environ[self.api_key_env]


class StoreError(ValueError):
    """The Qdrant server could not be reached or refused a request (a clear `error:` at the command line)."""


HINTS = {401: "the server wants an API key: --set store.api_key_env=VAR with the key in $VAR",
         403: "the API key in store.api_key_env is not allowed to do this"}


@contextmanager
def server_errors(url: str, doing: str) -> Iterator[None]:
    """Turn qdrant-client's transport and HTTP errors into one StoreError naming the server and the step."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        yield
    except UnexpectedResponse as e:
        hint = HINTS.get(e.status_code, (e.content or b"").decode(errors="replace")[:200])
        raise StoreError(f"Qdrant server {url} answered {e.status_code} {e.reason_phrase} while {doing}: "
                         f"{hint}") from None
    except (ResponseHandlingException, ConnectionError, TimeoutError) as e:
        cause = e.source if isinstance(e, ResponseHandlingException) else e
        raise StoreError(f"Qdrant server {url} could not be reached while {doing} ({cause}); is it running, and "
                         "is store.url right?") from None


def point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragtune:{chunk_id}"))


class ChunkStore(AbstractContextManager):
    def __init__(self, client, collection: str, url: str = "the Qdrant server"):
        self.client, self.collection, self.url = client, collection, url

    def _errors(self, doing: str):
        return server_errors(self.url, f"{doing} collection {self.collection!r}")

    @classmethod
    def connect(cls, url: str, collection: str = "chunks", dim: int | None = None,
                api_key: str | None = None) -> ChunkStore:
        """The collection on the server at `url`; created when `dim` is given and it does not exist."""
        from qdrant_client import QdrantClient

        store = cls(QdrantClient(url=url, api_key=api_key), collection, url)
        if dim is not None:
            store.ensure(dim)
        return store

    def ensure(self, dim: int) -> None:
        from qdrant_client import models

        with self._errors("opening"):
            if self.client.collection_exists(self.collection):
                have = self.client.get_collection(self.collection).config.params.vectors.size
                if have != dim:
                    raise ValueError(f'collection "{self.collection}" holds {have}-d vectors but the embedder '
                                     f"makes {dim}-d ones; ingest into a new KB (or another collection)")
                return
            self.client.create_collection(self.collection, vectors_config=models.VectorParams(
                size=dim, distance=models.Distance.COSINE))

    def upsert(self, chunks: Sequence[dict[str, Any]], vectors: np.ndarray, batch: int = 256) -> int:
        from qdrant_client import models

        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        for i in range(0, len(chunks), batch):
            points = [models.PointStruct(id=point_id(c["chunk_id"]), vector=v.astype(float).tolist(), payload=dict(c))
                      for c, v in zip(chunks[i:i + batch], vectors[i:i + batch], strict=True)]
            with self._errors("writing to"):
                self.client.upsert(self.collection, points=points, wait=True)
        return len(chunks)

    def delete_ids(self, chunk_ids: Sequence[str], batch: int = 1024) -> None:
        """Remove these chunks' points (ids that are not there are ignored)."""
        from qdrant_client import models

        ids = list(chunk_ids)
        with self._errors("deleting from"):
            if not ids or not self.client.collection_exists(self.collection):
                return
            for i in range(0, len(ids), batch):
                self.client.delete(self.collection, points_selector=models.PointIdsList(
                    points=[point_id(c) for c in ids[i:i + batch]]), wait=True)

    def search(self, vector: np.ndarray, k: int = 20) -> list[tuple[str, float]]:
        """[(chunk_id, cosine)], best first; points without a chunk_id are left out."""
        with self._errors("searching"):
            res = self.client.query_points(self.collection, query=np.asarray(vector, dtype=np.float32).tolist(),
                                           limit=k, with_payload=["chunk_id"])
        return [(p.payload["chunk_id"], float(p.score)) for p in res.points
                if isinstance((p.payload or {}).get("chunk_id"), str)]

    def count(self) -> int:
        with self._errors("counting"):
            if not self.client.collection_exists(self.collection):
                return 0
            return int(self.client.count(self.collection, exact=True).count)

    def close(self) -> None:
        self.client.close()

    def __exit__(self, *exc) -> None:
        self.close()
