"""`stage: ppo` (also the loop's PPO stage): renders prompts for corpus documents (or a registered dataset) and runs
ragtune's PPO (ppo.py) against a reward model from `stage: rm`, or the loop's retrieval reward computed online."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ragtune.atomic import write_json
from ragtune.config import CommaList, dump_config
from ragtune.models import DEFAULT_GENERATOR
from ragtune.train.generator.loop_reward import LoopRewardSettings
from ragtune.train.generator.ppo import PPOConfig, PPOTrainer
from ragtune.train.generator.rl import PromptSource, dataset_prompts, plot_rl_curves, sample_docs, user_turns
from ragtune.train.harness import ResumeSettings, resolve_resume


class PPOStageConfig(ResumeSettings):
    ALIASES = ("ppo",)
    stage: Literal["ppo"] = "ppo"
    model_name_or_path: str = DEFAULT_GENERATOR
    adapter_name_or_path: Path | None = None
    """SFT adapter; merged into the base, which becomes the PPO reference."""
    reward_source: Literal["reward_model", "retrieval"] = "reward_model"
    """What scores the rollouts: the learned reward model, or the loop's reward computed online (`retrieval_reward`:
    filter outcome, difficulty band and rank under `retriever_model`; train/generator/loop_reward.py)."""
    reward_model: Path | None = None
    """reward_source=reward_model: adapter folder written by `ragtune train generator` with stage: rm."""
    reward_base: str | None = None
    """Base model of the reward model (default: model_name_or_path)."""
    retriever_model: Path | None = None
    """reward_source=retrieval: the round's trained retriever (a sentence-transformers folder)."""
    retrieval_reward: LoopRewardSettings = Field(default_factory=LoopRewardSettings)
    prompts: PromptSource | None = None
    """Prompts from a BEIR corpus (the doc -> query prompt per document); or name a `dataset`."""
    dataset: Annotated[list[str], CommaList] | None = None
    """Datasets of dataset_dir/dataset_info.json (LLaMA-Factory): each row's prompt, without its answer."""
    dataset_dir: Path = Path("data")
    max_samples: int | None = Field(None, ge=1)
    template: str = "auto"
    """Chat template the prompts are rendered with (auto: the SFT adapter's or the model's own)."""
    finetuning_type: Literal["lora"] = "lora"
    num_train_epochs: float | None = Field(None, gt=0)
    """Passes over the prompts; sets ppo.steps = ceil(epochs x prompts / ppo.batch_size) unless ppo.steps is set."""
    per_device_train_batch_size: int | None = Field(None, ge=1)
    """LLaMA-Factory's PPO batch: ppo.mini_batch_size, and ppo.batch_size = it x gradient_accumulation_steps."""
    gradient_accumulation_steps: int | None = Field(None, ge=1)
    resume_lora_training: bool = True
    """LLaMA-Factory's flag; ragtune's PPO always merges adapter_name_or_path and trains a new adapter."""
    output_dir: Path
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    merge: bool = True
    """Also write output_dir/merged: base + SFT + PPO adapter in one folder (what the next round generates with)."""
    device: str = "auto"
    """auto = cuda, mps, cpu; policy, reference and reward model live there (accelerate launch: each rank's own)."""

    @model_validator(mode="before")
    @classmethod
    def _lf_batch(cls, data: Any) -> Any:
        """LLaMA-Factory's PPO batch: per_device_train_batch_size rows per minibatch, x accumulation per rollout."""
        if not isinstance(data, dict) or data.get("per_device_train_batch_size") is None:
            return data
        mini = int(data["per_device_train_batch_size"])
        batch = mini * int(data.get("gradient_accumulation_steps") or 1)
        ppo = data.get("ppo") or {}
        if isinstance(ppo, dict):
            data = {**data, "ppo": {"mini_batch_size": mini, "batch_size": batch, **ppo}}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> PPOStageConfig:
        if (self.prompts is None) == (self.dataset is None):
            raise ValueError("stage ppo takes its prompts from prompts.corpus (a BEIR folder) or from dataset (names "
                             "in dataset_info.json): set exactly one")
        need = "reward_model" if self.reward_source == "reward_model" else "retriever_model"
        if getattr(self, need) is None or (self.reward_source == "retrieval" and self.prompts is None):
            raise ValueError(f"reward_source={self.reward_source} needs {need}"
                             + (" and prompts (a BEIR corpus)" if self.reward_source == "retrieval" else ""))
        return self


