"""The difficulty filter (keep the queries a trained retriever finds inside a band) and its place in `ragtune run`."""

from __future__ import annotations

import pytest

from ragtune.config import ConfigError, load_config
from ragtune.data.beir import load_beir
from ragtune.evaluate.difficulty import score_difficulty
from ragtune.filters.base import Candidate
from ragtune.filters.difficulty import DifficultyFilter, DifficultyFilterConfig, select
from ragtune.pipeline.loop import RunConfig
from ragtune.pipeline.loop_rounds import run_filters
from ragtune.retrieval.dense import DenseConfig, DenseRetriever


def _candidates(spec: list[tuple[str, str]]) -> list[Candidate]:
    return [Candidate(q, d, f"query {q}") for q, d in spec]


def test_band_keeps_the_candidates_nearest_the_centre_up_to_per_document():
    cs = _candidates([("a", "x"), ("b", "x"), ("c", "x"), ("d", "x"), ("e", "y"), ("f", "y"), ("g", "z")])
    values = [0.31, 0.52, 0.66, 0.95, 0.05, 0.45, 0.70]
    cfg = DifficultyFilterConfig(model="m", band=(0.3, 0.7))
    assert sorted(cs[i].query_id for i in select(cs, values, cfg)) == ["a", "b", "c", "f", "g"]  # bounds inclusive
    capped = DifficultyFilterConfig(model="m", band=(0.3, 0.7), per_document=2)
    # x: b (0.02 from the centre) and c (0.16) beat a (0.19); y and z keep their one in-band query
    assert sorted(cs[i].query_id for i in select(cs, values, capped)) == ["b", "c", "f", "g"]


def test_random_control_keeps_as_many_per_document_as_band_drawn_from_all_and_is_seeded():
    cs = _candidates([(f"q{i}", f"d{i % 5}") for i in range(40)])
    values = [(i * 0.137) % 1 for i in range(40)]
    band = DifficultyFilterConfig(model="m", per_document=2)
    kept_band = select(cs, values, band)
    per_doc = {}
    for i in kept_band:
        per_doc[cs[i].doc_id] = per_doc.get(cs[i].doc_id, 0) + 1
    draws = []
    for seed in (0, 1, 2):
        rnd = select(cs, values, band.model_copy(update={"select": "random", "seed": seed}))
        got = {}
        for i in rnd:
            got[cs[i].doc_id] = got.get(cs[i].doc_id, 0) + 1
        assert got == per_doc  # the same count for every document
        draws.append(rnd)
    assert select(cs, values, band.model_copy(update={"select": "random", "seed": 1})) == draws[1]
    assert len({frozenset(d) for d in draws}) > 1  # the seed changes the draw
    assert any(not 0.3 <= values[i] <= 0.7 for d in draws for i in d)  # drawn from all, not from the band


def test_gap_keeps_the_largest_gaps_per_document_and_random_can_match_its_counts():
    cs = _candidates([("a", "x"), ("b", "x"), ("c", "x"), ("d", "y"), ("e", "y"), ("f", "z")])
    values = [0.5] * 6  # all inside the band: the band would keep every one
    gaps = [0.0, 0.5, 0.9, 0.0, 0.0, 0.25]
    cfg = DifficultyFilterConfig(model="m", select="gap", per_document=1)
    assert sorted(cs[i].query_id for i in select(cs, values, cfg, gaps)) == ["c", "f"]  # y has no gap: none kept
    assert len(select(cs, values, cfg.model_copy(update={"per_document": None}), gaps)) == 3
    for seed in range(5):
        rnd = select(cs, values, cfg.model_copy(update={"select": "random", "count_like": "gap", "seed": seed}), gaps)
        assert sorted(cs[i].doc_id for i in rnd) == ["x", "z"]
    with pytest.raises(ValueError, match="one gap per candidate"):
        select(cs, values, cfg)


def test_gap_filter_measures_bm25_against_the_retriever(tiny_beir, tiny_bert):
    corpus = load_beir(tiny_beir, splits=[]).corpus
    cs = [Candidate("a", "d1", "comet tail sun"), Candidate("b", "d2", "bread yeast"),
          Candidate("c", "d5", "violin bow string"), Candidate("d", "d6", "galaxies light"),
          Candidate("e", "d4", "bond prices"), Candidate("f", "d3", "enzymes proteins")]
    f = DifficultyFilter(DifficultyFilterConfig(model=str(tiny_bert), select="gap"), corpus)
    _, ranks = f.difficulties(cs)
    from ragtune.filters.rank import source_ranks
    from ragtune.retrieval.bm25 import BM25Retriever

    bm25 = BM25Retriever()
    bm25.index(corpus.values())
    b_ranks = source_ranks(bm25.search({c.query_id: c.text for c in cs}, k=len(corpus)), cs)
    expected = [max(0.0, (1 / b if b else 0) - (1 / r if r else 0)) for b, r in zip(b_ranks, ranks, strict=True)]
    assert any(e > 0 for e in expected)  # the tiny random encoder ranks some source below BM25
    verdicts = f(cs)
    assert [v.values["gap"] for v in verdicts] == pytest.approx(expected, abs=1e-6)
    assert [v.kept for v in verdicts] == [e > 0 for e in expected]


