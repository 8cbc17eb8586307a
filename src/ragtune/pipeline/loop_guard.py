"""The loop's guard stages beyond the guard itself (guard.py): the decide queries written by another generator, and
the run's shipped retriever (the guard's pick over all rounds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.pipeline import guard as guard_mod
from ragtune.pipeline.report import RoundReport
from ragtune.pipeline.rundir import RunDir, StageResult
from ragtune.pipeline.style import SHOTS


def other_generator_stage(cfg, rd: RunDir, d: Path, holdout: StageResult, data_key: str,
                          style_stage: StageResult | None, gen_over: dict[str, Any], rel) -> StageResult:
    """The guard's decide queries from another generator: the run's base model (or `guard.other_generator`) with no
    adapter; its example pairs are the style stage's when the run has one (the target's style), else judged train
    pairs of `sft_data` (or of the data)."""
    g = cfg.guard
    model = g.other_generator or cfg.generator
    over = {k: v for k, v in gen_over.items() if k not in ("few_shot", "few_shot_file", "sample_num")}
    if style_stage is not None:
        shots: Path | tuple[Path, str] = style_stage.out / SHOTS
        over["few_shot_doc_tokens"] = cfg.style.shot_doc_tokens
        source, upstream, inputs = rel(shots), [style_stage.key], []
    else:
        folder = Path(cfg.sft_data or d)
        shots, source = (folder, "train"), {"folder": rel(folder), "split": "train"}
        upstream, inputs = [], [folder] if cfg.sft_data else []
    used = {"other_queries": g.other_queries, "other_shots": g.other_shots, "seed": g.seed}  # not alpha, metric, ...
    key = {"guard": used, "model": model, "template": cfg.template, "generate": over, "shots": source}
    return rd.stage("round-0/guard_queries", key,
                    lambda out: guard_mod.other_generator_queries(d, holdout.out, out, guard_mod.GuardConfig(**used),
                                                                  model, cfg.template, over, shots),
                    upstream=[data_key, holdout.key, *upstream], inputs=inputs)


def shipped(rounds: list[RoundReport], baselines: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The guard's pick over the run: the approved round with the best guard score, else the zero-shot encoder;
    with its test figures (read after the decision, for the report)."""
    approved = [r for r in rounds if r.get("guard", {}).get("ships") == "trained"]
    on = ("another generator's queries for the held-out documents"
          if any(r.get("guard", {}).get("decide_on") == "other_generator" for r in rounds)
          else "the held-out pseudo queries")
    if not approved:
        return {"ships": "zero_shot", "round": None, "test": baselines["zero_shot"],
                "reason": f"no trained retriever beat the zero-shot encoder on {on}"}
    best = max(approved, key=lambda r: r["guard"]["trained"])
    return {"ships": "trained", "round": best["round"], "test": best["evaluate"]["metrics"],
            "vs_zero_shot": best["evaluate"].get("vs_zero_shot"),
            "reason": f"round {best['round']}'s retriever beat zero-shot on {on} "
                      f"(one-sided p={best['guard']['p_one_sided']:.2g})"}
