"""The run's time budget: the cost model follows the config, the shrink takes the feedback stages first, then picks
the first scale that fits and never goes below min_scale, and a rerun on the same machine reuses the decision
without measuring."""

import json

import pytest

from ragtune.config import load_config
from ragtune.pipeline import budget
from ragtune.pipeline.loop import RunConfig

DEMO_LIKE = ["sft={max_steps: 30, per_device_train_batch_size: 4, cutoff_len: 256}",
             "generate={sample_num: 48, query_per_document: 2}", "subset={corpus_docs: 5}",
             "retriever={max_steps: 40, per_device_train_batch_size: 16, neg_nums: 1}",
             "reward={max_steps: 12}", "ppo={steps: 4, batch_size: 8}"]


def _cfg(data, *extra: str) -> RunConfig:
    return load_config(RunConfig, None, [f"data={data}", *DEMO_LIKE, *extra])


def _fake_units(monkeypatch, encode_doc: float, sft_step: float) -> list[str]:
    calls = []

    def enc(cfg, texts):
        calls.append("encoder")
        return encode_doc

    def sft(cfg):
        calls.append("sft")
        return sft_step, 0.0

    monkeypatch.setattr(budget, "time_encoder", enc)
    monkeypatch.setattr(budget, "time_sft_step", sft)
    return calls


def test_workloads_follow_rounds_and_rl(tiny_beir):
    one = budget.workloads(_cfg(tiny_beir), {"docs": 5, "test": 3, "train": 3})
    assert list(one) == ["baselines", "round-0/sft", "round-0/generate", "round-0/filter", "round-0/retriever",
                         "round-0/evaluate", "round-0/difficulty", "round-0/reward_model", "round-0/ppo"]
    assert one["round-0/sft"] == {"sft": 30} and one["round-0/ppo"] == {"ppo": 4 * 8}
    assert one["round-0/retriever"] == {"retriever": 40 * 16 * 3}
    two = budget.workloads(_cfg(tiny_beir, "rounds=2", "rl_after_last_round=false"), {"docs": 5, "test": 3,
                                                                                      "train": 3})
    assert "round-1/retriever" in two and "round-1/ppo" not in two and "round-0/ppo" in two
    assert "round-1/sft" not in two
    more = budget.workloads(_cfg(tiny_beir, "rounds=2", "candidates_per_document=6"), {"docs": 5, "test": 3,
                                                                                      "train": 3})
    assert more["round-0/generate"] == two["round-0/generate"]  # round 0 writes query_per_document (2)
    assert more["round-1/generate"] == {k: 3 * v for k, v in two["round-1/generate"].items()}  # 6 candidates
    dpo = budget.workloads(_cfg(tiny_beir, "rl=dpo", "dpo={max_steps: 7}", "train_only_baseline=true"),
                           {"docs": 5, "test": 3, "train": 3})
    assert dpo["round-0/dpo"] == {"dpo": 7} and "round-0/ppo" not in dpo and "round-0/reward_model" not in dpo
    assert dpo["train_only"] == {"retriever": 40 * 16 * 3, "evaluate": 5 + 3}
    # no max_steps: an epoch over the rows at the batch size
    epoch = budget.workloads(_cfg(tiny_beir, "sft={max_steps: -1, num_train_epochs: 2, "
                                             "per_device_train_batch_size: 2}"), {"docs": 5, "test": 3, "train": 3})
    assert epoch["round-0/sft"] == {"sft": 3}


