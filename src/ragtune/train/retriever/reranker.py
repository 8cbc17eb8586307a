"""`ragtune train reranker`: cross-encoders (sentence-transformers) and LLM-decoder rerankers.

    cfg = load_config(RerankerTrainConfig, "configs/scifact-reranker.yaml", ["max_steps=20"])
    summary = train_reranker(cfg)

Data (`ragtune.data.records`): pointwise `{query, content, label}` or grouped `{query, hits: [{content, label}]}`.

| loss            | data  | optimises                                                 | cross-encoder (ST)      |
|-----------------|-------|-----------------------------------------------------------|-------------------------|
| `bce`           | point | sigmoid(score) vs label scaled by min_label/max_label     | BinaryCrossEntropyLoss  |
| `mse`           | point | sigmoid(score) vs the scaled label (squared error)        | MSELoss, sigmoid        |
| `ranknet`       | group | log-loss of every pair y_i > y_j, weighted by y_i - y_j   | LambdaLoss, label gap   |
| `listwise`      | group | softmax cross-entropy of the positive (hit 0)             | ListNetLoss, one-hot    |
| `listwise_soft` | group | cross-entropy of softmax(labels / T) and softmax(scores)  | ListNetLoss             |

A group is `train_group_size` hits: one positive (the highest label) and negatives drawn from the rest,
drawn again (seeded) when the row has fewer. `teacher: PATH` distils a trained reranker (e.g. an LLM
reranker into a BERT one): the teacher's scores replace the labels (use `listwise_soft` or `mse`).

`model_type: llm` trains a causal LM with a scalar head on the last token (retrieval/rerank.py,
`LLMReranker`) with transformers' Trainer and the same losses (llm_reranker.py), optionally with LoRA (peft;
merged into the saved model so it loads without peft).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragtune.config import ConfigError
from ragtune.data.records import RerankerGroup, RerankerPoint
from ragtune.data.trec import Run
from ragtune.train.harness import train_resuming
from ragtune.train.retriever.base import start_run
from ragtune.train.retriever.dev import DevSet, is_dev_query
from ragtune.train.retriever.llm_reranker import train_llm
from ragtune.train.retriever.reranker_config import GROUP_LOSSES, POINT_LOSSES, RerankerTrainConfig

# ---------------------------------------------------------------- records -> rows


def validation_rows(cfg: RerankerTrainConfig, fmt: str, stats: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Rows of val_data, built like the training rows (labels scaled by the training range); None without it."""
    if cfg.val_data is None:
        return None
    vfmt, records = load_reranker_records(cfg, [cfg.val_data])
    if vfmt != fmt:
        raise ConfigError(f'key "val_data": {cfg.val_data} holds {vfmt} records but train_data {fmt}; use one kind')
    if fmt == "point":
        lo, hi = stats["label_range"]
        scaled = cfg.model_copy(update={"min_label": lo, "max_label": hi})
        return point_rows([r for r in records if isinstance(r, RerankerPoint)], scaled, None)[0]
    return group_rows([r for r in records if isinstance(r, RerankerGroup)], cfg, None)[0]


def load_reranker_records(cfg: RerankerTrainConfig, paths: list[Path] | None = None
                          ) -> tuple[str, list[RerankerPoint | RerankerGroup]]:
    """Read every file (default: train_data) strictly (file:line errors); all files must be one kind."""
    from ragtune.data.formats import detect_record_kind, read_records

    kinds = {"point": "reranker-point", "group": "reranker-group"}
    records: list[Any] = []
    found: set[str] = set()
    for path in paths or cfg.train_data:
        kind = kinds[cfg.format] if cfg.format != "auto" else detect_record_kind(path)
        if kind not in kinds.values():
            raise ConfigError(f'{path}: holds "{kind}" records; reranker training reads {{query, content, label}} '
                              "or {query, hits: [{content, label}]}")
        found.add(kind)
        records += list(read_records(path, kind))
    if len(found) > 1:
        raise ConfigError('key "train_data": mixes pointwise and grouped files; train on one kind at a time')
    if not records:
        raise ConfigError(f'key "train_data": no records in {", ".join(map(str, cfg.train_data))}')
    return ("point" if found == {"reranker-point"} else "group"), records


