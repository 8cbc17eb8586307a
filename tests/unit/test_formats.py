import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.data.dataset_info import read_dataset_info, register_dataset, write_dataset_info
from ragtune.data.errors import DataFormatError, ProblemLog
from ragtune.data.formats import (
    count_records,
    detect_record_kind,
    load_teacher,
    read_records,
    validate_dataset_info,
    write_records,
    write_teacher,
)
from ragtune.data.records import Alpaca, Embedding, Hit, Preference, RerankerGroup, RerankerPoint, ShareGPT, Turn
from ragtune.data.validate import validate

runner = CliRunner()


def lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def strict_error(path: Path, kind: str) -> DataFormatError:
    with pytest.raises(DataFormatError) as e:
        list(read_records(path, kind))
    return e.value


def test_embedding_row_missing_pos_names_line_and_field(tmp_path):
    f = lines(tmp_path / "emb.jsonl", [{"query": "a", "pos": ["p"], "neg": ["n"]}, {"query": "b", "neg": ["n"]}])
    err = strict_error(f, "embedding")
    assert (err.line, err.field) == (2, "pos")
    assert str(err).startswith(f'{f}:2: missing field "pos" (found: neg, query)')
    assert "embedding lines need" in str(err)  # the hint says what a valid line looks like


def test_ranking_row_with_one_output_names_output(tmp_path):
    f = lines(tmp_path / "pref.jsonl", [{"instruction": "i", "output": ["good", "bad"]},
                                        {"instruction": "i", "output": ["only one"]}])
    err = strict_error(f, "preference")
    assert (err.line, err.field) == (2, "output")
    assert "a list of 1" in str(err)
    first = next(read_records(f, "preference"))
    assert (first.chosen, first.rejected) == ("good", "bad")


@pytest.mark.parametrize("kind,row,field", [
    ("reranker-point", {"query": "q", "content": "c", "label": "1"}, "label"),
    ("reranker-group", {"query": "q", "hits": [{"content": "c", "label": 1}, {"content": "d", "label": "0"}]},
     "hits.1.label"),
    ("embedding", {"query": "q", "pos": ["p"], "neg": ["n"], "scores": [1.0]}, "scores"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "yo"}]},
     "conversations.1.from"),
    ("alpaca", {"instruction": "i", "outptu": "o"}, "output"),
])
def test_bad_values_name_their_field(tmp_path, kind, row, field):
    err = strict_error(lines(tmp_path / "r.jsonl", [row]), kind)
    assert (err.line, err.field) == (1, field)


def test_label_string_is_rejected_not_coerced(tmp_path):
    err = strict_error(lines(tmp_path / "r.jsonl", [{"query": "q", "content": "c", "label": "1"}]), "reranker-point")
    assert 'field "label"' in str(err) and "'1'" in str(err)


def test_problem_log_collects_every_bad_row_and_keeps_good_ones(tmp_path):
    f = lines(tmp_path / "emb.jsonl", [{"query": "a", "pos": ["p"]}, "{not json", {"query": "b"},
                                       {"query": "c", "pos": ["p"]}, [1, 2]])
    log = ProblemLog()
    good = list(read_records(f, "embedding", log))
    assert [r.query for r in good] == ["a", "c"]
    assert [p.line for p in log.problems] == [2, 3, 5]


@pytest.mark.parametrize("row,kind", [
    ({"instruction": "i", "input": "", "output": "o"}, "alpaca"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}, "sharegpt"),
    ({"conversations": [{"from": "human", "value": "a"}], "chosen": {"from": "gpt", "value": "b"},
      "rejected": {"from": "gpt", "value": "c"}}, "sharegpt-preference"),
    ({"instruction": "i", "chosen": "a", "rejected": "b"}, "preference"),
    ({"instruction": "i", "output": ["a", "b"]}, "preference"),
    ({"query": "q", "pos": ["p"]}, "embedding"),
    ({"query": "q", "content": "c", "label": 1}, "reranker-point"),
    ({"query": "q", "hits": [{"content": "c", "label": 1}]}, "reranker-group"),
])
def test_detect_record_kind_from_first_valid_line(tmp_path, row, kind):
    f = lines(tmp_path / "r.jsonl", ["{broken", row])
    assert detect_record_kind(f) == kind
    assert len(list(read_records(f, "auto", ProblemLog()))) == 1


def test_detect_unknown_fields_reports_them(tmp_path):
    f = lines(tmp_path / "r.jsonl", [{"foo": 1, "bar": 2}])
    with pytest.raises(DataFormatError, match=r"r.jsonl:1: cannot tell the record kind from the fields \(bar, foo\)"):
        detect_record_kind(f)


