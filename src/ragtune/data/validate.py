"""`ragtune data validate PATH`: detect what PATH holds, check all of it, count it.

Every problem is collected (up to a limit) with its file and line, instead of stopping
at the first; `ValidationResult.ok` is what the CLI turns into exit 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from ragtune.config import ConfigModel
from ragtune.data.beir import iter_corpus, iter_queries, load_qrels, qrels_splits
from ragtune.data.errors import ProblemLog, report
from ragtune.data.formats import RECORD_KINDS, validate_dataset_info, validate_records
from ragtune.data.trec import read_run


class ValidateConfig(ConfigModel):
    """`ragtune data validate PATH`: what to check and how many problems to list."""

    path: Path
    """A BEIR folder, a record file (JSONL or JSON array), a dataset_info.json or a TREC run."""
    format: str = "auto"
    """auto (told from the path), or a format name: beir, trec-run, records, dataset-info, or a record kind."""
    limit: int = Field(50, ge=1)
    """Report at most this many problems (all are counted)."""
    strict: bool = False
    """Also flag what loaders accept with a warning (empty BEIR documents)."""


@dataclass
class ValidationResult:
    path: Path
    kind: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: ProblemLog = field(default_factory=ProblemLog)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_beir(folder: Path, problems: ProblemLog, strict: bool = False) -> dict[str, int]:
    """Counts of a BEIR folder; `strict` also reports empty documents (else they are counted, as BEIR loads
    them)."""
    counts: dict[str, int] = {}
    doc_ids, empty = set(), 0
    for d in iter_corpus(folder / "corpus.jsonl", problems, strict=strict):
        doc_ids.add(d.id)
        empty += d.empty
    query_ids = {q.id for q in iter_queries(folder / "queries.jsonl", problems)}
    counts["docs"] = len(doc_ids)
    if empty:
        counts["empty docs (loaded; --strict flags them)"] = empty
    counts["queries"] = len(query_ids)
    splits = qrels_splits(folder)
    if not splits:
        report(problems, folder / "qrels", None, "no qrels/<split>.tsv files",
               hint="BEIR folders hold judgments in qrels/train.tsv, qrels/dev.tsv, qrels/test.tsv")
    for split in splits:
        qrels = load_qrels(folder / "qrels" / f"{split}.tsv", problems, query_ids=query_ids, doc_ids=doc_ids)
        counts[f"{split} qrels rows"] = sum(len(d) for d in qrels.values())
        counts[f"{split} queries"] = len(qrels)
    return counts


def validate_run(path: Path, problems: ProblemLog) -> dict[str, int]:
    run = read_run(path, problems)
    return {"queries": len(run), "rows": sum(len(d) for d in run.values())}


def _record_validator(kind: str) -> Callable[[Path, ProblemLog], dict[str, float]]:
    return lambda path, problems: validate_records(path, problems, kind)


# kind -> validator(path, problems) -> counts
VALIDATORS: dict[str, Callable[[Path, ProblemLog], dict[str, float]]] = {
    "beir": validate_beir,
    "trec-run": validate_run,
    "records": validate_records,
    "dataset-info": validate_dataset_info,
    **{kind: _record_validator(kind) for kind in RECORD_KINDS},
}


def detect_kind(path: Path) -> str:
    if path.is_dir():
        if (path / "corpus.jsonl").exists() or (path / "queries.jsonl").exists():
            return "beir"
        if (path / "dataset_info.json").exists():
            return "dataset-info"
        raise ValueError(f"{path}: cannot tell what this folder holds (no corpus.jsonl, queries.jsonl or "
                         f"dataset_info.json); pass --format")
    if path.name == "dataset_info.json":
        return "dataset-info"
    if path.suffix in {".trec", ".run"} or path.name.endswith(".trec.txt"):
        return "trec-run"
    if path.suffix in {".jsonl", ".json"}:
        return "records"
    raise ValueError(f"{path}: cannot tell the format from the name; pass --format "
                     f"({', '.join(sorted(VALIDATORS))})")


def validate(path: str | Path, kind: str = "auto", limit: int = 50, strict: bool = False) -> ValidationResult:
    """Check everything PATH holds; `strict` also flags what loaders accept with a warning (empty BEIR
    documents)."""
    path = Path(path)
    if not path.exists():
        result = ValidationResult(path, kind, problems=ProblemLog(limit))
        report(result.problems, path, None, "no such file or folder")
        return result
    kind = detect_kind(path) if kind == "auto" else kind
    if kind not in VALIDATORS:
        raise ValueError(f'unknown format "{kind}"; known: {", ".join(sorted(VALIDATORS))}')
    result = ValidationResult(path, kind, problems=ProblemLog(limit))
    if kind == "beir":
        result.counts = validate_beir(path, result.problems, strict)
    else:
        result.counts = VALIDATORS[kind](path, result.problems)
    return result
