"""Retrieval metrics with pytrec_eval, named ranx/ir-measures style.

    >>> qrels = {"q1": {"d1": 1}}
    >>> run = {"q1": {"d2": 2.0, "d1": 1.0}}
    >>> evaluate(qrels, run, ["mrr@10", "recall@1"]).metrics
    {'mrr@10': 0.5, 'recall@1': 0.0}

Queries judged in the qrels but missing from the run score 0 on every metric;
queries in the run without judgments are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AfterValidator

from ragtune.data.beir import Qrels
from ragtune.data.trec import Run

_NAME = re.compile(r"^(ndcg|recall|map|mrr|p|precision|r-precision|rprec)(?:@(\d+))?$")
DEFAULT_METRICS = ["ndcg@10", "recall@100", "mrr@10", "map@100"]


def parse_metric(name: str) -> tuple[str, int | None]:
    """'ndcg@10' -> ('ndcg', 10). Raises ValueError with the accepted forms."""
    m = _NAME.match(name.strip().lower())
    if not m:
        raise ValueError(f'unknown metric "{name}"; use ndcg@k, recall@k, map@k, mrr@k, p@k '
                         f"(or ndcg, map, mrr without a cutoff)")
    kind, k = m.group(1), m.group(2)
    kind = {"precision": "p", "rprec": "r-precision"}.get(kind, kind)
    if kind == "recall" and k is None:
        raise ValueError(f'metric "{name}" needs a cutoff, e.g. recall@100')
    return kind, int(k) if k else None


def _checked(name: str) -> str:
    parse_metric(name)
    return name


MetricName = Annotated[str, AfterValidator(_checked)]
"""A metric name checked when a config is loaded (`foo@3` is refused there, not after retrieval)."""


def _trec_measure(kind: str, k: int | None) -> tuple[str, str]:
    """(pytrec_eval measure to request, key it reports)."""
    if kind == "ndcg":
        return ("ndcg_cut", f"ndcg_cut_{k}") if k else ("ndcg", "ndcg")
    if kind == "map":
        return ("map_cut", f"map_cut_{k}") if k else ("map", "map")
    if kind == "recall":
        return "recall", f"recall_{k}"
    if kind == "p":
        return "P", f"P_{k}"
    if kind == "r-precision":
        return "Rprec", "Rprec"
    return "recip_rank", "recip_rank"


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    """metric -> {qid -> score}, over every judged query."""

    @property
    def num_queries(self) -> int:
        return len(next(iter(self.per_query.values()), {}))


def _truncate(run: Run, k: int) -> Run:
    # trec_eval's order: score descending, then doc id descending
    return {q: dict(sorted(d.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k]) for q, d in run.items()}


def evaluate(qrels: Qrels, run: Run, metrics: list[str] | None = None,
             ignore_identical_ids: bool = False) -> EvalResult:
    """Mean and per-query scores of `run` against `qrels` for each named metric."""
    import pytrec_eval

    metrics = list(metrics or DEFAULT_METRICS)
    parsed = {m: parse_metric(m) for m in metrics}
    qrels = {q: {d: int(s) for d, s in docs.items()} for q, docs in qrels.items() if docs}
    if not qrels:
        raise ValueError("qrels are empty: nothing to evaluate")
    run = {q: {d: float(s) for d, s in docs.items() if not (ignore_identical_ids and d == q)}
           for q, docs in run.items() if q in qrels}
    run = {q: docs for q, docs in run.items() if docs}

    per_query: dict[str, dict[str, float]] = {}
    plain = {m: p for m, p in parsed.items() if p[0] != "mrr"}
    if plain and run:
        requested: dict[str, set[str]] = {}
        for kind, k in plain.values():
            measure, _ = _trec_measure(kind, k)
            if k is not None:
                requested.setdefault(measure, set()).add(str(k))
            else:
                requested.setdefault(measure, set())
        names = {f"{m}.{','.join(sorted(ks, key=int))}" if ks else m for m, ks in requested.items()}
        scores = pytrec_eval.RelevanceEvaluator(qrels, names).evaluate(run)
        for m, (kind, k) in plain.items():
            key = _trec_measure(kind, k)[1]
            per_query[m] = {q: float(scores.get(q, {}).get(key, 0.0)) for q in qrels}
    for m, (_, k) in parsed.items():
        if m in per_query:
            continue
        if m not in plain and run:  # mrr: truncate first, since recip_rank has no cutoff
            sub = _truncate(run, k) if k else run
            scores = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(sub)
            per_query[m] = {q: float(scores.get(q, {}).get("recip_rank", 0.0)) for q in qrels}
        else:
            per_query[m] = dict.fromkeys(qrels, 0.0)
    means = {m: sum(per_query[m].values()) / len(qrels) for m in metrics}
    return EvalResult(means, per_query)
