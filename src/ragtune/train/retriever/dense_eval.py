"""Dense dev evaluation of a bi-encoder: cosine top-k runs at the full dimension and at Matryoshka prefixes."""

from __future__ import annotations

from typing import Any

import numpy as np

from ragtune.data.trec import Run
from ragtune.train.retriever.embedding_heads import embedding_dim


def dense_runs(model, queries: dict[str, str], corpus: dict[str, str], k: int = 100,
               dims: list[int] | None = None, query_prompt: str | None = None, batch_size: int = 32
               ) -> dict[int, Run]:
    """{dim: Run} of cosine search over `corpus`, full dimension and each Matryoshka prefix in `dims`.

    The corpus is encoded once; a prefix is taken and re-normalized per dimension.
    """
    qids, dids = list(queries), list(corpus)
    q = model.encode([(query_prompt or "") + queries[i] for i in qids], batch_size=batch_size,
                     convert_to_numpy=True, show_progress_bar=False)
    d = model.encode([corpus[i] for i in dids], batch_size=batch_size, convert_to_numpy=True,
                     show_progress_bar=False)
    return truncated_runs(q, d, qids, dids, k, dims)


def dev_run(model, dev, cfg: Any) -> Run:
    """The run a dev evaluation scores: full dimension, or the `mrl_select_dim` prefix."""
    full = embedding_dim(model)
    dim = min(cfg.mrl_select_dim or full, full)
    return dense_runs(model, dev.queries, dev.corpus, k=100, dims=[dim], query_prompt=cfg.query_prompt)[dim]


def truncated_runs(q: np.ndarray, d: np.ndarray, qids: list[str], dids: list[str], k: int,
                   dims: list[int] | None = None) -> dict[int, Run]:
    """Cosine top-k runs at full dimension and at each prefix dimension of `dims`."""
    full = q.shape[1]
    out: dict[int, Run] = {}
    for dim in sorted({full, *(x for x in (dims or []) if x < full)}, reverse=True):
        qq = q[:, :dim] / np.linalg.norm(q[:, :dim], axis=1, keepdims=True).clip(1e-12)
        dd = d[:, :dim] / np.linalg.norm(d[:, :dim], axis=1, keepdims=True).clip(1e-12)
        scores = qq @ dd.T
        kk = min(k, len(dids))
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        out[dim] = {qid: {dids[j]: float(scores[i, j]) for j in top[i]} for i, qid in enumerate(qids)}
    return out
