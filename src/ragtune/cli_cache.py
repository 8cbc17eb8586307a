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
    for k in sorted({e.kind for e in found}):
        out.print(f"  {k}: {cache.KINDS[k]}", highlight=False)


def cache_prune(
    older_than: Annotated[float | None, typer.Option("--older-than", help="delete the entries no run used for this "
                                                     "many days (0: all)", show_default=False)] = None,
    max_size: Annotated[str | None, typer.Option("--max-size", help="then delete the least recently used entries "
                                                 "until the cache holds at most this much (500M, 2G, 1.5GiB)",
                                                 show_default=False)] = None,
    kind: KindOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would be deleted")] = False,
) -> None:
    """Delete cache entries no run used for `--older-than` days and/or the least recently used ones beyond
    `--max-size`; one of the two is required. An entry being written by a running process is skipped. A later run
    that needs a deleted entry computes it again."""
    from ragtune import cache

    max_bytes = cache.parse_size(max_size) if max_size is not None else None
    deleted, busy = cache.prune(older_than, kind or [], dry_run, max_bytes=max_bytes)
    verb = "would delete" if dry_run else "deleted"
    why = " and ".join(x for x in (f"unused for more than {older_than:g} days" if older_than is not None else "",
                                   f"least recently used beyond {max_size}" if max_size is not None else "") if x)
    _entries(f"{verb}: entries {why}", deleted)
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
