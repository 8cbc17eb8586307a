"""dense.backend=onnx: the ONNX Runtime export encodes like torch, is cached by everything that changes it,
is written whole or not at all, and `auto` picks it on every CPU without AMX."""

from pathlib import Path

import numpy as np
import pytest

from ragtune.data.beir import load_beir
from ragtune.retrieval import onnx_encoder
from ragtune.retrieval.dense import DenseConfig, DenseRetriever, resolve_backend

ort = pytest.importorskip("onnxruntime")

TEXTS = ["A comet orbits the sun.", "", "x", "star planet orbit telescope " * 40, "  bread oven  flour  ",
         "Bond prices fall when market interest rates rise."]


def test_onnx_embeddings_match_torch_float32(tiny_bert, tiny_beir):
    docs = [d.content for d in load_beir(tiny_beir).corpus.values()] + TEXTS
    torch32 = DenseRetriever(DenseConfig(model=str(tiny_bert), batch_size=4, query_prompt="query: "))
    fp32 = DenseRetriever(DenseConfig(model=str(tiny_bert), batch_size=4, backend="onnx", onnx_quantize="none",
                                      query_prompt="query: "))
    int8 = DenseRetriever(DenseConfig(model=str(tiny_bert), batch_size=4, backend="onnx"))
    ref = torch32.encode(docs)
    a, b = fp32.encode(docs), int8.encode(docs)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == ref.shape
    np.testing.assert_allclose(a, ref, atol=2e-5)  # same float32 math, fused kernels
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(b, ref, atol=1e-3)  # really int8 weights ...
    assert (b * ref).sum(1).min() > 0.99  # cosine (both unit length)  # ... and still the same vectors
    # prompts are prepended like sentence-transformers does
    np.testing.assert_allclose(fp32.encode(["comet"], "query: "), torch32.encode(["comet"], "query: "), atol=2e-5)
    assert fp32.encode([]).shape == (0, fp32.dim)
    for r in (torch32, fp32):
        r.index(load_beir(tiny_beir).corpus.values())
    q = {"q": "comet tail sun"}
    assert list(fp32.search(q, 6)["q"]) == list(torch32.search(q, 6)["q"])


def test_export_is_cached_and_embeddings_of_each_backend_apart(tiny_bert, monkeypatch):
    torch32 = DenseRetriever(DenseConfig(model=str(tiny_bert)))
    int8 = DenseRetriever(DenseConfig(model=str(tiny_bert), backend="onnx"))
    fp32 = DenseRetriever(DenseConfig(model=str(tiny_bert), backend="onnx", onnx_quantize="none"))
    folders = {r._cache_folder(["x"], ["y"]) for r in (torch32, int8, fp32)}
    assert len(folders) == 3
    monkeypatch.setattr(onnx_encoder, "_export", lambda *a: (_ for _ in ()).throw(AssertionError("re-exported")))
    again = DenseRetriever(DenseConfig(model=str(tiny_bert), backend="onnx"))
    assert again._cache_folder(["x"], ["y"]) == int8._cache_folder(["x"], ["y"])
    np.testing.assert_array_equal(again.encode(TEXTS), int8.encode(TEXTS))


def test_export_key_covers_model_files_quantization_and_onnxruntime_version(tiny_bert, tmp_path, monkeypatch):
    import shutil

    monkeypatch.delenv("RAGTUNE_CPU_VNNI", raising=False)
    key = onnx_encoder.export_key(tiny_bert, "int8")
    assert onnx_encoder.export_key(tiny_bert, "int8") == key
    key_none = onnx_encoder.export_key(tiny_bert, "none")
    assert key_none != key
    with monkeypatch.context() as m:
        m.setattr(ort, "__version__", "0.0.1")
        assert onnx_encoder.export_key(tiny_bert, "int8") != key
    import torch

    vnni = torch.cpu._is_vnni_supported()  # no VNNI: 7-bit weights (AVX2's int8 kernel saturates with 8)
    with monkeypatch.context() as m:
        m.setattr(torch.cpu, "_is_vnni_supported", lambda: not vnni)
        assert onnx_encoder.reduce_range("int8") == vnni and not onnx_encoder.reduce_range("none")
        assert onnx_encoder.export_key(tiny_bert, "int8") != key
        assert onnx_encoder.export_key(tiny_bert, "none") == key_none  # float32 does not depend on VNNI
    for forced, seven_bits in (("1", False), ("0", True)):  # the override auto's backend choice honours, too
        with monkeypatch.context() as m:
            m.setenv("RAGTUNE_CPU_VNNI", forced)
            assert onnx_encoder.reduce_range("int8") is seven_bits
            assert (onnx_encoder.export_key(tiny_bert, "int8") == key) is (seven_bits != vnni)
    copy = shutil.copytree(tiny_bert, tmp_path / "copy")
    key_copy = onnx_encoder.export_key(copy, "int8")
    weights = next(Path(copy).rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b"\0")  # changed weights
    assert onnx_encoder.export_key(copy, "int8") != key_copy


def test_failed_export_leaves_nothing_behind(tiny_bert, tmp_path, monkeypatch):
    def broken(model_path, out, quantize):
        (out / "model.onnx").write_bytes(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))  # no export from an earlier test
    monkeypatch.setattr(onnx_encoder, "_export", broken)
    with pytest.raises(KeyboardInterrupt):
        onnx_encoder.exported_model(tiny_bert, "none")
    target = onnx_encoder.cache_dir("onnx", onnx_encoder.export_key(tiny_bert, "none"))
    assert not target.exists() and not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}")]
    with pytest.raises(FileNotFoundError, match="model's folder"):
        onnx_encoder.exported_model(tmp_path / "no-such-model", "int8")


def test_auto_backend_picks_onnx_only_where_vnni_makes_int8_pay_and_there_is_no_amx(monkeypatch):
    cfg = DenseConfig(backend="auto")
    monkeypatch.delenv("RAGTUNE_CPU_AMX", raising=False)
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")
    monkeypatch.setenv("RAGTUNE_CPU_VNNI", "0")
    # AVX2 only (a first-generation Zen EPYC): ONNX int8 1.05x torch float32, so torch
    assert resolve_backend(cfg, "cpu") == ("torch", "float32")
    monkeypatch.setenv("RAGTUNE_CPU_VNNI", "1")
    assert resolve_backend(cfg, "cpu") == ("onnx", "float32")
    # native bf16 without AMX (AVX512-BF16, e.g. AMD EPYC): ONNX int8 measured faster than torch bf16 there
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "1")
    monkeypatch.setenv("RAGTUNE_CPU_AMX", "0")
    assert resolve_backend(cfg, "cpu") == ("onnx", "float32")
    monkeypatch.setenv("RAGTUNE_CPU_AMX", "1")
    assert resolve_backend(cfg, "cpu") == ("torch", "bfloat16")
    monkeypatch.setenv("RAGTUNE_CPU_AMX", "0")
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")
    monkeypatch.setattr("ragtune.retrieval.dense._has_onnxruntime", lambda: False)
    assert resolve_backend(cfg, "cpu") == ("torch", "float32")
    assert resolve_backend(DenseConfig(backend="onnx", dtype="bfloat16"), "cpu") == ("onnx", "float32")
    assert resolve_backend(DenseConfig(dtype="bfloat16"), "cpu") == ("torch", "bfloat16")
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_backend(DenseConfig(backend="onnx"), "cuda")
