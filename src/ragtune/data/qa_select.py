"""Which reading-comprehension items become records: article splits, a question-disjoint dev slice,
answerable/unanswerable balance, hard and mismatched unanswerable pairs, and distractor passages. Pure data: the
prompts they are rendered into live in `ragtune.generate.prompts`, the passage ranker that picks hard pairs is
passed in (`ragtune.rag.answerer_data` uses BM25).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import replace

from ragtune.data.language import cjk_share
from ragtune.data.qa_json import QAItem


def questions_language(items: list[QAItem]) -> str:
    """"zh" when more than 30% of the letters of the (first 500) questions are CJK characters, else "en"."""
    return "zh" if cjk_share("".join(i.question for i in items[:500])) > 0.3 else "en"


def split_articles(items: list[QAItem], holdout: int | list[str], seed: int, key: str = "holdout_articles"
                   ) -> tuple[list[str], list[str]]:
    """(train articles, held-out articles), in file order; `key` names the setting in errors."""
    articles = list(dict.fromkeys(i.article for i in items))
    if isinstance(holdout, int):
        if not 0 <= holdout < len(articles):
            raise ValueError(f"{key}={holdout}, but the data has {len(articles)} articles left for it; "
                             f"pass 0..{len(articles) - 1} so some remain for training")
        held = set(random.Random(seed).sample(articles, holdout))
    else:
        unknown = [a for a in holdout if a not in set(articles)]
        if unknown:
            raise ValueError(f"{key} names unknown articles: {', '.join(unknown[:5])} "
                             f"(first articles: {', '.join(articles[:5])})")
        held = set(holdout)
        if len(held) == len(articles):
            raise ValueError(f"{key} names every article; leave some for training")
    return [a for a in articles if a not in held], [a for a in articles if a in held]


def split_questions(items: list[QAItem], n: int, seed: int) -> tuple[list[QAItem], list[QAItem]]:
    """(dev items, the rest): `n` distinct question texts drawn with `seed`, with every item asking them.

    Matching is on the question text, so no dev question is asked by any record built from the rest (a question
    that appears twice, or in an answerable and a mismatched pair, lands on one side only).
    """
    if n == 0:
        return [], items
    texts = list(dict.fromkeys(i.question for i in items))
    if n >= len(texts):
        raise ValueError(f"dev_questions={n}, but the training articles ask {len(texts)} distinct questions; pass "
                         f"0..{len(texts) - 1} so some remain for training")
    dev = set(random.Random(f"{seed}:dev").sample(texts, n))
    return [i for i in items if i.question in dev], [i for i in items if i.question not in dev]


Ranker = Callable[[str, list[str]], list[int]]
"""(question, candidate passages) -> candidate indices, best match first."""


def hard_pairs(items: list[QAItem], rank: Ranker) -> list[QAItem]:
    """One hard unanswerable pair per answerable question: the passage of its own article that `rank` puts first
    among those holding none of its answers, as SQuAD 2.0's unanswerable questions are written against a passage
    of the same article. An article with no such passage (WebQA: one evidence per question) takes the best-ranked
    passage of another article instead, again lacking every answer (source "hard_other")."""
    by_article: dict[str, list[str]] = {}
    for i in items:
        if i.context not in by_article.setdefault(i.article, []):
            by_article[i.article].append(i.context)
    everything = [(a, c) for a, cs in by_article.items() for c in cs]
    out: list[QAItem] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        if not item.answerable or (item.article, item.question) in seen:
            continue
        seen.add((item.article, item.question))
        same = [c for c in by_article[item.article] if c != item.context and not any(x in c for x in item.answers)]
        source, candidates = ("hard", same) if same else ("hard_other", [
            c for a, c in everything if a != item.article and not any(x in c for x in item.answers)])
        if not candidates:
            continue
        best = candidates[rank(item.question, candidates)[0]]
        article = item.article if source == "hard" else next(a for a, c in everything if c == best)
        out.append(replace(item, id=f"{item.id}~hard", context=best, answers=(), answerable=False, source=source,
                           context_article=article))
    return out


UNANSWERABLE_KINDS = ("native", "hard", "mismatched")


def select_mix(items: list[QAItem], fraction: float, mix: Mapping[str, float], pools: Mapping[str, list[QAItem]],
               rng: random.Random) -> list[QAItem]:
    """Answerable and unanswerable items in the ratio `fraction`; the unanswerable ones drawn from `pools`
    (native, hard, mismatched) in the shares `mix`. A pool too small for its share leaves the rest to the next
    pools in that order; when all are too small, fewer answerable items keep the ratio."""
    answerable = [i for i in items if i.answerable]
    available = sum(len(pools.get(k, [])) for k in UNANSWERABLE_KINDS)
    n_a = len(answerable) if fraction < 1 else 0
    n_u = available if fraction >= 1 else round(n_a * fraction / (1 - fraction))
    if n_u > available:
        n_u = available
        n_a = min(n_a, round(n_u * (1 - fraction) / fraction))
    total = sum(mix.get(k, 0.0) for k in UNANSWERABLE_KINDS) or 1.0
    want = {k: round(n_u * mix.get(k, 0.0) / total) for k in UNANSWERABLE_KINDS}
    want[UNANSWERABLE_KINDS[-1]] += n_u - sum(want.values())
    take = {k: min(want[k], len(pools.get(k, []))) for k in UNANSWERABLE_KINDS}
    for k in UNANSWERABLE_KINDS:  # shortfalls move to the pools that still have items, in order
        short = n_u - sum(take.values())
        if short <= 0:
            break
        take[k] += min(short, len(pools.get(k, [])) - take[k])
    chosen = rng.sample(answerable, n_a)
    for k in UNANSWERABLE_KINDS:
        chosen += rng.sample(pools.get(k, []), take[k])
    rng.shuffle(chosen)
    return chosen


def mismatched_pairs(items: list[QAItem], rng: random.Random) -> list[QAItem]:
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
    pool = mismatched_pairs(items, rng) if mismatched and fraction > 0 else []
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
