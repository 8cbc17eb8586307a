"""Fields every transformers-Trainer-based `ragtune train` command shares: generator, embedding, colbert, reranker.

A subclass redeclares a field only to change its default: the generator keeps LLaMA-Factory's defaults,
the retriever trainers (`ragtune.train.common.TrainCommon`) sentence-transformers'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ragtune.config import ConfigError, ConfigModel


class TrainerConfig(ConfigModel):
    output_dir: Path
    overwrite_output_dir: bool = False
    """Start over even if output_dir already holds checkpoints."""
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    """When > 0, train this many optimizer steps (overrides num_train_epochs)."""
    per_device_train_batch_size: int = Field(32, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    lr_scheduler_type: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    bf16: bool = False
    """bfloat16 mixed precision (torch autocast on CPU); refused where the device lacks it."""
    fp16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42
    logging_steps: int = Field(10, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    resume_from_checkpoint: bool | str | None = None
    """true = the last checkpoint-* in output_dir; or a checkpoint folder."""
    report_to: list[Literal["none", "tensorboard", "wandb"]] = Field(default_factory=lambda: ["none"])
    plot_loss: bool = True
    """Write training_loss.png into output_dir."""
    threads: int = Field(0, ge=0)
    """torch CPU threads; 0 = all cores."""

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, v: object) -> object:
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check_trainer(self) -> TrainerConfig:
        if self.bf16 and self.fp16:
            raise ValueError("bf16 and fp16 are exclusive; set one of them")
        if "none" in self.report_to and len(self.report_to) > 1:
            raise ValueError('report_to "none" cannot be combined with other reporters')
        return self


def check_precision(cfg: TrainerConfig, device: str) -> None:
    """bf16/fp16 only where the device runs them; a clear error otherwise (checked at run time, on the device)."""
    import torch

    if cfg.fp16 and device != "cuda":
        raise ConfigError(f'key "fp16": fp16 mixed precision needs a CUDA GPU (this run is on {device}); '
                          "set fp16=false, or bf16=true on hardware that supports it")
    if cfg.bf16:
        ok = torch.cuda.is_bf16_supported() if device == "cuda" else device == "cpu"
        if not ok:
            raise ConfigError(f'key "bf16": {device} does not support bfloat16 here; set bf16=false '
                              "(or fp16=true on an older CUDA GPU)")


def check_reporters(cfg: TrainerConfig) -> list[str]:
    """The `report_to` list for transformers, or a ConfigError naming the package to install."""
    import importlib.util

    wanted = [r for r in cfg.report_to if r != "none"]
    for r in wanted:
        modules = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}[r]
        if not any(importlib.util.find_spec(m) for m in modules):
            raise ConfigError(f'key "report_to": {r} is not installed; run `pip install {modules[0]}` or set '
                              "report_to=none")
    return wanted
