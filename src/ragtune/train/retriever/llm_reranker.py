"""LLM rerankers: a causal LM with a scalar head on its last token (`ragtune.retrieval.rerank.LLMReranker`),
trained with transformers' Trainer on the same losses as the cross-encoder (`score_loss`), optionally with LoRA
(merged into the saved model so it loads without peft).
"""

from __future__ import annotations

from typing import Any

from ragtune.train.harness import train_resuming
from ragtune.train.retriever.dev import DevSet
from ragtune.train.retriever.reranker_config import RerankerTrainConfig


def group_targets(name: str, labels, temperature: float):
    """Target distribution over a group: one-hot on hit 0 (listwise), or softmax(labels / T) (listwise_soft)."""
    import torch

    if name == "listwise":
        target = torch.zeros_like(labels)
        target[:, 0] = 1.0
        return target
    return torch.softmax(labels / temperature, dim=-1)


def score_loss(name: str, scores, labels, temperature: float = 1.0):
    """Loss of scores against labels, both (B, G) (G = 1 for pointwise); used for the LLM reranker.

    >>> import torch
    >>> s = torch.tensor([[2.0, 0.0]]); y = torch.tensor([[1.0, 0.0]])
    >>> round(float(score_loss("listwise", s, y)), 4)   # -log softmax(s)[0]
    0.1269
    >>> round(float(score_loss("ranknet", s, y)), 4)    # log(1 + e^-2) * (1 - 0)
    0.1269
    """
    import torch
    import torch.nn.functional as F

    if name == "bce":
        return F.binary_cross_entropy_with_logits(scores, labels)
    if name == "mse":
        return F.mse_loss(torch.sigmoid(scores), labels)
    if name == "ranknet":
        diff = scores[:, :, None] - scores[:, None, :]
        gap = labels[:, :, None] - labels[:, None, :]
        weight = gap.clamp(min=0.0)
        return (weight * F.softplus(-diff)).sum() / weight.gt(0).sum().clamp(min=1)
    target = group_targets(name, labels, temperature)
    return -(target * F.log_softmax(scores, dim=-1)).sum(-1).mean()


def build_llm_reranker(cfg: RerankerTrainConfig, device: str):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ragtune.models import resolve_model
    from ragtune.retrieval.rerank import LLMReranker, mlp_head

    path = resolve_model(cfg.model_name_or_path)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    if cfg.llm.score_head == "mlp":
        torch.manual_seed(cfg.seed)
        mlp_head(model)
    fmt = cfg.llm.model_copy(update={"max_length": cfg.max_length})
    reranker = LLMReranker(model, tok, fmt)
    if cfg.use_lora:
        from peft import get_peft_model

        reranker.model = get_peft_model(model, cfg.lora_config("SEQ_CLS", modules_to_save=["score"]))
    reranker.model.to(device)
    return reranker


def train_llm(cfg: RerankerTrainConfig, rows, fmt: str, loss_name: str, dev: DevSet | None, resume: str | None,
              device: str, val_rows=None):
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from ragtune.train.retriever.base import trainer_kwargs, use_stable_proportion

    reranker = build_llm_reranker(cfg, device)
    group = fmt == "group"

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        if group:
            pairs = [(b["query"], d) for b in batch for d in b["docs"]]
            labels = torch.tensor([b["labels"] for b in batch], dtype=torch.float32)
        else:
            pairs = [(b["query"], b["content"]) for b in batch]
            labels = torch.tensor([[b["label"]] for b in batch], dtype=torch.float32)
        return {**reranker.encode_pairs(pairs), "labels": labels}

    class RerankTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            scores = model(**inputs).logits.view(labels.shape)
            loss = score_loss(loss_name, scores, labels, cfg.temperature)
            return (loss, {"scores": scores}) if return_outputs else loss

    # dev evaluation of LLM rerankers runs once after training; a validation file's loss is logged as it goes
    kwargs = trainer_kwargs(cfg, device, val_rows is not None)
    trainer = RerankTrainer(model=reranker.model, args=TrainingArguments(**kwargs, remove_unused_columns=False),
                            train_dataset=Dataset.from_list(rows), data_collator=collate,
                            eval_dataset=Dataset.from_list(val_rows) if val_rows else None)
    use_stable_proportion(trainer, cfg)
    result = train_resuming(trainer, resume)
    if cfg.use_lora:
        reranker.model = trainer.model.merge_and_unload()
    if trainer.is_world_process_zero():
        reranker.save(cfg.output_dir)
    trainer.accelerator.wait_for_everyone()  # the dev evaluation reloads what the main process saved
    return trainer, result, reranker
