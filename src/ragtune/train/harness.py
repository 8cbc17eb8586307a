"""What every trainer shares: the Trainer config base with its reporter and DeepSpeed checks (precision checks are
in train/precision.py), the LoRA settings block, checkpoint discovery for resume, the summary record
(train_summary.json) and the loss plot.

`TrainerSettings` holds the fields every transformers-Trainer-based `ragtune train` command shares (generator SFT,
embedding, colbert, reranker); `TrainerConfig` adds the output folder. A subclass redeclares a field only to
change its default: the generator keeps LLaMA-Factory's defaults, the retriever trainers
(`ragtune.train.retriever.base.RetrieverTrainConfig`) sentence-transformers'. The `...Settings` classes are what a
user sets; `ragtune run` takes them as its typed stage overrides and fills in the paths itself.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from ragtune.atomic import atomic_open, write_json
from ragtune.config import CommaList, ConfigError, ConfigModel, dump_config
from ragtune.train.args_pickle import args_pickle_dropper, drop_args_pickle
from ragtune.train.precision import Bf16

SUMMARY = "train_summary.json"
LOSS_PNG = "training_loss.png"


class ResumeSettings(ConfigModel):
    """Checkpoint resume, shared by every trainer that writes `checkpoint-*` folders into its output_dir."""

    overwrite_output_dir: bool = False
    """Start over even if output_dir already holds checkpoints."""
    resume_from_checkpoint: bool | str | None = None
    """true = the last checkpoint-* in output_dir; or a checkpoint folder."""


class TrainerSettings(ResumeSettings):
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    """When > 0, train this many optimizer steps (overrides num_train_epochs)."""
    per_device_train_batch_size: int = Field(32, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    lr_scheduler_type: str = "linear"
    """Any of transformers' schedulers: linear, cosine, cosine_with_restarts, polynomial, constant,
    constant_with_warmup, inverse_sqrt, reduce_lr_on_plateau, cosine_with_min_lr, warmup_stable_decay, ..."""
    lr_scheduler_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra arguments of the scheduler, e.g. {min_lr_rate: 0.1} for cosine_with_min_lr."""
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    bf16: Bf16 = False
    """bfloat16 mixed precision (torch autocast on CPU); refused where the device lacks it. auto = on for GPUs that
    support it and CPUs with native bf16 (AMX / AVX512-BF16), off elsewhere (emulated bf16 is several times slower
    than float32 there) and when fp16 is set."""
    fp16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42
    logging_steps: int = Field(10, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    report_to: Annotated[list[Literal["none", "tensorboard", "wandb"]], CommaList] = Field(
        default_factory=lambda: ["none"])
    plot_loss: bool = True
    """Write training_loss.png into output_dir."""
    threads: int = Field(0, ge=0)
    """torch CPU threads; 0 = all cores."""
    deepspeed: Path | None = None
    """A DeepSpeed JSON config (ZeRO), passed to the trainer; needs CUDA GPUs and `pip install deepspeed`."""

    @field_validator("lr_scheduler_type")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        return check_scheduler(value)

    @model_validator(mode="after")
    def _check_trainer(self) -> TrainerSettings:
        missing = scheduler_missing_kwargs(self.lr_scheduler_type, self.lr_scheduler_kwargs)
        if missing and not getattr(self, "stable_proportion", None):
            raise ValueError(f'lr_scheduler_type "{self.lr_scheduler_type}" needs lr_scheduler_kwargs.{missing}')
        if self.bf16 is True and self.fp16:
            raise ValueError("bf16 and fp16 are exclusive; set one of them")
        if "none" in self.report_to and len(self.report_to) > 1:
            raise ValueError('report_to "none" cannot be combined with other reporters')
        return self


class TrainerConfig(TrainerSettings):
    output_dir: Path


class LoraSettings(ConfigModel):
    """One LoRA block for every trainer that adds an adapter: SFT, reward model, PPO, DPO, GRPO, LLM reranker.

    A trainer redeclares a field only to change its default (PPO: rank 16; the reward model, DPO, GRPO and the
    reranker: alpha 16).
    """

    lora_rank: int = Field(8, ge=1, validation_alias=AliasChoices("lora_rank", "lora_r"))
    """Adapter rank r (`lora_r`, PPO's former name, is read too)."""
    lora_alpha: float | None = Field(None, gt=0)
    """LoRA scaling numerator; default 2 x lora_rank."""
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_target: Annotated[list[str], CommaList] = Field(default_factory=lambda: ["all"])
    """Module names to wrap with LoRA (e.g. q_proj,v_proj), or `all` (also written `all-linear`) = every linear
    layer but the output head."""

    @model_validator(mode="after")
    def _target_alone(self) -> LoraSettings:
        if set(self.lora_target) & {"all", "all-linear"} and len(self.lora_target) > 1:
            raise ValueError('lora_target "all" already covers every linear layer; give it alone')
        return self

    @property
    def lora_scale_alpha(self) -> float:
        return self.lora_alpha if self.lora_alpha is not None else 2.0 * self.lora_rank

    @property
    def lora_all_linear(self) -> bool:
        return self.lora_target in (["all"], ["all-linear"])

    def lora_config(self, task_type: str, targets: list[str] | None = None, **extra: Any):
        """The peft LoraConfig of these settings (`task_type`: CAUSAL_LM or SEQ_CLS); `targets` replaces `all` by
        module names (peft takes `layers_to_transform` only with names)."""
        from peft import LoraConfig

        target: Any = targets or ("all-linear" if self.lora_all_linear else list(self.lora_target))
        return LoraConfig(r=self.lora_rank, lora_alpha=self.lora_scale_alpha, lora_dropout=self.lora_dropout,
                          target_modules=target, bias="none", task_type=task_type, **extra)

    def check_lora_targets(self, model) -> None:
        """A ConfigError naming the model's linear layers when a `lora_target` module is not in `model`."""
        if self.lora_all_linear:
            return
        names = {n.split(".")[-1] for n, _ in model.named_modules()}
        missing = [t for t in self.lora_target if t not in names]
        if missing:
            linear = linear_module_names(model)
            raise ConfigError(f'key "lora_target": {", ".join(missing)} not found in this model; its linear layers '
                              f"are: {', '.join(linear)} (or use all)")


def linear_module_names(model, inside: re.Pattern | None = None) -> list[str]:
    """The distinct last names of `model`'s linear layers (q_proj, up_proj, ...), only those whose full name
    matches `inside` when given."""
    import torch

    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and (inside is None or inside.search(n))})


