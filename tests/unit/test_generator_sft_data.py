"""Chat templates, response-only labels, cutoff handling, dataset lookup and config checks for generator SFT."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from ragtune.config import ConfigError, load_config
from ragtune.data.errors import DataFormatError
from ragtune.data.records import Alpaca, ShareGPT
from ragtune.generate.prompts import TEMPLATES, record_messages, truncate_tokens, use_template
from ragtune.train.generator.sft_config import GeneratorTrainConfig
from ragtune.train.generator.sft_data import (
    IGNORE,
    EncodeStats,
    encode,
    encode_all,
    encode_fitted,
    load_sft_messages,
    split_dev,
)


@pytest.fixture
def tok(tiny_lm):
    return AutoTokenizer.from_pretrained(tiny_lm)


def _answer_text(tok, ex) -> str:
    return tok.decode([t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE])


# gemma's turn tokens are not in the tiny tokenizer; test_generator_models tests that template with them added
@pytest.mark.parametrize("template", ["auto", *(t for t in TEMPLATES if t != "gemma")])
def test_labels_cover_only_the_answer(tok, template):
    use_template(tok, template)
    msgs = record_messages(Alpaca(instruction="The rapid protein binds the receptor.", output="protein receptor",
                                  system="Write a query."))
    ex = encode(tok, msgs)
    assert len(ex.input_ids) == len(ex.labels)
    first_answer = next(i for i, lab in enumerate(ex.labels) if lab != IGNORE)
    assert first_answer > 5 and all(lab == IGNORE for lab in ex.labels[:first_answer])  # prompt tokens: -100
    answer = _answer_text(tok, ex)
    assert answer.strip().startswith("protein receptor")
    assert "binds" not in answer and "Write a query" not in answer
    assert tok.eos_token in answer  # the model learns to stop


def test_sharegpt_multi_turn_labels_every_answer(tok):
    rec = ShareGPT.model_validate({"conversations": [
        {"from": "human", "value": "first document"}, {"from": "gpt", "value": "virus memory"},
        {"from": "human", "value": "second document"}, {"from": "gpt", "value": "heart signal"}]})
    ex = encode(tok, record_messages(rec))
    answer = _answer_text(tok, ex)
    assert "virus memory" in answer and "heart signal" in answer and "document" not in answer


def test_sharegpt_must_end_with_an_answer():
    rec = ShareGPT.model_validate({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]})
    with pytest.raises(ValueError, match="alternate"):
        record_messages(rec, "x.jsonl:3")


def test_cutoff_shortens_the_prompt_not_the_answer(tok):
    long_doc = " ".join(["The small virus damages the tissue."] * 60)
    msgs = record_messages(Alpaca(instruction=long_doc, output="virus tissue"))
    stats = EncodeStats()
    ex = encode_fitted(tok, msgs, 64, stats, "x:1")
    assert len(ex.input_ids) <= 64 and stats.shortened == 1 and stats.answer_cut == 0
    assert _answer_text(tok, ex).strip().startswith("virus tissue")


def test_max_prompt_tokens_cuts_the_document_as_generation_does(tok):
    doc = " ".join(f"The protein {i} binds receptor {i}." for i in range(40))
    msgs = record_messages(Alpaca(instruction=doc, output="protein receptor", system="Write a query."))
    (cut,), stats = encode_all(tok, [("x:1", msgs)], 512, max_prompt_tokens=20)
    (full,), _ = encode_all(tok, [("x:1", msgs)], 512)
    text = tok.decode(cut.input_ids)
    assert truncate_tokens(tok, doc, 20) in text and doc not in text  # the user turn, cut as `generate` cuts it
    assert "Write a query." in text  # the system turn is left alone
    assert _answer_text(tok, cut) == _answer_text(tok, full) and len(cut.input_ids) < len(full.input_ids) - 100
    assert stats.shortened == 0  # cut before cutoff_len had to shorten anything


def test_named_template_needs_its_tokens(tok):
    tok.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        use_template(tok, "auto")
    with pytest.raises(ConfigError, match="allowed values"):
        use_template(tok, "vicuna-ish")


def test_dataset_by_name_and_by_path(toy_doc2query, tmp_path):
    sft = toy_doc2query / "sft"
    by_name = load_sft_messages(["toy"], sft, max_samples=5)
    by_path = load_sft_messages([str(sft / "toy.jsonl")], tmp_path)
    assert len(by_name) == 5 and len(by_path) == 40
    assert by_name[0][1] == by_path[0][1]
    with pytest.raises(ConfigError, match='did you mean "toy"'):
        load_sft_messages(["tooy"], sft)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "doc", "output": "q"}) + "\n" + json.dumps({"instruction": "doc"}) + "\n")
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2.*output"):
        load_sft_messages([str(bad)], tmp_path, formatting="alpaca")


def test_dev_split_is_seeded_and_disjoint():
    train, dev = split_dev(40, 0.2, seed=1)
    assert len(dev) == 8 and not set(train) & set(dev) and split_dev(40, 0.2, seed=1) == (train, dev)
    assert len(split_dev(40, 5, seed=1)[1]) == 5
    with pytest.raises(ConfigError, match="val_size"):
        split_dev(3, 0.1, seed=1)


@pytest.mark.parametrize(("override", "message"), [
    ("stage=dpo", "allowed values: sft"),
    ("finetuning_type=qlora", "allowed values: lora, freeze, full"),
    ("lr_scheduler_type=cosine_restarts", "allowed values: linear, cosine, cosine_with_restarts.*did you mean"),
    ("bf16=true", "exclusive"),
    ("eval_steps=5", "val_size"),
    ("report_to=mlflow", "report_to.*'none', 'tensorboard' or 'wandb'.*mlflow"),
])
def test_config_rejects_bad_values(override, message):
    extra = ["fp16=true"] if override == "bf16=true" else []
    with pytest.raises(ConfigError, match=message):
        load_config(GeneratorTrainConfig, None, ["dataset=toy", "output_dir=out", override, *extra])


def test_config_parses_comma_lists():
    cfg = load_config(GeneratorTrainConfig, None, ["dataset=a,b", "output_dir=o", "lora_target=q_proj,v_proj"])
    assert cfg.dataset == ["a", "b"] and cfg.lora_target == ["q_proj", "v_proj"] and cfg.lora_scale_alpha == 16


def test_fp16_needs_a_gpu():
    from ragtune.train.precision import check_precision

    cfg = load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o", "fp16=true"])
    with pytest.raises(ConfigError, match="fp16 mixed precision needs a CUDA GPU"):
        check_precision(cfg, "cpu")


@pytest.mark.parametrize("native, warned", [("0", True), ("1", False)])
def test_bf16_on_a_cpu_without_native_bf16_is_warned_about(monkeypatch, caplog, native, warned):
    import logging

    from ragtune.train.precision import check_precision

    monkeypatch.setenv("RAGTUNE_CPU_BF16", native)
    cfg = load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o", "bf16=true"])
    with caplog.at_level(logging.WARNING, logger="ragtune.notice"):
        check_precision(cfg, "cpu")
        check_precision(load_config(GeneratorTrainConfig, None, ["dataset=a", "output_dir=o"]), "cpu")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == int(warned) and all("set bf16=false" in m for m in said)
