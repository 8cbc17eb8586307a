"""The LossNet filter's view of a ColBERT retriever: token embeddings for the MaxSim contrastive loss of each
(query, document) pair, and the encoder's pooled hidden states that LossNet reads.

The model is a ColBERT folder (`ragtune train colbert` or the loop's last retriever), or a plain encoder on which
a fresh ColBERT is built the way `ragtune train colbert` builds one (`ColbertModelSettings`).
"""

from __future__ import annotations

import torch

from ragtune.retrieval.colbert_model import ColbertModelSettings, build_colbert_model
from ragtune.retrieval.contrastive import maxsim_example_losses

TokenOutput = tuple[torch.Tensor, torch.Tensor]


class ColbertLossEncoder:
    """Runs a sentence-transformers `MultiVectorEncoder` on queries or documents, also returning pooled hidden
    states of every layer (the same interface as `lossnet.Encoder`)."""

    def __init__(self, model_name: str, settings: ColbertModelSettings, device: str,
                 init_texts: list[str] | None = None):
        from ragtune.hardware import pick_device

        self.device = pick_device(device)
        self.st = build_colbert_model(model_name, settings, self.device, init_texts=init_texts)
        backbone = self.st[0].auto_model
        backbone.config.output_hidden_states = True
        self.num_hidden = backbone.config.num_hidden_layers
        self.hidden = backbone.config.hidden_size

    def __call__(self, texts: list[str], layers: list[int], task: str = "document"
                 ) -> tuple[TokenOutput, list[torch.Tensor]]:
        prompt = (self.st.prompts or {}).get(task)
        features = self.st.preprocess(texts, prompt=prompt, task=task)
        features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        mask = features["attention_mask"].unsqueeze(-1).float()  # the input mask: MultiVectorMask rewrites its copy
        out = self.st(dict(features), task=task)
        hidden = out["all_layer_embeddings"]
        pooled = [(hidden[i] * mask).sum(1) / mask.sum(1).clamp(min=1) for i in layers]
        return (out["token_embeddings"], out["attention_mask"]), pooled

    @staticmethod
    def losses(queries: TokenOutput, docs: TokenOutput, scale: float) -> torch.Tensor:
        """MaxSim in-batch contrastive loss of each pair (its own document among the batch's)."""
        (q, q_mask), (d, d_mask) = queries, docs
        return maxsim_example_losses(q, q_mask, d.unsqueeze(1), d_mask.unsqueeze(1), scale)
