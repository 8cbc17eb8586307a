"""LLaMA-Factory `dataset_info.json`: read and check entries, write atomically, register one dataset.

    register_dataset("out/", "scifact_doc2query", "scifact_doc2query.jsonl", columns={"system": "system"})

An entry names its data file (relative to the json's folder), its `formatting` (alpaca or
sharegpt), `ranking` for preference data, and `columns`/`tags` that map LLaMA-Factory's roles
to the data's field names. `entry_record_class` turns an entry into the record class that
validates its rows under those names.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from ragtune.atomic import write_json
from ragtune.data.errors import DataFormatError, ProblemLog, report
from ragtune.data.jsonl import unreadable
from ragtune.data.records import Alpaca, Preference, Record, ShareGPT, ShareGPTPreference, Turn

DATASET_INFO = "dataset_info.json"
ENTRY_HINT = ('an entry looks like {"file_name": "data.jsonl", "formatting": "alpaca"|"sharegpt", '
              '"ranking": false, "columns": {"prompt": "instruction", ...}}')


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetColumns(_Strict):
    """LLaMA-Factory role -> field name in the data file."""

    prompt: str | None = None
    query: str | None = None
    response: str | None = None
    history: str | None = None
    messages: str | None = None
    role: str | None = None
    """sharegpt, LLaMA-Factory's older spec: the key of a message's role (newer: `tags.role_tag`)."""
    content: str | None = None
    """sharegpt, older spec: the key of a message's text (newer: `tags.content_tag`)."""
    system: str | None = None
    tools: str | None = None
    images: str | None = None
    videos: str | None = None
    audios: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    kto_tag: str | None = None


class DatasetTags(_Strict):
    """sharegpt only: the keys of a message and the role names it uses."""

    role_tag: str | None = None
    content_tag: str | None = None
    user_tag: str | None = None
    assistant_tag: str | None = None
    observation_tag: str | None = None
    function_tag: str | None = None
    system_tag: str | None = None


REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
MESSAGE_KEYS = {"role": "role_tag", "content": "content_tag"}
"""sharegpt message keys: LLaMA-Factory's older spec names them under `columns`, newer ones under `tags`."""


class DatasetEntry(_Strict):
    hf_hub_url: str | None = None
    ms_hub_url: str | None = None
    om_hub_url: str | None = None
    script_url: str | None = None
    cloud_file_name: str | None = None
    file_name: str | None = None
    file_sha1: str | None = None
    formatting: Literal["alpaca", "sharegpt"] = "alpaca"
    ranking: bool = False
    subset: str | None = None
    split: str | None = None
    folder: str | None = None
    num_samples: int | None = None
    columns: DatasetColumns | None = None
    tags: DatasetTags | None = None

    @model_validator(mode="after")
    def _has_source(self) -> DatasetEntry:
        if self.file_name is None and not any(getattr(self, k) for k in REMOTE_KEYS):
            raise ValueError(f'an entry needs "file_name" (or one of {", ".join(REMOTE_KEYS)})')
        for old, new in MESSAGE_KEYS.items():
            given = getattr(self.columns, old, None) if self.columns else None
            tagged = getattr(self.tags, new, None) if self.tags else None
            if given is not None and self.formatting != "sharegpt":
                raise ValueError(f'"columns.{old}" names a key of sharegpt messages; this entry is "{self.formatting}"')
            if given is not None and tagged is not None and given != tagged:
                raise ValueError(f'"columns.{old}" ({given!r}) and "tags.{new}" ({tagged!r}) disagree; they name the '
                                 "same key (older and newer LLaMA-Factory spec): keep one")
        return self

    def message_tags(self) -> dict[str, str]:
        """sharegpt tags, with the older spec's `columns.role`/`columns.content` read as role_tag/content_tag."""
        tags = self.tags.model_dump(exclude_none=True) if self.tags else {}
        for old, new in MESSAGE_KEYS.items():
            given = getattr(self.columns, old, None) if self.columns else None
            if given is not None:
                tags.setdefault(new, given)
        return tags

    @property
    def is_local(self) -> bool:
        """True when LLaMA-Factory reads `file_name` (hub and script sources take precedence)."""
        return self.file_name is not None and not any(getattr(self, k) for k in REMOTE_KEYS)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def offline_problem(self) -> str | None:
        """Why ragtune cannot read this entry offline from local files (None when it can), and what to do."""
        for key in REMOTE_KEYS:
            if getattr(self, key):
                where = {"hf_hub_url": "the Hugging Face Hub", "ms_hub_url": "ModelScope", "om_hub_url": "Modelers",
                         "script_url": "a dataset loading script", "cloud_file_name": "cloud storage"}[key]
                return (f'it comes from {where} ({key}: {getattr(self, key)}); ragtune reads local files only and '
                        'never downloads: save the data as JSON/JSONL beside dataset_info.json and set "file_name" '
                        f'(without "{key}")')
        for key, what in (("subset", "a configuration of a hub dataset"), ("folder", "a folder of a hub repository")):
            if getattr(self, key):
                return (f'"{key}" selects {what}, which ragtune cannot open offline; point "file_name" at the '
                        f'local file (or folder of JSON/JSONL files) of that {key} and remove "{key}"')
        if self.split not in (None, "train"):
            return (f'"split": {self.split!r}: a local file holds one split; point "file_name" at the file of that '
                    'split and remove "split"')
        return None

    def sha1_problem(self, files: list[Path]) -> str | None:
        """A mismatch between `file_sha1` and the data file's SHA-1 (None when it matches or is not given)."""
        if not self.file_sha1:
            return None
        if len(files) != 1:
            return (f'"file_sha1" checks one file, but file_name "{self.file_name}" holds {len(files)}; remove '
                    "file_sha1 or register the files one by one")
        import hashlib

        digest = hashlib.sha1(files[0].read_bytes()).hexdigest()
        if digest != self.file_sha1.lower():
            return (f'"file_sha1" is {self.file_sha1} but {files[0].name} has SHA-1 {digest}: the file changed since '
                    "it was registered; check the data, then update file_sha1 (or remove it)")
        return None


