"""Chunking, RRF, grounded-answer metrics and refusal decisions against hand-computed values."""

from __future__ import annotations

import math

import pytest

from ragtune.evaluate.answer_metrics import exact_match, normalize_answer, refusal_metrics, score_answers, token_f1
from ragtune.generate.prompts import CANONICAL_REFUSAL
from ragtune.rag.chunk import Chunker, paragraphs, sentences
from ragtune.rag.refusal import calibrate_margin, decide, is_refusal_text, refusal_curve, text_is_final
from ragtune.retrieval.fusion import rrf


def words(text: str) -> int:
    return len(text.split())


TEXT = ("Alpha beta gamma. Delta epsilon zeta eta. Theta iota kappa lambda mu.\n\n"
        "Short paragraph here.\n\n"
        "One two three four five. Six seven eight nine ten. Eleven twelve thirteen fourteen fifteen. "
        "Sixteen seventeen eighteen nineteen twenty.")


def test_chunks_respect_limit_and_map_back_to_source():
    spans = Chunker(words, max_tokens=12, overlap_tokens=0).split(TEXT)
    assert spans == sorted(spans)
    for s, e in spans:
        assert words(TEXT[s:e]) <= 12
        assert TEXT[s:e] == TEXT[s:e].strip() and TEXT[s:e]
    covered = " ".join(TEXT[s:e] for s, e in spans).split()
    assert covered == TEXT.split()  # no overlap: every word exactly once, in order


def test_paragraphs_kept_whole_when_they_fit():
    spans = Chunker(words, max_tokens=12, overlap_tokens=0).split(TEXT)
    texts = [TEXT[s:e] for s, e in spans]
    assert texts[0] == "Alpha beta gamma. Delta epsilon zeta eta. Theta iota kappa lambda mu."
    assert texts[1] == "Short paragraph here."  # 12 + 3 words do not fit: a new chunk at the paragraph break
    assert texts[2].startswith("One two three")


def test_overlap_repeats_whole_trailing_sentences():
    spans = Chunker(words, max_tokens=12, overlap_tokens=5).split(TEXT)
    texts = [TEXT[s:e] for s, e in spans]
    i = next(k for k, t in enumerate(texts) if t.startswith("One two"))
    assert texts[i] == "One two three four five. Six seven eight nine ten."
    assert texts[i + 1].startswith("Six seven eight nine ten. Eleven")  # last sentence (5 words) repeated
    assert all(words(t) <= 12 for t in texts)


def test_overlong_sentence_is_cut_under_the_limit():
    text = " ".join(f"w{i}" for i in range(50)) + "."
    spans = Chunker(words, max_tokens=16, overlap_tokens=0).split(text)
    assert len(spans) >= 4
    assert all(words(text[s:e]) <= 16 for s, e in spans)
    assert " ".join(text[s:e] for s, e in spans).split() == text.split()


def test_chinese_sentences_split_without_spaces():
    text = "北京是中国的首都。上海是最大的城市！你去过吗？我去过。"
    assert [text[s:e] for s, e in sentences(text)] == ["北京是中国的首都。", "上海是最大的城市！", "你去过吗？",
                                                      "我去过。"]
    spans = Chunker(len, max_tokens=12, overlap_tokens=0).split(text)  # one token per character
    assert [text[s:e] for s, e in spans] == ["北京是中国的首都。", "上海是最大的城市！", "你去过吗？我去过。"]


def test_paragraph_offsets():
    text = "  first\n\n\n second para \n  \nthird"
    assert [text[s:e] for s, e in paragraphs(text)] == ["first", "second para", "third"]


def test_chunker_rejects_bad_settings():
    with pytest.raises(ValueError, match="overlap_tokens"):
        Chunker(words, max_tokens=10, overlap_tokens=10)


