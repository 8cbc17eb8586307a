"""The ColBERT model ragtune builds: a sentence-transformers `MultiVectorEncoder` over a BERT-like encoder.

    model = build_colbert_model("sentence-transformers/all-MiniLM-L6-v2", ColbertModelSettings(dim=128), "cpu",
                                init_texts=texts)   # texts: what the PCA projection is fitted on

Modules, saved and loaded like any sentence-transformers model (`MultiVectorEncoder(folder)`):

1. `Transformer`: the encoder, with `query_length` / `document_length` and ColBERT query augmentation (queries
   padded to `query_length` with the mask token, which MaxSim scores);
2. `Dense`: a bias-free projection of every token to `dim`, initialised from the principal axes of the
   encoder's token embeddings (`pca`, the default), at random, or as the identity (`identity`, `dim` = the
   hidden size);
3. `MultiVectorMask`: drops padding (and punctuation on the document side) from scoring;
4. `Normalize`: unit-length token embeddings, so MaxSim sums cosine similarities.

Query and document markers are prepended as prompts (`[unused0]` / `[unused1]` in BERT vocabularies, ColBERT's
choice; new `[Q]` / `[D]` tokens are added when the vocabulary lacks them; an empty marker means none).
It lives beside the retriever (not the trainer) because the LossNet filter builds the same model.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ragtune.config import ConfigModel


class ColbertModelSettings(ConfigModel):
    """The architecture of a fresh ColBERT model (ignored when the base folder already holds one)."""

    dim: int = Field(128, ge=8)
    """Projection size of each token embedding."""
    projection_init: Literal["random", "pca", "identity"] = "pca"
    """pca (default): the principal axes of the encoder's token embeddings of training texts (the projection
    starts by keeping the most variance, so MaxSim starts close to the encoder's own token similarities; on the
    SciFact dev slice 0.652 NDCG@10 against 0.60 from random); random: torch's default init; identity: no
    reduction (needs dim = the encoder's hidden size)."""
    pca_texts: int = Field(512, ge=8)
    """pca: at most this many training texts (queries and passages) whose token embeddings are fitted."""
    query_length: int = Field(32, ge=4)
    """Query tokens after augmentation: shorter queries are padded with mask tokens that MaxSim scores."""
    document_length: int = Field(180, ge=8)
    query_marker: str = "[unused0]"
    """Prepended to every query ("" = none)."""
    document_marker: str = "[unused1]"
    skip_punctuation: bool = True
    """Leave punctuation tokens of documents out of MaxSim (ColBERT's default)."""

    @model_validator(mode="after")
    def _markers_both_or_none(self) -> ColbertModelSettings:
        if bool(self.query_marker) != bool(self.document_marker):
            raise ValueError("query_marker and document_marker are both set or both empty")
        return self


def is_colbert_folder(path: str | Path) -> bool:
    config = Path(path) / "config_sentence_transformers.json"
    return config.is_file() and '"MultiVectorEncoder"' in config.read_text()


def _markers(tokenizer, cfg: ColbertModelSettings) -> tuple[str, str, bool]:
    """(query marker, document marker, added new tokens?)."""
    if not cfg.query_marker:
        return "", "", False
    vocab = tokenizer.get_vocab()
    if cfg.query_marker in vocab and cfg.document_marker in vocab:
        return cfg.query_marker, cfg.document_marker, False
    tokenizer.add_special_tokens({"additional_special_tokens": ["[Q]", "[D]"]})
    return "[Q]", "[D]", True


def token_pca(transformer, texts: list[str], dim: int, batch_size: int = 16) -> np.ndarray:
    """(dim, hidden): the principal axes of `transformer`'s (non-padding) token embeddings of `texts`, by
    decreasing variance, signed so the mean token has a positive coordinate on each."""
    import torch

    chunks = []
    transformer.eval()
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            feats = transformer.preprocess(texts[s:s + batch_size], task="document")
            feats = {k: v.to(transformer.auto_model.device) for k, v in feats.items() if isinstance(v, torch.Tensor)}
            out = transformer(feats)
            mask = feats["attention_mask"].bool()
            chunks.append(out["token_embeddings"][mask].float().cpu().numpy())
    tokens = np.concatenate(chunks).astype(np.float64)
    if len(tokens) < dim:
        raise ValueError(f"projection_init=pca: {len(tokens)} token embeddings cannot fit {dim} axes; give more "
                         "training texts or use projection_init=random")
    mean = tokens.mean(axis=0)
    _, _, vt = np.linalg.svd(tokens - mean, full_matrices=False)
    axes = vt[:dim]
    axes *= np.where(axes @ mean < 0, -1.0, 1.0)[:, None]
    return axes.astype(np.float32)


def build_colbert_model(base: str | Path, cfg: ColbertModelSettings, device: str,
                        init_texts: list[str] | None = None):
    """A fresh MultiVectorEncoder on the encoder at `base` (or the ColBERT model saved there, as it is).

    `init_texts`: texts for `projection_init=pca` (required then)."""
    import torch
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    from ragtune.models import resolve_model

    path = resolve_model(str(base))
    if is_colbert_folder(path):
        return MultiVectorEncoder(str(path), device=device, local_files_only=True)
    transformer = Transformer(str(path), query_length=cfg.query_length, document_length=cfg.document_length,
                              query_expansion={"strategy": "fixed", "length": cfg.query_length})
    q_marker, d_marker, added = _markers(transformer.tokenizer, cfg)
    if added:
        transformer.auto_model.resize_token_embeddings(len(transformer.tokenizer))
    hidden = transformer.get_embedding_dimension()
    init = None
    if cfg.projection_init == "identity":
        if cfg.dim != hidden:
            raise ValueError(f"projection_init=identity keeps the encoder's {hidden} dimensions: set dim={hidden} "
                             "(or projection_init=pca to reduce)")
        init = torch.eye(hidden)
    elif cfg.projection_init == "pca":
        if not init_texts:
            raise ValueError("projection_init=pca needs training texts to fit the projection on")
        if cfg.dim > hidden:
            raise ValueError(f"projection_init=pca: dim={cfg.dim} exceeds the encoder's {hidden} dimensions")
        transformer.to(device)
        init = torch.tensor(token_pca(transformer, init_texts[:cfg.pca_texts], cfg.dim))
    dense = Dense(in_features=hidden, out_features=cfg.dim, bias=False, activation_function=torch.nn.Identity(),
                  init_weight=init, module_input_name="token_embeddings")
    modules = [transformer, dense,
               MultiVectorMask(skiplist_words=list(string.punctuation) if cfg.skip_punctuation else []),
               Normalize(module_input_name="token_embeddings")]
    prompts = {"query": f"{q_marker} ", "document": f"{d_marker} "} if q_marker else {}
    return MultiVectorEncoder(modules=modules, device=device, prompts=prompts)