def info_path(path: str | Path) -> Path:
    """dataset_info.json itself, or the one inside a folder."""
    path = Path(path)
    return path / DATASET_INFO if path.is_dir() or not path.suffix else path


def _load_raw(path: Path, problems: ProblemLog | None) -> tuple[dict[str, Any], str]:
    if not path.is_file():
        report(problems, path, None, "file not found")
        return {}, ""
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text)
    except UnicodeDecodeError:
        report(problems, path, None, "not UTF-8 text", hint="re-encode the file as UTF-8")
        return {}, ""
    except json.JSONDecodeError as e:
        report(problems, path, e.lineno, f"invalid JSON: {e.msg} at column {e.colno}", hint=ENTRY_HINT)
        return {}, ""
    except (RecursionError, ValueError) as e:  # absurd nesting; an integer over Python's digit limit
        report(problems, path, None, unreadable(e), hint=ENTRY_HINT)
        return {}, ""
    if not isinstance(data, dict):
        report(problems, path, None, f"expected a JSON object {{name: entry}}, got {type(data).__name__}",
               hint=ENTRY_HINT)
        return {}, ""
    return data, text


def _line_of(text: str, name: str, key: str | None = None) -> int | None:
    """Line of entry `name` (or of its `key`), so errors point into the file."""
    m = re.search(rf'"{re.escape(name)}"\s*:', text)
    if m is None:
        return None
    at = m.start()
    if key is not None:
        k = re.compile(rf'"{re.escape(key)}"\s*:').search(text, m.end())
        at = k.start() if k else at
    return text.count("\n", 0, at) + 1


def entry_line(path: str | Path, name: str, key: str | None = None) -> int | None:
    """Line number of entry `name` (or its `key`) in a dataset_info.json, for error messages."""
    try:
        return _line_of(info_path(path).read_text(encoding="utf-8-sig"), name, key)
    except (OSError, UnicodeDecodeError):
        return None


_LEVELS: dict[str, type[BaseModel]] = {"columns": DatasetColumns, "tags": DatasetTags}


def _entry_error(name: str, err: dict) -> tuple[str, str]:
    loc = [str(p) for p in err.get("loc", ())]
    field = ".".join([name, *loc])
    if err["type"] == "extra_forbidden":
        owner = _LEVELS.get(loc[0], DatasetEntry) if len(loc) > 1 else DatasetEntry
        close = difflib.get_close_matches(loc[-1], list(owner.model_fields), n=1, cutoff=0.6)
        guess = f'; did you mean "{close[0]}"?' if close else ""
        return f'dataset "{name}": unknown key "{".".join(loc)}"{guess}', field
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    if not loc:
        return f'dataset "{name}": {msg}', name
    return f'dataset "{name}": "{".".join(loc)}": {msg} (got {err.get("input")!r})', field


def read_dataset_info(path: str | Path, problems: ProblemLog | None = None) -> dict[str, DatasetEntry]:
    """Parse and check every entry (not the data files: see `formats.validate_dataset_info`)."""
    path = info_path(path)
    raw, text = _load_raw(path, problems)
    entries: dict[str, DatasetEntry] = {}
    for name, value in raw.items():
        line = _line_of(text, name)
        if not isinstance(value, dict):
            report(problems, path, line, f'dataset "{name}": expected an object, got {type(value).__name__}',
                   field=name, hint=ENTRY_HINT)
            continue
        try:
            entries[name] = DatasetEntry.model_validate(value)
        except ValidationError as e:
            for err in e.errors():
                msg, field = _entry_error(name, err)
                loc = err.get("loc", ())
                at = _line_of(text, name, str(loc[0])) if loc else line
                report(problems, path, at, msg, field=field, hint=ENTRY_HINT)
    return entries


def write_dataset_info(path: str | Path, entries: Mapping[str, DatasetEntry | dict[str, Any]]) -> Path:
    """Write all entries atomically (entries given as dicts are validated first)."""
    path = info_path(path)
    rows = {name: (e if isinstance(e, DatasetEntry) else DatasetEntry.model_validate(e)).to_json()
            for name, e in entries.items()}
    write_json(path, rows)
    return path


