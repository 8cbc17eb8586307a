"""A sharded (torch.distributed.checkpoint) checkpoint is checked before resume: plain state passes, code is refused
before torch's own loader (full pickle) could run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.config import ConfigError
from ragtune.train.sharded_checkpoint import METADATA, check_sharded_checkpoint


class _Touch:
    """Pickles as a call that creates a file: what a hostile checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _save(folder: Path, state: dict) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.save(state, checkpoint_id=folder)


def _honest(checkpoint: Path) -> None:
    import torch

    _save(checkpoint / "pytorch_model_fsdp_0", {"model": {"w": torch.ones(2, 3), "b": torch.zeros(3)}})
    _save(checkpoint / "optimizer_0", {"optimizer": {
        "state": {"w": {"step": torch.tensor(2.0), "exp_avg": torch.ones(2, 3)}},
        "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "weight_decay": 0.0, "params": ["w"]}]}})


def test_plain_sharded_state_passes_and_torch_reads_it(tmp_path):
    import torch
    import torch.distributed.checkpoint as dcp

    ckpt = tmp_path / "checkpoint-2"
    _honest(ckpt)
    assert check_sharded_checkpoint(ckpt) == 2
    back = {"optimizer": {"state": {"w": {"step": torch.tensor(0.0), "exp_avg": torch.zeros(2, 3)}},
                          "param_groups": [{"lr": 0.0, "betas": (0.0, 0.0), "weight_decay": 1.0, "params": []}]}}
    dcp.load(back, checkpoint_id=ckpt / "optimizer_0")
    group = back["optimizer"]["param_groups"][0]
    assert (group["lr"], group["betas"], group["params"]) == (0.01, (0.9, 0.999), ["w"])
    assert check_sharded_checkpoint(tmp_path / "no-shards") == 0


def test_an_item_that_would_run_code_is_refused_unread(tmp_path):
    import torch

    marker = tmp_path / "ran"
    ckpt = tmp_path / "checkpoint-2"
    _save(ckpt / "optimizer_0", {"optimizer": {"param_groups": [{"lr": 0.1, "hook": _Touch(marker)}]},
                                 "w": torch.ones(1)})
    assert not marker.exists()  # saving pickles the call; only loading would run it
    with pytest.raises(ConfigError) as e:
        check_sharded_checkpoint(ckpt)
    said = str(e.value)
    assert str(ckpt / "optimizer_0") in said and ".distcp" in said and "optimizer.param_groups" in said
    assert "never unpickles" in said and not marker.exists()


def test_a_missing_or_truncated_shard_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "checkpoint-2"
    _honest(ckpt)
    [part] = (ckpt / "optimizer_0").glob("*.distcp")
    part.write_bytes(part.read_bytes()[:40])
    with pytest.raises(ConfigError, match="cannot be read"):
        check_sharded_checkpoint(ckpt)
    part.unlink()
    with pytest.raises(ConfigError, match=r"distcp.*cannot be read \(FileNotFoundError"):
        check_sharded_checkpoint(ckpt)


def _global_call(module: str, name: str, arg: str) -> bytes:
    """A protocol-4 pickle of `module.name(arg)` (GLOBAL + REDUCE), as a hostile metadata file would hold."""
    text = arg.encode()
    return (b"\x80\x04c" + f"{module}\n{name}\n".encode() + b"X" + len(text).to_bytes(4, "little") + text
            + b"\x85R.")


@pytest.mark.parametrize("module,name", [
    ("builtins", "exec"),                                 # plainly outside the allow-list
    ("pathlib", "os.system"),                             # an allowed module, reached through a dotted name
    ("torch.distributed.checkpoint.metadata", "os.system"),  # the metadata module imports os: not one of its classes
])
def test_metadata_that_would_run_code_is_refused_unread(tmp_path, module, name):
    marker = tmp_path / "ran"
    ckpt = tmp_path / "checkpoint-2"
    _honest(ckpt)
    arg = f"open({str(marker)!r}, 'w').close()" if name == "exec" else f"touch {marker}"
    (ckpt / "optimizer_0" / METADATA).write_bytes(_global_call(module, name, arg))
    with pytest.raises(ConfigError) as e:
        check_sharded_checkpoint(ckpt)
    assert str(ckpt / "optimizer_0" / METADATA) in str(e.value) and not marker.exists()


def test_resume_refuses_before_the_trainer_reads_anything(tmp_path):
    from ragtune.train.harness import train_resuming

    class Trainer:
        def train(self, resume_from_checkpoint=None):
            raise AssertionError("the trainer must not be reached")

    ckpt = tmp_path / "checkpoint-2"
    _honest(ckpt)
    (ckpt / "pytorch_model_fsdp_0" / METADATA).write_bytes(_global_call("builtins", "exec", "1"))
    with pytest.raises(ConfigError, match="pytorch_model_fsdp_0"):
        train_resuming(Trainer(), str(ckpt))
