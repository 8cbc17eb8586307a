"""The loop's bi-encoder taught by a reranker on its pseudo queries (`retriever.teacher`).

    retriever:
      teacher: runs/teacher          # a `ragtune train reranker` folder (trained on the train pairs)
      teacher_fusion: true           # grade with it fused with BM25 at its dev-chosen weight (default)

The train pairs keep the contrastive rows (MNRL on BM25-mined negatives), and each kept pseudo query's candidates
(the miner's top `teacher_depth`) are graded by the teacher: `ragtune train mine rescore=... rescore_fusion=...`
drops those graded like a positive and keeps `teacher_negatives` with their grades, and the retriever learns the
teacher's margins on them (MarginMSE) in the same run, each batch from one of the two datasets. `teacher_scale`,
unless set, is fitted without labels (the untrained student's margins against the teacher's). On SciFact the
fused teacher made a second round's pseudo queries pay where the contrastive loss lost on them (BENCHMARKS.md,
"Margin distillation from a cross-encoder").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from ragtune.config import ConfigModel

GRADED = "graded"


class TeacherSettings(ConfigModel):
    """What a bi-encoder retriever's `teacher` needs; unset, the loop trains contrastively on every query."""

    teacher: str | None = None
    """A reranker folder (`ragtune train reranker` output) that grades the kept pseudo queries' candidates; the
    retriever learns its margins on them while the train pairs stay contrastive. Part of the stage's key by its
    files' fingerprint."""
    teacher_fusion: bool = True
    """Grade with the teacher fused with BM25's ranks at the weight its dev slice chose (its ragtune_fusion.json);
    false grades with the teacher's own scores."""
    teacher_depth: int = Field(20, ge=2)
    """The miner's top ranks the teacher grades per pseudo query."""
    teacher_negatives: int = Field(4, ge=1)
    """Graded negatives kept per pseudo query (the trainer draws `neg_nums` of them per example)."""
    teacher_max_length: int = Field(160, ge=8)
    """Tokens of query + document the teacher reads."""


TEACHER_KEYS = frozenset(TeacherSettings.model_fields)


def teacher_key(settings: Any) -> dict[str, str]:
    """The stage-key entry for a set teacher: its files' fingerprint (weights, configs and the fusion weight). A
    teacher that cannot grade (no folder; no fusion weight where `teacher_fusion` wants one) is a config error."""
    from ragtune.config import ConfigError
    from ragtune.models import fingerprint
    from ragtune.retrieval.rerank import read_dev_fusion

    teacher = getattr(settings, "teacher", None)
    if not teacher:
        return {}
    if not Path(teacher).is_dir():
        raise ConfigError(f'key "retriever.teacher": {teacher} is not a folder (a `ragtune train reranker` output)')
    if settings.teacher_fusion:
        read_dev_fusion(teacher, "retriever.teacher_fusion", "or set retriever.teacher_fusion=false")
    return {"teacher_fingerprint": fingerprint(teacher)}


def split_labeled(records: Path, labeled: set[str], out: Path) -> int:
    """The contrastive rows of the train pairs (by the mining audit's query ids) -> `out`; their number."""
    from ragtune.atomic import atomic_open
    from ragtune.retrieval.mining import MINED

    rows = records.read_text(encoding="utf-8").splitlines()
    qids = [json.loads(line)["query_id"] for line in (records.parent / MINED).read_text().splitlines()]
    kept = [row for q, row in zip(qids, rows, strict=True) if q in labeled]
    with atomic_open(out, "w") as f:
        f.write("".join(row + "\n" for row in kept))
    return len(kept)


def graded_rows(mix: Path, pseudo: set[str], out: Path, settings: TeacherSettings,
                mining: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Grade the pseudo queries of the BEIR folder `mix` with the teacher -> (their distill rows with a negative
    left, counts). Mining's miner and seed carry over; its rank window does not."""
    from ragtune.atomic import atomic_open
    from ragtune.config import build_config
    from ragtune.data.beir import load_beir, write_beir
    from ragtune.retrieval.mining import MineConfig, mine

    folder = out / GRADED
    if not (folder / "mine.config.yaml").is_file():  # written last: a restarted stage grades only once
        ds = load_beir(mix, ["train"])
        qrels = {q: dict(d) for q, d in ds.qrels["train"].items() if q in pseudo}
        write_beir(out / f"{GRADED}-mix", ds.corpus.values(), {q: ds.queries[q] for q in qrels}, {"train": qrels})
        keep = {k: v for k, v in mining.items() if k in {"min_score", "miner", "bm25", "dense", "seed", "query_prompt"}}
        mine(build_config(MineConfig, {**keep, "data": str(out / f"{GRADED}-mix"), "split": "train",
                                       "out": str(folder), "neg_start": 0, "neg_end": settings.teacher_depth,
                                       "neg_per_query": settings.teacher_negatives, "rescore": settings.teacher,
                                       "rescore_fusion": settings.teacher_fusion,
                                       "rescore_max_length": settings.teacher_max_length}, "retriever.teacher"))
    rows = (folder / "embedding.jsonl").read_text(encoding="utf-8").splitlines()
    contrasted = [row for row in rows if json.loads(row).get("neg")]
    path = out / "graded.jsonl"
    with atomic_open(path, "w") as f:
        f.write("".join(row + "\n" for row in contrasted))
    return path, {"graded_queries": len(contrasted), "graded_without_negative": len(rows) - len(contrasted)}


def distill_keys(graded: Path, encoder: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The trainer keys that make it learn the graded rows' margins: MarginMSE (unless `loss` is set) and
    `teacher_scale` (fitted unless set)."""
    from ragtune.train.retriever.teacher_scale import fit_teacher_scale

    keys: dict[str, Any] = {"loss": overrides.get("loss", "margin_mse")}
    if "teacher_scale" not in overrides:
        sample = [json.loads(line) for line in graded.read_text(encoding="utf-8").splitlines()[:512]]
        keys["teacher_scale"] = fit_teacher_scale(sample, encoder)
    return keys
