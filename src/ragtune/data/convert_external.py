"""Retrieval data in the two other layouts people hold it in -> ragtune's formats.

    ragtune data convert st-triplets data=train.parquet out=data/emb     # anchor/positive/negative columns
    ragtune data convert mteb data=scifact-mteb/ out=data/scifact         # corpus/ queries/ qrels/ folders

sentence-transformers / HF datasets triplets (`anchor, positive[, negative | negative_1..n]` columns, parquet or
JSONL, a file or a folder of them) become embedding records `{query, pos, neg}`: rows sharing an anchor and a
positive are one record holding all their negatives. An MTEB retrieval task (HF datasets folders `corpus/`,
`queries/` and `qrels/` (or `default/`) of parquet or JSONL files, qrels files named by split) becomes a BEIR folder.
Parquet is read with `datasets` from local files only; JSONL with ragtune's reader (file:line errors).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragtune.config import ConfigModel, dump_config
from ragtune.data.beir import load_qrels, write_beir
from ragtune.data.convert_result import ConvertResult
from ragtune.data.errors import DataFormatError
from ragtune.data.formats import iter_rows, write_records

TABLE_SUFFIXES = (".parquet", ".jsonl", ".json")


class TripletsConfig(ConfigModel):
    """sentence-transformers triplets (anchor, positive, negative columns) -> `{query, pos, neg}` records."""

    data: Path
    """A .parquet / .jsonl file, or a folder of them (an HF datasets folder; every split's files are read)."""
    out: Path
    name: str = "embedding"
    """Output file stem: `<out>/<name>.jsonl`."""


class MtebConfig(ConfigModel):
    """An MTEB-style retrieval task (corpus/, queries/, qrels/ HF datasets folders) -> a BEIR folder."""

    data: Path
    out: Path


def table_files(path: Path) -> list[Path]:
    """The parquet/JSONL files of `path` (a file, or every such file below a folder), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataFormatError(path, None, "not found", hint="give a .parquet/.jsonl file or a folder of them")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TABLE_SUFFIXES and
                   not p.name.startswith("."))
    if not files:
        raise DataFormatError(path, None, "holds no .parquet, .jsonl or .json files")
    return files


def table_rows(path: Path) -> Iterator[tuple[str, int | None, dict[str, Any]]]:
    """(where, line, row) of one parquet (via `datasets`, offline) or JSONL/JSON file."""
    if path.suffix != ".parquet":
        yield from iter_rows(path)
        return
    from datasets import load_dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    with tempfile.TemporaryDirectory() as cache:
        try:
            ds = load_dataset("parquet", data_files=[str(path)], split="train", cache_dir=cache, keep_in_memory=True)
        except Exception as e:  # pyarrow and datasets raise many kinds on a broken file
            raise DataFormatError(path, None, f"not a readable parquet file: {e}") from None
    for i, row in enumerate(ds):
        yield f"{path}[row {i}]", None, row


def _text(row: dict[str, Any], key: str, where: str, line: int | None, hint: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        found = ", ".join(sorted(row)) or "nothing"
        problem = f'missing column "{key}" (found: {found})' if key not in row else \
            f'column "{key}" must be non-empty text (got {value!r})'
        raise DataFormatError(where, line, problem, field=key, hint=hint)
    return value


def triplets_to_embedding(cfg: TripletsConfig) -> ConvertResult:
    hint = "sentence-transformers triplets have text columns anchor, positive and optional negative (or negative_1..n)"
    records: dict[tuple[str, str], dict[str, Any]] = {}
    rows = 0
    for file in table_files(cfg.data):
        for where, line, row in table_rows(file):
            rows += 1
            anchor, positive = _text(row, "anchor", where, line, hint), _text(row, "positive", where, line, hint)
            neg_keys = sorted((k for k in row if k == "negative" or k.startswith("negative_")),
                              key=lambda k: (k != "negative", int(k.split("_")[1]) if "_" in k and
                                             k.split("_")[1].isdigit() else 0))
            rec = records.setdefault((anchor, positive), {"query": anchor, "pos": [positive], "neg": []})
            for k in neg_keys:
                neg = _text(row, k, where, line, hint)
                if neg not in rec["neg"] and neg != positive:
                    rec["neg"].append(neg)
    out_rows = [{k: v for k, v in r.items() if k != "neg" or v} for r in records.values()]
    target = Path(cfg.out) / f"{cfg.name}.jsonl"
    n = write_records(target, out_rows)
    config = dump_config(cfg, Path(cfg.out) / "st-triplets.config.yaml")
    return ConvertResult({"rows": rows, "records": n, "records with neg": sum("neg" in r for r in out_rows)},
                         [target, config])


# ---------------------------------------------------------------- MTEB retrieval folders


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((row[k] for k in keys if k in row and row[k] is not None), None)


def _part(root: Path, names: tuple[str, ...]) -> Path | None:
    """The folder or file of one MTEB part (`corpus/` or `corpus.jsonl` / `corpus.parquet`)."""
    for name in names:
        if (root / name).is_dir():
            return root / name
        for suffix in TABLE_SUFFIXES:
            if (root / f"{name}{suffix}").is_file():
                return root / f"{name}{suffix}"
    return None


def _split_of(file: Path, part: Path) -> str:
    """qrels split from a file name: test.jsonl, test-00000-of-00001.parquet, data/test-*.parquet."""
    return file.name.split(".")[0].split("-")[0] if file != part else "test"


def mteb_to_beir(cfg: MtebConfig) -> ConvertResult:
    root = Path(cfg.data)
    parts = {"corpus": _part(root, ("corpus",)), "queries": _part(root, ("queries",)),
             "qrels": _part(root, ("qrels", "default"))}
    missing = [k for k, v in parts.items() if v is None]
    if missing:
        raise DataFormatError(root, None, f"no {', '.join(missing)} here",
                              hint="an MTEB retrieval folder holds corpus/, queries/ and qrels/ (or default/) as "
                                   "parquet or JSONL files")
    docs: list[dict[str, str]] = []
    for file in table_files(parts["corpus"]):
        for where, line, row in table_rows(file):
            doc_id = _first(row, ("_id", "id", "doc_id", "corpus-id"))
            if doc_id is None:
                raise DataFormatError(where, line, f"corpus row has no id (found: {', '.join(sorted(row))})",
                                      field="_id", hint='corpus rows are {"_id", "title", "text"}')
            docs.append({"_id": str(doc_id), "title": str(row.get("title") or ""), "text": str(row.get("text") or "")})
    queries: dict[str, str] = {}
    for file in table_files(parts["queries"]):
        for where, line, row in table_rows(file):
            qid = _first(row, ("_id", "id", "query-id", "query_id"))
            if qid is None or not isinstance(row.get("text"), str):
                raise DataFormatError(where, line, f"query rows need an id and text (found: {', '.join(sorted(row))})",
                                      hint='query rows are {"_id", "text"}')
            queries[str(qid)] = row["text"]
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    qrels_dir = parts["qrels"]
    tsv = sorted(qrels_dir.rglob("*.tsv")) if qrels_dir.is_dir() else []
    for file in tsv:  # the older MTEB layout: BEIR's qrels/<split>.tsv
        qrels.setdefault(file.stem, {}).update(load_qrels(file))
    for file in table_files(qrels_dir) if not tsv else []:
        split = _split_of(file, qrels_dir)
        for where, line, row in table_rows(file):
            qid, did = _first(row, ("query-id", "query_id", "qid")), _first(row, ("corpus-id", "corpus_id", "doc_id"))
            if qid is None or did is None:
                raise DataFormatError(where, line, f"qrels rows need query-id and corpus-id (found: "
                                      f"{', '.join(sorted(row))})", hint='qrels rows are {"query-id", "corpus-id", '
                                      '"score"}')
            qrels.setdefault(split, {}).setdefault(str(qid), {})[str(did)] = int(row.get("score", 1))
    out = Path(cfg.out)
    write_beir(out, docs, queries, qrels)
    config = dump_config(cfg, out / "mteb.config.yaml")
    counts: dict[str, float] = {"documents": len(docs), "queries": len(queries)}
    counts |= {f"qrels {s}": sum(len(d) for d in q.values()) for s, q in sorted(qrels.items())}
    return ConvertResult(counts, [out / "corpus.jsonl", out / "queries.jsonl",
                                  *[out / "qrels" / f"{s}.tsv" for s in sorted(qrels)], config])