def test_write_read_round_trip_all_kinds(tmp_path):
    records = {
        "alpaca": [Alpaca(instruction="doc", output="q", system="s"), Alpaca(instruction="d", input="x", output="y")],
        "sharegpt": [ShareGPT(conversations=[Turn(role="human", value="a"), Turn(role="gpt", value="b")])],
        "preference": [Preference(instruction="i", chosen="a", rejected="b")],
        "embedding": [Embedding(query="q", pos=["p"], neg=["n1", "n2"], scores=[1.0, 0.2, 0.1])],
        "reranker-point": [RerankerPoint(query="q", content="c", label=2)],
        "reranker-group": [RerankerGroup(query="q", hits=[Hit(content="c", label=1), Hit(content="d", label=0)])],
    }
    for kind, recs in records.items():
        f = tmp_path / f"{kind}.jsonl"
        assert write_records(f, recs) == len(recs)
        assert list(read_records(f, kind)) == recs
        assert detect_record_kind(f) == kind
    assert json.loads((tmp_path / "alpaca.jsonl").read_text().splitlines()[0]) == {
        "instruction": "doc", "input": "", "output": "q", "system": "s"}  # unset optionals are left out
    assert json.loads((tmp_path / "sharegpt.jsonl").read_text())["conversations"][0] == {"from": "human", "value": "a"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_json_array_files_are_read_with_item_addresses(tmp_path):
    f = tmp_path / "data.json"
    f.write_text(json.dumps([{"instruction": "i", "output": "o"}, {"instruction": "i"}]))
    err = strict_error(f, "alpaca")
    assert str(err).startswith(f'{f}[1]: missing field "output"')
    assert detect_record_kind(f) == "alpaca"


def test_teacher_rows_and_vectors(tmp_path):
    f = tmp_path / "teacher.jsonl"
    write_teacher(f, ["q1", "q2", {"query": "q3"}], np.ones((3, 4), dtype=np.float32))
    queries, vecs = load_teacher(f)
    assert [q.query for q in queries] == ["q1", "q2", "q3"] and vecs.shape == (3, 4)
    assert detect_record_kind(f) == "teacher"  # a bare {query} with its .npy beside it
    assert validate(f).counts == {"teacher rows": 3, "vector dim": 4}
    np.save(tmp_path / "teacher.npy", np.ones((2, 4), dtype=np.float32))
    with pytest.raises(DataFormatError, match="2 vectors but teacher.jsonl has 3 rows") as e:
        list(read_records(f, "teacher"))
    assert e.value.field == "vectors"
    (tmp_path / "teacher.npy").unlink()
    with pytest.raises(DataFormatError, match="teacher vectors not found"):
        load_teacher(f)
    with pytest.raises(ValueError, match="do not match 2 queries"):
        write_teacher(tmp_path / "t2.jsonl", ["a", "b"], np.ones((3, 4)))


def test_counts_for_validation(tmp_path):
    emb = [Embedding(query="q", pos=["p"], neg=["n"]), Embedding(query="r", pos=["p", "p2"], scores=[1.0, 0.5])]
    assert count_records("embedding", emb) == {"embedding rows": 2, "rows with neg": 1, "rows with scores": 1,
                                               "pos passages": 3, "neg passages": 1}
    pts = [RerankerPoint(query="q", content="c", label=x) for x in (0, 2, 1)]
    assert count_records("reranker-point", pts) == {"reranker-point rows": 3, "label min": 0, "label max": 2,
                                                    "labels > 0": 2}


# ---------------------------------------------------------------- dataset_info.json


def test_register_dataset_round_trips_and_keeps_other_entries(tmp_path):
    lines(tmp_path / "a.jsonl", [{"instruction": "i", "output": "o", "system": "s"}])
    lines(tmp_path / "b.jsonl", [{"instruction": "i", "chosen": "a", "rejected": "b"}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({"theirs": {"hf_hub_url": "org/data", "future_key": 1}}))
    register_dataset(tmp_path, "a", "a.jsonl", columns={"prompt": "instruction", "response": "output",
                                                         "system": "system"})
    register_dataset(tmp_path / "dataset_info.json", "b", tmp_path / "b.jsonl", ranking=True)
    register_dataset(tmp_path, "a", "a.jsonl", columns={"prompt": "instruction", "response": "output",
                                                         "system": "system"})  # update in place
    raw = json.loads((tmp_path / "dataset_info.json").read_text())
    assert list(raw) == ["theirs", "a", "b"]
    assert raw["theirs"] == {"hf_hub_url": "org/data", "future_key": 1}  # untouched, even keys ragtune lacks
    assert raw["b"] == {"file_name": "b.jsonl", "formatting": "alpaca", "ranking": True}
    del raw["theirs"]
    (tmp_path / "dataset_info.json").write_text(json.dumps(raw))
    entries = read_dataset_info(tmp_path)
    write_dataset_info(tmp_path / "copy" / "dataset_info.json", entries)
    assert read_dataset_info(tmp_path / "copy") == entries
    assert json.loads((tmp_path / "copy" / "dataset_info.json").read_text()) == raw
    result = validate(tmp_path)
    assert result.ok, [str(p) for p in result.problems.problems]
    assert result.kind == "dataset-info" and result.counts == {"datasets": 2, "a rows": 1, "b rows": 1}


def problems_of(info: dict, tmp_path: Path) -> list[str]:
    (tmp_path / "dataset_info.json").write_text(json.dumps(info, indent=2))
    log = ProblemLog()
    validate_dataset_info(tmp_path / "dataset_info.json", log)
    return [f"{p} [field={p.field}]" for p in log.problems]


def test_dataset_info_entry_errors(tmp_path):
    lines(tmp_path / "d.jsonl", [{"instruction": "i", "output": "o"}])
    found = problems_of({"x": {"file_name": "d.jsonl", "formatting": "sharegtp"},
                         "y": {"file_name": "d.jsonl", "formating": "alpaca"},
                         "z": {"file_name": "missing.jsonl"},
                         "w": {"formatting": "alpaca"}}, tmp_path)
    assert any("dataset_info.json:4:" in p and '"formatting"' in p and "'alpaca' or 'sharegpt'" in p for p in found)
    assert any('unknown key "formating"; did you mean "formatting"?' in p for p in found)
    assert any('dataset_info.json:11: dataset "z": file_name "missing.jsonl" not found' in p for p in found)
    assert any('dataset "w": an entry needs "file_name"' in p for p in found)


def test_column_mappings_validate_renamed_fields(tmp_path):
    lines(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}, {"question": "q2", "answr": "a"}])
    info = {"qa": {"file_name": "qa.jsonl", "columns": {"prompt": "question", "response": "answer",
                                                        "system": "sys"}}}
    found = problems_of(info, tmp_path)
    assert any('qa.jsonl:2: missing field "answer" (found: answr, question)' in p for p in found)
    assert any('unknown field "answr"; did you mean "answer"?' in p for p in found)
    assert any('columns.system names field "sys" but no row' in p for p in found)
    assert not any(":1:" in p for p in found)


