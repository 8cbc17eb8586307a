"""`ragtune rag ingest FOLDER -o KB`: files -> chunks -> vectors in Qdrant + a BM25 side index, incrementally.

    summary = ingest(load_config(IngestConfig, None, ["folder=docs", "out=kb"]))

The KB folder holds:
    kb.json            embedder, vector size, chunking, collection, BM25 language (a re-ingest must match them)
    manifest.json      {file: {sha256, documents, chunks}} of every ingested file
    chunks.jsonl       {chunk_id, file, source, title, start, end, text}; text == document[start:end]
    documents.jsonl    {source, file, title, text}: the extracted text the offsets index
    bm25/              bm25s index over the chunks (rebuilt on every ingest; it is cheap)
    qdrant/            the embedded Qdrant collection (absent when `url` points to a server)

A re-ingest hashes every file: unchanged files are left alone, new and changed files are (re)chunked and
embedded, and the chunks of deleted or changed files are removed. A file that cannot be read (a corrupt PDF, a
non-UTF-8 text) is reported with its path and reason and skipped; the rest is ingested. The manifest is written
last, so an interrupted ingest is finished by the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.atomic import write_json, write_jsonl
from ragtune.config import ConfigError, ConfigModel, dump_config
from ragtune.rag.kb_files import KB_FORMAT, kb_info, read_jsonl
from ragtune.rag.loaders import LoadError, is_supported, load_file
from ragtune.retrieval.dense import DenseConfig


class ChunkConfig(ConfigModel):
    max_tokens: int = Field(200, ge=8)
    """Chunk length limit in tokens of the embedder's tokenizer (at most its max_seq_length - 2)."""
    overlap_tokens: int = Field(32, ge=0)
    """Trailing whole sentences, up to this many tokens, repeated at the start of the next chunk."""


