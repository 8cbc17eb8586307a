"""Training rows for the bi-encoder trainer (embedding.py): records -> sentence-transformers rows, per format.

    train = load_training_rows(cfg, dev)   # read, validate (file:line), detect the format, build rows
    texts = pca_texts(cfg, train, dev)     # what `mrl_init: pca` fits its rotation on

The formats and how negatives are filled are described in embedding.py's docstring.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ragtune.config import ConfigError
from ragtune.data.records import Embedding
from ragtune.train.retriever.dev import DevSet, is_dev_query
from ragtune.train.retriever.embedding_heads import rotation_texts

EmbeddingTrainConfig = Any
"""embedding.py's config (it imports this module, so the type cannot be imported back without a cycle)."""


# ---------------------------------------------------------------- records -> dataset


def detect_format(records: list[Embedding], has_vectors: bool) -> str:
    if has_vectors:
        return "teacher"
    if any(r.scores is not None for r in records):
        return "distill"
    if any(r.neg for r in records):
        return "hard_neg"
    return "pair"


def _query_text(rec: Any, default_prompt: str | None) -> tuple[str, str | None]:
    prompt = rec.prompt_for_query if rec.prompt_for_query is not None else default_prompt
    return (prompt or "") + rec.query, prompt


def _fill(items: list[Any], n: int, rng: random.Random, pool: list[Any]) -> list[Any]:
    """`n` items: a sample of `items`, topped up by drawing again from them (or from `pool` when empty)."""
    if len(items) >= n:
        return rng.sample(items, n)
    source = items or pool
    return list(items) + [rng.choice(source) for _ in range(n - len(items))]


def scored_list_row(rec: Embedding) -> Embedding:
    """RAG-Retrieval's `{query, pos, scores}` (every passage scored, no `neg`) as the `neg`-bearing row it means:
    the best-scored passage (the first of equals) is the positive, the others its scored negatives."""
    if len(rec.pos) < 2:
        raise ConfigError(f'format "distill": the row for query "{rec.query[:60]}" scores one passage; distillation '
                          "contrasts at least two (add passages to pos, or neg)")
    scores = list(rec.scores or [])
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    order = [best, *(i for i in range(len(scores)) if i != best)]
    return rec.model_copy(update={"pos": [rec.pos[best]], "neg": [rec.pos[i] for i in order[1:]],
                                  "scores": [scores[i] for i in order]})


