"""Reward model for the query generator: trl's RewardTrainer (Bradley-Terry) with LoRA.

Data: preference rows (`{instruction, input, chosen, rejected}` or LLaMA-Factory ranking
rows, as `ragtune.train.generator.preferences` writes them). Each row becomes a conversational
pair (the instruction as the user turn, a query as the assistant turn) so the reward model
reads exactly the chat the generator produced. Pairwise accuracy on held-out pairs is
computed by scoring both sides with `RewardScorer`, independent of the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ragtune.atomic import write_json, write_jsonl
from ragtune.config import CommaList, ConfigError, dump_config, notice
from ragtune.models import DEFAULT_GENERATOR, load_causal_lm
from ragtune.train.harness import (
    LoraSettings,
    ResumeSettings,
    check_scheduler,
    resolve_resume,
    save_final_model,
    train_resuming,
)
from ragtune.train.precision import Bf16

Message = dict[str, str]


class RewardSettings(LoraSettings, ResumeSettings):
    """The reward model's training settings: everything but its data and output paths (the loop's `reward:`)."""

    ALIASES = ("rm",)
    model_name_or_path: str = DEFAULT_GENERATOR
    template: str = "auto"
    """Chat template of the (prompt, answer) pairs: auto, default, alpaca, chatml, llama2 (as for SFT)."""
    finetuning_type: Literal["lora"] = "lora"
    """The reward model is always a LoRA adapter with a scalar head."""
    lora_alpha: float | None = Field(16.0, gt=0)
    learning_rate: float = 1e-4
    lr_scheduler_type: str = "linear"
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(512, ge=16)
    max_samples: int | None = Field(None, ge=1)
    logging_steps: int = 5
    save_steps: int = Field(0, ge=0)
    """Write a resumable checkpoint-N every N steps (0 = only the final model)."""
    seed: int = 42
    threads: int = 0
    fp16: bool = False
    bf16: Bf16 = False
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (trl's default is on): it saves memory at ~20-30% more time per
    step, which a small generator on CPU does not need; turn it on for a large one on a GPU."""
    plot_loss: bool = True
    """Write training_loss.png into output_dir."""
    resume_lora_training: bool = False
    """LLaMA-Factory's flag; the reward model always trains a new adapter on the (merged) adapter_name_or_path."""

    @field_validator("lr_scheduler_type")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        return check_scheduler(value)


class RewardTrainConfig(RewardSettings):
    stage: Literal["rm"] = "rm"
    train_file: Path | None = None
    """Preference JSONL (alpaca-style chosen/rejected or ranking rows); or name a `dataset`."""
    dataset: Annotated[list[str], CommaList] | None = None
    """Preference datasets registered in dataset_dir/dataset_info.json with "ranking": true (LLaMA-Factory)."""
    dataset_dir: Path = Path("data")
    adapter_name_or_path: Path | None = None
    """SFT adapter merged into the base first (LLaMA-Factory's checkpoint_dir): the reward model reads the chat as
    the SFT model does."""
    eval_file: Path | None = None
    """Held-out preference JSONL for pairwise accuracy."""
    output_dir: Path

    @model_validator(mode="after")
    def _one_source(self) -> RewardTrainConfig:
        if (self.train_file is None) == (self.dataset is None):
            raise ValueError("stage rm reads its pairs from train_file (a preference JSONL) or from dataset (names in "
                             "dataset_info.json with ranking: true): set exactly one")
        return self


def _pair(prompt: list[Message], chosen: str, rejected: str) -> dict[str, Any]:
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def _conversations(path: Path) -> list[dict[str, Any]]:
    from ragtune.data.formats import read_records

    rows = []
    for rec in read_records(path, "preference"):
        user = f"{rec.instruction}\n{rec.input}".strip() if rec.input else rec.instruction
        rows.append(_pair([{"role": "user", "content": user}], rec.chosen, rec.rejected))
    if not rows:
        raise ValueError(f"{path}: no preference pairs to train on")
    return rows


