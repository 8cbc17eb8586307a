"""Shared bits for benchmark scripts: the hardware line and a markdown table printer."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def hardware_line() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu} ({cpu_flags()}), {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}, load avg at start {load:.2f}")


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
ISA_CAPS = ("LD_PRELOAD", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "CT2_FORCE_CPU_ISA")


def cpu_flags() -> str:
    """The instruction sets that decide CPU speed here, and any variable that caps what the libraries use."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line.split(":", 1)[1].split() for line in f if line.startswith("flags")))
    except (OSError, StopIteration):
        return "flags unknown"
    have = [f for f in ISA_FLAGS if f in flags] or ["none of " + "/".join(ISA_FLAGS)]
    caps = [f"{k}={os.environ[k]}" for k in ISA_CAPS if os.environ.get(k)]
    return " ".join(have) + (f"; capped: {' '.join(caps)}" if caps else "")


def print_table(headers: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for r in rows:
        print("| " + " | ".join(f"{c:,.1f}" if isinstance(c, float) else str(c) for c in r) + " |")


def generation_output(out: Path) -> tuple[dict[str, str], list[dict]]:
    """A `ragtune generate` folder: its kept queries (id -> text) and every provenance row, failed slots included."""
    queries = {}
    for line in (out / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    rows = [json.loads(x) for x in (out / "provenance.jsonl").read_text(encoding="utf-8").splitlines()]
    return queries, rows
