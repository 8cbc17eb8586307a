import math

import pytest

from ragtune.evaluate import evaluate, parse_metric
from ragtune.evaluate.significance import compare_per_query, paired_ttest

QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d5": 1}}
RUN = {"q1": {"d3": 0.9, "d1": 0.8, "d2": 0.1}, "qx": {"d1": 1.0}}  # q2 missing, qx unjudged


def test_metrics_equal_hand_computed_values():
    r = evaluate(QRELS, RUN, ["ndcg@3", "recall@1", "recall@2", "mrr@10", "mrr@1", "map@3", "p@2"])
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert r.per_query["ndcg@3"]["q1"] == pytest.approx(ndcg_q1)
    assert r.per_query["map@3"]["q1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r.per_query["mrr@10"]["q1"] == pytest.approx(0.5)
    assert r.per_query["mrr@1"]["q1"] == 0.0
    assert r.per_query["recall@2"]["q1"] == pytest.approx(0.5)
    assert r.per_query["p@2"]["q1"] == pytest.approx(0.5)
    # a judged query missing from the run counts as 0; unjudged run queries are ignored
    assert r.per_query["ndcg@3"]["q2"] == 0.0
    assert r.metrics["ndcg@3"] == pytest.approx(ndcg_q1 / 2)
    assert set(r.per_query["ndcg@3"]) == {"q1", "q2"}
    assert r.num_queries == 2


def test_graded_ndcg_uses_linear_gains_like_trec_eval():
    r = evaluate({"q": {"a": 2, "b": 1}}, {"q": {"b": 2.0, "a": 1.0}}, ["ndcg@10"])
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert r.metrics["ndcg@10"] == pytest.approx(expected)


def test_ignore_identical_ids_drops_self_matches():
    qrels = {"q1": {"d1": 1}}
    run = {"q1": {"q1": 5.0, "d1": 1.0}}
    assert evaluate(qrels, run, ["mrr@10"]).metrics["mrr@10"] == pytest.approx(0.5)
    assert evaluate(qrels, run, ["mrr@10"], ignore_identical_ids=True).metrics["mrr@10"] == 1.0


@pytest.mark.parametrize("bad", ["ndcg@", "foo@10", "recall", "ndcg@ten"])
def test_unknown_metric_names_are_rejected(bad):
    with pytest.raises(ValueError, match="metric"):
        parse_metric(bad)


def test_paired_ttest():
    a = {f"q{i}": 0.5 for i in range(20)}
    better = {f"q{i}": 0.5 + 0.1 + 0.01 * (i % 3) for i in range(20)}
    assert paired_ttest(a, a) == 1.0
    assert paired_ttest(a, better) < 1e-6
    noisy = {f"q{i}": 0.5 + (0.1 if i % 2 else -0.1) for i in range(20)}
    assert paired_ttest(a, noisy) > 0.5
    cmp = compare_per_query({"ndcg@10": a}, {"ndcg@10": better})
    assert cmp["ndcg@10"]["delta"] > 0 and cmp["ndcg@10"]["num_queries"] == 20