def dataset_pairs(names: list[str], dataset_dir: Path, seed: int, max_samples: int | None = None
                  ) -> list[dict[str, Any]]:
    """Conversational pairs from `ranking: true` datasets of dataset_info.json (alpaca or sharegpt)."""
    from ragtune.data.lf_datasets import preference_records, read_registered
    from ragtune.data.records import Alpaca, Preference, ShareGPT
    from ragtune.generate.prompts import record_messages

    rows = []
    for name in names:
        for where, rec in preference_records(read_registered(name, dataset_dir, seed))[:max_samples]:
            if isinstance(rec, Preference):
                convo = Alpaca(instruction=rec.instruction, input=rec.input, output=rec.chosen, system=rec.system,
                               history=rec.history)
                prompt, chosen, rejected = record_messages(convo, where)[:-1], rec.chosen, rec.rejected
            else:
                convo = ShareGPT(conversations=[*rec.conversations, rec.chosen], system=rec.system)
                prompt, chosen, rejected = record_messages(convo, where)[:-1], rec.chosen.value, rec.rejected.value
            rows.append(_pair(prompt, chosen, rejected))
    if not rows:
        raise ConfigError(f'key "dataset": {", ".join(names)} hold no preference pairs')
    return rows


def seed_scalar_head(model, seed: int) -> None:
    """Draw the new scalar head from `seed`, as transformers initialises a linear layer (normal, initializer_range).

    Otherwise its values depend on how the model was loaded: under FSDP with cpu_ram_efficient_loading rank 0
    loads through another path than a DDP or single-process run does, and the same seed trained another model.
    A rank that holds the head on the meta device gets rank 0's values when FSDP wraps the model."""
    import torch

    head = getattr(model, "score", None)
    if not isinstance(head, torch.nn.Linear) or head.weight.is_meta:
        return
    g = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g, dtype=torch.float32) * std)
        if head.bias is not None:
            head.bias.zero_()


