"""Weight-space ensembling of a fine-tuned retriever with its starting point (WiSE-FT, Wortsman et al. 2022).

    start = snapshot(model)                       # before training
    ...train...
    chosen, curve = choose_interpolation(model, start, [0.5, 0.75, 1.0], score)   # score(model) on the dev slice

The model is set to `start + alpha * (trained - start)` for each alpha and keeps the one the dev slice scores best
(ties go to the larger alpha, so 1.0, the trained model, wins a tie). Fine-tuning on a few hundred labeled pairs
and noisy pseudo queries moves the encoder away from what its pretraining knew; part of the way back often ranks
better than either end. Only floating-point tensors are interpolated (integer buffers such as position ids are
the trained model's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import field_validator

from ragtune.config import CommaList, ConfigModel


class WiseFtSettings(ConfigModel):
    """The interpolation a trainer can end with."""

    wise_ft: Annotated[list[float], CommaList] | None = None
    """After training, interpolate the weights between the start (the zero-shot encoder, with its rotation when
    mrl_init=pca) and the kept checkpoint at each of these shares of the trained weights (e.g. 0.5,0.7,0.85,1.0)
    and keep the one the dev slice scores best; 1.0 is the trained model itself. Needs a dev slice."""

    @field_validator("wise_ft")
    @classmethod
    def _alphas(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not v or any(not 0.0 <= a <= 1.0 for a in v):
            raise ValueError(f"wise_ft takes shares of the trained weights between 0 and 1, got {v}")
        return sorted(set(v))


def snapshot(model) -> dict:
    """A detached copy of the model's state dict (on the model's device)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def interpolate(model, start: dict, end: dict, alpha: float) -> None:
    """Load `start + alpha * (end - start)` into `model` (floating tensors; others from `end`).

    >>> import torch
    >>> m = torch.nn.Linear(1, 1, bias=False)
    >>> interpolate(m, {"weight": torch.zeros(1, 1)}, {"weight": torch.ones(1, 1) * 4}, 0.25)
    >>> m.weight.item()
    1.0
    """
    state = {}
    for k, v in end.items():
        s = start.get(k)
        if s is None or not v.is_floating_point() or s.shape != v.shape:
            state[k] = v
        else:
            state[k] = s.to(v.dtype) + alpha * (v - s.to(v.dtype))
    model.load_state_dict(state)


def choose_interpolation(model, start: dict, alphas: list[float], score: Callable[[object], float]
                         ) -> tuple[float, dict[str, float]]:
    """Score each interpolation with `score(model)`, leave the model at the best; (alpha, {alpha: score})."""
    end = snapshot(model)
    curve: dict[str, float] = {}
    for alpha in alphas:
        interpolate(model, start, end, alpha)
        curve[f"{alpha:g}"] = float(score(model))
    best = max(alphas, key=lambda a: (curve[f"{a:g}"], a))
    interpolate(model, start, end, best)
    return best, curve
