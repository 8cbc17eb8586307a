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
`LLMReranker`) with transformers' Trainer and the same losses, optionally with LoRA (peft; merged into
the saved model so it loads without peft).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ragtune.config import ConfigError
from ragtune.data.records import RerankerGroup, RerankerPoint
from ragtune.data.trec import Run
from ragtune.retrieval.rerank import LLMFormat
from ragtune.train.common import DevSet, TrainCommon, is_dev_query, start_run

POINT_LOSSES = ("bce", "mse")
GROUP_LOSSES = ("ranknet", "listwise", "listwise_soft")


class RerankerTrainConfig(TrainCommon):
    """Train a cross-encoder or an LLM reranker."""

    model_type: Literal["cross_encoder", "llm"] = "cross_encoder"
    model_name_or_path: str = "sentence-transformers/all-MiniLM-L6-v2"
    """cross_encoder: a BERT-like model or sentence-transformers folder (its encoder gets a fresh score head);
    llm: a causal LM folder (a scalar head is added on the last token)."""
    train_data: list[Path] = Field(min_length=1)
    format: Literal["auto", "point", "group"] = "auto"
    loss: Literal["auto", "bce", "mse", "ranknet", "listwise", "listwise_soft"] = "auto"
    """auto: bce for point data, listwise for groups (listwise_soft when distilling from a teacher)."""
    train_group_size: int = Field(8, ge=2)
    """Hits per group: 1 positive + (train_group_size - 1) negatives."""
    min_label: float | None = None
    """Pointwise labels are scaled to 0..1 as (label - min_label) / (max_label - min_label); default: data range."""
    max_label: float | None = None
    temperature: float = Field(1.0, gt=0)
    """listwise_soft: labels are softmax(label / temperature)."""
    max_length: int = Field(512, ge=8)
    """Tokens per (query, document) pair."""
    teacher: str | None = None
    """A trained reranker whose scores replace the labels (distillation)."""
    teacher_batch_size: int = Field(16, ge=1)
    # ---- llm
    llm: LLMFormat = Field(default_factory=LLMFormat)
    use_lora: bool = False
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_target: list[str] = Field(default_factory=lambda: ["all-linear"])
    # ---- dev evaluation
    dev_top: int | None = None
    """Re-rank this many BM25 candidates per dev query (default: dev.candidates)."""

    @field_validator("train_data", "lora_target", mode="before")
    @classmethod
    def _comma(cls, v: object) -> object:
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self) -> RerankerTrainConfig:
        if self.format == "point" and self.loss in GROUP_LOSSES:
            raise ValueError(f'loss "{self.loss}" needs grouped data ({{query, hits}}); point data takes bce or mse')
        if self.format == "group" and self.loss in POINT_LOSSES:
            raise ValueError(f'loss "{self.loss}" is pointwise; grouped data takes {", ".join(GROUP_LOSSES)}')
        if self.use_lora and self.model_type != "llm":
            raise ValueError("use_lora applies to model_type=llm")
        if (self.min_label is None) != (self.max_label is None):
            raise ValueError("set both min_label and max_label, or neither (the data range is used)")
        if self.min_label is not None and self.max_label is not None and self.max_label <= self.min_label:
            raise ValueError(f"max_label ({self.max_label}) must be larger than min_label ({self.min_label})")
        return self


# ---------------------------------------------------------------- records -> rows


def load_reranker_records(cfg: RerankerTrainConfig) -> tuple[str, list[RerankerPoint | RerankerGroup]]:
    """Read every file strictly (file:line errors); all files must be one kind."""
    from ragtune.data.formats import detect_record_kind, read_records

    kinds = {"point": "reranker-point", "group": "reranker-group"}
    records: list[Any] = []
    found: set[str] = set()
    for path in cfg.train_data:
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


def group_targets(name: str, labels, temperature: float):
    """Target distribution over a group: one-hot on hit 0 (listwise), or softmax(labels / T) (listwise_soft)."""
    import torch

    if name == "listwise":
        target = torch.zeros_like(labels)
        target[:, 0] = 1.0
        return target
    return torch.softmax(labels / temperature, dim=-1)


def score_loss(name: str, scores, labels, temperature: float = 1.0):
    """Loss of scores against labels, both (B, G) (G = 1 for pointwise); used for the LLM reranker.

    >>> import torch
    >>> s = torch.tensor([[2.0, 0.0]]); y = torch.tensor([[1.0, 0.0]])
    >>> round(float(score_loss("listwise", s, y)), 4)   # -log softmax(s)[0]
    0.1269
    >>> round(float(score_loss("ranknet", s, y)), 4)    # log(1 + e^-2) * (1 - 0)
    0.1269
    """
    import torch
    import torch.nn.functional as F

    if name == "bce":
        return F.binary_cross_entropy_with_logits(scores, labels)
    if name == "mse":
        return F.mse_loss(torch.sigmoid(scores), labels)
    if name == "ranknet":
        diff = scores[:, :, None] - scores[:, None, :]
        gap = labels[:, :, None] - labels[:, None, :]
        weight = gap.clamp(min=0.0)
        return (weight * F.softplus(-diff)).sum() / weight.gt(0).sum().clamp(min=1)
    target = group_targets(name, labels, temperature)
    return -(target * F.log_softmax(scores, dim=-1)).sum(-1).mean()


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
    from ragtune.train.common import make_run_evaluator

    top = cfg.dev_top or cfg.dev.candidates

    def run_fn(model):
        run = {q: {d: float(len(c) - i) for i, d in enumerate(c)} for q, c in dev.candidates.items()}
        return rerank_run(CrossEncoderReranker(model), run, dev.queries, dev.corpus, top=top)

    return make_run_evaluator(dev, cfg.dev, run_fn)


