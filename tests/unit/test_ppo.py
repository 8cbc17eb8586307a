import math

import pytest
import torch

from ragtune.train.generator.ppo import PPOConfig, PPOTrainer
from ragtune.train.generator.ppo_core import AdaptiveKLController, gae, ppo_losses, token_rewards


def test_gae_matches_a_hand_computed_episode():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.2, 0.4, 0.6, 9.0]])  # the 4th position is padding
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    d2 = 1.0 - 0.6
    d1 = 0.0 + 0.9 * 0.6 - 0.4
    d0 = 0.0 + 0.9 * 0.4 - 0.2
    a2, a1 = d2, d1 + 0.9 * 0.8 * d2
    a0 = d0 + 0.9 * 0.8 * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2, 0.0])
    assert ret[0, :3].tolist() == pytest.approx([a0 + 0.2, a1 + 0.4, a2 + 0.6])


def test_kl_penalty_and_score_placement():
    r, kl = token_rewards(torch.tensor([2.0, -1.0]), torch.tensor([[0.5, 0.5], [0.1, 0.0]]),
                          torch.zeros(2, 2), torch.tensor([[1.0, 1.0], [1.0, 0.0]]), kl_coef=0.1)
    assert r.flatten().tolist() == pytest.approx([-0.05, 2.0 - 0.05, -1.0 - 0.01, 0.0])
    assert kl.sum().item() == pytest.approx(1.1)


def test_clipped_objective_stops_pushing_past_the_clip_range():
    old = torch.zeros(1, 1)
    adv = torch.ones(1, 1)
    inside = ppo_losses(torch.tensor([[0.1]]), old, adv, torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1),
                        torch.ones(1, 1), cliprange=0.2)
    outside = ppo_losses(torch.tensor([[0.5]]), old, adv, torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1),
                         torch.ones(1, 1), cliprange=0.2)
    assert inside["pg_loss"].item() == pytest.approx(-math.exp(0.1)) and inside["clipfrac"].item() == 0.0
    assert outside["pg_loss"].item() == pytest.approx(-1.2) and outside["clipfrac"].item() == 1.0


def test_adaptive_kl_controller_moves_toward_target():
    ctl = AdaptiveKLController(0.1, target=1.0, horizon=100)
    assert ctl.update(5.0, 10) > 0.1  # too much KL: penalize more
    fixed = AdaptiveKLController(0.1, target=None, horizon=100)
    assert fixed.update(5.0, 10) == 0.1


def test_ppo_raises_a_toy_reward_with_bounded_kl(tiny_lm, tmp_path):
    """Reward = share of response tokens drawn from a fixed set of 25 token ids."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    target = set(range(60, 85))

    def reward(prompts, responses):
        out = []
        for text in responses:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            out.append(sum(i in target for i in ids) / max(1, len(ids)))
        return out

    cfg = PPOConfig(steps=30, batch_size=16, mini_batch_size=8, ppo_epochs=2, learning_rate=3e-3, max_new_tokens=8,
                    init_kl_coef=0.02, target_kl=None, lora_r=8, lora_alpha=16, seed=0)
    trainer = PPOTrainer(cfg, str(tiny_lm))
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"The {w} cell"}], tokenize=False,
                                       add_generation_prompt=True) for w in ["small", "rapid", "chronic", "stable"]]
    hist = trainer.train(prompts, reward, tmp_path / "ppo", show_progress=False)
    first = sum(h["reward_mean"] for h in hist[:5]) / 5
    last = sum(h["reward_mean"] for h in hist[-5:]) / 5
    assert last > first + 0.15 and last > 2 * first, (first, last)
    assert max(h["kl"] for h in hist) < 25.0  # nats per 8-token response: bounded, not runaway
    for key in ["reward_mean", "kl", "entropy", "clipfrac", "value_loss"]:
        assert all(math.isfinite(h[key]) for h in hist), key
    lines = (tmp_path / "ppo" / "ppo_log.jsonl").read_text().splitlines()
    assert len(lines) == 30 and (tmp_path / "ppo" / "adapter" / "adapter_config.json").exists()

    # resume continues from the saved step with the saved value head and optimizer state
    cfg2 = cfg.model_copy(update={"steps": 32})
    resumed = PPOTrainer(cfg2, str(tiny_lm), resume_from=tmp_path / "ppo")
    assert resumed.step_count == 30
    assert resumed.train(prompts, reward, tmp_path / "ppo2", show_progress=False)[-1]["step"] == 32
