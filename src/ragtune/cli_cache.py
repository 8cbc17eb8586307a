"""`ragtune cache list` and `ragtune cache prune`: the command functions (cli.py registers them with its error
handling) and their tables."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from ragtune.cli_tables import out, table

KindOption = Annotated[list[str] | None, typer.Option(
    "--kind", help="only this kind of cache (repeatable): embeddings, colbert-tokens, pair-scores, onnx, ct2, models",
    show_default=False)]


def cache_list(kind: KindOption = None) -> None:
    """What ragtune's caches hold, least recently used first: kind, entry, size, when a run last read it."""
    from ragtune import cache
    from ragtune.paths import cache_dir

    found = cache.entries(kind or [])
    _entries(f"ragtune's caches in {cache_dir()}", found)
    out.print(f"{_count(found)}, {cache.human_size(sum(e.bytes for e in found))}", highlight=False)


def cache_prune(
    older_than: Annotated[float, typer.Option("--older-than", help="delete the entries no run used for this many "
                                              "days (0: all)", show_default=False)],
    kind: KindOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would be deleted")] = False,
) -> None:
    """Delete cache entries no run used for `--older-than` days; an entry being written by a running process is
    skipped. A later run that needs a deleted entry computes it again."""
    from ragtune import cache

    deleted, busy = cache.prune(older_than, kind or [], dry_run)
    verb = "would delete" if dry_run else "deleted"
    _entries(f"{verb}: entries unused for more than {older_than:g} days", deleted)
    out.print(f"{verb} {_count(deleted)}, {cache.human_size(sum(e.bytes for e in deleted))}", highlight=False)
    for e in busy:
        out.print(f"skipped {e.path}: a running process is writing it", highlight=False)


def _entries(title: str, found) -> None:
    from ragtune.cache import human_size

    table(title, ["kind", "entry", "size", "last used"],
          [[e.kind, e.path.name, human_size(e.bytes),
            dt.datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M") + f" ({e.age_days:.0f} d ago)"]
           for e in found], left={"kind", "entry", "last used"})


def _count(found: list) -> str:
    return f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}"
