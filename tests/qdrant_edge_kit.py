"""A Qdrant server for tests: Qdrant's REST API (the part qdrant-client uses for ragtune's ChunkStore) in front of
Qdrant Edge, the real Qdrant storage and search engine running in-process (`pip install qdrant-edge-py`).

    app = edge_qdrant_app(tmp / "qdrant", api_key="k")
    with Server(app.asgi) as url:            # rag_kit.Server: uvicorn on 127.0.0.1
        QdrantClient(url=url, api_key="k")    # talks HTTP to real Qdrant segments

qdrant-client's own `:memory:` mode is a Python imitation of the engine; this is the engine itself, so points,
cosine scores, deletes and persistence are Qdrant's. Each collection is one Edge shard in `root/<name>`; the
shards survive a restart of the app. Only the endpoints ChunkStore calls are served; anything else is a 404,
which a test then names.
"""

# no `from __future__ import annotations`: FastAPI must see the handlers' Request annotations as classes
import threading
from pathlib import Path
from typing import Any

DISTANCES = {"Cosine", "Dot", "Euclid", "Manhattan"}


def _ok(result: Any) -> dict[str, Any]:
    return {"result": result, "status": "ok", "time": 0.0}


def _collection_info(size: int, distance: str, points: int) -> dict[str, Any]:
    from qdrant_client import models

    info = models.CollectionInfo(
        status=models.CollectionStatus.GREEN, optimizer_status=models.OptimizersStatusOneOf.OK,
        points_count=points, indexed_vectors_count=0, segments_count=1, payload_schema={},
        config=models.CollectionConfig(
            params=models.CollectionParams(vectors=models.VectorParams(size=size, distance=distance)),
            hnsw_config=models.HnswConfig(m=16, ef_construct=100, full_scan_threshold=10_000),
            optimizer_config=models.OptimizersConfig(deleted_threshold=0.2, vacuum_min_vector_number=1000,
                                                     default_segment_number=0, flush_interval_sec=5),
            wal_config=models.WalConfig(wal_capacity_mb=32, wal_segments_ahead=0)))
    return info.model_dump(mode="json", exclude_none=True)


class EdgeQdrant:
    """The collections (Edge shards) under `root`, and every request's method, path and api-key header."""

    def __init__(self, root: Path, api_key: str | None = None):
        self.root, self.api_key = Path(root), api_key
        self.root.mkdir(parents=True, exist_ok=True)
        self.shards: dict[str, Any] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        self.asgi = self._app()

    def _shard(self, name: str):
        from qdrant_edge import EdgeShard

        if name not in self.shards and (self.root / name / "params.json").is_file():
            self.shards[name] = EdgeShard.load(str(self.root / name))
        return self.shards.get(name)

    def _params(self, name: str) -> dict[str, Any]:
        import json

        return json.loads((self.root / name / "params.json").read_text())

    def close(self) -> None:
        for shard in self.shards.values():
            shard.close()
        self.shards.clear()

    def _app(self):
        import json

        from fastapi import FastAPI, HTTPException, Request
        from qdrant_edge import (
            CountRequest,
            Distance,
            EdgeConfig,
            EdgeShard,
            EdgeVectorParams,
            PayloadSelector,
            Point,
            Query,
            QueryRequest,
            UpdateOperation,
        )

        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):
            self.requests.append((request.method, request.url.path, request.headers.get("api-key")))
            if self.api_key is not None and request.headers.get("api-key") != self.api_key:
                from fastapi.responses import JSONResponse

                return JSONResponse({"status": {"error": "Must provide an API key"}}, status_code=401)
            return await call_next(request)

        def shard_or_404(name: str):
            shard = self._shard(name)
            if shard is None:
                raise HTTPException(404, f"Collection `{name}` doesn't exist!")
            return shard

        @app.get("/")
        def root() -> dict[str, Any]:
            from importlib.metadata import version

            return {"title": "qdrant-edge behind a test REST front", "version": version("qdrant-client")}

        @app.get("/collections/{name}/exists")
        def exists(name: str) -> dict[str, Any]:
            return _ok({"exists": self._shard(name) is not None})

        @app.get("/collections/{name}")
        def get_collection(name: str) -> dict[str, Any]:
            shard = shard_or_404(name)
            p = self._params(name)
            return _ok(_collection_info(p["size"], p["distance"], shard.count(CountRequest(exact=True))))

        @app.put("/collections/{name}")
        async def create(name: str, request: Request) -> dict[str, Any]:
            body = await request.json()
            vectors = body["vectors"]
            if vectors.get("distance") not in DISTANCES:
                raise HTTPException(422, f"distance {vectors.get('distance')!r}")
            with self.lock:
                if self._shard(name) is not None:
                    raise HTTPException(409, f"Collection `{name}` already exists!")
                config = EdgeConfig(vectors=EdgeVectorParams(size=int(vectors["size"]),
                                                             distance=getattr(Distance, vectors["distance"])))
                self.shards[name] = EdgeShard.create(str(self.root / name), config)
                (self.root / name / "params.json").write_text(json.dumps(
                    {"size": int(vectors["size"]), "distance": vectors["distance"]}))
            return _ok(True)

        def done(shard) -> dict[str, Any]:
            shard.flush()
            return _ok({"operation_id": 0, "status": "completed"})

        @app.put("/collections/{name}/points")
        async def upsert(name: str, request: Request) -> dict[str, Any]:
            shard = shard_or_404(name)
            points = [Point(id=p["id"], vector=p["vector"], payload=p.get("payload"))
                      for p in (await request.json())["points"]]
            with self.lock:
                shard.update(UpdateOperation.upsert_points(points))
                return done(shard)

        @app.post("/collections/{name}/points/delete")
        async def delete(name: str, request: Request) -> dict[str, Any]:
            shard = shard_or_404(name)
            with self.lock:
                shard.update(UpdateOperation.delete_points(list((await request.json())["points"])))
                return done(shard)

        @app.post("/collections/{name}/points/count")
        async def count(name: str) -> dict[str, Any]:
            return _ok({"count": shard_or_404(name).count(CountRequest(exact=True))})

        @app.post("/collections/{name}/points/query")
        async def query(name: str, request: Request) -> dict[str, Any]:
            shard, body = shard_or_404(name), await request.json()
            vector = body.get("query")
            if isinstance(vector, dict):  # qdrant-client sends {"nearest": [...]}
                vector = vector.get("nearest")
            if not (isinstance(vector, list) and vector and all(isinstance(x, (int, float)) for x in vector)):
                raise HTTPException(422, f"only a nearest query by one dense vector is served: {body.get('query')!r}")
            fields = body.get("with_payload")
            payload = PayloadSelector.Include(fields) if isinstance(fields, list) else bool(fields)
            hits = shard.query(QueryRequest(limit=int(body.get("limit", 10)), query=Query.Nearest(vector),
                                            with_payload=payload))
            return _ok({"points": [{"id": str(h.id), "version": h.version, "score": h.score,
                                    "payload": h.payload} for h in hits]})

        return app


def edge_qdrant_app(root: Path, api_key: str | None = None) -> EdgeQdrant:
    return EdgeQdrant(root, api_key)
