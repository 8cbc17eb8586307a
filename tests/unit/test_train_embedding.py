"""`ragtune train embedding`: the four record formats, losses, dev carving, Matryoshka, save/reload."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.config import ConfigError, load_config
from ragtune.data.errors import DataFormatError
from ragtune.train.retriever.dense_eval import dense_runs, dev_run, truncated_runs
from ragtune.train.retriever.dev import DevConfig, build_devset, carve_dev
from ragtune.train.retriever.embedding import EmbeddingTrainConfig, train_embedding
from ragtune.train.retriever.embedding_rows import embedding_rows


@pytest.fixture(scope="session")
def encoder(tmp_path_factory):
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-encoder"), max_positions=64)


def _cfg(tmp_path, encoder, data, *extra: str) -> EmbeddingTrainConfig:
    return load_config(EmbeddingTrainConfig, None, [
        f"output_dir={tmp_path / 'out'}", f"train_data={data}", f"model_name_or_path={encoder}",
        "per_device_train_batch_size=8", "learning_rate=1e-3", "logging_steps=1", "max_steps=3",
        "max_seq_length=32", "threads=2", "plot_loss=false", *extra])


def _write_format(tmp_path, fmt: str):
    from tiny_bert import toy_topic_rows, write_jsonl

    rows = toy_topic_rows(16)
    if fmt == "pair":
        return write_jsonl(tmp_path / "pair.jsonl", [{"query": r["query"], "pos": r["pos"]} for r in rows])
    if fmt == "hard_neg":
        return write_jsonl(tmp_path / "neg.jsonl", [{k: r[k] for k in ("query", "pos", "neg")} for r in rows])
    if fmt == "distill":
        return write_jsonl(tmp_path / "kd.jsonl", [{"query": r["query"], "pos": r["pos"], "neg": r["neg"],
                                                    "scores": [4.0, 1.0]} for r in rows])
    path = write_jsonl(tmp_path / "teacher.jsonl", [{"query": r["query"]} for r in rows])
    np.save(tmp_path / "teacher.npy", np.random.default_rng(0).normal(size=(len(rows), 32)).astype(np.float32))
    return path


@pytest.mark.parametrize("fmt,loss", [("pair", "mnrl"), ("hard_neg", "mnrl"), ("distill", "kl"),
                                      ("teacher", "mse")])
def test_each_format_loads_trains_and_reloads(tmp_path, encoder, fmt, loss, trainer_runs):
    from sentence_transformers import SentenceTransformer

    cfg = _cfg(tmp_path, encoder, _write_format(tmp_path, fmt), "neg_nums=2")
    summary = train_embedding(cfg)
    assert summary["format"] == fmt and summary["loss"] == loss
    assert summary["global_step"] == 3 and np.isfinite(summary["train_loss"])
    [(untrained, trained_model, _)] = trainer_runs
    texts = ["star planet orbit", "bread oven flour"]
    trained = trained_model.encode(texts)
    reloaded = SentenceTransformer(str(cfg.output_dir), device="cpu").encode(texts)
    np.testing.assert_allclose(reloaded, trained, atol=1e-5)  # the folder holds the model that was trained
    assert np.abs(trained - untrained.encode(texts)).max() > 1e-4  # and training moved it
    assert (cfg.output_dir / "train_summary.json").is_file() and (cfg.output_dir / "config.yaml").is_file()


def test_files_of_two_formats_train_as_two_datasets_each_with_its_loss(tmp_path, encoder, trainer_runs):
    labeled, scored = _write_format(tmp_path, "hard_neg"), _write_format(tmp_path, "distill")
    cfg = _cfg(tmp_path, encoder, f"{labeled},{scored}", "neg_nums=1", "loss=margin_mse", "teacher_scale=0.1")
    summary = train_embedding(cfg)
    assert summary["format"] == "hard_neg+distill" and summary["loss"] == "mnrl+margin_mse"
    assert summary["hard_neg_examples"] == summary["distill_examples"] == 16 and summary["examples"] == 32
    assert summary["global_step"] == 3 and np.isfinite(summary["train_loss"])
    [(untrained, trained_model, _)] = trainer_runs
    texts = ["star planet orbit", "bread oven flour"]
    assert np.abs(trained_model.encode(texts) - untrained.encode(texts)).max() > 1e-4
    from ragtune.train.retriever.embedding_rows import load_training_rows

    pairs = _write_format(tmp_path, "pair")
    one = load_training_rows(_cfg(tmp_path, encoder, f"{pairs},{labeled}", "neg_nums=1"), None)
    assert one.fmt == "hard_neg" and one.parts is None  # pair and hard_neg files share MNRL: one dataset, as before
    with pytest.raises(ConfigError, match='loss "mse" does not fit the hard_neg and distill records'):
        train_embedding(_cfg(tmp_path / "b", encoder, f"{labeled},{scored}", "loss=mse"))
    with pytest.raises(ConfigError, match="example_order=file and val_data do not support"):
        train_embedding(_cfg(tmp_path / "c", encoder, f"{labeled},{scored}", "example_order=file"))


def test_bad_row_names_file_line_and_field(tmp_path, encoder):
    from tiny_bert import write_jsonl

    data = write_jsonl(tmp_path / "bad.jsonl", [{"query": "a star", "pos": ["star planet"]},
                                                {"query": "bread", "pos": []}])
    with pytest.raises(DataFormatError) as e:
        train_embedding(_cfg(tmp_path, encoder, data))
    assert e.value.line == 2 and e.value.field == "pos" and "bad.jsonl:2" in str(e.value)


def test_mnrl_loss_decreases_and_queries_move_to_their_topic(tmp_path, encoder):
    from sentence_transformers import SentenceTransformer

    from tiny_bert import toy_topic_rows, write_jsonl

    rows = toy_topic_rows(40)
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"query": r["query"], "pos": r["pos"]} for r in rows])

    def margin(model) -> float:
        q = model.encode([r["query"] for r in rows], normalize_embeddings=True)
        p = model.encode([r["pos"][0] for r in rows], normalize_embeddings=True)
        n = model.encode([r["neg"][0] for r in rows], normalize_embeddings=True)
        return float(((q * p).sum(1) - (q * n).sum(1)).mean())

    before = margin(SentenceTransformer(str(encoder), device="cpu"))
    cfg = _cfg(tmp_path, encoder, data, "max_steps=-1", "num_train_epochs=5", "warmup_ratio=0")
    s = train_embedding(cfg)
    assert s["last_logged_loss"] < 0.7 * s["first_logged_loss"]
    assert margin(SentenceTransformer(str(cfg.output_dir), device="cpu")) > before + 0.05


def test_negatives_are_resampled_to_neg_nums(tmp_path, encoder):
    from ragtune.data.records import Embedding

    cfg = _cfg(tmp_path, encoder, tmp_path / "x.jsonl", "neg_nums=3").model_copy(update={"query_prompt": "query: "})
    recs = [Embedding(query="a", pos=["p1", "p2"], neg=["n1"]), Embedding(query="b", pos=["p3"])]
    rows, stats = embedding_rows(recs, "hard_neg", cfg)
    assert len(rows) == 3 and stats["rows_resampled_negatives"] == 2
    assert all(list(r) == ["query", "pos", "neg_1", "neg_2", "neg_3"] for r in rows)
    assert rows[0]["query"] == "query: a" and {rows[0]["neg_2"], rows[0]["neg_3"]} == {"n1"}
    assert all(r[f"neg_{i}"] != "p3" for r in rows[2:] for i in (1, 2, 3))  # drawn from other rows, not its pos


def test_teacher_scale_brings_the_teachers_scores_to_the_students_scale(tmp_path, encoder):
    from ragtune.data.records import Embedding

    recs = [Embedding(query="a", pos=["p1"], neg=["n1", "n2"], scores=[8.0, 2.0, -4.0])]
    plain, _ = embedding_rows(recs, "distill", _cfg(tmp_path, encoder, tmp_path / "x.jsonl", "neg_nums=2"))
    scaled, _ = embedding_rows(recs, "distill", _cfg(tmp_path, encoder, tmp_path / "x.jsonl", "neg_nums=2",
                                                       "teacher_scale=0.25"))
    assert plain[0]["label"][0] == 8.0 and sorted(plain[0]["label"][1:]) == [-4.0, 2.0]
    assert scaled[0]["neg_1"] == plain[0]["neg_1"]
    assert scaled[0]["label"] == [0.25 * x for x in plain[0]["label"]]


def test_dev_slice_is_carved_from_train_and_removed_from_training(tmp_path, encoder, tiny_beir):
    from ragtune.data.beir import load_beir
    from ragtune.data.records import Embedding

    with pytest.raises(ValueError, match="test split"):
        DevConfig(data=tiny_beir, split="test")
    ds = load_beir(tiny_beir, ["train", "test"])
    dev = build_devset(DevConfig(data=tiny_beir, split="train", fraction=0.34, candidates=3))
    assert set(dev.queries) <= set(ds.qrels["train"]) and not set(dev.queries) & set(ds.qrels["test"])
    cfg = _cfg(tmp_path, encoder, tmp_path / "x.jsonl")
    recs = [Embedding(query=ds.queries[q], pos=["x"], neg=["y"]) for q in ds.qrels["train"]]
    rows, stats = embedding_rows(recs, "pair", cfg, dev)
    assert stats["dropped_dev_queries"] == len(dev.queries) == 1
    assert not {r["query"] for r in rows} & set(dev.queries.values())
    a, b = carve_dev([f"q{i}" for i in range(50)], 0.1, seed=3), carve_dev([f"q{i}" for i in range(49, -1, -1)], 0.1, 3)
    assert a == b  # seeded, independent of file order


def test_dev_evaluation_selects_the_best_checkpoint(tmp_path, encoder, tiny_beir):
    from tiny_bert import toy_topic_rows, write_jsonl

    data = write_jsonl(tmp_path / "pairs.jsonl", [{"query": r["query"], "pos": r["pos"]} for r in toy_topic_rows(16)])
    cfg = _cfg(tmp_path, encoder, data, "max_steps=4", "eval_steps=2", f"dev.data={tiny_beir}", "dev.fraction=0.34",
               "use_mrl=true", "mrl_dims=[32,16,8]", "mrl_select_dim=8")
    s = train_embedding(cfg)
    assert [h["steps"] for h in s["dev_history"]] == [2, 4] and s["best_checkpoint"]
    assert set(s["dev_final"]) == {"32", "16", "8"} and s["loss"] == "mnrl+matryoshka"
    # the kept model is the checkpoint best at the 8-dim prefix, and dev scored that prefix
    assert s["dev_final"]["8"]["ndcg@10"] == pytest.approx(max(h["ndcg@10"] for h in s["dev_history"]))
    from sentence_transformers import SentenceTransformer

    model, dev = SentenceTransformer(str(tmp_path / "out"), device="cpu"), build_devset(cfg.dev)
    both = dense_runs(model, dev.queries, dev.corpus, dims=[8])
    assert dev_run(model, dev, cfg) == both[8] != both[32]


def test_keep_checkpoint_last_keeps_the_final_weights_and_still_reports_the_dev_curve(tmp_path, encoder, tiny_beir):
    import torch
    from safetensors.torch import load_file

    from tiny_bert import toy_topic_rows, write_jsonl

    data = write_jsonl(tmp_path / "pairs.jsonl", [{"query": r["query"], "pos": r["pos"]} for r in toy_topic_rows(16)])
    cfg = _cfg(tmp_path, encoder, data, "max_steps=4", "eval_steps=2", f"dev.data={tiny_beir}", "dev.fraction=0.34",
               "keep_checkpoint=last", "learning_rate=1e-3")
    s = train_embedding(cfg)
    assert [h["steps"] for h in s["dev_history"]] == [2, 4] and s["kept_checkpoint"] == "last"
    out = tmp_path / "out"
    kept, last, first = (load_file(f / "model.safetensors") for f in (out, out / "checkpoint-4", out / "checkpoint-2"))
    assert all(torch.equal(kept[k], last[k]) for k in last)
    assert any(not torch.equal(kept[k], first[k]) for k in first)  # the two checkpoints differ: the test can fail


def test_wise_ft_keeps_the_interpolation_dev_scores_best(tmp_path, encoder, tiny_beir):
    from sentence_transformers import SentenceTransformer

    from ragtune.evaluate.metrics import evaluate
    from tiny_bert import toy_topic_rows, write_jsonl

    data = write_jsonl(tmp_path / "pairs.jsonl", [{"query": r["query"], "pos": r["pos"]} for r in toy_topic_rows(16)])
    cfg = _cfg(tmp_path, encoder, data, "max_steps=4", "eval_steps=2", f"dev.data={tiny_beir}", "dev.fraction=0.34",
               "wise_ft=1,0,0.5", "learning_rate=5e-3")
    s = train_embedding(cfg)
    curve, dev = s["wise_ft_dev"], build_devset(cfg.dev)
    assert list(curve) == ["0", "0.5", "1"] and curve[f"{s['wise_ft']:g}"] == max(curve.values())

    def score(model):
        return evaluate(dev.qrels, dev_run(model, dev, cfg), ["ndcg@10"]).metrics["ndcg@10"]

    # alpha 0 is the untrained encoder, and the saved model is the chosen interpolation
    assert curve["0"] == pytest.approx(score(SentenceTransformer(str(encoder), device="cpu")))
    assert curve[f"{s['wise_ft']:g}"] == pytest.approx(score(SentenceTransformer(str(tmp_path / "out"),
                                                                                   device="cpu")))
    with pytest.raises(ConfigError, match="dev slice"):
        train_embedding(_cfg(tmp_path, encoder, data, "wise_ft=0.5,1", f"output_dir={tmp_path / 'other'}"))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        _cfg(tmp_path, encoder, data, "wise_ft=0.5,1.5")


def test_truncated_runs_renormalize_prefixes():
    q = np.array([[1.0, 0.0, 5.0]])
    d = np.array([[1.0, 0.1, -5.0], [0.0, 1.0, 5.0]])
    runs = truncated_runs(q, d, ["q"], ["a", "b"], k=2, dims=[2])
    assert max(runs[3]["q"], key=runs[3]["q"].get) == "b"   # full dims: the third coordinate dominates
    assert max(runs[2]["q"], key=runs[2]["q"].get) == "a"   # first two dims only
    assert runs[2]["q"]["a"] == pytest.approx(1 / np.sqrt(1.01))


def test_config_checks():
    with pytest.raises(ConfigError, match="does not fit"):
        load_config(EmbeddingTrainConfig, None, ["output_dir=x", "train_data=a.jsonl", "format=pair", "loss=kl"])
    with pytest.raises(ConfigError, match="decreasing"):
        load_config(EmbeddingTrainConfig, None, ["output_dir=x", "train_data=a.jsonl", "use_mrl=true",
                                                 "mrl_dims=[8,16]"])
    with pytest.raises(ConfigError, match="mrl_select_dim"):
        load_config(EmbeddingTrainConfig, None, ["output_dir=x", "train_data=a.jsonl", "use_mrl=true",
                                                 "mrl_dims=[16,8]", "mrl_select_dim=4"])
    with pytest.raises(ConfigError, match="dev slice"):
        load_config(EmbeddingTrainConfig, None, ["output_dir=x", "train_data=a.jsonl", "eval_steps=5"])


def test_mining_excludes_positives_and_filters_false_negatives_with_a_reranker(tmp_path, tiny_beir, monkeypatch):
    import json

    import ragtune.retrieval.rerank as rerank
    from ragtune.data.formats import read_records
    from ragtune.retrieval.mining import MineConfig, mine

    plain = mine(MineConfig(data=tiny_beir, out=tmp_path / "plain", neg_start=0, neg_end=6, neg_per_query=5))
    audit = [json.loads(x) for x in (tmp_path / "plain" / "mined_negatives.jsonl").read_text().splitlines()]
    assert plain.counts["queries"] == 3 and all(not set(a["negatives"]) & set(a["positives"]) for a in audit)

    class Fake:  # scores "comet" documents as relevant to every query: a likely false negative
        def compute_score(self, pairs, batch_size=32, show_progress=False):
            return [5.0 if "comet" in d.lower() or q.split()[-1] in d.lower() else -5.0 for q, d in pairs]

    monkeypatch.setattr(rerank, "load_reranker", lambda *a, **k: Fake())
    (tmp_path / "fake").mkdir()  # its own folder: the pair-score cache knows a reranker by its files and path
    res = mine(MineConfig(data=tiny_beir, out=tmp_path / "cf", neg_start=0, neg_end=6, neg_per_query=5,
                          rescore=str(tmp_path / "fake")))
    recs = list(read_records(tmp_path / "cf" / "embedding.jsonl", "embedding"))
    assert res.counts["dropped as likely false negatives"] >= 1
    assert all("comet" not in n.lower() for r in recs for n in r.neg or [])
    assert all(r.scores is not None and len(r.scores) == len(r.pos) + len(r.neg or []) for r in recs)
    audit = [json.loads(x) for x in (tmp_path / "cf" / "mined_negatives.jsonl").read_text().splitlines()]
    for a in audit:  # the whole scored window stays in the audit, dropped candidates too, each with its score
        assert set(a["negatives"]) <= set(a["window"]) and not set(a["window"]) & set(a["positives"])
        assert [s for d, s in zip(a["window"], a["window_scores"], strict=True) if d in a["negatives"]] == a["scores"]
    assert sum(len(a["window"]) + len(a["positives"]) for a in audit) == res.counts["candidates scored"]
    assert any(s == 5.0 and d not in a["negatives"]  # a dropped candidate, kept with its score
               for a in audit for d, s in zip(a["window"], a["window_scores"], strict=True))

    def unloadable(*a, **k):
        raise AssertionError("the reranker was loaded though every pair was cached")

    monkeypatch.setattr(rerank, "load_reranker", unloadable)  # the second grading: all cached, nothing loaded
    again = mine(MineConfig(data=tiny_beir, out=tmp_path / "again", neg_start=0, neg_end=6, neg_per_query=5,
                            rescore=str(tmp_path / "fake")))
    assert again.counts["scored anew (not cached)"] == 0
    assert (tmp_path / "again" / "embedding.jsonl").read_bytes() == (tmp_path / "cf" / "embedding.jsonl").read_bytes()


def test_resume_from_checkpoint_continues_the_run(tmp_path, encoder):
    data = _write_format(tmp_path, "pair")
    first = train_embedding(_cfg(tmp_path, encoder, data, "max_steps=2", "save_steps=1", "gradient_checkpointing=true"))
    assert first["global_step"] == 2
    # transformers pickles its TrainingArguments beside each save; the model and checkpoints keep none, and resume
    # does not need it
    assert (tmp_path / "out" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not list((tmp_path / "out").rglob("training_args.bin"))
    with pytest.raises(ConfigError, match="resume_from_checkpoint"):
        train_embedding(_cfg(tmp_path, encoder, data, "max_steps=3"))
    resumed = train_embedding(_cfg(tmp_path, encoder, data, "max_steps=3", "resume_from_checkpoint=true"))
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["global_step"] == 3


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("state_file", ["rng_state.pth", "optimizer.pt"])
def test_resume_refuses_a_checkpoint_file_that_carries_code(tmp_path, encoder, state_file):
    import torch

    data = _write_format(tmp_path, "pair")
    train_embedding(_cfg(tmp_path, encoder, data, "max_steps=2", "save_steps=1"))
    planted = tmp_path / "out" / "checkpoint-2" / state_file
    state = torch.load(planted, weights_only=False)  # the test's own honest file
    marker = tmp_path / "PWNED"
    state["planted"] = _RunsCode(marker)
    torch.save(state, planted)
    with pytest.raises(ConfigError, match=f"checkpoint-2/{state_file}: this checkpoint file holds objects other"):
        train_embedding(_cfg(tmp_path, encoder, data, "max_steps=3", "resume_from_checkpoint=true"))
    assert not marker.exists(), f"resuming ran code planted in {state_file}"


def test_pca_rotation_keeps_full_cosines_and_orders_variance(tmp_path, encoder):
    from sentence_transformers import SentenceTransformer

    from ragtune.train.retriever.embedding_heads import pca_rotation, with_rotation
    from tiny_bert import fixture_sentences

    model = SentenceTransformer(str(encoder), device="cpu")
    texts = fixture_sentences(120)
    rot = pca_rotation(model, texts)
    np.testing.assert_allclose(rot @ rot.T, np.eye(rot.shape[0]), atol=1e-8)
    rotated = with_rotation(model, rot)
    a, b = model.encode(texts, convert_to_numpy=True), rotated.encode(texts, convert_to_numpy=True)
    na, nb = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(na @ na.T, nb @ nb.T, atol=1e-4)
    var = b.var(axis=0)
    assert var[:4].sum() > var[-4:].sum() * 5 and var[0] >= var[-1]  # leading dimensions carry the variance
    raw_var = a.var(axis=0)
    assert var[: len(var) // 4].sum() > np.sort(raw_var)[::-1][: len(var) // 4].sum() - 1e-6


def test_mrl_pca_init_trains_and_saves_the_rotation(tmp_path, encoder):
    from sentence_transformers import SentenceTransformer

    from tiny_bert import toy_topic_rows, write_jsonl

    data = write_jsonl(tmp_path / "pairs.jsonl", [{"query": r["query"], "pos": r["pos"]} for r in toy_topic_rows(16)])
    s = train_embedding(_cfg(tmp_path, encoder, data, "use_mrl=true", "mrl_dims=[32,8]", "mrl_init=pca"))
    reloaded = SentenceTransformer(str(tmp_path / "out"), device="cpu")
    assert [type(m).__name__ for m in reloaded][-1] == "Dense" and s["loss"] == "mnrl+matryoshka"
    with pytest.raises(ConfigError, match="use_mrl"):
        load_config(EmbeddingTrainConfig, None, ["output_dir=x", "train_data=a.jsonl", "mrl_init=pca"])


def test_mrl_pca_seed_gives_runs_of_other_seeds_one_rotation_sample(tmp_path):
    from ragtune.train.retriever.embedding_rows import load_training_rows, pca_texts
    from tiny_bert import toy_topic_rows, write_jsonl

    # four negatives per query, one drawn per row by the seed: the rows' texts, hence the rotation, follow the seed
    rows = toy_topic_rows(16)
    data = write_jsonl(tmp_path / "neg.jsonl", [{"query": r["query"], "pos": r["pos"],
                                                "neg": [f"{r['pos'][0]} other {k}" for k in range(4)]} for r in rows])

    def texts(*extra: str) -> list[str]:
        cfg = load_config(EmbeddingTrainConfig, None, ["output_dir=x", f"train_data={data}", "use_mrl=true",
                                                       "mrl_init=pca", "format=hard_neg", "neg_nums=1", *extra])
        return pca_texts(cfg, load_training_rows(cfg, None), None)

    assert texts("seed=1") != texts("seed=2")
    assert texts("seed=1", "mrl_pca_seed=5") == texts("seed=2", "mrl_pca_seed=5") == texts("seed=5")
    assert texts("seed=1", "mrl_pca_texts=16", "mrl_pca_seed=5") == texts("seed=5", "mrl_pca_texts=16")


def test_bf16_trains_on_cpu(tmp_path, encoder):
    from tiny_bert import toy_topic_rows, write_jsonl

    data = write_jsonl(tmp_path / "pairs.jsonl", [{"query": r["query"], "pos": r["pos"]} for r in toy_topic_rows(16)])
    s = train_embedding(_cfg(tmp_path, encoder, data, "max_steps=2", "bf16=true"))
    assert s["global_step"] == 2 and np.isfinite(s["train_loss"])


def test_fused_rescoring_needs_the_rerankers_dev_chosen_weight(tmp_path, tiny_beir):
    from ragtune.retrieval.mining import MineConfig, mine

    (tmp_path / "reranker").mkdir()
    with pytest.raises(ConfigError, match="ragtune_fusion.json not found"):
        mine(MineConfig(data=tiny_beir, out=tmp_path / "out", rescore=str(tmp_path / "reranker"),
                        rescore_fusion=True))
    assert not (tmp_path / "out").exists()
