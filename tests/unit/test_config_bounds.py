"""Config bounds checked when a config is loaded (issue 14, item 14), not after minutes of work."""

from __future__ import annotations

import pytest

from ragtune.config import ConfigError, load_config


def _cases():
    from ragtune.evaluate.retrieval_eval import CompareConfig, EvalConfig
    from ragtune.pipeline.loop import RunConfig
    from ragtune.train.generator.grpo import GRPOStageConfig
    from ragtune.train.generator.preferences import PreferenceConfig

    eval_base = ["data=x"]
    grpo = ["output_dir=o", "prompts.corpus=c"]
    return [
        (EvalConfig, eval_base + ["bm25.k1=-0.1"], "bm25.k1"),
        (EvalConfig, eval_base + ["bm25.b=1.5"], "bm25.b"),
        (EvalConfig, eval_base + ["bm25.b=-0.1"], "bm25.b"),
        (EvalConfig, eval_base + ["dense.batch_size=0"], "dense.batch_size"),
        (EvalConfig, eval_base + ["dense.max_seq_length=0"], "dense.max_seq_length"),
        (EvalConfig, eval_base + ["colbert.batch_size=0"], "colbert.batch_size"),
        (CompareConfig, ["run_a=a", "run_b=b", "data=d", "metrics=[foo@3]"], "foo@3"),
        (RunConfig, ["metrics=[ndcg@10, foo@3]"], "foo@3"),
        (RunConfig, ["difficulty_temperature=0"], "difficulty_temperature"),
        (RunConfig, ["grpo_band=[0.6, 0.2]"], "grpo_band"),
        (GRPOStageConfig, [*grpo, "band=[0.5, 0.5]"], "band"),
        (GRPOStageConfig, [*grpo, "temperature=0"], "temperature"),
        (PreferenceConfig, ["band=[0.8, 0.1]"], "band"),
    ]


@pytest.mark.parametrize("case", range(13))
def test_out_of_range_settings_are_refused_at_load(case):
    cls, overrides, key = _cases()[case]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(cls, None, overrides)


def test_in_range_settings_still_load():
    from ragtune.pipeline.loop import RunConfig
    from ragtune.retrieval.bm25 import BM25Config

    assert load_config(BM25Config, None, ["k1=0", "b=0", "method=lucene"]).b == 0
    assert load_config(BM25Config, None, ["b=1"]).b == 1
    cfg = load_config(RunConfig, None, ["metrics=[ndcg@10, recall@100, mrr]", "grpo_band=[0.0, 1.0]"])
    assert cfg.grpo_band == (0.0, 1.0)