def test_sharegpt_tags_and_ranking_columns(tmp_path):
    lines(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                  {"role": "assistant", "content": "yo"}]},
                                    {"messages": [{"role": "user", "content": "hi"},
                                                  {"role": "gpt", "content": "yo"}]}])
    lines(tmp_path / "rank.jsonl", [{"instruction": "i", "answers": ["good", "bad"]},
                                    {"instruction": "i", "answers": ["one"]}])
    found = problems_of({
        "chat": {"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                 "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                          "assistant_tag": "assistant"}},
        "rank": {"file_name": "rank.jsonl", "ranking": True, "columns": {"response": "answers"}},
    }, tmp_path)
    assert len(found) == 2, found
    assert 'chat.jsonl:2: unknown role "gpt"' in found[0] and "[field=messages.1.role]" in found[0]
    assert "rank.jsonl:2:" in found[1] and '"answers" of a ranking row' in found[1]


def test_unmapped_system_column_is_reported(tmp_path):
    lines(tmp_path / "d.jsonl", [{"instruction": "i", "output": "o", "system": "be brief"}])
    found = problems_of({"d": {"file_name": "d.jsonl"}}, tmp_path)
    assert len(found) == 1 and "LLaMA-Factory ignores it" in found[0]


# ---------------------------------------------------------------- CLI


def test_cli_validate_corrupted_records_exits_1_with_lines(tmp_path):
    f = lines(tmp_path / "emb.jsonl", [{"query": "a", "pos": ["p"]}, {"query": "b", "neg": ["n"]},
                                       {"query": "c", "pos": ["p"]}, {"query": "d", "pos": "p"}])
    res = runner.invoke(app, ["data", "validate", str(f)])
    assert res.exit_code == 1
    assert f'{f}:2: missing field "pos"' in res.output
    assert f'{f}:4: field "pos"' in res.output
    assert "2 problem(s)" in res.output and "Traceback" not in res.output
    ok = lines(tmp_path / "ok.jsonl", [{"query": "a", "pos": ["p"], "neg": ["n"]}])
    res = runner.invoke(app, ["data", "validate", str(ok), "--format", "embedding"])
    assert res.exit_code == 0, res.output
    assert "rows with neg" in res.output
    res = runner.invoke(app, ["data", "validate", str(ok), "--format", "reranker-point"])
    assert res.exit_code == 1 and "missing field" in res.output
