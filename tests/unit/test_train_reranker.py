"""`ragtune train reranker`: pointwise and grouped data, the losses, LLM rerankers, distillation, inference API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ragtune.config import ConfigError, load_config
from ragtune.data.errors import DataFormatError
from ragtune.retrieval.rerank import CrossEncoderReranker, LLMReranker, load_reranker, rank, rerank_run
from ragtune.train.retriever.llm_reranker import score_loss
from ragtune.train.retriever.reranker import (
    RerankerTrainConfig,
    apply_teacher,
    group_rows,
    point_rows,
    train_reranker,
)


@pytest.fixture(scope="session")
def encoder(tmp_path_factory):
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-encoder"), max_positions=64)


def _data(tmp_path, layout: str, n: int = 24):
    from tiny_bert import toy_topic_rows, write_jsonl

    rows = toy_topic_rows(n)
    if layout == "point":
        out = [{"query": r["query"], "content": r["pos"][0], "label": 2.0} for r in rows]
        out += [{"query": r["query"], "content": r["neg"][0], "label": 0.0} for r in rows]
        return write_jsonl(tmp_path / "point.jsonl", out)
    return write_jsonl(tmp_path / "group.jsonl", [
        {"query": r["query"], "hits": [{"content": r["pos"][0], "label": 1.0}, {"content": r["neg"][0], "label": 0.0},
                                       {"content": rows[(i + 2) % n]["pos"][0], "label": 0.0}]}
        for i, r in enumerate(rows)])


def _cfg(tmp_path, model, data, *extra: str) -> RerankerTrainConfig:
    return load_config(RerankerTrainConfig, None, [
        f"output_dir={tmp_path / 'out'}", f"train_data={data}", f"model_name_or_path={model}",
        "per_device_train_batch_size=8", "learning_rate=1e-3", "logging_steps=1", "max_steps=3", "max_length=32",
        "train_group_size=3", "threads=2", "plot_loss=false", *extra])


@pytest.mark.parametrize("layout,loss", [("point", "bce"), ("point", "mse"), ("group", "ranknet"),
                                         ("group", "listwise")])
def test_cross_encoder_formats_and_losses_train(tmp_path, encoder, layout, loss, trainer_runs):
    cfg = _cfg(tmp_path, encoder, _data(tmp_path, layout), f"loss={loss}")
    s = train_reranker(cfg)
    assert (s["format"], s["loss"], s["global_step"]) == (layout, loss, 3) and np.isfinite(s["train_loss"])
    [(untrained, trained_model, _)] = trainer_runs
    pairs = [("star planet", "orbit comet star"), ("bread", "oven flour")]
    trained = CrossEncoderReranker(trained_model).compute_score(pairs)
    assert load_reranker(cfg.output_dir, device="cpu").compute_score(pairs) == pytest.approx(trained, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(CrossEncoderReranker(untrained).compute_score(pairs), trained,
                                          strict=True)) > 1e-4


def test_cross_encoder_bce_loss_decreases_on_a_learnable_task(tmp_path, encoder):
    from tiny_bert import toy_topic_rows, write_jsonl

    rows = toy_topic_rows(40)  # label = the passage is about astronomy or cooking: learnable by a random tiny BERT
    data = write_jsonl(tmp_path / "topic.jsonl", [{"query": r["query"], "content": r["pos"][0],
                                                   "label": float(r["topic"] in (0, 1))} for r in rows])
    cfg = _cfg(tmp_path, encoder, data, "max_steps=45", "warmup_ratio=0", "lr_scheduler_type=constant",
               "logging_steps=5")
    s = train_reranker(cfg)
    assert s["last_logged_loss"] < 0.8 * s["first_logged_loss"]
    scores = np.array(load_reranker(cfg.output_dir, "cpu").compute_score([(r["query"], r["pos"][0]) for r in rows]))
    labels = np.array([r["topic"] in (0, 1) for r in rows])
    assert scores[labels].mean() > scores[~labels].mean()


@pytest.mark.parametrize("name", ["bce", "mse", "ranknet", "listwise", "listwise_soft"])
def test_each_score_loss_decreases_on_a_toy_scorer(name):
    torch.manual_seed(0)
    feats = torch.randn(16, 4, 8)                       # 16 groups of 4 candidates
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(16, 1)
    feats[:, 0] += 1.0                                  # the positive is learnable from the features
    if name in ("bce", "mse"):
        feats, labels = feats.reshape(-1, 1, 8), labels.reshape(-1, 1)
    head = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        loss = score_loss(name, head(feats).squeeze(-1), labels, temperature=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]


def test_ranknet_weights_pairs_by_label_gap():
    scores = torch.tensor([[0.0, 0.0, 0.0]])
    gap2 = score_loss("ranknet", scores, torch.tensor([[2.0, 0.0, 2.0]]))
    gap1 = score_loss("ranknet", scores, torch.tensor([[1.0, 0.0, 1.0]]))
    assert float(gap2) == pytest.approx(2 * float(gap1))


def test_point_labels_scale_and_groups_resample(tmp_path, encoder):
    from ragtune.data.records import RerankerGroup, RerankerPoint

    cfg = _cfg(tmp_path, encoder, tmp_path / "x.jsonl", "min_label=0", "max_label=4", "train_group_size=4")
    rows, stats = point_rows([RerankerPoint(query="q", content="c", label=x) for x in (0.0, 2.0, 4.0)], cfg, None)
    assert [r["label"] for r in rows] == [0.0, 0.5, 1.0] and stats["label_range"] == [0.0, 4.0]
    group = RerankerGroup(query="q", hits=[{"content": "p", "label": 1.0}, {"content": "n", "label": 0.0}])
    rows, stats = group_rows([group], cfg, None)
    assert rows[0]["docs"] == ["p", "n", "n", "n"] and rows[0]["labels"] == [1.0, 0.0, 0.0, 0.0]
    assert stats["groups_resampled"] == 1


def test_bad_rows_name_file_line_and_field(tmp_path, encoder):
    from tiny_bert import write_jsonl

    data = write_jsonl(tmp_path / "bad.jsonl", [{"query": "q", "content": "c", "label": 1.0},
                                                {"query": "q", "content": "c", "label": "high"}])
    with pytest.raises(DataFormatError) as e:
        train_reranker(_cfg(tmp_path, encoder, data, "format=point"))
    assert e.value.line == 2 and e.value.field == "label" and "bad.jsonl:2" in str(e.value)
    with pytest.raises(ConfigError, match="grouped data"):
        _cfg(tmp_path, encoder, data, "format=point", "loss=ranknet")


def test_llm_reranker_lora_trains_reloads_and_keeps_the_special_token_last(tmp_path, tiny_lm, trainer_runs):
    cfg = _cfg(tmp_path, tiny_lm, _data(tmp_path, "group"), "model_type=llm", "use_lora=true", "max_steps=4",
               "llm.special_token=<|im_end|>", "max_length=24")
    s = train_reranker(cfg)
    assert s["model_type"] == "llm" and s["loss"] == "listwise" and s["last_logged_loss"] < s["first_logged_loss"]
    assert json.loads((cfg.output_dir / "ragtune_llm_reranker.json").read_text())["special_token"] == "<|im_end|>"
    reranker = load_reranker(cfg.output_dir, device="cpu")
    assert isinstance(reranker, LLMReranker)
    feats = reranker.encode_pairs([("q " * 30, "d " * 50), ("short", "doc")])
    last = feats["attention_mask"].sum(1) - 1
    assert feats["input_ids"].shape[1] == 24 and (feats["input_ids"][[0, 1], last] == reranker.special_ids[-1]).all()
    pairs = [("protein binds", "The protein binds the receptor."), ("gene", "Heart muscle study.")]
    [(untrained, trained_model, _)] = trainer_runs  # base + LoRA adapter, before and right after training
    trained = LLMReranker(trained_model, reranker.tokenizer, reranker.fmt).compute_score(pairs)
    assert reranker.compute_score(pairs) == pytest.approx(trained, abs=1e-4)  # saved = trained (LoRA merged in)
    before = LLMReranker(untrained, reranker.tokenizer, reranker.fmt).compute_score(pairs)
    assert max(abs(a - b) for a, b in zip(before, trained, strict=True)) > 1e-4


def test_distilling_an_llm_reranker_into_a_cross_encoder(tmp_path, encoder, tiny_lm):
    llm_cfg = _cfg(tmp_path / "llm", tiny_lm, _data(tmp_path, "group"), "model_type=llm", "max_steps=2")
    train_reranker(llm_cfg)
    student = _cfg(tmp_path / "student", encoder, _data(tmp_path, "group"), f"teacher={llm_cfg.output_dir}")
    s = train_reranker(student)
    assert s["loss"] == "listwise_soft" and s["teacher"] == str(llm_cfg.output_dir)
    teacher = load_reranker(llm_cfg.output_dir, "cpu")
    rows = [{"query": "protein", "docs": ["The protein binds.", "Bread."], "labels": [1.0, 0.0]}]
    apply_teacher(rows, "group", teacher, 4)
    assert rows[0]["labels"] == pytest.approx(teacher.compute_score([("protein", "The protein binds."),
                                                                     ("protein", "Bread.")]))


def test_rank_and_rerank_run_keep_unscored_documents_below():
    class Fake:
        def compute_score(self, pairs, batch_size=32):
            return [float(len(set(q.split()) & set(d.split()))) for q, d in pairs]

    docs = ["bread oven", "star planet orbit", "star"]
    ranked = rank(Fake(), "star orbit", docs, top_k=2)
    assert [r["corpus_id"] for r in ranked] == [1, 2] and ranked[0]["score"] == 2.0
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    out = rerank_run(Fake(), run, {"q": "star orbit"}, {"a": "bread", "b": "star orbit", "c": "star"}, top=2)
    order = sorted(out["q"], key=out["q"].get, reverse=True)
    assert order == ["b", "a", "c"]  # b re-scored above a; c (not re-ranked) stays below both


def test_eval_cli_reranks_the_first_stage_top(tmp_path, encoder, tiny_beir):
    from sentence_transformers import CrossEncoder
    from typer.testing import CliRunner

    from ragtune.cli import app
    from ragtune.data.trec import read_run

    CrossEncoder(str(encoder), num_labels=1, max_length=32, device="cpu").save(str(tmp_path / "ce"))
    result = CliRunner().invoke(app, ["eval", "--data", str(tiny_beir), "--retriever", "bm25", "--rerank",
                                      str(tmp_path / "ce"), "--rerank-top", "2", "--out", str(tmp_path / "ev"),
                                      "--json", str(tmp_path / "ev.json")])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "ev.json").read_text())
    assert info["retriever"] == f"bm25+rerank2:{tmp_path / 'ce'}" and info["num_queries"] == 3
    run = read_run(tmp_path / "ev" / "run.trec")
    assert set(run) == {"q4", "q5", "q6"} and all(docs for docs in run.values())


def test_fusion_weight_is_chosen_on_dev_and_used_by_eval(tmp_path, encoder, tiny_beir):
    from typer.testing import CliRunner

    from ragtune.cli import app
    from ragtune.retrieval.rerank import FUSION_FILE
    from ragtune.train.retriever.reranker import choose_fusion_weight

    # a reranker that is right where the first stage is wrong: only full trust in it finds the relevant doc first
    first = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    good = {"q": {"c": 9.0, "a": 1.0, "b": 0.0}}
    pick = choose_fusion_weight(first, good, {"q": {"c": 1}}, "ndcg@10", top=3)
    assert pick["weight"] == 1.0 and pick["dev_value"] == pytest.approx(1.0)
    assert pick["dev_table"]["0.00"] < 1.0
    # and one that is wrong where the first stage is right: mostly BM25 (the largest weight that keeps "a" first)
    bad = {"q": {"c": 9.0, "b": 5.0, "a": 0.0}}
    pick = choose_fusion_weight(first, bad, {"q": {"a": 1}}, "ndcg@10", top=3)
    assert pick["weight"] == 0.4 and pick["dev_value"] == pytest.approx(1.0) and pick["dev_table"]["0.50"] < 1.0

    data = tmp_path / "group.jsonl"
    triples = [("comet tail", "A comet orbits the sun.", "Bread rises."),
               ("bond prices", "Bond prices fall.", "A violin has strings."),
               ("violin bow", "The violin is played with a bow.", "Telescopes collect light.")] * 4
    data.write_text("".join(json.dumps({"query": q, "hits": [{"content": p, "label": 1.0},
                                                             {"content": n, "label": 0.0}]}) + "\n"
                            for q, p, n in triples))
    cfg = _cfg(tmp_path, encoder, data, "train_group_size=2", f"dev.data={tiny_beir}", "dev.fraction=0.34",
               "dev.candidates=4")
    train_reranker(cfg)
    written = json.loads((cfg.output_dir / FUSION_FILE).read_text())
    # recomputed from the saved reranker on the dev slice training carved: the file must hold this sweep's choice
    from ragtune.evaluate.metrics import evaluate
    from ragtune.retrieval.rerank import fuse_with_first_stage
    from ragtune.train.retriever.dev import build_devset

    dev = build_devset(cfg.dev)
    first = {q: {d: float(len(c) - i) for i, d in enumerate(c)} for q, c in dev.candidates.items()}
    reranked = rerank_run(load_reranker(cfg.output_dir, "cpu"), first, dev.queries, dev.corpus, top=4)
    sweep = {w / 10: evaluate(dev.qrels, fuse_with_first_stage(first, reranked, w / 10, top=4),
                              ["ndcg@10"]).metrics["ndcg@10"] for w in range(11)}
    assert written["dev_table"] == pytest.approx({f"{w:.2f}": v for w, v in sweep.items()})
    best = max(sweep.values())
    assert written["weight"] == max(w for w, v in sweep.items() if v >= best - 1e-9)  # ties: trust the reranker
    assert written["dev_value"] == pytest.approx(best) and written["top"] == 4

    result = CliRunner().invoke(app, ["eval", "--data", str(tiny_beir), "--retriever", "bm25", "--rerank",
                                      str(cfg.output_dir), "--rerank-top", "3", "--out", str(tmp_path / "ev"),
                                      "--set", "rerank_fusion=dev", "--json", str(tmp_path / "ev.json")])
    assert result.exit_code == 0, result.output
    fused = json.loads((tmp_path / "ev.json").read_text())
    assert fused["retriever"].endswith(f"+fusion:{written['weight']:g}") and set(fused["reranker_only"]) == \
        set(fused["metrics"]) and (tmp_path / "ev" / "run.reranker-only.trec").is_file()
    # an explicit weight of 0 keeps BM25's order exactly
    zero = CliRunner().invoke(app, ["eval", "--data", str(tiny_beir), "--retriever", "bm25", "--rerank",
                                    str(cfg.output_dir), "--rerank-top", "3", "--out", str(tmp_path / "ev0"),
                                    "--set", "rerank_fusion=0", "--json", str(tmp_path / "ev0.json")])
    bm25 = CliRunner().invoke(app, ["eval", "--data", str(tiny_beir), "--retriever", "bm25",
                                    "--out", str(tmp_path / "bm"), "--json", str(tmp_path / "bm.json")])
    assert zero.exit_code == 0 and bm25.exit_code == 0, zero.output + bm25.output
    m0, mb = (json.loads((tmp_path / f).read_text())["metrics"] for f in ("ev0.json", "bm.json"))
    assert m0 == pytest.approx(mb)
    missing = CliRunner().invoke(app, ["eval", "--data", str(tiny_beir), "--retriever", "bm25", "--rerank",
                                       str(tmp_path), "--set", "rerank_fusion=dev"])
    assert missing.exit_code == 1 and FUSION_FILE in missing.output


def test_the_dev_line_reports_the_kept_checkpoint_not_the_last_evaluation():
    from ragtune.cli_tables import kept_dev_scores

    history = [{"steps": s, "epoch": s / 200, "ndcg@10": n, "mrr@10": n - 0.03, "seconds": 40.0}
               for s, n in ((183, 0.63), (366, 0.70), (648, 0.68))]
    best = {"dev_history": history, "best_checkpoint": "runs/rr/checkpoint-366", "kept_checkpoint": "best"}
    assert kept_dev_scores(best) == {"ndcg@10 (step 366)": 0.70, "mrr@10": pytest.approx(0.67)}
    assert kept_dev_scores(best | {"kept_checkpoint": "last"})["ndcg@10 (step 648)"] == 0.68
    assert kept_dev_scores({"dev_history": []}) == {}
