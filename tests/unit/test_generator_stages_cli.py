"""`ragtune train generator` dispatches on `stage:` (sft, rm, ppo, dpo, grpo)."""

import json

from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


def test_unknown_stage_lists_allowed_values(tmp_path):
    res = runner.invoke(app, ["train", "generator", "stage=ppp"])
    assert res.exit_code == 1 and "allowed values: sft, rm, ppo, dpo, grpo" in res.output
    assert 'did you mean "ppo"' in res.output and "Traceback" not in res.output


def test_stage_rm_then_ppo_then_grpo_from_the_cli(tiny_lm, toy_doc2query, tmp_path):
    rows = [{"instruction": f"doc {i} about protein", "input": "", "output": ["protein receptor", "the study"]}
            for i in range(8)]
    (tmp_path / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rm = runner.invoke(app, ["train", "generator", "stage=rm", f"model_name_or_path={tiny_lm}",
                             f"train_file={tmp_path / 'prefs.jsonl'}", f"output_dir={tmp_path / 'rm'}",
                             "max_steps=2", "per_device_train_batch_size=4", "lora_rank=4"])
    assert rm.exit_code == 0, rm.output
    ppo = runner.invoke(app, ["train", "generator", "stage=ppo", f"model_name_or_path={tiny_lm}",
                              f"reward_model={tmp_path / 'rm'}", f"prompts.corpus={toy_doc2query}",
                              "prompts.sample_num=4", f"output_dir={tmp_path / 'ppo'}",
                              "ppo={steps: 2, batch_size: 4, mini_batch_size: 2, ppo_epochs: 1, max_new_tokens: 6}"])
    assert ppo.exit_code == 0, ppo.output
    assert (tmp_path / "ppo" / "merged" / "config.json").exists() and (tmp_path / "ppo" / "rl_curves.png").exists()
    assert len((tmp_path / "ppo" / "ppo_log.jsonl").read_text().splitlines()) == 2
    grpo = runner.invoke(app, ["train", "generator", "stage=grpo", f"model_name_or_path={tiny_lm}",
                               f"prompts.corpus={toy_doc2query}", "prompts.sample_num=4",
                               f"output_dir={tmp_path / 'grpo'}", "max_steps=2", "per_device_train_batch_size=4",
                               "num_generations=2", "max_completion_length=6", "lora_rank=4"])
    assert grpo.exit_code == 0, grpo.output
    assert (tmp_path / "grpo" / "merged" / "config.json").exists()
