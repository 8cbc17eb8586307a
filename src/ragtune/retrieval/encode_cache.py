"""Corpus embeddings cached on disk, written in chunks so a killed encode resumes.

Layout of one cache entry (`<cache>/embeddings/<key>/`): `emb.npy` (float32, N x d,
opened as a memmap), `ids.json`, `meta.json`. While encoding, `emb.partial.npy` and
`progress.json` hold the rows done so far; they are renamed into place at the end.

One writer per entry across processes: an encode holds an flock on `.<entry>.lock` beside it; a second process
encoding the same corpus with the same model waits for it, then reads its `emb.npy` instead of encoding
into the same partial file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from ragtune.atomic import write_json
from ragtune.paths import entry_lock, mark_used

log = logging.getLogger("ragtune.encode")


def corpus_key(model_fp: str, settings: str, ids: Sequence[str], texts: Sequence[str]) -> str:
    h = hashlib.sha256(f"{model_fp}|{settings}".encode())
    for i, t in zip(ids, texts, strict=True):
        h.update(i.encode())
        h.update(b"\x00")
        h.update(t.encode())
        h.update(b"\x01")
    return h.hexdigest()[:24]


def cached_encode(folder: Path, ids: Sequence[str], texts: Sequence[str],
                  encode: Callable[[list[str]], np.ndarray], dim: int, chunk: int = 512,
                  progress: Callable[[int], None] | None = None,
                  encode_chunks: Callable[[Iterator[list[str]]], Iterator[np.ndarray]] | None = None) -> np.ndarray:
    """Embeddings for `texts`, from `folder` if complete, else encoded chunk by chunk (resuming).

    `encode_chunks` (e.g. a worker pool's imap) encodes the remaining chunks, in order, instead of `encode`; the
    rows still land in the one file, chunk by chunk, so a killed pooled run resumes like a one-process one."""
    final = folder / "emb.npy"
    if not final.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with one_writer(folder):
            if not final.exists():  # whoever held the lock before may have finished it
                _encode_into(folder, ids, texts, encode, dim, chunk, progress, encode_chunks)
                return np.load(final, mmap_mode="r")
    if progress:
        progress(len(texts))
    mark_used(folder)
    return np.load(final, mmap_mode="r")


@contextmanager
def one_writer(folder: Path) -> Iterator[None]:
    """Hold an flock beside `folder` (a cache entry, folder or file): one writer at a time across processes."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no protection between processes
        yield
        return
    with open(entry_lock(folder), "a") as f:  # beside the entry: its files stay its own
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another process is writing this cache entry; waiting for it", folder)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _encode_into(folder: Path, ids: Sequence[str], texts: Sequence[str], encode: Callable[[list[str]], np.ndarray],
                 dim: int, chunk: int, progress: Callable[[int], None] | None,
                 encode_chunks: Callable[[Iterator[list[str]]], Iterator[np.ndarray]] | None) -> None:
    final = folder / "emb.npy"
    partial, prog_file = folder / "emb.partial.npy", folder / "progress.json"
    done = 0
    if partial.exists() and prog_file.exists():
        done = json.loads(prog_file.read_text())["done"]
        emb = open_memmap(partial, mode="r+")
        if emb.shape != (len(texts), dim):
            done, emb = 0, None
    else:
        emb = None
    if emb is None:
        emb = open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(texts), dim))
    if progress and done:
        progress(done)
    spans = [(start, min(start + chunk, len(texts))) for start in range(done, len(texts), chunk)]
    parts = (list(texts[a:b]) for a, b in spans)
    results = encode_chunks(parts) if encode_chunks is not None else map(encode, parts)
    for (start, stop), part in zip(spans, results, strict=True):
        emb[start:stop] = part
        emb.flush()
        write_json(prog_file, {"done": stop})  # rows before `stop` are on disk
        if progress:
            progress(stop - start)
    del emb
    write_json(folder / "ids.json", list(ids))
    os.replace(partial, final)
    prog_file.unlink(missing_ok=True)
