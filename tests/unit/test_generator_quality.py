"""What a round's generator wrote, measured: findability, difficulty band, copying, duplicates, style."""

import pytest

from ragtune.evaluate.generator_quality import round_quality, style_stats


def test_round_quality_counts_what_the_rows_hold():
    docs = {"d1": "Aspirin lowers the risk of stroke in adults.", "d2": "Coffee and sleep quality in students."}
    rows = [  # rank under the round's retriever, difficulty, text
        {"query_id": "a", "doc_id": "d1", "text": "aspirin lowers the risk of stroke", "rank": 1, "difficulty": 0.05},
        {"query_id": "b", "doc_id": "d1", "text": "does aspirin prevent strokes?", "rank": 3, "difficulty": 0.5},
        {"query_id": "c", "doc_id": "d2", "text": "coffee and sleep", "rank": None, "difficulty": 0.95},
        {"query_id": "d", "doc_id": "d2", "text": "Coffee  and sleep", "rank": 12, "difficulty": 0.6},
    ]
    q = round_quality(rows, docs, (0.3, 0.7), {"a": 1, "b": 1, "c": 2, "d": None})
    assert q["queries"] == 4
    assert q["bm25_top1"] == 0.5 and q["bm25_top10"] == 0.75
    assert q["retriever_top1"] == 0.25 and q["retriever_top10"] == 0.5
    assert q["in_band"] == 0.5 and q["difficulty_hist"] == [1, 0, 0, 0, 0, 1, 1, 0, 0, 1]
    assert q["duplicate_rate"] == 0.5  # c and d are the same query once normalised
    assert q["verbatim_share"] == 0.75  # a, c and d are spans of their documents; b is not
    assert 0.75 < q["copy_rate"] < 1.0 and q["question_share"] == 0.25
    assert q["mean_words"] == pytest.approx((6 + 4 + 3 + 3) / 4)


def test_style_stats_compare_with_the_examples():
    examples = ["what is the capital of france", "how long do cats live", "what causes rain"]
    claims = ["Cats live longer indoors.", "Rain is caused by condensation."]
    questions = ["what is the lifespan of cats", "how is rain formed"]
    c, q = style_stats(claims, examples), style_stats(questions, examples)
    assert c["examples_question_share"] == 1.0 and c["question_share"] == 0.0 and q["question_share"] == 1.0
    assert q["vocab_overlap"] > c["vocab_overlap"]
    assert c["examples_mean_words"] == pytest.approx((6 + 5 + 3) / 3)
