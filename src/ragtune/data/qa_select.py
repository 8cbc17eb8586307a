"""Which reading-comprehension items become records: article splits, answerable/unanswerable balance,
mismatched pairs and distractor passages. Pure data: the prompts they are rendered into live in
`ragtune.generate.prompts`.
"""

from __future__ import annotations

import random
from dataclasses import replace

from ragtune.data.language import cjk_share
from ragtune.data.qa_json import QAItem


def questions_language(items: list[QAItem]) -> str:
    """"zh" when more than 30% of the letters of the (first 500) questions are CJK characters, else "en"."""
    return "zh" if cjk_share("".join(i.question for i in items[:500])) > 0.3 else "en"


def split_articles(items: list[QAItem], holdout: int | list[str], seed: int) -> tuple[list[str], list[str]]:
    """(train articles, eval articles), in file order."""
    articles = list(dict.fromkeys(i.article for i in items))
    if isinstance(holdout, int):
        if not 0 <= holdout < len(articles):
            raise ValueError(f"holdout_articles={holdout}, but the data has {len(articles)} articles; "
                             f"pass 0..{len(articles) - 1} so some remain for training")
        held = set(random.Random(seed).sample(articles, holdout))
    else:
        unknown = [a for a in holdout if a not in set(articles)]
        if unknown:
            raise ValueError(f"holdout_articles names unknown articles: {', '.join(unknown[:5])} "
                             f"(first articles: {', '.join(articles[:5])})")
        held = set(holdout)
        if len(held) == len(articles):
            raise ValueError("holdout_articles names every article; leave some for training")
    return [a for a in articles if a not in held], [a for a in articles if a in held]


def _mismatches(items: list[QAItem], rng: random.Random) -> list[QAItem]:
    """At most one mismatched pair per question: its text beside another article's context lacking its answer."""
    contexts = list(dict.fromkeys((i.article, i.context) for i in items))
    several = len({a for a, _ in contexts}) > 1
    out: list[QAItem] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        if (item.article, item.question) in seen:
            continue
        seen.add((item.article, item.question))
        for _ in range(20):  # a few tries to find a context that is really unrelated
            article, context = contexts[rng.randrange(len(contexts))]
            if (article != item.article if several else context != item.context) and \
                    not any(a in context for a in item.answers):
                out.append(replace(item, id=f"{item.id}~mismatch", context=context, answers=(), answerable=False,
                                   source="mismatched", context_article=article))
                break
    return out


def select(items: list[QAItem], fraction: float, mismatched: bool, rng: random.Random) -> list[QAItem]:
    """Answerable and unanswerable items in the ratio `fraction`, native unanswerables before mismatched ones."""
    answerable = [i for i in items if i.answerable]
    native = [i for i in items if not i.answerable]
    pool = _mismatches(items, rng) if mismatched and fraction > 0 else []
    n_a = len(answerable) if fraction < 1 else 0
    available = len(native) + len(pool)
    n_u = available if fraction >= 1 else round(n_a * fraction / (1 - fraction))
    if n_u > available:  # too few unanswerables: keep fewer answerable ones to hold the ratio
        n_u = available
        n_a = min(n_a, round(n_u * (1 - fraction) / fraction))
    chosen_native = rng.sample(native, min(n_u, len(native)))
    chosen = rng.sample(answerable, n_a) + chosen_native + rng.sample(pool, n_u - len(chosen_native))
    rng.shuffle(chosen)
    return chosen


def with_distractors(item: QAItem, pool: list[tuple[str, str]], n: int, rng: random.Random) -> list[str]:
    """The item's context and `n` contexts of other articles (none holding one of its answers), shuffled."""
    own = {item.article, item.context_article}
    candidates = [c for a, c in pool if a not in own and c != item.context and not any(x in c for x in item.answers)]
    contexts = [item.context, *rng.sample(candidates, min(n, len(candidates)))]
    rng.shuffle(contexts)
    return contexts
