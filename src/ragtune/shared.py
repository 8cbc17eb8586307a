"""Where the shared data lives: $RAGTUNE_SHARED, else ../shared beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    env = os.environ.get("RAGTUNE_SHARED")
    if env:
        return Path(env).expanduser()
    for candidate in (REPO_ROOT.parent / "shared", Path.cwd().parent / "shared"):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared"


def shared_data(*parts: str) -> Path:
    """Path under shared/data, e.g. shared_data("beir", "scifact")."""
    return shared_dir().joinpath("data", *parts)


def cache_dir(*parts: str) -> Path:
    """ragtune's cache ($RAGTUNE_CACHE, else ~/.cache/ragtune): embeddings, converted models."""
    base = Path(os.environ.get("RAGTUNE_CACHE") or Path.home() / ".cache" / "ragtune").expanduser()
    return base.joinpath(*parts)
