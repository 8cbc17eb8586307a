import json
import tempfile
from pathlib import Path

import pytest

from ragtune.evaluate.difficulty import curriculum, example_weights, score_difficulty
from ragtune.train.generator.preferences import PreferenceConfig, build_pairs, write_pairs


def test_difficulty_orders_easy_medium_hard():
    run = {"easy": {"d1": 0.9, "d2": 0.2}, "medium": {"d2": 0.6, "d1": 0.55, "d3": 0.1},
           "hard": {"d2": 0.9, "d3": 0.8}}
    diff = score_difficulty(run, {"easy": "d1", "medium": "d1", "hard": "d1", "absent": "d1"}, depth=3)
    assert diff["easy"].rank == 1 and diff["easy"].margin == pytest.approx(0.7)
    assert diff["medium"].rank == 2 and diff["medium"].margin == pytest.approx(-0.05)
    assert diff["hard"].rank is None and diff["absent"].rank is None
    values = [diff[q].difficulty for q in ["easy", "medium", "hard"]]
    assert values == sorted(values) and 0 <= values[0] < 0.05 and values[-1] > 0.85
    assert curriculum(diff, "easy_to_hard")[:2] == ["easy", "medium"]
    assert curriculum(diff, "hard_to_easy")[-2:] == ["medium", "easy"]
    assert curriculum(diff, "band", (0.3, 0.8)) == ["medium"]
    w = example_weights(diff, target=diff["medium"].difficulty)
    assert w["medium"] == max(w.values()) and sum(w.values()) / len(w) == pytest.approx(1.0)


def _rows():
    def row(q, doc, d, rank, kept=True):
        return {"query_id": q, "doc_id": doc, "failed": False, "filters": {"kept": kept},
                "difficulty": {"rank": rank, "difficulty": d}}

    return [row("a", "d1", 0.02, 1), row("b", "d1", 0.5, 3), row("c", "d1", 0.97, None, kept=False),
            row("e", "d2", 0.4, 2), row("f", "d2", 0.45, 2), {"query_id": "x", "doc_id": "d2", "failed": True}]


def test_pairs_follow_the_criterion():
    texts = {q: f"query {q}" for q in "abcef"}
    prompts = {"d1": "Write a query for: doc one", "d2": "Write a query for: doc two"}
    band = build_pairs(_rows(), texts, prompts, PreferenceConfig(criterion="difficulty_band", band=(0.3, 0.7)))
    as_set = {(p["chosen"], p["rejected"]) for p in band}
    assert ("query b", "query a") in as_set and ("query b", "query c") in as_set
    assert all(p["doc_id"] == "d1" for p in band)  # e and f are both inside the band: a tie, no pair
    by_rank = build_pairs(_rows(), texts, prompts, PreferenceConfig(criterion="rank"))
    assert ("query a", "query b") in {(p["chosen"], p["rejected"]) for p in by_rank}
    by_filter = build_pairs(_rows(), texts, prompts, PreferenceConfig(criterion="filter"))
    assert {(p["chosen"], p["rejected"]) for p in by_filter} == {("query a", "query c"), ("query b", "query c")}


def test_pairs_written_in_llamafactory_and_trl_formats(tmp_path):
    from ragtune.data.dataset_info import read_dataset_info
    from ragtune.data.formats import read_records

    texts = {q: f"query {q}" for q in "abcef"}
    prompts = {"d1": "doc one", "d2": "doc two"}
    pairs = build_pairs(_rows(), texts, prompts, PreferenceConfig(criterion="filter"))
    counts = write_pairs(tmp_path, pairs, PreferenceConfig(criterion="filter", heldout_fraction=0.0))
    assert counts["train pairs"] == 2 and counts["heldout pairs"] == 0
    lf = [json.loads(x) for x in (tmp_path / "preferences_train.jsonl").read_text().splitlines()]
    assert lf[0]["output"][1] == "query c" and lf[0]["instruction"] == "doc one"
    trl = [json.loads(x) for x in (tmp_path / "preferences_train.trl.jsonl").read_text().splitlines()]
    assert set(trl[0]) == {"prompt", "chosen", "rejected"}
    info = read_dataset_info(tmp_path / "dataset_info.json")
    assert info["preferences_train"].ranking is True
    assert len(list(read_records(tmp_path / "preferences_train.jsonl", "preference"))) == 2


def test_lexicographic_pairs_decide_by_the_first_differing_criterion():
    texts = {q: f"query {q}" for q in "abcef"}
    prompts = {"d1": "doc one", "d2": "doc two"}
    cfg = PreferenceConfig(criterion=["filter", "difficulty_band", "rank"], band=(0.3, 0.7), min_gap=0.01)
    pairs = {(p["chosen"], p["rejected"]): p["decided_by"] for p in build_pairs(_rows(), texts, prompts, cfg)}
    # c was dropped by the filters: it loses to both kept queries whatever its difficulty
    assert pairs[("query a", "query c")] == "filter" and pairs[("query b", "query c")] == "filter"
    # a and b were both kept: b is inside the band, a (difficulty 0.02) is not
    assert pairs[("query b", "query a")] == "difficulty_band"
    # e and f are kept, both inside the band, ranked 2 both: a tie on every criterion makes no pair
    assert not any("query e" in p and "query f" in p for p in pairs)
    rows = _rows()
    rows[4]["difficulty"]["rank"] = 1  # f now ranked first: the rank decides between e and f
    pairs = {(p["chosen"], p["rejected"]): p["decided_by"] for p in build_pairs(rows, texts, prompts, cfg)}
    assert pairs[("query f", "query e")] == "rank"
    counts = write_pairs(Path(tempfile.mkdtemp()), build_pairs(rows, texts, prompts, cfg), cfg)
    assert counts["decided_by"] == {"filter": 2, "difficulty_band": 1, "rank": 1}
