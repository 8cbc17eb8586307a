"""Which documents get pseudo queries, and which labeled pairs serve as few-shot examples (both seeded)."""

from __future__ import annotations

import random
from pathlib import Path

from ragtune.config import ConfigError
from ragtune.data.beir import load_qrels, load_queries
from ragtune.data.errors import DataFormatError
from ragtune.data.jsonl import iter_lines, read_json
from ragtune.data.records import Doc


def beir_folder(corpus: Path) -> Path:
    return corpus.parent if corpus.is_file() else corpus


def judged_docs(folder: Path, splits: list[str]) -> set[str]:
    """Documents judged (score > 0) in the given qrels splits of a BEIR folder; absent splits count as empty."""
    out: set[str] = set()
    for split in splits:
        path = folder / "qrels" / f"{split}.tsv"
        if path.is_file():
            out |= {d for docs in load_qrels(path).values() for d, s in docs.items() if s > 0}
    return out


def _id_items(path: Path) -> list[tuple[int | None, str, str]]:
    """(line, where, id) per id: a JSON list `["d1", "d2", ...]` (SPTAR's layout) or one id a line."""
    with path.open("rb") as f:
        head = f.read(64).removeprefix(b"\xef\xbb\xbf").lstrip()
    if not head.startswith(b"["):
        return [(lineno, f"line {lineno}", text.strip()) for lineno, text in iter_lines(path)]
    items = read_json(path, hint='write ["id1", "id2", ...] or one id a line')
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, (str, int)) or isinstance(item, bool):
            raise DataFormatError(path, None, f"item {i} is {type(item).__name__}, not a document id",
                                  field=f"[{i}]", hint='write ["id1", "id2", ...]')
        out.append((None, f"item {i}", str(item)))
    return out


def read_id_file(path: Path, corpus: dict[str, Doc]) -> list[str]:
    """Document ids, one a line or a JSON list; unknown or repeated ids are errors naming the line (or item)."""
    ids: list[str] = []
    first: dict[str, str] = {}
    for lineno, where, doc_id in _id_items(path):
        item = "" if lineno is not None else f"{where}: "
        if doc_id not in corpus:
            raise DataFormatError(path, lineno, f'{item}unknown document id "{doc_id}" (not in the corpus)',
                                  hint="list ids of corpus.jsonl, one a line or as a JSON list")
        if doc_id in first:
            raise DataFormatError(path, lineno, f'{item}duplicate document id "{doc_id}" (first on {first[doc_id]})',
                                  hint="list each document once")
        first[doc_id] = where
        ids.append(doc_id)
    if not ids:
        raise DataFormatError(path, None, "no document ids", hint="list ids of corpus.jsonl, one a line")
    return ids


def select_documents(corpus: dict[str, Doc], folder: Path, sample_num: int | None, seed: int,
                     id_file: Path | None = None, exclude_splits: list[str] | None = None) -> list[str]:
    """The ordered document ids to generate for: an id file as given, else the corpus minus judged documents;
    then a seeded sample of `sample_num`."""
    if id_file is not None:
        eligible = read_id_file(id_file, corpus)
        source = f"the {len(eligible)} ids of {id_file}"
    else:
        excluded = judged_docs(folder, exclude_splits or [])
        eligible = [d for d in corpus if d not in excluded]
        source = (f"the {len(eligible)} eligible documents ({len(corpus)} in the corpus, "
                  f"{len(corpus) - len(eligible)} judged in {', '.join(exclude_splits or [])} excluded)")
    if sample_num is None:
        return eligible
    if sample_num > len(eligible):
        raise ConfigError(f'key "sample_num": {sample_num} is more than {source}; pass sample_num<={len(eligible)} '
                          "or null for all")
    return random.Random(seed).sample(eligible, sample_num)


def few_shot_pairs(corpus: dict[str, Doc], folder: Path, split: str, k: int, seed: int,
                   avoid: set[str]) -> list[tuple[Doc, str]]:
    """k (document, query) examples from the judged pairs of `split`, never one of the `avoid` documents."""
    if k == 0:
        return []
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise ConfigError(f'key "few_shot_split": {path} not found; few-shot examples come from judged pairs of the '
                          "corpus folder (or set few_shot=0)")
    queries = load_queries(folder)
    qrels = load_qrels(path, query_ids=queries, doc_ids=corpus)
    pairs = sorted((q, d) for q, docs in qrels.items() for d, s in docs.items() if s > 0 and d not in avoid)
    if len(pairs) < k:
        raise ConfigError(f'key "few_shot": {k} examples requested but {split} has {len(pairs)} usable pairs')
    rng = random.Random(seed)
    rng.shuffle(pairs)
    chosen, used_docs = [], set()
    for q, d in pairs:
        if d not in used_docs:
            chosen.append((corpus[d], queries[q]))
            used_docs.add(d)
        if len(chosen) == k:
            break
    return chosen


def read_shots(path: Path, k: int | None) -> list[tuple[str, str]]:
    """The first k `{document, query}` pairs of a JSONL file (k=0: none, None: all); missing fields are errors with
    the line."""
    from ragtune.data.jsonl import iter_jsonl

    pairs: list[tuple[str, str]] = []
    for lineno, row in iter_jsonl(path):
        if k is not None and len(pairs) == k:
            break
        for key in ("document", "query"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataFormatError(path, lineno, f'missing or empty "{key}"',
                                      hint='each line is {"document": ..., "query": ...}')
        pairs.append((row["document"], row["query"]))
    if k is not None and len(pairs) < k:
        raise ConfigError(f'key "few_shot": {k} examples requested but {path} holds {len(pairs)}')
    return pairs
