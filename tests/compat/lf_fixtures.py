"""LLaMA-Factory-format fixtures, written from its documentation (data/README: dataset_info.json keys, alpaca and
sharegpt rows, ranking rows) and from the SPTAR pipeline's registration of its doc -> query pairs."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def sptar_rows(docs: list[dict], pairs: list[tuple[str, str]]) -> list[dict]:
    """SPTAR's SFT rows: the document as the instruction, the query as the output, empty input and history."""
    by_id = {d["_id"]: d for d in docs}
    return [{"instruction": f"{by_id[d]['title']} {by_id[d]['text']}", "input": "", "output": q, "history": []}
            for d, q in pairs]


def sptar_registry(folder: Path, docs: list[dict], pairs: list[tuple[str, str]]) -> Path:
    """`folder/dataset_info.json` with SPTAR's two entries: the SFT pairs (registered with "ranking": true, as their
    example does) and preference rows whose output is [chosen, rejected]."""
    write_json(folder / "sptar_sft.json", sptar_rows(docs, pairs))
    prefs = [{"instruction": r["instruction"], "input": "", "output": [r["output"], "the study in patients"],
              "history": []} for r in sptar_rows(docs, pairs)]
    write_json(folder / "sptar_pref.json", prefs)
    columns = {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}
    return write_json(folder / "dataset_info.json", {
        "sptar_sft": {"file_name": "sptar_sft.json", "columns": columns, "ranking": True},
        "sptar_pref": {"file_name": "sptar_pref.json", "columns": columns, "ranking": True},
    })
