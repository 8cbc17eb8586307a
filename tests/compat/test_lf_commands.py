"""The original pipeline's LLaMA-Factory command lines (interfaces.md: SFT, reward model, PPO), run unchanged but for
the program (`train_bash.py` -> `ragtune train generator --from-llamafactory`), the model (a tiny random one) and
the paths, on this CPU."""

from __future__ import annotations

import json

from lf_fixtures import sptar_registry, write_json
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.models import ADAPTER_STACK
from tiny_lm import toy_corpus

runner = CliRunner()


def run_lf(args: list[str]):
    res = runner.invoke(app, ["train", "generator", "--from-llamafactory", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_sptar_sft_rm_ppo_command_lines_run(tiny_lm, tmp_path):
    docs, pairs = toy_corpus(16)
    data = tmp_path / "data"
    sptar_registry(data, docs, pairs)
    ds_config = write_json(tmp_path / "ds_config.json", {"train_micro_batch_size_per_gpu": "auto",
                                                         "zero_optimization": {"stage": 2}})
    sft, rm, ppo = tmp_path / "sft", tmp_path / "rm", tmp_path / "ppo"
    common = ["--model_name_or_path", str(tiny_lm), "--do_train", "--dataset_dir", str(data), "--template", "default",
              "--finetuning_type", "lora", "--lora_target", "q_proj,v_proj", "--overwrite_cache"]

    # SFT: the command of interfaces.md as written (batch 24 x 4 over 16 rows = one step per epoch, 3 epochs)
    out = run_lf(["--stage", "sft", *common, "--dataset", "sptar_sft", "--output_dir", str(sft),
                  "--per_device_train_batch_size", "24", "--gradient_accumulation_steps", "4",
                  "--lr_scheduler_type", "cosine", "--logging_steps", "10", "--save_steps", "3000",
                  "--learning_rate", "5e-5", "--num_train_epochs", "3.0", "--plot_loss", "--fp16",
                  "--deepspeed", str(ds_config)])
    assert "LLaMA-Factory arguments as ragtune: ragtune train generator stage=sft" in out
    for said in ('"do_train" ignored', '"overwrite_cache" ignored', "--fp16", "--deepspeed", '"ranking": true'):
        assert said in out, said
    summary = json.loads((sft / "train_summary.json").read_text())
    assert summary["global_step"] == 3 and summary["train_examples"] == 16
    adapter = json.loads((sft / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    assert (sft / "training_loss.png").exists()  # --plot_loss
    config = (sft / "config.yaml").read_text()
    assert "lr_scheduler_type: cosine" in config and "learning_rate: 5.0e-05" in config and "fp16: false" in config

    # reward model on the preference rows, on top of the SFT adapter (merged: --resume_lora_training False)
    run_lf(["--stage", "rm", *common, "--dataset", "sptar_pref", "--checkpoint_dir", str(sft),
            "--resume_lora_training", "False", "--output_dir", str(rm), "--per_device_train_batch_size", "2",
            "--gradient_accumulation_steps", "4", "--lr_scheduler_type", "cosine", "--logging_steps", "10",
            "--save_steps", "1000", "--learning_rate", "1e-8", "--num_train_epochs", "1.0", "--plot_loss", "--fp16"])
    assert json.loads((rm / "reward_summary.json").read_text())["steps"] == 2  # 16 pairs / (2 x 4)
    assert json.loads((rm / ADAPTER_STACK).read_text())["base_adapters"] == [str(sft.resolve())]

    # PPO against that reward model, prompts from the SFT dataset
    out = run_lf(["--stage", "ppo", *common, "--dataset", "sptar_sft", "--checkpoint_dir", str(sft),
                  "--reward_model", str(rm), "--output_dir", str(ppo), "--per_device_train_batch_size", "4",
                  "--gradient_accumulation_steps", "2", "--lr_scheduler_type", "cosine", "--logging_steps", "10",
                  "--save_steps", "1000", "--learning_rate", "1e-7", "--num_train_epochs", "1.0", "--plot_loss",
                  "--bf16", "--max_new_tokens", "8"])
    assert '"bf16" ignored' in out and '"plot_loss" ignored' in out
    log = [json.loads(line) for line in (ppo / "ppo_log.jsonl").read_text().splitlines()]
    assert len(log) == 2  # 1 epoch x 16 prompts / rollout batch 8
    assert (ppo / "merged" / "config.json").exists() and (ppo / "rl_curves.png").exists()
    assert json.loads((ppo / "adapter" / ADAPTER_STACK).read_text())["base_adapters"] == [str(sft.resolve())]
