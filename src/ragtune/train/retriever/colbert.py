"""`ragtune train colbert`: a late-interaction model as a sentence-transformers `MultiVectorEncoder`.

    cfg = load_config(ColbertTrainConfig, "configs/scifact-colbert.yaml", ["max_steps=20"])
    summary = train_colbert(cfg)

The model is a module list, saved and loaded like any sentence-transformers model
(`MultiVectorEncoder(output_dir)`):

1. `Transformer`: the encoder (e.g. all-MiniLM-L6-v2's BertModel), with `query_length` and
   `document_length`, and ColBERT query augmentation: queries padded to `query_length` with the mask
   token, which MaxSim scores (`query_expansion`);
2. `Dense`: a linear projection of every token to `dim` (default 128), no bias;
3. `MultiVectorMask`: drops padding (and punctuation on the document side) from scoring;
4. `Normalize`: unit-length token embeddings, so MaxSim sums cosine similarities.

Query and document markers are prepended as prompts (`[unused0]` / `[unused1]` in BERT vocabularies,
ColBERT's choice; new `[Q]` / `[D]` tokens are added otherwise). Training uses the
multi-vector trainer and losses: in-batch + hard negatives (MNRL, or its cached variant) on
`{query, pos, neg}` records, or KL score distillation on `{query, pos, neg, scores}`.
"""

from __future__ import annotations

import string
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from ragtune.config import CommaList, ConfigError
from ragtune.data.records import Embedding
from ragtune.models import DEFAULT_ENCODER
from ragtune.train.retriever.base import RetrieverTrainConfig, start_run
from ragtune.train.retriever.dev import DevSet


class ColbertTrainConfig(RetrieverTrainConfig):
    """Train a ColBERT (late-interaction) model."""

    model_name_or_path: str = DEFAULT_ENCODER
    """A BERT-like encoder (or sentence-transformers folder, its Transformer is reused), or a MultiVectorEncoder
    folder to continue training."""
    train_data: Annotated[list[Path], CommaList] = Field(min_length=1)
    """Embedding records: {query, pos, neg} (contrastive) or {query, pos, neg, scores} (distillation)."""
    dim: int = Field(128, ge=8)
    """Projection size of each token embedding."""
    query_length: int = Field(32, ge=4)
    """Query tokens after augmentation: shorter queries are padded with mask tokens that MaxSim scores."""
    document_length: int = Field(180, ge=8)
    query_marker: str = "[unused0]"
    document_marker: str = "[unused1]"
    neg_nums: int = Field(1, ge=1)
    loss: Literal["auto", "mnrl", "cached_mnrl", "kl"] = "auto"
    """auto: mnrl, or kl when the records carry scores."""
    mini_batch_size: int = Field(16, ge=1)
    """cached_mnrl chunk size."""
    temperature: float = Field(1.0, gt=0)
    skip_punctuation: bool = True
    """Leave punctuation tokens of documents out of MaxSim (ColBERT's default)."""


def _markers(tokenizer, cfg: ColbertTrainConfig) -> tuple[str, str, bool]:
    """(query marker, document marker, added new tokens?)."""
    vocab = tokenizer.get_vocab()
    if cfg.query_marker in vocab and cfg.document_marker in vocab:
        return cfg.query_marker, cfg.document_marker, False
    tokenizer.add_special_tokens({"additional_special_tokens": ["[Q]", "[D]"]})
    return "[Q]", "[D]", True


def build_colbert(cfg: ColbertTrainConfig, device: str):
    """A fresh MultiVectorEncoder on the base encoder (or the existing one, when the path holds a ColBERT)."""
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from torch import nn

    from ragtune.models import resolve_model

    path = resolve_model(cfg.model_name_or_path)
    config = path / "config_sentence_transformers.json"
    if config.is_file() and '"MultiVectorEncoder"' in config.read_text():
        return MultiVectorEncoder(str(path), device=device, local_files_only=True)
    transformer = Transformer(str(path), query_length=cfg.query_length, document_length=cfg.document_length,
                              query_expansion={"strategy": "fixed", "length": cfg.query_length})
    q_marker, d_marker, added = _markers(transformer.tokenizer, cfg)
    if added:
        transformer.auto_model.resize_token_embeddings(len(transformer.tokenizer))
    hidden = transformer.get_embedding_dimension()
    modules = [transformer,
               Dense(in_features=hidden, out_features=cfg.dim, bias=False, activation_function=nn.Identity(),
                     module_input_name="token_embeddings"),
               MultiVectorMask(skiplist_words=list(string.punctuation) if cfg.skip_punctuation else []),
               Normalize(module_input_name="token_embeddings")]
    return MultiVectorEncoder(modules=modules, device=device,
                              prompts={"query": f"{q_marker} ", "document": f"{d_marker} "})


