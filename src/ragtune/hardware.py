"""This machine's compute settings, chosen deliberately and never at import time: threads, device, dtype."""

from __future__ import annotations

import functools
import os


def set_threads(n: int | None = None) -> int:
    """Set torch (and faiss) intra-op threads; 0/None means all cores. Returns the count used."""
    import torch

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


def process_state():
    """accelerate's PartialState of this process. Under `accelerate launch` (or torchrun) it joins the process
    group: NCCL on GPUs, gloo on CPU-only machines; alone it is a one-process state."""
    import torch
    from accelerate import PartialState

    cpu = not torch.cuda.is_available()
    if cpu and os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        _fsdp_on_cpu_notice()
    return PartialState(cpu=cpu)


@functools.cache
def _fsdp_on_cpu_notice() -> None:
    """Said once per process, on ragtune.config.notice's channel (config sits above this module)."""
    import logging

    logging.getLogger("ragtune.notice").warning(
        "accelerate was launched with FSDP, which accelerate runs only on GPUs: on this CPU machine "
        "every rank holds the whole model and training is plain data parallel (DDP over gloo)")


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


# variables that cap which instructions torch, oneDNN, MKL or CTranslate2 use (or, LD_PRELOAD, a CPUID shim)
ISA_CAP_VARIABLES = ("LD_PRELOAD", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                     "CT2_FORCE_CPU_ISA")


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """The CPU's flags as /proc/cpuinfo lists them (empty where there is none: not Linux)."""
    return set(next((line.split(":", 1)[1].split() for line in _cpuinfo().splitlines()
                     if line.startswith("flags")), []))


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` says."""
    import platform

    return next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                 if line.startswith("model name")), platform.processor() or platform.machine())


def isa_caps() -> list[str]:
    """`NAME=value` for each ISA-capping variable that is set."""
    return [f"{k}={os.environ[k]}" for k in ISA_CAP_VARIABLES if os.environ.get(k)]


def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AMX or AVX512-BF16): there bf16 inference is ~3x fp32.

    RAGTUNE_CPU_BF16=0/1 overrides the detection (which reads /proc/cpuinfo, so it is Linux-only). torch limited to
    AVX2 (`ATEN_CPU_CAPABILITY=avx2`, or oneDNN by `ONEDNN_MAX_CPU_ISA=AVX2`) does not use those instructions even
    where the CPU has them, so it counts as no native bf16.
    """
    forced = os.environ.get("RAGTUNE_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper().startswith(("AVX2", "AVX_", "SSE", "DEFAULT")):
        return False
    import torch

    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT", "NO AVX"):
        return False
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_has_vnni() -> bool:
    """True when the CPU multiplies and adds int8 in one instruction (AVX512-VNNI or AVX-VNNI), read from CPUID via
    torch; only there does int8 inference beat float32 by much (BENCHMARKS.md, "Encoding backends"). RAGTUNE_CPU_VNNI
    =0/1 overrides."""
    forced = os.environ.get("RAGTUNE_CPU_VNNI")
    if forced in ("0", "1"):
        return forced == "1"
    import torch

    return bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)())


def cpu_has_amx() -> bool:
    """True when bf16 matmuls can run on AMX tiles: native bf16 (`cpu_has_fast_bf16`, which honours its overrides and
    the ISA caps), the CPU's amx_bf16 flag, and no oneDNN cap below AMX. RAGTUNE_CPU_AMX=0/1 overrides."""
    forced = os.environ.get("RAGTUNE_CPU_AMX")
    if forced in ("0", "1"):
        return forced == "1"
    if not cpu_has_fast_bf16():
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and cap != "ALL" and "AMX" not in cap:
        return False
    return "amx_bf16" in cpu_flags()


def auto_dtype(device: str) -> str:
    """Inference dtype for `dtype: auto`: bf16 on CUDA that supports it and on CPUs with native bf16, else fp32."""
    import torch

    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "cpu" and cpu_has_fast_bf16():
        return "bfloat16"
    return "float32"
