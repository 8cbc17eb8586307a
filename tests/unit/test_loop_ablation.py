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


def _per_query(path: Path, scores: list[float], finished: bool = True) -> None:
    """A stage's per_query.tsv; `finished` also writes the report.json a run leaves when it ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("query-id\tndcg@10\trecall@100\n" + "".join(f"q{i}\t{s}\t1.0\n" for i, s in enumerate(scores)))
    if finished:  # <run>/<stage or round>/evaluate/per_query.tsv
        (path.parents[2] / "report.json").write_text("{}")


def test_table_compares_rows_and_counts_only_the_stages_a_row_depends_on(tmp_path, capsys):
    base = tmp_path / "base"
    _per_query(base / "train_only" / "evaluate" / "per_query.tsv", [0.2, 0.4, 0.3, 0.5, 0.1, 0.6])
    _per_query(base / "round-0" / "evaluate" / "per_query.tsv", [0.3, 0.5, 0.45, 0.6, 0.2, 0.7])
    stages = {"data": 1, "baselines": 60, "train_only": 120, "round-0/sft": 300, "round-0/generate": 200,
              "round-0/retriever": 100, "round-0/evaluate": 59, "round-0/difficulty": 1000, "round-1/sft": 5000,
              "round-0/rl_eval": 700}
    (base / "manifest.json").write_text(json.dumps({"stages": {k: {"seconds": v} for k, v in stages.items()}}))
    assert la.wall_seconds(base, la.BY_NAME["train_only"]) == 181
    assert la.wall_seconds(base, la.BY_NAME["base"]) == 720  # not difficulty (after evaluation), not round 1
    assert la.wall_seconds(base, la.BY_NAME["round2_ppo"]) == 1720 + 5000  # round 1 counts, rl_eval never
    # a row copied from its parent whose own run has not ended still holds the parent's evaluation
    _per_query(tmp_path / "lossnet" / "round-0" / "evaluate" / "per_query.tsv", [0.3, 0.5, 0.45, 0.6, 0.2, 0.7],
               finished=False)
    la.table(tmp_path, ["train_only", "bm25", "base", "lossnet"])
    out = capsys.readouterr().out
    lines = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("|")}
    assert "not run" in lines["+ BM25 filter"] and "not run" in lines["+ LossNet"]
    base_line = [c.strip() for c in next(v for k, v in lines.items() if k.startswith("+ dense")).split("|")]
    assert base_line[2] == "0.4583" and base_line[7] == "12"
    assert base_line[6] == ""  # a one-round row has no round 1 to compare with
    assert float(base_line[4]) < 0.001  # every query gains 0.1 or so over train pairs only
    assert base_line[5] == ""  # the row it extends (bm25) has not run

    wise = tmp_path / "wise"  # extends base; asked for without it, its p against base is still there
    _per_query(wise / "round-0" / "evaluate" / "per_query.tsv", [0.35, 0.55, 0.5, 0.65, 0.25, 0.75])
    (wise / "manifest.json").write_text((base / "manifest.json").read_text())
    la.table(tmp_path, ["train_only", "wise"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| + WiSE-FT"))
    assert line.split("|")[5].strip().endswith("(vs base)") and float(line.split("|")[5].split()[0]) < 0.001


def test_round2_rows_compare_with_their_own_round_1(tmp_path):
    row = la.BY_NAME["round2_dpo"]
    run = tmp_path / "round2_dpo"
    _per_query(run / "round-0" / "evaluate" / "per_query.tsv", [0.5, 0.5, 0.5, 0.5])
    scores = {"q0": 0.4, "q1": 0.45, "q2": 0.38, "q3": 0.41}
    delta, p = la.vs_round1(tmp_path, row, scores).split(", p = ")
    assert delta == "-0.0900" and float(p) < 0.01
    assert la.vs_round1(tmp_path, la.BY_NAME["base"], scores) == ""


def test_seed_table_reports_the_spread_of_one_row_over_retriever_seeds(tmp_path, capsys):
    for name, scores in (("base", [0.5, 0.7]), ("base-seed1", [0.4, 0.6]), ("base-seed2", [0.6, 0.8])):
        _per_query(tmp_path / name / "round-0" / "evaluate" / "per_query.tsv", scores)
    _per_query(tmp_path / "round2" / "round-1" / "evaluate" / "per_query.tsv", [0.5, 0.5])  # seeds not run
    for name, done in (("bm25", True), ("bm25-seed1", True), ("bm25-seed2", False)):  # seed 2 still running
        _per_query(tmp_path / name / "round-0" / "evaluate" / "per_query.tsv", [0.5, 0.5], finished=done)
    la.seed_table(tmp_path, ["base", "round2", "bm25"], [1, 2])
    la.plot(tmp_path, ["base", "bm25", "lossnet"], [1, 2], tmp_path / "plot" / "ablation.png")
    assert (tmp_path / "plot" / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    la.plot(tmp_path, ["lossnet"], [1, 2], tmp_path / "none.png")  # no row has run: no plot
    assert not (tmp_path / "none.png").exists()
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| +")]
    assert len(rows) == 1
    assert [c.strip() for c in rows[0][2:7]] == ["0.6000", "0.5000", "0.7000", "0.6000", "0.1000"]


def test_round2_rows_are_compared_over_all_seeds_with_their_round_1_and_the_row_they_extend(tmp_path, capsys):
    """Per seed, on the seed-averaged per-query scores and over the seeds' means; a row whose seeds have not all
    finished is left out rather than read from one seed."""
    first = [0.5, 0.6, 0.4, 0.7, 0.55, 0.45]
    for suffix, up, other in (("", 0.03, 0.05), ("-seed1", 0.01, -0.04), ("-seed2", 0.05, 0.0)):
        gap, warm = tmp_path / f"round2_gap_warm{suffix}", tmp_path / f"round2_ance_warm{suffix}"
        for run in (gap, warm):
            _per_query(run / "round-0" / "evaluate" / "per_query.tsv", first)
        _per_query(gap / "round-1" / "evaluate" / "per_query.tsv", [s + up + 0.01 * (i % 2) for i, s in
                                                                      enumerate(first)])
        _per_query(warm / "round-1" / "evaluate" / "per_query.tsv", [s + up - other for s in first])
    _per_query(tmp_path / "round2_grpo_warm" / "round-1" / "evaluate" / "per_query.tsv", first)  # seeds not run
    la.seed_comparisons(tmp_path, ["round2_grpo_warm", "round2_gap_warm"], [1, 2])
    rows = {c[1].strip(): [x.strip() for x in c[2:6]] for c in
            (line.split("|") for line in capsys.readouterr().out.splitlines()[2:])}
    assert set(rows) == {"round2_gap_warm vs its round 1", "round2_gap_warm vs round2_ance_warm"}
    assert rows["round2_gap_warm vs its round 1"][:2] == ["+0.0350, +0.0150, +0.0550", "+0.0350"]
    assert float(rows["round2_gap_warm vs its round 1"][2]) < 0.001  # every query gains at every seed
    assert 0.01 < float(rows["round2_gap_warm vs its round 1"][3]) < 0.2  # three seeds: less sure
    assert rows["round2_gap_warm vs round2_ance_warm"][:2] == ["+0.0550, -0.0350, +0.0050", "+0.0083"]
    assert float(rows["round2_gap_warm vs round2_ance_warm"][3]) > 0.5


def test_diagnostics_show_the_rl_stage_and_what_the_generator_wrote_before_and_after(tmp_path, capsys):
    q0 = {"bm25_top10": 0.80, "retriever_top1": 0.60, "in_band": 0.15, "copy_rate": 0.25, "mean_words": 13.5}
    q1 = {"bm25_top10": 0.90, "retriever_top1": 0.55, "in_band": 0.20, "copy_rate": 0.40, "mean_words": 9.0}
    rounds = [{"filter": {"kept_fraction": 0.74}, "quality": q0,
               "reward_model": {"heldout_accuracy": 0.61, "heldout_ci95": [0.55, 0.67], "heldout_pairs": 250},
               "ppo": {"reward_first": -1.5, "reward_last": -1.2,
                       "curve": [{"reward_mean": r, "kl": 0.0} for r in (-1.5, -1.7, -1.3, -1.3, -1.0, -1.2, -1.0,
                                                                          -1.2)]},
               "rl_eval": {"reward": {"before": 0.5, "after": 0.6, "p_value": 0.0123}}},
              {"filter": {"kept_fraction": 0.80}, "quality": q1}]
    (tmp_path / "round2_ppo").mkdir()
    (tmp_path / "round2_ppo" / "report.json").write_text(json.dumps({"rounds": rounds}))
    grpo = [{**rounds[0], "ppo": None, "grpo": {**rounds[0]["ppo"], "curve": [
        {"reward_mean": r, "kl": 0.0, "flat_groups": f} for r, f in ((0.5, 0.5), (0.6, 0.25), (0.7, None))]}},
        rounds[1]]
    (tmp_path / "round2_gap_warm").mkdir()
    (tmp_path / "round2_gap_warm" / "report.json").write_text(json.dumps({"rounds": grpo}))
    la.diagnostics(tmp_path, ["base", "round2_ppo", "round2_gap_warm"])
    rows = [[c.strip() for c in line.split("|")] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| round2")]
    assert rows[0] == ["", "round2_ppo", "0.610 [0.55, 0.67] n=250",
                       "reward -1.500 -> -1.200 (quarter means -1.600 -> -1.100)",
                       "0.500 -> 0.600 (p = 0.012)", "0.74 -> 0.80",
                       "0.80 -> 0.90", "0.60 -> 0.55", "0.15 -> 0.20", "0.25 -> 0.40", "13.50 -> 9.00", ""]
    assert rows[1][3].endswith(", 38% of groups flat")  # the mean of the logged steps that record it


def test_dev_size_simulation_always_picks_a_model_better_on_every_query_and_never_one_worse():
    import dev_size

    qids = [f"q{i}" for i in range(40)]
    tests = {"low": {q: 0.2 + 0.01 * i for i, q in enumerate(qids)},
             "high": {q: 0.3 + 0.01 * i for i, q in enumerate(qids)},
             "mid": {q: 0.25 + 0.01 * i for i, q in enumerate(qids)}}
    rows = dev_size.simulate(tests, sizes=(1, 10), draws=50)
    assert [r[0] for r in rows] == [1, 10]
    assert all(r[1] == "1.00" and r[2] == "0.00" for r in rows)  # P(picks the best), P(picks the worst)
    assert all(r[6].startswith("+0.0500") for r in rows)  # the best is 0.05 above the mean of the three


def test_dev_size_reads_a_seed_run_only_once_its_own_report_is_written(tmp_path):
    import dev_size

    run = tmp_path / "pca-dev150-seed3"
    (run / "round-0" / "evaluate").mkdir(parents=True)  # copied from its parent, evaluations included
    assert "dev150 seed 3" not in dev_size.runs_of(tmp_path)
    (run / "report.json").write_text("{}")
    assert "dev150 seed 3" in dev_size.runs_of(tmp_path)


def test_dev_size_rescores_a_score_folder_whose_weights_are_not_the_ones_it_scored(tmp_path):
    import shutil

    import dev_size
    from loop_ablation import COPY_IGNORE

    parent = tmp_path / "pca"
    model, scores = parent / "model", parent / "dev-size" / "last-test"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"parent weights")
    assert not dev_size.scored_by(scores, model)  # nothing scored yet: the caller scores
    (scores / "per_query.tsv").write_text("q1\tndcg@10\t0.5\n")
    assert dev_size.scored_by(scores, model)
    child = tmp_path / "pca-dev150-seed5"
    shutil.copytree(parent, child, ignore=COPY_IGNORE)
    assert not (child / "dev-size").exists()  # a seed run's copy leaves its parent's scores behind
    shutil.copytree(parent / "dev-size", child / "dev-size")  # and if they got there anyway (an older copy):
    (child / "model" / "model.safetensors").write_bytes(b"the seed's own weights")
    assert not dev_size.scored_by(child / "dev-size" / "last-test", child / "model")
    assert not (child / "dev-size" / "last-test" / "per_query.tsv").exists()


def test_a_seed_run_starts_from_its_parents_run_with_the_same_seed_where_there_is_one(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(la, "ragtune_run", lambda overrides, out: ran.append((overrides[-1], out.name)))
    row = la.BY_NAME["round2_select_random"]
    for name, text in ((f"{row.parent}-seed1", "parent seed 1"), (row.name, "row, seed 0")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "origin.txt").write_text(text)
        (tmp_path / name / "report.json").write_text("{}")  # a finished run's: never copied into another
    la.run_seeds(tmp_path, row, [1, 2], [])
    assert (tmp_path / f"{row.name}-seed1" / "origin.txt").read_text() == "parent seed 1"
    assert (tmp_path / f"{row.name}-seed2" / "origin.txt").read_text() == "row, seed 0"  # no parent run of seed 2
    assert not list(tmp_path.glob(f"{row.name}-seed*/report.json"))
    assert ran == [("retriever.seed=1", f"{row.name}-seed1"), ("retriever.seed=2", f"{row.name}-seed2")]


def test_rows_run_after_the_row_their_folder_is_copied_from_each_once():
    parent = {"a": None, "b": "a", "c": "b", "d": "a"}
    assert la.parents_first(["c", "d", "b"], parent) == ["a", "b", "c", "d"]
    order = la.parents_first(["round2_select_random"], {r.name: r.parent for r in la.ROWS})
    assert order == ["base", "round2", "round2_select", "round2_select_random"]
