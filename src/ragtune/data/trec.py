"""TREC run files: `qid Q0 docid rank score tag`, one line per retrieved document."""

from __future__ import annotations

from pathlib import Path

from ragtune.atomic import atomic_open
from ragtune.data.errors import ProblemLog, report
from ragtune.data.jsonl import iter_lines

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
        docs = run.setdefault(qid, {})
        if did in docs:
            report(problems, path, lineno, f'document "{did}" appears twice for query "{qid}"', field="docid",
                   hint="each query lists a document at most once")
            continue
        docs[did] = value
    return run


def write_run(path: str | Path, run: Run, tag: str = "ragtune", k: int | None = None) -> None:
    """Write a run sorted by descending score; ties broken by doc id for reproducibility."""
    with atomic_open(path) as f:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
            for rank, (did, score) in enumerate(ranked[:k] if k else ranked, 1):
                f.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")
