"""Append-only generation shards: one JSON line per finished document, flushed and fsynced per batch.

A crash (even SIGKILL mid-write) leaves at most a torn last line, which the reader ignores and the writer cuts
off before appending, so a rerun regenerates exactly the documents that have no complete line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ragtune.data.errors import DataFormatError

SHARDS = "shards"


def shard_path(output_dir: Path, rank: int) -> Path:
    return output_dir / SHARDS / f"part-{rank:05d}.jsonl"


def _complete_prefix(data: bytes) -> int:
    """Length of the part of `data` made of whole lines."""
    return data.rfind(b"\n") + 1


def read_shards(output_dir: Path) -> dict[str, dict[str, Any]]:
    """doc_id -> its record, from every shard; a torn last line is ignored, a document seen twice keeps the first."""
    done: dict[str, dict[str, Any]] = {}
    folder = output_dir / SHARDS
    if not folder.is_dir():
        return done
    for path in sorted(folder.glob("part-*.jsonl")):
        data = path.read_bytes()
        for lineno, raw in enumerate(data[:_complete_prefix(data)].splitlines(), 1):
            try:
                rec = json.loads(raw)
                doc_id = rec["doc_id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataFormatError(path, lineno, "corrupt shard line (not a generation record)",
                                      hint="shards are written by `ragtune generate`; delete the output folder "
                                           "or set overwrite=true to start over") from None
            done.setdefault(doc_id, rec)
    return done


class ShardWriter:
    """Append records to this rank's shard; `write` makes them durable before returning."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # cut a torn tail left by a killed run
            data = path.read_bytes()
            keep = _complete_prefix(data)
            if keep < len(data):
                with path.open("r+b") as f:
                    f.truncate(keep)
        self._f = path.open("ab")

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        blob = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
        if blob:
            self._f.write(blob)
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
