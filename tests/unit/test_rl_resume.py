"""A killed RL stage continues from its checkpoint: PPO from the CLI (`resume_from_checkpoint=true`) with each
update logged once, DPO and GRPO from the checkpoints they now save, as the loop's restarted stages do."""

from __future__ import annotations

import json

import pytest

A = ["protein", "virus", "cell", "gene", "cancer", "brain", "heart", "lung"]


class Killed(Exception):
    pass


def _kill_at(monkeypatch, cls, method, when):
    """Make cls.method raise Killed when when(self) is true; returns the list of calls that went through."""
    real, calls = getattr(cls, method), []

    def wrapped(self, *a, **k):
        if when(self):
            raise Killed
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(cls, method, wrapped)
    return calls


def test_ppo_resumes_from_the_cli_and_logs_each_update_once(tiny_lm, tmp_path, monkeypatch):
    from ragtune.train.generator import reward
    from ragtune.train.generator.ppo import PPOTrainer
    from ragtune.train.generator.stages import train_generator_stage

    class LengthScorer:  # a reward model's place: longer responses score higher
        def __init__(self, *a, **k):
            pass

        def __call__(self, prompts, responses):
            return [float(len(r)) for r in responses]

    monkeypatch.setattr(reward, "RewardScorer", LengthScorer)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"the {w} study"})
                                                            + "\n" for i, w in enumerate(A)))
    out = tmp_path / "ppo"
    over = ["stage=ppo", f"model_name_or_path={tiny_lm}", f"reward_model={tmp_path}", f"output_dir={out}",
            f"prompts.corpus={tmp_path / 'docs'}", "prompts.sample_num=4", "merge=false", "device=cpu",
            "ppo={steps: 4, batch_size: 2, mini_batch_size: 2, ppo_epochs: 1, max_new_tokens: 3, lora_r: 4, "
            "save_steps: 2}"]
    with monkeypatch.context() as m:  # killed during update 4: checkpoint-2 saved, update 3 logged
        _kill_at(m, PPOTrainer, "step", lambda t: t.step_count == 3)
        with pytest.raises(Killed):
            train_generator_stage(None, over)
    assert (out / "checkpoint-2" / "trainer_state.pt").exists()
    steps = _kill_at(monkeypatch, PPOTrainer, "step", lambda t: False)
    _, summary = train_generator_stage(None, [*over, "resume_from_checkpoint=true"])
    assert len(steps) == 2 and summary["updates"] == 4  # updates 3 and 4 ran again; 1 and 2 came from the checkpoint
    logged = [json.loads(x)["step"] for x in (out / "ppo_log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-4"]  # the newest is kept
    train_generator_stage(None, [*over, "overwrite_output_dir=true"])  # a fresh run there: its 4 updates, once
    assert [json.loads(x)["step"] for x in (out / "ppo_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_dpo_checkpoints_and_the_loops_restarted_stage_resumes_from_them(tiny_lm, tmp_path, monkeypatch):
    from transformers import Trainer

    from ragtune.pipeline.stages import dpo

    prefs = tmp_path / "prefs"
    prefs.mkdir()
    rows = [{"instruction": f"Write a query for: the {w} protein", "input": "",
             "output": [f"{w} protein", "the study in patients"]} for w in A]
    (prefs / "preferences_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    over = {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 4, "lora_rank": 4, "max_length": 64}
    out = tmp_path / "stage"
    with monkeypatch.context() as m:
        _kill_at(m, Trainer, "training_step", lambda t: t.state.global_step == 3)
        with pytest.raises(Killed):
            dpo(prefs, out, str(tiny_lm), None, over)
    assert (out / "train" / "checkpoint-2" / "trainer_state.json").exists()
    steps = _kill_at(monkeypatch, Trainer, "training_step", lambda t: False)
    summary = dpo(prefs, out, str(tiny_lm), None, over)  # what the loop runs when the stage restarts
    assert len(steps) == 2 and summary["steps"] == 4
    assert (out / "merged" / "config.json").exists()
    assert not list(out.rglob("training_args.bin"))  # a pickle, in no checkpoint and no saved adapter


def test_grpo_checkpoints_and_resumes(tiny_lm, tmp_path, monkeypatch):
    from transformers import Trainer

    from ragtune.data.records import Doc
    from ragtune.retrieval.bm25 import BM25Config, BM25Retriever
    from ragtune.train.generator.grpo import GRPOTrainConfig, RetrievalReward, train_grpo

    r = BM25Retriever(BM25Config(stem=False, stopwords=False))
    r.index([Doc(_id="target", text=" ".join(A)), Doc(_id="other", text="receptor pathway membrane")])
    prompts = [f"Write a query about the {w}." for w in A[:4]]
    cfg = GRPOTrainConfig(model_name_or_path=str(tiny_lm), output_dir=tmp_path / "grpo", max_steps=4, save_steps=2,
                          per_device_train_batch_size=4, num_generations=2, max_completion_length=4, lora_rank=4)
    with monkeypatch.context() as m:
        _kill_at(m, Trainer, "training_step", lambda t: t.state.global_step == 3)
        with pytest.raises(Killed):
            train_grpo(cfg, prompts, ["target"] * 4, RetrievalReward(r.search, k=2))
    assert (tmp_path / "grpo" / "checkpoint-2" / "trainer_state.json").exists()
    steps = _kill_at(monkeypatch, Trainer, "training_step", lambda t: False)
    resumed = cfg.model_copy(update={"resume_from_checkpoint": True})
    summary = train_grpo(resumed, prompts, ["target"] * 4, RetrievalReward(r.search, k=2))
    assert summary["steps"] == 4 and len(steps) == 2