EVAL_SCHEDULERS = ("reduce_lr_on_plateau", "greedy")
"""Schedulers that follow the evaluation loss, so they need an evaluation set."""


def check_scheduler(name: str) -> str:
    """`name` when it is one of transformers' scheduler types, else a ValueError listing them."""
    import difflib

    from transformers.trainer_utils import SchedulerType

    allowed = [s.value for s in SchedulerType]
    if name not in allowed:
        close = difflib.get_close_matches(name, allowed, n=1)
        raise ValueError(f"unknown scheduler {name!r}; allowed values: {', '.join(allowed)}"
                         + (f'; did you mean "{close[0]}"?' if close else ""))
    return name


def scheduler_missing_kwargs(name: str, kwargs: dict[str, Any]) -> str | None:
    """The argument a scheduler cannot run without (transformers would fail at the first step), or None."""
    needs = {"cosine_with_min_lr": ("min_lr", "min_lr_rate"), "cosine_warmup_with_min_lr": ("min_lr", "min_lr_rate"),
             "warmup_stable_decay": ("num_decay_steps",)}
    options = needs.get(name, ())
    if options and not any(k in kwargs for k in options):
        return " or ".join(options) + (" (or set stable_proportion)" if name == "warmup_stable_decay" else "")
    return None


def check_deepspeed(cfg: TrainerSettings, device: str) -> str | None:
    """The DeepSpeed config path for the trainer (None when not asked for), or a ConfigError saying what is missing."""
    import importlib.util

    if cfg.deepspeed is None:
        return None
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError('key "deepspeed": DeepSpeed is not installed; run `pip install deepspeed` (on a '
                          "machine with CUDA GPUs), or remove deepspeed to train without it")
    if device != "cuda":
        raise ConfigError(f'key "deepspeed": DeepSpeed ZeRO shards training over CUDA GPUs and this run is on {device};'
                          " remove deepspeed to train here")
    if not Path(cfg.deepspeed).is_file():
        raise ConfigError(f'key "deepspeed": {cfg.deepspeed} not found (a DeepSpeed JSON config)')
    return str(cfg.deepspeed)


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