def shuffle_text(text: str, rng: random.Random) -> str:
    """RAG-Retrieval's shuffle augmentation: a text longer than 100 characters cut into three pieces, reordered."""
    if len(text) <= 100:
        return text
    size = len(text) // 3 + 1
    pieces = [text[i:i + size] for i in range(0, len(text), size)]
    rng.shuffle(pieces)
    return " ".join(pieces)


def shuffle_documents(rows: list[dict[str, Any]], rate: float, seed: int) -> int:
    """Apply shuffle_text to each document of `rows` with probability `rate` (in place); returns how many."""
    if rate <= 0:
        return 0
    rng = random.Random(seed)
    changed = 0
    for r in rows:
        if "content" in r:
            if rng.random() < rate:
                r["content"], changed = shuffle_text(r["content"], rng), changed + 1
            continue
        docs = []
        for d in r["docs"]:
            hit = rng.random() < rate
            docs.append(shuffle_text(d, rng) if hit else d)
            changed += hit
        r["docs"] = docs
    return changed


def resolve_loss(cfg: RerankerTrainConfig, fmt: str) -> str:
    if cfg.loss != "auto":
        if fmt == "point" and cfg.loss in GROUP_LOSSES or fmt == "group" and cfg.loss in POINT_LOSSES:
            raise ConfigError(f'key "loss": {cfg.loss} does not fit {fmt} data')
        return cfg.loss
    if fmt == "point":
        return "mse" if cfg.teacher else "bce"
    return "listwise_soft" if cfg.teacher else "listwise"


def label_range(cfg: RerankerTrainConfig, labels: list[float]) -> tuple[float, float]:
    lo = cfg.min_label if cfg.min_label is not None else min(labels)
    hi = cfg.max_label if cfg.max_label is not None else max(labels)
    if hi <= lo:
        raise ConfigError(f"every label is {lo}: pointwise training needs at least two label values "
                          "(or set min_label and max_label)")
    return lo, hi


