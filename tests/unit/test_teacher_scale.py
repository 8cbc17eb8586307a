"""teacher_scale fitted without labels: the teacher's margins brought to the student's spread."""

from __future__ import annotations

import pytest

from ragtune.train.retriever.teacher_scale import fit_teacher_scale, spread_ratio


def test_spread_ratio_puts_the_teachers_margins_on_the_students_scale():
    import numpy as np

    teacher = [8.0, -2.0, 4.0, 0.0]
    student = [0.4, -0.1, 0.2, 0.0]
    scale = spread_ratio(student, teacher)
    assert scale == pytest.approx(0.05)
    assert np.std([scale * t for t in teacher]) == pytest.approx(np.std(student))
    with pytest.raises(ValueError, match="same value"):
        spread_ratio(student, [1.0] * 4)


def test_fit_needs_scored_rows_with_a_negative():
    with pytest.raises(ValueError, match="too few to fit teacher_scale"):
        fit_teacher_scale([{"query": "q", "pos": ["p"], "neg": None, "scores": [1.0]}], "unused")
