"""The run report (`RunReport`, what `ragtune run` returns and prints) and its report.md, report.json and PNG plots
in the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from ragtune.atomic import write_json, write_text


class Comparison(TypedDict, total=False):
    delta: float
    p_value: float
    p_holm: float  # Holm-adjusted over the round's family: every metric against every baseline


class EvaluateRecord(TypedDict):
    """A round's retriever on the test split, and its paired t-tests against the baselines, per metric."""

    metrics: dict[str, float]
    vs_bm25: dict[str, Comparison]
    vs_zero_shot: dict[str, Comparison]


class RoundReport(TypedDict, total=False):
    """One round: every stage's metrics; `preferences` with ppo or dpo, `reward_model` and `ppo` with ppo."""

    round: int
    filter: dict[str, Any]
    retriever: dict[str, Any]
    evaluate: EvaluateRecord
    difficulty: dict[str, Any]
    curriculum: dict[str, Any]
    """Round k >= 1 with `retriever.curriculum`: the training queries scored by round k-1's retriever."""
    preferences: dict[str, Any]
    reward_model: dict[str, Any]
    ppo: dict[str, Any]
    dpo: dict[str, Any]
    grpo: dict[str, Any]


class RunReport(TypedDict):
    name: str
    data: str
    subset: dict[str, Any]
    baselines: dict[str, dict[str, float]]
    """"bm25" and "zero_shot": metric -> value on the test split."""
    rounds: list[RoundReport]
    stages: dict[str, dict[str, Any]]
    """Every stage of the manifest: {"seconds", "status"}."""
    executed: list[str]
    """The stages this invocation ran (the others were reused)."""


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def _p_cell(row: Comparison) -> str:
    if "p_value" not in row:
        return ""
    return _fmt_p(row["p_value"]) + (" *" if row.get("p_holm", 1.0) <= 0.05 else "")


def to_markdown(report: RunReport, metrics: list[str]) -> str:
    main = [m for m in ("ndcg@10", "recall@100") if m in metrics] or metrics[:2]
    lines = [f"# ragtune run: {report['name']}", "", f"data: `{report['data']}` (subset: {report['subset']})", "",
             "## Retrieval on the test split", "",
             "| system | " + " | ".join(main) + " | p vs BM25 | p vs zero-shot |",
             "|---|" + "---|" * (len(main) + 2)]
    for name, label in (("bm25", "BM25"), ("zero_shot", "zero-shot encoder")):
        lines.append(f"| {label} | " + " | ".join(f"{report['baselines'][name][m]:.4f}" for m in main) + " | | |")
    for r in report["rounds"]:
        ev = r["evaluate"]
        cells = [_p_cell(ev.get(f"vs_{b}", {}).get(main[0], {})) for b in ("bm25", "zero_shot")]
        label = " (ColBERT)" if r["retriever"].get("kind") == "colbert" else ""
        lines.append(f"| round {r['round']} retriever{label} | " + " | ".join(f"{ev['metrics'][m]:.4f}" for m in main)
                     + f" | {cells[0]} | {cells[1]} |")
    k = max((r["evaluate"].get("comparisons", 0) for r in report["rounds"]), default=0)
    lines += ["", f"p-values: paired t-test on per-query {main[0]}"
              + (f"; * survives Holm's correction at 0.05 over the round's {k} comparisons (every metric against "
                 "both baselines)." if k else "."), "", "## Per round", ""]
    for r in report["rounds"]:
        f = r["filter"]
        lines.append(f"### round {r['round']}")
        lines.append(f"- filters kept {f['kept']} of {f['candidates']} ({f['kept_fraction']:.1%}): "
                     + ", ".join(f"{n} {a}->{b}" for n, (a, b) in f["yield"].items()))
        lines.append(f"- retriever trained on {r['retriever'].get('train_queries')} labeled + "
                     f"{r['retriever'].get('pseudo_queries')} pseudo queries")
        if r["retriever"].get("curriculum", "none") != "none":
            rr = r["retriever"]
            lines.append(f"- curriculum {rr['curriculum']}: {rr.get('curriculum_examples')} training queries ordered "
                         f"or weighted by round {r['round'] - 1}'s difficulties "
                         f"({rr.get('curriculum_dropped', 0)} outside the band left out)")
        dd = r["difficulty"]
        lines.append(f"- difficulty: mean {dd['mean_difficulty']:.3f}, source ranked first {dd['rank1_fraction']:.1%}")
        if "reward_model" in r:
            rm = r["reward_model"]
            lines.append(f"- preferences: {r['preferences'].get('train pairs')} train / "
                         f"{r['preferences'].get('heldout pairs')} held-out pairs; reward model held-out accuracy "
                         f"{rm.get('heldout_accuracy', float('nan')):.3f}")
            pp = r["ppo"]
            lines.append(f"- PPO: {pp['updates']} updates, mean reward {pp['reward_first']:.3f} -> "
                         f"{pp['reward_last']:.3f}, KL {pp['kl_last']:.2f}")
        if "dpo" in r:
            dp = r["dpo"]
            lines.append(f"- DPO: {dp['pairs']} pairs, {dp['steps']} steps, "
                         f"loss {dp['loss_first']} -> {dp['loss_last']}")
        if "grpo" in r:
            gp = r["grpo"]
            lines.append(f"- GRPO: {gp['steps']} steps on {gp['prompts']} prompts, retrieval reward "
                         f"{gp['reward_first']} -> {gp['reward_last']}")
        lines.append("")
    lines += ["## Wall time per stage", "", "| stage | seconds | ran now |", "|---|---|---|"]
    for name, st in report["stages"].items():
        lines.append(f"| {name} | {st['seconds'] or 0:.1f} | {'yes' if name in report['executed'] else 'cached'} |")
    lines += ["", "Plots: plots/retrieval.png, plots/rl.png (PPO/GRPO reward and KL), plots/stages.png"]
    return "\n".join(lines) + "\n"


def plot(root: Path, report: RunReport, metrics: list[str]) -> list[Path]:
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


def write_run_report(root: Path, report: RunReport, metrics: list[str]) -> None:
    write_json(root / "report.json", report)
    write_text(root / "report.md", to_markdown(report, metrics))
    plot(root, report, metrics)