class IngestConfig(ConfigModel):
    folder: Path
    """Folder of .txt .md .html .pdf .docx files and .jsonl BEIR corpora (searched recursively)."""
    out: Path
    """The knowledge base folder (created; re-ingesting into it updates it)."""
    embedder: DenseConfig = Field(default_factory=lambda: DenseConfig(cache=False))
    """Any sentence-transformers model or one ragtune trained; `model`, `max_seq_length`, prompts, batch size."""
    chunk: ChunkConfig = Field(default_factory=ChunkConfig)
    bm25_language: Literal["auto", "en", "zh", "none"] = "auto"
    """BM25 tokenisation; auto = zh (jieba) when most chunk letters are CJK."""
    url: str | None = None
    """A Qdrant server (e.g. http://localhost:6333) instead of the embedded store in KB/qdrant."""
    api_key_env: str | None = None
    """Name of the environment variable holding the Qdrant API key (never the key itself)."""
    collection: str = "chunks"
    rebuild: bool = False
    """Start the KB over (required when the embedder or chunking changes)."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan(folder: Path, exclude: Path | None = None) -> tuple[dict[str, Path], list[str]]:
    """({relative path: path} of supported files, [unsupported relative paths]); hidden files are ignored."""
    found, unsupported = {}, []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if exclude is not None and p.resolve().is_relative_to(exclude):
            continue
        if is_supported(p):
            found[rel.as_posix()] = p
        else:
            unsupported.append(rel.as_posix())
    return found, unsupported


def _settings(cfg: IngestConfig) -> dict[str, Any]:
    e = cfg.embedder
    return {"model": e.model, "max_seq_length": e.max_seq_length, "doc_prompt": e.doc_prompt,
            "query_prompt": e.query_prompt, "normalize": e.normalize, "chunk": cfg.chunk.model_dump(),
            "collection": cfg.collection, "url": cfg.url}


def _check_compatible(cfg: IngestConfig, info: dict[str, Any]) -> None:
    now, then = _settings(cfg), info.get("settings", {})
    changed = [k for k in now if then.get(k) != now[k]]
    if changed:
        detail = ", ".join(f"{k}: {then.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ConfigError(f"{cfg.out} was built with other settings ({detail}); re-ingest with rebuild=true to "
                          "start it over, or choose another out folder")


def _wipe(kb: Path) -> None:
    for name in ("qdrant", "bm25"):
        shutil.rmtree(kb / name, ignore_errors=True)
    for name in ("manifest.json", "chunks.jsonl", "documents.jsonl", "kb.json"):
        (kb / name).unlink(missing_ok=True)


def _language(texts: list[str]) -> str:
    from ragtune.data.language import detect_language

    return detect_language("".join(texts[:2000])[:200_000])


def _save_bm25(kb: Path, chunks: list[dict[str, Any]], language: str) -> None:
    """Build the BM25 index into a temp folder, then swap it in."""
    import tempfile

    from ragtune.data.records import Doc
    from ragtune.retrieval.bm25 import BM25Config, BM25Retriever

    target = kb / "bm25"
    if not chunks:
        shutil.rmtree(target, ignore_errors=True)
        return
    bm25 = BM25Retriever(BM25Config(language=language))
    bm25.index(Doc(_id=c["chunk_id"], text=c["text"]) for c in chunks)
    tmp = Path(tempfile.mkdtemp(prefix=".bm25.", dir=kb))
    bm25.save(tmp)
    old = kb / ".bm25.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- ingest


def ingest(cfg: IngestConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Bring the KB in line with the folder; returns counts (files new/changed/unchanged/deleted/failed, chunks)."""
    from ragtune.rag.chunk import Chunker, hf_token_functions
    from ragtune.rag.store import ChunkStore
    from ragtune.retrieval.dense import load_encoder

    t0 = time.perf_counter()
    folder, kb = Path(cfg.folder), Path(cfg.out)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder; pass the folder of documents to ingest")
    if cfg.rebuild:
        _wipe(kb)
    info = kb_info(kb)
    if info is not None:
        _check_compatible(cfg, info)
    kb.mkdir(parents=True, exist_ok=True)

    files, unsupported = scan(folder, exclude=kb.resolve())
    mpath = kb / "manifest.json"
    manifest: dict[str, dict[str, Any]] = json.loads(mpath.read_text(encoding="utf-8")) if mpath.is_file() else {}
    hashes = {rel: file_sha256(p) for rel, p in files.items()}
    new = [r for r in files if r not in manifest]
    changed = [r for r in files if r in manifest and manifest[r]["sha256"] != hashes[r]]
    unchanged = [r for r in files if r in manifest and manifest[r]["sha256"] == hashes[r]]
    deleted = [r for r in manifest if r not in files]

    encoder, _ = load_encoder(cfg.embedder)
    limit = (cfg.embedder.max_seq_length or encoder.max_seq_length) - 2
    if cfg.chunk.max_tokens > limit:
        raise ConfigError(f'key "chunk.max_tokens": {cfg.chunk.max_tokens} is more than the embedder takes '
                          f"({limit} = max_seq_length - 2 special tokens); pass chunk.max_tokens<={limit}")
    count, offsets = hf_token_functions(encoder.tokenizer)
    chunker = Chunker(count, cfg.chunk.max_tokens, cfg.chunk.overlap_tokens, offsets)
    dim = int((getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension)())

    todo = sorted(new + changed)
    drop = set(todo) | set(deleted)
    chunks = [c for c in read_jsonl(kb / "chunks.jsonl") if c["file"] not in drop]
    documents = [d for d in read_jsonl(kb / "documents.jsonl") if d["file"] not in drop]
    removed = sum(manifest[r]["chunks"] for r in drop if r in manifest)
    failed: list[str] = []
    embedded = 0
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    with ChunkStore.open(None if cfg.url else kb / "qdrant", cfg.url, cfg.collection, dim, api_key) as store:
        store.delete_files(sorted(drop))
        for r in drop:
            manifest.pop(r, None)
        for n, rel in enumerate(todo, 1):
            try:
                docs = load_file(files[rel], folder)
            except LoadError as e:
                failed.append(str(e))
                continue
            rows = []
            for doc in docs:
                for i, (s, e) in enumerate(chunker.split(doc.text)):
                    rows.append({"chunk_id": f"{doc.source}::{i}", "file": rel, "source": doc.source,
                                 "title": doc.title, "start": s, "end": e, "text": doc.text[s:e]})
                documents.append({"source": doc.source, "file": rel, "title": doc.title, "text": doc.text})
            if rows:
                vectors = encoder.encode([r["text"] for r in rows], prompt=cfg.embedder.doc_prompt or None,
                                         batch_size=cfg.embedder.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
                store.upsert(rows, vectors)
            embedded += len(rows)
            chunks += rows
            manifest[rel] = {"sha256": hashes[rel], "documents": len(docs), "chunks": len(rows)}
            if progress:
                progress(f"[{n}/{len(todo)}] {rel}: {len(rows)} chunks")
        total = store.count()

    language = cfg.bm25_language if cfg.bm25_language != "auto" else \
        _language([c["text"] for c in chunks]) if chunks else "en"
    write_jsonl(kb / "chunks.jsonl", chunks)
    write_jsonl(kb / "documents.jsonl", documents)
    _save_bm25(kb, chunks, language)
    write_json(kb / "manifest.json", manifest)
    write_json(kb / "kb.json", {"format": KB_FORMAT, "settings": _settings(cfg), "dim": dim,
                                "bm25_language": language, "chunks": len(chunks)})
    dump_config(cfg, kb / "ingest.config.yaml")
    return {"kb": str(kb), "files_new": len(new), "files_changed": len(changed), "files_unchanged": len(unchanged),
            "files_deleted": len(deleted), "files_failed": len(failed), "failed": failed,
            "unsupported": unsupported, "chunks_embedded": embedded, "chunks_removed": removed,
            "chunks_total": len(chunks), "vectors_in_store": total, "bm25_language": language,
            "seconds": round(time.perf_counter() - t0, 1)}
