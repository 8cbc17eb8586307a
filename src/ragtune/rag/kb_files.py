"""The files of a knowledge-base folder, as `rag ingest` writes them and `KnowledgeBase.open` reads them.

    kb.json            {"format": KB_FORMAT, "settings": {embedder, chunking, collection, ...}, "dim", ...}
    chunks.jsonl       {chunk_id, file, source, title, start, end, text}
    documents.jsonl    {source, file, title, text}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KB_FORMAT = 1


def kb_info(kb: Path) -> dict[str, Any] | None:
    p = Path(kb) / "kb.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
