"""benchmarks/margin_distill.py: the query subsets, the teacher's scale, and the student's settings match the loop's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import margin_distill as md  # noqa: E402


def test_subsets_keep_train_queries_and_only_the_rounds_named(tmp_path):
    mined = tmp_path / "mined"
    mined.mkdir()
    qids = ["12", "pq0-5-0", "pq1-7-1", "pq0-9-1", "40"]
    rows = [{"query": q, "pos": ["p"], "neg": ["n"] if q != "40" else None, "scores": [1.0, 0.0]} for q in qids]
    (mined / "embedding.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (mined / "mined_negatives.jsonl").write_text("".join(json.dumps({"query_id": q}) + "\n" for q in qids))
    counts = md.split_rows(mined, tmp_path)
    assert counts == {"without negatives": 1, "train": 1, "train+round0": 3, "train+rounds0-1": 4}
    kept = [json.loads(line)["query"] for line in (tmp_path / "train+round0" / "records.jsonl").open()]
    assert kept == ["12", "pq0-5-0", "pq0-9-1"]  # "40": every candidate dropped, nothing to contrast


def test_split_refuses_an_audit_that_does_not_match_the_records(tmp_path):
    (tmp_path / "embedding.jsonl").write_text('{"query": "a"}\n{"query": "b"}\n')
    (tmp_path / "mined_negatives.jsonl").write_text('{"query_id": "a"}\n')
    with pytest.raises(SystemExit, match="1 audit rows for 2 records"):
        md.split_rows(tmp_path, tmp_path / "out")


def test_student_trains_with_the_loops_retriever_settings(tmp_path):
    from ragtune.config import load_config
    from ragtune.train.retriever.embedding import EmbeddingTrainConfig

    (tmp_path / "base").mkdir()
    retriever = {"num_train_epochs": 1.0, "per_device_train_batch_size": 32, "neg_nums": 1,
                 "dev": {"fraction": 0.1, "candidates": 30}, "eval_steps": 15}
    (tmp_path / "base" / "config.yaml").write_text(yaml.safe_dump({"retriever": retriever}))
    keys = md.student_keys(tmp_path)
    cfg = load_config(EmbeddingTrainConfig, None, ["train_data=x.jsonl", "output_dir=o", "format=distill",
                                                    "loss=margin_mse", "teacher_scale=0.05", *keys])
    assert (cfg.per_device_train_batch_size, cfg.neg_nums, cfg.eval_steps) == (32, 1, 15)
    assert cfg.dev.split == "train" and cfg.dev.max_queries == 50 and cfg.dev.candidates == 30
    assert cfg.teacher_scale == 0.05


def _mining_output(folder: Path, qids: list[str], with_neg=lambda q: True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"query": q, "pos": ["p"], "neg": ["n"] if with_neg(q) else None, "scores": [1.0, 0.0]} for q in qids]
    (folder / "embedding.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "mined_negatives.jsonl").write_text("".join(json.dumps({"query_id": q}) + "\n" for q in qids))


def test_hybrid_rows_keep_the_loops_contrastive_train_rows_and_distil_only_pseudo_queries(tmp_path):
    _mining_output(tmp_path / "loop", ["12", "pq0-5-0", "40", "pq1-7-1"])
    _mining_output(tmp_path / "mined", ["12", "pq0-5-0", "pq1-7-1", "pq0-9-1", "40"], lambda q: q != "pq0-9-1")
    counts = md.split_hybrid(tmp_path / "loop", tmp_path / "mined", tmp_path)
    assert counts == {"labeled (contrastive)": 2, "hybrid+round0": 1, "hybrid+rounds0-1": 2}

    def queries(name: str, part: str) -> list[str]:
        return [json.loads(line)["query"] for line in (tmp_path / name / f"{part}.jsonl").open()]

    assert queries("hybrid+round0", "labeled") == ["12", "40"]
    assert queries("hybrid+round0", "pseudo") == ["pq0-5-0"]  # pq0-9-1 lost every candidate
    assert queries("hybrid+rounds0-1", "pseudo") == ["pq0-5-0", "pq1-7-1"]


def test_fused_teacher_grades_by_the_dev_chosen_fusion_and_drops_what_it_ranks_above_a_positive(tmp_path, monkeypatch):
    import fused_teacher
    import ragtune.retrieval.rerank as rerank
    from ragtune.data.beir import write_beir
    from ragtune.data.formats import read_records

    docs = [{"_id": "d1", "title": "", "text": "Enzymes catalyse reactions in cells."},
            {"_id": "d2", "title": "", "text": "Cells divide by mitosis in tissue."},
            {"_id": "d3", "title": "", "text": "Cells need enzymes to make energy."},
            {"_id": "d4", "title": "", "text": "Plant cells have walls of cellulose."},
            {"_id": "d5", "title": "", "text": "Muscle cells contract."}]
    write_beir(tmp_path / "mix", docs, {"q1": "what do enzymes do in cells"}, {"train": {"q1": {"d1": 1}}})

    class Fake:  # the cross-encoder ranks d3 above the positive: a likely unjudged positive
        def compute_score(self, pairs, batch_size=32, show_progress=False):
            return [6.0 if "energy" in d else 5.0 if "Enzymes" in d else -float(len(d)) for _, d in pairs]

    monkeypatch.setattr(rerank, "load_reranker", lambda *a, **k: Fake())
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / rerank.FUSION_FILE).write_text(json.dumps({"weight": 0.7, "k": 60}))
    counts = fused_teacher.mine_fused(tmp_path / "mix", tmp_path / "teacher", tmp_path / "out", depth=5, per_query=2)
    assert counts["queries"] == 1 and counts["dropped as likely false negatives"] == 1
    [rec] = read_records(tmp_path / "out" / "embedding.jsonl", "embedding")
    assert rec.pos == [docs[0]["text"]] and len(rec.neg) == 2 and docs[2]["text"] not in rec.neg
    assert rec.scores[0] > max(rec.scores[1:]) and all(0 < s < 1 / 61 + 1e-9 for s in rec.scores)
    audit = json.loads((tmp_path / "out" / "mined_negatives.jsonl").read_text())
    assert audit["query_id"] == "q1" and "d3" not in audit["negatives"]

    # `ragtune train mine rescore_fusion=true` grades the same way: the same negatives with the same scores (the
    # library sorts them by rank, the benchmark kept its draw's order)
    from ragtune.retrieval.mining import MineConfig, mine

    res = mine(MineConfig(data=tmp_path / "mix", out=tmp_path / "lib", neg_start=0, neg_end=5, neg_per_query=2,
                          rescore=str(tmp_path / "teacher"), rescore_fusion=True))
    [lib] = read_records(tmp_path / "lib" / "embedding.jsonl", "embedding")
    assert res.counts["dropped as likely false negatives"] == 1
    assert lib.pos == rec.pos and dict(zip(lib.neg, lib.scores[1:], strict=True)) == pytest.approx(
        dict(zip(rec.neg, rec.scores[1:], strict=True))) and lib.scores[0] == pytest.approx(rec.scores[0])
    lib_audit = json.loads((tmp_path / "lib" / "mined_negatives.jsonl").read_text())
    # the dropped d3 stays in the audit's window, with the reranker's own score
    assert dict(zip(lib_audit["window"], lib_audit["window_scores"], strict=True))["d3"] == 6.0
    # a second grading of the same pairs reads the pair-score cache: nothing reaches the reranker, same output
    monkeypatch.setattr(Fake, "compute_score", lambda *a, **k: pytest.fail("scored a cached pair"))
    again = mine(MineConfig(data=tmp_path / "mix", out=tmp_path / "again", neg_start=0, neg_end=5, neg_per_query=2,
                            rescore=str(tmp_path / "teacher"), rescore_fusion=True))
    assert again.counts["scored anew (not cached)"] == 0 and res.counts["scored anew (not cached)"] == 5
    assert (tmp_path / "again" / "embedding.jsonl").read_bytes() == (tmp_path / "lib" / "embedding.jsonl").read_bytes()


def test_seed_reruns_change_only_the_seed_and_pool_per_query(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(md, "ragtune", lambda *a: calls.append(a))
    work, loop = tmp_path / "work", tmp_path / "loop"
    md.train_and_evaluate(work, "hybrid+round0", 0.5, ["eval_steps=15"], seed=1)
    train, _ = calls
    assert f"train_data={work / 'hybrid+round0' / 'labeled.jsonl'},{work / 'hybrid+round0' / 'pseudo.jsonl'}" in train
    assert f"output_dir={work / 'hybrid+round0-seed1' / 'model'}" in train and train[-2:] == ("eval_steps=15", "seed=1")
    calls.clear()
    md.contrastive_seed(loop, work, "hybrid+rounds0-1", 2)  # the loop's round2 retriever, from its saved config
    stage = loop / "round2" / "round-1" / "retriever"
    assert calls[0][2:] == (str(stage / "model" / "config.yaml"), f"train_data={stage / 'records' / 'embedding.jsonl'}",
                            f"output_dir={work / 'contrastive-rounds0-1-seed2' / 'model'}",
                            "overwrite_output_dir=true", "seed=2")
    for name, scores in {"a": (0.2, 0.4), "b": (0.6, 0.0)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "per_query.tsv").write_text(
            "query-id\tndcg@10\n" + "".join(f"q{i}\t{s}\n" for i, s in enumerate(scores)))
    assert md.pooled([tmp_path / "a", tmp_path / "b"]) == pytest.approx({"q0": 0.4, "q1": 0.2})
