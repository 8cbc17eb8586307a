"""Layers ragtune appends to a sentence-transformers encoder before training it: a PCA rotation (mrl_init: pca), a
projection to the teacher's width (vector distillation from a teacher of another dimension) and a widening
`Linear(hidden, max(mrl_dims))` for Matryoshka dimensions above the hidden size (RAG-Retrieval's MRL layer, MRL-E:
each prefix of its output is one Matryoshka embedding). Each is a sentence-transformers `Dense` module, so the saved
model loads in plain sentence-transformers with it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np


def embedding_dim(model) -> int:
    return model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else \
        model.get_sentence_embedding_dimension()


def pca_rotation(model, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Orthogonal (d, d) matrix whose rows are the principal axes of `model`'s embeddings of `texts`,
    by decreasing variance."""
    emb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=len(texts) > 256)
    emb = emb.astype(np.float64)
    _, _, vt = np.linalg.svd(emb - emb.mean(axis=0), full_matrices=True)
    return vt


def with_rotation(model, rotation: np.ndarray):
    """`model` with a bias-free linear layer y = rotation @ x appended (saved and reloaded with it)."""
    return with_dense(model, rotation)


def rotation_texts(rows: list[dict[str, Any]], limit: int, seed: int) -> list[str]:
    texts = sorted({v for r in rows for v in r.values() if isinstance(v, str)})
    return random.Random(seed).sample(texts, limit) if len(texts) > limit else texts


def with_dense(model, weight, bias=None):
    """`model` with a linear layer y = weight @ x (+ bias) appended (trainable; saved and reloaded with it)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.dense import Dense

    out_dim, in_dim = weight.shape
    dense = Dense(in_dim, out_dim, bias=bias is not None, activation_function=torch.nn.Identity(),
                  init_weight=torch.as_tensor(weight, dtype=torch.float32),
                  init_bias=None if bias is None else torch.as_tensor(bias, dtype=torch.float32))
    extended = SentenceTransformer(modules=[*model, dense], device=str(model.device))
    extended.prompts, extended.max_seq_length = model.prompts, model.max_seq_length
    return extended


def widen(model, out_dim: int, seed: int = 0):
    """Append Linear(hidden, out_dim), out_dim > hidden: its first `hidden` outputs start as the encoder's own
    embedding (identity), the others as small random mixtures of it, so training starts from the pretrained space."""
    hidden = embedding_dim(model)
    rng = np.random.default_rng(seed)
    weight = np.zeros((out_dim, hidden), dtype=np.float32)
    weight[:hidden] = np.eye(hidden, dtype=np.float32)
    weight[hidden:] = rng.normal(0.0, 1.0 / np.sqrt(hidden), size=(out_dim - hidden, hidden))
    return with_dense(model, weight)


def project(model, out_dim: int, seed: int = 0):
    """Append a trainable Linear(hidden, out_dim) (Xavier-initialised) mapping the student to a teacher's width."""
    hidden = embedding_dim(model)
    rng = np.random.default_rng(seed)
    bound = np.sqrt(6.0 / (hidden + out_dim))
    return with_dense(model, rng.uniform(-bound, bound, size=(out_dim, hidden)).astype(np.float32),
                      np.zeros(out_dim, dtype=np.float32))
