"""Curriculum for the retriever trainers (bi-encoder and ColBERT): batches in the records' order, and per-example
loss weights.

- `example_order: file` keeps the order of the training records in the batches (the loop writes them easy to
  hard); `ordered_batch_sampler` fills each batch with the earliest rows left whose texts the batch
  does not hold yet, so in-batch negatives stay true negatives without shuffling the order away.
- A record's `weight` (`{query, pos, neg, weight}`) reaches the trainer as the row's `label` column, and the
  weighted losses below multiply each example's contrastive loss by it (`WeightedMNRL` for bi-encoders,
  `WeightedMultiVectorMNRL` for ColBERT). With every weight 1 they equal sentence-transformers' MNRL losses.

    Inputs (both losses)
    | columns                                      | label                       |
    | (query, pos) or (query, pos, neg_1..neg_n)   | per-example weight (float)  |
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ragtune.config import ConfigModel
from ragtune.retrieval.contrastive import dense_example_losses, maxsim_example_losses


class CurriculumSettings(ConfigModel):
    example_order: Literal["shuffle", "file"] = "shuffle"
    """shuffle: random batches (no duplicate texts in a batch); file: batches follow the order of the training
    records, e.g. a curriculum written easy to hard (duplicates wait for the next batch)."""


def ordered_batches(rows: list[tuple[str, ...]], batch_size: int, drop_last: bool) -> list[list[int]]:
    """Row indices in batches of `batch_size`, in order, no text twice in a batch.

    >>> ordered_batches([("a", "x"), ("a", "y"), ("b", "z"), ("c", "w")], 2, drop_last=False)
    [[0, 2], [1, 3]]
    """
    remaining = list(range(len(rows)))
    batches: list[list[int]] = []
    while remaining:
        batch: list[int] = []
        seen: set[str] = set()
        rest: list[int] = []
        for i in remaining:
            texts = set(rows[i])
            if len(batch) < batch_size and not texts & seen:
                batch.append(i)
                seen |= texts
            else:
                rest.append(i)
        if len(batch) == batch_size or not drop_last:
            batches.append(batch)
        remaining = rest
    return batches


def ordered_batch_sampler(dataset, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                          generator: torch.Generator | None = None, seed: int = 0):
    """A sentence-transformers batch sampler over `dataset` that keeps its order (pass this function as the
    trainer's `batch_sampler`)."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    class OrderedNoDuplicatesBatchSampler(DefaultBatchSampler):
        def __init__(self) -> None:
            super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                             valid_label_columns=valid_label_columns, generator=generator, seed=seed)
            labels = set(valid_label_columns or [])
            columns = [c for c in dataset.column_names if c not in labels]
            self.batches = ordered_batches([tuple(str(row[c]) for c in columns) for row in dataset], batch_size,
                                           drop_last)

        def __iter__(self) -> Iterator[list[int]]:
            yield from (list(b) for b in self.batches)

        def __len__(self) -> int:
            return len(self.batches)

    return OrderedNoDuplicatesBatchSampler()


def weighted_mean(losses: Tensor, weights: Tensor | None) -> Tensor:
    """Mean of `weights * losses` (weights are normalised to mean 1 over the data, so the scale is kept)."""
    if weights is None:
        return losses.mean()
    return (losses * weights.to(losses.device, losses.dtype).view(-1)).mean()


class WeightedMNRL(nn.Module):
    """Bi-encoder in-batch + hard-negative contrastive loss with a weight per example (the `label` column)."""

    def __init__(self, model, scale: float = 20.0) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(self.model, sentence_features)
        losses = dense_example_losses(embeddings[0], torch.cat(embeddings[1:]), self.scale)
        return weighted_mean(losses, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}


class WeightedMultiVectorMNRL(nn.Module):
    """ColBERT (MaxSim) in-batch + hard-negative contrastive loss with a weight per example (the `label` column)."""

    def __init__(self, model, scale: float = 1.0) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns_padded
        from sentence_transformers.util import stack_padded_token_embeddings

        features = [dict(f) for f in sentence_features]
        query = self.model(features[0], task=features[0].get("task", "query"))
        docs, masks = embed_columns_padded(self.model, features[1:], None, task_default="document")
        docs, docs_mask = stack_padded_token_embeddings(docs, masks)
        losses = maxsim_example_losses(query["token_embeddings"], query["attention_mask"], docs, docs_mask,
                                       self.scale)
        return weighted_mean(losses, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}
