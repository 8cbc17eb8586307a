"""Where ragtune finds the shared data and keeps its caches.

Shared data: $RAGTUNE_SHARED, else a `shared/` folder beside the source checkout (an editable install) or beside
the working directory. Caches: $RAGTUNE_CACHE, else ~/.cache/ragtune.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]
"""The repository root when ragtune runs from a source checkout; inside site-packages it points nowhere useful,
which is why it is only a fallback after $RAGTUNE_SHARED."""


def shared_dir() -> Path:
    env = os.environ.get("RAGTUNE_SHARED")
    if env:
        return Path(env).expanduser()
    for candidate in (_CHECKOUT.parent / "shared", Path.cwd().parent / "shared"):
        if candidate.is_dir():
            return candidate
    return _CHECKOUT.parent / "shared"


def shared_data(*parts: str) -> Path:
    """Path under shared/data, e.g. shared_data("beir", "scifact")."""
    return shared_dir().joinpath("data", *parts)


def entry_lock(entry: Path) -> Path:
    """The flock file beside a cache entry (folder or file) that its writers take, and `ragtune cache prune` too."""
    return entry.parent / f".{entry.name}.lock"


def mark_used(entry: Path) -> None:
    """Stamp a cache entry (folder or file) as read now: `ragtune cache prune --older-than` keeps what runs use."""
    with contextlib.suppress(OSError):  # a read-only cache still serves reads
        os.utime(entry)


def cache_dir(*parts: str) -> Path:
    """ragtune's cache ($RAGTUNE_CACHE, else ~/.cache/ragtune): embeddings, converted models."""
    base = Path(os.environ.get("RAGTUNE_CACHE") or Path.home() / ".cache" / "ragtune").expanduser()
    return base.joinpath(*parts)