def register_dataset(info: str | Path, name: str, file_name: str | Path, formatting: str = "alpaca",
                     ranking: bool = False, columns: Mapping[str, str] | None = None,
                     tags: Mapping[str, str] | None = None) -> DatasetEntry:
    """Add or replace entry `name` in dataset_info.json (created if absent); other entries are kept as they are."""
    path = info_path(info)
    raw = _load_raw(path, None)[0] if path.exists() else {}
    file_name = Path(file_name)
    if file_name.is_absolute():
        try:
            file_name = file_name.relative_to(path.parent.resolve())
        except ValueError:
            raise DataFormatError(path, None, f'file_name "{file_name}" is outside {path.parent}',
                                  field=f"{name}.file_name",
                                  hint="LLaMA-Factory resolves file_name relative to the dataset_info.json folder"
                                  ) from None
    try:
        entry = DatasetEntry(file_name=file_name.as_posix(), formatting=formatting, ranking=ranking,
                             columns=DatasetColumns(**columns) if columns else None,
                             tags=DatasetTags(**tags) if tags else None)
    except ValidationError as e:
        msg, field = _entry_error(name, e.errors()[0])
        raise DataFormatError(path, None, msg, field=field, hint=ENTRY_HINT) from None
    raw[name] = entry.to_json()
    write_json(path, raw)
    return entry


# ---------------------------------------------------------------- column mapping -> record class


def _renamed(cls: type[Record], name: str, alias: str, annotation: Any = None) -> tuple[Any, FieldInfo]:
    base = cls.model_fields[name]
    info = FieldInfo.merge_field_infos(base, alias=alias, validation_alias=alias, serialization_alias=alias)
    return (annotation or base.annotation, info)


def entry_record_class(entry: DatasetEntry) -> type[Record]:
    """The record class that validates rows of `entry` under its column and tag names."""
    columns = entry.columns.model_dump(exclude_none=True, exclude=set(MESSAGE_KEYS)) if entry.columns else {}
    tags = entry.message_tags()
    return _mapped_class(entry.formatting, entry.ranking, json.dumps(columns, sort_keys=True),
                         json.dumps(tags, sort_keys=True))


@lru_cache(maxsize=64)
def _mapped_class(formatting: str, ranking: bool, columns_json: str, tags_json: str) -> type[Record]:
    columns: dict[str, str] = json.loads(columns_json)
    tags: dict[str, str] = json.loads(tags_json)
    if formatting == "alpaca":
        base: type[Record] = Preference if ranking else Alpaca
        roles = {"prompt": "instruction", "query": "input", "system": "system", "history": "history"}
        roles |= {"chosen": "chosen", "rejected": "rejected"} if ranking else {"response": "output"}
        extra = ("tools", "images", "videos", "audios", "kto_tag")
    else:
        base = ShareGPTPreference if ranking else ShareGPT
        roles = {"messages": "conversations", "system": "system", "tools": "tools"}
        roles |= {"chosen": "chosen", "rejected": "rejected"} if ranking else {}
        extra = ("images", "videos", "audios", "kto_tag")
    fields: dict[str, Any] = {}
    turn = _turn_class(tags) if formatting == "sharegpt" and tags else None
    for role, field in roles.items():
        alias = columns.get(role, field)
        annotation = None
        if turn is not None and field == "conversations":
            annotation = list[turn]
        elif turn is not None and field in {"chosen", "rejected"}:
            annotation = turn
        if alias != field or annotation is not None:
            fields[field] = _renamed(base, field, alias, annotation)
    for role in extra:  # media and KTO columns: LLaMA-Factory reads them; ragtune only checks they are allowed
        if role in columns and role not in base.model_fields:
            fields[role] = (Any, FieldInfo(default=None, alias=columns[role], validation_alias=columns[role]))
    if not fields and not (ranking and "response" in columns):
        return base
    mapped = ", ".join(f"{columns[r]} -> {f}" for r, f in roles.items() if r in columns and columns[r] != f)
    cls = create_model(base.__name__, __base__=base, **fields)
    cls.HINT = base.HINT + (f" (dataset_info.json columns: {mapped})" if mapped else "")
    if ranking and formatting == "alpaca":
        cls.RESPONSE = columns.get("response", "output")
    return cls


def _turn_class(tags: dict[str, str]) -> type[Turn]:
    fields = {"role": _renamed(Turn, "role", tags.get("role_tag", "from")),
              "value": _renamed(Turn, "value", tags.get("content_tag", "value"))}
    cls = create_model("Turn", __base__=Turn, **fields)
    cls.ROLES = frozenset({tags.get("user_tag", "human"), tags.get("assistant_tag", "gpt"),
                           tags.get("observation_tag", "observation"), tags.get("function_tag", "function_call"),
                           tags.get("system_tag", "system")})
    cls.HINT = (f'messages are {{"{tags.get("role_tag", "from")}": role, "{tags.get("content_tag", "value")}": '
                f"text}} with roles {', '.join(sorted(cls.ROLES))} (dataset_info.json tags)")
    return cls
