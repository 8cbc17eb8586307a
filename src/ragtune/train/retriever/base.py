"""What the retriever and reranker trainers share (embedding, colbert, reranker): their config base with the dev
slice (`RetrieverTrainSettings` without the output folder, `RetrieverTrainConfig` with it), the
transformers.TrainingArguments fields, and the run's start (device, precision check, threads, seed, resume, dev
slice).

    device, resume, dev = start_run(cfg)
    args = trainer_kwargs(cfg, device, has_eval=dev is not None, metric="dev_ndcg@10")
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ragtune.train.harness import TrainerConfig, TrainerSettings, check_precision, check_reporters, resolve_resume
from ragtune.train.retriever.dev import DevConfig, DevSet, build_devset


class RetrieverTrainSettings(TrainerSettings):
    """Optimisation and bookkeeping fields shared by `ragtune train embedding|colbert|reranker`."""

    dev: DevConfig = Field(default_factory=DevConfig)
    eval_steps: int | None = Field(None, ge=1)
    """Evaluate on the dev slice every N steps (default: once per epoch); the best checkpoint is kept."""
    save_steps: int | None = Field(None, ge=1)
    """Checkpoint every N steps (default: eval_steps, or 500 without a dev slice)."""
    dataloader_num_workers: int = Field(0, ge=0)


class RetrieverTrainConfig(RetrieverTrainSettings, TrainerConfig):
    @model_validator(mode="after")
    def _check_common(self) -> RetrieverTrainConfig:
        if self.eval_steps is not None and self.dev.data is None:
            raise ValueError("eval_steps needs a dev slice: set dev.data to a BEIR folder")
        return self


def trainer_kwargs(cfg: RetrieverTrainConfig, device: str, has_eval: bool, metric: str | None = None
                   ) -> dict[str, Any]:
    """transformers.TrainingArguments fields shared by every ragtune trainer (`device`: start_run's)."""
    eval_steps = cfg.eval_steps
    save_steps = cfg.save_steps or eval_steps or 500
    strategy = "steps" if eval_steps else "epoch"
    kwargs: dict[str, Any] = dict(
        output_dir=str(cfg.output_dir), num_train_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, bf16=cfg.bf16, fp16=cfg.fp16, seed=cfg.seed, data_seed=cfg.seed,
        activation_checkpointing=cfg.gradient_checkpointing, logging_steps=cfg.logging_steps,
        logging_first_step=True, save_total_limit=cfg.save_total_limit, report_to=check_reporters(cfg) or "none",
        dataloader_num_workers=cfg.dataloader_num_workers, disable_tqdm=False,
        # bf16 on CPU (torch autocast) is refused by TrainingArguments unless the run is declared CPU-only
        use_cpu=device == "cpu",
    )
    if has_eval:
        kwargs |= dict(eval_strategy=strategy, eval_steps=eval_steps, save_strategy=strategy,
                       save_steps=eval_steps if eval_steps else save_steps, load_best_model_at_end=True,
                       metric_for_best_model=metric, greater_is_better=True)
    else:
        kwargs |= dict(eval_strategy="no", save_strategy="steps", save_steps=save_steps)
    return kwargs


def start_run(cfg: RetrieverTrainConfig) -> tuple[str, str | None, DevSet | None]:
    """Every trainer's preamble: (device type, checkpoint to resume from, dev slice).

    Checks the precision flags against the device, sets CPU threads and the seed.
    """
    from accelerate import PartialState
    from transformers import set_seed

    from ragtune.hardware import set_threads

    device = PartialState().device.type
    check_precision(cfg, device)
    if device == "cpu":
        set_threads(cfg.threads)
    set_seed(cfg.seed)
    return device, resolve_resume(cfg), build_devset(cfg.dev)  # resume: never mixes runs in one output_dir
