"""SFT examples: datasets by name (dataset_info.json) or path -> chat messages -> input_ids + response-only labels.

Labels are -100 on every token outside the assistant answers (system, user turns, template scaffolding), so the
loss is computed on response tokens only; the end-of-turn token after each answer is learned (the model learns
to stop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.config import ConfigError
from ragtune.data.errors import DataFormatError
from ragtune.data.records import Alpaca, ShareGPT
from ragtune.generate.prompts import Message, record_messages, truncate_tokens

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass
class EncodeStats:
    examples: int = 0
    shortened: int = 0
    """Prompts shortened to fit cutoff_len."""
    answer_cut: int = 0
    """Answers cut by cutoff_len (the prompt alone was too long to shorten enough)."""
    dropped: list[str] = field(default_factory=list)
    """Examples with no answer token left within cutoff_len (where they came from)."""


def load_sft_messages(datasets: Sequence[str], dataset_dir: Path, formatting: str = "auto",
                      max_samples: int | None = None, seed: int = 42) -> list[tuple[str, list[Message]]]:
    """(where, messages) for every record of every dataset, validated with file:line errors."""
    out: list[tuple[str, list[Message]]] = []
    for name in datasets:
        records = read_dataset(name, dataset_dir, formatting, seed)[:max_samples]
        if not records:
            raise DataFormatError(name, None, "dataset holds no records")
        for where, rec in records:
            try:
                out.append((where, record_messages(rec, where)))
            except ValueError as e:
                raise DataFormatError(where, None, str(e)) from None
    return out


def read_dataset(name: str, dataset_dir: Path, formatting: str = "auto", seed: int = 42, stage: str = "sft"
                 ) -> list[tuple[str, Alpaca | ShareGPT]]:
    """(where, record) of a dataset given by path (alpaca/sharegpt JSON or JSONL) or by its name in
    `dataset_dir/dataset_info.json` (read as LLaMA-Factory reads it: ragtune.data.lf_datasets)."""
    from ragtune.data.formats import iter_rows, record_class
    from ragtune.data.lf_datasets import answer_records, read_registered
    from ragtune.data.records import parse_record

    path = Path(name)
    if not (path.suffix in {".json", ".jsonl"} or path.is_file()):
        return answer_records(read_registered(name, dataset_dir, seed), stage)
    if not path.is_file():
        raise DataFormatError(path, None, "dataset file not found",
                              hint="give a path to alpaca/sharegpt JSONL, or a name in dataset_info.json")
    cls = _detect(path) if formatting == "auto" else record_class(formatting)
    out: list[tuple[str, Alpaca | ShareGPT]] = []
    for where, line, obj in iter_rows(path):
        rec = parse_record(cls, obj, where, line)
        if not isinstance(rec, (Alpaca, ShareGPT)):
            raise DataFormatError(where, line, f"{type(rec).__name__} records cannot be used for SFT",
                                  hint="SFT reads alpaca or sharegpt records")
        out.append(((f"{where}:{line}" if line else where), rec))
    return out


def _detect(file: Path):
    from ragtune.data.formats import detect_record_kind, record_class

    kind = detect_record_kind(file)
    if kind not in {"alpaca", "sharegpt"}:
        raise DataFormatError(file, None, f"records look like {kind}, not alpaca or sharegpt",
                              hint="SFT reads alpaca ({instruction, input, output}) or sharegpt ({conversations})")
    return record_class(kind)


# ---------------------------------------------------------------- tokenization


def answer_spans(tokenizer, messages: list[Message], where: str = "") -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant answer (incl. its end-of-turn)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (text.startswith(before) and text.startswith(upto)) or len(upto) <= len(before):
            raise ConfigError(f'key "template": the chat template renders the conversation of {where} differently '
                              "when cut after a turn, so answer tokens cannot be located; pick a named template "
                              "(default, alpaca, chatml, llama2)")
        spans.append((len(before), len(upto)))
    return text, spans


def encode(tokenizer, messages: list[Message], where: str = "") -> Example:
    """input_ids of the rendered chat; labels = input_ids on answer tokens, -100 elsewhere."""
    text, spans = answer_spans(tokenizer, messages, where)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = []
    for tid, (start, _end) in zip(ids, offsets, strict=True):
        labels.append(tid if any(s <= start < e for s, e in spans) else IGNORE)
    return Example(ids, labels)


def encode_fitted(tokenizer, messages: list[Message], cutoff_len: int, stats: EncodeStats,
                  where: str = "") -> Example | None:
    """`encode`, shortening the longest non-answer turn until the example fits cutoff_len."""
    ex = encode(tokenizer, messages, where)
    shortened = False
    for _ in range(4):
        over = len(ex.input_ids) - cutoff_len
        if over <= 0:
            break
        prompts = [i for i, m in enumerate(messages) if m["role"] != "assistant"]
        target = max(prompts, key=lambda i: len(messages[i]["content"]))
        ids = tokenizer(messages[target]["content"], add_special_tokens=False)["input_ids"]
        keep = max(0, len(ids) - over - 2)
        if keep == len(ids) or not ids:
            break
        messages = [*messages[:target], {**messages[target], "content": tokenizer.decode(ids[:keep])},
                    *messages[target + 1:]]
        ex = encode(tokenizer, messages, where)
        shortened = True
    stats.shortened += shortened
    if len(ex.input_ids) > cutoff_len:
        ex = Example(ex.input_ids[:cutoff_len], ex.labels[:cutoff_len])
        stats.answer_cut += 1
    if all(lab == IGNORE for lab in ex.labels):
        stats.dropped.append(where)
        return None
    stats.examples += 1
    return ex


def cut_user_turns(tokenizer, messages: list[Message], max_tokens: int) -> list[Message]:
    """Each user turn cut to its first `max_tokens` tokens, as `ragtune generate` cuts the document."""
    return [{**m, "content": truncate_tokens(tokenizer, m["content"], max_tokens)} if m["role"] == "user" else m
            for m in messages]


def encode_all(tokenizer, items: list[tuple[str, list[Message]]], cutoff_len: int,
               max_prompt_tokens: int | None = None) -> tuple[list[Example], EncodeStats]:
    stats = EncodeStats()
    if max_prompt_tokens is not None:
        items = [(where, cut_user_turns(tokenizer, msgs, max_prompt_tokens)) for where, msgs in items]
    out = [ex for where, msgs in items if (ex := encode_fitted(tokenizer, msgs, cutoff_len, stats, where))]
    return out, stats


def split_dev(n: int, val_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, dev): a seeded dev slice of `val_size` (fraction < 1, or a count)."""
    import random

    if val_size <= 0:
        return list(range(n)), []
    k = int(round(val_size * n)) if val_size < 1 else int(val_size)
    if k < 1 or k >= n:
        raise ConfigError(f'key "val_size": {val_size} leaves {n - k} training and {k} dev examples out of {n}; '
                          "both must be at least 1")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[k:]), sorted(order[:k])
