"""SFT of the tiny causal LM through trl + peft: lora, freeze and full learn a toy doc -> query task; resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.config import ConfigError, load_config
from ragtune.train.generator.sft import train_generator
from ragtune.train.generator.sft_config import GeneratorTrainConfig


def _cfg(tiny_lm: Path, data: Path, out: Path, *overrides: str) -> GeneratorTrainConfig:
    base = [f"model_name_or_path={tiny_lm}", "dataset=toy", f"dataset_dir={data / 'sft'}", f"output_dir={out}",
            "max_steps=16", "per_device_train_batch_size=8", "logging_steps=4", "save_steps=8",
            "lr_scheduler_type=constant", "cutoff_len=96", "report_to=none"]
    return load_config(GeneratorTrainConfig, None, base + list(overrides))


@pytest.mark.parametrize(("ftype", "extra"), [
    ("lora", ["learning_rate=3e-2", "lora_rank=16", "lora_target=all"]),
    ("freeze", ["learning_rate=1e-2", "freeze_trainable_layers=1"]),
    ("full", ["learning_rate=1e-2"]),
])
def test_sft_lowers_loss(tiny_lm, toy_doc2query, tmp_path, ftype, extra):
    cfg = _cfg(tiny_lm, toy_doc2query, tmp_path / ftype, f"finetuning_type={ftype}", *extra)
    s = train_generator(cfg)
    assert s["global_step"] == 16
    assert s["train_examples"] == 40
    assert s["last_logged_loss"] < s["first_logged_loss"] - 0.3, s
    out = tmp_path / ftype
    assert (out / "config.yaml").is_file() and (out / "train_summary.json").is_file()
    assert (out / "training_loss.png").stat().st_size > 1000
    if ftype == "lora":
        assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
        assert s["trainable_params"] < s["total_params"] / 2
    else:
        assert (out / "model.safetensors").is_file()
        assert json.loads((out / "config.json").read_text())["use_cache"] is True
    if ftype == "freeze":
        assert s["trainable_layers"] == [1]
    # the tokenizer saved beside the weights carries the chat template used in training
    assert (out / "chat_template.jinja").is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()


def test_resume_continues_from_checkpoint_with_dev_loss(tiny_lm, toy_doc2query, tmp_path):
    out = tmp_path / "run"
    first = train_generator(_cfg(tiny_lm, toy_doc2query, out, "max_steps=8", "val_size=0.2", "learning_rate=1e-2"))
    assert first["global_step"] == 8 and first["dev_examples"] == 8 and first["eval_loss"] is not None
    assert (out / "checkpoint-8" / "trainer_state.json").is_file()
    with pytest.raises(ConfigError, match="resume_from_checkpoint=true"):
        train_generator(_cfg(tiny_lm, toy_doc2query, out, "max_steps=16", "val_size=0.2"))
    second = train_generator(_cfg(tiny_lm, toy_doc2query, out, "max_steps=16", "val_size=0.2",
                                  "learning_rate=1e-2", "resume_from_checkpoint=true"))
    assert second["resumed_from"].endswith("checkpoint-8")
    assert second["global_step"] == 16
    state = json.loads((out / "checkpoint-16" / "trainer_state.json").read_text())
    logged_steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert logged_steps and min(logged_steps) <= 8 < max(logged_steps)  # history carried over, then continued
    assert any("eval_loss" in h for h in state["log_history"])


def test_lora_layers_adapts_only_the_last_blocks(tiny_lm, toy_doc2query, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "last"
    s = train_generator(_cfg(tiny_lm, toy_doc2query, out, "learning_rate=3e-2", "lora_rank=16", "lora_layers=1"))
    assert s["last_logged_loss"] < s["first_logged_loss"] - 0.3, s
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        blocks = {k.split("layers.")[1].split(".")[0] for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    n = json.loads((Path(tiny_lm) / "config.json").read_text())["num_hidden_layers"]
    assert blocks == {str(n - 1)}
    with pytest.raises(ConfigError, match=f'"lora_layers": {n + 1} is more than the {n} layers'):
        train_generator(_cfg(tiny_lm, toy_doc2query, tmp_path / "too-many", f"lora_layers={n + 1}"))
