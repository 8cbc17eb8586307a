"""The CPU SFT loss that runs the LM head on answer positions only gives the model's own loss and metrics."""

from __future__ import annotations

import torch

from ragtune.models import load_causal_lm
from ragtune.train.generator.answer_loss import IGNORE, answer_loss
from ragtune.train.generator.lm_head import supports_answer_logits


def _batch(vocab: int):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (3, 20), generator=gen)
    att = torch.ones_like(ids)
    att[1, 15:] = 0  # a right-padded row
    labels = torch.full_like(ids, IGNORE)
    labels[0, 14:] = ids[0, 14:]
    labels[1, 10:15] = ids[1, 10:15]
    labels[2, 5:9] = ids[2, 5:9]  # an answer in the middle of a row
    return {"input_ids": ids, "attention_mask": att, "labels": labels}


def test_answer_loss_equals_the_full_logits_loss_and_its_gradient(tiny_lm):
    from peft import LoraConfig, get_peft_model

    model, _ = load_causal_lm(tiny_lm)
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():  # a non-zero adapter, so its gradient is not trivially the same
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    assert supports_answer_logits(model)
    batch = _batch(model.config.vocab_size)

    full = model(**batch).loss
    full.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    loss, parts = answer_loss(model, batch)
    loss.backward()

    n_labelled = 6 + 5 + 4  # targets: row 0 tokens 14..19, row 1 10..14, row 2 5..8
    assert parts["logits"].shape == (n_labelled, model.config.vocab_size)
    assert int(parts["valid"]) == n_labelled
    assert torch.allclose(loss, full, atol=1e-5), (loss, full)
    assert ref and all(torch.allclose(p.grad, ref[n], atol=1e-6) for n, p in model.named_parameters() if n in ref)
    assert 0 <= int(parts["correct"]) <= n_labelled and float(parts["entropy"]) > 0
