"""`ragtune train refusal-verifier`: train the answerability verifier (`ragtune.rag.refusal_verifier`).

    ragtune train refusal-verifier data=runs/qa/squad/squad_train.meta.jsonl out=runs/verifier

`data` is a converter meta file (`ragtune data convert squad-sft|webqa-sft`). Each record becomes a point
(question, context, 1 if the context answers it else 0) in `out/train_points.jsonl`, and `ragtune train reranker`
trains a cross-encoder on them (pointwise BCE) into `out/model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ragtune.atomic import check_output, write_jsonl
from ragtune.config import ConfigModel
from ragtune.models import DEFAULT_ENCODER


class RefusalVerifierConfig(ConfigModel):
    data: Path
    """Training records: a converter `*_train.meta.jsonl` (question, context, answerable, source)."""
    out: Path
    """The verifier's folder (a cross-encoder, loadable as a reranker), its training points and summary."""
    model: str = DEFAULT_ENCODER
    """The BERT-like encoder the cross-encoder starts from (it gets a fresh score head)."""
    sources: list[str] | None = None
    """Train on records of these converter sources only (answerable, impossible, hard, mismatched); None = all."""
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    max_length: int = Field(256, ge=16)
    """Tokens per (question, passage) pair."""
    seed: int = 42


def train_refusal_verifier(cfg: RefusalVerifierConfig) -> dict[str, Any]:
    """Write the (question, context, answerable) points and train the cross-encoder on them (`train reranker`)."""
    from ragtune.rag.refusal_probe_train import labelled
    from ragtune.train.retriever.reranker import train_reranker
    from ragtune.train.retriever.reranker_config import RerankerTrainConfig

    check_output(cfg.out, "out", folder=True)
    items = labelled(cfg.data, cfg.sources)
    points = cfg.out / "train_points.jsonl"
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(points, ({"query": it["question"], "content": it["context"], "label": float(it["answerable"])}
                         for it in items))
    return train_reranker(RerankerTrainConfig(
        model_type="cross_encoder", model_name_or_path=cfg.model, train_data=[points], format="point", loss="bce",
        max_length=cfg.max_length, output_dir=cfg.out / "model", overwrite_output_dir=True,
        num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        warmup_ratio=0.1, logging_steps=20, plot_loss=True, seed=cfg.seed))
