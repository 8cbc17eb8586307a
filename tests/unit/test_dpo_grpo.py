import json
import math

import pytest

from ragtune.data.records import Doc
from ragtune.retrieval.bm25 import BM25Config, BM25Retriever
from ragtune.train.generator.dpo import DPOTrainConfig, train_dpo
from ragtune.train.generator.grpo import GRPOTrainConfig, RetrievalReward, train_grpo

A = ["protein", "virus", "cell", "gene", "cancer", "brain", "heart", "lung", "liver", "bone", "blood", "kidney"]
B = ["receptor", "pathway", "membrane", "signal", "growth", "response", "tissue", "infection", "memory"]


def _retriever():
    r = BM25Retriever(BM25Config(stem=False, stopwords=False))
    r.index([Doc(_id="target", text=" ".join(A)), Doc(_id="other", text=" ".join(B))])
    return r


def test_retrieval_reward_is_reciprocal_rank_and_band_shaped():
    reward = RetrievalReward(_retriever().search, k=2)
    assert reward([], ["protein cancer", "receptor signal", "protein receptor signal", "zzz"],
                  doc_id=["target"] * 4) == [1.0, 0.0, 0.5, 0.0]  # unmatched target = not retrieved
    shaped = RetrievalReward(_retriever().search, k=2, band=(0.4, 0.6))
    # rank 1 -> difficulty 0 (0.4 below the band); rank 2 -> difficulty 0.5, inside the band
    assert shaped([], ["protein", "protein receptor signal"], doc_id=["target"] * 2) == pytest.approx([0.6, 1.0])


def test_grpo_raises_a_retrieval_reward_on_a_toy_corpus(tiny_lm, tmp_path):
    """The reward is the reciprocal rank of the 'target' document for the generated text, so the
    generator must learn to write words of the target document rather than of the other one.
    Four documents split the tiny tokenizer's whole-word tokens between them, so the target's rank
    (1/1 .. 1/4) grades how much of the text is written in its words."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    words = sorted({t[1:].lower() for t in tok.get_vocab() if t.startswith("Ġ") and t[1:].isalpha() and len(t) > 3})
    r = BM25Retriever(BM25Config(stem=False, stopwords=False))
    r.index([Doc(_id="target" if i == 0 else f"d{i}", text=" ".join(words[i::4])) for i in range(4)])
    reward = RetrievalReward(r.search, k=4)
    prompts = [f"Write a query about the {w}." for w in ["small", "rapid", "chronic", "stable"]] * 4
    cfg = GRPOTrainConfig(model_name_or_path=str(tiny_lm), output_dir=tmp_path / "grpo", max_steps=36,
                          per_device_train_batch_size=16, num_generations=8, max_completion_length=12,
                          learning_rate=1e-2, lr_scheduler_type="constant", beta=0.02, lora_rank=8, logging_steps=1)
    summary = train_grpo(cfg, prompts, ["target"] * len(prompts), reward)
    rewards = [h["reward"] for h in summary["log"] if "reward" in h]
    assert len(rewards) == 36
    first, last = sum(rewards[:6]) / 6, sum(rewards[-6:]) / 6
    assert last > first + 0.3, (first, last, rewards)
    kls = [h["kl"] for h in summary["log"] if "kl" in h]
    assert len(kls) == 36 and all(math.isfinite(k) for k in kls)
    assert max(kls) < 5.0, kls  # the KL to the reference (mean per token) stays bounded while the reward rises
    assert (tmp_path / "grpo" / "adapter" / "adapter_config.json").exists()


@pytest.mark.parametrize("mode", ["group", "batch", "none"])
def test_grpo_passes_its_reward_scaling_to_trl(tiny_lm, tmp_path, monkeypatch, mode):
    """`scale_rewards` is what decides whether a reward part's weight matters (under "group" a part that alone
    varies in a group sets the advantage whatever its weight), so it must reach trl's config as asked."""
    import trl

    seen = {}

    class Stop(Exception):
        pass

    def fake_trainer(*, args, **_):
        seen["scale"] = args.scale_rewards
        raise Stop

    monkeypatch.setattr(trl, "GRPOTrainer", fake_trainer)
    cfg = GRPOTrainConfig(model_name_or_path=str(tiny_lm), output_dir=tmp_path / "grpo", max_steps=1,
                          per_device_train_batch_size=4, num_generations=4, scale_rewards=mode)
    with pytest.raises(Stop):
        train_grpo(cfg, ["Write a query."] * 4, ["target"] * 4, RetrievalReward(_retriever().search, k=2))
    assert seen["scale"] == mode
    with pytest.raises(ValueError):
        GRPOTrainConfig(output_dir=tmp_path / "g", scale_rewards="std")


