"""What the generator's RL stages share: prompts sampled from a corpus, the policy config of the trl-based
stages (DPO, GRPO), loading, saving and merging the policy, and the reward/KL curves.

The loop (`ragtune run`) uses the same functions as `ragtune train generator stage=ppo|dpo|grpo`; standalone,
a user points them at a BEIR corpus, an SFT adapter and (for PPO) a reward model from `stage: rm`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pydantic import Field

from ragtune.atomic import write_json
from ragtune.config import ConfigModel, dump_config
from ragtune.data.beir import load_corpus
from ragtune.data.records import Doc
from ragtune.models import DEFAULT_GENERATOR, load_causal_lm
from ragtune.train.harness import LoraSettings, ResumeSettings, save_final_model
from ragtune.train.precision import Bf16


class PromptSource(ConfigModel):
    corpus: Path
    """BEIR folder (or corpus.jsonl) whose documents become generation prompts."""
    doc_ids: list[str] | None = None
    """Use exactly these documents (default: a seeded sample of `sample_num`)."""
    sample_num: int = Field(32, ge=1)
    seed: int = 0
    max_doc_tokens: int | None = Field(None, ge=8)
    """Cut each document to this many tokens of the policy's tokenizer, as `ragtune generate` does (the loop sets its
    generate.max_doc_tokens); null = the first RL_PROMPT_CHARS characters."""


def sample_docs(src: PromptSource) -> tuple[dict[str, Doc], list[str]]:
    corpus = load_corpus(src.corpus / "corpus.jsonl" if src.corpus.is_dir() else src.corpus)
    if src.doc_ids is not None:
        missing = [d for d in src.doc_ids if d not in corpus]
        if missing:
            raise ValueError(f"doc_ids not in {src.corpus}: {missing[:5]}")
        return corpus, list(src.doc_ids)
    ids = sorted(corpus)
    return corpus, random.Random(src.seed).sample(ids, min(src.sample_num, len(ids)))


def user_turns(src: PromptSource, corpus: dict[str, Doc], docs: list[str], tokenizer) -> list[str]:
    """The user turn of each document's prompt, cut as `src` says."""
    from ragtune.generate.prompts import user_turn

    return [user_turn(corpus[d], tokenizer, src.max_doc_tokens) for d in docs]


def dataset_prompts(names: list[str], dataset_dir: Path, seed: int, max_samples: int | None
                    ) -> list[list[dict[str, str]]]:
    """The prompt chat of every row of the dataset_info.json datasets `names` (its answer dropped; ranking rows
    too): PPO's prompts when they come from `dataset` instead of a corpus."""
    from ragtune.data.lf_datasets import answer_records, read_registered
    from ragtune.generate.prompts import record_messages

    out = []
    for name in names:
        for where, rec in answer_records(read_registered(name, dataset_dir, seed), "ppo")[:max_samples]:
            messages = record_messages(rec, where)
            out.append(messages[:-1] if messages[-1]["role"] == "assistant" else messages)
    if not out:
        raise ValueError(f"stage ppo: no prompts in {', '.join(names)}")
    return out


class PolicySettings(LoraSettings, ResumeSettings):
    """What DPO and GRPO share: a new LoRA adapter on the generator policy and its optimisation."""

    lora_alpha: float | None = Field(16.0, gt=0)
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "linear"
    max_steps: int = Field(50, ge=1)
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    beta: float = Field(0.1, ge=0)
    """KL (GRPO) / DPO temperature coefficient."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (trl's default is on): it saves memory at ~20-30% more time per
    step, which a small generator on CPU does not need; turn it on for a large one on a GPU."""
    bf16: Bf16 = False
    """bfloat16 mixed precision (trl's default is on). Off by default: on a CPU without AVX512-BF16 or AMX,
    bfloat16 matmuls take a slow single-threaded path (a DPO step ran for over 15 minutes instead of seconds).
    auto = on only where the device runs bf16 natively."""
    fp16: bool = False
    logging_steps: int = 5
    save_steps: int = Field(10, ge=0)
    """Checkpoint every N steps into output_dir/checkpoint-N (the newest `save_total_limit` are kept; 0 = only the
    final adapter): a killed run continues from the newest with resume_from_checkpoint=true (the loop does so by
    itself)."""
    save_total_limit: int = Field(2, ge=1)
    seed: int = 42


class PolicyTrainConfig(PolicySettings):
    """The policy (base + SFT adapter), where its new adapter goes, and how it trains."""

    model_name_or_path: str = DEFAULT_GENERATOR
    adapter_name_or_path: Path | None = None
    """SFT adapter to start from; it is merged into the base first (the reference is the SFT model)."""
    output_dir: Path
    resume_from_checkpoint: bool | Path | None = None
    """true = the newest checkpoint-* in output_dir; or a checkpoint folder; null = a fresh start."""


def load_policy(cfg: PolicyTrainConfig):
    """(model, tokenizer): the base with the SFT adapter merged in (the policy's starting point and reference)."""
    return load_causal_lm(cfg.model_name_or_path, cfg.adapter_name_or_path, dtype=None)


def start_policy_run(cfg: PolicyTrainConfig) -> tuple[Any, str | None]:
    """(accelerate state, checkpoint to resume from) of a DPO or GRPO run; every rank waits for the main one's
    clean-up of an overwritten output_dir."""
    from ragtune.hardware import process_state
    from ragtune.train.harness import resolve_resume
    from ragtune.train.precision import check_precision

    state = process_state()
    check_precision(cfg, state.device.type)
    resume = resolve_resume(cfg, state.is_main_process)
    state.wait_for_everyone()
    return state, resume


def policy_args(cfg: PolicyTrainConfig) -> dict[str, Any]:
    import torch

    return {"output_dir": str(cfg.output_dir), "learning_rate": cfg.learning_rate, "max_steps": cfg.max_steps,
            "lr_scheduler_type": cfg.lr_scheduler_type,
            "per_device_train_batch_size": cfg.per_device_train_batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "beta": cfg.beta,
            "activation_checkpointing": cfg.gradient_checkpointing, "bf16": cfg.bf16, "fp16": cfg.fp16,
            "logging_steps": cfg.logging_steps, "seed": cfg.seed, "report_to": "none",
            "save_strategy": "steps" if cfg.save_steps else "no", "save_steps": cfg.save_steps or 500,
            "save_total_limit": cfg.save_total_limit,
            "use_cpu": not torch.cuda.is_available()}


def save_policy(trainer, tok, cfg: PolicyTrainConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """The run's summary; the main process writes the adapter, rl_summary.json and config.yaml."""
    logs = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    summary = {"steps": trainer.state.global_step, "log": logs, "world_size": trainer.args.world_size, **extra}
    save_final_model(trainer, cfg.output_dir / "adapter")  # every rank: under FSDP the weights are gathered first
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(cfg.output_dir / "adapter"))
        write_json(cfg.output_dir / "rl_summary.json", summary)
        dump_config(cfg, cfg.output_dir / "config.yaml")
    trainer.accelerator.wait_for_everyone()
    return summary


def merge_policy(model: str, sft_adapter: Path | None, rl_adapter: Path, out: Path) -> None:
    """base (+ SFT adapter) + RL adapter, merged into one folder the next round generates with."""
    merged, tokenizer = load_causal_lm(model, [a for a in (sft_adapter, rl_adapter) if a is not None], dtype=None)
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def plot_rl_curves(out_dir: Path, curve: list[dict]) -> None:
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
