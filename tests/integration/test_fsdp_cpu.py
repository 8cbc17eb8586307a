"""The generator's SFT under FSDP2 (configs/accelerate/fsdp.yaml, gloo, two CPU processes): sharded checkpoints,
resume from them, one gathered adapter (or whole model) at the end, and the same weights as DDP."""

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
