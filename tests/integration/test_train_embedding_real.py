"""Real data: mining and a few steps of MiniLM and ColBERT training on SciFact (slow; skipped without data)."""

from __future__ import annotations

import pytest

from ragtune.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mined(scifact, tmp_path_factory):
    from ragtune.retrieval.mining import MineConfig, mine

    out = tmp_path_factory.mktemp("mined")
    result = mine(MineConfig(data=scifact, split="train", out=out, neg_start=10, neg_end=30, neg_per_query=2))
    assert result.counts["queries"] == 809 and result.counts["queries without negatives"] == 0
    return out / "embedding.jsonl"


def _common(tmp_path, mined, scifact) -> list[str]:
    return [f"output_dir={tmp_path / 'out'}", f"train_data={mined}", "max_steps=2", "eval_steps=2",
            "per_device_train_batch_size=4", "logging_steps=1", f"dev.data={scifact}", "dev.max_queries=8",
            "dev.candidates=5", "threads=2"]


def test_minilm_trains_on_scifact_with_a_dev_slice_from_train(tmp_path, mined, scifact, monkeypatch, trainer_runs):
    from sentence_transformers import SentenceTransformer

    import ragtune.train.retriever.base as base
    from ragtune.data.beir import load_beir
    from ragtune.train.retriever.embedding import EmbeddingTrainConfig, train_embedding

    used, carve = [], base.build_devset  # the dev slice the training run itself carved and selected on
    monkeypatch.setattr(base, "build_devset", lambda *a, **k: used.append(carve(*a, **k)) or used[-1])
    cfg = load_config(EmbeddingTrainConfig, None, [*_common(tmp_path, mined, scifact), "max_seq_length=64"])
    s = train_embedding(cfg)
    [dev], [(_, _, trainer)] = used, trainer_runs
    assert s["dev_queries"] == len(dev.queries) == 8 and s["dropped_dev_queries"] >= 8 and s["dev_history"]
    ds = load_beir(scifact, ["train", "test"])
    assert set(dev.queries) <= set(ds.qrels["train"]) and not set(dev.queries) & set(ds.qrels["test"])
    assert not set(dev.queries.values()) & set(trainer.train_dataset["query"])  # never trained on
    assert SentenceTransformer(str(cfg.output_dir)).encode(["a protein"]).shape == (1, 384)


def test_colbert_trains_on_scifact(tmp_path, mined, scifact):
    from ragtune.train.retriever.colbert import ColbertTrainConfig, train_colbert

    s = train_colbert(load_config(ColbertTrainConfig, None, [*_common(tmp_path / "cb", mined, scifact),
                                                             "document_length=64"]))
    assert s["global_step"] == 2 and s["dev_history"]
