"""The generator commands end to end: CLI errors, SIGKILL + resume, and 2-process `accelerate launch` on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from typer.testing import CliRunner

from generate_kit import check_complete
from ragtune.cli import app

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}


def test_cli_reports_config_errors_without_traceback(tmp_path):
    res = CliRunner().invoke(app, ["train", "generator", "stage=ppp", "dataset=x", f"output_dir={tmp_path}"])
    assert res.exit_code == 1
    assert 'key "stage"' in res.output and "allowed values: sft" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["generate", f"corpus={tmp_path}", f"output_dir={tmp_path / 'o'}",
                                   "sampling.tempreature=1"])
    assert res.exit_code == 1 and 'did you mean "sampling.temperature"' in res.output


def test_sigkill_mid_run_then_rerun(tiny_lm, toy_doc2query, tmp_path):
    out = tmp_path / "gen"
    cmd = [sys.executable, "-m", "ragtune.cli", "generate", f"model_name_or_path={tiny_lm}",
           f"corpus={toy_doc2query}", f"output_dir={out}", "exclude_splits=[]", "query_per_document=2",
           "batch_size=1", "sampling.max_new_tokens=24", "progress=false", "threads=1"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard = out / "shards" / "part-00000.jsonl"
    deadline = time.time() + 180  # a loaded machine imports torch slowly; the kill comes at 3 rows
    while time.time() < deadline and proc.poll() is None:
        if shard.is_file() and shard.read_bytes().count(b"\n") >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    partial = shard.read_bytes().count(b"\n")
    assert 3 <= partial < 40 and not (out / "provenance.jsonl").exists()
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{partial} documents resumed" in done.stdout.replace("\n", " ")
    check_complete(out, 2, 40)


def _accelerate(*args: str) -> subprocess.CompletedProcess:
    # accelerate 1.x: `--cpu --num_processes 2` starts ONE process unless mpirun is set up; the torchrun-based
    # launcher behind `--multi_gpu` starts two, and ragtune's PartialState(cpu=True) joins them over gloo.
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ragtune.cli"]
    return subprocess.run([*launcher, *args], env=ENV, capture_output=True, text=True, timeout=240)


def test_two_process_train_and_generate(tiny_lm, toy_doc2query, tmp_path):
    run = tmp_path / "sft"
    res = _accelerate("train", "generator", f"model_name_or_path={tiny_lm}", "dataset=toy",
                      f"dataset_dir={toy_doc2query / 'sft'}", f"output_dir={run}", "max_steps=4",
                      "per_device_train_batch_size=4", "logging_steps=1", "save_steps=4", "learning_rate=1e-2",
                      "cutoff_len=96", "plot_loss=false")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 4
    assert (run / "adapter_model.safetensors").is_file() and (run / "checkpoint-4").is_dir()

    out = tmp_path / "gen"
    res = _accelerate("generate", f"model_name_or_path={tiny_lm}", f"adapter_name_or_path={run}",
                      f"corpus={toy_doc2query}", f"output_dir={out}", "query_per_document=2", "batch_size=4",
                      "sampling.max_new_tokens=6", "progress=false")
    assert res.returncode == 0, res.stderr[-3000:]
    parts = sorted(p.name for p in (out / "shards").iterdir())
    assert parts == ["part-00000.jsonl", "part-00001.jsonl"]
    assert all((out / "shards" / p).read_text().count("\n") == 10 for p in parts)  # 20 documents split in half
    check_complete(out, 2, 20)
    assert json.loads((out / "generation_summary.json").read_text())["world_size"] == 2
