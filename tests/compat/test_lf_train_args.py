"""LLaMA-Factory's training arguments in `ragtune train generator` YAML and key=value overrides: each accepted with
its meaning, or with a one-line notice when it has none here; unknown keys still fail with "did you mean"."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml

from ragtune.config import ConfigError, load_config
from ragtune.train.generator.lf_args import parse_lf_args, translate
from ragtune.train.generator.sft import check_quantization, sft_args
from ragtune.train.generator.sft_config import GeneratorTrainConfig
from ragtune.train.harness import check_deepspeed

LF_YAML = {  # a llamafactory-cli train YAML, as their examples write it
    "stage": "sft", "do_train": True, "model_name_or_path": "m", "dataset": "sptar_sft", "dataset_dir": "data",
    "template": "default", "finetuning_type": "lora", "lora_target": "q_proj,v_proj", "output_dir": "out",
    "overwrite_cache": True, "overwrite_output_dir": True, "checkpoint_dir": "sft_adapter",
    "resume_lora_training": False, "per_device_train_batch_size": 24, "gradient_accumulation_steps": 4,
    "lr_scheduler_type": "cosine", "logging_steps": 10, "save_steps": 3000, "learning_rate": 5e-5,
    "num_train_epochs": 3.0, "val_size": 0.1, "plot_loss": True, "bf16": True,
}


def test_llamafactory_yaml_keys_are_accepted_with_their_meaning(tmp_path, caplog):
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(LF_YAML))
    with caplog.at_level(logging.WARNING, logger="ragtune.notice"):
        cfg = load_config(GeneratorTrainConfig, path, ["deepspeed=ds_config.json"])
    assert cfg.adapter_name_or_path.name == "sft_adapter" and cfg.resume_lora_training is False
    assert cfg.overwrite_output_dir and cfg.plot_loss and cfg.val_size == 0.1 and cfg.bf16
    assert cfg.dataset_dir.name == "data" and cfg.lora_target == ["q_proj", "v_proj"]
    assert str(cfg.deepspeed) == "ds_config.json"
    notices = [r.message for r in caplog.records]
    assert len(notices) == 2 and all(" ignored: " in n for n in notices)  # do_train, overwrite_cache: one line each
    assert any('"do_train"' in n for n in notices) and any('"overwrite_cache"' in n for n in notices)


def test_unknown_keys_still_fail_with_did_you_mean():
    with pytest.raises(ConfigError, match='unknown key "do_trian".*did you mean "do_train"'):
        load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o", "do_trian=true"])
    with pytest.raises(ConfigError, match='both "checkpoint_dir" and "adapter_name_or_path"'):
        load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o", "checkpoint_dir=x",
                                                 "adapter_name_or_path=y"])


def test_every_transformers_scheduler_passes_through():
    from transformers.optimization import get_scheduler
    from transformers.trainer_utils import SchedulerType

    needs = {"cosine_with_min_lr": {"min_lr_rate": 0.1}, "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
             "warmup_stable_decay": {"num_decay_steps": 4}}
    for kind in SchedulerType:
        extra = {"val_size": 0.2} if kind.value in {"reduce_lr_on_plateau", "greedy"} else {}
        cfg = GeneratorTrainConfig(dataset=["a"], output_dir="o", lr_scheduler_type=kind.value, warmup_steps=2,
                                   lr_scheduler_kwargs=needs.get(kind.value, {}), **extra)
        args = sft_args(cfg, has_dev=bool(extra), reporters=[], use_cpu=True)
        # ragtune's one deviation: `constant` with warmup asked for warms up (constant_with_warmup)
        expected = "constant_with_warmup" if kind.value == "constant" else kind.value
        assert args.lr_scheduler_type.value == expected and args.lr_scheduler_kwargs == needs.get(kind.value, {})
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = get_scheduler(args.lr_scheduler_type, opt, args.get_warmup_steps(10), 10,
                              scheduler_specific_kwargs=args.lr_scheduler_kwargs)
        for _ in range(10):
            opt.step()
            sched.step(1.0) if kind.value in {"reduce_lr_on_plateau", "greedy"} else sched.step()
        if kind.value in {"linear", "cosine", "polynomial"}:
            assert opt.param_groups[0]["lr"] < 1e-3, kind  # decayed to (about) zero over the 10 steps
    with pytest.raises(ConfigError, match='"cosine_with_min_lr" needs lr_scheduler_kwargs.min_lr or min_lr_rate'):
        load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o", "lr_scheduler_type=cosine_with_min_lr"])
    with pytest.raises(ConfigError, match='unknown scheduler .*did you mean "cosine"'):
        load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o", "lr_scheduler_type=cosin"])


def test_deepspeed_and_quantization_say_what_is_missing(monkeypatch, tmp_path):
    import importlib.util

    cfg = load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o", f"deepspeed={tmp_path / 'ds.json'}",
                                                   "quantization_bit=4"])
    real = importlib.util.find_spec
    absent = {"deepspeed", "bitsandbytes"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name))
    with pytest.raises(ConfigError, match="pip install deepspeed"):
        check_deepspeed(cfg, "cuda")
    with pytest.raises(ConfigError, match="bitsandbytes.*not installed.*Remove quantization_bit"):
        check_quantization(cfg)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "deepspeed" else real(name))
    with pytest.raises(ConfigError, match="CUDA GPUs and this run is on cpu"):
        check_deepspeed(cfg, "cpu")


def test_command_line_parsing_and_machine_notices(caplog):
    argv = ["--stage", "sft", "--do_train", "--lora_target", "q_proj,v_proj", "--learning_rate", "5e-5",
            "--num_train_epochs=3.0", "--resume_lora_training", "False", "--fp16", "--deepspeed", "ds.json",
            "--save_steps", "3000", "--checkpoint_dir", "None"]
    assert parse_lf_args(argv) == {"stage": "sft", "do_train": True, "lora_target": "q_proj,v_proj",
                                   "learning_rate": 5e-5, "num_train_epochs": 3.0, "resume_lora_training": False,
                                   "fp16": True, "deepspeed": "ds.json", "save_steps": 3000, "checkpoint_dir": None}
    assert translate(argv, cuda=True)["fp16"] is True and translate(argv, cuda=True)["deepspeed"] == "ds.json"
    with caplog.at_level(logging.WARNING, logger="ragtune.notice"):
        on_cpu = translate(argv, cuda=False)
    assert "fp16" not in on_cpu and "deepspeed" not in on_cpu
    assert [r.message.split(":")[0] for r in caplog.records] == ["--fp16", "--deepspeed ds.json"]
    assert translate(["--do_train"], cuda=False)["stage"] == "sft"  # LLaMA-Factory's default stage
    with pytest.raises(ConfigError, match="expected a LLaMA-Factory argument"):
        parse_lf_args(["--stage", "sft", "stray"])


def test_cli_points_llamafactory_flags_to_from_llamafactory():
    from typer.testing import CliRunner

    from ragtune.cli import app

    res = CliRunner().invoke(app, ["train", "generator", "--stage", "sft"])
    assert res.exit_code == 1 and "--from-llamafactory" in res.output and "Traceback" not in res.output