def train_reward_model(cfg: RewardTrainConfig) -> dict[str, Any]:
    """Train the reward model (DDP under `accelerate launch`); the main process writes the adapter and summary."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from ragtune.generate.prompts import use_template
    from ragtune.hardware import process_state, set_threads
    from ragtune.models import adapter_stack, write_adapter_stack
    from ragtune.train.harness import plot_loss
    from ragtune.train.precision import check_precision

    state = process_state()  # under `accelerate launch`: one rank of a DDP run (gloo on CPU)
    device = state.device.type
    check_precision(cfg, device)
    set_threads(cfg.threads)
    if cfg.adapter_name_or_path is not None and cfg.resume_lora_training:
        notice("stage rm: resume_lora_training=true has no effect: the reward model merges adapter_name_or_path "
               "into the base and trains a new adapter with a scalar head")
    resume = resolve_resume(cfg, state.is_main_process)
    state.wait_for_everyone()
    pairs = _conversations(cfg.train_file) if cfg.train_file is not None else \
        dataset_pairs(cfg.dataset or [], cfg.dataset_dir, cfg.seed, cfg.max_samples)  # bad data fails before loading
    model, tok = load_causal_lm(cfg.model_name_or_path, cfg.adapter_name_or_path, head="score", dtype=None)
    seed_scalar_head(model, cfg.seed)
    use_template(tok, cfg.template)
    train = Dataset.from_list(pairs)
    args = RewardConfig(output_dir=str(cfg.output_dir), learning_rate=cfg.learning_rate,
                        lr_scheduler_type=cfg.lr_scheduler_type, num_train_epochs=cfg.num_train_epochs,
                        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
                        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_length=cfg.max_length,
                        logging_steps=cfg.logging_steps, seed=cfg.seed, report_to="none",
                        save_strategy="steps" if cfg.save_steps else "no", save_steps=cfg.save_steps or 500,
                        use_cpu=device == "cpu", disable_tqdm=False, fp16=cfg.fp16, bf16=cfg.bf16,
                        activation_checkpointing=cfg.gradient_checkpointing)
    trainer = RewardTrainer(model=model, args=args, train_dataset=train, processing_class=tok,
                            peft_config=cfg.lora_config("SEQ_CLS"))
    used = len(trainer.train_dataset)  # trl drops pairs longer than max_length: say how many trained
    if used == 0:
        raise ValueError(f"{cfg.train_file or cfg.dataset}: every pair is longer than max_length={cfg.max_length} "
                         "tokens; raise it")
    result = train_resuming(trainer, resume)
    summary: dict[str, Any] = {"train_loss": float(result.training_loss), "train_pairs": len(train),
                               "train_pairs_within_max_length": used, "steps": int(result.global_step),
                               "base_adapter": str(cfg.adapter_name_or_path) if cfg.adapter_name_or_path else None,
                               "resumed_from": resume, "world_size": state.num_processes}
    save_final_model(trainer, cfg.output_dir)  # every rank: under FSDP the weights are gathered first
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(cfg.output_dir))
        if cfg.adapter_name_or_path is not None:
            write_adapter_stack(cfg.output_dir, adapter_stack([Path(cfg.adapter_name_or_path)]))
        if cfg.plot_loss:
            png = plot_loss(trainer.state.log_history, Path(cfg.output_dir) / "training_loss.png",
                            "reward model loss")
            summary["loss_plot"] = str(png) if png else None
        if cfg.eval_file is not None:
            acc = pairwise_accuracy(RewardScorer(cfg.model_name_or_path, cfg.output_dir), cfg.eval_file)
            write_jsonl(cfg.output_dir / "heldout_scores.jsonl", acc.pop("pairs"))
            summary |= acc
        write_json(cfg.output_dir / "reward_summary.json", summary)
        dump_config(cfg, cfg.output_dir / "config.yaml")
    state.wait_for_everyone()
    return summary


class RewardScorer:
    """Scores (instruction, query) pairs with a trained reward model: higher = preferred."""

    def __init__(self, base: str, adapter: str | Path, device: str = "cpu", batch_size: int = 16):
        """`adapter`: the reward model's folder; the adapters it was trained on top of (its ADAPTER_STACK record)
        are merged into `base` first."""
        import torch

        self.model, self.tok = load_causal_lm(base, adapter, merge=False, head="score", dtype=None, device=device,
                                              padding_side="left", adapter_key="reward_model")
        self.model.eval()
        self.device, self.batch_size, self.torch = device, batch_size, torch

    def __call__(self, prompts: list[str] | list[list[Message]], responses: list[str]) -> list[float]:
        """`prompts` are raw instructions (the user turn), as in the preference data, or whole prompt chats."""
        texts = [self.tok.apply_chat_template([*([{"role": "user", "content": p}] if isinstance(p, str) else p),
                                               {"role": "assistant", "content": r}], tokenize=False)
                 for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        with self.torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                enc = self.tok(texts[s:s + self.batch_size], return_tensors="pt", padding=True,
                               add_special_tokens=False).to(self.device)
                out += self.model(**enc).logits[:, 0].float().tolist()
        return out


def pairwise_accuracy(scorer: RewardScorer, path: Path) -> dict[str, Any]:
    """Held-out pairwise accuracy with its 95% Wilson interval and the exact binomial p-value against chance (0.5);
    `pairs` holds each pair's two scores."""
    from ragtune.data.formats import read_records
    from ragtune.evaluate.significance import binomial_summary

    recs = list(read_records(path, "preference"))
    if not recs:
        return {"heldout_pairs": 0, "heldout_accuracy": float("nan"), "pairs": []}
    prompts = [r.instruction for r in recs]
    chosen = scorer(prompts, [r.chosen for r in recs])
    rejected = scorer(prompts, [r.rejected for r in recs])
    correct = [c > r for c, r in zip(chosen, rejected, strict=True)]
    stats = binomial_summary(sum(correct), len(recs))
    return {"heldout_pairs": len(recs), "heldout_accuracy": stats["rate"], "heldout_correct": sum(correct),
            "heldout_ci95": [stats["ci_low"], stats["ci_high"]], "heldout_p_vs_chance": stats["p_value"],
            "pairs": [{"chosen": c, "rejected": r, "correct": ok} for c, r, ok in zip(chosen, rejected, correct,
                                                                                      strict=True)]}
