"""`ragtune train generator`: SFT of the doc -> query generator on trl's SFTTrainer, with peft LoRA, freeze or full.

    cfg = load_config(GeneratorTrainConfig, "configs/generator-sft.yaml", ["max_steps=20"])
    summary = train_generator(cfg)

Writes into `output_dir`: the adapter (lora) or the model (freeze, full), the tokenizer with the chat template
used for training (so `ragtune generate` renders the same prompts), `checkpoint-*` folders (resumable),
`config.yaml` (resolved), `train_summary.json` and `training_loss.png`. Multi-GPU / multi-process through
`accelerate launch` (DDP, FSDP, DeepSpeed via an accelerate config; see configs/accelerate/).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from ragtune.config import ConfigError
from ragtune.train.generator.lm_head import compact_fused_head
from ragtune.train.generator.sft_config import GeneratorTrainConfig
from ragtune.train.harness import (
    check_deepspeed,
    check_reporters,
    finish,
    linear_module_names,
    resolve_resume,
    save_final_model,
    train_resuming,
)
from ragtune.train.precision import check_precision

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def block_count(model, key: str) -> int:
    """Number of numbered `layers.N.` transformer blocks; a ConfigError naming `key` when the model has none."""
    total = getattr(model.config, "num_hidden_layers", None)
    if total is None:
        ids = {int(m.group(1)) for n, _ in model.named_parameters() if (m := _LAYER.search(n))}
        total = max(ids) + 1 if ids else 0
    if not total:
        raise ConfigError(f'key "{key}": needs a model with numbered `layers.N.` blocks')
    return total


def last_blocks(model, n_layers: int, key: str) -> list[int]:
    """Indices of the last `n_layers` blocks; a ConfigError naming `key` when the model has fewer."""
    total = block_count(model, key)
    if n_layers > total:
        raise ConfigError(f'key "{key}": {n_layers} is more than the {total} layers of this model; pass at most '
                          f"{total}")
    return list(range(total - n_layers, total))


def apply_freeze(model, n_layers: int) -> list[int]:
    """Leave only the last `n_layers` transformer blocks trainable; returns their indices."""
    keep = set(last_blocks(model, n_layers, "freeze_trainable_layers"))
    for name, p in model.named_parameters():
        m = _LAYER.search(name)
        p.requires_grad_(bool(m) and int(m.group(1)) in keep)
    return sorted(keep)


def sft_lora_config(cfg, model):
    """The peft LoraConfig of `cfg` (SFTSettings) for `model`: on the last `lora_layers` blocks when set."""
    cfg.check_lora_targets(model)
    if cfg.lora_layers is None:
        return cfg.lora_config("CAUSAL_LM")
    blocks = last_blocks(model, cfg.lora_layers, "lora_layers")
    # `all` as module names: every linear layer of a block
    targets = linear_module_names(model, inside=_LAYER) if cfg.lora_all_linear else None
    return cfg.lora_config("CAUSAL_LM", targets=targets, layers_to_transform=blocks, layers_pattern="layers")


def check_quantization(cfg: GeneratorTrainConfig) -> None:
    """quantization_bit: a ConfigError that says what is missing and what to write instead."""
    import importlib.util

    if cfg.quantization_bit is None:
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f'key "quantization_bit": {cfg.quantization_bit}-bit loading (QLoRA) needs bitsandbytes and '
                          "a CUDA GPU; bitsandbytes is not installed here. Remove quantization_bit: ragtune then "
                          "trains the LoRA adapter on the unquantized model")
    raise ConfigError('key "quantization_bit": ragtune does not train quantized (QLoRA) models; remove '
                      "quantization_bit to train the LoRA adapter on the unquantized model")


def start_model(cfg: GeneratorTrainConfig, model_path):
    """(model, tokenizer, peft_config, base adapters): the base, with adapter_name_or_path continued as the trained
    adapter (resume_lora_training) or merged in under a new one."""
    from ragtune.models import adapter_stack, load_causal_lm

    adapter = cfg.adapter_name_or_path
    if adapter is not None and cfg.finetuning_type == "lora" and cfg.resume_lora_training:
        model, tokenizer = load_causal_lm(model_path, adapter, merge=False, trust_remote_code=cfg.trust_remote_code,
                                          adapter_key="adapter_name_or_path")
        for name, p in model.named_parameters():  # the loaded adapter keeps training, the base stays frozen
            p.requires_grad_("lora_" in name)
        return model, tokenizer, None, adapter_stack([Path(adapter)])[:-1]
    model, tokenizer = load_causal_lm(model_path, adapter, trust_remote_code=cfg.trust_remote_code)
    peft_config = None
    if cfg.finetuning_type == "lora":
        peft_config = sft_lora_config(cfg, model)
    return model, tokenizer, peft_config, adapter_stack([Path(adapter)]) if adapter is not None else []


def sft_args(cfg: GeneratorTrainConfig, has_dev: bool, reporters: list[str], use_cpu: bool = False,
             deepspeed: str | None = None):
    from trl import SFTConfig

    eval_steps = cfg.eval_steps or cfg.logging_steps
    warmup: float = cfg.warmup_steps if cfg.warmup_steps else cfg.warmup_ratio
    scheduler = "constant_with_warmup" if cfg.lr_scheduler_type == "constant" and warmup else cfg.lr_scheduler_type
    return SFTConfig(
        output_dir=str(cfg.output_dir), num_train_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type=scheduler, warmup_steps=warmup, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, bf16=cfg.bf16, fp16=cfg.fp16, seed=cfg.seed, data_seed=cfg.seed,
        activation_checkpointing=cfg.gradient_checkpointing, logging_steps=cfg.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if has_dev else "no", eval_steps=eval_steps if has_dev else None,
        report_to=reporters or "none", max_length=cfg.cutoff_len, packing=False, dataset_num_proc=None,
        use_cpu=use_cpu, remove_unused_columns=True, deepspeed=deepspeed, lr_scheduler_kwargs=cfg.lr_scheduler_kwargs,
        ddp_find_unused_parameters=False if cfg.finetuning_type != "full" else None,
    )


def train_generator(cfg: GeneratorTrainConfig) -> dict[str, Any]:
    """Fine-tune the generator; returns a summary (losses, steps, example counts, outputs)."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTTrainer

    from ragtune.generate.prompts import use_template
    from ragtune.hardware import process_state, set_threads
    from ragtune.models import resolve_causal_lm, write_adapter_stack
    from ragtune.train.generator.sft_data import encode_all, load_sft_messages, split_dev

    state = process_state()  # under `accelerate launch` the ranks join one process group (gloo on CPU)
    device = state.device.type
    check_precision(cfg, device)
    check_quantization(cfg)
    deepspeed = check_deepspeed(cfg, device)
    reporters = check_reporters(cfg)
    if device == "cpu":
        set_threads(cfg.threads)
    set_seed(cfg.seed)
    resume = resolve_resume(cfg, state.is_main_process)
    state.wait_for_everyone()

    model_path = resolve_causal_lm(cfg.model_name_or_path)
    model, tokenizer, peft_config, base_adapters = start_model(cfg, model_path)
    use_template(tokenizer, cfg.template)

    items = load_sft_messages(cfg.dataset, cfg.dataset_dir, cfg.formatting, cfg.max_samples, cfg.seed)
    train_idx, dev_idx = split_dev(len(items), cfg.val_size, cfg.seed)
    train_ex, train_stats = encode_all(tokenizer, [items[i] for i in train_idx], cfg.cutoff_len,
                                       cfg.max_prompt_tokens)
    dev_ex, dev_stats = encode_all(tokenizer, [items[i] for i in dev_idx], cfg.cutoff_len, cfg.max_prompt_tokens)
    if not train_ex:
        raise ConfigError(f'key "cutoff_len": no training example keeps an answer token within {cfg.cutoff_len} '
                          f"tokens (first: {train_stats.dropped[:3]})")

    def to_ds(examples):
        return Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])

    model.config.use_cache = False
    frozen_layers: list[int] = []
    if cfg.finetuning_type == "freeze":
        frozen_layers = apply_freeze(model, cfg.freeze_trainable_layers)

    args = sft_args(cfg, bool(dev_ex), reporters, use_cpu=device == "cpu", deepspeed=deepspeed)
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_ds(train_ex),
                        eval_dataset=to_ds(dev_ex) if dev_ex else None, processing_class=tokenizer,
                        peft_config=peft_config)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    t0 = time.perf_counter()
    with compact_fused_head():  # the LM head on answer tokens only, on CPU too (trl does so where Triton runs)
        result = train_resuming(trainer, resume)
        final_eval = trainer.evaluate() if dev_ex else {}
    trainer.model.config.use_cache = True  # the saved config is what generation reads
    save_final_model(trainer, cfg.output_dir)
    wall = time.perf_counter() - t0

    summary: dict[str, Any] = {
        "stage": cfg.stage, "finetuning_type": cfg.finetuning_type, "model": cfg.model_name_or_path,
        "model_path": str(model_path), "resumed_from": resume,
        "adapter_start": str(cfg.adapter_name_or_path) if cfg.adapter_name_or_path else None,
        "train_examples": train_stats.examples, "dev_examples": dev_stats.examples,
        "prompts_shortened": train_stats.shortened + dev_stats.shortened,
        "answers_cut": train_stats.answer_cut + dev_stats.answer_cut,
        "dropped_examples": len(train_stats.dropped) + len(dev_stats.dropped),
        "dropped_first": (train_stats.dropped + dev_stats.dropped)[:5],
        "trainable_params": trainable, "total_params": total, "trainable_layers": frozen_layers or None,
        "train_loss": result.training_loss, "eval_loss": final_eval.get("eval_loss"),
        "train_runtime_s": round(wall, 1), "world_size": state.num_processes,
    }
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(cfg.output_dir)
        if base_adapters and cfg.finetuning_type == "lora":
            write_adapter_stack(cfg.output_dir, base_adapters)
    summary = finish(trainer, cfg, summary, f"{cfg.finetuning_type} SFT of {Path(str(cfg.model_name_or_path)).name}",
                     best=False)
    state.wait_for_everyone()
    return summary
