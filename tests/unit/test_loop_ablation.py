"""benchmarks/loop_ablation.py: every row is a valid run config, and the table reads the run folders it names."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import loop_ablation as la  # noqa: E402


@pytest.mark.parametrize("row", la.ROWS, ids=lambda r: r.name)
def test_every_row_is_a_valid_run_config(row, monkeypatch):
    from ragtune.config import load_config
    from ragtune.pipeline.loop import RunConfig

    monkeypatch.chdir(REPO)
    cfg = load_config(RunConfig, la.CONFIG, la.COMMON + row.overrides)
    assert cfg.rounds == (2 if row.evaluate.startswith("round-1") else 1)
    assert la.EXTENDS[row.name] is None or la.EXTENDS[row.name] in la.BY_NAME


def _per_query(path: Path, scores: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("query-id\tndcg@10\trecall@100\n" + "".join(f"q{i}\t{s}\t1.0\n" for i, s in enumerate(scores)))


def test_table_compares_rows_and_counts_only_the_stages_a_row_depends_on(tmp_path, capsys):
    base = tmp_path / "base"
    _per_query(base / "train_only" / "evaluate" / "per_query.tsv", [0.2, 0.4, 0.3, 0.5, 0.1, 0.6])
    _per_query(base / "round-0" / "evaluate" / "per_query.tsv", [0.3, 0.5, 0.45, 0.6, 0.2, 0.7])
    stages = {"data": 1, "baselines": 60, "train_only": 120, "round-0/sft": 300, "round-0/generate": 200,
              "round-0/retriever": 100, "round-0/evaluate": 59, "round-0/difficulty": 1000, "round-1/sft": 5000}
    (base / "manifest.json").write_text(json.dumps({"stages": {k: {"seconds": v} for k, v in stages.items()}}))
    assert la.wall_seconds(base, la.BY_NAME["train_only"]) == 181
    assert la.wall_seconds(base, la.BY_NAME["base"]) == 720  # not difficulty (after evaluation), not round 1
    la.table(tmp_path, ["train_only", "bm25", "base"])
    out = capsys.readouterr().out
    lines = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("|")}
    assert "not run" in lines["+ BM25 filter"]
    base_line = [c.strip() for c in next(v for k, v in lines.items() if k.startswith("+ dense")).split("|")]
    assert base_line[2] == "0.4583" and base_line[6] == "12"
    assert float(base_line[4]) < 0.001  # every query gains 0.1 or so over train pairs only
    assert base_line[5] == ""  # the row it extends (bm25) has not run
