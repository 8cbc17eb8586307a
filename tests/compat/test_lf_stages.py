"""Stages that start from an existing adapter, as LLaMA-Factory's checkpoint_dir + resume_lora_training do: SFT
continues it or trains a new adapter over it merged; the reward model trains over the SFT adapter merged, and
whoever loads the new adapter gets the one below it too."""

from __future__ import annotations

import json

import torch
from lf_fixtures import sptar_registry
from safetensors.torch import load_file

from ragtune.config import build_config
from ragtune.models import ADAPTER_STACK, load_causal_lm
from ragtune.train.generator.reward import RewardScorer, RewardTrainConfig, train_reward_model
from ragtune.train.generator.sft import train_generator
from ragtune.train.generator.sft_config import GeneratorTrainConfig
from tiny_lm import toy_corpus


def _sft(tiny_lm, data, out, adapter, resume: bool):
    return train_generator(build_config(GeneratorTrainConfig, {
        "model_name_or_path": str(tiny_lm), "dataset": "sptar_sft", "dataset_dir": str(data), "output_dir": str(out),
        "checkpoint_dir": str(adapter), "resume_lora_training": resume, "max_steps": 2, "learning_rate": 1e-2,
        "per_device_train_batch_size": 4, "template": "default", "plot_loss": False, "logging_steps": 1}))


def _lora(folder) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(folder / "adapter_model.safetensors")).items() if "lora_" in k}


def test_sft_continues_an_adapter_or_trains_a_new_one_over_it(tiny_lm, tiny_adapter, tmp_path, trainer_runs):
    docs, pairs = toy_corpus(8)
    sptar_registry(tmp_path / "data", docs, pairs)
    start = _lora(tiny_adapter)

    _sft(tiny_lm, tmp_path / "data", tmp_path / "cont", tiny_adapter, resume=True)
    before, _, _ = trainer_runs[-1]
    before_lora = {n: p for n, p in before.named_parameters() if "lora_" in n}
    assert len(before_lora) == len(start)  # training started from the given adapter's own weights
    assert all(any(torch.equal(p, w) for w in start.values()) for p in before_lora.values())
    cont = _lora(tmp_path / "cont")
    assert json.loads((tmp_path / "cont" / "adapter_config.json").read_text())["r"] == 4  # its rank, not lora_rank
    assert cont.keys() == start.keys() and any(not torch.equal(cont[k], start[k]) for k in start)
    assert not (tmp_path / "cont" / ADAPTER_STACK).exists()

    _sft(tiny_lm, tmp_path / "data", tmp_path / "new", tiny_adapter, resume=False)
    assert json.loads((tmp_path / "new" / ADAPTER_STACK).read_text())["base_adapters"] == [str(tiny_adapter.resolve())]
    ids = torch.tensor([[5, 17, 42, 9]])
    stacked, _ = load_causal_lm(tiny_lm, tmp_path / "new")  # brings tiny_adapter first
    by_hand, _ = load_causal_lm(tiny_lm, [tiny_adapter, tmp_path / "new"])
    alone, _ = load_causal_lm(tiny_lm)
    with torch.no_grad():
        a, b, c = (m(input_ids=ids).logits for m in (stacked, by_hand, alone))
    assert torch.allclose(a, b) and not torch.allclose(a, c, atol=1e-3)


def test_reward_model_over_the_sft_adapter_scores_with_it(tiny_lm, tiny_adapter, tmp_path):
    from peft import PeftModel

    docs, pairs = toy_corpus(8)
    sptar_registry(tmp_path / "data", docs, pairs)
    cfg = build_config(RewardTrainConfig, {"model_name_or_path": str(tiny_lm), "dataset": "sptar_pref",
                                           "dataset_dir": str(tmp_path / "data"), "checkpoint_dir": str(tiny_adapter),
                                           "output_dir": str(tmp_path / "rm"), "max_steps": 2, "lora_rank": 4,
                                           "per_device_train_batch_size": 4, "learning_rate": 1e-2,
                                           "logging_steps": 1}, "rm")
    summary = train_reward_model(cfg)
    assert summary["train_pairs"] == 8 and summary["steps"] == 2 and (tmp_path / "rm" / "training_loss.png").exists()
    prompts, answers = ["Protein receptor study."], ["protein receptor"]
    score = RewardScorer(str(tiny_lm), tmp_path / "rm")(prompts, answers)[0]
    base, tok = load_causal_lm(tiny_lm, tiny_adapter, head="score", dtype=None)  # SFT merged, then the RM on top
    with_sft = PeftModel.from_pretrained(base, str(tmp_path / "rm")).eval()
    bare = PeftModel.from_pretrained(load_causal_lm(tiny_lm, head="score", dtype=None)[0], str(tmp_path / "rm")).eval()
    text = tok.apply_chat_template([{"role": "user", "content": prompts[0]}, {"role": "assistant",
                                                                              "content": answers[0]}], tokenize=False)
    enc = tok([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        expected, without = with_sft(**enc).logits[0, 0].item(), bare(**enc).logits[0, 0].item()
    assert abs(score - expected) < 1e-4 and abs(score - without) > 1e-4
