import json

import pytest
from scipy.stats import ttest_rel
from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


def test_validate_ok_and_corrupt(tiny_beir):
    ok = runner.invoke(app, ["data", "validate", str(tiny_beir)])
    assert ok.exit_code == 0, ok.output
    assert "docs" in ok.output and "6" in ok.output
    corpus = tiny_beir / "corpus.jsonl"
    corpus.write_bytes(corpus.read_bytes().replace(b'"_id": "d2"', b'"id": "d2"'))
    bad = runner.invoke(app, ["data", "validate", str(tiny_beir)])
    assert bad.exit_code == 1
    assert 'corpus.jsonl:2: missing field "_id"' in bad.output
    assert "Traceback" not in bad.output


def test_eval_bm25_writes_outputs_and_json(tiny_beir, tmp_path):
    out = tmp_path / "ev"
    res = runner.invoke(app, ["eval", "--data", str(tiny_beir), "--split", "test", "--retriever", "bm25",
                              "--metrics", "ndcg@10,recall@100", "--out", str(out), "--json",
                              str(tmp_path / "s.json"), "--set", "bm25.k1=0.9"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["dataset"] == "tiny" and summary["split"] == "test" and summary["num_queries"] == 3
    assert set(summary["metrics"]) == {"ndcg@10", "recall@100"} and summary["metrics"]["recall@100"] > 0
    for name in ["run.trec", "per_query.tsv", "metrics.json", "config.yaml"]:
        assert (out / name).exists(), name
    assert "k1: 0.9" in (out / "config.yaml").read_text()
    assert (tmp_path / "s.config.yaml").exists()
    per_query = (out / "per_query.tsv").read_text().splitlines()
    assert per_query[0] == "query-id\tndcg@10\trecall@100" and len(per_query) == 4


def test_eval_scores_a_given_run_and_compare(tiny_beir, tmp_path):
    from ragtune.data.trec import write_run

    good = {"q4": {"d4": 2.0, "d1": 1.0}, "q5": {"d5": 1.0}, "q6": {"d6": 1.0}}
    bad = {"q4": {"d1": 2.0, "d4": 1.0}, "q5": {"d2": 1.0, "d5": 0.5}, "q6": {"d2": 1.0}}
    write_run(tmp_path / "good.trec", good)
    write_run(tmp_path / "bad.trec", bad)
    res = runner.invoke(app, ["eval", "--data", str(tiny_beir), "--run", str(tmp_path / "good.trec"),
                              "--metrics", "mrr@10", "--json", str(tmp_path / "g.json"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "g.json").read_text())["metrics"]["mrr@10"] == 1.0
    cmp = runner.invoke(app, ["eval", "compare", str(tmp_path / "bad.trec"), str(tmp_path / "good.trec"),
                              "--data", str(tiny_beir), "--metrics", "mrr@10", "--json", str(tmp_path / "c.json")])
    assert cmp.exit_code == 0, cmp.output
    result = json.loads((tmp_path / "c.json").read_text())["metrics"]["mrr@10"]
    # per-query MRR@10 by hand: good ranks every relevant document first; bad finds q4's and q5's second, q6's never
    good_rr, bad_rr = [1.0, 1.0, 1.0], [0.5, 0.5, 0.0]
    assert result["mean_b"] == 1.0 and result["delta"] == pytest.approx(1.0 - 1.0 / 3)
    assert result["p_value"] == pytest.approx(ttest_rel(bad_rr, good_rr).pvalue, rel=1e-9)
    cmp = runner.invoke(app, ["eval", "compare", str(tmp_path / "bad.trec"), str(tmp_path / "good.trec"),
                              "--data", str(tiny_beir), "--metrics", "mrr@10,recall@1",
                              "--json", str(tmp_path / "c.json")])
    family = json.loads((tmp_path / "c.json").read_text())
    p = [family["metrics"][m]["p_value"] for m in ("mrr@10", "recall@1")]
    assert family["comparisons"] == 2 and "p Holm (2 tests)" in cmp.output
    lo, hi = sorted(p)  # Holm for two tests: the smaller p doubled, the larger kept but never below the first
    assert sorted(family["metrics"][m]["p_holm"] for m in ("mrr@10", "recall@1")) == pytest.approx(
        [min(1.0, 2 * lo), min(1.0, max(2 * lo, hi))])


def test_eval_user_errors_exit_1_without_traceback(tiny_beir, tmp_path):
    cases = [
        ["eval", "--data", str(tiny_beir), "--retriever", "bm2"],
        ["eval", "--data", str(tiny_beir), "--split", "dev"],
        ["eval", "--data", str(tmp_path / "missing")],
        ["eval", "--data", str(tiny_beir), "--set", "bm25.k11=1"],
        ["eval", "--data", str(tiny_beir), "--retriever", "dense", "--model", "no/such-model-xyz"],
    ]
    expected = ['allowed values: bm25, dense, colbert, run', 'split "dev" not found', "not a directory",
                'did you mean "bm25.k1"', "not found"]
    for args, text in zip(cases, expected, strict=True):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, (args, res.output)
        assert text in res.output, (args, res.output)
        assert "Traceback" not in res.output
