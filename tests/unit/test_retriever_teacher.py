"""retriever.teacher: a teacher that cannot grade is a config error naming the key; its files key the stage."""

from __future__ import annotations

import json

import pytest

from ragtune.config import ConfigError, load_config
from ragtune.pipeline.retriever_stage import BiEncoderLoopSettings
from ragtune.pipeline.retriever_teacher import teacher_key


def test_a_teacher_that_cannot_grade_is_refused_before_anything_runs(tmp_path):
    missing = load_config(BiEncoderLoopSettings, None, [f"teacher={tmp_path / 'none'}"])
    with pytest.raises(ConfigError, match="retriever.teacher.*is not a folder"):
        teacher_key(missing)
    (tmp_path / "ce").mkdir()
    (tmp_path / "ce" / "config.json").write_text("{}")
    unfused = load_config(BiEncoderLoopSettings, None, [f"teacher={tmp_path / 'ce'}"])
    with pytest.raises(ConfigError, match="retriever.teacher_fusion.*ragtune_fusion.json not found"):
        teacher_key(unfused)
    own_scores = load_config(BiEncoderLoopSettings, None, [f"teacher={tmp_path / 'ce'}", "teacher_fusion=false"])
    key = teacher_key(own_scores)["teacher_fingerprint"]
    (tmp_path / "ce" / "ragtune_fusion.json").write_text(json.dumps({"weight": 0.7, "k": 60}))
    assert teacher_key(unfused)["teacher_fingerprint"] != key  # the fusion weight's file is part of the key
    assert teacher_key(load_config(BiEncoderLoopSettings, None, [])) == {}
