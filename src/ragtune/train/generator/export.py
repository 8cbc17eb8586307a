"""`ragtune export`: merge a LoRA adapter into its base model and save a standalone model, verified.

    cfg = ExportConfig(model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct", adapter_name_or_path="runs/gen",
                       export_dir="models/gen-merged")
    report = export_merged(cfg)      # {"max_abs_diff": 3e-07, ...}

The merged model is written (safetensors, tokenizer, generation config) into a temporary folder beside
`export_dir`, reloaded from disk, and its logits compared with base+adapter (unmerged) on a few inputs; only when
the maximum absolute difference is within `atol` is the folder renamed to `export_dir`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field

from ragtune.config import ConfigError, ConfigModel, dump_config
from ragtune.models import DEFAULT_GENERATOR

DEFAULT_PROBES = [
    "Human papillomavirus infection is a major cause of cervical cancer.",
    "What is the effect of vitamin D on bone density in older adults?",
    "The quick brown fox jumps over the lazy dog.",
]


class ExportConfig(ConfigModel):
    """Merge `adapter_name_or_path` into `model_name_or_path` and save to `export_dir`."""

    model_name_or_path: str = DEFAULT_GENERATOR
    adapter_name_or_path: Path
    """A LoRA adapter folder (adapter_config.json), e.g. the output_dir of `ragtune train generator`."""
    export_dir: Path
    overwrite: bool = False
    """Replace an existing export_dir."""
    atol: float = Field(1e-4, gt=0)
    """Largest allowed |merged - (base+adapter)| logit difference (float32)."""
    probes: list[str] = Field(default_factory=lambda: list(DEFAULT_PROBES), min_length=1)
    """Texts whose logits are compared (rendered through the chat template too)."""
    trust_remote_code: bool = False


class ExportCheckError(ValueError):
    """The merged model does not reproduce base+adapter within the tolerance."""


def _probe_batch(tokenizer, probes: list[str]):
    texts = list(probes)
    if getattr(tokenizer, "chat_template", None):
        texts += [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                add_generation_prompt=True) for p in probes]
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _logits(model, batch):
    import torch

    with torch.inference_mode():
        out = model(**batch).logits.float()
    return out.masked_fill(~batch["attention_mask"].bool()[..., None], 0.0)


def export_merged(cfg: ExportConfig) -> dict[str, Any]:
    """Merge, save, reload and verify; returns {"export_dir", "max_abs_diff", "atol", "probes", ...}."""
    import torch
    from transformers import AutoModelForCausalLM

    from ragtune.models import load_causal_lm, resolve_causal_lm

    adapter = Path(cfg.adapter_name_or_path)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f'key "adapter_name_or_path": {adapter} holds no adapter_config.json; give the output '
                          "folder of a LoRA run (finetuning_type=lora). Freeze/full runs already hold a full model.")
    target = Path(cfg.export_dir)
    if target.exists() and not cfg.overwrite:
        raise ConfigError(f'key "export_dir": {target} exists; choose a new folder or set overwrite=true')
    base = resolve_causal_lm(cfg.model_name_or_path)
    model, tokenizer = load_causal_lm(base, adapter, merge=False, trust_remote_code=cfg.trust_remote_code)
    model.eval()
    batch = _probe_batch(tokenizer, cfg.probes)
    reference = _logits(model, batch)
    with torch.inference_mode():
        model.disable_adapter_layers()
        base_logits = _logits(model, batch)
        model.enable_adapter_layers()
    adapter_effect = float((reference - base_logits).abs().max())
    merged = model.merge_and_unload()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if merged.generation_config is not None:
            merged.generation_config.save_pretrained(tmp)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32,
                                                        trust_remote_code=cfg.trust_remote_code).eval()
        diff = float((_logits(reloaded, batch) - reference).abs().max())
        report = {"export_dir": str(target), "base": str(base), "adapter": str(adapter), "max_abs_diff": diff,
                  "adapter_effect": adapter_effect, "atol": cfg.atol, "probes": int(batch["input_ids"].shape[0])}
        if not diff <= cfg.atol:
            raise ExportCheckError(f"merged model differs from base+adapter by {diff:.3g} (> atol {cfg.atol:g}) on "
                                   f"{report['probes']} probe inputs; nothing was written to {target}")
        dump_config(cfg, tmp / "export_config.yaml")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report
