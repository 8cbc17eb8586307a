"""A run's time budget: time a short calibration on this machine, predict each stage's duration, and shrink the
workload (within documented bounds) when the machine is too slow for the budget.

The calibration measures two unit costs, the encoder's seconds per corpus document (the run's encoder, dtype and
batch) and the generator's seconds per LoRA SFT step (the run's generator, batch and cutoff_len; the median of three
half-length steps). Each stage's expected seconds are `COEF[part] x unit cost x workload` (workload: documents,
steps, rollouts of the config); the coefficients were fitted on two `ragtune demo` runs
(`benchmarks/demo_budget.py fit`, BENCHMARKS.md) and hold as long as a stage's cost is dominated by the same
model's matmuls as its unit. When the expected total is over the budget, the workload shrinks in two phases, each
by the first factor of `SCALES` that fits:
1. the feedback stages (reward-model and PPO steps, or DPO or GRPO steps), down to `min_feedback_scale`: they
   improve the generator of the next round, so no retriever of the round they follow learns less for it (in a
   one-round run such as the demo, nothing in the results table depends on them);
2. then everything else together (SFT and retriever steps, generated documents, corpus documents), down to
   `min_scale` of what the config asked for; the feedback stages stay at their floor (or follow, if it is higher).

The decision is saved in `<run>/budget.json`, keyed by the machine and every workload setting: rerunning the same
run on the same machine reuses it without measuring, so a finished run's stages stay cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ragtune.atomic import write_json
from ragtune.config import ConfigModel

# the run config (pipeline.loop.RunConfig, which imports this module) is typed by name only
RunConfig = Any

# seconds per (unit x workload): the geometric mean over two `ragtune demo budget.minutes=1000` runs on 2026-12-02,
# one AMD EPYC (AVX-512, AVX512-BF16, no AMX; 2 cores) as it is and one with torch, oneDNN and MKL capped at AVX2
# (`benchmarks/demo_budget.py fit`, BENCHMARKS.md "The demo adapts to the machine"); "enc" parts scale with the
# encoder's seconds per document, "sft" parts with the SFT step. Generation has two: bf16 where the CPU multiplies
# it natively (fitted on the first run alone), fp32 elsewhere (the second run alone).
COEF: dict[str, tuple[str, float]] = {
    "baselines": ("enc", 0.746),
    # fitted at 1.7 when trl's loss ran the LM head on every position; scoring answer positions only made the step
    # 1.77x faster (benchmarks/sft_speed.py), and a budgeted demo on an AVX2-only EPYC then took 0.59x the 1.7
    # prediction, so 1.7 / 1.77
    "sft": ("sft", 0.96),
    "generate": ("sft", 0.106),
    "generate_bf16": ("sft", 0.0758),
    "filter": ("enc", 0.195),
    "retriever": ("enc", 1.41),
    "evaluate": ("enc", 0.783),
    "difficulty": ("enc", 0.117),
    # fitted at 2.09 with trl's default gradient checkpointing on; without it a step is 1.27x faster
    # (benchmarks/rl_speed.py on an AVX2-only EPYC), so 2.09 / 1.27
    "reward_model": ("sft", 1.65),
    "ppo": ("sft", 1.03),
}
# not fitted on the demo (which runs PPO): GRPO completions cost as PPO rollouts; a DPO step of 8 pairs took 2.55x
# a reward-model step of 4 (benchmarks/rl_speed.py, both float32 without checkpointing, DPO's LM head compact)
COEF["dpo"], COEF["grpo"] = ("sft", round(COEF["reward_model"][1] * 64.1 / 25.1, 2)), COEF["ppo"]
SCALES = (1.0, 0.85, 0.7, 0.6, 0.5, 0.4, 0.3, 0.25)
CALIBRATION_DOCS = 64


class BudgetConfig(ConfigModel):
    minutes: float | None = Field(None, gt=0)
    """Wall-clock budget of the run, its calibration included; null = no calibration, the configured workload runs
    as is. The cost model is fitted on CPU runs (the SFT step is timed on the CPU): on a GPU leave it null."""
    min_scale: float = Field(0.5, gt=0, le=1)
    """The smallest fraction of the configured workload the run shrinks to (SFT and retriever steps, generated
    documents, corpus documents); a machine too slow even then runs over budget and says so."""
    min_feedback_scale: float = Field(0.25, gt=0, le=1)
    """The smallest fraction of the feedback stages' steps (reward model and PPO, DPO, GRPO), which shrink first;
    1 = they shrink with everything else, as `min_scale` says."""


def cpu_model() -> str:
    """The CPU's model name and the variables that cap which instructions the libraries use."""
    from ragtune.hardware import cpu_name, isa_caps

    caps = isa_caps()
    return cpu_name() + (f" ({' '.join(caps)})" if caps else "")


