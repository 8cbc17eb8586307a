"""Run ragtune commands inside one `accelerate launch` and record, per rank, what each trainer saw and ended with.

    accelerate launch --multi_gpu --num_processes 2 tests/integration/dist_driver.py JOBS.json OUT_DIR

JOBS.json is a list of {"name", "argv"} (argv: a `ragtune` command line). The jobs run one after the other in the
same processes, so the launch and the imports are paid once. For each job and rank r, OUT_DIR gets
`<name>.rank<r>.json` ({"indices": [the training rows fetched, one list per batch], "exit": code}) and
`<name>.rank<r>.safetensors` (the trainable weights when training ended), and rank 0 writes
`<name>.before.safetensors` (the same weights when training started). transformers' Trainer (every trl and
sentence-transformers trainer) and ragtune's PPOTrainer are wrapped; nothing else changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

RANK = int(os.environ.get("RANK", "0"))
OUT: Path
JOB = {"name": "", "indices": []}


def _dump(model, suffix: str) -> None:
    from safetensors.torch import save_file

    weights = {n: p.detach().cpu().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(weights, str(OUT / f"{JOB['name']}.{suffix}.safetensors"))


def _patch() -> None:
    import transformers

    from ragtune.train.generator.ppo import PPOTrainer

    trainer_train = transformers.Trainer.train

    def train(self, *args, **kwargs):
        ds = self.train_dataset
        fetch = ds.__getitems__

        def getitems(keys):
            JOB["indices"].append([int(k) for k in keys])
            return fetch(keys)

        ds.__getitems__ = getitems  # torch's fetcher looks the attribute up on the instance
        if RANK == 0:
            _dump(self.model, "before")
        try:
            return trainer_train(self, *args, **kwargs)
        finally:
            del ds.__getitems__
            _dump(self.model, f"rank{RANK}")

    ppo_train, ppo_step = PPOTrainer.train, PPOTrainer.step

    def ppo_train_recorded(self, prompts, *args, **kwargs):
        JOB["prompts"] = {hashlib.sha1(p.encode()).hexdigest(): i for i, p in enumerate(prompts)}
        if RANK == 0:
            _dump(self.model, "before")
        try:
            return ppo_train(self, prompts, *args, **kwargs)
        finally:
            _dump(self.model, f"rank{RANK}")

    def ppo_step_recorded(self, prompts, reward_fn):
        JOB["indices"].append([JOB["prompts"][hashlib.sha1(p.encode()).hexdigest()] for p in prompts])
        return ppo_step(self, prompts, reward_fn)

    transformers.Trainer.train = train
    PPOTrainer.train, PPOTrainer.step = ppo_train_recorded, ppo_step_recorded


def main() -> int:
    global OUT
    jobs = json.loads(Path(sys.argv[1]).read_text())
    OUT = Path(sys.argv[2])
    OUT.mkdir(parents=True, exist_ok=True)
    _patch()
    from ragtune.cli import app

    failed = 0
    for job in jobs:
        JOB.update(name=job["name"], indices=[])
        code = app(job["argv"], prog_name="ragtune", standalone_mode=False) or 0
        (OUT / f"{job['name']}.rank{RANK}.json").write_text(json.dumps({"indices": JOB["indices"], "exit": code}))
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
