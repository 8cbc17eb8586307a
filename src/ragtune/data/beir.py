"""BEIR folders: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.

Readers stream and validate (duplicate ids, empty texts, qrels naming unknown ids,
encoding); writers are atomic and always write the qrels header.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.atomic import atomic_open, write_jsonl
from ragtune.data.errors import DataFormatError, ProblemLog, report
from ragtune.data.jsonl import iter_jsonl, iter_lines
from ragtune.data.records import WHITESPACE, Doc, Query, R, parse_record

Qrels = dict[str, dict[str, int]]
QRELS_HEADER = "query-id\tcorpus-id\tscore"
QRELS_HINT = 'qrels lines are "query-id<TAB>corpus-id<TAB>score" with an integer score (header optional)'
EMPTY_HINT = ("BEIR keeps empty documents (some public collections have them and judge them); without --strict "
              "they are loaded and only counted")
log = logging.getLogger("ragtune.data")


def _in_folder(path: str | Path, file_name: str) -> Path:
    path = Path(path)
    return path / file_name if path.is_dir() else path


def _iter_unique(path: Path, cls: type[R], what: str, problems: ProblemLog | None) -> Iterator[tuple[int, R]]:
    """(line, validated record) of a JSONL file, each id once."""
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, problems):
        rec = parse_record(cls, obj, path, lineno, problems)
        if rec is None:
            continue
        if rec.id in first_line:
            report(problems, path, lineno, f'duplicate {what} id "{rec.id}" (first seen on line {first_line[rec.id]})',
                   field="_id", hint="ids must be unique within a file")
            continue
        first_line[rec.id] = lineno
        yield lineno, rec


def iter_corpus(path: str | Path, problems: ProblemLog | None = None, strict: bool = False) -> Iterator[Doc]:
    """Stream documents from corpus.jsonl (or a BEIR folder), one validated Doc at a time.

    Empty documents (no title, no text) are yielded like any other, as BEIR does, and counted: one warning at the
    end names how many and the first ids. `strict=True` reports them as problems instead (`data validate
    --strict`).
    """
    path = _in_folder(path, "corpus.jsonl")
    empty: list[str] = []
    for lineno, doc in _iter_unique(path, Doc, "document", problems):
        if doc.empty:
            if strict:  # reported, and still yielded so qrels naming it are not reported a second time
                report(problems, path, lineno, f'empty document "{doc.id}": both text and title are empty',
                       field="text", hint=EMPTY_HINT)
            else:
                empty.append(doc.id)
        yield doc
    if empty:
        shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
        log.warning("%s: %d empty document(s) (no title, no text), loaded as BEIR does: %s", path, len(empty), shown)


def load_corpus(path: str | Path, problems: ProblemLog | None = None) -> dict[str, Doc]:
    return {d.id: d for d in iter_corpus(path, problems)}


def iter_queries(path: str | Path, problems: ProblemLog | None = None) -> Iterator[Query]:
    """Stream queries from queries.jsonl (or a BEIR folder), one validated Query at a time."""
    return (q for _, q in _iter_unique(_in_folder(path, "queries.jsonl"), Query, "query", problems))


def load_queries(path: str | Path, problems: ProblemLog | None = None) -> dict[str, str]:
    return {q.id: q.text for q in iter_queries(path, problems)}


def load_qrels(path: str | Path, problems: ProblemLog | None = None, *,
               query_ids: Iterable[str] | None = None, doc_ids: Iterable[str] | None = None) -> Qrels:
    """Read a qrels TSV (BEIR 3-column or TREC 4-column, header optional).

    With `query_ids`/`doc_ids`, rows naming ids outside them are reported.
    """
    path = Path(path)
    qset = set(query_ids) if query_ids is not None else None
    dset = set(doc_ids) if doc_ids is not None else None
    qrels: Qrels = {}
    first: dict[tuple[str, str], int] = {}
    for lineno, text in iter_lines(path, problems):
        cols = text.split("\t") if "\t" in text else text.split()
        if lineno == 1 and (cols[-1].strip() in {"score", "relevance", "rel"} or text.startswith("query-id")):
            continue
        if len(cols) == 4:  # TREC qrels: qid iter docid rel
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3:
            report(problems, path, lineno, f"expected 3 tab-separated columns, found {len(cols)}", hint=QRELS_HINT)
            continue
        qid, did, score_s = (c.strip() for c in cols)
        if WHITESPACE.search(qid) or WHITESPACE.search(did):
            report(problems, path, lineno, f"ids must not contain whitespace (got {qid!r}, {did!r})",
                   field="query-id" if WHITESPACE.search(qid) else "corpus-id",
                   hint="TREC runs separate columns by whitespace, so such an id could not be read back")
            continue
        try:
            score = int(score_s)
        except ValueError:
            report(problems, path, lineno, f'score "{score_s}" is not an integer', field="score", hint=QRELS_HINT)
            continue
        if qset is not None and qid not in qset:
            report(problems, path, lineno, f'unknown query id "{qid}" (not in queries.jsonl)', field="query-id",
                   hint="every qrels query must exist in queries.jsonl")
            continue
        if dset is not None and did not in dset:
            report(problems, path, lineno, f'unknown document id "{did}" (not in corpus.jsonl)',
                   field="corpus-id", hint="every qrels document must exist in corpus.jsonl")
            continue
        if (qid, did) in first:
            report(problems, path, lineno, f'duplicate judgment for ("{qid}", "{did}") (first on line '
                   f"{first[qid, did]})", hint="judge each query-document pair once")
            continue
        first[qid, did] = lineno
        qrels.setdefault(qid, {})[did] = score
    return qrels


def qrels_splits(folder: str | Path) -> list[str]:
    qdir = Path(folder) / "qrels"
    return sorted(p.stem for p in qdir.glob("*.tsv")) if qdir.is_dir() else []


@dataclass
class BeirDataset:
    """A loaded BEIR folder. Use `load_beir`; for huge corpora stream with `iter_corpus`."""

    path: Path
    corpus: dict[str, Doc]
    queries: dict[str, str]
    qrels: dict[str, Qrels] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    def split_queries(self, split: str) -> dict[str, str]:
        """The queries judged in `split`, in qrels order."""
        return {q: self.queries[q] for q in self.qrels[split]}


def load_beir(folder: str | Path, splits: Iterable[str] | None = None) -> BeirDataset:
    """Load and cross-check a BEIR folder; raises DataFormatError on the first problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, None, "not a directory",
                              hint="pass a BEIR folder holding corpus.jsonl, queries.jsonl and qrels/")
    corpus = load_corpus(folder)
    queries = load_queries(folder)
    available = qrels_splits(folder)
    wanted = list(splits) if splits is not None else available
    qrels: dict[str, Qrels] = {}
    for split in wanted:
        if split not in available:
            raise DataFormatError(folder / "qrels" / f"{split}.tsv", None, f'split "{split}" not found',
                                  hint=f"available splits: {', '.join(available) or 'none'}")
        qrels[split] = load_qrels(folder / "qrels" / f"{split}.tsv", query_ids=queries, doc_ids=corpus)
    return BeirDataset(folder, corpus, queries, qrels)


