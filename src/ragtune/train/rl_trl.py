"""DPO and GRPO for the query generator, on trl's trainers (LoRA via peft).

- DPO learns directly from the loop's preference pairs (`train/preferences.py`).
- GRPO needs no learned reward model: `RetrievalReward` scores each sampled query online
  with the current retriever (the reciprocal rank of its source document), optionally
  shaped toward a target difficulty band, so the generator learns to write queries that
  are neither trivial nor unanswerable for the retriever.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.atomic import write_json
from ragtune.config import ConfigModel, dump_config

DEFAULT_GENERATOR = "HuggingFaceTB/SmolLM2-135M-Instruct"


class RLCommon(ConfigModel):
    model_name_or_path: str = DEFAULT_GENERATOR
    adapter_name_or_path: Path | None = None
    """SFT adapter to start from; it is merged into the base first (the reference is the SFT model)."""
    output_dir: Path
    lora_rank: int = Field(8, ge=1)
    lora_alpha: int = 16
    lora_target: str = "all-linear"
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "linear"
    max_steps: int = Field(50, ge=1)
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    beta: float = Field(0.1, ge=0)
    """KL (GRPO) / DPO temperature coefficient."""
    logging_steps: int = 5
    seed: int = 42


class DPOTrainConfig(RLCommon):
    stage: Literal["dpo"] = "dpo"
    train_file: Path
    """Preference JSONL (chosen/rejected or LLaMA-Factory ranking rows)."""
    max_length: int = 512


class GRPOTrainConfig(RLCommon):
    num_generations: int = Field(4, ge=2)
    max_completion_length: int = Field(24, ge=1)
    temperature: float = 1.0
    beta: float = Field(0.04, ge=0)


def _load(cfg: RLCommon):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.models import resolve_causal_lm

    base = resolve_causal_lm(cfg.model_name_or_path)
    tok = AutoTokenizer.from_pretrained(cfg.adapter_name_or_path or base)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(base)
    if cfg.adapter_name_or_path is not None:
        model = PeftModel.from_pretrained(model, str(cfg.adapter_name_or_path)).merge_and_unload()
    return model, tok


def _peft(cfg: RLCommon):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=cfg.lora_target,
                      task_type="CAUSAL_LM")


def _common_args(cfg: RLCommon) -> dict[str, Any]:
    import torch

    return {"output_dir": str(cfg.output_dir), "learning_rate": cfg.learning_rate, "max_steps": cfg.max_steps,
            "lr_scheduler_type": cfg.lr_scheduler_type,
            "per_device_train_batch_size": cfg.per_device_train_batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "beta": cfg.beta,
            "logging_steps": cfg.logging_steps, "seed": cfg.seed, "report_to": "none", "save_strategy": "no",
            "use_cpu": not torch.cuda.is_available()}


def _finish(trainer, tok, cfg: RLCommon, extra: dict[str, Any]) -> dict[str, Any]:
    trainer.model.save_pretrained(str(cfg.output_dir / "adapter"))
    tok.save_pretrained(str(cfg.output_dir / "adapter"))
    logs = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    summary = {"steps": trainer.state.global_step, "log": logs, **extra}
    write_json(cfg.output_dir / "rl_summary.json", summary)
    dump_config(cfg, cfg.output_dir / "config.yaml")
    return summary


def train_dpo(cfg: DPOTrainConfig) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from ragtune.data.formats import read_records

    rows = [{"prompt": [{"role": "user", "content": f"{r.instruction}\n{r.input}".strip()}],
             "chosen": [{"role": "assistant", "content": r.chosen}],
             "rejected": [{"role": "assistant", "content": r.rejected}]}
            for r in read_records(cfg.train_file, "preference")]
    if not rows:
        raise ValueError(f"{cfg.train_file}: no preference pairs")
    model, tok = _load(cfg)
    args = DPOConfig(max_length=cfg.max_length, **_common_args(cfg))
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=_peft(cfg))
    trainer.train()
    return _finish(trainer, tok, cfg, {"pairs": len(rows)})


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


def train_grpo(cfg: GRPOTrainConfig, prompts: list[str], doc_ids: list[str], reward: RetrievalReward) -> dict:
    """`prompts`: user turns (the generation instruction with the document); `doc_ids`: their sources."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if len(prompts) != len(doc_ids) or not prompts:
        raise ValueError("GRPO needs one source doc id per prompt, and at least one prompt")
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}], "doc_id": d}
                              for p, d in zip(prompts, doc_ids, strict=True)])
    model, tok = _load(cfg)
    args = GRPOConfig(num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                      temperature=cfg.temperature, **_common_args(cfg))
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=data, processing_class=tok,
                          peft_config=_peft(cfg))
    trainer.train()
    return _finish(trainer, tok, cfg, {"prompts": len(prompts)})