# ---------------------------------------------------------------- resume


def _checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint-N folder in output_dir (None when there is none)."""
    out = Path(output_dir)
    found = _checkpoints(out) if out.is_dir() else []
    return found[-1] if found else None


def resume_if_checkpointed(output_dir: str | Path) -> dict[str, Any]:
    """`resume_from_checkpoint: true` when a trainer left checkpoints in output_dir: a stage restarted after a
    kill (the run directory keeps its folder) continues from them instead of starting over."""
    return {"resume_from_checkpoint": True} if latest_checkpoint(output_dir) else {}


def resume_point(output_dir: str | Path, setting: bool | str | Path | None,
                 marker: str = "trainer_state.json") -> str | None:
    """`resume_from_checkpoint` as a folder: None/false = a fresh start, true = the newest checkpoint-N in
    output_dir, a path = that checkpoint (it must hold `marker`)."""
    if setting in (None, False):
        return None
    if setting is True:
        newest = latest_checkpoint(output_dir)
        if newest is None:
            raise ConfigError(f'key "resume_from_checkpoint": no checkpoint-* folder in {output_dir} to resume '
                              "from; set resume_from_checkpoint=null to start a fresh run")
        return str(newest)
    if not (Path(setting) / marker).is_file():
        raise ConfigError(f'key "resume_from_checkpoint": {setting} is not a checkpoint folder (no {marker})')
    return str(setting)


def resolve_resume(cfg: ResumeSettings, is_main: bool = True, marker: str = "trainer_state.json") -> str | None:
    """The checkpoint to resume from (None = fresh start); refuses to silently mix runs in one output_dir.

    `cfg` also has an `output_dir`. Under several processes every rank resolves the same checkpoint, only the main
    one (`is_main`) deletes the old checkpoints of an overwritten run; call it before the ranks' barrier."""
    out = Path(cfg.output_dir)
    existing = _checkpoints(out) if out.is_dir() else []
    if cfg.resume_from_checkpoint in (None, False):
        if existing and not cfg.overwrite_output_dir:
            raise ConfigError(f"{out} already holds {existing[-1].name}; set resume_from_checkpoint=true to "
                              "continue that run, or overwrite_output_dir=true to start over")
        if existing and is_main:
            for p in existing:
                shutil.rmtree(p)
        return None
    return resume_point(out, cfg.resume_from_checkpoint, marker)


# Trainer state files that resume loads (transformers loads each with torch.load(weights_only=True): tensors and
# plain containers only).
_STATE_FILES = ("*.pt", "*.pth", "pytorch_model.bin")  # optimizer, scheduler, scaler, rng_state*, weights
def train_resuming(trainer: Any, resume: str | None) -> Any:
    """`trainer.train(resume_from_checkpoint=resume)`. A checkpoint state file that holds more than tensors is
    refused unread by torch's weights-only loader; that becomes a clear error naming the file, not a traceback
    that suggests `weights_only=False` (which would run whatever the file carries). A sharded (FSDP) checkpoint,
    which torch reads with full pickle, is checked before torch opens it."""
    import pickle

    from ragtune.train.sharded_checkpoint import check_sharded_checkpoint

    if resume is not None:
        check_sharded_checkpoint(resume)
    trainer.add_callback(args_pickle_dropper())
    try:
        return trainer.train(resume_from_checkpoint=resume)
    except pickle.UnpicklingError:
        if resume is None:
            raise
        raise ConfigError(f"{_refused_state_file(Path(resume))}: this checkpoint file holds objects other than "
                          "tensors, and ragtune never unpickles code from a run directory; resume from another "
                          "checkpoint (resume_from_checkpoint=<folder>) or delete this one") from None


