"""Two recipes compared over retriever seeds, the way every round-2 claim in BENCHMARKS.md is read.

One retraining of SciFact's retriever with another seed moves test NDCG@10 by 0.008-0.013, and round-2 rows swing
by about 0.02 between seeds at the same recipe; a paired t-test between two single trainings sees neither. So a
comparison here is made at each seed (the per-seed differences), on each query's score averaged over the seeds
(paired t-test over the test queries) and over the seeds' means (paired t-test over the seeds, 3 seeds or more).
"""

from __future__ import annotations

import statistics


def pooled(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each query's score averaged over the runs (one run per seed): the recipe with the seed's noise averaged out."""
    shared = set(runs[0]).intersection(*runs[1:])
    return {q: statistics.mean(r[q] for r in runs) for q in sorted(shared)}


def compare(a: list[dict[str, float]], b: list[dict[str, float]]) -> dict[str, object]:
    """`a` against `b`, each a list of per-query scores, one per seed in the same seed order."""
    from scipy.stats import ttest_rel

    from ragtune.evaluate.significance import paired_ttest

    if len(a) != len(b) or not a:
        raise ValueError(f"compare needs the same seeds on both sides, got {len(a)} and {len(b)} runs")
    means_a, means_b = [statistics.mean(r.values()) for r in a], [statistics.mean(r.values()) for r in b]
    pa, pb = pooled(a), pooled(b)
    return {"per_seed": [x - y for x, y in zip(means_a, means_b, strict=True)],
            "difference": statistics.mean(pa.values()) - statistics.mean(pb.values()),
            "p_query": paired_ttest(pb, pa),
            "p_seeds": float(ttest_rel(means_a, means_b).pvalue) if len(a) > 2 else None}


def cells(result: dict[str, object]) -> list[str]:
    """A comparison as table cells: per-seed differences, the seed-averaged difference, its two p-values."""
    p_seeds = result["p_seeds"]
    return [", ".join(f"{d:+.4f}" for d in result["per_seed"]), f"{result['difference']:+.4f}",
            f"{result['p_query']:.2g}", "" if p_seeds is None else f"{p_seeds:.2g}"]


HEADER = ["per seed", "seed-averaged difference", "p, per query (seeds averaged)", "p, over the seeds' means"]