def embedding_rows(records: list[Embedding], fmt: str, cfg: EmbeddingTrainConfig, dev: DevSet | None = None
                   ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """ST training rows (ordered columns) from embedding records; dev queries are dropped."""
    rng = random.Random(cfg.seed)
    pool = sorted({p for r in records for p in [*r.pos, *(r.neg or [])]})
    rows: list[dict[str, Any]] = []
    stats = {"records": len(records), "dropped_dev_queries": 0, "rows_resampled_negatives": 0}
    weighted = any(r.weight is not None for r in records)
    if weighted and fmt not in ("pair", "hard_neg"):
        raise ConfigError(f'records with a "weight" weigh a contrastive loss; the {fmt} format has its own labels')
    for rec in records:
        query, prompt = _query_text(rec, cfg.query_prompt)
        if is_dev_query(query, dev, prompt):
            stats["dropped_dev_queries"] += 1
            continue
        if fmt == "distill" and not rec.neg and rec.scores is not None:
            rec = scored_list_row(rec)
        negs = list(rec.neg or [])
        weight = {"label": 1.0 if rec.weight is None else rec.weight} if weighted else {}
        if fmt == "pair":
            rows += [{"query": query, "pos": p} | weight for p in rec.pos]
            continue
        if fmt == "distill" and rec.scores is None:
            raise ConfigError(f'format "distill" needs "scores" on every row; the row for query '
                              f'"{rec.query[:60]}" has none')
        own_pool = [p for p in pool if p not in rec.pos] if not negs else pool
        stats["rows_resampled_negatives"] += len(negs) < cfg.neg_nums
        for i, p in enumerate(rec.pos):
            if fmt == "distill":
                scores = rec.scores or []
                neg_scored = list(zip(negs, scores[len(rec.pos):], strict=True))
                if not neg_scored:
                    raise ConfigError(f'format "distill": the row for query "{rec.query[:60]}" has scores but no '
                                      '"neg" passages to contrast with')
                picked = _fill(neg_scored, cfg.neg_nums, rng, neg_scored)
                row = {"query": query, "pos": p} | {f"neg_{j + 1}": n for j, (n, _) in enumerate(picked)}
                row["label"] = [cfg.teacher_scale * float(s) for s in (scores[i], *(s for _, s in picked))]
            else:
                picked = _fill(negs, cfg.neg_nums, rng, own_pool)
                row = {"query": query, "pos": p} | {f"neg_{j + 1}": n for j, n in enumerate(picked)} | weight
            rows.append(row)
    stats["examples"] = len(rows)
    return rows, stats


def teacher_rows(path: Path, vectors: Path | None, cfg: EmbeddingTrainConfig, dev: DevSet | None = None
                 ) -> tuple[list[dict[str, Any]], int, int]:
    """({query, label: teacher vector} rows, dev queries dropped, teacher dim) of a {query} file and its vectors."""
    from ragtune.data.formats import load_teacher

    queries, arr = load_teacher(path, vectors, dim=cfg.teacher_dim)
    rows, dropped = [], 0
    for q, vec in zip(queries, arr, strict=True):
        text, prompt = _query_text(q, cfg.query_prompt)
        if is_dev_query(text, dev, prompt):
            dropped += 1
            continue
        rows.append({"query": text, "label": np.asarray(vec, dtype=np.float32).tolist()})
    return rows, dropped, int(arr.shape[1])


def validation_rows(cfg: EmbeddingTrainConfig, fmt: str) -> list[dict[str, Any]] | None:
    """Rows of val_data, built like the training rows (None without val_data)."""
    from ragtune.data.formats import read_records

    if cfg.val_data is None:
        return None
    if fmt == "teacher":
        return teacher_rows(cfg.val_data, None, cfg)[0]
    records = [r for r in read_records(cfg.val_data, "embedding") if isinstance(r, Embedding)]
    rows = embedding_rows(records, fmt, cfg)[0]
    if not rows:
        raise ConfigError(f'key "val_data": no records in {cfg.val_data}')
    return rows


class TrainingRows(NamedTuple):
    fmt: str
    rows: list[dict[str, Any]]
    stats: dict[str, int]
    records: list[Embedding]
    """What the rows were built from (empty for teacher files), so they can be rebuilt under another seed."""
    parts: dict[str, list[dict[str, Any]]] | None = None
    """Files of different formats (e.g. labeled hard_neg pairs beside teacher-scored distill rows): each format's
    rows, trained as their own dataset with their own loss. None when every file has one format."""


def load_training_rows(cfg: EmbeddingTrainConfig, dev: DevSet | None) -> TrainingRows:
    """Read and validate every train file (file:line errors), detect the format, build rows."""
    from ragtune.data.formats import read_records

    if cfg.format == "teacher" or (cfg.format == "auto" and (
            cfg.teacher_vectors is not None or Path(cfg.train_data[0]).with_suffix(".npy").is_file())):
        if len(cfg.train_data) != 1:
            raise ConfigError('key "train_data": teacher distillation reads one {query} file and its .npy')
        rows, dropped, dim = teacher_rows(cfg.train_data[0], cfg.teacher_vectors, cfg, dev)
        return TrainingRows("teacher", rows, {"records": len(rows) + dropped, "dropped_dev_queries": dropped,
                                              "examples": len(rows), "teacher_dim": dim}, [])
    records: list[Embedding] = []
    by_loss: dict[bool, list[Embedding]] = {}  # scored (distillation) files apart from contrastive ones
    for path in cfg.train_data:
        file_records = [r for r in read_records(path, "embedding") if isinstance(r, Embedding)]
        records += file_records
        if file_records:
            by_loss.setdefault(detect_format(file_records, False) == "distill", []).extend(file_records)
    if not records:
        raise ConfigError(f'key "train_data": no records in {", ".join(map(str, cfg.train_data))}')
    if cfg.format == "auto" and len(by_loss) > 1:
        return _mixed_rows({detect_format(recs, False): recs for recs in by_loss.values()}, cfg, dev, records)
    fmt = detect_format(records, False) if cfg.format == "auto" else cfg.format
    if fmt == "teacher":
        raise ConfigError('format "teacher" needs a .npy of teacher vectors: set teacher_vectors=PATH')
    rows, stats = embedding_rows(records, fmt, cfg, dev)
    if not rows:
        raise ConfigError("no training example left after removing the dev queries")
    return TrainingRows(fmt, rows, stats, records)


def _mixed_rows(by_format: dict[str, list[Embedding]], cfg: EmbeddingTrainConfig, dev: DevSet | None,
                records: list[Embedding]) -> TrainingRows:
    if cfg.example_order == "file" or cfg.val_data is not None:
        raise ConfigError('key "train_data": files of different formats (' + ", ".join(by_format) + ") train as "
                          "separate datasets, which example_order=file and val_data do not support")
    parts: dict[str, list[dict[str, Any]]] = {}
    stats: dict[str, int] = {}
    for fmt, recs in by_format.items():
        parts[fmt], part_stats = embedding_rows(recs, fmt, cfg, dev)
        for k, v in part_stats.items():
            stats[k] = stats.get(k, 0) + v
        stats[f"{fmt}_examples"] = part_stats["examples"]
    if any(any("label" in row for row in rows) for fmt, rows in parts.items() if fmt != "distill"):
        raise ConfigError('records with a "weight" need every train file in one format')
    parts = {fmt: rows for fmt, rows in parts.items() if rows}
    if not parts:
        raise ConfigError("no training example left after removing the dev queries")
    return TrainingRows("+".join(parts), [row for rows in parts.values() for row in rows], stats, records, parts)


def pca_texts(cfg: EmbeddingTrainConfig, train: TrainingRows, dev: DevSet | None) -> list[str]:
    """The texts the PCA rotation is fitted on, drawn with `mrl_pca_seed` (else `seed`): the rows are rebuilt from
    the records with that seed when it differs, since their resampled negatives follow the seed."""
    seed = cfg.seed if cfg.mrl_pca_seed is None else cfg.mrl_pca_seed
    rows = train.rows
    if seed != cfg.seed and train.records:
        reseeded = cfg.model_copy(update={"seed": seed})
        rows = embedding_rows(train.records, train.fmt, reseeded, dev)[0] if train.parts is None else \
            load_training_rows(reseeded, dev).rows
    return rotation_texts(rows, cfg.mrl_pca_texts, seed)
