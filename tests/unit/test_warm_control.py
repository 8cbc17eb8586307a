"""benchmarks/warm_control.py: the control keeps every record but round 1's new pseudo queries, in order."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import warm_control  # noqa: E402


def test_the_control_leaves_out_exactly_round_1s_new_queries(tmp_path):
    ids = ["12", "pq0-5-0", "pq1-7-1", "40", "pq1-9-0", "pq10-3-0"]
    (tmp_path / "mined_negatives.jsonl").write_text("".join(json.dumps({"query_id": q}) + "\n" for q in ids))
    (tmp_path / "embedding.jsonl").write_text("".join(json.dumps({"query": f"text of {q}"}) + "\n" for q in ids))
    n = warm_control.without_new_queries(tmp_path / "embedding.jsonl", tmp_path / "out" / "train.jsonl")
    kept = [json.loads(line)["query"] for line in (tmp_path / "out" / "train.jsonl").open()]
    assert n == 4 and kept == ["text of 12", "text of pq0-5-0", "text of 40", "text of pq10-3-0"]
