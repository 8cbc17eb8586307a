"""When is an answer a refusal? The model's own words first, then a calibrated likelihood margin.

The answerer is trained (`ragtune data convert squad-sft|webqa-sft`, then `ragtune train generator`) to answer
with a span of the context or with the canonical refusal of its language (`CANONICAL_REFUSAL`; more phrasings of
`REFUSALS` may be trained for variety, and all of them are scored as one class). An output is a refusal when:

1. **text**: the greedy output is one of the refusal phrasings (difflib ratio >= 0.75) or contains a generic
   refusal cue ("cannot answer", "无法回答", ...), the way an untrained model refuses in its own words. With
   `refusal_text: final` (default) no threshold undoes it; with `refusal_text: margin` a greedy *trained phrasing*
   is kept only while the margin below also says refuse, so the calibrated threshold can undo a trained model's
   over-refusal too (a generic cue stays final: there is no alternative answer to weigh it against);
   `refused_by_text` in `ragtune eval rag`;
2. **margin** (the second signal, for a greedy output that answered): the model's probability of refusing beats
   its answer by more than a calibrated threshold: `log P(R) - max(log P(answer + <end>), log floor) >
   refusal_margin`, with P(R) = sum over the phrasings r of P(r + <end> | prompt) (`refused_by_margin`). The floor
   (default 0.05) keeps a model never trained on the phrasings from "refusing" only because its long greedy
   answer is improbable as a whole. When the greedy output itself refused, the answerer decodes again with the
   phrasings' first tokens banned, so `log P(answer)` is always that of its best real answer.

`calibrate_margin` picks `refusal_margin` on labelled dev questions for a target: `balanced` (minimise
max(over-refusal, under-refusal)), `precision` (fewest unanswerable questions answered while over-refusal stays
<= max_over_refusal) or `recall` (fewest answerable questions refused while under-refusal stays <=
max_under_refusal). `refusal_curve` gives both rates at every threshold (plotted by `ragtune eval rag`).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence

from ragtune.generate.prompts import REFUSALS

CUES = {
    "en": ["cannot answer", "can't answer", "can not answer", "unable to answer", "does not contain the answer",
           "doesn't contain the answer", "does not mention", "doesn't mention", "not mentioned", "no information",
           "not enough information", "does not say", "doesn't say", "does not provide", "doesn't provide",
           "don't know the answer", "do not know the answer", "cannot be answered", "not specified"],
    "zh": ["无法回答", "无法作答", "不能回答", "没有提到", "未提到", "未提及", "不包含", "找不到答案", "没有答案",
           "不足以回答", "无法确定", "不知道"],
}
SIMILARITY = 0.75


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    text = "".join(" " if unicodedata.category(ch).startswith("P") and ch != "'" else ch for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def is_trained_refusal(text: str, language: str, phrasings: Sequence[str] | None = None) -> bool:
    """True when `text` is (close to) one of the trained refusal phrasings."""
    norm = _norm(text)
    lang = "zh" if language == "zh" else "en"
    return bool(norm) and any(difflib.SequenceMatcher(None, norm, _norm(p), autojunk=False).ratio() >= SIMILARITY
                              for p in phrasings or REFUSALS[lang])


def is_refusal_text(text: str, language: str, phrasings: Sequence[str] | None = None) -> bool:
    """True when `text` is one of the refusal phrasings (fuzzy) or contains a refusal cue of `language`.

    >>> is_refusal_text("I cannot answer this question from the given context.", "en")
    True
    >>> is_refusal_text("The Normans", "en")
    False
    """
    norm = _norm(text)
    if not norm:
        return False
    if is_trained_refusal(text, language, phrasings):
        return True
    return any(cue in norm for cue in CUES["zh" if language == "zh" else "en"])


FLOOR = 0.05


def likelihood_margin(refusal_logprob: float, answer_logprob: float, floor: float = FLOOR) -> float:
    """log P(R) - max(log P(answer), log floor): > 0 when refusing is likelier than the answer and than `floor`."""
    import math

    return refusal_logprob - max(answer_logprob, math.log(floor) if floor > 0 else -math.inf)


TEXT_MODES = ("final", "margin")


def text_is_final(text: str, language: str, phrasings: Sequence[str] | None = None, mode: str = "final") -> bool:
    """True when the greedy output `text` refuses and no threshold may undo it (see `refusal_text`)."""
    if not is_refusal_text(text, language, phrasings):
        return False
    return mode == "final" or not is_trained_refusal(text, language, phrasings)


def decide(text: str, refusal_logprob: float, answer_logprob: float, language: str, margin: float = 0.0,
           phrasings: Sequence[str] | None = None, floor: float = FLOOR, mode: str = "final",
           score: float | None = None) -> tuple[bool, str | None]:
    """(refused, why) for the greedy output `text`: why is "text" (the greedy output refused: a phrasing or cue),
    "likelihood" (the margin refused an answer) or None. `answer_logprob` is that of the best non-refusal answer.
    `score`, where given (a refusal probe's), is compared with `margin` instead of the likelihood margin.

    >>> decide("I cannot answer this question from the given context.", -1.0, -0.1, "en", mode="margin")
    (False, None)
    >>> decide("I cannot answer this question from the given context.", -1.0, -0.1, "en")
    (True, 'text')
    """
    above = (likelihood_margin(refusal_logprob, answer_logprob, floor) if score is None else score) > margin
    if is_refusal_text(text, language, phrasings):
        return (True, "text") if above or text_is_final(text, language, phrasings, mode) else (False, None)
    if above:
        return True, "likelihood"
    return False, None


TARGETS = ("balanced", "precision", "recall")


def refusal_curve(margins: Sequence[float], unanswerable: Sequence[bool], text_refused: Sequence[bool]
                  ) -> list[tuple[float, float, float]]:
    """(threshold, over-refusal, under-refusal) at every distinct cut, from refusing by margin below the lowest
    margin up to +inf (the margin never refuses); items refused by text stay refused at every threshold.

    >>> refusal_curve([-1.0, 1.0], [False, True], [False, False])
    [(-2.0, 1.0, 0.0), (0.0, 0.0, 0.0), (inf, 0.0, 1.0)]
    """
    import math

    if not (len(margins) == len(unanswerable) == len(text_refused)):
        raise ValueError("margins, unanswerable and text_refused must have the same length")
    n_ans = sum(not u for u in unanswerable) or 1
    n_un = sum(unanswerable) or 1
    values = sorted({m for m in margins if math.isfinite(m)})
    cuts = ([values[0] - 1.0] if values else []) + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] \
        + [math.inf]
    curve = []
    for t in cuts:
        refused = [tr or m > t for m, tr in zip(margins, text_refused, strict=True)]
        over = sum(r and not u for r, u in zip(refused, unanswerable, strict=True)) / n_ans
        under = sum(not r and u for r, u in zip(refused, unanswerable, strict=True)) / n_un
        curve.append((t, over, under))
    return curve


def curve_auc(curve: Sequence[tuple[float, float, float]]) -> float:
    """How well the margin separates unanswerable from answerable questions: the area under (over-refusal,
    1 - under-refusal) as the threshold moves (0.5 = no better than chance, 1 = a threshold refuses exactly the
    unanswerable ones). Refusals no threshold undoes sit at every point, so they cap it.

    >>> curve_auc(refusal_curve([-1.0, 1.0], [False, True], [False, False]))
    1.0
    >>> curve_auc(refusal_curve([1.0, -1.0], [False, True], [False, False]))
    0.0
    """
    points = sorted({(over, 1.0 - under) for _, over, under in curve})
    points = [(0.0, 0.0), *points, (1.0, 1.0)]
    return round(sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in zip(points, points[1:], strict=False)), 6)


def calibrate_margin(margins: Sequence[float], unanswerable: Sequence[bool], text_refused: Sequence[bool],
                     target: str = "balanced", max_over_refusal: float = 0.1, max_under_refusal: float = 0.1
                     ) -> float:
    """The `refusal_margin` that best meets `target` on labelled items (see the module docstring).

    Ties go to the middle threshold of the tied ones. When no threshold meets a precision (recall) bound, the one
    with the lowest over-refusal (under-refusal) wins.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown refusal target {target!r}; use one of {', '.join(TARGETS)}")
    curve = refusal_curve(margins, unanswerable, text_refused)

    def cost(point: tuple[float, float, float]) -> tuple[float, ...]:
        _, over, under = point
        if target == "precision":
            return (max(0.0, over - max_over_refusal), under, over)
        if target == "recall":
            return (max(0.0, under - max_under_refusal), over, under)
        return (max(over, under), over + under)

    best = min(cost(p) for p in curve)
    tied = [p[0] for p in curve if cost(p) == best]
    return tied[(len(tied) - 1) // 2]
