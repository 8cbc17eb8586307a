"""`ragtune rag ingest FOLDER -o KB`: files -> chunks -> vectors + a BM25 side index, incrementally, all at once.

    summary = ingest(load_config(IngestConfig, None, ["folder=docs", "out=kb"]))

What the KB folder holds is described in ragtune.rag.kb_files: kb.json plus one generation folder with the
chunks, documents, manifest, vectors (`.npy`; on the Qdrant server when `store.url` is set) and BM25 index.

A re-ingest hashes every file: unchanged files keep their chunks and vectors, new and changed files are
(re)chunked and embedded, and the chunks of deleted or changed files are removed. A file that cannot be read (a
corrupt PDF, a non-UTF-8 or binary text, a link leading outside the folder) is reported with its path and reason
and skipped; the rest is ingested. The ingest holds the KB's lock for its whole run, writes a new generation and
switches to it only at the end: a crash or an error leaves the previous KB as it was. A re-ingest that would delete
every document (an empty, unmounted or wrong folder), or documents of another folder than the one the KB was built
from, is refused unless `prune=true` (`--prune`).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragtune.atomic import write_json, write_jsonl
from ragtune.config import ConfigError, ConfigModel, dump_config
from ragtune.data.jsonl import read_json
from ragtune.rag.kb_files import (
    CHUNK_FIELDS,
    DOCUMENT_FIELDS,
    KB_FORMAT,
    KnowledgeBaseError,
    check_out_folder,
    generation_dir,
    legacy_message,
    next_generation,
    publish,
    read_info,
    read_rows,
)
from ragtune.rag.kb_lock import KbLock
from ragtune.rag.loaders import LoadError, load_file
from ragtune.rag.store import StoreConfig
from ragtune.rag.vectors import LocalVectors
from ragtune.rag.walk import scan
from ragtune.retrieval.dense import DenseConfig


class ChunkConfig(ConfigModel):
    max_tokens: int = Field(200, ge=8)
    """Chunk length limit in tokens of the embedder's tokenizer (at most its max_seq_length - 2)."""
    overlap_tokens: int = Field(32, ge=0)
    """Trailing whole sentences, up to this many tokens, repeated at the start of the next chunk."""
    max_chars: int | None = Field(None, ge=16)
    """Chunk length limit in characters; None = 10 x max_tokens (a long run of characters without spaces can be
    a single unknown token, so tokens alone do not bound a chunk)."""

    @property
    def char_limit(self) -> int:
        return self.max_chars or 10 * self.max_tokens


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
    store: StoreConfig = Field(default_factory=StoreConfig)
    """`store.url`: keep the vectors on a Qdrant server instead of inside the KB; `store.api_key_env`: its key."""
    collection: str = "chunks"
    """Collection name on the Qdrant server (store.url)."""
    rebuild: bool = False
    """Start the KB over (required when the embedder or chunking changes)."""
    prune: bool = False
    """Allow a re-ingest to delete every document of the KB, or documents of another source folder than the one
    it was built from (`--prune`); without it such a re-ingest is refused."""



def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _settings(cfg: IngestConfig) -> dict[str, Any]:
    e = cfg.embedder
    return {"model": e.model, "max_seq_length": e.max_seq_length, "doc_prompt": e.doc_prompt,
            "query_prompt": e.query_prompt, "normalize": e.normalize, "chunk": cfg.chunk.model_dump(),
            "collection": cfg.collection, "url": cfg.store.url}


def _check_compatible(cfg: IngestConfig, info: dict[str, Any]) -> None:
    now, then = _settings(cfg), info.get("settings", {})
    changed = [k for k in now if then.get(k) != now[k]]
    if changed:
        detail = ", ".join(f"{k}: {then.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ConfigError(f"{cfg.out} was built with other settings ({detail}); re-ingest with rebuild=true to "
                          "start it over, or choose another out folder")


