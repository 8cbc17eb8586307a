"""Hostile and careless data (issue 14, items 11-13): empty BEIR documents, absurd nesting, ids with whitespace,
non-finite TREC scores. Each is loaded as BEIR does, or stopped with file:line and exit 1, never a traceback."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.data.beir import load_beir, load_corpus, load_qrels, load_queries
from ragtune.data.errors import DataFormatError, ProblemLog
from ragtune.data.trec import read_run, write_run


def _empty_docs(folder, ids):
    corpus = folder / "corpus.jsonl"
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    rows += [{"_id": i, "title": "", "text": ""} for i in ids]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qrels = folder / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "".join(f"q4\t{i}\t1\n" for i in ids))  # judged, as in public BEIR sets


def test_empty_beir_documents_load_warn_once_and_are_flagged_by_strict_validate(tiny_beir, caplog):
    ids = [f"e{i}" for i in range(7)]
    _empty_docs(tiny_beir, ids)
    with caplog.at_level(logging.WARNING, logger="ragtune.data"):
        ds = load_beir(tiny_beir)
    assert set(ids) <= set(ds.corpus) and ds.corpus["e0"].content == ""
    assert ds.qrels["test"]["q4"]["e3"] == 1
    warnings = [r.getMessage() for r in caplog.records if "empty document" in r.getMessage()]
    assert len(warnings) == 1 and "7 empty document(s)" in warnings[0] and "e0, e1, e2, e3, e4, ..." in warnings[0]

    runner = CliRunner()
    ok = runner.invoke(app, ["data", "validate", str(tiny_beir)])
    assert ok.exit_code == 0, ok.output
    strict = runner.invoke(app, ["data", "validate", str(tiny_beir), "--strict"])
    assert strict.exit_code == 1 and 'empty document "e0"' in strict.output and "7 problem(s)" in strict.output


def test_eval_runs_on_a_collection_with_empty_documents(tiny_beir, tmp_path):
    _empty_docs(tiny_beir, ["e0", "e1"])
    res = CliRunner().invoke(
        app, ["eval", "--data", str(tiny_beir), "--retriever", "bm25", "--k", "5", "--out", str(tmp_path / "out")]
    )
    assert res.exit_code == 0, res.output
    assert read_run(tmp_path / "out" / "run.trec")  # a run that ragtune reads back


def test_corpus_line_nested_200000_deep_is_a_data_error_not_a_traceback(tiny_beir, tmp_path):
    corpus = tiny_beir / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + "[" * 200_000 + "\n")
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:7: unreadable JSON: nested too deeply"):
        load_corpus(tiny_beir)
    res = CliRunner().invoke(app, ["eval", "--data", str(tiny_beir), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "corpus.jsonl:7" in res.output and "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


@pytest.mark.parametrize("what", ["corpus", "queries", "qrels"])
def test_ids_with_whitespace_are_refused_where_they_are_read(tiny_beir, what):
    if what == "corpus":
        (tiny_beir / "corpus.jsonl").write_text('{"_id": "d 1", "text": "x"}\n')
        call, where = (lambda: load_corpus(tiny_beir)), "corpus.jsonl:1"
    elif what == "queries":
        (tiny_beir / "queries.jsonl").write_text('{"_id": "q\\u3000one", "text": "x"}\n')
        call, where = (lambda: load_queries(tiny_beir)), "queries.jsonl:1"
    else:
        (tiny_beir / "qrels" / "test.tsv").write_text("q 4\td4\t1\n")
        call, where = (lambda: load_qrels(tiny_beir / "qrels" / "test.tsv")), "test.tsv:1"
    with pytest.raises(DataFormatError, match="whitespace") as e:
        call()
    assert where in str(e.value)


def test_trec_runs_never_hold_whitespace_ids_or_non_finite_scores(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_run(tmp_path / "r.trec", {"q1": {"doc 1": 1.0}})
    assert not (tmp_path / "r.trec").exists()
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 1 nan t\nq1 Q0 d2 2 inf t\nq1 Q0 d3 3 -Infinity t\nq1 Q0 d4 4 0.5 t\n")
    log = ProblemLog()
    assert read_run(tmp_path / "bad.trec", log) == {"q1": {"d4": 0.5}}
    assert [p.line for p in log.problems] == [1, 2, 3] and "not a finite number" in str(log.problems[0])
    with pytest.raises(DataFormatError, match=r"bad\.trec:1: score \"nan\""):
        read_run(tmp_path / "bad.trec")
