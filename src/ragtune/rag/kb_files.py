"""The files of a knowledge base, read as data that cannot run code, and replaced all at once.

    KB/
      kb.json          format, settings, the current generation, the folder it was built from
      .lock            see ragtune.rag.kb_lock
      g000003/         the current generation: everything a search reads
        manifest.json      {file: {sha256, documents, chunks}} of every ingested file
        chunks.jsonl       {chunk_id, file, source, title, start, end, text}; text == document[start:end]
        documents.jsonl    {source, file, title, text}: the extracted text the offsets index
        vectors.npy        float32 [chunks x dim], row i = line i of chunks.jsonl (absent with a Qdrant server)
        bm25/              bm25s index over the chunks (numpy arrays and JSON, no pickle)
        ingest.config.yaml the resolved ingest config

An ingest writes a whole new generation into `.g000004.tmp/`, renames it, then rewrites kb.json (an atomic
rename): that is the switch. A crash before it leaves the old generation in use and only a temporary folder
behind. Nothing here unpickles: JSON, JSONL and `.npy` read with allow_pickle=False.

Knowledge bases of format 1 kept their vectors in qdrant-client's local store, whose storage.sqlite holds
pickles that are unpickled on open; they are refused (never opened) with the command that rebuilds them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from ragtune.atomic import write_json
from ragtune.data.errors import DataFormatError
from ragtune.data.jsonl import iter_jsonl, read_json
from ragtune.rag.kb_lock import LOCK_NAME

KB_FORMAT = 2
INFO = "kb.json"
_GENERATION = re.compile(r"^g\d{6}$")
LEGACY_FILES = ("qdrant", "bm25", "manifest.json", "chunks.jsonl", "documents.jsonl", "ingest.config.yaml")
"""What a format-1 knowledge base held beside kb.json (deleted only by a rebuild, after kb.json proved it ours)."""

CHUNK_FIELDS = {"chunk_id": str, "file": str, "source": str, "title": str, "start": int, "end": int, "text": str}
DOCUMENT_FIELDS = {"source": str, "file": str, "title": str, "text": str}


class KnowledgeBaseError(ValueError):
    """A knowledge base folder that cannot be used as it is; the message says what to do."""


def legacy_message(kb: Path) -> str:
    return (
        f"{kb} was built by an older ragtune whose embedded store ({kb / 'qdrant'}) keeps its vectors as "
        "pickles, which would run code when opened; ragtune no longer opens it. Rebuild it from your "
        f"documents: `ragtune rag ingest FOLDER -o {kb} --set rebuild=true` (this deletes the old store)"
    )


def read_info(kb: str | Path, allow_legacy: bool = False) -> dict[str, Any] | None:
    """kb.json checked (None when there is none); a format-1 KB raises KnowledgeBaseError unless `allow_legacy`."""
    kb = Path(kb)
    path = kb / INFO
    if not path.exists():
        return None
    info = read_json(path, hint="kb.json is written by `ragtune rag ingest`; rebuild the knowledge base")
    if not isinstance(info, dict) or not isinstance(info.get("settings"), dict):
        raise DataFormatError(
            path,
            None,
            "not a ragtune knowledge base description (no settings object)",
            hint="rebuild it with `ragtune rag ingest FOLDER -o KB --set rebuild=true`",
        )
    if info.get("format") != KB_FORMAT:
        if info.get("format") == 1 and allow_legacy:
            return info
        if info.get("format") == 1:
            raise KnowledgeBaseError(legacy_message(kb))
        raise KnowledgeBaseError(
            f"{path}: knowledge base format {info.get('format')!r}; this ragtune reads format "
            f"{KB_FORMAT}; rebuild it with `ragtune rag ingest FOLDER -o {kb} --set rebuild=true`"
        )
    s = info["settings"]
    for key, kind in (("model", str), ("max_seq_length", (int, type(None))), ("collection", str)):
        if not isinstance(s.get(key), kind) or isinstance(s.get(key), bool):
            raise DataFormatError(
                path,
                None,
                f'"settings.{key}" is missing or of the wrong type',
                field=f"settings.{key}",
                hint="kb.json is written by `ragtune rag ingest`",
            )
    if not isinstance(info.get("dim"), int) or isinstance(info.get("dim"), bool) or info["dim"] < 1:
        raise DataFormatError(
            path,
            None,
            '"dim" must be a positive integer',
            field="dim",
            hint="kb.json is written by `ragtune rag ingest`",
        )
    generation = info.get("generation")
    if not isinstance(generation, str) or not _GENERATION.match(generation):
        raise DataFormatError(
            path,
            None,
            f'"generation" must name a folder like g000001, got {generation!r}',
            field="generation",
            hint="kb.json is written by `ragtune rag ingest`; do not edit it",
        )
    return info


def generation_dir(kb: str | Path, info: dict[str, Any]) -> Path:
    path = Path(kb) / info["generation"]
    if not path.is_dir():
        raise KnowledgeBaseError(
            f"{path}: the generation kb.json names is missing; rebuild the knowledge base "
            f"with `ragtune rag ingest FOLDER -o {kb} --set rebuild=true`"
        )
    return path


def check_out_folder(kb: Path) -> None:
    """Refuse an output that is a file, or a non-empty folder that is not a ragtune knowledge base."""
    if kb.exists() and not kb.is_dir():
        raise KnowledgeBaseError(f"{kb}: exists and is not a folder; pass a new or existing knowledge base folder")
    if kb.is_dir() and not (kb / INFO).exists():
        foreign = sorted(p.name for p in kb.iterdir() if p.name != LOCK_NAME and not _is_tmp(p.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise KnowledgeBaseError(
                f"{kb}: not a ragtune knowledge base (no kb.json) and not empty ({shown}); "
                "ragtune writes and deletes files in its output folder, so pass a new or "
                "empty folder"
            )


def _is_tmp(name: str) -> bool:
    return name.startswith(".g") and name.endswith(".tmp")


def read_rows(path: Path, fields: dict[str, type]) -> list[dict[str, Any]]:
    """JSONL rows with these fields of these types, or DataFormatError naming the file, line and field."""
    rows = []
    for line, row in iter_jsonl(path):
        for name, kind in fields.items():
            if not isinstance(row.get(name), kind) or (kind is int and isinstance(row.get(name), bool)):
                raise DataFormatError(
                    path,
                    line,
                    f'field "{name}" must be {kind.__name__}, got {type(row.get(name)).__name__}',
                    field=name,
                    hint="knowledge base files are written by `ragtune rag ingest`; rebuild it",
                )
        rows.append(row)
    return rows


def next_generation(kb: Path, info: dict[str, Any] | None) -> tuple[str, Path]:
    """(name, temporary folder) of the generation an ingest writes; leftovers of crashed ingests are removed."""
    for p in kb.iterdir():
        if _is_tmp(p.name) and p.is_dir():
            shutil.rmtree(p)
    current = int(info["generation"][1:]) if info and info.get("format") == KB_FORMAT else 0
    name = f"g{current + 1:06d}"
    tmp = kb / f".{name}.tmp"
    tmp.mkdir()
    return name, tmp


def publish(kb: Path, name: str, tmp: Path, info: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Make generation `name` current (kb.json is the switch), then delete what it replaced."""
    os.replace(tmp, kb / name)
    write_json(kb / INFO, {"format": KB_FORMAT, "generation": name, **info})
    if old is not None and old.get("format") == KB_FORMAT:
        shutil.rmtree(kb / old["generation"], ignore_errors=True)
    elif old is not None:  # a format-1 KB rebuilt: its pickled store goes, never opened
        for legacy in LEGACY_FILES:
            target = kb / legacy
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