def point_rows(records: list[RerankerPoint], cfg: RerankerTrainConfig, dev: DevSet | None
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """{query, content, label in 0..1} rows; dev queries dropped."""
    kept = [r for r in records if not is_dev_query(r.query, dev)]
    if not kept:
        raise ConfigError("no training record left after removing the dev queries")
    lo, hi = label_range(cfg, [r.label for r in kept])
    rows = [{"query": r.query, "content": r.content, "label": min(1.0, max(0.0, (r.label - lo) / (hi - lo)))}
            for r in kept]
    return rows, {"records": len(records), "dropped_dev_queries": len(records) - len(kept), "examples": len(rows),
                  "label_range": [lo, hi]}


def group_rows(records: list[RerankerGroup], cfg: RerankerTrainConfig, dev: DevSet | None
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """{query, docs: [pos, neg...], labels} rows of train_group_size hits; the positive is first."""
    rng = random.Random(cfg.seed)
    rows: list[dict[str, Any]] = []
    stats = {"records": len(records), "dropped_dev_queries": 0, "groups_resampled": 0, "skipped_no_negative": 0}
    for rec in records:
        if is_dev_query(rec.query, dev):
            stats["dropped_dev_queries"] += 1
            continue
        hits = sorted(rec.hits, key=lambda h: -h.label)
        top = hits[0].label
        positives = [h for h in hits if h.label == top]
        negatives = [h for h in hits if h.label < top]
        if not negatives:
            stats["skipped_no_negative"] += 1
            continue
        n = cfg.train_group_size - 1
        stats["groups_resampled"] += len(negatives) < n
        for pos in positives:
            negs = rng.sample(negatives, n) if len(negatives) >= n else \
                negatives + [rng.choice(negatives) for _ in range(n - len(negatives))]
            group = [pos, *negs]
            rows.append({"query": rec.query, "docs": [h.content for h in group],
                         "labels": [float(h.label) for h in group]})
    if not rows:
        raise ConfigError("no training group: every row needs a hit with a lower label than its best one")
    stats["examples"] = len(rows)
    return rows, stats


def apply_teacher(rows: list[dict[str, Any]], fmt: str, teacher, batch_size: int) -> None:
    """Replace labels with the teacher's scores (in place): logits for groups, sigmoid for points."""
    import math

    if fmt == "point":
        scores = teacher.compute_score([(r["query"], r["content"]) for r in rows], batch_size=batch_size)
        for r, s in zip(rows, scores, strict=True):
            r["label"] = 1.0 / (1.0 + math.exp(-s))
        return
    pairs = [(r["query"], d) for r in rows for d in r["docs"]]
    scores = teacher.compute_score(pairs, batch_size=batch_size)
    i = 0
    for r in rows:
        r["labels"] = scores[i:i + len(r["docs"])]
        i += len(r["docs"])


# ---------------------------------------------------------------- losses


def label_diff_scheme():
    """LambdaLoss weighting: each pair weighted by its label difference |y_i - y_j| (RankNet by label gap)."""
    from sentence_transformers.cross_encoder.losses.lambda_loss import BaseWeightingScheme

    class LabelDiffScheme(BaseWeightingScheme):
        def forward(self, gain, discount, true_sorted):
            return (true_sorted[:, :, None] - true_sorted[:, None, :]).abs()

    return LabelDiffScheme()


def st_loss(model, name: str, cfg: RerankerTrainConfig):
    """The sentence-transformers CrossEncoder loss for `name` (see the table in the module docstring)."""
    import torch
    from sentence_transformers.cross_encoder import losses

    if name == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if name == "mse":
        return losses.MSELoss(model, activation_fn=torch.nn.Sigmoid())
    if name == "ranknet":
        return losses.LambdaLoss(model, weighting_scheme=label_diff_scheme(), k=None)
    return losses.ListNetLoss(model)


# ---------------------------------------------------------------- cross-encoder (sentence-transformers)


def _ce_dataset(rows: list[dict[str, Any]], fmt: str, loss: str, temperature: float):
    from datasets import Dataset

    if fmt == "point":
        return Dataset.from_list(rows)
    import torch

    out = []
    for r in rows:
        labels = torch.tensor([r["labels"]])
        if loss == "listwise":  # ListNet takes softmax(labels): a huge gap makes it the one-hot target exactly
            target = [0.0] + [-1e4] * (len(r["docs"]) - 1)
        elif loss == "listwise_soft":
            target = (labels / temperature).view(-1).tolist()
        else:
            target = labels.view(-1).tolist()
        out.append({"query": r["query"], "docs": r["docs"], "labels": target})
    return Dataset.from_list(out)


def _ce_dev_evaluator(dev: DevSet, cfg: RerankerTrainConfig):
    from ragtune.retrieval.rerank import CrossEncoderReranker, rerank_run
    from ragtune.train.retriever.dev import make_run_evaluator

    top = cfg.dev_top or cfg.dev.candidates

    def run_fn(model):
        run = {q: {d: float(len(c) - i) for i, d in enumerate(c)} for q, c in dev.candidates.items()}
        return rerank_run(CrossEncoderReranker(model), run, dev.queries, dev.corpus, top=top)

    return make_run_evaluator(dev, cfg.dev, run_fn)


def train_cross_encoder(cfg: RerankerTrainConfig, rows, fmt: str, loss_name: str, dev: DevSet | None,
                        resume: str | None, device: str, val_rows=None):
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from ragtune.models import resolve_model
    from ragtune.train.retriever.base import trainer_kwargs, use_stable_proportion

    path = resolve_model(cfg.model_name_or_path)
    model = CrossEncoder(str(path), num_labels=1, max_length=cfg.max_length, device=device, local_files_only=True)
    evaluator = _ce_dev_evaluator(dev, cfg) if dev else None
    # every parameter takes part in the score; DDP's unused-parameter search breaks on the CrossEncoder's graph
    args = CrossEncoderTrainingArguments(**trainer_kwargs(cfg, device, dev is not None or val_rows is not None,
                                                          f"dev_{cfg.dev.metric_for_best}" if dev else None),
                                         ddp_find_unused_parameters=False)
    val = _ce_dataset(val_rows, fmt, loss_name, cfg.temperature) if val_rows else None
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=_ce_dataset(rows, fmt, loss_name,
                                                                                    cfg.temperature),
                                  loss=st_loss(model, loss_name, cfg), evaluator=evaluator, eval_dataset=val)
    use_stable_proportion(trainer, cfg)
    result = train_resuming(trainer, resume)
    trainer.save_model(str(cfg.output_dir))
    return trainer, result, evaluator


# ---------------------------------------------------------------- entry point


def train_reranker(cfg: RerankerTrainConfig) -> dict[str, Any]:
    """Train the configured reranker; returns a summary (format, loss, examples, dev metrics, outputs)."""

    from ragtune.retrieval.rerank import load_reranker, rerank_run
    from ragtune.train.harness import finish
    from ragtune.train.retriever.dev import dev_metrics

    device, resume, dev = start_run(cfg)
    fmt, records = load_reranker_records(cfg)
    loss_name = resolve_loss(cfg, fmt)
    if fmt == "point":
        rows, stats = point_rows([r for r in records if isinstance(r, RerankerPoint)], cfg, dev)
    else:
        rows, stats = group_rows([r for r in records if isinstance(r, RerankerGroup)], cfg, dev)
    val_rows = validation_rows(cfg, fmt, stats)
    if cfg.teacher:
        teacher = load_reranker(cfg.teacher, device)
        for part in (rows, val_rows or []):
            apply_teacher(part, fmt, teacher, cfg.teacher_batch_size)
        stats["teacher"] = cfg.teacher
    stats["documents_shuffled"] = shuffle_documents(rows, cfg.shuffle_rate, cfg.seed)

    t0 = time.perf_counter()
    if cfg.model_type == "cross_encoder":
        trainer, result, evaluator = train_cross_encoder(cfg, rows, fmt, loss_name, dev, resume, device, val_rows)
    else:
        trainer, result, _ = train_llm(cfg, rows, fmt, loss_name, dev, resume, device, val_rows)
        evaluator = None
    wall = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "command": "train reranker", "model_type": cfg.model_type, "model": cfg.model_name_or_path,
        "format": fmt, "loss": loss_name, **stats, "dev_queries": len(dev.queries) if dev else 0,
        "resumed_from": resume, "train_loss": result.training_loss, "train_runtime_s": round(wall, 1),
        "dev_history": evaluator.history if evaluator else [],
    }
    if dev is not None and evaluator is None:  # the cross-encoder's evaluator already scored every checkpoint
        saved = load_reranker(cfg.output_dir, device)
        top = cfg.dev_top or cfg.dev.candidates
        first = {q: {d: float(len(c) - i) for i, d in enumerate(c)} for q, c in dev.candidates.items()}
        summary["dev_final"] = dev_metrics(dev, rerank_run(saved, first, dev.queries, dev.corpus, top=top),
                                           cfg.dev.metrics)
    fusion = None
    if dev is not None:
        first = {q: {d: float(len(c) - i) for i, d in enumerate(c)} for q, c in dev.candidates.items()}
        summary["dev_bm25"] = dev_metrics(dev, first, cfg.dev.metrics)
        fusion = dev_fusion(trainer, cfg, dev, first, device)
        summary["dev_fusion"] = fusion
    summary = finish(trainer, cfg, summary, title=f"{loss_name} {cfg.model_type} reranker")
    if fusion is not None and trainer.is_world_process_zero():
        from ragtune.atomic import write_json
        from ragtune.retrieval.rerank import FUSION_FILE

        write_json(Path(cfg.output_dir) / FUSION_FILE, fusion)
    return summary


