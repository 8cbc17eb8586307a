"""A PPO checkpoint is loaded with torch.load(weights_only=True): a trainer_state.pt carrying code does not run it."""

from __future__ import annotations

import os

import pytest
import torch

from ragtune.train.generator.ppo import PPOConfig, PPOTrainer


class Marker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_resume_refuses_a_state_file_that_carries_code(tiny_lm, tmp_path):
    cfg = PPOConfig(steps=1, batch_size=2, mini_batch_size=2, ppo_epochs=1, max_new_tokens=2, lora_r=4, lora_alpha=8)
    trainer = PPOTrainer(cfg, str(tiny_lm))
    trainer.save(tmp_path / "honest")
    assert PPOTrainer(cfg, str(tiny_lm), resume_from=tmp_path / "honest").step_count == 0  # a real state loads

    trainer.save(tmp_path / "evil")
    marker = tmp_path / "PWNED"
    state = torch.load(tmp_path / "evil" / "trainer_state.pt", weights_only=True)
    state["history"] = [Marker(marker)]
    torch.save(state, tmp_path / "evil" / "trainer_state.pt")
    with pytest.raises(Exception, match="trainer_state.pt"):
        PPOTrainer(cfg, str(tiny_lm), resume_from=tmp_path / "evil")
    assert not marker.exists(), "resuming PPO ran code from trainer_state.pt"
