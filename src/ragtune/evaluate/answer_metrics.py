"""Grounded-answer metrics: exact match and token F1 on answerable questions, refusal precision/recall/F1,
over-refusal (answerable questions refused) and under-refusal (unanswerable questions answered).

    score_answers(golds, preds, refused, answerable, languages)
    # {"em", "f1", "f1_answered", "refusal_precision", "refusal_recall", "refusal_f1", "over_refusal",
    #  "under_refusal", "accuracy", ...}

English follows the SQuAD evaluation script: lowercase, drop punctuation and the articles a/an/the, split on
whitespace. Chinese follows CMRC 2018: punctuation and spaces dropped, every CJK character one token (Latin
words and numbers stay whole). A refused answerable question scores EM = F1 = 0. Refusal is the positive
class: precision = refused unanswerable / refused, recall = refused unanswerable / unanswerable.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK_OR_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ZH_PUNCT = set("，。！？；：、“”‘’（）《》【】—…·「」『』〈〉﹏～")


def normalize_answer(text: str, language: str = "en") -> str:
    """SQuAD normalisation (en) or CMRC normalisation (zh: no punctuation, no spaces).

    >>> normalize_answer("The  Norman conquest!")
    'norman conquest'
    >>> normalize_answer("韩国 。", "zh")
    '韩国'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    if language == "zh":
        return "".join(ch for ch in text if not ch.isspace() and ch not in _ZH_PUNCT and ch not in string.punctuation)
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str, language: str = "en") -> list[str]:
    """Tokens for F1: words (en); CJK characters one by one plus whole Latin words and numbers (zh)."""
    norm = normalize_answer(text, language)
    return _CJK_OR_WORD.findall(norm) if language == "zh" else norm.split()


def exact_match(prediction: str, golds: Sequence[str], language: str = "en") -> float:
    p = normalize_answer(prediction, language)
    return float(any(p == normalize_answer(g, language) for g in golds))


def token_f1(prediction: str, golds: Sequence[str], language: str = "en") -> float:
    """Best token-overlap F1 against any gold answer.

    >>> round(token_f1("the Norman conquest of England", ["Norman conquest"]), 4)
    0.6667
    """
    pred = tokens(prediction, language)
    best = 0.0
    for g in golds:
        gold = tokens(g, language)
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            precision, recall = common / len(pred), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
        elif not pred and not gold:
            best = max(best, 1.0)
    return best


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def refusal_metrics(answerable: Sequence[bool], refused: Sequence[bool]) -> dict[str, float]:
    """Refusal precision, recall, F1 (refusal = positive class) and over-/under-refusal rates."""
    tp = sum(r and not a for a, r in zip(answerable, refused, strict=True))
    fp = sum(r and a for a, r in zip(answerable, refused, strict=True))
    fn = sum(not r and not a for a, r in zip(answerable, refused, strict=True))
    n_ans = sum(answerable)
    n_un = len(answerable) - n_ans
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"refusal_precision": p, "refusal_recall": r, "refusal_f1": _ratio(2 * p * r, p + r),
            "over_refusal": _ratio(fp, n_ans), "under_refusal": _ratio(fn, n_un)}


def score_answers(golds: Sequence[Sequence[str]], predictions: Sequence[str], refused: Sequence[bool],
                  answerable: Sequence[bool], languages: Sequence[str]) -> dict[str, float]:
    """All metrics over one evaluation set (see the module docstring); `golds[i]` is empty when unanswerable."""
    n = len(predictions)
    if not (len(golds) == len(refused) == len(answerable) == len(languages) == n):
        raise ValueError("golds, predictions, refused, answerable and languages must have the same length")
    em, f1, f1_answered, correct = [], [], [], 0
    for g, p, r, a, lang in zip(golds, predictions, refused, answerable, languages, strict=True):
        if a:
            e, f = (0.0, 0.0) if r else (exact_match(p, g, lang), token_f1(p, g, lang))
            em.append(e)
            f1.append(f)
            if not r:
                f1_answered.append(f)
            correct += e
        else:
            correct += r
    out = {"em": _ratio(sum(em), len(em)), "f1": _ratio(sum(f1), len(f1)),
           "f1_answered": _ratio(sum(f1_answered), len(f1_answered)), **refusal_metrics(answerable, refused),
           "accuracy": _ratio(correct, n), "refused": _ratio(sum(refused), n)}
    return out
