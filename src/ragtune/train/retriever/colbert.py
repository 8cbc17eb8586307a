"""`ragtune train colbert`: a late-interaction model as a sentence-transformers `MultiVectorEncoder`.

    cfg = load_config(ColbertTrainConfig, "configs/scifact-colbert.yaml", ["max_steps=20"])
    summary = train_colbert(cfg)

The model (`ragtune.retrieval.colbert_model`: encoder, projection to `dim`, punctuation mask, normalization,
query/document markers) is saved and loaded like any sentence-transformers model
(`MultiVectorEncoder(output_dir)`). Training uses the multi-vector trainer and losses: in-batch + hard
negatives (MNRL, or its cached variant) on `{query, pos, neg}` records, or KL score distillation on
`{query, pos, neg, scores}`. Records with a `weight` weigh their example's loss, and `example_order: file`
keeps the records' order in the batches (a curriculum; train/retriever/curriculum.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from ragtune.config import CommaList, ConfigError
from ragtune.data.records import Embedding
from ragtune.models import DEFAULT_ENCODER
from ragtune.retrieval.colbert_model import ColbertModelSettings
from ragtune.train.harness import train_resuming
from ragtune.train.retriever.base import RetrieverTrainConfig, RetrieverTrainSettings, start_run
from ragtune.train.retriever.curriculum import CurriculumSettings
from ragtune.train.retriever.dev import DevSet


class ColbertSettings(ColbertModelSettings, CurriculumSettings, RetrieverTrainSettings):
    """Train a ColBERT model: everything but the data and output paths (the loop's `retriever:` overrides with
    `kind: colbert`)."""

    model_name_or_path: str = DEFAULT_ENCODER
    """A BERT-like encoder (or sentence-transformers folder, its Transformer is reused), or a MultiVectorEncoder
    folder to continue training."""
    neg_nums: int = Field(1, ge=1)
    loss: Literal["auto", "mnrl", "cached_mnrl", "kl"] = "auto"
    """auto: mnrl, or kl when the records carry scores."""
    scale: float = Field(1.0, gt=0)
    """MNRL logit scale over MaxSim scores (1 / temperature; PyLate's and sentence-transformers' default 1)."""
    mini_batch_size: int = Field(16, ge=1)
    """cached_mnrl chunk size."""
    temperature: float = Field(1.0, gt=0)
    """kl distillation temperature."""


class ColbertTrainConfig(ColbertSettings, RetrieverTrainConfig):
    """Train a ColBERT (late-interaction) model."""

    train_data: Annotated[list[Path], CommaList] = Field(min_length=1)
    """Embedding records: {query, pos, neg} (contrastive) or {query, pos, neg, scores} (distillation)."""


def colbert_rows(records: list[Embedding], cfg: ColbertTrainConfig, dev: DevSet | None) -> tuple[str, list, dict]:
    """Reuse the embedding trainer's row builder: same formats, same dev-query removal."""
    from ragtune.train.retriever.embedding import EmbeddingTrainConfig
    from ragtune.train.retriever.embedding_rows import detect_format, embedding_rows

    fmt = detect_format(records, False)
    shim = EmbeddingTrainConfig.model_construct(neg_nums=cfg.neg_nums, seed=cfg.seed, query_prompt=None)
    rows, stats = embedding_rows(records, fmt, shim, dev)
    if not rows:
        raise ConfigError("no training example left after removing the dev queries")
    return fmt, rows, stats


def init_texts(rows: list[dict[str, Any]], seed: int, limit: int = 4096) -> list[str]:
    """Training texts (passages and queries, seeded order) for the PCA projection."""
    import random

    texts = sorted({v for r in rows for k, v in r.items() if isinstance(v, str)})
    random.Random(seed).shuffle(texts)
    return texts[:limit]


def _scorer(model, distill: bool):
    """The scoring a multi-vector loss takes from `model.similarity` when given none, passed explicitly: under
    DDP the trainer hands the loss the wrapped model, which has no `similarity` (AttributeError in
    sentence-transformers 6.3 on the first step of a 2-process run)."""
    from sentence_transformers.multi_vector_encoder import scoring

    mean = model.similarity_fn_name == "meanmaxsim"
    if distill:
        return scoring.mean_colbert_kd_scores if mean else scoring.colbert_kd_scores
    return scoring.mean_colbert_scores if mean else scoring.colbert_scores


