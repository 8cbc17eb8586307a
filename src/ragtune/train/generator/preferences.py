"""Preference pairs over each document's pseudo queries, for the reward model and DPO.

For a document with pseudo queries a, b, ..., every pair whose criterion values differ
becomes (chosen, rejected):

- `difficulty_band`: the query closer to the target difficulty band wins (too easy teaches
  the retriever nothing; unanswerable-hard is likely noise);
- `filter`: a query the filters kept beats one they dropped;
- `rank`: the query whose source document the retriever ranks higher wins.

A list of criteria orders the pairs lexicographically: the first criterion whose values differ
by at least `min_gap` decides (`[filter, difficulty_band, rank]`: a kept query beats a dropped one;
between two kept ones the one nearer the band wins; then the better-ranked one), which is what the
loop wants from its training data. Each pair records the criterion that decided it.

Written twice: LLaMA-Factory ranking rows (`{instruction, input, output: [chosen, rejected]}`,
registered with `"ranking": true` in dataset_info.json) and trl rows (`{prompt, chosen, rejected}`),
plus `<name>_<split>.meta.jsonl` (doc id and deciding criterion of each pair, line by line).
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
    criterion: Criterion | list[Criterion] = "difficulty_band"
    """One criterion, or several applied in order (lexicographic)."""
    band: Band = (0.3, 0.7)
    """Target difficulty band for `difficulty_band`."""
    min_gap: float = Field(0.05, ge=0)
    """Pairs whose criterion values differ by less than this are skipped (ties teach nothing)."""
    max_pairs_per_doc: int = Field(4, ge=1)
    heldout_fraction: float = Field(0.1, ge=0, lt=1)
    """Documents whose pairs go to the held-out file (for reward-model accuracy)."""
    seed: int = 0


def criteria(cfg: PreferenceConfig) -> list[str]:
    return [cfg.criterion] if isinstance(cfg.criterion, str) else list(cfg.criterion)


def _value(row: dict, criterion: str, band: tuple[float, float]) -> float | None:
    """One criterion's value for one provenance row, higher = better; None when it was not measured."""
    if criterion == "filter":
        f = row.get("filters") or {}
        return (1.0 if f["kept"] else 0.0) if "kept" in f else None
    diff = row.get("difficulty")
    if not isinstance(diff, dict):  # written by evaluate.difficulty: {rank, score, margin, difficulty}
        return None
    if criterion == "rank":
        return 1.0 / diff["rank"] if diff.get("rank") else 0.0
    lo, hi = band
    d = diff["difficulty"]
    return -max(lo - d, 0.0, d - hi)  # 0 inside the band, minus the distance to it outside


def _decide(va: tuple[float, ...], vb: tuple[float, ...], names: list[str], min_gap: float) -> tuple[int, str] | None:
    """(+1 if a wins, -1 if b wins, the deciding criterion), or None for a tie on every criterion."""
    for x, y, name in zip(va, vb, names, strict=True):
        if abs(x - y) >= min_gap and x != y:
            return (1 if x > y else -1), name
    return None


def build_pairs(rows: list[dict[str, Any]], texts: dict[str, str], prompts: dict[str, str],
                cfg: PreferenceConfig) -> list[dict[str, str]]:
    """rows: provenance rows (query_id, doc_id, filters, difficulty); texts: query id -> text;
    prompts: doc id -> the generation prompt (the instruction the generator saw)."""
    rng = random.Random(cfg.seed)
    names = criteria(cfg)
    by_doc: dict[str, list[tuple[str, tuple[float, ...]]]] = defaultdict(list)
    for row in rows:
        if row.get("failed") or row["query_id"] not in texts:
            continue
        values = [_value(row, c, cfg.band) for c in names]
        if all(v is not None for v in values):
            by_doc[row["doc_id"]].append((row["query_id"], tuple(values)))  # type: ignore[arg-type]
    pairs = []
    for doc, items in sorted(by_doc.items()):
        cands = []
        for (a, va), (b, vb) in itertools.combinations(items, 2):
            verdict = _decide(va, vb, names, cfg.min_gap)
            if verdict is None or texts[a].strip().lower() == texts[b].strip().lower():
                continue
            sign, by = verdict
            cands.append((a, b, by) if sign > 0 else (b, a, by))
        rng.shuffle(cands)
        for chosen, rejected, by in cands[: cfg.max_pairs_per_doc]:
            pairs.append({"doc_id": doc, "instruction": prompts[doc], "input": "",
                          "chosen": texts[chosen], "rejected": texts[rejected], "decided_by": by})
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
        write_jsonl(out / f"{name}_{split}.meta.jsonl", ({"doc_id": p["doc_id"], "decided_by": p.get("decided_by")}
                                                         for p in part))
        register_dataset(out / "dataset_info.json", f"{name}_{split}", lf, "alpaca", ranking=True)
        counts[f"{split} pairs"] = len(part)
    counts["documents"] = len(docs)
    counts["decided_by"] = {c: sum(p.get("decided_by") == c for p in pairs) for c in criteria(cfg)}
    return counts
