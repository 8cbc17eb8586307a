import json

import numpy as np
import pytest
import torch

from ragtune.atomic import write_jsonl
from ragtune.data.beir import load_beir, load_queries, write_beir
from ragtune.filters.base import Candidate, load_pseudo_queries
from ragtune.filters.bm25 import BM25Filter, BM25FilterConfig
from ragtune.filters.dense import DenseFilterConfig
from ragtune.filters.lossnet import LossNet, LossNetFilterConfig, margin_ranking_loss, select_by_loss
from ragtune.filters.run import FilterConfig, run_filter


def _pseudo(folder, corpus_ids_and_queries):
    queries = {f"p{i}": q for i, (_, q) in enumerate(corpus_ids_and_queries)}
    qrels = {f"p{i}": {d: 1} for i, (d, _) in enumerate(corpus_ids_and_queries)}
    write_beir(folder, None, queries, {"train": qrels})
    rows = [{"query_id": f"p{i}", "doc_id": d, "round": 0, "filters": {}, "difficulty": None, "failed": False}
            for i, (d, _) in enumerate(corpus_ids_and_queries)]
    rows.append({"query_id": "pX", "doc_id": "d1", "round": 0, "filters": {}, "failed": True, "reason": "empty"})
    write_jsonl(folder / "provenance.jsonl", rows)
    return folder


def test_bm25_filter_keeps_copied_query_and_drops_off_topic_one(tiny_beir):
    corpus = load_beir(tiny_beir, splits=[]).corpus
    f = BM25Filter(BM25FilterConfig(k=1), corpus)
    copied = Candidate("a", "d5", "The violin is a string instrument played with a bow.")
    off_topic = Candidate("b", "d5", "sourdough bread wild yeast fermentation")
    v = f([copied, off_topic])
    assert v[0].kept and v[0].values["bm25_rank"] == 1
    assert not v[1].kept and v[1].values["bm25_rank"] != 1


def test_bm25_filter_sample_always_contains_source(tiny_beir):
    corpus = load_beir(tiny_beir, splits=[]).corpus
    f = BM25Filter(BM25FilterConfig(k=1, sample_doc_num=2, seed=3), corpus)
    v = f([Candidate("a", "d3", "enzymes proteins catalyse reactions cell")])
    assert v[0].kept and v[0].values["bm25_rank"] == 1


def test_filters_compose_in_order_and_report_adds_up(tiny_beir, tiny_bert, tmp_path):
    pairs = [("d1", "comet orbits the sun with a bright tail"), ("d2", "sourdough bread wild yeast"),
             ("d3", "bond prices market interest"),  # about d4, attributed to d3: BM25 drops it
             ("d4", "bond prices interest rates"), ("d5", "violin string instrument bow"),
             ("d6", "telescopes collect light from galaxies")]
    folder = _pseudo(tmp_path / "pseudo", pairs)
    cfg = FilterConfig(queries=folder, corpus=tiny_beir, out=tmp_path / "out", show_progress=False,
                       filters=[BM25FilterConfig(k=1),
                                DenseFilterConfig(k=6, dense={"model": str(tiny_bert), "cache": False})])
    report = run_filter(cfg)
    s = report["filters"]
    assert [x["name"] for x in s] == ["bm25", "dense"]
    assert s[0]["in"] == 6 and s[0]["out"] == 5 and s[1]["in"] == 5 and s[1]["out"] == 5  # k=6 keeps all
    assert report["kept"] == 5 and report["failed_at_generation"] == 1
    assert s[0]["dropped_examples"][0]["query_id"] == "p2"
    kept = load_queries(tmp_path / "out")
    assert set(kept) == {"p0", "p1", "p3", "p4", "p5"}
    prov = [json.loads(line) for line in (tmp_path / "out" / "provenance.jsonl").read_text().splitlines()]
    assert len(prov) == 7  # every candidate plus the generation failure, none lost
    by_id = {r["query_id"]: r for r in prov}
    assert by_id["p2"]["filters"]["dropped_by"] == "bm25" and by_id["p2"]["filters"]["kept"] is False
    assert "dense_rank" not in by_id["p2"]["filters"]  # later filters never saw it
    assert by_id["p0"]["filters"]["kept"] is True and by_id["p0"]["filters"]["bm25_rank"] == 1
    assert by_id["p0"]["filters"]["dense_rank"] >= 1
    assert by_id["pX"]["failed"] is True and by_id["pX"]["filters"] == {}
    md = (tmp_path / "out" / "filter_report.md").read_text()
    assert "| 1 | bm25 | k=1" in md and "Dropped by bm25" in md
    assert (tmp_path / "out" / "config.yaml").exists()
    assert load_pseudo_queries(tmp_path / "out").candidates[0].query_id == "p0"


def test_margin_ranking_loss_matches_paper_definition():
    pred = torch.tensor([0.0, 1.0, 3.0, 2.0])
    target = torch.tensor([1.0, 2.0, 0.0, 5.0])
    # pairs: (0, 3) and (1, 2) after flipping the second half
    expected = (max(0.0, -np.sign(1 - 5) * (0 - 2) + 1) + max(0.0, -np.sign(2 - 0) * (1 - 3) + 1)) / 2
    assert margin_ranking_loss(pred, target).item() == pytest.approx(expected)