def colbert_rows(records: list[Embedding], cfg: ColbertTrainConfig, dev: DevSet | None) -> tuple[str, list, dict]:
    """Reuse the embedding trainer's row builder: same formats, same dev-query removal."""
    from ragtune.train.retriever.embedding import EmbeddingTrainConfig, detect_format, embedding_rows

    fmt = detect_format(records, False)
    shim = EmbeddingTrainConfig.model_construct(neg_nums=cfg.neg_nums, seed=cfg.seed, query_prompt=None)
    rows, stats = embedding_rows(records, fmt, shim, dev)
    if not rows:
        raise ConfigError("no training example left after removing the dev queries")
    return fmt, rows, stats


def _loss(model, cfg: ColbertTrainConfig, fmt: str):
    from sentence_transformers.multi_vector_encoder import losses

    name = cfg.loss if cfg.loss != "auto" else ("kl" if fmt == "distill" else "mnrl")
    if name == "kl":
        if fmt != "distill":
            raise ConfigError('loss "kl" needs records with "scores"')
        return name, losses.MultiVectorDistillKLDivLoss(model, temperature=cfg.temperature)
    if fmt == "distill":
        raise ConfigError(f'loss "{name}" ignores the records\' scores; use loss=kl (or auto)')
    if name == "cached_mnrl":
        return name, losses.CachedMultiVectorMultipleNegativesRankingLoss(model, mini_batch_size=cfg.mini_batch_size)
    return name, losses.MultiVectorMultipleNegativesRankingLoss(model)


def train_colbert(cfg: ColbertTrainConfig) -> dict[str, Any]:
    """Train the late-interaction model; returns a summary (loss, examples, dev metrics, outputs)."""
    from datasets import Dataset
    from sentence_transformers.multi_vector_encoder import (
        MultiVectorEncoderTrainer,
        MultiVectorEncoderTrainingArguments,
    )

    from ragtune.data.formats import read_records
    from ragtune.retrieval.colbert import ColbertConfig, ColbertRetriever
    from ragtune.train.harness import finish
    from ragtune.train.retriever.base import trainer_kwargs, use_stable_proportion
    from ragtune.train.retriever.dev import dev_metrics, make_run_evaluator

    device, resume, dev = start_run(cfg)
    records = [r for p in cfg.train_data for r in read_records(p, "embedding") if isinstance(r, Embedding)]
    if not records:
        raise ConfigError(f'key "train_data": no records in {", ".join(map(str, cfg.train_data))}')
    fmt, rows, stats = colbert_rows(records, cfg, dev)
    model = build_colbert(cfg, device)
    loss_name, loss = _loss(model, cfg, fmt)

    evaluator = None
    if dev is not None:
        def run_fn(m):
            first = {q: {d: float(len(c) - i) for i, d in enumerate(c)} for q, c in dev.candidates.items()}
            return ColbertRetriever(ColbertConfig(), model=m).rerank(first, dev.queries, dev.corpus, top=len(
                next(iter(dev.candidates.values()), [])))
        evaluator = make_run_evaluator(dev, cfg.dev, run_fn)

    args = MultiVectorEncoderTrainingArguments(
        **trainer_kwargs(cfg, device, dev is not None, f"dev_{cfg.dev.metric_for_best}"), batch_sampler="no_duplicates",
        max_length={"query": cfg.query_length, "document": cfg.document_length})
    trainer = MultiVectorEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), loss=loss,
                                        evaluator=evaluator)
    use_stable_proportion(trainer, cfg)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - t0
    trainer.save_model(str(cfg.output_dir))
    summary: dict[str, Any] = {
        "command": "train colbert", "model": cfg.model_name_or_path, "format": fmt, "loss": loss_name,
        "dim": cfg.dim, **stats, "dev_queries": len(dev.queries) if dev else 0, "resumed_from": resume,
        "train_loss": result.training_loss, "train_runtime_s": round(wall, 1),
        "dev_history": evaluator.history if evaluator else [],
    }
    if dev is not None:
        first = {q: {d: float(len(c) - i) for i, d in enumerate(c)} for q, c in dev.candidates.items()}
        summary["dev_bm25"] = dev_metrics(dev, first, cfg.dev.metrics)
    return finish(trainer, cfg, summary, title=f"{loss_name} ColBERT from {Path(cfg.model_name_or_path).name}")
