"""The shipped DeepSpeed ZeRO configs (configs/accelerate/deepspeed_zero*.yaml) go the way `accelerate launch` takes
them: accelerate's launcher turns the file into its environment, accelerate's DeepSpeedPlugin builds the DeepSpeed
dict, transformers fills the "auto" values from a trainer's arguments, and DeepSpeed's own parser must accept it.
Needs the optional extra (`pip install ragtune[deepspeed]`); skipped without it."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

pytest.importorskip("deepspeed")

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


def deepspeed_dict(config_file: Path, **trainer_args) -> dict:
    """What a trainer launched with `accelerate launch --config_file config_file` hands to DeepSpeed."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    args, defaults, mp_from_config = _validate_launch_command(
        launch_command_parser().parse_args(["--config_file", str(config_file), "train.py"]))
    assert args.use_deepspeed
    fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)  # as accelerate's launch_command does
    _, env = prepare_deepspeed_cmd_env(args)
    with mock.patch.dict(os.environ, {k: v for k, v in env.items() if k.startswith("ACCELERATE")}):
        plugin = DeepSpeedPlugin()
        plugin.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])
    hf = HfTrainerDeepSpeedConfig(dict(plugin.deepspeed_config))
    hf.trainer_config_process(TrainingArguments(output_dir="unused", use_cpu=True, **trainer_args))
    return hf.config


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_config_passes_deepspeeds_parser(stage):
    from deepspeed.runtime.config import DeepSpeedConfig

    cfg = deepspeed_dict(CONFIGS / f"deepspeed_zero{stage}.yaml", per_device_train_batch_size=4,
                         gradient_accumulation_steps=2, max_grad_norm=0.5, bf16=True)
    ds = DeepSpeedConfig(cfg)  # one process here: world size 1
    assert ds.zero_optimization_stage == stage and ds.zero_enabled
    assert (ds.train_micro_batch_size_per_gpu, ds.gradient_accumulation_steps, ds.train_batch_size) == (4, 2, 8)
    assert ds.gradient_clipping == 0.5 and ds.bfloat16_config.enabled
    assert ds.zero_config.gather_16bit_weights_on_model_save == (stage == 3)  # ZeRO-3 saves one gathered model


def test_deepspeeds_parser_refuses_what_the_configs_must_not_hold():
    from deepspeed.runtime.config import DeepSpeedConfig

    cfg = deepspeed_dict(CONFIGS / "deepspeed_zero2.yaml", per_device_train_batch_size=4)
    cfg["zero_optimization"]["stagee"] = 3
    with pytest.raises(Exception, match="stagee"):
        DeepSpeedConfig(cfg)
    cfg = deepspeed_dict(CONFIGS / "deepspeed_zero2.yaml", per_device_train_batch_size=4)
    cfg["train_batch_size"] = 7  # not micro batch x accumulation x world size
    with pytest.raises(AssertionError, match="train_batch_size"):
        DeepSpeedConfig(cfg)
