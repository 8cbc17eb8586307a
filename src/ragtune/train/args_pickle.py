"""Keep transformers' pickle of the training arguments out of every folder ragtune trains into.

`Trainer` writes `training_args.bin` (a full pickle of its TrainingArguments) beside every checkpoint and final
save. Neither ragtune nor resume reads it, and a model folder a user shares must carry nothing that runs code when
loaded, so it is removed as soon as it is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ARGS_PICKLE = "training_args.bin"


def drop_args_pickle(folder: str | Path) -> None:
    (Path(folder) / ARGS_PICKLE).unlink(missing_ok=True)


def args_pickle_dropper() -> Any:
    """A trainer callback that removes each checkpoint's pickle once the checkpoint is saved."""
    from transformers import TrainerCallback

    class DropArgsPickle(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            drop_args_pickle(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return DropArgsPickle()
