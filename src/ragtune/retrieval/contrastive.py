"""Per-example in-batch contrastive losses of both retriever kinds: what the LossNet filter learns to predict and
what the curriculum's weighted training loss weighs. With `reduction="none"` semantics: one loss per query.

    dense_example_losses(q, docs, scale=20.0)          # bi-encoder: cosine similarities, docs = [pos; negs]
    maxsim_example_losses(q, q_mask, docs, docs_mask)  # ColBERT: MaxSim, docs stacked (B, N, tokens, dim)

Their mean equals sentence-transformers' `MultipleNegativesRankingLoss` and
`MultiVectorMultipleNegativesRankingLoss` (query-to-document direction, the defaults).
"""

from __future__ import annotations

import torch
from torch import nn


def dense_example_losses(q: torch.Tensor, docs: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """(B,) cross-entropy of each query's own positive among all documents of the batch.

    `docs`: (B * (1 + negatives), dim), the B positives first (row i is query i's), then each negative column.
    """
    q = nn.functional.normalize(q, dim=-1)
    docs = nn.functional.normalize(docs, dim=-1)
    logits = scale * q @ docs.T
    return nn.functional.cross_entropy(logits, torch.arange(len(q), device=q.device), reduction="none")


def maxsim_example_losses(q: torch.Tensor, q_mask: torch.Tensor, docs: torch.Tensor, docs_mask: torch.Tensor,
                          scale: float = 1.0) -> torch.Tensor:
    """(B,) cross-entropy of each query's own positive among all documents of the batch, scored by MaxSim.

    `q`: (B, q_tokens, dim); `docs`: (B, N, d_tokens, dim) with document 0 of group i query i's positive;
    masks mark the tokens that count.
    """
    from sentence_transformers.multi_vector_encoder.scoring import colbert_scores

    scores = colbert_scores(q, docs, queries_mask=q_mask.bool(), documents_mask=docs_mask.bool())
    labels = torch.arange(q.shape[0], device=q.device) * docs.shape[1]
    return nn.functional.cross_entropy(scores * scale, labels, reduction="none")
