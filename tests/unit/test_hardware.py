"""dtype: auto picks bf16 only where the hardware multiplies it natively."""

from ragtune.hardware import auto_dtype, cpu_has_amx, cpu_has_fast_bf16


def test_cpu_bf16_detection_can_be_forced(monkeypatch):
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")
    assert not cpu_has_fast_bf16() and auto_dtype("cpu") == "float32"
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "1")
    assert cpu_has_fast_bf16() and auto_dtype("cpu") == "bfloat16"
    assert auto_dtype("mps") == "float32"


def test_cpu_bf16_detection_follows_cpuinfo_flags(monkeypatch, tmp_path):
    import builtins

    real_open = builtins.open
    monkeypatch.delenv("RAGTUNE_CPU_BF16", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr("torch.backends.cpu.get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("RAGTUNE_CPU_AMX", raising=False)
    for flags, bf16, amx in (("fpu avx2 avx512f", False, False), ("fpu avx512f avx512_bf16", True, False),
                             ("fpu avx512f amx_bf16 amx_tile", True, True)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor : 0\nflags : {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda p, *a, _i=info, **k: real_open(
            _i if p == "/proc/cpuinfo" else p, *a, **k))
        assert (cpu_has_fast_bf16(), cpu_has_amx()) == (bf16, amx), flags
    # oneDNN capped below AMX: bf16 stays native (AVX512-BF16), AMX does not
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert cpu_has_fast_bf16() and not cpu_has_amx()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    # the CPU has AMX, but torch (or oneDNN) was told to stop at AVX2: no native bf16 for ragtune either
    monkeypatch.setattr("torch.backends.cpu.get_cpu_capability", lambda: "AVX2")
    assert cpu_has_fast_bf16() is False
    monkeypatch.setattr("torch.backends.cpu.get_cpu_capability", lambda: "AVX512")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cpu_has_fast_bf16() is False


def test_fsdp_or_deepspeed_launch_on_cpu_says_it_runs_as_ddp(monkeypatch, caplog):
    import logging

    from ragtune import hardware

    hardware._fsdp_on_cpu_notice.cache_clear()
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="ragtune.notice"):
        hardware.process_state()
        assert not caplog.records  # a plain launch says nothing
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
        hardware.process_state()
        hardware.process_state()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "launched with FSDP" in said[0] and "plain data parallel" in said[0]
