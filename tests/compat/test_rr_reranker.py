"""RAG-Retrieval's reranker data, configs and inference call, as its README documents them: pointwise and grouped
rows, bert_encoder / llm_decoder, its loss names, `special_token: "\\nrelevance"` (several tokens), the MLP scalar
head, stable_proportion, shuffle_rate, val_dataset and `compute_score(pairs, normalize=True)`."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from rr_fixtures import RERANKER_LLM_YAML, rr_config, write_jsonl

from ragtune.config import ConfigError, load_config
from ragtune.retrieval.rerank import LLMReranker, load_reranker
from ragtune.train.retriever.reranker import shuffle_documents, train_reranker
from ragtune.train.retriever.reranker_config import RerankerTrainConfig
from tiny_bert import toy_topic_rows


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("rr-ce"), max_positions=64)


def _grouped(path, n=8):
    return write_jsonl(path, [{"query": r["query"], "hits": [{"content": r["pos"][0], "label": 2},
                                                             {"content": r["neg"][0], "label": 0},
                                                             {"content": r["neg"][0] + " salt", "label": 1}]}
                              for r in toy_topic_rows(n)])


def test_their_llm_reranker_config_loads_with_its_meaning(tmp_path, tiny_lm, caplog):
    path = rr_config(RERANKER_LLM_YAML, tmp_path, model_name_or_path=str(tiny_lm),
                     train_dataset=str(tmp_path / "train.jsonl"), val_dataset=str(tmp_path / "val.jsonl"),
                     output_dir=str(tmp_path / "out"))
    with caplog.at_level(logging.WARNING, logger="ragtune.notice"):
        cfg = load_config(RerankerTrainConfig, path)
    assert cfg.model_type == "llm" and cfg.loss == "listwise" and cfg.format == "group" and cfg.max_length == 128
    assert (cfg.llm.query_format, cfg.llm.document_format, cfg.llm.seq, cfg.llm.special_token) == \
        ("query: {}", "document: {}", "\n", "\nrelevance")
    assert cfg.train_group_size == 10 and cfg.val_data == tmp_path / "val.jsonl" and cfg.num_train_epochs == 2
    assert cfg.stable_proportion == 0.3 and cfg.warmup_ratio == 0.1 and cfg.bf16 and cfg.save_on_epoch_end
    assert cfg.save_total_limit == 5 and cfg.logging_steps == 10 and cfg.report_to == ["tensorboard"]
    assert [r.message.split('"')[1] for r in caplog.records] == ["val_dataset_type"]
    for their, ours in (("pointwise_bce", "bce"), ("pointwise_mse", "mse"), ("pairwise_ranknet", "ranknet"),
                        ("listwise_ce", "listwise")):
        assert load_config(RerankerTrainConfig, path, [f"loss_type={their}", "train_dataset_type=pointwise"
                                                       if "point" in their else "shuffle_rate=0"]).loss == ours
    assert load_config(RerankerTrainConfig, path, ["model_type=bert_encoder"]).model_type == "cross_encoder"
    with pytest.raises(ConfigError, match='key "num_labels": got 2; allowed values: 1'):
        load_config(RerankerTrainConfig, path, ["num_labels=2"])


def test_llm_decoder_multi_token_special_token_and_mlp_head(tmp_path, tiny_lm, trainer_runs):
    from transformers import AutoConfig, AutoTokenizer

    data = _grouped(tmp_path / "grouped.jsonl")
    cfg = load_config(RerankerTrainConfig, None, [
        f"model_name_or_path={tiny_lm}", "model_type=llm_decoder", f"train_dataset={data}", "train_group_size=3",
        "loss_type=listwise_ce", 'special_token="\\nrelevance"', "llm.score_head=mlp", "max_len=48", "batch_size=4",
        "lr=1e-3", "max_steps=2", f"output_dir={tmp_path / 'out'}", "plot_loss=false"])
    assert cfg.llm.special_token == "\nrelevance"
    summary = train_reranker(cfg)
    assert summary["loss"] == "listwise" and summary["global_step"] == 2
    base_tok = AutoTokenizer.from_pretrained(tiny_lm)
    want = base_tok("\nrelevance", add_special_tokens=False)["input_ids"]
    reranker = load_reranker(tmp_path / "out", "cpu")
    assert isinstance(reranker, LLMReranker) and len(want) > 1
    assert len(reranker.tokenizer) == len(base_tok)  # nothing added to the vocabulary
    assert reranker.model.get_input_embeddings().weight.shape[0] == AutoConfig.from_pretrained(tiny_lm).vocab_size
    feats = reranker.encode_pairs([("star", "planet orbit"), ("bread " * 40, "oven " * 40)])
    for row, n in zip(feats["input_ids"], feats["attention_mask"].sum(1), strict=True):
        assert row[n - len(want):n].tolist() == want  # the tokens it is, last
    assert isinstance(reranker.model.score, torch.nn.Sequential) and len(reranker.model.score) == 3
    [(_, trained, _)] = trainer_runs
    pairs = [("star planet", "a comet orbits the sun"), ("bread", "flour and butter")]
    in_memory = LLMReranker(trained, reranker.tokenizer, reranker.fmt).compute_score(pairs)
    assert reranker.compute_score(pairs) == pytest.approx(in_memory, abs=1e-5)  # saved and reloaded, MLP included
    one = reranker.compute_score(pairs[0], normalize=True)
    assert isinstance(one, float) and one == pytest.approx(1 / (1 + math.exp(-in_memory[0])), abs=1e-5)


def test_pointwise_graded_labels_val_dataset_and_normalized_scores(tmp_path, encoder, trainer_runs):
    rows = toy_topic_rows(12)
    points = [{"query": r["query"], "content": r["pos"][0], "label": 2} for r in rows] + \
        [{"query": r["query"], "content": r["neg"][0], "label": 0} for r in rows] + \
        [{"query": r["query"], "content": r["neg"][0] + " tax", "label": 1} for r in rows]
    train = write_jsonl(tmp_path / "pointwise_reranker_train_data.jsonl", points[::2])
    val = write_jsonl(tmp_path / "pointwise_reranker_eval_data.jsonl", points[1::2])
    cfg = load_config(RerankerTrainConfig, None, [
        f"model_name_or_path={encoder}", "model_type=bert_encoder", f"train_dataset={train}",
        "train_dataset_type=pointwise", f"val_dataset={val}", "max_label=2", "min_label=0", "loss_type=pointwise_bce",
        "max_len=48", "batch_size=6", "lr=1e-3", "epoch=1", f"output_dir={tmp_path / 'out'}", "plot_loss=false"])
    summary = train_reranker(cfg)
    [(_, _, trainer)] = trainer_runs
    labels = sorted({float(x) for x in trainer.train_dataset["label"]})
    assert labels == [0.0, 0.5, 1.0]  # graded 0/1/2 scaled by min_label/max_label
    assert any("eval_loss" in h for h in trainer.state.log_history) and summary["best_metric"] is not None
    reranker = load_reranker(tmp_path / "out", "cpu")
    raw = reranker.compute_score([("star planet", "orbit telescope")])
    norm = reranker.compute_score(("star planet", "orbit telescope"), normalize=True)
    assert isinstance(norm, float) and norm == pytest.approx(1 / (1 + math.exp(-raw[0])))


def test_stable_proportion_holds_the_peak_learning_rate(tmp_path, encoder, trainer_runs):
    cfg = load_config(RerankerTrainConfig, None, [
        f"model_name_or_path={encoder}", f"train_dataset={_grouped(tmp_path / 'g.jsonl', 20)}",
        "train_group_size=3", "loss_type=pairwise_ranknet", "max_len=48", "batch_size=2", "lr=1e-3", "max_steps=10",
        "warmup_proportion=0.2", "stable_proportion=0.5", "log_interval=1", f"output_dir={tmp_path / 'out'}",
        "plot_loss=false"])
    train_reranker(cfg)
    [(_, _, trainer)] = trainer_runs
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    # the rate each of the 10 steps used: 2 warming up, 5 held at the peak, 3 decaying (cosine, from the peak)
    assert lrs[:2] == pytest.approx([0.0, 5e-4]) and lrs[2:7] == pytest.approx([1e-3] * 5)
    assert lrs[7] == pytest.approx(1e-3) and 1e-3 > lrs[8] > lrs[9] > 0


def test_shuffle_rate_reorders_three_pieces_of_long_documents():
    long_doc = " ".join(f"word{i}" for i in range(40))
    rows = [{"query": "q", "content": long_doc}, {"query": "q", "content": "short text"},
            {"query": "q", "docs": [long_doc, long_doc]}]
    kept = [dict(r) for r in rows]
    assert shuffle_documents(kept, 0.0, seed=0) == 0 and kept == rows
    assert shuffle_documents(rows, 1.0, seed=0) == 4
    size = len(long_doc) // 3 + 1
    pieces = sorted(long_doc[i:i + size] for i in range(0, len(long_doc), size))
    assert rows[1]["content"] == "short text"  # 100 characters or fewer stay whole
    for text in (rows[0]["content"], *rows[2]["docs"]):  # the three pieces, joined by spaces in some order
        assert len(text) == len(long_doc) + 2 and all(p in text for p in pieces)
