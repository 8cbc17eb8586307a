"""What a round's generator wrote, measured: how findable, how hard, how copied, how varied, and in which style.

`round_quality` summarises one round's pseudo queries (every generated query, kept or not):

- `bm25_top1` / `bm25_top10`: share whose source document BM25 ranks first / in its top 10;
- `retriever_top1` / `retriever_top10`: the same under the round's trained retriever;
- `difficulty_hist`: counts of difficulty (`evaluate.difficulty`) in 10 bins over [0, 1]; `in_band`: share inside
  the target band;
- `copy_rate`: mean over queries of (longest common substring with the document) / (query length), in characters of
  the lower-cased, space-normalised texts: 1.0 is a verbatim span of the document;
- `mean_words`, `duplicate_rate` (share of queries whose text another query of the round repeats),
  `question_share` (queries written as questions).

`style_stats` compares queries with a handful of example queries of the target collection: length, question form and
vocabulary overlap (share of a query's words that occur in the examples' vocabulary).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Any

QUESTION_WORDS = frozenset(["what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "was",
                            "were", "do", "does", "did", "can", "could", "should", "would", "will", "has", "have",
                            "had", "may", "might"])
_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def copy_rate(query: str, document: str) -> float:
    """Longest common substring of query and document over the query's length (normalised texts).

    >>> copy_rate("the cat sat", "Yesterday THE cat  sat down")
    1.0
    >>> copy_rate("dogs bark loudly", "the cat sat")  # one shared character of 16
    0.0625
    """
    q, d = normalize(query), normalize(document)
    if not q:
        return 0.0
    m = SequenceMatcher(None, q, d, autojunk=False).find_longest_match(0, len(q), 0, len(d))
    return m.size / len(q)


def is_question(text: str) -> bool:
    """Ends with '?' or starts with a question word.

    >>> is_question("what causes rain"), is_question("Rain is caused by clouds."), is_question("rain?")
    (True, False, True)
    """
    t = text.strip()
    w = words(t)
    return t.endswith("?") or (bool(w) and w[0] in QUESTION_WORDS)


def duplicate_rate(queries: Sequence[str]) -> float:
    """Share of queries whose normalised text occurs more than once.

    >>> duplicate_rate(["a b", "A  b", "c"])
    0.6666666666666666
    """
    if not queries:
        return 0.0
    counts = Counter(normalize(q) for q in queries)
    return sum(c for c in counts.values() if c > 1) / len(queries)


def _share(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def histogram(values: Sequence[float], bins: int = 10) -> list[int]:
    """Counts in `bins` equal bins over [0, 1] (1.0 falls in the last bin)."""
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def query_stats(queries: Sequence[str]) -> dict[str, float]:
    lens = [len(words(q)) for q in queries]
    return {"mean_words": sum(lens) / len(lens) if lens else 0.0, "question_share": _share([is_question(q)
                                                                                            for q in queries]),
            "duplicate_rate": duplicate_rate(queries)}


def round_quality(rows: Sequence[dict[str, Any]], documents: dict[str, str], band: tuple[float, float],
                  bm25_ranks: dict[str, int | None]) -> dict[str, Any]:
    """rows: {query_id, doc_id, text, rank (round retriever, None beyond depth), difficulty}; documents: doc id ->
    text; bm25_ranks: query id -> BM25 rank of the source document (None beyond depth)."""
    if not rows:
        return {"queries": 0}
    texts = [r["text"] for r in rows]
    ranks = [r.get("rank") for r in rows]
    b_ranks = [bm25_ranks.get(r["query_id"]) for r in rows]
    diffs = [r["difficulty"] for r in rows if r.get("difficulty") is not None]
    lo, hi = band
    copies = [copy_rate(r["text"], documents[r["doc_id"]]) for r in rows]
    return {
        "queries": len(rows),
        "bm25_top1": _share([b == 1 for b in b_ranks]),
        "bm25_top10": _share([b is not None and b <= 10 for b in b_ranks]),
        "retriever_top1": _share([r == 1 for r in ranks]),
        "retriever_top10": _share([r is not None and r <= 10 for r in ranks]),
        "difficulty_hist": histogram(diffs),
        "mean_difficulty": sum(diffs) / len(diffs) if diffs else None,
        "band": [lo, hi],
        "in_band": _share([lo <= d <= hi for d in diffs]),
        "copy_rate": sum(copies) / len(copies),
        "verbatim_share": _share([c >= 0.999 for c in copies]),
        **query_stats(texts),
    }


def style_stats(queries: Sequence[str], examples: Sequence[str]) -> dict[str, Any]:
    """Generated queries against the target collection's example queries: length, question form, vocabulary.

    `vocab_overlap` is the share of the queries' words found in the examples' vocabulary; for the examples
    themselves it is measured leave-one-out (each example against the others), the level to aim at.
    """
    vocab = {w for e in examples for w in words(e)}

    def overlap(qs: Sequence[str], vocab_of) -> float:
        hits = total = 0
        for i, q in enumerate(qs):
            v = vocab_of(i)
            ws = words(q)
            hits += sum(w in v for w in ws)
            total += len(ws)
        return hits / total if total else 0.0

    loo = overlap(examples, lambda i: {w for j, e in enumerate(examples) if j != i for w in words(e)})
    gen, ex = query_stats(queries), query_stats(examples)
    return {"examples": len(examples),
            "mean_words": gen["mean_words"], "examples_mean_words": ex["mean_words"],
            "question_share": gen["question_share"], "examples_question_share": ex["question_share"],
            "vocab_overlap": overlap(queries, lambda i: vocab), "examples_vocab_overlap": loo}
