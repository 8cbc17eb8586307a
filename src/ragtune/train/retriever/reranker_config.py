"""`ragtune train reranker` config: cross-encoder or LLM reranker, data format, loss, LoRA, distillation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ragtune.config import CommaList
from ragtune.models import DEFAULT_ENCODER
from ragtune.retrieval.rerank import LLMFormat
from ragtune.train.harness import LoraSettings
from ragtune.train.retriever.base import RetrieverTrainConfig

POINT_LOSSES = ("bce", "mse")
GROUP_LOSSES = ("ranknet", "listwise", "listwise_soft")


class RerankerTrainConfig(RetrieverTrainConfig, LoraSettings):
    """Train a cross-encoder or an LLM reranker."""

    ALIASES = ("reranker",)
    model_type: Literal["cross_encoder", "llm"] = "cross_encoder"
    model_name_or_path: str = DEFAULT_ENCODER
    """cross_encoder: a BERT-like model or sentence-transformers folder (its encoder gets a fresh score head);
    llm: a causal LM folder (a scalar head is added on the last token)."""
    num_labels: Literal[1] = 1
    """Scores per pair: ragtune's rerankers output one relevance logit (RAG-Retrieval's num_labels: 1)."""
    train_data: Annotated[list[Path], CommaList] = Field(min_length=1)
    val_data: Path | None = None
    """A validation file in the training format (RAG-Retrieval's val_dataset): its loss is logged each evaluation
    and, without dev.data, picks the best checkpoint."""
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
    shuffle_rate: float = Field(0.0, ge=0.0, le=1.0)
    """RAG-Retrieval's augmentation: each training document longer than 100 characters is, with this probability
    (seeded), cut into three pieces put back in random order."""
    teacher: str | None = None
    """A trained reranker whose scores replace the labels (distillation)."""
    teacher_batch_size: int = Field(16, ge=1)
    # ---- llm
    llm: LLMFormat = Field(default_factory=LLMFormat)
    use_lora: bool = False
    """model_type=llm: train a LoRA adapter (the LoRA block's fields, train/harness.py), merged when saved."""
    lora_alpha: float | None = Field(16.0, gt=0)
    # ---- dev evaluation
    dev_top: int | None = None
    """Re-rank this many BM25 candidates per dev query (default: dev.candidates)."""

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
