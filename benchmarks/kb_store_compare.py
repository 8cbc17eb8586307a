"""Embedded vector stores for a knowledge base, compared: build, open, search latency, recall, disk.

    python benchmarks/kb_store_compare.py                 # 5k and 50k vectors, 384-d, one thread
    python benchmarks/kb_store_compare.py --sizes 2000 --queries 50

qdrant-edge-py is not a ragtune dependency: `pip install qdrant-edge-py` first, or leave it out with
`--only qdrant-local npy+qdrant-mem npy+numpy npy+faiss`.

Candidates (all in-process, no server):
  qdrant-local   qdrant-client's local mode (`QdrantClient(path=...)`): what ragtune used; it pickles points
                 into storage.sqlite and unpickles them on open
  qdrant-edge    Qdrant Edge (`qdrant-edge-py`): Qdrant's own segment storage in-process (no pickle); HNSW with
                 its default search ef once the segment is indexed
  qdrant-edge-ef256  the same shard searched with hnsw_ef=256 (more recall for more time)
  npy+qdrant-mem vectors in a .npy (allow_pickle=False), an in-memory qdrant-client collection rebuilt on open
  npy+numpy      vectors in a .npy, memory-mapped, exact search by one matrix-vector product
  npy+faiss      vectors in a .npy, loaded into a faiss IndexFlatIP (exact)

Vectors are synthetic and clustered (200 centres on the unit sphere; each point its centre plus Gaussian noise of
norm `--spread`, L2-normalised; queries drawn the same way). Uniform random vectors would be the worst case for
HNSW and real text embeddings are more structured than either, so recall of the approximate index is shown for
two spreads. Recall@k is measured against exact cosine top-k from numpy. Every library runs on one thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def clustered(n: int, dim: int, seed: int, spread: float, centres: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)  # the same centres for corpus and queries
    c = rng.standard_normal((centres, dim)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    x = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_topk(base: np.ndarray, q: np.ndarray, k: int) -> list[list[int]]:
    s = q @ base.T
    idx = np.argpartition(-s, k, axis=1)[:, :k]
    return [list(row[np.argsort(-s[i, row])]) for i, row in enumerate(idx)]


def du(path: Path) -> int:
    """Bytes allocated on disk (sparse preallocated files count what they use, not their length)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def pid(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"c{i}"))


# ---------------------------------------------------------------- candidates: build(dir, vectors) / open(dir)


class QdrantLocal:
    name = "qdrant-local"

    def build(self, d: Path, x: np.ndarray) -> None:
        from qdrant_client import QdrantClient, models

        c = QdrantClient(path=str(d))
        c.create_collection(
            "chunks", vectors_config=models.VectorParams(size=x.shape[1], distance=models.Distance.COSINE)
        )
        for s in range(0, len(x), 256):
            c.upsert(
                "chunks",
                points=[
                    models.PointStruct(id=pid(i), vector=x[i].tolist(), payload={"i": i})
                    for i in range(s, min(s + 256, len(x)))
                ],
                wait=True,
            )
        c.close()

    def open(self, d: Path):
        from qdrant_client import QdrantClient

        self.c = QdrantClient(path=str(d))

    def search(self, q: np.ndarray, k: int) -> list[int]:
        return [p.payload["i"] for p in self.c.query_points("chunks", query=q.tolist(), limit=k).points]

    def close(self) -> None:
        self.c.close()


class QdrantEdge:
    name = "qdrant-edge"

    def _config(self, dim: int):
        import qdrant_edge as qe

        return qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine), max_search_threads=1)

    def build(self, d: Path, x: np.ndarray) -> None:
        import qdrant_edge as qe

        s = qe.EdgeShard.create(str(d), self._config(x.shape[1]))
        for b in range(0, len(x), 256):
            s.update(
                qe.UpdateOperation.upsert_points(
                    [qe.Point(pid(i), x[i].tolist(), {"i": i}) for i in range(b, min(b + 256, len(x)))]
                )
            )
        s.optimize()  # builds the HNSW index where Qdrant's indexing threshold says so
        s.flush()
        self.indexed = s.info().indexed_vectors_count
        s.close()

    def open(self, d: Path):
        import qdrant_edge as qe

        self.s = qe.EdgeShard.load(str(d))

    params = None

    def search(self, q: np.ndarray, k: int) -> list[int]:
        import qdrant_edge as qe

        req = qe.QueryRequest(limit=k, query=qe.Query.Nearest(q.tolist()), with_payload=True, params=self.params)
        return [p.payload["i"] for p in self.s.query(req)]

    def close(self) -> None:
        self.s.close()


class QdrantEdgeEf256(QdrantEdge):
    name = "qdrant-edge-ef256"

    def open(self, d: Path):
        import qdrant_edge as qe

        super().open(d)
        self.params = qe.SearchParams(hnsw_ef=256)


def save_npy(d: Path, x: np.ndarray) -> None:
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "vectors.npy", x, allow_pickle=False)