def _check_prune(cfg: IngestConfig, info: dict[str, Any] | None, manifest: dict[str, Any],
                 deleted: list[str]) -> None:
    """Refuse to delete every document, or documents that came from another folder, unless prune=true."""
    if not deleted or cfg.prune:
        return
    built_from = (info or {}).get("source_folder")
    here = str(Path(cfg.folder).resolve())
    if len(deleted) == len(manifest):
        where = f" (it was built from {built_from})" if built_from and built_from != here else ""
        raise KnowledgeBaseError(
            f"{cfg.folder} holds none of the {len(manifest)} files {cfg.out} was built from{where}, so this ingest "
            "would delete every document; if the folder is unmounted or wrong, fix the path; to empty or replace "
            "the knowledge base on purpose, pass --prune (prune=true)")
    if built_from and built_from != here:
        raise KnowledgeBaseError(
            f"{cfg.out} was built from {built_from}; ingesting {here} would delete {len(deleted)} of its files "
            f"(e.g. {deleted[0]}); pass --prune (prune=true) to do that, or ingest into another knowledge base")


def _language(texts: list[str]) -> str:
    from ragtune.data.language import detect_language

    return detect_language("".join(texts[:2000])[:200_000])


def _save_bm25(target: Path, chunks: list[dict[str, Any]], language: str) -> str | None:
    """Build the BM25 index into `target`; None, or why there is none (no chunks, no indexable words)."""
    from ragtune.data.records import Doc
    from ragtune.retrieval.bm25 import BM25Config, BM25Retriever, NoTermsError

    if not chunks:
        return "no chunks"
    bm25 = BM25Retriever(BM25Config(language=language))
    try:
        bm25.index(Doc(_id=c["chunk_id"], text=c["text"]) for c in chunks)
    except NoTermsError as e:
        return str(e)
    bm25.save(target)
    return None


# ---------------------------------------------------------------- ingest


def _previous(kb: Path, info: dict[str, Any] | None, local: bool):
    """(manifest, chunks, documents, vectors) of the current generation; empty for a new KB."""
    if info is None:
        return {}, [], [], None
    gen = generation_dir(kb, info)
    manifest = read_json(gen / "manifest.json", hint="manifest.json is written by `ragtune rag ingest`")
    if not isinstance(manifest, dict) or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str)
                                                 and isinstance(v.get("chunks"), int) for v in manifest.values()):
        raise KnowledgeBaseError(f"{gen / 'manifest.json'}: not a manifest of {{file: {{sha256, chunks}}}}; "
                                 "rebuild the knowledge base with rebuild=true")
    chunks = read_rows(gen / "chunks.jsonl", CHUNK_FIELDS)
    documents = read_rows(gen / "documents.jsonl", DOCUMENT_FIELDS)
    vectors = LocalVectors.load(gen / "vectors.npy", [c["chunk_id"] for c in chunks], int(info["dim"])) \
        if local else None
    return manifest, chunks, documents, vectors