def save_final_model(trainer: Any, output_dir: str | Path) -> None:
    """`trainer.save_model(output_dir)`, also under FSDP with sharded checkpoints (what resume reads): there
    transformers saves no final weights at all, so gather them (all ranks take part) and rank 0 writes one model."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if not getattr(trainer, "is_fsdp_enabled", False) or "FULL_STATE_DICT" in str(plugin.state_dict_type):
        trainer.save_model(str(output_dir))
    else:
        state_dict = trainer.accelerator.get_state_dict(trainer.model)
        if trainer.args.should_save:
            trainer._save(str(output_dir), state_dict=state_dict)
    if trainer.args.should_save:
        drop_args_pickle(output_dir)


def _refused_state_file(checkpoint: Path) -> Path:
    import pickle

    import torch
    from transformers.trainer_pt_utils import safe_globals  # the numpy types an honest rng_state.pth holds

    for pattern in _STATE_FILES:
        for f in sorted(checkpoint.glob(pattern)):
            try:
                with safe_globals():
                    torch.load(f, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                return f
    return checkpoint


# ---------------------------------------------------------------- summary and loss plot


def finish(trainer, cfg: TrainerConfig, summary: dict[str, Any], title: str, best: bool = True) -> dict[str, Any]:
    """The summary record every trainer returns (and the CLI prints): `summary` plus steps, first and last logged
    loss, the best checkpoint (`best`: the trainer selects one on a dev slice) and the output folder. Writes the
    loss plot, the resolved config and train_summary.json next to the saved model."""
    out = Path(cfg.output_dir)
    series = loss_series(trainer.state.log_history)
    summary |= {"global_step": trainer.state.global_step,
                "first_logged_loss": series["train"][0][1] if series["train"] else None,
                "last_logged_loss": series["train"][-1][1] if series["train"] else None}
    if best:
        summary |= {"best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric}
        if trainer.state.best_model_checkpoint is not None:  # dev chose one; was it kept?
            summary["kept_checkpoint"] = "best" if trainer.args.load_best_model_at_end else "last"
    summary["output_dir"] = str(out)
    summary.setdefault("world_size", trainer.args.world_size)
    if trainer.is_world_process_zero():
        drop_args_pickle(out)  # the final save's; each checkpoint's went when it was saved
        dump_config(cfg, out / "config.yaml")
        if cfg.plot_loss:
            png = plot_loss(trainer.state.log_history, out / LOSS_PNG, title=title)
            summary["loss_plot"] = str(png) if png else None
        write_json(out / SUMMARY, summary)
    return summary


def loss_series(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """{"train": [(step, loss)], "eval": [(step, eval_loss)]} from Trainer.state.log_history."""
    train = [(int(h["step"]), float(h["loss"])) for h in log_history if "loss" in h and "step" in h]
    evals = [(int(h["step"]), float(h["eval_loss"])) for h in log_history if "eval_loss" in h and "step" in h]
    return {"train": train, "eval": evals}


def plot_loss(log_history: list[dict], path: str | Path, title: str = "training loss") -> Path | None:
    """Plot train (and eval) loss against the optimizer step; None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = loss_series(log_history)
    if not series["train"] and not series["eval"]:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for name, style in (("train", "-"), ("eval", "o--")):
        if series[name]:
            steps, losses = zip(*series[name], strict=True)
            ax.plot(steps, losses, style, label=f"{name} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
    return Path(path)