class NpyQdrantMemory:
    name = "npy+qdrant-mem"

    def build(self, d: Path, x: np.ndarray) -> None:
        save_npy(d, x)

    def open(self, d: Path):
        from qdrant_client import QdrantClient, models

        x = np.load(d / "vectors.npy", allow_pickle=False)
        self.c = QdrantClient(":memory:")
        self.c.create_collection(
            "chunks", vectors_config=models.VectorParams(size=x.shape[1], distance=models.Distance.COSINE)
        )
        self.c.upload_collection(
            "chunks",
            vectors=x,
            ids=[pid(i) for i in range(len(x))],
            payload=[{"i": i} for i in range(len(x))],
            batch_size=1024,
        )

    def search(self, q: np.ndarray, k: int) -> list[int]:
        return [p.payload["i"] for p in self.c.query_points("chunks", query=q.tolist(), limit=k).points]

    def close(self) -> None:
        self.c.close()


class NpyNumpy:
    name = "npy+numpy"

    def build(self, d: Path, x: np.ndarray) -> None:
        save_npy(d, x)

    def open(self, d: Path):
        self.x = np.load(d / "vectors.npy", mmap_mode="r", allow_pickle=False)

    def search(self, q: np.ndarray, k: int) -> list[int]:
        s = self.x @ q
        k = min(k, len(s))
        idx = np.argpartition(-s, k - 1)[:k]
        return list(idx[np.argsort(-s[idx], kind="stable")])

    def close(self) -> None:
        del self.x


class NpyFaiss:
    name = "npy+faiss"

    def build(self, d: Path, x: np.ndarray) -> None:
        save_npy(d, x)

    def open(self, d: Path):
        import faiss

        faiss.omp_set_num_threads(1)
        x = np.load(d / "vectors.npy", allow_pickle=False)
        self.index = faiss.IndexFlatIP(x.shape[1])
        self.index.add(x)

    def search(self, q: np.ndarray, k: int) -> list[int]:
        _, idx = self.index.search(q[None, :], k)
        return [int(i) for i in idx[0] if i >= 0]

    def close(self) -> None:
        del self.index


CANDIDATES = {c.name: c for c in (QdrantLocal, QdrantEdge, QdrantEdgeEf256, NpyQdrantMemory, NpyNumpy, NpyFaiss)}


def measure(store, d: Path, queries: np.ndarray, truth: list[list[int]], k: int) -> dict:
    """Open the built store in `d`, search every query once (after a warm-up), close it."""
    t0 = time.perf_counter()
    store.open(d)
    open_s = time.perf_counter() - t0
    for q in queries[:5]:
        store.search(q, k)
    lat, hits = [], 0
    for q, want in zip(queries, truth, strict=True):
        t = time.perf_counter()
        got = store.search(q, k)
        lat.append((time.perf_counter() - t) * 1000)
        hits += len(set(got) & set(want))
    store.close()
    lat.sort()
    return {
        "store": store.name,
        "open_s": open_s,
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "recall": hits / (k * len(queries)),
    }


def bench(cls, x: np.ndarray, queries: np.ndarray, truth: list[list[int]], k: int, root: Path) -> dict:
    store = cls()
    d = Path(tempfile.mkdtemp(prefix=f"{store.name}-", dir=root)) / "store"
    t0 = time.perf_counter()
    store.build(d, x)
    row = {"n": len(x), "build_s": time.perf_counter() - t0, "disk_mb": du(d) / 2**20, "dir": d}
    row |= measure(store, d, queries, truth, k)
    if hasattr(store, "indexed"):
        row["note"] = f"{store.indexed:,} of {len(x):,} vectors HNSW-indexed"
    return row


def search_again(cls, built: dict, queries: np.ndarray, truth: list[list[int]], k: int) -> dict:
    """The store `built` made, searched by another candidate class (other search parameters, same files)."""
    return {**built, **measure(cls(), built["dir"], queries, truth, k)}


def print_row(r: dict) -> None:
    print(
        f"| {r['store']} | {r['n']:,} | {r['spread']} | {r['build_s']:.2f} | {r['open_s']:.3f} | {r['disk_mb']:.1f} | "
        f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['recall']:.4f} | {r.get('note', '')} |",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[5_000, 50_000])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--spread", type=float, nargs="+", default=[0.6, 1.0])
    ap.add_argument("--only", nargs="*", default=list(CANDIDATES))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kb-store-bench."))
    try:
        print(
            "| store | vectors | spread | build s | open s | disk MB | search p50 ms | p99 ms | "
            f"recall@{args.k} | note |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for n in args.sizes:
            for spread in args.spread:
                x = clustered(n, args.dim, seed=1, spread=spread)
                q = clustered(args.queries, args.dim, seed=2, spread=spread)
                truth = exact_topk(x, q, args.k)
                for name in args.only:
                    if name == "qdrant-edge-ef256" and "qdrant-edge" in args.only:
                        continue  # measured on the qdrant-edge shard below
                    rows = [bench(CANDIDATES[name], x, q, truth, args.k, root)]
                    if name == "qdrant-edge":
                        rows.append(search_again(QdrantEdgeEf256, rows[0], q, truth, args.k))
                    for r in rows:
                        r["spread"] = spread
                        print_row(r)
                    shutil.rmtree(rows[0]["dir"].parent, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
