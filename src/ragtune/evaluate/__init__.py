"""IR metrics (pytrec_eval), significance tests, retrieval evaluation (`ragtune eval`), query difficulty, and
grounded-answer metrics (EM, F1, refusal)."""

from ragtune.evaluate.metrics import EvalResult, evaluate, parse_metric

__all__ = ["EvalResult", "evaluate", "parse_metric"]
