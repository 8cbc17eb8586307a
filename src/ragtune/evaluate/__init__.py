"""IR metrics (pytrec_eval), significance tests."""

from ragtune.evaluate.metrics import EvalResult, evaluate, parse_metric

__all__ = ["EvalResult", "evaluate", "parse_metric"]
