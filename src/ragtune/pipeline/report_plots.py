"""The loop report's figures: retrieval per round, what the generator wrote, the RL curves, wall time per stage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def plot(root: Path, report: Mapping[str, Any], metrics: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = root / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    m = "ndcg@10" if "ndcg@10" in metrics else metrics[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    rounds = [r["round"] for r in report["rounds"]]
    ax.plot(rounds, [r["evaluate"]["metrics"][m] for r in report["rounds"]], "o-", label="trained retriever")
    for name, style in (("bm25", "--"), ("zero_shot", ":")):
        ax.axhline(report["baselines"][name][m], linestyle=style, color="gray", label=name)
    ax.set_xlabel("round")
    ax.set_ylabel(f"{m} (test)")
    ax.set_xticks(rounds)
    ax.legend()
    ax.set_title("Retrieval quality per round")
    fig.tight_layout()
    fig.savefig(out / "retrieval.png", dpi=120)
    paths.append(out / "retrieval.png")
    plt.close(fig)

    if plot_generator(out, report, plt):
        paths.append(out / "generator.png")

    curves = [(r["round"], r[k]["curve"]) for r in report["rounds"] for k in ("ppo", "grpo") if k in r]
    if curves:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
        for k, c in curves:
            a1.plot([h["step"] for h in c], [h["reward_mean"] for h in c], label=f"round {k}")
            a2.plot([h["step"] for h in c], [h["kl"] for h in c], label=f"round {k}")
        a1.set_title("RL mean reward")
        a2.set_title("KL to reference (nats/response)")
        for a in (a1, a2):
            a.set_xlabel("update")
            a.legend()
        fig.tight_layout()
        fig.savefig(out / "rl.png", dpi=120)
        paths.append(out / "rl.png")
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(report["stages"]) + 1))
    names = list(report["stages"])
    ax.barh(names, [report["stages"][n]["seconds"] or 0 for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Wall time per stage")
    fig.tight_layout()
    fig.savefig(out / "stages.png", dpi=120)
    paths.append(out / "stages.png")
    plt.close(fig)
    return paths


GENERATOR_BARS = (("bm25_top1", "BM25 top-1"), ("bm25_top10", "BM25 top-10"), ("retriever_top1", "retriever top-1"),
                  ("retriever_top10", "retriever top-10"), ("kept_fraction", "kept by filters"),
                  ("in_band", "in band"), ("copy_rate", "copy rate"), ("duplicate_rate", "duplicates"))


def plot_generator(out: Path, report: Mapping[str, Any], plt) -> bool:
    """generator.png: each round's difficulty histogram, and its shares side by side."""
    rows = [(r["round"], r["quality"]) for r in report["rounds"] if r.get("quality", {}).get("queries")]
    if not rows:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for k, q in rows:
        hist = q["difficulty_hist"]
        total = max(1, sum(hist))
        a1.step([i / len(hist) for i in range(len(hist) + 1)], [h / total for h in hist] + [hist[-1] / total],
                where="post", label=f"round {k}")
    lo, hi = rows[0][1]["band"]
    a1.axvspan(lo, hi, color="gray", alpha=0.15, label="target band")
    a1.set_xlabel("difficulty under the round's retriever")
    a1.set_ylabel("share of queries")
    a1.set_title("Difficulty of the generated queries")
    a1.legend()
    width = 0.8 / len(rows)
    for i, (k, q) in enumerate(rows):
        a2.bar([j + i * width for j in range(len(GENERATOR_BARS))], [q.get(key) or 0 for key, _ in GENERATOR_BARS],
               width, label=f"round {k}")
    a2.set_xticks([j + 0.4 - width / 2 for j in range(len(GENERATOR_BARS))])
    a2.set_xticklabels([label for _, label in GENERATOR_BARS], rotation=35, ha="right")
    a2.set_ylim(0, 1)
    a2.set_title("What the generator wrote")
    a2.legend()
    fig.tight_layout()
    fig.savefig(out / "generator.png", dpi=120)
    plt.close(fig)
    return True
