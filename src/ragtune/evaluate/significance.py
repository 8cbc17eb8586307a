"""Paired significance tests over per-query scores."""

from __future__ import annotations

import math

import numpy as np


def paired_ttest(a: dict[str, float], b: dict[str, float]) -> float:
    """Two-sided paired t-test p-value over the queries both dicts score.

    Identical score vectors give p = 1.0 (no evidence of a difference), not NaN.
    """
    qids = sorted(set(a) & set(b))
    if len(qids) < 2:
        raise ValueError(f"a paired t-test needs at least 2 shared queries, got {len(qids)}")
    x = np.array([a[q] for q in qids])
    y = np.array([b[q] for q in qids])
    diff = x - y
    if np.allclose(diff, diff[0]):
        return 1.0 if np.isclose(diff[0], 0.0) else 0.0
    from scipy.stats import ttest_rel

    p = float(ttest_rel(x, y).pvalue)
    return 1.0 if math.isnan(p) else p


def compare_per_query(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> dict[str, dict]:
    """metric -> {mean_a, mean_b, delta, p_value} for every metric both results hold."""
    out: dict[str, dict] = {}
    for metric in a:
        if metric not in b:
            continue
        qa, qb = a[metric], b[metric]
        mean_a = float(np.mean(list(qa.values())))
        mean_b = float(np.mean(list(qb.values())))
        out[metric] = {"mean_a": mean_a, "mean_b": mean_b, "delta": mean_b - mean_a,
                       "p_value": paired_ttest(qa, qb), "num_queries": len(set(qa) & set(qb))}
    return out


def binomial_summary(successes: int, n: int, p0: float = 0.5) -> dict[str, float]:
    """Rate, 95% Wilson score interval and the exact two-sided binomial p-value against `p0`.

    >>> s = binomial_summary(16, 26)
    >>> round(s["rate"], 3), round(s["ci_low"], 3), round(s["ci_high"], 3), round(s["p_value"], 2)
    (0.615, 0.425, 0.776, 0.33)
    """
    if n <= 0:
        raise ValueError("binomial_summary needs at least one trial")
    from scipy.stats import binomtest

    test = binomtest(successes, n, p0)
    ci = test.proportion_ci(confidence_level=0.95, method="wilson")
    return {"rate": successes / n, "ci_low": float(ci.low), "ci_high": float(ci.high), "p_value": float(test.pvalue),
            "n": n}

