"""Shared bits for benchmark scripts: the hardware line, a markdown table printer, a trainer step timer, the
`ragtune` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ragtune(*args: str) -> None:
    """`ragtune ARGS` from this interpreter's environment, run in the repository; a failure stops the benchmark."""
    print("$ ragtune " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run([str(Path(sys.executable).parent / "ragtune"), *args], cwd=REPO, check=True)


def hardware_line() -> str:
    import torch

    from ragtune.hardware import cpu_name

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_name()} ({cpu_flags()}), {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}, load avg at start {load:.2f}")


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_flags() -> str:
    """The instruction sets that decide CPU speed here, and any variable that caps what the libraries use."""
    from ragtune import hardware

    flags = hardware.cpu_flags()
    if not flags:
        return "flags unknown"
    have = [f for f in ISA_FLAGS if f in flags] or ["none of " + "/".join(ISA_FLAGS)]
    caps = hardware.isa_caps()
    return " ".join(have) + (f"; capped: {' '.join(caps)}" if caps else "")


def timed_steps(trainer_cls, run: Callable[[], object]) -> tuple[object, list[float]]:
    """(what `run()` returns, seconds of each optimizer step of the `trainer_cls` it builds and trains)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []
            self._t0 = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.seconds.append(time.perf_counter() - self._t0)

    timer, original_init = StepTimer(), trainer_cls.__init__

    def init(self, *a, **k):
        original_init(self, *a, **k)
        self.add_callback(timer)

    trainer_cls.__init__ = init
    try:
        result = run()
    finally:
        trainer_cls.__init__ = original_init
    return result, timer.seconds


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
