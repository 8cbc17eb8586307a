"""TREC run files: `qid Q0 docid rank score tag`, one line per retrieved document."""

from __future__ import annotations

import math
from pathlib import Path

from ragtune.atomic import atomic_open
from ragtune.data.errors import ProblemLog, report
from ragtune.data.jsonl import iter_lines
from ragtune.data.records import WHITESPACE

Run = dict[str, dict[str, float]]
RUN_HINT = 'TREC run lines are "qid Q0 docid rank score tag" separated by spaces or tabs'


def read_run(path: str | Path, problems: ProblemLog | None = None) -> Run:
    path = Path(path)
    run: Run = {}
    for lineno, text in iter_lines(path, problems):
        cols = text.split()
        if len(cols) != 6:
            report(problems, path, lineno, f"expected 6 columns, found {len(cols)}", hint=RUN_HINT)
            continue
        qid, _, did, rank, score, _tag = cols
        try:
            value = float(score)
            int(rank)
        except ValueError:
            report(problems, path, lineno, f'rank "{rank}" or score "{score}" is not a number', field="score",
                   hint=RUN_HINT)
            continue
        if not math.isfinite(value):
            report(problems, path, lineno, f'score "{score}" is not a finite number', field="score",
                   hint="a run ranks documents by finite scores; nan and inf cannot be ordered")
            continue
        docs = run.setdefault(qid, {})
        if did in docs:
            report(problems, path, lineno, f'document "{did}" appears twice for query "{qid}"', field="docid",
                   hint="each query lists a document at most once")
            continue
        docs[did] = value
    return run


def write_run(path: str | Path, run: Run, tag: str = "ragtune", k: int | None = None) -> None:
    """Write a run sorted by descending score; ties broken by doc id for reproducibility.

    Ids holding whitespace and non-finite scores are refused: `read_run` could not read them back."""
    for qid, docs in run.items():
        bad = next((i for i in (qid, *docs) if not i or WHITESPACE.search(i)), None)
        if bad is not None:
            raise ValueError(f"{path}: id {bad!r} (query {qid!r}) is empty or holds whitespace; a TREC run "
                             "cannot hold it")
        if not all(math.isfinite(v) for v in docs.values()):
            raise ValueError(f"{path}: query {qid!r} has a non-finite score; a TREC run cannot order it")
    with atomic_open(path) as f:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
            for rank, (did, score) in enumerate(ranked[:k] if k else ranked, 1):
                f.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")
