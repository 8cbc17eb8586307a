"""retriever.mine_with / init: previous_round: from round 1 on, the round before's retriever mines the hard negatives
(ANCE-style) or is where the round's retriever starts, and round 0 stays the stage a plain run already cached."""

import json

import pytest
import yaml
from test_loop import _overrides

from ragtune.config import ConfigError, load_config
from ragtune.data.beir import load_corpus, load_queries
from ragtune.pipeline.loop import RunConfig, run_loop
from ragtune.retrieval.factory import index_trained


def _mined(stage) -> dict[str, list[tuple[str, int]]]:
    rows = (json.loads(x) for x in (stage / "records" / "mined_negatives.jsonl").read_text().splitlines())
    return {r["query_id"]: list(zip(r["negatives"], r["ranks"], strict=True)) for r in rows}


def test_round_1_mines_with_or_starts_from_round_0s_retriever_and_round_0_stays_cached(tiny_lm, tiny_bert,
                                                                                       toy_beir_with_test, tmp_path):
    out = tmp_path / "run"
    base = [*_overrides(tiny_lm, tiny_bert, toy_beir_with_test, out), "rl=none", "rounds=2", "filters=[]",
            "mining={neg_start: 2, neg_end: 30, neg_per_query: 3}"]
    run_loop(load_config(RunConfig, None, base))
    by_bm25 = _mined(out / "round-1" / "retriever")
    report = run_loop(load_config(RunConfig, None, [*base, "retriever.mine_with=previous_round"]))
    # round 0 has no earlier retriever: its stages are the BM25 run's, cached; round 1 mines and trains again
    assert report["executed"][:2] == ["round-1/retriever", "round-1/evaluate"]
    assert not any(s.startswith("round-0") for s in report["executed"])
    stage = out / "round-1" / "retriever"
    mined = _mined(stage)
    # every mined negative sits at the rank round 0's retriever gives it, inside the window, positives left out
    mix = stage / "mix"
    queries = load_queries(mix / "queries.jsonl")
    ranker = index_trained("bi_encoder", str(out / "round-0" / "retriever" / "model"),
                           load_corpus(mix / "corpus.jsonl").values())
    run = ranker.search({q: queries[q] for q in mined}, k=30)
    for q, negatives in mined.items():
        order = [d for d, _ in sorted(run[q].items(), key=lambda kv: (-kv[1], kv[0]))]
        assert negatives and all(order[r - 1] == d and 3 <= r <= 30 for d, r in negatives), q
    assert mined != by_bm25 and set(mined) == set(by_bm25)
    assert run_loop(load_config(RunConfig, None, [*base, "retriever.mine_with=previous_round"]))["executed"] == []
    # init: previous_round starts round 1's retriever from round 0's; round 0 is still the same stage
    warm = run_loop(load_config(RunConfig, None, [*base, "retriever.mine_with=previous_round",
                                                  "retriever.init=previous_round"]))["executed"]
    assert warm[0] == "round-1/retriever" and not any(s.startswith("round-0") for s in warm)
    saved = yaml.safe_load((stage / "model" / "config.yaml").read_text())
    assert saved["model_name_or_path"] == str(out / "round-0" / "retriever" / "model")
    assert _mined(stage) == mined  # the same miner: the same negatives


def test_mine_with_refuses_a_teacher_and_colbert(tmp_path):
    with pytest.raises(ConfigError, match="do not combine"):
        load_config(RunConfig, None, [f"out={tmp_path}", "retriever.mine_with=previous_round",
                                      f"retriever.teacher={tmp_path}"])
    with pytest.raises(ConfigError, match="mine_with"):
        load_config(RunConfig, None, [f"out={tmp_path}", "retriever.kind=colbert",
                                      "retriever.mine_with=previous_round"])
