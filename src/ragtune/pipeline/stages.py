"""The loop's generator-side stages (the retriever's are in retriever_stage.py). Each takes its inputs as folders and
writes only into `out`.

They glue library functions together; the algorithms live in the layers below
(generate/, filters/, train/, evaluate/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.data.beir import load_corpus, load_queries
from ragtune.data.jsonl import iter_jsonl
from ragtune.train.harness import resume_if_checkpointed


def sft(data: Path, out: Path, model: str, template: str, overrides: dict[str, Any]) -> dict[str, Any]:
    from ragtune.config import build_config
    from ragtune.data.convert_beir import BeirSFTConfig, beir_to_sft
    from ragtune.train.generator.sft import train_generator
    from ragtune.train.generator.sft_config import GeneratorTrainConfig

    conv = beir_to_sft(BeirSFTConfig(data=data, split="train", out=out / "data", name="doc2query"))
    cfg = build_config(GeneratorTrainConfig, {"model_name_or_path": model, "template": template,
                                              "dataset": ["doc2query"], "dataset_dir": str(out / "data"),
                                              "output_dir": str(out / "adapter"), "report_to": ["none"],
                                              **resume_if_checkpointed(out / "adapter"), **overrides}, "sft")
    summary = train_generator(cfg)
    return {"pairs": conv.counts.get("records", 0), **{k: v for k, v in summary.items()
                                                        if isinstance(v, (int, float, str))}}


def generate(data: Path, out: Path, model: str, adapter: Path | None, template: str, round_: int,
             overrides: dict[str, Any]) -> dict[str, Any]:
    from ragtune.config import build_config
    from ragtune.generate.config import GenerateConfig
    from ragtune.generate.generator import generate_queries

    cfg = build_config(GenerateConfig, {"corpus": str(data), "output_dir": str(out), "model_name_or_path": model,
                                        "adapter_name_or_path": str(adapter) if adapter else None,
                                        "template": template, "round": round_, **overrides}, "generate")
    summary = generate_queries(cfg)
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}


def filter_queries(queries: Path, data: Path, out: Path, filters: list) -> dict[str, Any]:
    from ragtune.filters.run import FilterConfig, run_filter

    report = run_filter(FilterConfig(queries=queries, corpus=data, out=out, filters=filters, show_progress=False))
    return {"candidates": report["candidates"], "kept": report["kept"], "kept_fraction": report["kept_fraction"],
            "yield": {s["name"]: [s["in"], s["out"]] for s in report["filters"]}}


def preferences(data: Path, queries: Path, provenance: Path, out: Path, cfg, generator: tuple[str, Path | None],
                max_doc_tokens: int) -> dict[str, Any]:
    """Preference pairs; each prompt is the document cut as generation cut it (the generator's tokenizer)."""
    from ragtune.generate.prompts import user_turn
    from ragtune.models import load_tokenizer
    from ragtune.train.generator.preferences import build_pairs, write_pairs

    texts = load_queries(queries / "queries.jsonl")
    rows = [row for _, row in iter_jsonl(provenance)]
    corpus = load_corpus(data / "corpus.jsonl")
    tok = load_tokenizer(*generator)
    prompts = {d: user_turn(corpus[d], tok, max_doc_tokens) for d in {r["doc_id"] for r in rows}}
    pairs = build_pairs(rows, texts, prompts, cfg)
    return write_pairs(out, pairs, cfg)


def reward_model(prefs: Path, out: Path, model: str, sft_adapter: Path | None, overrides: dict[str, Any]) -> dict:
    """The reward model, on top of the generator that wrote the queries (base + SFT adapter); held-out accuracy with
    its 95% interval, overall and by the criterion that decided each pair."""
    from ragtune.config import build_config
    from ragtune.train.generator.reward import RewardTrainConfig, train_reward_model

    cfg = build_config(RewardTrainConfig, {"model_name_or_path": model, "train_file": str(prefs /
                                           "preferences_train.jsonl"),
                       "adapter_name_or_path": str(sft_adapter) if sft_adapter else None,
                       "eval_file": str(prefs / "preferences_heldout.jsonl"), "output_dir": str(out), **overrides},
                       "reward")
    summary = train_reward_model(cfg)
    scores, meta = out / "heldout_scores.jsonl", prefs / "preferences_heldout.meta.jsonl"
    if scores.is_file() and meta.is_file():
        from ragtune.evaluate.significance import binomial_summary

        groups: dict[str, list[bool]] = {}
        for (_, s), (_, m) in zip(iter_jsonl(scores), iter_jsonl(meta), strict=True):
            groups.setdefault(str(m.get("decided_by")), []).append(bool(s["correct"]))
        summary["heldout_by_criterion"] = {
            k: {"pairs": len(v), "accuracy": sum(v) / len(v),
                "ci95": [binomial_summary(sum(v), len(v))[b] for b in ("ci_low", "ci_high")]}
            for k, v in sorted(groups.items())}
    return summary


def _round_docs(provenance: Path, n: int, seed: int) -> list[str]:
    import random

    docs = sorted({row["doc_id"] for _, row in iter_jsonl(provenance)})
    return random.Random(seed).sample(docs, min(n, len(docs)))


def ppo(data: Path, provenance: Path, rm: Path, out: Path, model: str, sft_adapter: Path | None, ppo_cfg,
        n_prompts: int, seed: int, max_doc_tokens: int | None = None, reward_source: str = "reward_model",
        retriever_model: Path | None = None, retrieval_reward=None) -> dict[str, Any]:
    """PPO against the round's reward model (or the loop's online reward), on prompts for this round's documents."""
    from ragtune.train.generator.ppo_stage import PPOStageConfig, run_ppo_stage
    from ragtune.train.generator.rl import PromptSource

    extra = {"retrieval_reward": retrieval_reward} if retrieval_reward is not None else {}
    cfg = PPOStageConfig(model_name_or_path=model, adapter_name_or_path=sft_adapter, reward_model=rm,
                         output_dir=out, ppo=ppo_cfg, reward_source=reward_source, retriever_model=retriever_model,
                         **resume_if_checkpointed(out),
                         prompts=PromptSource(corpus=data, doc_ids=_round_docs(provenance, n_prompts, seed),
                                              max_doc_tokens=max_doc_tokens), **extra)
    return run_ppo_stage(cfg)


def dpo(prefs: Path, out: Path, model: str, sft_adapter: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    from ragtune.config import build_config
    from ragtune.train.generator.dpo import DPOTrainConfig, train_dpo
    from ragtune.train.generator.rl import merge_policy

    cfg = build_config(DPOTrainConfig, {"model_name_or_path": model, "adapter_name_or_path": sft_adapter,
                                        "train_file": str(prefs / "preferences_train.jsonl"),
                                        "output_dir": str(out / "train"), **resume_if_checkpointed(out / "train"),
                                        **overrides}, "dpo", "dpo")
    summary = train_dpo(cfg)
    merge_policy(model, sft_adapter, out / "train" / "adapter", out / "merged")
    losses = [h["loss"] for h in summary["log"] if "loss" in h]
    return {"pairs": summary["pairs"], "steps": summary["steps"], "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None}


def grpo(data: Path, provenance: Path, retriever_model: Path, out: Path, model: str, sft_adapter: Path | None,
         overrides: dict[str, Any], n_prompts: int, band: tuple[float, float] | None, seed: int,
         kind: str = "bi_encoder", index: str = "flat", max_doc_tokens: int | None = None,
         loop_reward: dict[str, Any] | None = None) -> dict[str, Any]:
    """GRPO with an online reward under the round's retriever (either kind): the loop's reward (filter outcome,
    difficulty band, rank), or with `loop_reward` None the reciprocal rank of the source doc shaped toward `band`."""
    from ragtune.config import build_config
    from ragtune.train.generator.grpo import GRPOStageConfig, run_grpo_stage

    cfg = build_config(GRPOStageConfig, {"model_name_or_path": model, "adapter_name_or_path": sft_adapter,
                                         "output_dir": str(out), "band": band, "loop_reward": loop_reward,
                                         **({"retriever": "colbert", "colbert": {"model": str(retriever_model),
                                                                                 "index": index}}
                                            if kind == "colbert" else
                                            {"retriever": "dense", "dense_model": str(retriever_model)}),
                                         "prompts": {"corpus": str(data), "max_doc_tokens": max_doc_tokens,
                                                     "doc_ids": _round_docs(provenance, n_prompts, seed)},
                                         **resume_if_checkpointed(out), **overrides}, "grpo", "grpo")
    return run_grpo_stage(cfg)
