"""Converters on the real shared data (skipped when ../shared/data is absent)."""

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.data.beir import load_qrels
from ragtune.data.errors import DataFormatError
from ragtune.data.formats import read_records
from ragtune.data.qa_json import read_webqa
from ragtune.data.validate import validate
from ragtune.generate.prompts import CANONICAL_REFUSAL
from ragtune.paths import shared_data
from ragtune.pipeline.convert import run_convert

runner = CliRunner()


def qa_file(name: str) -> Path:
    path = shared_data("qa", name)
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_scifact_embedding_records(scifact, tmp_path):
    res = runner.invoke(app, ["data", "convert", "beir-embedding", f"data={scifact}", f"out={tmp_path}",
                              "neg_start=10", "neg_end=100", "neg_per_query=8"])
    assert res.exit_code == 0, res.output
    qrels = load_qrels(scifact / "qrels" / "train.tsv")
    rows = jsonl(tmp_path / "mined_negatives.jsonl")
    assert len(rows) == len(qrels) == 809
    for row in rows:
        assert set(row["positives"]) == set(qrels[row["query_id"]])
        assert not set(row["negatives"]) & set(qrels[row["query_id"]])
        assert all(11 <= r <= 100 for r in row["ranks"]) and len(row["negatives"]) == 8
    result = validate(tmp_path / "embedding.jsonl")
    assert result.ok and result.counts["embedding rows"] == 809 and result.counts["rows with neg"] == 809
    assert result.counts["pos passages"] == 919  # every train judgment became a positive


def test_squad2_articles_split_and_ratio(tmp_path):
    src = qa_file("squad2-dev-a.json")
    res = run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "holdout_articles=2",
                                          "unanswerable_fraction=0.5"])
    train, evals = jsonl(tmp_path / "squad2-dev-a_train.meta.jsonl"), jsonl(tmp_path / "squad2-dev-a_eval.meta.jsonl")
    assert res.counts["articles (train)"] == 8 and res.counts["articles (eval)"] == 2
    assert not ({r["article"] for r in train} | {r["context_article"] for r in train}) & \
        ({r["article"] for r in evals} | {r["context_article"] for r in evals})
    for rows in (train, evals):
        assert sum(not r["answerable"] for r in rows) / len(rows) == pytest.approx(0.5, abs=0.002)
    assert all(r["source"] == "impossible" for r in evals if not r["answerable"])  # SQuAD 2.0 has enough
    kinds = Counter(r["source"] for r in train if not r["answerable"])  # train: the default mix 0.4 / 0.4 / 0.2
    assert set(kinds) == {"impossible", "hard", "mismatched"}
    assert kinds["impossible"] / kinds.total() == pytest.approx(0.4, abs=0.01)
    assert kinds["hard"] / kinds.total() == pytest.approx(0.4, abs=0.01)
    assert all(r["context_article"] == r["article"] for r in train if r["source"] == "hard")
    recs = list(read_records(tmp_path / "squad2-dev-a_eval.jsonl", "alpaca"))
    assert {r.output for r, m in zip(recs, evals, strict=True) if not m["answerable"]} == {CANONICAL_REFUSAL["en"]}
    assert validate(tmp_path).ok


def test_squad2_distractors_are_other_articles_and_change_nothing_else(tmp_path):
    src = qa_file("squad2-dev-a.json")
    base = [f"data={src}", "holdout_articles=2", "name=s"]
    run_convert("squad-sft", None, [*base, f"out={tmp_path / 'plain'}"])
    res = run_convert("squad-sft", None, [*base, f"out={tmp_path / 'd'}", "distractors=2", "distractor_fraction=0.5"])
    plain = list(read_records(tmp_path / "plain" / "s_train.jsonl", "alpaca"))
    mixed = list(read_records(tmp_path / "d" / "s_train.jsonl", "alpaca"))
    meta = jsonl(tmp_path / "d" / "s_train.meta.jsonl")
    assert jsonl(tmp_path / "plain" / "s_train.meta.jsonl") == meta  # same questions, same order
    assert [r.output for r in plain] == [r.output for r in mixed]  # same targets
    contexts = {r["context"]: r["context_article"] for r in meta}
    several = 0
    for rec, m, p in zip(mixed, meta, plain, strict=True):
        if rec.instruction == p.instruction:
            continue
        several += 1
        assert "[1] " in rec.instruction and "[3] " in rec.instruction and m["context"] in rec.instruction
        others = [c for c, a in contexts.items() if c in rec.instruction and c != m["context"]]
        assert len(others) == 2 and all(contexts[c] != m["article"] for c in others)
        assert not any(a in c for c in others for a in m["answers"])
    assert res.counts["train with distractors"] == several
    assert 0.4 < several / len(meta) < 0.6


def test_webqa_builds_chinese_unanswerables(tmp_path):
    src = qa_file("webqa-me_test.ann-sample.json")
    res = run_convert("webqa-sft", None, [f"data={src}", f"out={tmp_path}", "holdout_articles=100",
                                          "unanswerable_fraction=0.3"])
    train = jsonl(tmp_path / "webqa-me_test.ann-sample_train.meta.jsonl")
    assert train[0]["language"] == "zh" and res.counts["articles (eval)"] == 100
    unans = [r for r in train if not r["answerable"]]
    # one evidence per question: no same-article passage, so hard pairs take the nearest other question's evidence
    assert {r["source"] for r in unans} == {"hard_other", "mismatched"}
    gold = {i.article: i.answers for i in read_webqa(src)}
    assert all(r["context_article"] != r["article"] and gold[r["article"]]
               and not any(a in r["context"] for a in gold[r["article"]]) for r in unans)
    assert len(unans) / len(train) == pytest.approx(0.3, abs=0.002)


def test_cmrc_empty_questions_raise_or_are_skipped(tmp_path):
    src = qa_file("cmrc2018-trial.json")
    with pytest.raises(DataFormatError) as e:
        run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}"])
    assert e.value.field == "data[188].paragraphs[0].qas[4].question"
    res = run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "on_error=skip", "holdout_articles=30"])
    assert res.counts["bad questions skipped"] == 2 and res.counts["questions read"] == 1000
    assert jsonl(tmp_path / "cmrc2018-trial_train.meta.jsonl")[0]["language"] == "zh"


def test_dense_mining_uses_the_encoder_ranking(tiny_bert, tmp_path):
    from ragtune.data.beir import load_corpus, load_queries, write_beir
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    docs = [{"_id": f"d{i}", "title": "", "text": f"cell protein gene number {i} membrane receptor"} for i in range(30)]
    write_beir(tmp_path / "b", docs, {"q0": "protein receptor", "q1": "gene membrane"},
               {"train": {"q0": {"d0": 1}, "q1": {"d1": 1}}})
    run_convert("beir-embedding", None, [f"data={tmp_path / 'b'}", f"out={tmp_path / 'o'}", "miner=dense",
                                         f"dense.model={tiny_bert}", "dense.cache=false", "neg_start=2", "neg_end=10",
                                         "neg_per_query=100"])
    dense = DenseRetriever(DenseConfig(model=str(tiny_bert), cache=False))
    dense.index(load_corpus(tmp_path / "b").values())
    run = dense.search(load_queries(tmp_path / "b"), k=10)
    for row in jsonl(tmp_path / "o" / "mined_negatives.jsonl"):
        ranking = [d for d, _ in sorted(run[row["query_id"]].items(), key=lambda kv: (-kv[1], kv[0]))]
        assert row["negatives"] == [d for d in ranking[2:10] if d not in row["positives"]]
