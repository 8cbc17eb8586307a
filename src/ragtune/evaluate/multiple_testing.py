"""Multiple comparisons: Holm's step-down adjustment of a family of p-values.

A table that holds k p-values has about k x alpha false positives by chance; Holm (1979) controls the
family-wise error rate at alpha without assuming independence, and is uniformly more powerful than Bonferroni.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values in the input order: p_(i) * (k - i + 1), made monotone, capped at 1.

    A comparison survives the correction at level alpha when its adjusted p-value is <= alpha. NaN p-values
    (a metric with no variance) stay NaN and do not count towards k.

    >>> holm_adjusted([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    finite = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    k = len(finite)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (k - rank) * p))
        adjusted[i] = running
    return adjusted
