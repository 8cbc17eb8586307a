"""Fixtures the loop's integration tests share."""

import pytest


@pytest.fixture
def toy_beir_with_test(tmp_path):
    """60 toy documents, 20 train and 10 test queries with one positive each."""
    from ragtune.data.beir import write_beir
    from tiny_lm import toy_corpus

    docs, pairs = toy_corpus(60)
    queries = {f"q{i}": q for i, (_, q) in enumerate(pairs)}
    train = {f"q{i}": {d: 1} for i, (d, _) in enumerate(pairs[:20])}
    test = {f"q{i}": {d: 1} for i, (d, _) in enumerate(pairs[20:30], start=20)}
    write_beir(tmp_path / "toy", docs, {q: queries[q] for q in [*train, *test]}, {"train": train, "test": test})
    return tmp_path / "toy"
