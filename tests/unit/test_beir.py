import json

import pytest

from ragtune.data.beir import load_beir, load_qrels, write_beir
from ragtune.data.errors import DataFormatError, ProblemLog
from ragtune.data.trec import read_run, write_run
from ragtune.data.validate import validate


def _lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_round_trip(tiny_beir, tmp_path):
    ds = load_beir(tiny_beir)
    assert len(ds.corpus) == 6 and len(ds.queries) == 6
    assert ds.qrels["test"]["q6"] == {"d6": 2, "d1": 1}
    assert ds.corpus["d1"].content.startswith("Comets A comet")
    assert ds.corpus["d6"].content.startswith("Telescopes")  # no title: no leading space
    write_beir(tmp_path / "copy", ds.corpus.values(), ds.queries, ds.qrels)
    again = load_beir(tmp_path / "copy")
    assert again.corpus == ds.corpus and again.qrels == ds.qrels
    assert (tmp_path / "copy" / "qrels" / "test.tsv").read_text().startswith("query-id\tcorpus-id\tscore\n")


def test_qrels_with_and_without_header_and_trec_format(tmp_path):
    (tmp_path / "a.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / "b.tsv").write_text("q1\td1\t1\n")
    (tmp_path / "c.tsv").write_text("q1 0 d1 1\n")
    assert load_qrels(tmp_path / "a.tsv") == load_qrels(tmp_path / "b.tsv") == load_qrels(tmp_path / "c.tsv")


def test_missing_id_message_names_file_line_field_and_found_fields(tiny_beir):
    corpus = tiny_beir / "corpus.jsonl"
    lines = corpus.read_bytes().splitlines()
    lines[2] = json.dumps({"id": "d3", "text": "x"}).encode()
    _lines(corpus, lines)
    with pytest.raises(DataFormatError) as e:
        load_beir(tiny_beir)
    assert str(e.value).startswith(f'{corpus}:3: missing field "_id" (found: id, text); BEIR corpus lines need')
    assert e.value.line == 3 and e.value.field == "_id"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda ls: ls.__setitem__(1, ls[1][:30]), "corpus.jsonl:2: invalid JSON"),
        (lambda ls: ls.__setitem__(3, ls[0]), 'corpus.jsonl:4: duplicate document id "d1" (first seen on line 1)'),
        (lambda ls: ls.__setitem__(2, b'{"_id": "d3", "title": "", "text": "  "}'), "corpus.jsonl:3: empty document"),
        (lambda ls: ls.__setitem__(4, ls[4].replace(b"violin", b"viol\xe9n")),
         "corpus.jsonl:5: invalid UTF-8 byte 0xe9"),
        (lambda ls: ls.__setitem__(0, ls[0] + b"\r"), "corpus.jsonl:1: CRLF line ending"),
        (lambda ls: ls.__setitem__(0, b"[1, 2]"), "corpus.jsonl:1: expected a JSON object"),
    ],
)
def test_corpus_problems_are_reported_with_line(tiny_beir, mutate, expected):
    corpus = tiny_beir / "corpus.jsonl"
    lines = corpus.read_bytes().splitlines()
    mutate(lines)
    _lines(corpus, lines)
    result = validate(tiny_beir, strict=True)  # strict: empty documents are problems too
    assert not result.ok
    assert any(expected in str(p) for p in result.problems.problems), [str(p) for p in result.problems.problems]


def test_qrels_problems(tiny_beir):
    q = tiny_beir / "qrels" / "test.tsv"
    q.write_text("query-id\tcorpus-id\tscore\nq4\td4\t1\nq4\tnope\t1\nqq\td1\t1\nq5\td5\tx\nq5\td5\t1\nq5\td5\t1\nq6\n")
    result = validate(tiny_beir)
    msgs = [str(p) for p in result.problems.problems]
    assert any('test.tsv:3: unknown document id "nope"' in m for m in msgs)
    assert any('test.tsv:4: unknown query id "qq"' in m for m in msgs)
    assert any('test.tsv:5: score "x" is not an integer' in m for m in msgs)
    assert any("test.tsv:7: duplicate judgment" in m for m in msgs)
    assert any("test.tsv:8: expected 3 tab-separated columns, found 1" in m for m in msgs)
    assert result.problems.total == 5


def test_validate_counts_and_problem_limit(tiny_beir):
    ok = validate(tiny_beir)
    assert ok.ok and ok.counts["docs"] == 6 and ok.counts["test qrels rows"] == 4 and ok.counts["train queries"] == 3
    (tiny_beir / "queries.jsonl").write_text("".join('{"_id": "x", "text": ""}\n' for _ in range(10)))
    log = validate(tiny_beir, limit=3).problems
    assert isinstance(log, ProblemLog) and len(log.problems) == 3 and log.total > 3


def test_trec_run_round_trip_and_errors(tmp_path):
    run = {"q1": {"d1": 0.5, "d2": 2.0}, "q2": {"d3": 1.0}}
    write_run(tmp_path / "r.trec", run, tag="t")
    assert (tmp_path / "r.trec").read_text().splitlines()[0] == "q1 Q0 d2 1 2.000000 t"
    assert read_run(tmp_path / "r.trec") == run
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\nq1 Q0 d2 x y t\nq1 d2\n")
    log = ProblemLog()
    read_run(tmp_path / "bad.trec", log)
    assert [p.line for p in log.problems] == [2, 3, 4]


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    from ragtune.atomic import write_jsonl

    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows())
    assert target.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
