"""Every reader in ragtune.data, fed arbitrary bytes: it loads, or raises DataFormatError naming the file (and the
line, for line-based formats). Never another exception, never a hang (each example has a deadline)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragtune.data.beir import load_corpus, load_qrels, load_queries
from ragtune.data.dataset_info import read_dataset_info
from ragtune.data.errors import DataFormatError, ProblemLog
from ragtune.data.formats import RECORD_KINDS, read_records, teacher_vectors
from ragtune.data.qa_json import read_squad, read_webqa
from ragtune.data.trec import read_run
from ragtune.data.validate import validate

KEYS = [
    "_id",
    "title",
    "text",
    "instruction",
    "input",
    "output",
    "system",
    "history",
    "conversations",
    "from",
    "value",
    "chosen",
    "rejected",
    "query",
    "pos",
    "neg",
    "scores",
    "content",
    "label",
    "hits",
    "prompt_for_query",
    "data",
    "paragraphs",
    "qas",
    "question",
    "answers",
    "answer_start",
    "context",
    "id",
    "is_impossible",
    "evidences",
    "answer",
    "evidence",
    "file_name",
    "formatting",
    "ranking",
    "columns",
    "tags",
    "human",
    "gpt",
    "prompt",
    "response",
    "role_tag",
    "q1",
    "e1",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["human", "gpt", "alpaca", "sharegpt", "no_answer", "", " "]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=20,
)
objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)


def _line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def jsonl_bytes(draw) -> bytes:
    """Mostly JSON lines with the readers' own field names, mutated: truncation, bad bytes, CRLF, blank lines,
    deep nesting, huge integers, tabs and spaces (for TSV/TREC readers)."""
    lines = [_line(o) for o in draw(st.lists(objects, max_size=6))]
    lines += draw(st.lists(st.binary(max_size=40), max_size=3))
    lines += draw(
        st.lists(
            st.sampled_from(
                [
                    b"",
                    b"   ",
                    b"q1\td1\t1",
                    b"query-id\tcorpus-id\tscore",
                    b"q 1\td1\t1",
                    b"q1 Q0 d1 1 nan t",
                    b"q1 Q0 d1 1 1e999 t",
                    b"q1 Q0 d1 x 0.5 t",
                    b"q1 0 d1 1",
                    b"\xef\xbb\xbf{}",
                    b"\xff\xfe",
                    b"[1, 2]",
                    b'{"_id": "a b", "text": "x"}',
                    b'{"_id": "d", "title": "", "text": ""}',
                    b"1" * 5000,
                    b"[" * 3000,
                    b'{"a": ' * 3000,
                    b"\x00\x01\x02",
                    b"NaN",
                    b"\r",
                ]
            ),
            max_size=4,
        )
    )
    order = draw(st.permutations(range(len(lines)))) if lines else []
    sep = draw(st.sampled_from([b"\n", b"\r\n", b"\t"]))
    body = sep.join(lines[i] for i in order)
    if body and draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    return body


@st.composite
def json_document_bytes(draw) -> bytes:
    """One JSON document (what the QA, dataset_info and JSON-array readers take), sometimes broken."""
    shape = draw(st.sampled_from(["any", "squad", "webqa", "info", "array", "deep"]))
    if shape == "squad":
        doc = {
            "data": [
                {
                    "title": draw(scalars),
                    "paragraphs": [{"context": draw(json_values), "qas": draw(st.lists(objects, max_size=3))}],
                }
            ]
        }
    elif shape == "webqa":
        doc = {
            draw(st.text(max_size=4)): {
                "question": draw(json_values),
                "evidences": draw(st.dictionaries(st.text(max_size=3), objects, max_size=3)),
            }
        }
    elif shape == "info":
        doc = draw(st.dictionaries(st.text(max_size=5), objects, max_size=3))
    elif shape == "array":
        doc = draw(st.lists(objects, max_size=4))
    elif shape == "deep":
        n = draw(st.integers(1, 60_000))
        return b"[" * n + b"]" * draw(st.integers(0, n))
    else:
        doc = draw(json_values)
    raw = json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=8))
    return raw


any_bytes = st.one_of(st.binary(max_size=3000), jsonl_bytes())
any_json_document = st.one_of(st.binary(max_size=500), json_document_bytes())


def _check(reader: Callable[[Path], object], data: bytes, name: str, line_based: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            reader(path)
        except DataFormatError as e:
            assert str(e).startswith(str(path)), str(e)
            if line_based and e.problem.message not in WHOLE_FILE:
                assert e.line is not None, str(e)


WHOLE_FILE = {"no valid record found (empty file, or no line is a JSON object)"}


def _all(it) -> None:
    for _ in it:
        pass


LINE_READERS = {
    "corpus": (lambda p: load_corpus(p), "corpus.jsonl"),
    "queries": (lambda p: load_queries(p), "queries.jsonl"),
    "qrels": (lambda p: load_qrels(p, query_ids={"q1"}, doc_ids={"d1"}), "test.tsv"),
    "trec-run": (lambda p: read_run(p), "run.trec"),
    **{
        f"records-{kind}": (lambda p, k=kind: _all(read_records(p, k)), f"{kind}.jsonl")
        for kind in RECORD_KINDS
        if kind != "teacher"
    },
    "records-auto": (lambda p: _all(read_records(p)), "train.jsonl"),
}


@pytest.mark.parametrize("reader", sorted(LINE_READERS))
@given(data=any_bytes)
def test_line_readers_load_or_name_file_and_line(reader, data):
    fn, name = LINE_READERS[reader]
    _check(fn, data, name, line_based=True)


DOC_READERS = {
    "squad": (read_squad, "squad.json"),
    "webqa": (read_webqa, "webqa.json"),
    "dataset_info": (lambda p: read_dataset_info(p), "dataset_info.json"),
    "json-array-records": (lambda p: _all(read_records(p)), "train.json"),
    "read_json": (lambda p: __import__("ragtune.data.jsonl", fromlist=["read_json"]).read_json(p), "kb.json"),
}


@pytest.mark.parametrize("reader", sorted(DOC_READERS))
@given(data=any_json_document)
def test_json_document_readers_load_or_name_the_file(reader, data):
    fn, name = DOC_READERS[reader]
    _check(fn, data, name, line_based=False)


@given(data=st.one_of(st.binary(max_size=400), st.binary(max_size=300).map(lambda b: b"\x93NUMPY\x01\x00" + b)))
def test_teacher_vectors_npy_never_unpickles_or_crashes(data):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "t.jsonl").write_text('{"query": "q"}\n')
        (Path(tmp) / "t.npy").write_bytes(data)
        try:
            teacher_vectors(Path(tmp) / "t.jsonl")
        except DataFormatError as e:
            assert str(e).startswith(str(Path(tmp) / "t.npy")), str(e)


@given(corpus=any_bytes, queries=any_bytes, qrels=any_bytes)
def test_validate_collects_problems_and_never_raises(corpus, queries, qrels):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "qrels").mkdir()
        (root / "corpus.jsonl").write_bytes(corpus)
        (root / "queries.jsonl").write_bytes(queries)
        (root / "qrels" / "test.tsv").write_bytes(qrels)
        for strict in (False, True):
            result = validate(root, limit=5, strict=strict)
            assert isinstance(result.problems, ProblemLog)
            assert all(str(p).startswith(str(root)) for p in result.problems.problems)
