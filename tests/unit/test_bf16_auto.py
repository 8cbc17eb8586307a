"""`bf16: auto`: bfloat16 training only where the device runs it natively, decided before any stage key is made."""
from __future__ import annotations

import pytest

from ragtune.config import load_config
from ragtune.pipeline.loop import RunConfig, resolve_auto_bf16
from ragtune.pipeline.loop_rounds import overrides
from ragtune.pipeline.rundir import stage_key
from ragtune.train.generator.sft_config import GeneratorTrainConfig
from ragtune.train.precision import check_precision

TRAINERS = ("sft", "retriever", "reward", "dpo", "grpo")


@pytest.mark.parametrize("native", [False, True])
def test_auto_becomes_the_cpus_native_bf16_in_every_trainer_and_in_the_stage_keys(monkeypatch, native):
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "1" if native else "0")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    given = load_config(RunConfig, None, [f"{n}.bf16=auto" for n in TRAINERS])
    cfg = resolve_auto_bf16(given)
    assert [getattr(cfg, n).bf16 for n in TRAINERS] == [native] * len(TRAINERS)
    assert given.sft.bf16 == "auto"  # the caller's config is left as declared
    declared = load_config(RunConfig, None, [f"sft.bf16={str(native).lower()}"])
    assert stage_key(overrides(cfg.sft)) == stage_key(overrides(declared.sft))


def test_auto_is_off_when_fp16_is_set_and_explicit_values_are_kept(monkeypatch):
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "1")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = resolve_auto_bf16(load_config(RunConfig, None, ["sft.bf16=auto", "sft.fp16=true", "reward.bf16=false"]))
    assert cfg.sft.bf16 is False and cfg.reward.bf16 is False
    unchanged = load_config(RunConfig, None, [])
    assert resolve_auto_bf16(unchanged) is unchanged


@pytest.mark.parametrize("native", ["0", "1"])
def test_check_precision_decides_auto_without_a_warning(monkeypatch, caplog, native):
    import logging

    monkeypatch.setenv("RAGTUNE_CPU_BF16", native)
    cfg = load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o", "bf16=auto"])
    with caplog.at_level(logging.WARNING):
        check_precision(cfg, "cpu")
    assert cfg.bf16 is (native == "1")
    assert not caplog.records


def test_a_bf16_value_other_than_true_false_auto_names_the_key():
    from ragtune.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="bf16"):
        load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o", "bf16=sometimes"])
