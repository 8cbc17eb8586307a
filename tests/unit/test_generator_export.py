"""`ragtune export`: the merged model reproduces base+adapter, and a failed check writes nothing."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from ragtune.config import ConfigError
from ragtune.train.generator.export import ExportCheckError, ExportConfig, export_merged


def test_merge_matches_base_plus_adapter(tiny_lm, tiny_adapter, tmp_path):
    target = tmp_path / "merged"
    r = export_merged(ExportConfig(model_name_or_path=str(tiny_lm), adapter_name_or_path=tiny_adapter,
                                   export_dir=target))
    assert r["max_abs_diff"] <= 1e-4 and r["adapter_effect"] > 1e-2  # the adapter matters, the merge is exact
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json"):
        assert (target / name).is_file(), name
    merged = AutoModelForCausalLM.from_pretrained(target)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    q_proj = [m.model.layers[0].self_attn.q_proj.weight for m in (merged, base)]
    assert not torch.allclose(*q_proj)
    with pytest.raises(ConfigError, match="exists"):
        export_merged(ExportConfig(model_name_or_path=str(tiny_lm), adapter_name_or_path=tiny_adapter,
                                   export_dir=target))


def test_failed_check_leaves_no_output(tiny_lm, tiny_adapter, tmp_path):
    target = tmp_path / "merged"
    with pytest.raises(ExportCheckError, match="nothing was written"):
        export_merged(ExportConfig(model_name_or_path=str(tiny_lm), adapter_name_or_path=tiny_adapter,
                                   export_dir=target, atol=1e-30))
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".merged")]


def test_not_an_adapter(tiny_lm, tmp_path):
    with pytest.raises(ConfigError, match="adapter_config.json"):
        export_merged(ExportConfig(model_name_or_path=str(tiny_lm), adapter_name_or_path=tiny_lm,
                                   export_dir=tmp_path / "x"))
