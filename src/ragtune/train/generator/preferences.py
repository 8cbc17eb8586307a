"""Preference pairs over each document's pseudo queries, for the reward model and DPO.

For a document with pseudo queries a, b, ..., every pair whose criterion values differ
becomes (chosen, rejected):

- `difficulty_band`: the query closer to the target difficulty band wins (too easy teaches
  the retriever nothing; unanswerable-hard is likely noise);
- `filter`: a query the filters kept beats one they dropped;
- `rank`: the query whose source document the retriever ranks higher wins.

Written twice: LLaMA-Factory ranking rows (`{instruction, input, output: [chosen, rejected]}`,
registered with `"ranking": true` in dataset_info.json) and trl rows (`{prompt, chosen, rejected}`).
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.atomic import write_jsonl
from ragtune.config import Band, ConfigModel

Criterion = Literal["difficulty_band", "filter", "rank"]


class PreferenceConfig(ConfigModel):
    criterion: Criterion = "difficulty_band"
    band: Band = (0.3, 0.7)
    """Target difficulty band for `difficulty_band`."""
    min_gap: float = Field(0.05, ge=0)
    """Pairs whose criterion values differ by less than this are skipped (ties teach nothing)."""
    max_pairs_per_doc: int = Field(4, ge=1)
    heldout_fraction: float = Field(0.1, ge=0, lt=1)
    """Documents whose pairs go to the held-out file (for reward-model accuracy)."""
    seed: int = 0


def _value(row: dict, cfg: PreferenceConfig) -> float | None:
    """The criterion's value for one provenance row, higher = better; None when it was not measured."""
    if cfg.criterion == "filter":
        f = row.get("filters") or {}
        return (1.0 if f["kept"] else 0.0) if "kept" in f else None
    diff = row.get("difficulty")
    if not isinstance(diff, dict):  # written by evaluate.difficulty: {rank, score, margin, difficulty}
        return None
    if cfg.criterion == "rank":
        return 1.0 / diff["rank"] if diff.get("rank") else 0.0
    lo, hi = cfg.band
    d = diff["difficulty"]
    return -max(lo - d, 0.0, d - hi)  # 0 inside the band, minus the distance to it outside


def build_pairs(rows: list[dict[str, Any]], texts: dict[str, str], prompts: dict[str, str],
                cfg: PreferenceConfig) -> list[dict[str, str]]:
    """rows: provenance rows (query_id, doc_id, filters, difficulty); texts: query id -> text;
    prompts: doc id -> the generation prompt (the instruction the generator saw)."""
    rng = random.Random(cfg.seed)
    by_doc: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for row in rows:
        if row.get("failed") or row["query_id"] not in texts:
            continue
        v = _value(row, cfg)
        if v is not None:
            by_doc[row["doc_id"]].append((row["query_id"], v))
    pairs = []
    for doc, items in sorted(by_doc.items()):
        cands = [(a, b) if va > vb else (b, a) for (a, va), (b, vb) in itertools.combinations(items, 2)
                 if abs(va - vb) >= cfg.min_gap and texts[a].strip().lower() != texts[b].strip().lower()]
        rng.shuffle(cands)
        for chosen, rejected in cands[: cfg.max_pairs_per_doc]:
            pairs.append({"doc_id": doc, "instruction": prompts[doc], "input": "",
                          "chosen": texts[chosen], "rejected": texts[rejected]})
    return pairs


def write_pairs(out: Path, pairs: list[dict[str, str]], cfg: PreferenceConfig, name: str = "preferences") -> dict:
    """Write train/held-out splits (by document) in both formats and register them; returns counts."""
    from ragtune.data.dataset_info import register_dataset

    docs = sorted({p["doc_id"] for p in pairs})
    rng = random.Random(cfg.seed)
    rng.shuffle(docs)
    held = set(docs[: int(round(cfg.heldout_fraction * len(docs)))])
    counts = {}
    for split, keep in (("train", lambda p: p["doc_id"] not in held), ("heldout", lambda p: p["doc_id"] in held)):
        part = [p for p in pairs if keep(p)]
        lf = f"{name}_{split}.jsonl"
        write_jsonl(out / lf, ({"instruction": p["instruction"], "input": p["input"],
                                "output": [p["chosen"], p["rejected"]]} for p in part))
        write_jsonl(out / f"{name}_{split}.trl.jsonl", ({"prompt": p["instruction"], "chosen": p["chosen"],
                                                         "rejected": p["rejected"]} for p in part))
        register_dataset(out / "dataset_info.json", f"{name}_{split}", lf, "alpaca", ranking=True)
        counts[f"{split} pairs"] = len(part)
    counts["documents"] = len(docs)
    return counts
