"""Training-record files and LLaMA-Factory `dataset_info.json`.

    for rec in read_records("train.jsonl", "embedding"): ...   # validated, file:line errors
    kind = detect_record_kind("train.jsonl")                   # from the first valid line's fields
    write_records("out.jsonl", records)                        # atomic

Record files are JSONL; a `.json` file holding a JSON array (LLaMA-Factory's usual layout)
is read too, its items addressed as `file.json[i]`. Teacher-distillation rows pair with the
rows of a `.npy` beside them (`teacher.jsonl` + `teacher.npy`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.atomic import atomic_open, write_jsonl
from ragtune.data.dataset_info import (
    DATASET_INFO,
    MESSAGE_KEYS,
    DatasetEntry,
    entry_line,
    entry_record_class,
    info_path,
    read_dataset_info,
)
from ragtune.data.errors import DataFormatError, ProblemLog, report
from ragtune.data.jsonl import JSON_LIMITS_HINT, iter_jsonl, iter_lines, unreadable
from ragtune.data.records import (
    Alpaca,
    Embedding,
    Preference,
    Record,
    RerankerGroup,
    RerankerPoint,
    ShareGPT,
    ShareGPTPreference,
    TeacherQuery,
    parse_record,
)

RECORD_KINDS: dict[str, type[Record]] = {
    "alpaca": Alpaca,
    "sharegpt": ShareGPT,
    "preference": Preference,
    "sharegpt-preference": ShareGPTPreference,
    "embedding": Embedding,
    "teacher": TeacherQuery,
    "reranker-point": RerankerPoint,
    "reranker-group": RerankerGroup,
}
KINDS_HINT = f"pass the kind explicitly (--format {'|'.join(RECORD_KINDS)})"


def record_class(kind: str) -> type[Record]:
    """The record class of a kind name ("embedding" -> Embedding)."""
    if kind not in RECORD_KINDS:
        raise ValueError(f'unknown record kind "{kind}"; known: {", ".join(RECORD_KINDS)}')
    return RECORD_KINDS[kind]


# ---------------------------------------------------------------- rows


def _is_json_array(path: Path) -> bool:
    if path.suffix != ".json" or not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(256).removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"[")


def iter_rows(path: str | Path, problems: ProblemLog | None = None) -> Iterator[tuple[str, int | None, dict]]:
    """Yield (where, line, object) per record: JSONL lines, or the items of a JSON array file."""
    path = Path(path)
    if not _is_json_array(path):
        for lineno, obj in iter_jsonl(path, problems):
            yield str(path), lineno, obj
        return
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        report(problems, path, None, "not UTF-8 text", hint="re-encode the file as UTF-8")
        return
    except json.JSONDecodeError as e:
        report(problems, path, e.lineno, f"invalid JSON: {e.msg} at column {e.colno}",
               hint="a .json record file holds one JSON array [{...}, {...}]; or use JSONL, one object a line")
        return
    except (RecursionError, ValueError) as e:  # absurd nesting; an integer over Python's digit limit
        report(problems, path, None, unreadable(e), hint=JSON_LIMITS_HINT)
        return
    if not isinstance(items, list):
        report(problems, path, None, f"expected a JSON array, got {type(items).__name__}",
               hint="a .json record file holds one JSON array [{...}, {...}]")
        return
    for i, obj in enumerate(items):
        if not isinstance(obj, dict):
            report(problems, f"{path}[{i}]", None, f"expected a JSON object, got {type(obj).__name__}",
                   hint="each item of the array must be one record {...}")
            continue
        yield f"{path}[{i}]", None, obj


# ---------------------------------------------------------------- kinds


def kind_of(obj: dict, teacher_vectors: bool = False) -> str | None:
    """The record kind a row's field names point to (None when they fit no kind)."""
    keys = set(obj)
    if "conversations" in keys:
        return "sharegpt-preference" if {"chosen", "rejected"} & keys else "sharegpt"
    if "hits" in keys:
        return "reranker-group"
    if {"content", "label"} & keys:
        return "reranker-point"
    if {"pos", "neg", "scores"} & keys:
        return "embedding"
    if {"chosen", "rejected"} & keys or isinstance(obj.get("output"), list):
        return "preference"
    if {"instruction", "output"} & keys:
        return "alpaca"
    if "query" in keys:  # a bare {query}: teacher rows when their .npy is there, else embedding without pos
        return "teacher" if teacher_vectors else "embedding"
    return None


