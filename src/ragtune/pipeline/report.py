"""The run report (`RunReport`, what `ragtune run` returns and prints) and its report.md, report.json and PNG plots
in the run directory."""

from __future__ import annotations

from pathlib import Path
from statistics import fmean
from typing import Any, TypedDict

from ragtune.atomic import write_json, write_text
from ragtune.pipeline.budget import describe_shrink
from ragtune.pipeline.report_plots import plot


class Comparison(TypedDict, total=False):
    delta: float
    p_value: float
    p_holm: float  # Holm-adjusted over the round's family: every metric against every baseline


class EvaluateRecord(TypedDict, total=False):
    """A round's retriever on the test split, and its paired t-tests per metric against the baselines (and, when
    the run has them, the train-pairs-only retriever and the previous round's)."""

    metrics: dict[str, float]
    vs_bm25: dict[str, Comparison]
    vs_zero_shot: dict[str, Comparison]
    vs_train_only: dict[str, Comparison]
    vs_previous_round: dict[str, Comparison]


class RoundReport(TypedDict, total=False):
    """One round: every stage's metrics; `preferences` with ppo or dpo, `reward_model` and `ppo` with ppo, `guard`
    with the guard on, `rl_eval` with rl_eval_docs."""

    round: int
    filter: dict[str, Any]
    retriever: dict[str, Any]
    guard: dict[str, Any]
    evaluate: EvaluateRecord
    difficulty: dict[str, Any]
    quality: dict[str, Any]
    """What the round's generator wrote (evaluate/generator_quality.py)."""
    rl_eval: dict[str, Any]
    curriculum: dict[str, Any]
    """Round k >= 1 with `retriever.curriculum`: the training queries scored by round k-1's retriever."""
    preferences: dict[str, Any]
    reward_model: dict[str, Any]
    ppo: dict[str, Any]
    dpo: dict[str, Any]
    grpo: dict[str, Any]


class RunReport(TypedDict, total=False):
    name: str
    data: str
    subset: dict[str, Any]
    unlabeled: bool
    baselines: dict[str, dict[str, float]]
    """"bm25" and "zero_shot": metric -> value on the test split."""
    train_only: dict[str, Any]
    """With train_only_baseline: the retriever trained on the train pairs alone, and its evaluation."""
    holdout: dict[str, Any]
    guard_queries: dict[str, Any]
    """With guard.decide_on: other_generator: the generate summary of the decide queries another generator wrote."""
    style: dict[str, Any]
    shipped: dict[str, Any]
    """With the guard: which retriever ships (zero-shot or a round's), why, and its test figures."""
    rounds: list[RoundReport]
    stages: dict[str, dict[str, Any]]
    """Every stage of the manifest: {"seconds", "status"}."""
    executed: list[str]
    """The stages this invocation ran (the others were reused)."""
    budget: dict[str, Any]
    """With `budget.minutes`: the calibration, the scale chosen, the changed knobs and each stage's expected
    seconds (pipeline/budget.py)."""


def _fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def _p_cell(row: Comparison) -> str:
    if "p_value" not in row:
        return ""
    return _fmt_p(row["p_value"]) + (" *" if row.get("p_holm", 1.0) <= 0.05 else "")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def quarter_means(curve: list[dict]) -> tuple[float, float, float, float] | None:
    """Mean reward and KL of the first and of the last quarter of an RL curve's logged steps (reward first, reward
    last, KL first, KL last); None under 8 steps. One logged step's reward is a few groups' mean and swings widely;
    the quarters show whether the policy learned."""
    n = len(curve) // 4
    if n < 2:
        return None
    first, last = curve[:n], curve[-n:]
    r0, r1, k0, k1 = (fmean(c.get(k) or 0.0 for c in part) for k in ("reward_mean", "kl") for part in (first, last))
    return r0, r1, k0, k1


def _quarters(curve: list[dict]) -> str:
    q = quarter_means(curve)
    if q is None:
        return ""
    r0, r1, k0, k1 = q
    return (f" (first and last logged step; mean of the first and last quarter {r0:.3f} -> {r1:.3f}, "
            f"KL {k0:.3f} -> {k1:.3f})")


def flat_group_share(curve: list[dict]) -> float | None:
    """The share of GRPO's sample groups whose rewards were all equal (trl's `frac_reward_zero_std`), averaged over
    the logged steps: such a group has no advantage and teaches nothing, so a sparse reward part can leave GRPO
    without a gradient. None when the curve does not record it (PPO, DPO, older runs)."""
    shares = [c["flat_groups"] for c in curve if c.get("flat_groups") is not None]
    return fmean(shares) if shares else None


