"""The LM head on the positions a loss reads: the same values and gradients as the head on every position."""

from __future__ import annotations

import torch

from ragtune.models import load_causal_lm
from ragtune.train.generator.lm_head import compact_fused_head, takes_logits_to_keep


def _lora(model):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():  # a non-zero adapter, so its gradient is not trivially the same
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return out


def test_compact_fused_head_scores_labelled_positions_only_with_the_same_values(tiny_lm, monkeypatch):
    from trl.trainer import utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    model, _ = load_causal_lm(tiny_lm)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    model = _lora(model)
    rows: list[int] = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        rows.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (2, 24), generator=gen)
    labels = torch.full_like(ids, -100)
    labels[0, 18:] = ids[0, 18:]  # completions after a prompt, as DPO and GRPO label them
    labels[1, 20:] = ids[1, 20:]

    def run():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
        out.loss.backward()
        return out, _grads(model)

    full, full_grads = run()
    original = trl_utils._use_triton
    with compact_fused_head() as engaged:
        compact, compact_grads = run()
    assert engaged and trl_utils._use_triton is original
    assert rows == [2 * 23, 6 + 4]  # every shifted position, then the labelled ones only
    for field in ("loss", "log_probs", "entropy", "mean_logits", "is_top1"):
        assert torch.allclose(getattr(compact, field).float(), getattr(full, field).float(), atol=1e-5), field
    assert full_grads and all(torch.allclose(compact_grads[n], g, atol=1e-6) for n, g in full_grads.items())


def test_ppo_policy_asks_for_the_response_logits_only_with_the_same_values(tiny_lm):
    from ragtune.train.generator.ppo import PolicyWithValue

    base, _ = load_causal_lm(tiny_lm)
    policy = PolicyWithValue(_lora(base), base.config.hidden_size)
    with torch.no_grad():
        policy.value_head.weight.normal_(0, 0.1)
    assert takes_logits_to_keep(policy.model) and policy.keep_logits
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, base.config.vocab_size, (3, 30), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :6] = 0  # a left-padded prompt, as rollouts are

    def run(keep: bool):
        policy.keep_logits = keep
        logp, values, entropy = policy(ids, mask, 7, temperature=0.7)
        (logp.sum() + values.sum()).backward()
        return (logp, values, entropy), _grads(policy)

    full, full_grads = run(False)
    kept, kept_grads = run(True)
    assert kept[0].shape == (3, 7)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(kept, full, strict=True))
    assert full_grads and all(torch.allclose(kept_grads[n], g, atol=1e-6) for n, g in full_grads.items())


def test_sft_on_cpu_scores_the_answer_tokens_only(tiny_lm, toy_doc2query, tmp_path, monkeypatch):
    """`ragtune train generator` on CPU: every step's LM head sees as many rows as the batch has answer tokens."""
    import trl
    from trl.trainer import utils as trl_utils

    from ragtune.config import load_config
    from ragtune.train.generator.sft import train_generator
    from ragtune.train.generator.sft_config import GeneratorTrainConfig

    rows: list[int] = []
    labelled: list[int] = []
    apply, compute_loss = trl_utils._ChunkedLogProbFunction.apply, trl.SFTTrainer.compute_loss

    def spy(hidden, *args):
        rows.append(hidden.shape[0])
        return apply(hidden, *args)

    def counted(self, model, inputs, *args, **kwargs):
        labelled.append(int((inputs["labels"][:, 1:] != -100).sum()))
        return compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    monkeypatch.setattr(trl.SFTTrainer, "compute_loss", counted)
    cfg = load_config(GeneratorTrainConfig, None, [
        f"model_name_or_path={tiny_lm}", "dataset=toy", f"dataset_dir={toy_doc2query / 'sft'}",
        f"output_dir={tmp_path / 'sft'}", "max_steps=2", "per_device_train_batch_size=4", "cutoff_len=96",
        "plot_loss=false", "save_steps=100"])
    train_generator(cfg)
    assert len(labelled) == 2 and rows == labelled
    assert trl_utils._use_triton.__module__.startswith("trl")  # the switch is restored after training
