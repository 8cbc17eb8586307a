"""Retry policy: bad outputs are regenerated, then recorded as failed with their reason; never dropped."""

from __future__ import annotations

from ragtune.generate.checks import normalize
from ragtune.generate.config import SamplingConfig
from ragtune.generate.query_generator import Prompt, QueryGenerator


class Scripted(QueryGenerator):
    """A generator whose decoder returns scripted outputs (one list per call)."""

    def __init__(self, script):
        self.script, self.calls = list(script), []
        self.sampling = SamplingConfig()

    def raw(self, prompts, n, retry=False, seed=None):
        self.calls.append((len(prompts), n, retry))
        return self.script.pop(0)


DOC = "the small virus damages the tissue of the lung in patients with asthma"


def _p(doc_id):
    return Prompt(doc_id, "prompt", normalize(DOC), 10)


def test_bad_outputs_are_retried_then_recorded():
    gen = Scripted([
        [["virus lung", "virus lung"], ["", DOC]],                      # a: one duplicate; b: empty + copy
        [["asthma tissue", "x"], ["lung damage asthma", "lung damage asthma"]],  # a done; b one short
        [["Lung damage, asthma?"]],                                     # only b is retried: a duplicate again
        [[DOC]],                                                        # last retry copies the document
    ])
    a, b = gen.generate([_p("a"), _p("b")], k=2, max_retries=3, copy_min_words=8)
    assert gen.calls == [(2, 2, False), (2, 2, True), (1, 1, True), (1, 1, True)]
    assert a == {"doc_id": "a", "queries": ["virus lung", "asthma tissue"], "failed": [], "attempts": 2}
    assert b["queries"] == ["lung damage asthma"] and b["attempts"] == 4
    assert b["failed"] == [{"reason": "copies document", "text": DOC}]


def test_exhausted_retries_record_the_reason():
    gen = Scripted([[[DOC]], [[DOC]], [[""]]])
    (rec,) = gen.generate([_p("a")], k=1, max_retries=2, copy_min_words=8)
    assert rec["queries"] == [] and rec["attempts"] == 3
    assert rec["failed"] == [{"reason": "empty", "text": ""}]


def test_a_query_that_repeats_a_prompt_example_is_retried():
    examples = frozenset({normalize("What is the best treatment for asthma?")})
    gen = Scripted([[["what is the best treatment for asthma"]], [["does the virus damage asthmatic lungs"]]])
    (rec,) = gen.generate([_p("a")], k=1, max_retries=1, copy_min_words=8, examples=examples)
    assert rec == {"doc_id": "a", "queries": ["does the virus damage asthmatic lungs"], "failed": [], "attempts": 2}
    gen = Scripted([[["What is the best treatment for asthma?"]]])
    (rec,) = gen.generate([_p("a")], k=1, max_retries=0, copy_min_words=8, examples=examples)
    assert rec["failed"] == [{"reason": "copies an example", "text": "What is the best treatment for asthma?"}]
