"""Training precision: the `bf16` key (true, false or auto) and the check that the device runs what was asked."""

from __future__ import annotations

from typing import Any, Literal

from ragtune.config import NOTICES, ConfigError
from ragtune.hardware import cpu_has_fast_bf16

Bf16 = bool | Literal["auto"]
"""A `bf16` key: on, off, or auto (decided on the device by `check_precision`)."""


def resolve_bf16(value: Bf16, device: str, fp16: bool = False) -> bool:
    """`bf16: auto` -> on for CUDA GPUs with bf16 and CPUs with native bf16, off elsewhere; true/false unchanged."""
    if value != "auto":
        return bool(value)
    if fp16:
        return False
    if device == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    return device == "cpu" and cpu_has_fast_bf16()


def check_precision(cfg: Any, device: str) -> None:
    """bf16/fp16 only where the device runs them; a clear error otherwise (checked at run time, on the device).
    `bf16: auto` is decided here and written back into cfg, so the trainer sees true or false."""
    import torch

    cfg.bf16 = resolve_bf16(cfg.bf16, device, cfg.fp16)
    if cfg.fp16 and device != "cuda":
        raise ConfigError(f'key "fp16": fp16 mixed precision needs a CUDA GPU (this run is on {device}); '
                          "set fp16=false, or bf16=true on hardware that supports it")
    if cfg.bf16:
        ok = torch.cuda.is_bf16_supported() if device == "cuda" else device == "cpu"
        if not ok:
            raise ConfigError(f'key "bf16": {device} does not support bfloat16 here; set bf16=false '
                              "(or fp16=true on an older CUDA GPU)")
        if device == "cpu" and not cpu_has_fast_bf16():
            # BENCHMARKS.md, "The RL stages on CPU": a DPO step > 900 s under bf16 autocast, 107 s in float32
            NOTICES.warning('key "bf16": this CPU has no native bfloat16 (AMX or AVX512-BF16), so bf16 autocast '
                            "runs emulated, several times slower than float32 (a DPO step measured 8x); set "
                            "bf16=false on this machine")
