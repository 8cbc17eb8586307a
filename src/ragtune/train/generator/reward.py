"""Reward model for the query generator: trl's RewardTrainer (Bradley-Terry) with LoRA.

Data: preference rows (`{instruction, input, chosen, rejected}` or LLaMA-Factory ranking
rows, as `ragtune.train.generator.preferences` writes them). Each row becomes a conversational
pair (the instruction as the user turn, a query as the assistant turn) so the reward model
reads exactly the chat the generator produced. Pairwise accuracy on held-out pairs is
computed by scoring both sides with `RewardScorer`, independent of the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.atomic import write_json
from ragtune.config import dump_config
from ragtune.models import DEFAULT_GENERATOR, load_causal_lm
from ragtune.train.harness import LoraSettings


class RewardSettings(LoraSettings):
    """The reward model's training settings: everything but its data and output paths (the loop's `reward:`)."""

    model_name_or_path: str = DEFAULT_GENERATOR
    lora_alpha: float | None = Field(16.0, gt=0)
    learning_rate: float = 1e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(512, ge=16)
    logging_steps: int = 5
    seed: int = 42
    threads: int = 0


class RewardTrainConfig(RewardSettings):
    stage: Literal["rm"] = "rm"
    train_file: Path
    """Preference JSONL (alpaca-style chosen/rejected or ranking rows)."""
    eval_file: Path | None = None
    """Held-out preference JSONL for pairwise accuracy."""
    output_dir: Path


def _conversations(path: Path) -> list[dict[str, Any]]:
    from ragtune.data.formats import read_records

    rows = []
    for rec in read_records(path, "preference"):
        user = f"{rec.instruction}\n{rec.input}".strip() if rec.input else rec.instruction
        rows.append({"prompt": [{"role": "user", "content": user}],
                     "chosen": [{"role": "assistant", "content": rec.chosen}],
                     "rejected": [{"role": "assistant", "content": rec.rejected}]})
    if not rows:
        raise ValueError(f"{path}: no preference pairs to train on")
    return rows


def train_reward_model(cfg: RewardTrainConfig) -> dict[str, Any]:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from ragtune.hardware import set_threads

    set_threads(cfg.threads)
    model, tok = load_causal_lm(cfg.model_name_or_path, head="score", dtype=None)
    train = Dataset.from_list(_conversations(cfg.train_file))
    args = RewardConfig(output_dir=str(cfg.output_dir), learning_rate=cfg.learning_rate,
                        num_train_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps,
                        per_device_train_batch_size=cfg.per_device_train_batch_size,
                        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_length=cfg.max_length,
                        logging_steps=cfg.logging_steps, seed=cfg.seed, report_to="none", save_strategy="no",
                        use_cpu=not __import__("torch").cuda.is_available(), disable_tqdm=False)
    trainer = RewardTrainer(model=model, args=args, train_dataset=train, processing_class=tok,
                            peft_config=cfg.lora_config("SEQ_CLS"))
    result = trainer.train()
    trainer.model.save_pretrained(str(cfg.output_dir))
    tok.save_pretrained(str(cfg.output_dir))
    summary: dict[str, Any] = {"train_loss": float(result.training_loss), "train_pairs": len(train),
                               "steps": int(result.global_step)}
    if cfg.eval_file is not None:
        summary |= pairwise_accuracy(RewardScorer(cfg.model_name_or_path, cfg.output_dir), cfg.eval_file)
    write_json(cfg.output_dir / "reward_summary.json", summary)
    dump_config(cfg, cfg.output_dir / "config.yaml")
    return summary


class RewardScorer:
    """Scores (instruction, query) pairs with a trained reward model: higher = preferred."""

    def __init__(self, base: str, adapter: str | Path, device: str = "cpu", batch_size: int = 16):
        import torch

        self.model, self.tok = load_causal_lm(base, adapter, merge=False, head="score", dtype=None, device=device,
                                              padding_side="left", adapter_key="reward_model")
        self.model.eval()
        self.device, self.batch_size, self.torch = device, batch_size, torch

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        """`prompts` are raw instructions (the user turn), as in the preference data."""
        texts = [self.tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                              tokenize=False) for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        with self.torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                enc = self.tok(texts[s:s + self.batch_size], return_tensors="pt", padding=True,
                               add_special_tokens=False).to(self.device)
                out += self.model(**enc).logits[:, 0].float().tolist()
        return out


def pairwise_accuracy(scorer: RewardScorer, path: Path) -> dict[str, float]:
    from ragtune.data.formats import read_records

    recs = list(read_records(path, "preference"))
    if not recs:
        return {"heldout_pairs": 0, "heldout_accuracy": float("nan")}
    prompts = [r.instruction for r in recs]
    chosen = scorer(prompts, [r.chosen for r in recs])
    rejected = scorer(prompts, [r.rejected for r in recs])
    acc = sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(recs)
    return {"heldout_pairs": len(recs), "heldout_accuracy": acc}
