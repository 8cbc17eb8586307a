"""`ragtune train generator` with stage ppo or grpo: prompts from a corpus, then RL.

The loop (`ragtune run`) uses the same functions; standalone, a user points them at a
BEIR corpus, an SFT adapter and (for PPO) a reward model from `stage: rm`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.atomic import write_json
from ragtune.config import ConfigModel, dump_config
from ragtune.data.beir import load_corpus
from ragtune.data.records import Doc
from ragtune.train.ppo import PPOConfig
from ragtune.train.rl_trl import GRPOTrainConfig

DEFAULT_GENERATOR = "HuggingFaceTB/SmolLM2-135M-Instruct"


class PromptSource(ConfigModel):
    corpus: Path
    """BEIR folder (or corpus.jsonl) whose documents become generation prompts."""
    doc_ids: list[str] | None = None
    """Use exactly these documents (default: a seeded sample of `sample_num`)."""
    sample_num: int = Field(32, ge=1)
    seed: int = 0


def sample_docs(src: PromptSource) -> tuple[dict[str, Doc], list[str]]:
    corpus = load_corpus(src.corpus / "corpus.jsonl" if src.corpus.is_dir() else src.corpus)
    if src.doc_ids is not None:
        missing = [d for d in src.doc_ids if d not in corpus]
        if missing:
            raise ValueError(f"doc_ids not in {src.corpus}: {missing[:5]}")
        return corpus, list(src.doc_ids)
    ids = sorted(corpus)
    return corpus, random.Random(src.seed).sample(ids, min(src.sample_num, len(ids)))


class PPOStageConfig(ConfigModel):
    stage: Literal["ppo"] = "ppo"
    model_name_or_path: str = DEFAULT_GENERATOR
    adapter_name_or_path: Path | None = None
    """SFT adapter; merged into the base, which becomes the PPO reference."""
    reward_model: Path
    """Adapter folder written by `ragtune train generator` with stage: rm."""
    reward_base: str | None = None
    """Base model of the reward model (default: model_name_or_path)."""
    prompts: PromptSource
    output_dir: Path
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    merge: bool = True
    """Also write output_dir/merged: base + SFT + PPO adapter in one folder (what the next round generates with)."""
    device: str = "auto"
    """auto = cuda, then mps, then cpu; the policy, reference and reward model all live there."""


def run_ppo_stage(cfg: PPOStageConfig) -> dict[str, Any]:
    from ragtune.generate.prompts import RL_PROMPT_CHARS, query_messages, user_turn
    from ragtune.hardware import pick_device
    from ragtune.train.ppo import PPOTrainer
    from ragtune.train.reward import RewardScorer

    corpus, docs = sample_docs(cfg.prompts)
    device = pick_device(cfg.device)
    trainer = PPOTrainer(cfg.ppo, cfg.model_name_or_path, sft_adapter=cfg.adapter_name_or_path, device=device)
    raw = {}
    for d in docs:
        rendered = trainer.tokenizer.apply_chat_template(query_messages(corpus[d].content[:RL_PROMPT_CHARS]),
                                                         tokenize=False, add_generation_prompt=True)
        raw[rendered] = user_turn(corpus[d])
    scorer = RewardScorer(cfg.reward_base or cfg.model_name_or_path, cfg.reward_model, device=device)
    history = trainer.train(list(raw), lambda prompts, resp: scorer([raw[p] for p in prompts], resp),
                            cfg.output_dir)
    if cfg.merge:
        merged = trainer.model.model.merge_and_unload()
        merged.save_pretrained(str(cfg.output_dir / "merged"))
        trainer.tokenizer.save_pretrained(str(cfg.output_dir / "merged"))
    _plot_rl(cfg.output_dir, history)
    summary = {"updates": len(history), "prompts": len(raw), "reward_first": history[0]["reward_mean"],
               "reward_last": history[-1]["reward_mean"], "kl_last": history[-1]["kl"],
               "curve": [{k: h[k] for k in ("step", "reward_mean", "kl", "entropy")} for h in history]}
    write_json(cfg.output_dir / "ppo_summary.json", summary)
    dump_config(cfg, cfg.output_dir / "config.yaml")
    return summary


class GRPOStageConfig(GRPOTrainConfig):
    stage: Literal["grpo"] = "grpo"
    prompts: PromptSource
    retriever: Literal["bm25", "dense"] = "bm25"
    dense_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    """Encoder for retriever: dense (e.g. the retriever `ragtune train embedding` wrote)."""
    k: int = Field(100, ge=1)
    band: tuple[float, float] | None = None
    """Shape the reward toward this difficulty band (difficulty = 1 - reciprocal rank); null = plain RR."""
    merge: bool = True


def run_grpo_stage(cfg: GRPOStageConfig) -> dict[str, Any]:
    from ragtune.generate.prompts import user_turn
    from ragtune.retrieval.dense import DenseConfig
    from ragtune.retrieval.factory import index_corpus
    from ragtune.train.rl_trl import RetrievalReward, train_grpo

    corpus, docs = sample_docs(cfg.prompts)
    retriever = index_corpus(cfg.retriever, corpus.values(), dense=DenseConfig(model=cfg.dense_model))
    summary = train_grpo(cfg, [user_turn(corpus[d]) for d in docs], docs,
                         RetrievalReward(retriever.search, k=cfg.k, band=cfg.band))
    if cfg.merge:
        merge_policy(cfg.model_name_or_path, cfg.adapter_name_or_path, cfg.output_dir / "adapter",
                     cfg.output_dir / "merged")
    rewards = [h["reward"] for h in summary["log"] if "reward" in h]
    curve = [{"step": h.get("step", i), "reward_mean": h["reward"], "kl": h.get("kl", 0.0)}
             for i, h in enumerate(summary["log"]) if "reward" in h]
    _plot_rl(cfg.output_dir, curve)
    return {"prompts": len(docs), "steps": summary["steps"], "reward_first": rewards[0] if rewards else None,
            "reward_last": rewards[-1] if rewards else None, "curve": curve}


def merge_policy(model: str, sft_adapter: Path | None, rl_adapter: Path, out: Path) -> None:
    """base (+ SFT adapter) + RL adapter, merged into one folder the next round generates with."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.models import resolve_causal_lm

    base = AutoModelForCausalLM.from_pretrained(resolve_causal_lm(model))
    if sft_adapter is not None:
        base = PeftModel.from_pretrained(base, str(sft_adapter)).merge_and_unload()
    merged = PeftModel.from_pretrained(base, str(rl_adapter)).merge_and_unload()
    merged.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(rl_adapter)).save_pretrained(str(out))


def _plot_rl(out_dir: Path, curve: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curve:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    steps = [h["step"] for h in curve]
    a1.plot(steps, [h["reward_mean"] for h in curve])
    a1.set_title("mean reward")
    a2.plot(steps, [h.get("kl", 0.0) for h in curve])
    a2.set_title("KL to reference")
    for a in (a1, a2):
        a.set_xlabel("update")
    fig.tight_layout()
    fig.savefig(out_dir / "rl_curves.png", dpi=120)
    plt.close(fig)
