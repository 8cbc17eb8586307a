"""Datasets named in a LLaMA-Factory `dataset_info.json`, read the way LLaMA-Factory reads them, offline.

    reg = read_registered("scifact_doc2query", Path("data/sft"), seed=42)
    for where, rec in answer_records(reg, stage="sft"): ...     # Alpaca / ShareGPT records
    for where, rec in preference_records(reg): ...              # Preference / ShareGPTPreference (ranking: true)

What an entry says is honoured or refused with a message naming the key: `file_sha1` is checked, `num_samples`
draws that many rows (seeded; more than the file holds repeats rows, as LLaMA-Factory does), hub and script
sources, `subset`, `folder` and a `split` other than train are refused (ragtune reads local files only). A
`ranking: true` entry given to a stage that needs one answer (SFT) uses its first, chosen, response.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.config import ConfigError, notice
from ragtune.data.dataset_info import DatasetEntry, entry_line, entry_record_class, info_path, read_dataset_info
from ragtune.data.errors import DataFormatError
from ragtune.data.formats import entry_files, iter_rows
from ragtune.data.records import Alpaca, Preference, Record, ShareGPT, ShareGPTPreference, parse_record


@dataclass
class Registered:
    name: str
    info: Path
    entry: DatasetEntry
    rows: list[tuple[str, int | None, dict[str, Any]]]
    """(where, line, JSON object) per row, after num_samples."""


def read_registered(name: str, dataset_dir: str | Path, seed: int = 42) -> Registered:
    """The rows of dataset `name` of `dataset_dir/dataset_info.json`; ConfigError / DataFormatError when it cannot
    be read as registered."""
    info = info_path(dataset_dir)
    if not info.is_file():
        raise ConfigError(f'key "dataset": "{name}" is not a file and {info} does not exist; set dataset_dir to the '
                          "folder holding dataset_info.json, or give a path to a JSON/JSONL file")
    entries = read_dataset_info(info)
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=1)
        guess = f'; did you mean "{close[0]}"?' if close else ""
        raise ConfigError(f'key "dataset": "{name}" is not registered in {info}{guess} '
                          f"(registered: {', '.join(entries) or 'none'})")
    entry = entries[name]
    problem = entry.offline_problem()
    if problem:
        raise ConfigError(f'key "dataset": "{name}" in {info}: {problem}')
    files = entry_files(info.parent, entry)
    if not files or any(not f.is_file() for f in files):
        raise DataFormatError(info, entry_line(info, name, "file_name"),
                              f'dataset "{name}": file "{entry.file_name}" not found in {info.parent}',
                              field=f"{name}.file_name", hint="file_name is relative to the dataset_info.json folder")
    mismatch = entry.sha1_problem(files)
    if mismatch:
        raise DataFormatError(info, entry_line(info, name, "file_sha1"), f'dataset "{name}": {mismatch}',
                              field=f"{name}.file_sha1")
    rows = [row for f in files for row in iter_rows(f)]
    if entry.num_samples is not None:
        rows = sample_rows(rows, entry.num_samples, seed)
    return Registered(name, info, entry, rows)


def sample_rows(rows: list, n: int, seed: int) -> list:
    """`n` rows in a seeded order: a permutation of all rows cut to n, or, when n exceeds them, every row plus
    rows drawn again at random (LLaMA-Factory's `num_samples` up-sampling)."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    picked = order[:n] + [rng.randrange(len(rows)) for _ in range(n - len(rows))] if rows else []
    return [rows[i] for i in picked]


def _chosen_as_answer(obj: dict[str, Any], entry: DatasetEntry) -> dict[str, Any]:
    """A ranking row turned into a one-answer row: its chosen response is the answer."""
    columns = entry.columns.model_dump(exclude_none=True) if entry.columns else {}
    chosen, rejected = columns.get("chosen", "chosen"), columns.get("rejected", "rejected")
    obj = dict(obj)
    if entry.formatting == "sharegpt":
        messages = columns.get("messages", "conversations")
        if chosen in obj and isinstance(obj.get(messages), list):
            obj[messages] = [*obj[messages], obj.pop(chosen)]
            obj.pop(rejected, None)
        return obj
    response = columns.get("response", "output")
    if chosen in obj:
        obj[response] = obj.pop(chosen)
        obj.pop(rejected, None)
    elif isinstance(obj.get(response), list) and obj[response]:
        obj[response] = obj[response][0]
    return obj


def answer_records(reg: Registered, stage: str = "sft") -> list[tuple[str, Alpaca | ShareGPT]]:
    """(where, record) with one answer per row; ranking rows give their chosen response (with a notice for SFT)."""
    entry = reg.entry
    if entry.ranking:
        if stage == "sft":
            notice(f'dataset "{reg.name}" is registered with "ranking": true; SFT trains on its first (chosen) '
                   "response, as LLaMA-Factory's SFT does with such an entry")
        cls = entry_record_class(entry.model_copy(update={"ranking": False}))
    else:
        cls = entry_record_class(entry)
    out: list[tuple[str, Alpaca | ShareGPT]] = []
    for where, line, obj in reg.rows:
        rec = parse_record(cls, _chosen_as_answer(obj, entry) if entry.ranking else obj, where, line)
        assert isinstance(rec, (Alpaca, ShareGPT))  # strict parsing raised otherwise
        out.append((f"{where}:{line}" if line else where, rec))
    return out


def preference_records(reg: Registered, stage: str = "rm") -> list[tuple[str, Preference | ShareGPTPreference]]:
    """(where, record) of a `ranking: true` dataset: a prompt with a chosen and a rejected answer."""
    if not reg.entry.ranking:
        raise ConfigError(f'key "dataset": "{reg.name}" in {reg.info} is not preference data; stage {stage} reads '
                          'an entry with "ranking": true whose rows hold [chosen, rejected] answers')
    cls: type[Record] = entry_record_class(reg.entry)
    out: list[tuple[str, Preference | ShareGPTPreference]] = []
    for where, line, obj in reg.rows:
        rec = parse_record(cls, obj, where, line)
        assert isinstance(rec, (Preference, ShareGPTPreference))
        out.append((f"{where}:{line}" if line else where, rec))
    return out
