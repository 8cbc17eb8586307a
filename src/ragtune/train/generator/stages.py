"""`ragtune train generator [CONFIG.yaml] [key=value ...]`: the `stage` key picks the trainer.

| stage | config | trains |
|---|---|---|
| sft (default) | `GeneratorTrainConfig` | the doc -> query generator: LoRA, freeze or full SFT (sft.py) |
| rm | `RewardTrainConfig` | a reward model on preference pairs (reward.py) |
| ppo | `PPOStageConfig` | ragtune's PPO against that reward model (ppo.py, ppo_stage.py) |
| dpo | `DPOTrainConfig` | trl's DPO on the preference pairs (dpo.py) |
| grpo | `GRPOStageConfig` | trl's GRPO with the retriever as online reward (grpo.py) |
"""

from __future__ import annotations

from collections.abc import Callable
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from ragtune.config import ConfigModel, apply_overrides, build_config, read_yaml
from ragtune.train.generator.dpo import DPOTrainConfig, train_dpo
from ragtune.train.generator.grpo import GRPOStageConfig, run_grpo_stage
from ragtune.train.generator.ppo_stage import PPOStageConfig, run_ppo_stage
from ragtune.train.generator.reward import RewardTrainConfig, train_reward_model
from ragtune.train.generator.sft import train_generator
from ragtune.train.generator.sft_config import GeneratorTrainConfig

STAGES: dict[str, tuple[type[ConfigModel], Callable[[Any], dict[str, Any]]]] = {
    "sft": (GeneratorTrainConfig, train_generator),
    "rm": (RewardTrainConfig, train_reward_model),
    "ppo": (PPOStageConfig, run_ppo_stage),
    "dpo": (DPOTrainConfig, train_dpo),
    "grpo": (GRPOStageConfig, run_grpo_stage),
}


def train_generator_stage(config: str | Path | None = None, overrides: list[str] | None = None,
                          base: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Read the config (`base` < YAML < key=value overrides), train its `stage`; returns (stage, summary)."""
    data = apply_overrides({**(base or {}), **(read_yaml(config) if config else {})}, list(overrides or []))
    stage = str(data.get("stage", "sft"))
    if stage not in STAGES:
        close = get_close_matches(stage, list(STAGES), n=1)
        raise ValueError(f'key "stage": got {stage!r}; allowed values: {", ".join(STAGES)}'
                         + (f'; did you mean "{close[0]}"?' if close else ""))
    cls, fn = STAGES[stage]
    return stage, fn(build_config(cls, data, stage))
