"""benchmarks/unlabeled_round2.py: every row is a valid unlabeled run config, and the table compares a round-2 row
with its own round 1, zero-shot and the row it extends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import unlabeled_round2 as ur  # noqa: E402


@pytest.mark.parametrize("row", ur.ROWS, ids=lambda r: r.name)
def test_every_row_is_a_valid_unlabeled_run_config(row, monkeypatch):
    from ragtune.config import load_config
    from ragtune.pipeline.loop import RunConfig

    monkeypatch.chdir(REPO)
    cfg = load_config(RunConfig, ur.CONFIG, list(row.overrides))
    assert cfg.unlabeled and cfg.rounds == (2 if row.last_round == "round-1" else 1)
    assert (row.parent is None) == (row.versus is None) and (row.parent is None or row.parent in ur.BY_NAME)


def _run(folder: Path, rounds: list[list[float]], finished: bool = True) -> None:
    """A run folder: each round's per_query.tsv, the report.json a run leaves when it ends, a manifest."""
    report = []
    for k, scores in enumerate(rounds):
        p = folder / f"round-{k}" / "evaluate" / "per_query.tsv"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("query-id\tndcg@10\trecall@100\n" + "".join(f"q{i}\t{s}\t1.0\n" for i, s in enumerate(scores)))
        provenance = folder / f"round-{k}" / "filter" / "provenance.jsonl"
        provenance.parent.mkdir(parents=True, exist_ok=True)
        judged = [0.5, 0.1, 0.3] if k else [None, None]  # round 1 ran a difficulty filter; the unkept 0.9 not counted
        provenance.write_text("".join(json.dumps({"filters": {"kept": True, "difficulty": d}}) + "\n" for d in judged)
                              + json.dumps({"filters": {"kept": False, "difficulty": 0.9}}) + "\n")
        report.append({"filter": {"kept": 100 * (k + 1)}, "quality": {"band": [0.3, 0.7]},
                       "evaluate": {"vs_zero_shot": {"ndcg@10": {"delta": 0.02, "p_value": 0.004}}},
                       "guard": {"delta": 0.01, "ships": "trained"}})
    if finished:
        (folder / "report.json").write_text(json.dumps({"rounds": report}))
    stages = {"data": 60, "baselines": 60, "round-0/generate": 300, "round-0/difficulty": 6000,
              "round-1/retriever": 120 * (len(rounds) - 1)}
    (folder / "manifest.json").write_text(json.dumps({"stages": {k: {"seconds": v} for k, v in stages.items()}}))


def test_table_compares_round_2_with_its_own_round_1_and_skips_unfinished_rows(tmp_path, capsys):
    _run(tmp_path / "round1", [[0.5, 0.6, 0.4, 0.7]])
    _run(tmp_path / "round2", [[0.5, 0.6, 0.4, 0.7], [0.6, 0.72, 0.49, 0.8]])
    _run(tmp_path / "select", [[0.5, 0.6, 0.4, 0.7], [0.6, 0.7, 0.5, 0.8]], finished=False)
    ur.table(tmp_path, [r.name for r in ur.ROWS])
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")]
             for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    first, second = lines[ur.BY_NAME["round1"].label], lines[ur.BY_NAME["round2"].label]
    assert first[2:5] == ["0.5500", "+0.0200, p = 0.004", ""] and first[-2] == "7"  # difficulty does not count
    delta, p = second[4].split(", p = ")
    assert delta == "+0.1025" and float(p) < 0.01 and second[5].endswith("(vs round1)")
    assert second[6:9] == ["200", "0.30, 67%", "+0.0100 -> trained"] and second[-2] == "9"
    assert first[7] == ""  # no difficulty filter judged round 0's queries
    assert lines[ur.BY_NAME["select"].label][2] == "not run"


def test_a_seed_run_starts_from_its_parents_seed_run_and_the_seed_table_averages_over_seeds(tmp_path, capsys,
                                                                                          monkeypatch):
    ran = []
    monkeypatch.setattr(ur, "run", lambda work, row, extra: ran.append((row.name, row.overrides[-1])))
    _run(tmp_path / "select", [[0.5, 0.6, 0.4, 0.7], [0.6, 0.7, 0.5, 0.8]])
    (tmp_path / "select" / "queries-of-select").write_text("")
    ur.run_seed(tmp_path, ur.BY_NAME["select"], 1, [])  # no round1-seed1: copied from the row itself
    assert (tmp_path / "select-seed1" / "queries-of-select").is_file()
    _run(tmp_path / "select-seed1", [[0.4, 0.5, 0.3, 0.6], [0.6, 0.7, 0.5, 0.8]])
    (tmp_path / "select-seed1" / "judge-of-seed1").write_text("")
    ur.run_seed(tmp_path, ur.BY_NAME["select_random"], 1, [])  # the band row's seed run holds seed 1's round 0
    assert (tmp_path / "select_random-seed1" / "judge-of-seed1").is_file()
    assert ran == [("select-seed1", "retriever.seed=1"), ("select_random-seed1", "retriever.seed=1")]
    ur.seed_table(tmp_path, [1])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| round 2"))
    cells = [c.strip() for c in line.split("|")]
    assert cells[2:5] == ["0.6500", "0.6500", "0.6500"] and cells[5].startswith("+0.1500, p = ")
    assert cells[6] == ""  # the row it extends (round2) has no seed runs
