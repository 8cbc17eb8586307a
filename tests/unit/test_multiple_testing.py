"""Holm's adjustment against its definition and R's p.adjust(method = "holm")."""

import math

import pytest

from ragtune.evaluate.multiple_testing import holm_adjusted


def test_matches_r_p_adjust_holm():
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") -> 0.03 0.06 0.06 0.02
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_monotone_capped_and_nan_excluded_from_the_family():
    adjusted = holm_adjusted([0.5, math.nan, 0.2, 0.001])
    assert math.isnan(adjusted[1])
    # k = 3 finite p-values: 0.001*3, then max(0.003, 0.2*2), then max(0.4, min(1, 0.5*1))
    assert [adjusted[3], adjusted[2], adjusted[0]] == pytest.approx([0.003, 0.4, 0.5])
    assert holm_adjusted([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm_adjusted([]) == []
