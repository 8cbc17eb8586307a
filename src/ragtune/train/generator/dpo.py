"""DPO for the query generator on trl's DPOTrainer (LoRA via peft): learns directly from the loop's preference
pairs (`train/generator/preferences.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.train.generator.lm_head import compact_fused_head
from ragtune.train.generator.rl import (
    PolicySettings,
    PolicyTrainConfig,
    load_policy,
    policy_args,
    save_policy,
    start_policy_run,
)
from ragtune.train.harness import train_resuming


class DPOSettings(PolicySettings):
    """DPO's settings but its paths (the loop's `dpo:` overrides)."""

    max_length: int = Field(512, ge=1)


class DPOTrainConfig(DPOSettings, PolicyTrainConfig):
    stage: Literal["dpo"] = "dpo"
    train_file: Path
    """Preference JSONL (chosen/rejected or LLaMA-Factory ranking rows)."""


def train_dpo(cfg: DPOTrainConfig) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from ragtune.data.formats import read_records

    rows = [{"prompt": [{"role": "user", "content": f"{r.instruction}\n{r.input}".strip()}],
             "chosen": [{"role": "assistant", "content": r.chosen}],
             "rejected": [{"role": "assistant", "content": r.rejected}]}
            for r in read_records(cfg.train_file, "preference")]
    if not rows:
        raise ValueError(f"{cfg.train_file}: no preference pairs")
    _, resume = start_policy_run(cfg)
    model, tok = load_policy(cfg)
    args = DPOConfig(max_length=cfg.max_length, **policy_args(cfg))
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=cfg.lora_config("CAUSAL_LM"))
    with compact_fused_head():  # the LM head on completion tokens only, on CPU too
        train_resuming(trainer, resume)
    return save_policy(trainer, tok, cfg, {"pairs": len(rows), "resumed_from": resume})
