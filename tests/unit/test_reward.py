import json
import random

import pytest

from ragtune.train.generator.reward import RewardTrainConfig, train_reward_model


def _pairs(path, n, seed):
    rng = random.Random(seed)
    topics = ["protein", "virus", "cell", "gene", "cancer", "brain", "heart", "lung"]
    fillers = ["what is the study about in patients", "the study in patients", "what is in the study",
               "patients study what"]
    with open(path, "w") as f:
        for _ in range(n):
            t = rng.choice(topics)
            # the preferred query names the document's topic; the rejected one is generic filler
            f.write(json.dumps({"instruction": f"Write a query for: The small {t} binds the receptor.",
                                "output": [f"{t} receptor binding", rng.choice(fillers)]}) + "\n")
    return path


def test_reward_model_learns_a_toy_preference(tiny_lm, tmp_path):
    train = _pairs(tmp_path / "train.jsonl", 64, 0)
    held = _pairs(tmp_path / "held.jsonl", 16, 1)
    cfg = RewardTrainConfig(model_name_or_path=str(tiny_lm), train_file=train, eval_file=held,
                            output_dir=tmp_path / "rm", num_train_epochs=3, learning_rate=5e-3,
                            per_device_train_batch_size=8, lora_rank=4)
    summary = train_reward_model(cfg)
    assert summary["heldout_pairs"] == 16 and summary["heldout_accuracy"] >= 0.9, summary
    assert (tmp_path / "rm" / "reward_summary.json").exists() and (tmp_path / "rm" / "config.yaml").exists()


def test_reward_model_starts_from_the_sft_adapter_and_reports_its_interval(tiny_lm, tiny_adapter, tmp_path,
                                                                          trainer_runs):
    """The RM is trained on base + SFT adapter (merged), records that adapter (ADAPTER_STACK), and RewardScorer scores
    with exactly the model that was trained; accuracy comes with its Wilson interval and binomial p against chance."""
    import torch
    from scipy.stats import binomtest

    from ragtune.models import ADAPTER_STACK
    from ragtune.train.generator.reward import RewardScorer

    train = _pairs(tmp_path / "train.jsonl", 32, 0)
    held = _pairs(tmp_path / "held.jsonl", 12, 1)
    cfg = RewardTrainConfig(model_name_or_path=str(tiny_lm), adapter_name_or_path=tiny_adapter, train_file=train,
                            eval_file=held, output_dir=tmp_path / "rm", max_steps=4, learning_rate=5e-3,
                            per_device_train_batch_size=8, lora_rank=4)
    summary = train_reward_model(cfg)
    assert (tmp_path / "rm" / ADAPTER_STACK).is_file()
    assert summary["train_pairs_within_max_length"] == 32
    k, n = summary["heldout_correct"], summary["heldout_pairs"]
    ci = binomtest(k, n).proportion_ci(method="wilson")
    assert summary["heldout_ci95"] == pytest.approx([ci.low, ci.high])
    assert summary["heldout_p_vs_chance"] == pytest.approx(binomtest(k, n).pvalue)

    _, trained, trainer = trainer_runs[-1]
    rows = [json.loads(x) for x in held.read_text().splitlines()][:4]
    prompts, responses = [r["instruction"] for r in rows], [r["output"][0] for r in rows]
    scorer = RewardScorer(str(tiny_lm), tmp_path / "rm")
    tok = scorer.tok
    texts = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                     tokenize=False) for p, r in zip(prompts, responses, strict=True)]
    trained.eval()
    with torch.no_grad():
        expect = [float(trained(**tok(t, return_tensors="pt", add_special_tokens=False)).logits[0, 0]) for t in texts]
    assert scorer(prompts, responses) == pytest.approx(expect, abs=1e-4)
    # without the SFT adapter under it the same reward adapter scores differently: the record is what made them match
    (tmp_path / "rm" / ADAPTER_STACK).unlink()
    assert RewardScorer(str(tiny_lm), tmp_path / "rm")(prompts, responses) != pytest.approx(expect, abs=1e-4)


def test_bad_preference_data_is_reported_before_any_model_loads(tmp_path, monkeypatch):
    from ragtune.data.errors import DataFormatError
    from ragtune.train.generator import reward

    bad = tmp_path / "prefs.jsonl"
    bad.write_text('{"instruction": "q", "chosen": "a"}\n', encoding="utf-8")  # no "rejected"

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the data was read")

    monkeypatch.setattr(reward, "load_causal_lm", no_model)
    cfg = RewardTrainConfig(model_name_or_path="org/never-loaded", train_file=bad, output_dir=tmp_path / "rm")
    with pytest.raises(DataFormatError, match=r"prefs.jsonl.*rejected"):
        train_reward_model(cfg)