def detect_record_kind(path: str | Path, problems: ProblemLog | None = None) -> str | None:
    """Record kind from the fields of the first valid row; reports (or raises) when it cannot tell."""
    path = Path(path)
    for where, line, obj in iter_rows(path, ProblemLog(limit=0)):  # bad lines are reported when read
        kind = kind_of(obj, teacher_vectors=path.with_suffix(".npy").is_file())
        if kind is None:
            report(problems, where, line, f"cannot tell the record kind from the fields "
                   f"({', '.join(sorted(obj)) or 'none'})", hint=KINDS_HINT)
        return kind
    if path.is_file():
        report(problems, path, None, "no valid record found (empty file, or no line is a JSON object)")
    else:
        report(problems, path, None, "file not found")
    return None


# ---------------------------------------------------------------- read / write


def read_records(path: str | Path, kind: str = "auto", problems: ProblemLog | None = None, *,
                 vectors: str | Path | None = None, record_cls: type[Record] | None = None) -> Iterator[Record]:
    """Stream validated records of `kind` (or auto-detected) from a JSONL / JSON-array file.

    Strict (problems=None): the first bad row raises DataFormatError with file:line and field.
    For "teacher", the `.npy` beside the file (or `vectors`) must hold one row per record.
    `record_cls` overrides the class (dataset_info.json column mappings use it).
    """
    path = Path(path)
    if kind == "auto" and record_cls is None:
        detected = detect_record_kind(path, problems)
        if detected is None:
            return
        kind = detected
    cls = record_cls or record_class(kind)
    if kind == "teacher":
        teacher_vectors(path, vectors, problems)
    for where, line, obj in iter_rows(path, problems):
        rec = parse_record(cls, obj, where, line, problems)
        if rec is not None:
            yield rec


def record_row(rec: Record | dict) -> dict[str, Any]:
    """The JSON object written for a record: named fields, unset optionals left out."""
    return rec.model_dump(mode="json", by_alias=True, exclude_none=True) if isinstance(rec, Record) else rec


def write_records(path: str | Path, records: Iterable[Record | dict]) -> int:
    """Write records (or plain dict rows) as JSONL, atomically; returns the row count."""
    return write_jsonl(path, (record_row(r) for r in records))


# ---------------------------------------------------------------- teacher vectors


def _count_rows(path: Path) -> int:
    return sum(1 for _ in iter_lines(path, ProblemLog(limit=0)))