def test_filter_scores_with_the_named_retriever_and_keeps_what_lies_in_the_band(tiny_beir, tiny_bert):
    corpus = load_beir(tiny_beir, splits=[]).corpus
    cs = [Candidate("a", "d1", "comet tail sun"), Candidate("b", "d2", "bread yeast"),
          Candidate("c", "d3", "violin bow string"), Candidate("d", "d4", "galaxies light")]
    dense = DenseRetriever(DenseConfig(model=str(tiny_bert), cache=False))
    dense.index(corpus.values())
    run = dense.search({c.query_id: c.text for c in cs}, k=6)
    expected = score_difficulty(run, {c.query_id: c.doc_id for c in cs}, depth=6)
    values = sorted(d.difficulty for d in expected.values())
    lo, hi = values[1], values[2]  # a band around the middle two
    verdicts = DifficultyFilter(DifficultyFilterConfig(model=str(tiny_bert), band=(lo, hi)), corpus)(cs)
    for c, v in zip(cs, verdicts, strict=True):
        assert v.values["difficulty"] == pytest.approx(expected[c.query_id].difficulty, abs=1e-5)
        assert v.kept == (lo <= expected[c.query_id].difficulty <= hi)
    assert sum(v.kept for v in verdicts) >= 2


def test_filter_without_a_model_outside_the_loop_is_refused(tiny_beir):
    corpus = load_beir(tiny_beir, splits=[]).corpus
    with pytest.raises(ValueError, match="needs `model`"):
        DifficultyFilter(DifficultyFilterConfig(), corpus)


def _run_cfg(*overrides: str) -> RunConfig:
    return load_config(RunConfig, None, ["rounds=2", "encoder=org/enc", "difficulty_temperature=0.2",
                                         "filters=[{name: bm25, k: 10}, {name: difficulty, per_document: 1}]",
                                         *overrides])


def test_in_the_loop_it_judges_with_the_previous_rounds_retriever_from_round_1_on(tmp_path):
    cfg = _run_cfg()
    assert [f.name for f in run_filters(cfg, None)] == ["bm25"]  # round 0: no retriever yet, no difficulty filter
    model = tmp_path / "round-0" / "retriever" / "model"
    bm25, diff = run_filters(cfg, model)
    assert (diff.model, diff.kind, diff.temperature, diff.per_document) == (str(model), "bi_encoder", 0.2, 1)
    named = _run_cfg("filters=[{name: difficulty, model: org/judge, temperature: 0.05}]")
    assert [(f.model, f.temperature) for f in run_filters(named, None)] == [("org/judge", 0.05)]
    assert diff.band == (0.3, 0.7)
    banded = _run_cfg("preferences={band: [0.2, 0.6]}")  # the loop reward's band, unless the filter names its own
    assert run_filters(banded, model)[1].band == (0.2, 0.6)
    own = _run_cfg("preferences={band: [0.2, 0.6]}",
                   "filters=[{name: difficulty, per_document: 1, band: [0.4, 0.9]}]")
    assert run_filters(own, model)[0].band == (0.4, 0.9)


def test_a_run_that_could_never_apply_it_or_cannot_sample_candidates_is_refused():
    with pytest.raises(ConfigError, match="rounds >= 2"):
        _run_cfg("rounds=1")
    with pytest.raises(ConfigError, match="query_per_document"):
        _run_cfg("candidates_per_document=4", "generate={sampling: {do_sample: false}}")
    assert _run_cfg("candidates_per_document=4").candidates_per_document == 4


def test_the_filter_report_names_the_selection_a_random_control_counts_like():
    from ragtune.filters.run import _settings

    gap = _settings(DifficultyFilterConfig(model="runs/x/round-0/retriever/model", select="random", count_like="gap"))
    assert "select=random" in gap and "count_like=gap" in gap
    assert "band" not in gap
    by_gap = _settings(DifficultyFilterConfig(model="m", select="gap", per_document=2))
    assert "count_like" not in by_gap and "band" not in by_gap and "select=gap" in by_gap
    assert "band=(0.3, 0.7)" in _settings(DifficultyFilterConfig(model="m", select="random"))
