"""Curriculum in the retriever trainers: the records' order reaches the trainer's batches (example_order: file),
records' weights reach the loss as per-example weights, for the bi-encoder and ColBERT; and the loop's plan
(easy to hard, band, weighted) rewrites the records accordingly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ragtune.config import load_config
from ragtune.train.retriever.curriculum import WeightedMNRL, WeightedMultiVectorMNRL, ordered_batches

TRAINERS = ["embedding", "colbert"]


def test_ordered_batches_keep_the_order_and_defer_duplicates():
    rows = [("q1", "a"), ("q2", "b"), ("q3", "a"), ("q4", "c"), ("q5", "d")]
    assert ordered_batches(rows, 2, drop_last=False) == [[0, 1], [2, 3], [4]]
    assert ordered_batches(rows, 3, drop_last=False) == [[0, 1, 3], [2, 4]]  # "a" twice: q3 waits a batch
    assert ordered_batches(rows, 3, drop_last=True) == [[0, 1, 3]]


def _train(kind: str, root, encoder, rows: list[dict], extra: list[str]):
    from tiny_bert import write_jsonl

    data = write_jsonl(root / "train.jsonl", rows)
    common = [f"output_dir={root / 'model'}", f"train_data={data}", f"model_name_or_path={encoder}",
              "per_device_train_batch_size=4", "num_train_epochs=1", "warmup_ratio=0", "logging_steps=1",
              "plot_loss=false", "threads=2", *extra]
    if kind == "colbert":
        from ragtune.train.retriever.colbert import ColbertTrainConfig, train_colbert

        return train_colbert(load_config(ColbertTrainConfig, None, [*common, "dim=16", "query_length=8",
                                                                     "document_length=16"]))
    from ragtune.train.retriever.embedding import EmbeddingTrainConfig, train_embedding

    return train_embedding(load_config(EmbeddingTrainConfig, None, [*common, "max_seq_length=16"]))


@pytest.fixture
def seen_batches(monkeypatch):
    """The query column of every batch the trainers' data collators build, in order."""
    from sentence_transformers.base.data_collator import BaseDataCollator

    batches: list[list[str]] = []
    original = BaseDataCollator.__call__

    def call(self, features):
        batches.append([f["query"] for f in features])
        return original(self, features)

    monkeypatch.setattr(BaseDataCollator, "__call__", call)
    return batches


@pytest.mark.parametrize("kind", TRAINERS)
def test_records_order_reaches_the_trainer_batches(kind, tiny_bert, tmp_path, seen_batches):
    from tiny_bert import toy_topic_rows

    rows = [{k: r[k] for k in ("query", "pos", "neg")} for r in toy_topic_rows(12)]
    rows = sorted(rows, key=lambda r: r["query"][::-1])  # an order no sampler would produce by chance
    _train(kind, tmp_path / "ordered", tiny_bert, rows, ["example_order=file"])
    expected = [[rows[i]["query"] for i in b] for b in ordered_batches(
        [(r["query"], r["pos"][0], r["neg"][0]) for r in rows], 4, drop_last=False)]
    assert seen_batches == expected
    seen_batches.clear()
    _train(kind, tmp_path / "shuffled", tiny_bert, rows, [])
    assert sorted(q for b in seen_batches for q in b) == sorted(r["query"] for r in rows)
    assert seen_batches != expected  # the default shuffles


@pytest.mark.parametrize("kind", TRAINERS)
def test_record_weights_reach_the_loss(kind, tiny_bert, tmp_path, monkeypatch):
    from tiny_bert import toy_topic_rows

    rows = [{k: r[k] for k in ("query", "pos", "neg")} | {"weight": 0.5 + i / 4}
            for i, r in enumerate(toy_topic_rows(8))]
    loss_cls = WeightedMultiVectorMNRL if kind == "colbert" else WeightedMNRL
    seen: list[list[float]] = []
    original = loss_cls.forward

    def forward(self, features, labels=None):
        seen.append(labels.tolist())
        return original(self, features, labels)

    monkeypatch.setattr(loss_cls, "forward", forward)
    summary = _train(kind, tmp_path, tiny_bert, rows, ["example_order=file"])
    assert "weighted" in summary["loss"]
    order = ordered_batches([(r["query"], r["pos"][0], r["neg"][0]) for r in rows], 4, drop_last=False)
    assert seen == [pytest.approx([rows[i]["weight"] for i in b]) for b in order]


