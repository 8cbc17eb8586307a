"""`eval compare` refuses runs made on different corpora, query sets or splits (apples against oranges)."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


def _eval(data, out, split="test"):
    res = runner.invoke(app, ["eval", "--data", str(data), "--split", split, "--retriever", "bm25",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out / "run.trec"


def _compare(a, b, data, split="test"):
    return runner.invoke(app, ["eval", "compare", str(a), str(b), "--data", str(data), "--split", split,
                               "--metrics", "ndcg@10"])


def test_runs_on_one_corpus_and_split_compare_and_record_what_they_were_made_on(tiny_beir, tmp_path):
    a = _eval(tiny_beir, tmp_path / "a")
    b = _eval(tiny_beir, tmp_path / "b", split="test")
    fp = json.loads((tmp_path / "a" / "run.trec.fingerprint.json").read_text())
    assert set(fp) == {"corpus", "queries", "split"} and fp["split"] == "test"
    res = _compare(a, b, tiny_beir)
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output


def test_compare_refuses_runs_made_on_another_corpus(tiny_beir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_beir, other)
    lines = (other / "corpus.jsonl").read_text().splitlines()
    doc = json.loads(lines[0])
    lines[0] = json.dumps({**doc, "text": doc["text"] + " An extra sentence."})
    (other / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    a = _eval(tiny_beir, tmp_path / "a")
    b = _eval(other, tmp_path / "b")
    res = _compare(a, b, tiny_beir)
    assert res.exit_code == 1
    assert "different corpus" in res.output and str(tmp_path / "b" / "run.trec") in res.output
    assert "Traceback" not in res.output


def test_compare_refuses_another_split_or_query_set(tiny_beir, tmp_path):
    train = _eval(tiny_beir, tmp_path / "train", split="train")
    test = _eval(tiny_beir, tmp_path / "test")
    res = _compare(train, test, tiny_beir)
    assert res.exit_code == 1 and "different queries and split" in res.output

    edited = tmp_path / "edited"
    shutil.copytree(tiny_beir, edited)
    text = (edited / "queries.jsonl").read_text().replace("how is a violin played", "how is a cello played")
    (edited / "queries.jsonl").write_text(text)
    res = _compare(test, _eval(edited, tmp_path / "e"), tiny_beir)
    assert res.exit_code == 1 and "different queries" in res.output and "corpus" not in res.output.split("(")[0]


def test_a_run_without_fingerprint_is_compared_with_a_warning(tiny_beir, tmp_path):
    a = _eval(tiny_beir, tmp_path / "a")
    bare = tmp_path / "bare.trec"
    shutil.copy(a, bare)
    res = _compare(a, bare, tiny_beir)
    assert res.exit_code == 0, res.output
    assert "no fingerprint" in res.output and "bare.trec" in res.output