def train_cross_encoder(cfg: RerankerTrainConfig, rows, fmt: str, loss_name: str, dev: DevSet | None,
                        resume: str | None, device: str):
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from ragtune.models import resolve_model
    from ragtune.train.common import trainer_kwargs

    path = resolve_model(cfg.model_name_or_path)
    model = CrossEncoder(str(path), num_labels=1, max_length=cfg.max_length, device=device, local_files_only=True)
    evaluator = _ce_dev_evaluator(dev, cfg) if dev else None
    args = CrossEncoderTrainingArguments(**trainer_kwargs(cfg, device, dev is not None,
                                                          f"dev_{cfg.dev.metric_for_best}"))
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=_ce_dataset(rows, fmt, loss_name,
                                                                                    cfg.temperature),
                                  loss=st_loss(model, loss_name, cfg), evaluator=evaluator)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(cfg.output_dir))
    return trainer, result, evaluator


# ---------------------------------------------------------------- LLM reranker (transformers Trainer)


def build_llm_reranker(cfg: RerankerTrainConfig, device: str):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ragtune.models import resolve_model
    from ragtune.retrieval.rerank import LLMReranker

    path = resolve_model(cfg.model_name_or_path)
    tok = AutoTokenizer.from_pretrained(path)
    if cfg.llm.special_token and cfg.llm.special_token not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [cfg.llm.special_token]})
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    fmt = cfg.llm.model_copy(update={"max_length": cfg.max_length})
    reranker = LLMReranker(model, tok, fmt)
    if cfg.use_lora:
        from peft import LoraConfig, get_peft_model

        target: Any = "all-linear" if cfg.lora_target == ["all-linear"] else list(cfg.lora_target)
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=target, task_type="SEQ_CLS", modules_to_save=["score"])
        reranker.model = get_peft_model(model, lora)
    reranker.model.to(device)
    return reranker


def train_llm(cfg: RerankerTrainConfig, rows, fmt: str, loss_name: str, dev: DevSet | None, resume: str | None,
              device: str):
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from ragtune.train.common import trainer_kwargs

    reranker = build_llm_reranker(cfg, device)
    group = fmt == "group"

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        if group:
            pairs = [(b["query"], d) for b in batch for d in b["docs"]]
            labels = torch.tensor([b["labels"] for b in batch], dtype=torch.float32)
        else:
            pairs = [(b["query"], b["content"]) for b in batch]
            labels = torch.tensor([[b["label"]] for b in batch], dtype=torch.float32)
        return {**reranker.encode_pairs(pairs), "labels": labels}

    class RerankTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            scores = model(**inputs).logits.view(labels.shape)
            loss = score_loss(loss_name, scores, labels, cfg.temperature)
            return (loss, {"scores": scores}) if return_outputs else loss

    kwargs = trainer_kwargs(cfg, device, False)  # dev evaluation of LLM rerankers runs once after training
    trainer = RerankTrainer(model=reranker.model, args=TrainingArguments(**kwargs, remove_unused_columns=False),
                            train_dataset=Dataset.from_list(rows), data_collator=collate)
    result = trainer.train(resume_from_checkpoint=resume)
    if cfg.use_lora:
        reranker.model = trainer.model.merge_and_unload()
    reranker.save(cfg.output_dir)
    return trainer, result, reranker


# ---------------------------------------------------------------- entry point


def train_reranker(cfg: RerankerTrainConfig) -> dict[str, Any]:
    """Train the configured reranker; returns a summary (format, loss, examples, dev metrics, outputs)."""

    from ragtune.retrieval.rerank import load_reranker, rerank_run
    from ragtune.train.common import dev_metrics, finish

    device, resume, dev = start_run(cfg)
    fmt, records = load_reranker_records(cfg)
    loss_name = resolve_loss(cfg, fmt)
    if fmt == "point":
        rows, stats = point_rows([r for r in records if isinstance(r, RerankerPoint)], cfg, dev)
    else:
        rows, stats = group_rows([r for r in records if isinstance(r, RerankerGroup)], cfg, dev)
    if cfg.teacher:
        apply_teacher(rows, fmt, load_reranker(cfg.teacher, device), cfg.teacher_batch_size)
        stats["teacher"] = cfg.teacher

    t0 = time.perf_counter()
    if cfg.model_type == "cross_encoder":
        trainer, result, evaluator = train_cross_encoder(cfg, rows, fmt, loss_name, dev, resume, device)
    else:
        trainer, result, _ = train_llm(cfg, rows, fmt, loss_name, dev, resume, device)
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
