"""The SFT loss on answer tokens only, with the LM head run on those positions alone (the CPU path).

trl's SFTTrainer projects only the labelled positions through the LM head when Triton is available; elsewhere
(CPU) it scores every position, and with a 49k vocabulary that head is about a third of a SmolLM2-135M SFT step
for doc -> query pairs, where ~20 of ~250 tokens carry a label (benchmarks/sft_speed.py). Here the model is asked
for the logits of the labelled positions only (transformers' boolean `logits_to_keep`), and the loss, token
accuracy and entropy are computed from those: the same values, from a tenth of the head's work.
"""

from __future__ import annotations

from typing import Any

from ragtune.train.generator.lm_head import supports_answer_logits

IGNORE = -100


def answer_loss(model, inputs: dict[str, Any], num_items_in_batch=None) -> tuple[Any, dict[str, Any]]:
    """(mean next-token cross-entropy over the labelled positions, {logits, valid, correct, entropy}: the kept
    logits, and the count, top-1 hits and summed entropy of the labelled positions)."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    targets = torch.cat([labels[:, 1:], labels.new_full((labels.shape[0], 1), IGNORE)], dim=1)
    mask = targets != IGNORE  # position t predicts token t + 1
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    out = model(**model_inputs, use_cache=False, logits_to_keep=mask)
    logits = out.logits.float()  # (labelled positions, vocab)
    gold = targets[mask]
    total = F.cross_entropy(logits, gold, reduction="sum")
    count = mask.sum() if num_items_in_batch is None else num_items_in_batch
    loss = total / torch.as_tensor(count, device=total.device).clamp(min=1)
    with torch.no_grad():
        logp = torch.log_softmax(logits, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1).sum()
        correct = (logits.argmax(-1) == gold).sum()
    return loss, {"logits": out.logits, "valid": mask.sum(), "correct": correct, "entropy": entropy}


def answer_token_trainer(base_cls):
    """`base_cls` (trl's SFTTrainer) with its loss computed by `answer_loss` where the model supports it."""

    class AnswerTokenSFTTrainer(base_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.answer_logits = supports_answer_logits(self.model)  # once, not per step

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or not self.answer_logits:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            loss, parts = answer_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as trl and Trainer do: DDP averages the gradients
            gather = self.accelerator.gather_for_metrics
            valid = gather(parts["valid"]).sum()
            if valid > 0:
                self._metrics[mode]["entropy"].append((gather(parts["entropy"]).sum() / valid).item())
                self._metrics[mode]["mean_token_accuracy"].append((gather(parts["correct"]).sum() / valid).item())
            if mode == "train" and "attention_mask" in inputs:
                self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item()
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return AnswerTokenSFTTrainer