def test_rrf_hand_example():
    runs = [{"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"q": {"c": 0.9, "a": 0.5}}]
    fused = rrf(runs, k=60)["q"]
    assert list(fused) == ["a", "c", "b"]
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert rrf(runs, k=0, weights=[1.0, 0.0])["q"] == {"a": 1.0, "b": 0.5, "c": pytest.approx(1 / 3)}


def test_squad_metrics_by_hand():
    assert normalize_answer("The Normans!") == "normans"
    assert exact_match("the normans", ["Normans"]) == 1.0
    # pred tokens: norman, conquest, of, england (4); gold: norman, conquest (2); common 2 -> P .5 R 1 F1 2/3
    assert token_f1("The Norman conquest of England", ["Norman conquest", "1066"]) == pytest.approx(2 / 3)
    # Chinese: character level; pred 韩国首都 vs gold 韩国 -> P 2/4, R 1 -> 2/3
    assert token_f1("韩国首都", ["韩国"], "zh") == pytest.approx(2 / 3)
    assert exact_match("韩国。", ["韩国"], "zh") == 1.0


def test_refusal_rates_by_hand():
    # 4 answerable (one refused), 4 unanswerable (three refused)
    answerable = [True, True, True, True, False, False, False, False]
    refused = [False, False, False, True, True, True, True, False]
    m = refusal_metrics(answerable, refused)
    assert m["refusal_precision"] == pytest.approx(3 / 4)
    assert m["refusal_recall"] == pytest.approx(3 / 4)
    assert m["refusal_f1"] == pytest.approx(3 / 4)
    assert m["over_refusal"] == pytest.approx(1 / 4)
    assert m["under_refusal"] == pytest.approx(1 / 4)
    golds = [["Paris"], ["blue sky"], ["42"], ["x"], [], [], [], []]
    preds = ["Paris", "the sky", "41", "refused", "-", "-", "-", "an answer"]
    s = score_answers(golds, preds, refused, answerable, ["en"] * 8)
    assert s["em"] == pytest.approx(1 / 4)                 # only "Paris"; the refused answerable scores 0
    assert s["f1"] == pytest.approx((1 + 2 / 3 + 0 + 0) / 4)  # "the sky" vs "blue sky": P 1, R 1/2
    assert s["f1_answered"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert s["accuracy"] == pytest.approx((1 + 3) / 8)


def test_refusal_text_and_likelihood_decisions():
    assert is_refusal_text("I cannot answer this question from the given context.", "en")
    assert is_refusal_text("The context does not contain the answer to this question", "en")
    assert is_refusal_text("资料中没有提到相关信息，无法作答。", "zh")
    assert not is_refusal_text("Rollo", "en")
    assert not is_refusal_text("韩国", "zh")
    assert decide("Rollo", refusal_logprob=-1.0, answer_logprob=-3.0, language="en") == (True, "likelihood")
    assert decide("A long answer", -4.0, -30.0, "en") == (False, None)  # P(R) = 0.018 < floor 0.05
    assert decide("A long answer", -4.0, -30.0, "en", floor=0.0) == (True, "likelihood")
    assert decide("Rollo", refusal_logprob=-5.0, answer_logprob=-3.0, language="en") == (False, None)
    assert decide("Rollo", -1.0, -3.0, "en", margin=2.5) == (False, None)
    # greedy output that is the refusal (a trained phrasing or a cue) refuses by text, whatever the margin says
    canonical = CANONICAL_REFUSAL["en"]
    assert decide(canonical, -0.5, -4.0, "en") == (True, "text")
    assert decide(canonical, -3.0, -1.0, "en", margin=10.0) == (True, "text")
    assert decide("Sorry, the text does not mention it.", -30.0, -1.0, "en") == (True, "text")
    assert decide("Jamais", -3.0, -1.0, "en", phrasings=["Jamais"]) == (True, "text")  # configured phrasings
    # refusal_text: margin: a trained phrasing stands only while the margin agrees; a generic cue stays final
    assert decide(canonical, -3.0, -1.0, "en", margin=0.0, mode="margin") == (False, None)
    assert decide(canonical, -0.5, -4.0, "en", margin=0.0, mode="margin") == (True, "text")
    assert decide("Sorry, the text does not mention it.", -30.0, -1.0, "en", mode="margin") == (True, "text")


def test_margin_mode_lets_calibration_undo_a_trained_models_over_refusal():
    from ragtune.rag.answer import Generation
    from ragtune.rag.refusal_calibration import RefusalCalibrationConfig, choose_margin

    canonical = CANONICAL_REFUSAL["en"]
    # the greedy output refuses all four (two answerable, two not); the answerable ones are the likelier answers
    rows = [(True, -1.0, -5.0), (True, -2.0, -6.0), (False, -4.0, -1.0), (False, -3.0, -0.5)]
    items = [{"answerable": not u} for u, _, _ in rows]
    for mode, over in (("final", 1.0), ("margin", 0.0)):
        gens = [Generation("an answer", True, "text", a, r, 0.0, canonical, True,
                           text_is_final(canonical, "en", None, mode)) for _, r, a in rows]
        margin, curve = choose_margin(RefusalCalibrationConfig(target="balanced"), gens, items)
        point = next(p for p in curve if p[0] == margin)
        assert (point[1], point[2]) == (over, 0.0), mode


def test_refusal_curve_by_hand():
    margins = [-5.0, -4.0, -1.0, 0.5, 2.0, 3.0]       # refusal - answer log-prob
    unanswerable = [False, False, True, False, True, True]
    curve = refusal_curve(margins, unanswerable, [False] * 6)
    assert [t for t, _, _ in curve] == [-6.0, -4.5, -2.5, -0.25, 1.25, 2.5, math.inf]
    assert [(o, u) for _, o, u in curve] == [(1, 0), (2 / 3, 0), (1 / 3, 0), (1 / 3, 1 / 3), (0, 1 / 3),
                                             (0, 2 / 3), (0, 1)]
    by_text = [False, True, False, False, False, False]  # refused in words: refused at every threshold
    assert all(o >= 1 / 3 for _, o, _ in refusal_curve(margins, unanswerable, by_text))


def test_calibrate_margin_targets():
    margins = [-5.0, -4.0, -1.0, 0.5, 2.0, 3.0]
    unanswerable = [False, False, True, False, True, True]
    none = [False] * 6
    # balanced: max(over, under) is 1/3 at -2.5, -0.25 and 1.25; -0.25 has both at 1/3, so it loses the tie
    # break on their sum; of the two left, the lower middle is chosen
    assert calibrate_margin(margins, unanswerable, none, "balanced") == -2.5
    # precision: no answerable question refused, then the fewest unanswerable answered
    assert calibrate_margin(margins, unanswerable, none, "precision", max_over_refusal=0.0) == 1.25
    # recall: every unanswerable refused, then the fewest answerable refused
    assert calibrate_margin(margins, unanswerable, none, "recall", max_under_refusal=0.0) == -2.5
    # a bound no threshold meets (the answerable one refused in words): then still the fewest answered
    assert calibrate_margin([0.0, 1.0], [False, True], [True, False], "precision", max_over_refusal=0.0) < 1.0
    with pytest.raises(ValueError, match="unknown refusal target"):
        calibrate_margin(margins, unanswerable, none, "f1")
