"""The PPO math as pure tensor functions (no models), so each piece is tested on its own.

Conventions: tensors are [batch, response_len]; `mask` is 1 on real response tokens
(up to and including the first eos), 0 on padding after it.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                  kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token reward: -kl_coef * (logp - logp_ref) everywhere, plus the sequence score on its last token.

    Returns (rewards, per-token kl). Scores land on the last real token of each response.

    >>> r, kl = token_rewards(torch.tensor([1.0]), torch.zeros(1, 3), torch.zeros(1, 3),
    ...                       torch.tensor([[1.0, 1.0, 0.0]]), kl_coef=0.1)
    >>> r.tolist() == [[0.0, 1.0, 0.0]]
    True
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards * mask, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over each response; returns (advantages, returns).

    >>> adv, ret = gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]]), torch.ones(1, 2), 1.0, 1.0)
    >>> [round(a, 3) for a in adv[0].tolist()], [round(r, 3) for r in ret[0].tolist()]
    ([0.5, 0.5], [1.0, 1.0])
    """
    values = values * mask
    T = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        next_mask = mask[:, t + 1] if t + 1 < T else torch.zeros_like(mask[:, 0])
        next_v = values[:, t + 1] * next_mask if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = delta + gamma * lam * last * next_mask
        adv[:, t] = last
    adv = adv * mask
    return adv, (adv + values) * mask


def ppo_losses(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
               values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange: float = 0.2, cliprange_value: float = 0.2) -> dict[str, torch.Tensor]:
    """Clipped policy objective and clipped value loss (PPO, Schulman et al. 2017), with diagnostics."""
    ratio = torch.exp(logprobs - old_logprobs)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    pg_loss = masked_mean(torch.max(pg1, pg2), mask)
    v_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    vf_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (v_clipped - returns) ** 2), mask)
    return {"pg_loss": pg_loss, "vf_loss": vf_loss,
            "clipfrac": masked_mean((pg2 > pg1).float(), mask),
            "approx_kl": 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)}


class AdaptiveKLController:
    """Ziegler et al. (2019): move the KL coefficient so the observed KL tracks a target."""

    def __init__(self, init_kl_coef: float, target: float | None, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        if self.target:  # None/0 = fixed coefficient
            error = max(-0.2, min(0.2, current_kl / self.target - 1))
            self.value *= 1 + error * n_steps / self.horizon
        return self.value