def _flat_groups(curve: list[dict]) -> str:
    share = flat_group_share(curve)
    if share is None:
        return ""
    return f"; {100 * share:.0f}% of the sample groups had one reward for all samples (no signal)"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _p(ev: dict, name: str, metric: str) -> str:
    return _p_cell(ev.get(f"vs_{name}", {}).get(metric, {}))


def p_note(report: RunReport, metric: str) -> str:
    k = max((r["evaluate"].get("comparisons", 0) for r in report["rounds"]), default=0)
    return (f"p-values: paired t-test on per-query {metric}"
            + (f"; * survives Holm's correction at 0.05 over the round's {k} comparisons (every metric against "
               "every reference in the table)." if k else "."))


def retrieval_lines(report: RunReport, main: list[str]) -> list[str]:
    train_only = report.get("train_only")
    cols = ["BM25", "zero-shot"] + (["train-only"] if train_only else []) + ["previous round"]
    lines = ["| system | " + " | ".join(main) + " | " + " | ".join(f"p vs {c}" for c in cols) + " |",
             "|---|" + "---|" * (len(main) + len(cols))]
    blank = " |" * len(cols)
    for name, label in (("bm25", "BM25"), ("zero_shot", "zero-shot encoder")):
        lines.append(f"| {label} | " + " | ".join(f"{report['baselines'][name][m]:.4f}" for m in main) + " |"
                     + blank)
    if train_only:
        ev = train_only["evaluate"]
        lines.append("| train pairs only | " + " | ".join(f"{ev['metrics'][m]:.4f}" for m in main) + " | "
                     + " | ".join(_p(ev, n, main[0]) for n in ("bm25", "zero_shot")) + " | | |")
    for r in report["rounds"]:
        ev = r["evaluate"]
        names = ["bm25", "zero_shot"] + (["train_only"] if train_only else []) + ["previous_round"]
        label = " (ColBERT)" if r["retriever"].get("kind") == "colbert" else ""
        lines.append(f"| round {r['round']} retriever{label} | " + " | ".join(f"{ev['metrics'][m]:.4f}" for m in main)
                     + " | " + " | ".join(_p(ev, n, main[0]) for n in names) + " |")
    return lines


def quality_lines(report: RunReport) -> list[str]:
    rows = [(r["round"], r["quality"]) for r in report["rounds"] if r.get("quality", {}).get("queries")]
    if not rows:
        return []
    lines = ["## Generator quality per round", "",
             "Every query the round's generator wrote (kept or not). Ranks over the whole corpus; difficulty under the "
             "round's retriever; copy rate = longest common substring with the document / query length.", "",
             "| round | queries | kept | BM25 top-1 | BM25 top-10 | retriever top-1 | retriever top-10 | in band | "
             "mean difficulty | copy rate | verbatim | words | duplicates | questions |",
             "|---|" + "---|" * 13]
    for k, q in rows:
        lines.append(f"| {k} | {q['queries']} | {_pct(q.get('kept_fraction'))} | {_pct(q['bm25_top1'])} | "
                     f"{_pct(q['bm25_top10'])} | {_pct(q['retriever_top1'])} | {_pct(q['retriever_top10'])} | "
                     f"{_pct(q['in_band'])} {q['band']} | {q['mean_difficulty']:.3f} | {q['copy_rate']:.3f} | "
                     f"{_pct(q['verbatim_share'])} | {q['mean_words']:.1f} | {_pct(q['duplicate_rate'])} | "
                     f"{_pct(q['question_share'])} |")
    lines += ["", "Difficulty histograms (10 bins over [0, 1]): "
              + "; ".join(f"round {k}: {q['difficulty_hist']}" for k, q in rows), ""]
    styled = [(k, q["style"]) for k, q in rows if q.get("style")]
    if styled:
        lines += ["Style against the target examples (vocabulary overlap: share of query words found in the "
                  "examples' vocabulary; for the examples, leave-one-out):", "",
                  "| queries | mean words | questions | vocabulary overlap |", "|---|---|---|---|"]
        s0 = styled[0][1]
        lines.append(f"| {s0['examples']} target examples | {s0['examples_mean_words']:.1f} | "
                     f"{_pct(s0['examples_question_share'])} | {_pct(s0['examples_vocab_overlap'])} |")
        for k, st in styled:
            lines.append(f"| round {k} generated | {st['mean_words']:.1f} | {_pct(st['question_share'])} | "
                         f"{_pct(st['vocab_overlap'])} |")
        lines.append("")
    return lines


