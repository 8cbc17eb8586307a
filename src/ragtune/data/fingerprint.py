"""What a run was made on: a fingerprint of the corpus, the judged query set and the split.

`ragtune eval` writes one beside every run file it writes (`run.trec` -> `run.trec.fingerprint.json`), and
`ragtune eval compare` refuses to compare runs made on different corpora, query sets or splits, where a
paired test would compare apples with oranges.

    >>> a = {"corpus": "c1", "queries": "q1", "split": "test"}
    >>> mismatch(a, dict(a))
    []
    >>> mismatch(a, {**a, "corpus": "c2"})
    ['corpus']
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ragtune.atomic import write_json
from ragtune.data.errors import DataFormatError

SUFFIX = ".fingerprint.json"
FIELDS = ("corpus", "queries", "split")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def queries_digest(queries: dict[str, str]) -> str:
    """The judged queries of a split, by id and text (order-independent)."""
    h = hashlib.sha256()
    for qid in sorted(queries):
        h.update(f"{qid}\t{queries[qid]}\n".encode())
    return h.hexdigest()[:16]


def dataset_fingerprint(folder: str | Path, split: str, queries: dict[str, str]) -> dict[str, str]:
    """{corpus, queries, split}: the corpus file's bytes, the split's judged queries, the split's name."""
    return {"corpus": _file_digest(Path(folder) / "corpus.jsonl"), "queries": queries_digest(queries),
            "split": split}


def fingerprint_path(run_path: str | Path) -> Path:
    run_path = Path(run_path)
    return run_path.with_name(run_path.name + SUFFIX)


def write_fingerprint(run_path: str | Path, fp: dict[str, str]) -> None:
    write_json(fingerprint_path(run_path), {k: fp[k] for k in FIELDS})


def read_fingerprint(run_path: str | Path) -> dict[str, str] | None:
    """The fingerprint recorded beside a run file, or None when the run was made elsewhere."""
    path = fingerprint_path(run_path)
    if not path.is_file():
        return None
    try:
        fp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(path, None, f"not a readable run fingerprint ({e})",
                              hint="delete it or rerun the evaluation") from None
    if not isinstance(fp, dict) or any(not isinstance(fp.get(k), str) for k in FIELDS):
        raise DataFormatError(path, None, f'a run fingerprint holds the strings {", ".join(FIELDS)}',
                              hint="delete it or rerun the evaluation")
    return fp


def mismatch(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The fields on which two fingerprints differ."""
    return [k for k in FIELDS if a.get(k) != b.get(k)]