def test_lossnet_learns_to_rank_planted_high_loss_examples():
    """Toy task: 'hard' examples carry a feature signature and a high true loss."""
    torch.manual_seed(0)
    n, hidden = 256, 16

    def batch(n):
        hard = torch.rand(n) < 0.3
        feats = [torch.randn(n, hidden) for _ in range(2)]
        feats[0][hard, :4] += 2.0  # the signature lives in one tapped layer only
        loss = torch.where(hard, 2.0 + torch.rand(n), torch.rand(n))
        return hard, feats, loss

    net = LossNet(hidden // 2, n_layers=2, feature_dim=16)  # blocks see [q, d] = hidden features
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        _, feats, loss = batch(64)
        q = [f[:, : hidden // 2] for f in feats]
        d = [f[:, hidden // 2:] for f in feats]
        opt.zero_grad()
        margin_ranking_loss(net(q, d), loss).backward()
        opt.step()
    hard, feats, _ = batch(n)
    with torch.no_grad():
        pred = net([f[:, : hidden // 2] for f in feats], [f[:, hidden // 2:] for f in feats])
    auc = (pred[hard].unsqueeze(1) > pred[~hard].unsqueeze(0)).float().mean().item()
    assert auc > 0.95


def test_select_by_loss_drops_tail_then_keeps_top():
    scores = np.array([0.1, 5.0, 0.3, 0.2, 4.0, 0.5])
    keep = select_by_loss(scores, keep_fraction=None, keep_top=2, drop_tail=1 / 6)
    assert keep.tolist() == [False, False, False, False, True, True]  # 5.0 dropped as noise; 4.0 and 0.5 kept
    assert select_by_loss(scores, 0.5, None, 0.0).sum() == 3


def test_lossnet_filter_trains_jointly_and_scores_candidates(lossnet_on_tiny, tiny_bert):
    cfg = LossNetFilterConfig(model=str(tiny_bert), batch_size=2, epochs=6, keep_fraction=0.5, lr=1e-3)
    f, _ = lossnet_on_tiny(cfg)
    hist = f.selector.history
    assert len(hist) == 6 and all(np.isfinite(h["lossnet_loss"]) for h in hist)  # 3 train pairs / 2 = 1 step x 6


def test_filter_config_rejects_unknown_filter_name(tiny_beir, tmp_path):
    from ragtune.config import ConfigError, load_config

    base = [f"queries={tmp_path}", f"corpus={tiny_beir}", f"out={tmp_path}/o"]
    expected = (r'key "filters.0.name": got .bm26.; allowed values: bm25, dense, lossnet, score, difficulty; '
                r'did you mean "bm25"')
    with pytest.raises(ConfigError, match=expected):
        load_config(FilterConfig, None, [*base, "filters=[{name: bm26}]"])
    with pytest.raises(ConfigError, match="even size"):
        load_config(FilterConfig, None, [*base, "filters=[{name: lossnet, batch_size: 3}]"])


def test_score_filter_with_cross_encoder_threshold_and_fraction(tiny_beir, tiny_bert, tmp_path):
    from sentence_transformers import CrossEncoder

    from ragtune.filters.score import ScoreFilter, ScoreFilterConfig

    torch.manual_seed(0)
    ce = CrossEncoder(str(tiny_bert.parent / "hf"), num_labels=1, device="cpu")
    ce.save(str(tmp_path / "ce"))
    corpus = load_beir(tiny_beir, splits=[]).corpus
    cands = [Candidate(f"c{i}", d, f"query about {corpus[d].title or 'light'}") for i, d in enumerate(corpus)]
    expected = CrossEncoder(str(tmp_path / "ce"), device="cpu").predict([(c.text, corpus[c.doc_id].content)
                                                                         for c in cands])
    top = ScoreFilter(ScoreFilterConfig(model=str(tmp_path / "ce"), keep_fraction=0.5), corpus)(cands)
    assert [v.values["ce_score"] for v in top] == pytest.approx(expected.tolist(), abs=1e-5)
    kept_scores = sorted(v.values["ce_score"] for v in top if v.kept)
    assert len(kept_scores) == 3 and min(kept_scores) >= max(v.values["ce_score"] for v in top if not v.kept)
    # the random tiny CE scores every pair within 1e-5 of the others, with ties after the filter's rounding:
    # cut between the 2nd and 3rd lowest distinct score the filter reports
    scores = [v.values["ce_score"] for v in top]
    distinct = sorted(set(scores))
    assert len(distinct) >= 3, f"the tiny cross-encoder gives too few distinct scores: {scores}"
    cut = (distinct[1] + distinct[2]) / 2
    thr = ScoreFilter(ScoreFilterConfig(model=str(tmp_path / "ce"), threshold=cut), corpus)(cands)
    assert [v.kept for v in thr] == [s > cut for s in scores]
    assert 0 < sum(v.kept for v in thr) <= len(scores) - 2


def test_filter_cli_writes_report_and_rejects_bad_config(tiny_beir, tmp_path):
    from typer.testing import CliRunner

    from ragtune.cli import app

    folder = _pseudo(tmp_path / "pseudo", [("d1", "comet tail sun"), ("d2", "violin bow")])
    cfg = tmp_path / "f.yaml"
    cfg.write_text(f"queries: {folder}\ncorpus: {tiny_beir}\nout: {tmp_path / 'out'}\nfilters:\n"
                   "  - name: bm25\n    k: 1\n")
    res = CliRunner().invoke(app, ["filter", str(cfg), "show_progress=false"])
    assert res.exit_code == 0, res.output
    assert "kept 1 of 2" in res.output and (tmp_path / "out" / "filter_report.json").exists()
    bad = CliRunner().invoke(app, ["filter", str(cfg), "filters.0.k=0"])
    assert bad.exit_code == 1 and "greater than or equal to 1" in bad.output and "Traceback" not in bad.output
