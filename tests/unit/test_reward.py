import json
import random

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

