"""Final outputs of a generation run: a BEIR folder of pseudo queries plus provenance.jsonl (DESIGN.md contract).

Every document selected for the run gets exactly `query_per_document` provenance rows: its kept queries
(`failed: false`, also in queries.jsonl and qrels/train.tsv) and, for slots whose retries all failed, a
`failed: true` row with the reason and the last rejected text, so nothing disappears silently.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ragtune.atomic import write_json, write_jsonl
from ragtune.data.beir import write_beir

PROVENANCE = "provenance.jsonl"


def query_id(prefix: str, round_: int, doc_id: str, j: int) -> str:
    return f"{prefix}{round_}-{doc_id}-{j}"


def write_outputs(output_dir: Path, selected: list[str], done: dict[str, dict[str, Any]],
                  meta: dict[str, Any], prefix: str, round_: int) -> dict[str, Any]:
    """Write queries.jsonl, qrels/train.tsv and provenance.jsonl for `selected` (in order); returns counts."""
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    rows: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    for doc_id in selected:
        rec = done[doc_id]
        j = 0
        for text in rec["queries"]:
            qid = query_id(prefix, round_, doc_id, j)
            queries[qid] = text
            qrels[qid] = {doc_id: 1}
            rows.append({"query_id": qid, "doc_id": doc_id, "round": round_, **meta, "filters": {},
                         "difficulty": None, "failed": False})
            j += 1
        for fail in rec.get("failed", []):
            qid = query_id(prefix, round_, doc_id, j)
            rows.append({"query_id": qid, "doc_id": doc_id, "round": round_, **meta, "filters": {},
                         "difficulty": None, "failed": True, "reason": fail["reason"], "text": fail["text"]})
            reasons[fail["reason"]] += 1
            j += 1
    write_beir(output_dir, None, queries, {"train": qrels})
    write_jsonl(output_dir / PROVENANCE, rows)
    return {"documents": len(selected), "queries": len(queries), "failed": sum(reasons.values()),
            "failed_by_reason": dict(reasons)}


def write_pseudo_query_json(path: Path, selected: list[str], done: dict[str, dict[str, Any]]) -> int:
    """The kept queries as a JSON list of {doc_id, query} (SPTAR's pseudo_query.json), in queries.jsonl's order."""
    rows = [{"doc_id": d, "query": q} for d in selected for q in done[d]["queries"]]
    write_json(path, rows)
    return len(rows)