def feedback_lines(r: dict) -> list[str]:
    lines = []
    if "preferences" in r:
        pr = r["preferences"]
        lines.append(f"- preferences: {pr.get('train pairs')} train / {pr.get('heldout pairs')} held-out pairs"
                     + (f", decided by {pr['decided_by']}" if pr.get("decided_by") else ""))
    if "reward_model" in r:
        rm = r["reward_model"]
        ci = rm.get("heldout_ci95")
        lines.append(f"- reward model: held-out accuracy {rm.get('heldout_accuracy', float('nan')):.3f}"
                     + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f}, n={rm['heldout_pairs']}, binomial p vs 0.5 = "
                        f"{_fmt_p(rm.get('heldout_p_vs_chance'))})" if ci else "")
                     + (f"; trained on {rm['train_pairs_within_max_length']} of {rm['train_pairs']} pairs"
                        if "train_pairs_within_max_length" in rm else ""))
        for c, g in (rm.get("heldout_by_criterion") or {}).items():
            lines.append(f"  - pairs decided by {c}: accuracy {g['accuracy']:.3f} "
                         f"(95% CI {g['ci95'][0]:.3f}-{g['ci95'][1]:.3f}, n={g['pairs']})")
    if "ppo" in r:
        pp = r["ppo"]
        lines.append(f"- PPO: {pp['updates']} updates, mean reward {pp['reward_first']:.3f} -> "
                     f"{pp['reward_last']:.3f}, KL {pp['kl_last']:.2f}{_quarters(pp.get('curve') or [])}")
    if "dpo" in r:
        dp = r["dpo"]
        lines.append(f"- DPO: {dp['pairs']} pairs, {dp['steps']} steps, loss {_num(dp['loss_first'])} -> "
                     f"{_num(dp['loss_last'])}")
    if "grpo" in r:
        gp = r["grpo"]
        lines.append(f"- GRPO: {gp['steps']} steps on {gp['prompts']} prompts, reward "
                     f"{_num(gp['reward_first'])} -> {_num(gp['reward_last'])}{_quarters(gp.get('curve') or [])}"
                     f"{_flat_groups(gp.get('curve') or [])}")
    if "rl_eval" in r:
        e = r["rl_eval"]
        rw = e["reward"]
        cpu = e.get("rl_cpu_seconds")
        gap = e.get("gap") or {}
        lines.append(f"- RL effect on {e['documents']} held-out documents (loop reward, before -> after): "
                     f"{rw['before']:.3f} -> {rw['after']:.3f} (delta {rw['delta']:+.3f}, paired p "
                     f"{_fmt_p(rw.get('p_value'))}); kept {_pct(e['kept']['before'])} -> {_pct(e['kept']['after'])}, "
                     f"in band {e['band']['before']:.3f} -> {e['band']['after']:.3f}, reciprocal rank "
                     f"{e['rr']['before']:.3f} -> {e['rr']['after']:.3f}"
                     + (f", BM25 gap {gap['before']:.3f} -> {gap['after']:.3f}" if gap.get("after") or
                        gap.get("before") else "")
                     + f", copy rate {e['copy']['before']:.3f} -> {e['copy']['after']:.3f}, words "
                     f"{e['words']['before']:.1f} -> {e['words']['after']:.1f}"
                     + (f"; {cpu / 60:.1f} CPU min, delta per CPU minute "
                        f"{e['reward_delta_per_cpu_minute']:+.4f}" if cpu else ""))
    return lines


def guard_lines(report: RunReport) -> list[str]:
    ship = report.get("shipped")
    if not ship:
        return []
    other = report.get("guard_queries")
    on = (f"{other.get('queries')} queries another generator wrote for the decide documents (unfiltered)" if other
          else "the held-out pseudo queries")
    lines = ["## Guard (no target labels)", "",
             f"Held out: {report.get('holdout')}. Decision per round on {on} (one-sided paired t-test, trained > "
             "zero-shot):", "",
             "| round | queries | trained | zero-shot | delta | p | ships |", "|---|---|---|---|---|---|---|"]
    for r in report["rounds"]:
        g = r.get("guard")
        if g:
            lines.append(f"| {r['round']} | {g['queries']} | {g['trained']:.4f} | {g['zero_shot']:.4f} | "
                         f"{g['delta']:+.4f} | {_fmt_p(g['p_one_sided'])} | {g['ships']} |")
    test = ship["test"]
    what = "the zero-shot encoder" if ship["ships"] == "zero_shot" else f"the round {ship['round']} retriever"
    lines += ["", f"**Shipped: {what}** ({ship['reason']}). Its test figures, read after the decision: "
              + ", ".join(f"{m} {v:.4f}" for m, v in test.items() if m in ("ndcg@10", "recall@100")), ""]
    return lines


