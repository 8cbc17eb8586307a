"""When is an answer a refusal? The trained phrasings, a calibrated likelihood signal, and generic cues.

The answerer is trained (`ragtune data convert squad-sft|webqa-sft`, then `ragtune train generator`) to answer
with a span of the context or with one of a fixed set of refusal phrasings (`REFUSALS`, five per language).
An output counts as a refusal when any of these holds:

1. **cue**: it contains a generic refusal cue ("cannot answer", "无法回答", ...) but is not one of the trained
   phrasings: an untrained model refusing in its own words (final, no threshold);
2. **likelihood** (the trained case; the greedy output may itself be a trained phrasing, difflib ratio >= 0.75,
   in which case the answerer decodes again with the phrasings' first tokens banned to get its best real
   answer): the model's probability of refusing beats its own answer:
   `log P(R) - max(log P(answer + <end>), log floor) > refusal_margin`, with P(R) = sum over the trained
   phrasings r of P(r + <end> | prompt). Because the model was trained on exactly these phrasings, P(R)
   approximates its total probability of refusing; greedy decoding alone misses that mass when it is split over
   several first tokens ("The", "I", "There"). The floor (default 0.05) keeps a model that was never trained on
   the phrasings from "refusing" only because its long greedy answer is improbable as a whole: P(R) must also
   reach the floor. `refusal_margin` (log-space, default 0) trades over- against under-refusal;
   `calibrate_margin` picks it on labelled data.
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


def decide(text: str, refusal_logprob: float, answer_logprob: float, language: str, margin: float = 0.0,
           phrasings: Sequence[str] | None = None, floor: float = FLOOR) -> tuple[bool, str | None]:
    """(refused, why) for the greedy output `text`: why is "text" (a cue outside the trained set), "likelihood"
    or None. `answer_logprob` is that of the best non-refusal answer."""
    if is_refusal_text(text, language, phrasings) and not is_trained_refusal(text, language, phrasings):
        return True, "text"
    if likelihood_margin(refusal_logprob, answer_logprob, floor) > margin:
        return True, "likelihood"
    return False, None


def calibrate_margin(margins: Sequence[float], unanswerable: Sequence[bool], text_refused: Sequence[bool],
                     max_over_refusal: float = 0.2) -> float:
    """The `refusal_margin` with the best refusal F1 whose over-refusal rate stays <= `max_over_refusal`.

    `margins[i]` = `likelihood_margin` of item i; items refused by text stay refused at any margin.
    Candidates are the midpoints between sorted margins (plus +inf = never refuse by likelihood).
    """
    import math

    n_ans = sum(not u for u in unanswerable) or 1
    values = sorted(set(margins))
    candidates = [math.inf] + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] + \
        ([values[0] - 1.0] if values else [])
    best, best_key = math.inf, (-1.0, 0.0)
    for t in candidates:
        refused = [tr or m > t for m, tr in zip(margins, text_refused, strict=True)]
        tp = sum(r and u for r, u in zip(refused, unanswerable, strict=True))
        fp = sum(r and not u for r, u in zip(refused, unanswerable, strict=True))
        fn = sum(not r and u for r, u in zip(refused, unanswerable, strict=True))
        if fp / n_ans > max_over_refusal:
            continue
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        key = (f1, -abs(t) if math.isfinite(t) else -1e9)
        if key > best_key:
            best, best_key = t, key
    return best
