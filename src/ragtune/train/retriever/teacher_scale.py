"""`teacher_scale` for margin distillation, fitted without labels.

MarginMSE makes a normalized student's margin (cosine to the positive minus cosine to a negative, within [-2, 2])
match the teacher's (a cross-encoder's logits span about +-10, a fused teacher's RRF values about 0.01). The
factor that puts the teacher's margins on the student's scale without moving their order is the ratio of the two
margins' spreads over the rows, measured with the student before it trains:

    scale = fit_teacher_scale(rows, "sentence-transformers/all-MiniLM-L6-v2")   # rows: {query, pos, neg, scores}
"""

from __future__ import annotations

from typing import Any


def spread_ratio(student: list[float], teacher: list[float]) -> float:
    """std(student margins) / std(teacher margins)."""
    import numpy as np

    t = float(np.std(teacher))
    if t == 0:
        raise ValueError("the teacher gives every margin the same value: nothing to distill")
    return float(np.std(student)) / t


def fit_teacher_scale(rows: list[dict[str, Any]], encoder: str, sample: int = 512) -> float:
    """The spread ratio of the untrained student's and the teacher's positive-minus-first-negative margins over
    the first `sample` scored rows that have a negative."""
    from sentence_transformers import SentenceTransformer

    from ragtune.models import resolve_model

    rows = [r for r in rows if r.get("neg") and r.get("scores")][:sample]
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} scored rows with a negative: too few to fit teacher_scale (set it instead)")
    model = SentenceTransformer(resolve_model(encoder), device="cpu")

    def enc(texts: list[str]):
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    q, p, n = enc([r["query"] for r in rows]), enc([r["pos"][0] for r in rows]), enc([r["neg"][0] for r in rows])
    student = ((q * p).sum(1) - (q * n).sum(1)).tolist()
    teacher = [r["scores"][0] - r["scores"][len(r["pos"])] for r in rows]
    return spread_ratio(student, teacher)
