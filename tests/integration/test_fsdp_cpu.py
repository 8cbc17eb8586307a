"""The generator's trainers under FSDP2 (configs/accelerate/fsdp.yaml, gloo, two CPU processes): SFT with sharded
checkpoints, resume from them, one gathered adapter (or whole model) at the end, and the same weights as DDP; the
reward model, DPO and GRPO each with sharded checkpoints and one whole adapter at the end (before they saved
through `save_final_model`, the reward model's save crashed on FSDP's sharded parameters)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}


def _sft(lm: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "generator", f"model_name_or_path={lm}", "dataset=toy", f"dataset_dir={data / 'sft'}",
            f"output_dir={out}", "max_steps=4", "per_device_train_batch_size=4", "logging_steps=1", "save_steps=2",
            "learning_rate=1e-2", "cutoff_len=96", "plot_loss=false", *extra]


def _launch(launcher: list[str], args: list[str]) -> None:
    res = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *launcher, *args], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]


@pytest.fixture(scope="module")
def runs(tiny_lm, toy_doc2query, tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("fsdp")
    config = yaml.safe_load((ROOT / "configs" / "accelerate" / "fsdp.yaml").read_text())
    assert config["distributed_type"] == "FSDP" and config["fsdp_config"]["fsdp_version"] == 2
    config["mixed_precision"] = "no"  # float32, so the comparison with DDP is exact up to summation order
    (work / "fsdp-cpu.yaml").write_text(yaml.safe_dump(config))
    fsdp = ["--config_file", str(work / "fsdp-cpu.yaml"), str(ROOT / "tests" / "integration" / "fsdp_on_cpu.py")]
    ddp = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "ragtune.cli"]
    out = {name: work / name for name in ("fsdp", "ddp", "resumed", "full")}
    _launch(fsdp, _sft(tiny_lm, toy_doc2query, out["fsdp"]))
    _launch(ddp, _sft(tiny_lm, toy_doc2query, out["ddp"]))
    # a run killed after its first checkpoint: only checkpoint-2 survives, and the rerun resumes from it
    shutil.copytree(out["fsdp"] / "checkpoint-2", out["resumed"] / "checkpoint-2")
    _launch(fsdp, _sft(tiny_lm, toy_doc2query, out["resumed"], "resume_from_checkpoint=true"))
    _launch(fsdp, _sft(tiny_lm, toy_doc2query, out["full"], "finetuning_type=full", "learning_rate=1e-3"))
    return out


def _adapter(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter_model.safetensors"))


def test_checkpoints_are_sharded_across_the_two_ranks(runs):
    for step in ("checkpoint-2", "checkpoint-4"):
        for state in ("pytorch_model_fsdp_0", "optimizer_0"):
            folder = runs["fsdp"] / step / state
            assert sorted(p.name for p in folder.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"], folder
    assert not list(runs["ddp"].glob("checkpoint-*/*.distcp"))


def test_fsdp_trains_the_same_adapter_as_ddp_and_saves_it_whole(runs):
    import torch

    fsdp, ddp = _adapter(runs["fsdp"]), _adapter(runs["ddp"])
    assert fsdp.keys() == ddp.keys() and fsdp
    assert any(v.abs().max() > 0 for v in fsdp.values())  # LoRA B starts at zero: training moved it
    for k in fsdp:
        torch.testing.assert_close(fsdp[k], ddp[k], rtol=1e-4, atol=1e-5, msg=k)
    s = json.loads((runs["fsdp"] / "train_summary.json").read_text())
    assert s["world_size"] == 2 and s["global_step"] == 4


def test_resume_from_a_sharded_checkpoint_ends_where_the_whole_run_did(runs):
    import torch

    whole, resumed = _adapter(runs["fsdp"]), _adapter(runs["resumed"])
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    s = json.loads((runs["resumed"] / "train_summary.json").read_text())
    assert s["resumed_from"].endswith("checkpoint-2") and s["global_step"] == 4


def test_a_full_fine_tune_is_gathered_into_one_loadable_model(runs, tiny_lm):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base, tuned = load_file(str(tiny_lm / "model.safetensors")), load_file(str(runs["full"] / "model.safetensors"))
    assert tuned.keys() == base.keys()
    assert all(tuned[k].shape == base[k].shape for k in base)  # whole tensors, not one rank's shard
    assert all(not torch.equal(tuned[k], base[k]) for k in base)
    AutoModelForCausalLM.from_pretrained(runs["full"])


def _policy(lm: Path, out: Path, stage: str, *extra: str) -> list[str]:
    return ["train", "generator", f"stage={stage}", f"model_name_or_path={lm}", "lora_rank=4", "max_steps=4",
            "per_device_train_batch_size=2", "learning_rate=1e-3", "logging_steps=1", "save_steps=2", "seed=3",
            f"output_dir={out}", *extra]


@pytest.fixture(scope="module")
def policy_runs(tiny_lm, tmp_path_factory) -> dict[str, Path]:
    from tiny_bert import toy_topic_rows, write_jsonl
    from tiny_lm import vocab_corpus

    work = tmp_path_factory.mktemp("fsdp-policy")
    config = yaml.safe_load((ROOT / "configs" / "accelerate" / "fsdp.yaml").read_text())
    config["mixed_precision"] = "no"
    (work / "fsdp-cpu.yaml").write_text(yaml.safe_dump(config))
    fsdp = ["--config_file", str(work / "fsdp-cpu.yaml"), str(ROOT / "tests" / "integration" / "fsdp_on_cpu.py")]
    ddp = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "ragtune.cli"]
    prefs = write_jsonl(work / "prefs.jsonl", [
        {"instruction": f"Write a query for: the {r['pos'][0]}", "input": "", "output": [r["query"], r["neg"][0]]}
        for r in toy_topic_rows(16)])
    out = {f"{stage}-{how}": work / f"{stage}-{how}" for stage in ("rm", "dpo") for how in ("fsdp", "ddp")}
    for stage, length in (("rm", 256), ("dpo", 64)):
        for how, launcher in (("fsdp", fsdp), ("ddp", ddp)):
            _launch(launcher, _policy(tiny_lm, out[f"{stage}-{how}"], stage, f"train_file={prefs}",
                                      f"max_length={length}"))
    out["grpo-fsdp"] = work / "grpo-fsdp"
    _launch(fsdp, _policy(tiny_lm, out["grpo-fsdp"], "grpo", "num_generations=4", "max_completion_length=12",
                          "per_device_train_batch_size=4", f"prompts.corpus={vocab_corpus(work, tiny_lm)}",
                          "prompts.sample_num=4", "merge=false"))
    return out


@pytest.mark.parametrize("stage", ["rm", "dpo", "grpo"])
def test_policy_trainers_write_sharded_checkpoints_under_fsdp(policy_runs, stage):
    for step in ("checkpoint-2", "checkpoint-4"):
        folder = policy_runs[f"{stage}-fsdp"] / step / "pytorch_model_fsdp_0"
        assert sorted(p.name for p in folder.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"], folder


@pytest.mark.parametrize("stage", ["rm", "dpo"])
def test_reward_model_and_dpo_under_fsdp_save_the_adapter_ddp_trains(policy_runs, stage):
    import torch

    sub = "" if stage == "rm" else "adapter"
    fsdp, ddp = _adapter(policy_runs[f"{stage}-fsdp"] / sub), _adapter(policy_runs[f"{stage}-ddp"] / sub)
    assert fsdp.keys() == ddp.keys() and fsdp
    if stage == "rm":
        assert any(".score." in k for k in fsdp)  # the scalar head, trained in full, is saved with the adapter
    assert any(v.abs().max() > 0 for k, v in fsdp.items() if "lora_B" in k)
    for k in fsdp:
        torch.testing.assert_close(fsdp[k], ddp[k], rtol=1e-4, atol=1e-5, msg=k)


def test_grpo_under_fsdp_saves_one_whole_adapter(policy_runs, tiny_lm):
    from ragtune.models import load_causal_lm

    adapter = policy_runs["grpo-fsdp"] / "adapter"
    weights = _adapter(adapter)
    assert any(v.abs().max() > 0 for k, v in weights.items() if "lora_B" in k)
    load_causal_lm(tiny_lm, adapter)  # a rank's shard would not fit the base model's layers
    s = json.loads((policy_runs["grpo-fsdp"] / "rl_summary.json").read_text())
    assert s["world_size"] == 2 and s["steps"] == 4