# ---------------------------------------------------------------- the calibration


def time_encoder(cfg: RunConfig, texts: list[str]) -> float:
    """Seconds per document of the run's zero-shot encoding (dtype, batch), after one warm-up batch."""
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    dense = DenseRetriever(DenseConfig(model=cfg.encoder, dtype=cfg.dense_dtype, cache=False))
    dense.encode(texts[:8])
    rest = texts[8:] or texts
    start = time.perf_counter()
    dense.encode(rest)
    return (time.perf_counter() - start) / len(rest)


def time_sft_step(cfg: RunConfig, repeats: int = 3) -> tuple[float, float]:
    """(seconds of one LoRA SFT step at the run's batch and cutoff_len, seconds spent converting the generator to
    HF format, 0 when it was cached). After a short warm-up step, the median of `repeats` steps at half the
    cutoff_len, doubled: one step alone varied by 1.5x from one calibration to the next on a 2-core VM, and a
    step's cost grows with its tokens. The step is a probe of the machine's speed with this generator, also the unit
    of generation, reward-model and PPO costs, so it stays the same whatever `sft.lora_layers` and
    `sft.max_prompt_tokens` say: the LoRA covers every block, the loss every position."""
    import statistics

    import torch
    from peft import get_peft_model

    from ragtune.models import load_causal_lm, resolve_causal_lm

    start = time.perf_counter()
    path = resolve_causal_lm(cfg.generator)
    converted = time.perf_counter() - start
    model, _ = load_causal_lm(path, dtype="float32", device="cpu")
    model = get_peft_model(model, cfg.sft.lora_config("CAUSAL_LM"))
    if cfg.sft.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    vocab = model.get_input_embeddings().weight.shape[0]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.sft.bf16)  # auto resolved by run_loop

    def step(batch: int, length: int) -> float:
        ids = torch.randint(0, vocab, (batch, length), generator=gen)
        t0 = time.perf_counter()
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - t0

    half = max(min(cfg.sft.cutoff_len, 512) // 2, 1)
    step(1, 32)
    return 2 * statistics.median(step(cfg.sft.per_device_train_batch_size, half) for _ in range(repeats)), converted


def calibrate(cfg: RunConfig, src: Path) -> tuple[dict[str, float], float]:
    """({"encode_doc", "sft_step"} seconds on this machine, seconds spent converting the generator): the first
    documents of `src`'s corpus for the encoder."""
    from itertools import islice

    from ragtune.data.beir import iter_corpus

    texts = [d.content for d in islice(iter_corpus(src), CALIBRATION_DOCS + 8)]
    encode_doc = time_encoder(cfg, texts)
    sft_step, converted = time_sft_step(cfg)
    return {"encode_doc": encode_doc, "sft_step": sft_step}, converted


# ---------------------------------------------------------------- the cost model


def _count(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _judged(path: Path) -> int:
    from ragtune.data.beir import load_qrels

    return len(load_qrels(path)) if path.exists() else 0


def totals(cfg: RunConfig, src: Path) -> dict[str, int]:
    """Documents, test and train queries of the data folder."""
    return {"docs": _count(src / "corpus.jsonl"), "test": _judged(src / "qrels" / f"{cfg.test_split}.tsv"),
            "train": 0 if cfg.unlabeled else _judged(src / "qrels" / "train.tsv")}


def sizes(cfg: RunConfig, total: dict[str, int]) -> dict[str, int]:
    """Documents, test and train queries the run holds after its subset."""
    s = cfg.subset
    return {"docs": min(total["docs"], s.corpus_docs or total["docs"]),
            "test": min(total["test"], s.test_queries or total["test"]),
            "train": min(total["train"], s.train_queries or total["train"])}


def _steps(settings: Any, rows: int) -> int:
    if settings.max_steps > 0:
        return settings.max_steps
    per_step = settings.per_device_train_batch_size * getattr(settings, "gradient_accumulation_steps", 1)
    return max(1, math.ceil(settings.num_train_epochs * rows / per_step))


def _generation_part(cfg: RunConfig) -> str:
    """Generation runs in bf16 where the CPU multiplies it natively (`generate.dtype: auto`), which the fp32 SFT step
    does not show: it has its own coefficient."""
    from ragtune.hardware import auto_dtype

    dtype = cfg.generate.dtype if cfg.generate.dtype != "auto" else auto_dtype("cpu")
    return "generate_bf16" if dtype == "bfloat16" else "generate"


def workloads(cfg: RunConfig, n: dict[str, int]) -> dict[str, dict[str, float]]:
    """Each stage's workload: cost-model part (a key of COEF) -> multiples of its unit (documents encoded, SFT
    steps, rollouts)."""
    gen = cfg.generate
    n_gen = (gen.sample_num or n["docs"]) * gen.query_per_document * gen.sampling.max_new_tokens / 24
    ret = cfg.retriever
    rows = ret.per_device_train_batch_size * (2 + getattr(ret, "neg_nums", 1))
    evaluate = {"evaluate": float(n["docs"] + n["test"])}

    def per_round(r: int) -> dict[str, dict[str, float]]:
        # rounds k >= 1 may write more candidates per document (for a difficulty filter to choose from)
        g = n_gen * cfg.candidates_per_document / gen.query_per_document if r and cfg.candidates_per_document \
            else n_gen
        return {"generate": {_generation_part(cfg): g}, "filter": {"filter": g},
                "retriever": {"retriever": float(_steps(ret, n["train"] + g) * rows)}, "evaluate": evaluate,
                "difficulty": {"difficulty": g}}

    feedback = {
        "ppo": {"reward_model": {"reward_model": float(_steps(cfg.reward, cfg.rl_prompts))},
                "ppo": {"ppo": float(cfg.ppo.steps * cfg.ppo.batch_size)}},
        "dpo": {"dpo": {"dpo": float(_steps(cfg.dpo, cfg.rl_prompts))}},
        "grpo": {"grpo": {"grpo": float(_steps(cfg.grpo, cfg.rl_prompts) * cfg.grpo.num_generations)}},
        "none": {},
    }[cfg.rl]
    out: dict[str, dict[str, float]] = {"baselines": {"baselines": float(n["docs"] + n["test"])}}
    if cfg.train_only_baseline and not cfg.unlabeled:
        only_rows = float(_steps(ret, n["train"]) * rows)
        out["train_only"] = {"retriever": only_rows, **evaluate}
    for r in range(cfg.rounds):
        if r == 0 and cfg.generator_adapter is None:
            out["round-0/sft"] = {"sft": float(_steps(cfg.sft, max(n["train"], 1)))}
        for stage, parts in per_round(r).items():
            out[f"round-{r}/{stage}"] = parts
        if r < cfg.rounds - 1 or cfg.rl_after_last_round:
            for stage, parts in feedback.items():
                out[f"round-{r}/{stage}"] = parts
    return out


def predict(cfg: RunConfig, n: dict[str, int], units: dict[str, float]) -> dict[str, float]:
    """Expected seconds of each stage of the run."""
    unit_of = {"enc": units["encode_doc"], "sft": units["sft_step"]}
    return {stage: sum(COEF[part][1] * unit_of[COEF[part][0]] * work for part, work in parts.items())
            for stage, parts in workloads(cfg, n).items()}


FEEDBACK_KNOBS = {"ppo": [("reward", "max_steps"), ("ppo", "steps")], "dpo": [("dpo", "max_steps")],
                  "grpo": [("grpo", "max_steps")], "none": []}
"""The steps of each `rl` method's stages, shrunk by the feedback scale."""


def scaled(cfg: RunConfig, scale: float, feedback: float | None = None
           ) -> tuple[RunConfig, dict[str, tuple[int, int]]]:
    """The config with its scalable knobs multiplied by `scale`, its feedback stages' steps by `feedback` (default:
    `scale`), each at least 1, and what changed."""
    feedback = scale if feedback is None else feedback
    if scale >= 1 and feedback >= 1:
        return cfg, {}
    changes: dict[str, tuple[int, int]] = {}

    def shrink(label: str, value: int | None, factor: float) -> int | None:
        if value is None or value <= 0 or factor >= 1:
            return value
        new = max(1, round(value * factor))
        if new != value:
            changes[label] = (value, new)
        return new

    def settings(section: str, field: str, factor: float) -> ConfigModel:
        obj = getattr(cfg, section)
        value = getattr(obj, field)
        new = shrink(f"{section}.{field}", value, factor)
        # only a changed knob is marked as set: an untouched one keeps its stage's key
        return obj if new == value else obj.model_copy(update={field: new})

    update = {section: settings(section, field, scale) for section, field in
              [("sft", "max_steps"), ("generate", "sample_num"), ("retriever", "max_steps")]}
    update |= {section: settings(section, field, feedback) for section, field in FEEDBACK_KNOBS[cfg.rl]}
    update["subset"] = settings("subset", "corpus_docs", scale)
    # model_copy keeps the settings' "set by the user" marks, so the resolved config.yaml records the shrunk values
    return cfg.model_copy(update=update), changes


# ---------------------------------------------------------------- the decision


def budget_key(cfg: RunConfig, src: Path) -> str:
    """The machine and every setting the plan depends on (not the filters or metrics, which cost next to nothing)."""
    parts = cfg.model_dump(mode="json", include={"budget", "subset", "rounds", "generator", "sft", "generate",
                                                 "encoder", "retriever", "reward", "rl", "ppo", "dpo", "grpo",
                                                 "rl_prompts", "dense_dtype", "test_split", "unlabeled",
                                                 "rl_after_last_round", "candidates_per_document"})
    import torch

    blob = json.dumps([parts, str(src.resolve()), cpu_model(), os.cpu_count(), torch.get_num_threads()],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def describe_shrink(plan: dict[str, Any]) -> str:
    """How the plan shrank the configured workload, in words ("" when it did not)."""
    if not plan["changes"]:
        return ""
    feedback_knobs = {f"{section}.{field}" for knobs in FEEDBACK_KNOBS.values() for section, field in knobs}
    feedback = plan.get("feedback_scale", plan["scale"])
    parts = [f"the feedback stages to {100 * feedback:.0f}%"] \
        if feedback != plan["scale"] and feedback_knobs & set(plan["changes"]) else []
    if plan["scale"] < 1:
        parts.append(f"{'the rest' if parts else 'everything'} to {100 * plan['scale']:.0f}%")
    changed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in plan["changes"].items())
    return f"{' and '.join(parts)} ({changed})"


def _down_to(floor: float) -> list[float]:
    return [s for s in SCALES if s > floor + 1e-9] + [floor]


def shrink_order(b: BudgetConfig) -> list[tuple[float, float]]:
    """The (scale, feedback scale) pairs tried, in order: the feedback stages first, down to min_feedback_scale,
    then everything else down to min_scale."""
    first = [(1.0, f) for f in _down_to(b.min_feedback_scale)]
    return first + [(s, min(s, b.min_feedback_scale)) for s in _down_to(b.min_scale) if s < 1]


def plan_budget(cfg: RunConfig, src: Path, root: Path, log=print) -> tuple[RunConfig, dict[str, Any]]:
    """(the config to run, the plan): calibrate (or reuse `<root>/budget.json`), predict, shrink if over budget.
    `log` receives one line per decision."""
    minutes = cfg.budget.minutes
    assert minutes is not None
    key = budget_key(cfg, src)
    saved = root / "budget.json"
    plan: dict[str, Any] | None = None
    if saved.exists():
        try:
            plan = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            plan = None
        if plan is not None and plan.get("key") != key:
            plan = None
    if plan is not None:
        feedback = plan.get("feedback_scale", plan["scale"])  # a plan saved before the feedback scale existed
        log(f"budget: reusing the plan measured on {plan['measured']} ({saved}): scale {plan['scale']}, feedback "
            f"stages {feedback}")
        run_cfg, _ = scaled(cfg, plan["scale"], feedback)
        return run_cfg, plan

    start = time.perf_counter()
    log(f"budget: {minutes:g} min; calibrating on {cpu_model()} (encoder batches, three short SFT steps)...")
    units, converted = calibrate(cfg, src)
    spent = time.perf_counter() - start
    total = totals(cfg, src)
    left = minutes * 60 - spent
    choice, expected = (1.0, 1.0), {}
    for choice in shrink_order(cfg.budget):
        candidate = scaled(cfg, *choice)[0]
        expected = predict(candidate, sizes(candidate, total), units)
        if sum(expected.values()) <= left:
            break
    run_cfg, changes = scaled(cfg, *choice)
    full = predict(cfg, sizes(cfg, total), units)
    plan = {"key": key, "measured": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "budget_minutes": minutes,
            "calibration_seconds": round(spent, 1), "converted_generator_seconds": round(converted, 1),
            "units": {k: round(v, 5) for k, v in units.items()}, "sizes": sizes(run_cfg, total),
            "full_workload_seconds": round(sum(full.values()), 1), "scale": choice[0], "feedback_scale": choice[1],
            "changes": {k: list(v) for k, v in changes.items()},
            "expected": {k: round(v, 1) for k, v in expected.items()},
            "work": workloads(run_cfg, sizes(run_cfg, total)),
            "fits": sum(expected.values()) <= left}
    write_json(saved, plan)
    return run_cfg, plan
