"""benchmarks/device/overrides*.txt: each set of overrides the device calls pass to the GPU config is a valid run."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = sorted((REPO / "benchmarks" / "device").glob("overrides*.txt"))


def test_the_device_folder_ships_override_files():
    assert {f.name for f in FILES} >= {"overrides.txt", "overrides-grpo-band.txt",
                                                "overrides-grpo-gap.txt"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_overrides_validate_against_the_gpu_config(path, monkeypatch):
    from ragtune.config import load_config
    from ragtune.pipeline.loop import RunConfig

    monkeypatch.chdir(REPO)
    overrides = path.read_text().split()
    cfg = load_config(RunConfig, "configs/loop-scifact-gpu.yaml", overrides)
    assert cfg.rounds == 2 and cfg.fresh_documents and not cfg.rl_after_last_round
    if "grpo-band" in path.name:
        assert cfg.rl == "grpo" and cfg.reward_weights == (0.0, 1.0, 0.0) and cfg.reward_band_falloff == 0.1
    if "grpo-gap" in path.name:  # the warm, self-mined round 2 with GRPO on filter outcome + BM25 gap
        assert cfg.rl == "grpo" and cfg.reward_weights == (1.0, 0.0, 0.0) and cfg.reward_gap_weight == 1.0
        assert cfg.retriever.mine_with == cfg.retriever.init == "previous_round"
