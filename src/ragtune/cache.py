"""ragtune's on-disk caches ($RAGTUNE_CACHE, else ~/.cache/ragtune): what they hold, and pruning what no run used
for a while.

Each kind of cache is a folder of entries, one entry (a folder, or a file for pair scores) per model and input:
corpus embeddings, ColBERT token vectors, reranker scores of pairs, ONNX exports, CTranslate2 conversions, GGUF
models converted to Hugging Face folders. Every read of an entry stamps its mtime (`paths.mark_used`), so "last
used" is the newest mtime in the entry. Nothing is deleted unless `prune` is asked to, and an entry a running
process is writing (its lock held) is skipped. Anything else under the cache folder is left alone.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ragtune.paths import cache_dir, entry_lock

KINDS = {
    "embeddings": "corpus embeddings of a bi-encoder",
    "colbert-tokens": "ColBERT token vectors of a corpus",
    "pair-scores": "reranker scores of (query, document) pairs",
    "onnx": "ONNX exports of bi-encoders (dense.backend=onnx)",
    "ct2": "CTranslate2 conversions of generators (generate.backend=ctranslate2)",
    "models": "GGUF models converted to Hugging Face folders",
}
DAY = 86400.0


@dataclass(frozen=True)
class Entry:
    kind: str
    path: Path
    bytes: int
    last_used: float
    """Unix time: the newest mtime in the entry."""

    @property
    def age_days(self) -> float:
        return max(0.0, (time.time() - self.last_used) / DAY)


def entries(kinds: Sequence[str] = ()) -> list[Entry]:
    """Every entry of the `kinds` asked for (all when empty), least recently used first."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown cache kind {unknown[0]!r}; the kinds are: {', '.join(KINDS)}")
    found = []
    for kind in kinds or KINDS:
        folder = cache_dir(kind)
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):  # locks and unfinished conversions
                continue
            size, newest = _measure(path)
            found.append(Entry(kind, path, size, newest))
    return sorted(found, key=lambda e: e.last_used)


def prune(older_than_days: float | None = None, kinds: Sequence[str] = (), dry_run: bool = False,
          max_bytes: int | None = None) -> tuple[list[Entry], list[Entry]]:
    """Delete the entries last used more than `older_than_days` ago, then, with `max_bytes`, the least recently used
    of the rest until the kinds asked for hold at most `max_bytes`: (deleted, skipped because a process holds them).
    With `dry_run`, only say what would be deleted. One of the two limits is required: nothing goes by default."""
    if older_than_days is None and max_bytes is None:
        raise ValueError("say what to prune: --older-than DAYS and/or --max-size SIZE")
    if older_than_days is not None and older_than_days < 0:
        raise ValueError(f"--older-than must be at least 0 days, got {older_than_days}")
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"--max-size must be at least 0 bytes, got {max_bytes}")
    cutoff = None if older_than_days is None else time.time() - older_than_days * DAY
    found = entries(kinds)  # least recently used first
    left = sum(e.bytes for e in found)
    deleted, busy = [], []
    for entry in found:
        too_old = cutoff is not None and entry.last_used < cutoff
        too_big = max_bytes is not None and left > max_bytes
        if not (too_old or too_big):
            continue
        if dry_run or _delete(entry):
            deleted.append(entry)
            left -= entry.bytes
        else:
            busy.append(entry)
    return deleted, busy


def _delete(entry: Entry) -> bool:
    """Delete one entry and its lock file under its writer lock; False (nothing deleted) when a process holds it."""
    with _unless_busy(entry.path) as free:
        if not free:
            return False
        if entry.path.is_dir() and not entry.path.is_symlink():
            shutil.rmtree(entry.path)
        else:
            entry.path.unlink()
    entry_lock(entry.path).unlink(missing_ok=True)
    return True


def parse_size(text: str) -> int:
    """Bytes from a size as people write it: `500M`, `2G`, `1.5GiB`, `800 MB`, `4096` (binary units throughout).

    >>> parse_size("2G"), parse_size("1.5 GiB"), parse_size("500mb"), parse_size("4096")
    (2147483648, 1610612736, 524288000, 4096)
    """
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise ValueError(f"--max-size {text!r}: write a size such as 500M, 2G or 1.5GiB")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _measure(path: Path) -> tuple[int, float]:
    """(bytes, newest mtime) of a file or a folder's files; links are counted as links, never followed."""
    st = path.lstat()
    if not path.is_dir() or path.is_symlink():
        return st.st_size, st.st_mtime
    size, newest = 0, st.st_mtime
    for f in path.rglob("*"):
        s = f.lstat()
        size += 0 if f.is_dir() and not f.is_symlink() else s.st_size
        newest = max(newest, s.st_mtime)
    return size, newest


@contextmanager
def _unless_busy(path: Path) -> Iterator[bool]:
    """Hold the entry's writer lock (the one `encode_cache.one_writer` and the converters take) while deleting it;
    yields False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; nothing to check against
        yield True
        return
    lock = entry_lock(path)
    if not lock.exists():
        yield True
        return
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