def to_markdown(report: RunReport, metrics: list[str]) -> str:
    main = [m for m in ("ndcg@10", "recall@100") if m in metrics] or metrics[:2]
    lines = [f"# ragtune run: {report['name']}", "", f"data: `{report['data']}` (subset: {report['subset']}"
             + (", unlabeled: no labeled pair reaches the retriever" if report.get("unlabeled") else "") + ")", "",
             "## Retrieval on the test split", "", *retrieval_lines(report, main), "",
             p_note(report, main[0]), "", *guard_lines(report), *quality_lines(report), "## Per round", ""]
    if report.get("style"):
        lines += [f"Style adaptation: {report['style']}", ""]
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
        lines += checkpoint_lines(r["retriever"])
        if "wise_ft" in r["retriever"]:
            curve = ", ".join(f"{a} {v:.4f}" for a, v in r["retriever"]["wise_ft_dev"].items())
            lines.append(f"- WiSE-FT kept {r['retriever']['wise_ft']:g} of the trained weights (the rest the start's); "
                         f"dev score by share: {curve}")
        dd = r["difficulty"]
        lines.append(f"- difficulty: mean {dd['mean_difficulty']:.3f}, source ranked first {dd['rank1_fraction']:.1%}")
        lines += feedback_lines(r)  # type: ignore[arg-type]
        lines.append("")
    lines += budget_lines(report)
    expected = report.get("budget", {}).get("expected", {})
    lines += ["## Wall time per stage", "", "| stage | seconds | CPU seconds | ran now |"
              + (" expected seconds |" if expected else ""), "|---|---|---|---|" + ("---|" if expected else "")]
    for name, st in report["stages"].items():
        cpu = st.get("cpu_seconds")
        lines.append(f"| {name} | {st['seconds'] or 0:.1f} | {'' if cpu is None else f'{cpu:.1f}'} | "
                     f"{'yes' if name in report['executed'] else 'cached'} |"
                     + (f" {expected[name]:.0f} |" if name in expected else " |" if expected else ""))
    lines += ["", "Plots: plots/retrieval.png, plots/generator.png (generator quality per round), plots/rl.png "
              "(PPO/GRPO reward and KL), plots/stages.png"]
    return "\n".join(lines) + "\n"


def budget_lines(report: RunReport) -> list[str]:
    b = report.get("budget")
    if not b:
        return []
    lines = ["## Time budget", "",
             f"- {b['budget_minutes']:g} min on {b['cpu']}; calibration {b['calibration_seconds']:.0f} s (encoder "
             f"{b['units']['encode_doc']:.4f} s per document, SFT step {b['units']['sft_step']:.2f} s)",
             f"- the configured workload was expected to take {b['full_workload_seconds'] / 60:.1f} min; "
             + (f"shrunk {describe_shrink(b)}" if b["changes"] else "it ran as configured"),
             f"- expected {sum(b['expected'].values()) / 60:.1f} min for the stages"
             + ("" if b["fits"] else " (over budget even at budget.min_scale)"), ""]
    return lines


def checkpoint_lines(rr: dict[str, Any]) -> list[str]:
    """Which of the retriever's checkpoints the round kept (`retriever.keep_checkpoint`), when a dev slice chose one."""
    best = rr.get("best_checkpoint")
    if not best:
        return []
    step, last = best.rsplit("-", 1)[-1], rr.get("global_step")
    if rr.get("kept_checkpoint") == "last":
        return [f"- retriever: kept the last checkpoint (step {last}); the dev slice's best was step {step} "
                f"(dev {rr['best_metric']:.4f})"]
    return [f"- retriever: kept the checkpoint best on the dev slice, step {step} of {last} "
            f"(dev {rr['best_metric']:.4f})"]


def write_run_report(root: Path, report: RunReport, metrics: list[str]) -> None:
    write_json(root / "report.json", report)
    write_text(root / "report.md", to_markdown(report, metrics))
    plot(root, report, metrics)
