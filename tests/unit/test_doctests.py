"""The worked examples in docstrings are tests too."""

import doctest
import importlib

import pytest

MODULES = ["ragtune.train.generator.ppo_core", "ragtune.filters.lossnet", "ragtune.evaluate.metrics",
           "ragtune.retrieval.colbert", "ragtune.train.retriever.llm_reranker", "ragtune.train.retriever.dev",
           "ragtune.data.language", "ragtune.retrieval.fusion", "ragtune.retrieval.rerank",
           "ragtune.evaluate.multiple_testing", "ragtune.evaluate.significance", "ragtune.evaluate.generator_quality",
           "ragtune.train.generator.loop_reward", "ragtune.filters.difficulty",
           "ragtune.filters.run"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0, result