def run_ppo_stage(cfg: PPOStageConfig) -> dict[str, Any]:
    import math

    from ragtune.config import notice
    from ragtune.generate.prompts import use_template
    from ragtune.hardware import pick_device, process_state
    from ragtune.models import adapter_stack, write_adapter_stack
    from ragtune.train.generator.loop_reward import ppo_reward_fn

    state = process_state()
    device = str(state.device) if state.num_processes > 1 else pick_device(cfg.device)
    if cfg.adapter_name_or_path is not None and "resume_lora_training" in cfg.model_fields_set \
            and cfg.resume_lora_training:
        notice("stage ppo: resume_lora_training=true has no effect: ragtune's PPO merges adapter_name_or_path into "
               "the base (the reference model) and trains a new adapter")
    resume = resolve_resume(cfg, state.is_main_process, marker="trainer_state.pt")
    state.wait_for_everyone()
    trainer = PPOTrainer(cfg.ppo, cfg.model_name_or_path, sft_adapter=cfg.adapter_name_or_path, device=device,
                         resume_from=resume)
    stops = use_template(trainer.tokenizer, cfg.template)
    trainer.eos_ids = sorted({*trainer.eos_ids, *stops})
    raw: dict[str, Any] = {}  # rendered prompt -> what the reward model reads (user turn or chat)
    source: dict[str, str] = {}  # rendered prompt -> its document (the online reward's source)
    corpus = None
    if cfg.prompts is not None:
        corpus, docs = sample_docs(cfg.prompts)
        for d, turn in zip(docs, user_turns(cfg.prompts, corpus, docs, trainer.tokenizer), strict=True):
            rendered = trainer.tokenizer.apply_chat_template([{"role": "user", "content": turn}], tokenize=False,
                                                             add_generation_prompt=True)
            raw[rendered], source[rendered] = turn, d
    else:
        for chat in dataset_prompts(cfg.dataset or [], cfg.dataset_dir, cfg.ppo.seed, cfg.max_samples):
            raw[trainer.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)] = chat
    if cfg.num_train_epochs is not None and "steps" not in cfg.ppo.model_fields_set:
        trainer.cfg = cfg.ppo.model_copy(update={"steps": max(1, math.ceil(cfg.num_train_epochs * len(raw) /
                                                                            cfg.ppo.batch_size))})
    history = trainer.train(list(raw), ppo_reward_fn(cfg, raw, source, corpus, device), cfg.output_dir)
    summary = {"updates": len(history), "prompts": len(raw), "reward_first": history[0]["reward_mean"],
               "reward_last": history[-1]["reward_mean"], "kl_last": history[-1]["kl"],
               "curve": [{k: h[k] for k in ("step", "reward_mean", "kl", "entropy")} for h in history],
               "world_size": state.num_processes, "resumed_from": resume}
    if state.is_main_process:
        if cfg.adapter_name_or_path is not None:
            write_adapter_stack(cfg.output_dir / "adapter", adapter_stack([Path(cfg.adapter_name_or_path)]))
        if cfg.merge:
            merged = trainer.model.model.merge_and_unload()
            merged.save_pretrained(str(cfg.output_dir / "merged"))
            trainer.tokenizer.save_pretrained(str(cfg.output_dir / "merged"))
        plot_rl_curves(cfg.output_dir, history)
        write_json(cfg.output_dir / "ppo_summary.json", summary)
        dump_config(cfg, cfg.output_dir / "config.yaml")
    state.wait_for_everyone()
    return summary