def dev_fusion(trainer, cfg: RerankerTrainConfig, dev: DevSet, first, device: str) -> dict[str, Any]:
    """Weight of the reranker against BM25's ranks (weighted RRF), chosen on the dev slice: `rerank_fusion: dev`."""
    from ragtune.retrieval.rerank import CrossEncoderReranker, load_reranker, rerank_run

    model = CrossEncoderReranker(trainer.model) if cfg.model_type == "cross_encoder" else \
        load_reranker(cfg.output_dir, device)
    top = cfg.dev_top or cfg.dev.candidates
    reranked = rerank_run(model, first, dev.queries, dev.corpus, top=top)
    return choose_fusion_weight(first, reranked, dev.qrels, cfg.dev.metric_for_best, top)


def choose_fusion_weight(first: Run, reranked: Run, qrels: Mapping[str, Mapping[str, int]], metric: str,
                         top: int, grid: Sequence[float] = tuple(i / 10 for i in range(11))) -> dict[str, Any]:
    """The grid weight with the best `metric` on these (dev) queries; ties go to the larger reranker weight."""
    from ragtune.evaluate.metrics import evaluate
    from ragtune.retrieval.rerank import fuse_with_first_stage

    table = {w: evaluate(qrels, fuse_with_first_stage(first, reranked, w, top), [metric]).metrics[metric]
             for w in grid}
    best = max(table, key=lambda w: (round(table[w], 10), w))
    return {"weight": best, "k": 60, "top": top, "metric": metric, "dev_value": table[best],
            "dev_table": {f"{w:.2f}": v for w, v in table.items()}}
