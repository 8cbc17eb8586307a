"""RAG-Retrieval's embedding data and config, as its README documents them: the four row formats (in-batch, hard
negatives, `{query, pos, scores}` score distillation, `{query}` + teacher-embedding memmap), a teacher whose width
differs from the student's, MRL dimensions above the hidden size, and its config key names."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from rr_fixtures import EMBEDDING_YAML, rr_config, write_jsonl

from ragtune.config import ConfigError, load_config
from ragtune.data.errors import DataFormatError
from ragtune.train.retriever.embedding import EmbeddingTrainConfig, build_loss, train_embedding
from ragtune.train.retriever.embedding_heads import widen
from ragtune.train.retriever.embedding_rows import embedding_rows
from tiny_bert import toy_topic_rows


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("rr-encoder"), max_positions=64)


def _cfg(tmp_path, encoder, data, *extra: str) -> EmbeddingTrainConfig:
    return load_config(EmbeddingTrainConfig, None, [
        f"output_dir={tmp_path / 'out'}", f"train_dataset={data}", f"model_name_or_path={encoder}", "batch_size=4",
        "lr=1e-3", "log_interval=1", "max_steps=1", "max_seq_length=32", "threads=2", "plot_loss=false", *extra])


def _scored(n: int = 8):
    """{query, pos, scores} rows (every passage scored, best not first) and the neg-bearing rows they mean."""
    rows = toy_topic_rows(n)
    without, with_neg = [], []
    for r in rows:
        passages = [r["neg"][0], r["pos"][0], r["neg"][0] + " moon"]
        scores = [0.5, 3.0, -1.0]
        without.append({"query": r["query"], "pos": passages, "scores": scores})
        with_neg.append({"query": r["query"], "pos": [passages[1]], "neg": [passages[0], passages[2]],
                         "scores": [3.0, 0.5, -1.0]})
    return without, with_neg


def test_score_rows_without_neg_give_the_loss_of_neg_rows_with_the_same_scores(tmp_path, encoder):
    from sentence_transformers import SentenceTransformer

    without, with_neg = _scored()
    a = write_jsonl(tmp_path / "lmsft.jsonl", without)
    b = write_jsonl(tmp_path / "neg.jsonl", with_neg)
    cfg = _cfg(tmp_path, encoder, a, "neg_nums=2")
    from ragtune.data.records import Embedding

    rows_a = embedding_rows([Embedding(**r) for r in without], "distill", cfg)[0]
    rows_b = embedding_rows([Embedding(**r) for r in with_neg], "distill", cfg)[0]
    assert rows_a == rows_b and rows_a[0]["pos"] == with_neg[0]["pos"][0]
    # the loss is the documented KL between softmax(teacher scores) and softmax(student dot scores) per row
    model = SentenceTransformer(str(encoder), device="cpu")
    cols = [model.encode([r[c] for r in rows_a], convert_to_tensor=True) for c in ("query", "pos", "neg_1", "neg_2")]
    labels = torch.tensor([r["label"] for r in rows_a])
    got = build_loss(model, cfg, "distill").compute_loss_from_embeddings(cols, labels)
    student = torch.stack([(cols[0] * c).sum(-1) for c in cols[1:]], 1).log_softmax(-1)
    teacher = labels.softmax(-1)
    expected = (teacher * (teacher.log() - student)).sum(-1).mean()
    assert torch.allclose(got, expected, atol=1e-5)
    # and end to end: the same first training loss from either file
    first = [train_embedding(_cfg(tmp_path / n, encoder, f, "neg_nums=2"))["first_logged_loss"]
             for n, f in (("a", a), ("b", b))]
    assert first[0] == pytest.approx(first[1], abs=1e-6)


def test_teacher_memmap_of_another_width_trains_a_projection(tmp_path, encoder, trainer_runs):
    from sentence_transformers import SentenceTransformer

    rows = toy_topic_rows(8)
    data = write_jsonl(tmp_path / "t2rank.text.jsonl", [{"query": r["query"]} for r in rows])
    teacher = np.random.default_rng(0).normal(size=(8, 48)).astype(np.float32)
    mm = np.memmap(tmp_path / "t2rank.embedding.mmap", dtype="float32", mode="w+", shape=teacher.shape)
    mm[:] = teacher
    mm.flush()
    # their distill config names the width (teatch_emebedding_dim); a .json sidecar works too
    cfg = _cfg(tmp_path, encoder, data, f"train_dataset_vec={tmp_path / 't2rank.embedding.mmap'}",
               "teatch_emebedding_dim=48", "max_steps=3", "lr=1e-2")
    summary = train_embedding(cfg)
    assert summary["format"] == "teacher" and summary["teacher_dim"] == 48 and summary["embedding_dim"] == 48
    [(before, after, _)] = trainer_runs
    proj_before, proj_after = before[-1].linear.weight, after[-1].linear.weight
    assert proj_before.shape == (48, 32) and not torch.equal(proj_before, proj_after)  # the projection trains
    assert SentenceTransformer(str(tmp_path / "out"), device="cpu").encode(["star"]).shape == (1, 48)
    (tmp_path / "t2rank.embedding.mmap.json").write_text(json.dumps({"shape": [8, 48], "dtype": "float32"}))
    from ragtune.data.formats import load_teacher

    assert np.array_equal(load_teacher(data, tmp_path / "t2rank.embedding.mmap")[1], teacher)
    (tmp_path / "x.mmap").write_bytes(teacher.tobytes())
    with pytest.raises(DataFormatError, match="x.mmap: .*not a whole number of float32 rows of 40"):
        load_teacher(data, tmp_path / "x.mmap", dim=40)
    with pytest.raises(DataFormatError, match="x.mmap: .*has no shape: write x.mmap.json"):
        load_teacher(data, tmp_path / "x.mmap")


def test_teacher_vectors_never_unpickle(tmp_path):
    from ragtune.data.formats import load_teacher

    data = write_jsonl(tmp_path / "t.jsonl", [{"query": "a"}, {"query": "b"}])
    np.save(tmp_path / "t.npy", np.array([{"x": 1}, {"y": 2}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"t.npy: not a readable vector file \(.*Python objects"):
        load_teacher(data)


def test_mrl_dims_above_the_hidden_size_add_the_linear_layer(tmp_path, encoder, trainer_runs):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(encoder), device="cpu")
    wide = widen(model, 64)
    texts = ["star planet orbit", "bread oven flour"]
    assert np.allclose(wide.encode(texts)[:, :32], model.encode(texts), atol=1e-5)  # starts from the encoder's space
    rows = toy_topic_rows(8)
    data = write_jsonl(tmp_path / "pair.jsonl", [{"query": r["query"], "pos": r["pos"]} for r in rows])
    cfg = _cfg(tmp_path, encoder, data, "use_mrl=true", "mrl_dims=64,32,16", "max_steps=2")
    summary = train_embedding(cfg)
    assert summary["embedding_dim"] == 64 and summary["loss"] == "mnrl+matryoshka"
    [(_, trained, _)] = trainer_runs
    assert list(build_loss(trained, cfg, "pair").matryoshka_dims) == [64, 32, 16]  # none dropped
    assert SentenceTransformer(str(tmp_path / "out"), device="cpu").encode(texts).shape == (2, 64)


def test_their_embedding_config_loads_with_its_meaning(tmp_path, encoder, caplog):
    path = rr_config(EMBEDDING_YAML, tmp_path, model_name_or_path=str(encoder),
                     train_dataset=str(tmp_path / "t2rank_100.jsonl"), output_dir=str(tmp_path / "out"))
    with caplog.at_level(logging.WARNING, logger="ragtune.notice"):
        cfg = load_config(EmbeddingTrainConfig, path)
    assert cfg.train_data == [tmp_path / "t2rank_100.jsonl"] and cfg.neg_nums == 15 and cfg.max_seq_length == 512
    assert cfg.save_on_epoch_end and cfg.save_total_limit == 5 and cfg.num_train_epochs == 2
    assert cfg.learning_rate == 2e-5 and cfg.per_device_train_batch_size == 32 and cfg.warmup_ratio == 0.1
    assert cfg.gradient_accumulation_steps == 3 and cfg.fp16 and cfg.logging_steps == 10 and cfg.report_to == ["wandb"]
    assert cfg.mrl_dims == [128, 256, 512, 768, 1024, 1280, 1536, 1792] and not cfg.use_mrl
    assert sorted(r.message.split('"')[1] for r in caplog.records) == ["query_max_len", "shuffle", "train_type"]
    from sentence_transformers import SentenceTransformer

    loss = build_loss(SentenceTransformer(str(encoder), device="cpu"), cfg, "hard_neg")
    assert loss.scale == pytest.approx(50.0)  # their temperature 0.02 is the InfoNCE temperature
    with pytest.raises(ConfigError, match='key "mixed_precision": got .fp8.; allowed values: fp16, bf16, no'):
        load_config(EmbeddingTrainConfig, path, ["mixed_precision=fp8"])


def test_save_on_epoch_end_and_val_dataset(tmp_path, encoder):
    rows = toy_topic_rows(16)
    train = write_jsonl(tmp_path / "train.jsonl", [{k: r[k] for k in ("query", "pos", "neg")} for r in rows[:12]])
    val = write_jsonl(tmp_path / "val.jsonl", [{k: r[k] for k in ("query", "pos", "neg")} for r in rows[12:]])
    cfg = load_config(EmbeddingTrainConfig, None, [
        f"output_dir={tmp_path / 'out'}", f"train_dataset={train}", f"val_dataset={val}",
        f"model_name_or_path={encoder}", "batch_size=4", "lr=1e-3", "epochs=2", "save_on_epoch_end=1",
        "num_max_checkpoints=5", "neg_nums=1", "max_seq_length=32", "plot_loss=false"])
    summary = train_embedding(cfg)
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "out").glob("checkpoint-*"))
    assert steps == [3, 6]  # 12 rows / batch 4 = 3 steps an epoch, one checkpoint per epoch
    state = json.loads((tmp_path / "out" / "checkpoint-6" / "trainer_state.json").read_text())
    evals = [h for h in state["log_history"] if "eval_loss" in h]
    assert [h["step"] for h in evals] == [3, 6]  # the validation file, evaluated per epoch
    assert summary["best_metric"] == min(h["eval_loss"] for h in evals)  # and it picks the kept checkpoint
