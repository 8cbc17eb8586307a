"""GRPO for the query generator on trl's GRPOTrainer (LoRA via peft), and its `stage: grpo`.

GRPO needs no learned reward model: `RetrievalReward` scores each sampled query online
with the current retriever (the reciprocal rank of its source document), optionally
shaped toward a target difficulty band, so the generator learns to write queries that
are neither trivial nor unanswerable for the retriever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from ragtune.config import Band
from ragtune.models import DEFAULT_ENCODER
from ragtune.retrieval.colbert import ColbertConfig
from ragtune.train.generator.lm_head import compact_fused_head
from ragtune.train.generator.loop_reward import LoopReward, LoopRewardSettings
from ragtune.train.generator.rl import (
    PolicySettings,
    PolicyTrainConfig,
    PromptSource,
    load_policy,
    merge_policy,
    plot_rl_curves,
    policy_args,
    sample_docs,
    save_policy,
    start_policy_run,
    user_turns,
)
from ragtune.train.harness import train_resuming


class GRPOSettings(PolicySettings):
    """GRPO's settings but its paths (the loop's `grpo:` overrides)."""

    num_generations: int = Field(4, ge=2)
    max_completion_length: int = Field(24, ge=1)
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(0.04, ge=0)
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """How trl scales each sample's advantage (reward minus its group's mean): by the group's standard deviation
    (GRPO), the batch's, or not at all (Dr. GRPO). Under "group" a reward part that alone varies within a group sets
    the advantage whatever its weight; "batch" and "none" keep the parts' weights."""


class GRPOTrainConfig(GRPOSettings, PolicyTrainConfig):
    """GRPO of the policy on given prompts (`stage: grpo` adds where the prompts and the reward come from)."""


class RetrievalReward:
    """Reward of a generated query = reciprocal rank of its source document under `search`.

    With `band=(lo, hi)`, the reward peaks when the query's difficulty (1 - reciprocal rank)
    falls inside the band: 1 - distance to the band.
    """

    __name__ = "retrieval_reward"  # trl logs reward functions by name

    def __init__(self, search: Callable[[dict[str, str], int], dict[str, dict[str, float]]], k: int = 100,
                 band: tuple[float, float] | None = None):
        self.search, self.k, self.band = search, k, band

    def reciprocal_ranks(self, queries: list[str], doc_ids: list[str]) -> list[float]:
        run = self.search({str(i): q if q.strip() else "-" for i, q in enumerate(queries)}, self.k)
        out = []
        for i, doc in enumerate(doc_ids):
            hits = sorted(run.get(str(i), {}).items(), key=lambda kv: (-kv[1], kv[0]))
            rank = next((r for r, (d, _) in enumerate(hits, 1) if d == doc), None)
            out.append(1.0 / rank if rank else 0.0)
        return out

    def __call__(self, prompts: list, completions: list, doc_id: list[str], **_: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        rr = self.reciprocal_ranks(texts, doc_id)
        if self.band is None:
            return rr
        lo, hi = self.band
        return [1.0 - max(lo - (1 - r), 0.0, (1 - r) - hi) for r in rr]


def train_grpo(cfg: GRPOTrainConfig, prompts: list[str], doc_ids: list[str],
               reward: RetrievalReward | LoopReward) -> dict:
    """`prompts`: user turns (the generation instruction with the document); `doc_ids`: their sources."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if len(prompts) != len(doc_ids) or not prompts:
        raise ValueError("GRPO needs one source doc id per prompt, and at least one prompt")
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}], "doc_id": d}
                              for p, d in zip(prompts, doc_ids, strict=True)])
    _, resume = start_policy_run(cfg)
    model, tok = load_policy(cfg)
    args = GRPOConfig(num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                      temperature=cfg.temperature, scale_rewards=cfg.scale_rewards, **policy_args(cfg))
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=data, processing_class=tok,
                          peft_config=cfg.lora_config("CAUSAL_LM"))
    with compact_fused_head():  # the LM head on completion tokens only, on CPU too
        train_resuming(trainer, resume)
    return save_policy(trainer, tok, cfg, {"prompts": len(prompts), "resumed_from": resume})


class GRPOStageConfig(GRPOTrainConfig):
    stage: Literal["grpo"] = "grpo"
    prompts: PromptSource
    retriever: Literal["bm25", "dense", "colbert"] = "bm25"
    dense_model: str = DEFAULT_ENCODER
    """Encoder for retriever: dense (e.g. the retriever `ragtune train embedding` wrote)."""
    colbert: ColbertConfig = Field(default_factory=ColbertConfig)
    """retriever: colbert: `colbert.model` is a `ragtune train colbert` output (`colbert.index`: flat or plaid)."""
    k: int = Field(100, ge=1)
    band: Band | None = None
    """Shape the reward toward this difficulty band (difficulty = 1 - reciprocal rank); null = plain RR."""
    loop_reward: LoopRewardSettings | None = None
    """Score with the loop's reward instead (filter outcome, difficulty band, rank under `dense_model`;
    train/generator/loop_reward.py); `retriever`, `k` and `band` are then unused."""
    merge: bool = True


def run_grpo_stage(cfg: GRPOStageConfig) -> dict[str, Any]:
    from ragtune.hardware import process_state
    from ragtune.models import load_tokenizer
    from ragtune.retrieval.dense import DenseConfig
    from ragtune.retrieval.factory import index_corpus

    corpus, docs = sample_docs(cfg.prompts)
    if cfg.loop_reward is not None:
        reward: RetrievalReward | LoopReward = LoopReward(corpus, cfg.dense_model, cfg.loop_reward)
    else:
        retriever = index_corpus(cfg.retriever, corpus.values(), dense=DenseConfig(model=cfg.dense_model),
                                 colbert=cfg.colbert)
        reward = RetrievalReward(retriever.search, k=cfg.k, band=cfg.band)
    turns = user_turns(cfg.prompts, corpus, docs, load_tokenizer(cfg.model_name_or_path, cfg.adapter_name_or_path))
    summary = train_grpo(cfg, turns, docs, reward)
    rewards = [h["reward"] for h in summary["log"] if "reward" in h]
    curve = [{"step": h.get("step", i), "reward_mean": h["reward"], "kl": h.get("kl", 0.0),
              "flat_groups": h.get("frac_reward_zero_std")}
             for i, h in enumerate(summary["log"]) if "reward" in h]
    if process_state().is_main_process:  # under `accelerate launch` the main process writes the outputs
        if cfg.merge:
            merge_policy(cfg.model_name_or_path, cfg.adapter_name_or_path, cfg.output_dir / "adapter",
                         cfg.output_dir / "merged")
        plot_rl_curves(cfg.output_dir, curve)
    return {"prompts": len(docs), "steps": summary["steps"], "reward_first": rewards[0] if rewards else None,
            "reward_last": rewards[-1] if rewards else None, "curve": curve, "world_size": summary["world_size"],
            "resumed_from": summary["resumed_from"]}