def test_scaled_changes_only_the_knobs_it_names(tiny_beir):
    cfg = _cfg(tiny_beir)
    small, changes = budget.scaled(cfg, 0.5)
    assert changes == {"sft.max_steps": (30, 15), "generate.sample_num": (48, 24), "retriever.max_steps": (40, 20),
                       "reward.max_steps": (12, 6), "ppo.steps": (4, 2), "subset.corpus_docs": (5, 2)}
    assert small.sft.max_steps == 15 and small.ppo.steps == 2 and small.subset.corpus_docs == 2
    assert small.sft.cutoff_len == cfg.sft.cutoff_len and small.sft.model_fields_set == cfg.sft.model_fields_set
    assert budget.scaled(cfg, 1.0) == (cfg, {})
    # the feedback factor reaches the steps of the run's rl method only
    feedback, changes = budget.scaled(cfg, 1.0, 0.25)
    assert changes == {"reward.max_steps": (12, 3), "ppo.steps": (4, 1)} and feedback.sft == cfg.sft
    dpo = _cfg(tiny_beir, "rl=dpo", "dpo={max_steps: 8}")
    assert budget.scaled(dpo, 0.5, 0.25)[1] == {"sft.max_steps": (30, 15), "generate.sample_num": (48, 24),
                                                 "retriever.max_steps": (40, 20), "dpo.max_steps": (8, 2),
                                                 "subset.corpus_docs": (5, 2)}
    # a knob the config leaves unset (all documents) stays unset, so its stage keeps its cache key
    unset = _cfg(tiny_beir, "generate={query_per_document: 2}")
    shrunk, changes = budget.scaled(unset, 0.5)
    assert "generate.sample_num" not in changes and "sample_num" not in shrunk.generate.model_fields_set


def _seconds(cfg, data, scale: float, feedback: float) -> float:
    shrunk = budget.scaled(cfg, scale, feedback)[0]
    return sum(budget.predict(shrunk, budget.sizes(shrunk, budget.totals(cfg, data)),
                              {"encode_doc": 0.01, "sft_step": 1.0}).values())


def test_shrink_order_takes_the_feedback_stages_first():
    order = budget.shrink_order(budget.BudgetConfig(minutes=12))
    assert order == [(1.0, 1.0), (1.0, 0.85), (1.0, 0.7), (1.0, 0.6), (1.0, 0.5), (1.0, 0.4), (1.0, 0.3),
                     (1.0, 0.25), (0.85, 0.25), (0.7, 0.25), (0.6, 0.25), (0.5, 0.25)]
    together = budget.shrink_order(budget.BudgetConfig(minutes=12, min_feedback_scale=1, min_scale=0.6))
    assert together == [(1.0, 1.0), (0.85, 0.85), (0.7, 0.7), (0.6, 0.6)]
    odd_floor = budget.shrink_order(budget.BudgetConfig(minutes=12, min_feedback_scale=0.35))
    assert odd_floor[5:8] == [(1.0, 0.4), (1.0, 0.35), (0.85, 0.35)]


def test_plan_shrinks_feedback_first_then_picks_the_first_scale_that_fits(tiny_beir, tmp_path, monkeypatch):
    _fake_units(monkeypatch, encode_doc=0.01, sft_step=1.0)
    cfg = _cfg(tiny_beir)
    full = _seconds(cfg, tiny_beir, 1.0, 1.0)
    # room for the feedback stages at 70% (and the calibration's few milliseconds), not at 85%
    at = _seconds(cfg, tiny_beir, 1.0, 0.7)
    assert at + 2 < _seconds(cfg, tiny_beir, 1.0, 0.85)
    run_cfg, plan = budget.plan_budget(_cfg(tiny_beir, f"budget={{minutes: {(at + 2) / 60}}}"), tiny_beir,
                                       tmp_path / "a", log=lambda m: None)
    assert (plan["scale"], plan["feedback_scale"]) == (1.0, 0.7) and plan["fits"]
    assert plan["changes"] == {"reward.max_steps": [12, 8], "ppo.steps": [4, 3]} and run_cfg.sft == cfg.sft
    assert plan["full_workload_seconds"] == pytest.approx(full, abs=0.1)
    # the feedback stages at their floor are not enough: the rest shrinks too
    at = _seconds(cfg, tiny_beir, 0.7, 0.25)
    assert at + 2 < _seconds(cfg, tiny_beir, 0.85, 0.25)
    run_cfg, plan = budget.plan_budget(_cfg(tiny_beir, f"budget={{minutes: {(at + 2) / 60}}}"), tiny_beir,
                                       tmp_path / "b", log=lambda m: None)
    assert (plan["scale"], plan["feedback_scale"]) == (0.7, 0.25) and plan["fits"]
    assert run_cfg.sft.max_steps == 21 and plan["changes"]["sft.max_steps"] == [30, 21]
    assert run_cfg.reward.max_steps == 3 and run_cfg.ppo.steps == 1
    assert sum(plan["expected"].values()) == pytest.approx(at, abs=0.5)