def open_memmap(path: Path, dim: int | None = None) -> np.ndarray:
    """A raw `np.memmap` of vectors (RAG-Retrieval's teacher file): shape and dtype from `<file>.json`
    ({"shape": [rows, dim], "dtype": "float32"}), else float32 rows of width `dim`. ValueError when neither says."""
    sidecar = path.with_name(path.name + ".json")
    dtype = np.dtype("float32")
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            shape, dtype = tuple(int(x) for x in meta["shape"]), np.dtype(meta.get("dtype", "float32"))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f'{sidecar}: expected {{"shape": [rows, dim], "dtype": "float32"}} ({e})') from None
        if dim is not None and len(shape) == 2 and shape[1] != dim:
            raise ValueError(f"{sidecar} says {shape[1]} dimensions but teacher_dim is {dim}")
    elif dim is not None:
        size = path.stat().st_size
        if size % (dim * dtype.itemsize):
            raise ValueError(f"{size} bytes is not a whole number of float32 rows of {dim} dimensions; is teacher_dim "
                             "right?")
        shape = (size // (dim * dtype.itemsize), dim)
    else:
        raise ValueError(f"a raw memmap has no shape: write {sidecar.name} with {{\"shape\": [rows, dim]}} beside it, "
                         "or set teacher_dim")
    expected = int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size != expected:
        raise ValueError(f"{path.stat().st_size} bytes, but shape {list(shape)} of {dtype} needs {expected}")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def teacher_vectors(path: str | Path, vectors: str | Path | None = None,
                    problems: ProblemLog | None = None, dim: int | None = None) -> np.ndarray | None:
    """Open the teacher vectors (a `.npy`, or a raw memmap: `open_memmap`), memory-mapped, and check they hold one
    2-D row per JSONL row. Never unpickles."""
    path = Path(path)
    npy = Path(vectors) if vectors is not None else path.with_suffix(".npy")
    hint = (f"teacher rows pair line i of {path.name} with row i of a 2-D float array saved as {npy.name} "
            "(.npy, or a raw float32 memmap with a .json shape sidecar)")
    if not npy.is_file():
        report(problems, npy, None, "teacher vectors not found", field="vectors", hint=hint)
        return None
    try:
        with npy.open("rb") as f:
            is_npy = f.read(6) == b"\x93NUMPY"
        arr = np.load(npy, mmap_mode="r", allow_pickle=False) if is_npy else open_memmap(npy, dim)
    except Exception as e:  # noqa: BLE001 - numpy raises many types (EOFError, SyntaxError, ...) for a broken file
        report(problems, npy, None, f"not a readable vector file ({type(e).__name__}: {e})", field="vectors",
               hint=hint)
        return None
    rows = _count_rows(path)
    if arr.ndim != 2:
        report(problems, npy, None, f"expected a 2-D array (rows x dim), got shape {arr.shape}", field="vectors",
               hint=hint)
        return None
    if arr.shape[0] != rows:
        report(problems, npy, None, f"{arr.shape[0]} vectors but {path.name} has {rows} rows", field="vectors",
               hint=hint)
        return None
    return arr


def load_teacher(path: str | Path, vectors: str | Path | None = None, dim: int | None = None
                 ) -> tuple[list[TeacherQuery], np.ndarray]:
    """Strictly load teacher queries and their vectors (a memmap)."""
    arr = teacher_vectors(path, vectors, dim=dim)
    queries = [r for r in read_records(path, record_cls=TeacherQuery) if isinstance(r, TeacherQuery)]
    assert arr is not None  # strict mode raised otherwise
    return queries, arr


def write_teacher(path: str | Path, queries: Iterable[TeacherQuery | dict | str], vectors: np.ndarray,
                  npy: str | Path | None = None) -> int:
    """Write `{query}` rows and the matching `.npy`, each atomically."""
    path = Path(path)
    rows = [{"query": q} if isinstance(q, str) else record_row(q) for q in queries]
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(rows):
        raise ValueError(f"teacher vectors of shape {vectors.shape} do not match {len(rows)} queries; "
                         "pass one row per query")
    with atomic_open(Path(npy) if npy else path.with_suffix(".npy"), "wb") as f:
        np.save(f, vectors, allow_pickle=False)
    return write_jsonl(path, rows)


# ---------------------------------------------------------------- validation


def count_records(kind: str, records: Iterable[Record]) -> dict[str, float]:
    """Rows per kind, plus what a trainer cares about: negatives, scores, label range."""
    counts: dict[str, float] = {f"{kind} rows": 0}
    labels: list[float] = []
    for rec in records:
        counts[f"{kind} rows"] += 1
        if isinstance(rec, Embedding):
            counts["rows with neg"] = counts.get("rows with neg", 0) + bool(rec.neg)
            counts["rows with scores"] = counts.get("rows with scores", 0) + (rec.scores is not None)
            counts["pos passages"] = counts.get("pos passages", 0) + len(rec.pos)
            counts["neg passages"] = counts.get("neg passages", 0) + len(rec.neg or [])
        elif isinstance(rec, RerankerPoint):
            labels.append(rec.label)
        elif isinstance(rec, RerankerGroup):
            counts["hits"] = counts.get("hits", 0) + len(rec.hits)
            labels += [h.label for h in rec.hits]
    if labels:
        counts["label min"], counts["label max"] = min(labels), max(labels)
        counts["labels > 0"] = sum(x > 0 for x in labels)
    return counts


def validate_records(path: Path, problems: ProblemLog, kind: str = "auto") -> dict[str, float]:
    """Check every row of a record file (kind auto-detected unless given) and count what it holds."""
    if kind == "auto":
        detected = detect_record_kind(path, problems)
        if detected is None:
            return {}
        kind = detected
    counts = count_records(kind, read_records(path, kind, problems))
    if kind == "teacher":
        arr = teacher_vectors(path, None, ProblemLog(limit=0))  # problems were reported by read_records
        if arr is not None:
            counts["vector dim"] = int(arr.shape[1])
    return counts


def entry_files(folder: Path, entry: DatasetEntry) -> list[Path]:
    """The data files of a local dataset_info entry (file_name may name a folder of files)."""
    target = folder / (entry.file_name or "")
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.suffix in {".json", ".jsonl"})
    return [target]


