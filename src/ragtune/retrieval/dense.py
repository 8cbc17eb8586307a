"""Dense retrieval: a sentence-transformers encoder (on torch or ONNX Runtime) + faiss (flat or HNSW).

Corpus embeddings are cached on disk keyed by the model's fingerprint, the encoding
settings and the corpus content, so the same corpus is never encoded twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ragtune.atomic import atomic_open, write_json
from ragtune.config import CommaList, ConfigModel
from ragtune.data.records import Doc
from ragtune.hardware import auto_dtype, cpu_has_amx, cpu_has_vnni
from ragtune.models import DEFAULT_ENCODER
from ragtune.paths import cache_dir
from ragtune.retrieval.base import DocIndex, Run
from ragtune.retrieval.encode_cache import cached_encode, corpus_key


class DenseConfig(ConfigModel):
    model: str = DEFAULT_ENCODER
    """Hub name (resolved offline first), local folder, or a model ragtune trained."""
    max_seq_length: int | None = Field(256, ge=1)
    batch_size: int = Field(32, ge=1)
    index: Literal["flat", "hnsw"] = "flat"
    hnsw_m: int = Field(32, ge=2)
    hnsw_ef_search: int = Field(128, ge=1)
    query_prompt: str = ""
    doc_prompt: str = ""
    normalize: bool = True
    """L2-normalize, so inner product = cosine."""
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    """Encoding precision: matmuls run under torch autocast in this dtype (weights and outputs stay float32).
    auto = bfloat16 on GPUs and on CPUs with native bf16 (AMX / AVX512-BF16), else float32. Embeddings of
    another dtype are cached apart."""
    backend: Literal["torch", "onnx", "auto"] = "torch"
    """torch: sentence-transformers on torch (in `dtype`). onnx: ONNX Runtime on the CPU over a cached export
    (needs `pip install 'ragtune[onnx]'`; `dtype` does not apply). auto: torch with `dtype: auto` on GPUs and on
    CPUs with AMX (bf16 tiles: fastest there), onnx on CPUs with VNNI and no AMX if onnxruntime is installed, torch
    float32 on AVX2-only CPUs (int8 without VNNI gains about 5% there). Embeddings of another backend are cached
    apart."""
    onnx_quantize: Literal["int8", "none"] = "int8"
    """backend onnx: dynamic int8 weights (faster; NDCG against float32 in BENCHMARKS.md) or none (float32)."""
    threads: int = Field(0, ge=0)
    """torch/faiss/onnxruntime threads; 0 = all cores."""
    cache: bool = True
    """Reuse corpus embeddings from ~/.cache/ragtune (or $RAGTUNE_CACHE)."""
    encode_devices: Annotated[list[str], CommaList] = Field(default_factory=list)
    """Encode the corpus in one worker process per device (e.g. cuda:0,cuda:1,cuda:2,cuda:3, or cpu,cpu: the
    CPU workers share the cores) into the same single cached embedding file; empty = in this process."""
    chunk_size: int = Field(512, ge=1)
    """Passages per resumable chunk of the corpus encoding (and per worker task)."""


def load_encoder(cfg: DenseConfig, device: str | None = None):
    """(SentenceTransformer, its folder); `device`: already resolved, else `cfg.device` is resolved here."""
    from sentence_transformers import SentenceTransformer

    from ragtune.hardware import pick_device, set_threads
    from ragtune.models import resolve_model

    set_threads(cfg.threads)
    path = resolve_model(cfg.model)
    model = SentenceTransformer(str(path), device=device or pick_device(cfg.device), local_files_only=True)
    if cfg.max_seq_length:
        model.max_seq_length = cfg.max_seq_length
    return model, path


def resolve_backend(cfg: DenseConfig, device: str) -> tuple[str, str]:
    """(backend, dtype) this machine runs `cfg` with; see DenseConfig.backend."""
    backend = cfg.backend
    if backend == "auto":
        # measured (BENCHMARKS.md, "Encoding backends"): torch bf16 wins on AMX; ONNX int8 where VNNI multiplies
        # int8 in one instruction (1.4x torch bf16 on an AVX512-BF16 EPYC); on AVX2 alone int8 gains 1.05x over
        # torch float32 and moved full-SciFact NDCG@10 by +0.0053, outside the 0.005 tolerance: torch there
        int8_pays = cpu_has_vnni() and not cpu_has_amx()
        backend = "onnx" if device == "cpu" and int8_pays and _has_onnxruntime() else "torch"
        dtype = "float32" if backend == "onnx" else auto_dtype(device)
        return backend, dtype
    if backend == "onnx":
        if device != "cpu":
            raise ValueError(f"dense.backend=onnx runs on the CPU, not {device}; pass device=cpu or backend=torch")
        return "onnx", "float32"
    return "torch", auto_dtype(device) if cfg.dtype == "auto" else cfg.dtype


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def precision(dtype: str, device: str):
    """torch autocast to `dtype` on `device`, or nothing for float32."""
    import contextlib

    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=getattr(torch, dtype))


class DenseRetriever(DocIndex):
    name = label = "dense"

    def __init__(self, cfg: DenseConfig | None = None, model=None, model_path: str | Path | None = None):
        """`model`: an already loaded SentenceTransformer (with `model_path`, its folder, for caching)."""
        self.cfg = cfg or DenseConfig()
        if model is None:
            self.model, self.model_path = load_encoder(self.cfg)
        else:
            self.model, self.model_path = model, Path(model_path or self.cfg.model)
        self.doc_ids: list[str] = []
        self.embeddings: np.ndarray | None = None
        self._index = None
        self.backend, self.dtype = resolve_backend(self.cfg, self.model.device.type)
        self._onnx = None
        if self.backend == "onnx":
            from ragtune.retrieval.onnx_encoder import OnnxEncoder, export_key, exported_model

            self.onnx_key = export_key(self.model_path, self.cfg.onnx_quantize)
            self._onnx = OnnxEncoder(exported_model(self.model_path, self.cfg.onnx_quantize), self.model.tokenizer,
                                     self.model.max_seq_length, self.cfg.threads)

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: list[str], prompt: str = "", show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            emb = self._onnx.encode([prompt + t for t in texts], self.cfg.batch_size)
            if self.cfg.normalize:
                emb /= np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
            return emb
        with precision(self.dtype, self.model.device.type):
            emb = self.model.encode(texts, prompt=prompt or None, batch_size=self.cfg.batch_size,
                                    normalize_embeddings=self.cfg.normalize, convert_to_tensor=True,
                                    show_progress_bar=show_progress)
        if self.dtype != "float32":
            emb = emb.float()
            if self.cfg.normalize:  # again in float32: a half-precision norm is off in the third decimal
                emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return emb.cpu().numpy().astype(np.float32, copy=False)

    def _cache_folder(self, ids: list[str], texts: list[str]) -> Path:
        from ragtune.models import fingerprint

        settings = f"{self.cfg.max_seq_length}|{self.cfg.doc_prompt}|{self.cfg.normalize}"
        if self.dtype != "float32":  # float32 keeps the key that caches written before `dtype` existed have
            settings += f"|{self.dtype}"
        if self.backend == "onnx":
            settings += f"|onnx-{self.cfg.onnx_quantize}-{self.onnx_key}"
        return cache_dir("embeddings", corpus_key(fingerprint(self.model_path), settings, ids, texts))

    def _encode_in_workers(self, chunks: Iterator[list[str]]) -> Iterator[np.ndarray]:
        """Corpus chunks encoded by `encode_devices` worker processes, in order (retrieval/workers.py)."""
        from ragtune.retrieval.workers import WorkerPool

        cfg = self.cfg.model_dump(mode="json") | {"model": str(self.model_path), "encode_devices": [], "cache": False,
                                                  "dtype": self.dtype}
        with WorkerPool(partial(dense_worker, cfg), self.cfg.encode_devices) as pool:
            yield from pool.imap(chunks)

    def index(self, docs: Iterable[Doc], show_progress: bool = False) -> None:
        from tqdm.auto import tqdm

        pairs = [(d.id, d.content) for d in docs]
        self.doc_ids = [p[0] for p in pairs]
        texts = [p[1] for p in pairs]
        bar = tqdm(total=len(texts), desc="encode corpus", unit="doc", disable=not show_progress)

        def encode(chunk: list[str]) -> np.ndarray:
            return self.encode(chunk, self.cfg.doc_prompt)

        if not texts:
            raise ValueError("no documents to index")
        pooled = self._encode_in_workers if self.cfg.encode_devices else None
        if self.cfg.cache:
            folder = self._cache_folder(self.doc_ids, texts)
            self.embeddings = cached_encode(folder, self.doc_ids, texts, encode, self.dim, chunk=self.cfg.chunk_size,
                                            progress=bar.update, encode_chunks=pooled)
        else:
            from ragtune.retrieval.workers import chunks_of

            parts = chunks_of(texts, self.cfg.chunk_size)
            self.embeddings = np.concatenate(list(pooled(parts) if pooled else map(encode, parts)))
            bar.update(len(texts))
        bar.close()
        self._build_index()

    def _build_index(self) -> None:
        import faiss

        emb = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        if self.cfg.index == "hnsw":
            index = faiss.IndexHNSWFlat(emb.shape[1], self.cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.cfg.hnsw_ef_search
        else:
            index = faiss.IndexFlatIP(emb.shape[1])
        index.add(emb)
        self._index = index

    def search(self, queries: Mapping[str, str], k: int = 100, show_progress: bool = False) -> Run:
        qids, k = self._plan(self._index is not None, queries, k)
        if not qids:
            return {}
        q = self.encode([queries[i] for i in qids], self.cfg.query_prompt, show_progress=show_progress)
        scores, idx = self._index.search(q, k)
        run: Run = {}
        for qid, row_idx, row_sc in zip(qids, idx, scores, strict=True):
            run[qid] = {self.doc_ids[i]: float(s) for i, s in zip(row_idx, row_sc, strict=True) if i >= 0}
        return run

    def save(self, path: str | Path) -> None:
        path = Path(path)
        with atomic_open(path / "embeddings.npy", "wb") as f:
            np.save(f, np.asarray(self.embeddings, dtype=np.float32))
        write_json(path / "doc_ids.json", self.doc_ids)
        write_json(path / "ragtune_dense.json", self.cfg.model_dump() | {"model": str(self.model_path)})

    @classmethod
    def load(cls, path: str | Path, model=None) -> DenseRetriever:
        path = Path(path)
        cfg = DenseConfig(**json.loads((path / "ragtune_dense.json").read_text()))
        self = cls(cfg, model=model, model_path=cfg.model)
        self.doc_ids = json.loads((path / "doc_ids.json").read_text())
        self.embeddings = np.load(path / "embeddings.npy", mmap_mode="r")
        self._build_index()
        return self


def dense_worker(cfg: dict, device: str, threads: int):
    """A worker process's encoder (retrieval/workers.py): the same DenseRetriever.encode on its own device."""
    retriever = DenseRetriever(DenseConfig(**cfg | {"device": device, "threads": threads}))
    return partial(retriever.encode, prompt=retriever.cfg.doc_prompt)