def test_too_slow_stops_at_min_scale_and_says_so(tiny_beir, tmp_path, monkeypatch):
    _fake_units(monkeypatch, encode_doc=1.0, sft_step=100.0)
    run_cfg, plan = budget.plan_budget(_cfg(tiny_beir, "budget={minutes: 1, min_scale: 0.6}"), tiny_beir, tmp_path,
                                       log=lambda m: None)
    assert plan["scale"] == 0.6 and not plan["fits"] and run_cfg.sft.max_steps == 18
    assert plan["feedback_scale"] == 0.25 and run_cfg.reward.max_steps == 3


def test_rerun_reuses_the_plan_and_a_changed_workload_measures_again(tiny_beir, tmp_path, monkeypatch):
    calls = _fake_units(monkeypatch, encode_doc=0.01, sft_step=1.0)
    cfg = _cfg(tiny_beir, "budget={minutes: 2}")
    _, first = budget.plan_budget(cfg, tiny_beir, tmp_path, log=lambda m: None)
    assert calls == ["encoder", "sft"]
    said = []
    again, second = budget.plan_budget(cfg, tiny_beir, tmp_path, log=said.append)
    assert calls == ["encoder", "sft"] and second == first and "reusing" in said[0]
    assert again == budget.scaled(cfg, first["scale"], first["feedback_scale"])[0]
    assert json.loads((tmp_path / "budget.json").read_text())["key"] == first["key"]
    # the filters cost next to nothing: changing them keeps the plan; more SFT steps is a new workload
    budget.plan_budget(_cfg(tiny_beir, "budget={minutes: 2}", "filters=[{name: bm25, k: 5}]"), tiny_beir, tmp_path,
                       log=lambda m: None)
    assert calls == ["encoder", "sft"]
    budget.plan_budget(_cfg(tiny_beir, "budget={minutes: 2}", "sft={max_steps: 31}"), tiny_beir, tmp_path,
                       log=lambda m: None)
    assert calls == ["encoder", "sft", "encoder", "sft"]
    two = ["budget={minutes: 2}", "sft={max_steps: 31}", "rounds=2"]
    budget.plan_budget(_cfg(tiny_beir, *two), tiny_beir, tmp_path, log=lambda m: None)
    budget.plan_budget(_cfg(tiny_beir, *two), tiny_beir, tmp_path, log=lambda m: None)
    assert calls == ["encoder", "sft"] * 3
    budget.plan_budget(_cfg(tiny_beir, *two, "candidates_per_document=4"), tiny_beir, tmp_path, log=lambda m: None)
    assert calls == ["encoder", "sft"] * 4  # more candidates in later rounds: a new workload


def test_the_timers_run_the_run_s_models(tiny_beir, tiny_bert, tiny_lm):
    cfg = _cfg(tiny_beir, f"encoder={tiny_bert}", f"generator={tiny_lm}", "sft={cutoff_len: 32, lora_rank: 2}")
    texts = [f"document number {i} about comets and tails" for i in range(12)]
    assert 0 < budget.time_encoder(cfg, texts) < 5
    step, converted = budget.time_sft_step(cfg)
    assert 0 < step < 30 and converted < 5


def test_the_shrink_is_described_by_what_changed():
    both = {"scale": 0.5, "feedback_scale": 0.25,
            "changes": {"sft.max_steps": [30, 15], "reward.max_steps": [12, 3]}}
    assert budget.describe_shrink(both).startswith("the feedback stages to 25% and the rest to 50% (sft.max_steps")
    # no feedback stage in the run: its scale is not mentioned
    rest = {"scale": 0.5, "feedback_scale": 0.25, "changes": {"sft.max_steps": [30, 15]}}
    assert budget.describe_shrink(rest) == "everything to 50% (sft.max_steps 30 -> 15)"
    assert budget.describe_shrink({"scale": 1.0, "feedback_scale": 1.0, "changes": {}}) == ""