def _loss(model, cfg: ColbertTrainConfig, fmt: str, weighted: bool):
    from sentence_transformers.multi_vector_encoder import losses

    from ragtune.train.retriever.curriculum import WeightedMultiVectorMNRL

    name = cfg.loss if cfg.loss != "auto" else ("kl" if fmt == "distill" else "mnrl")
    if weighted:
        if name != "mnrl":
            raise ConfigError(f'the records carry a "weight": loss "{name}" cannot weigh examples; use loss=mnrl')
        return "mnrl (weighted)", WeightedMultiVectorMNRL(model, scale=cfg.scale)
    if name == "kl":
        if fmt != "distill":
            raise ConfigError('loss "kl" needs records with "scores"')
        return name, losses.MultiVectorDistillKLDivLoss(model, temperature=cfg.temperature,
                                                        similarity_fct=_scorer(model, distill=True))
    if fmt == "distill":
        raise ConfigError(f'loss "{name}" ignores the records\' scores; use loss=kl (or auto)')
    if name == "cached_mnrl":
        return name, losses.CachedMultiVectorMultipleNegativesRankingLoss(
            model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size, similarity_fct=_scorer(model, distill=False))
    return name, losses.MultiVectorMultipleNegativesRankingLoss(model, scale=cfg.scale,
                                                                similarity_fct=_scorer(model, distill=False))


def train_colbert(cfg: ColbertTrainConfig) -> dict[str, Any]:
    """Train the late-interaction model; returns a summary (loss, examples, dev metrics, outputs)."""
    from datasets import Dataset
    from sentence_transformers.multi_vector_encoder import (
        MultiVectorEncoderTrainer,
        MultiVectorEncoderTrainingArguments,
    )

    from ragtune.data.formats import read_records
    from ragtune.retrieval.colbert import ColbertConfig, ColbertRetriever
    from ragtune.retrieval.colbert_model import build_colbert_model
    from ragtune.train.harness import finish
    from ragtune.train.retriever.base import trainer_kwargs, use_stable_proportion
    from ragtune.train.retriever.curriculum import ordered_batch_sampler
    from ragtune.train.retriever.dev import dev_metrics, make_run_evaluator

    device, resume, dev = start_run(cfg)
    records = [r for p in cfg.train_data for r in read_records(p, "embedding") if isinstance(r, Embedding)]
    if not records:
        raise ConfigError(f'key "train_data": no records in {", ".join(map(str, cfg.train_data))}')
    fmt, rows, stats = colbert_rows(records, cfg, dev)
    model = build_colbert_model(cfg.model_name_or_path, cfg, device, init_texts=init_texts(rows, cfg.seed))
    loss_name, loss = _loss(model, cfg, fmt, weighted="label" in rows[0] and fmt != "distill")

    evaluator = None
    if dev is not None:
        def run_fn(m):
            first = {q: {d: float(len(c) - i) for i, d in enumerate(c)} for q, c in dev.candidates.items()}
            return ColbertRetriever(ColbertConfig(), model=m).rerank(first, dev.queries, dev.corpus, top=len(
                next(iter(dev.candidates.values()), [])))
        evaluator = make_run_evaluator(dev, cfg.dev, run_fn)

    args = MultiVectorEncoderTrainingArguments(
        **trainer_kwargs(cfg, device, dev is not None, f"dev_{cfg.dev.metric_for_best}"),
        batch_sampler=ordered_batch_sampler if cfg.example_order == "file" else "no_duplicates",
        max_length={"query": cfg.query_length, "document": cfg.document_length})
    trainer = MultiVectorEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), loss=loss,
                                        evaluator=evaluator)
    use_stable_proportion(trainer, cfg)
    t0 = time.perf_counter()
    result = train_resuming(trainer, resume)
    wall = time.perf_counter() - t0
    trainer.save_model(str(cfg.output_dir))
    summary: dict[str, Any] = {
        "command": "train colbert", "model": cfg.model_name_or_path, "format": fmt, "loss": loss_name,
        "dim": cfg.dim, "projection_init": cfg.projection_init, "document_length": cfg.document_length,
        "example_order": cfg.example_order, **stats, "dev_queries": len(dev.queries) if dev else 0,
        "resumed_from": resume,
        "train_loss": result.training_loss, "train_runtime_s": round(wall, 1),
        "dev_history": evaluator.history if evaluator else [],
    }
    if dev is not None:
        first = {q: {d: float(len(c) - i) for i, d in enumerate(c)} for q, c in dev.candidates.items()}
        summary["dev_bm25"] = dev_metrics(dev, first, cfg.dev.metrics)
    return finish(trainer, cfg, summary, title=f"{loss_name} ColBERT from {Path(cfg.model_name_or_path).name}")