def validate_dataset_info(path: Path, problems: ProblemLog) -> dict[str, float]:
    """Check dataset_info.json and every local data file it names, with its column mapping."""
    path = info_path(path)
    entries = read_dataset_info(path, problems)
    counts: dict[str, float] = {"datasets": len(entries)}
    for name, entry in entries.items():
        if not entry.is_local:
            counts["remote datasets (not checked)"] = counts.get("remote datasets (not checked)", 0) + 1
            continue
        files = entry_files(path.parent, entry)
        if not files or not files[0].exists():
            what = "holds no .json/.jsonl files" if (path.parent / entry.file_name).is_dir() else "not found"
            report(problems, path, entry_line(path, name, "file_name"),
                   f'dataset "{name}": file_name "{entry.file_name}" {what} in {path.parent}',
                   field=f"{name}.file_name", hint=f"file_name is relative to the folder holding {DATASET_INFO}")
            continue
        cls = entry_record_class(entry)
        rows = 0
        seen: set[str] = set()
        for file in files:
            for where, line, obj in iter_rows(file, problems):
                seen.update(obj)
                rows += parse_record(cls, obj, where, line, problems) is not None
        counts[f"{name} rows"] = rows
        _check_columns(path, name, entry, seen, problems)
    return counts


def _check_columns(path: Path, name: str, entry: DatasetEntry, seen: set[str], problems: ProblemLog) -> None:
    if not seen:
        return
    columns = entry.columns.model_dump(exclude_none=True, exclude=set(MESSAGE_KEYS)) if entry.columns else {}
    for column, field in columns.items():
        if field not in seen:
            report(problems, path, entry_line(path, name, column),
                   f'dataset "{name}": columns.{column} names field "{field}" but no row of '
                   f'"{entry.file_name}" has it (found: {", ".join(sorted(seen))})', field=f"{name}.columns.{column}",
                   hint="column mappings map LLaMA-Factory roles to the field names used in the data file")
    # LLaMA-Factory reads system/history/tools only when mapped: an unmapped one is silently dropped
    for column in ("system", "history", "tools"):
        if column in seen and column not in columns:
            report(problems, path, entry_line(path, name),
                   f'dataset "{name}": rows have a "{column}" field but columns.{column} is '
                   f"not set, so LLaMA-Factory ignores it", field=f"{name}.columns",
                   hint=f'add "columns": {{"{column}": "{column}"}} to the entry')


__all__ = ["RECORD_KINDS", "DataFormatError", "count_records", "detect_record_kind", "iter_rows", "kind_of",
           "load_teacher", "read_records", "record_class", "record_row", "teacher_vectors", "validate_dataset_info",
           "validate_records", "write_records", "write_teacher"]
