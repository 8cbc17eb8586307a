"""`ragtune eval rag`'s refusal threshold: chosen on dev questions, never on the evaluated ones, and plotted.

    cfg = RefusalCalibrationConfig(data="runs/qa/squad/squad_dev.meta.jsonl", target="balanced",
                                   exclude=["runs/qa/squad/squad_train.meta.jsonl"])
    items, info = calibration_items(cfg, dev_items, eval_items, train_questions)  # question-disjoint from both
    margin, curve = choose_margin(cfg, generations, items)
    plot_curves({"dev": curve, "eval (gold)": eval_curve}, margin, "out/refusal_curve.png")

Questions are matched on their text (`question`), not on the whole prompt: a question asked in an answerable and
in a mismatched record is one question.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.config import ConfigModel
from ragtune.data.errors import DataFormatError


class RefusalCalibrationConfig(ConfigModel):
    data: Path | None = None
    """Labelled dev questions to choose `answerer.refusal_margin` on, with gold contexts: the converter's
    `*_dev.meta.jsonl` (`dev_questions=N`). None = keep `answerer.refusal_margin` as given."""
    limit: int = Field(100, ge=2)
    """Calibrate on the first limit/2 answerable and limit/2 unanswerable questions (after exclusion)."""
    target: Literal["balanced", "precision", "recall"] = "balanced"
    """balanced: minimise max(over-refusal, under-refusal); precision: fewest unanswerable questions answered
    with over-refusal <= max_over_refusal; recall: fewest answerable questions refused with under-refusal <=
    max_under_refusal."""
    max_over_refusal: float = Field(0.1, ge=0.0, le=1.0)
    max_under_refusal: float = Field(0.1, ge=0.0, le=1.0)
    exclude: list[Path] = Field(default_factory=list)
    """Meta files (e.g. the converter's `*_train.meta.jsonl`, or the subset actually trained on) whose questions
    are dropped from the calibration set, so it stays question-disjoint from every training record."""


def calibration_items(cfg: RefusalCalibrationConfig, items: list[dict[str, Any]], evaluated: list[dict[str, Any]],
                      seen: set[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(calibration items, info): `items` (read from cfg.data) without the questions in `seen` (those of
    `cfg.exclude`), the first limit/2 answerable and limit/2 unanswerable of them; a question that is also
    evaluated is an error (calibrate on dev, never on the evaluation questions)."""
    kept = [it for it in items if it["question"] not in seen]
    overlap = {it["question"] for it in kept} & {it["question"] for it in evaluated}
    if overlap:
        raise DataFormatError(cfg.data, None, f"{len(overlap)} calibration questions are also evaluated "
                              f"(e.g. {sorted(overlap)[0]!r})", field="question",
                              hint="calibrate on a dev split carved from the training articles "
                                   "(`ragtune data convert ... dev_questions=N`), never on the evaluation data")
    want = {True: (cfg.limit + 1) // 2, False: cfg.limit // 2}
    chosen = []
    for it in kept:
        if want[bool(it["answerable"])] > 0:
            want[bool(it["answerable"])] -= 1
            chosen.append(it)
    info = {"data": str(cfg.data), "questions": len(chosen), "excluded": len(items) - len(kept),
            "answerable": sum(bool(it["answerable"]) for it in chosen), "target": cfg.target}
    return chosen, info


def choose_margin(cfg: RefusalCalibrationConfig, gens, items: list[dict[str, Any]]
                  ) -> tuple[float, list[tuple[float, float, float]]]:
    """(refusal_margin for cfg.target, the over/under-refusal curve) from generations on gold contexts."""
    from ragtune.rag.refusal import calibrate_margin, refusal_curve

    margins = [g.signal for g in gens]
    unanswerable = [not it["answerable"] for it in items]
    fixed = [g.text_final for g in gens]  # refusals no threshold undoes
    margin = calibrate_margin(margins, unanswerable, fixed, cfg.target, cfg.max_over_refusal,
                              cfg.max_under_refusal)
    return margin, refusal_curve(margins, unanswerable, fixed)


def curve_of(gens, items: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    from ragtune.rag.refusal import refusal_curve

    return refusal_curve([g.signal for g in gens], [not it["answerable"] for it in items],
                         [g.text_final for g in gens])


def plot_curves(curves: dict[str, list[tuple[float, float, float]]], chosen: float, path: Path,
                title: str = "") -> Path:
    """Over- and under-refusal against the margin threshold, one pair of lines per curve, the chosen threshold
    marked; the +inf point (the margin never refuses) is drawn at the right edge."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ragtune.atomic import atomic_open

    finite = [t for c in curves.values() for t, _, _ in c if math.isfinite(t)] + \
        ([chosen] if math.isfinite(chosen) else [])
    lo, hi = (min(finite), max(finite)) if finite else (-1.0, 1.0)
    right = hi + 0.1 * (hi - lo or 1.0)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (label, curve), style in zip(curves.items(), ("-", "--", ":", "-."), strict=False):
        xs = [t if math.isfinite(t) else right for t, _, _ in curve]
        ax.step(xs, [o for _, o, _ in curve], style, where="post", color="tab:red", label=f"over-refusal, {label}")
        ax.step(xs, [u for _, _, u in curve], style, where="post", color="tab:blue",
                label=f"under-refusal, {label}")
    ax.axvline(chosen if math.isfinite(chosen) else right, color="black", lw=0.8,
               label=f"chosen threshold {chosen:.2f}")
    ax.set_xlabel("refusal_margin threshold (log P(refusal) - log P(answer)); right edge = +inf")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "over- vs under-refusal as the threshold moves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path