def _features(model, texts: list[str], task: str | None):
    feats = model.preprocess(texts, prompt=(model.prompts or {}).get(task), **({"task": task} if task else {}))
    return dict(feats) | ({"task": task} if task else {})


@pytest.mark.parametrize("kind", TRAINERS)
def test_weighted_loss_is_the_weighted_mean_of_the_libraries_per_example_loss(kind, tiny_bert):
    """Weights 1 give exactly sentence-transformers' MNRL; other weights scale each example's own term."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.multi_vector_encoder.losses import MultiVectorMultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from ragtune.retrieval.colbert_model import ColbertModelSettings, build_colbert_model

    queries = ["comet tail sun", "yeast bread rise", "violin bow string"]
    pos = ["a comet near the sun grows a tail", "sourdough rises with yeast", "the violin is played with a bow"]
    neg = ["bond prices and rates", "telescopes and galaxies", "enzymes in cells"]
    torch.manual_seed(0)
    if kind == "colbert":
        model = build_colbert_model(tiny_bert, ColbertModelSettings(dim=16, query_length=8, document_length=16),
                                    "cpu", init_texts=pos + neg + queries)
        ours, theirs = WeightedMultiVectorMNRL(model), MultiVectorMultipleNegativesRankingLoss(model)
        feats = [_features(model, queries, "query"), _features(model, pos, "document"),
                 _features(model, neg, "document")]
    else:
        model = SentenceTransformer(str(tiny_bert), device="cpu")
        ours, theirs = WeightedMNRL(model), MultipleNegativesRankingLoss(model)
        feats = [_features(model, t, None) for t in (queries, pos, neg)]
    model.eval()
    with torch.no_grad():
        ref = float(theirs([dict(f) for f in feats], None))
        assert float(ours([dict(f) for f in feats], torch.ones(3))) == pytest.approx(ref, rel=1e-5)
        per = [3 * float(ours([dict(f) for f in feats], torch.eye(3)[i])) for i in range(3)]
        assert np.mean(per) == pytest.approx(ref, rel=1e-5) and len(set(np.round(per, 4))) == 3
        w = torch.tensor([2.0, 0.0, 1.0])
        assert float(ours([dict(f) for f in feats], w)) == pytest.approx((2 * per[0] + per[2]) / 3, rel=1e-5)


def test_loop_plan_rewrites_the_records(tmp_path):
    from ragtune.pipeline.retriever_stage import BiEncoderLoopSettings, apply_curriculum

    ids = ["t1", "t2", "p1", "p2", "p3"]
    difficulty = {"t1": 0.9, "t2": 0.05, "p1": 0.5, "p2": 0.1, "p3": 0.95}
    records = tmp_path / "embedding.jsonl"
    records.write_text("".join(json.dumps({"query": f"query {q}", "pos": [f"doc {q}"]}) + "\n" for q in ids))
    mined = tmp_path / "mined.jsonl"
    mined.write_text("".join(json.dumps({"query_id": q}) + "\n" for q in ids))
    cur = tmp_path / "curriculum.jsonl"
    cur.write_text("".join(json.dumps({"query_id": q, "difficulty": d}) + "\n" for q, d in difficulty.items()))

    def run(**kw) -> list[dict]:
        apply_curriculum(records, mined, cur, BiEncoderLoopSettings(**kw), labeled={"t1", "t2"})
        out = [json.loads(x) for x in records.read_text().splitlines()]
        records.write_text("".join(json.dumps({"query": f"query {q}", "pos": [f"doc {q}"]}) + "\n" for q in ids))
        return out

    assert [r["query"][6:] for r in run(curriculum="easy_to_hard")] == ["t2", "p2", "p1", "t1", "p3"]
    # band: pseudo queries outside [0.2, 0.8] leave, the labeled pairs stay; easy to hard
    assert [r["query"][6:] for r in run(curriculum="band", curriculum_band=(0.2, 0.8))] == ["t2", "p1", "t1"]
    weighted = {r["query"][6:]: r["weight"] for r in run(curriculum="weighted", curriculum_target=0.5)}
    assert set(weighted) == set(ids) and np.mean(list(weighted.values())) == pytest.approx(1.0, abs=1e-5)
    assert weighted["p1"] == max(weighted.values())  # the example at the target difficulty weighs most