def test_dpo_trains_on_preference_rows(tiny_lm, tmp_path):
    rows = [{"instruction": f"Write a query for: the {w} protein", "input": "",
             "output": [f"{w} protein", "the study in patients"]} for w in A[:8]]
    (tmp_path / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DPOTrainConfig(model_name_or_path=str(tiny_lm), output_dir=tmp_path / "dpo", train_file=tmp_path /
                         "prefs.jsonl", max_steps=6, per_device_train_batch_size=4, learning_rate=5e-3, lora_rank=4,
                         logging_steps=1, max_length=64)
    summary = train_dpo(cfg)
    losses = [h["loss"] for h in summary["log"] if "loss" in h]
    assert summary["pairs"] == 8 and losses[-1] < losses[0]
    assert (tmp_path / "dpo" / "adapter" / "adapter_config.json").exists()


def test_policy_trainers_run_in_float32_without_recomputation_unless_asked(tmp_path):
    """trl turns bf16 autocast and gradient checkpointing on by default; on an AVX2-only CPU the first makes a
    DPO step take minutes (bf16 matmuls fall back to a single-threaded path), and neither pays on a small model."""
    import warnings

    from trl import DPOConfig, GRPOConfig

    from ragtune.train.generator.rl import policy_args

    plain = DPOTrainConfig(output_dir=tmp_path / "dpo", train_file=tmp_path / "p.jsonl")
    for config in (DPOConfig, GRPOConfig):
        with warnings.catch_warnings():  # transformers' new name, so no deprecation warning in every run's log
            warnings.filterwarnings("error", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
            args = config(**policy_args(plain))
        assert not args.bf16 and not args.gradient_checkpointing and not args.activation_checkpointing
    asked = DPOTrainConfig(output_dir=tmp_path / "dpo", train_file=tmp_path / "p.jsonl", bf16=True,
                           gradient_checkpointing=True)
    args = DPOConfig(**policy_args(asked))
    assert args.bf16 and args.gradient_checkpointing


def test_loop_reward_orders_filter_outcome_then_band_then_rank(tiny_bert, monkeypatch, tmp_path):
    """The loop reward is w_filter * kept + w_band * band + w_rank * rr, from BM25 (the filter part) and the round's
    retriever (difficulty and rank): a query BM25 finds outscores one it does not, whatever the retriever says."""
    from ragtune.evaluate.difficulty import score_difficulty
    from ragtune.train.generator.loop_reward import LoopReward, LoopRewardSettings, band_score

    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    corpus = {"target": Doc(_id="target", text=" ".join(A)), "other": Doc(_id="other", text=" ".join(B))}
    cfg = LoopRewardSettings(bm25_k=1, dense_k=None, band=(0.3, 0.7), depth=2)
    reward = LoopReward(corpus, tiny_bert, cfg)
    queries = ["protein cancer heart", "receptor signal growth"]  # BM25 puts 'target' first only for the first
    parts = reward.parts(queries, ["target", "target"])
    assert [p["kept"] for p in parts] == [True, False] and parts[0]["bm25_rank"] == 1
    run = reward.retriever.search({"0": queries[0], "1": queries[1]}, k=2)
    diff = score_difficulty(run, {"0": "target", "1": "target"}, depth=2, temperature=cfg.temperature)
    for i, p in enumerate(parts):
        d = diff[str(i)]
        assert p["difficulty"] == pytest.approx(d.difficulty) and p["rank"] == d.rank
        rr = 1.0 / d.rank if d.rank else 0.0
        assert p["reward"] == pytest.approx(1.0 * p["kept"] + 0.5 * band_score(d.difficulty, (0.3, 0.7)) + 0.1 * rr)
    assert parts[0]["reward"] > parts[1]["reward"]
    assert reward([], queries, doc_id=["target", "target"]) == [p["reward"] for p in parts]
    reward.cfg = cfg.model_copy(update={"band_falloff": 0.1})  # a steep band part, same retriever and judges
    steep = reward.parts(queries, ["target", "target"])
    for p, s in zip(parts, steep, strict=True):
        assert s["band"] == band_score(p["difficulty"], (0.3, 0.7), 0.1) <= p["band"]
        assert s["reward"] == pytest.approx(1.0 * s["kept"] + 0.5 * s["band"] + 0.1 * s["rr"])


class _FixedRanking:
    """A round's retriever that ranks the corpus in one fixed order for every query."""

    def __init__(self, order: list[str]):
        self.doc_ids = order

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        return {q: {d: float(len(self.doc_ids) - i) for i, d in enumerate(self.doc_ids[:k])} for q in queries}


def test_loop_reward_gap_pays_for_what_bm25_finds_and_the_retriever_misses(tiny_bert, monkeypatch, tmp_path):
    """gap = max(0, 1/BM25 rank - 1/retriever rank): positive only where BM25 ranks the source document above the
    round's retriever, and it is the whole reward when the other weights are 0."""
    from ragtune.train.generator.loop_reward import LoopReward, LoopRewardSettings

    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    corpus = {"target": Doc(_id="target", text=" ".join(A)), "other": Doc(_id="other", text=" ".join(B)),
              "third": Doc(_id="third", text="unrelated words about weather and rivers")}
    cfg = LoopRewardSettings(bm25_k=None, dense_k=None, band=None, weights=(0.0, 0.0, 0.0), gap_weight=2.0, depth=3)
    reward = LoopReward(corpus, tiny_bert, cfg)
    queries = ["protein cancer heart", "receptor signal growth"]  # BM25: 'target' first, then not above 'other'
    reward.retriever = _FixedRanking(["other", "third", "target"])  # the retriever misses 'target' (rank 3)
    missed = reward.parts(queries, ["target", "target"])
    assert missed[0]["rank"] == 3 and missed[0]["kept"] and missed[0]["bm25_rank"] is None  # no BM25 filter part
    assert missed[0]["gap"] == pytest.approx(1.0 - 1 / 3) and missed[0]["reward"] == pytest.approx(2.0 * (1 - 1 / 3))
    judge = BM25Retriever()
    judge.index(list(corpus.values()))
    order = sorted(judge.search({"q": queries[1]}, k=3)["q"].items(), key=lambda kv: (-kv[1], kv[0]))
    second = next((i for i, (d, _) in enumerate(order, 1) if d == "target"), None)
    assert second != 1 and missed[1]["gap"] == pytest.approx(max(0.0, (1 / second if second else 0.0) - 1 / 3))
    reward.retriever = _FixedRanking(["target", "other", "third"])  # the retriever already finds it first
    assert [p["gap"] for p in reward.parts(queries, ["target", "target"])] == [0.0, 0.0]
    reward.cfg = cfg.model_copy(update={"gap_weight": 0.0, "weights": (0.0, 0.0, 1.0)})
    off = reward.parts(queries, ["target", "target"])
    assert [p["gap"] for p in off] == [0.0, 0.0] and [p["reward"] for p in off] == [1.0, 1.0]
