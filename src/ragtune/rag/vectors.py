"""The embedded vector store of a knowledge base: one float32 `.npy`, searched exactly.

    vectors = LocalVectors.load(gen / "vectors.npy", chunk_ids, dim=384)   # memory-mapped, allow_pickle=False
    vectors.search(query_vector, k=20)                                   # [(chunk_id, cosine)]

Row i belongs to chunk_ids[i] (line i of chunks.jsonl). Vectors are L2-normalised at ingest, so the inner product
is the cosine. A `.npy` read with allow_pickle=False holds numbers only: opening a knowledge base cannot run code,
which qdrant-client's local mode (pickles in storage.sqlite) could not promise. Exact search by one matrix-vector
product took 0.3-0.4 ms for 5,000 chunks and 4-9 ms for 50,000 on one busy core (RELIABILITY.md); past a few
hundred thousand chunks, or to share one store between processes, use a Qdrant server (store.url).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragtune.atomic import atomic_open
from ragtune.data.errors import DataFormatError

HINT = "vectors.npy is written by `ragtune rag ingest`; rebuild the knowledge base with rebuild=true"


class LocalVectors:
    def __init__(self, matrix: np.ndarray, ids: Sequence[str]):
        self.matrix, self.ids = matrix, list(ids)

    @classmethod
    def load(cls, path: Path, ids: Sequence[str], dim: int) -> LocalVectors:
        try:
            matrix = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise DataFormatError(path, None, "missing", hint=HINT) from None
        except Exception as e:  # noqa: BLE001 - numpy raises many types for a damaged file
            raise DataFormatError(
                path, None, f"not a readable .npy array ({type(e).__name__}: {e})", hint=HINT
            ) from None
        if matrix.dtype != np.float32 or matrix.shape != (len(ids), dim):
            raise DataFormatError(
                path,
                None,
                f"holds {matrix.dtype} {matrix.shape}, expected float32 "
                f"({len(ids)}, {dim}) for {len(ids)} chunks of dimension {dim}",
                hint=HINT,
            )
        return cls(matrix, ids)

    @staticmethod
    def save(path: Path, matrix: np.ndarray) -> None:
        with atomic_open(path, "wb") as f:
            np.save(f, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k nearest chunks by inner product, best first (ties: the earlier row)."""
        if k <= 0 or not self.ids:
            return []
        scores = self.matrix @ np.asarray(vector, dtype=np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]
        return [(self.ids[i], float(scores[i])) for i in top]

    def count(self) -> int:
        return len(self.ids)

    def close(self) -> None:
        self.matrix = np.zeros((0, 0), dtype=np.float32)  # drops the memory map
