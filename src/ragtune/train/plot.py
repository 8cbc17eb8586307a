"""Loss curves from a transformers `log_history`, written as PNG atomically."""

from __future__ import annotations

import io
from pathlib import Path

from ragtune.atomic import atomic_open


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