def ingest(cfg: IngestConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Bring the KB in line with the folder; returns counts (files new/changed/unchanged/deleted/failed, chunks)."""
    if cfg.embedder.backend == "onnx":  # not silently ignored: the KB and `rag ask` encode through torch
        raise ConfigError('key "embedder.backend": knowledge bases encode with torch; pass embedder.backend=torch')
    folder, kb = Path(cfg.folder), Path(cfg.out)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder; pass the folder of documents to ingest")
    check_out_folder(kb)
    kb.mkdir(parents=True, exist_ok=True)
    with KbLock(kb, exclusive=True, what="rag ingest"):  # before anything is read, written or deleted
        return _ingest(cfg, folder, kb, progress)


def _ingest(cfg: IngestConfig, folder: Path, kb: Path, progress: Callable[[str], None] | None) -> dict[str, Any]:
    from ragtune.rag.chunk import Chunker, hf_token_functions
    from ragtune.rag.store import ChunkStore
    from ragtune.retrieval.dense import load_encoder

    t0 = time.perf_counter()
    old = read_info(kb, allow_legacy=True)
    if old is not None and old.get("format") != KB_FORMAT and not cfg.rebuild:
        raise KnowledgeBaseError(legacy_message(kb))
    info = None if cfg.rebuild else old
    if info is not None:
        _check_compatible(cfg, info)
    local = not cfg.store.url
    manifest, old_chunks, old_documents, old_vectors = _previous(kb, info, local)

    found = scan(folder, exclude=kb.resolve())
    files, failed = dict(found.files), list(found.skipped)
    hashes: dict[str, str] = {}
    for rel, p in list(files.items()):
        try:
            hashes[rel] = file_sha256(p)
        except OSError as e:  # unreadable now: reported; what the KB holds of it stays
            failed.append(f"{rel}: cannot read ({e.strerror or e})")
            if rel not in manifest:
                del files[rel]
    new = [r for r in files if r not in manifest]
    changed = [r for r in files if r in manifest and r in hashes and manifest[r]["sha256"] != hashes[r]]
    unchanged = [r for r in files if r in manifest and r not in changed]
    deleted = [r for r in manifest if r not in files]
    _check_prune(cfg, info, manifest, deleted)

    encoder, _ = load_encoder(cfg.embedder)
    limit = (cfg.embedder.max_seq_length or encoder.max_seq_length) - 2
    if cfg.chunk.max_tokens > limit:
        raise ConfigError(f'key "chunk.max_tokens": {cfg.chunk.max_tokens} is more than the embedder takes '
                          f"({limit} = max_seq_length - 2 special tokens); pass chunk.max_tokens<={limit}")
    count, offsets = hf_token_functions(encoder.tokenizer)
    chunker = Chunker(count, cfg.chunk.max_tokens, cfg.chunk.overlap_tokens, offsets, max_chars=cfg.chunk.char_limit)
    dim = int((getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension)())

    todo = sorted(new + changed)
    drop = set(todo) | set(deleted)
    keep = [i for i, c in enumerate(old_chunks) if c["file"] not in drop]
    chunks = [old_chunks[i] for i in keep]
    documents = [d for d in old_documents if d["file"] not in drop]
    removed_ids = [c["chunk_id"] for c in old_chunks if c["file"] in drop]
    manifest = {r: m for r, m in manifest.items() if r not in drop}
    blocks = [np.asarray(old_vectors.matrix[keep], dtype=np.float32)] if old_vectors is not None else []
    store = ChunkStore.connect(cfg.store.url, cfg.collection, dim, cfg.store.api_key()) if not local else None
    name, tmp = next_generation(kb, old)
    try:
        embedded = 0
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
                if store is not None:
                    store.upsert(rows, vectors)
                else:
                    blocks.append(np.asarray(vectors, dtype=np.float32))
            embedded += len(rows)
            chunks += rows
            manifest[rel] = {"sha256": hashes[rel], "documents": len(docs), "chunks": len(rows)}
            if progress:
                progress(f"[{n}/{len(todo)}] {rel}: {len(rows)} chunks")

        language = cfg.bm25_language if cfg.bm25_language != "auto" else \
            _language([c["text"] for c in chunks]) if chunks else "en"
        write_jsonl(tmp / "chunks.jsonl", chunks)
        write_jsonl(tmp / "documents.jsonl", documents)
        if store is None:
            LocalVectors.save(tmp / "vectors.npy", np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32))
        no_bm25 = _save_bm25(tmp / "bm25", chunks, language)
        write_json(tmp / "manifest.json", manifest)
        dump_config(cfg, tmp / "ingest.config.yaml")
        publish(kb, name, tmp, {"settings": _settings(cfg), "dim": dim, "bm25_language": language,
                                "chunks": len(chunks), "source_folder": str(folder.resolve())}, old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if store is not None:
            store.close()
        raise
    if store is not None:  # after the switch: the old generation no longer needs these points
        with store:
            store.delete_ids(sorted(set(removed_ids) - {c["chunk_id"] for c in chunks}))
            total = store.count()
    else:
        total = len(chunks)
    return {"kb": str(kb), "files_new": len(new), "files_changed": len(changed), "files_unchanged": len(unchanged),
            "files_deleted": len(deleted), "files_failed": len(failed), "failed": failed,
            "unsupported": found.unsupported, "chunks_embedded": embedded, "chunks_removed": len(removed_ids),
            "chunks_total": len(chunks), "vectors_in_store": total, "bm25_language": language,
            "bm25_skipped": no_bm25, "generation": name, "seconds": round(time.perf_counter() - t0, 1)}
