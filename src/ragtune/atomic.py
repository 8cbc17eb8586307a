"""Atomic writers: every artifact appears whole or not at all (temp file beside the target, then rename)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


class OutputPathError(ValueError):
    """An output path that cannot be written (found before the work that would fill it is done)."""


def check_output(path: str | Path, key: str, folder: bool) -> None:
    """Refuse now what would fail only after the work: an output folder that is an existing file, an output
    file that is an existing folder, or either one below an existing file."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputPathError(f"{key} {path}: is an existing file, not a folder; pass a folder (new or existing)")
    if not folder and path.is_dir():
        raise OutputPathError(f"{key} {path}: is an existing folder; pass a file name")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputPathError(f"{key} {path}: {blocker} is a file, so nothing can be written below it")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else "\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write dict rows as JSONL atomically; returns the number of rows."""
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)