# ---------------------------------------------------------------- writers


def write_corpus(path: str | Path, docs: Iterable[Doc | dict]) -> int:
    return write_jsonl(path, (d.model_dump(by_alias=True) if isinstance(d, Doc) else d for d in docs))


def write_queries(path: str | Path, queries: dict[str, str] | Iterable[dict]) -> int:
    rows = ({"_id": k, "text": v} for k, v in queries.items()) if isinstance(queries, dict) else queries
    return write_jsonl(path, rows)


def write_qrels(path: str | Path, qrels: Qrels) -> int:
    n = 0
    with atomic_open(path) as f:
        f.write(QRELS_HEADER + "\n")
        for qid, docs in qrels.items():
            for did, score in docs.items():
                f.write(f"{qid}\t{did}\t{int(score)}\n")
                n += 1
    return n


def write_beir(folder: str | Path, corpus: Iterable[Doc | dict] | None, queries: dict[str, str],
               qrels: dict[str, Qrels]) -> None:
    """Write a BEIR folder; `corpus=None` writes queries and qrels only (pseudo-query sets)."""
    folder = Path(folder)
    if corpus is not None:
        write_corpus(folder / "corpus.jsonl", corpus)
    write_queries(folder / "queries.jsonl", queries)
    for split, q in qrels.items():
        write_qrels(folder / "qrels" / f"{split}.tsv", q)
