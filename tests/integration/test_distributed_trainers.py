"""Every trainer under `accelerate launch` with two processes (DDP over gloo on CPU), tiny models.

One launch trains all of them for 2 steps (checkpoint at step 2), a second launch resumes each to step 4; the
driver (dist_driver.py) records per rank which training rows were fetched and the trainable weights at the end.
For each trainer: the two ranks end with identical weights that differ from the start (gradients were averaged),
in each run the two ranks trained on disjoint rows; one checkpoint-2 was written, and the resumed run
reports it and ends at step 4. Part of `make test` (two launches of nine trainers: about 70 s on 2 cores): it
was marked slow once, and a sentence-transformers upgrade broke ColBERT under DDP unseen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("dist_driver.py")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore", "WANDB_DISABLED": "true"}
ROWS = 16  # every trainer's data: 16 rows, 2 per rank and step -> 4 steps = one epoch
TRAINERS = ["sft", "embedding", "colbert", "cross_encoder", "llm_reranker", "rm", "dpo", "grpo", "ppo"]


def launch(jobs: list[dict], work: Path, name: str) -> subprocess.CompletedProcess:
    """accelerate 1.x starts ONE process for `--cpu --num_processes 2`; the torchrun launcher behind
    `--multi_gpu` starts two, which join over gloo on a machine without CUDA."""
    (work / f"{name}.json").write_text(json.dumps(jobs))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(DRIVER),
           str(work / f"{name}.json"), str(work / name)]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)


def _data(root: Path, toy_doc2query: Path, lm: Path) -> dict[str, Path]:
    from tiny_bert import toy_topic_rows, write_jsonl
    from tiny_lm import vocab_corpus

    rows = [{k: v for k, v in r.items() if k != "topic"} for r in toy_topic_rows(ROWS)]
    prefs = [{"instruction": f"Write a query for: the {r['pos'][0]}", "input": "",
              "output": [r["query"], r["neg"][0]]} for r in rows]
    points = [{"query": r["query"], "content": r["pos" if i % 2 else "neg"][0], "label": float(i % 2)}
              for i, r in enumerate(rows)]
    return {"emb": write_jsonl(root / "emb.jsonl", rows), "point": write_jsonl(root / "point.jsonl", points),
            "prefs": write_jsonl(root / "prefs.jsonl", prefs), "corpus": toy_doc2query,
            "vocab": vocab_corpus(root, lm)}


def jobs(d: dict[str, Path], bert: Path, lm: Path, out: Path, steps: int) -> list[dict]:
    common = ["per_device_train_batch_size=2", f"max_steps={steps}", "learning_rate=1e-3", "logging_steps=1",
              "save_steps=2", "seed=3"] + (["resume_from_checkpoint=true"] if steps > 2 else [])
    quiet = ["threads=1", "plot_loss=false", "warmup_ratio=0"]
    retr = [*common, *quiet, f"model_name_or_path={bert}"]
    policy = [*common, f"model_name_or_path={lm}", "lora_rank=4", "max_length=64"]
    sft_data = d["corpus"] / "sft"
    sft_lines = sft_data / "toy16.jsonl"
    if not sft_lines.exists():
        sft_lines.write_text("".join((sft_data / "toy.jsonl").read_text().splitlines(keepends=True)[:ROWS]))
    return [
        {"name": "sft", "argv": ["train", "generator", *common, *quiet, f"model_name_or_path={lm}",
                                 f"dataset={sft_lines}", f"output_dir={out / 'sft'}", "cutoff_len=96"]},
        {"name": "embedding", "argv": ["train", "embedding", *retr, f"train_data={d['emb']}",
                                       f"output_dir={out / 'embedding'}", "max_seq_length=32"]},
        {"name": "colbert", "argv": ["train", "colbert", *retr, f"train_data={d['emb']}",
                                     f"output_dir={out / 'colbert'}", "dim=16", "query_length=8",
                                     "document_length=16"]},
        {"name": "cross_encoder", "argv": ["train", "reranker", *retr, f"train_data={d['point']}",
                                           f"output_dir={out / 'cross_encoder'}", "max_length=32"]},
        {"name": "llm_reranker", "argv": ["train", "reranker", *common, *quiet, f"model_name_or_path={lm}",
                                          "model_type=llm", "use_lora=true", "lora_rank=4", f"train_data={d['point']}",
                                          f"output_dir={out / 'llm_reranker'}", "max_length=48"]},
        {"name": "rm", "argv": ["train", "generator", "stage=rm", *policy, "max_length=256", "threads=1",
                                f"train_file={d['prefs']}", f"output_dir={out / 'rm'}"]},
        {"name": "dpo", "argv": ["train", "generator", "stage=dpo", *policy, f"train_file={d['prefs']}",
                                 f"output_dir={out / 'dpo'}"]},
        {"name": "grpo", "argv": ["train", "generator", "stage=grpo", *[a for a in policy if "max_length" not in a],
                                  "num_generations=4", "max_completion_length=12", "per_device_train_batch_size=4",
                                  f"prompts.corpus={d['vocab']}", "prompts.sample_num=4", "merge=false",
                                  f"output_dir={out / 'grpo'}"]},
        {"name": "ppo", "argv": ["train", "generator", "stage=ppo", f"model_name_or_path={lm}",
                                 f"reward_model={out / 'rm'}", f"prompts.corpus={d['corpus']}",
                                 f"prompts.sample_num={ROWS}", f"output_dir={out / 'ppo'}", "merge=false",
                                 f"ppo.steps={steps}", "ppo.batch_size=4", "ppo.mini_batch_size=2", "ppo.ppo_epochs=1",
                                 "ppo.max_new_tokens=6", "ppo.save_steps=2", "ppo.lora_rank=4"]
                                + (["resume_from_checkpoint=true"] if steps > 2 else [])},
    ]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_bert, tiny_lm, toy_doc2query):
    work = tmp_path_factory.mktemp("dist")
    d = _data(work, toy_doc2query, tiny_lm)
    out = work / "out"
    results = {}
    for run, steps in (("run1", 2), ("run2", 4)):
        res = launch(jobs(d, tiny_bert, tiny_lm, out, steps), work, run)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
        results[run] = work / run
    return results, out


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _batches(folder: Path, name: str, rank: int) -> list[list[int]]:
    rec = json.loads((folder / f"{name}.rank{rank}.json").read_text())
    assert rec["exit"] == 0
    return rec["indices"]


@pytest.mark.parametrize("name", TRAINERS)
def test_two_ranks_train_as_one(two_runs, name):
    import torch

    runs, out = two_runs
    for run in ("run1", "run2"):
        r0, r1 = (_weights(runs[run] / f"{name}.rank{r}.safetensors") for r in (0, 1))
        assert r0.keys() == r1.keys() and r0
        assert all(torch.equal(r0[k], r1[k]) for k in r0), f"{name} {run}: the ranks' weights differ"
        before = _weights(runs[run] / f"{name}.before.safetensors")
        assert any(not torch.equal(before[k], r0[k]) for k in r0), f"{name} {run}: training changed nothing"

    # the rows of each of the 2 optimizer steps of a run (the data loader fetches one batch ahead: not trained)
    steps = {(run, rank): _batches(runs[run], name, rank)[:2] for run in ("run1", "run2") for rank in (0, 1)}
    for run in ("run1", "run2"):
        a, b = ({i for batch in steps[run, rank] for i in batch} for rank in (0, 1))
        assert a and b and not a & b, f"{name} {run}: both ranks trained on rows {sorted(a & b)}"


@pytest.mark.parametrize("name", TRAINERS)
def test_one_checkpoint_then_resume(two_runs, name):
    _, out = two_runs
    folder = out / name
    # ragtune's PPO keeps only its newest checkpoint (save_steps' doc); the HF-Trainer based ones keep both
    kept = ["checkpoint-4"] if name == "ppo" else ["checkpoint-2", "checkpoint-4"]
    assert sorted(p.name for p in folder.glob("checkpoint-*")) == kept
    summary = {"rm": "reward_summary.json", "dpo": "rl_summary.json", "grpo": "rl_summary.json",
               "ppo": "ppo_summary.json"}.get(name, "train_summary.json")
    s = json.loads((folder / summary).read_text())
    step = s.get("global_step", s.get("steps", s.get("updates")))
    assert step == 4 and s["world_size"] == 2 and str(s["resumed_from"]).endswith("checkpoint-2"), s
