"""The pair-score cache: known pairs are read, only new ones scored, a torn row skipped, another key apart."""

import json

from ragtune.retrieval.score_cache import cached_scores, pair_hash, read_scores, scores_key


def _scorer(calls: list[list[tuple[str, str]]]):
    def score(pairs):
        calls.append(list(pairs))
        return [float(len(q) + len(d)) for q, d in pairs]
    return score


def test_only_pairs_not_yet_scored_reach_the_reranker_in_chunks_and_once_each(tmp_path):
    path = tmp_path / "pair-scores" / f"{scores_key('fp', 'cross_encoder|max_length=None')}.jsonl"
    calls: list = []
    first = [("q", "a"), ("q", "bb"), ("qq", "a")]
    scores, fresh = cached_scores(path, first, _scorer(calls), chunk=2)
    assert scores == [2.0, 3.0, 3.0] and fresh == 3 and [len(c) for c in calls] == [2, 1]
    calls.clear()
    # a repeated pair is scored once; known pairs come from the file in the caller's order
    scores, fresh = cached_scores(path, [("qq", "a"), ("new", "doc"), ("q", "a"), ("new", "doc")], _scorer(calls))
    assert scores == [3.0, 6.0, 2.0, 6.0] and fresh == 1 and calls == [[("new", "doc")]]
    assert len(read_scores(path)) == 4


def test_a_torn_last_row_is_skipped_and_its_pair_scored_again(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps([pair_hash(("q", "a")), 1.5]) + "\n" + '["' + pair_hash(("q", "b"))[:7])
    calls: list = []
    scores, fresh = cached_scores(path, [("q", "a"), ("q", "b")], _scorer(calls))
    assert scores == [1.5, 2.0] and fresh == 1 and calls == [[("q", "b")]]
    # the row written after the torn one starts on its own line: a later reading knows both pairs
    assert read_scores(path) == {pair_hash(("q", "a")): 1.5, pair_hash(("q", "b")): 2.0}


def test_the_key_covers_the_rerankers_files_and_settings():
    assert len({scores_key("fp1", "cross_encoder|max_length=None"), scores_key("fp2", "cross_encoder|max_length=None"),
                scores_key("fp1", "cross_encoder|max_length=160"), scores_key("fp1", "llm|max_length=None")}) == 4
