"""What the retriever and reranker trainers share (embedding, colbert, reranker): their config base with the dev
slice (`RetrieverTrainSettings` without the output folder, `RetrieverTrainConfig` with it), the
transformers.TrainingArguments fields, and the run's start (device, precision check, threads, seed, resume, dev
slice).

    device, resume, dev = start_run(cfg)
    args = trainer_kwargs(cfg, device, has_eval=dev is not None, metric="dev_ndcg@10")
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ragtune.train.harness import (
    EVAL_SCHEDULERS,
    TrainerConfig,
    TrainerSettings,
    check_deepspeed,
    check_reporters,
    resolve_resume,
)
from ragtune.train.precision import check_precision
from ragtune.train.retriever.dev import DevConfig, DevSet, build_devset


class RetrieverTrainSettings(TrainerSettings):
    """Optimisation and bookkeeping fields shared by `ragtune train embedding|colbert|reranker`."""

    dev: DevConfig = Field(default_factory=DevConfig)
    eval_steps: int | None = Field(None, ge=1)
    """Evaluate on the dev slice every N steps (default: once per epoch); the best checkpoint is kept."""
    keep_checkpoint: Literal["best", "last"] = "best"
    """With a dev slice: keep the checkpoint that scored best on it, or the last one (the dev curve is still
    evaluated, logged and plotted; `best_checkpoint` in the summary says what dev would have chosen). A small dev
    slice picks by noise: BENCHMARKS.md, "A dev slice of 150 queries", measures both policies."""
    save_steps: int | None = Field(None, ge=1)
    """Checkpoint every N steps (default: eval_steps, or 500 without a dev slice)."""
    dataloader_num_workers: int = Field(0, ge=0)
    save_on_epoch_end: bool = False
    """Checkpoint at the end of every epoch (RAG-Retrieval's flag) instead of every save_steps."""
    stable_proportion: float | None = Field(None, ge=0.0, lt=1.0)
    """Warmup-stable-decay schedule (RAG-Retrieval): warmup_ratio of the steps warm up, this share keeps the peak
    learning rate, the rest decays (cosine)."""

    @model_validator(mode="after")
    def _check_schedule(self) -> RetrieverTrainSettings:
        if self.stable_proportion is None:
            return self
        if "lr_scheduler_type" in self.model_fields_set and self.lr_scheduler_type != "warmup_stable_decay":
            raise ValueError(f"stable_proportion sets a warmup-stable-decay schedule; lr_scheduler_type is "
                             f"{self.lr_scheduler_type!r}: remove one")
        if self.warmup_ratio + self.stable_proportion > 1:
            raise ValueError(f"warmup_ratio ({self.warmup_ratio}) + stable_proportion ({self.stable_proportion}) "
                             "exceed the whole run")
        return self


class RetrieverTrainConfig(RetrieverTrainSettings, TrainerConfig):
    @model_validator(mode="after")
    def _check_common(self) -> RetrieverTrainConfig:
        if self.eval_steps is not None and self.dev.data is None and getattr(self, "val_data", None) is None:
            raise ValueError("eval_steps needs a dev slice (dev.data, a BEIR folder) or a validation file (val_data)")
        if self.lr_scheduler_type in EVAL_SCHEDULERS and self.dev.data is None and getattr(self, "val_data", None) \
                is None:
            raise ValueError(f"lr_scheduler_type {self.lr_scheduler_type} follows the evaluation loss: set dev.data or "
                             "val_data")
        if self.save_on_epoch_end and self.eval_steps is not None:
            raise ValueError("save_on_epoch_end checkpoints per epoch; eval_steps per N steps: set one")
        return self


def trainer_kwargs(cfg: RetrieverTrainConfig, device: str, has_eval: bool, metric: str | None = None
                   ) -> dict[str, Any]:
    """transformers.TrainingArguments fields shared by every ragtune trainer (`device`: start_run's).

    `has_eval` with `metric` None: the best checkpoint is the one with the lowest validation loss (val_data)."""
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
        use_cpu=device == "cpu", deepspeed=check_deepspeed(cfg, device),
        lr_scheduler_kwargs=dict(cfg.lr_scheduler_kwargs),
    )
    if cfg.stable_proportion is not None:
        kwargs["lr_scheduler_type"] = "warmup_stable_decay"
    if has_eval:
        kwargs |= dict(eval_strategy=strategy, eval_steps=eval_steps, save_strategy=strategy,
                       save_steps=eval_steps if eval_steps else save_steps,
                       load_best_model_at_end=cfg.keep_checkpoint == "best",
                       metric_for_best_model=metric or "eval_loss", greater_is_better=metric is not None)
    else:
        kwargs |= dict(eval_strategy="no", save_strategy="epoch" if cfg.save_on_epoch_end else "steps",
                       save_steps=save_steps)
    return kwargs


def use_stable_proportion(trainer, cfg: RetrieverTrainConfig) -> None:
    """Warmup-stable-decay by proportions of the run (RAG-Retrieval's stable_proportion): the step counts are known
    only when the trainer builds its scheduler, so they are filled in there."""
    if cfg.stable_proportion is None:
        return
    build = trainer.create_scheduler

    def create_scheduler(num_training_steps: int, optimizer=None):
        warmup = trainer.args.get_warmup_steps(num_training_steps)
        stable = int(cfg.stable_proportion * num_training_steps)
        trainer.args.lr_scheduler_kwargs = {**dict(cfg.lr_scheduler_kwargs), "num_stable_steps": stable,
                                            "num_decay_steps": max(0, num_training_steps - warmup - stable)}
        return build(num_training_steps=num_training_steps, optimizer=optimizer)

    trainer.create_scheduler = create_scheduler


def start_run(cfg: RetrieverTrainConfig) -> tuple[str, str | None, DevSet | None]:
    """Every trainer's preamble: (device type, checkpoint to resume from, dev slice).

    Checks the precision flags against the device, sets CPU threads and the seed.
    """
    from transformers import set_seed

    from ragtune.hardware import process_state, set_threads

    state = process_state()  # under `accelerate launch`: one rank of a DDP run (gloo on CPU)
    device = state.device.type
    check_precision(cfg, device)
    if device == "cpu":
        set_threads(cfg.threads)
    set_seed(cfg.seed)
    resume = resolve_resume(cfg, state.is_main_process)  # never mixes runs in one output_dir
    state.wait_for_everyone()
    return device, resume, build_devset(cfg.dev)
